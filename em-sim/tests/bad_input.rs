//! Bad input gets a typed error or a counted drop, never a panic, and
//! nothing leaks.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::Arc;

use mpsafe_em_sim::driver::{MAX_DESC, MIN_DESC};
use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, EmError, KernelLock, Mode, Pool, Sink, TxError, WireRate,
};

fn setup(mode: Mode) -> (Pool, Arc<Device>, Em<Device>) {
    let pool = Pool::new(4096 * 2 + 1024, 2048);
    let dev = Device::new(
        DeviceConfig {
            wire: WireRate::Off,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .unwrap();
    let em = Em::attach(
        Arc::clone(&dev),
        EmConfig::new(mode),
        Arc::new(KernelLock::new()),
        Arc::new(Sink::new(pool.clone())),
    )
    .unwrap();
    (pool, dev, em)
}

fn frame(pool: &Pool, len: u16) -> mpsafe_em_sim::Mbuf {
    let mut m = pool.alloc().unwrap();
    m.fill(len, 1);
    m
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn malformed_frames_and_start_while_down_come_back() {
    for mode in Mode::ALL {
        let (pool, dev, em) = setup(mode);
        // Down: refused, handed back.
        let e = em.transmit(0, frame(&pool, 60)).unwrap_err();
        assert!(matches!(e, TxError::Down(_)), "{e}");
        assert_eq!(e.to_string(), "interface is down");
        e.into_packet().free();
        em.start(0); // start while down: nothing happens, nothing breaks
        em.up().unwrap();
        let e = em.transmit(0, frame(&pool, 0)).unwrap_err();
        assert!(matches!(e, TxError::Empty(_)));
        e.into_packet().free();
        let e = em.transmit(0, frame(&pool, 1515)).unwrap_err();
        assert!(matches!(e, TxError::Oversize { max: 1514, .. }), "{e}");
        assert!(e.to_string().contains("1515"));
        e.into_packet().free();
        let e = em.transmit(7, frame(&pool, 60)).unwrap_err();
        assert!(matches!(e, TxError::NoQueue(_)));
        e.into_packet().free();
        em.transmit(0, frame(&pool, 1514)).unwrap();
        em.down();
        let st = em.stats();
        assert_eq!((st.tx_down, st.tx_bad), (1, 2));
        assert_eq!(st.tx_posted, st.tx_completed + st.tx_flushed);
        assert_eq!(st.tx_posted + st.tx_purged, 1);
        assert_eq!(st.pool.in_use(), 0, "{}", st.pool);
        assert_eq!(st.pool.leaked, 0);
        drop(em);
        dev.shutdown();
    }
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn ring_sizes_out_of_limits_are_refused_and_change_nothing() {
    let (pool, dev, em) = setup(Mode::Mpsafe);
    em.up().unwrap();
    for (rx, tx) in [
        (100, 512),
        (512, 4),
        (MIN_DESC - 8, 512),
        (512, MAX_DESC + 8),
        (0, 0),
    ] {
        let e = em.set_ring_sizes(rx, tx).unwrap_err();
        assert!(matches!(e, EmError::RingSize { .. }), "{e}");
    }
    assert!(
        em.is_running(),
        "a refused ioctl leaves the interface as it was"
    );
    let st = em.stats();
    assert_eq!(st.rxrings[0].hwm, 511);
    drop(em);
    let mut cfg = EmConfig::new(Mode::Mpsafe);
    cfg.rx_lwm = 100;
    let em = Em::attach(
        Arc::clone(&dev),
        cfg,
        Arc::new(KernelLock::new()),
        Arc::new(Sink::new(pool.clone())),
    )
    .unwrap();
    em.up().unwrap();
    let e = em.set_ring_sizes(96, 512).unwrap_err();
    assert!(
        matches!(
            e,
            EmError::Field {
                field: "rx_lwm",
                value: 100,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(
        em.stats().rxrings[0].hwm,
        511,
        "a refused ioctl changes nothing"
    );
    let mut cfg = EmConfig::new(Mode::BigLock);
    cfg.rx_desc = 4100;
    let e = Em::attach(
        Arc::clone(&dev),
        cfg,
        Arc::new(KernelLock::new()),
        Arc::new(Sink::new(pool.clone())),
    )
    .unwrap_err();
    assert_eq!(
        e,
        EmError::RingSize {
            ring: "rx",
            size: 4100
        }
    );
    em.down();
    assert_eq!(em.stats().pool.in_use(), 0);
    drop(em);
    dev.shutdown();
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn start_locked_needs_the_big_lock_mode() {
    let (_pool, dev, em) = setup(Mode::Mpsafe);
    let g = em.big_lock().lock(mpsafe_em_sim::Path::Start);
    assert_eq!(
        em.start_locked(0, &g),
        Err(EmError::WrongMode(Mode::Mpsafe))
    );
    drop(g);
    drop(em);
    dev.shutdown();
    let (_pool, dev, em) = setup(Mode::BigLock);
    let g = em.big_lock().lock(mpsafe_em_sim::Path::Start);
    assert_eq!(em.start_locked(0, &g), Ok(()));
    assert_eq!(em.start_locked(3, &g), Err(EmError::NoQueue(3)));
    drop(g);
    drop(em);
    dev.shutdown();
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn proofs_from_another_instance_are_refused() {
    use mpsafe_serializer::Serializer;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    let refused = |f: &mut dyn FnMut()| catch_unwind(AssertUnwindSafe(f)).is_err();
    for mode in Mode::ALL {
        let (_pool, dev, em) = setup(mode);
        // Another interface's ifnet serializer proves nothing about this one.
        let other: Serializer = Serializer::new();
        let g = other.enter();
        assert!(
            refused(&mut || drop(em.init_locked(&g))),
            "{mode}: init_locked"
        );
        assert!(refused(&mut || em.stop_locked(&g)), "{mode}: stop_locked");
        assert!(
            refused(&mut || drop(em.set_ring_sizes_locked(&g, 256, 256))),
            "{mode}: set_ring_sizes_locked"
        );
        assert!(
            refused(&mut || drop(em.start_serialized(0, &g))),
            "{mode}: start_serialized"
        );
        drop(g);
        // Nor does another kernel's big lock.
        let k = KernelLock::new();
        let kg = k.lock(mpsafe_em_sim::Path::Start);
        assert!(
            refused(&mut || drop(em.start_locked(0, &kg))),
            "{mode}: start_locked"
        );
        drop(kg);
        // The interface's own proofs still work.
        let s = em.ifnet().enter();
        em.init_locked(&s).unwrap();
        em.stop_locked(&s);
        drop(s);
        assert_eq!(em.stats().pool.in_use(), 0);
        drop(em);
        dev.shutdown();
    }
}
