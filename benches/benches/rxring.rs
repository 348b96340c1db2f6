//! `mpsafe-rxring`: one refill/complete accounting pair (`get(1)` + `put(1)`)
//! beside what a driver would otherwise use to count posted buffers, all in
//! the same run:
//!
//! * `ring/get_put`: [`RxRing`] in the same tick (the common case);
//! * `ring/get_put_new_tick`: the tick advances every call, so the watermark
//!   check runs each time;
//! * `ring/fill_take_one`: the RAII form, `reserve(1)` + `take_one` +
//!   `finish` (+ one `put` for the completion);
//! * `atomic_usize`: an `AtomicUsize` counter, `fetch_add` + `fetch_sub`
//!   (no watermarks at all: the floor a counter costs);
//! * `locked_spin/get_put`: [`LockedRxRing`] over the benches' TTAS [`SpinLock`],
//!   lock + get + put + unlock (what the seed-000 driver pays per pass);
//! * `std_mutex/get_put`: the same under `std::sync::Mutex<RxRing>`.
//!
//! Single thread, uncontended: the numbers are the cost of the accounting
//! itself; contention is the lock's business and is measured in the
//! serializer and em benches.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mpsafe_benches::SpinLock;
use mpsafe_rxring::{LockedRxRing, RxRing};

fn ring() -> RxRing {
    RxRing::new(1024, 1024, 0).expect("valid watermarks")
}

fn get_put(c: &mut Criterion) {
    let mut g = c.benchmark_group("rxring");
    g.throughput(Throughput::Elements(1));

    let mut r = ring();
    g.bench_function("ring/get_put", |b| {
        b.iter(|| {
            let n = r.get(black_box(1), black_box(0));
            r.put(black_box(n)).unwrap();
        })
    });

    let mut r = ring();
    let mut now = 0u64;
    g.bench_function("ring/get_put_new_tick", |b| {
        b.iter(|| {
            now = now.wrapping_add(1);
            let n = r.get(black_box(1), black_box(now));
            r.put(black_box(n)).unwrap();
        })
    });

    let mut r = ring();
    g.bench_function("ring/fill_take_one", |b| {
        b.iter(|| {
            let mut f = r.reserve(black_box(1), black_box(0));
            f.take_one();
            let n = f.finish();
            r.put(black_box(n)).unwrap();
        })
    });

    let counter = AtomicUsize::new(0);
    g.bench_function("atomic_usize", |b| {
        b.iter(|| {
            let c = black_box(&counter);
            c.fetch_add(1, Ordering::Relaxed);
            c.fetch_sub(1, Ordering::Relaxed);
        })
    });

    let locked: LockedRxRing<SpinLock> = LockedRxRing::new(ring(), ());
    g.bench_function("locked_spin/get_put", |b| {
        b.iter(|| {
            let mut guard = black_box(&locked).lock();
            let n = guard.get(black_box(1), black_box(0));
            guard.put(black_box(n)).unwrap();
        })
    });

    let mutex = Mutex::new(ring());
    g.bench_function("std_mutex/get_put", |b| {
        b.iter(|| {
            let mut guard = black_box(&mutex).lock().unwrap();
            let n = guard.get(black_box(1), black_box(0));
            guard.put(black_box(n)).unwrap();
        })
    });

    g.finish();
}

criterion_group!(benches, get_put);
criterion_main!(benches);
