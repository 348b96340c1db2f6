//! How a thread waits for a 32-bit word to change: a futex under `std`, a
//! back-off spin otherwise, or whatever the embedding kernel provides.

use crate::sync::{AtomicU32, Backoff, Ordering};

/// A strategy for sleeping until a 32-bit word changes, and for waking sleepers.
///
/// The contract is the futex one: [`wait`](Wait::wait) returns when `word` no
/// longer holds `expected`, *or spuriously at any time*; callers always re-read
/// the word in a loop. A kernel plugs in its own sleep queue by implementing this
/// trait for a zero-sized type.
///
/// # Examples
///
/// A strategy that only spins (what [`Spin`] does, minus the back-off):
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use mpsafe_serializer::Wait;
///
/// struct Busy;
/// impl Wait for Busy {
///     fn wait(word: &AtomicU32, expected: u32) {
///         while word.load(Ordering::Relaxed) == expected {
///             core::hint::spin_loop();
///         }
///     }
///     fn wake_one(_: &AtomicU32) {}
///     fn wake_all(_: &AtomicU32) {}
/// }
/// # let word = AtomicU32::new(1);
/// # Busy::wait(&word, 0);
/// ```
pub trait Wait {
    /// Blocks while `*word == expected`; may return spuriously.
    fn wait(word: &AtomicU32, expected: u32);
    /// Wakes at least one thread blocked in [`wait`](Wait::wait) on `word`.
    fn wake_one(word: &AtomicU32);
    /// Wakes every thread blocked in [`wait`](Wait::wait) on `word`.
    fn wake_all(word: &AtomicU32);
}

/// Waits by spinning with exponential back-off; waking is free.
///
/// The only strategy available without `std` unless the kernel supplies one.
/// On a machine with fewer CPUs than runnable threads, spinning against a
/// preempted owner wastes its time slice: prefer a real sleep where one exists.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spin;

impl Wait for Spin {
    fn wait(word: &AtomicU32, expected: u32) {
        let backoff = Backoff::new();
        while word.load(Ordering::Relaxed) == expected {
            backoff.snooze();
        }
    }

    fn wake_one(_word: &AtomicU32) {}

    fn wake_all(_word: &AtomicU32) {}
}

/// Waits on a futex (Linux `futex`, Windows `WaitOnAddress`, macOS `ulock`)
/// through the `atomic-wait` crate.
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, Clone, Copy, Default)]
pub struct Futex;

#[cfg(feature = "std")]
impl Wait for Futex {
    fn wait(word: &AtomicU32, expected: u32) {
        crate::sync::futex::wait(word, expected);
    }
    fn wake_one(word: &AtomicU32) {
        crate::sync::futex::wake_one(word);
    }
    fn wake_all(word: &AtomicU32) {
        crate::sync::futex::wake_all(word);
    }
}

/// The strategy used when none is named: [`Futex`] with `std`, [`Spin`] without.
#[cfg(feature = "std")]
pub type DefaultWait = Futex;
/// The strategy used when none is named: [`Futex`] with `std`, [`Spin`] without.
#[cfg(not(feature = "std"))]
pub type DefaultWait = Spin;
