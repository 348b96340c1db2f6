//! loom models of the mode switch (`Em::set_mode`) against the paths it
//! quiesces: the interrupt handler, the refill timeout, a big-lock caller's
//! `start_locked` and a transmit.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-em --test loom_switch`.
//!
//! Reverts and weakenings checked (made, the model seen failing, restored;
//! `.ci/mutants` makes each again):
//! - `Core::decide` ignoring the PAUSED bit, the switch pausing after its
//!   barriers instead of before, the handler taking the mode without the
//!   pause: both stray-interrupt models fail ("a handler that entered after
//!   the barrier ran (read ICR)").
//! - `Em::start_locked` running the start body under the caller's big lock,
//!   outside the send queue's start serializer (issue 22's second bug):
//!   `start_locked_against_a_switch_runs_one_body_at_a_time` fails (loom:
//!   concurrent writes to the device's doorbell state, two start bodies on
//!   one ring).
//! - The refill timeout taking the mode without the pause survives, and is
//!   accepted in `.ci/mutants-accepted` with the reason: no call can start
//!   after the switch's `del_barrier` while the interface is paused, which
//!   `a_refill_timeout_across_a_switch_does_nothing` checks.
#![cfg(all(mpsafe_loom, feature = "std"))]
// Test code, on std (the model threads, std's Arc and Mutex in the fakes).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use mpsafe_em::Mode;
use support::{config, model, rig, spawn};

/// A stray interrupt (a shared line: it fires whatever the mask) at any
/// point of a switch from `from` to `Serialized`. One that enters the gate
/// after the switch's interrupt barrier must do nothing: the switch holds
/// the barrier open (the hook) until that handler has returned, and a
/// handler that reads `ICR` meanwhile ran in the old mode beside the new.
fn stray_interrupt_across_a_switch(from: Mode) {
    model(move || {
        let r = Arc::new(rig(config(from), 3));
        let done = Arc::new(AtomicBool::new(false));
        {
            let (probe, done) = (std::sync::Arc::clone(&r.probe), Arc::clone(&done));
            r.nic.after_intr_barrier(move || {
                probe.open_window(|| {
                    while !done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                });
            });
        }
        let handler = {
            let (r, done) = (Arc::clone(&r), Arc::clone(&done));
            spawn(move || {
                r.nic.fire();
                done.store(true, Ordering::Release);
            })
        };
        r.em.set_mode(Mode::Serialized).unwrap();
        handler.join().unwrap();
        assert_eq!(r.em.mode(), Mode::Serialized);
        r.down_and_check(0);
    });
}

#[test]
fn a_stray_interrupt_across_biglock_to_serialized_does_nothing() {
    stray_interrupt_across_a_switch(Mode::BigLock);
}

#[test]
fn a_stray_interrupt_across_mpsafe_to_serialized_does_nothing() {
    stray_interrupt_across_a_switch(Mode::Mpsafe);
}

/// The refill timeout (scheduled, with a buffer to post) at any point of a
/// switch from Mpsafe to Serialized. A call in flight decided its mode
/// inside the timeout's gate and the switch's `del_barrier` waits for it;
/// after that barrier no call may run until the switch resumes (the barrier
/// cancelled the scheduled one, and nothing adds it while the interface is
/// paused): the barrier is held open until the model's timeout thread has
/// returned, and a call that allocates meanwhile fails the model.
#[test]
fn a_refill_timeout_across_a_switch_does_nothing() {
    model(|| {
        let (r, held) = support::rig_refill_pending(config(Mode::Mpsafe), 2);
        let r = Arc::new(r);
        let timeout = support::deferred("em0-refill");
        let done = Arc::new(AtomicBool::new(false));
        {
            let (probe, done) = (std::sync::Arc::clone(&r.probe), Arc::clone(&done));
            timeout.after_barrier(move || {
                probe.open_window(|| {
                    while !done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                });
            });
        }
        let t = {
            let done = Arc::clone(&done);
            spawn(move || {
                timeout.run_once("refill timeout");
                done.store(true, Ordering::Release);
            })
        };
        r.em.set_mode(Mode::Serialized).unwrap();
        t.join().unwrap();
        r.pool.give_back(held);
        r.down_and_check(0);
    });
}

/// A big-lock caller's `start_locked` against a switch from BigLock to
/// Mpsafe, with two packets queued (for the start task, which the model
/// never runs; the switch's resume starts the queue itself): the
/// caller's start body and the one the switch's resume kicks must not
/// overlap (the device's doorbell state and each buffer are loom cells),
/// and every packet is posted once or purged.
#[test]
fn start_locked_against_a_switch_runs_one_body_at_a_time() {
    model(|| {
        let mut cfg = config(Mode::BigLock);
        cfg.tx_start = mpsafe_em::TxStart::Delegated;
        let r = Arc::new(rig(cfg, 3));
        for _ in 0..2 {
            r.em.transmit(0, r.pool.frame(60)).unwrap();
        }
        let caller = {
            let r = Arc::clone(&r);
            spawn(move || {
                let k = r.em.big_lock().lock(mpsafe_em::Path::Start);
                // WrongMode once the switch is done: nothing to do then.
                let _ = r.em.start_locked(0, &k);
            })
        };
        r.em.set_mode(Mode::Mpsafe).unwrap();
        caller.join().unwrap();
        r.down_and_check(2);
    });
}

/// A transmit (its start body runs here, through the send queue) against a
/// switch from Mpsafe to BigLock that the switch's resume kicks too.
#[test]
fn transmit_against_a_switch_runs_one_body_at_a_time() {
    model(|| {
        let r = Arc::new(rig(config(Mode::Mpsafe), 3));
        r.em.transmit(0, r.pool.frame(60)).unwrap();
        let sender = {
            let r = Arc::clone(&r);
            spawn(move || match r.em.transmit(0, r.pool.frame(60)) {
                Ok(()) => 1,
                Err(e) => panic!("refused while up: {e}"),
            })
        };
        r.em.set_mode(Mode::BigLock).unwrap();
        let sent = sender.join().unwrap();
        r.down_and_check(1 + sent);
    });
}
