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

/// The send queues of one interface, one per hardware tx ring, each with
/// its own lock, serializer and start routine (OpenBSD `ifp->if_ifqs`).
///
/// Holds from 1 to `N` queues, inline (no allocation): exactly `N` from
/// [`try_new`](IfQueues::try_new) or the `const`
/// [`from_queues`](IfQueues::from_queues), or a count chosen at run time
/// with [`with_count`](IfQueues::with_count), for a driver that learns how
/// many rings its device has only at attach (`N` is then its maximum).
///
/// A packet goes to queue `flow_hash % count` (queue 0 without a hash), so
/// a flow stays on one ring and in order (OpenBSD `priq_idx`).
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
    queues: Storage<IfQueue<D, S, R, W>, N>,
}

/// The queues: an array when all `N` were given at once (what a `const fn`
/// can build), an [`ArrayVec`] when the count came at run time.
enum Storage<T, const N: usize> {
    All([T; N]),
    Some(ArrayVec<T, N>),
}

impl<T, const N: usize> Storage<T, N> {
    #[inline]
    fn as_slice(&self) -> &[T] {
        match self {
            Self::All(a) => a,
            Self::Some(v) => v,
        }
    }
}

/// Why [`IfQueues::with_count`] built no queues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueCountError<E> {
    /// Zero queues asked for: an interface has at least one.
    Zero,
    /// More queues asked for than the `N` the type holds.
    TooMany {
        /// The count asked for.
        count: usize,
        /// `N`.
        max: usize,
    },
    /// Building queue `index` failed (the queues built before it were
    /// dropped).
    Queue {
        /// The queue whose construction failed.
        index: usize,
        /// What the constructor returned.
        error: E,
    },
}

impl<E: fmt::Display> fmt::Display for QueueCountError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Zero => f.write_str("an interface needs at least one send queue"),
            Self::TooMany { count, max } => {
                write!(f, "{count} send queues asked for; at most {max}")
            }
            Self::Queue { index, error } => write!(f, "send queue {index}: {error}"),
        }
    }
}

impl<E: core::error::Error + 'static> core::error::Error for QueueCountError<E> {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Queue { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl<D, S, const N: usize, R, W> IfQueues<D, S, N, R, W>
where
    D: Discipline,
    S: Start<D, R>,
    R: RawMutex,
    W: Wait,
{
    /// Builds `N` queues: queue `i` with `make(i)`, for `i` in `0..N`.
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
            Ok(queues) => Ok(Self::from_queues(queues)),
            Err(_) => unreachable!("N queues were pushed"),
        }
    }

    /// Builds `count` queues, `1..=N`: queue `i` with `make(i)`, for `i` in
    /// `0..count`. For a driver that learns the number of rings at attach;
    /// `N` is the most it supports.
    ///
    /// # Errors
    ///
    /// [`QueueCountError::Zero`] or [`QueueCountError::TooMany`] for a
    /// `count` out of range (then `make` is never called), or
    /// [`QueueCountError::Queue`] with the first error `make` returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_ifqueue::{Config, Fifo, IfQueue, IfQueues, QueueCountError};
    ///
    /// let make = |_ring| IfQueue::from_fn(Fifo::<Vec<u8>>::new(), Config::default(), |q, _| {
    ///     while q.dequeue().is_some() {}
    /// });
    /// let rings = 3; // what the device reported
    /// let ifqs: IfQueues<_, _, 8> = IfQueues::with_count(rings, make)?;
    /// assert_eq!(ifqs.queues().len(), 3);
    /// let too_many = IfQueues::<_, _, 2>::with_count(rings, make).unwrap_err();
    /// assert_eq!(too_many, QueueCountError::TooMany { count: 3, max: 2 });
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_count<E>(
        count: usize,
        mut make: impl FnMut(usize) -> Result<IfQueue<D, S, R, W>, E>,
    ) -> Result<Self, QueueCountError<E>> {
        match count {
            0 => return Err(QueueCountError::Zero),
            c if c > N => return Err(QueueCountError::TooMany { count, max: N }),
            _ => {}
        }
        let mut queues = ArrayVec::<_, N>::new();
        for index in 0..count {
            let q = make(index).map_err(|error| QueueCountError::Queue { index, error })?;
            queues.push(q);
        }
        Ok(Self {
            queues: Storage::Some(queues),
        })
    }

    /// Wraps `N` queues built elsewhere; `const`, so with
    /// [`IfQueue::new_const`] the queues of an interface can be a `static`.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub const fn from_queues(queues: [IfQueue<D, S, R, W>; N]) -> Self {
        const { assert!(N > 0, "an interface has at least one send queue") };
        Self {
            queues: Storage::All(queues),
        }
    }

    /// Queue `index`.
    ///
    /// # Panics
    ///
    /// If `index` is not below the number of queues.
    #[inline]
    pub fn queue(&self, index: usize) -> &IfQueue<D, S, R, W> {
        &self.queues()[index]
    }

    /// All the queues (1 to `N` of them).
    #[inline]
    pub fn queues(&self) -> &[IfQueue<D, S, R, W>] {
        self.queues.as_slice()
    }

    /// The queue `packet` belongs to: its flow hash modulo the number of
    /// queues, 0 without one.
    #[inline]
    pub fn index_of(&self, packet: &D::Packet) -> usize {
        packet
            .flow_hash()
            .map_or(0, |h| h as usize % self.queues().len())
    }

    /// [`IfQueue::transmit`] on the queue `packet` belongs to.
    ///
    /// # Errors
    ///
    /// The dropped packet, as for [`IfQueue::transmit`].
    #[inline]
    pub fn transmit(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        self.queue(self.index_of(&packet)).transmit(packet)
    }

    /// [`IfQueue::start`] on every queue.
    pub fn start_all(&self) {
        for q in self.queues() {
            q.start();
        }
    }

    /// [`IfQueue::set_running`] on every queue.
    pub fn set_running_all(&self, running: bool) {
        for q in self.queues() {
            q.set_running(running);
        }
    }

    /// [`IfQueue::barrier`] on every queue, in index order.
    ///
    /// # Errors
    ///
    /// The first [`BarrierError`]; the queues after it were not waited for.
    pub fn barrier_all(&self) -> Result<(), BarrierError> {
        self.queues().iter().try_for_each(IfQueue::barrier)
    }

    /// [`SendQueue::purge`](crate::SendQueue::purge) on every queue: one list
    /// per queue, in index order, to free outside the locks.
    pub fn purge_all(&self) -> ArrayVec<D::Purged, N> {
        self.queues().iter().map(|q| q.purge()).collect()
    }
}

impl<D: Discipline, S, const N: usize, R: RawMutex, W: Wait> fmt::Debug
    for IfQueues<D, S, N, R, W>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.queues.as_slice()).finish()
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
        let purged: Vec<_> = qs.purge_all().into_iter().map(|p| p.count()).collect();
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
    fn a_count_chosen_at_run_time() {
        let make = |_| {
            IfQueue::from_fn(Fifo::new(), Config::with_maxlen(4), |q, _| {
                while q.dequeue().is_some() {}
            })
        };
        let qs: IfQueues<Fifo<Flow>, _, 4> = IfQueues::with_count(2, make).unwrap();
        assert_eq!(qs.queues().len(), 2);
        // The hash is taken modulo the count, not the capacity.
        assert_eq!(qs.index_of(&Flow(Some(3))), 1);
        assert_eq!(qs.index_of(&Flow(Some(4))), 0);
        qs.set_running_all(false);
        for h in 0..5 {
            qs.transmit(Flow(Some(h))).unwrap();
        }
        let purged: Vec<_> = qs.purge_all().into_iter().map(|p| p.count()).collect();
        assert_eq!(purged, [3, 2]);
        assert_eq!(std::format!("{qs:?}").matches("IfQueue").count(), 2);
        let all: IfQueues<Fifo<Flow>, _, 4> = IfQueues::with_count(4, make).unwrap();
        assert_eq!(all.queues().len(), 4);
    }

    #[test]
    fn count_errors() {
        let mut calls = 0;
        let mut make = |_| {
            calls += 1;
            IfQueue::from_fn(Fifo::<Flow>::new(), Config::default(), |_, _| {})
        };
        let r: Result<IfQueues<_, _, 2>, _> = IfQueues::with_count(0, &mut make);
        assert_eq!(r.unwrap_err(), QueueCountError::Zero);
        let r: Result<IfQueues<_, _, 2>, _> = IfQueues::with_count(3, &mut make);
        assert_eq!(
            r.unwrap_err(),
            QueueCountError::TooMany { count: 3, max: 2 }
        );
        assert_eq!(calls, 0, "a count out of range builds nothing");
        let r: Result<IfQueues<Fifo<Flow>, _, 4>, _> = IfQueues::with_count(3, |i| {
            IfQueue::from_fn(Fifo::new(), Config::with_maxlen(1 - i.min(1)), |_, _| {})
        });
        let e = r.unwrap_err();
        assert_eq!(
            e,
            QueueCountError::Queue {
                index: 1,
                error: ConfigError::ZeroMaxlen
            }
        );
        assert_eq!(std::format!("{e}"), "send queue 1: send queue maxlen is 0");
        assert!(core::error::Error::source(&e).is_some());
        assert!(std::format!("{}", QueueCountError::<ConfigError>::Zero).contains("at least one"));
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
