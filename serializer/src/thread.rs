//! Thread identity for `lock_api`'s reentrant mutex.

/// The calling thread's identity, as [`lock_api::ReentrantMutex`] needs it
/// (a [`lock_api::GetThreadId`]): a number from a process-wide counter,
/// assigned on the thread's first use and never given to another thread, so
/// a thread that exited holding something is never mistaken for a later one.
///
/// It is the identity this crate's own owner checks use. A kernel names its
/// own (the current CPU's thread pointer).
///
/// # Examples
///
/// A recursive "giant" lock:
///
/// ```
/// use core::cell::Cell;
/// use mpsafe_serializer::{CurrentThreadId, RawSerializer};
///
/// static GIANT: lock_api::ReentrantMutex<RawSerializer, CurrentThreadId, Cell<u32>> =
///     lock_api::ReentrantMutex::new(Cell::new(0));
///
/// let outer = GIANT.lock();
/// let inner = GIANT.lock(); // the same thread: taken again, not a deadlock
/// inner.set(inner.get() + 1);
/// drop(inner);
/// assert_eq!(outer.get(), 1);
/// ```
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct CurrentThreadId;

// SAFETY: `thread_id` returns a non-zero number that no other thread of the
// process ever gets (a counter, kept per thread), so two threads that are
// alive at once never report the same id.
#[cfg(feature = "std")]
unsafe impl lock_api::GetThreadId for CurrentThreadId {
    const INIT: Self = Self;

    fn nonzero_thread_id(&self) -> core::num::NonZeroUsize {
        core::num::NonZeroUsize::new(crate::sync::shared::thread_id())
            .expect("thread ids start at 1")
    }
}
