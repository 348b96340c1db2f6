//! `IfQueue`: a send queue plus the serialized start (seed 002).

use core::fmt;
use core::ops::Deref;

use crossbeam_utils::CachePadded;
use lock_api::RawMutex;
use mpsafe_serializer::{DefaultWait, Task, TaskOwner, Wait};

use crate::DefaultLock;
use crate::delegate::StartTask;
use crate::discipline::Discipline;
use crate::queue::{ConfigError, Dropped, SendQueue};
use crate::sync::{AtomicBool, Ordering};
use mpsafe_barrier::{BarrierError, StartBarrier};

/// Restart before start: a pass that finds both pending clears `oactive` and
/// runs the start routine once, and then START finds the queue drained and
/// skips it. (START first would skip on `oactive` and leave the work to
/// RESTART anyway; restart-first is never worse.)
const RESTART: Task = Task::new(0);
const START: Task = Task::new(1);
/// Last: a barrier queued in the same pass as a start runs after it.
const BARRIER: Task = Task::new(2);

/// `IfQueue::owner_bound` when `Config::owner_bound` is `None`.
const NO_BOUND: usize = usize::MAX;

/// A driver's transmit start routine (OpenBSD `if_qstart`), registered once
/// with its [`IfQueue`].
///
/// `start` moves packets from `queue` to the hardware ring, typically in a
/// loop of [`SendQueue::dequeue`] or [`SendQueue::dequeue_burst`] until the
/// queue is empty or the ring full (then
/// [`SendQueue::set_oactive_unless`]). The [`IfQueue`] calls it only through
/// its task serializer: never twice at once, never while the interface is not
/// running, never while `oactive` is set (except from a restart, which clears
/// it), and the `owner` token proves it to the routine's own lock-held
/// helpers.
///
/// The implementing value is the queue's driver state (OpenBSD `ifq_softc`:
/// the tx ring this queue feeds); the completion path reaches it with
/// [`IfQueue::driver`]. Any `Fn(&SendQueue<D, R>, &TaskOwner<'_>)` closure is a
/// `Start` too (see [`IfQueue::from_fn`]).
pub trait Start<D: Discipline, R: RawMutex> {
    /// Transmits what `queue` holds. Must not panic (a panic leaves the
    /// serializer owned: the queue never starts again).
    fn start(&self, queue: &SendQueue<D, R>, owner: &TaskOwner<'_>);
}

impl<D, R, F> Start<D, R> for F
where
    D: Discipline,
    R: RawMutex,
    F: Fn(&SendQueue<D, R>, &TaskOwner<'_>),
{
    #[inline]
    fn start(&self, queue: &SendQueue<D, R>, owner: &TaskOwner<'_>) {
        self(queue, owner)
    }
}

/// How an [`IfQueue`] is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The most packets the queue holds (OpenBSD `ifq_maxlen`), `1..=`
    /// [`MAX_MAXLEN`](crate::MAX_MAXLEN). Default 256 (`IFQ_MAXLEN`).
    pub maxlen: usize,
    /// Bundling threshold: [`IfQueue::start`] runs the start routine only
    /// once the queue holds `min(bundle, maxlen)` packets, and otherwise
    /// defers it to [`IfQueue::flush_bundle`] (OpenBSD `ifq_start` with
    /// `min(4, ifq_maxlen)`, later `if_txmit`). Default 1: start on every call.
    pub bundle: usize,
    /// The owner bound, in packets: a caller that became the owner of the
    /// start serializer (through [`IfQueue::start`] or
    /// [`IfQueue::transmit`]) dequeues at most this many packets before it
    /// returns. Its start passes get what is left of the bound as a dequeue
    /// budget ([`SendQueue::dequeue`] returns `None` and
    /// [`SendQueue::dequeue_burst`] comes back short once it is spent, so
    /// the start routine sees an empty queue and returns); once the bound
    /// is reached with work left, the owner hands the rest to the queue's
    /// start task ([`IfQueue::start_task`]) and returns, and until the task
    /// has taken over, transmitting CPUs post their starts to the task
    /// instead of the serializer. Restarts (tx completion) are not bounded.
    ///
    /// With a bound, a thread (a kernel's task queue) must run
    /// `ifq.start_task().run(&ifq)`, or a handed-off start waits for it; and
    /// the start routine must end its loop when a dequeue comes back empty
    /// (not loop on [`SendQueue::is_empty`]).
    ///
    /// Default `None`: no bound, as OpenBSD's `ifq_serialize` (the owner
    /// loops until no start is pending). Linux bounds its qdisc owner at 64
    /// packets (`dev_tx_weight`) and FreeBSD's iflib can hand the drain to
    /// a task queue (`tx_abdicate`).
    pub owner_bound: Option<usize>,
}

impl Config {
    /// The default configuration with `maxlen` packets.
    pub const fn with_maxlen(maxlen: usize) -> Self {
        Self {
            maxlen,
            bundle: 1,
            owner_bound: None,
        }
    }

    /// This configuration with bundling threshold `bundle`.
    pub const fn bundle(self, bundle: usize) -> Self {
        Self { bundle, ..self }
    }

    /// This configuration with the owner bound `packets`
    /// ([`Config::owner_bound`](Config#structfield.owner_bound); 0 is a
    /// [`ConfigError::ZeroOwnerBound`] when the queue is made).
    pub const fn owner_bound(self, packets: usize) -> Self {
        Self {
            owner_bound: Some(packets),
            ..self
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::with_maxlen(256)
    }
}

/// What a call to [`IfQueue::start`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Started {
    /// This call ran the start pass (and any work others asked for meanwhile).
    Ran,
    /// Another CPU (or this one, further up the stack) is running the
    /// serializer and will run the start routine again before it lets go.
    Handed,
    /// Bundling: the queue is below the threshold; the start waits for more
    /// packets or for [`IfQueue::flush_bundle`].
    Deferred,
    /// Owner bound: an owner handed the start to the queue's start task,
    /// which has not taken over yet; this call posted its start there.
    Delegated,
}

/// An interface send queue with a serialized start: OpenBSD's `struct
/// ifqueue`, the heart of seed 002.
///
/// Dereferences to its [`SendQueue`] (enqueue, dequeue, purge, counters,
/// `oactive`). On top of it:
///
/// - [`start`](IfQueue::start) runs the driver's [`Start`] routine through a
///   private task serializer: at most one start routine runs at a time per
///   queue, system-wide; a caller that finds one running returns at once and
///   the running one loops again for it. Nobody blocks.
/// - [`restart`](IfQueue::restart), from tx completion: clears `oactive` and
///   starts.
/// - [`barrier`](IfQueue::barrier): returns once no start routine that began
///   before it is still running. Teardown order: [`set_running(false)`], the
///   interrupt barrier, then this barrier, then free the ring.
///
/// The queue lock is `R` (default [`DefaultLock`]); the barrier waits with
/// `W` (default: futex with `std`, spin without).
///
/// [`set_running(false)`]: IfQueue::set_running
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{Config, IfQueue, Priq};
///
/// let ifq = IfQueue::from_fn(Priq::new(), Config::with_maxlen(64), |q, _owner| {
///     // The driver's start routine: move packets to the ring.
///     while let Some(frame) = q.dequeue() {
///         drop(frame); // "transmitted"
///     }
/// })?;
/// ifq.transmit(vec![0u8; 60])?; // enqueue + start
/// assert!(ifq.is_empty());
/// assert_eq!(ifq.counters().packets, 1);
///
/// // Going down: stop new starts, wait out a running one.
/// ifq.set_running(false);
/// ifq.barrier()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IfQueue<D: Discipline, S, R: RawMutex = DefaultLock, W: Wait = DefaultWait> {
    /// Holds the start serializer too, on the line of the queue lock (see
    /// `SendQueue::serializer`): away from the flags below, which every
    /// `transmit` reads.
    queue: SendQueue<D, R>,
    /// IFF_RUNNING: the start tasks skip the routine while clear.
    running: AtomicBool,
    /// A start deferred by bundling waits for `flush_bundle`.
    bundle_pending: AtomicBool,
    /// An owner that reached the owner bound handed the start to `task`,
    /// which has not taken the serializer since: transmitting CPUs post
    /// their starts to the task instead of marking them in the serializer
    /// (where the owner that handed off would keep finding them).
    delegated: AtomicBool,
    /// `Config::bundle`; 1 means no bundling. The threshold is
    /// `min(bundle, maxlen)` with the maxlen of the moment (it can change).
    bundle: usize,
    /// `Config::owner_bound`, or [`NO_BOUND`].
    owner_bound: usize,
    barrier: StartBarrier<W>,
    /// The start task a bounded owner hands the rest to: written by the
    /// CPUs that post to it and by its thread, so on a line of its own.
    task: CachePadded<StartTask<W>>,
    /// The driver's state, which its start routine and tx completion write
    /// on every burst: its own cache line, away from the flags and
    /// configuration every `transmit` reads.
    start: CachePadded<S>,
}

impl<D: Discipline, S: Start<D, DefaultLock>> IfQueue<D, S> {
    /// A running queue with the default lock and wait strategy, whose
    /// serialized start runs `start`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a zero or too large `maxlen` or a zero `bundle`.
    pub fn new(discipline: D, config: Config, start: S) -> Result<Self, ConfigError> {
        Self::with_lock(discipline, config, start)
    }
}

impl<D: Discipline, F> IfQueue<D, F>
where
    F: Fn(&SendQueue<D, DefaultLock>, &TaskOwner<'_>),
{
    /// [`IfQueue::new`] with a closure for the start routine (this form lets
    /// the compiler infer the closure's argument types).
    ///
    /// # Errors
    ///
    /// As [`IfQueue::new`].
    pub fn from_fn(discipline: D, config: Config, start: F) -> Result<Self, ConfigError> {
        Self::with_lock(discipline, config, start)
    }
}

impl<D: Discipline, F, R: RawMutex, W: Wait> IfQueue<D, F, R, W>
where
    F: Fn(&SendQueue<D, R>, &TaskOwner<'_>),
{
    /// [`IfQueue::with_lock`] with a closure for the start routine: the
    /// closure's argument types are inferred from the lock named in the
    /// queue's type.
    ///
    /// # Errors
    ///
    /// As [`IfQueue::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_ifqueue::{Config, Fifo, IfQueue};
    /// use mpsafe_serializer::{RawSerializer, Spin};
    ///
    /// let ifq: IfQueue<Fifo<Vec<u8>>, _, RawSerializer, Spin> =
    ///     IfQueue::from_fn_with_lock(Fifo::new(), Config::default(), |q, _owner| {
    ///         while q.dequeue().is_some() {}
    ///     })?;
    /// ifq.transmit(vec![0; 60])?;
    /// assert!(ifq.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_fn_with_lock(discipline: D, config: Config, start: F) -> Result<Self, ConfigError> {
        Self::with_lock(discipline, config, start)
    }
}

impl<D: Discipline, S: Start<D, R>, R: RawMutex, W: Wait> IfQueue<D, S, R, W> {
    /// [`IfQueue::new`] with the queue lock `R` and wait strategy `W` named by
    /// the caller.
    ///
    /// # Errors
    ///
    /// As [`IfQueue::new`].
    pub fn with_lock(discipline: D, config: Config, start: S) -> Result<Self, ConfigError> {
        if config.bundle == 0 {
            return Err(ConfigError::ZeroBundle);
        }
        if config.owner_bound == Some(0) {
            return Err(ConfigError::ZeroOwnerBound);
        }
        let queue = SendQueue::with_lock(discipline, config.maxlen)?;
        Ok(Self::build(queue, config, start))
    }

    crate::sync::const_fn! {
        /// [`IfQueue::with_lock`] as a `const fn`, for a `static` queue; the
        /// lock and wait are the ones the `static`'s type names. A start
        /// routine in a `static` is a `fn` pointer or a value of a type of
        /// your own.
        ///
        /// # Panics
        ///
        /// If `config.maxlen` is 0 or above [`MAX_MAXLEN`](crate::MAX_MAXLEN),
        /// `config.bundle` is 0 or `config.owner_bound` is `Some(0)`; in a
        /// `const` or `static` initializer that is a compile error.
        ///
        /// # Examples
        ///
        /// ```
        /// use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, TaskOwner};
        ///
        /// type Frame = Vec<u8>;
        /// type StartFn = fn(&SendQueue<Fifo<Frame>>, &TaskOwner<'_>);
        ///
        /// fn em_start(q: &SendQueue<Fifo<Frame>>, _: &TaskOwner<'_>) {
        ///     while q.dequeue().is_some() {}
        /// }
        ///
        /// static EM0_TXQ: IfQueue<Fifo<Frame>, StartFn> =
        ///     IfQueue::new_const(Fifo::new(), Config::with_maxlen(256), em_start);
        ///
        /// EM0_TXQ.transmit(vec![0; 64]).unwrap();
        /// assert!(EM0_TXQ.is_empty());
        /// ```
        ///
        /// A zero bundling threshold does not compile:
        ///
        /// ```compile_fail
        /// # use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, TaskOwner};
        /// # type StartFn = fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>);
        /// # fn em_start(q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {}
        /// static Q: IfQueue<Fifo<Vec<u8>>, StartFn> =
        ///     IfQueue::new_const(Fifo::new(), Config::with_maxlen(256).bundle(0), em_start);
        /// ```
        pub fn new_const(discipline: D, config: Config, start: S) -> Self {
            assert!(config.bundle != 0, "bundling threshold is 0 (1 starts on every call)");
            assert!(
                !matches!(config.owner_bound, Some(0)),
                "owner bound is 0 packets (None leaves the owner unbounded)"
            );
            let queue = SendQueue::new_const(discipline, config.maxlen);
            Self::build(queue, config, start)
        }
    }

    crate::sync::const_fn! {
        fn build(queue: SendQueue<D, R>, config: Config, start: S) -> Self {
            Self {
                queue,
                running: AtomicBool::new(true),
                bundle_pending: AtomicBool::new(false),
                delegated: AtomicBool::new(false),
                bundle: config.bundle,
                owner_bound: match config.owner_bound {
                    Some(n) => n,
                    None => NO_BOUND,
                },
                barrier: StartBarrier::new(),
                task: CachePadded::new(StartTask::new()),
                start: CachePadded::new(start),
            }
        }
    }

    /// The send queue (also reachable through `Deref`).
    #[inline]
    pub fn queue(&self) -> &SendQueue<D, R> {
        &self.queue
    }

    /// The start routine's state: the driver's per-queue data (its tx ring),
    /// for the completion path.
    #[inline]
    pub fn driver(&self) -> &S {
        &self.start
    }

    /// Whether `owner` is the token of the serializer of the `IfQueue` whose
    /// send queue is `queue`: what a start routine asserts before it touches
    /// its ring, since a token from another queue's serializer (a start
    /// routine calling its neighbour's) proves nothing about this one.
    ///
    /// Exact and cheap: one address comparison, no memory access (the
    /// serializer lives inside the send queue). For a [`SendQueue`] standing
    /// alone the answer is always `false`: no token for it exists.
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, Start, TaskOwner};
    ///
    /// struct Ring;
    /// impl Start<Fifo<Vec<u8>>, mpsafe_ifqueue::DefaultLock> for Ring {
    ///     fn start(&self, q: &SendQueue<Fifo<Vec<u8>>>, owner: &TaskOwner<'_>) {
    ///         assert!(IfQueue::<_, Self>::owns(q, owner), "another queue's token");
    ///         while q.dequeue().is_some() {}
    ///     }
    /// }
    ///
    /// let a = IfQueue::new(Fifo::new(), Config::default(), Ring)?;
    /// let b = IfQueue::new(Fifo::new(), Config::default(), Ring)?;
    /// a.transmit(vec![0; 60])?; // a's start routine, with a's token
    /// // From inside b's serializer, a's routine gets b's token: refused.
    /// let wrong = IfQueue::from_fn(Fifo::<Vec<u8>>::new(), Config::default(), |_, owner| {
    ///     assert!(!IfQueue::<_, Ring>::owns(a.queue(), owner));
    ///     assert!(!IfQueue::<_, Ring>::owns(b.queue(), owner));
    /// })?;
    /// wrong.transmit(vec![0; 60])?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline]
    pub fn owns(queue: &SendQueue<D, R>, owner: &TaskOwner<'_>) -> bool {
        // The serializer lives inside the send queue (on its lock's line),
        // so the token names this queue's exactly when it points there.
        core::ptr::eq(owner.serializer(), &queue.serializer)
    }

    /// Enqueues `packet` and, unless it was refused, starts: the stack's
    /// `if_enqueue`.
    ///
    /// # Errors
    ///
    /// The dropped packet, as for [`SendQueue::enqueue`]; after an
    /// [`Dropped::Evicted`] the start has run too.
    #[inline]
    pub fn transmit(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        let result = self.queue.enqueue(packet);
        if !matches!(result, Err(Dropped::Refused(_))) {
            self.start();
        }
        result
    }

    /// Asks for the start routine to run (OpenBSD `ifq_start`); never blocks.
    ///
    /// With bundling, and fewer packets queued than the threshold
    /// `min(bundle, maxlen)` (computed on every call, as OpenBSD's
    /// `ifq_start` does, so a later [`Locked::set_maxlen`] counts), only
    /// marks a start pending for [`flush_bundle`](IfQueue::flush_bundle).
    ///
    /// [`Locked::set_maxlen`]: crate::Locked::set_maxlen
    #[inline]
    pub fn start(&self) -> Started {
        if self.bundle > 1 {
            let len = self.queue.len();
            // Only a queue below the configured bundle can be below the
            // threshold, so the maxlen (read under the queue lock) is needed
            // only on the path that may defer.
            if len < self.bundle && len < self.queue.maxlen() {
                // Release, paired with `flush_bundle`'s Acquire: the flusher
                // that takes this pending start sees the packet this caller
                // queued before asking (the start task checks the queue's
                // length without its lock, and a Relaxed hand-off let it
                // find the queue empty and drop the start: the loom model
                // `bundled_starts_are_never_lost` found that). A swap, not a
                // store, and so are the other writes of the flag: every
                // write is a read-modify-write, so the release sequence of
                // each deferring caller reaches the flusher even when a
                // later caller set the flag again.
                self.bundle_pending.swap(true, Ordering::Release);
                return Started::Deferred;
            }
            // Relaxed: this caller runs the start itself. A swap keeps the
            // release sequences of earlier deferring callers intact.
            self.bundle_pending.swap(false, Ordering::Relaxed);
        }
        self.start_now()
    }

    /// The start without bundling: through the serializer, bounded if the
    /// queue has an owner bound.
    #[inline]
    fn start_now(&self) -> Started {
        if self.owner_bound == NO_BOUND {
            return self.run(START);
        }
        // Relaxed: the flag publishes nothing. A caller that reads it set
        // posts to the task, whose Acquire take of the request carries this
        // caller's enqueue (`StartTask::request` is Release); a caller that
        // reads it clear marks START, and the serializer carries the
        // enqueue to whichever owner takes the mark. A stale value in either
        // direction costs a detour, never a start.
        if self.delegated.load(Ordering::Relaxed) {
            self.task.request();
            return Started::Delegated;
        }
        self.run_bounded()
    }

    /// Runs a start that bundling deferred, if one is pending (OpenBSD
    /// `ifq_bundle_task`). With bundling on, call it from the stack's
    /// deferred-work context (softnet task, end of a receive batch, a timer)
    /// or packets below the threshold wait until the next one arrives.
    /// Returns whether a start was pending.
    pub fn flush_bundle(&self) -> bool {
        // Acquire: pairs with the deferring `start`'s Release (see there).
        if self.bundle_pending.swap(false, Ordering::Acquire) {
            self.start_now();
            true
        } else {
            false
        }
    }

    /// Clears `oactive` and runs the start routine (OpenBSD `ifq_restart`),
    /// for tx completion that freed ring slots.
    #[inline]
    pub fn restart(&self) -> Started {
        self.run(RESTART)
    }

    /// Restarts if `oactive` is set; returns whether it did. Call it from tx
    /// completion *after* freeing ring slots: paired with
    /// [`SendQueue::set_oactive_unless`] in the start routine, no restart is
    /// lost.
    #[inline]
    pub fn restart_if_oactive(&self) -> bool {
        if self.queue.oactive_after_fence() {
            self.restart();
            true
        } else {
            false
        }
    }

    /// Waits until no start routine that began before this call is still
    /// running (OpenBSD `ifq_barrier`). Also drops a pending bundled start.
    ///
    /// Clear [`set_running`](IfQueue::set_running) first, so no new start
    /// begins after it; then free what the start routine uses.
    ///
    /// # Errors
    ///
    /// [`BarrierError`] if called from inside the serializer (from the start
    /// routine itself), which could never return.
    ///
    /// A caller that holds a lock the start routine takes (a big lock) must
    /// release it around this call, as OpenBSD's `cond_wait` sleeps with
    /// the kernel lock released: otherwise it waits for a start routine
    /// that waits for it (the reference driver's stop does this with
    /// `KernelGuard::sleep`).
    pub fn barrier(&self) -> Result<(), BarrierError> {
        self.bundle_pending.swap(false, Ordering::Relaxed);
        // Refuse before releasing anything: from inside the start routine
        // the barrier could never complete.
        #[cfg(feature = "std")]
        if self.queue.serializer.is_owned_by_current_thread() {
            return Err(BarrierError::InsideSerializer);
        }
        self.barrier
            .wait(&self.queue.serializer, BARRIER, |task, owner| {
                self.run_task(task, owner)
            })
    }

    /// Sets or clears "running" (OpenBSD `IFF_RUNNING`). A new queue is
    /// running. While clear, starts and restarts skip the start routine.
    ///
    /// The store is ordered before later serializer passes by the serializer
    /// itself: a start pass that begins after a [`barrier`](IfQueue::barrier)
    /// that followed `set_running(false)` sees it.
    pub fn set_running(&self, running: bool) {
        // Release/Acquire would not be needed for the barrier argument above
        // (the serializer's own release/acquire chain carries it), but makes
        // the flag safe to use as a plain "interface is up" signal too.
        self.running.store(running, Ordering::Release);
    }

    /// Whether the queue is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Whether a start pass is in progress (a hint, possibly stale).
    pub fn is_starting(&self) -> bool {
        self.queue.serializer.is_running()
    }

    #[inline]
    fn run(&self, task: Task) -> Started {
        if self
            .queue
            .serializer
            .add(task, |task, owner| self.run_task(task, owner))
        {
            Started::Ran
        } else {
            Started::Handed
        }
    }

    /// [`run`](IfQueue::run) of START for a queue with an owner bound. The
    /// runner counts the packets dequeued since this caller took the
    /// serializer and gives each START pass what is left of the bound as a
    /// dequeue budget (the queue looks empty to the start routine once it is
    /// spent). Once the bound is reached with work left (a START marked
    /// again, or packets still queued after a pass that spent the budget)
    /// it hands off once: sets `delegated` and posts a request to the task.
    /// It drops every later START mark of this ownership: the task takes
    /// the serializer after this owner lets go and its pass sees everything
    /// those marks were for (the serializer's release/acquire chain).
    /// `delegated` stops new marks, so the owner's loop ends.
    fn run_bounded(&self) -> Started {
        let mut base = None;
        let mut handed_off = false;
        let hand_off = |handed_off: &mut bool| {
            if !*handed_off {
                *handed_off = true;
                self.delegated.store(true, Ordering::Relaxed);
                self.task.request();
            }
        };
        let ran = self.queue.serializer.add(START, |task, owner| {
            // The first task this caller runs: it just took the serializer.
            let base = *base.get_or_insert_with(|| self.queue.dequeued());
            if task != START {
                return self.run_task(task, owner);
            }
            if handed_off {
                return;
            }
            // Exact: every dequeue counted here ran on this thread, as the
            // owner's start routine (or under a queue lock release ordered
            // before this ownership by the serializer).
            let sent = self.queue.dequeued().wrapping_sub(base);
            if sent >= self.owner_bound {
                return hand_off(&mut handed_off);
            }
            self.queue.set_budget(Some(self.owner_bound - sent));
            self.run_task(task, owner);
            let left = self.queue.budget_left();
            self.queue.set_budget(None);
            // The routine stopped because the budget ran out: what it left
            // has no START marked for it, so hand it to the task now.
            if left == 0 && !self.queue.is_empty() {
                hand_off(&mut handed_off);
            }
        });
        if ran { Started::Ran } else { Started::Handed }
    }

    /// The start task's pass ([`StartTask::run`]): with no owner bound, an
    /// ordinary [`start`](IfQueue::start). With one, a START through the
    /// serializer with no bound (the task thread is no caller's victim), and
    /// if a bounded owner that handed off holds the serializer (it drops
    /// START marks), retried until the task gets it.
    pub(crate) fn start_from_task(&self) {
        if self.owner_bound == NO_BOUND {
            self.start();
            return;
        }
        let backoff = crate::sync::Backoff::new();
        loop {
            let ran = self.queue.serializer.add(START, |task, owner| {
                // The task holds the serializer: transmitting CPUs may mark
                // START again (a mark now reaches this unbounded loop).
                // Relaxed, as every access of the flag (see `start_now`).
                if self.delegated.load(Ordering::Relaxed) {
                    self.delegated.store(false, Ordering::Relaxed);
                }
                self.run_task(task, owner);
            });
            // Handed with `delegated` clear: the owner is bounded but has
            // not handed off, so it runs our START. With `delegated` set, it
            // may be the owner that handed off and drops the mark: retry.
            // (Only this task clears the flag, and it reads its own latest
            // value or the handing owner's, which its request carried.)
            if ran || !self.delegated.load(Ordering::Relaxed) {
                return;
            }
            backoff.snooze();
        }
    }

    /// The start task a bounded owner hands the rest of its work to
    /// ([`Config::owner_bound`](Config#structfield.owner_bound)). With a
    /// bound, run it on a thread of its own (`ifq.start_task().run(&ifq)`);
    /// [`StartTask::stop`] ends it after one last pass. It is also an
    /// ordinary [`StartTask`]: [`StartTask::transmit`] through it delegates
    /// every start.
    pub fn start_task(&self) -> &StartTask<W> {
        &self.task
    }

    /// The one task runner every caller passes, so any caller can run any
    /// pending task.
    fn run_task(&self, task: Task, owner: &TaskOwner<'_>) {
        match task {
            RESTART => {
                self.queue.clear_oactive();
                if self.is_running() && !self.queue.is_empty() {
                    self.start.start(&self.queue, owner);
                }
            }
            START => {
                if self.is_running() && !self.queue.is_oactive() && !self.queue.is_empty() {
                    self.start.start(&self.queue, owner);
                }
            }
            BARRIER => self.barrier.run_locked(owner),
            _ => unreachable!("an IfQueue adds only its own tasks"),
        }
    }
}

impl<D: Discipline, S, R: RawMutex, W: Wait> Deref for IfQueue<D, S, R, W> {
    type Target = SendQueue<D, R>;
    #[inline]
    fn deref(&self) -> &SendQueue<D, R> {
        &self.queue
    }
}

impl<D: Discipline, S, R: RawMutex, W: Wait> fmt::Debug for IfQueue<D, S, R, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfQueue")
            .field("queue", &self.queue)
            .field("running", &self.running.load(Ordering::Relaxed))
            .field("starting", &self.queue.serializer.is_running())
            .field("bundle", &self.bundle)
            .field(
                "owner_bound",
                &(self.owner_bound != NO_BOUND).then_some(self.owner_bound),
            )
            .field("delegated", &self.delegated.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::discipline::Fifo;
    use crate::queue::ConfigError;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::sync::atomic::{AtomicBool as StdBool, AtomicUsize as StdUsize, Ordering as O};

    type Q<S> = IfQueue<Fifo<Vec<u8>>, S>;

    /// A start routine that counts its calls and what it sent.
    #[derive(Default)]
    struct Counting {
        calls: StdUsize,
        sent: StdUsize,
    }

    impl Start<Fifo<Vec<u8>>, DefaultLock> for Counting {
        fn start(&self, q: &SendQueue<Fifo<Vec<u8>>>, _owner: &TaskOwner<'_>) {
            self.calls.fetch_add(1, O::Relaxed);
            while q.dequeue().is_some() {
                self.sent.fetch_add(1, O::Relaxed);
            }
        }
    }

    fn counting(config: Config) -> Q<Counting> {
        IfQueue::new(Fifo::new(), config, Counting::default()).unwrap()
    }

    fn frame() -> Vec<u8> {
        vec![0; 60]
    }

    impl Q<Counting> {
        fn calls(&self) -> usize {
            self.driver().calls.load(O::Relaxed)
        }
        fn sent(&self) -> usize {
            self.driver().sent.load(O::Relaxed)
        }
    }

    #[test]
    fn config_errors() {
        let e = |c| IfQueue::new(Fifo::<Vec<u8>>::new(), c, Counting::default()).unwrap_err();
        assert_eq!(e(Config::with_maxlen(0)), ConfigError::ZeroMaxlen);
        assert_eq!(e(Config::default().bundle(0)), ConfigError::ZeroBundle);
        assert!(matches!(
            e(Config::with_maxlen(usize::MAX)),
            ConfigError::MaxlenTooLarge { .. }
        ));
    }

    #[test]
    fn start_runs_the_routine_only_when_it_has_work() {
        let q = counting(Config::default());
        // Empty: the routine is not called.
        assert_eq!(q.start(), Started::Ran);
        assert_eq!(q.calls(), 0);
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Ran);
        assert_eq!((q.calls(), q.sent()), (1, 1));
        // transmit = enqueue + start.
        q.transmit(frame()).unwrap();
        assert_eq!((q.calls(), q.sent()), (2, 2));
    }

    #[test]
    fn not_running_or_oactive_skips_the_routine_restart_clears_oactive() {
        let q = counting(Config::default());
        q.set_running(false);
        assert!(!q.is_running());
        q.transmit(frame()).unwrap();
        assert_eq!(q.calls(), 0);
        q.set_running(true);
        q.set_oactive();
        q.start();
        assert_eq!(q.calls(), 0);
        // Completion path: restart only if oactive.
        assert!(q.restart_if_oactive());
        assert!(!q.is_oactive());
        assert_eq!((q.calls(), q.sent()), (1, 1));
        assert!(!q.restart_if_oactive());
        // A restart while down clears oactive but does not call the routine.
        q.set_running(false);
        q.set_oactive();
        q.enqueue(frame()).unwrap();
        assert_eq!(q.restart(), Started::Ran);
        assert!(!q.is_oactive());
        assert_eq!(q.calls(), 1);
    }

    #[test]
    fn refused_transmit_does_not_start_evicting_one_does() {
        let q = counting(Config::with_maxlen(1));
        q.set_running(false);
        q.transmit(frame()).unwrap();
        assert!(matches!(q.transmit(frame()), Err(Dropped::Refused(_))));
        assert_eq!(q.counters().qdrops, 1);
        q.set_running(true);
        q.start();
        assert_eq!(q.sent(), 1);
    }

    #[test]
    fn start_from_inside_the_routine_is_handed_to_the_owner() {
        use std::sync::OnceLock;
        type Fq = IfQueue<Fifo<Vec<u8>>, fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>)>;
        static Q: OnceLock<Fq> = OnceLock::new();
        static DEPTH: StdUsize = StdUsize::new(0);
        static CALLS: StdUsize = StdUsize::new(0);
        fn start(q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {
            assert_eq!(
                DEPTH.fetch_add(1, O::Relaxed),
                0,
                "start routine re-entered"
            );
            if CALLS.fetch_add(1, O::Relaxed) == 0 {
                // The stack enqueues and starts from inside (say, bpf echo):
                // handed to us, we run again after returning.
                q.enqueue(frame()).unwrap();
                assert_eq!(Q.get().unwrap().start(), Started::Handed);
            } else {
                while q.dequeue().is_some() {}
            }
            DEPTH.fetch_sub(1, O::Relaxed);
        }
        let q = Q.get_or_init(|| IfQueue::new(Fifo::new(), Config::default(), start as _).unwrap());
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Ran);
        assert_eq!(CALLS.load(O::Relaxed), 2);
        assert!(q.is_empty());
    }

    #[test]
    fn bundling_defers_below_the_threshold() {
        let q = counting(Config::with_maxlen(8).bundle(4));
        for _ in 0..3 {
            q.enqueue(frame()).unwrap();
            assert_eq!(q.start(), Started::Deferred);
        }
        assert_eq!(q.calls(), 0);
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Ran);
        assert_eq!(q.sent(), 4);
        // Nothing pending any more.
        assert!(!q.flush_bundle());
        // A lone packet waits for the flush.
        q.transmit(frame()).unwrap();
        assert_eq!(q.sent(), 4);
        assert!(q.flush_bundle());
        assert_eq!(q.sent(), 5);
        // The barrier drops a pending bundle.
        q.transmit(frame()).unwrap();
        q.barrier().unwrap();
        assert!(!q.flush_bundle());
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn bundling_threshold_is_capped_by_maxlen() {
        let q = counting(Config::with_maxlen(2).bundle(16));
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Deferred);
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Ran);
        assert_eq!(q.sent(), 2);
    }

    #[test]
    fn bundling_threshold_follows_a_smaller_maxlen() {
        // OpenBSD computes min(if_txmit, ifq_maxlen) on every ifq_start: a
        // queue shrunk below the bundle must not defer forever on a full
        // queue that refuses every new packet.
        let q = counting(Config::with_maxlen(8).bundle(4));
        q.lock().set_maxlen(2).unwrap();
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Deferred);
        q.enqueue(frame()).unwrap();
        assert!(q.enqueue(frame()).is_err(), "full at the new maxlen");
        assert_eq!(q.start(), Started::Ran);
        assert_eq!(q.sent(), 2);
        // And growing it back raises the threshold again.
        q.lock().set_maxlen(8).unwrap();
        q.enqueue(frame()).unwrap();
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Deferred);
    }

    #[test]
    fn barrier_from_inside_the_routine_is_an_error() {
        // The routine reaches the queue through a static.
        use std::sync::OnceLock;
        type Fq = IfQueue<Fifo<Vec<u8>>, fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>)>;
        static Q: OnceLock<Fq> = OnceLock::new();
        static RESULT: OnceLock<Result<(), BarrierError>> = OnceLock::new();
        fn start(q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {
            while q.dequeue().is_some() {}
            RESULT.get_or_init(|| Q.get().unwrap().barrier());
        }
        let q = Q.get_or_init(|| IfQueue::new(Fifo::new(), Config::default(), start as _).unwrap());
        q.transmit(frame()).unwrap();
        assert!(RESULT.get().unwrap().is_err());
        // The queue still works.
        q.transmit(frame()).unwrap();
        assert!(q.is_empty());
        q.barrier().unwrap();
    }

    #[test]
    fn barrier_waits_for_a_running_start() {
        let entered = StdBool::new(false);
        let release = StdBool::new(false);
        let finished = StdBool::new(false);
        let q: Q<_> = IfQueue::from_fn(Fifo::new(), Config::default(), |q, _| {
            entered.store(true, O::SeqCst);
            while !release.load(O::SeqCst) {
                std::thread::yield_now();
            }
            while q.dequeue().is_some() {}
            finished.store(true, O::SeqCst);
        })
        .unwrap();
        std::thread::scope(|s| {
            s.spawn(|| q.transmit(frame()).unwrap());
            while !entered.load(O::SeqCst) {
                std::thread::yield_now();
            }
            assert!(q.is_starting());
            q.set_running(false);
            let barrier = s.spawn(|| {
                q.barrier().unwrap();
                // The barrier returned: the routine that was running is done.
                assert!(finished.load(O::SeqCst));
            });
            for _ in 0..100 {
                std::thread::yield_now();
            }
            assert!(!barrier.is_finished() || finished.load(O::SeqCst));
            release.store(true, O::SeqCst);
            barrier.join().unwrap();
        });
        // Not running: a later start does not call the routine.
        entered.store(false, O::SeqCst);
        q.transmit(frame()).unwrap();
        assert!(!entered.load(O::SeqCst));
        assert_eq!(q.len(), 1);
    }

    /// A start routine that checks its token: its own queue's is accepted
    /// (including a restart's and a token taken while another queue's
    /// serializer is also held on this thread), another queue's refused.
    #[test]
    fn owns_tells_a_queue_s_token_from_another_s() {
        type Fq = IfQueue<Fifo<Vec<u8>>, fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>)>;
        static OWN: StdUsize = StdUsize::new(0);
        fn start(q: &SendQueue<Fifo<Vec<u8>>>, owner: &TaskOwner<'_>) {
            assert!(Fq::owns(q, owner));
            OWN.fetch_add(1, O::Relaxed);
            while q.dequeue().is_some() {}
        }
        let a: Fq = IfQueue::new(Fifo::new(), Config::default(), start as _).unwrap();
        let b: Fq = IfQueue::new(Fifo::new(), Config::default(), start as _).unwrap();
        a.transmit(frame()).unwrap();
        a.set_oactive();
        a.enqueue(frame()).unwrap();
        a.restart();
        let seen = StdUsize::new(0);
        let outer: Q<_> = IfQueue::from_fn(Fifo::new(), Config::default(), |_, owner| {
            assert!(!Fq::owns(a.queue(), owner));
            assert!(!Fq::owns(b.queue(), owner));
            // b's own start, run from inside this serializer: b's token.
            b.transmit(frame()).unwrap();
            seen.fetch_add(1, O::Relaxed);
        })
        .unwrap();
        outer.transmit(frame()).unwrap();
        assert_eq!((seen.load(O::Relaxed), OWN.load(O::Relaxed)), (1, 3));
    }

    #[test]
    fn a_zero_owner_bound_is_an_error() {
        let e = IfQueue::new(
            Fifo::<Vec<u8>>::new(),
            Config::default().owner_bound(0),
            Counting::default(),
        )
        .unwrap_err();
        assert_eq!(e, ConfigError::ZeroOwnerBound);
        assert!(std::format!("{e}").contains("owner bound is 0"));
    }

    /// A bounded owner returns once its passes have sent the bound while
    /// more is queued and more starts are marked; the start task finishes
    /// the queue, and every packet offered is sent once.
    #[test]
    fn a_bounded_owner_returns_and_the_task_finishes_the_queue() {
        use std::sync::OnceLock;
        type Fq = IfQueue<Fifo<Vec<u8>>, fn(&SendQueue<Fifo<Vec<u8>>>, &TaskOwner<'_>)>;
        static Q: OnceLock<Fq> = OnceLock::new();
        static SENT: StdUsize = StdUsize::new(0);
        static OFFERED: StdUsize = StdUsize::new(0);
        const TOTAL: usize = 41;
        // One packet per pass while "another CPU" keeps offering two more
        // and asking for a start (handed to the running owner); once the
        // offers stop, drain.
        fn start(q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {
            if OFFERED.load(O::Relaxed) < TOTAL {
                if q.dequeue().is_some() {
                    SENT.fetch_add(1, O::Relaxed);
                }
                for _ in 0..2 {
                    q.enqueue(frame()).unwrap();
                    OFFERED.fetch_add(1, O::Relaxed);
                }
                assert_eq!(Q.get().unwrap().start(), Started::Handed);
            } else {
                while q.dequeue().is_some() {
                    SENT.fetch_add(1, O::Relaxed);
                }
            }
        }
        let q = Q.get_or_init(|| {
            IfQueue::new(Fifo::new(), Config::default().owner_bound(4), start as _).unwrap()
        });
        q.enqueue(frame()).unwrap();
        OFFERED.fetch_add(1, O::Relaxed);
        assert_eq!(q.start(), Started::Ran);
        // Four passes of one packet, then the owner handed off and returned
        // with the queue not empty and starts still being asked for.
        assert_eq!(SENT.load(O::Relaxed), 4);
        assert_eq!(q.len(), 1 + 2 * 4 - 4);
        assert!(std::format!("{q:?}").contains("delegated: true"));
        // Until the task takes over, a start is posted to it.
        assert_eq!(q.start(), Started::Delegated);
        assert_eq!(SENT.load(O::Relaxed), 4);
        // The task: `stop` first, so `run` makes its last pass here and
        // returns. Its pass is not bounded: it runs the rest to the end.
        q.start_task().stop();
        q.start_task().run(q);
        assert_eq!(OFFERED.load(O::Relaxed), TOTAL);
        assert_eq!(SENT.load(O::Relaxed), TOTAL, "a packet was lost");
        assert!(q.is_empty());
        assert_eq!(q.counters().packets, TOTAL as u64);
        // The task cleared the hand-off: the next start is an owner again.
        assert!(std::format!("{q:?}").contains("delegated: false"));
        q.enqueue(frame()).unwrap();
        assert_eq!(q.start(), Started::Ran);
        assert!(q.is_empty());
    }

    /// A start routine that drains until `dequeue` comes back empty stops
    /// at the bound: its pass gets a dequeue budget. What it leaves goes to
    /// the task, with no further start asked for.
    #[test]
    fn a_bounded_owner_s_pass_stops_at_the_budget() {
        let q = counting(Config::default().owner_bound(4));
        for _ in 0..20 {
            q.enqueue(frame()).unwrap();
        }
        assert_eq!(q.start(), Started::Ran);
        assert_eq!((q.calls(), q.sent(), q.len()), (1, 4, 16));
        assert!(std::format!("{:?}", q.start_task()).contains("pending: true"));
        assert_eq!(q.start(), Started::Delegated);
        q.start_task().stop();
        q.start_task().run(&q);
        assert_eq!((q.sent(), q.len()), (20, 0));
        // The budget ended with the pass: a plain dequeue is not limited.
        q.enqueue(frame()).unwrap();
        q.enqueue(frame()).unwrap();
        let mut out = crate::ArrayVec::<_, 8>::new();
        assert_eq!(q.dequeue_burst(&mut out, 8), 2);
    }

    /// Below the bound nothing changes: an owner drains the queue itself and
    /// the task is never asked.
    #[test]
    fn an_owner_below_the_bound_is_not_handed_off() {
        let q = counting(Config::default().owner_bound(64));
        for _ in 0..10 {
            q.transmit(frame()).unwrap();
        }
        assert_eq!(q.sent(), 10);
        assert!(std::format!("{:?}", q.start_task()).contains("pending: false"));
    }

    #[test]
    fn debug_shows_state() {
        let q = counting(Config::default());
        let s = std::format!("{q:?}");
        assert!(s.contains("running: true") && s.contains("oactive: false"));
    }
}
