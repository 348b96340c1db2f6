//! QEMU's e1000 (82540EM) as the em driver's [`Hardware`]: [`E1000`].
//!
//! - Registers: BAR 0, identity-mapped uncached, 32-bit volatile accesses
//!   (a compiler fence makes each write a release and each read an
//!   acquire; x86 keeps stores and loads in order for uncached memory).
//! - DMA memory: descriptor rings and the [`DmaPool`] on the
//!   identity-mapped heap, so an address is the bus address.
//! - The interrupt: the function's INTx through the IOAPIC
//!   ([`crate::services::intr`]) to one CPU, level-triggered, established
//!   MP-safe (the driver takes the big lock itself where its mode says).
//!   The dispatcher's closure holds the driver's handler only weakly and
//!   upgrades it inside the call, which `intr_disestablish` and
//!   `intr_barrier` wait for.
//!
//! QEMU's e1000 ignores `CTRL.RST` (rings, `RCTL`, `TCTL` and `IMS` keep
//! their values), so a write of it runs `em_reset_hw`'s sequence here:
//! every cause masked, both units off (QEMU handles register writes under
//! its global lock, so no DMA is in progress once they return), then the
//! reset bit, as the driver's contract asks.

use alloc::boxed::Box;
use alloc::sync::{Arc, Weak};
use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering, compiler_fence};

use mpsafe_em::desc::{DESC_SIZE, DescRing};
use mpsafe_em::regs::{CTRL_RST, Reg, Regs};
use mpsafe_em::{Hardware, IntrHandler};

use super::kernel::Kern;
use super::pool::DmaPool;
use crate::apic::Trigger;
use crate::cpu::MAX_CPUS;
use crate::pci::PciDevice;
use crate::services::cpu_id;
use crate::services::intr::{self, IntrHandle};
use crate::services::ipl::{IPL_NET, Mutex};

/// Receive address low and high, entry 0 (the MAC address).
const RAL0: Reg = Reg(0x5400);
const RAH0: Reg = Reg(0x5404);
const RAH_AV: u32 = 1 << 31;

/// Why a device could not be set up or given DMA memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceError {
    /// BAR 0 is not a memory BAR.
    NoMemoryBar,
    /// Receive address entry 0 holds no valid MAC address.
    NoMac,
    /// The heap could not give `bytes` of DMA memory.
    NoDmaMemory {
        /// The size asked for.
        bytes: usize,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoMemoryBar => write!(f, "BAR 0 is not a memory BAR"),
            Self::NoMac => write!(f, "no valid MAC address in RAL0/RAH0"),
            Self::NoDmaMemory { bytes } => write!(f, "no {bytes} bytes of DMA memory"),
        }
    }
}

impl core::error::Error for DeviceError {}

/// A descriptor ring's memory on the heap; freed with the ring.
struct RingMemory {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory, owned; the ring shares it with the device.
unsafe impl Send for RingMemory {}
// SAFETY: as above.
unsafe impl Sync for RingMemory {}

impl Drop for RingMemory {
    fn drop(&mut self) {
        // SAFETY: allocated by `dma_alloc` with this layout; the ring that
        // owned it is gone, and the driver reset the device (no DMA) before
        // it let go of its rings.
        unsafe { alloc::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One e1000 with its DMA pool and its interrupt line.
pub struct E1000 {
    bar0: usize,
    pool: DmaPool,
    gsi: u32,
    /// The CPU its interrupts are delivered to.
    cpu: usize,
    handle: Mutex<IPL_NET, Option<IntrHandle>>,
    counts: Arc<IntrCounts>,
}

/// The device's interrupt counters, shared with the dispatcher's closure.
#[derive(Default)]
struct IntrCounts {
    /// Interrupts the driver's handler claimed, per CPU.
    claimed: [AtomicU64; MAX_CPUS],
    /// Handler calls that found no cause (or no handler).
    unclaimed: AtomicU64,
}

impl E1000 {
    /// Takes over PCI function `dev`: memory decoding and bus mastering on,
    /// every cause masked; its interrupts will go to `cpu` through `gsi`.
    ///
    /// # Errors
    ///
    /// [`DeviceError::NoMemoryBar`].
    pub(crate) fn new(
        dev: PciDevice,
        gsi: u32,
        cpu: usize,
        pool: DmaPool,
    ) -> Result<Self, DeviceError> {
        let bar0 = dev.bar0_mem().ok_or(DeviceError::NoMemoryBar)? as usize;
        dev.enable();
        let d = Self {
            bar0,
            pool,
            gsi,
            cpu,
            handle: Mutex::new(None),
            counts: Arc::default(),
        };
        d.write(Reg::CTRL, CTRL_RST);
        Ok(d)
    }

    /// The MAC address in receive address entry 0.
    ///
    /// # Errors
    ///
    /// [`DeviceError::NoMac`] if the entry is not valid.
    pub fn mac(&self) -> Result<[u8; 6], DeviceError> {
        let lo = self.read(RAL0).to_le_bytes();
        let hi = self.read(RAH0);
        if hi & RAH_AV == 0 {
            return Err(DeviceError::NoMac);
        }
        let h = hi.to_le_bytes();
        Ok([lo[0], lo[1], lo[2], lo[3], h[0], h[1]])
    }

    /// The CPU its interrupts go to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Interrupts the driver's handler claimed on `cpu` so far.
    pub fn claimed(&self, cpu: usize) -> u64 {
        self.counts.claimed[cpu].load(Ordering::Relaxed)
    }

    /// Interrupts nobody claimed.
    pub fn unclaimed(&self) -> u64 {
        self.counts.unclaimed.load(Ordering::Relaxed)
    }

    fn reg(&self, reg: Reg) -> *mut u32 {
        (self.bar0 + reg.0 as usize) as *mut u32
    }

    /// `em_reset_hw`: mask, both units off, reset (see the module).
    fn reset(&self) {
        self.raw_write(Reg::IMC, !0);
        self.raw_write(Reg::RCTL, 0);
        self.raw_write(Reg::TCTL, 0);
        self.raw_write(Reg::CTRL, self.read(Reg::CTRL) | CTRL_RST);
        // Self-clearing (at once on QEMU); bounded for real hardware.
        for _ in 0..100_000 {
            if self.read(Reg::CTRL) & CTRL_RST == 0 {
                break;
            }
            core::hint::spin_loop();
        }
        self.raw_write(Reg::IMC, !0);
        let _ = self.read(Reg::ICR);
    }

    fn raw_write(&self, reg: Reg, value: u32) {
        // Release: descriptor and buffer stores before this write (a tail
        // doorbell) reach memory before the device hears of them. x86
        // keeps stores in order; this keeps the compiler from moving them.
        compiler_fence(Ordering::Release);
        // SAFETY: `reg` is a register offset inside this function's 128 KiB
        // BAR 0, identity-mapped uncached; the write's effects are the
        // device's, on no memory of ours.
        unsafe { core::ptr::write_volatile(self.reg(reg), value) }
    }
}

impl Regs for E1000 {
    fn read(&self, reg: Reg) -> u32 {
        // SAFETY: as in `raw_write`; reads have device side effects (ICR
        // clears) but touch no memory of ours.
        let v = unsafe { core::ptr::read_volatile(self.reg(reg)) };
        // Acquire: descriptor loads after this read (of ICR) are not
        // hoisted above it.
        compiler_fence(Ordering::Acquire);
        v
    }

    fn write(&self, reg: Reg, value: u32) {
        if reg == Reg::CTRL && value & CTRL_RST != 0 {
            self.reset();
            self.raw_write(Reg::CTRL, value & !CTRL_RST);
        } else {
            self.raw_write(reg, value);
        }
    }
}

impl Hardware for E1000 {
    type Error = DeviceError;
    type Kernel = Kern;
    type Pool = DmaPool;

    /// The 82540EM has one queue pair.
    fn queues(&self) -> usize {
        1
    }

    fn pool(&self) -> &DmaPool {
        &self.pool
    }

    fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), DeviceError> {
        let bytes = ndesc * DESC_SIZE;
        let layout = Layout::from_size_align(bytes.max(DESC_SIZE), 4096)
            .map_err(|_| DeviceError::NoDmaMemory { bytes })?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc::alloc::alloc_zeroed(layout) })
            .ok_or(DeviceError::NoDmaMemory { bytes })?;
        let owner = RingMemory { ptr, layout };
        // SAFETY: 4096-aligned (so 16), `ndesc * 16` bytes valid for reads
        // and writes while `owner` (kept by the ring) lives, and nothing
        // but the ring and the device touch it.
        let ring = unsafe { DescRing::from_dma(ptr, ndesc, Box::new(owner)) };
        Ok((ptr.as_ptr() as u64, Arc::new(ring)))
    }

    fn intr_establish(&self, handler: Weak<dyn IntrHandler>) {
        self.intr_disestablish();
        let counts = Arc::clone(&self.counts);
        let h = intr::intr_establish(
            self.gsi,
            Trigger::PCI,
            self.cpu,
            true,
            Arc::new(move || {
                let claimed = handler.upgrade().is_some_and(|h| h.intr());
                // Relaxed: statistics.
                if claimed {
                    counts.claimed[cpu_id()].fetch_add(1, Ordering::Relaxed);
                } else {
                    counts.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
                claimed
            }),
        );
        match h {
            Ok(h) => *self.handle.lock() = Some(h),
            // The driver's seam has no error here (pci_intr_establish
            // failing is an attach failure in a real kernel): the run's
            // setup checked the line and the CPU before attaching.
            Err(e) => panic!("intr_establish GSI {} CPU {}: {e}", self.gsi, self.cpu),
        }
    }

    fn intr_disestablish(&self) {
        let h = self.handle.lock().take();
        if let Some(h) = h {
            intr::intr_disestablish(h);
        }
    }

    fn intr_barrier(&self) {
        let h = self.handle.lock();
        if let Some(h) = h.as_ref() {
            intr::intr_barrier(h);
        }
    }
}
