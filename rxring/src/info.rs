//! Statistics snapshots (`struct if_rxring_info`) and their `systat mbuf`
//! style table.

use core::fmt;

use crate::RxRingError;

/// The name of a ring in statistics: at most [`MAX_LEN`](Self::MAX_LEN)
/// (15) bytes, stored inline (the kernel's `char rxr_name[IFNAMSIZ]`, whose
/// 16 bytes include the NUL terminator), so an
/// [`RxRingInfo`] is `Copy` and needs no allocation.
///
/// Validated once, when the driver attaches, so taking a snapshot never fails.
///
/// ```
/// use mpsafe_rxring::RxRingName;
///
/// let name = RxRingName::new("em0").unwrap();
/// assert_eq!(name.as_str(), "em0");
/// assert!(RxRingName::new("a-name-longer-than-ifnamsiz").is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RxRingName {
    bytes: [u8; RxRingName::MAX_LEN],
    len: u8,
}

impl RxRingName {
    /// The longest name in bytes: `IFNAMSIZ - 1`, since the kernel's 16-byte
    /// `IFNAMSIZ` counts the NUL terminator.
    pub const MAX_LEN: usize = 15;

    /// The empty name.
    pub const EMPTY: Self = Self {
        bytes: [0; Self::MAX_LEN],
        len: 0,
    };

    /// A name, if it fits.
    ///
    /// # Errors
    ///
    /// [`RxRingError::NameTooLong`] if `name` is longer than
    /// [`MAX_LEN`](Self::MAX_LEN) bytes (never truncated).
    pub const fn new(name: &str) -> Result<Self, RxRingError> {
        let src = name.as_bytes();
        if src.len() > Self::MAX_LEN {
            return Err(RxRingError::NameTooLong { len: src.len() });
        }
        let mut bytes = [0; Self::MAX_LEN];
        let mut i = 0;
        while i < src.len() {
            bytes[i] = src[i];
            i += 1;
        }
        Ok(Self {
            bytes,
            // Fits: checked against MAX_LEN (15) above.
            len: src.len() as u8,
        })
    }

    /// The name.
    ///
    /// # Panics
    ///
    /// Never: the bytes are a whole `&str` copied by [`new`](Self::new).
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..usize::from(self.len)])
            .expect("RxRingName holds a whole &str")
    }
}

impl TryFrom<&str> for RxRingName {
    type Error = RxRingError;

    fn try_from(name: &str) -> Result<Self, RxRingError> {
        Self::new(name)
    }
}

impl Default for RxRingName {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl fmt::Debug for RxRingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RxRingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` so width and alignment flags apply.
        f.pad(self.as_str())
    }
}

/// A snapshot of one ring for statistics (`struct if_rxring_info`): plain
/// `Copy` data, taken under the ring's lock with [`RxRing::info`] and
/// printed after it is released.
///
/// [`RxRing::info`]: crate::RxRing::info
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RxRingInfo {
    /// Name of the ring (the interface, or e.g. `"rx0"` for one of several).
    pub name: RxRingName,
    /// Size in bytes of the buffers posted to the ring (e.g. 2048).
    pub size: u32,
    /// Tick of the last watermark adjustment.
    pub adjusted: u64,
    /// Slots in use (buffers on the ring).
    pub alive: u32,
    /// Current watermark.
    pub cwm: u32,
    /// Low watermark.
    pub lwm: u32,
    /// High watermark.
    pub hwm: u32,
}

/// A set of [`RxRingInfo`] displayed as a `systat mbuf` style table, one row
/// per ring; buffer sizes that are whole KiB print as `2k`.
///
/// ```
/// use mpsafe_rxring::{RxRing, RxRingInfoTable, RxRingName};
///
/// let mut ring = RxRing::new(4, 1024, 0).unwrap();
/// ring.get(1024, 0);
/// let rows = [ring.info(RxRingName::new("em0").unwrap(), 2048)];
/// assert_eq!(
///     RxRingInfoTable(&rows).to_string(),
///     "\
/// NAME              SIZE  ALIVE    LWM    HWM    CWM
/// em0                 2k      4      4   1024      4
/// "
/// );
/// ```
#[derive(Clone, Copy, Debug)]
pub struct RxRingInfoTable<'a>(pub &'a [RxRingInfo]);

/// Formats a buffer size like `systat`: whole KiB as `2k`, else bytes.
struct Size(u32);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Format into a small stack buffer first, so the width applies to the
        // whole `2k` and not just to `2`.
        let mut buf = [0u8; 12];
        let mut w = StackWriter {
            buf: &mut buf,
            len: 0,
        };
        if self.0 != 0 && self.0 % 1024 == 0 {
            fmt::write(&mut w, format_args!("{}k", self.0 / 1024))?;
        } else {
            fmt::write(&mut w, format_args!("{}", self.0))?;
        }
        let len = w.len;
        let s = core::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?;
        f.pad(s)
    }
}

/// A `fmt::Write` into a fixed buffer (no allocation in no_std).
struct StackWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl fmt::Write for StackWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        self.buf
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl fmt::Display for RxRingInfoTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>5} {:>6} {:>6} {:>6} {:>6}",
            "NAME", "SIZE", "ALIVE", "LWM", "HWM", "CWM"
        )?;
        for i in self.0 {
            writeln!(
                f,
                "{:<16} {:>5} {:>6} {:>6} {:>6} {:>6}",
                i.name,
                Size(i.size),
                i.alive,
                i.lwm,
                i.hwm,
                i.cwm
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate alloc;
    use alloc::string::ToString;

    use super::*;

    #[test]
    fn names_fit_ifnamsiz_with_its_terminator() {
        // IFNAMSIZ is 16 bytes including the NUL, so a BSD interface name
        // has at most 15 characters.
        assert_eq!(RxRingName::MAX_LEN, 15);
        assert!(RxRingName::new("abcdefghijklmno").is_ok());
        assert_eq!(
            RxRingName::new("abcdefghijklmnop"),
            Err(RxRingError::NameTooLong { len: 16 })
        );
    }
    use crate::RxRing;

    static_assertions::assert_impl_all!(RxRingInfo: Copy, Send, Sync);
    static_assertions::assert_impl_all!(RxRingName: Copy, Send, Sync);

    #[test]
    fn name_round_trips_and_refuses_long_names() {
        let n = RxRingName::new("0123456789abcde").unwrap();
        assert_eq!(n.as_str(), "0123456789abcde");
        assert_eq!(
            RxRingName::new("0123456789abcdefg"),
            Err(RxRingError::NameTooLong { len: 17 })
        );
        // Multi-byte characters are whole or refused, never split.
        assert_eq!(RxRingName::new("ééééééé").unwrap().as_str(), "ééééééé");
        assert!(RxRingName::new("ééééééééé").is_err());
        assert_eq!(RxRingName::default().as_str(), "");
        assert_eq!(RxRingName::try_from("em1").unwrap().to_string(), "em1");
        assert_eq!(alloc::format!("{:?}", RxRingName::EMPTY), "\"\"");
    }

    #[test]
    fn info_copies_every_field() {
        let mut r = RxRing::new(2, 8, 3).unwrap();
        r.get(1, 3);
        let i = r.info(RxRingName::new("em0").unwrap(), 9216);
        assert_eq!(
            i,
            RxRingInfo {
                name: RxRingName::new("em0").unwrap(),
                size: 9216,
                adjusted: 3,
                alive: 1,
                cwm: 2,
                lwm: 2,
                hwm: 8,
            }
        );
    }

    #[test]
    fn table_prints_rows_and_sizes() {
        let rows = [
            RxRingInfo {
                name: RxRingName::new("em0").unwrap(),
                size: 2048,
                alive: 260,
                cwm: 260,
                lwm: 4,
                hwm: 1024,
                adjusted: 0,
            },
            RxRingInfo {
                name: RxRingName::new("lo0").unwrap(),
                size: 1500,
                ..RxRingInfo::default()
            },
        ];
        assert_eq!(
            RxRingInfoTable(&rows).to_string(),
            "NAME              SIZE  ALIVE    LWM    HWM    CWM\n\
             em0                 2k    260      4   1024    260\n\
             lo0               1500      0      0      0      0\n"
        );
        assert_eq!(
            RxRingInfoTable(&[]).to_string(),
            "NAME              SIZE  ALIVE    LWM    HWM    CWM\n"
        );
        assert_eq!(Size(u32::MAX).to_string(), "4294967295");
        assert_eq!(Size(0).to_string(), "0");
    }
}
