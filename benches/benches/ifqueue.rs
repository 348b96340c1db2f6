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
/// Runs when no filter is given or a filter is part of the group name.
/// The time-stamp counter, fenced so a timed call stays between two reads.
#[cfg(target_arch = "x86_64")]
fn tsc() -> u64 {
    use std::arch::x86_64::{_mm_lfence, _rdtsc};
    // SAFETY: `lfence` and `rdtsc` exist on every x86_64 CPU; the fences
    // keep the timed call between the two reads.
    unsafe {
        _mm_lfence();
        let t = _rdtsc();
        _mm_lfence();
        t
    }
}

/// TSC ticks per nanosecond, measured once against `Instant` over 50 ms.
#[cfg(target_arch = "x86_64")]
fn ticks_per_ns() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        let (t0, c0) = (Instant::now(), tsc());
        while t0.elapsed() < Duration::from_millis(50) {}
        (tsc() - c0) as f64 / t0.elapsed().as_nanos() as f64
    })
}

/// Whether the command line's name filter (none, or one that `what`
/// contains) selects a printed measurement that is not a criterion
/// benchmark. A filter may hold one alternation group, as criterion's
/// regex would (`2cpu_(kernel_lock|owner)`): each alternative is tried.
fn selected(what: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-') && a.parse::<f64>().is_err())
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| alternatives(f).iter().any(|a| what.contains(a)))
}

/// `a(b|c)d` as `abd` and `acd`; anything else as itself.
fn alternatives(filter: &str) -> Vec<String> {
    match (filter.find('('), filter.find(')')) {
        (Some(open), Some(close)) if open < close => filter[open + 1..close]
            .split('|')
            .map(|alt| format!("{}{alt}{}", &filter[..open], &filter[close + 1..]))
            .collect(),
        _ => vec![filter.to_owned()],
    }
}

#[cfg(target_arch = "x86_64")]
fn non_owner_latency(_: &mut Criterion) {
    if !selected("ifqueue/2cpu_transmit") {
        return;
    }

    let ticks_per_ns = ticks_per_ns();
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

// ---------------------------------------------------------------------------
// The big lock the seeds mean: the rest of the kernel takes it too.

/// Lengths of the non-network big-lock sections, in nanoseconds.
const HOLDS_NS: [u64; 4] = [10, 200, 1_000, 10_000];
/// Nominal share of each CPU's time spent in those sections, in percent.
const DUTIES_PCT: [u64; 3] = [10, 30, 50];

/// What the kernel's big lock protects in these benches: a counter the
/// non-network work bumps, and for the big-lock design the send queue and
/// the start routine's state (one lock around all of it, as `KERNEL_LOCK`
/// was around `if_start` before seed 002).
struct Kernel {
    work: u64,
    queue: VecDeque<Pkt>,
    sent: u64,
}

/// The big lock: a spinning lock, as OpenBSD's `KERNEL_LOCK` spins (the
/// serializer crate's `RawSpinMutex`, which yields after a short spin under
/// `std` so a preempted holder gets to run on a shared machine).
type BigKernelLock = lock_api::Mutex<mpsafe_serializer::RawSpinMutex, Kernel>;

fn big_kernel_lock() -> BigKernelLock {
    lock_api::Mutex::new(Kernel {
        work: 0,
        queue: VecDeque::with_capacity(256),
        sent: 0,
    })
}

/// Busy work of `iters` dependent additions (see [`burn_per_ns`]).
#[inline(never)]
fn burn(iters: u64) {
    let mut x = 0u64;
    for i in 0..iters {
        x = black_box(x.wrapping_add(i));
    }
    black_box(x);
}

/// [`burn`] iterations per nanosecond on this machine, measured once.
fn burn_per_ns() -> f64 {
    static RATE: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *RATE.get_or_init(|| {
        burn(1_000_000);
        let n = 50_000_000;
        let t = Instant::now();
        burn(n);
        n as f64 / t.elapsed().as_nanos() as f64
    })
}

/// The big-lock design's `transmit`: the kernel lock around the enqueue
/// and the start routine (the same bursts of 32 as [`Sink32`]).
fn big_lock_transmit(k: &BigKernelLock, p: Pkt) -> Result<(), Pkt> {
    let mut g = k.lock();
    let Kernel { queue, sent, .. } = &mut *g;
    if queue.len() >= 256 {
        return Err(p);
    }
    queue.push_back(p);
    loop {
        let mut out = ArrayVec::<Pkt, TX_BURST>::new();
        out.extend(queue.drain(..queue.len().min(TX_BURST)));
        let n = out.len();
        black_box(&out);
        *sent += n as u64;
        if n < TX_BURST {
            break;
        }
    }
    Ok(())
}

/// One CPU's cycle for a hold length and duty cycle: `hold` burn iterations
/// under the big lock, then transmitting until `gap` ticks have passed
/// since the hold ended, so the non-network work takes `duty` percent of
/// the CPU's time whatever the transmits cost (the rest of the kernel runs
/// at its own pace, not at the network's). The clock is read after every
/// packet when the gap is short, after every eighth otherwise; the read is
/// outside any lock, on both designs alike.
#[derive(Clone, Copy)]
struct Mix {
    hold: u64,
    gap: u64,
    check_every: u64,
}

impl Mix {
    fn new(hold_ns: u64, duty_pct: u64) -> Self {
        let gap_ns = hold_ns as f64 * (100 - duty_pct) as f64 / duty_pct as f64;
        Self {
            hold: (hold_ns as f64 * burn_per_ns()).round().max(1.0) as u64,
            gap: (gap_ns * ticks_per_ns_any()).round() as u64,
            check_every: if gap_ns < 1_000.0 { 1 } else { 8 },
        }
    }
}

/// The window clock: the TSC without fences on x86_64 (a window end need
/// not be exact), else [`tick`].
#[inline]
fn window_tick() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86_64 CPU.
        unsafe { std::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        tick()
    }
}

/// One CPU's share of a kernel-lock run: the non-network section under the
/// big lock, then transmitting for the rest of the cycle, repeated until it
/// has sent `quota` packets numbered from `first` (or `stop` is set). With
/// `keep`, every eighth call is timed with the fenced TSC and handed to
/// `keep` if `send` says so.
#[allow(clippy::too_many_arguments)]
fn kernel_cpu(
    k: &BigKernelLock,
    mix: Mix,
    first: u64,
    quota: u64,
    stop: Option<&std::sync::atomic::AtomicBool>,
    send: &(impl Fn(Pkt) -> Result<bool, Pkt> + Sync),
    mut keep: Option<&mut Vec<u64>>,
) -> u64 {
    let end = first.saturating_add(quota);
    let mut i = first;
    let mut spins = 0;
    while i < end && !stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
        {
            let mut g = k.lock();
            g.work += 1;
            burn(mix.hold);
        }
        let until = window_tick() + mix.gap;
        loop {
            let timed = keep.is_some() && i % 8 == 0;
            let mut p = Pkt(i as u32);
            loop {
                let a = if timed { tick() } else { 0 };
                match send(p) {
                    Ok(kept) => {
                        if timed && kept {
                            let d = tick() - a;
                            if let Some(v) = keep.as_deref_mut() {
                                v.push(d);
                            }
                        }
                        break;
                    }
                    Err(back) => {
                        p = back;
                        backoff(&mut spins);
                    }
                }
            }
            i += 1;
            if i == end || (i % mix.check_every == 0 && window_tick() >= until) {
                break;
            }
        }
    }
    i - first
}

/// The TSC on x86_64; elsewhere nanoseconds from `Instant` (the latency
/// tables are then in nanoseconds too).
fn tick() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        tsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        T0.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// [`tick`]s per nanosecond.
fn ticks_per_ns_any() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        ticks_per_ns()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1.0
    }
}

/// Both CPUs run [`kernel_cpu`] for half of `iters` packets each; the time
/// until both are done.
fn two_kernel_cpus(
    k: &BigKernelLock,
    iters: u64,
    mix: Mix,
    send: &(impl Fn(Pkt) -> Result<bool, Pkt> + Sync),
) -> Duration {
    let half = iters / 2;
    let begin = std::sync::Barrier::new(2);
    thread::scope(|s| {
        let other = s.spawn(|| {
            begin.wait();
            kernel_cpu(k, mix, half, iters - half, None, send, None);
        });
        begin.wait();
        let start = Instant::now();
        kernel_cpu(k, mix, 0, half, None, send, None);
        other.join().unwrap();
        start.elapsed()
    })
}

fn mix_name(hold_ns: u64, duty: u64) -> String {
    format!("{hold_ns}ns_{duty}pct")
}

/// Two CPUs transmitting onto one interface while both also run other
/// kernel work under the big lock, for each hold length and duty cycle:
/// `big_lock` takes the same lock to transmit; `ifq_default` (one send
/// queue) and `ifqs_queue_per_flow` (a send queue per CPU's flow) never do.
fn kernel_lock(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/2cpu_kernel_lock");
    g.throughput(Throughput::Elements(1));
    for duty in DUTIES_PCT {
        for hold_ns in HOLDS_NS {
            let mix = Mix::new(hold_ns, duty);
            let param = mix_name(hold_ns, duty);
            g.bench_function(criterion::BenchmarkId::new("big_lock", &param), |b| {
                b.iter_custom(|iters| {
                    let k = big_kernel_lock();
                    let t = two_kernel_cpus(&k, iters, mix, &|p| {
                        big_lock_transmit(&k, p).map(|()| false)
                    });
                    assert_eq!(k.lock().sent, iters);
                    t
                })
            });
            g.bench_function(criterion::BenchmarkId::new("ifq_default", &param), |b| {
                b.iter_custom(|iters| {
                    let k = big_kernel_lock();
                    let q = IfQueue::new(
                        Fifo::with_capacity(256),
                        Config::default(),
                        Sink32::default(),
                    )
                    .unwrap();
                    let t = two_kernel_cpus(&k, iters, mix, &|p| {
                        q.transmit(p).map(|()| false).map_err(Dropped::into_packet)
                    });
                    assert_eq!(q.driver().sent.load(Ordering::Relaxed), iters);
                    t
                })
            });
            // Two send queues, each CPU's flow on its own (as in
            // `2cpu_transmit`): the transmits share no line, only the
            // non-network work meets on the big lock.
            g.bench_function(
                criterion::BenchmarkId::new("ifqs_queue_per_flow", &param),
                |b| {
                    b.iter_custom(|iters| {
                        let k = big_kernel_lock();
                        let ifqs: IfQueues<_, _, 2> = IfQueues::try_new(|_| {
                            IfQueue::new(
                                Fifo::with_capacity(256),
                                Config::default(),
                                Sink32::default(),
                            )
                        })
                        .unwrap();
                        // `two_kernel_cpus` gives the first CPU packets below `half`.
                        let half = iters / 2;
                        let t = two_kernel_cpus(&k, iters, mix, &|p| {
                            let flow = usize::from(u64::from(p.0) >= half);
                            ifqs.queue(flow)
                                .transmit(p)
                                .map(|()| false)
                                .map_err(Dropped::into_packet)
                        });
                        let sent: u64 = ifqs
                            .queues()
                            .iter()
                            .map(|q| q.driver().sent.load(Ordering::Relaxed))
                            .sum();
                        assert_eq!(sent, iters);
                        t
                    })
                },
            );
        }
    }
    g.finish();
}

/// Formats ticks as nanoseconds.
fn ns(ticks: Option<u64>) -> String {
    ticks.map_or("–".into(), |t| {
        format!("{:.0} ns", t as f64 / ticks_per_ns_any())
    })
}

/// The median cost of the timer itself (two reads), in ticks.
fn timer_alone() -> u64 {
    let mut v: Vec<u64> = (0..100_000)
        .map(|_| {
            let a = tick();
            tick() - a
        })
        .collect();
    v.sort_unstable();
    mpsafe_benches::percentile(&v, 50.0).unwrap_or(0)
}

/// Runs `send` on both CPUs under `mix` for `millis` and returns the kept
/// call times of both, sorted.
fn kernel_latency_run(
    mix: Mix,
    millis: u64,
    k: &BigKernelLock,
    send: &(impl Fn(Pkt) -> Result<bool, Pkt> + Sync),
) -> Vec<u64> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut all = thread::scope(|s| {
        let other = s.spawn(|| {
            let mut v = Vec::with_capacity(1 << 20);
            kernel_cpu(k, mix, 1 << 40, u64::MAX, Some(&stop), send, Some(&mut v));
            v
        });
        let mut v = Vec::with_capacity(1 << 20);
        let t = Instant::now();
        let mut i = 0;
        while t.elapsed() < Duration::from_millis(millis) {
            i += kernel_cpu(k, mix, i, 4096, None, send, Some(&mut v));
        }
        stop.store(true, Ordering::Relaxed);
        v.extend(other.join().unwrap());
        v
    });
    all.sort_unstable();
    all
}

/// The `transmit` latency under the same load as `2cpu_kernel_lock`: one
/// call in eight timed with the TSC on both CPUs, 0.3 s per case; for
/// `ifq_default` only the calls that found the start routine running on
/// the other CPU (non-owner calls), for `big_lock` every timed call.
/// Written as the table `ifqueue/2cpu_kernel_lock_latency` for RESULTS.md.
fn kernel_lock_latency(_: &mut Criterion) {
    let group = "ifqueue/2cpu_kernel_lock_latency";
    if !selected(group) {
        return;
    }
    let timer = timer_alone();
    let mut rows = vec![(
        "timer alone".to_string(),
        vec!["".into(), ns(Some(timer)), "".into(), "".into()],
    )];
    for duty in DUTIES_PCT {
        for hold_ns in HOLDS_NS {
            let mix = Mix::new(hold_ns, duty);
            let param = mix_name(hold_ns, duty);
            let k = big_kernel_lock();
            let big =
                kernel_latency_run(mix, 300, &k, &|p| big_lock_transmit(&k, p).map(|()| true));
            let k = big_kernel_lock();
            let q = IfQueue::new(
                Fifo::with_capacity(256),
                Config::default(),
                Sink32::default(),
            )
            .unwrap();
            let ifq = kernel_latency_run(mix, 300, &k, &|p| match q.enqueue(p) {
                Ok(()) => Ok(q.start() == mpsafe_ifqueue::Started::Handed),
                Err(d) => Err(d.into_packet()),
            });
            let p99 = |v: &[u64]| mpsafe_benches::percentile(v, 99.0);
            let ratio = match (p99(&big), p99(&ifq)) {
                (Some(b), Some(i)) if i > 0 => format!("{:.1}×", b as f64 / i as f64),
                _ => "–".into(),
            };
            for (name, v, r) in [
                ("big_lock", &big, "1.0×".to_string()),
                ("ifq_default_non_owner", &ifq, ratio),
            ] {
                rows.push((
                    format!("{name}/{param}"),
                    vec![
                        v.len().to_string(),
                        ns(mpsafe_benches::percentile(v, 50.0)),
                        ns(p99(v)),
                        r,
                    ],
                ));
            }
        }
    }
    let tails = mpsafe_benches::Tails {
        group: group.into(),
        peer: Some("big_lock".into()),
        about:
            "`transmit` latency under the load of `ifqueue/2cpu_kernel_lock` (hold length, duty \
                cycle): one call in eight timed with the TSC on both CPUs, 0.3 s per case; every \
                timed `big_lock` call, and the timed `ifq_default` calls that found the start \
                routine running on the other CPU (non-owner). Times include the timer (its median \
                is the first row). *p99 vs peer* is `big_lock`'s p99 over this row's, same case."
                .into(),
        columns: ["calls kept", "p50", "p99", "p99 vs peer"]
            .map(String::from)
            .to_vec(),
        rows,
    };
    match tails.write() {
        Ok(path) => println!("{group}: wrote {}", path.display()),
        Err(e) => println!("{group}: cannot write the table: {e}"),
    }
}

// ---------------------------------------------------------------------------
// The owner of the start serializer as a victim, and its bound.

/// Owner bounds measured, `None` first (the peer: no bound).
const BOUNDS: [Option<usize>; 4] = [None, Some(4), Some(16), Some(64)];

fn bound_name(bound: Option<usize>) -> String {
    bound.map_or("no_bound".into(), |n| format!("bound_{n}"))
}

/// [`Sink32`] that also notes, on the thread running it, the tick of the
/// first pass of an ownership (for `owner_time`; the queue of
/// `owner_bound` uses it too, so both measure the same routine).
#[derive(Default)]
struct TimedSink {
    sink: Sink32,
}

thread_local! {
    /// The tick at which this thread's current ownership ran its first pass
    /// (0: none yet).
    static OWNER_SINCE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Whether this thread notes [`OWNER_SINCE`] at all (only the timed
    /// senders do: the start task's thread and untimed runs never read it).
    static NOTE_OWNER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<D: Discipline<Packet = Pkt>, R: lock_api::RawMutex> Start<D, R> for TimedSink {
    fn start(&self, q: &SendQueue<D, R>, owner: &TaskOwner<'_>) {
        if NOTE_OWNER.get() && OWNER_SINCE.get() == 0 {
            OWNER_SINCE.set(tick());
        }
        Start::<D, R>::start(&self.sink, q, owner);
    }
}

fn bounded_queue(bound: Option<usize>) -> IfQueue<Fifo<Pkt>, TimedSink> {
    let config = match bound {
        Some(n) => Config::default().owner_bound(n),
        None => Config::default(),
    };
    IfQueue::new(Fifo::with_capacity(256), config, TimedSink::default()).unwrap()
}

/// Two CPUs transmitting flat out onto one queue (as `2cpu_transmit`'s
/// `ifq_default`), with the queue's start task running on a third thread,
/// for each owner bound; timed until every packet is sent.
fn owner_bound(c: &mut Criterion) {
    let mut g = c.benchmark_group("ifqueue/2cpu_owner_bound");
    g.throughput(Throughput::Elements(1));
    for bound in BOUNDS {
        g.bench_function(bound_name(bound), |b| {
            b.iter_custom(|iters| {
                let q = bounded_queue(bound);
                thread::scope(|s| {
                    s.spawn(|| q.start_task().run(&q));
                    let start = Instant::now();
                    two_senders(iters, |p| q.transmit(p).map_err(Dropped::into_packet));
                    let mut spins = 0;
                    while q.driver().sink.sent.load(Ordering::Relaxed) < iters {
                        backoff(&mut spins);
                    }
                    let t = start.elapsed();
                    q.start_task().stop();
                    t
                })
            })
        });
    }
    g.finish();
}

/// How long a `transmit` that became the owner spends as the owner: from
/// its first start pass (noted by [`TimedSink`]) to `start` returning, on
/// both CPUs transmitting flat out for 0.5 s per bound, the start task
/// running. Only owner calls read the TSC, so the load stays sustained.
/// Written as the table `ifqueue/2cpu_owner_time`.
fn owner_time(_: &mut Criterion) {
    let group = "ifqueue/2cpu_owner_time";
    if !selected(group) {
        return;
    }
    let timer = timer_alone();
    let mut rows = vec![(
        "timer alone".to_string(),
        vec![
            "".into(),
            ns(Some(timer)),
            "".into(),
            "".into(),
            "".into(),
            "".into(),
        ],
    )];
    for bound in BOUNDS {
        let q = bounded_queue(bound);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let sender = |first: u32, leader: bool| {
            NOTE_OWNER.set(true);
            let mut v = Vec::with_capacity(1 << 21);
            let (mut i, mut calls) = (first, 0u64);
            let t = Instant::now();
            let mut spins = 0;
            while !stop.load(Ordering::Relaxed) {
                if leader && t.elapsed() > Duration::from_millis(500) {
                    stop.store(true, Ordering::Relaxed);
                }
                for _ in 0..256 {
                    let mut p = Pkt(i);
                    while let Err(d) = q.enqueue(p) {
                        p = d.into_packet();
                        backoff(&mut spins);
                    }
                    if q.start() == mpsafe_ifqueue::Started::Ran {
                        let since = OWNER_SINCE.replace(0);
                        if since != 0 {
                            v.push(tick() - since);
                        }
                    }
                    i = i.wrapping_add(1);
                    calls += 1;
                }
            }
            NOTE_OWNER.set(false);
            (v, calls)
        };
        let (mut owner, calls) = thread::scope(|s| {
            s.spawn(|| q.start_task().run(&q));
            let other = s.spawn(|| sender(1 << 30, false));
            let (mut v, mut calls) = sender(0, true);
            let (w, c) = other.join().unwrap();
            v.extend(w);
            calls += c;
            q.start_task().stop();
            (v, calls)
        });
        owner.sort_unstable();
        let pct = |p| mpsafe_benches::percentile(&owner, p);
        // The tail over the median with the timer's own cost taken out of
        // both, so the timer does not flatter the ratio.
        let tail = match (pct(99.9), pct(50.0)) {
            (Some(t), Some(m)) if m > timer => {
                format!("{:.1}", t.saturating_sub(timer) as f64 / (m - timer) as f64)
            }
            _ => "–".into(),
        };
        rows.push((
            bound_name(bound),
            vec![
                format!("{} of {calls}", owner.len()),
                ns(pct(50.0)),
                ns(pct(99.0)),
                ns(pct(99.9)),
                ns(owner.last().copied()),
                tail,
            ],
        ));
    }
    let tails = mpsafe_benches::Tails {
        group: group.into(),
        peer: Some("no_bound".into()),
        about: "Two CPUs transmitting flat out onto one queue (the load of \
                `ifqueue/2cpu_owner_bound`), the start task running: for each call that made its \
                caller the owner of the start serializer, the time from its first start pass to \
                `start` returning (TSC; owner calls only, so the load stays sustained), 0.5 s per \
                bound. Times include one timer read (its median, two reads, is the first row); \
                *p99.9 / p50* has the timer's median taken out of both."
            .into(),
        columns: ["owner calls", "p50", "p99", "p99.9", "max", "p99.9 / p50"]
            .map(String::from)
            .to_vec(),
        rows,
    };
    match tails.write() {
        Ok(path) => println!("{group}: wrote {}", path.display()),
        Err(e) => println!("{group}: cannot write the table: {e}"),
    }
}

criterion_group!(
    benches,
    two_cpu_transmit,
    non_owner_latency,
    kernel_lock,
    kernel_lock_latency,
    owner_bound,
    owner_time,
    per_packet,
    burst,
    transmit_bundling,
    one_producer_one_consumer
);
criterion_main!(benches);
