//! The em(4) driver, in the four locking designs the seeds walk through,
//! generic over the device it drives ([`Hardware`]).
//!
//! Each path asks the mode policy ([`Mode::entry`]) what to enter:
//!
//! | path | [`Mode::BigLock`] | [`Mode::RxUnlocked`] (seed 000) | [`Mode::Mpsafe`] (seeds 002, 001) | [`Mode::Serialized`] (seed 001) |
//! | --- | --- | --- | --- | --- |
//! | interrupt entry | big lock | — (device gate only) | — (device gate only) | ifnet serializer, through `handler_call` |
//! | rx completion (`rxeof`) | big lock + rx mutex | rx mutex, frees and `if_input` after it | same as RxUnlocked | ifnet serializer (held) + rx mutex |
//! | rx refill (`rxfill`) | big lock + rx mutex | big lock + rx mutex | rx mutex | ifnet serializer (held) + rx mutex |
//! | tx completion (`txeof`) | big lock | big lock | combiner; `restart` if `oactive` | ifnet serializer (held); start called directly |
//! | start | big lock (inside the ifq serializer) | big lock (inside the ifq serializer) | ifq serializer only | ifnet serializer (entered by the ifq task, or held by the interrupt and init) |
//! | init / stop / ioctl | ifnet serializer + big lock | ifnet serializer + big lock | ifnet serializer | ifnet serializer |
//! | interrupt barrier in stop | device gate barrier | device gate barrier | device gate barrier | `handler_disable` |
//!
//! Lock order, declared once in [`order`] and taken through contexts on
//! every path: (`IfqStartSerialized` →) ifnet serializer → (`IfqStart` →)
//! big lock → rx mutex → ifq mutex → buffer pool. The two start levels are
//! the send queue's start routine, which runs inside the queue's start
//! serializer and whose barrier stop waits for: in `Serialized` mode the
//! routine enters the ifnet serializer (before it), in the others stop waits
//! for it inside the ifnet serializer (after it). Starting through the ifq
//! serializer never blocks (seed 002: "because contention on the
//! ifq_serializer causes the second context to return immediately ... all
//! the problems are avoided"), so any path may ask for a start; the ifq
//! *barrier* does block, and is ordered at the routine's level for the
//! mode. In `Serialized` mode the interrupt and init paths, which hold the
//! ifnet serializer, run the start body directly instead of through the
//! send queue (the serializer is not recursive). The interrupt handler and
//! the refill timeout are levels too (`order.rs` has the table).
//!
//! One file per concept: [`mode`](self) policy, `core` (mode, RUNNING, the
//! locks the policy hands out), `tx`, `rx`, `ioctl`, `intr`, `stats`,
//! `errors`, `config`, `stack`. Nothing here names a concrete device.

mod config;
mod core;
mod errors;
mod intr;
mod ioctl;
mod mode;
pub mod order;
mod probe;
mod rx;
mod stack;
mod stats;
mod switch;
mod tx;

use crate::sync::AtomicU32;
use ::core::fmt;
use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;

use mpsafe_ifqueue::{
    Config as IfqConfig, Dropped, Fifo, IfQueue, IfQueues, QueueCountError, SendQueue,
};
use mpsafe_order::Ctx;
use mpsafe_serializer::{Serialized, Serializer};

pub use self::config::{ETHER_HDR_LEN, EmConfig, MAX_DESC, MIN_DESC, TxStart};
pub use self::errors::{EmError, TxError};
pub use self::mode::{Entry, Mode};
#[doc(hidden)]
pub use self::probe::Probe;
pub use self::stack::{InputQueues, Sink, Stack};
pub use self::stats::EmStats;

use self::core::Core;
use self::mode::Proof;
use self::order::{Ifnet, IfqMutex};
use self::rx::RxQueue;
use self::stats::Counters;
use self::tx::TxRing;
use crate::biglock::{KernelGuard, KernelLock, Path};
use crate::buf::{Buffer, BufferPool};
use crate::hw::{Hardware, IntrHandler};
use crate::kernel::{Deferred, Kernel};

/// The most queue pairs the driver handles (the 82571 and 82574 have two).
pub const MAX_QUEUES: usize = 2;

/// The buffers of device `H`'s pool: what [`Em::transmit`] takes and
/// [`Stack::input`] receives.
pub type BufOf<H> = <<H as Hardware>::Pool as BufferPool>::Buf;

/// The big lock of device `H`'s kernel, as the driver counts it.
pub type KernelLockOf<H> = KernelLock<<KernelOf<H> as Kernel>::BigLock>;

/// A guard of [`KernelLockOf<H>`].
pub type KernelGuardOf<'a, H> = KernelGuard<'a, <KernelOf<H> as Kernel>::BigLock>;

/// The ifnet serializer's type for device `H` (its kernel's wait).
pub type IfnetOf<H> = Serializer<KernelWait<H>>;

/// The kernel device `H` lives in.
pub(crate) type KernelOf<H> = <H as Hardware>::Kernel;
/// How that kernel waits.
pub(crate) type KernelWait<H> = <KernelOf<H> as Kernel>::Wait;
/// That kernel's send queue mutex.
pub(crate) type QueueLockOf<H> = <KernelOf<H> as Kernel>::QueueLock;
/// The send queues' discipline.
pub(crate) type Disc<H> = Fifo<BufOf<H>>;
/// A send queue's packets under its mutex.
pub(crate) type SendQueueOf<H> = SendQueue<Disc<H>, QueueLockOf<H>>;

/// The send queues, one per transmit ring; each start routine feeds its
/// ring (OpenBSD `ifp->if_ifqs`).
type SendQueues<H> = IfQueues<Disc<H>, TxRing<H>, MAX_QUEUES, QueueLockOf<H>, KernelWait<H>>;

/// One send queue.
type SendQ<H> = IfQueue<Disc<H>, TxRing<H>, QueueLockOf<H>, KernelWait<H>>;

/// The accounting of device `H`'s buffer pool.
pub type PoolStatsOf<H> = <<H as Hardware>::Pool as BufferPool>::Stats;

/// A task or timeout of device `H`'s kernel.
type DeferredOf<H> = <KernelOf<H> as Kernel>::Deferred;

/// Queue pair `q`'s DMA memory: its receive ring and its send queue, whose
/// start routine feeds the transmit ring (built stopped).
fn queue_pair<H: Hardware>(
    q: usize,
    hw: &Arc<H>,
    core: &Arc<Core<KernelOf<H>>>,
    cfg: &EmConfig,
) -> Result<(RxQueue<H>, SendQ<H>), EmError> {
    let dma = |n| hw.dma_alloc(n).map_err(|e| EmError::Dma(e.to_string()));
    let rxq = RxQueue::new(dma(MAX_DESC as usize)?);
    let tx = TxRing::new(q, Arc::clone(core), Arc::clone(hw), dma(MAX_DESC as usize)?);
    let ifq = IfQueue::with_lock(
        Fifo::with_capacity(cfg.ifq_maxlen),
        IfqConfig::with_maxlen(cfg.ifq_maxlen).bundle(cfg.tx_bundle),
        tx,
    )
    .map_err(|e| EmError::Config(e.to_string()))?;
    ifq.set_running(false);
    Ok((rxq, ifq))
}

/// The receive rings and the send queues.
type QueuePairs<H> = (Box<[RxQueue<H>]>, SendQueues<H>);

/// The queue pairs of `hw`: as many as it has, `1..=MAX_QUEUES`.
fn queue_pairs<H: Hardware>(
    hw: &Arc<H>,
    core: &Arc<Core<KernelOf<H>>>,
    cfg: &EmConfig,
) -> Result<QueuePairs<H>, EmError> {
    let mut rxqs = Vec::with_capacity(hw.queues());
    let ifqs = IfQueues::with_count(hw.queues(), |q| {
        let (rxq, ifq) = queue_pair(q, hw, core, cfg)?;
        rxqs.push(rxq);
        Ok(ifq)
    })
    .map_err(|e| match e {
        QueueCountError::Queue { error, .. } => error,
        _ => EmError::Queues(hw.queues()),
    })?;
    Ok((rxqs.into_boxed_slice(), ifqs))
}

/// The driver's state (`em_softc`), shared with the interrupt handler.
struct Softc<H: Hardware> {
    cfg: EmConfig,
    hw: Arc<H>,
    core: Arc<Core<KernelOf<H>>>,
    /// Ring sizes for the next init (ioctl), written under `ifnet`.
    rx_desc: AtomicU32,
    tx_desc: AtomicU32,
    /// The receive rings, one per queue pair.
    rxqs: Box<[RxQueue<H>]>,
    /// The send queues, one per queue pair.
    ifqs: SendQueues<H>,
    stack: Arc<dyn Stack<BufOf<H>>>,
    ctr: Counters,
    /// The kernel's tasks and timeouts of this driver, made at attach.
    deferred: Result<Deferreds<H>, String>,
}

/// The driver's deferred calls; each reaches the softc through a weak
/// reference, upgraded only while it runs.
struct Deferreds<H: Hardware> {
    /// The rx refill retry (`que->rx_refill`), one tick after each add.
    refill: DeferredOf<H>,
    /// With [`TxStart::Delegated`], each send queue's start task
    /// (`ifq_restart` on a task queue); empty with [`TxStart::Direct`].
    start: Box<[DeferredOf<H>]>,
}

impl<H: Hardware> Deferreds<H> {
    /// Makes them for the softc `sc` will point to.
    fn new(sc: &Weak<Softc<H>>, cfg: &EmConfig, queues: usize) -> Result<Self, String> {
        let refill = {
            let sc = Weak::clone(sc);
            KernelOf::<H>::deferred(
                &format!("{}-refill", cfg.name),
                1,
                Box::new(move || {
                    if let Some(sc) = sc.upgrade() {
                        sc.refill_timeout();
                    }
                }),
            )
            .map_err(|e| format!("refill timeout: {e}"))?
        };
        let starts = match cfg.tx_start {
            TxStart::Direct => 0,
            TxStart::Delegated => queues,
        };
        let start = (0..starts)
            .map(|q| {
                let sc = Weak::clone(sc);
                KernelOf::<H>::deferred(
                    &format!("{}-start{q}", cfg.name),
                    0,
                    Box::new(move || {
                        if let Some(sc) = sc.upgrade() {
                            sc.ifqs.queue(q).start();
                        }
                    }),
                )
                .map_err(|e| format!("start task: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { refill, start })
    }
}

impl<H: Hardware> Drop for Softc<H> {
    fn drop(&mut self) {
        // The start, interrupt and refill levels are declared by reference
        // on values this softc owns or shares (the send queues, the device,
        // the timeout): the witness forgets them with it, so a driver built
        // at the same addresses later starts with no history.
        for ifq in self.ifqs.queues() {
            mpsafe_order::witness::forget_within(ifq);
        }
        mpsafe_order::witness::forget_within(&*self.hw);
        if let Ok(d) = &self.deferred {
            mpsafe_order::witness::forget_within(&d.refill);
        }
    }
}

impl<H: Hardware> Softc<H> {
    /// [`EmError::InInterrupt`] inside this interface's interrupt handler.
    fn not_in_own_handler(&self) -> Result<(), EmError> {
        if self.in_own_handler() {
            Err(EmError::InInterrupt)
        } else {
            Ok(())
        }
    }

    /// Panics inside this interface's interrupt handler, naming `what`.
    #[track_caller]
    fn assert_not_in_own_handler(&self, what: &str) {
        assert!(
            !self.in_own_handler(),
            "{what} called from the interface's own interrupt handler: it would wait for itself"
        );
    }

    /// Send queue `queue`.
    fn ifq(&self, queue: usize) -> Result<&SendQ<H>, EmError> {
        self.ifqs.queues().get(queue).ok_or(EmError::NoQueue(queue))
    }

    /// The rx rings' watermark clock: the kernel's ticks.
    fn ticks(&self) -> u64 {
        KernelOf::<H>::ticks()
    }

    /// The deferred calls (made at attach: an attach that could not make
    /// them returned its error and dropped this softc).
    fn deferred(&self) -> &Deferreds<H> {
        self.deferred
            .as_ref()
            .expect("attach returns an error without them")
    }

    /// The buffer pool.
    fn pool(&self) -> &H::Pool {
        self.hw.pool()
    }
}

/// The em(4) driver attached to a device `H` (the simulated
/// `mpsafe-em-sim`'s `Device`, or a real one behind [`Hardware`]).
///
/// Entry points come in pairs (seed 003's `foo()` / `foo_locked()`):
/// [`init`](Em::init) / [`init_locked`](Em::init_locked),
/// [`stop`](Em::stop) / [`stop_locked`](Em::stop_locked) take the ifnet
/// [`Serializer`] (and the big lock, in the modes that use it) or demand its
/// guard; [`start`](Em::start) / [`start_locked`](Em::start_locked) run the
/// start routine through the send queue's serializer, the second for a
/// caller that holds the big lock (the routine's own acquisition nests in
/// it). A guard from another interface's serializer or another big lock,
/// or a big-lock guard this thread does not hold now, is refused with a
/// panic.
pub struct Em<H: Hardware> {
    sc: Arc<Softc<H>>,
}

impl<H: Hardware> fmt::Debug for Em<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Em")
            .field("mode", &self.mode())
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

impl<H: Hardware> Em<H> {
    /// Attaches the driver to `hw` (`em_attach`): validates `cfg`, allocates
    /// descriptor memory for the largest rings, builds the send queues,
    /// establishes the interrupt. The interface starts down; call
    /// [`init`](Em::init).
    ///
    /// `big` is the kernel's big lock (shared by every driver of the
    /// simulated kernel); `stack` receives the packets.
    ///
    /// # Errors
    ///
    /// [`EmError::RingSize`] or [`EmError::Field`] for a configuration out of
    /// range (the device is not touched), [`EmError::Config`] for a send
    /// queue length the queue refuses, [`EmError::Dma`] without DMA memory.
    pub fn attach(
        hw: Arc<H>,
        cfg: EmConfig,
        big: Arc<KernelLockOf<H>>,
        stack: Arc<dyn Stack<BufOf<H>>>,
    ) -> Result<Self, EmError> {
        cfg.validate(hw.queues(), hw.pool().buf_size())?;
        let core = Arc::new(Core::new(cfg.mode, big));
        let (rxqs, ifqs) = queue_pairs(&hw, &core, &cfg)?;
        let sc = Arc::new_cyclic(|weak| Softc {
            rx_desc: AtomicU32::new(cfg.rx_desc),
            tx_desc: AtomicU32::new(cfg.tx_desc),
            deferred: Deferreds::new(weak, &cfg, hw.queues()),
            cfg,
            hw,
            core,
            rxqs,
            ifqs,
            stack,
            ctr: Counters::default(),
        });
        // Not through `Em`'s drop on an error: it would bring down and
        // unhook a device this attach never set up. Dropping the softc
        // drops the deferred calls made before the one that failed.
        if let Err(e) = &sc.deferred {
            return Err(EmError::Config(e.clone()));
        }
        let weak: Weak<dyn IntrHandler> = Arc::downgrade(&sc) as Weak<Softc<H>>;
        sc.hw.intr_establish(weak);
        Ok(Self { sc })
    }

    /// The locking design running now.
    pub fn mode(&self) -> Mode {
        self.sc.core.mode()
    }

    /// Number of queue pairs.
    pub fn queues(&self) -> usize {
        self.sc.rxqs.len()
    }

    /// The device.
    pub fn hardware(&self) -> &Arc<H> {
        &self.sc.hw
    }

    /// The ifnet serializer: enter it to call the `*_locked` ioctl entry
    /// points.
    pub fn ifnet(&self) -> &IfnetOf<H> {
        self.sc.core.ifnet.unordered()
    }

    /// The big lock this driver uses in the modes that need it.
    pub fn big_lock(&self) -> &KernelLockOf<H> {
        &self.sc.core.big
    }

    /// Whether the interface is running (`IFF_RUNNING`).
    pub fn is_running(&self) -> bool {
        self.sc.core.is_running()
    }

    /// Brings the interface up (`em_init`): takes the ifnet serializer and,
    /// in the big-lock modes, the big lock.
    ///
    /// # Errors
    ///
    /// [`EmError::DeviceRefused`] if the device did not accept the rings;
    /// [`EmError::InInterrupt`] from this interface's interrupt handler
    /// (init stops first, which waits for the handler).
    pub fn init(&self) -> Result<(), EmError> {
        self.sc.not_in_own_handler()?;
        let mut ctx = Ctx::new();
        let (s, mut ctx) = ctx.lock(&self.sc.core.ifnet);
        self.sc.init_locked(&s, &mut ctx)
    }

    /// [`init`](Em::init) for a caller inside this interface's ifnet
    /// serializer.
    ///
    /// # Errors
    ///
    /// As [`init`](Em::init).
    ///
    /// # Panics
    ///
    /// If `s` is a guard of another serializer.
    pub fn init_locked(&self, s: &Serialized<'_, KernelWait<H>>) -> Result<(), EmError> {
        // The caller entered the serializer through the plain API
        // (`Em::ifnet`), so no context came with it: this one starts at
        // `Ifnet`, as if it had (the witness does not see that entry).
        self.sc.init_locked(s, &mut Ctx::new().restrict::<Ifnet>())
    }

    /// Brings the interface down (`em_stop`) in the documented order: clear
    /// RUNNING, mask interrupts, interrupt barrier, start barrier, reset the
    /// device, clear `oactive`, free transmit then receive structures.
    ///
    /// # Panics
    ///
    /// If called from this interface's interrupt handler (from
    /// [`Stack::input`]): the interrupt barrier would wait for the caller
    /// forever, as `intr_barrier` from a handler does. Stop from another
    /// context.
    pub fn stop(&self) {
        self.sc.assert_not_in_own_handler("Em::stop");
        let mut ctx = Ctx::new();
        let (s, mut ctx) = ctx.lock(&self.sc.core.ifnet);
        self.sc.stop_locked(&s, &mut ctx);
    }

    /// [`stop`](Em::stop) for a caller inside this interface's ifnet
    /// serializer.
    ///
    /// # Panics
    ///
    /// If `s` is a guard of another serializer.
    pub fn stop_locked(&self, s: &Serialized<'_, KernelWait<H>>) {
        // As in `init_locked`: the context starts at `Ifnet`.
        self.sc.stop_locked(s, &mut Ctx::new().restrict::<Ifnet>());
    }

    /// `if_down`: [`stop`](Em::stop), then purge the send queues (the purged
    /// packets are freed and counted).
    ///
    /// # Panics
    ///
    /// As [`stop`](Em::stop), from this interface's interrupt handler.
    pub fn down(&self) {
        self.sc.assert_not_in_own_handler("Em::down");
        let mut ctx = Ctx::new();
        let (s, mut ctx) = ctx.lock(&self.sc.core.ifnet);
        self.sc.stop_locked(&s, &mut ctx);
        self.sc.purge(&mut ctx);
    }

    /// `if_up`: [`init`](Em::init).
    ///
    /// # Errors
    ///
    /// As [`init`](Em::init).
    pub fn up(&self) -> Result<(), EmError> {
        self.init()
    }

    /// Changes the ring sizes (an `ioctl`, like `SIOCSIFRXR`); a running
    /// interface is re-initialised with them.
    ///
    /// # Errors
    ///
    /// [`EmError::RingSize`] (nothing changes), or as [`init`](Em::init).
    pub fn set_ring_sizes(&self, rx: u32, tx: u32) -> Result<(), EmError> {
        self.sc.not_in_own_handler()?;
        let mut ctx = Ctx::new();
        let (s, mut ctx) = ctx.lock(&self.sc.core.ifnet);
        self.sc.set_ring_sizes_locked(&s, rx, tx, &mut ctx)
    }

    /// [`set_ring_sizes`](Em::set_ring_sizes) inside this interface's ifnet
    /// serializer.
    ///
    /// # Errors
    ///
    /// As [`set_ring_sizes`](Em::set_ring_sizes).
    ///
    /// # Panics
    ///
    /// If `s` is a guard of another serializer.
    pub fn set_ring_sizes_locked(
        &self,
        s: &Serialized<'_, KernelWait<H>>,
        rx: u32,
        tx: u32,
    ) -> Result<(), EmError> {
        // As in `init_locked`: the context starts at `Ifnet`.
        self.sc
            .set_ring_sizes_locked(s, rx, tx, &mut Ctx::new().restrict::<Ifnet>())
    }

    /// Switches the locking design of a running (or stopped) interface, under
    /// load (seed 001's `kern.intr_mpsafe`, settable at any time): pauses
    /// the interrupt and the starts, waits at their barriers, switches,
    /// resumes. Packets on the send queues stay there and go out after;
    /// nothing is dropped. Switching to the current mode does nothing.
    ///
    /// Must not be called from inside the ifnet serializer, a start routine
    /// or the interrupt handler (it waits for them).
    ///
    /// # Errors
    ///
    /// [`EmError::InInterrupt`] from this interface's interrupt handler (the
    /// switch waits at the interrupt barrier).
    pub fn set_mode(&self, mode: Mode) -> Result<(), EmError> {
        self.sc.not_in_own_handler()?;
        self.sc.set_mode(mode)
    }

    /// Queues `packet` on send queue `queue` and starts it (`if_enqueue`):
    /// here, or with [`TxStart::Delegated`] by adding the queue's start
    /// task ([`Kernel::deferred`]).
    ///
    /// Callable from [`Stack::input`] in every mode (a reply, a bridge): in
    /// [`Mode::Serialized`], where `input` runs inside the ifnet serializer,
    /// the packet is only queued there, and the handler starts the queues
    /// once the stack returns. Elsewhere in `Serialized` mode the start
    /// enters the ifnet serializer: a caller that entered it through
    /// [`ifnet`](Em::ifnet) uses [`start_serialized`](Em::start_serialized)
    /// instead.
    ///
    /// # Errors
    ///
    /// [`TxError`] with the packet: malformed, of another pool
    /// ([`TxError::ForeignPool`]), interface down, send queue full (a
    /// counted drop). Nothing is lost: the caller frees it.
    pub fn transmit(&self, queue: usize, packet: BufOf<H>) -> Result<(), TxError<BufOf<H>>> {
        let sc = &self.sc;
        let max = sc.cfg.mtu + ETHER_HDR_LEN;
        let Some(ifq) = sc.ifqs.queues().get(queue) else {
            return Err(TxError::NoQueue(packet));
        };
        if !sc.pool().owns(&packet) {
            // Another pool's buffer (another NIC's, when forwarding): its
            // address means nothing to this device, and reclaiming it from
            // our pool would take a buffer of ours still on a ring.
            Counters::bump(&sc.ctr.tx_bad);
            return Err(TxError::ForeignPool(packet));
        }
        if packet.is_empty() || packet.len() > max {
            Counters::bump(&sc.ctr.tx_bad);
            return Err(if packet.is_empty() {
                TxError::Empty(packet)
            } else {
                TxError::Oversize { packet, max }
            });
        }
        if !self.is_running() {
            Counters::bump(&sc.ctr.tx_down);
            return Err(TxError::Down(packet));
        }
        // The queue mutex at its level; the start that follows never waits
        // (a routine run on this thread records itself at its start level).
        let mut ctx = Ctx::new();
        match sc.deferred().start.get(queue) {
            Some(task) => {
                let queued = ctx.lock(tx::ifq_mutex(ifq.queue())).0.enqueue(packet);
                // The add publishes the enqueue to the task (a kernel's
                // task queue orders its add before the run it causes).
                if !matches!(queued, Err(Dropped::Refused(_))) {
                    task.add();
                }
                queued
            }
            // A reply from `Stack::input` in `Serialized` mode: this thread
            // is the interrupt, inside the ifnet serializer, where the mode
            // cannot change; a start would enter the serializer again. The
            // packet waits on the queue, and the handler starts every queue
            // once the stack returns.
            None if sc.in_own_handler() && sc.core.mode() == Mode::Serialized => {
                ctx.lock(tx::ifq_mutex(ifq.queue())).0.enqueue(packet)
            }
            None => ifq.transmit_in::<IfqMutex, _>(&mut ctx, packet),
        }
        .or_else(|d| {
            Counters::bump(&sc.ctr.tx_qdrops);
            match d {
                // A FIFO never evicts; a priority queue would, and the
                // victim is ours to free.
                Dropped::Evicted(m) => {
                    sc.pool().free_all_in(&mut ctx, [m]);
                    Ok(())
                }
                d => Err(TxError::QueueFull(d.into_packet())),
            }
        })
    }

    /// How many more packets send queue `queue` would take now
    /// (`ifq_maxlen` minus its length), or `None` if there is no such
    /// queue: what a stack that reserves room before building a frame
    /// (`mpsafe-smoltcp`'s `TxQueue::has_room`) asks. Read without the
    /// queue's lock, so a hint: exact while nobody else transmits on the
    /// queue and the start routine only shrinks it; if it was stale,
    /// [`transmit`](Em::transmit) refuses with [`TxError::QueueFull`].
    pub fn send_queue_space(&self, queue: usize) -> Option<usize> {
        let ifq = self.sc.ifqs.queues().get(queue)?;
        Some(self.sc.cfg.ifq_maxlen.saturating_sub(ifq.len()))
    }

    /// Asks send queue `queue` to start (`if_start`): runs the start routine
    /// through the queue's serializer. Never blocks, except in
    /// [`Mode::Serialized`], where the start routine enters the ifnet
    /// serializer.
    pub fn start(&self, queue: usize) {
        if let Some(ifq) = self.sc.ifqs.queues().get(queue) {
            ifq.start();
        }
    }

    /// Starts `queue` for a caller that holds the big lock (the pre-2015
    /// `em_start(ifp)` call from a big-lock context), in the modes where
    /// the big lock serializes the start routine.
    ///
    /// The routine runs through the send queue's start serializer, as every
    /// start body does in every mode (OpenBSD's `if_start` since 2015): at
    /// most one body per ring at a time, and the mode switch's start barrier
    /// waits for it. If another CPU runs the routine now, this returns at
    /// once and that CPU runs it again for this request; otherwise it runs
    /// here, and its own acquisition of the big lock nests in `k`'s.
    ///
    /// # Errors
    ///
    /// [`EmError::WrongMode`] where the big lock does not serialize the start
    /// routine; [`EmError::NoQueue`].
    ///
    /// # Panics
    ///
    /// If `k` holds another big lock than this driver's, or if this thread
    /// does not hold it now (a nested guard inside [`KernelGuard::sleep`]).
    pub fn start_locked(&self, queue: usize, k: &KernelGuardOf<'_, H>) -> Result<(), EmError> {
        self.sc.core.check_big(k);
        if !self.mode().locks(Path::Start) {
            return Err(EmError::WrongMode(self.mode()));
        }
        // An explicit start runs what bundling deferred, too.
        let ifq = self.sc.ifq(queue)?;
        if !ifq.flush_bundle() {
            ifq.start();
        }
        Ok(())
    }

    /// Runs the start routine of `queue` directly, for a caller inside this
    /// interface's ifnet serializer in [`Mode::Serialized`] (DragonFly's
    /// `if_devstart` under `ifp->if_serializer`).
    ///
    /// # Errors
    ///
    /// [`EmError::WrongMode`] in the other modes; [`EmError::NoQueue`].
    ///
    /// # Panics
    ///
    /// If `s` is a guard of another serializer.
    pub fn start_serialized(
        &self,
        queue: usize,
        s: &Serialized<'_, KernelWait<H>>,
    ) -> Result<(), EmError> {
        self.sc.core.check_ifnet(s);
        if self.mode() != Mode::Serialized {
            return Err(EmError::WrongMode(self.mode()));
        }
        let ifq = self.sc.ifq(queue)?;
        // Inside the ifnet serializer through the plain API: as in
        // `init_locked`, the context starts at `Ifnet`.
        let mut ctx = Ctx::new();
        ifq.driver()
            .start_locked(ifq.queue(), &Proof::Ifnet(s), &mut ctx.restrict::<Ifnet>());
        Ok(())
    }

    /// Statistics, with the rx ring table and buffer accounting.
    pub fn stats(&self) -> EmStats<PoolStatsOf<H>> {
        self.sc.stats()
    }
}

impl<H: Hardware> Drop for Em<H> {
    fn drop(&mut self) {
        // Detach: down, so every buffer goes back to the pool (and nothing
        // adds a task or timeout again: the interface is not running);
        // cancel the start tasks and the refill timeout and wait out a call
        // in flight; then unhook the interrupt and wait out a call in
        // flight, so the driver state is never dropped on another thread.
        self.down();
        let d = self.sc.deferred();
        for t in d.start.iter() {
            t.del_barrier();
        }
        d.refill.del_barrier();
        self.sc.hw.intr_disestablish();
    }
}
