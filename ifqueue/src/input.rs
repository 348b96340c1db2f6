//! `IfInputQueue`: the receive side's hand-off to the stack, with back-pressure
//! (OpenBSD `struct ifiqueue`), and `ArrayInputQueue`, the same in `N`
//! inline slots.

#[cfg(feature = "alloc")]
use alloc::collections::VecDeque;
#[cfg(feature = "alloc")]
use alloc::vec::Vec;
use core::fmt;

use arrayvec::ArrayVec;
use lock_api::RawMutex;

use crate::DefaultLock;
use crate::fixed::{ArrayFifoPurged, Ring};
use crate::packet::Packet;
use crate::sync::{Guard, Lock};

/// Where an [`IfInputQueue`] starts pushing back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputConfig {
    /// With more than this many packets pending, [`IfInputQueue::input`]
    /// still queues the batch but reports [`Pressure::High`]. OpenBSD:
    /// `ifiq_maxlen_return`, 6144.
    pub pressure: usize,
    /// With more than this many packets pending, a batch is dropped whole
    /// ([`Pressure::Dropped`]). OpenBSD: `ifiq_maxlen_drop`, 10240.
    pub drop: usize,
}

impl Default for InputConfig {
    fn default() -> Self {
        Self {
            pressure: 2048 * 3,
            drop: 2048 * 5,
        }
    }
}

impl InputConfig {
    /// Pressure above `pressure` pending packets, drops above `drop`.
    pub const fn new(pressure: usize, drop: usize) -> Self {
        Self { pressure, drop }
    }

    /// The marks both input queues refuse.
    const fn check(self) -> Result<Self, InputConfigError> {
        if self.pressure == 0 {
            return Err(InputConfigError::ZeroPressure);
        }
        if self.pressure > self.drop {
            return Err(InputConfigError::PressureAboveDrop {
                pressure: self.pressure,
                drop: self.drop,
            });
        }
        Ok(self)
    }
}

/// An [`InputConfig`] that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputConfigError {
    /// `pressure` is 0: every batch would report pressure.
    ZeroPressure,
    /// `pressure > drop`: batches would be dropped before any pressure was
    /// reported.
    PressureAboveDrop {
        /// The pressure mark asked for.
        pressure: usize,
        /// The drop mark asked for.
        drop: usize,
    },
}

impl fmt::Display for InputConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ZeroPressure => f.write_str("input queue pressure mark is 0"),
            Self::PressureAboveDrop { pressure, drop } => write!(
                f,
                "input queue pressure mark {pressure} is above its drop mark {drop}"
            ),
        }
    }
}

impl core::error::Error for InputConfigError {}

/// How far behind the stack is, as seen by [`IfInputQueue::input`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "on pressure the driver should stop growing its rx ring"]
#[non_exhaustive]
pub enum Pressure {
    /// The batch was queued; the stack keeps up.
    Normal,
    /// The batch was queued, but the stack is falling behind: the driver
    /// should call `RxRing::livelocked()` so its ring stops growing.
    High,
    /// The stack is too far behind: the batch was not queued and is still in
    /// the caller's vector, counted in `qdrops`, to be freed by the caller.
    Dropped,
}

impl Pressure {
    /// Whether the driver should back off (anything but [`Pressure::Normal`]).
    pub fn is_high(self) -> bool {
        self != Self::Normal
    }
}

/// The counters of an input queue, as one consistent snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InputCounters {
    /// Packets handed to [`IfInputQueue::input`], queued or dropped.
    pub packets: u64,
    /// Bytes of those packets.
    pub bytes: u64,
    /// Multicast packets among them.
    pub mcasts: u64,
    /// Packets dropped because the stack was too far behind.
    pub qdrops: u64,
}

/// The rule both input queues apply to a non-empty batch, under their lock:
/// count every packet, then judge on what was `pending` before it. `fits`
/// is whether the batch fits in the free storage (always, with `alloc`).
/// On anything but [`Pressure::Dropped`] the caller then queues the batch.
fn admit(
    counters: &mut InputCounters,
    config: InputConfig,
    (n, bytes, mcasts): (u64, u64, u64),
    pending: usize,
    fits: bool,
) -> Pressure {
    counters.packets += n;
    counters.bytes += bytes;
    counters.mcasts += mcasts;
    if pending > config.drop || !fits {
        counters.qdrops += n;
        return Pressure::Dropped;
    }
    if pending > config.pressure {
        Pressure::High
    } else {
        Pressure::Normal
    }
}

/// A batch's packet, byte and multicast counts, taken outside the lock
/// (the packets are still the caller's).
fn tally<P: Packet>(batch: &[P]) -> (u64, u64, u64) {
    let (mut bytes, mut mcasts) = (0u64, 0u64);
    for p in batch {
        bytes += p.byte_len() as u64;
        mcasts += u64::from(p.is_multicast());
    }
    (batch.len() as u64, bytes, mcasts)
}

#[cfg(feature = "alloc")]
struct InputInner<P> {
    packets: VecDeque<P>,
    counters: InputCounters,
}

/// A receive ring's input queue: the driver hands the stack batches of
/// packets, the stack takes everything pending in one go, and when the stack
/// falls behind the driver is told to back off (OpenBSD `ifiq_input`).
///
/// Needs the `alloc` feature (the pending packets are a `VecDeque`).
///
/// Without a heap, use [`ArrayInputQueue`].
///
/// # Examples
///
/// ```
/// use std::collections::VecDeque;
/// use mpsafe_ifqueue::{IfInputQueue, InputConfig, Pressure};
///
/// // Back-pressure above 2 pending packets, drops above 3.
/// let ifiq = IfInputQueue::new(InputConfig::new(2, 3))?;
/// let mut batch = vec![vec![0u8; 60]; 3];
/// assert_eq!(ifiq.input(&mut batch), Pressure::Normal); // 0 were pending
/// assert!(batch.is_empty()); // taken; the Vec keeps its capacity
///
/// batch.push(vec![0u8; 60]);
/// assert_eq!(ifiq.input(&mut batch), Pressure::High); // 3 > 2 were pending
///
/// batch.push(vec![0u8; 60]);
/// assert_eq!(ifiq.input(&mut batch), Pressure::Dropped); // 4 > 3 were pending
/// assert_eq!(batch.len(), 1); // still ours to free
/// assert_eq!(ifiq.counters().qdrops, 1);
///
/// // The stack's softnet task takes everything pending.
/// let mut pending = VecDeque::new();
/// ifiq.take_into(&mut pending);
/// assert_eq!(pending.len(), 4);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg(feature = "alloc")]
pub struct IfInputQueue<P, R: RawMutex = DefaultLock> {
    inner: Lock<R, InputInner<P>>,
    config: InputConfig,
}

#[cfg(feature = "alloc")]
impl<P: Packet> IfInputQueue<P> {
    /// An empty input queue with the default lock.
    ///
    /// # Errors
    ///
    /// An [`InputConfigError`] if the marks are zero or out of order.
    pub fn new(config: InputConfig) -> Result<Self, InputConfigError> {
        Self::with_lock(config)
    }
}

#[cfg(feature = "alloc")]
impl<P: Packet, R: RawMutex> IfInputQueue<P, R> {
    /// [`IfInputQueue::new`] with the lock `R` named by the caller.
    ///
    /// # Errors
    ///
    /// As [`IfInputQueue::new`].
    pub fn with_lock(config: InputConfig) -> Result<Self, InputConfigError> {
        let config = config.check()?;
        Ok(Self {
            inner: Lock::new(InputInner {
                packets: VecDeque::new(),
                counters: InputCounters::default(),
            }),
            config,
        })
    }

    #[inline]
    fn lock(&self) -> Guard<'_, R, InputInner<P>> {
        self.inner.lock()
    }

    /// Hands a batch to the stack. Every packet is counted; the pressure is
    /// judged on what was pending *before* the batch (OpenBSD's rule), so a
    /// stack that keeps up never sees a batch dropped.
    ///
    /// On [`Pressure::Normal`] and [`Pressure::High`] the batch is moved out
    /// of `batch` (which keeps its capacity for the next one). On
    /// [`Pressure::Dropped`] `batch` is left as it was: free its packets
    /// outside any lock. Schedule the stack's processing after a queued batch.
    pub fn input(&self, batch: &mut Vec<P>) -> Pressure {
        if batch.is_empty() {
            return Pressure::Normal;
        }
        let tally = tally(batch);
        let mut inner = self.lock();
        let pending = inner.packets.len();
        let pressure = admit(&mut inner.counters, self.config, tally, pending, true);
        if pressure != Pressure::Dropped {
            inner.packets.extend(batch.drain(..));
        }
        pressure
    }

    /// Moves every pending packet to the back of `out`, in arrival order (the
    /// stack's `ifiq_process`). When `out` is empty this is a swap under the
    /// lock, and `out`'s old allocation becomes the queue's.
    pub fn take_into(&self, out: &mut VecDeque<P>) {
        let mut inner = self.lock();
        if out.is_empty() {
            core::mem::swap(&mut inner.packets, out);
        } else {
            out.append(&mut inner.packets);
        }
    }

    /// Removes every pending packet without counting a drop (teardown,
    /// OpenBSD `ifiq_destroy`); free them outside the lock.
    pub fn purge(&self) -> VecDeque<P> {
        core::mem::take(&mut self.lock().packets)
    }

    /// Packets pending.
    pub fn len(&self) -> usize {
        self.lock().packets.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A consistent snapshot of the counters.
    pub fn counters(&self) -> InputCounters {
        self.lock().counters
    }

    /// The configuration.
    pub fn config(&self) -> InputConfig {
        self.config
    }
}

#[cfg(feature = "alloc")]
impl<P, R: RawMutex> fmt::Debug for IfInputQueue<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfInputQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

struct ArrayInputInner<P, const N: usize> {
    packets: Ring<P, N>,
    counters: InputCounters,
}

/// [`IfInputQueue`] in `N` inline slots: no allocation, a `const`
/// constructor, batches in [`ArrayVec`]s.
///
/// The pressure rule is [`IfInputQueue`]'s, judged on what was pending
/// before the batch, and every packet is counted. The one difference is
/// room: a batch that does not fit in the free slots is dropped whole, as
/// above the drop mark ([`Pressure::Dropped`], counted in `qdrops`, left in
/// the caller's vector). With `N >= drop + the largest batch` that never
/// happens and the two queues behave identically.
///
/// # Examples
///
/// ```
/// use arrayvec::ArrayVec;
/// use mpsafe_ifqueue::{ArrayInputQueue, InputConfig, Packet, Pressure};
///
/// #[derive(Debug)]
/// struct Slot(u16); // an index into the driver's buffer pool
/// impl Packet for Slot {
///     fn byte_len(&self) -> usize { 64 }
/// }
///
/// // Pressure above 2 pending, drops above 3; 3 + a 4-packet batch fit in 8.
/// static RXQ: ArrayInputQueue<Slot, 8> = ArrayInputQueue::new_const(InputConfig::new(2, 3));
///
/// let mut batch: ArrayVec<Slot, 4> = (0..3).map(Slot).collect();
/// assert_eq!(RXQ.input(&mut batch), Pressure::Normal); // 0 were pending
/// batch.push(Slot(3));
/// assert_eq!(RXQ.input(&mut batch), Pressure::High); // 3 > 2 were pending
/// batch.push(Slot(4));
/// assert_eq!(RXQ.input(&mut batch), Pressure::Dropped); // 4 > 3 were pending
/// assert_eq!(batch.len(), 1); // still ours to free
///
/// // The stack takes up to what its vector holds, oldest first.
/// let mut pending = ArrayVec::<Slot, 8>::new();
/// assert_eq!(RXQ.take_into(&mut pending), 4);
/// assert_eq!(pending[3].0, 3);
/// ```
///
/// Bad marks in a `static` do not compile:
///
/// ```compile_fail,E0080
/// use mpsafe_ifqueue::{ArrayInputQueue, InputConfig, Packet};
///
/// struct Slot(u16);
/// impl Packet for Slot {
///     fn byte_len(&self) -> usize { 64 }
/// }
///
/// static RXQ: ArrayInputQueue<Slot, 8> = ArrayInputQueue::new_const(InputConfig::new(0, 3));
/// ```
pub struct ArrayInputQueue<P, const N: usize, R: RawMutex = DefaultLock> {
    inner: Lock<R, ArrayInputInner<P, N>>,
    config: InputConfig,
}

impl<P: Packet, const N: usize> ArrayInputQueue<P, N> {
    /// An empty input queue with the default lock.
    ///
    /// # Errors
    ///
    /// An [`InputConfigError`] if the marks are zero or out of order.
    ///
    /// # Panics
    ///
    /// At compile time if `N == 0`.
    pub fn new(config: InputConfig) -> Result<Self, InputConfigError> {
        Self::with_lock(config)
    }
}

impl<P: Packet, const N: usize, R: RawMutex> ArrayInputQueue<P, N, R> {
    /// [`ArrayInputQueue::new`] with the lock `R` named by the caller.
    ///
    /// # Errors
    ///
    /// As [`ArrayInputQueue::new`].
    pub fn with_lock(config: InputConfig) -> Result<Self, InputConfigError> {
        Ok(Self::build(config.check()?))
    }

    crate::sync::const_fn! {
        /// [`ArrayInputQueue::with_lock`] as a `const fn`, for a `static`
        /// queue; the lock is the one the `static`'s type names.
        ///
        /// # Panics
        ///
        /// If the marks are zero or out of order, or `N == 0`; in a `const`
        /// or `static` initializer that is a compile error.
        pub fn new_const(config: InputConfig) -> Self {
            match config.check() {
                Ok(config) => Self::build(config),
                Err(InputConfigError::ZeroPressure) => panic!("input queue pressure mark is 0"),
                Err(_) => panic!("input queue pressure mark is above its drop mark"),
            }
        }
    }

    crate::sync::const_fn! {
        fn build(config: InputConfig) -> Self {
            const { assert!(N > 0, "an ArrayInputQueue needs at least one slot") };
            Self {
                inner: Lock::new(ArrayInputInner {
                    packets: Ring::new(),
                    counters: InputCounters {
                        packets: 0,
                        bytes: 0,
                        mcasts: 0,
                        qdrops: 0,
                    },
                }),
                config,
            }
        }
    }

    #[inline]
    fn lock(&self) -> Guard<'_, R, ArrayInputInner<P, N>> {
        self.inner.lock()
    }

    /// Hands a batch to the stack, as [`IfInputQueue::input`]: on
    /// [`Pressure::Normal`] and [`Pressure::High`] the batch is moved out of
    /// `batch`; on [`Pressure::Dropped`] (above the drop mark, or no room
    /// for the whole batch) it is left there for the caller to free.
    pub fn input<const B: usize>(&self, batch: &mut ArrayVec<P, B>) -> Pressure {
        if batch.is_empty() {
            return Pressure::Normal;
        }
        let tally = tally(batch);
        let mut inner = self.lock();
        let pending = inner.packets.len;
        let fits = batch.len() <= N - pending;
        let pressure = admit(&mut inner.counters, self.config, tally, pending, fits);
        if pressure != Pressure::Dropped {
            for p in batch.drain(..) {
                inner.packets.push_back(p);
            }
        }
        pressure
    }

    /// Moves the oldest pending packets to the back of `out` until it is
    /// full or nothing is pending, in arrival order (the stack's
    /// `ifiq_process`, bounded by `out`); returns how many moved. With
    /// `M >= N` it takes everything, as [`IfInputQueue::take_into`].
    pub fn take_into<const M: usize>(&self, out: &mut ArrayVec<P, M>) -> usize {
        let mut inner = self.lock();
        let n = inner.packets.len.min(out.remaining_capacity());
        for _ in 0..n {
            let p = inner.packets.pop_front().expect("counted as pending");
            out.push(p);
        }
        n
    }

    /// Removes every pending packet without counting a drop (teardown,
    /// OpenBSD `ifiq_destroy`); free them outside the lock.
    pub fn purge(&self) -> ArrayFifoPurged<P, N> {
        ArrayFifoPurged {
            ring: core::mem::replace(&mut self.lock().packets, Ring::new()),
        }
    }

    /// Packets pending.
    pub fn len(&self) -> usize {
        self.lock().packets.len
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many packets it can hold: `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    /// A consistent snapshot of the counters.
    pub fn counters(&self) -> InputCounters {
        self.lock().counters
    }

    /// The configuration.
    pub fn config(&self) -> InputConfig {
        self.config
    }
}

impl<P, const N: usize, R: RawMutex> fmt::Debug for ArrayInputQueue<P, N, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArrayInputQueue")
            .field("capacity", &N)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn config_is_checked() {
        let e = |p, d| IfInputQueue::<Vec<u8>>::new(InputConfig::new(p, d)).unwrap_err();
        assert_eq!(e(0, 5), InputConfigError::ZeroPressure);
        assert_eq!(
            e(6, 5),
            InputConfigError::PressureAboveDrop {
                pressure: 6,
                drop: 5
            }
        );
        assert!(std::format!("{}", e(6, 5)).contains("above"));
        let q = IfInputQueue::<Vec<u8>>::new(InputConfig::default()).unwrap();
        assert_eq!(q.config(), InputConfig::new(6144, 10240));
    }

    #[test]
    fn every_packet_is_counted_and_dropped_batches_stay_with_the_caller() {
        let q = IfInputQueue::new(InputConfig::new(1, 2)).unwrap();
        let mcast = vec![0x01u8, 0, 0x5e, 0, 0, 1];
        let mut batch = vec![mcast.clone(), vec![0u8; 10]];
        assert_eq!(q.input(&mut Vec::new()), Pressure::Normal);
        assert_eq!(q.input(&mut batch), Pressure::Normal);
        assert!(batch.is_empty());
        batch.push(vec![0u8; 4]);
        let p = q.input(&mut batch);
        assert!(p.is_high() && p == Pressure::High);
        batch.extend([vec![0u8; 1], vec![0u8; 1]]);
        assert_eq!(q.input(&mut batch), Pressure::Dropped);
        assert_eq!(batch.len(), 2);
        let c = q.counters();
        assert_eq!((c.packets, c.bytes, c.mcasts, c.qdrops), (5, 22, 1, 2));
        assert_eq!(q.len(), 3);
        // The stack catches up: take everything, in order, appending.
        let mut out = VecDeque::from([vec![9u8]]);
        q.take_into(&mut out);
        assert_eq!(out.len(), 4);
        assert_eq!(out[1], mcast);
        assert!(q.is_empty());
        assert_eq!(q.input(&mut batch), Pressure::Normal);
        assert_eq!(q.purge().len(), 2);
        assert_eq!(q.counters().qdrops, 2);
        assert!(std::format!("{q:?}").contains("IfInputQueue"));
    }
}
