//! Packet buffers in DMA memory: [`DmaPool`], the driver's
//! [`BufferPool`], and [`DmaBuf`], its [`Buffer`].
//!
//! One contiguous block of the identity-mapped heap holds every buffer, so
//! a buffer's bus address is its address: `base + index * buf_size`. Each
//! buffer has a state (free, held by software, on a receive ring, on a
//! transmit ring, leaked) that every move checks, so the pool's table
//! accounts for every buffer at any time ([`PoolStats`]).
//!
//! The free list is a mutex at [`IPL_NET`], declared at the driver's
//! [`PoolMutex`] level: receive refill allocates in the interrupt handler,
//! and the senders allocate in thread context on the same CPU.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, AtomicU16, AtomicU64, Ordering};

use mpsafe_em::levels::PoolMutex;
use mpsafe_em::{Buffer, BufferPool, Ring};
use mpsafe_order::{Ctx, LockBefore, Ordered};

use crate::services::ipl::{IPL_NET, Mutex};

/// Where a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum State {
    Free = 0,
    Held = 1,
    OnRx = 2,
    OnTx = 3,
    Leaked = 4,
}

impl State {
    fn on(ring: Ring) -> Self {
        match ring {
            Ring::Rx => State::OnRx,
            Ring::Tx => State::OnTx,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => State::Free,
            1 => State::Held,
            2 => State::OnRx,
            3 => State::OnTx,
            _ => State::Leaked,
        }
    }
}

/// The buffers' memory: one heap block, freed with the pool.
struct Memory {
    base: NonNull<u8>,
    layout: Layout,
}

// SAFETY: plain memory; who may touch which buffer is the state table's
// business (one owner per buffer).
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `DmaPool::new` with this layout; the pool is
        // gone, and so is every buffer and device ring using it (each holds
        // the pool).
        unsafe { dealloc(self.base.as_ptr(), self.layout) }
    }
}

struct Inner {
    mem: Memory,
    buf_size: usize,
    count: u32,
    state: Box<[AtomicU8]>,
    len: Box<[AtomicU16]>,
    free: Ordered<PoolMutex, Mutex<IPL_NET, Vec<u32>>>,
    alloc_failures: AtomicU64,
}

impl Inner {
    /// Moves buffer `idx` from `from` to `to`.
    ///
    /// # Panics
    ///
    /// If it is not in `from`: a buffer moved twice (a driver bug).
    fn transition(&self, idx: u32, from: State, to: State) {
        // AcqRel: the owner before the move hands its writes (a frame built
        // in the buffer) to the owner after it.
        if let Err(v) = self.state[idx as usize].compare_exchange(
            from as u8,
            to as u8,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            panic!(
                "buffer {idx}: expected {from:?}, found {:?} (moving to {to:?})",
                State::from_u8(v)
            );
        }
    }

    fn addr_of(&self, idx: u32) -> u64 {
        self.mem.base.as_ptr() as u64 + u64::from(idx) * self.buf_size as u64
    }

    /// The buffer at bus address `addr`, if it is one's start.
    fn index_of(&self, addr: u64) -> Option<u32> {
        let off = addr.checked_sub(self.mem.base.as_ptr() as u64)?;
        let idx = off / self.buf_size as u64;
        (off % self.buf_size as u64 == 0 && idx < u64::from(self.count)).then_some(idx as u32)
    }
}

/// A pool of packet buffers in DMA memory; clones share it.
#[derive(Clone)]
pub struct DmaPool {
    inner: Arc<Inner>,
}

/// A buffer held by software: the frame's bytes, until it is freed or
/// posted on a ring. Dropping it instead is a leak, which the pool counts.
pub struct DmaBuf {
    /// `None` once freed or posted.
    pool: Option<Arc<Inner>>,
    idx: u32,
}

/// Where every buffer of a [`DmaPool`] is (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Buffers in the pool.
    pub total: u64,
    /// On the free list.
    pub free: u64,
    /// Held by software: a sender's hand, a send queue, the stack.
    pub held: u64,
    /// Posted on receive rings.
    pub on_rx_ring: u64,
    /// Posted on transmit rings.
    pub on_tx_ring: u64,
    /// Dropped without being freed.
    pub leaked: u64,
    /// Allocations that found the pool empty.
    pub alloc_failures: u64,
}

impl PoolStats {
    /// Buffers neither free nor leaked.
    pub fn in_use(&self) -> u64 {
        self.held + self.on_rx_ring + self.on_tx_ring
    }
}

impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buffers: {} free, {} held, {} on rx rings, {} on tx rings, {} leaked",
            self.total, self.free, self.held, self.on_rx_ring, self.on_tx_ring, self.leaked
        )
    }
}

impl DmaPool {
    /// `count` buffers of `buf_size` bytes (a multiple of 16) in one
    /// page-aligned heap block; `None` if the heap cannot give it.
    pub fn new(count: u32, buf_size: usize) -> Option<Self> {
        assert!(
            buf_size >= 64 && buf_size.is_multiple_of(16),
            "buffer size {buf_size}"
        );
        let layout = Layout::from_size_align(count as usize * buf_size, 4096).ok()?;
        if layout.size() == 0 {
            return None;
        }
        // SAFETY: `layout` has a non-zero size.
        let base = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Self {
            inner: Arc::new(Inner {
                mem: Memory { base, layout },
                buf_size,
                count,
                state: (0..count)
                    .map(|_| AtomicU8::new(State::Free as u8))
                    .collect(),
                len: (0..count).map(|_| AtomicU16::new(0)).collect(),
                free: Ordered::new(Mutex::new((0..count).rev().collect())),
                alloc_failures: AtomicU64::new(0),
            }),
        })
    }

    /// A free buffer, outside the driver's lock order (a sender).
    pub fn alloc(&self) -> Option<DmaBuf> {
        let idx = self.inner.free.unordered().lock().pop();
        self.hand_out(idx)
    }

    fn hand_out(&self, idx: Option<u32>) -> Option<DmaBuf> {
        let Some(idx) = idx else {
            self.inner.alloc_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.inner.transition(idx, State::Free, State::Held);
        self.inner.len[idx as usize].store(0, Ordering::Relaxed);
        Some(DmaBuf {
            pool: Some(Arc::clone(&self.inner)),
            idx,
        })
    }

    /// Takes `b` back for the free list; panics if it is another pool's.
    fn release(&self, mut b: DmaBuf) -> u32 {
        let p = b.pool.take().expect("a live buffer has its pool");
        assert!(
            Arc::ptr_eq(&p, &self.inner),
            "buffer {} freed into another pool",
            b.idx
        );
        self.inner.transition(b.idx, State::Held, State::Free);
        b.idx
    }
}

impl DmaBuf {
    fn inner(&self) -> &Inner {
        self.pool.as_ref().expect("a live buffer has its pool")
    }

    fn ptr(&self) -> *mut u8 {
        let inner = self.inner();
        // In bounds: `idx < count`.
        inner
            .mem
            .base
            .as_ptr()
            .wrapping_add(self.idx as usize * inner.buf_size)
    }

    /// The frame (`len()` bytes).
    pub fn data(&self) -> &[u8] {
        let len = self.len().min(self.inner().buf_size);
        // SAFETY: the buffer is Held by this `DmaBuf` alone (the state table
        // admits one owner), so neither the device nor another owner
        // writes it; `&self` excludes `data_mut`.
        unsafe { core::slice::from_raw_parts(self.ptr(), len) }
    }

    /// The whole buffer, to build a frame in; then [`set_len`](Buffer::set_len).
    pub fn data_mut(&mut self) -> &mut [u8] {
        let n = self.inner().buf_size;
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        unsafe { core::slice::from_raw_parts_mut(self.ptr(), n) }
    }
}

impl Drop for DmaBuf {
    fn drop(&mut self) {
        if let Some(p) = &self.pool {
            // Neither freed nor posted: lost. Never handed out again.
            p.transition(self.idx, State::Held, State::Leaked);
        }
    }
}

impl mpsafe_ifqueue::Packet for DmaBuf {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl Buffer for DmaBuf {
    fn len(&self) -> usize {
        usize::from(self.inner().len[self.idx as usize].load(Ordering::Relaxed))
    }

    fn set_len(&mut self, len: u16) {
        self.inner().len[self.idx as usize].store(len, Ordering::Relaxed);
    }
}

impl BufferPool for DmaPool {
    type Buf = DmaBuf;
    type Stats = PoolStats;

    fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    fn owns(&self, buf: &DmaBuf) -> bool {
        buf.pool
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(p, &self.inner))
    }

    fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<DmaBuf> {
        let idx = ctx.lock(&self.inner.free).0.pop();
        self.hand_out(idx)
    }

    fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = DmaBuf>,
    ) {
        let idx: Vec<u32> = bufs.into_iter().map(|b| self.release(b)).collect();
        if !idx.is_empty() {
            ctx.lock(&self.inner.free).0.extend(idx);
        }
    }

    fn free_all(&self, bufs: impl IntoIterator<Item = DmaBuf>) {
        let idx: Vec<u32> = bufs.into_iter().map(|b| self.release(b)).collect();
        if !idx.is_empty() {
            self.inner.free.unordered().lock().extend(idx);
        }
    }

    fn post(&self, mut buf: DmaBuf, ring: Ring) -> u64 {
        let p = buf.pool.take().expect("a live buffer has its pool");
        assert!(
            Arc::ptr_eq(&p, &self.inner),
            "buffer {} posted through another pool",
            buf.idx
        );
        self.inner.transition(buf.idx, State::Held, State::on(ring));
        self.inner.addr_of(buf.idx)
    }

    unsafe fn reclaim(&self, addr: u64, ring: Ring) -> DmaBuf {
        let idx = self
            .inner
            .index_of(addr)
            .unwrap_or_else(|| panic!("bus address {addr:#x} names no buffer of this pool"));
        self.inner.transition(idx, State::on(ring), State::Held);
        DmaBuf {
            pool: Some(Arc::clone(&self.inner)),
            idx,
        }
    }

    fn stats(&self) -> PoolStats {
        let mut s = PoolStats {
            total: u64::from(self.inner.count),
            alloc_failures: self.inner.alloc_failures.load(Ordering::Relaxed),
            ..PoolStats::default()
        };
        for st in self.inner.state.iter() {
            match State::from_u8(st.load(Ordering::Relaxed)) {
                State::Free => s.free += 1,
                State::Held => s.held += 1,
                State::OnRx => s.on_rx_ring += 1,
                State::OnTx => s.on_tx_ring += 1,
                State::Leaked => s.leaked += 1,
            }
        }
        s
    }
}
