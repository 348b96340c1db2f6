//! Barrier benchmarks, each beside the peer a driver author would otherwise
//! pick, measured in the same run:
//!
//! - `Gate` enter+exit vs `std::sync::RwLock` read lock+unlock (handlers take
//!   the read side, teardown the write side), one thread and two threads
//!   hammering the same gate/lock at once;
//! - `Gate::barrier` on an idle gate vs `RwLock` write lock+unlock;
//! - `Completion` signal+wait+reset vs a `Mutex<bool>` + `Condvar` pair.
//!
//! Run: `cargo bench -p mpsafe-benches --bench barrier -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::hint::black_box;
use std::sync::{Barrier, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mpsafe_barrier::{Completion, Gate};

fn gate_uncontended(c: &mut Criterion) {
    let mut group = c.benchmark_group("barrier/uncontended");
    group.throughput(Throughput::Elements(1));
    let gate: Gate = Gate::new();
    group.bench_function("gate_enter_exit", |b| {
        b.iter(|| gate.enter(|| black_box(1u64)))
    });
    group.bench_function("gate_enter_on_cpu_exit", |b| {
        b.iter(|| gate.enter_on(black_box(0), || black_box(1u64)))
    });
    let lock = RwLock::new(1u64);
    group.bench_function("rwlock_read_unlock", |b| {
        b.iter(|| *black_box(&lock).read().unwrap())
    });
    group.bench_function("gate_barrier_idle", |b| b.iter(|| gate.barrier()));
    group.bench_function("rwlock_write_unlock_idle", |b| {
        b.iter(|| drop(black_box(&lock).write().unwrap()))
    });
    group.finish();
}

/// Two threads each run `op` `iters` times, started together; returns the
/// wall time, so one "iteration" is one operation on each thread.
fn two_threads(iters: u64, op: impl Fn() + Sync) -> Duration {
    let start = Barrier::new(3);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                start.wait();
                for _ in 0..iters {
                    op();
                }
            });
        }
        start.wait();
        let began = Instant::now();
        // Joining the scope is part of the measurement.
        began
    })
    .elapsed()
}

fn gate_two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("barrier/2-threads");
    // Each iteration is one enter+exit on each of the two threads.
    group.throughput(Throughput::Elements(2));
    let gate: Gate = Gate::new();
    group.bench_function("gate_enter_exit", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                gate.enter(|| black_box(1u64));
            })
        })
    });
    let lock = RwLock::new(1u64);
    group.bench_function("rwlock_read_unlock", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(*lock.read().unwrap());
            })
        })
    });
    group.finish();
}

fn completion(c: &mut Criterion) {
    let mut group = c.benchmark_group("barrier/completion");
    group.throughput(Throughput::Elements(1));
    let mut done: Completion = Completion::new();
    group.bench_function("completion_signal_wait_reset", |b| {
        b.iter(|| {
            done.signal();
            done.wait();
            done.reset();
        })
    });
    let pair = (Mutex::new(false), Condvar::new());
    group.bench_function("mutex_condvar_signal_wait_reset", |b| {
        b.iter(|| {
            let (flag, cond) = &pair;
            *flag.lock().unwrap() = true;
            cond.notify_all();
            let mut set = flag.lock().unwrap();
            while !*set {
                set = cond.wait(set).unwrap();
            }
            *set = false;
        })
    });
    group.finish();
}

criterion_group!(benches, gate_uncontended, gate_two_threads, completion);
criterion_main!(benches);
