//! The seam between the driver and a device: [`Hardware`].
//!
//! The driver ([`crate::driver`]) is generic over this trait and never names
//! a concrete device. Three backends implement it: the simulated 8254x
//! (`mpsafe-em-sim`'s `Device`), a real PCI function bound to Linux's
//! `uio_pci_generic` (`mpsafe-em-uio`, QEMU's e1000), and the bare-metal
//! kernel in `examples/kernel` (the same e1000, with real interrupts).
//!
//! What a backend provides, and nothing more:
//!
//! - **Registers** ([`Regs`], the supertrait): 32-bit reads and writes by
//!   byte offset in BAR 0, with the device's side effects (read-to-clear
//!   `ICR`, doorbells on `RDT`/`TDT`). Writes are releases, reads acquires.
//! - **DMA memory**: descriptor rings ([`Hardware::dma_alloc`], a CPU view
//!   plus the bus address the device uses) and the packet buffers
//!   ([`Hardware::pool`], a [`BufferPool`] whose
//!   [`post`](BufferPool::post) yields the bus address a descriptor
//!   carries).
//! - **The kernel** it lives in ([`Hardware::Kernel`]): the driver's locks,
//!   waits, big lock, tasks and timeouts.
//! - **The interrupt**: [`Hardware::intr_establish`] hooks the driver's
//!   [`IntrHandler`], [`Hardware::intr_disestablish`] unhooks it and waits
//!   for a call in flight, [`Hardware::intr_barrier`] waits for calls in
//!   flight. How interrupts arrive is the backend's business (a simulated
//!   MSI thread, a blocking `read` of `/dev/uioN`, an IOAPIC vector); each
//!   upgrades the driver's weak handler *inside* its interrupt gate, so the
//!   barrier covers the upgrade.

use alloc::sync::{Arc, Weak};
use core::fmt;

use crate::buf::BufferPool;
use crate::desc::DescRing;
use crate::kernel::Kernel;
pub use crate::regs::{Reg, Regs};

/// A driver's interrupt handler, as `pci_intr_establish` takes it.
pub trait IntrHandler: Send + Sync {
    /// Services the device; returns whether it claimed the interrupt (some
    /// cause was pending).
    fn intr(&self) -> bool;
}

/// A device the em driver can drive: registers, DMA memory, one interrupt.
///
/// Implementations must be cheap to share (`Arc<Self>` is what the driver
/// holds) and callable from any thread.
///
/// # Contract
///
/// - `write` is a release and `read` an acquire with respect to descriptor
///   memory (see [`Regs`]): descriptors written before a tail write are
///   visible to the device, and descriptors the device wrote before a cause
///   is read from `ICR` are visible to the driver.
/// - A write of `CTRL` with [`CTRL_RST`](crate::regs::CTRL_RST) returns only
///   once the device no longer touches the rings it had (receive and
///   transmit units off, DMA quiescent), as `em_reset_hw` guarantees.
/// - [`dma_alloc`](Hardware::dma_alloc) memory and the [`pool`](Hardware::pool)
///   buffers stay valid as long as the device lives.
/// - Interrupt calls go through the handler installed last; after
///   [`intr_disestablish`](Hardware::intr_disestablish) returns the old
///   handler is neither running nor called again.
///
/// `mpsafe-em-sim`'s documentation has a register-only fake that
/// implements it in a dozen lines.
pub trait Hardware: Regs + Send + Sync + 'static {
    /// Why DMA memory could not be had.
    type Error: fmt::Display;

    /// The kernel this device is attached in: its locks, waits, big lock,
    /// tasks and timeouts.
    type Kernel: Kernel;

    /// The packet buffers' pool.
    type Pool: BufferPool;

    /// Queue pairs the device has (`1..=2` on the 82571 family, 1 on the
    /// 82540EM). Queue `q`'s registers are [`Reg::rdt`]`(q)` and so on.
    fn queues(&self) -> usize;

    /// The packet buffers, in memory the device can reach.
    fn pool(&self) -> &Self::Pool;

    /// Allocates a zeroed ring of `ndesc` legacy descriptors in DMA memory
    /// (16-byte aligned, physically contiguous). Returns the bus address to
    /// program into `RDBAL`/`RDBAH` or `TDBAL`/`TDBAH`, and the CPU's view.
    ///
    /// # Errors
    ///
    /// No DMA memory.
    fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), Self::Error>;

    /// Hooks `handler` to the interrupt (`pci_intr_establish`), replacing
    /// any handler before. The backend keeps only the weak reference and
    /// upgrades it inside its interrupt gate, so that
    /// [`intr_disestablish`](Hardware::intr_disestablish) and
    /// [`intr_barrier`](Hardware::intr_barrier) cover the upgrade: the
    /// driver's state is never dropped on the interrupt's side.
    fn intr_establish(&self, handler: Weak<dyn IntrHandler>);

    /// Unhooks the handler (`pci_intr_disestablish`) and waits for a call
    /// in flight: when it returns the handler is not running and will not
    /// be called again.
    fn intr_disestablish(&self);

    /// Returns once every handler call that started before this call has
    /// finished (`intr_barrier`). Must not be called from the handler.
    fn intr_barrier(&self);
}
