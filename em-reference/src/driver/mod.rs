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
mod rx;
mod stack;
mod stats;
mod switch;
mod timeout;
mod tx;

use std::fmt;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use mpsafe_ifqueue::{
    Config as IfqConfig, Dropped, Fifo, IfQueue, IfQueues, QueueCountError, StartTask,
};
use mpsafe_order::Ctx;
use mpsafe_serializer::{Serialized, Serializer};

pub use self::config::{ETHER_HDR_LEN, EmConfig, MAX_DESC, MIN_DESC, TxStart};
pub use self::errors::{EmError, TxError};
pub use self::mode::{Entry, Mode};
pub use self::stack::{InputQueues, Sink, Stack};
pub use self::stats::EmStats;

use self::core::Core;
use self::mode::Proof;
use self::order::{Ifnet, IfqMutex};
use self::rx::RxQueue;
use self::stats::Counters;
use self::timeout::Timeout;
use self::tx::TxRing;
use crate::biglock::{KernelGuard, KernelLock, Path};
use crate::hw::{Hardware, IntrHandler};
use crate::pool::{Mbuf, Pool};

/// The most queue pairs the driver handles (the 82571 and 82574 have two).
pub const MAX_QUEUES: usize = 2;

/// The send queues, one per transmit ring; each start routine feeds its
/// ring (OpenBSD `ifp->if_ifqs`).
type SendQueues<H> = IfQueues<Fifo<Mbuf>, TxRing<H>, MAX_QUEUES>;

/// One send queue.
type SendQ<H> = IfQueue<Fifo<Mbuf>, TxRing<H>>;

/// Queue pair `q`'s DMA memory: its receive ring and its send queue, whose
/// start routine feeds the transmit ring (built stopped).
fn queue_pair<H: Hardware>(
    q: usize,
    hw: &Arc<H>,
    core: &Arc<Core>,
    cfg: &EmConfig,
) -> Result<(RxQueue, SendQ<H>), EmError> {
    let dma = |n| hw.dma_alloc(n).map_err(|e| EmError::Dma(e.to_string()));
    let rxq = RxQueue::new(dma(MAX_DESC as usize)?);
    let tx = TxRing::new(q, Arc::clone(core), Arc::clone(hw), dma(MAX_DESC as usize)?);
    let ifq = IfQueue::new(
        Fifo::with_capacity(cfg.ifq_maxlen),
        IfqConfig::with_maxlen(cfg.ifq_maxlen).bundle(cfg.tx_bundle),
        tx,
    )
    .map_err(|e| EmError::Config(e.to_string()))?;
    ifq.set_running(false);
    Ok((rxq, ifq))
}

/// The queue pairs of `hw`: as many as it has, `1..=MAX_QUEUES`.
fn queue_pairs<H: Hardware>(
    hw: &Arc<H>,
    core: &Arc<Core>,
    cfg: &EmConfig,
) -> Result<(Box<[RxQueue]>, SendQueues<H>), EmError> {
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
    pool: Pool,
    core: Arc<Core>,
    /// Ring sizes for the next init (ioctl), written under `ifnet`.
    rx_desc: AtomicU32,
    tx_desc: AtomicU32,
    /// The receive rings, one per queue pair.
    rxqs: Box<[RxQueue]>,
    /// The send queues, one per queue pair.
    ifqs: SendQueues<H>,
    /// With [`TxStart::Delegated`], each send queue's hand-off to its start
    /// task thread; empty with [`TxStart::Direct`].
    start_tasks: Box<[StartTask]>,
    stack: Arc<dyn Stack>,
    epoch: Instant,
    ctr: Counters,
    /// The rx refill retry (`que->rx_refill`).
    refill: Arc<Timeout>,
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
        mpsafe_order::witness::forget_within(&*self.refill);
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

    fn ticks(&self) -> u64 {
        // Milliseconds since attach: the rx ring's watermark clock.
        self.epoch.elapsed().as_millis() as u64
    }
}

/// The em(4) driver attached to a device `H` (the simulated
/// [`Device`](crate::Device), or a real one behind [`Hardware`]).
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
    /// The refill timeout's thread.
    timeout: Option<JoinHandle<()>>,
    /// The start task threads ([`TxStart::Delegated`]), one per send queue.
    start_threads: Vec<JoinHandle<()>>,
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
        big: Arc<KernelLock>,
        stack: Arc<dyn Stack>,
    ) -> Result<Self, EmError> {
        cfg.validate(hw.queues(), hw.pool().buf_size())?;
        let core = Arc::new(Core::new(cfg.mode, big));
        let (rxqs, ifqs) = queue_pairs(&hw, &core, &cfg)?;
        let start_tasks = match cfg.tx_start {
            TxStart::Direct => Box::default(),
            TxStart::Delegated => ifqs.queues().iter().map(|_| StartTask::new()).collect(),
        };
        let sc = Arc::new(Softc {
            rx_desc: AtomicU32::new(cfg.rx_desc),
            tx_desc: AtomicU32::new(cfg.tx_desc),
            cfg,
            pool: hw.pool().clone(),
            hw,
            core,
            rxqs,
            ifqs,
            start_tasks,
            stack,
            epoch: Instant::now(),
            ctr: Counters::default(),
            refill: Arc::new(Timeout::default()),
        });
        let start_threads = spawn_start_tasks(&sc)?;
        // Not through `Em`'s drop on an error: it would bring down and
        // unhook a device this attach never set up.
        let timeout = match spawn_timeout(&sc) {
            Ok(t) => t,
            Err(e) => {
                stop_start_tasks(&sc, start_threads);
                return Err(e);
            }
        };
        let weak: Weak<dyn IntrHandler> = Arc::downgrade(&sc) as Weak<Softc<H>>;
        sc.hw.intr_establish(weak);
        Ok(Self {
            sc,
            timeout: Some(timeout),
            start_threads,
        })
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
    pub fn ifnet(&self) -> &Serializer {
        self.sc.core.ifnet.unordered()
    }

    /// The big lock this driver uses in the modes that need it.
    pub fn big_lock(&self) -> &KernelLock {
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
    pub fn init_locked(&self, s: &Serialized<'_>) -> Result<(), EmError> {
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
    pub fn stop_locked(&self, s: &Serialized<'_>) {
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
        s: &Serialized<'_>,
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
    /// here, or with [`TxStart::Delegated`] by asking the queue's start task
    /// thread.
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
    pub fn transmit(&self, queue: usize, packet: Mbuf) -> Result<(), TxError> {
        let sc = &self.sc;
        let max = sc.cfg.mtu + ETHER_HDR_LEN;
        let Some(ifq) = sc.ifqs.queues().get(queue) else {
            return Err(TxError::NoQueue(packet));
        };
        if !sc.pool.owns(&packet) {
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
        match sc.start_tasks.get(queue) {
            Some(task) => ifq.transmit_delegated_in::<IfqMutex, _, _>(&mut ctx, task, packet),
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
                    sc.pool.free_all_in(&mut ctx, [m]);
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
    pub fn start_locked(&self, queue: usize, k: &KernelGuard<'_>) -> Result<(), EmError> {
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
    pub fn start_serialized(&self, queue: usize, s: &Serialized<'_>) -> Result<(), EmError> {
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
    pub fn stats(&self) -> EmStats {
        self.sc.stats()
    }
}

/// Starts the refill timeout's thread; it reaches the softc through a weak
/// reference, upgraded only while the timeout fires.
/// One thread per send queue that runs its start routine on request
/// ([`TxStart::Delegated`]; none with [`TxStart::Direct`]). A thread that
/// cannot be spawned stops those already running.
fn spawn_start_tasks<H: Hardware>(sc: &Arc<Softc<H>>) -> Result<Vec<JoinHandle<()>>, EmError> {
    let mut threads = Vec::with_capacity(sc.start_tasks.len());
    for q in 0..sc.start_tasks.len() {
        let sc2 = Arc::clone(sc);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-start{q}", sc.cfg.name))
            .spawn(move || sc2.start_tasks[q].run(&sc2.ifqs.queues()[q]));
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => {
                stop_start_tasks(sc, threads);
                return Err(EmError::Config(format!("start task thread: {e}")));
            }
        }
    }
    Ok(threads)
}

/// Stops the start task threads and waits for them; each makes one last
/// pass first, so a request posted before this is not lost.
fn stop_start_tasks<H: Hardware>(sc: &Softc<H>, threads: Vec<JoinHandle<()>>) {
    for task in &sc.start_tasks {
        task.stop();
    }
    for t in threads {
        let _ = t.join();
    }
}

fn spawn_timeout<H: Hardware>(sc: &Arc<Softc<H>>) -> Result<JoinHandle<()>, EmError> {
    let (t, weak) = (Arc::clone(&sc.refill), Arc::downgrade(sc));
    std::thread::Builder::new()
        .name(format!("{}-refill", sc.cfg.name))
        .spawn(move || {
            t.run(|| {
                if let Some(sc) = weak.upgrade() {
                    sc.refill_timeout();
                }
            });
        })
        .map_err(|e| EmError::Config(format!("refill timeout thread: {e}")))
}

impl<H: Hardware> Drop for Em<H> {
    fn drop(&mut self) {
        // Detach: down, so every buffer goes back to the pool; stop the
        // start tasks (their last pass finds the interface down) and the
        // refill timeout's thread; then unhook the interrupt and wait out a
        // call in flight, so the driver state is never dropped on another
        // thread.
        self.down();
        stop_start_tasks(&self.sc, std::mem::take(&mut self.start_threads));
        self.sc.refill.shutdown();
        if let Some(t) = self.timeout.take() {
            let _ = t.join();
        }
        self.sc.hw.intr_disestablish();
    }
}
