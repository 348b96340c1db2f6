//! Legacy 16-byte receive and transmit descriptors, in memory shared by the
//! driver and the device.
//!
//! A descriptor is two 64-bit words, exactly the 8254x layout:
//!
//! ```text
//!  receive   | buffer address (63..0)                                        |
//!            | special 63..48 | errors 47..40 | status 39..32 | csum | length |
//!  transmit  | buffer address (63..0)                                        |
//!            | special 63..48 | css 47..40    | status 39..32 | cmd | cso | length |
//! ```
//!
//! Both words are atomics so the device thread and the driver share them
//! without `unsafe`, exactly as DMA memory is shared: the driver fills a
//! descriptor with plain (relaxed) stores and publishes it with a release
//! write of the tail register; the device writes the status word back with
//! release, and the driver reads the status with acquire before it trusts the
//! length. The "buffer address" is what the [`BufferPool`](crate::BufferPool) posted.

use alloc::boxed::Box;
use core::any::Any;
use core::fmt;
use core::ptr::NonNull;
// The device's memory: core's atomics even under the models (see
// `crate::sync`).
use core::sync::atomic::{AtomicU64, Ordering};

/// Receive status: descriptor done (the device wrote it back).
pub const RXD_STAT_DD: u8 = 1 << 0;
/// Receive status: end of packet.
pub const RXD_STAT_EOP: u8 = 1 << 1;
/// Receive error: RX data error (frame longer than the buffer, bad CRC).
pub const RXD_ERR_RXE: u8 = 1 << 7;
/// Transmit command: end of packet.
pub const TXD_CMD_EOP: u8 = 1 << 0;
/// Transmit command: insert the FCS.
pub const TXD_CMD_IFCS: u8 = 1 << 1;
/// Transmit command: report status (write DD back when sent).
pub const TXD_CMD_RS: u8 = 1 << 3;
/// Transmit status: descriptor done.
pub const TXD_STAT_DD: u8 = 1 << 0;

/// Size of one descriptor in bytes.
pub const DESC_SIZE: usize = 16;

/// One legacy descriptor: buffer address and the length/command/status word.
#[derive(Debug, Default)]
#[repr(C, align(16))]
pub struct Desc {
    addr: AtomicU64,
    word: AtomicU64,
}

const _: () = assert!(core::mem::size_of::<Desc>() == DESC_SIZE);

/// What the driver reads back from a receive descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxWriteback {
    /// Buffer index the driver posted.
    pub addr: u64,
    /// Frame length the device wrote.
    pub len: u16,
    /// Status bits (`RXD_STAT_*`).
    pub status: u8,
    /// Error bits (`RXD_ERR_*`).
    pub errors: u8,
}

impl Desc {
    /// Driver: posts an empty receive buffer (status cleared).
    pub fn post_rx(&self, addr: u64) {
        // Relaxed: published to the device by the release write of RDT.
        self.addr.store(addr, Ordering::Relaxed);
        self.word.store(0, Ordering::Relaxed);
    }

    /// Driver: reads a receive descriptor's write-back.
    pub fn rx_writeback(&self) -> RxWriteback {
        // Acquire: pairs with the device's release of the status word, so the
        // buffer contents and length it wrote before are visible.
        let w = self.word.load(Ordering::Acquire);
        RxWriteback {
            addr: self.addr.load(Ordering::Relaxed),
            len: w as u16,
            status: (w >> 32) as u8,
            errors: (w >> 40) as u8,
        }
    }

    /// Device: the buffer index of a posted receive descriptor.
    pub fn rx_addr(&self) -> u64 {
        self.addr.load(Ordering::Relaxed)
    }

    /// Device: writes back a received frame of `len` bytes.
    pub fn rx_complete(&self, len: u16, errors: u8) {
        let status = RXD_STAT_DD | RXD_STAT_EOP;
        let w = u64::from(len) | (u64::from(status) << 32) | (u64::from(errors) << 40);
        // Release: the buffer contents written before are visible to the
        // driver that sees DD.
        self.word.store(w, Ordering::Release);
    }

    /// Driver: fills a transmit descriptor.
    pub fn post_tx(&self, addr: u64, len: u16, cmd: u8) {
        // Relaxed: published to the device by the release write of TDT.
        self.addr.store(addr, Ordering::Relaxed);
        self.word
            .store(u64::from(len) | (u64::from(cmd) << 24), Ordering::Relaxed);
    }

    /// Device: reads a transmit descriptor: buffer index, length, command.
    pub fn tx_fetch(&self) -> (u64, u16, u8) {
        let w = self.word.load(Ordering::Relaxed);
        (self.addr.load(Ordering::Relaxed), w as u16, (w >> 24) as u8)
    }

    /// Device: marks a transmit descriptor done.
    pub fn tx_complete(&self) {
        // Release: pairs with the driver's acquire in `tx_done`.
        self.word
            .fetch_or(u64::from(TXD_STAT_DD) << 32, Ordering::Release);
    }

    /// Driver: whether a transmit descriptor is done, and its buffer index.
    pub fn tx_done(&self) -> Option<u64> {
        let w = self.word.load(Ordering::Acquire);
        ((w >> 32) as u8 & TXD_STAT_DD != 0).then(|| self.addr.load(Ordering::Relaxed))
    }

    /// Device: writes both words at once, whatever they hold: what a buggy
    /// or hostile device can do to a descriptor (the fuzz tests use it).
    pub fn device_write(&self, addr: u64, word: u64) {
        self.addr.store(addr, Ordering::Relaxed);
        // Release: as a write-back, the buffer contents before it are visible.
        self.word.store(word, Ordering::Release);
    }

    /// Driver: zeroes the descriptor (ring setup).
    pub fn clear(&self) {
        self.addr.store(0, Ordering::Relaxed);
        self.word.store(0, Ordering::Relaxed);
    }
}

/// A descriptor ring in DMA memory: allocated once, shared by driver and
/// device, addressed by the device through a bus address.
///
/// The simulation's rings live on the heap ([`DescRing::new`]); a real
/// device's in memory it can reach ([`DescRing::from_dma`]).
pub struct DescRing {
    descs: NonNull<Desc>,
    n: usize,
    /// Keeps the memory alive: the heap allocation, or the DMA memory's owner.
    _owner: Box<dyn Any + Send + Sync>,
}

// SAFETY: the descriptors are atomics, shared by design; the ring only owns
// (through `_owner`) the memory they live in.
unsafe impl Send for DescRing {}
// SAFETY: as above.
unsafe impl Sync for DescRing {}

impl fmt::Debug for DescRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DescRing")
            .field("n", &self.n)
            .finish_non_exhaustive()
    }
}

impl DescRing {
    /// A zeroed ring of `n` descriptors on the heap.
    pub fn new(n: usize) -> Self {
        let mut descs: Box<[Desc]> = (0..n).map(|_| Desc::default()).collect();
        let ptr = NonNull::new(descs.as_mut_ptr()).expect("a box is never null");
        Self {
            descs: ptr,
            n,
            // Moving the box does not move its heap allocation.
            _owner: Box::new(descs),
        }
    }

    /// A ring of `n` descriptors at `virt`, in memory a device reaches.
    /// The descriptors are zeroed.
    ///
    /// # Safety
    ///
    /// `virt` must be aligned to 16 bytes and valid for reads and writes of
    /// `n * DESC_SIZE` bytes for as long as `owner` lives, and nothing but
    /// this ring and the device may access that memory meanwhile.
    pub unsafe fn from_dma(virt: NonNull<u8>, n: usize, owner: Box<dyn Any + Send + Sync>) -> Self {
        assert!(
            virt.as_ptr().align_offset(DESC_SIZE) == 0,
            "descriptor memory not 16-byte aligned"
        );
        let descs = virt.cast::<Desc>();
        for i in 0..n {
            // SAFETY: in bounds and aligned per the contract; `Desc` is two
            // atomics for which all-zero bytes are a valid value.
            unsafe { descs.add(i).write(Desc::default()) };
        }
        Self {
            descs,
            n,
            _owner: owner,
        }
    }

    /// Number of descriptors the memory holds.
    pub fn capacity(&self) -> usize {
        self.n
    }

    /// Descriptor `i`.
    ///
    /// # Panics
    ///
    /// If `i` is beyond the ring's memory (a broken driver or device).
    pub fn get(&self, i: usize) -> &Desc {
        assert!(i < self.n, "descriptor {i} beyond a ring of {}", self.n);
        // SAFETY: in bounds; the memory lives as long as `self` (`_owner`).
        unsafe { self.descs.add(i).as_ref() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_roundtrip() {
        let d = Desc::default();
        d.post_rx(7);
        assert_eq!(d.rx_writeback().status & RXD_STAT_DD, 0);
        assert_eq!(d.rx_addr(), 7);
        d.rx_complete(60, 0);
        let wb = d.rx_writeback();
        assert_eq!((wb.addr, wb.len, wb.status, wb.errors), (7, 60, 3, 0));
    }

    #[test]
    fn a_ring_in_foreign_memory() {
        let mut mem = [0xffu8; 8 * DESC_SIZE + DESC_SIZE];
        let off = mem.as_ptr().align_offset(DESC_SIZE);
        let virt = NonNull::new(mem[off..].as_mut_ptr()).unwrap();
        // SAFETY: 16-byte aligned, 8 descriptors inside `mem`, which
        // outlives the ring.
        let ring = unsafe { DescRing::from_dma(virt, 8, Box::new(())) };
        assert_eq!(ring.capacity(), 8);
        assert_eq!(ring.get(7).tx_done(), None, "zeroed by from_dma");
        ring.get(3).post_tx(0x1234_5000, 60, TXD_CMD_EOP);
        assert_eq!(
            &mem[off + 3 * DESC_SIZE..off + 3 * DESC_SIZE + 3],
            &[0x00, 0x50, 0x34]
        );
    }

    #[test]
    fn tx_roundtrip() {
        let d = Desc::default();
        d.post_tx(9, 1514, TXD_CMD_EOP | TXD_CMD_RS);
        assert_eq!(d.tx_done(), None);
        assert_eq!(d.tx_fetch(), (9, 1514, TXD_CMD_EOP | TXD_CMD_RS));
        d.tx_complete();
        assert_eq!(d.tx_done(), Some(9));
    }
}
