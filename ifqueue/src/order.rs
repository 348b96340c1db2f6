//! The interface queue under a lock order ([`mpsafe_order`]).
//!
//! Two levels describe a queue: `S`, the start routine's (it runs inside the
//! queue's task serializer, and the start barrier waits for it), and `Q`, the
//! queue mutex's, after `S` (the routine dequeues under it). Build the queue
//! with an [`OrderedStart`] routine, which is handed its queue declared at
//! `Q` and a context at `S`, and declare the [`IfQueue`] at `S`; then
//! [`OrderedIfQueue`] checks every entry:
//!
//! - `start`/`restart`/`transmit` may run the routine on the calling thread,
//!   so the caller's context must come before `S`;
//! - `barrier` waits for the routine, so the caller must hold nothing at `S`
//!   or after it (not the queue mutex, not a lock the routine takes);
//! - `lock` takes the queue mutex at `Q`.
//!
//! ```
//! use mpsafe_ifqueue::{Config, Fifo, IfQueue, OrderedIfQueue, OrderedStart};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! mpsafe_order::lock_order! { pub IfqStart, pub IfqMutex }
//!
//! let ifq = Ordered::<IfqStart, _>::new(IfQueue::new(
//!     Fifo::<Vec<u8>>::new(),
//!     Config::default(),
//!     OrderedStart::<IfqStart, IfqMutex, _>::new(|q, _owner, mut ctx| {
//!         let (mut q, _) = ctx.lock(q);
//!         while q.dequeue().is_some() {}
//!     }),
//! )?);
//! let mut ctx = Ctx::new();
//! ifq.transmit(&mut ctx, vec![0u8; 60])?;
//! assert!(ifq.unordered().is_empty());
//! ifq.barrier(&mut ctx)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Waiting for the start barrier while holding the queue mutex does not
//! compile (`IfqMutex: LockBefore<IfqStart>` does not hold):
//!
//! ```compile_fail,E0277
//! use mpsafe_ifqueue::{Config, Fifo, IfQueue, OrderedIfQueue, OrderedStart};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! mpsafe_order::lock_order! { pub IfqStart, pub IfqMutex }
//!
//! let ifq = Ordered::<IfqStart, _>::new(IfQueue::new(
//!     Fifo::<Vec<u8>>::new(),
//!     Config::default(),
//!     OrderedStart::<IfqStart, IfqMutex, _>::new(|_, _, _| {}),
//! ).unwrap());
//! let mut ctx = Ctx::new();
//! let (_q, mut ctx) = ifq.lock(&mut ctx);
//! ifq.barrier(&mut ctx).unwrap();
//! ```
//!
//! Nor does a start routine waiting for a barrier (its own queue's, or
//! another queue's at the same level): its context is at `S`, and
//! `S: LockBefore<S>` does not hold.
//!
//! ```compile_fail,E0277
//! use mpsafe_ifqueue::{Config, Fifo, IfQueue, OrderedIfQueue, OrderedStart};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! mpsafe_order::lock_order! { pub IfqStart, pub IfqMutex }
//!
//! let other = Ordered::<IfqStart, _>::new(IfQueue::new(
//!     Fifo::<Vec<u8>>::new(),
//!     Config::default(),
//!     OrderedStart::<IfqStart, IfqMutex, _>::new(|_, _, _| {}),
//! ).unwrap());
//! let ifq = Ordered::<IfqStart, _>::new(IfQueue::new(
//!     Fifo::<Vec<u8>>::new(),
//!     Config::default(),
//!     OrderedStart::<IfqStart, IfqMutex, _>::new(|_, _, mut ctx| {
//!         other.barrier(&mut ctx).unwrap();
//!     }),
//! ).unwrap());
//! ```

use core::marker::PhantomData;

use lock_api::RawMutex;
use mpsafe_barrier::BarrierError;
use mpsafe_order::{Ctx, Held, Level, Lock, LockBefore, Ordered};
use mpsafe_serializer::{TaskOwner, Wait};

use crate::delegate::StartTask;
use crate::discipline::Discipline;
use crate::ifq::{IfQueue, Start, Started};
use crate::queue::{Dropped, Locked, SendQueue};

impl<D: Discipline, R: RawMutex> Lock for SendQueue<D, R> {
    type Guard<'a>
        = Locked<'a, D, R>
    where
        Self: 'a;

    #[inline]
    fn lock(&self) -> Locked<'_, D, R> {
        SendQueue::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<Locked<'_, D, R>> {
        SendQueue::try_lock(self)
    }
}

impl<D: Discipline, T: Start<D, R>, R: RawMutex, W: Wait> IfQueue<D, T, R, W> {
    /// [`transmit`](IfQueue::transmit) with the queue mutex taken from
    /// `ctx` at level `Q` ([`Ctx::lock`] on the queue declared at `Q`), for
    /// a driver that declares the queue mutex in its own order while its
    /// start routine is its own [`Start`] (it runs the routine inside the
    /// queue's start level itself, [`Ordered::run_inside`]) rather than an
    /// [`OrderedStart`]. The start that follows never waits for another
    /// CPU's routine (a busy serializer hands it the work): a routine run on
    /// this thread is checked by what it takes.
    ///
    /// ```
    /// use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, TaskOwner};
    /// use mpsafe_order::Ctx;
    ///
    /// mpsafe_order::lock_order! { pub IfqMutex }
    ///
    /// let ifq = IfQueue::new(Fifo::<Vec<u8>>::new(), Config::default(), |q: &SendQueue<_>, _: &TaskOwner<'_>| {
    ///     while q.dequeue().is_some() {}
    /// })?;
    /// ifq.transmit_in::<IfqMutex, _>(&mut Ctx::new(), vec![0u8; 60])?;
    /// assert!(ifq.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`IfQueue::transmit`].
    #[track_caller]
    #[inline]
    pub fn transmit_in<Q: Level, C: LockBefore<Q>>(
        &self,
        ctx: &mut Ctx<'_, C>,
        packet: D::Packet,
    ) -> Result<(), Dropped<D::Packet>> {
        // As `transmit`: enqueue, then start unless refused.
        let result = ctx
            .lock(Ordered::<Q, _>::declare(self.queue()))
            .0
            .enqueue(packet);
        if !matches!(result, Err(Dropped::Refused(_))) {
            self.start();
        }
        result
    }

    /// [`StartTask::transmit`] with the queue mutex taken from `ctx` at
    /// level `Q`, as [`transmit_in`](IfQueue::transmit_in) is to
    /// [`transmit`](IfQueue::transmit): enqueues, then asks `task`'s thread
    /// for a start pass unless the packet was refused. The calling thread
    /// never runs the start routine.
    ///
    /// ```
    /// use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, StartTask, TaskOwner};
    /// use mpsafe_order::Ctx;
    ///
    /// mpsafe_order::lock_order! { pub IfqMutex }
    ///
    /// let ifq = IfQueue::new(Fifo::<Vec<u8>>::new(), Config::default(), |q: &SendQueue<_>, _: &TaskOwner<'_>| {
    ///     while q.dequeue().is_some() {}
    /// })?;
    /// let task: StartTask = StartTask::new();
    /// ifq.transmit_delegated_in::<IfqMutex, _, _>(&mut Ctx::new(), &task, vec![0u8; 60])?;
    /// assert_eq!(ifq.len(), 1, "queued; the start is the task thread's");
    /// std::thread::scope(|s| {
    ///     s.spawn(|| task.run(&ifq));
    ///     task.stop();
    /// });
    /// assert!(ifq.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`IfQueue::transmit`].
    #[track_caller]
    #[inline]
    pub fn transmit_delegated_in<Q: Level, C: LockBefore<Q>, X: Wait>(
        &self,
        ctx: &mut Ctx<'_, C>,
        task: &StartTask<X>,
        packet: D::Packet,
    ) -> Result<(), Dropped<D::Packet>> {
        let result = ctx
            .lock(Ordered::<Q, _>::declare(self.queue()))
            .0
            .enqueue(packet);
        task.request_unless_refused(result)
    }
}

/// A start routine run at level `S`, taking its queue's mutex at level `Q`:
/// `F` gets the queue declared at `Q`, the serializer's proof, and a context
/// at `S`.
pub struct OrderedStart<S, Q, F> {
    start: F,
    _levels: PhantomData<fn() -> (S, Q)>,
}

impl<S, Q, F> OrderedStart<S, Q, F> {
    /// Runs `start` as the queue's start routine, ordered.
    pub const fn new<D, R>(start: F) -> Self
    where
        D: Discipline,
        R: RawMutex,
        F: Fn(&Ordered<Q, SendQueue<D, R>>, &TaskOwner<'_>, Ctx<'_, S>),
    {
        Self {
            start,
            _levels: PhantomData,
        }
    }

    /// The routine (the driver's per-queue state, if `F` is a struct).
    pub fn inner(&self) -> &F {
        &self.start
    }
}

impl<S, Q, F, D, R> Start<D, R> for OrderedStart<S, Q, F>
where
    S: Level,
    Q: Level,
    D: Discipline,
    R: RawMutex,
    F: Fn(&Ordered<Q, SendQueue<D, R>>, &TaskOwner<'_>, Ctx<'_, S>),
{
    #[inline]
    fn start(&self, queue: &SendQueue<D, R>, owner: &TaskOwner<'_>) {
        // The routine "holds" the queue's start level while it runs: the
        // node a barrier on this queue waits for (see `barrier` below).
        Ordered::<S, SendQueue<D, R>>::declare(queue)
            .run_inside(|ctx| (self.start)(Ordered::declare(queue), owner, ctx));
    }
}

impl<S, Q, F> core::fmt::Debug for OrderedStart<S, Q, F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("OrderedStart").finish_non_exhaustive()
    }
}

/// The entries of an [`IfQueue`] declared at its start level `S`, whose
/// routine is an [`OrderedStart`] taking the queue mutex at `Q`.
pub trait OrderedIfQueue<S: Level, Q: Level, D: Discipline, R: RawMutex> {
    /// The send queue, declared at `Q`.
    fn queue(&self) -> &Ordered<Q, SendQueue<D, R>>;

    /// Takes the queue mutex ([`SendQueue::lock`]).
    #[track_caller]
    #[allow(clippy::type_complexity)]
    fn lock<'b, C>(
        &'b self,
        ctx: &'b mut Ctx<'_, C>,
    ) -> (Held<'b, Q, Locked<'b, D, R>>, Ctx<'b, Q>)
    where
        C: LockBefore<Q>;

    /// [`IfQueue::transmit`]: enqueues under the mutex, then starts (which
    /// may run the routine on this thread).
    ///
    /// # Errors
    ///
    /// As [`IfQueue::transmit`].
    fn transmit<C>(
        &self,
        ctx: &mut Ctx<'_, C>,
        packet: D::Packet,
    ) -> Result<(), Dropped<D::Packet>>
    where
        C: LockBefore<S> + LockBefore<Q>;

    /// [`IfQueue::start`]: may run the routine on this thread.
    fn start<C>(&self, ctx: &mut Ctx<'_, C>) -> Started
    where
        C: LockBefore<S>;

    /// [`IfQueue::restart`]: may run the routine on this thread.
    fn restart<C>(&self, ctx: &mut Ctx<'_, C>) -> Started
    where
        C: LockBefore<S>;

    /// [`IfQueue::barrier`]: waits for the routine, so the caller must hold
    /// nothing the routine takes.
    ///
    /// # Errors
    ///
    /// As [`IfQueue::barrier`].
    #[track_caller]
    fn barrier<C>(&self, ctx: &mut Ctx<'_, C>) -> Result<(), BarrierError>
    where
        C: LockBefore<S>;
}

impl<S, Q, F, D, R, W> OrderedIfQueue<S, Q, D, R>
    for Ordered<S, IfQueue<D, OrderedStart<S, Q, F>, R, W>>
where
    S: Level,
    Q: Level,
    D: Discipline,
    R: RawMutex,
    W: Wait,
    F: Fn(&Ordered<Q, SendQueue<D, R>>, &TaskOwner<'_>, Ctx<'_, S>),
{
    #[inline]
    fn queue(&self) -> &Ordered<Q, SendQueue<D, R>> {
        Ordered::declare(self.unordered().queue())
    }

    #[track_caller]
    #[inline]
    fn lock<'b, C>(&'b self, ctx: &'b mut Ctx<'_, C>) -> (Held<'b, Q, Locked<'b, D, R>>, Ctx<'b, Q>)
    where
        C: LockBefore<Q>,
    {
        ctx.lock(OrderedIfQueue::queue(self))
    }

    // transmit/start/restart: the bounds are the check. A routine they run
    // here records itself (`OrderedStart::start`) on top of this thread's
    // held locks, so the witness sees it too.
    #[inline]
    fn transmit<C>(
        &self,
        _ctx: &mut Ctx<'_, C>,
        packet: D::Packet,
    ) -> Result<(), Dropped<D::Packet>>
    where
        C: LockBefore<S> + LockBefore<Q>,
    {
        self.unordered().transmit(packet)
    }

    #[inline]
    fn start<C>(&self, _ctx: &mut Ctx<'_, C>) -> Started
    where
        C: LockBefore<S>,
    {
        self.unordered().start()
    }

    #[inline]
    fn restart<C>(&self, _ctx: &mut Ctx<'_, C>) -> Started
    where
        C: LockBefore<S>,
    {
        self.unordered().restart()
    }

    #[track_caller]
    #[inline]
    fn barrier<C>(&self, ctx: &mut Ctx<'_, C>) -> Result<(), BarrierError>
    where
        C: LockBefore<S>,
    {
        let ifq = self.unordered();
        // The node the routine holds while it runs (`OrderedStart::start`).
        let start = Ordered::<S, SendQueue<D, R>>::declare(ifq.queue());
        ctx.wait_with(start, |_| ifq.barrier())
    }
}
