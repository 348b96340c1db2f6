//! loom model of the task serializer.
//!
//! Run with `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom
//! -p mpsafe-serializer --test loom_task`.
//!
//! Each caller sets a Relaxed request slot and then adds the task that serves
//! it; the task drains the slots it owns. A task must run at least once after
//! every `add` (a slot still set at the end is a lost run), and no two tasks
//! may run at once (they share a loom `UnsafeCell`).
//!
//! Weakening checked (each made the model fail, then was restored):
//! - the slow path's compare-exchange loop that marks the task (success
//!   ordering AcqRel -> Acquire): the owner's pass may miss the adder's
//!   request, `runs_each_added_task_after_add` fails ("a task run was
//!   lost"); checked again when the loop replaced a `fetch_or`.
//! - the final `compare_exchange(RUNNING, 0)` Release -> Relaxed: loom reports
//!   a causality violation on the shared `UnsafeCell`.
#![cfg(mpsafe_loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
use loom::thread;
use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};

const A: Task = Task::new(0);
const B: Task = Task::new(3);
/// Caller `i` adds `TASK_OF[i]`: two callers share task A.
const TASK_OF: [Task; 3] = [A, B, A];

struct Shared {
    serializer: TaskSerializer,
    requests: [AtomicBool; 3],
    /// Runs of any task: two tasks running at once would race on it.
    runs: UnsafeCell<usize>,
}

impl Shared {
    fn new() -> Self {
        Self {
            serializer: TaskSerializer::new(),
            requests: core::array::from_fn(|_| AtomicBool::new(false)),
            runs: UnsafeCell::new(0),
        }
    }

    fn run(&self, task: Task, _owner: &TaskOwner<'_>) {
        self.runs.with_mut(|n| {
            // SAFETY: loom checks that no other task touches `runs`
            // concurrently; that is what this model proves.
            unsafe { *n += 1 }
        });
        for (i, request) in self.requests.iter().enumerate() {
            if TASK_OF[i] == task && request.load(Relaxed) {
                request.store(false, Relaxed);
            }
        }
    }

    fn add(&self, me: usize) {
        self.requests[me].store(true, Relaxed);
        self.serializer
            .add(TASK_OF[me], |task, owner| self.run(task, owner));
    }
}

#[test]
fn runs_each_added_task_after_add() {
    loom::model(|| {
        let shared = Arc::new(Shared::new());
        let threads: Vec<_> = (1..3)
            .map(|me| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || shared.add(me))
            })
            .collect();
        shared.add(0);
        for t in threads {
            t.join().unwrap();
        }
        for request in &shared.requests {
            assert!(!request.load(Relaxed), "a task run was lost");
        }
        // SAFETY: every other thread has been joined.
        let runs = shared.runs.with(|n| unsafe { *n });
        // Each add runs its task at least once; a task pending twice runs once.
        assert!((2..=3).contains(&runs), "runs = {runs}");
        assert!(!shared.serializer.is_running());
    });
}
