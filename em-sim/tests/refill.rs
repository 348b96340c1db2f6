//! Receive resumes after the buffer pool ran dry: the refill retry timer.
//!
//! A stack that holds on to every buffer it receives exhausts the pool;
//! the ring empties, refill posts nothing, and the device, with no
//! descriptor posted, raises no more receive interrupts. When the stack lets
//! go of the buffers, only a retry from the driver (OpenBSD em's one-tick
//! `rx_refill` timeout) posts descriptors again. Without it receive stalls
//! for good.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{detach_checked, eventually};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mpsafe_em_sim::{
    Device, DeviceConfig, Em, EmConfig, KernelLock, Mbuf, Mode, Pool, Stack, WireRate,
};

struct Hoard {
    pool: Pool,
    hold: AtomicBool,
    held: Mutex<Vec<Mbuf>>,
    packets: AtomicU64,
}

impl Stack<Mbuf> for Hoard {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        self.packets
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        if self.hold.load(Ordering::Acquire) {
            self.held.lock().unwrap().append(packets);
        } else {
            self.pool.free_all(packets.drain(..));
        }
        false
    }
}

impl Hoard {
    fn release(&self) {
        self.hold.store(false, Ordering::Release);
        let held = std::mem::take(&mut *self.held.lock().unwrap());
        self.pool.free_all(held);
    }
}

fn receive_resumes(mode: Mode) {
    let pool = Pool::new(300, 2048);
    let dev = Device::new(
        DeviceConfig {
            wire: WireRate::Pps(50_000),
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .unwrap();
    let stack = Arc::new(Hoard {
        pool: pool.clone(),
        hold: AtomicBool::new(true),
        held: Mutex::new(Vec::new()),
        packets: AtomicU64::new(0),
    });
    let mut cfg = EmConfig::new(mode);
    cfg.rx_desc = 256;
    let em = Em::attach(
        Arc::clone(&dev),
        cfg,
        Arc::new(KernelLock::new()),
        stack.clone(),
    )
    .unwrap();
    em.up().unwrap();
    // The stack holds every buffer: the pool runs dry and the ring empties.
    assert!(
        eventually(|| pool.stats().free == 0 && em.stats().rxrings[0].alive == 0),
        "{mode}: the pool never ran dry: {}",
        pool.stats()
    );
    // Dry is not yet stalled: the interrupt that took the ring's last frames
    // may still be on its way to its own refill, which would find buffers
    // released now and resume receive without any retry. Release only once
    // the retry timer has fired a few ticks in a row with the pool still
    // dry: by then that handler is long done and only a retry can post.
    let dry_retries = em.stats().refill_retries;
    assert!(
        eventually(|| em.stats().refill_retries >= dry_retries + 3),
        "{mode}: the pool ran dry with the ring empty and the driver never retried: {}",
        em.stats()
    );
    assert_eq!(
        (pool.stats().free, em.stats().rxrings[0].alive),
        (0, 0),
        "{mode}: the ring refilled while the stack held every buffer"
    );
    let before = stack.packets.load(Ordering::Relaxed);
    stack.release();
    assert!(
        eventually(|| stack.packets.load(Ordering::Relaxed) > before),
        "{mode}: receive never resumed after the buffers came back: {}",
        em.stats()
    );
    detach_checked(em, &dev, mode.name());
}

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn receive_resumes_after_the_pool_ran_dry() {
    for mode in Mode::ALL {
        receive_resumes(mode);
    }
}
