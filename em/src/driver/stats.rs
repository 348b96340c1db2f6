//! Statistics: the driver's counters and the `netstat -i` / `systat mbuf`
//! view of one interface.

use crate::sync::counter::{AtomicU64, Ordering};
use alloc::format;
use alloc::vec::Vec;
use core::fmt;

use mpsafe_order::Ctx;
use mpsafe_rxring::{RxRingInfo, RxRingInfoTable, RxRingName};

use super::PoolStatsOf;
use super::Softc;
use super::mode::Mode;
use super::tx::ifq_mutex;
use crate::biglock::LockCounts;
use crate::buf::BufferPool;
use crate::hw::Hardware;

/// The driver's own event counters (per-ring counters live with the rings).
#[derive(Default)]
pub(crate) struct Counters {
    rx_flushed: AtomicU64,
    pub(crate) tx_purged: AtomicU64,
    pub(crate) tx_qdrops: AtomicU64,
    pub(crate) tx_down: AtomicU64,
    pub(crate) tx_bad: AtomicU64,
    pub(crate) inits: AtomicU64,
    pub(crate) stops: AtomicU64,
    pub(crate) mode_switches: AtomicU64,
    pub(crate) refill_retries: AtomicU64,
    pub(crate) rx_livelocked: AtomicU64,
}

impl Counters {
    pub(crate) fn add_rx_flushed(&self, n: u64) {
        self.rx_flushed.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// Statistics of one [`Em`](super::Em) (the `netstat -i` and `systat mbuf` view).
///
/// `P` is the buffer pool's accounting ([`BufferPool::Stats`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmStats<P> {
    /// Locking design.
    pub mode: Mode,
    /// Frames handed to the stack.
    pub rx_packets: u64,
    /// Received frames dropped for errors.
    pub rx_errors: u64,
    /// Frames the device delivered that were still on the ring at `stop`.
    pub rx_flushed: u64,
    /// Frames posted to transmit rings.
    pub tx_posted: u64,
    /// Transmit descriptors completed (reaped by tx completion).
    pub tx_completed: u64,
    /// Transmit descriptors reclaimed at `stop` (sent or not).
    pub tx_flushed: u64,
    /// Packets the send queues dropped (full).
    pub tx_qdrops: u64,
    /// Packets purged from the send queues at `down`.
    pub tx_purged: u64,
    /// Packets refused because the interface was down.
    pub tx_down: u64,
    /// Packets refused as malformed (empty, oversize).
    pub tx_bad: u64,
    /// Packets enqueued on the send queues.
    pub ifq_packets: u64,
    /// `init` calls that brought the interface up.
    pub inits: u64,
    /// `stop` calls that brought it down.
    pub stops: u64,
    /// Runtime mode switches.
    pub mode_switches: u64,
    /// Refill retries run by the refill timer (the ring was empty and the
    /// pool had no buffer).
    pub refill_retries: u64,
    /// Receive batches the stack answered with pressure, each reported to
    /// the ring's watermark (`if_rxr_livelocked`).
    pub rx_livelocked: u64,
    /// Big-lock acquisitions per path.
    pub big_lock: LockCounts,
    /// Receive ring accounting, one row per queue.
    pub rxrings: Vec<RxRingInfo>,
    /// Where every buffer is.
    pub pool: P,
}

impl<P: fmt::Display> fmt::Display for EmStats<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "mode {}  big lock: {}", self.mode, self.big_lock)?;
        writeln!(
            f,
            "rx {} packets, {} errors, {} flushed at stop; tx {} posted, {} completed, {} flushed, {} qdrops, {} purged",
            self.rx_packets,
            self.rx_errors,
            self.rx_flushed,
            self.tx_posted,
            self.tx_completed,
            self.tx_flushed,
            self.tx_qdrops,
            self.tx_purged
        )?;
        writeln!(f, "mbuf: {}", self.pool)?;
        write!(f, "{}", RxRingInfoTable(&self.rxrings))
    }
}

impl<H: Hardware> Softc<H> {
    fn counters(&self) -> EmStats<PoolStatsOf<H>> {
        let c = &self.ctr;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        EmStats {
            mode: self.core.mode(),
            rx_packets: 0,
            rx_errors: 0,
            rx_flushed: get(&c.rx_flushed),
            tx_posted: 0,
            tx_completed: 0,
            tx_flushed: 0,
            tx_qdrops: get(&c.tx_qdrops),
            tx_purged: get(&c.tx_purged),
            tx_down: get(&c.tx_down),
            tx_bad: get(&c.tx_bad),
            ifq_packets: 0,
            inits: get(&c.inits),
            stops: get(&c.stops),
            mode_switches: get(&c.mode_switches),
            refill_retries: get(&c.refill_retries),
            rx_livelocked: get(&c.rx_livelocked),
            big_lock: self.core.big.counts(),
            rxrings: Vec::new(),
            pool: self.pool().stats(),
        }
    }

    /// Statistics, with the rx ring table and buffer accounting.
    pub(crate) fn stats(&self) -> EmStats<PoolStatsOf<H>> {
        let mut st = self.counters();
        for (i, (rxq, ifq)) in self.rxqs.iter().zip(self.ifqs.queues()).enumerate() {
            let info = {
                let mut ctx = Ctx::new();
                let (rx, _) = ctx.lock(&rxq.rx);
                st.rx_packets += rx.data().packets;
                st.rx_errors += rx.data().errors;
                let name = if self.rxqs.len() == 1 {
                    self.cfg.name.clone()
                } else {
                    format!("{}:rx{i}", self.cfg.name)
                };
                rx.info(
                    RxRingName::new(&name).unwrap_or(RxRingName::EMPTY),
                    self.pool().buf_size() as u32,
                )
            };
            st.rxrings.push(info);
            let tx = ifq.driver();
            st.tx_posted += tx.posted.load(Ordering::Relaxed);
            st.tx_completed += tx.completed.load(Ordering::Relaxed);
            st.tx_flushed += tx.flushed.load(Ordering::Relaxed);
            let mut ctx = Ctx::new();
            st.ifq_packets += ctx.lock(ifq_mutex(ifq.queue())).0.counters().packets;
        }
        st
    }
}
