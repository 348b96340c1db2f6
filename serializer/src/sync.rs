//! The one place this crate switches on its model-checking cfg.
//!
//! Normally: `core::sync::atomic`, `crossbeam_utils::Backoff`, the
//! `atomic-wait` futex and a thread-local for thread identity. Under
//! `RUSTFLAGS="--cfg mpsafe_loom"` (with the `loom` feature, which brings in
//! the optional dependency): the [loom](https://docs.rs/loom) model checker's
//! atomics, a back-off that yields to the model's scheduler and never spins,
//! a futex that is a legal spurious return, and loom's thread-locals. The
//! rest of the crate never mentions the cfg. The public API is the same under
//! both, except that constructors (declared once, with [`const_fn!`]) are not
//! `const` under the models: loom objects cannot be made at compile time.

#[cfg(all(mpsafe_loom, not(feature = "loom")))]
compile_error!("`--cfg mpsafe_loom` needs the `loom` feature (`--features loom`)");

pub(crate) use shared::{AtomicU32, AtomicUsize, Backoff, Ordering};

/// What the sibling mpsafe crates take from this shim, so that their atomics
/// are the very type [`Wait`](crate::Wait) takes, their back-off has the
/// same shape under the models, and they share one thread identity. Re-exported as `__shim`; not part of the
/// supported API.
pub mod shared {
    #[cfg(not(mpsafe_loom))]
    pub use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};
    #[cfg(not(mpsafe_loom))]
    pub use crossbeam_utils::Backoff;

    #[cfg(mpsafe_loom)]
    pub use super::model::{AtomicBool, AtomicU32, AtomicUsize, Backoff, Ordering, fence};

    /// The calling thread's number, never reused for another thread.
    #[cfg(feature = "std")]
    pub use super::thread_id;

    /// The one wait protocol (spin, announce a sleeper, sleep).
    pub use crate::wait::{Poll, wait_until};

    /// The modelled futex the loom models of every mpsafe crate wait with.
    #[cfg(mpsafe_loom)]
    pub use super::model_futex::ModelFutex;
}

/// The model's atomics and back-off.
#[cfg(mpsafe_loom)]
mod model {
    pub use loom::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, fence};

    /// `crossbeam_utils::Backoff`'s shape for the models: no spinning phase
    /// (`is_completed` is always true, so callers go straight to their
    /// blocking step), and a step yields to the model's scheduler so the
    /// thread waited for gets to run and the exploration ends.
    #[derive(Debug, Default)]
    pub struct Backoff;

    impl Backoff {
        /// A fresh back-off.
        #[inline]
        pub fn new() -> Self {
            Self
        }
        /// One step after a lost compare-exchange: a yield.
        #[inline]
        pub fn spin(&self) {
            loom::thread::yield_now();
        }
        /// One step while waiting for another thread: a yield.
        #[inline]
        pub fn snooze(&self) {
            loom::thread::yield_now();
        }
        /// Always true: the models never spin before blocking.
        #[inline]
        pub fn is_completed(&self) -> bool {
            true
        }
    }
}

/// Declares a constructor once: a `const fn` normally, a plain `fn` under the
/// models, because a loom object must be created inside a model run, by the
/// thread that builds it (loom checks every access against its creation).
/// Exported (hidden) so the sibling crates' shims use this one definition.
#[cfg(not(mpsafe_loom))]
#[doc(hidden)]
#[macro_export]
macro_rules! __const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        $(#[$attr])* $vis const fn $($rest)*
    };
}
#[cfg(mpsafe_loom)]
#[doc(hidden)]
#[macro_export]
macro_rules! __const_fn {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use crate::__const_fn as const_fn;

/// The value of `lock_api::RawMutex::INIT`: the constructor normally; under
/// the models there is no compile-time lock, and using `INIT` (as
/// `lock_api::Mutex::new` does) fails to compile, while
/// `lock_api::Mutex::from_raw(RawSerializer::new(), value)` works.
#[cfg(not(mpsafe_loom))]
macro_rules! const_init {
    ($e:expr) => {
        $e
    };
}
#[cfg(mpsafe_loom)]
macro_rules! const_init {
    ($e:expr) => {
        panic!("no compile-time lock under loom: use lock_api::Mutex::from_raw(RawSerializer::new(), value)")
    };
}
pub(crate) use const_init;

/// A futex for the loom models, shared by the mpsafe crates' models.
///
/// The crate's `Futex` is a yield under the models (a legal spurious
/// return), which hides lost wake-ups: a waiter that would sleep forever just
/// re-reads. This one really blocks. Like the kernel's futex, it checks the
/// word and enqueues the sleeper under one lock that every wake also takes,
/// and a wake only reaches sleepers of the same address (`wake_one` exactly
/// one of them), so a waiter that misses its wake-up sleeps forever and loom
/// reports the deadlock.
#[cfg(mpsafe_loom)]
mod model_futex {
    extern crate alloc;

    use alloc::vec::Vec;

    use loom::sync::{Condvar, Mutex};

    use super::{AtomicU32, Ordering};
    use crate::Wait;

    struct Table {
        next_id: u64,
        /// (sleeper id, word address, woken)
        sleepers: Vec<(u64, usize, bool)>,
    }

    loom::lazy_static! {
        static ref FUTEX: (Mutex<Table>, Condvar) = (
            Mutex::new(Table { next_id: 0, sleepers: Vec::new() }),
            Condvar::new(),
        );
    }

    fn address(word: &AtomicU32) -> usize {
        core::ptr::from_ref(word).addr()
    }

    /// A futex whose sleepers block until a wake on their word reaches them.
    #[derive(Debug, Clone, Copy, Default)]
    pub struct ModelFutex;

    impl Wait for ModelFutex {
        fn wait(word: &AtomicU32, expected: u32) {
            let (lock, condvar) = &*FUTEX;
            let mut table = lock.lock().unwrap();
            // Relaxed, like the kernel's read: the table lock orders it after
            // any waker that already took the lock.
            if word.load(Ordering::Relaxed) != expected {
                return;
            }
            let id = table.next_id;
            table.next_id += 1;
            table.sleepers.push((id, address(word), false));
            loop {
                table = condvar.wait(table).unwrap();
                if let Some(at) = table.sleepers.iter().position(|s| s.0 == id && s.2) {
                    table.sleepers.swap_remove(at);
                    return;
                }
            }
        }

        fn wake_one(word: &AtomicU32) {
            wake(word, 1);
        }

        fn wake_all(word: &AtomicU32) {
            wake(word, usize::MAX);
        }
    }

    fn wake(word: &AtomicU32, mut count: usize) {
        let (lock, condvar) = &*FUTEX;
        let mut table = lock.lock().unwrap();
        let at = address(word);
        for sleeper in table.sleepers.iter_mut() {
            if count > 0 && sleeper.1 == at && !sleeper.2 {
                sleeper.2 = true;
                count -= 1;
            }
        }
        condvar.notify_all();
    }
}

/// The futex calls behind [`Futex`](crate::Futex).
#[cfg(all(feature = "std", not(mpsafe_loom), not(miri)))]
pub(crate) mod futex {
    pub(crate) use atomic_wait::{wait, wake_all, wake_one};
}

/// Under Miri, a wait is a yield (a legal spurious return) and the wakes are
/// no-ops, as under the models: current Miri rejects `atomic-wait` 1.1's
/// futex call as undefined behaviour (it passes `&AtomicU32` where the
/// variadic `syscall(SYS_futex, ..)` reads a `*mut u32`). Every caller
/// re-reads its word in a loop, so Miri still checks the protocol around
/// the sleep; the real futex runs in the native and ThreadSanitizer tests.
#[cfg(all(feature = "std", not(mpsafe_loom), miri))]
pub(crate) mod futex {
    use super::{AtomicU32, Ordering};

    pub(crate) fn wait(word: &AtomicU32, expected: u32) {
        if word.load(Ordering::Relaxed) == expected {
            std::thread::yield_now();
        }
    }
    pub(crate) fn wake_one(_word: &AtomicU32) {}
    pub(crate) fn wake_all(_word: &AtomicU32) {}
}

/// Under the models, loom cannot see a futex: a wait is a yield (a legal
/// spurious return) and the wakes are no-ops, which the re-read loops
/// tolerate.
#[cfg(all(feature = "std", mpsafe_loom))]
pub(crate) mod futex {
    use super::{AtomicU32, Ordering};

    pub(crate) fn wait(word: &AtomicU32, expected: u32) {
        if word.load(Ordering::Relaxed) == expected {
            loom::thread::yield_now();
        }
    }
    pub(crate) fn wake_one(_word: &AtomicU32) {}
    pub(crate) fn wake_all(_word: &AtomicU32) {}
}

/// A non-zero number that names the calling thread and is never given to
/// another thread of the process: assigned from a counter on the thread's
/// first call and kept in a thread-local. (An address, such as that of a
/// thread-local, is reused once its thread exits, so a thread that died
/// holding something would pass for a later one.)
///
/// During its thread-local destructors a thread gets a fresh number on each
/// call, which matches nothing recorded: owner checks then report "not the
/// owner" rather than a false match.
#[cfg(all(feature = "std", not(mpsafe_loom)))]
pub fn thread_id() -> usize {
    use core::cell::Cell;

    std::thread_local!(static ID: Cell<usize> = const { Cell::new(0) });
    ID.try_with(|id| {
        if id.get() == 0 {
            id.set(next_thread_id());
        }
        id.get()
    })
    .unwrap_or_else(|_| next_thread_id())
}

/// The same for a model thread (loom's thread-locals).
#[cfg(all(feature = "std", mpsafe_loom))]
pub fn thread_id() -> usize {
    use core::cell::Cell;

    loom::thread_local!(static ID: Cell<usize> = Cell::new(0));
    ID.with(|id| {
        if id.get() == 0 {
            id.set(next_thread_id());
        }
        id.get()
    })
}

#[cfg(feature = "std")]
fn next_thread_id() -> usize {
    // A plain atomic even under the models: it only hands out distinct
    // numbers, which no model reasons about. Relaxed: uniqueness needs only
    // the read-modify-write's atomicity. Starts at 1: 0 means "no owner".
    static NEXT: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);
    NEXT.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
}
