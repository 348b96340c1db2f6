//! The one place this crate switches on its model-checking cfg.
//!
//! The atomics come from `mpsafe-serializer`'s shim (`core::sync::atomic`
//! normally, loom's under `RUSTFLAGS="--cfg mpsafe_loom"` with `--features
//! loom`). The queue lock is a [`lock_api::Mutex`] over the caller's raw mutex
//! normally; under the models it is `loom::sync::Mutex`, so the serialized
//! start is model-checked with the real queue code and the lock costs the
//! exploration one modelled lock, not the raw mutex's own atomics. There the
//! raw mutex type parameter is only a marker. The rest of the crate never
//! mentions the cfg. The public API is the same under both, except that
//! constructors (declared once, with `const_fn!`) are not `const` under the
//! models: loom objects cannot be made at compile time.

pub(crate) use mpsafe_serializer::__shim::{
    AtomicBool, AtomicU32, AtomicUsize, Backoff, Ordering, fence,
};

#[cfg(all(mpsafe_loom, not(feature = "loom")))]
compile_error!("`--cfg mpsafe_loom` needs the `loom` feature (`--features loom`)");

#[cfg(not(mpsafe_loom))]
mod lock {
    use lock_api::RawMutex;

    /// A mutex over `T` built on the raw mutex `R`.
    pub(crate) struct Lock<R: RawMutex, T>(lock_api::Mutex<R, T>);

    /// The guard of a [`Lock`].
    pub(crate) type Guard<'a, R, T> = lock_api::MutexGuard<'a, R, T>;

    impl<R: RawMutex, T> Lock<R, T> {
        pub(crate) const fn new(value: T) -> Self {
            Self(lock_api::Mutex::new(value))
        }

        #[inline]
        pub(crate) fn lock(&self) -> Guard<'_, R, T> {
            self.0.lock()
        }

        #[inline]
        pub(crate) fn try_lock(&self) -> Option<Guard<'_, R, T>> {
            self.0.try_lock()
        }
    }
}

#[cfg(mpsafe_loom)]
mod lock {
    use core::marker::PhantomData;

    use lock_api::RawMutex;

    /// Under the models: loom's mutex; `R` is only a marker.
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

        pub(crate) fn try_lock(&self) -> Option<Guard<'_, R, T>> {
            self.0.try_lock().ok().map(|g| GuardInner(g, PhantomData))
        }
    }
}

pub(crate) use lock::{Guard, Lock};

/// Declares a constructor once (`const fn`, or a plain `fn` under the
/// models): the serializer shim's one definition.
pub(crate) use mpsafe_serializer::__const_fn as const_fn;
