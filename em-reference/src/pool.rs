//! The packet buffer pool: every buffer counted, every leak caught.
//!
//! A fixed number of buffers ("mbuf clusters"), each with an owner state that
//! changes only by compare-and-swap, so a double free, a buffer reclaimed
//! from a ring it is not on, or DMA into a buffer the device does not own is
//! caught where it happens. The free list sits behind its own mutex, like a
//! kernel `pool(9)`; this is why drivers defer frees until they have released
//! their own locks (seed 000). The mutex sits at level
//! [`PoolMutex`], last in the driver's lock order: the driver takes it
//! through a context (`alloc_in`, `free_all_in`); the stack and the device
//! use the plain API.
//!
//! A buffer held by software is an [`Mbuf`]. It must be given back with
//! [`Mbuf::free`] (or [`Pool::free_all`]); dropping one without freeing it is
//! a leak, as forgetting `m_freem` is in a kernel: the pool counts it and
//! never hands that buffer out again.
//!
//! # Buffer addresses
//!
//! A pool from [`Pool::new`] (the simulation) has no buffer memory: a
//! buffer's "bus address" is its index and its contents are a length and a
//! tag. A pool from [`Pool::with_dma`] (a real device) has every buffer in
//! DMA memory: the address a descriptor carries is the buffer's bus address,
//! [`Pool::reclaim`] maps it back, and [`Mbuf::data`]/[`Mbuf::data_mut`]
//! reach the bytes. The driver code is the same for both.

use std::any::Any;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use mpsafe_order::{Ctx, LockBefore, Ordered};

use crate::driver::order::PoolMutex;

/// Where a buffer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum BufState {
    /// On the pool's free list.
    Free = 0,
    /// Held by software: in flight to the stack, queued for transmit, being
    /// processed.
    Held = 1,
    /// Posted on a receive ring: the device may write it.
    OnRxRing = 2,
    /// Posted on a transmit ring: the device may read it.
    OnTxRing = 3,
    /// Dropped without being freed; never handed out again.
    Leaked = 4,
}

impl BufState {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Free,
            1 => Self::Held,
            2 => Self::OnRxRing,
            3 => Self::OnTxRing,
            _ => Self::Leaked,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    state: AtomicU8,
    /// The "buffer contents": frame length and a 64-bit tag (sequence
    /// number) standing for the payload.
    len: AtomicU32,
    tag: AtomicU64,
}

/// The free list's mutex, as the lock order sees it.
#[derive(Debug)]
struct FreeList(Mutex<Vec<u32>>);

impl mpsafe_order::Lock for FreeList {
    type Guard<'a> = MutexGuard<'a, Vec<u32>>;

    fn lock(&self) -> MutexGuard<'_, Vec<u32>> {
        // The free list holds plain indices: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, Vec<u32>>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    slots: Box<[Slot]>,
    free: Ordered<PoolMutex, FreeList>,
    buf_size: usize,
    alloc_failures: AtomicU64,
    dma_errors: AtomicU64,
    dma: Option<DmaMap>,
}

/// A contiguous piece of DMA memory handed to [`Pool::with_dma`].
#[derive(Clone, Copy, Debug)]
pub struct DmaRegion {
    /// Where the CPU sees it.
    pub virt: NonNull<u8>,
    /// Where the device sees it (the bus address).
    pub bus: u64,
    /// Length in bytes.
    pub len: usize,
}

/// The buffers of a DMA-backed pool: runs of consecutive buffers, each run
/// inside one region, with the memory's owner kept alive.
struct DmaMap {
    /// `(bus address of the run, CPU address of the run, first index, count)`,
    /// sorted by bus address.
    runs: Vec<(u64, NonNull<u8>, u32, u32)>,
    _owner: Arc<dyn Any + Send + Sync>,
}

// SAFETY: the map only names memory; accesses go through the buffer
// ownership states (one owner at a time), as for the slots.
unsafe impl Send for DmaMap {}
// SAFETY: as above.
unsafe impl Sync for DmaMap {}

impl fmt::Debug for DmaMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DmaMap")
            .field("runs", &self.runs.len())
            .finish_non_exhaustive()
    }
}

impl DmaMap {
    fn run_of(&self, idx: u32) -> &(u64, NonNull<u8>, u32, u32) {
        self.runs
            .iter()
            .find(|r| (r.2..r.2 + r.3).contains(&idx))
            .expect("every index is in a run")
    }

    fn bus(&self, idx: u32, size: usize) -> u64 {
        let r = self.run_of(idx);
        r.0 + u64::from(idx - r.2) * size as u64
    }

    fn virt(&self, idx: u32, size: usize) -> NonNull<u8> {
        let r = self.run_of(idx);
        // SAFETY: idx is in this run, so the offset is inside its region.
        unsafe { r.1.add((idx - r.2) as usize * size) }
    }

    /// The buffer whose first byte is at `bus`, if any.
    fn index(&self, bus: u64, size: usize) -> Option<u32> {
        let i = self.runs.partition_point(|r| r.0 <= bus).checked_sub(1)?;
        let r = &self.runs[i];
        let off = bus - r.0;
        let n = off / size as u64;
        (off % size as u64 == 0 && n < u64::from(r.3)).then(|| r.2 + n as u32)
    }
}

/// A pool of packet buffers shared by the driver, the device (its "DMA") and
/// the stack. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// A snapshot of where every buffer of a [`Pool`] is.
///
/// Exact when nothing runs; a moving picture otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Buffers the pool was created with.
    pub total: u64,
    /// On the free list.
    pub free: u64,
    /// Held by software (in flight to the stack, on a send queue).
    pub held: u64,
    /// Posted on receive rings.
    pub on_rx_ring: u64,
    /// Posted on transmit rings.
    pub on_tx_ring: u64,
    /// Dropped without being freed.
    pub leaked: u64,
    /// Allocations refused because the pool was empty.
    pub alloc_failures: u64,
    /// Device accesses to a buffer it did not own (a driver bug).
    pub dma_errors: u64,
}

impl PoolStats {
    /// Buffers not on the free list and not leaked.
    pub fn in_use(&self) -> u64 {
        self.held + self.on_rx_ring + self.on_tx_ring
    }
}

impl Pool {
    /// A pool of `count` buffers of `buf_size` bytes each.
    ///
    /// # Panics
    ///
    /// If `count` does not fit in a `u32`.
    pub fn new(count: usize, buf_size: usize) -> Self {
        let n = u32::try_from(count).expect("pool larger than 2^32 buffers");
        Self {
            inner: Arc::new(Inner {
                slots: (0..count).map(|_| Slot::default()).collect(),
                // LIFO: the most recently freed (cache-hot) buffer goes out first.
                free: Ordered::new(FreeList(Mutex::new((0..n).rev().collect()))),
                buf_size,
                alloc_failures: AtomicU64::new(0),
                dma_errors: AtomicU64::new(0),
                dma: None,
            }),
        }
    }

    /// A pool whose buffers of `buf_size` bytes are carved from `regions`
    /// of DMA memory (as many as fit whole in each), for a real device:
    /// descriptors carry each buffer's bus address.
    ///
    /// # Safety
    ///
    /// Each region must be memory readable and writable through `virt` for
    /// `len` bytes, reachable by the device at `bus`, not overlapping another
    /// region, and kept valid by `owner` (held by the pool until its last
    /// clone is dropped). Nothing else may access it meanwhile.
    ///
    /// # Panics
    ///
    /// If `buf_size` is zero, or the buffers number more than `u32::MAX`.
    pub unsafe fn with_dma(
        buf_size: usize,
        regions: &[DmaRegion],
        owner: Arc<dyn Any + Send + Sync>,
    ) -> Self {
        assert!(buf_size > 0, "zero-sized buffers");
        let mut runs = Vec::new();
        let mut count = 0u32;
        for r in regions {
            let n = u32::try_from(r.len / buf_size).expect("more than 2^32 buffers");
            if n > 0 {
                runs.push((r.bus, r.virt, count, n));
                count = count.checked_add(n).expect("more than 2^32 buffers");
            }
        }
        runs.sort_by_key(|r| r.0);
        let mut pool = Self::new(count as usize, buf_size);
        Arc::get_mut(&mut pool.inner)
            .expect("a new pool is not shared")
            .dma = Some(DmaMap {
            runs,
            _owner: owner,
        });
        pool
    }

    /// Whether the buffers are in DMA memory ([`Pool::with_dma`]).
    pub fn is_dma(&self) -> bool {
        self.inner.dma.is_some()
    }

    /// The address a descriptor carries for buffer `idx`: its bus address,
    /// or the index itself in a pool without DMA memory.
    fn addr_of(&self, idx: u32) -> u64 {
        match &self.inner.dma {
            Some(d) => d.bus(idx, self.inner.buf_size),
            None => u64::from(idx),
        }
    }

    /// The buffer index a descriptor address names, if any.
    fn index_of(&self, addr: u64) -> Option<u32> {
        match &self.inner.dma {
            Some(d) => d.index(addr, self.inner.buf_size),
            None => u32::try_from(addr)
                .ok()
                .filter(|&i| (i as usize) < self.inner.slots.len()),
        }
    }

    /// Size of every buffer in bytes.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Number of buffers the pool was created with.
    pub fn total(&self) -> usize {
        self.inner.slots.len()
    }

    fn free_list(&self) -> MutexGuard<'_, Vec<u32>> {
        mpsafe_order::Lock::lock(self.inner.free.unordered())
    }

    /// Takes a free buffer, or `None` (counted) if the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        let idx = self.free_list().pop();
        self.alloc_from(idx)
    }

    /// [`alloc`](Pool::alloc), the free-list mutex taken from `ctx` at its
    /// level in the driver's order (refill allocates under the rx mutex).
    #[track_caller]
    pub(crate) fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<Mbuf> {
        let idx = ctx.lock(&self.inner.free).0.pop();
        self.alloc_from(idx)
    }

    fn alloc_from(&self, idx: Option<u32>) -> Option<Mbuf> {
        let Some(idx) = idx else {
            self.inner.alloc_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.transition(idx, BufState::Free, BufState::Held);
        Some(Mbuf {
            pool: Some(self.clone()),
            idx,
        })
    }

    /// Frees a batch of buffers with one acquisition of the free-list lock
    /// (the deferred free list of seed 000, `ml_purge`).
    pub fn free_all(&self, bufs: impl IntoIterator<Item = Mbuf>) {
        self.free_into(&mut self.free_list(), bufs);
    }

    /// [`free_all`](Pool::free_all), the free-list mutex taken from `ctx` at
    /// its level in the driver's order.
    #[track_caller]
    pub(crate) fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = Mbuf>,
    ) {
        self.free_into(&mut ctx.lock(&self.inner.free).0, bufs);
    }

    fn free_into(&self, free: &mut Vec<u32>, bufs: impl IntoIterator<Item = Mbuf>) {
        for mut m in bufs {
            let (pool, idx) = m.pool.take().map(|p| (p, m.idx)).expect("live mbuf");
            debug_assert!(
                Arc::ptr_eq(&pool.inner, &self.inner),
                "mbuf from another pool"
            );
            pool.transition(idx, BufState::Held, BufState::Free);
            free.push(idx);
        }
    }

    /// Turns a ring address back into the buffer the driver posted there.
    ///
    /// # Panics
    ///
    /// If buffer `addr` is not in state `on` (the driver reclaimed a slot it
    /// never posted, or twice): a broken driver invariant.
    pub fn reclaim(&self, addr: u64, on: BufState) -> Mbuf {
        let idx = self
            .index_of(addr)
            .unwrap_or_else(|| panic!("buffer address {addr:#x} names no buffer"));
        self.transition(idx, on, BufState::Held);
        Mbuf {
            pool: Some(self.clone()),
            idx,
        }
    }

    /// Device side: writes a received frame into buffer `addr`.
    ///
    /// Returns `false`, and counts a DMA error, if the buffer is not posted on
    /// a receive ring (the device would be scribbling on memory it does not
    /// own).
    pub fn dma_write(&self, addr: u64, len: u16, tag: u64) -> bool {
        match self.slot(addr) {
            Some(s) if s.state.load(Ordering::Relaxed) == BufState::OnRxRing as u8 => {
                // Relaxed: published by the descriptor's release write-back.
                s.len.store(u32::from(len), Ordering::Relaxed);
                s.tag.store(tag, Ordering::Relaxed);
                true
            }
            _ => {
                self.inner.dma_errors.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Device side: reads the frame in buffer `addr` for transmission, or
    /// `None` (a DMA error, counted) if it is not posted on a transmit ring.
    pub fn dma_read(&self, addr: u64) -> Option<(u16, u64)> {
        match self.slot(addr) {
            Some(s) if s.state.load(Ordering::Relaxed) == BufState::OnTxRing as u8 => Some((
                s.len.load(Ordering::Relaxed) as u16,
                s.tag.load(Ordering::Relaxed),
            )),
            _ => {
                self.inner.dma_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    fn slot(&self, addr: u64) -> Option<&Slot> {
        self.index_of(addr)
            .and_then(|i| self.inner.slots.get(i as usize))
    }

    fn transition(&self, idx: u32, from: BufState, to: BufState) {
        let slot = &self.inner.slots[idx as usize];
        // AcqRel: a state change is an ownership hand-off; whoever takes the
        // buffer sees what the previous owner wrote into it.
        if let Err(actual) =
            slot.state
                .compare_exchange(from as u8, to as u8, Ordering::AcqRel, Ordering::Relaxed)
        {
            panic!(
                "buffer {idx}: expected {from:?}, found {:?} (moving to {to:?})",
                BufState::from_u8(actual)
            );
        }
    }

    /// Where every buffer is right now.
    pub fn stats(&self) -> PoolStats {
        let mut s = PoolStats {
            total: self.inner.slots.len() as u64,
            alloc_failures: self.inner.alloc_failures.load(Ordering::Relaxed),
            dma_errors: self.inner.dma_errors.load(Ordering::Relaxed),
            ..PoolStats::default()
        };
        for slot in self.inner.slots.iter() {
            match BufState::from_u8(slot.state.load(Ordering::Relaxed)) {
                BufState::Free => s.free += 1,
                BufState::Held => s.held += 1,
                BufState::OnRxRing => s.on_rx_ring += 1,
                BufState::OnTxRing => s.on_tx_ring += 1,
                BufState::Leaked => s.leaked += 1,
            }
        }
        s
    }
}

/// A buffer held by software. Give it back with [`free`](Mbuf::free) or post
/// it on a ring with [`into_ring`](Mbuf::into_ring); dropping it is a leak.
#[derive(Debug)]
pub struct Mbuf {
    /// `None` once freed or posted, so `Drop` knows it was handled.
    pool: Option<Pool>,
    idx: u32,
}

impl Mbuf {
    fn slot(&self) -> &Slot {
        &self.pool.as_ref().expect("live mbuf").inner.slots[self.idx as usize]
    }

    /// The buffer's index in its pool (its "bus address" in a pool without
    /// DMA memory).
    pub fn index(&self) -> u32 {
        self.idx
    }

    /// Sets the frame length (what a real device reports in the receive
    /// descriptor; the simulated one also stores it with [`Pool::dma_write`]).
    pub fn set_len(&mut self, len: u16) {
        self.slot().len.store(u32::from(len), Ordering::Relaxed);
    }

    /// The frame's bytes (`len()` of them), in a DMA-backed pool; `None` in
    /// a pool without buffer memory.
    ///
    /// # Panics
    ///
    /// If the length exceeds the buffer size.
    pub fn data(&self) -> Option<&[u8]> {
        let pool = self.pool.as_ref().expect("live mbuf");
        let dma = pool.inner.dma.as_ref()?;
        let len = self.len();
        assert!(len <= pool.inner.buf_size, "frame longer than its buffer");
        let p = dma.virt(self.idx, pool.inner.buf_size);
        // SAFETY: the buffer's memory (valid per `with_dma`'s contract) is
        // ours while the Mbuf is Held: no ring holds it, so the device does
        // not write it; `&self` forbids a concurrent `data_mut`.
        Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), len) })
    }

    /// The whole buffer (`buf_size` bytes) to write a frame into, in a
    /// DMA-backed pool; follow with [`set_len`](Mbuf::set_len).
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let pool = self.pool.as_ref().expect("live mbuf");
        let dma = pool.inner.dma.as_ref()?;
        let p = dma.virt(self.idx, pool.inner.buf_size);
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        Some(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), pool.inner.buf_size) })
    }

    /// Frame length in bytes.
    pub fn len(&self) -> usize {
        self.slot().len.load(Ordering::Relaxed) as usize
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tag standing for the payload.
    pub fn tag(&self) -> u64 {
        self.slot().tag.load(Ordering::Relaxed)
    }

    /// Writes a frame of `len` bytes with payload `tag` into the buffer.
    pub fn fill(&mut self, len: u16, tag: u64) {
        let s = self.slot();
        s.len.store(u32::from(len), Ordering::Relaxed);
        s.tag.store(tag, Ordering::Relaxed);
    }

    /// Returns the buffer to its pool.
    pub fn free(mut self) {
        let pool = self.pool.take().expect("live mbuf");
        pool.free_all_one(self.idx);
    }

    /// Hands the buffer to the device: it becomes `on` (a ring state) and the
    /// returned address goes into a descriptor. [`Pool::reclaim`] undoes it.
    ///
    /// # Panics
    ///
    /// If `on` is not [`BufState::OnRxRing`] or [`BufState::OnTxRing`].
    pub fn into_ring(mut self, on: BufState) -> u64 {
        assert!(matches!(on, BufState::OnRxRing | BufState::OnTxRing));
        let pool = self.pool.take().expect("live mbuf");
        pool.transition(self.idx, BufState::Held, on);
        pool.addr_of(self.idx)
    }
}

impl Pool {
    fn free_all_one(&self, idx: u32) {
        self.transition(idx, BufState::Held, BufState::Free);
        self.free_list().push(idx);
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            // Not freed, not posted: the buffer is lost. Count it where the
            // pool audit will show it, and never hand it out again.
            pool.transition(self.idx, BufState::Held, BufState::Leaked);
        }
    }
}

impl fmt::Display for PoolStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} buffers: {} free, {} in use ({} held, {} on rx rings, {} on tx rings), {} leaked",
            self.total,
            self.free,
            self.in_use(),
            self.held,
            self.on_rx_ring,
            self.on_tx_ring,
            self.leaked
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_buffer_is_counted() {
        let pool = Pool::new(4, 2048);
        let mut a = pool.alloc().unwrap();
        a.fill(60, 42);
        let b = pool.alloc().unwrap();
        let addr = b.into_ring(BufState::OnRxRing);
        let s = pool.stats();
        assert_eq!((s.free, s.held, s.on_rx_ring, s.in_use()), (2, 1, 1, 2));
        assert!(pool.dma_write(addr, 64, 7));
        let b = pool.reclaim(addr, BufState::OnRxRing);
        assert_eq!((b.len(), b.tag()), (64, 7));
        assert_eq!((a.len(), a.tag()), (60, 42));
        pool.free_all([a, b]);
        assert_eq!(pool.stats().free, 4);
    }

    #[test]
    fn exhaustion_is_counted() {
        let pool = Pool::new(1, 64);
        let a = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        assert_eq!(pool.stats().alloc_failures, 1);
        a.free();
    }

    #[test]
    fn dropping_an_mbuf_is_a_leak() {
        let pool = Pool::new(2, 64);
        drop(pool.alloc().unwrap());
        let s = pool.stats();
        assert_eq!((s.leaked, s.free, s.in_use()), (1, 1, 0));
        // The leaked buffer is never handed out again.
        let a = pool.alloc().unwrap();
        assert!(pool.alloc().is_none());
        a.free();
    }

    #[test]
    fn dma_into_a_buffer_not_posted_is_caught() {
        let pool = Pool::new(2, 64);
        assert!(!pool.dma_write(0, 60, 0));
        assert!(!pool.dma_write(99, 60, 0));
        assert!(pool.dma_read(1).is_none());
        assert_eq!(pool.stats().dma_errors, 3);
    }

    #[test]
    fn dma_pool_addresses_are_bus_addresses() {
        // Two regions out of bus order, the second not a multiple of the
        // buffer size: 2 + 1 buffers of 64 bytes.
        let mut mem = vec![0u8; 64 * 3 + 32];
        let base = NonNull::new(mem.as_mut_ptr()).unwrap();
        // SAFETY: 128 bytes into the 224-byte vector.
        let second = unsafe { base.add(128) };
        let regions = [
            DmaRegion {
                virt: base,
                bus: 0x10_000,
                len: 128,
            },
            DmaRegion {
                virt: second,
                bus: 0x4000,
                len: 96,
            },
        ];
        // SAFETY: the regions are disjoint parts of `mem`, which outlives
        // the pool (dropped below before `mem`).
        let pool = unsafe { Pool::with_dma(64, &regions, Arc::new(())) };
        assert_eq!(pool.total(), 3);
        assert!(pool.is_dma());
        let mut bufs: Vec<Mbuf> = (0..3).map(|_| pool.alloc().unwrap()).collect();
        let mut addrs = Vec::new();
        for (i, m) in bufs.iter_mut().enumerate() {
            m.data_mut().unwrap()[..3].copy_from_slice(&[i as u8; 3]);
            m.set_len(3);
            assert_eq!(m.data().unwrap(), &[i as u8; 3]);
        }
        for m in bufs.drain(..) {
            addrs.push(m.into_ring(BufState::OnTxRing));
        }
        addrs.sort_unstable();
        assert_eq!(addrs, [0x4000, 0x10_000, 0x10_040]);
        // Not a buffer's first byte, or outside every region: no buffer.
        assert!(pool.index_of(0x10_020).is_none());
        assert!(pool.index_of(0x4040).is_none());
        assert!(pool.index_of(0).is_none());
        for a in addrs {
            let m = pool.reclaim(a, BufState::OnTxRing);
            assert_eq!(m.len(), 3);
            bufs.push(m);
        }
        pool.free_all(bufs);
        assert_eq!(pool.stats().free, 3);
        drop(pool);
        drop(mem);
    }

    #[test]
    #[should_panic(expected = "expected OnTxRing")]
    fn reclaiming_from_the_wrong_ring_panics() {
        let pool = Pool::new(1, 64);
        let addr = pool.alloc().unwrap().into_ring(BufState::OnRxRing);
        let _ = pool.reclaim(addr, BufState::OnTxRing);
    }
}
