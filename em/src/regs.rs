//! The 8254x register file: offsets, bits, and the [`Regs`] access trait.
//!
//! Names and offsets follow Intel's 8254x manual (and OpenBSD's
//! `if_em_hw.h`). Only the registers the driver uses are modelled. Queue
//! registers take a queue index (`Reg::rdt(q)`): queue 0 sits at the classic
//! 8254x offsets, queue `n` at `+ n * 0x100` as on the 82571.

/// A device register, named by its byte offset in BAR 0.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Reg(pub u32);

impl Reg {
    /// Device control (reset, link up).
    pub const CTRL: Reg = Reg(0x0000);
    /// Device status (link up, speed).
    pub const STATUS: Reg = Reg(0x0008);
    /// Interrupt cause read: reading returns the pending causes and clears them.
    pub const ICR: Reg = Reg(0x00c0);
    /// Interrupt throttling: minimum interval between interrupts, in 256 ns units.
    pub const ITR: Reg = Reg(0x00c4);
    /// Interrupt cause set: software raises causes (for tests).
    pub const ICS: Reg = Reg(0x00c8);
    /// Interrupt mask set: writing 1 bits unmasks those causes; reads the mask.
    pub const IMS: Reg = Reg(0x00d0);
    /// Interrupt mask clear: writing 1 bits masks those causes.
    pub const IMC: Reg = Reg(0x00d8);
    /// Receive control (enable).
    pub const RCTL: Reg = Reg(0x0100);
    /// Transmit control (enable).
    pub const TCTL: Reg = Reg(0x0400);
    /// Missed packets count: frames dropped because no receive descriptor
    /// was posted. Statistics registers clear on read.
    pub const MPC: Reg = Reg(0x4010);

    /// Receive descriptor base address (low 32 bits) of queue `q`.
    pub const fn rdbal(q: usize) -> Reg {
        Reg(0x2800 + 0x100 * q as u32)
    }
    /// Receive descriptor base address (high 32 bits) of queue `q`.
    pub const fn rdbah(q: usize) -> Reg {
        Reg(0x2804 + 0x100 * q as u32)
    }
    /// Receive descriptor ring length in bytes (a multiple of 128) of queue `q`.
    pub const fn rdlen(q: usize) -> Reg {
        Reg(0x2808 + 0x100 * q as u32)
    }
    /// Receive descriptor head (the device's next slot) of queue `q`.
    pub const fn rdh(q: usize) -> Reg {
        Reg(0x2810 + 0x100 * q as u32)
    }
    /// Receive descriptor tail (one past the last slot the driver posted) of queue `q`.
    pub const fn rdt(q: usize) -> Reg {
        Reg(0x2818 + 0x100 * q as u32)
    }
    /// Transmit descriptor base address (low 32 bits) of queue `q`.
    pub const fn tdbal(q: usize) -> Reg {
        Reg(0x3800 + 0x100 * q as u32)
    }
    /// Transmit descriptor base address (high 32 bits) of queue `q`.
    pub const fn tdbah(q: usize) -> Reg {
        Reg(0x3804 + 0x100 * q as u32)
    }
    /// Transmit descriptor ring length in bytes of queue `q`.
    pub const fn tdlen(q: usize) -> Reg {
        Reg(0x3808 + 0x100 * q as u32)
    }
    /// Transmit descriptor head (the device's next slot) of queue `q`.
    pub const fn tdh(q: usize) -> Reg {
        Reg(0x3810 + 0x100 * q as u32)
    }
    /// Transmit descriptor tail (one past the last slot the driver filled) of queue `q`.
    pub const fn tdt(q: usize) -> Reg {
        Reg(0x3818 + 0x100 * q as u32)
    }
}

/// `CTRL.RST`: global device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// `CTRL.SLU`: set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// `STATUS.LU`: link up.
pub const STATUS_LU: u32 = 1 << 1;

/// `ICR.TXDW`: transmit descriptor written back.
pub const ICR_TXDW: u32 = 1 << 0;
/// `ICR.TXQE`: transmit queue empty.
pub const ICR_TXQE: u32 = 1 << 1;
/// `ICR.LSC`: link status change.
pub const ICR_LSC: u32 = 1 << 2;
/// `ICR.RXDMT0`: receive descriptors below the minimum threshold.
pub const ICR_RXDMT0: u32 = 1 << 4;
/// `ICR.RXO`: receiver overrun (a frame was missed).
pub const ICR_RXO: u32 = 1 << 6;
/// `ICR.RXT0`: receiver timer (frames were written back).
pub const ICR_RXT0: u32 = 1 << 7;
/// The causes the driver unmasks, as `em_enable_intr` does (`IMS_ENABLE_MASK`).
pub const IMS_ENABLE_MASK: u32 = ICR_TXDW | ICR_LSC | ICR_RXDMT0 | ICR_RXO | ICR_RXT0;

/// `RCTL.EN`: receiver enable.
pub const RCTL_EN: u32 = 1 << 1;
/// `RCTL.BAM`: accept broadcast frames. Without it the device drops every
/// frame to `ff:ff:ff:ff:ff:ff` that no receive address entry matches,
/// ARP's requests among them, and no IPv4 stack above the driver can
/// resolve a neighbour.
pub const RCTL_BAM: u32 = 1 << 15;
/// `RCTL.SECRC`: strip the Ethernet CRC from received frames (82543 and
/// later). Without it QEMU's e1000 reports every frame 4 bytes longer.
pub const RCTL_SECRC: u32 = 1 << 26;
/// `TCTL.EN`: transmitter enable.
pub const TCTL_EN: u32 = 1 << 1;

/// Access to a device's registers: the seam between driver and hardware.
///
/// The simulation implements it on a register file with the hardware's side
/// effects (read-to-clear `ICR`, doorbells on `RDT`/`TDT`); a real driver
/// would implement it with volatile MMIO reads and writes on BAR 0.
///
/// Ordering contract, as with MMIO on x86: a `write` is a release (descriptor
/// stores made before a tail write are visible to the device that observes
/// the tail), a `read` is an acquire.
pub trait Regs: Send + Sync {
    /// Reads a register (with its read side effects).
    fn read(&self, reg: Reg) -> u32;
    /// Writes a register (with its write side effects).
    fn write(&self, reg: Reg, value: u32);
}
