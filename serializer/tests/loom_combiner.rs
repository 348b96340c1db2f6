//! loom model of the combining serializer.
//!
//! Run with `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom
//! -p mpsafe-serializer --test loom_combiner`.
//!
//! The work is a "drain what is there" pass over per-caller request slots,
//! written and read with Relaxed atomics, so only the combiner's own orderings
//! can make a request visible to the pass that must serve it; the count of
//! served requests lives in a loom `UnsafeCell`, so two passes running at once
//! are a reported data race.
//!
//! Weakening checked (each made the model fail, then was restored):
//! - `run`'s `fetch_add` AcqRel -> Acquire: the owner's next pass may miss a
//!   request slot, `never_loses_a_request` fails ("a request was lost").
//! - the swing-to-zero `compare_exchange` success Release -> Relaxed: the next
//!   owner does not see the previous owner's pass, loom reports a causality
//!   violation on `served`.
#![cfg(mpsafe_loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering::Relaxed};
use loom::thread;
use mpsafe_serializer::Combiner;

const CALLERS: usize = 3;

struct Shared {
    combiner: Combiner,
    /// Request slot of each caller: set before it calls `run`.
    requests: [AtomicBool; CALLERS],
    /// Requests served: only touched by the work, so never concurrently.
    served: UnsafeCell<usize>,
}

impl Shared {
    fn new() -> Self {
        Self {
            combiner: Combiner::new(),
            requests: core::array::from_fn(|_| AtomicBool::new(false)),
            served: UnsafeCell::new(0),
        }
    }

    /// Drains every request that is there.
    fn work(&self) {
        for request in &self.requests {
            if request.load(Relaxed) {
                request.store(false, Relaxed);
                self.served.with_mut(|n| {
                    // SAFETY: loom checks that no other pass touches `served`
                    // concurrently; that is what this model proves.
                    unsafe { *n += 1 }
                });
            }
        }
    }

    fn request(&self, me: usize) {
        self.requests[me].store(true, Relaxed);
        self.combiner.run(|| self.work());
    }
}

#[test]
fn never_loses_a_request_and_never_runs_concurrently() {
    loom::model(|| {
        let shared = Arc::new(Shared::new());
        let threads: Vec<_> = (1..CALLERS)
            .map(|me| {
                let shared = Arc::clone(&shared);
                thread::spawn(move || shared.request(me))
            })
            .collect();
        shared.request(0);
        for t in threads {
            t.join().unwrap();
        }
        for request in &shared.requests {
            assert!(!request.load(Relaxed), "a request was lost");
        }
        // SAFETY: every other thread has been joined.
        let served = shared.served.with(|n| unsafe { *n });
        assert_eq!(served, CALLERS);
        assert!(!shared.combiner.is_running());
    });
}

#[test]
fn reentrant_request_from_inside_the_work() {
    // A pass that asks again (a start routine calling start()) while another
    // caller asks: neither request is lost, nothing deadlocks.
    loom::model(|| {
        let shared = Arc::new(Shared::new());
        let other = {
            let shared = Arc::clone(&shared);
            thread::spawn(move || shared.request(1))
        };
        let asked_again = AtomicBool::new(false);
        shared.requests[0].store(true, Relaxed);
        shared.combiner.run(|| {
            shared.work();
            if !asked_again.swap(true, Relaxed) {
                shared.requests[2].store(true, Relaxed);
                assert!(!shared.combiner.run(|| unreachable!("nested")));
            }
        });
        other.join().unwrap();
        for request in &shared.requests {
            assert!(!request.load(Relaxed), "a request was lost");
        }
        // Only an owner runs its closure: the nested request exists only if
        // this thread was the owner.
        let expected = 2 + usize::from(asked_again.load(Relaxed));
        // SAFETY: the other thread has been joined.
        assert_eq!(shared.served.with(|n| unsafe { *n }), expected);
    });
}
