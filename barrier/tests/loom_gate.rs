//! Loom models of `Gate`: the barrier waits for an invocation in flight, lets
//! through none that could still touch what the caller frees next, does not
//! wait for an invocation that starts after `disable`, and concurrent barriers
//! take turns without a lost wake-up. Under loom a gate has two slots, and the
//! models place handlers on both.
//!
//! Run: `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-barrier --test loom_gate`
//!
//! Checked by weakening (each change made alone, model failed, change reverted):
//! - the entry CAS in `Gate::try_enter_on` `Acquire` → `Relaxed`:
//!   `running_flag_teardown` fails (causality violation on the ring: a handler
//!   that entered after the barrier's flip still read `running == true`);
//! - the exit `fetch_sub` in `GateGuard::drop` `Release` → `Relaxed`:
//!   `barrier_waits_for_in_flight_handler` fails (causality violation: the
//!   handler's ring read is not ordered before the free);
//! - the flip `fetch_xor` in `Gate::barrier` `Release` → `Relaxed`:
//!   `running_flag_teardown` fails (same as the entry CAS);
//! - the wake-word bump in `Gate::wake_barrier` `Release` → `Relaxed`:
//!   `concurrent_barriers_and_a_handler` deadlocks (the barrier read the bump
//!   but a stale count, and slept on the bumped value);
//! - the `disabled` load in `try_enter_on` `Acquire` → `Relaxed` (or the
//!   store in `enable` `Release` → `Relaxed`): `enable_publishes_the_new_ring`
//!   fails (causality violation: a handler let in by `enable` reads the ring
//!   without the re-allocation ordered before);
//! - the last invocation not calling `wake_barrier`: the models in which a
//!   barrier waits for an invocation in flight deadlock.
//!
//! Barriers take turns through a `Serializer` (it replaced a hand-written
//! futex mutex), whose orderings `mpsafe-serializer`'s models check. These
//! models do not: with the old lock, weakening its Acquire/Release went
//! unnoticed here (the flips are RMWs of the same words, so two barriers'
//! flips stay ordered by modification order in such small models), while
//! the argument in `gate.rs` needs the previous drain to happen-before.
#![cfg(mpsafe_loom)]

mod common;

use common::{ModelFutex, model};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use mpsafe_barrier::Gate;

type TestGate = Gate<ModelFutex>;

/// The "ring": freed (written 0xdead) by the teardown after the barrier;
/// read by handlers (concurrently with each other, as on real hardware).
/// Loom reports any read not ordered with the free.
struct Shared {
    gate: TestGate,
    running: AtomicBool,
    ring: UnsafeCell<u32>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            gate: Gate::new(),
            running: AtomicBool::new(true),
            ring: UnsafeCell::new(0),
        })
    }

    fn touch_ring(&self) {
        self.ring.with(|r| {
            // SAFETY: (model) the claim under test; loom flags a read
            // concurrent with the free.
            let r = unsafe { *r };
            assert_ne!(r, 0xdead, "handler saw a freed ring");
        });
    }

    fn free_ring(&self) {
        self.ring.with_mut(|r| {
            // SAFETY: (model) as above.
            unsafe { *r = 0xdead }
        });
    }
}

/// Teardown with `disable`: a handler on each slot either ran entirely before
/// the barrier returned or was turned away.
#[test]
fn barrier_waits_for_in_flight_handler() {
    model(|| {
        let shared = Shared::new();
        let handler = {
            let shared = shared.clone();
            thread::spawn(move || shared.gate.enter_on(1, || shared.touch_ring()).is_some())
        };
        shared.gate.disable();
        shared.gate.barrier();
        shared.free_ring();
        handler.join().unwrap();
    });
}

/// Teardown with the driver's own flag (Relaxed on both sides: the gate's
/// flip/entry pair is what orders it), handlers on both slots.
#[test]
fn running_flag_teardown() {
    model(|| {
        let shared = Shared::new();
        let handlers: Vec<_> = (0..2)
            .map(|cpu| {
                let shared = shared.clone();
                thread::spawn(move || {
                    shared.gate.enter_on(cpu, || {
                        if shared.running.load(Ordering::Relaxed) {
                            shared.touch_ring();
                        }
                    })
                })
            })
            .collect();
        shared.running.store(false, Ordering::Relaxed);
        shared.gate.barrier();
        shared.free_ring();
        for handler in handlers {
            assert_eq!(handler.join().unwrap(), Some(()));
        }
    });
}

/// An invocation that starts after `disable` (the handler saw the teardown
/// begin) is turned away, so the barrier never waits for it: no deadlock
/// even though this handler would otherwise block until the barrier returns.
#[test]
fn no_wait_for_handler_after_disable() {
    model(|| {
        let shared = Shared::new();
        let disabled = Arc::new(AtomicBool::new(false));
        let barrier_done = Arc::new(AtomicBool::new(false));
        let handler = {
            let (shared, disabled, barrier_done) =
                (shared.clone(), disabled.clone(), barrier_done.clone());
            thread::spawn(move || {
                while !disabled.load(Ordering::Acquire) {
                    thread::yield_now();
                }
                shared.gate.enter_on(1, || {
                    // Would hold the barrier forever if it waited for us.
                    while !barrier_done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                })
            })
        };
        shared.gate.disable();
        disabled.store(true, Ordering::Release);
        shared.gate.barrier();
        barrier_done.store(true, Ordering::Release);
        assert_eq!(handler.join().unwrap(), None);
    });
}

/// Two barriers at once and a handler: both return, each after the handler
/// if it started before them; the lock hand-over and the drain wake-up lose
/// no wake-up (the modelled futex would deadlock).
#[test]
fn concurrent_barriers_and_a_handler() {
    model(|| {
        let shared = Shared::new();
        let handler = {
            let shared = shared.clone();
            thread::spawn(move || {
                shared.gate.enter_on(1, || {
                    if shared.running.load(Ordering::Relaxed) {
                        shared.touch_ring();
                    }
                });
            })
        };
        let other = {
            let shared = shared.clone();
            thread::spawn(move || shared.gate.barrier())
        };
        shared.running.store(false, Ordering::Relaxed);
        shared.gate.barrier();
        shared.free_ring();
        other.join().unwrap();
        handler.join().unwrap();
    });
}

/// Down and up again with `disable`/`enable` only: a handler that finds the
/// gate enabled again sees the re-allocated ring (`enable` publishes), and
/// one still in flight from before kept the old ring until the barrier.
#[test]
fn enable_publishes_the_new_ring() {
    model(|| {
        let shared = Shared::new();
        let handler = {
            let shared = shared.clone();
            thread::spawn(move || {
                shared.gate.enter_on(1, || shared.touch_ring());
            })
        };
        shared.gate.disable();
        shared.gate.barrier();
        // "Free and re-allocate": a plain write no handler may race with.
        shared.ring.with_mut(|r| {
            // SAFETY: (model) the claim under test.
            unsafe { *r = 1 }
        });
        shared.gate.enable();
        handler.join().unwrap();
    });
}
