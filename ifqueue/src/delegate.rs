//! Delegated start: a task thread runs the start routine (seed 002's
//! "delegating the work to mpsafe taskqs"), so the CPUs that transmit only
//! enqueue and post a request.

use core::fmt;
use core::marker::PhantomData;

use lock_api::RawMutex;
use mpsafe_serializer::{DefaultWait, Wait};

use crate::discipline::Discipline;
use crate::ifq::{IfQueue, Start};
use crate::queue::Dropped;
use crate::sync::{AtomicU32, Ordering};

/// A start was requested since the task thread last looked.
const PENDING: u32 = 1;
/// [`StartTask::stop`] was called: the task thread returns.
const STOP: u32 = 2;

/// The hand-off between the transmitting CPUs and a task thread that runs an
/// [`IfQueue`]'s start routine: OpenBSD's `ifq_start` through a task queue
/// instead of on the caller's CPU.
///
/// [`transmit`](StartTask::transmit) enqueues and posts a request;
/// [`run`](StartTask::run), on the task thread, waits (with `W`: a futex
/// with `std`) for requests and calls [`IfQueue::start`] for each batch of
/// them. Requests posted while the task thread is running fold into one more
/// pass. The start routine still runs through the queue's serializer, so a
/// direct [`IfQueue::start`] elsewhere (tx completion's restart) stays safe.
///
/// The transmitting CPU never touches the start routine's state, at the cost
/// of a wake-up when the task thread sleeps and a hop to another CPU.
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{Config, Fifo, IfQueue, StartTask};
///
/// let ifq = IfQueue::from_fn(Fifo::new(), Config::default(), |q, _owner| {
///     while q.dequeue().is_some() {}
/// })?;
/// let task: StartTask = StartTask::new();
/// std::thread::scope(|s| {
///     s.spawn(|| task.run(&ifq));
///     for _ in 0..10 {
///         task.transmit(&ifq, vec![0u8; 60]).unwrap();
///     }
///     task.stop();
/// });
/// // `run` makes one last pass after `stop`: nothing stays queued.
/// assert!(ifq.is_empty());
/// assert_eq!(ifq.counters().packets, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StartTask<W: Wait = DefaultWait> {
    /// `PENDING | STOP`.
    word: AtomicU32,
    _wait: PhantomData<fn() -> W>,
}

impl<W: Wait> StartTask<W> {
    crate::sync::const_fn! {
        /// A hand-off with nothing requested.
        pub fn new() -> Self {
            Self {
                word: AtomicU32::new(0),
                _wait: PhantomData,
            }
        }
    }

    /// Asks the task thread for a start pass; never blocks.
    #[inline]
    pub fn request(&self) {
        // Release: the packet enqueued before this request (its queue length
        // included, which the start task reads without the lock) happens
        // before the task thread's Acquire swap that takes the request.
        let prev = self.word.fetch_or(PENDING, Ordering::Release);
        if prev & PENDING == 0 {
            W::wake_one(&self.word);
        }
    }

    /// [`SendQueue::enqueue`](crate::SendQueue::enqueue) on `ifq`, then
    /// [`request`](StartTask::request) unless the packet was refused: the
    /// delegated form of [`IfQueue::transmit`].
    ///
    /// # Errors
    ///
    /// The dropped packet, as for [`IfQueue::transmit`].
    #[inline]
    pub fn transmit<D, S, R, V>(
        &self,
        ifq: &IfQueue<D, S, R, V>,
        packet: D::Packet,
    ) -> Result<(), Dropped<D::Packet>>
    where
        D: Discipline,
        S: Start<D, R>,
        R: RawMutex,
        V: Wait,
    {
        self.request_unless_refused(ifq.enqueue(packet))
    }

    /// Posts a request for an enqueue that did not refuse its packet (an
    /// evicted victim still leaves the new packet queued); hands `result`
    /// back.
    #[inline]
    pub(crate) fn request_unless_refused<P>(
        &self,
        result: Result<(), Dropped<P>>,
    ) -> Result<(), Dropped<P>> {
        if !matches!(result, Err(Dropped::Refused(_))) {
            self.request();
        }
        result
    }

    /// The task thread's loop: waits for requests and runs `ifq`'s start for
    /// each batch, until [`stop`](StartTask::stop); then makes one last
    /// pass, so a request posted before `stop` is never lost.
    pub fn run<D, S, R, V>(&self, ifq: &IfQueue<D, S, R, V>)
    where
        D: Discipline,
        S: Start<D, R>,
        R: RawMutex,
        V: Wait,
    {
        loop {
            let mut word = self.word.load(Ordering::Relaxed);
            while word == 0 {
                W::wait(&self.word, 0);
                word = self.word.load(Ordering::Relaxed);
            }
            // Acquire: pairs with `request`'s Release, so the start pass sees
            // the packets enqueued before the requests it takes. Clearing
            // PENDING before the pass means a request during it runs another.
            let taken = self.word.fetch_and(!PENDING, Ordering::Acquire);
            ifq.start_from_task();
            if taken & STOP != 0 {
                return;
            }
        }
    }

    /// Tells the task thread to make a last pass and return.
    pub fn stop(&self) {
        // Release, as `request`: the last pass sees what was enqueued before.
        self.word.fetch_or(STOP | PENDING, Ordering::Release);
        W::wake_all(&self.word);
    }
}

impl<W: Wait> Default for StartTask<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for StartTask<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.word.load(Ordering::Relaxed);
        f.debug_struct("StartTask")
            .field("pending", &(word & PENDING != 0))
            .field("stopped", &(word & STOP != 0))
            .finish()
    }
}
