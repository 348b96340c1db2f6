//! The seed-000 pattern under two threads: an "interrupt" thread completes
//! and refills the ring under the rx mutex and frees outside it, while an
//! "ioctl" thread brings the interface down (teardown, free what was posted)
//! and up again. Under the mutex the accounting always equals the buffers
//! posted, after a teardown nothing is posted until the next init, and at the
//! end every buffer allocated has been freed.
//!
//! Bounded in iterations (no timing); shrunk under Miri and by
//! `MPSAFE_STRESS_SCALE` (a divisor, e.g. `MPSAFE_STRESS_SCALE=10` for TSan).

#![cfg(not(mpsafe_loom))]

use core::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use mpsafe_rxring::{LockedRxRing, RxRing, RxRingGuard};

/// The rx mutex: the workspace's blocking serializer as a `lock_api` raw mutex.
type RxLock = mpsafe_serializer::RawSerializer;

const SLOTS: usize = 32;

/// A buffer pool that counts.
#[derive(Default)]
struct Pool {
    attempts: AtomicU64,
    allocated: AtomicU64,
    freed: AtomicU64,
}

impl Pool {
    /// Fails every seventh attempt, so some refills are partial.
    fn alloc(&self) -> Option<u64> {
        if self.attempts.fetch_add(1, Ordering::Relaxed) % 7 == 6 {
            return None;
        }
        Some(self.allocated.fetch_add(1, Ordering::Relaxed))
    }

    fn free(&self, bufs: Vec<u64>) {
        self.freed.fetch_add(bufs.len() as u64, Ordering::Relaxed);
    }
}

struct Rx {
    desc: Vec<Option<u64>>,
    head: usize,
    tail: usize,
}

fn posted(rx: &Rx) -> u32 {
    rx.desc.iter().filter(|d| d.is_some()).count() as u32
}

fn rxfill_locked(g: &mut RxRingGuard<'_, RxLock, Rx>, pool: &Pool, now: u64) {
    let (ring, rx) = g.split();
    let mut fill = ring.reserve(SLOTS as u32, now);
    while !fill.is_empty() {
        let Some(buf) = pool.alloc() else { break };
        assert!(rx.desc[rx.head].is_none(), "posting over a posted buffer");
        rx.desc[rx.head] = Some(buf);
        rx.head = (rx.head + 1) % SLOTS;
        fill.take_one();
    }
}

fn scale() -> u64 {
    std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1)
}

#[test]
fn completion_refill_and_teardown_keep_every_buffer_counted() {
    let rounds = if cfg!(miri) { 60 } else { 20_000 / scale() };
    let downs = if cfg!(miri) { 4 } else { 400 / scale() };
    let pool = Pool::default();
    let rx: LockedRxRing<RxLock, Rx> = LockedRxRing::new(
        RxRing::new(4, SLOTS as u32, 0).unwrap(),
        Rx {
            desc: vec![None; SLOTS],
            head: 0,
            tail: 0,
        },
    );
    let ticks = AtomicU64::new(0);
    rxfill_locked(&mut rx.lock(), &pool, 0);

    thread::scope(|s| {
        // Interrupt: complete up to 5 descriptors, refill, free outside.
        s.spawn(|| {
            for i in 0..rounds {
                let now = ticks.load(Ordering::Relaxed);
                let mut free = Vec::new();
                {
                    let mut g = rx.lock();
                    assert_eq!(g.inuse(), posted(g.data()), "accounting != posted");
                    if g.inuse() == 0 {
                        // Torn down (or ran dry): leave the ring alone, as
                        // em_rxeof does; a later refill may bring it back.
                        rxfill_locked(&mut g, &pool, now);
                        continue;
                    }
                    for _ in 0..(i % 5 + 1).min(u64::from(g.inuse())) {
                        let (ring, st) = g.split();
                        let buf = st.desc[st.tail].take().expect("posted");
                        st.tail = (st.tail + 1) % SLOTS;
                        ring.put(1).unwrap();
                        free.push(buf); // runt or delivered: freed outside
                    }
                    rxfill_locked(&mut g, &pool, now);
                    assert_eq!(g.inuse(), posted(g.data()));
                    if i % 3 == 0 {
                        g.livelocked(now);
                    }
                }
                pool.free(free);
            }
        });
        // Ioctl: down, free what was posted (outside the mutex), check that
        // nothing gets posted while down, up.
        s.spawn(|| {
            for d in 0..downs {
                let bufs: Vec<u64> = {
                    let mut g = rx.lock();
                    let was = g.teardown();
                    let bufs: Vec<u64> = g
                        .data_mut()
                        .desc
                        .iter_mut()
                        .filter_map(Option::take)
                        .collect();
                    assert_eq!(was as usize, bufs.len());
                    let st = g.data_mut();
                    st.head = 0;
                    st.tail = 0;
                    bufs
                };
                pool.free(bufs);
                thread::yield_now();
                {
                    let mut g = rx.lock();
                    assert_eq!(g.inuse(), 0, "refilled while down");
                    assert_eq!(posted(g.data()), 0);
                    // Up again.
                    let now = ticks.fetch_add(1, Ordering::Relaxed) + 1;
                    g.init(4, SLOTS as u32, now).unwrap();
                    rxfill_locked(&mut g, &pool, now);
                }
                if d % 2 == 0 {
                    thread::yield_now();
                }
            }
        });
    });

    // Final down.
    let bufs: Vec<u64> = {
        let mut g = rx.lock();
        g.teardown();
        g.data_mut()
            .desc
            .iter_mut()
            .filter_map(Option::take)
            .collect()
    };
    pool.free(bufs);
    assert_eq!(rx.inuse(), 0);
    assert_eq!(
        pool.allocated.load(Ordering::Relaxed),
        pool.freed.load(Ordering::Relaxed),
        "a buffer leaked"
    );
}

#[test]
fn init_with_cwm_under_the_mutex_keeps_the_watermark() {
    let rx: LockedRxRing<RxLock> = LockedRxRing::new(RxRing::new(2, 16, 0).unwrap(), ());
    for now in 1..=6 {
        let got = rx.get(16, now);
        rx.put(got).unwrap();
    }
    let kept = rx.lock().cwm();
    assert_eq!(kept, 8);
    assert_eq!(rx.get(16, 6), 8);
    assert_eq!(rx.teardown(), 8);
    assert_eq!(rx.init_with_cwm(2, 16, kept, 7), Ok(0));
    assert_eq!(rx.get(16, 7), 8);
    assert!(rx.init_with_cwm(3, 2, kept, 7).is_err());
    assert_eq!(rx.inuse(), 8, "an error changes nothing");
}
