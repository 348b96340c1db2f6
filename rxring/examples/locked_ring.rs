//! The locked form through a driver's life: attach, up, refill and receive
//! from two contexts, a refill timeout that never waits, statistics, down and
//! up keeping the watermark, detach.
//!
//! ```text
//! cargo run --example locked_ring -p mpsafe-rxring
//! ```
//!
//! The ring's accounting and the driver's descriptor state (which slots
//! hold a buffer) sit behind one mutex, seed 000's `rx_mtx`. The short
//! paths use the unlocked entrypoints, one lock each (`get`, `put`,
//! `livelocked`, `inuse`, `needs_refill`, `info`); the refill takes the lock
//! once and reserves with a [`Fill`](mpsafe_rxring::Fill), so a refill that
//! runs out of buffers halfway gives the rest back.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use mpsafe_rxring::{LockedRxRing, RxRing, RxRingError, RxRingInfoTable, RxRingName};
use mpsafe_serializer::RawSpinMutex;

const SLOTS: usize = 32;
const LWM: u32 = 4;
const HWM: u32 = SLOTS as u32 - 1;

/// The descriptor ring the same mutex protects: which slots hold a buffer.
#[derive(Debug)]
struct Descriptors {
    posted: [bool; SLOTS],
    tail: usize,
    /// Buffers the pool still has (the pool runs dry in this story).
    pool: u32,
}

type Rx = LockedRxRing<RawSpinMutex, Descriptors>;

/// Refill (`em_rxfill`): reserve up to the watermark, post one buffer per
/// slot until the pool runs dry; the uncommitted rest goes back.
fn rxfill(rx: &Rx, now: u64) -> u32 {
    let mut guard = rx.lock();
    let (ring, desc) = guard.split();
    let mut fill = ring.reserve(HWM, now);
    while desc.pool > 0 && fill.take_one() {
        desc.pool -= 1;
        let slot = desc.tail;
        desc.posted[slot] = true;
        desc.tail = (slot + 1) % SLOTS;
    }
    let posted = fill.committed();
    assert_eq!(fill.finish(), posted);
    posted
}

/// Receive completion for `n` frames the device filled (oldest first).
fn rxeof(rx: &Rx, n: u32) -> Result<(), RxRingError> {
    let start = {
        let mut guard = rx.lock();
        let desc = guard.data_mut();
        let used = desc.posted.iter().filter(|p| **p).count();
        (desc.tail + SLOTS - used) % SLOTS
    };
    for i in 0..n as usize {
        rx.lock().data_mut().posted[(start + i) % SLOTS] = false;
    }
    rx.put(n)
}

fn main() -> Result<(), RxRingError> {
    // Attach: nobody else can see the ring yet, so `&mut` needs no lock.
    let mut rx: Rx = LockedRxRing::new(
        RxRing::torn_down(),
        Descriptors {
            posted: [false; SLOTS],
            tail: 0,
            pool: 1000,
        },
    );
    let (ring, desc) = rx.split_mut();
    assert_eq!((ring.inuse(), desc.tail), (0, 0));

    // Up at tick 1.
    let mut now = 1;
    rx.lock().init(LWM, HWM, now)?;
    {
        let ring = rx.lock(); // one guard: the lock is not recursive
        assert_eq!((ring.lwm(), ring.hwm()), (LWM, HWM));
    }
    assert_eq!(rxfill(&rx, now), LWM);

    // Traffic: the ring runs dry every tick, so the watermark grows.
    for _ in 0..8 {
        now += 1;
        rxeof(&rx, rx.inuse())?;
        rxfill(&rx, now);
    }
    let grown = rx.lock().cwm();
    assert!(grown > LWM);
    // The stack fell behind: back off one step.
    now += 1;
    rx.livelocked(now);
    assert_eq!(rx.lock().cwm(), grown - 1);
    assert_eq!(rx.lock().adjusted(), now);

    // A single-slot grant outside the refill path (a driver that posts one
    // buffer for a management frame), and its completion.
    let got = rx.get(1, now);
    rx.put(got)?;

    // The pool runs dry: the ring empties and nothing is posted, so no
    // interrupt will come to refill it; the refill timeout must.
    rxeof(&rx, rx.inuse())?;
    rx.lock().data_mut().pool = 0;
    assert_eq!(rxfill(&rx, now), 0);
    assert!(rx.needs_refill());

    // The refill timeout only tries the lock: the interrupt may hold it.
    rx.lock().data_mut().pool = 1000;
    {
        let _interrupt = rx.lock();
        assert!(rx.try_lock().is_none(), "busy: the timeout re-arms");
    }
    let guard = rx.try_lock().expect("free now");
    assert!(guard.needs_refill());
    drop(guard);
    now += 1;
    assert!(rxfill(&rx, now) > 0);

    // Statistics: a snapshot taken under the lock, printed after.
    let info = rx.info(RxRingName::new("em0").unwrap_or(RxRingName::EMPTY), 2048);
    println!("last adjusted at tick {}", info.adjusted);
    println!("{}", RxRingInfoTable(&[info]));

    // Down keeping the watermark, then up with it: the first refill posts
    // the whole watermark instead of growing back from LWM.
    let kept = rx.lock().cwm();
    let on_ring = rx.teardown();
    assert_eq!(rx.inuse(), 0);
    println!("down: {on_ring} buffers to free");
    rx.lock().data_mut().posted = [false; SLOTS];
    rx.init_with_cwm(LWM, HWM, kept, now)?;
    assert_eq!(rxfill(&rx, now), kept);

    // Detach: the ring and the descriptor state come back out.
    rx.teardown();
    let (ring, desc) = rx.into_inner();
    assert_eq!(ring.inuse(), 0);
    println!("detached; pool has {} buffers left", desc.pool);
    Ok(())
}

#[test]
fn runs() {
    main().unwrap();
}
