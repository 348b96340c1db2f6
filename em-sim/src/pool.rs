//! The packet buffer pool: every buffer counted, every leak caught.
//!
//! A fixed number of buffers ("mbuf clusters"), each with an owner state that
//! changes only by compare-and-swap, so a double free, a buffer reclaimed
//! from a ring it is not on, or DMA into a buffer the device does not own is
//! caught where it happens. The free buffers sit on per-thread free lists,
//! each behind its own mutex, as a kernel's `pool(9)` keeps per-CPU caches
//! in front of its shared list (OpenBSD's `pool_cache_init`, used for mbufs
//! and clusters): a thread allocates from and frees to its own list, and
//! only an empty list takes a batch from another one (see [`Pool::alloc`]).
//! A single list behind one mutex was the one lock every packet took on
//! every CPU, in every locking mode: it made the modes look alike and the
//! demo's runs bistable (a contended free list slowed every path, which
//! queued more packets, which contended it more). Each list's mutex sits at
//! level [`PoolMutex`], last in the driver's lock order, and no two are
//! ever held at once; drivers still defer frees until they have released
//! their own locks (seed 000). The driver takes it through a context
//! (`alloc_in`, `free_all_in`); the stack and the device use the plain API.
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
use std::cell::Cell;
use std::fmt;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};

use crossbeam_utils::CachePadded;

use mpsafe_order::{Ctx, LockBefore, Ordered};

use crate::buf::{Buffer, BufferPool, Ring};
use crate::levels::PoolMutex;

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

/// One free list's mutex, as the lock order sees it.
#[derive(Debug)]
struct FreeList(Mutex<FreeBufs>);

/// What a free list's mutex protects.
#[derive(Debug, Default)]
struct FreeBufs {
    /// Indices of free buffers, each holding its count of the pool
    /// ([`Inner`]'s lifetime, below).
    bufs: Vec<u32>,
    /// Set when the last [`Pool`] handle went: a buffer freed from here on
    /// gives its count back instead of waiting on the list for an
    /// allocation that cannot come.
    closed: bool,
}

impl mpsafe_order::Lock for FreeList {
    type Guard<'a> = MutexGuard<'a, FreeBufs>;

    fn lock(&self) -> MutexGuard<'_, FreeBufs> {
        // The free list holds plain indices: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still consistent.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, FreeBufs>> {
        match self.0.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// Free lists per pool: more than the threads that allocate and free in the
/// demo (two producers, the interrupt thread, the device, the refill
/// timeout), so each thread usually has a list to itself.
const FREE_LISTS: usize = 8;

/// Buffers an empty free list takes from another list at once: one lock of
/// the other list per this many allocations when a thread only allocates
/// (a producer) and another only frees (transmit completion).
const REFILL_BATCH: usize = 64;

/// The free list of the calling thread: threads are spread over the lists
/// in the order they first use a pool.
fn home_list() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static HOME: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    HOME.with(|home| {
        if home.get() == usize::MAX {
            // Relaxed: only spreads threads; any value is correct.
            home.set(NEXT.fetch_add(1, Ordering::Relaxed) % FREE_LISTS);
        }
        home.get()
    })
}

/// The pool's shared state.
///
/// # Lifetime
///
/// An `Inner` lives in an `Arc` whose strong count is the number of
/// [`Pool`] handles plus one for every buffer, whatever the buffer's state:
/// a free buffer's count waits on its free list, a live [`Mbuf`] holds its
/// own, a buffer posted on a ring leaves it with the ring. Allocating,
/// freeing, posting and reclaiming a buffer move its count along with it and
/// never touch the shared counter, which per packet on several CPUs was a
/// line every one of them wrote. A leaked buffer gives its count back. When
/// the last handle goes, the free lists give theirs back and close, and so
/// do the buffers left on rings (reclaiming one, or DMA into it, takes a
/// handle, so nothing can reach them any more); a buffer freed after that
/// gives its count back itself. So `Inner` is freed with the last handle or
/// the last live `Mbuf`, whichever goes last, and never while an `Mbuf`
/// points to it.
#[derive(Debug)]
struct Inner {
    /// [`Pool`] handles, apart from the buffers' counts.
    handles: AtomicUsize,
    slots: Box<[Slot]>,
    /// Per-thread free lists ([`home_list`]), each on its own cache lines.
    free: Box<[CachePadded<Ordered<PoolMutex, FreeList>>]>,
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

/// Where [`Pool::with_heap`]'s buffers start on the (simulated) bus.
const HEAP_BUS_BASE: u64 = 0x1000_0000;

/// Heap memory owned by a [`Pool::with_heap`] pool.
struct HeapMem {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl HeapMem {
    /// `len` zeroed bytes, 64-byte aligned (as DMA memory is at least
    /// cache-line aligned).
    fn new(len: usize) -> Self {
        assert!(len > 0, "a heap pool of zero bytes");
        let layout = std::alloc::Layout::from_size_align(len, 64).expect("pool too large");
        // SAFETY: `layout` has a non-zero size (checked above).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self { ptr, layout }
    }
}

impl Drop for HeapMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once, here.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: `HeapMem` only owns the allocation; every access to the bytes
// goes through the pool's buffer states (one owner at a time).
unsafe impl Send for HeapMem {}
// SAFETY: as above; `&HeapMem` gives no access to the bytes.
unsafe impl Sync for HeapMem {}

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

impl Inner {
    /// The address a descriptor carries for buffer `idx`: its bus address,
    /// or the index itself in a pool without DMA memory.
    fn addr_of(&self, idx: u32) -> u64 {
        match &self.dma {
            Some(d) => d.bus(idx, self.buf_size),
            None => u64::from(idx),
        }
    }

    /// The buffer index a descriptor address names, if any.
    fn index_of(&self, addr: u64) -> Option<u32> {
        match &self.dma {
            Some(d) => d.index(addr, self.buf_size),
            None => u32::try_from(addr)
                .ok()
                .filter(|&i| (i as usize) < self.slots.len()),
        }
    }

    fn transition(&self, idx: u32, from: BufState, to: BufState) {
        let slot = &self.slots[idx as usize];
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
}

/// A pool of packet buffers shared by the driver, the device (its "DMA") and
/// the stack. Cloning shares the pool.
#[derive(Debug)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Clone for Pool {
    fn clone(&self) -> Self {
        // Relaxed: as `Arc::clone`; a new handle comes from a live one.
        self.inner.handles.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // AcqRel: the last handle sees every list operation of the others
        // (they all take the list mutexes anyway).
        if self.inner.handles.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        // The last handle: nothing can allocate any more. Close every list
        // and give back the counts of the buffers on it.
        let mut released = 0;
        for list in self.inner.free.iter() {
            let mut list = mpsafe_order::Lock::lock(list.unordered());
            list.closed = true;
            released += list.bufs.len();
            list.bufs = Vec::new();
        }
        // Buffers posted on rings: only a handle could reclaim them or DMA
        // into them. Relaxed: no other thread moves a ring buffer now.
        for slot in self.inner.slots.iter() {
            let state = BufState::from_u8(slot.state.load(Ordering::Relaxed));
            if matches!(state, BufState::OnRxRing | BufState::OnTxRing) {
                slot.state.store(BufState::Free as u8, Ordering::Relaxed);
                released += 1;
            }
        }
        let ptr = Arc::as_ptr(&self.inner);
        for _ in 0..released {
            // SAFETY: `ptr` comes from `self.inner`, a live `Arc`, so the
            // count stays at least 1 (ours) through this loop; each count
            // given back is one a free buffer held (the type's lifetime
            // rule) and that buffer is off every list and ring now, so no
            // one else will give it back.
            unsafe { Arc::decrement_strong_count(ptr) };
        }
    }
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
        Self::build(count, buf_size, None)
    }

    fn build(count: usize, buf_size: usize, dma: Option<DmaMap>) -> Self {
        let n = u32::try_from(count).expect("pool larger than 2^32 buffers");
        let inner = Arc::new(Inner {
            handles: AtomicUsize::new(1),
            slots: (0..count).map(|_| Slot::default()).collect(),
            // Every buffer starts on the first list, which the first
            // threads to allocate empty in batches. LIFO: the most
            // recently freed (cache-hot) buffer goes out first.
            free: (0..FREE_LISTS)
                .map(|i| {
                    let bufs = if i == 0 {
                        (0..n).rev().collect()
                    } else {
                        Vec::new()
                    };
                    let list = FreeBufs {
                        bufs,
                        closed: false,
                    };
                    CachePadded::new(Ordered::new(FreeList(Mutex::new(list))))
                })
                .collect(),
            buf_size,
            alloc_failures: AtomicU64::new(0),
            dma_errors: AtomicU64::new(0),
            dma,
        });
        for _ in 0..n {
            // SAFETY: `inner` is a live `Arc` (count >= 1). One count per
            // buffer, held by the free list it starts on (`Inner`'s
            // lifetime rule).
            unsafe { Arc::increment_strong_count(Arc::as_ptr(&inner)) };
        }
        Self { inner }
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
        let dma = DmaMap {
            runs,
            _owner: owner,
        };
        Self::build(count as usize, buf_size, Some(dma))
    }

    /// A pool of `count` buffers of `buf_size` bytes in heap memory it
    /// allocates (zeroed) and frees itself: [`Pool::with_dma`] without a
    /// device, for the simulator when frames must carry real bytes (a stack
    /// above the driver, two simulated devices joined by a cable,
    /// [`Device::connect`](crate::Device::connect)). Buffers have bus
    /// addresses from `0x1000_0000` up, and [`Mbuf::data`] reaches their
    /// bytes; the simulated device copies them on transmit and receive
    /// ([`Pool::dma_read_frame`], [`Pool::dma_write_frame`]).
    ///
    /// # Panics
    ///
    /// If `buf_size` or `count` is zero, or the memory cannot be allocated.
    pub fn with_heap(count: usize, buf_size: usize) -> Self {
        let mem = HeapMem::new(count.checked_mul(buf_size).expect("pool size overflows"));
        let region = DmaRegion {
            virt: mem.ptr,
            bus: HEAP_BUS_BASE,
            len: mem.layout.size(),
        };
        // SAFETY: the region is the whole of `mem`'s allocation, readable
        // and writable, touched by nothing but this pool, and kept alive by
        // the pool, which holds `mem` as its owner until its last handle
        // and buffer are gone.
        unsafe { Self::with_dma(buf_size, &[region], Arc::new(mem)) }
    }

    /// Whether the buffers are in DMA memory ([`Pool::with_dma`]).
    pub fn is_dma(&self) -> bool {
        self.inner.dma.is_some()
    }

    /// The buffer index a descriptor address names, if any.
    fn index_of(&self, addr: u64) -> Option<u32> {
        self.inner.index_of(addr)
    }

    /// Size of every buffer in bytes.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Number of buffers the pool was created with.
    pub fn total(&self) -> usize {
        self.inner.slots.len()
    }

    /// The calling thread's free list, locked.
    fn free_list(&self) -> MutexGuard<'_, FreeBufs> {
        mpsafe_order::Lock::lock(self.inner.free[home_list()].unordered())
    }

    /// Takes a free buffer, or `None` (counted) if the pool is empty.
    ///
    /// From the calling thread's own free list; when that list is empty,
    /// up to a batch of buffers is moved from the first other list that has
    /// any (one list locked at a time). While another thread carries such a
    /// batch between two lists, an allocation on a third may find every
    /// list empty and fail, as a kernel's per-CPU caches can: exhaustion is
    /// exact only when no other thread allocates meanwhile.
    pub fn alloc(&self) -> Option<Mbuf> {
        // Its own statement: the list's guard is dropped before a refill
        // locks the lists again.
        let idx = self.free_list().bufs.pop();
        let idx = idx.or_else(|| {
            self.refill(|list, f| {
                f(&mut mpsafe_order::Lock::lock(self.inner.free[list].unordered()).bufs);
            })
        });
        self.alloc_from(idx)
    }

    /// [`alloc`](Pool::alloc), the free-list mutexes taken from `ctx` at
    /// their level in the driver's order (refill allocates under the rx
    /// mutex).
    #[track_caller]
    fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<Mbuf> {
        let idx = ctx.lock(&self.inner.free[home_list()]).0.bufs.pop();
        let idx = idx.or_else(|| {
            self.refill(|list, f| {
                let (mut held, _) = ctx.lock(&self.inner.free[list]);
                f(&mut held.bufs);
            })
        });
        self.alloc_from(idx)
    }

    /// The calling thread's list was empty: moves up to [`REFILL_BATCH`]
    /// buffers from the first other list that has any, keeps one for the
    /// caller and puts the rest on the caller's list. `None` if every list
    /// was empty. `with_list(i, f)` runs `f` on list `i` locked; one list
    /// is locked at a time.
    fn refill(
        &self,
        mut with_list: impl FnMut(usize, &mut dyn FnMut(&mut Vec<u32>)),
    ) -> Option<u32> {
        let home = home_list();
        let mut batch = Vec::new();
        for other in (1..FREE_LISTS).map(|k| (home + k) % FREE_LISTS) {
            with_list(other, &mut |list| {
                // The top of the other list: its most recently freed, and
                // so cache-hot, buffers (taking the coldest ones cycles
                // every buffer of the pool through the caches).
                let keep = list.len().saturating_sub(REFILL_BATCH);
                batch.extend(list.drain(keep..));
            });
            if !batch.is_empty() {
                break;
            }
        }
        let mine = batch.pop();
        if !batch.is_empty() {
            with_list(home, &mut |list| list.append(&mut batch));
        }
        mine
    }

    fn alloc_from(&self, idx: Option<u32>) -> Option<Mbuf> {
        let Some(idx) = idx else {
            self.inner.alloc_failures.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        self.inner.transition(idx, BufState::Free, BufState::Held);
        // The buffer's count moves from the free list to the Mbuf.
        Some(Mbuf {
            pool: Some(self.inner_ptr()),
            idx,
        })
    }

    /// Frees a batch of buffers with one acquisition of the free-list lock
    /// (the deferred free list of seed 000, `ml_purge`).
    pub fn free_all(&self, bufs: impl IntoIterator<Item = Mbuf>) {
        self.free_into(&mut self.free_list().bufs, bufs);
    }

    /// [`free_all`](Pool::free_all), the free-list mutex taken from `ctx` at
    /// its level in the driver's order.
    #[track_caller]
    fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = Mbuf>,
    ) {
        self.free_into(&mut ctx.lock(&self.inner.free[home_list()]).0.bufs, bufs);
    }

    /// Puts `bufs` on `free` (a list of this pool, locked, not closed: this
    /// pool has a handle, `self`); each buffer's count moves to the list.
    fn free_into(&self, free: &mut Vec<u32>, bufs: impl IntoIterator<Item = Mbuf>) {
        for mut m in bufs {
            let pool = m.pool.take().expect("live mbuf");
            assert_eq!(pool, self.inner_ptr(), "mbuf from another pool");
            self.inner.transition(m.idx, BufState::Held, BufState::Free);
            free.push(m.idx);
        }
    }

    /// The pointer an [`Mbuf`] of this pool carries: `Arc::as_ptr`'s, not a
    /// reference's, so it can also give the buffer's count back
    /// (`Arc::decrement_strong_count` reaches the counts beside the data).
    fn inner_ptr(&self) -> NonNull<Inner> {
        NonNull::new(Arc::as_ptr(&self.inner).cast_mut()).expect("an Arc is never null")
    }

    /// Whether `m` is a buffer of this pool (of any handle of it), and not
    /// of another pool.
    pub fn owns(&self, m: &Mbuf) -> bool {
        m.pool == Some(self.inner_ptr())
    }

    /// Turns a ring address back into the buffer the driver posted there.
    ///
    /// Unsafe because a buffer on a ring belongs to the device: taking it
    /// back while the device may still write it would let
    /// [`Mbuf::data_mut`] (or `data`) alias memory under DMA. Only the code
    /// that owns the ring slot may call it, once the device is done with
    /// the slot. Without `unsafe` it does not compile:
    ///
    /// ```compile_fail,E0133
    /// use mpsafe_em_sim::{BufState, Pool};
    ///
    /// let pool = Pool::new(4, 2048);
    /// let addr = pool.alloc().unwrap().into_ring(BufState::OnRxRing);
    /// let stolen = pool.reclaim(addr, BufState::OnRxRing); // E0133: call to unsafe function
    /// stolen.free();
    /// ```
    ///
    /// # Safety
    ///
    /// `addr` is the address of a buffer the caller posted on a ring it
    /// owns (as the driver owns its rings), and the device will not read or
    /// write that buffer again: its descriptor is written back (`DD`), or
    /// the ring's unit is disabled and reset.
    ///
    /// # Panics
    ///
    /// If buffer `addr` is not in state `on` (the driver reclaimed a slot it
    /// never posted, or twice): a broken driver invariant.
    pub unsafe fn reclaim(&self, addr: u64, on: BufState) -> Mbuf {
        let idx = self
            .index_of(addr)
            .unwrap_or_else(|| panic!("buffer address {addr:#x} names no buffer"));
        self.inner.transition(idx, on, BufState::Held);
        // The buffer's count moves from the ring to the Mbuf.
        Mbuf {
            pool: Some(self.inner_ptr()),
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

    /// Device side: reads the frame in buffer `addr` for transmission,
    /// appending its bytes to `out` in a pool with buffer memory (nothing in
    /// one without), and returns its length and tag; `None` (a DMA error,
    /// counted) if the buffer is not posted on a transmit ring.
    pub fn dma_read_frame(&self, addr: u64, out: &mut Vec<u8>) -> Option<(u16, u64)> {
        let (len, tag) = self.dma_read(addr)?;
        if let Some(p) = self.buf_ptr(addr) {
            let n = usize::from(len).min(self.inner.buf_size);
            // SAFETY: the buffer is posted on a transmit ring (checked by
            // `dma_read`): the device owns it and only reads it; the driver
            // wrote it before posting (published by the descriptor and the
            // tail register's release) and does not touch it until it
            // reclaims the written-back slot. `n` is within the buffer.
            out.extend_from_slice(unsafe { std::slice::from_raw_parts(p.as_ptr(), n) });
        }
        Some((len, tag))
    }

    /// Device side: writes a received frame of `bytes` with payload `tag`
    /// into buffer `addr` (the bytes themselves only in a pool with buffer
    /// memory; its length either way).
    ///
    /// Returns `false`, and counts a DMA error, if the buffer is not posted
    /// on a receive ring or the frame is longer than a buffer.
    pub fn dma_write_frame(&self, addr: u64, bytes: &[u8], tag: u64) -> bool {
        let Ok(len) = u16::try_from(bytes.len()) else {
            self.inner.dma_errors.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if bytes.len() > self.inner.buf_size || !self.dma_write(addr, len, tag) {
            if bytes.len() > self.inner.buf_size {
                self.inner.dma_errors.fetch_add(1, Ordering::Relaxed);
            }
            return false;
        }
        if let Some(p) = self.buf_ptr(addr) {
            // SAFETY: the buffer is posted on a receive ring (checked by
            // `dma_write`): the device owns it, and the driver reads it only
            // after the descriptor's write-back (release) is seen. The frame
            // fits in the buffer (checked above).
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p.as_ptr(), bytes.len()) };
        }
        true
    }

    /// The first byte of buffer `addr` in a pool with buffer memory.
    fn buf_ptr(&self, addr: u64) -> Option<NonNull<u8>> {
        let dma = self.inner.dma.as_ref()?;
        let idx = self.index_of(addr)?;
        Some(dma.virt(idx, self.inner.buf_size))
    }

    fn slot(&self, addr: u64) -> Option<&Slot> {
        self.index_of(addr)
            .and_then(|i| self.inner.slots.get(i as usize))
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
    /// The pool, whose `Arc` count for this buffer the Mbuf holds
    /// ([`Inner`]'s lifetime rule); `None` once freed or posted, so `Drop`
    /// knows it was handled.
    pool: Option<NonNull<Inner>>,
    idx: u32,
}

// SAFETY: an Mbuf is its buffer's only owner (the state machine lets one
// Mbuf exist per Held buffer) and reaches the pool only through `Inner`,
// which is `Sync` (atomics, mutexes, and read-only fields) and stays
// allocated while the Mbuf holds its count, whichever thread has it.
unsafe impl Send for Mbuf {}
// SAFETY: `&Mbuf` only reads the pool through `&Inner`, which is `Sync`.
unsafe impl Sync for Mbuf {}

impl Mbuf {
    fn inner(&self) -> &Inner {
        let pool = self.pool.expect("live mbuf");
        // SAFETY: a live Mbuf holds a count of the pool's `Arc`, so `Inner`
        // is allocated, and `pool` came from `Arc::as_ptr`.
        unsafe { pool.as_ref() }
    }

    fn slot(&self) -> &Slot {
        &self.inner().slots[self.idx as usize]
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
        let pool = self.inner();
        let dma = pool.dma.as_ref()?;
        let len = self.len();
        assert!(len <= pool.buf_size, "frame longer than its buffer");
        let p = dma.virt(self.idx, pool.buf_size);
        // SAFETY: the buffer's memory (valid per `with_dma`'s contract) is
        // ours while the Mbuf is Held: no ring holds it, so the device does
        // not write it; `&self` forbids a concurrent `data_mut`.
        Some(unsafe { std::slice::from_raw_parts(p.as_ptr(), len) })
    }

    /// The whole buffer (`buf_size` bytes) to write a frame into, in a
    /// DMA-backed pool; follow with [`set_len`](Mbuf::set_len).
    pub fn data_mut(&mut self) -> Option<&mut [u8]> {
        let pool = self.inner();
        let dma = pool.dma.as_ref()?;
        let p = dma.virt(self.idx, pool.buf_size);
        // SAFETY: as in `data`, and `&mut self` makes the access exclusive.
        Some(unsafe { std::slice::from_raw_parts_mut(p.as_ptr(), pool.buf_size) })
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
        let inner = self.inner();
        inner.transition(self.idx, BufState::Held, BufState::Free);
        let closed = {
            let mut list = mpsafe_order::Lock::lock(inner.free[home_list()].unordered());
            if !list.closed {
                list.bufs.push(self.idx);
            }
            list.closed
        };
        let pool = self.pool.take().expect("live mbuf");
        if closed {
            // Every handle is gone: no allocation can come for this buffer.
            // SAFETY: `pool` came from `Arc::as_ptr` and carries this
            // buffer's count, which this gives back, once (`self.pool` is
            // `None` now); nothing touches `inner` after it.
            unsafe { Arc::decrement_strong_count(pool.as_ptr().cast_const()) };
        }
    }

    /// Hands the buffer to the device: it becomes `on` (a ring state) and the
    /// returned address goes into a descriptor. [`Pool::reclaim`] undoes it.
    ///
    /// # Panics
    ///
    /// If `on` is not [`BufState::OnRxRing`] or [`BufState::OnTxRing`].
    pub fn into_ring(mut self, on: BufState) -> u64 {
        assert!(matches!(on, BufState::OnRxRing | BufState::OnTxRing));
        let inner = self.inner();
        let addr = inner.addr_of(self.idx);
        inner.transition(self.idx, BufState::Held, on);
        // The buffer's count stays with it on the ring.
        self.pool = None;
        addr
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        if self.pool.is_some() {
            // Not freed, not posted: the buffer is lost. Count it where the
            // pool audit will show it, and never hand it out again.
            self.inner()
                .transition(self.idx, BufState::Held, BufState::Leaked);
            let pool = self.pool.take().expect("checked above");
            // SAFETY: `pool` came from `Arc::as_ptr` and carries this
            // buffer's count; a leaked buffer is never handed out again, so
            // the count is given back here, once; nothing touches the pool
            // after it.
            unsafe { Arc::decrement_strong_count(pool.as_ptr().cast_const()) };
        }
    }
}

impl BufState {
    /// The state of a buffer posted on `ring`.
    fn on(ring: Ring) -> Self {
        match ring {
            Ring::Rx => BufState::OnRxRing,
            Ring::Tx => BufState::OnTxRing,
        }
    }
}

impl mpsafe_ifqueue::Packet for Mbuf {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

impl Buffer for Mbuf {
    fn len(&self) -> usize {
        Mbuf::len(self)
    }

    fn set_len(&mut self, len: u16) {
        Mbuf::set_len(self, len);
    }
}

/// The driver's view of the pool: each method is the inherent one of the
/// same name (the lock-taking ones at [`PoolMutex`]).
impl BufferPool for Pool {
    type Buf = Mbuf;
    type Stats = PoolStats;

    fn buf_size(&self) -> usize {
        Pool::buf_size(self)
    }

    fn owns(&self, buf: &Mbuf) -> bool {
        Pool::owns(self, buf)
    }

    fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<Mbuf> {
        Pool::alloc_in(self, ctx)
    }

    fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = Mbuf>,
    ) {
        Pool::free_all_in(self, ctx, bufs);
    }

    fn free_all(&self, bufs: impl IntoIterator<Item = Mbuf>) {
        Pool::free_all(self, bufs);
    }

    fn post(&self, buf: Mbuf, ring: Ring) -> u64 {
        debug_assert!(self.owns(&buf), "the driver posts only its pool's buffers");
        buf.into_ring(BufState::on(ring))
    }

    unsafe fn reclaim(&self, addr: u64, ring: Ring) -> Mbuf {
        // SAFETY: the caller's contract is `Pool::reclaim`'s, for the
        // state `post` put the buffer in.
        unsafe { Pool::reclaim(self, addr, BufState::on(ring)) }
    }

    fn stats(&self) -> PoolStats {
        Pool::stats(self)
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
        // SAFETY: the test posted it; no device touches this pool.
        let b = unsafe { pool.reclaim(addr, BufState::OnRxRing) };
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
    fn buffers_freed_on_one_thread_are_allocated_on_another() {
        // More buffers than one refill batch, so the second thread refills
        // its list several times from the list the first thread freed to.
        let n = REFILL_BATCH * 3 + 5;
        let pool = Pool::new(n, 64);
        std::thread::scope(|s| {
            s.spawn(|| {
                let bufs: Vec<Mbuf> = (0..n).map(|_| pool.alloc().unwrap()).collect();
                assert!(pool.alloc().is_none(), "more buffers than the pool has");
                pool.free_all(bufs);
            });
        });
        std::thread::scope(|s| {
            s.spawn(|| {
                let bufs: Vec<Mbuf> = (0..n)
                    .map(|i| {
                        pool.alloc()
                            .unwrap_or_else(|| panic!("buffer {i} of {n} not found"))
                    })
                    .collect();
                assert!(pool.alloc().is_none());
                pool.free_all(bufs);
            });
        });
        let s = pool.stats();
        assert_eq!((s.free, s.in_use(), s.alloc_failures), (n as u64, 0, 2));
    }

    #[test]
    fn threads_allocating_and_freeing_at_once_lose_nothing() {
        let pool = Pool::new(4 * REFILL_BATCH, 64);
        let rounds = if cfg!(miri) { 20 } else { 2_000 };
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let pool = &pool;
                s.spawn(move || {
                    for r in 0..rounds {
                        // Allocate on this thread, free half here and pass
                        // the rest through the pool again: every list both
                        // empties and refills.
                        let mut bufs: Vec<Mbuf> = (0..8).filter_map(|_| pool.alloc()).collect();
                        for m in &mut bufs {
                            m.fill(60, t << 32 | r);
                        }
                        assert!(bufs.iter().all(|m| m.tag() == t << 32 | r));
                        pool.free_all(bufs);
                    }
                });
            }
        });
        let s = pool.stats();
        assert_eq!((s.free, s.in_use(), s.leaked), (s.total, 0, 0));
    }

    /// A pool over `mem` whose DMA owner is `owner`: `Arc::strong_count`
    /// of the owner tells whether the pool's state is still allocated.
    fn pool_owned_by(mem: &mut [u8], owner: &Arc<()>) -> Pool {
        let region = DmaRegion {
            virt: NonNull::new(mem.as_mut_ptr()).unwrap(),
            bus: 0x1000,
            len: mem.len(),
        };
        // SAFETY: one region over `mem`, which every caller keeps alive
        // past the pool's last buffer.
        unsafe { Pool::with_dma(64, &[region], owner.clone()) }
    }

    #[test]
    fn the_pool_outlives_its_last_handle_until_its_last_buffer() {
        let mut mem = vec![0u8; 64 * 4];
        let owner = Arc::new(());
        let pool = pool_owned_by(&mut mem, &owner);
        let held = pool.alloc().unwrap();
        let leaked = pool.alloc().unwrap();
        let freed_later = pool.clone().alloc().unwrap();
        // A buffer left on a ring gives its count back with the last handle.
        let _ = pool.alloc().unwrap().into_ring(BufState::OnTxRing);
        drop(pool);
        assert_eq!(Arc::strong_count(&owner), 2, "freed under live buffers");
        held.free();
        drop(leaked);
        assert_eq!(Arc::strong_count(&owner), 2, "freed under a live buffer");
        freed_later.free();
        assert_eq!(
            Arc::strong_count(&owner),
            1,
            "the last buffer did not free it"
        );
        drop(mem);
    }

    #[test]
    fn a_pool_without_buffers_out_is_freed_with_its_last_handle() {
        let mut mem = vec![0u8; 64 * 4];
        let owner = Arc::new(());
        let pool = pool_owned_by(&mut mem, &owner);
        let other = pool.clone();
        other.alloc().unwrap().free();
        drop(other);
        assert_eq!(Arc::strong_count(&owner), 2);
        drop(pool);
        assert_eq!(Arc::strong_count(&owner), 1);
        drop(mem);
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
            // SAFETY: the test posted it; no device touches this pool.
            let m = unsafe { pool.reclaim(a, BufState::OnTxRing) };
            assert_eq!(m.len(), 3);
            bufs.push(m);
        }
        pool.free_all(bufs);
        assert_eq!(pool.stats().free, 3);
        drop(pool);
        drop(mem);
    }

    #[test]
    fn a_heap_pool_carries_bytes_to_and_from_the_device() {
        let pool = Pool::with_heap(2, 128);
        assert!(pool.is_dma());
        let mut m = pool.alloc().unwrap();
        m.data_mut().unwrap()[..5].copy_from_slice(b"hello");
        m.set_len(5);
        let tx = m.into_ring(BufState::OnTxRing);
        let mut out = vec![0xaa];
        assert_eq!(pool.dma_read_frame(tx, &mut out), Some((5, 0)));
        assert_eq!(out, b"\xaahello");
        let rx = pool.alloc().unwrap().into_ring(BufState::OnRxRing);
        assert!(pool.dma_write_frame(rx, b"world!", 9));
        // Longer than a buffer, or not on a receive ring: refused, counted.
        assert!(!pool.dma_write_frame(rx, &[0; 129], 0));
        assert!(!pool.dma_write_frame(tx, b"x", 0));
        assert_eq!(pool.stats().dma_errors, 2);
        // SAFETY: the test posted both; no device touches this pool.
        let (t, r) = unsafe {
            (
                pool.reclaim(tx, BufState::OnTxRing),
                pool.reclaim(rx, BufState::OnRxRing),
            )
        };
        assert_eq!((r.data().unwrap(), r.tag()), (&b"world!"[..], 9));
        pool.free_all([t, r]);
        assert_eq!(pool.stats().free, 2);
    }

    #[test]
    #[should_panic(expected = "expected OnTxRing")]
    fn reclaiming_from_the_wrong_ring_panics() {
        let pool = Pool::new(1, 64);
        let addr = pool.alloc().unwrap().into_ring(BufState::OnRxRing);
        // SAFETY: the test posted it; no device touches this pool (and
        // the call panics before returning a buffer).
        let _ = unsafe { pool.reclaim(addr, BufState::OnTxRing) };
    }
}
