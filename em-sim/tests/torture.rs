//! Up/down torture: hundreds of `down`/`up` cycles and ring-resize ioctls
//! while the wire and transmit producers run, in every mode, under a
//! watchdog. Nothing may panic, deadlock or leak.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{attach_sim, producer, scale, with_watchdog};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use mpsafe_em_sim::{DeviceConfig, EmConfig, Mode, WireRate};

fn torture(mode: Mode) {
    let cycles = (200 * scale() / 100).max(10);
    let (pool, dev, sink, em) = attach_sim(
        2 * 4096 * 2 + 4096,
        DeviceConfig {
            queues: 2,
            wire: WireRate::Pps(200_000),
            loopback: true,
            ..DeviceConfig::default()
        },
        EmConfig::new(mode),
    );
    em.up().unwrap();
    let stop = AtomicBool::new(false);
    let (offered, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    with_watchdog(Duration::from_secs(120), || {
        thread::scope(|s| {
            for q in 0..2 {
                let (em, pool, stop, offered, refused) = (&em, &pool, &stop, &offered, &refused);
                s.spawn(move || producer(em, pool, q, stop, offered, refused));
            }
            let sizes = [(80, 128), (512, 512), (4096, 256), (256, 4096), (1024, 80)];
            for i in 0..cycles {
                em.down();
                let s = pool.stats();
                assert_eq!(
                    s.on_rx_ring + s.on_tx_ring,
                    0,
                    "rings empty after down: {s}"
                );
                if i % 4 == 1 {
                    let (rx, tx) = sizes[(i / 4) as usize % sizes.len()];
                    em.set_ring_sizes(rx, tx).unwrap();
                }
                em.up().unwrap();
                if i % 8 == 3 {
                    // Resize while running: re-initialises under load.
                    em.set_ring_sizes(512, 512).unwrap();
                }
                if i % 16 == 0 {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        em.down();
    });
    let st = em.stats();
    let d = dev.stats();
    assert_eq!(st.inits, cycles + 1 + (cycles + 4) / 8);
    assert_eq!(d.rx_offered, d.rx_delivered + d.missed);
    assert_eq!(d.rx_delivered, st.rx_packets + st.rx_errors + st.rx_flushed);
    assert_eq!(sink.packets(), st.rx_packets);
    assert!(
        st.rx_packets > 0 && st.tx_completed > 0,
        "traffic flowed: {st}"
    );
    let (offered, refused) = (offered.into_inner(), refused.into_inner());
    assert_eq!(offered, st.ifq_packets + refused);
    assert_eq!(st.ifq_packets, st.tx_posted + st.tx_purged);
    assert_eq!(st.tx_posted, st.tx_completed + st.tx_flushed);
    assert_eq!(st.pool.in_use(), 0, "{}", st.pool);
    assert_eq!(st.pool.leaked, 0);
    assert_eq!(st.pool.dma_errors, 0);
    assert_eq!(st.pool.free, st.pool.total);
    if matches!(mode, Mode::Mpsafe | Mode::Serialized) {
        assert_eq!(st.big_lock.total(), 0);
    }
    drop(em);
    dev.shutdown();
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn torture_biglock() {
    torture(Mode::BigLock);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn torture_rx_unlocked() {
    torture(Mode::RxUnlocked);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn torture_mpsafe() {
    torture(Mode::Mpsafe);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn torture_serialized() {
    torture(Mode::Serialized);
}
