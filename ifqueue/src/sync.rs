//! The one place this crate takes its atomics and its queue lock from.
//!
//! Normally `core::sync::atomic` and a [`lock_api::Mutex`] over the caller's
//! raw mutex; under `--cfg loom` the model checker's atomics and
//! `loom::sync::Mutex`, so the serialized start is model-checked with the real
//! queue code. (`lock_api::RawMutex` needs a `const INIT`, which loom's
//! atomics cannot provide, so under loom the raw mutex type parameter is kept
//! only as a marker.)

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};

#[cfg(not(loom))]
mod lock {
    use lock_api::RawMutex;

    /// A mutex over `T` built on the raw mutex `R`.
    pub(crate) struct Lock<R: RawMutex, T>(lock_api::Mutex<R, T>);

    /// The guard of a [`Lock`].
    pub(crate) type Guard<'a, R, T> = lock_api::MutexGuard<'a, R, T>;

    impl<R: RawMutex, T> Lock<R, T> {
        pub(crate) fn new(value: T) -> Self {
            Self(lock_api::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> Guard<'_, R, T> {
            self.0.lock()
        }
    }
}

#[cfg(loom)]
mod lock {
    use core::marker::PhantomData;

    use lock_api::RawMutex;

    /// Under loom: loom's mutex; `R` is only a marker.
    pub(crate) struct Lock<R: RawMutex, T>(loom::sync::Mutex<T>, PhantomData<fn() -> R>);

    /// The guard of a [`Lock`].
    pub(crate) type Guard<'a, R, T> = GuardInner<'a, T, R>;

    /// `loom::sync::MutexGuard` with the marker, so the guard type keeps `R`.
    pub(crate) struct GuardInner<'a, T, R>(loom::sync::MutexGuard<'a, T>, PhantomData<fn() -> R>);

    impl<T, R> core::ops::Deref for GuardInner<'_, T, R> {
        type Target = T;
        fn deref(&self) -> &T {
            &self.0
        }
    }

    impl<T, R> core::ops::DerefMut for GuardInner<'_, T, R> {
        fn deref_mut(&mut self) -> &mut T {
            &mut self.0
        }
    }

    impl<R: RawMutex, T> Lock<R, T> {
        pub(crate) fn new(value: T) -> Self {
            Self(loom::sync::Mutex::new(value), PhantomData)
        }

        pub(crate) fn lock(&self) -> Guard<'_, R, T> {
            GuardInner(self.0.lock().unwrap(), PhantomData)
        }
    }
}

pub(crate) use lock::{Guard, Lock};

/// Under loom, the default queue lock type: a marker that is never locked,
/// because the lock shim above replaces every queue lock with loom's mutex.
/// (`RawSerializer` cannot be a `lock_api::RawMutex` under loom: no `const
/// INIT` with loom atomics.)
#[cfg(loom)]
#[doc(hidden)]
#[derive(Debug)]
pub struct LoomLock;

// SAFETY: never used as a lock: under `cfg(loom)` `Lock` wraps
// `loom::sync::Mutex` and keeps `R` only as a marker, so none of these methods
// is ever called; each panics if it were.
#[cfg(loom)]
unsafe impl lock_api::RawMutex for LoomLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = LoomLock;
    type GuardMarker = lock_api::GuardNoSend;
    fn lock(&self) {
        unreachable!("loom replaces the queue lock")
    }
    fn try_lock(&self) -> bool {
        unreachable!("loom replaces the queue lock")
    }
    unsafe fn unlock(&self) {
        unreachable!("loom replaces the queue lock")
    }
}
