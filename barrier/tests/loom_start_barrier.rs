//! Loom models of `StartBarrier` over a `TaskSerializer`: the barrier observes
//! every start that began before it (the start's ring access happens-before
//! the free, and any later start sees `running == false`), the inline path on
//! an idle serializer, and concurrent waiters folding without a lost wake-up.
//!
//! Run: `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-barrier --test loom_start_barrier`
//!
//! Checked by weakening (each change made alone, model failed, reverted):
//! - the `swap` in `StartBarrier::run_locked` `Release` → `Relaxed`:
//!   `barrier_observes_every_earlier_start` fails (causality violation: the
//!   start's ring access is not ordered before the free);
//! - the `completed` load in `StartBarrier::wait` `Acquire` → `Relaxed`:
//!   the same model fails the same way;
//! - `run_locked` not waking (`wake_all` skipped): `two_waiters_fold`
//!   deadlocks.
//!
//! - the ticket `fetch_add` in `wait` `Release` → `Relaxed`, or the
//!   `requested` load in `run_locked` `Acquire` → `Relaxed`:
//!   `barrier_run_for_another_waiter_publishes_our_flag` fails (causality
//!   violation: a barrier run started for the other waiter read our ticket,
//!   so we returned, but the start in the owner's next pass never
//!   synchronized with our `running` store). The two-thread models do not
//!   catch these: there the serializer's own AcqRel `fetch_or` in `add`
//!   carries the store.
//!
//! `barrier_observes_every_earlier_start` and the three-thread model need
//! three preemptions; they set that bound themselves.
#![cfg(mpsafe_loom)]

mod common;

use common::{ModelFutex, model, model_preempting};
use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use loom::thread;
use mpsafe_barrier::StartBarrier;
use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};

const START: Task = Task::new(0);
const BARRIER: Task = Task::new(1);

struct Tx {
    running: AtomicBool,
    serializer: TaskSerializer,
    barrier: StartBarrier<ModelFutex>,
    ring: UnsafeCell<u32>,
    barrier_runs: AtomicU32,
}

impl Tx {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            running: AtomicBool::new(true),
            serializer: TaskSerializer::new(),
            barrier: StartBarrier::new(),
            ring: UnsafeCell::new(0),
            barrier_runs: AtomicU32::new(0),
        })
    }

    fn run(&self, task: Task, owner: &TaskOwner<'_>) {
        match task {
            START => {
                // Relaxed on purpose: the serializer and the barrier order it.
                if self.running.load(Ordering::Relaxed) {
                    self.ring.with_mut(|r| {
                        // SAFETY: (model) the claim under test; loom flags an
                        // access concurrent with the free.
                        let r = unsafe { &mut *r };
                        assert_ne!(*r, 0xdead, "start saw a freed ring");
                        *r += 1;
                    });
                }
            }
            BARRIER => {
                self.barrier_runs.fetch_add(1, Ordering::Relaxed);
                self.barrier.run_locked(owner);
            }
            _ => unreachable!(),
        }
    }

    fn start(&self) {
        self.serializer.add(START, |t, o| self.run(t, o));
    }

    fn wait_barrier(&self) {
        self.barrier
            .wait(&self.serializer, BARRIER, |t, o| self.run(t, o))
            .unwrap();
    }

    fn free_ring(&self) {
        self.ring.with_mut(|r| {
            // SAFETY: (model) as in `run`.
            unsafe { *r = 0xdead }
        });
    }
}

/// Three preemptions: the starter is preempted inside START, the waiter
/// after queueing the barrier, so that the waiter finds its ticket completed
/// without ever sleeping (the modelled futex's lock would otherwise order it).
#[test]
fn barrier_observes_every_earlier_start() {
    model_preempting(3, || {
        let tx = Tx::new();
        let starter = {
            let tx = tx.clone();
            thread::spawn(move || tx.start())
        };
        tx.running.store(false, Ordering::Relaxed);
        tx.wait_barrier();
        tx.free_ring();
        starter.join().unwrap();
    });
}

#[test]
fn idle_serializer_runs_the_barrier_inline() {
    model(|| {
        let tx = Tx::new();
        tx.wait_barrier();
        tx.wait_barrier();
        assert_eq!(tx.barrier_runs.load(Ordering::Relaxed), 2);
    });
}

#[test]
fn two_waiters_fold() {
    model(|| {
        let tx = Tx::new();
        let waiter = {
            let tx = tx.clone();
            thread::spawn(move || tx.wait_barrier())
        };
        let starter = {
            let tx = tx.clone();
            thread::spawn(move || tx.start())
        };
        tx.wait_barrier();
        waiter.join().unwrap();
        starter.join().unwrap();
        let runs = tx.barrier_runs.load(Ordering::Relaxed);
        assert!((1..=2).contains(&runs), "{runs} barrier runs");
    });
}

/// A barrier run requested by one waiter completes another waiter whose
/// ticket it read before that waiter's own request reached the serializer;
/// a start in the owner's next pass must still see `running == false`.
#[test]
fn barrier_run_for_another_waiter_publishes_our_flag() {
    model_preempting(3, || {
        let tx = Tx::new();
        let starter = {
            let tx = tx.clone();
            thread::spawn(move || {
                tx.start();
                tx.start();
            })
        };
        let other = {
            let tx = tx.clone();
            thread::spawn(move || tx.wait_barrier())
        };
        tx.running.store(false, Ordering::Relaxed);
        tx.wait_barrier();
        tx.free_ring();
        other.join().unwrap();
        starter.join().unwrap();
    });
}
