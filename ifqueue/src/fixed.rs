//! Allocation-free disciplines: [`Fifo`](crate::Fifo) and
//! [`Priq`](crate::Priq) with a capacity fixed at compile time, for a kernel
//! without a heap.
//!
//! Both keep their packets inline (`N` slots), never allocate, and have
//! `const` constructors, so a send queue using them can be a `static`. They
//! behave exactly as the allocating forms for any `maxlen <= N`; with a larger
//! `maxlen`, a queue holding `N` packets is full for them (the FIFO refuses,
//! the priority queue evicts or refuses as on a full queue).

use core::fmt;

use crate::discipline::{Discipline, Enqueue};
use crate::packet::{Packet, Priority};

/// A ring of `N` slots: the storage of [`ArrayFifo`] and
/// [`ArrayInputQueue`](crate::ArrayInputQueue).
pub(crate) struct Ring<P, const N: usize> {
    slots: [Option<P>; N],
    /// Index of the oldest packet.
    head: usize,
    pub(crate) len: usize,
}

impl<P, const N: usize> Ring<P, N> {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { None }; N],
            head: 0,
            len: 0,
        }
    }

    #[inline]
    pub(crate) fn push_back(&mut self, packet: P) {
        debug_assert!(self.len < N);
        let tail = (self.head + self.len) % N;
        self.slots[tail] = Some(packet);
        self.len += 1;
    }

    #[inline]
    fn front(&self) -> Option<&P> {
        if self.len == 0 {
            return None;
        }
        self.slots[self.head].as_ref()
    }

    #[inline]
    pub(crate) fn pop_front(&mut self) -> Option<P> {
        if self.len == 0 {
            return None;
        }
        let packet = self.slots[self.head].take();
        self.head = (self.head + 1) % N;
        self.len -= 1;
        packet
    }

    fn iter(&self) -> impl Iterator<Item = &P> {
        (0..self.len).filter_map(move |i| self.slots[(self.head + i) % N].as_ref())
    }
}

/// First in, first out, tail drop, in `N` inline slots: the allocation-free
/// [`Fifo`](crate::Fifo).
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{ArrayFifo, Packet, SendQueue};
///
/// #[derive(Debug, PartialEq)]
/// struct Slot(u16); // an index into the driver's buffer pool
/// impl Packet for Slot {
///     fn byte_len(&self) -> usize { 64 }
/// }
///
/// static TXQ: SendQueue<ArrayFifo<Slot, 4>> = SendQueue::new_const(ArrayFifo::new(), 4);
///
/// for i in 0..4 {
///     TXQ.enqueue(Slot(i)).unwrap();
/// }
/// assert!(TXQ.enqueue(Slot(9)).is_err()); // full: refused, not allocated
/// assert_eq!(TXQ.dequeue(), Some(Slot(0)));
/// ```
pub struct ArrayFifo<P, const N: usize> {
    ring: Ring<P, N>,
}

impl<P, const N: usize> ArrayFifo<P, N> {
    /// An empty FIFO.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub const fn new() -> Self {
        const { assert!(N > 0, "an ArrayFifo needs at least one slot") };
        Self { ring: Ring::new() }
    }

    /// The queued packets, oldest (next to leave) first.
    pub fn iter(&self) -> impl Iterator<Item = &P> {
        self.ring.iter()
    }

    /// How many packets it can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }
}

impl<P, const N: usize> Default for ArrayFifo<P, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: fmt::Debug, const N: usize> fmt::Debug for ArrayFifo<P, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<P: Packet, const N: usize> Discipline for ArrayFifo<P, N> {
    type Packet = P;
    type Cookie = ();
    type Purged = ArrayFifoPurged<P, N>;

    #[inline]
    fn enqueue(&mut self, packet: P, len: usize, maxlen: usize) -> Enqueue<P> {
        if len >= maxlen || self.ring.len == N {
            return Enqueue::Refused(packet);
        }
        self.ring.push_back(packet);
        Enqueue::Queued
    }

    #[inline]
    fn deq_begin(&self) -> Option<()> {
        (self.ring.len != 0).then_some(())
    }

    #[inline]
    fn peek(&self, (): ()) -> &P {
        self.ring.front().expect("deq_begin found a packet")
    }

    #[inline]
    fn deq_commit(&mut self, (): ()) -> P {
        self.ring.pop_front().expect("deq_begin found a packet")
    }

    fn purge(&mut self) -> ArrayFifoPurged<P, N> {
        ArrayFifoPurged {
            ring: core::mem::replace(&mut self.ring, Ring::new()),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.ring.len
    }
}

/// The packets an [`ArrayFifo`] (or an
/// [`ArrayInputQueue`](crate::ArrayInputQueue)) held, oldest first.
pub struct ArrayFifoPurged<P, const N: usize> {
    pub(crate) ring: Ring<P, N>,
}

impl<P, const N: usize> Iterator for ArrayFifoPurged<P, N> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        self.ring.pop_front()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.ring.len, Some(self.ring.len))
    }
}

impl<P, const N: usize> ExactSizeIterator for ArrayFifoPurged<P, N> {}

impl<P, const N: usize> fmt::Debug for ArrayFifoPurged<P, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayFifoPurged")
            .field("len", &self.ring.len)
            .finish()
    }
}

/// "No slot" in the index lists of [`ArrayPriq`].
const NIL: usize = usize::MAX;

/// The storage of [`ArrayPriq`]: `N` slots, a FIFO list of slot indices per
/// priority level and a free list, all linked through `next`.
struct Slab<P, const N: usize> {
    slots: [Option<P>; N],
    next: [usize; N],
    /// `(head, tail)` of each level's list; `NIL` when empty.
    levels: [(usize, usize); Priority::LEVELS],
    /// Bit `i` set when level `i` holds a packet.
    nonempty: u8,
    /// Head of the free list, and how many slots are taken.
    free: usize,
    len: usize,
}

impl<P, const N: usize> Slab<P, N> {
    const fn new() -> Self {
        // Every slot free, chained in index order.
        let mut next = [NIL; N];
        let mut i = 0;
        while i + 1 < N {
            next[i] = i + 1;
            i += 1;
        }
        Self {
            slots: [const { None }; N],
            next,
            levels: [(NIL, NIL); Priority::LEVELS],
            nonempty: 0,
            free: if N == 0 { NIL } else { 0 },
            len: 0,
        }
    }

    #[inline]
    fn push_level(&mut self, level: usize, packet: P) {
        let slot = self.free;
        debug_assert!(slot != NIL, "push into a full slab");
        self.free = self.next[slot];
        self.slots[slot] = Some(packet);
        self.next[slot] = NIL;
        let (head, tail) = self.levels[level];
        if head == NIL {
            self.levels[level] = (slot, slot);
        } else {
            self.next[tail] = slot;
            self.levels[level].1 = slot;
        }
        self.nonempty |= 1 << level;
        self.len += 1;
    }

    #[inline]
    fn front(&self, level: usize) -> &P {
        let head = self.levels[level].0;
        self.slots[head]
            .as_ref()
            .expect("a level's head slot holds a packet")
    }

    #[inline]
    fn pop_level(&mut self, level: usize) -> P {
        let (head, tail) = self.levels[level];
        let packet = self.slots[head]
            .take()
            .expect("nonempty bit names a packet");
        if head == tail {
            self.levels[level] = (NIL, NIL);
            self.nonempty &= !(1 << level);
        } else {
            self.levels[level].0 = self.next[head];
        }
        self.next[head] = self.free;
        self.free = head;
        self.len -= 1;
        packet
    }

    #[inline]
    fn highest(&self) -> Option<usize> {
        (self.nonempty != 0).then(|| 7 - self.nonempty.leading_zeros() as usize)
    }

    fn level_iter(&self, level: usize) -> impl Iterator<Item = &P> {
        let mut at = self.levels[level].0;
        core::iter::from_fn(move || {
            if at == NIL {
                return None;
            }
            let p = self.slots[at].as_ref();
            at = self.next[at];
            p
        })
    }
}

/// Eight priority levels in `N` shared inline slots: the allocation-free
/// [`Priq`](crate::Priq), with the same order and the same eviction rule
/// (a new packet on a full queue evicts the oldest packet of the lowest
/// non-empty level below its own, else it is refused). Every operation is
/// O(1).
///
/// # Examples
///
/// ```
/// use mpsafe_ifqueue::{ArrayPriq, Dropped, Packet, Priority, SendQueue};
///
/// #[derive(Debug, PartialEq)]
/// struct Slot(u16, u8);
/// impl Packet for Slot {
///     fn byte_len(&self) -> usize { 64 }
///     fn priority(&self) -> Priority { Priority::new(self.1).unwrap() }
/// }
///
/// static TXQ: SendQueue<ArrayPriq<Slot, 2>> = SendQueue::new_const(ArrayPriq::new(), 2);
///
/// TXQ.enqueue(Slot(0, 1)).unwrap();
/// TXQ.enqueue(Slot(1, 3)).unwrap();
/// // Full: a priority-6 packet evicts the oldest of the lowest level below it.
/// assert_eq!(TXQ.enqueue(Slot(2, 6)), Err(Dropped::Evicted(Slot(0, 1))));
/// assert_eq!(TXQ.dequeue(), Some(Slot(2, 6)));
/// ```
pub struct ArrayPriq<P, const N: usize> {
    slab: Slab<P, N>,
}

impl<P, const N: usize> ArrayPriq<P, N> {
    /// An empty priority queue.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub const fn new() -> Self {
        const { assert!(N > 0, "an ArrayPriq needs at least one slot") };
        Self { slab: Slab::new() }
    }

    /// The queued packets in the order they would leave: highest level first,
    /// oldest first within a level.
    pub fn iter(&self) -> impl Iterator<Item = &P> {
        (0..Priority::LEVELS)
            .rev()
            .flat_map(move |level| self.slab.level_iter(level))
    }

    /// How many packets level `priority` holds.
    pub fn level_len(&self, priority: Priority) -> usize {
        self.slab.level_iter(priority.index()).count()
    }

    /// How many packets it can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// [`Discipline::enqueue`] into a full queue: evict the oldest packet of
    /// the lowest non-empty level strictly below `level`, or refuse.
    #[cold]
    #[inline(never)]
    fn enqueue_full(&mut self, packet: P, level: usize) -> Enqueue<P> {
        let below = self.slab.nonempty & ((1u8 << level) - 1);
        if below == 0 {
            return Enqueue::Refused(packet);
        }
        let old = self.slab.pop_level(below.trailing_zeros() as usize);
        self.slab.push_level(level, packet);
        Enqueue::Evicted(old)
    }
}

impl<P, const N: usize> Default for ArrayPriq<P, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: fmt::Debug, const N: usize> fmt::Debug for ArrayPriq<P, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<P: Packet, const N: usize> Discipline for ArrayPriq<P, N> {
    type Packet = P;
    type Cookie = Priority;
    type Purged = ArrayPriqPurged<P, N>;

    #[inline]
    fn enqueue(&mut self, packet: P, len: usize, maxlen: usize) -> Enqueue<P> {
        let level = packet.priority().index();
        if len >= maxlen || self.slab.len == N {
            return self.enqueue_full(packet, level);
        }
        self.slab.push_level(level, packet);
        Enqueue::Queued
    }

    #[inline]
    fn deq_begin(&self) -> Option<Priority> {
        let level = self.slab.highest()?;
        Some(Priority::new(level as u8).expect("a u8 bit index is below 8"))
    }

    #[inline]
    fn peek(&self, level: Priority) -> &P {
        self.slab.front(level.index())
    }

    #[inline]
    fn deq_commit(&mut self, level: Priority) -> P {
        self.slab.pop_level(level.index())
    }

    fn purge(&mut self) -> ArrayPriqPurged<P, N> {
        ArrayPriqPurged {
            slab: core::mem::replace(&mut self.slab, Slab::new()),
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.slab.len
    }
}

/// The packets an [`ArrayPriq`] held, highest priority first, oldest first
/// within a level.
pub struct ArrayPriqPurged<P, const N: usize> {
    slab: Slab<P, N>,
}

impl<P, const N: usize> Iterator for ArrayPriqPurged<P, N> {
    type Item = P;

    fn next(&mut self) -> Option<P> {
        let level = self.slab.highest()?;
        Some(self.slab.pop_level(level))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.slab.len, Some(self.slab.len))
    }
}

impl<P, const N: usize> ExactSizeIterator for ArrayPriqPurged<P, N> {}

impl<P, const N: usize> fmt::Debug for ArrayPriqPurged<P, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayPriqPurged")
            .field("len", &self.slab.len)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn fifo_wraps_around_its_ring() {
        let mut f = ArrayFifo::<P, 3>::new();
        for round in 0..5u32 {
            assert_eq!(f.enqueue(P(0, round), 0, 3), Enqueue::Queued);
            assert_eq!(f.enqueue(P(0, round + 100), 1, 3), Enqueue::Queued);
            assert_eq!(f.deq_commit(()), P(0, round));
            assert_eq!(f.deq_commit(()), P(0, round + 100));
        }
        assert!(f.deq_begin().is_none());
        assert_eq!(f.capacity(), 3);
    }

    #[test]
    fn a_maxlen_above_capacity_is_full_at_capacity() {
        let mut f = ArrayFifo::<P, 2>::new();
        let _ = f.enqueue(P(0, 1), 0, 10);
        let _ = f.enqueue(P(0, 2), 1, 10);
        assert_eq!(f.enqueue(P(0, 3), 2, 10), Enqueue::Refused(P(0, 3)));
        let mut q = ArrayPriq::<P, 2>::new();
        let _ = q.enqueue(P(1, 1), 0, 10);
        let _ = q.enqueue(P(1, 2), 1, 10);
        assert_eq!(q.enqueue(P(0, 3), 2, 10), Enqueue::Refused(P(0, 3)));
        assert_eq!(q.enqueue(P(5, 4), 2, 10), Enqueue::Evicted(P(1, 1)));
        assert_eq!(q.len(), 2);
        let purged: arrayvec::ArrayVec<u32, 8> = q.purge().map(|p| p.1).collect();
        assert_eq!(purged.as_slice(), [4, 2]);
    }
}
