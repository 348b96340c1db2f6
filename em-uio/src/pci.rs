//! A PCI function seen through sysfs: its configuration space (the command
//! register), its BAR 0 mapped for MMIO, and the `/dev/uioN` it is bound to.

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};

use super::UioError;
use mpsafe_em_sim::regs::{Reg, Regs};

const SYSFS_PCI: &str = "/sys/bus/pci/devices";
/// Offset of the 16-bit command register in configuration space.
const PCI_COMMAND: u64 = 4;
/// Command register: memory space decoding.
pub const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus mastering (the device may DMA).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Command register: INTx disable (set by `uio_pci_generic`'s handler).
pub const PCI_COMMAND_INTX_DISABLE: u16 = 1 << 10;

/// The addresses (`0000:00:03.0`) of every PCI function with this vendor and
/// device id, in bus order.
///
/// # Errors
///
/// [`UioError::Io`] if sysfs cannot be read.
pub fn find(vendor: u16, device: u16) -> Result<Vec<String>, UioError> {
    let read_id = |p: PathBuf| -> Option<u16> {
        let s = fs::read_to_string(p).ok()?;
        u16::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
    };
    let mut found = Vec::new();
    for e in fs::read_dir(SYSFS_PCI).map_err(|e| UioError::io(SYSFS_PCI, e))? {
        let e = e.map_err(|e| UioError::io(SYSFS_PCI, e))?;
        let dir = e.path();
        if read_id(dir.join("vendor")) == Some(vendor)
            && read_id(dir.join("device")) == Some(device)
        {
            found.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    Ok(found)
}

/// One PCI function: its sysfs directory and an open configuration space.
#[derive(Debug)]
pub struct PciFunction {
    bdf: String,
    dir: PathBuf,
    config: File,
}

impl PciFunction {
    /// Opens the function at `bdf` (`0000:00:03.0`).
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] if its configuration space cannot be opened.
    pub fn open(bdf: &str) -> Result<Self, UioError> {
        let dir = Path::new(SYSFS_PCI).join(bdf);
        let cfg = dir.join("config");
        let config = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&cfg)
            .map_err(|e| UioError::io(&cfg, e))?;
        Ok(Self {
            bdf: bdf.to_owned(),
            dir,
            config,
        })
    }

    /// The function's address.
    pub fn bdf(&self) -> &str {
        &self.bdf
    }

    /// Reads the command register.
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] on a failed configuration read.
    pub fn command(&self) -> Result<u16, UioError> {
        let mut b = [0u8; 2];
        self.config
            .read_exact_at(&mut b, PCI_COMMAND)
            .map_err(|e| UioError::io(self.dir.join("config"), e))?;
        Ok(u16::from_le_bytes(b))
    }

    /// Writes the command register.
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] on a failed configuration write.
    pub fn set_command(&self, v: u16) -> Result<(), UioError> {
        self.config
            .write_all_at(&v.to_le_bytes(), PCI_COMMAND)
            .map_err(|e| UioError::io(self.dir.join("config"), e))
    }

    /// Turns on memory decoding and bus mastering: before this the device
    /// cannot fetch a descriptor (`uio_pci_generic` leaves mastering off).
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] on a failed configuration access.
    pub fn enable_bus_master(&self) -> Result<(), UioError> {
        let c = self.command()?;
        self.set_command(c | PCI_COMMAND_MASTER | PCI_COMMAND_MEMORY)
    }

    /// Re-arms INTx: `uio_pci_generic` masks the line (sets INTx-disable) in
    /// its handler before it wakes `/dev/uioN`; clearing the bit lets the
    /// next level interrupt through. (On this kernel the uio `irqcontrol`
    /// write is not implemented: ENOSYS.)
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] on a failed configuration access.
    pub fn unmask_intx(&self) -> Result<(), UioError> {
        let c = self.command()?;
        if c & PCI_COMMAND_INTX_DISABLE != 0 {
            self.set_command(c & !PCI_COMMAND_INTX_DISABLE)?;
        }
        Ok(())
    }

    /// The `/dev/uioN` this function is bound to.
    ///
    /// # Errors
    ///
    /// [`UioError::NotBound`] if it is not bound to a uio driver.
    pub fn uio_dev(&self) -> Result<PathBuf, UioError> {
        let uio = self.dir.join("uio");
        let name = fs::read_dir(&uio)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.file_name());
        match name {
            Some(n) => Ok(Path::new("/dev").join(n)),
            None => Err(UioError::NotBound(self.bdf.clone())),
        }
    }

    /// Maps BAR 0 (`resource0`) for MMIO.
    ///
    /// # Errors
    ///
    /// [`UioError::Io`] if the resource cannot be opened or mapped.
    pub fn map_bar0(&self) -> Result<Mmio, UioError> {
        let path = self.dir.join("resource0");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| UioError::io(&path, e))?;
        let len = f.metadata().map_err(|e| UioError::io(&path, e))?.len() as usize;
        // SAFETY: a fresh shared mapping of the BAR file; the kernel checks
        // the length and offset against the BAR. The pointer is only used
        // for volatile 32-bit accesses within `len`.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(UioError::io(&path, std::io::Error::last_os_error()));
        }
        Ok(Mmio {
            base: NonNull::new(p.cast()).expect("mmap never returns null on success"),
            len,
        })
    }
}

/// BAR 0 mapped into this process: the device's registers.
///
/// Every access is one volatile, naturally aligned 32-bit load or store, as
/// the 8254x requires. Ordering (the [`Regs`] contract): a write is preceded
/// by a full fence, so descriptor stores made before a doorbell (`TDT`,
/// `RDT`) reach memory before the device can see the doorbell; a read is
/// followed by an acquire fence, so the descriptors read after it are not
/// read early.
#[derive(Debug)]
pub struct Mmio {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is device memory that any thread may access with
// volatile loads and stores; `Mmio` owns it until drop.
unsafe impl Send for Mmio {}
// SAFETY: as above; concurrent register accesses are what a device sees from
// several CPUs anyway, and each is a single 32-bit access.
unsafe impl Sync for Mmio {}

impl Mmio {
    fn ptr(&self, off: u32) -> *mut u32 {
        let off = off as usize;
        assert!(
            off.is_multiple_of(4) && off + 4 <= self.len,
            "register {off:#x} outside BAR 0"
        );
        // SAFETY: in bounds of the mapping, checked above.
        unsafe { self.base.as_ptr().add(off).cast() }
    }

    /// Size of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping is empty (never, for an 8254x).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Regs for Mmio {
    fn read(&self, reg: Reg) -> u32 {
        // SAFETY: an aligned in-bounds address of the live mapping.
        let v = unsafe { self.ptr(reg.0).read_volatile() };
        fence(Ordering::Acquire);
        v
    }

    fn write(&self, reg: Reg, value: u32) {
        // SeqCst: a full barrier (mfence), so every store to DMA memory made
        // before this doorbell is globally visible before it.
        fence(Ordering::SeqCst);
        // SAFETY: an aligned in-bounds address of the live mapping.
        unsafe { self.ptr(reg.0).write_volatile(value) }
    }
}

impl Drop for Mmio {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map_bar0`, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
