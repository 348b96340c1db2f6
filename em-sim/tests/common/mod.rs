//! Helpers the em integration tests share: the stress scale, a watchdog,
//! a bounded wait, and the driver attached to a simulated device.
#![allow(dead_code, clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, EmStats, Hardware, KernelLock, Pool, Sink, TxError,
};
use std::thread;
use std::time::Duration;

/// The stress scale in percent (`MPSAFE_STRESS_SCALE`, default 100): the
/// sanitizer runs shrink iteration counts with it, never thread counts.
pub(crate) fn scale() -> u64 {
    std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

/// Aborts the whole test process if `f` takes longer than `limit`
/// ([`mpsafe_em_sim::harness::with_watchdog`]).
pub(crate) fn with_watchdog<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    mpsafe_em_sim::harness::with_watchdog(limit, f)
}

/// Polls `f` every millisecond for up to 10 s: a liveness bound far beyond
/// what the driver needs, not a timing assertion.
pub(crate) fn eventually(mut f: impl FnMut() -> bool) -> bool {
    for _ in 0..10_000 {
        if f() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    false
}

/// A pool of `buffers` 2 KiB buffers, a simulated device built from
/// `device`, a sink that counts and frees what it receives, and the driver
/// attached to them in `cfg` with a big lock of its own (down).
pub(crate) fn attach_sim(
    buffers: usize,
    device: DeviceConfig,
    cfg: EmConfig,
) -> (Pool, Arc<Device>, Arc<Sink>, Em<Device>) {
    let pool = Pool::new(buffers, 2048);
    let dev = Device::new(device, pool.clone()).unwrap();
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        Arc::clone(&dev),
        cfg,
        Arc::new(KernelLock::new()),
        sink.clone(),
    )
    .unwrap();
    (pool, dev, sink, em)
}

/// Brings `em` down, checks that every buffer came back to the pool (none
/// in use, none leaked; `what` names the case if not), detaches the driver
/// and stops the device. Returns the driver's statistics after the down.
pub(crate) fn detach_checked(em: Em<Device>, dev: &Device, what: &str) -> EmStats {
    em.down();
    let s = em.stats();
    assert_eq!(
        (s.pool.in_use(), s.pool.leaked),
        (0, 0),
        "{what}: {}",
        s.pool
    );
    drop(em);
    dev.shutdown();
    s
}

/// Transmits on queue `q` in bursts of 32 (frames of 60 to 1459 bytes) until
/// `stop`, counting what it offered and what `transmit` refused (only
/// because the interface was down or the queue full; refused frames are
/// freed).
pub(crate) fn producer<H: Hardware<Pool = Pool>>(
    em: &Em<H>,
    pool: &Pool,
    q: usize,
    stop: &AtomicBool,
    offered: &AtomicU64,
    refused: &AtomicU64,
) {
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        for _ in 0..32 {
            let Some(mut m) = pool.alloc() else { break };
            seq += 1;
            m.fill(60 + (seq % 1400) as u16, seq);
            offered.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = em.transmit(q, m) {
                refused.fetch_add(1, Ordering::Relaxed);
                assert!(matches!(e, TxError::Down(_) | TxError::QueueFull(_)));
                e.into_packet().free();
            }
        }
        thread::sleep(Duration::from_micros(200));
    }
}
