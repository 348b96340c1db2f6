//! The combining serializer: OpenBSD's 2015 atomic `if_start` serialiser.
//!
//! One counter. A caller increments it; the caller that moved it from zero is
//! the *owner* and runs the work, then tries to swing the counter from the value
//! it last saw back to zero. If that fails, more requests arrived while it was
//! working, so it runs the work again. Every other caller returns at once: its
//! request is folded into the owner's next pass. Nobody spins, nobody sleeps.
//!
//! ```text
//!   CPU0                          CPU1                      counter
//!   run(): 0 -> 1, owner                                      1
//!   f() ...                       run(): 1 -> 2, returns      2
//!   cas(1 -> 0) fails (saw 2)                                 2
//!   f() again (sees CPU1's work)                              2
//!   cas(2 -> 0) ok, returns                                   0
//! ```

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicUsize, Ordering};

/// Runs idempotent work on at most one CPU at a time, without ever blocking a
/// caller.
///
/// The work must be "drain whatever is there" (dequeue until empty, reap until
/// no descriptor is done): a call that finds the serializer busy relies on the
/// owner's next pass to do what it wanted done.
///
/// Re-entrant by construction: calling [`run`](Combiner::run) from inside the
/// work returns `false` immediately and makes the owner loop once more, so a
/// start routine may call `start()` again without deadlocking.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicUsize, Ordering};
/// use mpsafe_serializer::Combiner;
///
/// let combiner = Combiner::new();
/// let queued = AtomicUsize::new(3);
/// let sent = AtomicUsize::new(0);
///
/// let ran = combiner.run(|| {
///     // Drain everything that is queued now.
///     let n = queued.swap(0, Ordering::Relaxed);
///     sent.fetch_add(n, Ordering::Relaxed);
/// });
/// assert!(ran);
/// assert_eq!(sent.load(Ordering::Relaxed), 3);
/// ```
#[derive(Debug, Default)]
pub struct Combiner {
    /// Requests since the owner last swung it to zero; zero when idle.
    requests: CachePadded<AtomicUsize>,
}

impl Combiner {
    crate::sync::const_fn! {
        /// An idle combiner.
        pub fn new() -> Self {
            Self {
                requests: CachePadded::new(AtomicUsize::new(0)),
            }
        }
    }

    /// Requests a run of `f`, and runs it (repeatedly) if nobody else is.
    ///
    /// Returns `true` if this call was the owner and ran `f` until no request
    /// was left, `false` if another caller owns the serializer and will run the
    /// work again after this request (this call never waits for it).
    ///
    /// # Panics
    ///
    /// If `f` panics, the panic propagates and the serializer stays owned by
    /// nobody who will release it: later calls return `false` and the work never
    /// runs again. Work run through a serializer must not panic.
    pub fn run(&self, mut f: impl FnMut()) -> bool {
        // AcqRel: Release publishes what this caller did before asking (the
        // packet it queued) to the owner that will see the increment; Acquire
        // makes the new owner see everything the previous owner did before its
        // Release swing to zero.
        let mut seen = self.requests.fetch_add(1, Ordering::AcqRel);
        if seen != 0 {
            return false;
        }
        seen = 1;
        loop {
            f();
            // Release: the next owner (who Acquires on its 0 -> 1 increment)
            // sees every effect of this pass. Acquire on failure: the requests
            // that arrived during the pass are visible to the next pass.
            match self
                .requests
                .compare_exchange(seen, 0, Ordering::Release, Ordering::Acquire)
            {
                Ok(_) => return true,
                Err(now) => seen = now,
            }
        }
    }

    /// Whether some caller is running the work right now.
    ///
    /// Only a hint: the answer may be stale by the time it is read.
    pub fn is_running(&self) -> bool {
        self.requests.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn idle_caller_runs_once() {
        let c = Combiner::new();
        let runs = Cell::new(0);
        assert!(!c.is_running());
        assert!(c.run(|| runs.set(runs.get() + 1)));
        assert_eq!(runs.get(), 1);
        assert!(!c.is_running());
    }

    #[test]
    fn reentrant_call_returns_and_causes_one_more_pass() {
        let c = Combiner::new();
        let runs = Cell::new(0);
        let inner = Cell::new(None);
        let ran = c.run(|| {
            runs.set(runs.get() + 1);
            if runs.get() == 1 {
                assert!(c.is_running());
                // A start routine that calls start() again.
                inner.set(Some(
                    c.run(|| unreachable!("nested work never runs inline")),
                ));
            }
        });
        assert!(ran);
        assert_eq!(inner.get(), Some(false));
        assert_eq!(
            runs.get(),
            2,
            "the nested request costs exactly one more pass"
        );
    }

    #[test]
    fn many_nested_requests_fold_into_one_pass() {
        let c = Combiner::new();
        let runs = Cell::new(0);
        c.run(|| {
            runs.set(runs.get() + 1);
            if runs.get() == 1 {
                for _ in 0..5 {
                    assert!(!c.run(|| {}));
                }
            }
        });
        assert_eq!(runs.get(), 2);
    }
}
