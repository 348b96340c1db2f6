//! The network stack above the driver (`if_input`), and a sink for tests
//! and the demo.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;

use crate::pool::{Mbuf, Pool};

/// The network stack above the driver (`if_input`).
pub trait Stack: Send + Sync {
    /// Takes every packet in `packets` (leaving it empty) received on
    /// `queue`. Returns `true` if the stack is falling behind, so the driver
    /// backs its receive ring off (`if_rxr_livelocked`).
    fn input(&self, queue: usize, packets: &mut Vec<Mbuf>) -> bool;
}

/// A stack that counts what it receives and frees it at once.
#[derive(Debug)]
pub struct Sink {
    pool: Pool,
    packets: CachePadded<AtomicU64>,
    bytes: AtomicU64,
}

impl Sink {
    /// A sink that frees into `pool`.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            packets: CachePadded::new(AtomicU64::new(0)),
            bytes: AtomicU64::new(0),
        }
    }

    /// Packets received so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl Stack for Sink {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        let bytes: usize = packets.iter().map(Mbuf::len).sum();
        self.packets
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.pool.free_all(packets.drain(..));
        false
    }
}
