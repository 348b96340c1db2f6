//! Runtime mode switch torture: random modes under load, with up/down and
//! resize ioctls racing the switches from another thread, under a
//! watchdog. Every frame and buffer is accounted for exactly at the end.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{attach_sim, eventually, producer, scale, with_watchdog};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use std::convert::Infallible;
use std::sync::{Arc, Weak};

use mpsafe_em_sim::StdKernel;
use mpsafe_em_sim::desc::DescRing;
use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, EmError, Hardware, IntrHandler, IntrLine, KernelLock, Mode,
    Path, Pool, Reg, Regs, Sink, WireRate,
};

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

/// The simulated device on an interrupt line shared with a neighbour that
/// fires all the time: the driver's handler is also called, through a gate
/// of this wrapper's, whenever the neighbour interrupts (masked or not,
/// paused or not), as on a shared INTx line.
struct SharedLine {
    dev: Arc<Device>,
    line: IntrLine,
}

impl Regs for SharedLine {
    fn read(&self, reg: Reg) -> u32 {
        self.dev.read(reg)
    }
    fn write(&self, reg: Reg, value: u32) {
        self.dev.write(reg, value);
    }
}

impl Hardware for SharedLine {
    type Error = Infallible;
    type Kernel = StdKernel;
    type Pool = Pool;
    fn queues(&self) -> usize {
        Hardware::queues(&*self.dev)
    }
    fn pool(&self) -> &Pool {
        self.dev.pool()
    }
    fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Infallible> {
        Ok(self.dev.dma_alloc(n))
    }
    fn intr_establish(&self, h: Weak<dyn IntrHandler>) {
        self.dev.establish(h.clone());
        self.line.establish(h);
    }
    fn intr_disestablish(&self) {
        self.line.disestablish();
        self.dev.disestablish();
    }
    fn intr_barrier(&self) {
        self.dev.intr_barrier();
        self.line.barrier();
    }
}

/// The switch torture of the review (issue 22): for every ordered pair of
/// modes, switches back and forth under load while a shared line fires
/// the handler continuously and a big-lock caller runs `start_locked`
/// (refused with `WrongMode` where the big lock does not serialize the
/// start), with down/up cycles among the switches. Every frame and buffer
/// is accounted for, and no thread panics (a panicking interrupt thread
/// stops the traffic, which the counts catch).
#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn switches_with_a_firing_line_and_big_lock_starts_conserve_everything() {
    let rounds = (16 * scale() / 100).max(4);
    for from in Mode::ALL {
        for to in Mode::ALL.into_iter().filter(|&m| m != from) {
            let pool = Pool::new(2 * 4096 + 2048, 2048);
            let dev = Device::new(
                DeviceConfig {
                    wire: WireRate::Pps(100_000),
                    loopback: true,
                    ..DeviceConfig::default()
                },
                pool.clone(),
            )
            .unwrap();
            let hw = Arc::new(SharedLine {
                dev: Arc::clone(&dev),
                line: IntrLine::new(),
            });
            let sink = Arc::new(Sink::new(pool.clone()));
            let em = Em::attach(
                Arc::clone(&hw),
                EmConfig::new(from),
                Arc::new(KernelLock::new()),
                sink.clone(),
            )
            .unwrap();
            em.up().unwrap();
            let stop = AtomicBool::new(false);
            let (offered, refused) = (AtomicU64::new(0), AtomicU64::new(0));
            let (strays, big_starts) = (AtomicU64::new(0), AtomicU64::new(0));
            let mut switches = 0;
            with_watchdog(Duration::from_secs(120), || {
                thread::scope(|s| {
                    let (em, pool, stop, offered, refused) =
                        (&em, &pool, &stop, &offered, &refused);
                    s.spawn(move || producer(em, pool, 0, stop, offered, refused));
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            hw.line.deliver();
                            strays.fetch_add(1, Ordering::Relaxed);
                            thread::yield_now();
                        }
                    });
                    s.spawn(|| {
                        while !stop.load(Ordering::Relaxed) {
                            let k = em.big_lock().lock(Path::Start);
                            match em.start_locked(0, &k) {
                                Ok(()) => {
                                    big_starts.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(EmError::WrongMode(_)) => {}
                                Err(e) => panic!("start_locked: {e}"),
                            }
                            drop(k);
                            thread::sleep(Duration::from_micros(100));
                        }
                    });
                    for i in 0..rounds {
                        for mode in [to, from] {
                            em.set_mode(mode).unwrap();
                            switches += 1;
                            thread::sleep(Duration::from_micros(500));
                        }
                        if i % 4 == 3 {
                            em.down();
                            em.up().unwrap();
                        }
                    }
                    // Wait for every thread to have had its turn (on a
                    // loaded machine they may not have run yet): traffic
                    // through the handler, a stray call, and a big-lock
                    // start in a mode that takes it.
                    assert!(eventually(|| strays.load(Ordering::Relaxed) > 0));
                    assert!(eventually(|| {
                        let st = em.stats();
                        st.rx_packets > 0 && st.tx_completed > 0
                    }));
                    if let Some(locking) = [from, to].into_iter().find(|m| m.locks(Path::Start)) {
                        if em.mode() != locking {
                            em.set_mode(locking).unwrap();
                            switches += 1;
                        }
                        assert!(eventually(|| big_starts.load(Ordering::Relaxed) > 0));
                    }
                    stop.store(true, Ordering::Relaxed);
                });
                em.down();
            });
            let what = format!("{from} <-> {to}");
            let st = em.stats();
            let d = dev.stats();
            assert_eq!(st.mode_switches, switches, "{what}");
            assert_eq!(d.rx_offered, d.rx_delivered + d.missed, "{what}");
            assert_eq!(
                d.rx_delivered,
                st.rx_packets + st.rx_errors + st.rx_flushed,
                "{what}: {st}"
            );
            assert_eq!(sink.packets(), st.rx_packets, "{what}");
            assert!(st.rx_packets > 0 && st.tx_completed > 0, "{what}: {st}");
            let (offered, refused) = (offered.into_inner(), refused.into_inner());
            assert_eq!(offered, st.ifq_packets + refused, "{what}");
            assert_eq!(st.ifq_packets, st.tx_posted + st.tx_purged, "{what}");
            assert_eq!(st.tx_posted, st.tx_completed + st.tx_flushed, "{what}");
            assert_eq!(
                (st.pool.in_use(), st.pool.leaked, st.pool.dma_errors),
                (0, 0, 0),
                "{what}: {}",
                st.pool
            );
            drop(em);
            dev.shutdown();
        }
    }
}
