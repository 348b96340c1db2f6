//! The kernel heap: `linked_list_allocator`'s first-fit [`Heap`] over the
//! largest free RAM region the boot memory map reports, under an
//! [`IPL_HIGH`] lock so interrupt handlers may allocate too (a handler that
//! interrupted a holder on the same CPU would otherwise spin forever).
//!
//! Memory is identity-mapped, so a heap pointer is also the bus address a
//! device's DMA uses.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

use crate::services::ipl::{IPL_HIGH, Mutex};

/// The most RAM given to the heap.
const MAX_HEAP: u64 = 64 << 20;

struct KernelHeap(Mutex<IPL_HIGH, Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

/// Hands the page-aligned part of `[start, start + len)` (capped at 64 MiB)
/// to the heap; returns the size used.
///
/// # Safety
///
/// Once; the range is RAM that nothing else uses, for the whole run.
pub(crate) unsafe fn init(start: u64, len: u64) -> usize {
    let end = start.saturating_add(len);
    let start = start.next_multiple_of(4096);
    let len = end.saturating_sub(start).min(MAX_HEAP) as usize & !4095;
    // SAFETY: the caller gives unused, identity-mapped RAM, once.
    unsafe { HEAP.0.lock().init(start as usize as *mut u8, len) };
    len
}

/// Bytes in use and free.
pub(crate) fn usage() -> (usize, usize) {
    let h = HEAP.0.lock();
    (h.used(), h.free())
}

// SAFETY: every allocation comes from `Heap::allocate_first_fit` under the
// lock, which returns a block of at least `layout.size()` bytes aligned to
// `layout.align()` or an error (mapped to null), and a block is given back
// with the layout it was allocated with.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .allocate_first_fit(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: `ptr` came from `alloc` with this `layout` (GlobalAlloc's contract).
            unsafe { self.0.lock().deallocate(p, layout) };
        }
    }
}
