//! The one error type of the crate.

use core::fmt;

/// Why an [`RxRing`](crate::RxRing) operation was refused.
///
/// Every refused call leaves the ring exactly as it was: no slot is lost, no
/// watermark is clamped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RxRingError {
    /// `init(lwm, hwm)` with the low watermark above the high one (this
    /// includes `hwm == 0` with `lwm != 0`).
    LowAboveHigh {
        /// The low watermark asked for.
        lwm: u32,
        /// The high watermark asked for.
        hwm: u32,
    },
    /// `init(0, hwm)` with `hwm > 0`: a ring whose current watermark starts at
    /// zero can never grow (it grows only while fewer than `lwm` slots are in
    /// use), so it would never be given a slot. `init(0, 0)` is the teardown
    /// form.
    ZeroLow {
        /// The high watermark asked for.
        hwm: u32,
    },
    /// `put(n)` with more slots than are in use. In C this would wrap the
    /// counter around; here nothing changes.
    OverRelease {
        /// Slots the caller tried to release.
        released: u32,
        /// Slots actually in use.
        inuse: u32,
    },
    /// [`Fill::commit`](crate::Fill::commit) of more slots than the
    /// reservation has left.
    OverCommit {
        /// Slots the caller tried to commit.
        committed: u32,
        /// Slots left in the reservation.
        left: u32,
    },
    /// A ring name longer than [`RxRingName::MAX_LEN`](crate::RxRingName::MAX_LEN)
    /// bytes (the kernel's `IFNAMSIZ` buffer).
    NameTooLong {
        /// Length of the name in bytes.
        len: usize,
    },
}

impl fmt::Display for RxRingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LowAboveHigh { lwm, hwm } => {
                write!(
                    f,
                    "rx ring low watermark {lwm} is above high watermark {hwm}"
                )
            }
            Self::ZeroLow { hwm } => write!(
                f,
                "rx ring low watermark 0 with high watermark {hwm} would never be \
                 refilled (init(0, 0) is the teardown form)"
            ),
            Self::OverRelease { released, inuse } => write!(
                f,
                "rx ring release of {released} slots but only {inuse} in use"
            ),
            Self::OverCommit { committed, left } => write!(
                f,
                "rx ring fill commit of {committed} slots but only {left} reserved"
            ),
            Self::NameTooLong { len } => write!(
                f,
                "rx ring name of {len} bytes is longer than {} bytes",
                crate::RxRingName::MAX_LEN
            ),
        }
    }
}

impl core::error::Error for RxRingError {}
