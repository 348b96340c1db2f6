//! PCI configuration space through port I/O (mechanism #1: address at
//! `0xcf8`, data at `0xcfc`), enough to find devices on bus 0, read BAR 0 and
//! the interrupt line, and enable memory decoding and bus mastering.

use alloc::vec::Vec;

use crate::arch::{inl, outl};
use crate::services::ipl::{IPL_HIGH, Mutex};

/// The address/data port pair is shared state: one access at a time.
static CONFIG: Mutex<IPL_HIGH, ()> = Mutex::new(());

/// A function on bus 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PciDevice {
    /// Device (slot) number.
    pub(crate) slot: u8,
    /// Function number.
    pub(crate) func: u8,
    /// Vendor id.
    pub(crate) vendor: u16,
    /// Device id.
    pub(crate) device: u16,
}

fn address(slot: u8, func: u8, offset: u8) -> u32 {
    0x8000_0000 | u32::from(slot) << 11 | u32::from(func) << 8 | u32::from(offset & 0xfc)
}

impl PciDevice {
    /// Reads the configuration dword at `offset`.
    pub(crate) fn read(&self, offset: u8) -> u32 {
        let _g = CONFIG.lock();
        outl(0xcf8, address(self.slot, self.func, offset));
        inl(0xcfc)
    }

    /// Writes the configuration dword at `offset`.
    pub(crate) fn write(&self, offset: u8, v: u32) {
        let _g = CONFIG.lock();
        outl(0xcf8, address(self.slot, self.func, offset));
        outl(0xcfc, v);
    }

    /// BAR 0's memory address, if it is a memory BAR.
    pub(crate) fn bar0_mem(&self) -> Option<u64> {
        let lo = self.read(0x10);
        if lo & 1 != 0 {
            return None;
        }
        let mut addr = u64::from(lo & !0xf);
        if (lo >> 1) & 0b11 == 0b10 {
            addr |= u64::from(self.read(0x14)) << 32;
        }
        (addr != 0).then_some(addr)
    }

    /// The interrupt line the firmware assigned (config `0x3c`), and the pin
    /// (1 = INTA; 0 = none).
    pub(crate) fn interrupt(&self) -> (u8, u8) {
        let v = self.read(0x3c);
        (v as u8, (v >> 8) as u8)
    }

    /// Enables memory decoding and bus mastering, and INTx.
    pub(crate) fn enable(&self) {
        let cmd = self.read(0x04);
        // Memory space (1), bus master (2); clear INTx disable (10).
        self.write(0x04, (cmd & 0xffff & !(1 << 10)) | 0b110);
    }
}

/// Every function on bus 0.
pub(crate) fn scan_bus0() -> Vec<PciDevice> {
    let mut found = Vec::new();
    for slot in 0..32u8 {
        for func in 0..8u8 {
            let probe = PciDevice {
                slot,
                func,
                vendor: 0,
                device: 0,
            };
            let id = probe.read(0);
            if id as u16 == 0xffff {
                if func == 0 {
                    break;
                }
                continue;
            }
            found.push(PciDevice {
                slot,
                func,
                vendor: id as u16,
                device: (id >> 16) as u16,
            });
            // Single-function device: no functions 1..8.
            if func == 0 && probe.read(0x0c) & (0x80 << 16) == 0 {
                break;
            }
        }
    }
    found
}
