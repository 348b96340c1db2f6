//! The start barrier: OpenBSD `ifq_barrier` / `if_start_barrier`.

use core::fmt;
use core::marker::PhantomData;

use mpsafe_serializer::{DefaultWait, Task, TaskOwner, TaskSerializer, Wait};

use crate::sync::{AtomicU32, Ordering, Poll, wait_until};

/// Tickets count in steps of two: bit 0 of `completed` is [`SLEEPERS`].
const STEP: u32 = 2;
/// Some waiter may be asleep on `completed`: the barrier run must wake it.
const SLEEPERS: u32 = 1;

/// Whether completion counter `completed` covers `ticket`, modulo wrapping:
/// correct while fewer than 2³⁰ barriers are requested during one wait.
#[inline]
const fn covers(completed: u32, ticket: u32) -> bool {
    ((completed & !SLEEPERS).wrapping_sub(ticket) as i32) >= 0
}

/// Why a start barrier could not be waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BarrierError {
    /// The calling thread is running tasks of the very serializer it asked to
    /// wait for: the barrier task could only run after the caller returns, so
    /// waiting would never end. Request the barrier from outside the
    /// serializer (the ioctl/down path, not a start routine).
    InsideSerializer,
}

impl fmt::Display for BarrierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InsideSerializer => f.write_str(
                "start barrier requested from inside its own task serializer: \
                 it would wait for itself",
            ),
        }
    }
}

impl core::error::Error for BarrierError {}

/// Waits until every start routine that began before the call has finished:
/// OpenBSD's `ifq_barrier` (née `if_start_barrier`) over a
/// [`TaskSerializer`].
///
/// The start routine runs as a task of a serializer, at most one at a time,
/// on whichever CPU asked for it. To know it is no longer touching the tx
/// ring, queue one more task, the *barrier task*, behind it and wait for that
/// one to run: the serializer runs tasks one after another, so when the
/// barrier task runs, every start that was running or queued before it has
/// ended.
///
/// One `StartBarrier` sits beside each serializer and is shared by all
/// waiters. The type that owns the serializer names one [`Task`] for the
/// barrier and, in its task runner, calls
/// [`run_locked`](StartBarrier::run_locked) for it; a waiter calls
/// [`wait`](StartBarrier::wait) with the serializer, that task and the same
/// runner.
///
/// Each wait takes a ticket; a barrier run completes every ticket taken before
/// it began, so concurrent waiters fold into one run (the task's pending bit
/// is set once). If the serializer is idle, the barrier task runs at once on
/// the caller's thread and `wait` returns without sleeping.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
/// use mpsafe_barrier::StartBarrier;
/// use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};
///
/// const START: Task = Task::new(0);
/// const BARRIER: Task = Task::new(1);
///
/// struct Tx {
///     running: AtomicBool,
///     serializer: TaskSerializer,
///     barrier: StartBarrier,
///     sent: AtomicU32,
/// }
///
/// impl Tx {
///     fn run(&self, task: Task, owner: &TaskOwner<'_>) {
///         match task {
///             START => self.start_locked(owner),
///             BARRIER => self.barrier.run_locked(owner),
///             _ => unreachable!(),
///         }
///     }
///     fn start(&self) {
///         self.serializer.add(START, |t, o| self.run(t, o));
///     }
///     fn start_locked(&self, _owner: &TaskOwner<'_>) {
///         if self.running.load(Ordering::Relaxed) {
///             self.sent.fetch_add(1, Ordering::Relaxed); // "fill the tx ring"
///         }
///     }
///     fn down(&self) {
///         self.running.store(false, Ordering::Relaxed);
///         self.barrier
///             .wait(&self.serializer, BARRIER, |t, o| self.run(t, o))
///             .expect("not called from a start routine");
///         // No start routine is filling the ring now, and none ever will.
///     }
/// }
///
/// let tx = Tx {
///     running: AtomicBool::new(true),
///     serializer: TaskSerializer::new(),
///     barrier: StartBarrier::new(),
///     sent: AtomicU32::new(0),
/// };
/// std::thread::scope(|s| {
///     s.spawn(|| for _ in 0..100 { tx.start() });
///     tx.down();
///     let sent = tx.sent.load(Ordering::Relaxed);
///     tx.start();
///     assert_eq!(tx.sent.load(Ordering::Relaxed), sent);
/// });
/// ```
pub struct StartBarrier<W: Wait = DefaultWait> {
    /// The last ticket handed out (steps of [`STEP`]).
    requested: AtomicU32,
    /// The last ticket completed, plus the [`SLEEPERS`] bit.
    completed: AtomicU32,
    _wait: PhantomData<fn() -> W>,
}

impl<W: Wait> StartBarrier<W> {
    crate::sync::const_fn! {
        /// A barrier with nothing requested.
        pub fn new() -> Self {
            Self {
                requested: AtomicU32::new(0),
                completed: AtomicU32::new(0),
                _wait: PhantomData,
            }
        }
    }

    /// The barrier task: completes every [`wait`](StartBarrier::wait) that
    /// took its ticket before this run began, and wakes those waiters.
    ///
    /// Call it from the task runner of the serializer this barrier belongs to,
    /// for the task waiters pass to `wait`; the owner token proves it runs
    /// inside a serializer. Never blocks.
    pub fn run_locked(&self, _owner: &TaskOwner<'_>) {
        // Acquire, paired with the waiters' Release ticket: what each waiter
        // did before asking (cleared RUNNING) happens-before this run, so
        // every start the serializer runs after it sees that too.
        let snapshot = self.requested.load(Ordering::Acquire);
        // Release, paired with the waiters' Acquire loads: every start that
        // ran before this point in the serializer happens-before their return.
        // A plain swap: only the serializer's owner writes the ticket part,
        // and the serializer's own Acquire/Release orders successive runs,
        // so it only grows. Waiters only ever CAS the SLEEPERS bit in.
        let prev = self.completed.swap(snapshot, Ordering::Release);
        if prev & SLEEPERS != 0 {
            W::wake_all(&self.completed);
        }
    }

    /// Requests a barrier and blocks until it has run: every start routine of
    /// `serializer` that began before this call has finished, and its effects
    /// are visible to the caller.
    ///
    /// Queues `task` on `serializer` with `run` (the same runner the owner
    /// type always passes, which must call
    /// [`run_locked`](StartBarrier::run_locked) for `task`); if the serializer
    /// is idle that runs the barrier here and now. Then waits (spin, then
    /// sleep with `W`) until a barrier run that began after this call's
    /// ticket was taken has completed.
    ///
    /// A start that runs *after* the barrier is not waited for: clear the
    /// driver's `RUNNING` flag before calling, and have the start routine
    /// check it; every start the barrier does not wait for sees the cleared
    /// flag.
    ///
    /// # Errors
    ///
    /// [`BarrierError::InsideSerializer`] if the calling thread is itself
    /// running tasks of `serializer` (waiting would deadlock). Detected with
    /// the `std` feature; without it, calling from inside the serializer is a
    /// precondition violation that hangs.
    pub fn wait(
        &self,
        serializer: &TaskSerializer,
        task: Task,
        run: impl FnMut(Task, &TaskOwner<'_>),
    ) -> Result<(), BarrierError> {
        #[cfg(feature = "std")]
        if serializer.is_owned_by_current_thread() {
            return Err(BarrierError::InsideSerializer);
        }
        // Release: publishes what the caller did before (cleared RUNNING) to
        // the barrier run whose Acquire load reads this ticket.
        let ticket = self
            .requested
            .fetch_add(STEP, Ordering::Release)
            .wrapping_add(STEP);
        serializer.add(task, run);
        // Acquire (in `wait_until`), paired with the Release swap in
        // `run_locked`. The sleepers bit is CASed in with Relaxed: a
        // protocol on this one word only (as `Completion`).
        wait_until::<W>(&self.completed, SLEEPERS, |completed| {
            if covers(completed, ticket) {
                Poll::Ready
            } else {
                Poll::Sleep
            }
        });
        Ok(())
    }
}

impl<W: Wait> Default for StartBarrier<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for StartBarrier<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let requested = self.requested.load(Ordering::Relaxed);
        let completed = self.completed.load(Ordering::Relaxed) & !SLEEPERS;
        f.debug_struct("StartBarrier")
            .field("pending", &(requested.wrapping_sub(completed) / STEP))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicBool, AtomicUsize};
    use std::format;

    const START: Task = Task::new(0);
    const BARRIER: Task = Task::new(3);

    #[test]
    fn ticket_compare_wraps() {
        assert!(covers(4, 4));
        assert!(covers(6, 4));
        assert!(!covers(2, 4));
        assert!(covers(2, u32::MAX - 1));
        assert!(!covers(u32::MAX - 1, 2));
        assert!(covers(4 | SLEEPERS, 4));
    }

    #[test]
    fn idle_serializer_runs_the_barrier_inline() {
        let serializer = TaskSerializer::new();
        let barrier: StartBarrier = StartBarrier::new();
        let runs = Cell::new(0);
        let run = |task: Task, owner: &TaskOwner<'_>| {
            assert_eq!(task, BARRIER);
            runs.set(runs.get() + 1);
            barrier.run_locked(owner);
        };
        barrier.wait(&serializer, BARRIER, run).unwrap();
        barrier.wait(&serializer, BARRIER, run).unwrap();
        assert_eq!(runs.get(), 2);
        assert!(format!("{barrier:?}").contains("pending: 0"));
    }

    #[test]
    #[cfg(feature = "std")]
    fn inside_the_serializer_is_an_error_not_a_hang() {
        let serializer = TaskSerializer::new();
        let barrier: StartBarrier = StartBarrier::new();
        let mut seen = None;
        serializer.add(START, |_, _| {
            seen = Some(barrier.wait(&serializer, BARRIER, |_, _| unreachable!()));
        });
        let err = seen.unwrap().unwrap_err();
        assert_eq!(err, BarrierError::InsideSerializer);
        assert!(format!("{err}").contains("inside its own task serializer"));
    }

    /// A waiter arriving while a start runs on another thread returns only
    /// after that start has finished.
    #[test]
    fn waits_for_the_running_start() {
        let serializer = TaskSerializer::new();
        let barrier: StartBarrier = StartBarrier::new();
        let in_start = AtomicBool::new(false);
        let release = AtomicBool::new(false);
        let finished = AtomicBool::new(false);
        let run = |task: Task, owner: &TaskOwner<'_>| match task {
            START => {
                in_start.store(true, Ordering::Release);
                while !release.load(Ordering::Acquire) {
                    std::thread::yield_now();
                }
                finished.store(true, Ordering::Relaxed);
            }
            BARRIER => barrier.run_locked(owner),
            _ => unreachable!(),
        };
        std::thread::scope(|s| {
            s.spawn(|| serializer.add(START, run));
            while !in_start.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let waiter = s.spawn(|| {
                barrier.wait(&serializer, BARRIER, run).unwrap();
                assert!(finished.load(Ordering::Relaxed));
            });
            release.store(true, Ordering::Release);
            waiter.join().unwrap();
        });
    }

    #[test]
    fn concurrent_waiters_all_return() {
        let serializer = TaskSerializer::new();
        let barrier: StartBarrier = StartBarrier::new();
        let runs = AtomicUsize::new(0);
        let run = |task: Task, owner: &TaskOwner<'_>| match task {
            START => std::thread::yield_now(),
            BARRIER => {
                runs.fetch_add(1, Ordering::Relaxed);
                barrier.run_locked(owner);
            }
            _ => unreachable!(),
        };
        let rounds = if cfg!(miri) { 3 } else { 100 };
        std::thread::scope(|s| {
            s.spawn(|| {
                for _ in 0..rounds * 4 {
                    serializer.add(START, run);
                }
            });
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        barrier.wait(&serializer, BARRIER, run).unwrap();
                    }
                });
            }
        });
        assert!(runs.load(Ordering::Relaxed) <= 3 * rounds);
        assert!(format!("{barrier:?}").contains("pending: 0"));
    }
}
