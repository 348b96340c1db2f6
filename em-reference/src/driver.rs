//! The em(4) driver, in the three locking designs the seeds walk through.
//!
//! | path | [`Mode::BigLock`] | [`Mode::RxUnlocked`] (seed 000) | [`Mode::Mpsafe`] (seeds 002, 001) |
//! | --- | --- | --- | --- |
//! | interrupt entry | big lock | — | — (through the device's [`Gate`](mpsafe_barrier::Gate)) |
//! | rx completion (`rxeof`) | big lock + rx mutex | rx mutex, frees and `if_input` after it | same as RxUnlocked |
//! | rx refill (`rxfill`) | big lock + rx mutex | big lock + rx mutex | rx mutex |
//! | tx completion (`txeof`) | big lock | big lock | combiner; `restart` if `oactive` |
//! | start | big lock (inside the ifq serializer) | big lock (inside the ifq serializer) | ifq serializer only |
//! | init / stop / ioctl | ifnet serializer + big lock | ifnet serializer + big lock | ifnet serializer |
//!
//! Lock order: ifnet serializer → big lock → rx mutex → buffer pool. The ifq
//! serializer never blocks, so it sits outside the order (seed 002: "because
//! contention on the ifq_serializer causes the second context to return
//! immediately ... all the problems are avoided").

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use crossbeam_utils::CachePadded;
use mpsafe_ifqueue::{Config as IfqConfig, Dropped, Fifo, IfQueue, Packet, SendQueue, Start};
use mpsafe_rxring::{LockedRxRing, RxRing, RxRingGuard, RxRingInfo, RxRingInfoTable, RxRingName};
use mpsafe_serializer::{Combiner, RawSerializer, Serialized, Serializer, TaskOwner};

use crate::biglock::{KernelGuard, KernelLock, LockCounts, Path};
use crate::desc::{
    DESC_SIZE, DescRing, RXD_STAT_DD, RXD_STAT_EOP, TXD_CMD_EOP, TXD_CMD_IFCS, TXD_CMD_RS,
};
use crate::device::{Device, IntrHandler};
use crate::pool::{BufState, Mbuf, Pool, PoolStats};
use crate::regs::{CTRL_RST, CTRL_SLU, ICR_LSC, IMS_ENABLE_MASK, RCTL_EN, Reg, Regs, TCTL_EN};

/// Fewest descriptors a ring may have (`EM_MIN_TXD`/`EM_MIN_RXD`).
pub const MIN_DESC: u32 = 80;
/// Most descriptors a ring may have on an 82544 or later (`EM_MAX_TXD`).
pub const MAX_DESC: u32 = 4096;
/// Ethernet header length: the largest frame is `mtu + ETHER_HDR_LEN`.
pub const ETHER_HDR_LEN: usize = 14;

/// Which locking design the driver runs, chosen at attach (DragonFly's
/// `kern.intr_mpsafe` switch, OpenBSD's `IFXF_MPSAFE` opt-in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Everything under one giant lock: the kernel before 2015.
    BigLock,
    /// Seed 000: rx completion under an rx mutex only; the rest of the
    /// interrupt, tx completion, refill, start and ioctl under the big lock.
    RxUnlocked,
    /// Seeds 002 and 001: no big lock anywhere.
    Mpsafe,
}

impl Mode {
    /// The three modes, in the order the demo runs them.
    pub const ALL: [Mode; 3] = [Mode::BigLock, Mode::RxUnlocked, Mode::Mpsafe];

    /// Whether `path` takes the big lock in this mode.
    pub fn locks(self, path: Path) -> bool {
        match self {
            Mode::BigLock => true,
            Mode::RxUnlocked => !matches!(path, Path::Interrupt | Path::Rx),
            Mode::Mpsafe => false,
        }
    }

    /// Name as the demo's `--mode` flag spells it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::BigLock => "biglock",
            Mode::RxUnlocked => "rx-unlocked",
            Mode::Mpsafe => "mpsafe",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mode {s:?}: expected biglock, rx-unlocked or mpsafe"))
    }
}

/// How the driver is attached.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmConfig {
    /// Locking design.
    pub mode: Mode,
    /// Receive descriptors per queue (`MIN_DESC..=MAX_DESC`, multiple of 8).
    pub rx_desc: u32,
    /// Transmit descriptors per queue (same limits).
    pub tx_desc: u32,
    /// Send queue length per queue (`ifq_maxlen`).
    pub ifq_maxlen: usize,
    /// Interrupt throttling in interrupts per second (`MAX_INTS_PER_SEC`);
    /// 0 turns moderation off.
    pub ints_per_sec: u32,
    /// Largest payload (MTU); frames up to `mtu + 14` bytes go out.
    pub mtu: usize,
    /// Receive ring low watermark (`if_rxr_init` lwm).
    pub rx_lwm: u32,
    /// Interface name, for the statistics table.
    pub name: String,
}

impl EmConfig {
    /// Defaults for `mode`: 512/512 descriptors, 256-packet send queue,
    /// 8000 interrupts/s, MTU 1500.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            rx_desc: 512,
            tx_desc: 512,
            ifq_maxlen: 256,
            ints_per_sec: 8000,
            mtu: 1500,
            rx_lwm: 16,
            name: "em0".into(),
        }
    }
}

/// An `init` or `ioctl` request the driver refuses.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmError {
    /// A ring size outside `MIN_DESC..=MAX_DESC` or not a multiple of 8
    /// (`RDLEN`/`TDLEN` must be a multiple of 128 bytes).
    RingSize {
        /// `"rx"` or `"tx"`.
        ring: &'static str,
        /// The size asked for.
        size: u32,
    },
    /// The device refused to enable a ring (it did not accept the ring's
    /// base and length registers).
    DeviceRefused,
    /// A lock-held entry point for the big lock called in [`Mode::Mpsafe`],
    /// where the big lock protects nothing.
    WrongMode(Mode),
    /// Queue index out of range.
    NoQueue(usize),
    /// A configuration the send queue refused.
    Config(String),
}

impl fmt::Display for EmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RingSize { ring, size } => write!(
                f,
                "{ring} ring of {size} descriptors: must be a multiple of 8 in {MIN_DESC}..={MAX_DESC}"
            ),
            Self::DeviceRefused => f.write_str("the device refused the ring setup"),
            Self::WrongMode(m) => write!(f, "lock-held big-lock entry point called in {m} mode"),
            Self::NoQueue(q) => write!(f, "no queue {q}"),
            Self::Config(e) => write!(f, "send queue configuration: {e}"),
        }
    }
}

impl std::error::Error for EmError {}

/// A packet [`Em::transmit`] did not queue; it comes back to be freed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TxError {
    /// The interface is not running.
    Down(Mbuf),
    /// Zero-length frame.
    Empty(Mbuf),
    /// Frame longer than `mtu + 14`.
    Oversize {
        /// The frame.
        packet: Mbuf,
        /// Largest frame accepted.
        max: usize,
    },
    /// The send queue was full (a counted `qdrop`): the packet dropped.
    QueueFull(Mbuf),
    /// No such queue.
    NoQueue(Mbuf),
}

impl TxError {
    /// The packet, to free or retry.
    pub fn into_packet(self) -> Mbuf {
        match self {
            Self::Down(m)
            | Self::Empty(m)
            | Self::QueueFull(m)
            | Self::NoQueue(m)
            | Self::Oversize { packet: m, .. } => m,
        }
    }
}

impl fmt::Display for TxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Down(_) => f.write_str("interface is down"),
            Self::Empty(_) => f.write_str("zero-length frame"),
            Self::Oversize { packet, max } => {
                write!(
                    f,
                    "frame of {} bytes exceeds the {max}-byte maximum",
                    packet.len()
                )
            }
            Self::QueueFull(_) => f.write_str("send queue full: packet dropped"),
            Self::NoQueue(_) => f.write_str("no such transmit queue"),
        }
    }
}

impl std::error::Error for TxError {}

impl Packet for Mbuf {
    fn byte_len(&self) -> usize {
        self.len()
    }
}

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

/// The driver's receive-side state that the rx mutex protects along with the
/// [`RxRing`] accounting.
#[derive(Debug, Default)]
struct RxSoft {
    /// Active ring size (set at init).
    n: u32,
    /// Next descriptor to check for a completed frame.
    next: u32,
    /// Next descriptor to fill; the value written to `RDT`.
    tail: u32,
    packets: u64,
    errors: u64,
}

type RxLock = LockedRxRing<RawSerializer, RxSoft>;

/// Proof that the caller may run the start routine: the big lock, or the ifq
/// serializer.
enum TxProof<'a> {
    Kernel(#[allow(dead_code)] &'a KernelGuard<'a>),
    Serialized(#[allow(dead_code)] &'a TaskOwner<'a>),
}

/// One transmit ring: what the send queue's start routine feeds (the ifq's
/// `ifq_softc`). `head` is written only by the start routine (serialized),
/// `tail` only by tx completion (combined), each on its own cache line.
struct TxRing {
    q: usize,
    mode: Mode,
    dev: Arc<Device>,
    pool: Pool,
    big: Arc<KernelLock>,
    ring: Arc<DescRing>,
    bus: u64,
    n: AtomicU32,
    /// IFF_RUNNING as seen by a start run under the big lock.
    running: AtomicBool,
    head: CachePadded<AtomicU32>,
    tail: CachePadded<AtomicU32>,
    reap: Combiner,
    posted: CachePadded<AtomicU64>,
    completed: CachePadded<AtomicU64>,
    flushed: AtomicU64,
}

impl TxRing {
    fn used(n: u32, head: u32, tail: u32) -> u32 {
        (head + n - tail) % n
    }

    /// The start routine body (`em_start`): dequeue while the ring has room,
    /// one descriptor per frame, then ring the `TDT` doorbell once.
    fn start_body(&self, queue: &SendQueue<Fifo<Mbuf>>, _proof: TxProof<'_>) {
        if !self.running.load(Ordering::Acquire) {
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
            if Self::used(n, head, tail) >= n - 1 {
                let room = || Self::used(n, head, self.tail.load(Ordering::Acquire)) < n - 1;
                if queue.set_oactive_unless(room) {
                    break;
                }
                continue;
            }
            let Some(m) = queue.dequeue() else { break };
            let len = m.len() as u16;
            let addr = m.into_ring(BufState::OnTxRing);
            self.ring.get(head as usize).post_tx(
                addr,
                len,
                TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
            );
            head = (head + 1) % n;
            posted += 1;
        }
        if posted > 0 {
            // Release: tx completion, which reads `head` with acquire, sees
            // the descriptors; the TDT write publishes them to the device.
            self.head.store(head, Ordering::Release);
            self.dev.write(Reg::tdt(self.q), head);
            self.posted.fetch_add(posted, Ordering::Relaxed);
        }
    }

    /// Tx completion (`em_txeof`): reclaims every descriptor the device
    /// marked done. Runs through a combining serializer, so any context may
    /// call it; a caller that finds it running leaves the work to the owner.
    fn txeof(&self) {
        self.reap.run(|| {
            let n = self.n.load(Ordering::Relaxed);
            // Acquire: descriptors up to `head` were filled by the start routine.
            let head = self.head.load(Ordering::Acquire);
            let mut tail = self.tail.load(Ordering::Relaxed);
            let mut done = Vec::new();
            while tail != head {
                let Some(addr) = self.ring.get(tail as usize).tx_done() else {
                    break;
                };
                done.push(self.pool.reclaim(addr, BufState::OnTxRing));
                tail = (tail + 1) % n;
            }
            if !done.is_empty() {
                self.completed
                    .fetch_add(done.len() as u64, Ordering::Relaxed);
                // Release: the start routine that sees the new tail reuses
                // the slots only after we read them.
                self.tail.store(tail, Ordering::Release);
                self.pool.free_all(done);
            }
        });
    }
}

impl Start<Fifo<Mbuf>, mpsafe_ifqueue::DefaultLock> for TxRing {
    fn start(&self, queue: &SendQueue<Fifo<Mbuf>>, owner: &TaskOwner<'_>) {
        if self.mode.locks(Path::Start) {
            // Not MPSAFE: the start routine runs under the big lock too (seed
            // 002's default for unconverted drivers).
            let k = self.big.lock(Path::Start);
            self.start_body(queue, TxProof::Kernel(&k));
        } else {
            self.start_body(queue, TxProof::Serialized(owner));
        }
    }
}

struct QueuePair {
    rx: RxLock,
    rx_ring: Arc<DescRing>,
    rx_bus: u64,
    ifq: IfQueue<Fifo<Mbuf>, TxRing>,
}

#[derive(Default)]
struct Counters {
    rx_flushed: AtomicU64,
    tx_purged: AtomicU64,
    tx_qdrops: AtomicU64,
    tx_down: AtomicU64,
    tx_bad: AtomicU64,
    inits: AtomicU64,
    stops: AtomicU64,
}

struct Softc {
    cfg: EmConfig,
    dev: Arc<Device>,
    pool: Pool,
    big: Arc<KernelLock>,
    /// The DragonFly ifnet serializer: init, stop and ioctl.
    ifnet: Serializer,
    /// IFF_RUNNING.
    running: AtomicBool,
    /// Ring sizes for the next init (ioctl), written under `ifnet`.
    rx_desc: AtomicU32,
    tx_desc: AtomicU32,
    queues: Box<[QueuePair]>,
    stack: Arc<dyn Stack>,
    epoch: Instant,
    ctr: Counters,
}

/// Statistics of one [`Em`] (the `netstat -i` and `systat mbuf` view).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EmStats {
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
    /// Big-lock acquisitions per path.
    pub big_lock: LockCounts,
    /// Receive ring accounting, one row per queue.
    pub rxrings: Vec<RxRingInfo>,
    /// Where every buffer is.
    pub pool: PoolStats,
}

impl fmt::Display for EmStats {
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

/// The em(4) driver attached to a simulated [`Device`].
///
/// Entry points come in pairs (seed 003's `foo()` / `foo_locked()`):
/// [`init`](Em::init) / [`init_locked`](Em::init_locked),
/// [`stop`](Em::stop) / [`stop_locked`](Em::stop_locked) take the ifnet
/// [`Serializer`] (and the big lock, in the modes that use it) or demand its
/// guard; [`start`](Em::start) / [`start_locked`](Em::start_locked) run the
/// start routine through the send queue's serializer or under the caller's
/// big lock.
pub struct Em {
    sc: Arc<Softc>,
}

impl fmt::Debug for Em {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Em")
            .field("mode", &self.sc.cfg.mode)
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

fn check_ring(ring: &'static str, size: u32) -> Result<(), EmError> {
    if (MIN_DESC..=MAX_DESC).contains(&size) && size % 8 == 0 {
        Ok(())
    } else {
        Err(EmError::RingSize { ring, size })
    }
}

impl Em {
    /// Attaches the driver to `dev` (`em_attach`): allocates descriptor
    /// memory for the largest rings, builds the send queues, hooks the
    /// interrupt. The interface starts down; call [`init`](Em::init).
    ///
    /// `big` is the kernel's big lock (shared by every driver of the
    /// simulated kernel); `stack` receives the packets.
    ///
    /// # Errors
    ///
    /// [`EmError::RingSize`] for bad ring sizes, [`EmError::Config`] for a
    /// send queue length the queue refuses.
    pub fn attach(
        dev: Arc<Device>,
        cfg: EmConfig,
        big: Arc<KernelLock>,
        stack: Arc<dyn Stack>,
    ) -> Result<Self, EmError> {
        check_ring("rx", cfg.rx_desc)?;
        check_ring("tx", cfg.tx_desc)?;
        let pool = dev.pool().clone();
        let mut queues = Vec::new();
        for q in 0..dev.config().queues {
            let (rx_bus, rx_ring) = dev.dma_alloc(MAX_DESC as usize);
            let (tx_bus, tx_ring) = dev.dma_alloc(MAX_DESC as usize);
            let tx = TxRing {
                q,
                mode: cfg.mode,
                dev: Arc::clone(&dev),
                pool: pool.clone(),
                big: Arc::clone(&big),
                ring: tx_ring,
                bus: tx_bus,
                n: AtomicU32::new(cfg.tx_desc),
                running: AtomicBool::new(false),
                head: CachePadded::new(AtomicU32::new(0)),
                tail: CachePadded::new(AtomicU32::new(0)),
                reap: Combiner::new(),
                posted: CachePadded::new(AtomicU64::new(0)),
                completed: CachePadded::new(AtomicU64::new(0)),
                flushed: AtomicU64::new(0),
            };
            let ifq = IfQueue::new(
                Fifo::with_capacity(cfg.ifq_maxlen),
                IfqConfig::with_maxlen(cfg.ifq_maxlen),
                tx,
            )
            .map_err(|e| EmError::Config(e.to_string()))?;
            ifq.set_running(false);
            queues.push(QueuePair {
                rx: LockedRxRing::new(RxRing::torn_down(), RxSoft::default()),
                rx_ring,
                rx_bus,
                ifq,
            });
        }
        let sc = Arc::new(Softc {
            rx_desc: AtomicU32::new(cfg.rx_desc),
            tx_desc: AtomicU32::new(cfg.tx_desc),
            cfg,
            dev: Arc::clone(&dev),
            pool,
            big,
            ifnet: Serializer::new(),
            running: AtomicBool::new(false),
            queues: queues.into_boxed_slice(),
            stack,
            epoch: Instant::now(),
            ctr: Counters::default(),
        });
        let weak: Weak<dyn IntrHandler> =
            Arc::downgrade(&(Arc::clone(&sc) as Arc<dyn IntrHandler>));
        dev.establish(weak);
        Ok(Self { sc })
    }

    /// The locking design chosen at attach.
    pub fn mode(&self) -> Mode {
        self.sc.cfg.mode
    }

    /// Number of queue pairs.
    pub fn queues(&self) -> usize {
        self.sc.queues.len()
    }

    /// The ifnet serializer: enter it to call the `*_locked` ioctl entry
    /// points.
    pub fn ifnet(&self) -> &Serializer {
        &self.sc.ifnet
    }

    /// The big lock this driver uses in the modes that need it.
    pub fn big_lock(&self) -> &KernelLock {
        &self.sc.big
    }

    /// Whether the interface is running (`IFF_RUNNING`).
    pub fn is_running(&self) -> bool {
        self.sc.running.load(Ordering::Acquire)
    }

    /// Brings the interface up (`em_init`): takes the ifnet serializer and,
    /// unless MP-safe, the big lock.
    ///
    /// # Errors
    ///
    /// [`EmError::DeviceRefused`] if the device did not accept the rings.
    pub fn init(&self) -> Result<(), EmError> {
        let s = self.sc.ifnet.enter();
        self.init_locked(&s)
    }

    /// [`init`](Em::init) for a caller inside the ifnet serializer.
    ///
    /// # Errors
    ///
    /// As [`init`](Em::init).
    pub fn init_locked(&self, s: &Serialized<'_>) -> Result<(), EmError> {
        self.sc.init_locked(s)
    }

    /// Brings the interface down (`em_stop`) in the documented order: clear
    /// RUNNING, disable and reset the device, interrupt barrier, start
    /// barrier, clear `oactive`, free transmit then receive structures.
    pub fn stop(&self) {
        let s = self.sc.ifnet.enter();
        self.stop_locked(&s);
    }

    /// [`stop`](Em::stop) for a caller inside the ifnet serializer.
    pub fn stop_locked(&self, s: &Serialized<'_>) {
        self.sc.stop_locked(s);
    }

    /// `if_down`: [`stop`](Em::stop), then purge the send queues (the purged
    /// packets are freed and counted).
    pub fn down(&self) {
        let s = self.sc.ifnet.enter();
        self.stop_locked(&s);
        self.sc.purge();
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
        let s = self.sc.ifnet.enter();
        self.set_ring_sizes_locked(&s, rx, tx)
    }

    /// [`set_ring_sizes`](Em::set_ring_sizes) inside the ifnet serializer.
    ///
    /// # Errors
    ///
    /// As [`set_ring_sizes`](Em::set_ring_sizes).
    pub fn set_ring_sizes_locked(
        &self,
        s: &Serialized<'_>,
        rx: u32,
        tx: u32,
    ) -> Result<(), EmError> {
        check_ring("rx", rx)?;
        check_ring("tx", tx)?;
        let _k = self.sc.big_for(Path::Ioctl);
        self.sc.rx_desc.store(rx, Ordering::Relaxed);
        self.sc.tx_desc.store(tx, Ordering::Relaxed);
        if self.is_running() {
            self.sc.init_locked(s)?;
        }
        Ok(())
    }

    /// Queues `packet` on send queue `queue` and starts it (`if_enqueue`).
    ///
    /// # Errors
    ///
    /// [`TxError`] with the packet: malformed, interface down, send queue
    /// full (a counted drop). Nothing is lost: the caller frees it.
    pub fn transmit(&self, queue: usize, packet: Mbuf) -> Result<(), TxError> {
        let max = self.sc.cfg.mtu + ETHER_HDR_LEN;
        let Some(qp) = self.sc.queues.get(queue) else {
            return Err(TxError::NoQueue(packet));
        };
        if packet.is_empty() {
            self.sc.ctr.tx_bad.fetch_add(1, Ordering::Relaxed);
            return Err(TxError::Empty(packet));
        }
        if packet.len() > max {
            self.sc.ctr.tx_bad.fetch_add(1, Ordering::Relaxed);
            return Err(TxError::Oversize { packet, max });
        }
        if !self.is_running() {
            self.sc.ctr.tx_down.fetch_add(1, Ordering::Relaxed);
            return Err(TxError::Down(packet));
        }
        match qp.ifq.transmit(packet) {
            Ok(()) => Ok(()),
            Err(d) => {
                self.sc.ctr.tx_qdrops.fetch_add(1, Ordering::Relaxed);
                let evicted = matches!(d, Dropped::Evicted(_));
                let m = d.into_packet();
                if evicted {
                    // A FIFO never evicts; a priority queue would, and the
                    // victim is ours to free.
                    m.free();
                    Ok(())
                } else {
                    Err(TxError::QueueFull(m))
                }
            }
        }
    }

    /// Asks send queue `queue` to start (`if_start`): runs the start routine
    /// through the queue's serializer; never blocks on it.
    pub fn start(&self, queue: usize) {
        if let Some(qp) = self.sc.queues.get(queue) {
            qp.ifq.start();
        }
    }

    /// Runs the start routine of `queue` directly, for a caller that holds
    /// the big lock (the pre-2015 `em_start(ifp)` call from the interrupt).
    ///
    /// # Errors
    ///
    /// [`EmError::WrongMode`] in [`Mode::Mpsafe`], where the big lock does
    /// not serialize the start routine; [`EmError::NoQueue`].
    pub fn start_locked(&self, queue: usize, k: &KernelGuard<'_>) -> Result<(), EmError> {
        if !self.mode().locks(Path::Start) {
            return Err(EmError::WrongMode(self.mode()));
        }
        let qp = self.sc.queues.get(queue).ok_or(EmError::NoQueue(queue))?;
        qp.ifq
            .driver()
            .start_body(qp.ifq.queue(), TxProof::Kernel(k));
        Ok(())
    }

    /// Statistics, with the rx ring table and buffer accounting.
    pub fn stats(&self) -> EmStats {
        let sc = &self.sc;
        let mut st = EmStats {
            mode: sc.cfg.mode,
            rx_packets: 0,
            rx_errors: 0,
            rx_flushed: sc.ctr.rx_flushed.load(Ordering::Relaxed),
            tx_posted: 0,
            tx_completed: 0,
            tx_flushed: 0,
            tx_qdrops: sc.ctr.tx_qdrops.load(Ordering::Relaxed),
            tx_purged: sc.ctr.tx_purged.load(Ordering::Relaxed),
            tx_down: sc.ctr.tx_down.load(Ordering::Relaxed),
            tx_bad: sc.ctr.tx_bad.load(Ordering::Relaxed),
            ifq_packets: 0,
            inits: sc.ctr.inits.load(Ordering::Relaxed),
            stops: sc.ctr.stops.load(Ordering::Relaxed),
            big_lock: sc.big.counts(),
            rxrings: Vec::new(),
            pool: sc.pool.stats(),
        };
        for (i, qp) in sc.queues.iter().enumerate() {
            let info = {
                let rx = qp.rx.lock();
                st.rx_packets += rx.data().packets;
                st.rx_errors += rx.data().errors;
                let name = if sc.queues.len() == 1 {
                    sc.cfg.name.clone()
                } else {
                    format!("{}:rx{i}", sc.cfg.name)
                };
                rx.info(
                    RxRingName::new(&name).unwrap_or(RxRingName::EMPTY),
                    sc.pool.buf_size() as u32,
                )
            };
            st.rxrings.push(info);
            let tx = qp.ifq.driver();
            st.tx_posted += tx.posted.load(Ordering::Relaxed);
            st.tx_completed += tx.completed.load(Ordering::Relaxed);
            st.tx_flushed += tx.flushed.load(Ordering::Relaxed);
            st.ifq_packets += qp.ifq.counters().packets;
        }
        st
    }
}

impl Drop for Em {
    fn drop(&mut self) {
        // Detach: down, so every buffer goes back to the pool.
        self.down();
    }
}

impl Softc {
    fn big_for(&self, path: Path) -> Option<KernelGuard<'_>> {
        self.cfg.mode.locks(path).then(|| self.big.lock(path))
    }

    fn ticks(&self) -> u64 {
        // Milliseconds since attach: the rx ring's watermark clock.
        self.epoch.elapsed().as_millis() as u64
    }

    fn init_locked(&self, s: &Serialized<'_>) -> Result<(), EmError> {
        let _k = self.big_for(Path::Ioctl);
        // em_init starts from a stopped device.
        self.stop_locked(s);
        let dev = &self.dev;
        dev.write(Reg::CTRL, CTRL_SLU);
        let itr = if self.cfg.ints_per_sec == 0 {
            0
        } else {
            1_000_000_000 / (self.cfg.ints_per_sec * 256)
        };
        dev.write(Reg::ITR, itr);
        let rx_n = self.rx_desc.load(Ordering::Relaxed);
        let tx_n = self.tx_desc.load(Ordering::Relaxed);
        let now = self.ticks();
        for (q, qp) in self.queues.iter().enumerate() {
            // Transmit unit (em_initialize_transmit_unit).
            let tx = qp.ifq.driver();
            tx.n.store(tx_n, Ordering::Relaxed);
            tx.head.store(0, Ordering::Relaxed);
            tx.tail.store(0, Ordering::Relaxed);
            for i in 0..tx_n as usize {
                tx.ring.get(i).clear();
            }
            dev.write(Reg::tdbal(q), tx.bus as u32);
            dev.write(Reg::tdbah(q), (tx.bus >> 32) as u32);
            dev.write(Reg::tdlen(q), tx_n * DESC_SIZE as u32);
            dev.write(Reg::tdh(q), 0);
            dev.write(Reg::tdt(q), 0);
            // Receive unit (em_setup_receive_structures): the ring is live
            // again, with its watermarks.
            {
                let mut rx = qp.rx.lock();
                let (rxr, soft) = rx.split();
                rxr.init(self.cfg.rx_lwm.min(rx_n - 1), rx_n - 1, now)
                    .expect("lwm <= hwm by construction");
                soft.n = rx_n;
                soft.next = 0;
                soft.tail = 0;
            }
            for i in 0..rx_n as usize {
                qp.rx_ring.get(i).clear();
            }
            dev.write(Reg::rdbal(q), qp.rx_bus as u32);
            dev.write(Reg::rdbah(q), (qp.rx_bus >> 32) as u32);
            dev.write(Reg::rdlen(q), rx_n * DESC_SIZE as u32);
            dev.write(Reg::rdh(q), 0);
            dev.write(Reg::rdt(q), 0);
        }
        dev.write(Reg::TCTL, TCTL_EN);
        dev.write(Reg::RCTL, RCTL_EN);
        if dev.read(Reg::RCTL) & RCTL_EN == 0 || dev.read(Reg::TCTL) & TCTL_EN == 0 {
            self.stop_locked(s);
            return Err(EmError::DeviceRefused);
        }
        for qp in self.queues.iter() {
            self.rxfill(qp);
        }
        // RUNNING last: a handler or start that sees it sees the rings.
        self.running.store(true, Ordering::Release);
        for qp in self.queues.iter() {
            qp.ifq.driver().running.store(true, Ordering::Release);
            qp.ifq.clear_oactive();
            qp.ifq.set_running(true);
        }
        dev.write(Reg::IMS, IMS_ENABLE_MASK);
        self.ctr.inits.fetch_add(1, Ordering::Relaxed);
        // Packets queued while down go out now.
        for qp in self.queues.iter() {
            qp.ifq.start();
        }
        Ok(())
    }

    fn stop_locked(&self, _s: &Serialized<'_>) {
        let k = self.big_for(Path::Ioctl);
        let was_running = self.running.load(Ordering::Relaxed);
        // 1. Clear RUNNING: new handler passes and starts do nothing.
        self.running.store(false, Ordering::Release);
        for qp in self.queues.iter() {
            qp.ifq.set_running(false);
            qp.ifq.driver().running.store(false, Ordering::Release);
        }
        // Disable interrupts and reset the device: when the reset returns it
        // no longer touches the rings (em_disable_intr, em_reset_hw).
        self.dev.write(Reg::IMC, !0);
        self.dev.write(Reg::CTRL, CTRL_RST);
        // 2. Interrupt barrier, 3. start barrier. In the big-lock modes they
        // wait with the big lock dropped, as tsleep drops the kernel lock: a
        // handler or start waiting for the lock must get it to finish.
        let barriers = || {
            self.dev.intr_barrier();
            for qp in self.queues.iter() {
                qp.ifq
                    .barrier()
                    .expect("stop is never called from inside the start routine");
            }
        };
        match &k {
            Some(k) => k.sleep(barriers),
            None => barriers(),
        }
        // 4. Clear oactive.
        for qp in self.queues.iter() {
            qp.ifq.clear_oactive();
        }
        // 5. Free transmit structures, then receive structures.
        for qp in self.queues.iter() {
            self.free_transmit_structures(qp);
        }
        for qp in self.queues.iter() {
            self.free_receive_structures(qp);
        }
        if was_running {
            self.ctr.stops.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn free_transmit_structures(&self, qp: &QueuePair) {
        let tx = qp.ifq.driver();
        let n = tx.n.load(Ordering::Relaxed);
        let head = tx.head.load(Ordering::Acquire);
        let mut tail = tx.tail.load(Ordering::Acquire);
        let mut bufs = Vec::new();
        while tail != head {
            let d = tx.ring.get(tail as usize);
            let (addr, _, _) = d.tx_fetch();
            bufs.push(self.pool.reclaim(addr, BufState::OnTxRing));
            d.clear();
            tail = (tail + 1) % n;
        }
        tx.flushed.fetch_add(bufs.len() as u64, Ordering::Relaxed);
        tx.head.store(0, Ordering::Relaxed);
        tx.tail.store(0, Ordering::Relaxed);
        self.pool.free_all(bufs);
    }

    /// Seed 000: `if_rxr_init(0, 0)` under the rx mutex first, so rx
    /// completion (which checks `inuse` under the mutex) stays off the ring
    /// from here on; then free the buffers outside the mutex.
    fn free_receive_structures(&self, qp: &QueuePair) {
        let (n, next, tail, inuse) = {
            let mut rx = qp.rx.lock();
            let inuse = rx.teardown();
            let soft = rx.data_mut();
            let r = (soft.n, soft.next, soft.tail, inuse);
            soft.next = 0;
            soft.tail = 0;
            r
        };
        let mut bufs = Vec::with_capacity(inuse as usize);
        let mut i = next;
        let mut flushed = 0;
        for _ in 0..inuse {
            let d = qp.rx_ring.get(i as usize);
            let wb = d.rx_writeback();
            if wb.status & RXD_STAT_DD != 0 {
                flushed += 1;
            }
            bufs.push(self.pool.reclaim(wb.addr, BufState::OnRxRing));
            d.clear();
            i = (i + 1) % n;
        }
        debug_assert!(inuse == 0 || i == tail, "posted slots end at the tail");
        self.ctr.rx_flushed.fetch_add(flushed, Ordering::Relaxed);
        self.pool.free_all(bufs);
    }

    fn purge(&self) {
        for qp in self.queues.iter() {
            let purged: Vec<Mbuf> = qp.ifq.purge().collect();
            self.ctr
                .tx_purged
                .fetch_add(purged.len() as u64, Ordering::Relaxed);
            self.pool.free_all(purged);
        }
    }

    /// Receive completion (`em_rxeof`), seed 000 style: the ring under the
    /// rx mutex, error frees deferred to a list and done after it, the stack
    /// called with no lock held.
    fn rxeof(&self, q: usize, qp: &QueuePair) {
        let _k = self.big_for(Path::Rx);
        let mut input = Vec::new();
        let mut free = Vec::new();
        {
            let mut rx = qp.rx.lock();
            // Nothing posted (or torn down by stop): stay off the ring.
            if rx.inuse() == 0 {
                return;
            }
            self.rxeof_locked(qp, &mut rx, &mut input, &mut free);
        }
        self.pool.free_all(free);
        if !input.is_empty() && self.stack.input(q, &mut input) {
            qp.rx.livelocked(self.ticks());
        }
        // The stack takes everything; anything left is ours to free.
        self.pool.free_all(input);
    }

    fn rxeof_locked(
        &self,
        qp: &QueuePair,
        rx: &mut RxRingGuard<'_, RawSerializer, RxSoft>,
        input: &mut Vec<Mbuf>,
        free: &mut Vec<Mbuf>,
    ) {
        let (rxr, soft) = rx.split();
        let inuse = rxr.inuse();
        let n = soft.n;
        let mut i = soft.next;
        let mut done = 0;
        // Only posted slots: a reclaimed, not yet refilled slot still shows
        // the previous lap's DD bit.
        while done < inuse {
            let wb = qp.rx_ring.get(i as usize).rx_writeback();
            if wb.status & RXD_STAT_DD == 0 {
                break;
            }
            let m = self.pool.reclaim(wb.addr, BufState::OnRxRing);
            if wb.errors != 0 || wb.status & RXD_STAT_EOP == 0 || wb.len == 0 {
                soft.errors += 1;
                free.push(m);
            } else {
                soft.packets += 1;
                input.push(m);
            }
            i = (i + 1) % n;
            done += 1;
        }
        soft.next = i;
        rxr.put(done).expect("never more than in use");
    }

    /// Receive refill (`em_rxfill`): reserve slots from the ring accounting,
    /// post a fresh buffer in each, write `RDT`. Returns whether it posted.
    fn rxfill(&self, qp: &QueuePair) -> bool {
        let _k = self.big_for(Path::RxFill);
        let q = qp.ifq.driver().q;
        let now = self.ticks();
        let mut rx = qp.rx.lock();
        let (rxr, soft) = rx.split();
        let n = soft.n;
        if n == 0 {
            return false;
        }
        let mut fill = rxr.reserve(n, now);
        let mut tail = soft.tail;
        while !fill.is_empty() {
            let Some(m) = self.pool.alloc() else { break };
            qp.rx_ring
                .get(tail as usize)
                .post_rx(m.into_ring(BufState::OnRxRing));
            let took = fill.take_one();
            debug_assert!(took);
            tail = (tail + 1) % n;
        }
        let posted = fill.finish();
        if posted > 0 {
            soft.tail = tail;
            // Under the rx mutex, so two refills cannot move RDT backwards.
            self.dev.write(Reg::rdt(q), tail);
        }
        posted > 0
    }
}

impl IntrHandler for Softc {
    /// `em_intr`.
    fn intr(&self) -> bool {
        let _k = self.big_for(Path::Interrupt);
        let icr = self.dev.read(Reg::ICR);
        if icr == 0 {
            return false;
        }
        if icr & ICR_LSC != 0 {
            // Link state change: nothing to renegotiate in the simulation.
        }
        if !self.running.load(Ordering::Acquire) {
            return true;
        }
        for (q, qp) in self.queues.iter().enumerate() {
            self.rxeof(q, qp);
            {
                let _k = self.big_for(Path::TxEof);
                qp.ifq.driver().txeof();
                // Freed slots: clear oactive and start again, through the
                // ifq serializer (seed 002: "restart from an mpsafe
                // interrupt context").
                qp.ifq.restart_if_oactive();
            }
            self.rxfill(qp);
            if !qp.ifq.is_empty() {
                qp.ifq.start();
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_table_matches_the_seeds() {
        for p in Path::ALL {
            assert!(Mode::BigLock.locks(p));
            assert!(!Mode::Mpsafe.locks(p));
        }
        assert!(!Mode::RxUnlocked.locks(Path::Rx));
        assert!(!Mode::RxUnlocked.locks(Path::Interrupt));
        assert!(Mode::RxUnlocked.locks(Path::TxEof));
        assert!(Mode::RxUnlocked.locks(Path::RxFill));
        assert_eq!("rx-unlocked".parse::<Mode>(), Ok(Mode::RxUnlocked));
        assert!("fast".parse::<Mode>().unwrap_err().contains("unknown mode"));
    }

    #[test]
    fn ring_sizes_are_checked() {
        assert!(check_ring("rx", 512).is_ok());
        assert!(check_ring("rx", 80).is_ok());
        assert!(check_ring("rx", 4096).is_ok());
        for bad in [0, 72, 81, 4104, 100] {
            let e = check_ring("tx", bad).unwrap_err();
            assert_eq!(
                e,
                EmError::RingSize {
                    ring: "tx",
                    size: bad
                }
            );
            assert!(e.to_string().contains("multiple of 8"));
        }
    }
}
