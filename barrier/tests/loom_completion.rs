//! Loom models of `Completion`: no lost wake-up, and the signaller's writes are
//! visible to every waiter that returns.
//!
//! Run: `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-barrier --test loom_completion`
//!
//! Checked by weakening: with the `swap` in `Completion::signal` made
//! `Relaxed` instead of `Release`, `signal_publishes_to_the_waiter` fails
//! (loom: causality violation on the data cell, the waiter reads it while the
//! signaller's write is not ordered before). With `signal` not waking
//! (`W::wake_all` skipped), every model deadlocks: the modelled futex really
//! sleeps, so a missing wake-up is caught.
#![cfg(mpsafe_loom)]

mod common;

use common::{ModelFutex, model};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use mpsafe_barrier::Completion;

#[test]
fn signal_publishes_to_the_waiter() {
    model(|| {
        let done = Arc::new(Completion::<ModelFutex>::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let waiter = {
            let (done, data) = (done.clone(), data.clone());
            thread::spawn(move || {
                done.wait();
                let seen = data.with(|d| {
                    // SAFETY: (model) the signaller wrote before signalling
                    // and never again; loom checks the claim.
                    unsafe { *d }
                });
                assert_eq!(seen, 7);
            })
        };
        data.with_mut(|d| {
            // SAFETY: (model) the waiter reads only after the signal.
            unsafe { *d = 7 }
        });
        done.signal();
        waiter.join().unwrap();
    });
}

/// `is_signalled` promises what `wait` does: a poller that sees the
/// completion signalled reads the signaller's data. Weakening its Acquire to
/// Relaxed fails this model (causality violation on the data cell).
#[test]
fn is_signalled_publishes_to_a_poller() {
    model(|| {
        let done = Arc::new(Completion::<ModelFutex>::new());
        let data = Arc::new(UnsafeCell::new(0u32));
        let poller = {
            let (done, data) = (done.clone(), data.clone());
            thread::spawn(move || {
                while !done.is_signalled() {
                    thread::yield_now();
                }
                // SAFETY: (model) written before the signal, never again.
                let seen = data.with(|d| unsafe { *d });
                assert_eq!(seen, 7);
            })
        };
        // SAFETY: (model) the poller reads only after seeing the signal.
        data.with_mut(|d| unsafe { *d = 7 });
        done.signal();
        poller.join().unwrap();
    });
}

#[test]
fn two_waiters_no_lost_wake_up() {
    model(|| {
        let done = Arc::new(Completion::<ModelFutex>::new());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let done = done.clone();
                thread::spawn(move || done.wait())
            })
            .collect();
        done.signal();
        for waiter in waiters {
            waiter.join().unwrap();
        }
        assert!(done.is_signalled());
    });
}

#[test]
fn reset_rearms_for_a_second_round() {
    model(|| {
        let mut done = Arc::new(Completion::<ModelFutex>::new());
        for _ in 0..2 {
            let signaller = {
                let done = done.clone();
                thread::spawn(move || done.signal())
            };
            done.wait();
            signaller.join().unwrap();
            Arc::get_mut(&mut done).unwrap().reset();
            assert!(!done.is_signalled());
        }
    });
}
