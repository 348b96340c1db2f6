//! `IfInputQueue`: the receive side's hand-off to the stack, with back-pressure
//! (OpenBSD `struct ifiqueue`).

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use lock_api::RawMutex;

use crate::DefaultLock;
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
pub struct IfInputQueue<P, R: RawMutex = DefaultLock> {
    inner: Lock<R, InputInner<P>>,
    config: InputConfig,
}

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

impl<P: Packet, R: RawMutex> IfInputQueue<P, R> {
    /// [`IfInputQueue::new`] with the lock `R` named by the caller.
    ///
    /// # Errors
    ///
    /// As [`IfInputQueue::new`].
    pub fn with_lock(config: InputConfig) -> Result<Self, InputConfigError> {
        if config.pressure == 0 {
            return Err(InputConfigError::ZeroPressure);
        }
        if config.pressure > config.drop {
            return Err(InputConfigError::PressureAboveDrop {
                pressure: config.pressure,
                drop: config.drop,
            });
        }
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
        // Outside the lock: the packets are still the caller's.
        let (mut bytes, mut mcasts) = (0u64, 0u64);
        for p in batch.iter() {
            bytes += p.byte_len() as u64;
            mcasts += u64::from(p.is_multicast());
        }
        let n = batch.len() as u64;

        let mut inner = self.lock();
        let c = &mut inner.counters;
        c.packets += n;
        c.bytes += bytes;
        c.mcasts += mcasts;
        let pending = inner.packets.len();
        if pending > self.config.drop {
            inner.counters.qdrops += n;
            return Pressure::Dropped;
        }
        inner.packets.extend(batch.drain(..));
        if pending > self.config.pressure {
            Pressure::High
        } else {
            Pressure::Normal
        }
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

impl<P, R: RawMutex> fmt::Debug for IfInputQueue<P, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IfInputQueue")
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
