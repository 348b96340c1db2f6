//! The driver's view of packet buffers: [`Buffer`] and [`BufferPool`].
//!
//! The driver never names a buffer type. The host supplies both, in memory
//! its device can reach ([`Hardware::pool`](crate::Hardware::pool)): the
//! simulator's counted pool, a Linux process's hugepage pool, a kernel's
//! mbufs. The driver only allocates, posts a buffer on a ring (handing it
//! to the device), takes it back from a ring once the device is done, sets
//! a received frame's length and frees; it takes the pool's lock at its
//! level in the driver's order ([`PoolMutex`]).

use mpsafe_ifqueue::Packet;
use mpsafe_order::{Ctx, LockBefore};

use crate::levels::PoolMutex;

/// Which ring a buffer is posted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    /// A receive ring: the device will write a frame into it.
    Rx,
    /// A transmit ring: the device will read the frame in it.
    Tx,
}

/// A packet buffer the driver holds: owned, one frame.
pub trait Buffer: Packet + Send + 'static {
    /// The frame's length in bytes.
    fn len(&self) -> usize;

    /// Whether the frame is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets the frame's length (a receive completion's written-back length,
    /// at most the pool's [`buf_size`](BufferPool::buf_size)).
    fn set_len(&mut self, len: u16);
}

/// The pool the driver's buffers come from and go back to.
///
/// # Contract
///
/// - A buffer [`post`](BufferPool::post)ed on a ring belongs to the device
///   until [`reclaim`](BufferPool::reclaim) hands it back; the address
///   `post` returns is the bus address its descriptor carries.
/// - [`owns`](BufferPool::owns) is exact: `true` only for buffers of this
///   pool, which is how the driver refuses another pool's buffer
///   ([`TxError::ForeignPool`](crate::TxError::ForeignPool)) before it
///   could post it.
pub trait BufferPool: Send + Sync + 'static {
    /// The buffer.
    type Buf: Buffer;
    /// The pool's accounting, for [`EmStats`](crate::EmStats).
    type Stats: Clone + core::fmt::Debug + core::fmt::Display + Send;

    /// Bytes per buffer: the largest frame.
    fn buf_size(&self) -> usize;

    /// Whether `buf` is one of this pool's.
    fn owns(&self, buf: &Self::Buf) -> bool;

    /// A free buffer, the pool's lock taken from `ctx` at [`PoolMutex`];
    /// `None` if none is free.
    fn alloc_in<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) -> Option<Self::Buf>;

    /// Frees `bufs`, the pool's lock taken once from `ctx` at [`PoolMutex`].
    ///
    /// # Panics
    ///
    /// If a buffer is another pool's (the driver checks
    /// [`owns`](BufferPool::owns) before it accepts one).
    fn free_all_in<L: LockBefore<PoolMutex>>(
        &self,
        ctx: &mut Ctx<'_, L>,
        bufs: impl IntoIterator<Item = Self::Buf>,
    );

    /// Frees `bufs` outside the driver's order (a stack done with them).
    fn free_all(&self, bufs: impl IntoIterator<Item = Self::Buf>);

    /// Hands `buf` to the device on a `ring`; returns its bus address.
    fn post(&self, buf: Self::Buf, ring: Ring) -> u64;

    /// Takes back the buffer the driver posted at bus address `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is the address [`post`](BufferPool::post) returned for a
    /// buffer on `ring` that the caller owns (as the driver owns its
    /// rings) and has not reclaimed since, and the device will not read or
    /// write that buffer again: its descriptor is written back (`DD`), or
    /// the ring's unit is disabled and reset.
    unsafe fn reclaim(&self, addr: u64, ring: Ring) -> Self::Buf;

    /// The accounting now.
    fn stats(&self) -> Self::Stats;
}
