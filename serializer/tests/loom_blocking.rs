//! loom models of the blocking serializer.
//!
//! Run with `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom
//! -p mpsafe-serializer --test loom_blocking`.
//!
//! Under loom the crate's `Futex` wait is a yield (a legal spurious return),
//! which would hide a lost wake-up: a waiter that is never woken just keeps
//! re-reading the word. The wake-up models therefore plug in [`ModelFutex`],
//! a `Wait` strategy with the futex contract built from a loom `Mutex` and
//! `Condvar`: it really sleeps, and only `wake_one`/`wake_all` wake it. A lost
//! wake-up leaves a thread asleep forever, which loom reports as a deadlock.
//!
//! Weakening checked (each made a model fail, then was restored):
//! - exit's `fetch_sub(HELD)` Release -> Relaxed: `mutual_exclusion` fails
//!   with a causality violation on the protected `UnsafeCell`.
//! - exit waking only when the waiter count is `> 1` instead of `!= 0`:
//!   `no_lost_wake_up` fails with loom's deadlock report.
//! - `handler_call` without the re-check of the flag inside the serializer:
//!   `handler_disable_is_a_barrier` fails with a causality violation on the
//!   handler's state.
//! - `Serialized::handlers_enabled` Acquire -> Relaxed, or the enable's
//!   `fetch_and` Release -> Relaxed: `handler_enable_publishes` fails with a
//!   causality violation.
//! - either acquiring compare-exchange (`try_acquire`'s, the waiter's)
//!   Acquire -> Relaxed: `mutual_exclusion` fails.
//!
//! (All with `LOOM_MAX_PREEMPTIONS=3`. The enter path's bounded spin is
//! compiled out under loom: it only repeats `try_enter`'s step.)
#![cfg(mpsafe_loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use mpsafe_serializer::{Serializer, Wait, enter_all};

/// The modelled futex of every mpsafe crate's models (from the shim): a
/// sleeper blocks until a wake on its own word reaches it.
use mpsafe_serializer::__shim::ModelFutex;

struct Counter<W: Wait> {
    serializer: Serializer<W>,
    value: UnsafeCell<u32>,
}

impl<W: Wait> Counter<W> {
    fn new() -> Self {
        Self {
            serializer: Serializer::new(),
            value: UnsafeCell::new(0),
        }
    }

    fn bump(&self) {
        let _inside = self.serializer.enter();
        self.value.with_mut(|v| {
            // SAFETY: loom checks the serializer makes this access exclusive.
            unsafe { *v += 1 }
        });
    }

    fn get(&self) -> u32 {
        // SAFETY: called once every other thread is joined.
        self.value.with(|v| unsafe { *v })
    }
}

fn mutual_exclusion_with<W: Wait + 'static>() {
    loom::model(|| {
        let counter = Arc::new(Counter::<W>::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let counter = Arc::clone(&counter);
                thread::spawn(move || counter.bump())
            })
            .collect();
        // The third party only tries.
        if let Some(_inside) = counter.serializer.try_enter() {
            counter.value.with_mut(|v| {
                // SAFETY: as in `bump`.
                unsafe { *v += 10 }
            });
        }
        for t in threads {
            t.join().unwrap();
        }
        assert!(matches!(counter.get(), 2 | 12));
        assert!(!counter.serializer.is_held());
    });
}

#[test]
fn mutual_exclusion() {
    mutual_exclusion_with::<ModelFutex>();
}

#[test]
fn mutual_exclusion_default_wait() {
    // The crate's own `Futex` (a yield under loom), with one waiter: two
    // spinning waiters could yield to each other forever, which loom reports
    // as too many branches rather than as a bug.
    loom::model(|| {
        let counter = Arc::new(Counter::<mpsafe_serializer::DefaultWait>::new());
        let other = {
            let counter = Arc::clone(&counter);
            thread::spawn(move || counter.bump())
        };
        counter.bump();
        other.join().unwrap();
        assert_eq!(counter.get(), 2);
    });
}

#[test]
fn no_lost_wake_up() {
    // Three threads through a serializer whose waiters really sleep: every
    // exit that leaves a sleeper must wake one, or the model deadlocks.
    loom::model(|| {
        let counter = Arc::new(Counter::<ModelFutex>::new());
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let counter = Arc::clone(&counter);
                thread::spawn(move || counter.bump())
            })
            .collect();
        counter.bump();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(counter.get(), 3);
    });
}

#[test]
fn handler_disable_is_a_barrier() {
    // The interrupt thread runs the handler (twice); the stop path disables
    // handlers and then touches the handler's state *without* the
    // serializer, as a driver frees its rings. A handler running concurrently
    // with or after that access is a data race loom reports.
    loom::model(|| {
        let nic = Arc::new(Counter::<mpsafe_serializer::DefaultWait>::new());
        let intr = {
            let nic = Arc::clone(&nic);
            thread::spawn(move || {
                for _ in 0..2 {
                    nic.serializer.handler_call(|_| {
                        nic.value.with_mut(|v| {
                            // SAFETY: inside the serializer, handlers enabled.
                            unsafe { *v += 1 }
                        })
                    });
                }
            })
        };
        nic.serializer.handler_disable();
        nic.value.with_mut(|v| {
            // SAFETY: the barrier: no handler runs now or later.
            unsafe { *v = 100 }
        });
        intr.join().unwrap();
        assert_eq!(nic.get(), 100, "a handler ran after handler_disable");
    });
}

#[test]
fn handler_enable_publishes() {
    // The stop/init path disables handlers, rebuilds the handler's state
    // *outside* the serializer and enables them again, without entering. A
    // handler that runs because of the enable must see the rebuilt state; one
    // that ran before the disable saw the old one.
    loom::model(|| {
        let nic = Arc::new(Counter::<mpsafe_serializer::DefaultWait>::new());
        let intr = {
            let nic = Arc::clone(&nic);
            thread::spawn(move || {
                nic.serializer.handler_call(|_| {
                    nic.value.with(|v| {
                        // SAFETY: before the disable, or after the enable.
                        let v = unsafe { *v };
                        assert!(v == 0 || v == 7, "saw {v}");
                    })
                })
            })
        };
        nic.serializer.handler_disable();
        nic.value.with_mut(|v| {
            // SAFETY: handlers are disabled: nobody else touches it.
            unsafe { *v = 7 }
        });
        nic.serializer.handler_enable();
        intr.join().unwrap();
    });
}

#[test]
fn enter_all_in_order_does_not_deadlock() {
    // One thread serializes all, another takes the second serializer alone
    // (a tx ring's start), with sleeping waits.
    loom::model(|| {
        let serializers: Arc<[Serializer<ModelFutex>; 2]> =
            Arc::new([Serializer::new(), Serializer::new()]);
        let single = {
            let serializers = Arc::clone(&serializers);
            thread::spawn(move || drop(serializers[1].enter()))
        };
        let all = enter_all(&serializers[..]);
        assert!(serializers.iter().all(Serializer::is_held));
        drop(all);
        single.join().unwrap();
        assert!(!serializers.iter().any(Serializer::is_held));
    });
}
