//! What the driver refuses, as typed errors.

use alloc::string::String;
use core::fmt;

use super::config::{MAX_DESC, MIN_DESC};
use super::mode::Mode;
use crate::buf::Buffer;

/// An `attach`, `init` or `ioctl` request the driver refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmError {
    /// A ring size outside `MIN_DESC..=MAX_DESC` or not a multiple of 8
    /// (`RDLEN`/`TDLEN` must be a multiple of 128 bytes).
    RingSize {
        /// `"rx"` or `"tx"`.
        ring: &'static str,
        /// The size asked for.
        size: u32,
    },
    /// A configuration field out of its range.
    Field {
        /// The [`EmConfig`](super::EmConfig) field.
        field: &'static str,
        /// The value given.
        value: u64,
        /// What the field accepts.
        accepts: &'static str,
    },
    /// The device refused to enable a ring (it did not accept the ring's
    /// base and length registers).
    DeviceRefused,
    /// The device had no DMA memory for the rings.
    Dma(String),
    /// A lock-held entry point for the big lock called in a mode whose
    /// start routine the big lock does not serialize.
    WrongMode(Mode),
    /// Queue index out of range.
    NoQueue(usize),
    /// A configuration the send queue refused.
    Config(String),
    /// The device has this many queue pairs: none, or more than
    /// [`MAX_QUEUES`](super::MAX_QUEUES).
    Queues(usize),
    /// Called from inside this interface's interrupt handler (from
    /// [`Stack::input`](super::Stack::input)): the request waits for the
    /// interrupt barrier, which would wait for the caller itself. Ask from
    /// another context (a task, the stack's softnet thread).
    InInterrupt,
}

impl fmt::Display for EmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RingSize { ring, size } => write!(
                f,
                "{ring} ring of {size} descriptors: must be a multiple of 8 in {MIN_DESC}..={MAX_DESC}"
            ),
            Self::Field {
                field,
                value,
                accepts,
            } => write!(f, "{field} = {value}: expected {accepts}"),
            Self::DeviceRefused => f.write_str("the device refused the ring setup"),
            Self::Dma(e) => write!(f, "no DMA memory for the rings: {e}"),
            Self::WrongMode(m) => write!(f, "lock-held big-lock entry point called in {m} mode"),
            Self::NoQueue(q) => write!(f, "no queue {q}"),
            Self::Config(e) => write!(f, "send queue configuration: {e}"),
            Self::InInterrupt => f.write_str(
                "called from the interface's own interrupt handler: it would wait for itself",
            ),
            Self::Queues(n) => write!(
                f,
                "the device has {n} queue pairs: the driver handles 1 to {}",
                super::MAX_QUEUES
            ),
        }
    }
}

impl core::error::Error for EmError {}

/// A packet [`Em::transmit`](super::Em::transmit) did not queue; it comes
/// back to be freed. `B` is the driver's buffer
/// ([`BufOf`](super::BufOf)).
#[derive(Debug)]
#[non_exhaustive]
pub enum TxError<B> {
    /// The interface is not running.
    Down(B),
    /// Zero-length frame.
    Empty(B),
    /// Frame longer than `mtu + 14`.
    Oversize {
        /// The frame.
        packet: B,
        /// Largest frame accepted.
        max: usize,
    },
    /// The send queue was full (a counted `qdrop`): the packet dropped.
    QueueFull(B),
    /// No such queue.
    NoQueue(B),
    /// A buffer of another pool (another interface's, when
    /// forwarding): this device cannot reach it, and the driver reclaims
    /// what it posted from its own pool. Copy the frame into a buffer of
    /// this driver's pool.
    ForeignPool(B),
}

impl<B> TxError<B> {
    /// The packet, to free or retry.
    pub fn into_packet(self) -> B {
        match self {
            Self::Down(m)
            | Self::Empty(m)
            | Self::QueueFull(m)
            | Self::NoQueue(m)
            | Self::ForeignPool(m)
            | Self::Oversize { packet: m, .. } => m,
        }
    }
}

impl<B: Buffer> fmt::Display for TxError<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Down(_) => f.write_str("interface is down"),
            Self::Empty(_) => f.write_str("zero-length frame"),
            Self::Oversize { packet, max } => {
                write!(
                    f,
                    "frame of {} bytes exceeds the {max}-byte maximum",
                    packet.len()
                )
            }
            Self::QueueFull(_) => f.write_str("send queue full: packet dropped"),
            Self::NoQueue(_) => f.write_str("no such transmit queue"),
            Self::ForeignPool(_) => {
                f.write_str("buffer of another pool: copy it into one of this driver's")
            }
        }
    }
}

impl<B: Buffer + fmt::Debug> core::error::Error for TxError<B> {}
