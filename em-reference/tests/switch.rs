//! Runtime mode switch torture: random modes under load, with up/down and
//! resize ioctls racing the switches from another thread, under a
//! watchdog. Every frame and buffer is accounted for exactly at the end.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{attach_sim, producer, scale, with_watchdog};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use mpsafe_em::{DeviceConfig, EmConfig, Mode, WireRate};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn random_mode_switches_under_load_conserve_everything() {
    let switches = (300 * scale() / 100).max(20);
    let (pool, dev, sink, em) = attach_sim(
        2 * 4096 * 2 + 4096,
        DeviceConfig {
            queues: 2,
            wire: WireRate::Pps(200_000),
            loopback: true,
            ..DeviceConfig::default()
        },
        EmConfig::new(Mode::BigLock),
    );
    em.up().unwrap();
    let stop = AtomicBool::new(false);
    let (offered, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut expected = 0u64;
    with_watchdog(Duration::from_secs(120), || {
        thread::scope(|s| {
            for q in 0..2 {
                let (em, pool, stop, offered, refused) = (&em, &pool, &stop, &offered, &refused);
                s.spawn(move || producer(em, pool, q, stop, offered, refused));
            }
            // Ioctls racing the switches: down/up and a resize now and then.
            let (em2, stop2) = (&em, &stop);
            s.spawn(move || {
                let mut i = 0u32;
                while !stop2.load(Ordering::Relaxed) {
                    em2.down();
                    em2.up().unwrap();
                    if i % 5 == 2 {
                        em2.set_ring_sizes(256 + 8 * (i % 32), 512).unwrap();
                    }
                    i += 1;
                    thread::sleep(Duration::from_millis(3));
                }
            });
            let mut last = em.mode();
            for i in 0..switches {
                let mode = Mode::ALL[(rng.next() % 4) as usize];
                em.set_mode(mode).unwrap();
                assert_eq!(em.mode(), mode);
                expected += u64::from(mode != last);
                last = mode;
                if i % 8 == 0 {
                    thread::sleep(Duration::from_millis(1));
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
        em.down();
    });
    let st = em.stats();
    let d = dev.stats();
    assert_eq!(st.mode_switches, expected);
    assert_eq!(d.rx_offered, d.rx_delivered + d.missed);
    assert_eq!(
        d.rx_delivered,
        st.rx_packets + st.rx_errors + st.rx_flushed,
        "{st}"
    );
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
    drop(em);
    dev.shutdown();
}

/// Under load and without ioctls, a switch drops nothing: every packet
/// enqueued is posted (none purged, none flushed by a stop) and the
/// interface never went down.
#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn a_switch_drops_nothing_queued() {
    let (pool, dev, _sink, em) = attach_sim(
        4096 * 2 + 4096,
        DeviceConfig {
            wire: WireRate::Pps(100_000),
            loopback: true,
            ..DeviceConfig::default()
        },
        EmConfig::new(Mode::Serialized),
    );
    em.up().unwrap();
    let stop = AtomicBool::new(false);
    let (offered, refused) = (AtomicU64::new(0), AtomicU64::new(0));
    with_watchdog(Duration::from_secs(60), || {
        thread::scope(|s| {
            let (em, pool, stop, offered, refused) = (&em, &pool, &stop, &offered, &refused);
            s.spawn(move || producer(em, pool, 0, stop, offered, refused));
            for i in 0..(40 * scale() / 100).max(8) {
                em.set_mode(Mode::ALL[i as usize % 4]).unwrap();
                thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    // Let the queued packets drain, then check before any stop.
    for _ in 0..10_000 {
        let st = em.stats();
        if st.ifq_packets == st.tx_posted && st.tx_posted == st.tx_completed {
            break;
        }
        thread::sleep(Duration::from_millis(1));
    }
    let st = em.stats();
    assert_eq!((st.stops, st.tx_purged, st.tx_flushed), (0, 0, 0));
    assert_eq!(st.ifq_packets, st.tx_posted, "{st}");
    assert_eq!(st.tx_posted, st.tx_completed, "{st}");
    assert_eq!(
        refused.into_inner(),
        st.tx_qdrops,
        "only full queues refused"
    );
    em.down();
    assert_eq!(em.stats().pool.in_use(), 0);
    drop(em);
    dev.shutdown();
}
