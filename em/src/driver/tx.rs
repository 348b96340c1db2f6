//! Transmit: the start routine (`em_start`), tx completion (`em_txeof`) and
//! freeing the transmit ring at stop.

use crate::sync::counter::AtomicU64 as Counter;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crossbeam_utils::CachePadded;
use lock_api::RawMutex;
use mpsafe_ifqueue::{Discipline, IfQueue, SendQueue, Start};
use mpsafe_order::{Ctx, LockBefore, Ordered};
use mpsafe_serializer::{Combiner, TaskOwner, Wait};

use super::core::Core;
use super::mode::{Entry, Mode, Proof};
use super::order::{IfqMutex, IfqStart, IfqStartSerialized, PoolMutex};
use super::{Disc, KernelOf, KernelWait, QueueLockOf, SendQueueOf};
use crate::biglock::Path;
use crate::buf::{Buffer, BufferPool, Ring};
use crate::desc::{DescRing, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS};
use crate::hw::{Hardware, Reg};

/// A send queue's mutex at its level in the driver's order.
pub(crate) fn ifq_mutex<D, R: RawMutex>(
    queue: &SendQueue<D, R>,
) -> &Ordered<IfqMutex, SendQueue<D, R>> {
    Ordered::declare(queue)
}

/// Waits at send queue `ifq`'s start barrier, ordered at the level its
/// start routine runs at in `mode`: [`IfqStartSerialized`] in
/// [`Mode::Serialized`] (the routine enters the ifnet serializer, so only a
/// context holding nothing may wait), [`IfqStart`] in the others (the
/// routine takes the big lock and the queue mutex, so not under those).
///
/// # Panics
///
/// If called from inside the queue's start routine (never: stop and the
/// mode switch are not start routines).
#[track_caller]
pub(crate) fn start_barrier<D, S, R, W, L>(
    ifq: &IfQueue<D, S, R, W>,
    mode: Mode,
    ctx: &mut Ctx<'_, L>,
) where
    D: Discipline,
    S: Start<D, R>,
    R: RawMutex,
    W: Wait,
    L: LockBefore<IfqStartSerialized> + LockBefore<IfqStart>,
{
    let queue = ifq.queue();
    let wait = |_: &SendQueue<D, R>| ifq.barrier();
    match mode.entry(Path::Start) {
        Entry::Serializer => ctx.wait_with(Ordered::<IfqStartSerialized, _>::declare(queue), wait),
        Entry::BigLock | Entry::Unlocked => {
            ctx.wait_with(Ordered::<IfqStart, _>::declare(queue), wait)
        }
    }
    .expect("never called from inside the start routine");
}

/// One transmit ring: what the send queue's start routine feeds (the ifq's
/// `ifq_softc`). `head` is written only by the start routine (serialized),
/// `tail` only by tx completion (combined), each on its own cache line.
pub(crate) struct TxRing<H: Hardware> {
    pub(crate) q: usize,
    pub(crate) core: Arc<Core<KernelOf<H>>>,
    pub(crate) hw: Arc<H>,
    pub(crate) ring: Arc<DescRing>,
    /// The buffer address posted in each slot, written by the start routine
    /// before it publishes `head`: the driver's own record, so a device
    /// that rewrites a descriptor's address cannot make us free the wrong
    /// buffer.
    bufs: Box<[AtomicU64]>,
    pub(crate) bus: u64,
    pub(crate) n: AtomicU32,
    pub(crate) head: CachePadded<AtomicU32>,
    pub(crate) tail: CachePadded<AtomicU32>,
    reap: Combiner,
    pub(crate) posted: CachePadded<Counter>,
    pub(crate) completed: CachePadded<Counter>,
    pub(crate) flushed: Counter,
}

fn used(n: u32, head: u32, tail: u32) -> u32 {
    (head + n - tail) % n
}

impl<H: Hardware> TxRing<H> {
    pub(crate) fn new(
        q: usize,
        core: Arc<Core<KernelOf<H>>>,
        hw: Arc<H>,
        ring: (u64, Arc<DescRing>),
    ) -> Self {
        Self {
            q,
            core,
            hw,
            bufs: (0..ring.1.capacity()).map(|_| AtomicU64::new(0)).collect(),
            ring: ring.1,
            bus: ring.0,
            n: AtomicU32::new(0),
            head: CachePadded::new(AtomicU32::new(0)),
            tail: CachePadded::new(AtomicU32::new(0)),
            reap: Combiner::new(),
            posted: CachePadded::new(Counter::new(0)),
            completed: CachePadded::new(Counter::new(0)),
            flushed: Counter::new(0),
        }
    }

    /// The start routine body (`em_start`): dequeue while the ring has room,
    /// one descriptor per frame, then ring the `TDT` doorbell once. `proof`
    /// is what serializes it: the ifq serializer's owner token, the big lock
    /// or the ifnet serializer, as the policy said. Each dequeue takes the
    /// queue mutex from `ctx`, at [`IfqMutex`].
    ///
    /// # Panics
    ///
    /// If `proof` is not one of this queue's: a token of another send
    /// queue's serializer, or a foreign big lock or ifnet serializer.
    pub(crate) fn start_locked<L: LockBefore<IfqMutex>>(
        &self,
        queue: &SendQueueOf<H>,
        proof: &Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        if let Proof::Task(owner) = proof {
            assert!(
                IfQueue::<Disc<H>, Self, QueueLockOf<H>, KernelWait<H>>::owns(queue, owner),
                "start routine token of another send queue's serializer"
            );
        }
        self.core.check(proof);
        if !self.core.is_running() {
            return;
        }
        let n = self.n.load(Ordering::Relaxed);
        // Relaxed: only the start routine writes `head`, and it is serialized.
        let mut head = self.head.load(Ordering::Relaxed);
        let mut posted = 0u64;
        loop {
            // Acquire: the slots tx completion released are free to reuse.
            let tail = self.tail.load(Ordering::Acquire);
            // One slot stays empty so head == tail means "empty".
            if used(n, head, tail) >= n - 1 {
                let room = || used(n, head, self.tail.load(Ordering::Acquire)) < n - 1;
                if queue.set_oactive_unless(room) {
                    break;
                }
                continue;
            }
            let Some(m) = ctx.lock(ifq_mutex(queue)).0.dequeue() else {
                break;
            };
            let len = m.len() as u16;
            let addr = self.hw.pool().post(m, Ring::Tx);
            let cmd = TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS;
            // Relaxed: published with `head` (Release) below.
            self.bufs[head as usize].store(addr, Ordering::Relaxed);
            self.ring.get(head as usize).post_tx(addr, len, cmd);
            head = (head + 1) % n;
            posted += 1;
        }
        if posted > 0 {
            // Release: tx completion, which reads `head` with acquire, sees
            // the descriptors; the TDT write publishes them to the device.
            self.head.store(head, Ordering::Release);
            self.hw.write(Reg::tdt(self.q), head);
            self.posted.fetch_add(posted, Ordering::Relaxed);
        }
    }

    /// Tx completion (`em_txeof`): reclaims every descriptor the device
    /// marked done. Runs through a combining serializer, so any context may
    /// call it; a caller that finds it running leaves the work to the owner.
    /// The reaped buffers go back to the pool from `ctx`.
    pub(crate) fn txeof<L: LockBefore<PoolMutex>>(
        &self,
        proof: &Proof<'_, KernelOf<H>>,
        ctx: &mut Ctx<'_, L>,
    ) {
        self.core.check(proof);
        self.reap.run(|| {
            let n = self.n.load(Ordering::Relaxed);
            // Acquire: descriptors up to `head` were filled by the start routine.
            let head = self.head.load(Ordering::Acquire);
            let mut tail = self.tail.load(Ordering::Relaxed);
            let mut done = Vec::new();
            while tail != head {
                if self.ring.get(tail as usize).tx_done().is_none() {
                    break;
                }
                // Relaxed: written before the `head` we loaded with Acquire.
                let addr = self.bufs[tail as usize].load(Ordering::Relaxed);
                // SAFETY: `addr` is what the start routine posted in this
                // slot of our ring (our record, not the descriptor's), and
                // the device wrote the slot back (`tx_done`): it is done
                // with the buffer. The combiner reaps each slot once.
                done.push(unsafe { self.hw.pool().reclaim(addr, Ring::Tx) });
                tail = (tail + 1) % n;
            }
            if !done.is_empty() {
                self.completed
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                // Release: the start routine that sees the new tail reuses
                // the slots only after we read them.
                self.tail.store(tail, Ordering::Release);
                self.hw.pool().free_all_in(ctx, done);
            }
        });
    }

    /// Programs the transmit unit for a ring of `n` descriptors
    /// (`em_initialize_transmit_unit`); the ring is empty.
    pub(crate) fn init_locked(&self, n: u32) {
        self.n.store(n, Ordering::Relaxed);
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
        for i in 0..n as usize {
            self.ring.get(i).clear();
        }
        let q = self.q;
        self.hw.write(Reg::tdbal(q), self.bus as u32);
        self.hw.write(Reg::tdbah(q), (self.bus >> 32) as u32);
        self.hw
            .write(Reg::tdlen(q), n * crate::desc::DESC_SIZE as u32);
        self.hw.write(Reg::tdh(q), 0);
        self.hw.write(Reg::tdt(q), 0);
    }

    /// Reclaims every posted descriptor, sent or not (`em_free_transmit_structures`).
    /// Only after the interrupt and start barriers.
    pub(crate) fn free_locked<L: LockBefore<PoolMutex>>(&self, ctx: &mut Ctx<'_, L>) {
        let n = self.n.load(Ordering::Relaxed);
        // Acquire, belt and braces: the interrupt and start barriers stop
        // waited at already order every head and tail store before this.
        let (head, mut tail) = (
            self.head.load(Ordering::Acquire),
            self.tail.load(Ordering::Acquire),
        );
        let mut bufs = Vec::new();
        while tail != head {
            let addr = self.bufs[tail as usize].load(Ordering::Relaxed);
            // SAFETY: our record of a posted slot of our ring; stop calls
            // this after disabling the transmit unit and resetting the
            // device, past the interrupt and start barriers, so neither the
            // device nor another reaper touches it.
            bufs.push(unsafe { self.hw.pool().reclaim(addr, Ring::Tx) });
            self.ring.get(tail as usize).clear();
            tail = (tail + 1) % n;
        }
        self.flushed.fetch_add(bufs.len() as u64, Ordering::Relaxed);
        self.head.store(0, Ordering::Relaxed);
        self.tail.store(0, Ordering::Relaxed);
        self.hw.pool().free_all_in(ctx, bufs);
    }

    /// The start routine as the ifq serializer runs it, in Serialized mode:
    /// enter the ifnet serializer (blocking: nobody inside it waits for
    /// this queue's start barrier), then re-read the mode, which a switch
    /// may have changed while this call waited. Returns `false` if the
    /// mode is no longer `Serialized` (decide again).
    fn start_serialized(
        &self,
        queue: &SendQueueOf<H>,
        ctx: &mut Ctx<'_, IfqStartSerialized>,
    ) -> bool {
        let (s, mut ctx) = ctx.lock(&self.core.ifnet);
        match self.core.decide() {
            Some(Mode::Serialized) => {}
            // Paused: the packets stay queued for the switch's resume.
            None => return true,
            Some(_) => return false,
        }
        self.start_locked(queue, &Proof::Ifnet(&s), &mut ctx);
        true
    }
}

/// The start routine, run inside the queue's start level for the mode it
/// finds ([`start_barrier`] waits at the same one): what it takes comes
/// after that level, in the types and in the witness.
impl<H: Hardware> Start<Disc<H>, QueueLockOf<H>> for TxRing<H> {
    fn start(&self, queue: &SendQueueOf<H>, owner: &TaskOwner<'_>) {
        loop {
            // Decided once, inside the start serializer; paused by a mode
            // switch: the packets stay queued for its resume's kick.
            let Some(mode) = self.core.decide() else {
                return;
            };
            match mode.entry(Path::Start) {
                // The ifq serializer alone serializes the start routine.
                Entry::Unlocked => {
                    return Ordered::<IfqStart, _>::declare(queue).run_inside(|mut ctx| {
                        self.start_locked(queue, &Proof::Task(owner), &mut ctx);
                    });
                }
                // Not MPSAFE: the start routine runs under the big lock too
                // (seed 002's default for unconverted drivers). A caller of
                // `Em::start_locked` holds it already: this nests.
                Entry::BigLock => {
                    return Ordered::<IfqStart, _>::declare(queue).run_inside(|mut ctx| {
                        let (k, mut ctx) = self.core.big.lock_in(&mut ctx, Path::Start);
                        self.start_locked(queue, &Proof::Big(k), &mut ctx);
                    });
                }
                Entry::Serializer => {
                    let ran = Ordered::<IfqStartSerialized, _>::declare(queue)
                        .run_inside(|mut ctx| self.start_serialized(queue, &mut ctx));
                    if ran {
                        return;
                    }
                }
            }
        }
    }
}

impl<H: Hardware> super::Em<H> {
    /// Runs a start of send queue `queue` that bundling
    /// ([`EmConfig::tx_bundle`](super::EmConfig::tx_bundle)) deferred, if
    /// one is pending (OpenBSD's `ifq_bundle_task`): the stack calls it at
    /// the end of a batch of [`transmit`](super::Em::transmit)s, or packets
    /// below the threshold wait for the next one. Returns whether a start
    /// was pending; with `tx_bundle` 1 none ever is.
    ///
    /// From [`Stack::input`](super::Stack::input) in [`Mode::Serialized`]
    /// (the interrupt thread, inside the ifnet serializer) a start would
    /// enter that serializer again: the handler starts every queue when the
    /// stack returns, so this only reports whether packets wait for it.
    pub fn flush_tx(&self, queue: usize) -> bool {
        let Some(ifq) = self.sc.ifqs.queues().get(queue) else {
            return false;
        };
        if self.sc.in_own_handler() && self.sc.core.mode() == Mode::Serialized {
            return !ifq.is_empty();
        }
        ifq.flush_bundle()
    }
}
