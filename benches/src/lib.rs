//! Shared helpers for the mpsafe criterion benchmarks (`cargo bench -p mpsafe-benches`).
//!
//! Each bench file in `benches/` measures one primitive beside the peer a user
//! would otherwise pick, in the same run, so the ratios are comparable even on
//! a noisy shared machine.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::sync::atomic::{AtomicBool, Ordering};

/// A minimal test-and-test-and-set spinlock: the peer a kernel programmer
/// reaches for first. Also a [`lock_api::RawMutex`], so it can stand in as the
/// lock of the crates' `lock_api`-generic types.
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
        while !self.try_lock() {
            while self.locked.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> bool {
        self.locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Releases the lock.
    pub fn unlock(&self) {
        self.locked.store(false, Ordering::Release);
    }
}

// SAFETY: a caller holds the lock only after swinging the flag false -> true
// with Acquire (`try_lock`), and `unlock` stores false with Release: one holder
// at a time, each seeing the previous holder's writes.
unsafe impl lock_api::RawMutex for SpinLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self::new();
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        SpinLock::lock(self);
    }

    fn try_lock(&self) -> bool {
        SpinLock::try_lock(self)
    }

    unsafe fn unlock(&self) {
        SpinLock::unlock(self);
    }
}
