//! The simulated 8254x: register file, DMA engine, wire, interrupt line.
//!
//! Two threads, both event-driven so the simulation does not burn a core per
//! component on a small machine:
//!
//! - the **device thread** is the NIC's DMA engine and the wire. Each pass it
//!   transmits every descriptor the driver queued up to `TDT` (optionally
//!   looping the frame back to the receive side), then delivers the frames due
//!   from the wire into posted receive descriptors up to `RDT`, and counts in
//!   `MPC` every frame that found no descriptor, as the hardware does. While
//!   traffic flows it runs one pass per `tick`; when there is nothing to do it
//!   parks, and a doorbell (a write to `TDT` or `RDT`) wakes it.
//! - the **interrupt thread** is an MSI vector: it parks until a cause is
//!   raised in `ICR` and unmasked in `IMS`, waits out the `ITR` throttling
//!   interval, and calls the driver's handler through an interrupt gate, so
//!   the driver's `intr_barrier` can wait for a running handler.
//!
//! Register writes that change the engine's configuration (`CTRL.RST`,
//! `RCTL`, `TCTL`) take the engine lock, so when they return the device is
//! between passes and will not touch the old rings again: what the driver's
//! `em_reset_hw` delay achieves on real hardware.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::IntrLine;
use crate::StdKernel;
use crate::desc::{DESC_SIZE, DescRing, TXD_CMD_RS};
use crate::hw::Hardware;
use crate::pool::Pool;
use crate::regs::{
    CTRL_RST, CTRL_SLU, ICR_RXO, ICR_RXT0, ICR_TXDW, RCTL_EN, Reg, Regs, STATUS_LU, TCTL_EN,
};
use std::convert::Infallible;

/// Most queue pairs the simulated device has (an 82571/82574 has two).
pub const MAX_QUEUES: usize = 2;

/// How fast the wire offers frames to the receive side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireRate {
    /// No traffic from the wire (loopback frames only).
    Off,
    /// This many frames per second per queue; frames that find no posted
    /// descriptor are missed (`MPC`).
    Pps(u64),
    /// As fast as the driver posts descriptors: every posted descriptor is
    /// filled at once and nothing is ever missed. Measures the driver.
    Unlimited,
}

impl WireRate {
    /// Gigabit Ethernet line rate for frames of `frame_size` bytes (plus
    /// preamble, start delimiter, FCS and inter-frame gap: 24 bytes).
    pub fn gigabit(frame_size: u16) -> Self {
        Self::Pps(1_000_000_000 / ((u64::from(frame_size) + 24) * 8))
    }
}

/// How the simulated device is built.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    /// Queue pairs, `1..=MAX_QUEUES`.
    pub queues: usize,
    /// Traffic the wire offers to each receive queue.
    pub wire: WireRate,
    /// Length of the frames the wire delivers, in bytes (without FCS).
    pub frame_size: u16,
    /// Whether transmitted frames come back on the same queue's receive side
    /// (ignored once the device is joined to another by
    /// [`Device::connect`]: its frames go down the cable).
    pub loopback: bool,
    /// Period of the device's passes while traffic flows.
    pub tick: Duration,
    /// Model QEMU's e1000, whose `CTRL.RST` only clears itself: the
    /// receive and transmit units stay enabled on their rings, and the
    /// interrupt registers keep their values (the guide's QEMU chapter).
    /// Off (the default), `CTRL.RST` resets all of it, as on the 8254x.
    pub reset_only_self_clears: bool,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            queues: 1,
            wire: WireRate::gigabit(60),
            frame_size: 60,
            loopback: false,
            tick: Duration::from_micros(100),
            reset_only_self_clears: false,
        }
    }
}

/// The device was asked for something it cannot be.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceError {
    /// Queue count outside `1..=MAX_QUEUES`.
    Queues(usize),
    /// Frame size outside what fits a buffer of the pool.
    FrameSize {
        /// Requested frame size.
        size: u16,
        /// Largest frame a pool buffer holds.
        max: usize,
    },
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Queues(q) => write!(f, "{q} queues: the device has 1 to {MAX_QUEUES}"),
            Self::FrameSize { size, max } => {
                write!(f, "frame size {size}: the wire sends 1 to {max} bytes")
            }
        }
    }
}

impl std::error::Error for DeviceError {}

pub use crate::hw::IntrHandler;

/// Totals the device counted since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceStats {
    /// Frames the wire offered while the receiver was enabled (delivered +
    /// missed), including loopback frames.
    pub rx_offered: u64,
    /// Frames written into posted receive descriptors.
    pub rx_delivered: u64,
    /// Frames dropped for lack of a posted descriptor (cumulative `MPC`).
    pub missed: u64,
    /// Frames transmitted (descriptors consumed).
    pub tx_sent: u64,
    /// Times the interrupt thread called the handler.
    pub interrupts: u64,
    /// Handler calls that found no cause pending.
    pub stray: u64,
    /// Device passes run.
    pub passes: u64,
    /// Enable requests refused because a ring was not set up right.
    pub config_errors: u64,
    /// Frames that arrived over the cable ([`Device::connect`]) while the
    /// receiver was disabled: lost on the wire, not offered.
    pub link_dropped: u64,
}

#[derive(Default)]
struct Counters {
    rx_offered: AtomicU64,
    rx_delivered: AtomicU64,
    missed: AtomicU64,
    tx_sent: AtomicU64,
    interrupts: AtomicU64,
    stray: AtomicU64,
    passes: AtomicU64,
    config_errors: AtomicU64,
    link_dropped: AtomicU64,
}

#[derive(Default)]
struct QueueRegs {
    rdbal: AtomicU32,
    rdbah: AtomicU32,
    rdlen: AtomicU32,
    rdh: AtomicU32,
    rdt: AtomicU32,
    tdbal: AtomicU32,
    tdbah: AtomicU32,
    tdlen: AtomicU32,
    tdh: AtomicU32,
    tdt: AtomicU32,
}

#[derive(Default)]
struct RegFile {
    ctrl: AtomicU32,
    status: AtomicU32,
    icr: AtomicU32,
    itr: AtomicU32,
    ims: AtomicU32,
    rctl: AtomicU32,
    tctl: AtomicU32,
    mpc: AtomicU32,
    q: [QueueRegs; MAX_QUEUES],
}

/// Per-queue engine state, owned by whoever holds the engine lock.
#[derive(Default)]
struct QueueEngine {
    rx: Option<Arc<DescRing>>,
    rx_n: u32,
    tx: Option<Arc<DescRing>>,
    tx_n: u32,
    /// Wire frames owed, in frames x 1e9 (fractional carry of the pacing).
    carry: u128,
    last: Option<Instant>,
    /// Frames looped back from transmit or arrived over the cable,
    /// delivered on the next rx step.
    looped: Vec<WireFrame>,
    seq: u64,
}

struct Engine {
    q: Vec<QueueEngine>,
}

/// A frame on the wire: its length and tag, and its bytes when the pool has
/// buffer memory (empty otherwise).
struct WireFrame {
    len: u16,
    tag: u64,
    bytes: Vec<u8>,
}

/// The far end of a cable ([`Device::connect`]) and what arrived from it.
#[derive(Default)]
struct Cable {
    /// The device this one's transmitter feeds.
    peer: Mutex<Weak<Shared>>,
    /// Frames the peer transmitted, per queue, not yet seen by a pass of
    /// this device. A leaf lock: taken by the peer's device thread (under
    /// the peer's engine lock) and by this device's (under its own), never
    /// with another lock inside it.
    arrived: Mutex<Vec<Vec<WireFrame>>>,
}

struct Shared {
    regs: RegFile,
    config: DeviceConfig,
    pool: Pool,
    dma: Mutex<Vec<(u64, Arc<DescRing>)>>,
    engine: Mutex<Engine>,
    counters: Counters,
    cable: Cable,
    /// The device thread parked with nothing to do: a doorbell must wake it.
    idle: AtomicBool,
    /// An unmasked cause is pending: the interrupt thread must run.
    asserted: AtomicBool,
    shutdown: AtomicBool,
    device_thread: OnceLock<Thread>,
    intr_thread: OnceLock<Thread>,
    line: IntrLine,
}

/// A simulated Intel 8254x network controller.
///
/// Built with [`Device::new`], driven through its [`Regs`] implementation, its
/// descriptor rings in DMA memory ([`Device::dma_alloc`]) and its interrupt
/// ([`Device::establish`]). Dropping the last handle stops its threads.
pub struct Device {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Device state stays consistent across a panicking holder (the panic is
    // reported by the thread that had it); keep simulating.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Device {
    /// Builds the device and starts its device and interrupt threads.
    ///
    /// `pool` is the host memory the device reads and writes buffers in.
    pub fn new(config: DeviceConfig, pool: Pool) -> Result<Arc<Self>, DeviceError> {
        if !(1..=MAX_QUEUES).contains(&config.queues) {
            return Err(DeviceError::Queues(config.queues));
        }
        if config.frame_size == 0 || usize::from(config.frame_size) > pool.buf_size() {
            return Err(DeviceError::FrameSize {
                size: config.frame_size,
                max: pool.buf_size(),
            });
        }
        let queues = config.queues;
        let shared = Arc::new(Shared {
            regs: RegFile::default(),
            config,
            pool,
            dma: Mutex::new(Vec::new()),
            engine: Mutex::new(Engine {
                q: (0..queues).map(|_| QueueEngine::default()).collect(),
            }),
            counters: Counters::default(),
            cable: Cable {
                peer: Mutex::new(Weak::new()),
                arrived: Mutex::new((0..queues).map(|_| Vec::new()).collect()),
            },
            idle: AtomicBool::new(false),
            asserted: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            device_thread: OnceLock::new(),
            intr_thread: OnceLock::new(),
            line: IntrLine::new(),
        });
        shared.regs.status.store(STATUS_LU, Ordering::Relaxed);
        let dev = {
            let s = Arc::clone(&shared);
            thread::Builder::new()
                .name("em-device".into())
                .spawn(move || s.device_loop())
                .expect("spawn device thread")
        };
        let intr = {
            let s = Arc::clone(&shared);
            thread::Builder::new()
                .name("em-intr".into())
                .spawn(move || s.intr_loop())
                .expect("spawn interrupt thread")
        };
        let _ = shared.device_thread.set(dev.thread().clone());
        let _ = shared.intr_thread.set(intr.thread().clone());
        // The threads may have parked before their handles were published;
        // wake them once so they see the published handles' effects.
        dev.thread().unpark();
        intr.thread().unpark();
        Ok(Arc::new(Self {
            shared,
            threads: Mutex::new(vec![dev, intr]),
        }))
    }

    /// Joins `a` and `b` with a cable: from now on every frame either one
    /// transmits on queue `q` arrives at the other's receive queue `q` (or
    /// queue 0 if it has fewer), as from its wire, bytes included (with
    /// pools from [`Pool::with_heap`] or [`Pool::with_dma`]; tags and
    /// lengths only otherwise).
    ///
    /// The receiving device treats those frames as the hardware does: it
    /// writes them into posted receive descriptors on its next pass, raises
    /// its receive interrupt, and counts in `MPC` (and
    /// [`DeviceStats::missed`]) every frame that finds no posted
    /// descriptor. Frames that arrive while its receiver is disabled (the
    /// interface down, or being reset) are lost, counted in
    /// [`DeviceStats::link_dropped`]. Each device keeps its own pool: the
    /// bytes are copied across, as a real cable does.
    ///
    /// Give both devices [`WireRate::Off`], so the cable is their only
    /// traffic (a synthetic wire frame has no bytes). A device transmits
    /// either to its cable or, with [`DeviceConfig::loopback`], to itself;
    /// the cable wins. Connecting again replaces the previous cable of
    /// each; a device dropped ends its side (frames sent to it are lost).
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_em_sim::{Device, DeviceConfig, Pool, WireRate};
    ///
    /// let cfg = DeviceConfig { wire: WireRate::Off, frame_size: 1514, ..DeviceConfig::default() };
    /// let em0 = Device::new(cfg.clone(), Pool::with_heap(64, 2048))?;
    /// let em1 = Device::new(cfg, Pool::with_heap(64, 2048))?;
    /// Device::connect(&em0, &em1);
    /// # Ok::<(), mpsafe_em_sim::DeviceError>(())
    /// ```
    pub fn connect(a: &Arc<Device>, b: &Arc<Device>) {
        *lock(&a.shared.cable.peer) = Arc::downgrade(&b.shared);
        *lock(&b.shared.cable.peer) = Arc::downgrade(&a.shared);
    }

    /// The device's configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.shared.config
    }

    /// The host memory the device does DMA to.
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// Allocates a descriptor ring of `ndesc` descriptors in DMA memory;
    /// returns its bus address (for `RDBAL`/`TDBAL`) and the ring.
    pub fn dma_alloc(&self, ndesc: usize) -> (u64, Arc<DescRing>) {
        let ring = Arc::new(DescRing::new(ndesc));
        let mut dma = lock(&self.shared.dma);
        // Bus addresses: 64 KiB apart, never zero, never reused.
        let addr = 0x1_0000 * (dma.len() as u64 + 1);
        dma.push((addr, Arc::clone(&ring)));
        (addr, ring)
    }

    /// Hooks the driver's interrupt handler to the interrupt line
    /// (`pci_intr_establish`). The device keeps only a weak reference,
    /// upgraded inside the interrupt gate.
    pub fn establish(&self, handler: Weak<dyn IntrHandler>) {
        self.shared.line.establish(handler);
    }

    /// Unhooks the handler and waits for a call in flight
    /// (`pci_intr_disestablish`).
    pub fn disestablish(&self) {
        self.shared.line.disestablish();
    }

    /// Returns once every handler invocation that started before the call has
    /// finished (`intr_barrier`).
    pub fn intr_barrier(&self) {
        self.shared.line.barrier();
    }

    /// The device's counters.
    pub fn stats(&self) -> DeviceStats {
        let c = &self.shared.counters;
        DeviceStats {
            rx_offered: c.rx_offered.load(Ordering::Relaxed),
            rx_delivered: c.rx_delivered.load(Ordering::Relaxed),
            missed: c.missed.load(Ordering::Relaxed),
            tx_sent: c.tx_sent.load(Ordering::Relaxed),
            interrupts: c.interrupts.load(Ordering::Relaxed),
            stray: c.stray.load(Ordering::Relaxed),
            passes: c.passes.load(Ordering::Relaxed),
            config_errors: c.config_errors.load(Ordering::Relaxed),
            link_dropped: c.link_dropped.load(Ordering::Relaxed),
        }
    }

    /// Stops the device and interrupt threads and waits for them. Idempotent.
    pub fn shutdown(&self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for t in [&self.shared.device_thread, &self.shared.intr_thread] {
            if let Some(t) = t.get() {
                t.unpark();
            }
        }
        let threads = std::mem::take(&mut *lock(&self.threads));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Hardware for Device {
    type Error = Infallible;
    type Kernel = StdKernel;
    type Pool = Pool;

    fn queues(&self) -> usize {
        self.shared.config.queues
    }

    fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    fn dma_alloc(&self, ndesc: usize) -> Result<(u64, Arc<DescRing>), Infallible> {
        Ok(Device::dma_alloc(self, ndesc))
    }

    fn intr_establish(&self, handler: Weak<dyn IntrHandler>) {
        self.establish(handler);
    }

    fn intr_disestablish(&self) {
        self.disestablish();
    }

    fn intr_barrier(&self) {
        Device::intr_barrier(self);
    }
}

impl Regs for Device {
    fn read(&self, reg: Reg) -> u32 {
        self.shared.read(reg)
    }

    fn write(&self, reg: Reg, value: u32) {
        self.shared.write(reg, value);
    }
}

impl Shared {
    fn queue_reg(&self, reg: Reg) -> Option<&AtomicU32> {
        let off = reg.0;
        let (base, q) = match off {
            0x2800..=0x28ff => (0x2800, 0),
            0x2900..=0x29ff => (0x2800, 1),
            0x3800..=0x38ff => (0x3800, 0),
            0x3900..=0x39ff => (0x3800, 1),
            _ => return None,
        };
        let r = &self.regs.q[q];
        let rx = base == 0x2800;
        Some(match (off - base) & 0xff {
            0x00 if rx => &r.rdbal,
            0x04 if rx => &r.rdbah,
            0x08 if rx => &r.rdlen,
            0x10 if rx => &r.rdh,
            0x18 if rx => &r.rdt,
            0x00 => &r.tdbal,
            0x04 => &r.tdbah,
            0x08 => &r.tdlen,
            0x10 => &r.tdh,
            0x18 => &r.tdt,
            _ => return None,
        })
    }

    fn read(&self, reg: Reg) -> u32 {
        let r = &self.regs;
        // Acquire: a register read orders later memory reads after it, as an
        // MMIO read does.
        match reg {
            Reg::CTRL => r.ctrl.load(Ordering::Acquire),
            Reg::STATUS => r.status.load(Ordering::Acquire),
            // Read-to-clear: the causes are returned and gone in one step.
            Reg::ICR => r.icr.swap(0, Ordering::AcqRel),
            Reg::ITR => r.itr.load(Ordering::Acquire),
            Reg::IMS => r.ims.load(Ordering::Acquire),
            Reg::RCTL => r.rctl.load(Ordering::Acquire),
            Reg::TCTL => r.tctl.load(Ordering::Acquire),
            // Statistics registers clear on read.
            Reg::MPC => r.mpc.swap(0, Ordering::AcqRel),
            _ => self.queue_reg(reg).map_or(0, |a| a.load(Ordering::Acquire)),
        }
    }

    fn write(&self, reg: Reg, v: u32) {
        let r = &self.regs;
        // Release: descriptor stores made before a register write (the tail
        // doorbell above all) are visible to the device that reads it.
        match reg {
            Reg::CTRL => {
                if v & CTRL_RST != 0 && !self.config.reset_only_self_clears {
                    self.reset();
                }
                r.ctrl.store(v & !CTRL_RST, Ordering::Release);
                if v & CTRL_SLU != 0 {
                    r.status.fetch_or(STATUS_LU, Ordering::Release);
                }
            }
            Reg::ITR => r.itr.store(v, Ordering::Release),
            Reg::ICR => {
                // Write-1-to-clear.
                r.icr.fetch_and(!v, Ordering::AcqRel);
            }
            Reg::ICS => self.raise(v),
            Reg::IMS => {
                r.ims.fetch_or(v, Ordering::SeqCst);
                self.maybe_assert();
            }
            Reg::IMC => {
                r.ims.fetch_and(!v, Ordering::SeqCst);
            }
            Reg::RCTL => {
                let mut eng = lock(&self.engine);
                let on = v & RCTL_EN != 0;
                for q in 0..self.config.queues {
                    let (ring, n) = if on { self.latch(q, true) } else { (None, 0) };
                    let e = &mut eng.q[q];
                    e.rx = ring;
                    e.rx_n = n;
                    e.carry = 0;
                    e.last = None;
                    e.looped.clear();
                }
                let ok = !on || eng.q.iter().all(|e| e.rx.is_some());
                r.rctl
                    .store(if ok { v } else { v & !RCTL_EN }, Ordering::Release);
                drop(eng);
                self.doorbell();
            }
            Reg::TCTL => {
                let mut eng = lock(&self.engine);
                let on = v & TCTL_EN != 0;
                for q in 0..self.config.queues {
                    let (ring, n) = if on { self.latch(q, false) } else { (None, 0) };
                    eng.q[q].tx = ring;
                    eng.q[q].tx_n = n;
                }
                let ok = !on || eng.q.iter().all(|e| e.tx.is_some());
                r.tctl
                    .store(if ok { v } else { v & !TCTL_EN }, Ordering::Release);
                drop(eng);
                self.doorbell();
            }
            _ => {
                if let Some(a) = self.queue_reg(reg) {
                    a.store(v, Ordering::Release);
                    if matches!(reg.0 & 0xff, 0x18) {
                        // RDT or TDT: a doorbell.
                        self.doorbell();
                    }
                }
            }
        }
    }

    /// Resolves queue `q`'s ring registers to DMA memory, or counts a
    /// configuration error.
    fn latch(&self, q: usize, rx: bool) -> (Option<Arc<DescRing>>, u32) {
        let r = &self.regs.q[q];
        let (lo, hi, len) = if rx {
            (&r.rdbal, &r.rdbah, &r.rdlen)
        } else {
            (&r.tdbal, &r.tdbah, &r.tdlen)
        };
        let addr =
            u64::from(lo.load(Ordering::Acquire)) | (u64::from(hi.load(Ordering::Acquire)) << 32);
        let bytes = len.load(Ordering::Acquire) as usize;
        let n = bytes / DESC_SIZE;
        let ring = lock(&self.dma)
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, ring)| Arc::clone(ring));
        match ring {
            // Hardware wants RDLEN/TDLEN a multiple of 128 bytes (8 descriptors).
            Some(ring) if n > 0 && bytes % 128 == 0 && n <= ring.capacity() => {
                (Some(ring), n as u32)
            }
            _ => {
                self.counters.config_errors.fetch_add(1, Ordering::Relaxed);
                (None, 0)
            }
        }
    }

    /// `CTRL.RST`: everything back to power-on values, synchronously.
    fn reset(&self) {
        let mut eng = lock(&self.engine);
        let r = &self.regs;
        r.rctl.store(0, Ordering::Release);
        r.tctl.store(0, Ordering::Release);
        r.ims.store(0, Ordering::SeqCst);
        r.icr.store(0, Ordering::Release);
        r.itr.store(0, Ordering::Release);
        for q in &r.q {
            for a in [&q.rdh, &q.rdt, &q.tdh, &q.tdt] {
                a.store(0, Ordering::Release);
            }
        }
        for e in eng.q.iter_mut() {
            *e = QueueEngine::default();
        }
    }

    /// Raises interrupt causes; asserts the line if any is unmasked.
    fn raise(&self, causes: u32) {
        // SeqCst with the IMS updates: a cause raised while the driver unmasks
        // is seen by one side or the other, never lost between them.
        self.regs.icr.fetch_or(causes, Ordering::SeqCst);
        self.maybe_assert();
    }

    fn maybe_assert(&self) {
        let pending = self.regs.icr.load(Ordering::SeqCst) & self.regs.ims.load(Ordering::SeqCst);
        if pending != 0 && !self.asserted.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.intr_thread.get() {
                t.unpark();
            }
        }
    }

    /// Wakes the device thread if it parked with nothing to do.
    fn doorbell(&self) {
        // SeqCst fence: either the device sees the register just written in
        // its re-check after setting `idle`, or we see `idle` set here (the
        // store-buffering pattern; both sides fence).
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.device_thread.get() {
                t.unpark();
            }
        }
    }

    fn device_loop(&self) {
        while !self.shutdown.load(Ordering::Acquire) {
            let busy = {
                let mut eng = lock(&self.engine);
                self.counters.passes.fetch_add(1, Ordering::Relaxed);
                self.pass(&mut eng, Instant::now())
            };
            if busy {
                thread::park_timeout(self.config.tick);
                continue;
            }
            self.idle.store(true, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            if self.has_doorbell_work() || self.shutdown.load(Ordering::Acquire) {
                self.idle.store(false, Ordering::Relaxed);
                continue;
            }
            // Woken by a doorbell (which clears `idle`), shutdown, or
            // spuriously; every case just runs another pass.
            thread::park();
            self.idle.store(false, Ordering::Relaxed);
        }
    }

    /// Whether a doorbell rang since the last pass: a transmit tail ahead of
    /// the head, receive descriptors posted while the receiver runs, or
    /// frames arrived over the cable.
    fn has_doorbell_work(&self) -> bool {
        if lock(&self.cable.arrived).iter().any(|q| !q.is_empty()) {
            return true;
        }
        let rx_on = self.regs.rctl.load(Ordering::Acquire) & RCTL_EN != 0;
        let tx_on = self.regs.tctl.load(Ordering::Acquire) & TCTL_EN != 0;
        self.regs.q[..self.config.queues].iter().any(|q| {
            (tx_on && q.tdh.load(Ordering::Acquire) != q.tdt.load(Ordering::Acquire))
                || (rx_on
                    && self.config.wire != WireRate::Off
                    && q.rdh.load(Ordering::Acquire) != q.rdt.load(Ordering::Acquire))
        })
    }

    /// One pass of the engine over every queue. Returns whether the device
    /// should come back after a tick (traffic flows) rather than park.
    fn pass(&self, eng: &mut Engine, now: Instant) -> bool {
        let rx_on = self.regs.rctl.load(Ordering::Acquire) & RCTL_EN != 0;
        let tx_on = self.regs.tctl.load(Ordering::Acquire) & TCTL_EN != 0;
        let mut busy = false;
        let mut causes = 0;
        let peer = lock(&self.cable.peer).upgrade();
        // What the cable brought since the last pass: offered to the
        // receiver now, or lost if it is off.
        let arrived: Vec<Vec<WireFrame>> = lock(&self.cable.arrived)
            .iter_mut()
            .map(std::mem::take)
            .collect();
        for (q, frames) in arrived.into_iter().enumerate() {
            if rx_on {
                if let Some(e) = eng.q.get_mut(q) {
                    e.looped.extend(frames);
                }
            } else if !frames.is_empty() {
                self.counters
                    .link_dropped
                    .fetch_add(frames.len() as u64, Ordering::Relaxed);
            }
        }
        let mut outgoing: Vec<Vec<WireFrame>> = Vec::new();
        for (q, e) in eng.q.iter_mut().enumerate() {
            if tx_on {
                let mut out = Vec::new();
                let to = if peer.is_some() { Some(&mut out) } else { None };
                let sent = self.tx_queue(q, e, rx_on, to);
                if !out.is_empty() {
                    outgoing.resize_with(q + 1, Vec::new);
                    outgoing[q] = out;
                }
                if sent > 0 {
                    causes |= ICR_TXDW;
                    busy = true;
                }
            }
            if rx_on {
                let (delivered, missed, more) = self.rx_queue(q, e, now);
                if delivered > 0 {
                    causes |= ICR_RXT0;
                }
                if missed > 0 {
                    causes |= ICR_RXO;
                }
                busy |= more;
            }
        }
        if causes != 0 {
            self.raise(causes);
        }
        if let Some(peer) = peer {
            if !outgoing.is_empty() {
                peer.cable_in(outgoing);
            }
        }
        busy
    }

    /// The peer's transmitter hands this device `frames` (per queue): kept
    /// for this device's next pass, which it is woken for.
    fn cable_in(&self, frames: Vec<Vec<WireFrame>>) {
        {
            let mut arrived = lock(&self.cable.arrived);
            let last = arrived.len() - 1;
            for (q, f) in frames.into_iter().enumerate() {
                // A peer with more queues than this device: its extra
                // queues land on this one's last.
                arrived[q.min(last)].extend(f);
            }
        }
        // The mutex's release orders the frames before the doorbell's fence.
        self.doorbell();
    }

    /// Transmits what queue `q`'s ring holds up to `TDT`: onto `cable` if
    /// the device has one, else back to its own receive side with loopback
    /// on, else nowhere.
    fn tx_queue(
        &self,
        q: usize,
        e: &mut QueueEngine,
        rx_on: bool,
        mut cable: Option<&mut Vec<WireFrame>>,
    ) -> u64 {
        let Some(ring) = e.tx.as_ref() else { return 0 };
        let n = e.tx_n;
        let r = &self.regs.q[q];
        // Acquire (in the load): the descriptors written before the TDT
        // doorbell are visible.
        let tdt = r.tdt.load(Ordering::Acquire);
        let mut h = r.tdh.load(Ordering::Relaxed);
        if tdt >= n {
            return 0;
        }
        let mut sent = 0;
        while h != tdt {
            let d = ring.get(h as usize);
            let (addr, _len, cmd) = d.tx_fetch();
            let to = match cable.as_deref_mut() {
                Some(c) => Some(c),
                None if self.config.loopback && rx_on => Some(&mut e.looped),
                None => None,
            };
            match to {
                Some(to) => {
                    let mut bytes = Vec::new();
                    if let Some((len, tag)) = self.pool.dma_read_frame(addr, &mut bytes) {
                        to.push(WireFrame { len, tag, bytes });
                    }
                }
                None => {
                    // Read (and checked) all the same: onto an empty wire.
                    let _ = self.pool.dma_read(addr);
                }
            }
            if cmd & TXD_CMD_RS != 0 {
                d.tx_complete();
            }
            sent += 1;
            h = (h + 1) % n;
        }
        r.tdh.store(h, Ordering::Release);
        self.counters.tx_sent.fetch_add(sent, Ordering::Relaxed);
        sent
    }

    /// Returns (delivered, missed, come back after a tick).
    fn rx_queue(&self, q: usize, e: &mut QueueEngine, now: Instant) -> (u64, u64, bool) {
        let Some(ring) = e.rx.as_ref() else {
            return (0, 0, false);
        };
        let n = e.rx_n;
        let r = &self.regs.q[q];
        let rdt = r.rdt.load(Ordering::Acquire);
        let mut h = r.rdh.load(Ordering::Relaxed);
        if rdt >= n {
            // A tail past the ring: the receiver takes nothing, and what
            // the cable or the loop brought is missed.
            let lost = e.looped.len() as u64;
            e.looped.clear();
            if lost > 0 {
                self.counters.missed.fetch_add(lost, Ordering::Relaxed);
                let m = u32::try_from(lost).unwrap_or(u32::MAX);
                self.regs.mpc.fetch_add(m, Ordering::Relaxed);
            }
            return (0, lost, false);
        }
        let posted = u64::from((rdt + n - h) % n);
        let wire = match self.config.wire {
            WireRate::Off => 0,
            WireRate::Unlimited => posted.saturating_sub(e.looped.len() as u64),
            WireRate::Pps(pps) => {
                let last = e.last.replace(now).unwrap_or(now);
                let ns = now.saturating_duration_since(last).as_nanos();
                e.carry += ns * u128::from(pps);
                let due = e.carry / 1_000_000_000;
                e.carry %= 1_000_000_000;
                u64::try_from(due).unwrap_or(u64::MAX)
            }
        };
        let offered = wire + e.looped.len() as u64;
        let take = offered.min(posted);
        let mut looped = std::mem::take(&mut e.looped);
        let mut from_loop = looped.drain(..);
        let mut delivered = 0;
        for _ in 0..take {
            let frame = from_loop.next();
            let (len, tag) = match &frame {
                Some(f) => (f.len, f.tag),
                None => {
                    e.seq += 1;
                    (self.config.frame_size, e.seq)
                }
            };
            let d = ring.get(h as usize);
            let written = match &frame {
                Some(f) if !f.bytes.is_empty() => {
                    self.pool.dma_write_frame(d.rx_addr(), &f.bytes, tag)
                }
                _ => self.pool.dma_write(d.rx_addr(), len, tag),
            };
            if written {
                d.rx_complete(len, 0);
            } else {
                // Buffer not ours: write back an error so the driver drops
                // the slot; the pool counted the DMA error.
                d.rx_complete(0, crate::desc::RXD_ERR_RXE);
            }
            delivered += 1;
            h = (h + 1) % n;
        }
        // Loopback frames beyond the posted descriptors are missed too.
        drop(from_loop);
        e.looped = looped;
        let missed = offered - take;
        r.rdh.store(h, Ordering::Release);
        let c = &self.counters;
        c.rx_offered.fetch_add(offered, Ordering::Relaxed);
        c.rx_delivered.fetch_add(delivered, Ordering::Relaxed);
        if missed > 0 {
            c.missed.fetch_add(missed, Ordering::Relaxed);
            let m = u32::try_from(missed).unwrap_or(u32::MAX);
            self.regs.mpc.fetch_add(m, Ordering::Relaxed);
        }
        // Paced traffic keeps arriving while descriptors are posted; with
        // none posted the device parks, and frames due meanwhile are counted
        // missed when a doorbell wakes it.
        let more = matches!(self.config.wire, WireRate::Pps(_)) && posted > take;
        (delivered, missed, more)
    }

    fn intr_loop(&self) {
        let mut last: Option<Instant> = None;
        loop {
            while !self.asserted.swap(false, Ordering::AcqRel) {
                if self.shutdown.load(Ordering::Acquire) {
                    return;
                }
                thread::park();
            }
            if self.shutdown.load(Ordering::Acquire) {
                return;
            }
            // Interrupt throttling: at most one interrupt per ITR interval.
            let itr = Duration::from_nanos(u64::from(self.regs.itr.load(Ordering::Relaxed)) * 256);
            if let Some(last) = last {
                let since = last.elapsed();
                if since < itr {
                    thread::sleep(itr - since);
                }
            }
            if self.regs.icr.load(Ordering::SeqCst) & self.regs.ims.load(Ordering::SeqCst) == 0 {
                // Masked meanwhile, or a previous handler call took the cause.
                continue;
            }
            last = Some(Instant::now());
            if let Some(claimed) = self.line.deliver() {
                self.counters.interrupts.fetch_add(1, Ordering::Relaxed);
                if !claimed {
                    self.counters.stray.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desc::{RXD_STAT_DD, TXD_CMD_EOP};
    use crate::pool::BufState;
    use std::sync::atomic::AtomicUsize;

    struct Counting(AtomicUsize);
    impl IntrHandler for Counting {
        fn intr(&self) -> bool {
            self.0.fetch_add(1, Ordering::Relaxed);
            true
        }
    }

    fn wait_for(mut f: impl FnMut() -> bool) {
        // Bounded: 10 s of 1 ms naps, far beyond what any pass needs.
        for _ in 0..10_000 {
            if f() {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        panic!("device did not get there in 10 s");
    }

    #[test]
    #[cfg_attr(miri, ignore = "device threads and timers: too slow under Miri")]
    fn unlimited_wire_fills_posted_descriptors_and_interrupts() {
        let pool = Pool::new(64, 2048);
        let cfg = DeviceConfig {
            wire: WireRate::Unlimited,
            ..DeviceConfig::default()
        };
        let dev = Device::new(cfg, pool.clone()).unwrap();
        let handler: Arc<dyn IntrHandler> = Arc::new(Counting(AtomicUsize::new(0)));
        dev.establish(Arc::downgrade(&handler));
        let (addr, ring) = dev.dma_alloc(16);
        dev.write(Reg::rdbal(0), addr as u32);
        dev.write(Reg::rdbah(0), (addr >> 32) as u32);
        dev.write(Reg::rdlen(0), 16 * DESC_SIZE as u32);
        dev.write(Reg::RCTL, RCTL_EN);
        assert_eq!(dev.read(Reg::RCTL) & RCTL_EN, RCTL_EN);
        for i in 0..8 {
            ring.get(i)
                .post_rx(pool.alloc().unwrap().into_ring(BufState::OnRxRing));
        }
        dev.write(Reg::IMS, ICR_RXT0);
        dev.write(Reg::rdt(0), 8);
        wait_for(|| dev.read(Reg::rdh(0)) == 8);
        let mut bufs = Vec::new();
        for i in 0..8 {
            let wb = ring.get(i).rx_writeback();
            assert_eq!(wb.status & RXD_STAT_DD, RXD_STAT_DD);
            assert_eq!(wb.len, 60);
            // SAFETY: the test posted these buffers and the device wrote
            // every slot back (DD checked above).
            bufs.push(unsafe { pool.reclaim(wb.addr, BufState::OnRxRing) });
        }
        wait_for(|| dev.stats().interrupts > 0);
        assert_eq!(dev.stats().missed, 0);
        assert_eq!(dev.stats().rx_delivered, 8);
        pool.free_all(bufs);
        dev.write(Reg::CTRL, CTRL_RST);
        assert_eq!(dev.read(Reg::RCTL), 0);
        dev.shutdown();
        assert_eq!(pool.stats().free, 64);
    }

    #[test]
    #[cfg_attr(miri, ignore = "device threads and timers: too slow under Miri")]
    fn paced_wire_counts_missed_frames_and_tx_loops_back() {
        let pool = Pool::new(8, 2048);
        let cfg = DeviceConfig {
            wire: WireRate::Pps(100_000),
            loopback: true,
            ..DeviceConfig::default()
        };
        let dev = Device::new(cfg, pool.clone()).unwrap();
        let (raddr, _rring) = dev.dma_alloc(8);
        let (taddr, tring) = dev.dma_alloc(8);
        dev.write(Reg::rdbal(0), raddr as u32);
        dev.write(Reg::rdlen(0), 128);
        dev.write(Reg::tdbal(0), taddr as u32);
        dev.write(Reg::tdlen(0), 128);
        dev.write(Reg::RCTL, RCTL_EN);
        dev.write(Reg::TCTL, TCTL_EN);
        // No rx descriptor posted: a transmitted frame loops back and is missed.
        let mut m = pool.alloc().unwrap();
        m.fill(100, 0xfeed);
        tring.get(0).post_tx(
            m.into_ring(BufState::OnTxRing),
            100,
            TXD_CMD_EOP | TXD_CMD_RS,
        );
        dev.write(Reg::tdt(0), 1);
        wait_for(|| tring.get(0).tx_done().is_some());
        wait_for(|| dev.stats().missed >= 1);
        assert_eq!(dev.stats().tx_sent, 1);
        let addr = tring.get(0).tx_done().unwrap();
        // SAFETY: the test posted it, and the device wrote the slot back.
        unsafe { pool.reclaim(addr, BufState::OnTxRing) }.free();
        let s = dev.stats();
        assert_eq!(s.rx_offered, s.rx_delivered + s.missed);
        dev.shutdown();
    }

    /// Rings of 8 descriptors on queue 0 of `dev`, both units enabled.
    fn rings(dev: &Device) -> (Arc<DescRing>, Arc<DescRing>) {
        let (raddr, rring) = dev.dma_alloc(8);
        let (taddr, tring) = dev.dma_alloc(8);
        dev.write(Reg::rdbal(0), raddr as u32);
        dev.write(Reg::rdlen(0), 128);
        dev.write(Reg::tdbal(0), taddr as u32);
        dev.write(Reg::tdlen(0), 128);
        dev.write(Reg::RCTL, RCTL_EN);
        dev.write(Reg::TCTL, TCTL_EN);
        (rring, tring)
    }

    /// Sends `bytes` from `dev`'s tx descriptor `slot` and waits for the
    /// write-back; the buffer goes back to the pool.
    fn send(dev: &Device, tring: &DescRing, slot: u32, bytes: &[u8]) {
        let pool = dev.pool();
        let mut m = pool.alloc().unwrap();
        m.data_mut().unwrap()[..bytes.len()].copy_from_slice(bytes);
        m.set_len(bytes.len() as u16);
        let addr = m.into_ring(BufState::OnTxRing);
        tring
            .get(slot as usize)
            .post_tx(addr, bytes.len() as u16, TXD_CMD_EOP | TXD_CMD_RS);
        dev.write(Reg::tdt(0), slot + 1);
        wait_for(|| tring.get(slot as usize).tx_done().is_some());
        // SAFETY: the test posted it, and the device wrote the slot back.
        unsafe { pool.reclaim(addr, BufState::OnTxRing) }.free();
    }

    #[test]
    #[cfg_attr(miri, ignore = "device threads and timers: too slow under Miri")]
    fn a_cable_carries_bytes_both_ways_with_the_receivers_drops() {
        let cfg = DeviceConfig {
            wire: WireRate::Off,
            frame_size: 1514,
            // Ignored once connected: the cable wins.
            loopback: true,
            ..DeviceConfig::default()
        };
        let a = Device::new(cfg.clone(), Pool::with_heap(16, 2048)).unwrap();
        let b = Device::new(cfg, Pool::with_heap(16, 2048)).unwrap();
        Device::connect(&a, &b);
        let handler: Arc<dyn IntrHandler> = Arc::new(Counting(AtomicUsize::new(0)));
        b.establish(Arc::downgrade(&handler));
        b.write(Reg::IMS, ICR_RXT0 | ICR_RXO);
        let (arx, atx) = rings(&a);
        let (brx, btx) = rings(&b);

        // Nothing posted on b: a's frame is missed there, not looped back.
        send(&a, &atx, 0, b"dropped");
        wait_for(|| b.stats().missed == 1);
        assert_eq!(a.stats().rx_offered, 0);

        // One descriptor posted on b: the next frame lands in it, bytes
        // and all, with a receive interrupt.
        let post = |dev: &Device, ring: &DescRing| {
            let addr = dev.pool().alloc().unwrap().into_ring(BufState::OnRxRing);
            ring.get(0).post_rx(addr);
            dev.write(Reg::rdt(0), 1);
            addr
        };
        let addr = post(&b, &brx);
        send(&a, &atx, 1, b"hello over the cable");
        wait_for(|| b.read(Reg::rdh(0)) == 1);
        let wb = brx.get(0).rx_writeback();
        assert_eq!(wb.status & RXD_STAT_DD, RXD_STAT_DD);
        assert_eq!((wb.addr, wb.len), (addr, 20));
        // SAFETY: the test posted it, and the device wrote the slot back.
        let m = unsafe { b.pool().reclaim(wb.addr, BufState::OnRxRing) };
        assert_eq!(m.data().unwrap(), b"hello over the cable");
        m.free();
        wait_for(|| b.stats().interrupts > 0);

        // And back the other way.
        let addr = post(&a, &arx);
        send(&b, &btx, 0, b"and back");
        wait_for(|| a.read(Reg::rdh(0)) == 1);
        // SAFETY: as above.
        let m = unsafe { a.pool().reclaim(addr, BufState::OnRxRing) };
        assert_eq!(m.data().unwrap(), b"and back");
        m.free();

        // b's receiver off: the frame is lost on the wire, not offered.
        b.write(Reg::RCTL, 0);
        send(&a, &atx, 2, b"to nobody");
        wait_for(|| b.stats().link_dropped == 1);
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!((sa.tx_sent, sb.tx_sent), (3, 1));
        assert_eq!((sb.rx_offered, sb.rx_delivered, sb.missed), (2, 1, 1));
        assert_eq!((sa.rx_offered, sa.rx_delivered), (1, 1));
        a.shutdown();
        b.shutdown();
        for dev in [&a, &b] {
            let s = dev.pool().stats();
            assert_eq!((s.free, s.dma_errors), (16, 0), "{s}");
        }
    }

    #[test]
    #[cfg_attr(miri, ignore = "device threads and timers: too slow under Miri")]
    fn bad_ring_setup_refuses_enable() {
        let pool = Pool::new(8, 2048);
        let dev = Device::new(DeviceConfig::default(), pool).unwrap();
        let (addr, _ring) = dev.dma_alloc(8);
        dev.write(Reg::rdbal(0), addr as u32);
        dev.write(Reg::rdlen(0), 100); // not a multiple of 128
        dev.write(Reg::RCTL, RCTL_EN);
        assert_eq!(dev.read(Reg::RCTL) & RCTL_EN, 0);
        assert_eq!(dev.stats().config_errors, 1);
    }

    #[test]
    #[cfg_attr(miri, ignore = "device threads and timers: too slow under Miri")]
    fn config_is_checked() {
        let pool = Pool::new(8, 2048);
        let q = DeviceConfig {
            queues: 3,
            ..DeviceConfig::default()
        };
        assert_eq!(
            Device::new(q, pool.clone()).unwrap_err(),
            DeviceError::Queues(3)
        );
        let f = DeviceConfig {
            frame_size: 4000,
            ..DeviceConfig::default()
        };
        assert!(matches!(
            Device::new(f, pool).unwrap_err(),
            DeviceError::FrameSize { size: 4000, .. }
        ));
    }
}
