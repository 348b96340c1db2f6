//! Shared helpers for the mpsafe criterion benchmarks (`cargo bench -p mpsafe-benches`).
//!
//! Each bench file in `benches/` measures one primitive beside the peer a user
//! would otherwise pick, in the same run, so the ratios are comparable even on
//! a noisy shared machine.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::atomic::{AtomicBool, Ordering};

/// A minimal test-and-test-and-set spinlock: the peer a kernel programmer
/// reaches for first.
#[derive(Debug, Default)]
pub struct SpinLock {
    locked: AtomicBool,
}

impl SpinLock {
    /// An unlocked spinlock.
    pub const fn new() -> Self {
        Self {
            locked: AtomicBool::new(false),
        }
    }

    /// Spins until the lock is taken.
    pub fn lock(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}
