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
use mpsafe_em_sim::cpu::process_cpu_time;
use mpsafe_em_sim::measure::ThreadCpu;
use mpsafe_em_sim::{Device, DeviceConfig, Em, EmConfig, KernelLock, Mode, Pool, Sink, WireRate};

struct Pipeline {
    pool: Pool,
    dev: Arc<Device>,
    sink: Arc<Sink>,
    em: Em<Device>,
}

fn pipeline(mode: Mode) -> Pipeline {
    let pool = Pool::new(4096 * 3, 2048);
    let dev = Device::new(
        DeviceConfig {
            wire: WireRate::Off,
            loopback: true,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .expect("device");
    let sink = Arc::new(Sink::new(pool.clone()));
    let mut cfg = EmConfig::new(mode);
    // Rx ring larger than tx ring + send queue: every looped frame finds a
    // descriptor once the ring has grown.
    cfg.rx_desc = 2048;
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
}

fn em(c: &mut Criterion) {
    let mut g = c.benchmark_group("em/loopback_round_trip");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let p = pipeline(mode);
        // Warm the rx ring watermark up to its high mark.
        p.round_trips(20_000);
        g.bench_function(mode.name(), |b| b.iter_custom(|iters| p.round_trips(iters)));
        p.em.down();
        let s = p.pool.stats();
        assert_eq!((s.in_use(), s.leaked), (0, 0), "{s}");
        drop(p.em);
        p.dev.shutdown();
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
    if process_cpu_time().is_none() || ThreadCpu::snapshot().is_none() {
        return; // no CPU clocks here
    }
    let mut g = c.benchmark_group("em/loopback_driver_cpu");
    g.throughput(Throughput::Elements(1));
    for mode in Mode::ALL {
        let p = pipeline(mode);
        p.round_trips(20_000);
        g.bench_function(mode.name(), |b| {
            b.iter_custom(|iters| {
                let (c0, t0) = (process_cpu_time(), ThreadCpu::snapshot());
                p.round_trips(iters);
                let (c1, t1) = (process_cpu_time(), ThreadCpu::snapshot());
                let process = c1
                    .zip(c0)
                    .map_or(Duration::ZERO, |(b, a)| b.saturating_sub(a));
                let device = t1
                    .zip(t0)
                    .map_or(Duration::ZERO, |(b, a)| b.named_since(&a, "em-device"));
                process.saturating_sub(device)
            })
        });
        p.em.down();
        drop(p.em);
        p.dev.shutdown();
    }
    g.finish();
}

criterion_group!(benches, em, em_driver_cpu);
criterion_main!(benches);
