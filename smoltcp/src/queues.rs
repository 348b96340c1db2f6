//! What the adapter needs from the driver's two queues, and the
//! implementations for `mpsafe-ifqueue`'s.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use mpsafe_ifqueue::lock_api::RawMutex;
use mpsafe_ifqueue::{Discipline, Dropped, IfInputQueue, IfQueue, Packet, Start, StartTask, Wait};

/// The transmit side the adapter feeds: a send queue whose start routine
/// moves packets to the hardware (OpenBSD's `ifq_enqueue` + `ifq_start`).
///
/// Implemented for [`IfQueue`] (enqueue, then the serialized start on the
/// calling CPU), for [`Delegated`] (enqueue, then wake the start task), and
/// for `&Q` and `Arc<Q>` of either.
pub trait TxQueue {
    /// The packets the queue holds: the adapter's [`Buffers::Buffer`](crate::Buffers::Buffer).
    type Packet: Packet;

    /// Whether the queue would take one packet more than it holds now plus
    /// `reserved`, the packets this adapter has promised room to (tokens
    /// handed out and not consumed yet). Exact at the moment of the call: a
    /// queue that only this adapter fills keeps the promise, since the start
    /// routine only ever shrinks it.
    fn has_room(&self, reserved: usize) -> bool;

    /// Enqueues `packet` and starts the queue (OpenBSD `if_enqueue`).
    ///
    /// # Errors
    ///
    /// What the queue dropped: the packet itself if refused, or an older one
    /// it evicted, to be freed by the caller.
    fn send(&self, packet: Self::Packet) -> Result<(), Dropped<Self::Packet>>;
}

/// The receive side the adapter drains: the driver's input queue
/// (OpenBSD's `ifiqueue`), which the driver fills from its receive
/// interrupt and whose back-pressure reaches it there.
///
/// Implemented for [`IfInputQueue`] and for `&Q` and `Arc<Q>`.
pub trait RxQueue {
    /// The packets the queue holds: the adapter's [`Buffers::Buffer`](crate::Buffers::Buffer).
    type Packet;

    /// Moves every pending packet to the back of `out`, in arrival order
    /// (OpenBSD `ifiq_process`).
    fn take_into(&self, out: &mut VecDeque<Self::Packet>);
}

impl<D, S, R, W> TxQueue for IfQueue<D, S, R, W>
where
    D: Discipline,
    S: Start<D, R>,
    R: RawMutex,
    W: Wait,
{
    type Packet = D::Packet;

    #[inline]
    fn has_room(&self, reserved: usize) -> bool {
        // Under the queue lock: the exact length and the maxlen of now
        // (the lock-free length is a hint that may be stale).
        let q = self.lock();
        q.len().saturating_add(reserved) < q.maxlen()
    }

    #[inline]
    fn send(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        self.transmit(packet)
    }
}

/// An [`IfQueue`] whose start routine runs on a task thread ([`StartTask`],
/// seed 002's delegated start): the adapter's CPU only enqueues and posts a
/// request, never running the driver's start routine itself.
///
/// `Q` is the queue (`&IfQueue`, `Arc<IfQueue>`, ...), `T` the task's
/// hand-off (`&StartTask`, `Arc<StartTask>`, ...).
#[derive(Debug, Clone)]
pub struct Delegated<Q, T> {
    /// The send queue.
    pub queue: Q,
    /// The hand-off to the thread that runs the queue's start routine.
    pub task: T,
}

impl<Q, T, D, S, R, W, V> TxQueue for Delegated<Q, T>
where
    Q: core::ops::Deref<Target = IfQueue<D, S, R, W>>,
    T: core::ops::Deref<Target = StartTask<V>>,
    D: Discipline,
    S: Start<D, R>,
    R: RawMutex,
    W: Wait,
    V: Wait,
{
    type Packet = D::Packet;

    #[inline]
    fn has_room(&self, reserved: usize) -> bool {
        self.queue.has_room(reserved)
    }

    #[inline]
    fn send(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        self.task.transmit(&self.queue, packet)
    }
}

impl<Q: TxQueue + ?Sized> TxQueue for &Q {
    type Packet = Q::Packet;
    #[inline]
    fn has_room(&self, reserved: usize) -> bool {
        (**self).has_room(reserved)
    }
    #[inline]
    fn send(&self, packet: Q::Packet) -> Result<(), Dropped<Q::Packet>> {
        (**self).send(packet)
    }
}

impl<Q: TxQueue + ?Sized> TxQueue for Arc<Q> {
    type Packet = Q::Packet;
    #[inline]
    fn has_room(&self, reserved: usize) -> bool {
        (**self).has_room(reserved)
    }
    #[inline]
    fn send(&self, packet: Q::Packet) -> Result<(), Dropped<Q::Packet>> {
        (**self).send(packet)
    }
}

impl<P: Packet, R: RawMutex> RxQueue for IfInputQueue<P, R> {
    type Packet = P;
    #[inline]
    fn take_into(&self, out: &mut VecDeque<P>) {
        IfInputQueue::take_into(self, out);
    }
}

impl<Q: RxQueue + ?Sized> RxQueue for &Q {
    type Packet = Q::Packet;
    #[inline]
    fn take_into(&self, out: &mut VecDeque<Q::Packet>) {
        (**self).take_into(out)
    }
}

impl<Q: RxQueue + ?Sized> RxQueue for Arc<Q> {
    type Packet = Q::Packet;
    #[inline]
    fn take_into(&self, out: &mut VecDeque<Q::Packet>) {
        (**self).take_into(out)
    }
}
