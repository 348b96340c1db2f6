//! loom models of `stop` (`Em::down`) against the paths it waits for: the
//! interrupt handler, a start body (a transmit), the refill timeout.
//!
//! After `down` every buffer is back in the pool, every frame posted is
//! completed or flushed, and no doorbell reached the device after its reset
//! (the fakes in `support` check these, and that no two start bodies and no
//! start body and the reset overlap).
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-em --test loom_stop`.
//!
//! Reverts and weakenings checked (made, the model seen failing, restored;
//! `.ci/mutants` makes each again):
//! - stop without its barriers (`quiesce`): the Mpsafe models fail.
//! - stop clearing RUNNING after its barriers instead of before:
//!   `stop_against_interrupt_and_transmit_mpsafe` fails.
//! - the start routine's Release store of `head`, or tx completion's
//!   Acquire load of it, weakened to Relaxed:
//!   `stop_against_interrupt_and_transmit_mpsafe` fails (completion reads a
//!   slot's record the start body had not published).
#![cfg(all(mpsafe_loom, feature = "std"))]
// Test code, on std (the model threads, std's Arc and Mutex in the fakes).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod support;

use loom::sync::Arc;
use mpsafe_em::{Mode, TxError};
use support::{config, model, rig, spawn};

/// `down` while the handler reaps a completed frame and, with `transmit`,
/// another CPU transmits (a refused transmit is handed back, and not
/// counted).
fn stop_against_interrupt_and_transmit(mode: Mode, transmit: bool) {
    model(move || {
        let r = Arc::new(rig(config(mode), 3));
        // Posted and sent at once by the device, which raises TXDW.
        r.em.transmit(0, r.pool.frame(60)).unwrap();
        let handler = {
            let r = Arc::clone(&r);
            spawn(move || {
                r.nic.fire();
            })
        };
        let sender = transmit.then(|| {
            let r = Arc::clone(&r);
            spawn(move || match r.em.transmit(0, r.pool.frame(60)) {
                Ok(()) => 1,
                Err(TxError::Down(b)) => {
                    r.pool.give_back([b]);
                    0
                }
                Err(e) => panic!("unexpected refusal: {e}"),
            })
        });
        r.em.down();
        handler.join().unwrap();
        let sent = sender.map_or(0, |s| s.join().unwrap());
        r.down_and_check(1 + sent);
    });
}

#[test]
fn stop_against_interrupt_and_transmit_mpsafe() {
    stop_against_interrupt_and_transmit(Mode::Mpsafe, true);
}

/// In `BigLock` mode stop waits at the barriers with the big lock dropped
/// (`KernelGuard::sleep`); with a transmitting CPU too the model takes
/// minutes, so the handler alone.
#[test]
fn stop_against_interrupt_biglock() {
    stop_against_interrupt_and_transmit(Mode::BigLock, false);
}

/// `down` while the refill timeout (scheduled, one buffer to post) runs.
fn stop_against_refill_timeout(mode: Mode) {
    model(move || {
        let (r, held) = support::rig_refill_pending(config(mode), 2);
        let timeout = support::deferred("em0-refill");
        let t = spawn(move || timeout.run_once("refill timeout"));
        r.em.down();
        t.join().unwrap();
        r.pool.give_back(held);
        r.down_and_check(0);
    });
}

#[test]
fn stop_against_refill_timeout_mpsafe() {
    stop_against_refill_timeout(Mode::Mpsafe);
}

#[test]
fn stop_against_refill_timeout_serialized() {
    stop_against_refill_timeout(Mode::Serialized);
}
