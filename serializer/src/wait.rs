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

/// What a waiter makes of the word it has just read, in [`wait_until`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// The event has happened: return.
    Ready,
    /// The waker is in the middle of its update: re-read after a back-off
    /// step, and never sleep (the word may not change again).
    Spin,
    /// Not yet: spin a little, then sleep until the word changes.
    Sleep,
}

/// The mpsafe crates' one wait protocol: read `word` (Acquire), let `check`
/// decide; while it says [`Poll::Sleep`], spin with back-off, then announce
/// a sleeper by setting the `sleepers` bit in the word (none if `sleepers`
/// is 0: the waker then always wakes) and sleep with `W` while the word still
/// holds the value read plus that bit, re-reading after every wake-up.
///
/// No lost wake-up, if the waker changes the word with a read-modify-write
/// (or a store after one that read the bit) before it wakes: the sleep only
/// begins while the word holds the value this waiter read and announced.
/// `check` may read other words; it runs after the Acquire load of `word`.
/// Used by `mpsafe-barrier`'s completion, start barrier and gate; not part
/// of the supported API (re-exported through the hidden shim).
pub fn wait_until<W: Wait>(word: &AtomicU32, sleepers: u32, mut check: impl FnMut(u32) -> Poll) {
    let backoff = Backoff::new();
    loop {
        // Acquire: pairs with the waker's Release update of the word, so a
        // waiter that returns sees everything the waker did before it.
        let seen = word.load(Ordering::Acquire);
        match check(seen) {
            Poll::Ready => return,
            Poll::Spin => {
                backoff.snooze();
                continue;
            }
            Poll::Sleep => {}
        }
        if !backoff.is_completed() {
            backoff.snooze();
            continue;
        }
        if sleepers != 0 && seen & sleepers == 0 {
            // Relaxed: a protocol on this one word only, whose modification
            // order is total; publication rides on the waker's Release.
            if word
                .compare_exchange(seen, seen | sleepers, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                continue;
            }
        }
        // Sleeps only while the word still says "not ready, sleeper here".
        W::wait(word, seen | sleepers);
    }
}

/// The strategy used when none is named: [`Futex`] with `std`, [`Spin`] without.
#[cfg(feature = "std")]
pub type DefaultWait = Futex;
/// The strategy used when none is named: [`Futex`] with `std`, [`Spin`] without.
#[cfg(not(feature = "std"))]
pub type DefaultWait = Spin;
