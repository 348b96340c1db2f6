//! `IfQueues`: the send queues of a multiqueue interface.

use core::fmt;

use arrayvec::ArrayVec;
use lock_api::RawMutex;
use mpsafe_serializer::{DefaultWait, Wait};

use crate::DefaultLock;
use crate::discipline::Discipline;
use crate::ifq::{IfQueue, Start};
use crate::packet::Packet;
use crate::queue::Dropped;
use mpsafe_barrier::BarrierError;

/// The `N` send queues of one interface, one per hardware tx ring, each with
/// its own lock, serializer and start routine (OpenBSD `ifp->if_ifqs`).
///
/// A packet goes to queue `flow_hash % N` (queue 0 without a hash), so a
/// flow stays on one ring and in order (OpenBSD `priq_idx`).
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{Config, Fifo, IfQueue, IfQueues, Packet};
///
/// #[derive(Debug)]
/// struct Frame(u32);
/// impl Packet for Frame {
///     fn byte_len(&self) -> usize { 64 }
///     fn flow_hash(&self) -> Option<u32> { Some(self.0) }
/// }
///
/// let ifqs: IfQueues<_, _, 2> = IfQueues::try_new(|_ring| {
///     IfQueue::from_fn(Fifo::new(), Config::default(), |q, _owner| {
///         while q.dequeue().is_some() {}
///     })
/// })?;
/// assert_eq!(ifqs.index_of(&Frame(7)), 1);
/// ifqs.transmit(Frame(7))?;
/// assert_eq!(ifqs.queue(1).counters().packets, 1);
/// ifqs.set_running_all(false);
/// ifqs.barrier_all()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct IfQueues<
    D: Discipline,
    S,
    const N: usize,
    R: RawMutex = DefaultLock,
    W: Wait = DefaultWait,
> {
    queues: [IfQueue<D, S, R, W>; N],
}

impl<D, S, const N: usize, R, W> IfQueues<D, S, N, R, W>
where
    D: Discipline,
    S: Start<D, R>,
    R: RawMutex,
    W: Wait,
{
    /// Builds queue `i` with `make(i)`, for `i` in `0..N`.
    ///
    /// # Errors
    ///
    /// The first error `make` returns.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub fn try_new<E>(
        mut make: impl FnMut(usize) -> Result<IfQueue<D, S, R, W>, E>,
    ) -> Result<Self, E> {
        const { assert!(N > 0, "an interface has at least one send queue") };
        let mut queues = ArrayVec::<_, N>::new();
        for i in 0..N {
            queues.push(make(i)?);
        }
        match queues.into_inner() {
            Ok(queues) => Ok(Self { queues }),
            Err(_) => unreachable!("N queues were pushed"),
        }
    }

    /// Wraps `N` queues built elsewhere; `const`, so with
    /// [`IfQueue::new_const`] the queues of an interface can be a `static`.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub const fn from_queues(queues: [IfQueue<D, S, R, W>; N]) -> Self {
        const { assert!(N > 0, "an interface has at least one send queue") };
        Self { queues }
    }

    /// Queue `index`.
    ///
    /// # Panics
    ///
    /// If `index >= N`.
    pub fn queue(&self, index: usize) -> &IfQueue<D, S, R, W> {
        &self.queues[index]
    }

    /// All the queues.
    pub fn queues(&self) -> &[IfQueue<D, S, R, W>; N] {
        &self.queues
    }

    /// The queue `packet` belongs to: its flow hash modulo `N`, 0 without one.
    #[inline]
    pub fn index_of(&self, packet: &D::Packet) -> usize {
        packet.flow_hash().map_or(0, |h| h as usize % N)
    }

    /// [`IfQueue::transmit`] on the queue `packet` belongs to.
    ///
    /// # Errors
    ///
    /// The dropped packet, as for [`IfQueue::transmit`].
    #[inline]
    pub fn transmit(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        self.queues[self.index_of(&packet)].transmit(packet)
    }

    /// [`IfQueue::start`] on every queue.
    pub fn start_all(&self) {
        for q in &self.queues {
            q.start();
        }
    }

    /// [`IfQueue::set_running`] on every queue.
    pub fn set_running_all(&self, running: bool) {
        for q in &self.queues {
            q.set_running(running);
        }
    }

    /// [`IfQueue::barrier`] on every queue, in index order.
    ///
    /// # Errors
    ///
    /// The first [`BarrierError`]; the queues after it were not waited for.
    pub fn barrier_all(&self) -> Result<(), BarrierError> {
        self.queues.iter().try_for_each(IfQueue::barrier)
    }

    /// [`SendQueue::purge`](crate::SendQueue::purge) on every queue: one list
    /// per queue, to free outside the locks.
    pub fn purge_all(&self) -> [D::Purged; N] {
        core::array::from_fn(|i| self.queues[i].purge())
    }
}

impl<D: Discipline, S, const N: usize, R: RawMutex, W: Wait> fmt::Debug
    for IfQueues<D, S, N, R, W>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.queues).finish()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use crate::discipline::Fifo;
    use crate::ifq::Config;
    use crate::queue::ConfigError;
    use alloc::vec::Vec;

    #[derive(Debug, PartialEq, Eq)]
    struct Flow(Option<u32>);
    impl Packet for Flow {
        fn byte_len(&self) -> usize {
            1
        }
        fn flow_hash(&self) -> Option<u32> {
            self.0
        }
    }

    fn queues(running: bool) -> IfQueues<Fifo<Flow>, impl Start<Fifo<Flow>, DefaultLock>, 3> {
        let qs = IfQueues::try_new(|_| {
            IfQueue::from_fn(Fifo::new(), Config::with_maxlen(4), |q, _| {
                while q.dequeue().is_some() {}
            })
        })
        .unwrap();
        qs.set_running_all(running);
        qs
    }

    #[test]
    fn flows_map_to_queues_by_hash() {
        let qs = queues(false);
        assert_eq!(qs.index_of(&Flow(None)), 0);
        assert_eq!(qs.index_of(&Flow(Some(4))), 1);
        assert_eq!(qs.index_of(&Flow(Some(u32::MAX))), u32::MAX as usize % 3);
        for h in [None, Some(1), Some(2), Some(5), Some(8)] {
            qs.transmit(Flow(h)).unwrap();
        }
        let lens: Vec<_> = qs.queues().iter().map(|q| q.len()).collect();
        assert_eq!(lens, [1, 1, 3]);
        let purged = qs.purge_all().map(|p| p.count());
        assert_eq!(purged, [1, 1, 3]);
        assert!(std::format!("{qs:?}").starts_with('['));
    }

    #[test]
    fn start_all_and_barrier_all() {
        let qs = queues(false);
        for h in 0..6 {
            qs.transmit(Flow(Some(h))).unwrap();
        }
        qs.set_running_all(true);
        qs.start_all();
        assert!(qs.queues().iter().all(|q| q.is_empty()));
        assert_eq!(qs.queue(2).counters().packets, 2);
        qs.set_running_all(false);
        qs.barrier_all().unwrap();
    }

    #[test]
    fn construction_errors_propagate() {
        let r: Result<IfQueues<Fifo<Flow>, _, 2>, _> =
            IfQueues::try_new(|i| IfQueue::from_fn(Fifo::new(), Config::with_maxlen(i), |_, _| {}));
        assert_eq!(r.unwrap_err(), ConfigError::ZeroMaxlen);
        let a = IfQueue::from_fn(Fifo::<Flow>::new(), Config::default(), |_, _| {}).unwrap();
        let qs = IfQueues::from_queues([a]);
        assert_eq!(qs.index_of(&Flow(Some(9))), 0);
    }
}
