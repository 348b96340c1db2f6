//! Serializer benchmarks: each primitive beside `std::sync::Mutex` and a
//! spinlock, measured in the same run.
//!
//! - `serializer/uncontended`: one thread enters and leaves, doing a trivial
//!   increment inside (Combiner::run, TaskSerializer::add, Serializer
//!   enter/drop, SerializerMutex lock, vs Mutex and SpinLock lock+unlock;
//!   the spin-only `SpinMutex` beside the `spin` crate's `spin::Mutex`).
//! - `serializer/2-threads`: a helper thread keeps requesting the same work
//!   (enqueue one packet, then `start()`); the measured thread does the same,
//!   so the figure is the cost of one `start()` call under contention. With
//!   the combiner most of the measured calls are non-owner calls that return
//!   at once; with the mutex every call waits for the lock.
//! - After the criterion groups, on x86_64, the non-owner calls alone are
//!   timed one by one with the TSC and their median printed, since that is
//!   what the combining serializer promises to keep short.
//!
//! `cargo bench -p mpsafe-benches --bench serializer -- --warm-up-time 1 --measurement-time 3`

#![allow(
    missing_docs,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc
)]

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mpsafe_benches::SpinLock;
use mpsafe_serializer::{
    Combiner, Serializer, SerializerMutex, Spin, SpinMutex, Task, TaskSerializer,
};

const START: Task = Task::new(0);

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("serializer/uncontended");

    let mutex = Mutex::new(0u64);
    g.bench_function("std::sync::Mutex lock+unlock", |b| {
        b.iter(|| *black_box(&mutex).lock().unwrap() += 1)
    });

    let spin = SpinLock::new();
    let mut spin_n = 0u64;
    g.bench_function("SpinLock lock+unlock", |b| {
        b.iter(|| {
            black_box(&spin).lock();
            spin_n += 1;
            spin.unlock();
        })
    });

    let combiner = Combiner::new();
    let mut comb_n = 0u64;
    g.bench_function("Combiner::run", |b| {
        b.iter(|| black_box(&combiner).run(|| comb_n += 1))
    });

    let tasks = TaskSerializer::new();
    let mut task_n = 0u64;
    g.bench_function("TaskSerializer::add", |b| {
        b.iter(|| black_box(&tasks).add(START, |_, _| task_n += 1))
    });

    let serializer: Serializer = Serializer::new();
    let mut ser_n = 0u64;
    g.bench_function("Serializer enter+drop", |b| {
        b.iter(|| {
            let _inside = black_box(&serializer).enter();
            ser_n += 1;
        })
    });

    let ser_mutex: SerializerMutex<u64> = SerializerMutex::new(0);
    g.bench_function("SerializerMutex lock", |b| {
        b.iter(|| *black_box(&ser_mutex).lock() += 1)
    });

    let spin_mutex: SerializerMutex<u64, Spin> = SerializerMutex::new(0);
    g.bench_function("SerializerMutex<Spin> lock", |b| {
        b.iter(|| *black_box(&spin_mutex).lock() += 1)
    });

    // The spin-only lock word (exit is a plain Release store) beside the
    // `spin` crate's mutex, the usual no_std pick.
    let spin_crate = spin::Mutex::new(0u64);
    g.bench_function("spin::Mutex lock", |b| {
        b.iter(|| *black_box(&spin_crate).lock() += 1)
    });

    let raw_spin: SpinMutex<u64> = SpinMutex::new(0);
    g.bench_function("SpinMutex lock", |b| {
        b.iter(|| *black_box(&raw_spin).lock() += 1)
    });

    g.finish();
    black_box((spin_n, comb_n, task_n, ser_n));
}

/// A send queue and the `start()` that drains it, through a combiner or a
/// mutex.
struct Driver {
    combiner: Combiner,
    queued: AtomicU64,
    sent: AtomicU64,
    locked: Mutex<u64>,
}

impl Driver {
    fn new() -> Self {
        Self {
            combiner: Combiner::new(),
            queued: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            locked: Mutex::new(0),
        }
    }

    /// Enqueue one packet and start: returns whether this call ran the work.
    #[inline]
    fn send_combined(&self) -> bool {
        self.queued.fetch_add(1, Relaxed);
        self.combiner.run(|| {
            let n = self.queued.swap(0, Relaxed);
            self.sent.fetch_add(n, Relaxed);
        })
    }

    #[inline]
    fn send_locked(&self) {
        *self.locked.lock().unwrap() += 1;
    }
}

/// Runs `f` on a helper thread in a loop while `measure` runs.
fn with_helper<R>(helper: impl Fn() + Sync, measure: impl FnOnce() -> R) -> R {
    let stop = AtomicBool::new(false);
    let started = AtomicBool::new(false);
    thread::scope(|s| {
        s.spawn(|| {
            started.store(true, Relaxed);
            while !stop.load(Relaxed) {
                helper();
            }
        });
        while !started.load(Relaxed) {
            std::hint::spin_loop();
        }
        let r = measure();
        stop.store(true, Relaxed);
        r
    })
}

fn two_threads(c: &mut Criterion) {
    let mut g = c.benchmark_group("serializer/2-threads");
    let drv = Driver::new();

    g.bench_function("std::sync::Mutex start()", |b| {
        b.iter_custom(|iters| {
            with_helper(
                || drv.send_locked(),
                || {
                    let t = Instant::now();
                    for _ in 0..iters {
                        drv.send_locked();
                    }
                    t.elapsed()
                },
            )
        })
    });

    let owner_calls = AtomicU64::new(0);
    let all_calls = AtomicU64::new(0);
    g.bench_function("Combiner start()", |b| {
        b.iter_custom(|iters| {
            with_helper(
                || {
                    drv.send_combined();
                },
                || {
                    let mut owned = 0;
                    let t = Instant::now();
                    for _ in 0..iters {
                        owned += u64::from(black_box(drv.send_combined()));
                    }
                    let elapsed = t.elapsed();
                    owner_calls.fetch_add(owned, Relaxed);
                    all_calls.fetch_add(iters, Relaxed);
                    elapsed
                },
            )
        })
    });
    g.finish();
    let all = all_calls.load(Relaxed);
    if all == 0 {
        return; // filtered out
    }
    println!(
        "serializer/2-threads/Combiner start(): measured thread was the owner in {:.1}% of its calls",
        100.0 * owner_calls.load(Relaxed) as f64 / all as f64
    );
}

/// Median latency of non-owner `start()` calls, each timed alone with the
/// TSC (x86_64 only; the TSC's rate is calibrated against `Instant`).
#[cfg(target_arch = "x86_64")]
fn non_owner_median(_: &mut Criterion) {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};

    fn tsc() -> u64 {
        // SAFETY: `lfence` and `rdtsc` exist on every x86_64 CPU; the fences
        // keep the timed call between the two reads.
        unsafe {
            _mm_lfence();
            let t = _rdtsc();
            _mm_lfence();
            t
        }
    }

    // Calibrate: TSC ticks per nanosecond, and the cost of the two reads
    // with nothing between them (reported, not subtracted: the call hides
    // part of it, so subtracting would understate).
    let (t0, c0) = (Instant::now(), tsc());
    while t0.elapsed() < Duration::from_millis(50) {}
    let ticks_per_ns = (tsc() - c0) as f64 / t0.elapsed().as_nanos() as f64;
    let mut timer: Vec<u64> = (0..100_000)
        .map(|_| {
            let a = tsc();
            tsc() - a
        })
        .collect();

    let drv = Driver::new();
    let (mut non_owner, calls) = with_helper(
        || {
            drv.send_combined();
        },
        || {
            let mut non_owner = Vec::with_capacity(1 << 20);
            let mut calls = 0u64;
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(2) {
                for _ in 0..1000 {
                    let a = tsc();
                    let owned = drv.send_combined();
                    let d = tsc() - a;
                    calls += 1;
                    if !owned {
                        non_owner.push(d);
                    }
                }
            }
            (non_owner, calls)
        },
    );
    let ns = |v: &mut Vec<u64>, p: usize| {
        v.sort_unstable();
        v.get(v.len() * p / 100)
            .map_or(f64::NAN, |&t| t as f64 / ticks_per_ns)
    };
    println!(
        "serializer/2-threads/Combiner non-owner start(), each call timed with the TSC: \
         median {:.1} ns, p90 {:.1} ns, including the timer itself (median {:.1} ns); \
         {} of {} calls were non-owner",
        ns(&mut non_owner, 50),
        ns(&mut non_owner, 90),
        ns(&mut timer, 50),
        non_owner.len(),
        calls,
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn non_owner_median(_: &mut Criterion) {}

criterion_group!(benches, uncontended, two_threads, non_owner_median);
criterion_main!(benches);
