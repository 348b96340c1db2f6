//! A spin-only lock word: the queue and ring lock for code that never sleeps.
//!
//! [`RawSerializer`](crate::RawSerializer) with [`Spin`](crate::Spin) waits
//! still keeps a waiter count beside its held bit, so its exit is a second
//! read-modify-write that looks for sleepers a spin wait never has. When
//! nothing can sleep, the held flag is the whole word and exit is a plain
//! Release store: [`RawSpinMutex`] is that lock, the test-and-test-and-set
//! spinlock a kernel engineer would write (and the `spin` crate's `Mutex`
//! uses), with back-off while it waits.

use core::fmt;

use crate::sync::{AtomicU32, Backoff, Ordering};

const UNLOCKED: u32 = 0;
const LOCKED: u32 = 1;

/// A spinning, non-recursive lock word whose exit is one Release store;
/// usable as a [`lock_api::RawMutex`] (see [`SpinMutex`]).
///
/// Taking it is one `lock cmpxchg` when it is free. A thread that finds it
/// held spins on a plain load (so the line stays shared until the holder
/// writes it) with exponential back-off, then tries again. Nobody ever
/// sleeps, so nobody needs waking: releasing it is a store.
///
/// Prefer [`SerializerMutex`](crate::SerializerMutex) with the default futex
/// wait where threads can sleep and may be preempted while holding the lock
/// (a spinner then burns the time slice the holder needs); use this one
/// where the holder cannot be preempted (interrupts off, a kernel spinlock)
/// or without `std`.
///
/// The word is not padded: put it beside the data it protects, or in a
/// `CachePadded` if other CPUs write next to it.
///
/// # Examples
///
/// ```
/// use mpsafe_serializer::SpinMutex;
///
/// static TX_RING: SpinMutex<[u32; 4]> = SpinMutex::new([0; 4]);
///
/// TX_RING.lock()[0] = 7;
/// assert_eq!(TX_RING.lock()[0], 7);
/// ```
pub struct RawSpinMutex {
    /// `UNLOCKED` or `LOCKED`, nothing else.
    word: AtomicU32,
}

impl RawSpinMutex {
    crate::sync::const_fn! {
        /// An unlocked lock word. `lock_api::RawMutex::INIT` is the same
        /// for a `static`; under loom, where no lock is built at compile
        /// time, this is the one that works. The lock operations are
        /// `lock_api::RawMutex`'s.
        pub fn new() -> Self {
            Self {
                word: AtomicU32::new(UNLOCKED),
            }
        }
    }

    /// Takes the lock if it is free; never waits.
    #[inline]
    fn try_lock(&self) -> bool {
        // Acquire: pairs with the Release store in `unlock` of the previous
        // holder, so this holder sees everything done under the lock before.
        self.word
            .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// Spins until the lock is taken.
    #[inline]
    fn lock(&self) {
        if !self.try_lock() {
            self.lock_contended();
        }
    }

    /// The wait, out of line so the uncontended `lock` inlines to one
    /// compare-exchange and a branch.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        let backoff = Backoff::new();
        loop {
            // Test, then test-and-set: spin on a load, which keeps the line
            // shared among the waiters, and only try the write once it looks
            // free. Relaxed: only the compare-exchange's Acquire matters.
            while self.word.load(Ordering::Relaxed) != UNLOCKED {
                backoff.snooze();
            }
            if self
                .word
                .compare_exchange_weak(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// Releases the lock.
    ///
    /// # Safety
    ///
    /// The caller holds the lock (took it with [`lock`](Self::lock) or a
    /// successful [`try_lock`](Self::try_lock)) and has not released it
    /// since; what it protects is not touched after this call.
    #[inline]
    unsafe fn unlock(&self) {
        debug_assert_eq!(
            self.word.load(Ordering::Relaxed),
            LOCKED,
            "unlock of a spin mutex that is not locked"
        );
        // Release: everything this holder did under the lock happens before
        // the next holder's Acquire compare-exchange reads this store. A plain
        // store suffices because no waiter is registered in the word: waiters
        // only spin, and see the store by re-reading.
        self.word.store(UNLOCKED, Ordering::Release);
    }

    /// Whether some thread holds the lock (a hint, possibly stale).
    #[inline]
    fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != UNLOCKED
    }
}

impl Default for RawSpinMutex {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for RawSpinMutex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSpinMutex")
            .field("locked", &self.is_locked())
            .finish()
    }
}

// SAFETY: `lock` and `try_lock` return holding the lock only after their
// compare-exchange swung the word from UNLOCKED to LOCKED, and only `unlock`
// (whose contract is that the caller holds it) stores UNLOCKED, so at most one
// holder exists at a time. The compare-exchange is Acquire and the store
// Release, so what one holder did happens before the next holder's critical
// section. Guards stay `!Send`, like the serializer's, so a kernel may record
// an owner later.
unsafe impl lock_api::RawMutex for RawSpinMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = crate::sync::const_init!(Self::new());

    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        RawSpinMutex::lock(self);
    }

    #[inline]
    fn try_lock(&self) -> bool {
        RawSpinMutex::try_lock(self)
    }

    #[inline]
    unsafe fn unlock(&self) {
        // SAFETY: `lock_api::RawMutex::unlock`'s contract is ours: the caller
        // holds the lock.
        unsafe { RawSpinMutex::unlock(self) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        RawSpinMutex::is_locked(self)
    }
}

/// A spin mutex that owns its data: `lock_api::Mutex` over [`RawSpinMutex`].
pub type SpinMutex<T> = lock_api::Mutex<RawSpinMutex, T>;

/// The guard of a [`SpinMutex`].
pub type SpinMutexGuard<'a, T> = lock_api::MutexGuard<'a, RawSpinMutex, T>;

#[cfg(test)]
mod tests {
    use super::*;
    use static_assertions::assert_impl_all;

    assert_impl_all!(RawSpinMutex: Send, Sync);
    assert_impl_all!(SpinMutex<u64>: Send, Sync);

    #[test]
    fn try_lock_fails_while_held_and_unlock_frees() {
        let m = RawSpinMutex::new();
        assert!(!m.is_locked());
        assert!(m.try_lock());
        assert!(m.is_locked());
        assert!(!m.try_lock());
        // SAFETY: taken just above.
        unsafe { m.unlock() };
        assert!(!m.is_locked());
        m.lock();
        assert!(std::format!("{m:?}").contains("locked: true"));
        // SAFETY: taken just above.
        unsafe { m.unlock() };
    }

    #[test]
    fn threads_exclude_each_other() {
        let counter = SpinMutex::new(0u64);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        *counter.lock() += 1;
                    }
                });
            }
        });
        assert_eq!(*counter.lock(), 20_000);
    }
}
