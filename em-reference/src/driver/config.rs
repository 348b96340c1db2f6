//! How the driver is attached: [`EmConfig`] and its validation.

use super::errors::EmError;
use super::mode::Mode;

/// Fewest descriptors a ring may have (`EM_MIN_TXD`/`EM_MIN_RXD`).
pub const MIN_DESC: u32 = 80;
/// Most descriptors a ring may have on an 82544 or later (`EM_MAX_TXD`).
pub const MAX_DESC: u32 = 4096;
/// Ethernet header length: the largest frame is `mtu + ETHER_HDR_LEN`.
pub const ETHER_HDR_LEN: usize = 14;

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
            name: "em0".into(),
        }
    }

    /// Checks every field; [`Em::attach`](super::Em::attach) calls it before
    /// touching the device.
    ///
    /// # Errors
    ///
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), EmError> {
        check_ring("rx", self.rx_desc)?;
        check_ring("tx", self.tx_desc)?;
        Ok(())
    }

    /// The `ITR` value for `ints_per_sec` (256 ns units; 0: no throttling).
    pub(crate) fn itr(&self) -> u32 {
        if self.ints_per_sec == 0 {
            0
        } else {
            1_000_000_000 / (self.ints_per_sec * 256)
        }
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
}
