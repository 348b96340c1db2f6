//! DMA memory from user space: 2 MiB hugepages, locked, translated to
//! physical (= bus, without an IOMMU) addresses through `/proc/self/pagemap`.
//!
//! A hugepage is physically contiguous and never moves or swaps while it is
//! mapped and locked, so a device may be handed addresses inside it. The
//! allocator carves chunks out of hugepages (a chunk never spans two) and
//! keeps every page mapped until the allocator itself is dropped: the caller
//! must stop the device first.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, PoisonError};

use super::UioError;
use mpsafe_em_sim::desc::{DESC_SIZE, DescRing};
use mpsafe_em_sim::pool::{DmaRegion, Pool};

/// Size of one hugepage.
pub const HUGEPAGE: usize = 2 << 20;
const PAGE: usize = 4096;

/// One locked hugepage and its physical address.
#[derive(Debug)]
struct Hugepage {
    virt: NonNull<u8>,
    phys: u64,
}

// SAFETY: the mapping is plain memory owned by the allocator; who may touch
// which part is decided by the chunks handed out.
unsafe impl Send for Hugepage {}
// SAFETY: as above.
unsafe impl Sync for Hugepage {}

impl Hugepage {
    fn new() -> Result<Self, UioError> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                HUGEPAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(UioError::Dma(format!(
                "mmap of a 2 MiB hugepage: {} (reserve some: echo 16 > /proc/sys/vm/nr_hugepages)",
                std::io::Error::last_os_error()
            )));
        }
        let virt = NonNull::new(p.cast::<u8>()).expect("mmap never returns null on success");
        // Owns the mapping from here on: an error below unmaps it.
        let mut page = Self { virt, phys: 0 };
        // SAFETY: the whole mapping was just created with this length.
        if unsafe { libc::mlock(p, HUGEPAGE) } != 0 {
            return Err(UioError::Dma(format!(
                "mlock: {}",
                std::io::Error::last_os_error()
            )));
        }
        // Touch it so the page is present, zeroed, before it is translated.
        // SAFETY: in bounds of the fresh writable mapping.
        unsafe { std::ptr::write_bytes(virt.as_ptr(), 0, HUGEPAGE) };
        let phys = translate(virt.as_ptr() as usize)?;
        page.phys = phys;
        // A hugepage is contiguous; check it, since a device writing past a
        // page boundary into someone else's memory is the worst failure.
        for off in (PAGE..HUGEPAGE).step_by(64 * PAGE) {
            let p = translate(virt.as_ptr() as usize + off)?;
            if p != phys + off as u64 {
                return Err(UioError::Dma(format!(
                    "hugepage not physically contiguous at offset {off:#x}"
                )));
            }
        }
        Ok(page)
    }
}

impl Drop for Hugepage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe {
            libc::munmap(self.virt.as_ptr().cast(), HUGEPAGE);
        }
    }
}

/// The physical address of virtual address `va` of this process.
fn translate(va: usize) -> Result<u64, UioError> {
    let f = File::open("/proc/self/pagemap").map_err(|e| UioError::io("/proc/self/pagemap", e))?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, (va / PAGE * 8) as u64)
        .map_err(|e| UioError::io("/proc/self/pagemap", e))?;
    let entry = u64::from_le_bytes(b);
    // Bit 63: present; bits 0..55: page frame number (zero without
    // CAP_SYS_ADMIN, which is why the test runs as root).
    let pfn = entry & ((1 << 55) - 1);
    if entry >> 63 == 0 || pfn == 0 {
        return Err(UioError::Dma(format!(
            "no physical frame for {va:#x} in /proc/self/pagemap (not present, or not root)"
        )));
    }
    Ok(pfn * PAGE as u64 + (va % PAGE) as u64)
}

/// A piece of DMA memory: where the CPU sees it and where the device does.
#[derive(Clone, Copy, Debug)]
pub struct DmaChunk {
    /// CPU address.
    pub virt: NonNull<u8>,
    /// Bus address (physical: no IOMMU).
    pub bus: u64,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: a chunk names memory; accesses through it are the holder's
// responsibility, as with any DMA buffer shared with a device.
unsafe impl Send for DmaChunk {}
// SAFETY: as above.
unsafe impl Sync for DmaChunk {}

#[derive(Debug, Default)]
struct Arena {
    pages: Vec<Hugepage>,
    /// Bytes used in the last page.
    used: usize,
}

/// Hands out DMA chunks from hugepages. Cloning shares the allocator; the
/// pages live until the last clone is dropped.
#[derive(Clone, Debug, Default)]
pub struct DmaAllocator {
    arena: Arc<Mutex<Arena>>,
}

impl DmaAllocator {
    /// An allocator with no pages yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `len` bytes aligned to `align` (a power of two, at most a hugepage),
    /// zeroed, never spanning two hugepages.
    ///
    /// # Errors
    ///
    /// [`UioError::Dma`] if `len` exceeds a hugepage or no hugepage can be
    /// had.
    pub fn alloc(&self, len: usize, align: usize) -> Result<DmaChunk, UioError> {
        assert!(
            align.is_power_of_two(),
            "alignment {align} not a power of two"
        );
        if len == 0 || len > HUGEPAGE || align > HUGEPAGE {
            return Err(UioError::Dma(format!(
                "chunk of {len} bytes aligned to {align}: must fit one 2 MiB hugepage"
            )));
        }
        let mut a = self.arena.lock().unwrap_or_else(PoisonError::into_inner);
        let mut start = a.used.next_multiple_of(align);
        if a.pages.is_empty() || start + len > HUGEPAGE {
            a.pages.push(Hugepage::new()?);
            start = 0;
        }
        a.used = start + len;
        let page = a.pages.last().expect("just ensured");
        Ok(DmaChunk {
            // SAFETY: start + len <= HUGEPAGE: inside the page's mapping.
            virt: unsafe { NonNull::new_unchecked(page.virt.as_ptr().add(start)) },
            bus: page.phys + start as u64,
            len,
        })
    }

    /// Hugepages mapped so far.
    pub fn pages(&self) -> usize {
        self.arena
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pages
            .len()
    }
}

impl DmaAllocator {
    /// A descriptor ring of `n` descriptors in DMA memory (128-byte aligned,
    /// as `RDBAL`/`TDBAL` with `RDLEN`/`TDLEN` in 128-byte units want it),
    /// and its bus address.
    ///
    /// # Errors
    ///
    /// As [`alloc`](DmaAllocator::alloc).
    pub fn ring(&self, n: usize) -> Result<(u64, DescRing), UioError> {
        let c = self.alloc(n * DESC_SIZE, 128)?;
        // SAFETY: the chunk is 128-byte aligned, n descriptors long, handed
        // out once, and its hugepage stays mapped while the allocator (the
        // owner given here) lives.
        let ring = unsafe { DescRing::from_dma(c.virt, n, Box::new(self.clone())) };
        Ok((c.bus, ring))
    }

    /// A packet buffer pool of `count` buffers of `buf_size` bytes in DMA
    /// memory (whole hugepages, buffers aligned to their size).
    ///
    /// # Errors
    ///
    /// As [`alloc`](DmaAllocator::alloc).
    pub fn pool(&self, count: usize, buf_size: usize) -> Result<Pool, UioError> {
        let per_page = HUGEPAGE / buf_size.max(1);
        let mut regions = Vec::new();
        let mut left = count;
        while left > 0 {
            let n = left.min(per_page);
            let c = self.alloc(n * buf_size, buf_size.next_power_of_two().min(HUGEPAGE))?;
            regions.push(DmaRegion {
                virt: c.virt,
                bus: c.bus,
                len: c.len,
            });
            left -= n;
        }
        // SAFETY: disjoint chunks handed out once each, valid while the
        // allocator (the owner) lives.
        Ok(unsafe { Pool::with_dma(buf_size, &regions, Arc::new(self.clone())) })
    }
}
