//! The task serializer: OpenBSD's ifq serializer, with a bitmap for a task list.
//!
//! A serializer owns a small fixed set of idempotent tasks (start, restart,
//! barrier, a few of the driver's own), each one pending bit in a 32-bit word
//! whose top bit says "someone is running tasks". [`TaskSerializer::add`] sets a
//! task's bit; the caller that finds nobody running becomes the owner and runs
//! pending tasks until none remain. A task added again before it runs runs
//! once. Nothing allocates, nobody blocks.
//!
//! ```text
//!   bit 31          bits 30..0
//!   RUNNING | pending tasks (task i = bit i)
//! ```

use core::fmt;
use core::marker::PhantomData;

use crate::sync::{AtomicU32, Ordering};

const RUNNING: u32 = 1 << 31;

/// One of the (at most [`Task::MAX`]) tasks of a [`TaskSerializer`], named by
/// its index.
///
/// Tasks pending in the same pass run in index order, so give the task that
/// must run first (say, `restart` clearing `oactive` before `start`) the lower
/// index.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Task(u8);

impl Task {
    /// How many distinct tasks one serializer can hold.
    pub const MAX: u8 = 31;

    /// Task number `index`.
    ///
    /// # Panics
    ///
    /// If `index >= Task::MAX`; in a `const` this is a compile error. Use
    /// [`Task::try_new`] for an index computed at run time.
    pub const fn new(index: u8) -> Self {
        assert!(index < Self::MAX, "task index out of range (max 30)");
        Self(index)
    }

    /// Task number `index`, or an error if `index >= Task::MAX`.
    pub const fn try_new(index: u8) -> Result<Self, TaskIndexError> {
        if index < Self::MAX {
            Ok(Self(index))
        } else {
            Err(TaskIndexError { index })
        }
    }

    /// This task's index.
    pub const fn index(self) -> u8 {
        self.0
    }

    const fn bit(self) -> u32 {
        1 << self.0
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Task({})", self.0)
    }
}

/// A task index that is not below [`Task::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TaskIndexError {
    /// The index that was asked for.
    pub index: u8,
}

impl fmt::Display for TaskIndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task index {} out of range: a task serializer holds tasks 0..{}",
            self.index,
            Task::MAX
        )
    }
}

impl core::error::Error for TaskIndexError {}

/// Proof that the holder is running tasks inside a [`TaskSerializer`].
///
/// Handed by reference to the task runner; it cannot be built elsewhere, cannot
/// outlive the pass that made it and cannot cross to another thread. Functions
/// that must only run inside the serializer (a driver's `start_locked`) take
/// `&TaskOwner<'_>` as their first argument.
pub struct TaskOwner<'a> {
    serializer: &'a TaskSerializer,
    // !Send + !Sync: the proof belongs to the thread that owns the serializer.
    _not_send: PhantomData<*const ()>,
}

impl TaskOwner<'_> {
    /// The serializer this token proves ownership of.
    pub fn serializer(&self) -> &TaskSerializer {
        self.serializer
    }
}

impl fmt::Debug for TaskOwner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskOwner").finish_non_exhaustive()
    }
}

/// Runs a fixed set of idempotent tasks, one at a time, on whichever CPU finds
/// the serializer free; callers never wait.
///
/// The serializer only remembers *which* tasks are pending, not what they do:
/// the caller of [`add`](TaskSerializer::add) passes the runner that maps a
/// [`Task`] to its code, and whoever becomes owner runs every pending task
/// with *its* runner. Keep the serializer private inside a type that always
/// passes the same runner (as `mpsafe-ifqueue`'s `IfQueue` does), so any
/// caller can run any task.
///
/// # Examples
///
/// ```
/// use core::cell::Cell;
/// use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};
///
/// const START: Task = Task::new(1);
/// const LOG: Task = Task::new(2);
///
/// struct Nic {
///     serializer: TaskSerializer,
///     started: Cell<u32>,
/// }
///
/// impl Nic {
///     fn add(&self, task: Task) -> bool {
///         self.serializer.add(task, |task, owner| self.run(task, owner))
///     }
///     fn run(&self, task: Task, owner: &TaskOwner<'_>) {
///         match task {
///             START => self.start_locked(owner),
///             LOG => {}
///             _ => unreachable!(),
///         }
///     }
///     // Only callable with the proof of running inside the serializer.
///     fn start_locked(&self, _owner: &TaskOwner<'_>) {
///         self.started.set(self.started.get() + 1);
///         // Re-entrant: asking again from inside returns at once and
///         // leaves START pending for one more pass.
///         if self.started.get() == 1 {
///             assert!(!self.add(START));
///         }
///     }
/// }
///
/// let nic = Nic { serializer: TaskSerializer::new(), started: Cell::new(0) };
/// assert!(nic.add(START));
/// assert_eq!(nic.started.get(), 2);
/// ```
#[derive(Default)]
pub struct TaskSerializer {
    /// `RUNNING` plus one pending bit per task. Not padded: the owner writes
    /// `owner_thread` on every pass, so it shares this line; the containing
    /// type decides what else does (`mpsafe-ifqueue` puts its queue lock
    /// here, which every non-owner touches just before it adds a task).
    state: AtomicU32,
    /// Identity of the thread running tasks (0 when none), so a caller that
    /// would wait for the serializer from inside it can be told instead of
    /// hanging. Written and compared only by the owning thread itself.
    #[cfg(feature = "std")]
    owner_thread: core::sync::atomic::AtomicUsize,
}

impl TaskSerializer {
    crate::sync::const_fn! {
        /// A serializer with no task pending and nobody running.
        pub fn new() -> Self {
            Self {
                state: AtomicU32::new(0),
                #[cfg(feature = "std")]
                owner_thread: core::sync::atomic::AtomicUsize::new(0),
            }
        }
    }

    /// Marks `task` pending and, if nobody is running tasks, runs pending tasks
    /// with `run` until none remain.
    ///
    /// Returns `true` if this call ran the tasks, `false` if another caller
    /// (possibly this very thread, further up the stack) is running them and
    /// will see `task` before it lets go.
    ///
    /// # Panics
    ///
    /// A panic in `run` propagates and leaves the serializer owned forever:
    /// later calls return `false` and no task runs again. Tasks must not panic.
    pub fn add(&self, task: Task, mut run: impl FnMut(Task, &TaskOwner<'_>)) -> bool {
        // Fast path, serializer idle: take it without marking the task, and run
        // the task directly. Acquire pairs with the previous owner's Release.
        let first =
            match self
                .state
                .compare_exchange(0, RUNNING, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => Some(task),
                Err(mut seen) => {
                    // Mark the task from the value the failed exchange saw: one
                    // more read-modify-write of a line this CPU already holds,
                    // not a fresh read of it. AcqRel: Release publishes what the
                    // caller did before asking to the owner who takes the bit;
                    // Acquire, in case the owner left meanwhile and we become
                    // the owner.
                    loop {
                        match self.state.compare_exchange_weak(
                            seen,
                            seen | task.bit() | RUNNING,
                            Ordering::AcqRel,
                            Ordering::Relaxed,
                        ) {
                            Ok(_) => break,
                            Err(now) => seen = now,
                        }
                    }
                    if seen & RUNNING != 0 {
                        return false;
                    }
                    None
                }
            };
        self.set_owner_thread(true);
        let owner = TaskOwner {
            serializer: self,
            _not_send: PhantomData,
        };
        if let Some(task) = first {
            run(task, &owner);
        }
        loop {
            if self.state.load(Ordering::Relaxed) == RUNNING {
                self.set_owner_thread(false);
                // Release: the next owner sees every effect of the tasks run.
                if self
                    .state
                    .compare_exchange(RUNNING, 0, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
                {
                    return true;
                }
                self.set_owner_thread(true);
            }
            // Clear the bits *before* running their tasks, so an add that
            // arrives during the run marks the task again. Acquire pairs with
            // the adders' Release.
            let mut pending = self.state.swap(RUNNING, Ordering::Acquire) & !RUNNING;
            while pending != 0 {
                let index = pending.trailing_zeros();
                pending &= pending - 1;
                run(Task(index as u8), &owner);
            }
        }
    }

    /// Whether some caller is running tasks right now (a hint, possibly stale).
    pub fn is_running(&self) -> bool {
        self.state.load(Ordering::Relaxed) & RUNNING != 0
    }

    /// Whether the calling thread is the one running tasks right now.
    ///
    /// Lets a blocking operation that waits for the serializer (a start
    /// barrier) report a deadlock instead of hanging when called from inside a
    /// task.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn is_owned_by_current_thread(&self) -> bool {
        self.owner_thread
            .load(core::sync::atomic::Ordering::Relaxed)
            == crate::sync::shared::thread_id()
    }

    #[inline]
    fn set_owner_thread(&self, _owned: bool) {
        #[cfg(feature = "std")]
        {
            // Relaxed: only the owning thread ever compares against its own
            // identity, and a thread always reads its own latest write.
            let id = if _owned {
                crate::sync::shared::thread_id()
            } else {
                0
            };
            self.owner_thread
                .store(id, core::sync::atomic::Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for TaskSerializer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("TaskSerializer")
            .field("running", &(state & RUNNING != 0))
            .field("pending", &format_args!("{:#x}", state & !RUNNING))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::cell::{Cell, RefCell};
    extern crate alloc;
    use alloc::vec::Vec;

    const A: Task = Task::new(0);
    const B: Task = Task::new(5);
    const C: Task = Task::new(30);

    #[test]
    fn task_index_bounds() {
        assert_eq!(Task::try_new(30).map(Task::index), Ok(30));
        let err = Task::try_new(31).unwrap_err();
        assert_eq!(err.index, 31);
        assert!(std::format!("{err}").contains("out of range"));
    }

    #[test]
    #[should_panic(expected = "task index out of range")]
    fn task_new_panics_out_of_range() {
        let _ = Task::new(Task::MAX);
    }

    /// A thread that died owning the serializer (its task panicked) must not
    /// make a later thread look like the owner. With thread-local addresses
    /// for identities, a new thread reuses the dead one's TLS block and
    /// inherits its identity.
    #[cfg(feature = "std")]
    #[test]
    fn a_dead_owner_is_not_a_later_thread() {
        for _ in 0..if cfg!(miri) { 2 } else { 20 } {
            let s = TaskSerializer::new();
            std::thread::scope(|scope| {
                let dead = scope.spawn(|| {
                    s.add(A, |_, _| {
                        assert!(s.is_owned_by_current_thread());
                        panic!("task panics: the serializer stays owned");
                    })
                });
                assert!(dead.join().is_err());
            });
            assert!(s.is_running(), "left owned by the dead thread");
            std::thread::scope(|scope| {
                scope.spawn(|| {
                    assert!(
                        !s.is_owned_by_current_thread(),
                        "a new thread inherited a dead thread's identity"
                    );
                    assert!(!s.add(A, |_, _| unreachable!("owned")));
                });
            });
        }
    }

    #[test]
    fn idle_add_runs_the_task_once() {
        let s = TaskSerializer::new();
        let log = RefCell::new(Vec::new());
        assert!(s.add(B, |t, _| log.borrow_mut().push(t)));
        assert_eq!(*log.borrow(), [B]);
        assert!(!s.is_running());
    }

    #[test]
    fn tasks_added_while_running_run_in_index_order_once_each() {
        let s = TaskSerializer::new();
        let log = RefCell::new(Vec::new());
        s.add(A, |t, _| {
            log.borrow_mut().push(t);
            if t == A && log.borrow().len() == 1 {
                // Twice each: pending tasks are idempotent.
                for t in [C, B, C, B] {
                    assert!(!s.add(t, |_, _| unreachable!()));
                }
                assert!(s.is_running());
            }
        });
        assert_eq!(*log.borrow(), [A, B, C]);
    }

    #[test]
    fn reentrant_add_of_the_running_task_runs_it_again() {
        let s = TaskSerializer::new();
        let runs = Cell::new(0);
        s.add(A, |_, _| {
            runs.set(runs.get() + 1);
            if runs.get() < 3 {
                assert!(!s.add(A, |_, _| unreachable!()));
            }
        });
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn owner_token_names_its_serializer() {
        let s = TaskSerializer::new();
        s.add(A, |_, owner| assert!(core::ptr::eq(owner.serializer(), &s)));
    }

    #[test]
    #[cfg(feature = "std")]
    fn owner_thread_is_known_only_inside() {
        let s = TaskSerializer::new();
        assert!(!s.is_owned_by_current_thread());
        s.add(A, |_, _| {
            assert!(s.is_owned_by_current_thread());
            std::thread::scope(|scope| {
                scope.spawn(|| assert!(!s.is_owned_by_current_thread()));
            });
        });
        assert!(!s.is_owned_by_current_thread());
    }

    #[test]
    fn debug_shows_state() {
        let s = TaskSerializer::new();
        assert!(std::format!("{s:?}").contains("running: false"));
    }
}
