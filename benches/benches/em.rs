//! `mpsafe-em`: the reference driver end to end, in its three locking modes,
//! measured in the same run so the ratios to `BigLock` (the peer: what a
//! driver is before it is made MP-safe) compare like with like.
//!
//! One element is one frame's round trip through the whole stack: allocate,
//! `transmit` (send queue, start routine, tx descriptor, `TDT` doorbell), the
//! simulated device sends it and loops it back into a posted rx descriptor,
//! the interrupt thread runs tx completion, rx completion, refill, and hands
//! the frame to the stack, which frees it. The producer runs on its own
//! thread against the interrupt thread and the device thread, so the big
//! lock is contended exactly where the seeds say it hurts: `start` against
//! the interrupt handler.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mpsafe_em::cpu::process_cpu_time;
use mpsafe_em::measure::ThreadCpu;
use mpsafe_em::{
    Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink, TxStart, WireRate,
};

struct Pipeline {
    pool: Pool,
    dev: Arc<Device>,
    sink: Arc<Sink>,
    em: Em<Device>,
}

fn pipeline(mode: Mode) -> Pipeline {
    let mut cfg = EmConfig::new(mode);
    // Rx ring larger than tx ring + send queue: every looped frame finds a
    // descriptor once the ring has grown.
    cfg.rx_desc = 2048;
    pipeline_with(cfg, true)
}

/// The driver in `cfg`, up, on a device with no wire traffic that loops
/// transmitted frames back or not.
fn pipeline_with(cfg: EmConfig, loopback: bool) -> Pipeline {
    let pool = Pool::new(4096 * 3, 2048);
    let dev = Device::new(
        DeviceConfig {
            wire: WireRate::Off,
            loopback,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .expect("device");
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        Arc::clone(&dev),
        cfg,
        Arc::new(KernelLock::new()),
        sink.clone(),
    )
    .expect("attach");
    em.up().expect("up");
    Pipeline {
        pool,
        dev,
        sink,
        em,
    }
}

impl Pipeline {
    /// Pushes `n` frames through and returns the time until each was
    /// received (or, rarely, missed by the device and counted).
    fn round_trips(&self, n: u64) -> Duration {
        let done0 = self.sink.packets() + self.dev.stats().missed;
        let t = Instant::now();
        let mut sent = 0;
        let mut seq = 0;
        while sent < n {
            let Some(mut m) = self.pool.alloc() else {
                thread::sleep(Duration::from_micros(20));
                continue;
            };
            seq += 1;
            m.fill(60, seq);
            match self.em.transmit(0, m) {
                Ok(()) => sent += 1,
                Err(e) => {
                    // Send queue full: back off like a stack would.
                    e.into_packet().free();
                    thread::sleep(Duration::from_micros(20));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sink.packets() + self.dev.stats().missed < done0 + n {
            assert!(Instant::now() < deadline, "pipeline stalled");
            thread::sleep(Duration::from_micros(20));
        }
        t.elapsed()
    }

    /// Two threads transmit `n` frames onto send queue 0 between them, in
    /// bursts of 32 with a [`Em::flush_tx`] after each (the stack's end of
    /// a batch, which a bundled start waits for); returns when the device
    /// has sent and the driver completed every one.
    fn two_senders(&self, n: u64) {
        let done = self.em.stats().tx_completed + n;
        let send = |count: u64| {
            let mut sent = 0;
            while sent < count {
                for _ in 0..32.min(count - sent) {
                    let Some(mut m) = self.pool.alloc() else {
                        break;
                    };
                    m.fill(60, sent);
                    match self.em.transmit(0, m) {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            // Send queue full: back off like a stack would.
                            e.into_packet().free();
                            break;
                        }
                    }
                }
                self.em.flush_tx(0);
                thread::yield_now();
            }
        };
        thread::scope(|s| {
            let other = s.spawn(|| send(n / 2));
            send(n - n / 2);
            other.join().expect("sender");
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.em.stats().tx_completed < done {
            assert!(Instant::now() < deadline, "transmit stalled");
            thread::sleep(Duration::from_micros(20));
        }
    }

    /// Down, the pool checked, the device stopped.
    fn finish(self) {
        self.em.down();
        let s = self.pool.stats();
        assert_eq!((s.in_use(), s.leaked), (0, 0), "{s}");
        drop(self.em);
        self.dev.shutdown();
    }
}

/// The driver side's CPU time while `work` runs: process CPU (every thread)
/// less the simulated device's DMA and wire thread (`em-device`), read from
/// its own CPU clock.
fn driver_cpu(work: impl FnOnce()) -> Duration {
    let (c0, t0) = (process_cpu_time(), ThreadCpu::snapshot());
    work();
    let (c1, t1) = (process_cpu_time(), ThreadCpu::snapshot());
    let process = c1
        .zip(c0)
        .map_or(Duration::ZERO, |(b, a)| b.saturating_sub(a));
    let device = t1
        .zip(t0)
        .map_or(Duration::ZERO, |(b, a)| b.named_since(&a, "em-device"));
    process.saturating_sub(device)
}

/// Whether this platform has the CPU clocks [`driver_cpu`] reads.
fn have_cpu_clocks() -> bool {
    process_cpu_time().is_some() && ThreadCpu::snapshot().is_some()
}

fn em(c: &mut Criterion) {
    let mut g = c.benchmark_group("em/loopback_round_trip");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let p = pipeline(mode);
        // Warm the rx ring watermark up to its high mark.
        p.round_trips(20_000);
        g.bench_function(mode.name(), |b| b.iter_custom(|iters| p.round_trips(iters)));
        p.finish();
    }
    g.finish();
}

/// The same round trips, timed by the driver side's CPU time instead of
/// wall time: process CPU (every thread) less the simulated device's DMA
/// and wire thread (`em-device`), read from its own CPU clock. On a shared
/// machine wall time moves with whatever else runs; this moves with what the
/// driver does per packet. Criterion repeats each mode and reports the
/// median and its confidence interval, modes side by side.
fn em_driver_cpu(c: &mut Criterion) {
    if !have_cpu_clocks() {
        return;
    }
    let mut g = c.benchmark_group("em/loopback_driver_cpu");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let p = pipeline(mode);
        p.round_trips(20_000);
        g.bench_function(mode.name(), |b| {
            b.iter_custom(|iters| {
                driver_cpu(|| {
                    p.round_trips(iters);
                })
            })
        });
        p.finish();
    }
    g.finish();
}

/// Seed 002's two CPUs transmitting, end to end and with its two open
/// questions: two threads transmit onto one send queue of the driver in
/// `Mode::Mpsafe`, timed by the driver side's CPU time per packet sent and
/// completed. The peer is the default, `direct` (the transmitting thread
/// runs the start routine, or leaves the packet to the CPU running it);
/// `delegated` hands every start to a task thread (seed 002: "delegating
/// the work to mpsafe taskqs ... lost something like 30% of my tx rate");
/// `bundle_4` and `bundle_16` start once per 4 or 16 packets queued, or at
/// the end of a burst ("tx mitigation only ever gave me back 5 to 10%").
fn em_two_senders_driver_cpu(c: &mut Criterion) {
    if !have_cpu_clocks() {
        return;
    }
    let mut g = c.benchmark_group("em/2cpu_transmit_driver_cpu");
    g.throughput(Throughput::Elements(1));
    for (name, bundle, start) in [
        ("direct", 1, TxStart::Direct),
        ("delegated", 1, TxStart::Delegated),
        ("bundle_4", 4, TxStart::Direct),
        ("bundle_16", 16, TxStart::Direct),
    ] {
        let mut cfg = EmConfig::new(Mode::Mpsafe);
        cfg.tx_bundle = bundle;
        cfg.tx_start = start;
        let p = pipeline_with(cfg, false);
        p.two_senders(20_000);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| driver_cpu(|| p.two_senders(iters)))
        });
        p.finish();
    }
    g.finish();
}

criterion_group!(benches, em, em_driver_cpu, em_two_senders_driver_cpu);
criterion_main!(benches);
