//! `mpsafe-order`: what a lock level costs. Each lock is taken uncontended,
//! on one thread, once through its plain API and once through an
//! [`Ordered`] declaration with a [`Ctx`] (two levels deep for the nested
//! pair), in the same run:
//!
//! * `order/mutex`: a `lock_api::Mutex<RawSerializer, u64>`, lock +
//!   increment + unlock;
//! * `order/serializer`: a blocking [`Serializer`], enter + exit;
//! * `order/nested`: a serializer and then the mutex under it (the ifnet →
//!   rx pattern), the second through the context the first re-typed;
//! * `order/ifq_transmit`: an interface queue's transmit (enqueue under the
//!   queue mutex, then the start routine dequeues it), `IfQueue::transmit`
//!   against `IfQueue::transmit_in` with the queue mutex at a level.
//!
//! In each group `plain` is the peer and `ordered` the entry compared.
//!
//! Benches build with the bench profile (release): the witness does not
//! exist there, the levels and contexts are zero-sized, and the ratios
//! should sit at 1 within noise.
#![allow(clippy::std_instead_of_core)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mpsafe_ifqueue::{Config, Fifo, IfQueue, Packet, SendQueue, TaskOwner};
use mpsafe_order::{Ctx, Ordered};
use mpsafe_serializer::{RawSerializer, Serializer};

mpsafe_order::lock_order! {
    /// The outer lock of the nested pair.
    pub Outer,
    /// The mutex.
    pub Inner,
}

type Mutex<T> = lock_api::Mutex<RawSerializer, T>;

fn uncontended(c: &mut Criterion) {
    let mut g = c.benchmark_group("order/mutex");
    g.throughput(Throughput::Elements(1));

    let plain = Mutex::new(0u64);
    g.bench_function("plain", |b| {
        b.iter(|| {
            *black_box(&plain).lock() += 1;
        })
    });
    let ordered: Ordered<Inner, Mutex<u64>> = Ordered::new(Mutex::new(0));
    g.bench_function("ordered", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new();
            let (mut n, _) = ctx.lock(black_box(&ordered));
            **n += 1;
        })
    });

    g.finish();

    let mut g = c.benchmark_group("order/serializer");
    g.throughput(Throughput::Elements(1));
    let plain: Serializer = Serializer::new();
    g.bench_function("plain", |b| b.iter(|| drop(black_box(&plain).enter())));
    let ordered: Ordered<Outer, Serializer> = Ordered::new(Serializer::new());
    g.bench_function("ordered", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new();
            drop(ctx.lock(black_box(&ordered)));
        })
    });

    g.finish();

    let mut g = c.benchmark_group("order/nested");
    g.throughput(Throughput::Elements(1));
    let (outer, inner): (Serializer, Mutex<u64>) = (Serializer::new(), Mutex::new(0));
    g.bench_function("plain", |b| {
        b.iter(|| {
            let _s = black_box(&outer).enter();
            *black_box(&inner).lock() += 1;
        })
    });
    let outer: Ordered<Outer, Serializer> = Ordered::new(Serializer::new());
    let inner: Ordered<Inner, Mutex<u64>> = Ordered::new(Mutex::new(0));
    g.bench_function("ordered", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new();
            let (_s, mut ctx) = ctx.lock(black_box(&outer));
            let (mut n, _) = ctx.lock(black_box(&inner));
            **n += 1;
        })
    });
    g.finish();

    let mut g = c.benchmark_group("order/ifq_transmit");
    g.throughput(Throughput::Elements(1));
    let drain = |q: &SendQueue<Fifo<Frame>>, _: &TaskOwner<'_>| {
        while let Some(f) = q.dequeue() {
            black_box(f);
        }
    };
    let plain = IfQueue::new(Fifo::new(), Config::default(), drain).unwrap();
    g.bench_function("plain", |b| {
        b.iter(|| black_box(&plain).transmit(Frame(1)).unwrap())
    });
    let ordered = IfQueue::new(Fifo::new(), Config::default(), drain).unwrap();
    g.bench_function("ordered", |b| {
        b.iter(|| {
            let mut ctx = Ctx::new();
            black_box(&ordered)
                .transmit_in::<Inner, _>(&mut ctx, Frame(1))
                .unwrap()
        })
    });
    g.finish();
}

/// A frame without a buffer: the queue's cost, not the allocator's.
#[derive(Debug)]
struct Frame(#[allow(dead_code)] u64);

impl Packet for Frame {
    fn byte_len(&self) -> usize {
        64
    }
}

criterion_group!(benches, uncontended);
criterion_main!(benches);
