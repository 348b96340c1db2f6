//! The send queue: a discipline behind a lock, with counters and `oactive`.

use core::fmt;
use core::ops::Deref;

use arrayvec::ArrayVec;
use crossbeam_utils::CachePadded;
use lock_api::RawMutex;
use mpsafe_serializer::TaskSerializer;

use crate::DefaultLock;
use crate::discipline::{Discipline, Enqueue};
use crate::packet::Packet;
use crate::sync::{AtomicBool, AtomicUsize, Guard, Lock, Ordering, fence};

/// The largest `maxlen` a queue accepts: anything above is a configuration
/// mistake (OpenBSD's default is 256; a 10 GbE ring rarely holds 8192).
pub const MAX_MAXLEN: usize = 1 << 20;

/// The counters of a send queue, as one consistent snapshot (OpenBSD
/// `ifq_packets`, `ifq_bytes`, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Packets accepted by [`SendQueue::enqueue`] (queued, possibly evicting
    /// another).
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Multicast packets among them.
    pub mcasts: u64,
    /// Packets dropped: refused or evicted at enqueue, and purged.
    pub qdrops: u64,
    /// Transmit errors the driver reported ([`SendQueue::add_errors`]).
    pub errors: u64,
}

/// A packet [`SendQueue::enqueue`] did not keep, handed back to be freed
/// outside the queue lock. It is already counted in [`Counters::qdrops`].
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Dropped<P> {
    /// The queue was full and the discipline refused the new packet; this is
    /// it. It was not counted in `packets`/`bytes`.
    Refused(P),
    /// The new packet was queued (and counted); this older packet was evicted
    /// to make room.
    Evicted(P),
}

impl<P> Dropped<P> {
    /// The dropped packet.
    pub fn into_packet(self) -> P {
        match self {
            Self::Refused(p) | Self::Evicted(p) => p,
        }
    }

    /// Whether the packet offered to `enqueue` is in the queue (it evicted
    /// another) rather than refused.
    pub fn offered_was_queued(&self) -> bool {
        matches!(self, Self::Evicted(_))
    }
}

impl<P> fmt::Display for Dropped<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Refused(_) => "send queue full: packet refused",
            Self::Evicted(_) => "send queue full: a lower-priority packet was evicted",
        })
    }
}

impl<P: fmt::Debug> core::error::Error for Dropped<P> {}

/// A send queue configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `maxlen` is 0: the queue could never hold a packet.
    ZeroMaxlen,
    /// `maxlen` is above [`MAX_MAXLEN`].
    MaxlenTooLarge {
        /// The `maxlen` asked for.
        maxlen: usize,
    },
    /// The bundling threshold is 0 (use 1 to start on every call).
    ZeroBundle,
    /// The owner bound is `Some(0)`: an owner could not run a single pass
    /// (use `None` for no bound).
    ZeroOwnerBound,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroMaxlen => f.write_str("send queue maxlen is 0"),
            Self::MaxlenTooLarge { maxlen } => {
                write!(f, "send queue maxlen {maxlen} is above {MAX_MAXLEN}")
            }
            Self::ZeroBundle => f.write_str("bundling threshold is 0 (1 starts on every call)"),
            Self::ZeroOwnerBound => {
                f.write_str("owner bound is 0 packets (None leaves the owner unbounded)")
            }
        }
    }
}

impl core::error::Error for ConfigError {}

pub(crate) fn check_maxlen(maxlen: usize) -> Result<(), ConfigError> {
    match maxlen {
        0 => Err(ConfigError::ZeroMaxlen),
        n if n > MAX_MAXLEN => Err(ConfigError::MaxlenTooLarge { maxlen }),
        _ => Ok(()),
    }
}

/// What the queue lock protects.
struct Inner<D> {
    discipline: D,
    /// Packets queued, kept by the queue (OpenBSD `ifq_len`), not trusted from
    /// the discipline.
    len: usize,
    maxlen: usize,
    counters: Counters,
}

/// `Hints::budget` when no budget is set.
const NO_BUDGET: usize = usize::MAX;

/// Words kept beside the queue lock, stored under it and read without it.
struct Hints {
    /// Mirror of `Inner::len`, read without the lock as a hint (OpenBSD
    /// reads `ifq_len` unlocked the same way).
    len: AtomicUsize,
    /// Packets dequeued since the queue was made (wrapping): how an
    /// [`IfQueue`](crate::IfQueue)'s bounded owner counts what its passes
    /// sent (`Config::owner_bound`). Every dequeue writes the length beside
    /// it anyway.
    dequeued: AtomicUsize,
    /// Packets the current start pass may still dequeue ([`NO_BUDGET`]:
    /// any number); set by a bounded owner around its passes.
    budget: AtomicUsize,
}

/// An interface send queue (OpenBSD `struct ifqueue`, the packet part): a
/// [`Discipline`] behind a lock, counters, and the `oactive` flag.
///
/// The lock is any [`lock_api::RawMutex`] `R`. Each operation takes it once;
/// [`lock`](SendQueue::lock) returns a guard whose methods are the
/// lock-held entrypoints, for a caller that wants several operations under
/// one acquisition. Dropped packets are always returned, never freed under
/// the lock.
///
/// An [`IfQueue`](crate::IfQueue) is a send queue plus the serialized start;
/// its driver's start routine is handed the `SendQueue`.
// `repr(C)`: the fields in this order, so the start serializer's word, the
// length hint and the queue lock's word share the struct's first cache line
// (the struct is 128-byte aligned through `oactive`).
#[repr(C)]
pub struct SendQueue<D, R: RawMutex = DefaultLock> {
    /// The start serializer of the [`IfQueue`](crate::IfQueue) that holds
    /// this queue (unused by a queue standing alone). It sits on the queue
    /// lock's cache line on purpose: a transmit that finds another CPU
    /// starting takes the lock, enqueues, releases it and marks its start
    /// pending here, and with both words on one line that is one line moved
    /// between the CPUs instead of two. Both are written by whoever
    /// transmits, so nothing is lost by sharing.
    pub(crate) serializer: TaskSerializer,
    /// The words beside the lock that dequeues keep up to date.
    hints: Hints,
    inner: Lock<R, Inner<D>>,
    /// Written by the start routine and read by tx completion on other CPUs:
    /// its own cache line.
    oactive: CachePadded<AtomicBool>,
}

impl<D: Discipline> SendQueue<D> {
    /// A queue with the [`DefaultLock`] holding at most `maxlen` packets (the
    /// discipline decides what a full queue does), with `oactive` clear.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroMaxlen`] or [`ConfigError::MaxlenTooLarge`].
    pub fn new(discipline: D, maxlen: usize) -> Result<Self, ConfigError> {
        Self::with_lock(discipline, maxlen)
    }
}

impl<D: Discipline, R: RawMutex> SendQueue<D, R> {
    /// [`SendQueue::new`] with the lock `R` named by the caller.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroMaxlen`] or [`ConfigError::MaxlenTooLarge`].
    pub fn with_lock(discipline: D, maxlen: usize) -> Result<Self, ConfigError> {
        check_maxlen(maxlen)?;
        Ok(Self::build(discipline, maxlen))
    }

    crate::sync::const_fn! {
        /// [`SendQueue::with_lock`] as a `const fn`, for a `static` queue; the
        /// lock is the one the `static`'s type names.
        ///
        /// # Panics
        ///
        /// If `maxlen` is 0 or above [`MAX_MAXLEN`]; in a `const` or `static`
        /// initializer that is a compile error.
        ///
        /// # Examples
        ///
        /// ```
        /// use mpsafe_ifqueue::{Fifo, SendQueue};
        ///
        /// static TXQ: SendQueue<Fifo<Vec<u8>>> = SendQueue::new_const(Fifo::new(), 256);
        ///
        /// TXQ.enqueue(vec![0; 64]).unwrap();
        /// assert_eq!(TXQ.len(), 1);
        /// ```
        ///
        /// A bad `maxlen` does not compile:
        ///
        /// ```compile_fail
        /// use mpsafe_ifqueue::{Fifo, SendQueue};
        ///
        /// static TXQ: SendQueue<Fifo<Vec<u8>>> = SendQueue::new_const(Fifo::new(), 0);
        /// ```
        pub fn new_const(discipline: D, maxlen: usize) -> Self {
            assert!(maxlen != 0, "send queue maxlen is 0");
            assert!(maxlen <= MAX_MAXLEN, "send queue maxlen is above MAX_MAXLEN");
            Self::build(discipline, maxlen)
        }
    }

    crate::sync::const_fn! {
        fn build(discipline: D, maxlen: usize) -> Self {
            Self {
                serializer: TaskSerializer::new(),
                inner: Lock::new(Inner {
                    discipline,
                    len: 0,
                    maxlen,
                    counters: Counters {
                        packets: 0,
                        bytes: 0,
                        mcasts: 0,
                        qdrops: 0,
                        errors: 0,
                    },
                }),
                hints: Hints {
                    len: AtomicUsize::new(0),
                    dequeued: AtomicUsize::new(0),
                    budget: AtomicUsize::new(NO_BUDGET),
                },
                oactive: CachePadded::new(AtomicBool::new(false)),
            }
        }
    }

    /// Takes the queue lock; the guard's methods run under it.
    #[inline]
    pub fn lock(&self) -> Locked<'_, D, R> {
        Locked {
            guard: self.inner.lock(),
            hints: &self.hints,
        }
    }

    /// Takes the queue lock if it is free; never waits.
    #[inline]
    pub fn try_lock(&self) -> Option<Locked<'_, D, R>> {
        Some(Locked {
            guard: self.inner.try_lock()?,
            hints: &self.hints,
        })
    }

    /// Offers `packet` to the discipline (OpenBSD `ifq_enqueue`).
    ///
    /// # Errors
    ///
    /// Whatever was dropped, to be freed by the caller outside the lock: the
    /// packet itself ([`Dropped::Refused`]) or one it evicted
    /// ([`Dropped::Evicted`]).
    #[inline]
    pub fn enqueue(&self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        self.lock().enqueue(packet)
    }

    /// Offers every packet of `packets` under one lock acquisition: what that
    /// many [`enqueue`](SendQueue::enqueue) calls would do, with the room
    /// computed once and the counters updated once. Whatever is dropped
    /// (refused, or evicted by a newer packet) is appended to `dropped` in
    /// the order the one-by-one calls would have returned it, to be freed
    /// after this returns. Returns how many packets were accepted (queued,
    /// possibly evicting another).
    ///
    /// `packets` is iterated with the lock held: give it packets already
    /// built, not work. If `dropped` can fill up (an `ArrayVec`), give it
    /// room for as many packets as you offer.
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_ifqueue::{Dropped, Fifo, SendQueue};
    ///
    /// let q = SendQueue::new(Fifo::new(), 3)?;
    /// let mut dropped = Vec::new();
    /// let burst = (0..5u8).map(|i| vec![i; 60]);
    /// assert_eq!(q.enqueue_burst(burst, &mut dropped), 3);
    /// // Tail drop: the last two were refused, in order.
    /// assert_eq!(dropped, [Dropped::Refused(vec![3; 60]), Dropped::Refused(vec![4; 60])]);
    /// assert_eq!((q.len(), q.counters().packets, q.counters().qdrops), (3, 3, 2));
    /// # Ok::<(), mpsafe_ifqueue::ConfigError>(())
    /// ```
    #[inline]
    pub fn enqueue_burst<I, E>(&self, packets: I, dropped: &mut E) -> usize
    where
        I: IntoIterator<Item = D::Packet>,
        E: Extend<Dropped<D::Packet>>,
    {
        self.lock().enqueue_burst(packets, dropped)
    }

    /// Removes and returns the next packet (OpenBSD `ifq_dequeue`).
    #[inline]
    pub fn dequeue(&self) -> Option<D::Packet> {
        self.lock().dequeue()
    }

    /// Moves up to `max` packets, and at most as many as `out` has room for,
    /// into `out` under one lock acquisition. Returns how many it moved.
    #[inline]
    pub fn dequeue_burst<const N: usize>(
        &self,
        out: &mut ArrayVec<D::Packet, N>,
        max: usize,
    ) -> usize {
        self.lock().dequeue_burst(out, max)
    }

    /// Starts a transactional dequeue (OpenBSD `ifq_deq_begin`): the guard
    /// shows the next packet and holds the lock until it is
    /// [committed](DeqGuard::commit) or dropped (rolled back, the packet stays
    /// at the head). `None` if the queue is empty.
    #[inline]
    pub fn deq_begin(&self) -> Option<DeqGuard<'_, D, R>> {
        self.lock().into_deq_begin()
    }

    /// Removes every packet, counting them in `qdrops` (OpenBSD `ifq_purge`).
    /// The lock is released before this returns; free the packets by
    /// iterating.
    pub fn purge(&self) -> D::Purged {
        self.lock().purge()
    }

    /// Packets queued right now. Reads a hint without the lock: exact when
    /// nobody is changing the queue, otherwise a value it recently had.
    #[inline]
    pub fn len(&self) -> usize {
        self.hints.len.load(Ordering::Relaxed)
    }

    /// Packets dequeued since the queue was made, wrapping: read without the
    /// lock, exact once the dequeuing caller's lock release is ordered before
    /// this read (a start routine reading its own queue's count is).
    #[inline]
    pub(crate) fn dequeued(&self) -> usize {
        self.hints.dequeued.load(Ordering::Relaxed)
    }

    /// Lets the caller's next dequeues take at most `packets` in all (a
    /// bounded owner's start pass: the queue then looks empty to the start
    /// routine), or any number with `None`. Only the owner of the start
    /// serializer sets it, around its own passes.
    #[inline]
    pub(crate) fn set_budget(&self, packets: Option<usize>) {
        // Relaxed: written and read by the owner's thread (dequeues of the
        // start routine it runs); the lock and the serializer order it for
        // the next owner, which sets its own before its first pass.
        self.hints
            .budget
            .store(packets.unwrap_or(NO_BUDGET), Ordering::Relaxed);
    }

    /// What is left of the budget [`set_budget`](SendQueue::set_budget)
    /// set: 0 once the pass took all it was allowed.
    #[inline]
    pub(crate) fn budget_left(&self) -> usize {
        self.hints.budget.load(Ordering::Relaxed)
    }

    /// Whether [`len`](SendQueue::len) is 0.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The configured maximum length.
    pub fn maxlen(&self) -> usize {
        self.lock().maxlen()
    }

    /// A consistent snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.lock().counters()
    }

    /// Counts `n` transmit errors (a driver that failed to map a dequeued
    /// packet and freed it).
    pub fn add_errors(&self, n: u64) {
        self.lock().add_errors(n);
    }

    /// Marks the hardware ring full (OpenBSD `ifq_set_oactive`): the serialized
    /// start skips the start routine until [`clear_oactive`] or a restart.
    ///
    /// Setting `oactive` races with tx completion freeing the ring: completion
    /// may check `oactive` just before it is set and skip its restart, and the
    /// queue stalls. Use [`set_oactive_unless`], which re-checks for room
    /// after setting the flag, paired with
    /// [`IfQueue::restart_if_oactive`](crate::IfQueue::restart_if_oactive) on
    /// the completion side.
    ///
    /// [`clear_oactive`]: SendQueue::clear_oactive
    /// [`set_oactive_unless`]: SendQueue::set_oactive_unless
    #[inline]
    pub fn set_oactive(&self) {
        self.oactive.store(true, Ordering::Relaxed);
    }

    /// Sets `oactive`, then asks `has_room` once more; if the ring has room
    /// after all (tx completion freed slots meanwhile), clears `oactive` again
    /// and returns `false` so the start routine keeps going. Returns `true` if
    /// the queue stays `oactive`.
    ///
    /// This closes the lost-restart race: either completion, which frees slots
    /// and then calls
    /// [`IfQueue::restart_if_oactive`](crate::IfQueue::restart_if_oactive),
    /// sees `oactive` set and restarts, or `has_room` sees the freed slots.
    /// (A sequentially consistent fence on each side orders the flag against
    /// the driver's ring indices, whatever orderings the driver uses for them.)
    #[inline]
    pub fn set_oactive_unless(&self, has_room: impl FnOnce() -> bool) -> bool {
        self.oactive.store(true, Ordering::Relaxed);
        // SeqCst fence: store-buffering pattern (Dekker) with the fence in
        // `restart_if_oactive`. Either our flag store precedes completion's
        // flag load, or completion's slot release precedes our `has_room`.
        fence(Ordering::SeqCst);
        if has_room() {
            self.oactive.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Clears `oactive` (OpenBSD `ifq_clr_oactive`), as a driver does when it
    /// brings the interface up.
    #[inline]
    pub fn clear_oactive(&self) {
        self.oactive.store(false, Ordering::Relaxed);
    }

    /// Whether the hardware ring was marked full.
    #[inline]
    pub fn is_oactive(&self) -> bool {
        self.oactive.load(Ordering::Relaxed)
    }

    /// `fence(SeqCst)` then the `oactive` flag: the completion side of
    /// [`set_oactive_unless`](SendQueue::set_oactive_unless).
    #[inline]
    pub(crate) fn oactive_after_fence(&self) -> bool {
        fence(Ordering::SeqCst);
        self.oactive.load(Ordering::Relaxed)
    }
}

impl<D, R: RawMutex> fmt::Debug for SendQueue<D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendQueue")
            .field("len", &self.hints.len.load(Ordering::Relaxed))
            .field("oactive", &self.oactive.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The queue lock, held: proof for the lock-held entrypoints (OpenBSD code
/// between `mtx_enter(&ifq->ifq_mtx)` and `mtx_leave`).
///
/// Dropping it releases the lock. Free what its methods return *after*
/// dropping it.
pub struct Locked<'a, D, R: RawMutex> {
    guard: Guard<'a, R, Inner<D>>,
    hints: &'a Hints,
}

impl<'a, D: Discipline, R: RawMutex> Locked<'a, D, R> {
    #[inline]
    fn set_len(&mut self, len: usize) {
        self.guard.len = len;
        // Relaxed: a hint. Readers that must see it (the start task's empty
        // check) are ordered after this store by the lock release and the task
        // serializer's acquire/release chain, not by this store.
        self.hints.len.store(len, Ordering::Relaxed);
    }

    /// How many of `max` packets the budget lets this dequeue take.
    #[inline]
    fn allowed(&self, max: usize) -> usize {
        max.min(self.hints.budget.load(Ordering::Relaxed))
    }

    /// Counts `n` packets dequeued, and takes them from the budget.
    #[inline]
    fn count_dequeued(&mut self, n: usize) {
        // Relaxed, and loads and stores rather than read-modify-writes:
        // only the lock holder writes these (the lock orders the writers),
        // and the one reader that needs the exact values is the start
        // routine's own thread (a bounded owner), which wrote them.
        let d = self.hints.dequeued.load(Ordering::Relaxed);
        self.hints
            .dequeued
            .store(d.wrapping_add(n), Ordering::Relaxed);
        let b = self.hints.budget.load(Ordering::Relaxed);
        if b != NO_BUDGET {
            self.hints.budget.store(b - n, Ordering::Relaxed);
        }
    }

    /// [`SendQueue::enqueue`] under the held lock.
    ///
    /// # Errors
    ///
    /// The dropped packet, as for [`SendQueue::enqueue`].
    #[inline]
    pub fn enqueue(&mut self, packet: D::Packet) -> Result<(), Dropped<D::Packet>> {
        let bytes = packet.byte_len() as u64;
        let mcast = packet.is_multicast();
        let inner = &mut *self.guard;
        let outcome = inner.discipline.enqueue(packet, inner.len, inner.maxlen);
        let result = match outcome {
            Enqueue::Queued => {
                let len = inner.len + 1;
                self.set_len(len);
                Ok(())
            }
            Enqueue::Evicted(old) => Err(Dropped::Evicted(old)),
            Enqueue::Refused(new) => {
                self.guard.counters.qdrops += 1;
                return Err(Dropped::Refused(new));
            }
        };
        let c = &mut self.guard.counters;
        c.packets += 1;
        c.bytes += bytes;
        c.mcasts += u64::from(mcast);
        c.qdrops += u64::from(result.is_err());
        debug_assert_eq!(self.guard.len, self.guard.discipline.len());
        result
    }

    /// [`SendQueue::enqueue_burst`] under the held lock.
    #[inline]
    pub fn enqueue_burst<I, E>(&mut self, packets: I, dropped: &mut E) -> usize
    where
        I: IntoIterator<Item = D::Packet>,
        E: Extend<Dropped<D::Packet>>,
    {
        let (mut refused, mut evicted) = (0usize, 0usize);
        let inner = &mut *self.guard;
        let kept = inner.discipline.enqueue_burst(
            packets.into_iter(),
            inner.len,
            inner.maxlen,
            |outcome| {
                let d = match outcome {
                    Enqueue::Refused(p) => {
                        refused += 1;
                        Dropped::Refused(p)
                    }
                    Enqueue::Evicted(p) => {
                        evicted += 1;
                        Dropped::Evicted(p)
                    }
                    Enqueue::Queued => unreachable!("a discipline reports only drops"),
                };
                dropped.extend(core::iter::once(d));
            },
        );
        debug_assert_eq!(kept.evicting, evicted);
        // The counters once for the whole burst.
        let accepted = kept.queued + kept.evicting;
        let c = &mut inner.counters;
        c.packets += accepted as u64;
        c.bytes += kept.bytes;
        c.mcasts += kept.mcasts;
        c.qdrops += (refused + evicted) as u64;
        if kept.queued > 0 {
            let len = inner.len + kept.queued;
            self.set_len(len);
        }
        debug_assert_eq!(self.guard.len, self.guard.discipline.len());
        accepted
    }

    /// [`SendQueue::dequeue`] under the held lock.
    #[inline]
    pub fn dequeue(&mut self) -> Option<D::Packet> {
        if self.allowed(1) == 0 {
            return None;
        }
        let cookie = self.guard.discipline.deq_begin()?;
        Some(self.commit(cookie))
    }

    #[inline]
    fn commit(&mut self, cookie: D::Cookie) -> D::Packet {
        let packet = self.guard.discipline.deq_commit(cookie);
        let len = self.guard.len - 1;
        self.set_len(len);
        self.count_dequeued(1);
        packet
    }

    /// [`SendQueue::dequeue_burst`] under the held lock.
    #[inline]
    pub fn dequeue_burst<const N: usize>(
        &mut self,
        out: &mut ArrayVec<D::Packet, N>,
        max: usize,
    ) -> usize {
        let max = self.allowed(max);
        if max == 0 {
            return 0;
        }
        let n = self.guard.discipline.dequeue_into(out, max);
        if n > 0 {
            let len = self.guard.len - n;
            self.set_len(len);
            self.count_dequeued(n);
        }
        n
    }

    /// [`SendQueue::deq_begin`] with this guard's lock; `None` (and the lock
    /// released) if the queue is empty.
    #[inline]
    pub fn into_deq_begin(self) -> Option<DeqGuard<'a, D, R>> {
        if self.allowed(1) == 0 {
            return None;
        }
        let cookie = self.guard.discipline.deq_begin()?;
        Some(DeqGuard {
            locked: self,
            cookie,
        })
    }

    /// [`SendQueue::purge`] under the held lock: the packets are returned to be
    /// iterated (freed) after the guard is dropped.
    pub fn purge(&mut self) -> D::Purged {
        let n = self.guard.len;
        let purged = self.guard.discipline.purge();
        self.guard.counters.qdrops += n as u64;
        self.set_len(0);
        purged
    }

    /// Packets queued.
    #[inline]
    pub fn len(&self) -> usize {
        self.guard.len
    }

    /// Whether no packet is queued.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.guard.len == 0
    }

    /// The configured maximum length.
    pub fn maxlen(&self) -> usize {
        self.guard.maxlen
    }

    /// Changes the maximum length (OpenBSD `ifq_set_maxlen`). Packets already
    /// queued beyond a smaller limit stay; new ones meet the new limit.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ZeroMaxlen`] or [`ConfigError::MaxlenTooLarge`]; the
    /// limit is then unchanged.
    pub fn set_maxlen(&mut self, maxlen: usize) -> Result<(), ConfigError> {
        check_maxlen(maxlen)?;
        self.guard.maxlen = maxlen;
        Ok(())
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.guard.counters
    }

    /// [`SendQueue::add_errors`] under the held lock.
    pub fn add_errors(&mut self, n: u64) {
        self.guard.counters.errors += n;
    }

    /// The discipline, to inspect its state (OpenBSD `ifq_q_enter`).
    pub fn discipline(&self) -> &D {
        &self.guard.discipline
    }
}

impl<D, R: RawMutex> fmt::Debug for Locked<'_, D, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Locked")
            .field("len", &self.guard.len)
            .field("maxlen", &self.guard.maxlen)
            .finish_non_exhaustive()
    }
}

/// A transactional dequeue in progress: the queue lock is held and the next
/// packet is shown by `Deref`. [`commit`](DeqGuard::commit) removes it;
/// dropping the guard (or [`rollback`](DeqGuard::rollback)) leaves it at the
/// head, order unchanged.
#[must_use = "dropping the guard rolls the dequeue back"]
pub struct DeqGuard<'a, D: Discipline, R: RawMutex> {
    locked: Locked<'a, D, R>,
    cookie: D::Cookie,
}

impl<'a, D: Discipline, R: RawMutex> DeqGuard<'a, D, R> {
    /// Removes the packet (OpenBSD `ifq_deq_commit`) and releases the lock.
    #[inline]
    pub fn commit(self) -> D::Packet {
        self.commit_locked().0
    }

    /// Removes the packet and keeps the lock, for a driver that goes on
    /// dequeueing.
    #[inline]
    pub fn commit_locked(mut self) -> (D::Packet, Locked<'a, D, R>) {
        let packet = self.locked.commit(self.cookie);
        (packet, self.locked)
    }

    /// Leaves the packet at the head (OpenBSD `ifq_deq_rollback`) and releases
    /// the lock. The same as dropping the guard.
    pub fn rollback(self) {}

    /// Leaves the packet at the head and keeps the lock.
    pub fn rollback_locked(self) -> Locked<'a, D, R> {
        self.locked
    }
}

impl<D: Discipline, R: RawMutex> Deref for DeqGuard<'_, D, R> {
    type Target = D::Packet;
    #[inline]
    fn deref(&self) -> &D::Packet {
        self.locked.guard.discipline.peek(self.cookie)
    }
}

impl<D: Discipline, R: RawMutex> fmt::Debug for DeqGuard<'_, D, R>
where
    D::Packet: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DeqGuard").field(&**self).finish()
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::discipline::{Fifo, Priq};
    use crate::packet::Priority;
    use alloc::vec::Vec;

    /// A packet that is an index into a driver's buffer pool.
    #[derive(Debug, PartialEq, Eq)]
    struct Slot {
        index: u32,
        len: u16,
        prio: u8,
        mcast: bool,
    }

    impl Slot {
        fn new(index: u32, prio: u8) -> Self {
            Self {
                index,
                len: 100 + index as u16,
                prio,
                mcast: index % 2 == 1,
            }
        }
    }

    impl Packet for Slot {
        fn byte_len(&self) -> usize {
            self.len.into()
        }
        fn priority(&self) -> Priority {
            Priority::new(self.prio).unwrap()
        }
        fn is_multicast(&self) -> bool {
            self.mcast
        }
    }

    fn ids<'a>(it: impl IntoIterator<Item = Slot> + 'a) -> Vec<u32> {
        it.into_iter().map(|s| s.index).collect()
    }

    #[test]
    fn maxlen_is_checked_at_construction() {
        let zero = SendQueue::new(Fifo::<Slot>::new(), 0).unwrap_err();
        assert_eq!(zero, ConfigError::ZeroMaxlen);
        let big = SendQueue::new(Fifo::<Slot>::new(), MAX_MAXLEN + 1).unwrap_err();
        assert_eq!(
            big,
            ConfigError::MaxlenTooLarge {
                maxlen: MAX_MAXLEN + 1
            }
        );
        assert!(alloc::format!("{big}").contains("above"));
        assert_eq!(
            SendQueue::new(Fifo::<Slot>::new(), MAX_MAXLEN)
                .unwrap()
                .maxlen(),
            MAX_MAXLEN
        );
    }

    #[test]
    fn set_maxlen_checks_and_applies_to_new_packets() {
        let q = SendQueue::new(Fifo::new(), 4).unwrap();
        for i in 0..3 {
            q.enqueue(Slot::new(i, 0)).unwrap();
        }
        let mut l = q.lock();
        assert_eq!(l.set_maxlen(0), Err(ConfigError::ZeroMaxlen));
        assert_eq!(l.maxlen(), 4);
        l.set_maxlen(2).unwrap();
        assert_eq!(
            l.enqueue(Slot::new(9, 0)),
            Err(Dropped::Refused(Slot::new(9, 0)))
        );
        assert_eq!(l.len(), 3);
    }

    #[test]
    fn counters_count_accepted_dropped_purged_and_errors() {
        let q = SendQueue::new(Priq::new(), 2).unwrap();
        q.enqueue(Slot::new(1, 2)).unwrap(); // 101 bytes, mcast
        q.enqueue(Slot::new(2, 2)).unwrap(); // 102 bytes
        // Full, same priority: refused, counted only as a drop.
        let refused = q.enqueue(Slot::new(3, 2)).unwrap_err();
        assert!(!refused.offered_was_queued());
        assert_eq!(refused.into_packet().index, 3);
        // Full, higher priority: queued and counted, the oldest level-2 evicted.
        let evicted = q.enqueue(Slot::new(5, 6)).unwrap_err();
        assert!(evicted.offered_was_queued());
        assert_eq!(evicted, Dropped::Evicted(Slot::new(1, 2)));
        let c = q.counters();
        assert_eq!((c.packets, c.bytes, c.mcasts, c.qdrops), (3, 308, 2, 2));
        assert_eq!(q.len(), 2);
        assert_eq!(ids(q.purge()), [5, 2]);
        q.add_errors(3);
        let c = q.counters();
        assert_eq!((c.packets, c.qdrops, c.errors), (3, 4, 3));
        assert!(q.is_empty() && q.dequeue().is_none());
    }

    #[test]
    fn rollback_keeps_the_head_and_the_order() {
        let q = SendQueue::new(Fifo::new(), 8).unwrap();
        for i in 0..4 {
            q.enqueue(Slot::new(i, 0)).unwrap();
        }
        // Dropping the guard rolls back.
        let g = q.deq_begin().unwrap();
        assert_eq!(g.index, 0);
        drop(g);
        q.deq_begin().unwrap().rollback();
        // Keep the lock across a rollback, then a commit.
        let l = q.deq_begin().unwrap().rollback_locked();
        assert_eq!(l.len(), 4);
        let g = l.into_deq_begin().unwrap();
        let (p, mut l) = g.commit_locked();
        assert_eq!(p.index, 0);
        assert_eq!(l.dequeue().unwrap().index, 1);
        drop(l);
        assert_eq!(q.deq_begin().unwrap().commit().index, 2);
        assert_eq!(q.len(), 1);
        assert_eq!(ids(q.purge()), [3]);
        assert!(q.deq_begin().is_none());
        // Nothing a transaction does is counted as a drop.
        assert_eq!(q.counters().qdrops, 1);
    }

    #[test]
    fn rollback_keeps_priq_order() {
        let q = SendQueue::new(Priq::new(), 8).unwrap();
        for (i, prio) in [(0, 1), (1, 5), (2, 5), (3, 1)] {
            q.enqueue(Slot::new(i, prio)).unwrap();
        }
        let g = q.deq_begin().unwrap();
        assert_eq!((g.index, g.prio), (1, 5));
        g.rollback();
        let mut out = Vec::new();
        while let Some(g) = q.deq_begin() {
            out.push(g.commit().index);
        }
        assert_eq!(out, [1, 2, 0, 3]);
    }

    #[test]
    fn burst_respects_max_capacity_and_order() {
        let q = SendQueue::new(Fifo::new(), 16).unwrap();
        for i in 0..10 {
            q.enqueue(Slot::new(i, 0)).unwrap();
        }
        let mut out = ArrayVec::<Slot, 4>::new();
        assert_eq!(q.dequeue_burst(&mut out, 3), 3);
        assert_eq!(q.dequeue_burst(&mut out, 100), 1); // capacity
        assert_eq!(q.dequeue_burst(&mut out, 100), 0); // full
        assert_eq!(ids(out.drain(..)), [0, 1, 2, 3]);
        assert_eq!(q.len(), 6);
        let mut big = ArrayVec::<Slot, 64>::new();
        assert_eq!(q.dequeue_burst(&mut big, usize::MAX), 6);
        assert_eq!(ids(big), [4, 5, 6, 7, 8, 9]);
        assert!(q.is_empty());
        assert_eq!(q.counters().packets, 10);
    }

    #[test]
    fn oactive_set_clear_and_recheck() {
        let q = SendQueue::new(Fifo::<Slot>::new(), 1).unwrap();
        assert!(!q.is_oactive());
        q.set_oactive();
        assert!(q.is_oactive());
        q.clear_oactive();
        assert!(!q.is_oactive());
        // Room appeared meanwhile: stays clear.
        assert!(!q.set_oactive_unless(|| true));
        assert!(!q.is_oactive());
        // Still full: stays set.
        assert!(q.set_oactive_unless(|| false));
        assert!(q.oactive_after_fence());
    }

    #[test]
    fn locked_entrypoints_share_one_acquisition() {
        let q = SendQueue::new(Priq::new(), 4).unwrap();
        let mut l = q.lock();
        l.enqueue(Slot::new(0, 7)).unwrap();
        l.enqueue(Slot::new(1, 0)).unwrap();
        assert_eq!(l.discipline().level_len(Priority::HIGHEST), 1);
        assert_eq!(l.counters().packets, 2);
        l.add_errors(1);
        assert_eq!(l.dequeue().unwrap().index, 0);
        assert!(!l.is_empty());
        assert_eq!(ids(l.purge()), [1]);
        assert!(alloc::format!("{l:?}").contains("maxlen: 4"));
        drop(l);
        assert!(alloc::format!("{q:?}").contains("len: 0"));
    }

    #[test]
    fn dropped_displays_its_reason() {
        let r: Dropped<u8> = Dropped::Refused(1);
        let e: Dropped<u8> = Dropped::Evicted(2);
        assert!(alloc::format!("{r}").contains("refused"));
        assert!(alloc::format!("{e}").contains("evicted"));
        assert_eq!(e.into_packet(), 2);
    }
}
