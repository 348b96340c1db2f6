//! A one-shot completion: OpenBSD's `struct cond`, Linux's `struct completion`.

use core::fmt;
use core::marker::PhantomData;

use mpsafe_serializer::{DefaultWait, Wait};

use crate::sync::{AtomicU32, Ordering, Poll, wait_until};

/// Set once by [`signal`](Completion::signal), as its last touch of the
/// completion; never cleared except by `reset`. A waiter returns only once it
/// reads this.
const SIGNALLED: u32 = 1;
/// Some waiter may be asleep in `W::wait`: `signal` must wake.
const WAITERS: u32 = 2;
/// `signal` is waking sleepers and has not stored [`SIGNALLED`] yet: waiters
/// spin (never sleep) until it has, and must not return, since the signaller
/// still uses the word.
const WAKING: u32 = 4;

/// A one-shot event: any number of threads [`wait`](Completion::wait) until one
/// [`signal`](Completion::signal)s it, and everything the signalling thread did
/// before signalling is visible to them when they return.
///
/// This is OpenBSD's `struct cond` (`cond_init`, `cond_signal`, `cond_wait`),
/// the thing `sched_barrier` and `ifq_barrier` sleep on: put the completion
/// somewhere the other side can reach, hand it a task that signals it, wait.
///
/// Waiting spins briefly with back-off (the event is often a few hundred
/// cycles away), then sleeps with the strategy `W`: a futex with `std`
/// ([`Futex`](mpsafe_serializer::Futex)), a back-off spin without
/// ([`Spin`](mpsafe_serializer::Spin)), or the kernel's own sleep queue.
///
/// The whole state is one 32-bit word; `signal` makes a wake-up system call
/// only if some waiter actually went to sleep.
///
/// # Examples
///
/// ```
/// use mpsafe_barrier::Completion;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// let done: Completion = Completion::new();
/// let result = AtomicU64::new(0);
/// std::thread::scope(|s| {
///     s.spawn(|| {
///         result.store(42, Ordering::Relaxed);
///         done.signal(); // publishes the store above
///     });
///     done.wait();
///     assert_eq!(result.load(Ordering::Relaxed), 42);
/// });
/// assert!(done.is_signalled());
/// ```
pub struct Completion<W: Wait = DefaultWait> {
    state: AtomicU32,
    _wait: PhantomData<fn() -> W>,
}

impl<W: Wait> Completion<W> {
    crate::sync::const_fn! {
        /// A completion that has not been signalled.
        pub fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                _wait: PhantomData,
            }
        }
    }

    /// Marks the event as happened and wakes every waiter.
    ///
    /// Signalling twice is harmless. Never blocks; callable from an interrupt
    /// handler or a serializer task.
    ///
    /// The store that lets waiters return is the last access `signal` makes
    /// to the completion, so a waiter may keep it on its stack, hand a pointer
    /// to the signalling task and return as soon as it is signalled (the
    /// `ifq_barrier` pattern): nothing touches the popped frame. Sleepers are
    /// woken *before* that store, while the word says "waking", which keeps
    /// the waiters from returning (they spin through the short window).
    pub fn signal(&self) {
        let mut state = self.state.load(Ordering::Relaxed);
        loop {
            if state & (SIGNALLED | WAKING) != 0 {
                // Already signalled, or another signaller is finishing.
                return;
            }
            if state & WAITERS == 0 {
                // Nobody asleep: one store and done. Release: a waiter whose
                // Acquire load reads SIGNALLED sees everything this thread
                // did before signalling (the barrier's whole point).
                match self.state.compare_exchange_weak(
                    state,
                    SIGNALLED,
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return,
                    Err(now) => state = now,
                }
            } else {
                // Relaxed: publication rides on the SIGNALLED store below;
                // this only keeps waiters from returning while we wake them.
                match self.state.compare_exchange_weak(
                    state,
                    WAKING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => state = now,
                }
            }
        }
        // The sleepers wake to WAKING and spin until the store below.
        W::wake_all(&self.state);
        // Release, as above. The last access to `self`.
        self.state.store(SIGNALLED, Ordering::Release);
    }

    /// Blocks until [`signal`](Completion::signal) has been called (returns at
    /// once if it already has).
    ///
    /// No lost wake-up: a waiter only sleeps on the exact word value that says
    /// "not signalled, a waiter is here", which `signal` both reads and
    /// changes (to "waking") in one compare-exchange before it wakes.
    pub fn wait(&self) {
        wait_until::<W>(&self.state, WAITERS, |state| {
            if state & SIGNALLED != 0 {
                Poll::Ready
            } else if state & WAKING != 0 {
                // The signaller is between its wake-up and its final store;
                // it still uses the word, so wait for it without sleeping.
                Poll::Spin
            } else {
                Poll::Sleep
            }
        });
    }

    /// Whether [`signal`](Completion::signal) has been called. If `true`, the
    /// signaller's earlier writes are visible, as after [`wait`](Completion::wait).
    pub fn is_signalled(&self) -> bool {
        self.state.load(Ordering::Acquire) & SIGNALLED != 0
    }

    /// Makes the completion usable for another round.
    ///
    /// Takes `&mut self`: nobody can be waiting on (or about to signal) a
    /// completion that is exclusively borrowed, so a reset can never strand a
    /// waiter or lose a signal. Share the completion by reference for a round,
    /// end the borrows (join the threads), then reset.
    pub fn reset(&mut self) {
        *self = Self::new();
    }
}

impl<W: Wait> Default for Completion<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for Completion<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("Completion")
            .field("signalled", &(state & SIGNALLED != 0))
            .field("waiters", &(state & WAITERS != 0))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;
    use mpsafe_serializer::Spin;
    use std::format;

    static_assertions::assert_impl_all!(Completion: Send, Sync);
    static_assertions::assert_eq_size!(Completion, u32);

    #[test]
    fn signal_before_wait_returns_at_once() {
        let c: Completion = Completion::new();
        assert!(!c.is_signalled());
        c.signal();
        c.signal();
        assert!(c.is_signalled());
        c.wait();
    }

    #[test]
    fn waiters_on_other_threads_all_return_and_see_the_data() {
        for _ in 0..if cfg!(miri) { 2 } else { 50 } {
            let c: Completion = Completion::new();
            let data = AtomicU64::new(0);
            std::thread::scope(|s| {
                for _ in 0..3 {
                    s.spawn(|| {
                        c.wait();
                        assert_eq!(data.load(Ordering::Relaxed), 7);
                    });
                }
                data.store(7, Ordering::Relaxed);
                c.signal();
            });
        }
    }

    #[test]
    fn spin_strategy_works_without_a_futex() {
        let c: Completion<Spin> = Completion::new();
        std::thread::scope(|s| {
            s.spawn(|| c.signal());
            c.wait();
        });
    }

    #[test]
    fn reset_rearms() {
        let mut c: Completion = Completion::new();
        c.signal();
        c.reset();
        assert!(!c.is_signalled());
        std::thread::scope(|s| {
            s.spawn(|| c.signal());
            c.wait();
        });
        assert!(format!("{c:?}").contains("signalled: true"));
    }

    #[test]
    fn const_constructible() {
        static DONE: Completion = Completion::new();
        DONE.signal();
        assert!(DONE.is_signalled());
    }
}
