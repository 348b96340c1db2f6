//! What the queues need to know about a packet.

use core::fmt;

/// A packet's transmit priority, `0` (lowest) to `7` (highest): the 802.1p
/// levels OpenBSD's `priq` schedules.
///
/// A value outside the range cannot be built, so a queue never has to clamp or
/// reject one: the error surfaces where the number enters, in
/// [`Priority::new`].
///
/// [`Priority::default()`] is [`Priority::DEFAULT`] (3, OpenBSD's
/// `IFQ_DEFPRIO`), not the lowest level.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Priority(u8);

impl Default for Priority {
    /// [`Priority::DEFAULT`]: 3, OpenBSD's `IFQ_DEFPRIO`.
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Priority {
    /// How many priority levels there are.
    pub const LEVELS: usize = 8;
    /// Priority 0, dequeued last and evicted first.
    pub const LOWEST: Self = Self(0);
    /// Priority 3, what a packet gets when nobody chose (OpenBSD `IFQ_DEFPRIO`).
    pub const DEFAULT: Self = Self(3);
    /// Priority 7, dequeued first and never evicted.
    pub const HIGHEST: Self = Self(7);

    /// Priority `level`, or an error if `level > 7`.
    pub const fn new(level: u8) -> Result<Self, PriorityError> {
        if (level as usize) < Self::LEVELS {
            Ok(Self(level))
        } else {
            Err(PriorityError { level })
        }
    }

    /// The level, `0..=7`.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The level as an index into a per-priority array.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Priority({})", self.0)
    }
}

impl TryFrom<u8> for Priority {
    type Error = PriorityError;
    fn try_from(level: u8) -> Result<Self, PriorityError> {
        Self::new(level)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

/// A priority level above 7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PriorityError {
    /// The level that was asked for.
    pub level: u8,
}

impl fmt::Display for PriorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "priority {} out of range 0..=7", self.level)
    }
}

impl core::error::Error for PriorityError {}

/// What a send or input queue reads from a packet: its length for the byte
/// counters, its priority for [`Priq`](crate::Priq), whether it is multicast
/// for the multicast counter, and an optional flow hash to pick one of
/// several send queues ([`IfQueues`](crate::IfQueues)).
///
/// Implement it for whatever the stack passes around: an mbuf-like handle, a
/// boxed buffer, or an index into a buffer pool (the queue never looks inside
/// the packet, so a `u32` index plus a few header bits is enough).
///
/// # Examples
///
/// A packet that is an index into a driver's buffer pool, with the length and
/// priority copied into the handle so the queue never touches the pool:
///
/// ```
/// use mpsafe_ifqueue::{Packet, Priority};
///
/// #[derive(Debug)]
/// struct PoolPacket {
///     slot: u32,
///     len: u16,
///     prio: Priority,
/// }
///
/// impl Packet for PoolPacket {
///     fn byte_len(&self) -> usize {
///         usize::from(self.len)
///     }
///     fn priority(&self) -> Priority {
///         self.prio
///     }
/// }
///
/// let p = PoolPacket { slot: 7, len: 60, prio: Priority::HIGHEST };
/// assert_eq!((p.byte_len(), p.priority().get(), p.is_multicast()), (60, 7, false));
/// # let _ = p.slot;
/// ```
pub trait Packet {
    /// Length in bytes, as counted in the `bytes` counters.
    fn byte_len(&self) -> usize;

    /// Transmit priority. Defaults to [`Priority::DEFAULT`].
    fn priority(&self) -> Priority {
        Priority::DEFAULT
    }

    /// Whether the packet is multicast, for the `mcasts` counters. Defaults
    /// to `false`.
    fn is_multicast(&self) -> bool {
        false
    }

    /// A hash of the packet's flow, if the stack computed one (OpenBSD
    /// `M_FLOWID`); [`IfQueues`](crate::IfQueues) uses it to keep a flow on
    /// one queue. Defaults to `None` (queue 0).
    fn flow_hash(&self) -> Option<u32> {
        None
    }
}

impl<P: Packet + ?Sized> Packet for &P {
    fn byte_len(&self) -> usize {
        (**self).byte_len()
    }
    fn priority(&self) -> Priority {
        (**self).priority()
    }
    fn is_multicast(&self) -> bool {
        (**self).is_multicast()
    }
    fn flow_hash(&self) -> Option<u32> {
        (**self).flow_hash()
    }
}

/// Whether an Ethernet frame's destination is a multicast group: the group
/// bit of the first octet set, and not the all-ones broadcast address (which
/// OpenBSD counts apart, as `M_BCAST`).
#[cfg(feature = "alloc")]
fn ethernet_multicast(frame: &[u8]) -> bool {
    match frame.get(..6) {
        Some(dst) => dst[0] & 1 == 1 && dst != [0xff; 6],
        None => false,
    }
}

/// An Ethernet frame: its length, the default priority, multicast when the
/// destination address is a multicast group.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
impl Packet for alloc::boxed::Box<[u8]> {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn is_multicast(&self) -> bool {
        ethernet_multicast(self)
    }
}

/// An Ethernet frame: its length, the default priority, multicast when the
/// destination address is a multicast group.
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
impl Packet for alloc::vec::Vec<u8> {
    fn byte_len(&self) -> usize {
        self.len()
    }
    fn is_multicast(&self) -> bool {
        ethernet_multicast(self)
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;

    #[test]
    fn priority_range() {
        assert_eq!(Priority::new(7), Ok(Priority::HIGHEST));
        assert_eq!(Priority::try_from(0), Ok(Priority::LOWEST));
        let err = Priority::new(8).unwrap_err();
        assert_eq!(err.level, 8);
        assert!(alloc::format!("{err}").contains("out of range"));
        assert_eq!(u8::from(Priority::DEFAULT), 3);
    }

    #[test]
    fn priority_default_is_ifq_defprio() {
        // OpenBSD's IFQ_DEFPRIO is 3, and so is what `Packet::priority`
        // reports when a packet does not choose: `Default` must agree.
        assert_eq!(Priority::default(), Priority::DEFAULT);
        assert_eq!(u8::from(Priority::default()), 3);
    }

    #[test]
    fn byte_buffers_are_ethernet_frames() {
        let mcast: Box<[u8]> = vec![0x01, 0, 0x5e, 0, 0, 1, 9, 9].into();
        let bcast = vec![0xffu8; 14];
        let ucast = vec![0x02u8, 0, 0, 0, 0, 1, 0, 0];
        let runt = vec![0x01u8];
        assert!(mcast.is_multicast() && Packet::is_multicast(&&mcast));
        assert!(!bcast.is_multicast() && !ucast.is_multicast() && !runt.is_multicast());
        assert_eq!(mcast.byte_len(), 8);
        assert_eq!(bcast.priority(), Priority::DEFAULT);
        assert_eq!(bcast.flow_hash(), None);
    }
}
