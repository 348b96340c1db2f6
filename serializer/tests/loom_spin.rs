//! loom model of the spin-only lock word, `RawSpinMutex`.
//!
//! Run with `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=3
//! cargo test --release --features loom -p mpsafe-serializer --test loom_spin`.
//!
//! Weakening checked (each made the model fail, then was restored):
//! - `unlock`'s store Release -> Relaxed: a causality violation on the
//!   protected `UnsafeCell`.
//! - the acquiring compare-exchange (`try_lock`, and the contended path's)
//!   Acquire -> Relaxed: a causality violation likewise.
#![cfg(mpsafe_loom)]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::thread;
use mpsafe_serializer::RawSpinMutex;
use mpsafe_serializer::lock_api::RawMutex;

struct Counter {
    lock: RawSpinMutex,
    value: UnsafeCell<u32>,
}

impl Counter {
    fn bump(&self, by: u32) {
        self.value.with_mut(|v| {
            // SAFETY: loom checks that the lock makes this access exclusive.
            unsafe { *v += by }
        });
    }
}

impl Counter {
    fn locked_bump(&self, by: u32) {
        self.lock.lock();
        self.bump(by);
        // SAFETY: taken just above.
        unsafe { self.lock.unlock() };
    }
}

/// A zeroed counter, and a thread that bumps it by 1 under its lock.
fn counter_and_a_thread_bumping_it() -> (Arc<Counter>, thread::JoinHandle<()>) {
    let counter = Arc::new(Counter {
        lock: RawSpinMutex::new(),
        value: UnsafeCell::new(0),
    });
    let other = {
        let counter = Arc::clone(&counter);
        thread::spawn(move || counter.locked_bump(1))
    };
    (counter, other)
}

/// Two threads take the lock (one of them waits for the other: the contended
/// path), each bumping the counter under it.
#[test]
fn mutual_exclusion() {
    loom::model(|| {
        let (counter, other) = counter_and_a_thread_bumping_it();
        counter.locked_bump(10);
        other.join().unwrap();
        // SAFETY: the other thread is joined.
        let total = counter.value.with(|v| unsafe { *v });
        assert_eq!(total, 11);
        assert!(!counter.lock.is_locked());
    });
}

/// `try_lock` against a thread that takes the lock: it either gets the lock
/// (and the other waits) or fails without touching the data.
#[test]
fn try_lock_excludes() {
    loom::model(|| {
        let (counter, other) = counter_and_a_thread_bumping_it();
        if counter.lock.try_lock() {
            counter.bump(10);
            // SAFETY: taken just above.
            unsafe { counter.lock.unlock() };
        }
        other.join().unwrap();
        // SAFETY: the other thread is joined.
        let total = counter.value.with(|v| unsafe { *v });
        assert!(matches!(total, 1 | 11));
    });
}
