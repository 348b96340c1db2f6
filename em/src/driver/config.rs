//! How the driver is attached: [`EmConfig`] and its validation.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use mpsafe_ifqueue::MAX_MAXLEN;
use mpsafe_rxring::RxRingName;

use super::errors::EmError;
use super::mode::Mode;

/// Fewest descriptors a ring may have (`EM_MIN_TXD`/`EM_MIN_RXD`).
pub const MIN_DESC: u32 = 80;
/// Most descriptors a ring may have on an 82544 or later (`EM_MAX_TXD`).
pub const MAX_DESC: u32 = 4096;
/// Ethernet header length: the largest frame is `mtu + ETHER_HDR_LEN`.
pub const ETHER_HDR_LEN: usize = 14;

/// Where [`Em::transmit`](super::Em::transmit) runs the send queue's start
/// routine ([`EmConfig::tx_start`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TxStart {
    /// On the transmitting thread, through the send queue's serializer
    /// (OpenBSD's `if_enqueue`: `ifq_enqueue`, then `ifq_start`). A thread
    /// that finds the routine running on another CPU leaves its packet to
    /// that CPU and returns.
    #[default]
    Direct,
    /// On a task of the kernel's, one per send queue (seed 002's
    /// "delegating the work to mpsafe taskqs"; OpenBSD's `ifq_restart` on a
    /// task queue): `transmit` enqueues and adds the task
    /// ([`Kernel::deferred`](crate::Kernel::deferred)), and never runs the
    /// routine itself. Tx completion's restart still runs it directly.
    Delegated,
}

impl TxStart {
    /// Both strategies, in the order the demo lists them.
    pub const ALL: [TxStart; 2] = [TxStart::Direct, TxStart::Delegated];

    /// The name the demo and the reports use: `direct`, `delegated`.
    pub fn name(self) -> &'static str {
        match self {
            TxStart::Direct => "direct",
            TxStart::Delegated => "delegated",
        }
    }
}

impl fmt::Display for TxStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl core::str::FromStr for TxStart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        TxStart::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown start {s:?}: expected direct or delegated"))
    }
}

/// How the driver is attached.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmConfig {
    /// Locking design.
    pub mode: Mode,
    /// Receive descriptors per queue (`MIN_DESC..=MAX_DESC`, multiple of 8).
    pub rx_desc: u32,
    /// Transmit descriptors per queue (same limits).
    pub tx_desc: u32,
    /// Send queue length per queue (`ifq_maxlen`).
    pub ifq_maxlen: usize,
    /// Interrupt throttling in interrupts per second (`MAX_INTS_PER_SEC`);
    /// 0 turns moderation off.
    pub ints_per_sec: u32,
    /// Largest payload (MTU); frames up to `mtu + 14` bytes go out.
    pub mtu: usize,
    /// Receive ring low watermark (`if_rxr_init` lwm).
    pub rx_lwm: u32,
    /// Keep each receive ring's current watermark across `down`/`up`: `up`
    /// starts at the watermark reached before `down`
    /// ([`RxRing::init_with_cwm`](mpsafe_rxring::RxRing::init_with_cwm))
    /// instead of at `rx_lwm` (seed 000's `if_rxr_init(0, 0)` reset, the
    /// default).
    pub rx_keep_watermarks: bool,
    /// Transmit bundling threshold (`ifq` bundle): `transmit` runs the start
    /// routine once this many packets are queued, and otherwise leaves it to
    /// [`Em::flush_tx`](super::Em::flush_tx); 1 starts on every packet
    /// (the default). `1..=ifq_maxlen`.
    pub tx_bundle: usize,
    /// Where [`Em::transmit`](super::Em::transmit) runs the start routine:
    /// on the transmitting thread (the default) or on a kernel task per
    /// send queue.
    pub tx_start: TxStart,
    /// Interface name, for the statistics table.
    pub name: String,
}

impl EmConfig {
    /// Defaults for `mode`: 512/512 descriptors, 256-packet send queue,
    /// 8000 interrupts/s, MTU 1500.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            rx_desc: 512,
            tx_desc: 512,
            ifq_maxlen: 256,
            ints_per_sec: 8000,
            mtu: 1500,
            rx_lwm: 16,
            rx_keep_watermarks: false,
            tx_bundle: 1,
            tx_start: TxStart::Direct,
            name: "em0".into(),
        }
    }

    /// Checks every field for a device with `queues` queue pairs and
    /// buffers of `buf_size` bytes; [`Em::attach`](super::Em::attach) calls
    /// it before touching the device.
    ///
    /// # Errors
    ///
    /// [`EmError::RingSize`] or [`EmError::Field`] for the first field out
    /// of range.
    pub fn validate(&self, queues: usize, buf_size: usize) -> Result<(), EmError> {
        check_ring("rx", self.rx_desc)?;
        check_ring("tx", self.tx_desc)?;
        let max_mtu = buf_size.saturating_sub(ETHER_HDR_LEN);
        let name_len = self.name.len() + if queues > 1 { ":rx0".len() } else { 0 };
        let checks = [
            field(
                "ifq_maxlen",
                self.ifq_maxlen,
                (1..=MAX_MAXLEN).contains(&self.ifq_maxlen),
                "1 to MAX_MAXLEN packets",
            ),
            field(
                "ints_per_sec",
                self.ints_per_sec,
                self.ints_per_sec == 0 || (MIN_INTS..=MAX_INTS).contains(&self.ints_per_sec),
                "0 (no throttling) or 60 to 3906250 (an ITR interval of 1 to 65535 x 256 ns)",
            ),
            field(
                "mtu",
                self.mtu,
                (MIN_MTU..=max_mtu).contains(&self.mtu),
                "68 bytes up to the buffer size less the Ethernet header",
            ),
            field(
                "rx_lwm",
                self.rx_lwm,
                (1..self.rx_desc).contains(&self.rx_lwm),
                "1 up to rx_desc - 1 descriptors",
            ),
            field(
                "tx_bundle",
                self.tx_bundle,
                (1..=self.ifq_maxlen).contains(&self.tx_bundle),
                "1 up to ifq_maxlen packets",
            ),
            field(
                "name",
                self.name.len(),
                name_len <= RxRingName::MAX_LEN,
                "at most 16 bytes with the \":rxN\" suffix of a multiqueue device",
            ),
        ];
        checks.into_iter().collect::<Result<Vec<()>, _>>().map(drop)
    }

    /// The `ITR` value for `ints_per_sec` (256 ns units; 0: no throttling).
    /// `validate` keeps it in `1..=65535`.
    pub(crate) fn itr(&self) -> u32 {
        if self.ints_per_sec == 0 {
            0
        } else {
            (1_000_000_000 / (u64::from(self.ints_per_sec) * 256)) as u32
        }
    }
}

/// Fewest interrupts per second with throttling on: the `ITR` interval is
/// 16 bits of 256 ns.
const MIN_INTS: u32 = 60;
/// Most interrupts per second: an `ITR` interval of one unit (256 ns).
const MAX_INTS: u32 = 3_906_250;
/// The smallest MTU (IPv4's 68 bytes).
const MIN_MTU: usize = 68;

fn field(
    field: &'static str,
    value: impl TryInto<u64>,
    ok: bool,
    accepts: &'static str,
) -> Result<(), EmError> {
    if ok {
        Ok(())
    } else {
        Err(EmError::Field {
            field,
            value: value.try_into().unwrap_or(u64::MAX),
            accepts,
        })
    }
}

pub(crate) fn check_ring(ring: &'static str, size: u32) -> Result<(), EmError> {
    if (MIN_DESC..=MAX_DESC).contains(&size) && size % 8 == 0 {
        Ok(())
    } else {
        Err(EmError::RingSize { ring, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn ring_sizes_are_checked() {
        assert!(check_ring("rx", 512).is_ok());
        assert!(check_ring("rx", 80).is_ok());
        assert!(check_ring("rx", 4096).is_ok());
        for bad in [0, 72, 81, 4104, 100] {
            let e = check_ring("tx", bad).unwrap_err();
            assert_eq!(
                e,
                EmError::RingSize {
                    ring: "tx",
                    size: bad
                }
            );
            assert!(e.to_string().contains("multiple of 8"));
        }
    }

    #[test]
    fn itr_fits_sixteen_bits_at_both_ends() {
        let mut c = EmConfig::new(Mode::Mpsafe);
        for (ints, itr) in [(MIN_INTS, 65104), (MAX_INTS, 1), (8000, 488)] {
            c.ints_per_sec = ints;
            assert_eq!(c.validate(1, 2048), Ok(()));
            assert_eq!(c.itr(), itr);
        }
        c.ints_per_sec = MAX_INTS + 1;
        let e = c.validate(1, 2048).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("ints_per_sec = 3906251: expected"),
            "{e}"
        );
    }
}
