//! The packet buffers the adapter moves: a driver's pool behind a small
//! trait, and [`VecPool`], a bounded pool of `Vec<u8>`.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

use mpsafe_serializer::{RawSpinMutex, SpinMutex};

use crate::sync::{AtomicU64, Ordering};

/// Where the adapter gets transmit buffers and returns every buffer it is
/// done with: the driver's buffer pool, seen from the stack.
///
/// The [`Device`](crate::Device) never creates or drops a buffer itself. A
/// transmit token holds a buffer from [`alloc`](Buffers::alloc) until smoltcp
/// fills it ([`frame_mut`](Buffers::frame_mut)) and the send queue takes it,
/// or until the token is dropped unused, when the buffer goes back through
/// [`free`](Buffers::free). A received buffer is shown to smoltcp with
/// [`frame`](Buffers::frame) and then freed, whether the receive token was
/// consumed or dropped. A driver whose buffers must be freed explicitly (an
/// mbuf that reports a leak when dropped) is therefore safe to plug in.
///
/// Methods take `&self`: the pool is shared with the driver, which allocates
/// receive buffers and frees transmitted ones on other CPUs. The trait is
/// implemented for `&P` and `Arc<P>`, so the adapter can hold a reference
/// or a counted handle to the driver's pool.
///
/// # Examples
///
/// The smallest pool: every buffer a fresh heap allocation, counted so a
/// test can see that each one came back. (A driver's pool hands out slots
/// of its DMA memory instead, and its buffer type implements
/// [`Packet`](mpsafe_ifqueue::Packet), which `Vec<u8>` already does.)
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use mpsafe_smoltcp::Buffers;
///
/// #[derive(Default)]
/// struct Heap { out: AtomicUsize }
///
/// impl Buffers for Heap {
///     type Buffer = Vec<u8>;
///     fn buffer_size(&self) -> usize { 1514 }
///     fn alloc(&self) -> Option<Vec<u8>> {
///         self.out.fetch_add(1, Ordering::Relaxed);
///         Some(Vec::with_capacity(1514))
///     }
///     fn frame_mut<'b>(&'b self, buf: &'b mut Vec<u8>, len: usize) -> &'b mut [u8] {
///         buf.resize(len, 0);
///         buf
///     }
///     fn frame<'b>(&'b self, buf: &'b Vec<u8>) -> &'b [u8] { buf }
///     fn free(&self, buf: Vec<u8>) {
///         drop(buf);
///         self.out.fetch_sub(1, Ordering::Relaxed);
///     }
/// }
///
/// let heap = Heap::default();
/// let mut b = heap.alloc().unwrap();
/// heap.frame_mut(&mut b, 60)[0] = 0xff;
/// assert_eq!(heap.frame(&b).len(), 60);
/// heap.free(b);
/// assert_eq!(heap.out.load(Ordering::Relaxed), 0);
/// ```
pub trait Buffers {
    /// A buffer: the packet type of the send and input queues.
    type Buffer;

    /// The most bytes a buffer holds: the largest frame the adapter can
    /// transmit or the driver receive (the adapter refuses an MTU above it).
    fn buffer_size(&self) -> usize;

    /// A free buffer with room for [`buffer_size`](Buffers::buffer_size)
    /// bytes, or `None` if the pool is empty (then no transmit token is
    /// handed out and smoltcp keeps its data for a later poll).
    fn alloc(&self) -> Option<Self::Buffer>;

    /// Sets `buf`'s frame length to `len` and returns those `len` bytes for
    /// smoltcp to write the frame into. The adapter never asks for more than
    /// [`buffer_size`](Buffers::buffer_size); an implementation may panic if
    /// it is asked to.
    fn frame_mut<'b>(&'b self, buf: &'b mut Self::Buffer, len: usize) -> &'b mut [u8];

    /// The received frame in `buf`, its length as the driver set it.
    fn frame<'b>(&'b self, buf: &'b Self::Buffer) -> &'b [u8];

    /// Gives `buf` back to the pool.
    fn free(&self, buf: Self::Buffer);
}

impl<P: Buffers + ?Sized> Buffers for &P {
    type Buffer = P::Buffer;
    fn buffer_size(&self) -> usize {
        (**self).buffer_size()
    }
    fn alloc(&self) -> Option<P::Buffer> {
        (**self).alloc()
    }
    fn frame_mut<'b>(&'b self, buf: &'b mut P::Buffer, len: usize) -> &'b mut [u8] {
        (**self).frame_mut(buf, len)
    }
    fn frame<'b>(&'b self, buf: &'b P::Buffer) -> &'b [u8] {
        (**self).frame(buf)
    }
    fn free(&self, buf: P::Buffer) {
        (**self).free(buf)
    }
}

impl<P: Buffers + ?Sized> Buffers for Arc<P> {
    type Buffer = P::Buffer;
    fn buffer_size(&self) -> usize {
        (**self).buffer_size()
    }
    fn alloc(&self) -> Option<P::Buffer> {
        (**self).alloc()
    }
    fn frame_mut<'b>(&'b self, buf: &'b mut P::Buffer, len: usize) -> &'b mut [u8] {
        (**self).frame_mut(buf, len)
    }
    fn frame<'b>(&'b self, buf: &'b P::Buffer) -> &'b [u8] {
        (**self).frame(buf)
    }
    fn free(&self, buf: P::Buffer) {
        (**self).free(buf)
    }
}

/// A [`VecPool`] that cannot be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolError {
    /// The pool would hold no buffer.
    ZeroCount,
    /// The buffers would hold no byte.
    ZeroBufferSize,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ZeroCount => "buffer pool with no buffers",
            Self::ZeroBufferSize => "buffer pool with zero-byte buffers",
        })
    }
}

impl core::error::Error for PoolError {}

/// What a [`VecPool`] holds, as one snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolStats {
    /// Buffers the pool was built with.
    pub total: usize,
    /// Buffers in the pool now.
    pub free: usize,
    /// [`Buffers::alloc`] calls that found the pool empty.
    pub alloc_failures: u64,
    /// [`Buffers::free`] calls with a buffer that cannot be one of the
    /// pool's (too small, or the pool already full): dropped, not kept. Non
    /// zero means a caller freed something twice or freed a foreign buffer.
    pub bad_frees: u64,
}

impl PoolStats {
    /// Buffers handed out and not freed yet.
    pub fn in_use(&self) -> usize {
        self.total - self.free
    }
}

/// A bounded pool of `Vec<u8>` buffers: [`Buffers`] for a stack or a test
/// that has no driver pool, and the reference for what a driver's pool does.
///
/// Every buffer is allocated up front, with room for `buffer_size` bytes; a
/// freed buffer goes back on a free list (behind a spin lock, held for one
/// push or pop) and is reused, so nothing is allocated per packet and
/// [`stats`](VecPool::stats) tells exactly how many buffers are out: after a
/// run, `in_use() == 0` proves every buffer came back.
///
/// # Examples
///
/// ```
/// use mpsafe_smoltcp::{Buffers, VecPool};
///
/// let pool = VecPool::new(2, 1514)?;
/// let mut a = pool.alloc().unwrap();
/// pool.frame_mut(&mut a, 60).copy_from_slice(&[0xab; 60]);
/// assert_eq!(pool.frame(&a).len(), 60);
/// let b = pool.alloc().unwrap();
/// assert!(pool.alloc().is_none()); // two buffers, both out
/// assert_eq!(pool.stats().in_use(), 2);
/// pool.free(a);
/// pool.free(b);
/// let s = pool.stats();
/// assert_eq!((s.in_use(), s.alloc_failures, s.bad_frees), (0, 1, 0));
/// # Ok::<(), mpsafe_smoltcp::PoolError>(())
/// ```
pub struct VecPool {
    free: SpinMutex<Vec<Vec<u8>>>,
    total: usize,
    buffer_size: usize,
    alloc_failures: AtomicU64,
    bad_frees: AtomicU64,
}

impl VecPool {
    /// A pool of `count` buffers of `buffer_size` bytes each.
    ///
    /// # Errors
    ///
    /// [`PoolError`] for a zero count or size.
    pub fn new(count: usize, buffer_size: usize) -> Result<Self, PoolError> {
        if count == 0 {
            return Err(PoolError::ZeroCount);
        }
        if buffer_size == 0 {
            return Err(PoolError::ZeroBufferSize);
        }
        let free = (0..count)
            .map(|_| Vec::with_capacity(buffer_size))
            .collect();
        Ok(Self {
            // `from_raw`, not `new`: the same lock, and it also builds under
            // the loom models (no compile-time lock there).
            free: SpinMutex::from_raw(RawSpinMutex::new(), free),
            total: count,
            buffer_size,
            alloc_failures: AtomicU64::new(0),
            bad_frees: AtomicU64::new(0),
        })
    }

    /// How many buffers are free and out, and the failures counted.
    pub fn stats(&self) -> PoolStats {
        PoolStats {
            total: self.total,
            free: self.free.lock().len(),
            // Relaxed: statistics, read after the threads that counted them
            // were joined (or as a hint).
            alloc_failures: self.alloc_failures.load(Ordering::Relaxed),
            bad_frees: self.bad_frees.load(Ordering::Relaxed),
        }
    }
}

impl Buffers for VecPool {
    type Buffer = Vec<u8>;

    fn buffer_size(&self) -> usize {
        self.buffer_size
    }

    fn alloc(&self) -> Option<Vec<u8>> {
        let buf = self.free.lock().pop();
        if buf.is_none() {
            self.alloc_failures.fetch_add(1, Ordering::Relaxed);
        }
        buf
    }

    /// # Panics
    ///
    /// If `len` is above the pool's buffer size (the adapter never asks).
    fn frame_mut<'b>(&'b self, buf: &'b mut Vec<u8>, len: usize) -> &'b mut [u8] {
        assert!(
            len <= self.buffer_size,
            "frame of {len} bytes asked from a pool of {}-byte buffers",
            self.buffer_size
        );
        // Within the capacity reserved at construction: no reallocation.
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    fn frame<'b>(&'b self, buf: &'b Vec<u8>) -> &'b [u8] {
        buf
    }

    fn free(&self, buf: Vec<u8>) {
        if buf.capacity() < self.buffer_size {
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut free = self.free.lock();
        if free.len() == self.total {
            drop(free);
            self.bad_frees.fetch_add(1, Ordering::Relaxed);
            return;
        }
        free.push(buf);
    }
}

impl fmt::Debug for VecPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VecPool")
            .field("buffer_size", &self.buffer_size)
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn bad_construction_and_bad_frees_are_reported() {
        assert_eq!(VecPool::new(0, 10).unwrap_err(), PoolError::ZeroCount);
        assert_eq!(VecPool::new(1, 0).unwrap_err(), PoolError::ZeroBufferSize);
        assert!(alloc::format!("{}", PoolError::ZeroCount).contains("no buffers"));
        let pool = VecPool::new(1, 64).unwrap();
        // Too small to be ours.
        pool.free(vec![0; 8]);
        // The pool is full: a second copy cannot be ours either.
        pool.free(Vec::with_capacity(64));
        let s = pool.stats();
        assert_eq!((s.total, s.free, s.bad_frees), (1, 1, 2));
        assert!(alloc::format!("{pool:?}").contains("buffer_size: 64"));
    }

    #[test]
    #[should_panic(expected = "frame of 65 bytes")]
    fn an_oversized_frame_is_refused() {
        let pool = VecPool::new(1, 64).unwrap();
        let mut b = pool.alloc().unwrap();
        let _ = pool.frame_mut(&mut b, 65);
    }
}
