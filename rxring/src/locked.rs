//! The locked form: an [`RxRing`] and the driver's rx state behind one
//! `lock_api` mutex, with the guard as the proof of holding it.

use core::fmt;
use core::ops::{Deref, DerefMut};

use lock_api::{Mutex, MutexGuard, RawMutex};

use crate::{RxRing, RxRingError, RxRingInfo, RxRingName};

/// What the mutex protects: the accounting and the driver state that must
/// change with it (descriptor ring, head/tail indices, a partial packet).
#[derive(Debug, Default)]
struct Rx<T> {
    ring: RxRing,
    data: T,
}

/// An [`RxRing`] under a mutex (the seed-000 em(4) `rx_mtx`), together with
/// the driver's rx state `T` that the same mutex protects.
///
/// `R` is any [`lock_api::RawMutex`]: a kernel spin mutex, `spin`'s, a
/// serializer that implements it, `parking_lot`'s. The methods on
/// `LockedRxRing` are the unlocked entrypoints: each takes the mutex for one
/// operation. [`lock`](Self::lock) returns an [`RxRingGuard`], the proof a
/// caller holds the mutex: every [`RxRing`] method is reachable through it
/// (it dereferences to the ring), so those are the `*_locked` forms, and the
/// driver's own lock-held helpers take `&mut RxRingGuard` to demand the
/// same proof.
///
/// Nothing is done between taking and releasing the mutex but what the
/// caller writes, so there is no concurrent algorithm here to model-check:
/// the mutual exclusion is `R`'s.
///
/// See the [crate documentation](crate#the-locked-form-seed-000) for the
/// whole refill / completion / teardown pattern.
pub struct LockedRxRing<R: RawMutex, T = ()> {
    mutex: Mutex<R, Rx<T>>,
}

impl<R: RawMutex, T> LockedRxRing<R, T> {
    /// Puts `ring` and the driver's rx state `data` under a new, unlocked
    /// mutex.
    pub const fn new(ring: RxRing, data: T) -> Self {
        Self {
            mutex: Mutex::new(Rx { ring, data }),
        }
    }

    /// Takes the mutex, waiting as `R` waits.
    #[inline]
    pub fn lock(&self) -> RxRingGuard<'_, R, T> {
        RxRingGuard {
            guard: self.mutex.lock(),
        }
    }

    /// Takes the mutex if it is free.
    #[inline]
    pub fn try_lock(&self) -> Option<RxRingGuard<'_, R, T>> {
        self.mutex.try_lock().map(|guard| RxRingGuard { guard })
    }

    /// The ring and the state, without locking: `&mut self` already proves
    /// nobody else holds the mutex.
    #[inline]
    pub fn split_mut(&mut self) -> (&mut RxRing, &mut T) {
        let rx = self.mutex.get_mut();
        (&mut rx.ring, &mut rx.data)
    }

    /// Takes the ring and the state back out.
    pub fn into_inner(self) -> (RxRing, T) {
        let rx = self.mutex.into_inner();
        (rx.ring, rx.data)
    }

    /// [`RxRing::init`] under the mutex.
    ///
    /// # Errors
    ///
    /// As [`RxRing::init`]; the ring is unchanged.
    pub fn init(&self, lwm: u32, hwm: u32, now: u64) -> Result<u32, RxRingError> {
        self.lock().init(lwm, hwm, now)
    }

    /// [`RxRing::init_with_cwm`] under the mutex.
    ///
    /// # Errors
    ///
    /// As [`RxRing::init`]; the ring is unchanged.
    pub fn init_with_cwm(
        &self,
        lwm: u32,
        hwm: u32,
        cwm: u32,
        now: u64,
    ) -> Result<u32, RxRingError> {
        self.lock().init_with_cwm(lwm, hwm, cwm, now)
    }

    /// [`RxRing::teardown`] under the mutex: once this returns, no `get`
    /// grants a slot, so a completion path that checks
    /// [`inuse`](RxRing::inuse) under the mutex first stays off the ring.
    /// Returns how many slots were in use (the buffers the caller now frees).
    pub fn teardown(&self) -> u32 {
        self.lock().teardown()
    }

    /// [`RxRing::get`] under the mutex.
    #[inline]
    pub fn get(&self, max: u32, now: u64) -> u32 {
        self.lock().get(max, now)
    }

    /// [`RxRing::put`] under the mutex.
    ///
    /// # Errors
    ///
    /// As [`RxRing::put`]; the ring is unchanged.
    #[inline]
    pub fn put(&self, n: u32) -> Result<(), RxRingError> {
        self.lock().put(n)
    }

    /// [`RxRing::livelocked`] under the mutex.
    #[inline]
    pub fn livelocked(&self, now: u64) {
        self.lock().livelocked(now);
    }

    /// [`RxRing::inuse`] under the mutex.
    #[inline]
    #[must_use]
    pub fn inuse(&self) -> u32 {
        self.lock().inuse()
    }

    /// [`RxRing::needs_refill`] under the mutex.
    #[inline]
    #[must_use]
    pub fn needs_refill(&self) -> bool {
        self.lock().needs_refill()
    }

    /// [`RxRing::info`] under the mutex: a consistent snapshot to print
    /// after it is released.
    #[must_use]
    pub fn info(&self, name: RxRingName, size: u32) -> RxRingInfo {
        self.lock().info(name, size)
    }
}

impl<R: RawMutex, T: Default> Default for LockedRxRing<R, T> {
    /// A torn-down ring and default state.
    fn default() -> Self {
        Self::new(RxRing::torn_down(), T::default())
    }
}

impl<R: RawMutex, T: fmt::Debug> fmt::Debug for LockedRxRing<R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // lock_api prints `<locked>` rather than waiting for a holder.
        f.debug_struct("LockedRxRing")
            .field("mutex", &self.mutex)
            .finish()
    }
}

/// Proof of holding a [`LockedRxRing`]'s mutex; released when dropped.
///
/// Dereferences to the [`RxRing`], so `guard.get(..)`, `guard.put(..)`,
/// `guard.reserve(..)` are the lock-held forms. [`data`](Self::data) and
/// [`data_mut`](Self::data_mut) reach the driver state;
/// [`split`](Self::split) borrows both at once, which a refill needs: a
/// [`Fill`](crate::Fill) holds the ring while the loop posts buffers to the
/// descriptors. The borrow checker ends the `Fill` (returning unused slots)
/// before the guard can be dropped, so accounting is always settled inside
/// the critical section.
///
/// Whether the guard may move to another thread is up to `R`
/// (`R::GuardMarker`).
pub struct RxRingGuard<'a, R: RawMutex, T = ()> {
    guard: MutexGuard<'a, R, Rx<T>>,
}

impl<R: RawMutex, T> RxRingGuard<'_, R, T> {
    /// The driver's rx state.
    #[inline]
    #[must_use]
    pub fn data(&self) -> &T {
        &self.guard.data
    }

    /// The driver's rx state, mutably.
    #[inline]
    pub fn data_mut(&mut self) -> &mut T {
        &mut self.guard.data
    }

    /// The ring and the driver's rx state, both mutably (for a refill loop).
    #[inline]
    pub fn split(&mut self) -> (&mut RxRing, &mut T) {
        let rx = &mut *self.guard;
        (&mut rx.ring, &mut rx.data)
    }
}

impl<R: RawMutex, T> Deref for RxRingGuard<'_, R, T> {
    type Target = RxRing;

    #[inline]
    fn deref(&self) -> &RxRing {
        &self.guard.ring
    }
}

impl<R: RawMutex, T> DerefMut for RxRingGuard<'_, R, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut RxRing {
        &mut self.guard.ring
    }
}

impl<R: RawMutex, T: fmt::Debug> fmt::Debug for RxRingGuard<'_, R, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxRingGuard")
            .field("ring", &self.guard.ring)
            .field("data", &self.guard.data)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The workspace's blocking serializer as the `lock_api` raw mutex.
    type RxLock = mpsafe_serializer::RawSerializer;

    static_assertions::assert_impl_all!(LockedRxRing<RxLock, u32>: Send, Sync);
    static_assertions::assert_not_impl_any!(RxRingGuard<'static, RxLock, u32>: Send);

    #[test]
    fn unlocked_entrypoints_take_and_release_the_mutex() {
        let rx: LockedRxRing<RxLock, u32> = LockedRxRing::new(RxRing::new(2, 8, 0).unwrap(), 0);
        assert_eq!(rx.get(8, 0), 2);
        assert_eq!(rx.inuse(), 2);
        assert!(rx.put(3).is_err());
        rx.put(1).unwrap();
        assert!(rx.needs_refill());
        rx.livelocked(1);
        assert_eq!(rx.info(RxRingName::new("em0").unwrap(), 2048).alive, 1);
        assert_eq!(rx.teardown(), 1);
        assert_eq!(rx.get(8, 5), 0);
        assert_eq!(rx.init(2, 8, 6), Ok(0));
        assert!(rx.init(3, 2, 6).is_err());
        assert!(rx.try_lock().is_some());
    }

    #[test]
    fn guard_is_exclusive_and_reaches_ring_and_data() {
        let mut rx: LockedRxRing<RxLock, u32> = LockedRxRing::new(RxRing::new(2, 8, 0).unwrap(), 7);
        {
            let mut g = rx.lock();
            assert!(rx.try_lock().is_none());
            assert_eq!(*g.data(), 7);
            *g.data_mut() += 1;
            let (ring, posted) = g.split();
            let mut fill = ring.reserve(8, 0);
            while !fill.is_empty() {
                *posted += 1;
                fill.take_one();
            }
            assert_eq!(fill.finish(), 2);
            assert_eq!(g.inuse(), 2);
        }
        assert!(rx.try_lock().is_some());
        let (ring, data) = rx.split_mut();
        assert_eq!((ring.inuse(), *data), (2, 10));
        let (ring, data) = rx.into_inner();
        assert_eq!((ring.inuse(), data), (2, 10));
        let d: LockedRxRing<RxLock, u32> = LockedRxRing::default();
        assert_eq!(d.get(8, 0), 0);
    }
}
