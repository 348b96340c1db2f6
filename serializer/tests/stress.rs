//! Stress: four threads hammer each primitive, each protecting a plain
//! (non-atomic) counter, and the final count must be exact.
//!
//! A lost update shows as a wrong count; a missing happens-before edge shows
//! under ThreadSanitizer or Miri as a data race on the counter. Iterations
//! are bounded and scale with `MPSAFE_STRESS_SCALE` (percent, default 100;
//! CI sets it small under TSan) and shrink under Miri; the thread count never
//! does.
#![cfg(all(not(mpsafe_loom), feature = "std"))]

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::thread;

use mpsafe_serializer::{
    Combiner, Futex, Serializer, SerializerMutex, Spin, Task, TaskSerializer, Wait, enter_all,
};

const THREADS: usize = 4;

/// Iterations per thread: `full` scaled by `MPSAFE_STRESS_SCALE` percent,
/// much smaller under Miri, at least 1.
fn iterations(full: usize) -> usize {
    let percent: usize = std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let full = if cfg!(miri) { full / 400 } else { full };
    (full * percent / 100).max(1)
}

/// A counter with no synchronisation of its own.
struct Plain(UnsafeCell<u64>);

// SAFETY: every access goes through `add`/`get`, whose callers guarantee
// exclusive access (they hold the primitive under test, or every other
// thread has been joined). Checking that guarantee is the point of the test.
unsafe impl Sync for Plain {}

impl Plain {
    const fn new() -> Self {
        Self(UnsafeCell::new(0))
    }

    /// # Safety
    /// No other thread may access the counter during the call.
    unsafe fn add(&self, n: u64) {
        // SAFETY: the caller guarantees exclusive access.
        unsafe { *self.0.get() += n }
    }

    /// # Safety
    /// No other thread may write the counter during the call.
    unsafe fn get(&self) -> u64 {
        // SAFETY: the caller guarantees no concurrent writer.
        unsafe { *self.0.get() }
    }
}

fn run_threads(f: impl Fn(usize) + Sync) {
    thread::scope(|s| {
        for t in 0..THREADS {
            let f = &f;
            s.spawn(move || f(t));
        }
    });
}

#[test]
fn combiner_serves_every_request_exactly() {
    let n = iterations(100_000);
    let combiner = Combiner::new();
    let queued = AtomicU64::new(0);
    let served = Plain::new();
    run_threads(|_| {
        for _ in 0..n {
            queued.fetch_add(1, Relaxed);
            combiner.run(|| {
                let batch = queued.swap(0, Relaxed);
                // SAFETY: the combiner runs the work on one thread at a time.
                unsafe { served.add(batch) };
            });
        }
    });
    // SAFETY: all threads joined.
    assert_eq!(unsafe { served.get() }, (THREADS * n) as u64);
    assert_eq!(queued.load(Relaxed), 0);
}

#[test]
fn task_serializer_serves_every_request_exactly() {
    const TX: Task = Task::new(0);
    const RX: Task = Task::new(7);
    let n = iterations(100_000);
    let serializer = TaskSerializer::new();
    let queued = [AtomicU64::new(0), AtomicU64::new(0)];
    let served = Plain::new();
    let runs = AtomicUsize::new(0);
    run_threads(|t| {
        let (task, queue) = if t % 2 == 0 { (TX, 0) } else { (RX, 1) };
        for _ in 0..n {
            queued[queue].fetch_add(1, Relaxed);
            serializer.add(task, |task, _owner| {
                runs.fetch_add(1, Relaxed);
                let queue = usize::from(task == RX);
                let batch = queued[queue].swap(0, Relaxed);
                // SAFETY: tasks run one at a time.
                unsafe { served.add(batch) };
            });
        }
    });
    // SAFETY: all threads joined.
    assert_eq!(unsafe { served.get() }, (THREADS * n) as u64);
    assert!(
        runs.load(Relaxed) <= THREADS * n,
        "a task ran without an add"
    );
}

fn serializer_counts_exactly<W: Wait>() {
    let n = iterations(100_000);
    let serializer = Serializer::<W>::new();
    let count = Plain::new();
    let tried = AtomicU64::new(0);
    run_threads(|t| {
        for i in 0..n {
            // One thread in four mixes in try_enter.
            if t == 0 && i % 2 == 0 {
                if let Some(_inside) = serializer.try_enter() {
                    tried.fetch_add(1, Relaxed);
                    // SAFETY: inside the serializer.
                    unsafe { count.add(1) };
                }
                continue;
            }
            let _inside = serializer.enter();
            // SAFETY: inside the serializer.
            unsafe { count.add(1) };
        }
    });
    let expected = (THREADS * n - n.div_ceil(2)) as u64 + tried.load(Relaxed);
    // SAFETY: all threads joined.
    assert_eq!(unsafe { count.get() }, expected);
    assert!(!serializer.is_held());
}

#[test]
fn serializer_futex_counts_exactly() {
    serializer_counts_exactly::<Futex>();
}

#[test]
fn serializer_spin_counts_exactly() {
    serializer_counts_exactly::<Spin>();
}

fn mutex_counts_exactly<W: Wait>() {
    let n = iterations(100_000);
    let mutex = SerializerMutex::<u64, W>::new(0);
    run_threads(|_| {
        for _ in 0..n {
            *mutex.lock() += 1;
        }
    });
    assert_eq!(mutex.into_inner(), (THREADS * n) as u64);
}

#[test]
fn serializer_mutex_futex_counts_exactly() {
    mutex_counts_exactly::<Futex>();
}

#[test]
fn serializer_mutex_spin_counts_exactly() {
    mutex_counts_exactly::<Spin>();
}

#[test]
fn handler_calls_against_disable_enable() {
    // Three interrupt threads run the handler; the fourth repeatedly disables
    // handlers, reads the handler's counter *outside* the serializer (legal
    // only if disable is a barrier) and enables them again.
    let n = iterations(100_000);
    let serializer: Serializer = Serializer::new();
    let handled = Plain::new();
    let ran = AtomicU64::new(0);
    run_threads(|t| {
        if t == 0 {
            let mut last = 0;
            for _ in 0..n / 8 {
                serializer.handler_disable();
                // SAFETY: handlers are disabled and none is running.
                let now = unsafe { handled.get() };
                assert!(now >= last);
                last = now;
                serializer.handler_enable();
            }
        } else {
            for i in 0..n {
                let done = if i % 4 == 0 {
                    serializer.handler_try(|_| {
                        // SAFETY: inside the serializer with handlers enabled.
                        unsafe { handled.add(1) }
                    })
                } else {
                    serializer.handler_call(|_| {
                        // SAFETY: inside the serializer with handlers enabled.
                        unsafe { handled.add(1) }
                    })
                };
                if done.is_some() {
                    ran.fetch_add(1, Relaxed);
                }
            }
        }
    });
    // SAFETY: all threads joined.
    assert_eq!(unsafe { handled.get() }, ran.load(Relaxed));
}

#[test]
fn enter_all_against_single_entries() {
    // Two threads serialize all (two serializers); two take one each. Each
    // counter is protected by its own serializer.
    let n = iterations(50_000);
    let serializers: [Serializer; 2] = Default::default();
    let counters = [Plain::new(), Plain::new()];
    run_threads(|t| {
        for _ in 0..n {
            if t < 2 {
                let _all = enter_all(&serializers);
                for c in &counters {
                    // SAFETY: inside every serializer.
                    unsafe { c.add(1) };
                }
            } else {
                let which = t - 2;
                let _one = serializers[which].enter();
                // SAFETY: inside serializer `which`, which protects counter `which`.
                unsafe { counters[which].add(1) };
            }
        }
    });
    for c in &counters {
        // SAFETY: all threads joined.
        assert_eq!(unsafe { c.get() }, (3 * n) as u64);
    }
}
