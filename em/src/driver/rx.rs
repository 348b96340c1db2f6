//! Receive: completion (`em_rxeof`), refill (`em_rxfill`) and the refill
//! retry timer, ring setup, and freeing the ring at stop.

use alloc::sync::Arc;
use alloc::vec::Vec;

use mpsafe_order::{Ctx, LockBefore, Ordered};
use mpsafe_rxring::{LockedRxRing, RxRing, RxRingGuard};

use super::mode::{Entry, Mode, Proof};
use super::order::{PoolMutex, Refill, RxMutex};
use super::stats::Counters;
use super::{BufOf, DeferredOf, KernelOf, Softc};
use crate::biglock::Path;
use crate::buf::{Buffer, BufferPool, Ring};
use crate::desc::{DESC_SIZE, DescRing, RXD_STAT_DD, RXD_STAT_EOP};
use crate::hw::{Hardware, Reg};
use crate::kernel::{Deferred, Kernel};

/// The driver's receive-side state that the rx mutex protects along with the
/// [`RxRing`] accounting.
#[derive(Debug, Default)]
pub(crate) struct RxSoft {
    /// Active ring size (set at init).
    pub(crate) n: u32,
    /// Next descriptor to check for a completed frame.
    next: u32,
    /// Next descriptor to fill; the value written to `RDT`.
    tail: u32,
    /// The buffer address the driver posted in each slot. The driver's own
    /// record: what a descriptor says about its buffer is never trusted (a
    /// device may write anything there).
    bufs: Vec<u64>,
    pub(crate) packets: u64,
    pub(crate) errors: u64,
    /// Inside a frame that spans several descriptors, which this driver
    /// drops whole (`em_rxeof`'s bad `fmp`/`lmp` chain): the fragments up
    /// to and including the next one with EOP are freed.
    discarding: bool,
    /// The current watermark when the ring was last torn down, for
    /// [`EmConfig::rx_keep_watermarks`](super::EmConfig::rx_keep_watermarks).
    kept_cwm: u32,
}

/// A receive ring's accounting under its mutex (the kernel's).
pub(crate) type RxLock<H> = LockedRxRing<RxLockOf<H>, RxSoft>;

/// The rx mutex of device `H`'s kernel.
type RxLockOf<H> = <KernelOf<H> as Kernel>::RxLock;

/// One receive queue: the accounting under its mutex and the descriptors.
pub(crate) struct RxQueue<H: Hardware> {
    pub(crate) rx: Ordered<RxMutex, RxLock<H>>,
    pub(crate) ring: Arc<DescRing>,
    pub(crate) bus: u64,
}

impl<H: Hardware> RxQueue<H> {
    pub(crate) fn new(ring: (u64, Arc<DescRing>)) -> Self {
        Self {
            rx: Ordered::new(LockedRxRing::new(RxRing::torn_down(), RxSoft::default())),
            ring: ring.1,
            bus: ring.0,
        }
    }
}

impl<H: Hardware> Softc<H> {
    /// Receive completion (`em_rxeof`), seed 000 style: the ring under the
    /// rx mutex, error frees deferred to a list and done after it, the stack
    /// called with no lock held.
    pub(crate) fn rxeof<L: LockBefore<RxMutex> + LockBefore<PoolMutex>>(
        &self,
        q: usize,
        proof: &Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        self.core.check(proof);
        let rxq = &self.rxqs[q];
        let mut input = Vec::new();
        let mut free = Vec::new();
        {
            let (mut rx, _) = ctx.lock(&rxq.rx);
            // Nothing posted (or torn down by stop): stay off the ring.
            if rx.inuse() == 0 {
                return;
            }
            rxeof_locked(self.pool(), rxq, &mut rx, &mut input, &mut free);
        }
        self.pool().free_all_in(ctx, free);
        // The stack is called with nothing of ours held beyond the entry
        // (it takes its own locks, outside the driver's order).
        if !input.is_empty() && self.stack.input(q, &mut input) {
            Counters::bump(&self.ctr.rx_livelocked);
            ctx.lock(&rxq.rx).0.livelocked(self.ticks());
        }
        // The stack takes everything; anything left is ours to free.
        self.pool().free_all_in(ctx, input);
    }

    /// Receive refill (`em_rxfill`): reserve slots from the ring accounting,
    /// post a fresh buffer in each, write `RDT`. Returns whether it posted.
    pub(crate) fn rxfill<L: LockBefore<RxMutex>>(
        &self,
        q: usize,
        proof: &Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, L>,
    ) -> bool {
        self.core.check(proof);
        let rxq = &self.rxqs[q];
        let now = self.ticks();
        let (mut rx, mut ctx) = ctx.lock(&rxq.rx);
        let (rxr, soft) = rx.split();
        let n = soft.n;
        if n == 0 {
            return false;
        }
        let mut fill = rxr.reserve(n, now);
        let mut tail = soft.tail;
        while !fill.is_empty() {
            let Some(m) = self.pool().alloc_in(&mut ctx) else {
                break;
            };
            let addr = self.pool().post(m, Ring::Rx);
            soft.bufs[tail as usize] = addr;
            rxq.ring.get(tail as usize).post_rx(addr);
            let took = fill.take_one();
            debug_assert!(took);
            tail = (tail + 1) % n;
        }
        let posted = fill.finish();
        if posted > 0 {
            soft.tail = tail;
            // Under the rx mutex, so two refills cannot move RDT backwards.
            self.hw.write(Reg::rdt(q), tail);
        }
        posted > 0
    }

    /// Refill, and when nothing could be posted while the ring is below its
    /// low watermark (the pool ran dry), retry one tick later
    /// (`em_rxrefill`: `timeout_add(&rx_refill, 1)`): with no descriptor
    /// posted the device raises no receive interrupt to retry from.
    pub(crate) fn rxrefill<L: LockBefore<RxMutex>>(
        &self,
        q: usize,
        proof: &Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        if !self.rxfill(q, proof, ctx) && ctx.lock(&self.rxqs[q].rx).0.needs_refill() {
            self.deferred().refill.add();
        }
    }

    /// The refill timeout: refill every queue as the policy says, inside
    /// the timeout's level (`del_barrier` waits at the same). In
    /// [`Mode::Serialized`] it only tries the ifnet serializer and retries a
    /// tick later if busy, so stop, which holds it, can wait for this call.
    pub(crate) fn refill_timeout(&self) {
        if !self.core.is_running() {
            return;
        }
        // Decided once, inside the timeout's gate; paused by a mode switch:
        // nothing to do, its resume refills.
        let Some(mode) = self.core.decide() else {
            return;
        };
        Counters::bump(&self.ctr.refill_retries);
        let timeout = Ordered::<Refill, DeferredOf<H>>::declare(&self.deferred().refill);
        if mode.entry(Path::RxFill) != Entry::Serializer {
            return timeout.run_inside(|mut ctx| {
                for q in 0..self.rxqs.len() {
                    let (p, mut ctx) = self.core.enter(mode, Path::RxFill, None, &mut ctx);
                    self.rxrefill(q, &p, &mut ctx);
                }
            });
        }
        timeout.run_inside(|_| {
            // A try never waits, so it needs no order: from a context of its
            // own (at `Refill` the types refuse the ifnet serializer, which
            // comes before the timeout for stop's wait). The witness
            // records the try unchecked and checks the rx mutex against
            // both. Inside, the mode is read again (a switch may have
            // finished since the top; in the serializer it cannot change).
            let mut ctx = Ctx::new();
            match ctx.try_lock(&self.core.ifnet) {
                Some((s, mut ctx)) if self.core.decide() == Some(Mode::Serialized) => {
                    for q in 0..self.rxqs.len() {
                        self.rxrefill(q, &Proof::Ifnet(&s), &mut ctx);
                    }
                }
                Some(_) if self.core.decide().is_none() => {}
                _ => {
                    self.deferred().refill.add();
                }
            }
        });
    }

    /// Receive unit setup (`em_setup_receive_structures`): the accounting
    /// live again with its watermarks, the descriptors cleared, the ring
    /// registers programmed.
    pub(crate) fn rx_init_locked<L: LockBefore<RxMutex>>(
        &self,
        q: usize,
        n: u32,
        ctx: &mut Ctx<'_, L>,
    ) {
        let rxq = &self.rxqs[q];
        {
            let (mut rx, _) = ctx.lock(&rxq.rx);
            let (rxr, soft) = rx.split();
            // 0 (clamped to lwm) is init's reset.
            let cwm = if self.cfg.rx_keep_watermarks {
                soft.kept_cwm
            } else {
                0
            };
            rxr.init_with_cwm(self.cfg.rx_lwm, n - 1, cwm, self.ticks())
                .expect("0 < lwm < n: validated at attach and by set_ring_sizes");
            soft.n = n;
            soft.next = 0;
            soft.tail = 0;
            soft.discarding = false;
            soft.bufs.clear();
            soft.bufs.resize(n as usize, 0);
        }
        for i in 0..n as usize {
            rxq.ring.get(i).clear();
        }
        self.hw.write(Reg::rdbal(q), rxq.bus as u32);
        self.hw.write(Reg::rdbah(q), (rxq.bus >> 32) as u32);
        self.hw.write(Reg::rdlen(q), n * DESC_SIZE as u32);
        self.hw.write(Reg::rdh(q), 0);
        self.hw.write(Reg::rdt(q), 0);
    }

    /// Seed 000: `if_rxr_init(0, 0)` under the rx mutex first, so rx
    /// completion (which checks `inuse` under the mutex) stays off the ring
    /// from here on; then free the buffers outside the mutex.
    pub(crate) fn rx_free_locked<L: LockBefore<RxMutex> + LockBefore<PoolMutex>>(
        &self,
        q: usize,
        ctx: &mut Ctx<'_, L>,
    ) {
        let rxq = &self.rxqs[q];
        let (n, next, tail, inuse, addrs) = {
            let (mut rx, _) = ctx.lock(&rxq.rx);
            let cwm = rx.cwm();
            let inuse = rx.teardown();
            let soft = rx.data_mut();
            // A ring already torn down (init stops first) has cwm 0 and
            // must not overwrite what the last live ring reached.
            if cwm != 0 {
                soft.kept_cwm = cwm;
            }
            let addrs = core::mem::take(&mut soft.bufs);
            let r = (soft.n, soft.next, soft.tail, inuse, addrs);
            soft.next = 0;
            soft.tail = 0;
            // A chain cut by the teardown: its fragments are freed below.
            soft.discarding = false;
            r
        };
        let mut bufs = Vec::with_capacity(inuse as usize);
        let mut i = next;
        let mut flushed = 0;
        for _ in 0..inuse {
            let d = rxq.ring.get(i as usize);
            if d.rx_writeback().status & RXD_STAT_DD != 0 {
                flushed += 1;
            }
            // SAFETY: our record of a posted slot of our ring (`inuse` of
            // them from `next`); stop calls this after disabling the
            // receive unit and resetting the device, and after `teardown`
            // under the rx mutex, so rxeof no longer reaps them.
            bufs.push(unsafe { self.pool().reclaim(addrs[i as usize], Ring::Rx) });
            d.clear();
            i = (i + 1) % n;
        }
        debug_assert!(inuse == 0 || i == tail, "posted slots end at the tail");
        self.ctr.add_rx_flushed(flushed);
        self.pool().free_all_in(ctx, bufs);
    }
}

fn rxeof_locked<H: Hardware>(
    pool: &H::Pool,
    rxq: &RxQueue<H>,
    rx: &mut RxRingGuard<'_, RxLockOf<H>, RxSoft>,
    input: &mut Vec<BufOf<H>>,
    free: &mut Vec<BufOf<H>>,
) {
    let (rxr, soft) = rx.split();
    let inuse = rxr.inuse();
    let n = soft.n;
    let mut i = soft.next;
    let mut done = 0;
    // Only posted slots: a reclaimed, not yet refilled slot still shows
    // the previous lap's DD bit.
    while done < inuse {
        let wb = rxq.ring.get(i as usize).rx_writeback();
        if wb.status & RXD_STAT_DD == 0 {
            break;
        }
        // Our buffer for the slot, whatever the descriptor's address says.
        // SAFETY: our record of a slot we posted and still count in use,
        // and the device wrote it back (DD): it is done with the buffer. The
        // rx mutex makes this the slot's only reaper.
        let mut m = unsafe { pool.reclaim(soft.bufs[i as usize], Ring::Rx) };
        let len = usize::from(wb.len);
        let eop = wb.status & RXD_STAT_EOP != 0;
        if soft.discarding || !eop {
            // A frame over several descriptors: this driver posts one
            // buffer per frame, so it is one too long for the buffer, or a
            // device writing fragments. Dropped whole, as `em_rxeof` frees a
            // bad fmp/lmp chain, and counted once: every fragment up to and
            // including the one with EOP.
            if !soft.discarding {
                soft.errors += 1;
            }
            soft.discarding = !eop;
            free.push(m);
        } else if wb.errors == 0 && len > 0 && len <= pool.buf_size() {
            // The length is what the descriptor says (a real device writes
            // only the descriptor; the simulated one stored it too).
            m.set_len(wb.len);
            soft.packets += 1;
            input.push(m);
        } else {
            // Errors, or a length the buffer cannot hold: counted and
            // dropped.
            soft.errors += 1;
            free.push(m);
        }
        i = (i + 1) % n;
        done += 1;
    }
    soft.next = i;
    rxr.put(done).expect("never more than in use");
}
