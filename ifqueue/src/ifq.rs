//! `IfQueue`: a send queue plus the serialized start (seed 002).

use core::fmt;
use core::ops::Deref;

use lock_api::RawMutex;
use mpsafe_serializer::{DefaultWait, Task, TaskOwner, TaskSerializer, Wait};

use crate::barrier::{BarrierError, StartBarrier};
use crate::discipline::Discipline;
use crate::queue::{ConfigError, Dropped, SendQueue};
use crate::sync::{AtomicBool, Ordering};
use crate::DefaultLock;

/// Restart before start: a pass that finds both pending clears `oactive` and
/// runs the start routine once, and then START finds the queue drained and
/// skips it. (START first would skip on `oactive` and leave the work to
/// RESTART anyway; restart-first is never worse.)
const RESTART: Task = Task::new(0);
const START: Task = Task::new(1);
/// Last: a barrier queued in the same pass as a start runs after it.
const BARRIER: Task = Task::new(2);

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

/// Compatibility mode for a driver that is not MPSAFE (seed 002's default,
/// DragonFly's `intr_mpsafe = 0`): its start routine runs inside the
/// serializer *and* under the caller's big lock, with the data that lock
/// protects.
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{BigLocked, Config, Fifo, IfQueue};
/// use mpsafe_serializer::RawSerializer;
///
/// // The kernel's giant lock and the old driver's state under it.
/// static GIANT: lock_api::Mutex<RawSerializer, u64> = lock_api::Mutex::new(0);
///
/// let ifq = IfQueue::new(
///     Fifo::new(),
///     Config::default(),
///     BigLocked::new(&GIANT, |sent: &mut u64, q, _owner| {
///         while q.dequeue().is_some() {
///             *sent += 1;
///         }
///     }),
/// )?;
/// ifq.transmit(vec![0u8; 60])?;
/// assert_eq!(*GIANT.lock(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct BigLocked<'g, G: RawMutex, T, F> {
    giant: &'g lock_api::Mutex<G, T>,
    start: F,
}

impl<'g, G: RawMutex, T, F> BigLocked<'g, G, T, F> {
    /// Runs `start` under `giant`, with the data it protects.
    pub fn new<D, R>(giant: &'g lock_api::Mutex<G, T>, start: F) -> Self
    where
        D: Discipline,
        R: RawMutex,
        F: Fn(&mut T, &SendQueue<D, R>, &TaskOwner<'_>),
    {
        Self { giant, start }
    }

    /// The start routine.
    pub fn inner(&self) -> &F {
        &self.start
    }
}

impl<G, T, F, D, R> Start<D, R> for BigLocked<'_, G, T, F>
where
    G: RawMutex,
    D: Discipline,
    R: RawMutex,
    F: Fn(&mut T, &SendQueue<D, R>, &TaskOwner<'_>),
{
    fn start(&self, queue: &SendQueue<D, R>, owner: &TaskOwner<'_>) {
        let mut giant = self.giant.lock();
        (self.start)(&mut giant, queue, owner);
    }
}

impl<G: RawMutex, T, F> fmt::Debug for BigLocked<'_, G, T, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigLocked").finish_non_exhaustive()
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
}

impl Config {
    /// The default configuration with `maxlen` packets.
    pub const fn with_maxlen(maxlen: usize) -> Self {
        Self { maxlen, bundle: 1 }
    }

    /// This configuration with bundling threshold `bundle`.
    pub const fn bundle(self, bundle: usize) -> Self {
        Self { bundle, ..self }
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
    queue: SendQueue<D, R>,
    serializer: TaskSerializer,
    /// IFF_RUNNING: the start tasks skip the routine while clear.
    running: AtomicBool,
    /// A start deferred by bundling waits for `flush_bundle`.
    bundle_pending: AtomicBool,
    /// `min(Config::bundle, maxlen)`; 1 means no bundling.
    bundle: usize,
    barrier: StartBarrier<W>,
    start: S,
}

#[cfg(not(loom))]
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

#[cfg(not(loom))]
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
        Ok(Self {
            queue: SendQueue::with_lock(discipline, config.maxlen)?,
            serializer: TaskSerializer::new(),
            running: AtomicBool::new(true),
            bundle_pending: AtomicBool::new(false),
            bundle: config.bundle.min(config.maxlen),
            barrier: StartBarrier::new(),
            start,
        })
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
    /// With bundling, and fewer packets queued than the threshold, only marks
    /// a start pending for [`flush_bundle`](IfQueue::flush_bundle).
    #[inline]
    pub fn start(&self) -> Started {
        if self.bundle > 1 {
            if self.queue.len() < self.bundle {
                self.bundle_pending.store(true, Ordering::Relaxed);
                return Started::Deferred;
            }
            self.bundle_pending.store(false, Ordering::Relaxed);
        }
        self.run(START)
    }

    /// Runs a start that bundling deferred, if one is pending (OpenBSD
    /// `ifq_bundle_task`). With bundling on, call it from the stack's
    /// deferred-work context (softnet task, end of a receive batch, a timer)
    /// or packets below the threshold wait until the next one arrives.
    /// Returns whether a start was pending.
    pub fn flush_bundle(&self) -> bool {
        if self.bundle_pending.swap(false, Ordering::Relaxed) {
            self.run(START);
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
    pub fn barrier(&self) -> Result<(), BarrierError> {
        self.bundle_pending.store(false, Ordering::Relaxed);
        self.barrier
            .wait(&self.serializer, BARRIER, |task, owner| self.run_task(task, owner))
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
        self.serializer.is_running()
    }

    #[inline]
    fn run(&self, task: Task) -> Started {
        if self
            .serializer
            .add(task, |task, owner| self.run_task(task, owner))
        {
            Started::Ran
        } else {
            Started::Handed
        }
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
            .field("starting", &self.serializer.is_running())
            .field("bundle", &self.bundle)
            .finish_non_exhaustive()
    }
}
