//! The seam between the driver and a device: [`Hardware`].
//!
//! The driver ([`crate::driver`]) is generic over this trait and never names
//! a concrete device. Two backends implement it: the simulated 8254x
//! ([`Device`](crate::Device)) and, on Linux with the `uio` feature, a real
//! PCI function bound to `uio_pci_generic` (QEMU's e1000).
//!
//! What a backend provides, and nothing more:
//!
//! - **Registers** ([`Regs`], the supertrait): 32-bit reads and writes by
//!   byte offset in BAR 0, with the device's side effects (read-to-clear
//!   `ICR`, doorbells on `RDT`/`TDT`). Writes are releases, reads acquires.
//! - **DMA memory**: descriptor rings ([`Hardware::dma_alloc`], a CPU view
//!   plus the bus address the device uses) and the packet buffers
//!   ([`Hardware::pool`], whose [`Mbuf::into_ring`](crate::Mbuf::into_ring)
//!   yields the bus address a descriptor carries).
//! - **The interrupt**: [`Hardware::intr_establish`] hooks the driver's
//!   [`IntrHandler`], [`Hardware::intr_disestablish`] unhooks it and waits
//!   for a call in flight, [`Hardware::intr_barrier`] waits for calls in
//!   flight. How interrupts are waited for is the backend's business (a
//!   simulated MSI thread, a blocking `read` of `/dev/uioN`); both deliver
//!   them through an [`IntrLine`], which upgrades the driver's weak handler
//!   *inside* the interrupt gate so the barrier covers the upgrade.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use mpsafe_barrier::Gate;

use crate::desc::DescRing;
use crate::pool::Pool;
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
/// # Example
///
/// A register-only fake that never interrupts, enough to compile against:
///
/// ```
/// use std::sync::{Arc, Weak};
/// use mpsafe_em::desc::DescRing;
/// use mpsafe_em::hw::{Hardware, IntrHandler, IntrLine, Reg, Regs};
/// use mpsafe_em::Pool;
///
/// struct Fake { pool: Pool, line: IntrLine }
/// impl Regs for Fake {
///     fn read(&self, _: Reg) -> u32 { 0 }
///     fn write(&self, _: Reg, _: u32) {}
/// }
/// impl Hardware for Fake {
///     type Error = std::convert::Infallible;
///     fn queues(&self) -> usize { 1 }
///     fn pool(&self) -> &Pool { &self.pool }
///     fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Self::Error> {
///         Ok((0x1000, Arc::new(DescRing::new(n))))
///     }
///     fn intr_establish(&self, h: Weak<dyn IntrHandler>) { self.line.establish(h) }
///     fn intr_disestablish(&self) { self.line.disestablish() }
///     fn intr_barrier(&self) { self.line.barrier() }
/// }
/// let fake = Fake { pool: Pool::new(4, 2048), line: IntrLine::new() };
/// assert_eq!(fake.dma_alloc(8).unwrap().1.capacity(), 8);
/// ```
pub trait Hardware: Regs + Send + Sync + 'static {
    /// Why DMA memory could not be had.
    type Error: fmt::Display;

    /// Queue pairs the device has (`1..=2` on the 82571 family, 1 on the
    /// 82540EM). Queue `q`'s registers are [`Reg::rdt`]`(q)` and so on.
    fn queues(&self) -> usize;

    /// The packet buffers, in memory the device can reach.
    fn pool(&self) -> &Pool;

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
    /// upgrades it inside its interrupt gate (see [`IntrLine::deliver`]).
    fn intr_establish(&self, handler: Weak<dyn IntrHandler>);

    /// Unhooks the handler (`pci_intr_disestablish`) and waits for a call
    /// in flight: when it returns the handler is not running and will not
    /// be called again.
    fn intr_disestablish(&self);

    /// Returns once every handler call that started before this call has
    /// finished (`intr_barrier`). Must not be called from the handler.
    fn intr_barrier(&self);
}

/// The delivery half of an interrupt line, shared by the backends: the
/// established handler and the gate its calls pass through.
///
/// A backend's interrupt thread (the simulator's MSI thread, a loop blocked
/// on `/dev/uioN`) calls [`deliver`](IntrLine::deliver) per interrupt; the
/// backend's [`Hardware`] methods forward to the rest.
#[derive(Default)]
pub struct IntrLine {
    handler: Mutex<Option<Weak<dyn IntrHandler>>>,
    gate: Gate,
}

impl IntrLine {
    /// A line with no handler.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Weak<dyn IntrHandler>>> {
        // An Option of a pointer: consistent even after a panic elsewhere.
        self.handler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `handler` ([`Hardware::intr_establish`]).
    pub fn establish(&self, handler: Weak<dyn IntrHandler>) {
        *self.slot() = Some(handler);
    }

    /// Removes the handler, then waits out a call in flight
    /// ([`Hardware::intr_disestablish`]).
    pub fn disestablish(&self) {
        *self.slot() = None;
        self.gate.barrier();
    }

    /// Waits for every call that started before ([`Hardware::intr_barrier`]).
    pub fn barrier(&self) {
        self.gate.barrier();
    }

    /// Calls the handler for one interrupt: `Some(claimed)`, or `None` if no
    /// handler is established (or the driver state is gone).
    ///
    /// The weak reference is upgraded *inside* the gate: a
    /// [`disestablish`](IntrLine::disestablish) that returns has waited for
    /// this call, so the driver's state is never dropped here, on the
    /// interrupt thread, after its owner let go of it.
    pub fn deliver(&self) -> Option<bool> {
        self.gate
            .enter(|| {
                let h: Arc<dyn IntrHandler> = self.slot().as_ref()?.upgrade()?;
                Some(h.intr())
            })
            .flatten()
    }
}

impl fmt::Debug for IntrLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrLine")
            .field("established", &self.slot().is_some())
            .finish_non_exhaustive()
    }
}
