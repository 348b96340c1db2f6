//! `mpsafe-ifqueue`: the interface send queue beside the queues a driver
//! writer would otherwise reach for, all in the same run.
//!
//! Packets are pool indices (`Pkt(u32)`, 64 bytes, priority `id % 8`), so
//! the numbers are the queue's cost, not an allocator's. Every figure is per
//! packet (`Throughput::Elements`).
//!
//! * `single/per_packet`: 64 packets in, then 64 out, one lock (or atomic
//!   operation) per packet: `Mutex<VecDeque>`, `ArrayQueue`, `sync_channel`,
//!   `SendQueue<Fifo>` and `SendQueue<Priq>` (`enqueue` + `dequeue`).
//! * `single/burst64`: 64 in under one lock, 64 out under one lock:
//!   `Mutex<VecDeque>` (`push_back` ×64 or one bulk `extend`, then `drain`)
//!   and `SendQueue` (`lock()` + `Locked::enqueue` ×64, `dequeue_burst` into
//!   an `ArrayVec`), and `SendQueue::enqueue_burst` (one room computation,
//!   counters updated once) + `dequeue_burst`.
//! * `single/transmit_bundle_N`: `IfQueue::transmit` (enqueue + serialized
//!   start; the start routine drains into a sink) per packet with bundling
//!   threshold N = 1, 4, 16, `flush_bundle` after every 64: what bundling
//!   saves when the serializer is uncontended.
//! * `1p1c/*`: one producer thread, one consumer thread, 2 cores. Peers: the
//!   producer pushes (retrying when full), the consumer pops until it has
//!   them all. `ifq_start`: the producer `transmit`s, the consumer thread
//!   plays the second CPU calling `start()` in a loop; the start routine,
//!   on whichever thread holds the serializer, dequeues bursts of 64.
//!   `ifq_consumer_start`: the producer only enqueues, the consumer's
//!   `start()` drains (the pure hand-off). `ifq_start_bundle4`: as
//!   `ifq_start` with bundling 4.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use crossbeam_queue::ArrayQueue;
use mpsafe_ifqueue::{
    Config, Discipline, Dropped, Fifo, IfQueue, IfQueues, Packet, Priority, Priq, SendQueue, Start,
    StartTask, TaskOwner,
};

const BURST: usize = 64;
const CAP: usize = 1024;

/// A pool-index packet.
#[derive(Debug)]
struct Pkt(u32);

impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        64
    }
    fn priority(&self) -> Priority {
        Priority::new((self.0 % 8) as u8).expect("0..8")
    }
}

fn per_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/single/per_packet");
    g.throughput(Throughput::Elements(BURST as u64));

    let q = Mutex::new(VecDeque::with_capacity(CAP));
    g.bench_function("mutex_vecdeque", |b| {
        b.iter(|| {
            for i in 0..BURST as u32 {
                q.lock().unwrap().push_back(Pkt(i));
            }
            for _ in 0..BURST {
                black_box(q.lock().unwrap().pop_front());
            }
        })
    });

    let q = ArrayQueue::new(CAP);
    g.bench_function("array_queue", |b| {
        b.iter(|| {
            for i in 0..BURST as u32 {
                q.push(Pkt(i)).unwrap();
            }
            for _ in 0..BURST {
                black_box(q.pop());
            }
        })
    });

    let (tx, rx) = mpsc::sync_channel(CAP);
    g.bench_function("sync_channel", |b| {
        b.iter(|| {
            for i in 0..BURST as u32 {
                tx.try_send(Pkt(i)).unwrap();
            }
            for _ in 0..BURST {
                black_box(rx.try_recv().ok());
            }
        })
    });

    fn ifq<D: Discipline<Packet = Pkt>>(q: &SendQueue<D>) {
        for i in 0..BURST as u32 {
            q.enqueue(Pkt(i)).unwrap();
        }
        for _ in 0..BURST {
            black_box(q.dequeue());
        }
    }
    let fifo = SendQueue::new(Fifo::with_capacity(CAP), CAP).unwrap();
    g.bench_function("ifq_fifo", |b| b.iter(|| ifq(&fifo)));
    let priq = SendQueue::new(Priq::new(), CAP).unwrap();
    g.bench_function("ifq_priq", |b| b.iter(|| ifq(&priq)));
    g.finish();
}

fn burst(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/single/burst64");
    g.throughput(Throughput::Elements(BURST as u64));

    let q = Mutex::new(VecDeque::with_capacity(CAP));
    g.bench_function("mutex_vecdeque_push_loop", |b| {
        b.iter(|| {
            let mut l = q.lock().unwrap();
            for i in 0..BURST as u32 {
                l.push_back(Pkt(i));
            }
            drop(l);
            let mut out = ArrayVec::<Pkt, BURST>::new();
            out.extend(q.lock().unwrap().drain(..));
            black_box(out);
        })
    });
    g.bench_function("mutex_vecdeque_extend", |b| {
        b.iter(|| {
            q.lock().unwrap().extend((0..BURST as u32).map(Pkt));
            let mut out = ArrayVec::<Pkt, BURST>::new();
            out.extend(q.lock().unwrap().drain(..));
            black_box(out);
        })
    });

    fn ifq<D: Discipline<Packet = Pkt>>(q: &SendQueue<D>) {
        let mut l = q.lock();
        for i in 0..BURST as u32 {
            l.enqueue(Pkt(i)).unwrap();
        }
        drop(l);
        let mut out = ArrayVec::<Pkt, BURST>::new();
        q.dequeue_burst(&mut out, BURST);
        black_box(out);
    }
    let fifo = SendQueue::new(Fifo::with_capacity(CAP), CAP).unwrap();
    g.bench_function("ifq_fifo", |b| b.iter(|| ifq(&fifo)));
    let priq = SendQueue::new(Priq::new(), CAP).unwrap();
    g.bench_function("ifq_priq", |b| b.iter(|| ifq(&priq)));

    // `enqueue_burst`: one lock, one room computation, counters once.
    fn ifq_bulk<D: Discipline<Packet = Pkt>>(q: &SendQueue<D>) {
        let mut dropped = ArrayVec::<Dropped<Pkt>, BURST>::new();
        q.enqueue_burst((0..BURST as u32).map(Pkt), &mut dropped);
        debug_assert!(dropped.is_empty());
        let mut out = ArrayVec::<Pkt, BURST>::new();
        q.dequeue_burst(&mut out, BURST);
        black_box(out);
    }
    g.bench_function("ifq_fifo_enqueue_burst", |b| b.iter(|| ifq_bulk(&fifo)));
    g.bench_function("ifq_priq_enqueue_burst", |b| b.iter(|| ifq_bulk(&priq)));
    g.finish();
}

/// The start routine of the benches: dequeue bursts of 64 into a sink (the
/// "descriptor writes"), counting packets, until a burst comes back short.
#[derive(Default)]
struct Sink {
    sent: AtomicU64,
}

impl<D: Discipline<Packet = Pkt>> Start<D, mpsafe_ifqueue::DefaultLock> for Sink {
    fn start(&self, q: &SendQueue<D>, _owner: &TaskOwner<'_>) {
        let mut out = ArrayVec::<Pkt, BURST>::new();
        loop {
            let n = q.dequeue_burst(&mut out, BURST);
            if n > 0 {
                black_box(&out);
                out.clear();
                // Relaxed: a progress count; the consumer loop only polls it.
                self.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            // A short burst drained the queue: stop. A packet enqueued since
            // comes with its own start(), which the serializer hands to us.
            if n < BURST {
                break;
            }
        }
    }
}

fn transmit_bundling(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/single");
    g.throughput(Throughput::Elements(BURST as u64));
    for bundle in [1, 4, 16] {
        let q = IfQueue::new(
            Fifo::with_capacity(CAP),
            Config::with_maxlen(CAP).bundle(bundle),
            Sink::default(),
        )
        .unwrap();
        g.bench_function(format!("transmit_bundle_{bundle}"), |b| {
            b.iter(|| {
                for i in 0..BURST as u32 {
                    q.transmit(Pkt(i)).unwrap();
                }
                q.flush_bundle();
            })
        });
    }
    g.finish();
}

/// Waiting for the other thread: spin a little, then yield, so that on a
/// machine with more runnable threads than CPUs a waiter does not burn the
/// time slice the other side needs (the same for every variant).
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 64 {
        std::hint::spin_loop();
    } else {
        thread::yield_now();
    }
}

/// Runs `producer` on this thread and `consumer` on another until the
/// consumer returns; the time of the whole hand-off.
fn two_threads(producer: impl FnOnce(), consumer: impl FnOnce() + Send) -> Duration {
    thread::scope(|s| {
        let c = s.spawn(consumer);
        let start = Instant::now();
        producer();
        c.join().unwrap();
        start.elapsed()
    })
}

fn one_producer_one_consumer(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/1p1c");
    g.throughput(Throughput::Elements(1));

    g.bench_function("mutex_vecdeque", |b| {
        b.iter_custom(|iters| {
            let q = Mutex::new(VecDeque::with_capacity(CAP));
            two_threads(
                || {
                    for i in 0..iters {
                        q.lock().unwrap().push_back(Pkt(i as u32));
                    }
                },
                || {
                    let (mut got, mut spins) = (0, 0);
                    while got < iters {
                        let p = q.lock().unwrap().pop_front();
                        match p {
                            Some(p) => {
                                black_box(p);
                                got += 1;
                                spins = 0;
                            }
                            None => backoff(&mut spins),
                        }
                    }
                },
            )
        })
    });

    g.bench_function("array_queue", |b| {
        b.iter_custom(|iters| {
            let q = ArrayQueue::new(CAP);
            two_threads(
                || {
                    let mut spins = 0;
                    for i in 0..iters {
                        let mut p = Pkt(i as u32);
                        while let Err(back) = q.push(p) {
                            p = back;
                            backoff(&mut spins);
                        }
                    }
                },
                || {
                    let (mut got, mut spins) = (0, 0);
                    while got < iters {
                        match q.pop() {
                            Some(p) => {
                                black_box(p);
                                got += 1;
                                spins = 0;
                            }
                            None => backoff(&mut spins),
                        }
                    }
                },
            )
        })
    });

    g.bench_function("sync_channel", |b| {
        b.iter_custom(|iters| {
            let (tx, rx) = mpsc::sync_channel(CAP);
            two_threads(
                move || {
                    for i in 0..iters {
                        tx.send(Pkt(i as u32)).unwrap();
                    }
                },
                move || {
                    for _ in 0..iters {
                        black_box(rx.recv().unwrap());
                    }
                },
            )
        })
    });

    // The serialized start: both threads call start(); whoever holds the
    // serializer drains.
    for (name, bundle, producer_starts) in [
        ("ifq_start", 1, true),
        ("ifq_start_bundle4", 4, true),
        ("ifq_consumer_start", 1, false),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let q = IfQueue::new(
                    Fifo::with_capacity(CAP),
                    Config::with_maxlen(CAP).bundle(bundle),
                    Sink::default(),
                )
                .unwrap();
                two_threads(
                    || {
                        let mut spins = 0;
                        for i in 0..iters {
                            let mut p = Pkt(i as u32);
                            loop {
                                let r = if producer_starts {
                                    q.transmit(p)
                                } else {
                                    q.enqueue(p)
                                };
                                match r {
                                    Ok(()) => break,
                                    Err(d) => {
                                        p = d.into_packet();
                                        backoff(&mut spins);
                                    }
                                }
                            }
                        }
                    },
                    || {
                        let mut spins = 0;
                        let mut seen = 0;
                        while seen < iters {
                            if q.start() == mpsafe_ifqueue::Started::Deferred {
                                q.flush_bundle();
                            }
                            let now = q.driver().sent.load(Ordering::Relaxed);
                            if now == seen {
                                backoff(&mut spins);
                            } else {
                                (seen, spins) = (now, 0);
                            }
                        }
                    },
                )
            })
        });
    }
    g.finish();
}

/// The start routine of the two-CPU group: dequeue bursts of 32 into a
/// sink until a burst comes back short (the same work as the big-lock peer's
/// start routine below).
#[derive(Default)]
struct Sink32 {
    sent: AtomicU64,
}

const TX_BURST: usize = 32;

impl<D: Discipline<Packet = Pkt>, R: lock_api::RawMutex> Start<D, R> for Sink32 {
    fn start(&self, q: &SendQueue<D, R>, _owner: &TaskOwner<'_>) {
        let mut out = ArrayVec::<Pkt, TX_BURST>::new();
        loop {
            let n = q.dequeue_burst(&mut out, TX_BURST);
            if n > 0 {
                black_box(&out);
                out.clear();
                // Relaxed: a count read after the threads are joined.
                self.sent.fetch_add(n as u64, Ordering::Relaxed);
            }
            if n < TX_BURST {
                break;
            }
        }
    }
}

/// The big-lock design (the peer): one mutex around the queue and the start
/// routine; `transmit` takes it, enqueues, and runs the start routine.
struct BigLock {
    inner: Mutex<(VecDeque<Pkt>, u64)>,
}

impl BigLock {
    fn transmit(&self, p: Pkt) -> Result<(), Pkt> {
        let mut g = self.inner.lock().unwrap();
        let (q, sent) = &mut *g;
        if q.len() >= 256 {
            return Err(p);
        }
        q.push_back(p);
        // The start routine, under the same lock.
        loop {
            let mut out = ArrayVec::<Pkt, TX_BURST>::new();
            out.extend(q.drain(..q.len().min(TX_BURST)));
            let n = out.len();
            black_box(&out);
            *sent += n as u64;
            if n < TX_BURST {
                break;
            }
        }
        Ok(())
    }
}

/// Both threads run `send(i)` for their half of `iters` packets, retrying a
/// refused packet after a back-off; the time until both are done.
fn two_senders(iters: u64, send: impl Fn(Pkt) -> Result<(), Pkt> + Sync) -> Duration {
    let half = iters / 2;
    let run = |first: u64, n: u64| {
        let mut spins = 0;
        for i in first..first + n {
            let mut p = Pkt(i as u32);
            while let Err(back) = send(p) {
                p = back;
                backoff(&mut spins);
            }
        }
    };
    let begin = std::sync::Barrier::new(2);
    thread::scope(|s| {
        let other = s.spawn(|| {
            begin.wait();
            run(half, iters - half);
        });
        begin.wait();
        let start = Instant::now();
        run(0, half);
        other.join().unwrap();
        start.elapsed()
    })
}

/// Two CPUs transmitting onto one interface at once (seed 002's case): both
/// threads call `transmit`; the start routine drains bursts of 32. Peer: the
/// big lock around queue and start routine.
fn two_cpu_transmit(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/2cpu_transmit");
    g.throughput(Throughput::Elements(1));

    g.bench_function("big_lock", |b| {
        b.iter_custom(|iters| {
            let q = BigLock {
                inner: Mutex::new((VecDeque::with_capacity(256), 0)),
            };
            let t = two_senders(iters, |p| q.transmit(p));
            assert_eq!(q.inner.lock().unwrap().1, iters);
            t
        })
    });

    for (name, config) in [
        ("ifq_default", Config::default()),
        ("ifq_bundle4", Config::default().bundle(4)),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let q = IfQueue::new(Fifo::with_capacity(256), config, Sink32::default()).unwrap();
                let t = two_senders(iters, |p| q.transmit(p).map_err(Dropped::into_packet));
                q.flush_bundle();
                assert_eq!(q.driver().sent.load(Ordering::Relaxed), iters);
                t
            })
        });
    }
    // An interface with two send queues, one per transmit ring (em on an
    // 82571), and each CPU's flow on its own queue (what `IfQueues`'s flow
    // hash does for two flows that hash apart): the two CPUs share no line.
    // The big lock has no such row: one lock around both rings serializes
    // them exactly as it serializes one.
    g.bench_function("ifqs_queue_per_flow", |b| {
        b.iter_custom(|iters| {
            let ifqs: IfQueues<_, _, 2> = IfQueues::try_new(|_| {
                IfQueue::new(
                    Fifo::with_capacity(256),
                    Config::default(),
                    Sink32::default(),
                )
            })
            .unwrap();
            // `two_senders` gives the first thread packets below `half`.
            let half = (iters / 2) as u32;
            let t = two_senders(iters, |p| {
                let flow = usize::from(p.0 >= half);
                ifqs.queue(flow).transmit(p).map_err(Dropped::into_packet)
            });
            let sent: u64 = ifqs
                .queues()
                .iter()
                .map(|q| q.driver().sent.load(Ordering::Relaxed))
                .sum();
            assert_eq!(sent, iters);
            t
        })
    });
    // Delegated start (seed 002's "mpsafe taskqs"): both CPUs only enqueue
    // and post a request; a third thread, the task, runs the start routine.
    // Timed until the task has sent every packet.
    g.bench_function("ifq_delegated", |b| {
        b.iter_custom(|iters| {
            let q = IfQueue::new(
                Fifo::with_capacity(256),
                Config::default(),
                Sink32::default(),
            )
            .unwrap();
            let task: StartTask = StartTask::new();
            thread::scope(|s| {
                s.spawn(|| task.run(&q));
                let start = Instant::now();
                two_senders(iters, |p| {
                    task.transmit(&q, p).map_err(Dropped::into_packet)
                });
                let mut spins = 0;
                while q.driver().sent.load(Ordering::Relaxed) < iters {
                    backoff(&mut spins);
                }
                let t = start.elapsed();
                task.stop();
                t
            })
        })
    });

    // The default Config with the queue lock the crate used before (the
    // futex `RawSerializer`): what the spin-only default lock buys.
    g.bench_function("ifq_futex_lock", |b| {
        b.iter_custom(|iters| {
            let q: IfQueue<_, _, mpsafe_serializer::RawSerializer> = IfQueue::with_lock(
                Fifo::with_capacity(256),
                Config::default(),
                Sink32::default(),
            )
            .unwrap();
            let t = two_senders(iters, |p| q.transmit(p).map_err(Dropped::into_packet));
            assert_eq!(q.driver().sent.load(Ordering::Relaxed), iters);
            t
        })
    });

    g.finish();
}

/// The latency of a non-owner `transmit` (the call that enqueues, finds the
/// start routine running on the other CPU and returns), each call timed
/// alone with the TSC while both threads transmit; and, beside it, every
/// big-lock `transmit` timed the same way. Printed, not a criterion figure.
/// Runs when no filter is given or the filter names `2cpu`.
#[cfg(target_arch = "x86_64")]
fn non_owner_latency(_: &mut Criterion) {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};

    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    if !(filters.is_empty() || filters.iter().any(|f| f.contains("2cpu"))) {
        return;
    }

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
    let (t0, c0) = (Instant::now(), tsc());
    while t0.elapsed() < Duration::from_millis(50) {}
    let ticks_per_ns = (tsc() - c0) as f64 / t0.elapsed().as_nanos() as f64;
    let mut timer: Vec<u64> = (0..100_000)
        .map(|_| {
            let a = tsc();
            tsc() - a
        })
        .collect();
    let pct = |v: &mut Vec<u64>, p: usize| {
        v.sort_unstable();
        v.get(v.len() * p / 100)
            .map_or(f64::NAN, |&t| t as f64 / ticks_per_ns)
    };

    /// Runs `send` on two threads for a second; the measured thread times
    /// each call and keeps those `keep` says to.
    fn timed(send: impl Fn(u32) -> bool + Sync) -> (Vec<u64>, u64) {
        let stop = std::sync::atomic::AtomicBool::new(false);
        thread::scope(|s| {
            s.spawn(|| {
                let mut i = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    send(i);
                    i = i.wrapping_add(1);
                }
            });
            let (mut kept, mut calls) = (Vec::with_capacity(1 << 22), 0u64);
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(1) {
                for i in 0..1000 {
                    let a = tsc();
                    let keep = send(i);
                    let d = tsc() - a;
                    calls += 1;
                    if keep {
                        kept.push(d);
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
            (kept, calls)
        })
    }

    let q = IfQueue::new(
        Fifo::with_capacity(256),
        Config::default(),
        Sink32::default(),
    )
    .unwrap();
    // `transmit` is `enqueue` + `start`; split, so the call says whether it
    // ran the start routine.
    let (mut handed, calls) = timed(|i| {
        let queued = q.enqueue(Pkt(i)).is_ok();
        queued && q.start() == mpsafe_ifqueue::Started::Handed
    });
    println!(
        "ifqueue/2cpu_transmit/ifq_default non-owner transmit, each call timed with the TSC: \
         median {:.1} ns, p99 {:.1} ns ({} of {} calls were non-owner); timer alone median {:.1} ns",
        pct(&mut handed, 50),
        pct(&mut handed, 99),
        handed.len(),
        calls,
        pct(&mut timer, 50),
    );
    let big = BigLock {
        inner: Mutex::new((VecDeque::with_capacity(256), 0)),
    };
    let (mut all, calls) = timed(|i| big.transmit(Pkt(i)).is_ok());
    println!(
        "ifqueue/2cpu_transmit/big_lock transmit, each call timed with the TSC: \
         median {:.1} ns, p99 {:.1} ns ({} calls)",
        pct(&mut all, 50),
        pct(&mut all, 99),
        calls,
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn non_owner_latency(_: &mut Criterion) {}

criterion_group!(
    benches,
    two_cpu_transmit,
    non_owner_latency,
    per_packet,
    burst,
    transmit_bundling,
    one_producer_one_consumer
);
criterion_main!(benches);
