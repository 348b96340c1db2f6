//! A real 8254x through Linux `uio_pci_generic` (feature `uio`, Linux only):
//! the second backend under the driver's seams, written against QEMU's
//! emulated 82540EM (`-device e1000`).
//!
//! - Registers: BAR 0 mapped from sysfs `resource0`, volatile 32-bit MMIO
//!   ([`Mmio`], the [`Regs`] implementation).
//! - DMA memory: locked 2 MiB hugepages translated through
//!   `/proc/self/pagemap` ([`DmaAllocator`]); physical = bus address, as
//!   there is no IOMMU in the guest.
//! - Interrupt: the function's INTx through `/dev/uioN`. A thread blocks in
//!   `poll` on it, calls the established handler through an
//!   `mpsafe_barrier::Gate` (so [`UioDevice::intr_barrier`] waits for a
//!   running handler, as on the simulated device) and then re-arms the line
//!   by clearing the INTx-disable bit of the PCI command register, which the
//!   kernel's handler set.
//!
//! The device must already be bound to `uio_pci_generic`
//! (`echo 8086 100e > /sys/bus/pci/drivers/uio_pci_generic/new_id`), with
//! hugepages reserved, and the process must be root (pagemap frame numbers
//! and the configuration space need it).

#![cfg(target_os = "linux")]
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod dma;
mod pci;

pub use dma::{DmaAllocator, DmaChunk, HUGEPAGE};
pub use pci::{
    Mmio, PCI_COMMAND_INTX_DISABLE, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY, PciFunction, find,
};

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mpsafe_em_sim::desc::DescRing;
use mpsafe_em_sim::hw::{Hardware, IntrHandler};
use mpsafe_em_sim::pool::Pool;
use mpsafe_em_sim::regs::{CTRL_RST, CTRL_SLU, RCTL_EN, Reg, Regs, STATUS_LU};
use mpsafe_em_sim::{IntrLine, StdKernel};

/// Intel's PCI vendor id.
pub const VENDOR_INTEL: u16 = 0x8086;
/// The 82540EM's device id (QEMU's `e1000`).
pub const DEVICE_82540EM: u16 = 0x100e;

/// Receive address low, entry 0 (the MAC address's first four bytes).
pub const RAL0: Reg = Reg(0x5400);
/// Receive address high, entry 0 (the last two bytes and the valid bit).
pub const RAH0: Reg = Reg(0x5404);
/// `RAH.AV`: the address entry is valid.
pub const RAH_AV: u32 = 1 << 31;

/// What went wrong setting up or running a uio device.
#[derive(Debug)]
#[non_exhaustive]
pub enum UioError {
    /// A system call on a file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The PCI function is not bound to a uio driver.
    NotBound(String),
    /// DMA memory could not be had.
    Dma(String),
    /// The device did not behave (a reset that never completed).
    Device(String),
}

impl UioError {
    fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

impl fmt::Display for UioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "{}: {source}", path.display()),
            Self::NotBound(bdf) => write!(
                f,
                "{bdf} is not bound to uio_pci_generic (no uio/ directory in sysfs)"
            ),
            Self::Dma(why) => write!(f, "DMA memory: {why}"),
            Self::Device(why) => write!(f, "device: {why}"),
        }
    }
}

impl std::error::Error for UioError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Interrupt counters of a [`UioDevice`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UioStats {
    /// Interrupts `/dev/uioN` reported and the handler was called for.
    pub interrupts: u64,
    /// Handler calls that found no cause pending (the line is shared).
    pub stray: u64,
    /// Interrupts with no handler established (or the gate closed): the
    /// device's causes were masked at the source.
    pub unclaimed: u64,
}

/// How a [`UioDevice`] is opened.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct UioConfig {
    /// Packet buffers in the device's pool (DMA memory).
    pub buffers: usize,
    /// Size of each buffer: 2048 matches `RCTL.BSIZE` 0, the reset value.
    pub buf_size: usize,
}

impl Default for UioConfig {
    /// 4096 buffers of 2048 bytes (4 hugepages).
    fn default() -> Self {
        Self {
            buffers: 4096,
            buf_size: 2048,
        }
    }
}

struct Shared {
    pci: PciFunction,
    mmio: Mmio,
    uio: File,
    line: IntrLine,
    interrupts: AtomicU64,
    stray: AtomicU64,
    unclaimed: AtomicU64,
    /// Whether the receiver is enabled, and whether a re-arm of INTx waits
    /// for it to be: see [`Shared::rearm_intx`].
    rx: Mutex<RxArm>,
}

/// The receiver's state as far as re-arming INTx is concerned.
#[derive(Debug, Default)]
struct RxArm {
    /// `RCTL.EN` as last written through [`Regs::write`] or the reset.
    enabled: bool,
    /// An interrupt's re-arm was put off while the receiver was disabled.
    rearm_pending: bool,
}

/// An 8254x bound to `uio_pci_generic`: registers, interrupt, bus mastering.
pub struct UioDevice {
    shared: Arc<Shared>,
    dma: DmaAllocator,
    pool: Pool,
    /// Write end of the pipe that tells the interrupt thread to leave.
    stop: Mutex<Option<OwnedFd>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for UioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UioDevice")
            .field("bdf", &self.shared.pci.bdf())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), UioError> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(UioError::io("pipe2", std::io::Error::last_os_error()));
    }
    // SAFETY: pipe2 succeeded: both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl UioDevice {
    /// Opens the function at `bdf`, maps its registers, turns on bus
    /// mastering, resets the device with every cause masked, and starts the
    /// interrupt thread.
    ///
    /// # Errors
    ///
    /// [`UioError`] if the function is not bound to uio, a file cannot be
    /// opened or mapped, or the reset does not complete.
    pub fn open(bdf: &str, cfg: &UioConfig) -> Result<Arc<Self>, UioError> {
        let pci = PciFunction::open(bdf)?;
        let dma = DmaAllocator::new();
        let pool = dma.pool(cfg.buffers, cfg.buf_size)?;
        let uio_path = pci.uio_dev()?;
        let uio = File::open(&uio_path).map_err(|e| UioError::io(&uio_path, e))?;
        let mmio = pci.map_bar0()?;
        pci.enable_bus_master()?;
        let shared = Arc::new(Shared {
            pci,
            mmio,
            uio,
            line: IntrLine::new(),
            interrupts: AtomicU64::new(0),
            stray: AtomicU64::new(0),
            unclaimed: AtomicU64::new(0),
            rx: Mutex::new(RxArm::default()),
        });
        let dev = Self {
            shared: Arc::clone(&shared),
            dma,
            pool,
            stop: Mutex::new(None),
            thread: Mutex::new(None),
        };
        dev.reset()?;
        // A line masked by an interrupt nobody serviced (an earlier process)
        // would stay masked forever: start armed.
        shared.pci.unmask_intx()?;
        let (rd, wr) = pipe()?;
        let t = std::thread::Builder::new()
            .name(format!("em-uio-intr {bdf}"))
            .spawn(move || shared.intr_loop(rd))
            .map_err(|e| UioError::io("spawn", e))?;
        *dev.stop.lock().unwrap_or_else(PoisonError::into_inner) = Some(wr);
        *dev.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(t);
        Ok(Arc::new(dev))
    }

    /// What the interrupt thread does after each interrupt: re-arms INTx,
    /// or, while the receiver is disabled, puts the re-arm off until the
    /// `RCTL` write that enables it (QEMU's e1000 drops the frames it holds
    /// for a disabled receiver on any write of the PCI command register;
    /// the guide's QEMU chapter).
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] on a failed configuration access.
    pub fn rearm_intx(&self) -> Result<(), UioError> {
        self.shared.rearm_intx()
    }

    /// The PCI function.
    pub fn pci(&self) -> &PciFunction {
        &self.shared.pci
    }

    /// The raw registers: BAR 0 without the reset sequence the [`Regs`]
    /// implementation of `UioDevice` adds to `CTRL.RST`.
    pub fn mmio(&self) -> &Mmio {
        &self.shared.mmio
    }

    /// The packet buffers, in DMA memory.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The DMA memory allocator (hugepages).
    pub fn dma(&self) -> &DmaAllocator {
        &self.dma
    }

    /// Allocates a descriptor ring of `ndesc` descriptors in DMA memory;
    /// returns its bus address (for `RDBAL`/`TDBAL`) and the ring, as the
    /// simulated device's `dma_alloc` does.
    ///
    /// # Errors
    ///
    /// [`UioError::Dma`] if no DMA memory can be had.
    pub fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), UioError> {
        let (bus, ring) = self.dma.ring(ndesc)?;
        Ok((bus, Arc::new(ring)))
    }

    /// Global reset (`CTRL.RST`), then every cause masked and the pending
    /// ones cleared. Returns once `RST` has self-cleared.
    ///
    /// # Errors
    ///
    /// [`UioError::Device`] if `RST` is still set after 100 ms.
    pub fn reset(&self) -> Result<(), UioError> {
        self.shared.reset()?;
        let r = &self.shared.mmio;
        let _ = r.read(Reg::ICR);
        r.write(Reg::CTRL, r.read(Reg::CTRL) | CTRL_SLU);
        Ok(())
    }

    /// The MAC address in receive address entry 0 (loaded from the EEPROM
    /// at reset), or `None` if the entry is not marked valid.
    pub fn mac(&self) -> Option<[u8; 6]> {
        let lo = self.shared.mmio.read(RAL0).to_le_bytes();
        let hi = self.shared.mmio.read(RAH0);
        (hi & RAH_AV != 0).then(|| {
            let h = hi.to_le_bytes();
            [lo[0], lo[1], lo[2], lo[3], h[0], h[1]]
        })
    }

    /// Whether `STATUS.LU` reports the link up.
    pub fn link_up(&self) -> bool {
        self.shared.mmio.read(Reg::STATUS) & STATUS_LU != 0
    }

    /// Hooks the driver's interrupt handler (`pci_intr_establish`). The
    /// device keeps only a weak reference, upgraded inside the gate.
    pub fn establish(&self, handler: Weak<dyn IntrHandler>) {
        self.shared.line.establish(handler);
    }

    /// Unhooks the handler and waits for a call in flight.
    pub fn disestablish(&self) {
        self.shared.line.disestablish();
    }

    /// Returns once every handler call that started before has finished.
    pub fn intr_barrier(&self) {
        self.shared.line.barrier();
    }

    /// Interrupt counters.
    pub fn stats(&self) -> UioStats {
        let s = &self.shared;
        UioStats {
            interrupts: s.interrupts.load(Ordering::Relaxed),
            stray: s.stray.load(Ordering::Relaxed),
            unclaimed: s.unclaimed.load(Ordering::Relaxed),
        }
    }

    /// Stops the interrupt thread and masks the device. Idempotent.
    pub fn shutdown(&self) {
        self.shared.mmio.write(Reg::IMC, !0);
        // Closing the pipe's write end wakes the thread's poll.
        drop(
            self.stop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(t) = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = t.join();
        }
    }
}

/// The device's registers as the driver sees them: the MMIO of BAR 0, with
/// one exception. A write with `CTRL.RST` set runs the whole reset sequence
/// of `em_reset_hw` (mask every cause, disable the receive and transmit
/// units, reset, wait for `RST` to self-clear), so that when the write
/// returns the device no longer touches the rings, as the driver's stop
/// order requires. QEMU's e1000 needs it: its `CTRL.RST` resets nothing
/// (rings, `RCTL`, `TCTL` and `IMS` keep their values, see the guide's
/// QEMU chapter), so only clearing `RCTL.EN` and `TCTL.EN` stops its DMA.
impl Regs for UioDevice {
    fn read(&self, reg: Reg) -> u32 {
        self.shared.mmio.read(reg)
    }

    fn write(&self, reg: Reg, value: u32) {
        if reg == Reg::RCTL {
            self.shared.write_rctl(value);
        } else if reg == Reg::CTRL && value & CTRL_RST != 0 {
            if let Err(e) = self.shared.reset() {
                // A device that does not come out of reset cannot be driven;
                // the driver's stop cannot fail, so say it loudly.
                panic!("{}: {e}", self.shared.pci.bdf());
            }
            self.shared.mmio.write(Reg::CTRL, value & !CTRL_RST);
        } else {
            self.shared.mmio.write(reg, value);
        }
    }
}

impl Drop for UioDevice {
    fn drop(&mut self) {
        self.shutdown();
        // Stop DMA before the memory the device was given can be reused.
        let _ = self.reset();
        if let Ok(c) = self.shared.pci.command() {
            let _ = self.shared.pci.set_command(c & !PCI_COMMAND_MASTER);
        }
    }
}

impl Shared {
    /// `em_reset_hw`: every cause masked, receive and transmit units off
    /// (on QEMU this is what stops DMA: register writes are handled under
    /// QEMU's global lock, so no receive is in progress once `RCTL` is
    /// written), then `CTRL.RST`, polled until it self-clears.
    fn reset(&self) -> Result<(), UioError> {
        let r = &self.mmio;
        r.write(Reg::IMC, !0);
        self.write_rctl(0);
        r.write(Reg::TCTL, 0);
        r.write(Reg::CTRL, CTRL_RST);
        let t = Instant::now();
        while r.read(Reg::CTRL) & CTRL_RST != 0 {
            if t.elapsed() > Duration::from_millis(100) {
                return Err(UioError::Device("CTRL.RST did not self-clear".into()));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        r.write(Reg::IMC, !0);
        Ok(())
    }

    /// Writes `RCTL`, and when it enables the receiver, makes the re-arm of
    /// INTx that [`rearm_intx`](Shared::rearm_intx) put off.
    fn write_rctl(&self, value: u32) {
        let mut rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        self.mmio.write(Reg::RCTL, value);
        rx.enabled = value & RCTL_EN != 0;
        if rx.enabled && rx.rearm_pending {
            rx.rearm_pending = false;
            // Nothing to tell the caller (a register write cannot fail):
            // the interrupt thread's next re-arm retries.
            let _ = self.pci.unmask_intx();
        }
    }

    /// Re-arms INTx after an interrupt (clears the INTx-disable bit the
    /// kernel's handler set), unless the receiver is disabled: then the
    /// re-arm waits for the `RCTL` write that enables it.
    ///
    /// Because QEMU's e1000 flushes its queue of frames held for the NIC
    /// on every write of the PCI command register with bus mastering on,
    /// and a flush into a disabled receiver drops every held frame without
    /// a counter. A handler that ran just before `stop` masked the causes
    /// re-arms after `stop`'s interrupt barrier (the re-arm is outside the
    /// gate), so a stopped interface lost the frames its peer sent while it
    /// was down. With the causes masked and the receiver off, nothing needs
    /// the line until `init` enables both again.
    fn rearm_intx(&self) -> Result<(), UioError> {
        let mut rx = self.rx.lock().unwrap_or_else(PoisonError::into_inner);
        if rx.enabled {
            self.pci.unmask_intx()
        } else {
            rx.rearm_pending = true;
            Ok(())
        }
    }

    /// Blocks until `/dev/uioN` reports an interrupt (`Some`) or the stop
    /// pipe closes (`None`). No timeout: no polling loop.
    fn wait(&self, stop: &OwnedFd) -> Option<u32> {
        let mut fds = [
            libc::pollfd {
                fd: self.uio.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: stop.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        loop {
            // SAFETY: `fds` is a valid array of two pollfds for the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
            if n < 0 {
                if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return None;
            }
            if fds[1].revents != 0 {
                return None;
            }
            if fds[0].revents & libc::POLLIN != 0 {
                let mut b = [0u8; 4];
                // The read returns the total interrupt count and consumes
                // the event.
                return (&self.uio)
                    .read_exact(&mut b)
                    .ok()
                    .map(|()| u32::from_ne_bytes(b));
            }
            if fds[0].revents != 0 {
                return None;
            }
        }
    }

    fn intr_loop(&self, stop: OwnedFd) {
        while self.wait(&stop).is_some() {
            // Nobody to clear the cause: INTx is level-triggered, so
            // unmasking with a cause pending would storm. Mask the causes at
            // the device; the next init unmasks them. The mask is written
            // before a new handler can be established (deliver_or), so it
            // never lands after that driver's init has unmasked them.
            let unclaimed = || {
                self.unclaimed.fetch_add(1, Ordering::Relaxed);
                self.mmio.write(Reg::IMC, !0);
            };
            if let Some(claimed) = self.line.deliver_or(unclaimed) {
                self.interrupts.fetch_add(1, Ordering::Relaxed);
                if !claimed {
                    self.stray.fetch_add(1, Ordering::Relaxed);
                }
            }
            // Re-arm after the handler read ICR: a cause raised since then
            // keeps the line asserted and interrupts again at once.
            if self.rearm_intx().is_err() {
                return;
            }
        }
    }
}

/// The uio backend under the driver's seam: BAR 0 registers (with the reset
/// sequence above), hugepage DMA memory, the INTx line through `/dev/uioN`.
impl Hardware for UioDevice {
    type Error = UioError;
    type Kernel = StdKernel;
    type Pool = Pool;

    /// The 82540EM has one queue pair.
    fn queues(&self) -> usize {
        1
    }

    fn pool(&self) -> &Pool {
        UioDevice::pool(self)
    }

    fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), UioError> {
        UioDevice::dma_alloc(self, ndesc)
    }

    fn intr_establish(&self, handler: Weak<dyn IntrHandler>) {
        self.establish(handler);
    }

    fn intr_disestablish(&self) {
        self.disestablish();
    }

    fn intr_barrier(&self) {
        UioDevice::intr_barrier(self);
    }
}
