//! Queueing disciplines: which packet leaves next, and which one is dropped
//! when the queue is full.
//!
//! The send queue does the locking and the accounting; a discipline only
//! keeps or rejects packets (OpenBSD `struct ifq_ops`). Two come with the
//! crate, both needing the `alloc` feature for their `VecDeque`s: [`Fifo`] and
//! the 8-level [`Priq`] (OpenBSD's default).

#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;

use arrayvec::ArrayVec;

use crate::packet::Packet;
#[cfg(feature = "alloc")]
use crate::packet::Priority;

/// What a discipline did with a packet offered to [`Discipline::enqueue`].
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub enum Enqueue<P> {
    /// The packet was queued; nothing was dropped.
    Queued,
    /// The packet was queued and this other, already queued, packet was
    /// removed to make room.
    Evicted(P),
    /// The packet was not queued; here it is back.
    Refused(P),
}

/// What [`Discipline::enqueue_burst`] kept of a burst, for the queue's
/// counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// Packets queued into free room (the queue grew by this many).
    pub queued: usize,
    /// Packets queued by evicting another (the queue did not grow for them).
    pub evicting: usize,
    /// The bytes of all the packets kept.
    pub bytes: u64,
    /// How many of the packets kept are multicast.
    pub mcasts: u64,
}

impl Accepted {
    /// `packets`, all just queued into free room, plus `evicting` packets
    /// already counted elsewhere (none, usually).
    pub fn count<'a, P: Packet + 'a>(
        packets: impl Iterator<Item = &'a P>,
        evicting: usize,
    ) -> Self {
        // Internal iteration (`fold`): over a `VecDeque` range it becomes
        // one tight loop per slice with the sums in registers, where a `for`
        // over the chained halves kept them on the stack.
        let (queued, bytes, mcasts) = packets.fold((0, 0, 0), |(n, b, m), p| {
            (
                n + 1,
                b + p.byte_len() as u64,
                m + u64::from(p.is_multicast()),
            )
        });
        Self {
            queued,
            evicting,
            bytes,
            mcasts,
        }
    }
}

/// A queueing discipline for a send queue (OpenBSD `ifq_ops`).
///
/// Every method runs under the queue lock, so a discipline is plain
/// single-threaded code. It must never drop a packet itself: whatever it does
/// not keep it returns, so the queue can count it and hand it back to be freed
/// outside the lock.
///
/// Dequeue is two-phase, for a driver that may find its ring full after
/// looking at the next packet: [`deq_begin`](Discipline::deq_begin) locates the
/// head and returns a cookie, [`peek`](Discipline::peek) shows it, and
/// [`deq_commit`](Discipline::deq_commit) removes it. If the driver does not
/// commit, nothing changed. The queue guarantees that no other method runs
/// between `deq_begin` and the matching `peek`s and `deq_commit`.
pub trait Discipline {
    /// The packets this discipline holds.
    type Packet: Packet;
    /// Where the head is, from [`deq_begin`](Discipline::deq_begin) to the
    /// matching [`deq_commit`](Discipline::deq_commit) (for [`Priq`], the
    /// priority level).
    type Cookie: Copy;
    /// What [`purge`](Discipline::purge) returns: every packet that was queued.
    type Purged: Iterator<Item = Self::Packet>;

    /// Offers `packet` to a queue that holds `len` packets and should hold at
    /// most `maxlen`.
    fn enqueue(&mut self, packet: Self::Packet, len: usize, maxlen: usize)
    -> Enqueue<Self::Packet>;

    /// Locates the packet that leaves next, if any.
    fn deq_begin(&self) -> Option<Self::Cookie>;

    /// The packet `cookie` (from [`deq_begin`](Discipline::deq_begin)) locates.
    fn peek(&self, cookie: Self::Cookie) -> &Self::Packet;

    /// Removes and returns the packet `cookie` locates.
    fn deq_commit(&mut self, cookie: Self::Cookie) -> Self::Packet;

    /// Moves up to `max` packets, in leaving order, into `out` (at most its
    /// remaining capacity); returns how many. The default is a loop of
    /// [`deq_begin`](Discipline::deq_begin) and
    /// [`deq_commit`](Discipline::deq_commit); a discipline can do it in bulk.
    #[inline]
    fn dequeue_into<const N: usize>(
        &mut self,
        out: &mut ArrayVec<Self::Packet, N>,
        max: usize,
    ) -> usize {
        let want = max.min(out.remaining_capacity());
        let mut n = 0;
        while n < want {
            let Some(cookie) = self.deq_begin() else {
                break;
            };
            out.push(self.deq_commit(cookie));
            n += 1;
        }
        n
    }

    /// Offers every packet `packets` yields, in order, to a queue that holds
    /// `len` packets and should hold at most `maxlen`: exactly what that many
    /// [`enqueue`](Discipline::enqueue) calls would do, with `len` advancing
    /// past each queued packet. Passes each outcome other than
    /// [`Enqueue::Queued`] to `dropped`, in order, and returns what it kept.
    ///
    /// The default is that loop of `enqueue` calls; [`Fifo`] and [`Priq`]
    /// compute the room once and move that many packets in bulk.
    #[inline]
    fn enqueue_burst(
        &mut self,
        packets: impl Iterator<Item = Self::Packet>,
        len: usize,
        maxlen: usize,
        mut dropped: impl FnMut(Enqueue<Self::Packet>),
    ) -> Accepted {
        let mut kept = Accepted::default();
        for packet in packets {
            let (bytes, mcast) = (packet.byte_len(), packet.is_multicast());
            match self.enqueue(packet, len + kept.queued, maxlen) {
                Enqueue::Queued => kept.queued += 1,
                evicted @ Enqueue::Evicted(_) => {
                    kept.evicting += 1;
                    dropped(evicted);
                }
                refused @ Enqueue::Refused(_) => {
                    dropped(refused);
                    continue;
                }
            }
            kept.bytes += bytes as u64;
            kept.mcasts += u64::from(mcast);
        }
        kept
    }

    /// Removes every packet, returning them in the order they would have left.
    /// Should be cheap (a swap), since it runs under the queue lock and the
    /// caller iterates outside it.
    fn purge(&mut self) -> Self::Purged;

    /// How many packets are held.
    fn len(&self) -> usize;

    /// Whether no packet is held.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out; when full, the new packet is refused (tail drop).
///
/// Needs the `alloc` feature. The `VecDeque` grows on demand up to the
/// queue's `maxlen`; [`Fifo::with_capacity`] allocates it up front.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[derive(Debug)]
pub struct Fifo<P> {
    packets: VecDeque<P>,
}

#[cfg(feature = "alloc")]
impl<P> Fifo<P> {
    /// An empty FIFO that allocates on first use.
    pub const fn new() -> Self {
        Self {
            packets: VecDeque::new(),
        }
    }

    /// The queued packets, oldest (next to leave) first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &P> + ExactSizeIterator {
        self.packets.iter()
    }

    /// An empty FIFO with room for `capacity` packets before it reallocates
    /// (pass the queue's `maxlen` to never allocate on the hot path).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            packets: VecDeque::with_capacity(capacity),
        }
    }
}

#[cfg(feature = "alloc")]
impl<P> Default for Fifo<P> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<P: Packet> Discipline for Fifo<P> {
    type Packet = P;
    type Cookie = ();
    type Purged = alloc::collections::vec_deque::IntoIter<P>;

    #[inline]
    fn enqueue(&mut self, packet: P, len: usize, maxlen: usize) -> Enqueue<P> {
        if len >= maxlen {
            return Enqueue::Refused(packet);
        }
        self.packets.push_back(packet);
        Enqueue::Queued
    }

    #[inline]
    fn enqueue_burst(
        &mut self,
        mut packets: impl Iterator<Item = P>,
        len: usize,
        maxlen: usize,
        mut dropped: impl FnMut(Enqueue<P>),
    ) -> Accepted {
        // One room computation: the first `room` packets fit, every later one
        // meets a full queue and is refused (tail drop), as one by one. The
        // bulk `extend` keeps the caller's iterator as it is (one of exact
        // length is copied in two slices); the new packets are counted after.
        let room = maxlen.saturating_sub(len);
        let before = self.packets.len();
        self.packets.extend(packets.by_ref().take(room));
        let kept = Accepted::count(self.packets.range(before..), 0);
        for packet in packets {
            dropped(Enqueue::Refused(packet));
        }
        kept
    }

    #[inline]
    fn deq_begin(&self) -> Option<()> {
        (!self.packets.is_empty()).then_some(())
    }

    #[inline]
    fn peek(&self, (): ()) -> &P {
        self.packets.front().expect("deq_begin found a packet")
    }

    #[inline]
    fn deq_commit(&mut self, (): ()) -> P {
        self.packets.pop_front().expect("deq_begin found a packet")
    }

    #[inline]
    fn dequeue_into<const N: usize>(&mut self, out: &mut ArrayVec<P, N>, max: usize) -> usize {
        let n = max.min(out.remaining_capacity()).min(self.packets.len());
        if n >= 16 {
            // Long bursts: `extend(drain)` copies slice by slice.
            out.extend(self.packets.drain(..n));
        } else {
            // Short ones: a `Drain` costs a set-up and a tail-joining drop
            // that dominate the one-packet bursts an uncontended start
            // routine mostly sees; pops do not.
            for _ in 0..n {
                match self.packets.pop_front() {
                    Some(p) => out.push(p),
                    None => break,
                }
            }
        }
        n
    }

    fn purge(&mut self) -> Self::Purged {
        core::mem::take(&mut self.packets).into_iter()
    }

    #[inline]
    fn len(&self) -> usize {
        self.packets.len()
    }
}

/// Eight FIFOs, one per [`Priority`]: the highest non-empty level leaves
/// first. When the queue is full, a new packet evicts the oldest packet of the
/// *lowest* non-empty level below its own; if there is none, the new packet is
/// refused. So a full queue of high-priority packets never loses one to a
/// lower-priority arrival (OpenBSD `priq`, the default discipline there).
///
/// Needs the `alloc` feature. Every operation is O(1): a bitmap of non-empty
/// levels finds the head and the eviction victim without scanning.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[derive(Debug)]
pub struct Priq<P> {
    levels: [VecDeque<P>; Priority::LEVELS],
    /// Bit `i` set when level `i` holds a packet.
    nonempty: u8,
    len: usize,
}

#[cfg(feature = "alloc")]
impl<P> Priq<P> {
    /// An empty priority queue that allocates on first use.
    pub const fn new() -> Self {
        Self {
            levels: [const { VecDeque::new() }; Priority::LEVELS],
            nonempty: 0,
            len: 0,
        }
    }

    /// The queued packets in the order they would leave: highest level first,
    /// oldest first within a level.
    pub fn iter(&self) -> impl Iterator<Item = &P> {
        self.levels.iter().rev().flatten()
    }

    /// How many packets level `priority` holds.
    pub fn level_len(&self, priority: Priority) -> usize {
        self.levels[priority.index()].len()
    }

    #[inline]
    fn push_level(&mut self, level: usize, packet: P) {
        self.levels[level].push_back(packet);
        self.nonempty |= 1 << level;
        self.len += 1;
    }

    /// [`Discipline::enqueue`] into a full queue: evict the oldest packet of
    /// the lowest non-empty level strictly below `level`, or refuse.
    #[cold]
    #[inline(never)]
    fn enqueue_full(&mut self, packet: P, level: usize) -> Enqueue<P> {
        // Levels strictly below the new packet's, lowest first.
        let below = self.nonempty & ((1u8 << level) - 1);
        if below == 0 {
            return Enqueue::Refused(packet);
        }
        let old = self.pop_level(below.trailing_zeros() as usize);
        self.push_level(level, packet);
        Enqueue::Evicted(old)
    }

    #[inline]
    fn pop_level(&mut self, level: usize) -> P {
        let list = &mut self.levels[level];
        let packet = list.pop_front().expect("nonempty bit names a packet");
        if list.is_empty() {
            self.nonempty &= !(1 << level);
        }
        self.len -= 1;
        packet
    }
}

#[cfg(feature = "alloc")]
impl<P> Default for Priq<P> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(feature = "alloc")]
impl<P: Packet> Discipline for Priq<P> {
    type Packet = P;
    type Cookie = Priority;
    type Purged = PriqPurged<P>;

    #[inline]
    fn enqueue(&mut self, packet: P, len: usize, maxlen: usize) -> Enqueue<P> {
        let level = packet.priority().index();
        if len >= maxlen {
            // Out of line (a drop path): keeps the common path small enough to
            // inline into the queue's enqueue.
            return self.enqueue_full(packet, level);
        }
        self.push_level(level, packet);
        Enqueue::Queued
    }

    #[inline]
    fn enqueue_burst(
        &mut self,
        mut packets: impl Iterator<Item = P>,
        len: usize,
        maxlen: usize,
        mut dropped: impl FnMut(Enqueue<P>),
    ) -> Accepted {
        // The first `room` packets fit; once full the queue stays full (an
        // eviction keeps the length), so every later packet takes the
        // evict-or-refuse path, as one by one.
        let room = maxlen.saturating_sub(len);
        let (mut queued, mut bytes, mut mcasts) = (0, 0, 0);
        for packet in packets.by_ref().take(room) {
            bytes += packet.byte_len() as u64;
            mcasts += u64::from(packet.is_multicast());
            self.push_level(packet.priority().index(), packet);
            queued += 1;
        }
        let mut kept = Accepted {
            queued,
            evicting: 0,
            bytes,
            mcasts,
        };
        for packet in packets {
            let (bytes, mcast) = (packet.byte_len() as u64, packet.is_multicast());
            let level = packet.priority().index();
            let outcome = self.enqueue_full(packet, level);
            if let Enqueue::Evicted(_) = outcome {
                kept.evicting += 1;
                kept.bytes += bytes;
                kept.mcasts += u64::from(mcast);
            }
            dropped(outcome);
        }
        kept
    }

    #[inline]
    fn deq_begin(&self) -> Option<Priority> {
        if self.nonempty == 0 {
            return None;
        }
        let level = 7 - self.nonempty.leading_zeros() as u8;
        Some(Priority::new(level).expect("a u8 bit index is below 8"))
    }

    #[inline]
    fn peek(&self, level: Priority) -> &P {
        self.levels[level.index()]
            .front()
            .expect("deq_begin found a packet")
    }

    #[inline]
    fn deq_commit(&mut self, level: Priority) -> P {
        self.pop_level(level.index())
    }

    #[inline]
    fn dequeue_into<const N: usize>(&mut self, out: &mut ArrayVec<P, N>, max: usize) -> usize {
        let want = max.min(out.remaining_capacity()).min(self.len);
        let mut left = want;
        while left > 0 {
            // Highest non-empty level; `left <= self.len` keeps one non-empty.
            let level = 7 - self.nonempty.leading_zeros() as usize;
            let list = &mut self.levels[level];
            let take = left.min(list.len());
            // A loop of pushes rather than `extend`: inlined, the drain stays
            // in registers (`want` fits in `out`, so no push fails).
            for packet in list.drain(..take) {
                out.push(packet);
            }
            if list.is_empty() {
                self.nonempty &= !(1 << level);
            }
            left -= take;
        }
        self.len -= want;
        want
    }

    fn purge(&mut self) -> PriqPurged<P> {
        self.nonempty = 0;
        self.len = 0;
        PriqPurged {
            levels: core::mem::replace(&mut self.levels, [const { VecDeque::new() }; 8]),
            next: Priority::LEVELS,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.len
    }
}

/// The packets a [`Priq`] held, highest priority first, oldest first within a
/// level.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
#[derive(Debug)]
pub struct PriqPurged<P> {
    levels: [VecDeque<P>; Priority::LEVELS],
    /// One above the level being drained.
    next: usize,
}

#[cfg(feature = "alloc")]
impl<P> Iterator for PriqPurged<P> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        while self.next > 0 {
            if let Some(p) = self.levels[self.next - 1].pop_front() {
                return Some(p);
            }
            self.next -= 1;
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.levels[..self.next].iter().map(VecDeque::len).sum();
        (n, Some(n))
    }
}

#[cfg(feature = "alloc")]
impl<P> ExactSizeIterator for PriqPurged<P> {}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[derive(Debug, PartialEq, Eq)]
    struct P(u8, u32);
    impl Packet for P {
        fn byte_len(&self) -> usize {
            1
        }
        fn priority(&self) -> Priority {
            Priority::new(self.0).unwrap()
        }
    }

    fn drain<D: Discipline>(d: &mut D) -> Vec<D::Packet> {
        let mut out = Vec::new();
        while let Some(c) = d.deq_begin() {
            out.push(d.deq_commit(c));
        }
        out
    }

    #[test]
    fn fifo_tail_drops_when_full() {
        let mut f = Fifo::with_capacity(2);
        assert_eq!(f.enqueue(P(0, 1), 0, 2), Enqueue::Queued);
        assert_eq!(f.enqueue(P(7, 2), 1, 2), Enqueue::Queued);
        assert_eq!(f.enqueue(P(7, 3), 2, 2), Enqueue::Refused(P(7, 3)));
        assert!(f.deq_begin().is_some());
        assert_eq!(f.peek(()), &P(0, 1));
        assert_eq!(drain(&mut f), [P(0, 1), P(7, 2)]);
        assert!(f.is_empty() && f.deq_begin().is_none());
    }

    #[test]
    fn priq_dequeues_highest_first_fifo_within_level() {
        let mut q = Priq::new();
        for (i, prio) in [3, 0, 7, 3, 5, 0].into_iter().enumerate() {
            assert_eq!(q.enqueue(P(prio, i as u32), i, 100), Enqueue::Queued);
        }
        assert_eq!(q.level_len(Priority::DEFAULT), 2);
        let order: Vec<_> = drain(&mut q).into_iter().map(|p| p.1).collect();
        assert_eq!(order, [2, 4, 0, 3, 1, 5]);
    }

    #[test]
    fn priq_evicts_oldest_of_lowest_level_below_new() {
        let mut q = Priq::new();
        for (i, prio) in [5, 2, 2, 4].into_iter().enumerate() {
            let _ = q.enqueue(P(prio, i as u32), i, 4);
        }
        // Full: a priority-3 packet evicts the oldest priority-2 one.
        assert_eq!(q.enqueue(P(3, 10), 4, 4), Enqueue::Evicted(P(2, 1)));
        // Another: the remaining priority-2 one.
        assert_eq!(q.enqueue(P(3, 11), 4, 4), Enqueue::Evicted(P(2, 2)));
        // Priority 3 cannot evict its own level or above: refused.
        assert_eq!(q.enqueue(P(3, 12), 4, 4), Enqueue::Refused(P(3, 12)));
        // Priority 0 never evicts anything.
        assert_eq!(q.enqueue(P(0, 13), 4, 4), Enqueue::Refused(P(0, 13)));
        // Priority 7 evicts the lowest non-empty level below it: 3.
        assert_eq!(q.enqueue(P(7, 14), 4, 4), Enqueue::Evicted(P(3, 10)));
        assert_eq!(q.len(), 4);
        let order: Vec<_> = drain(&mut q).into_iter().map(|p| p.1).collect();
        assert_eq!(order, [14, 0, 3, 11]);
    }

    #[test]
    fn priq_purge_returns_everything_in_leaving_order() {
        let mut q = Priq::new();
        for (i, prio) in [1, 6, 1, 6, 0].into_iter().enumerate() {
            let _ = q.enqueue(P(prio, i as u32), i, 100);
        }
        let purged = q.purge();
        assert_eq!(purged.len(), 5);
        let ids: Vec<_> = purged.map(|p| p.1).collect();
        assert_eq!(ids, [1, 3, 0, 2, 4]);
        assert!(q.is_empty() && q.deq_begin().is_none());
        // Still usable after a purge.
        assert_eq!(q.enqueue(P(2, 9), 0, 1), Enqueue::Queued);
        assert_eq!(drain(&mut q), [P(2, 9)]);
    }
}
