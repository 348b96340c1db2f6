//! `Device`: smoltcp's `phy::Device` over a send queue and an input queue.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use core::ops::Deref;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::{Duration, Instant};

use crate::buffers::Buffers;
use crate::doorbell::{Doorbell, Notify};
use crate::queues::{RxQueue, TxQueue};

/// The Ethernet frame size a standard 1500-byte IP MTU needs (header
/// included, FCS not): smoltcp's `max_transmission_unit` for Ethernet.
pub const ETHERNET_MTU: usize = 1514;

/// The smallest Ethernet `mtu` the adapter accepts: room for the header
/// and the 576-byte IP datagram every IPv4 host must take.
pub const MIN_MTU: usize = 14 + 576;

/// How long [`Device::poll_sleep`] lets a poll loop sleep when smoltcp has
/// frames to send but the pool had no buffer for them: the pool does not
/// announce returned buffers, so the loop looks again after this long.
pub const NO_BUFFER_RETRY: Duration = Duration::from_millis(1);

/// Why the device's last transmit token request was refused (and nothing was
/// reserved since): see [`Device::tx_blocked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxBlocked {
    /// The send queue was full. The [`Doorbell`] is marked: the driver's
    /// next start pass (or `tx_room`) wakes the poll loop.
    QueueFull,
    /// The pool had no buffer. Nothing announces a returned buffer.
    NoBuffer,
}

/// How a [`Device`] is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The largest Ethernet frame, header included and FCS not (smoltcp's
    /// `max_transmission_unit`). At most the pool's buffer size. Default
    /// [`ETHERNET_MTU`].
    pub mtu: usize,
    /// smoltcp's `max_burst_size` (in MTUs), if the device has one. Default
    /// `None`.
    pub max_burst_size: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mtu: ETHERNET_MTU,
            max_burst_size: None,
        }
    }
}

impl Config {
    /// The default configuration with frames of at most `mtu` bytes.
    pub const fn with_mtu(mtu: usize) -> Self {
        Self {
            mtu,
            max_burst_size: None,
        }
    }
}

/// A [`Device`] configuration that cannot work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// The MTU is below [`MIN_MTU`].
    MtuTooSmall {
        /// The MTU asked for.
        mtu: usize,
    },
    /// The MTU is above the pool's buffer size: a full-size frame would not
    /// fit in a buffer.
    MtuAboveBufferSize {
        /// The MTU asked for.
        mtu: usize,
        /// The pool's [`Buffers::buffer_size`].
        buffer_size: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MtuTooSmall { mtu } => write!(f, "MTU {mtu} is below {MIN_MTU}"),
            Self::MtuAboveBufferSize { mtu, buffer_size } => write!(
                f,
                "MTU {mtu} does not fit in the pool's {buffer_size}-byte buffers"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// What a [`Device`] did, as one snapshot. Every buffer the device took is
/// in exactly one of these outcomes; see the field docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceStats {
    /// Received frames handed to smoltcp (receive tokens consumed).
    pub rx_frames: u64,
    /// Receive tokens dropped unconsumed: their frames were freed unread.
    pub rx_tokens_dropped: u64,
    /// Frames smoltcp wrote that the send queue took.
    pub tx_frames: u64,
    /// Frames smoltcp wrote that the send queue refused anyway (another
    /// producer filled it; counted in its `qdrops` too): freed.
    pub tx_refused: u64,
    /// Older frames the send queue evicted to take one of ours (a priority
    /// discipline): freed; counted in its `qdrops` too.
    pub tx_evicted: u64,
    /// Transmit tokens dropped unconsumed: their buffers were freed and
    /// their slots released, nothing sent.
    pub tx_tokens_dropped: u64,
    /// `transmit` calls refused because the send queue was full (smoltcp
    /// keeps its data and the [`Doorbell`] wakes the poll loop on room).
    pub tx_queue_full: u64,
    /// `transmit` calls refused because the pool had no buffer.
    pub tx_no_buffer: u64,
    /// Replies (the transmit token `receive` pairs with each frame) that
    /// found neither room in the send queue nor a buffer when smoltcp wrote
    /// them: built in a scratch buffer and not sent, as a full NIC drops
    /// them. TCP retransmits.
    pub replies_dropped: u64,
}

/// The counters, in cells: both tokens of a `receive` pair count through
/// one shared reference.
#[derive(Default)]
struct Stats {
    rx_frames: Cell<u64>,
    rx_tokens_dropped: Cell<u64>,
    tx_frames: Cell<u64>,
    tx_refused: Cell<u64>,
    tx_evicted: Cell<u64>,
    tx_tokens_dropped: Cell<u64>,
    tx_queue_full: Cell<u64>,
    tx_no_buffer: Cell<u64>,
    replies_dropped: Cell<u64>,
}

fn bump(c: &Cell<u64>) {
    c.set(c.get() + 1);
}

impl Stats {
    fn snapshot(&self) -> DeviceStats {
        DeviceStats {
            rx_frames: self.rx_frames.get(),
            rx_tokens_dropped: self.rx_tokens_dropped.get(),
            tx_frames: self.tx_frames.get(),
            tx_refused: self.tx_refused.get(),
            tx_evicted: self.tx_evicted.get(),
            tx_tokens_dropped: self.tx_tokens_dropped.get(),
            tx_queue_full: self.tx_queue_full.get(),
            tx_no_buffer: self.tx_no_buffer.get(),
            replies_dropped: self.replies_dropped.get(),
        }
    }
}

/// The transmit half a token reaches: the queue, the pool, the doorbell,
/// the promised slots and the counters.
struct TxSide<'a, T, B, H> {
    tx: &'a T,
    buffers: &'a B,
    doorbell: &'a H,
    reserved: &'a Cell<usize>,
    blocked: &'a Cell<Option<TxBlocked>>,
    stats: &'a Stats,
}

impl<T, B, H, N> TxSide<'_, T, B, H>
where
    T: TxQueue,
    B: Buffers<Buffer = T::Packet>,
    H: Deref<Target = Doorbell<N>>,
    N: Notify,
{
    /// Promises a slot in the send queue and takes a buffer for it, or
    /// `None` (counted) if there is neither; on a full queue the doorbell is
    /// marked first, so the driver's next room wakes the poll loop.
    fn reserve(&self) -> Option<B::Buffer> {
        let reserved = self.reserved.get();
        if !self.tx.has_room(reserved) {
            self.doorbell.want_tx();
            // Again after the mark (the doorbell's handshake): room made
            // between the first look and the mark was not announced.
            if !self.tx.has_room(reserved) {
                bump(&self.stats.tx_queue_full);
                self.blocked.set(Some(TxBlocked::QueueFull));
                return None;
            }
        }
        let Some(buf) = self.buffers.alloc() else {
            bump(&self.stats.tx_no_buffer);
            self.blocked.set(Some(TxBlocked::NoBuffer));
            return None;
        };
        self.reserved.set(reserved + 1);
        self.blocked.set(None);
        Some(buf)
    }

    /// Fills `buf` with `f` and hands it to the send queue, releasing its
    /// promised slot; whatever the queue drops is freed.
    fn send<R>(&self, mut buf: B::Buffer, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let r = f(self.buffers.frame_mut(&mut buf, len));
        // The slot promised to this buffer is used now (or freed below).
        self.reserved.set(self.reserved.get() - 1);
        match self.tx.send(buf) {
            Ok(()) => bump(&self.stats.tx_frames),
            Err(dropped) => {
                if dropped.offered_was_queued() {
                    bump(&self.stats.tx_frames);
                    bump(&self.stats.tx_evicted);
                } else {
                    bump(&self.stats.tx_refused);
                }
                self.buffers.free(dropped.into_packet());
            }
        }
        r
    }
}

/// smoltcp's [`phy::Device`] over one driver queue pair: the send queue `T`
/// (an [`IfQueue`](mpsafe_ifqueue::IfQueue)), the input queue `I` (an
/// [`IfInputQueue`](mpsafe_ifqueue::IfInputQueue)), the buffer pool `B` both
/// sides use, and the [`Doorbell`] `H` (`&Doorbell<N>`, `Arc<Doorbell<N>>`,
/// ...) the driver rings.
///
/// One `Device` per queue pair, owned by the thread that polls its smoltcp
/// `Interface`. The queues, pool and doorbell are shared with the driver.
///
/// - [`transmit`](phy::Device::transmit) hands out a token only when the
///   send queue has room for one more packet beyond those promised to tokens
///   already out, and the pool has a buffer. The token holds both. Consumed,
///   it fills the buffer and enqueues it (and the queue's serialized start
///   runs). Dropped unconsumed, it frees the buffer and releases the slot:
///   nothing is sent, lost or counted against the queue. When the queue is
///   full, the doorbell is marked so the driver's next start pass wakes the
///   poll loop.
/// - [`receive`](phy::Device::receive) takes the next frame the driver
///   queued in the input queue (everything pending is taken at once, as
///   OpenBSD's `ifiq_process` does, so the queue's back-pressure measures
///   what the stack has not taken yet). The receive token shows the frame to
///   smoltcp and frees the buffer, consumed or dropped. The transmit token
///   paired with it (for a reply, such as an ACK) reserves its slot and
///   buffer only if smoltcp writes a reply; with no room or buffer then, the
///   reply is written into a scratch buffer and not sent
///   ([`DeviceStats::replies_dropped`]). A full send queue therefore never
///   stops the stack from reading, so received frames keep freeing pool
///   buffers.
/// - Dropping the `Device` frees the frames it had taken and not handed out.
///
/// # Examples
///
/// See the crate documentation for a device under a smoltcp `Interface`.
/// The tokens, driven by hand:
///
/// ```
/// use smoltcp::phy::{Device as _, RxToken as _, TxToken as _};
/// use smoltcp::time::Instant;
/// use mpsafe_ifqueue::{Config, Fifo, IfInputQueue, IfQueue, InputConfig};
/// use mpsafe_smoltcp::{Buffers, Device, Doorbell, Signal, VecPool};
///
/// let pool = VecPool::new(8, 1514)?;
/// let bell = Doorbell::new(Signal::new());
/// // A send queue of 2 whose start routine does not run yet (down).
/// let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(2), |_, _| {})?;
/// txq.set_running(false);
/// let rxq = IfInputQueue::new(InputConfig::default())?;
/// let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default())?;
/// let now = Instant::from_millis(0);
///
/// // Two frames fit; a token dropped unused gives its slot and buffer back.
/// dev.transmit(now).unwrap().consume(60, |f| f.fill(1));
/// drop(dev.transmit(now).unwrap());
/// dev.transmit(now).unwrap().consume(60, |f| f.fill(2));
/// assert!(dev.transmit(now).is_none()); // full: the doorbell is marked
/// assert!(bell.tx_wanted());
/// assert_eq!(txq.len(), 2);
///
/// // The driver receives a frame into a pool buffer and queues it.
/// let mut frame = pool.alloc().unwrap();
/// pool.frame_mut(&mut frame, 60).fill(0xee);
/// assert!(!bell.input(&rxq, &mut vec![frame]).is_high());
/// let (rx, reply) = dev.receive(now).unwrap();
/// assert_eq!(rx.consume(|f| f[0]), 0xee);
/// drop(reply); // no reply: it took nothing
///
/// let s = dev.stats();
/// assert_eq!((s.tx_frames, s.tx_tokens_dropped, s.tx_queue_full, s.rx_frames), (2, 1, 1, 1));
/// drop(dev);
/// // Two buffers in the send queue; every other one is back.
/// assert_eq!(pool.stats().in_use(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
{
    tx: T,
    rx: I,
    buffers: B,
    doorbell: H,
    /// Frames taken from the input queue, not yet handed to smoltcp.
    pending: VecDeque<T::Packet>,
    /// Slots promised to transmit tokens that are out.
    reserved: Cell<usize>,
    /// Why the last reservation failed, until one succeeds.
    blocked: Cell<Option<TxBlocked>>,
    /// Where a reply that found no room is written (and dropped).
    scratch: Vec<u8>,
    caps: DeviceCapabilities,
    stats: Stats,
}

impl<T, I, B, H, N> Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
    H: Deref<Target = Doorbell<N>>,
    N: Notify,
{
    /// A device that transmits on `tx`, receives from `rx`, takes transmit
    /// buffers from `buffers` and frees every buffer it is done with there,
    /// and marks `doorbell` when it waits for transmit room.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for an MTU below [`MIN_MTU`] or above the pool's
    /// buffer size.
    pub fn new(tx: T, rx: I, buffers: B, doorbell: H, config: Config) -> Result<Self, ConfigError> {
        let buffer_size = buffers.buffer_size();
        if config.mtu < MIN_MTU {
            return Err(ConfigError::MtuTooSmall { mtu: config.mtu });
        }
        if config.mtu > buffer_size {
            return Err(ConfigError::MtuAboveBufferSize {
                mtu: config.mtu,
                buffer_size,
            });
        }
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = config.mtu;
        caps.max_burst_size = config.max_burst_size;
        Ok(Self {
            tx,
            rx,
            buffers,
            doorbell,
            pending: VecDeque::new(),
            reserved: Cell::new(0),
            blocked: Cell::new(None),
            scratch: Vec::new(),
            caps,
            stats: Stats::default(),
        })
    }
}

impl<T, I, B, H> Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
{
    /// What the device did so far.
    pub fn stats(&self) -> DeviceStats {
        self.stats.snapshot()
    }

    /// Send-queue slots promised to transmit tokens that are out (0 whenever
    /// no token is alive).
    pub fn reserved(&self) -> usize {
        self.reserved.get()
    }

    /// Why the last request for a transmit token was refused, if no token
    /// has been reserved since: smoltcp has frames to send that this device
    /// cannot take yet.
    pub fn tx_blocked(&self) -> Option<TxBlocked> {
        self.blocked.get()
    }

    /// How long the poll loop may sleep, given smoltcp's
    /// `Interface::poll_delay` (`None`: until woken).
    ///
    /// smoltcp reports a delay of zero while a socket has data it may send,
    /// whether or not the device can take it; a loop that obeys it spins
    /// while the send queue is full. This turns that zero into a real
    /// sleep when the device is blocked: until the [`Doorbell`] rings
    /// (`None`) when the queue was full, since the driver's next room wakes
    /// the loop, or [`NO_BUFFER_RETRY`] when the pool was empty. Any other
    /// delay is returned as it is: a timer smoltcp needs, or zero because
    /// there is work the device can take.
    ///
    /// # Examples
    ///
    /// ```
    /// use smoltcp::time::Duration;
    /// # use mpsafe_ifqueue::{Config, Fifo, IfInputQueue, IfQueue, InputConfig};
    /// # use mpsafe_smoltcp::{Device, Doorbell, Signal, VecPool};
    /// # use smoltcp::phy::{Device as _, TxToken as _};
    /// # let pool = VecPool::new(4, 1514)?;
    /// # let bell = Doorbell::new(Signal::new());
    /// # let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(1), |_, _| {})?;
    /// # txq.set_running(false);
    /// # let rxq = IfInputQueue::new(InputConfig::default())?;
    /// # let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default())?;
    /// # let now = smoltcp::time::Instant::ZERO;
    /// // (a device over a send queue of one packet)
    /// assert_eq!(dev.poll_sleep(Some(Duration::ZERO)), Some(Duration::ZERO));
    /// dev.transmit(now).unwrap().consume(60, |f| f.fill(0));
    /// assert!(dev.transmit(now).is_none()); // full
    /// // smoltcp still wants to send: sleep until the driver makes room...
    /// assert_eq!(dev.poll_sleep(Some(Duration::ZERO)), None);
    /// // ...but a timer of smoltcp's is kept.
    /// assert_eq!(dev.poll_sleep(Some(Duration::from_millis(5))), Some(Duration::from_millis(5)));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll_sleep(&self, poll_delay: Option<Duration>) -> Option<Duration> {
        match (poll_delay, self.blocked.get()) {
            (Some(Duration::ZERO), Some(TxBlocked::QueueFull)) => None,
            (Some(Duration::ZERO), Some(TxBlocked::NoBuffer)) => Some(NO_BUFFER_RETRY),
            (delay, _) => delay,
        }
    }

    /// Frames taken from the input queue and not handed to smoltcp yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The checksum work smoltcp does: set what the hardware offloads (a
    /// NIC that verifies or inserts checksums) to spare the CPU.
    pub fn checksum_mut(&mut self) -> &mut ChecksumCapabilities {
        &mut self.caps.checksum
    }

    /// The send queue.
    pub fn tx_queue(&self) -> &T {
        &self.tx
    }

    /// The input queue.
    pub fn rx_queue(&self) -> &I {
        &self.rx
    }

    /// The buffer pool.
    pub fn buffers(&self) -> &B {
        &self.buffers
    }

    /// The doorbell.
    pub fn doorbell(&self) -> &H {
        &self.doorbell
    }
}

impl<T, I, B, H> Drop for Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
{
    /// Frees the frames taken from the input queue and never handed out.
    fn drop(&mut self) {
        for buf in self.pending.drain(..) {
            self.buffers.free(buf);
        }
    }
}

impl<T, I, B, H, N> phy::Device for Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
    H: Deref<Target = Doorbell<N>>,
    N: Notify,
{
    type RxToken<'a>
        = RxToken<'a, B>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, T, B, H>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_, B>, TxToken<'_, T, B, H>)> {
        if self.pending.is_empty() {
            self.rx.take_into(&mut self.pending);
        }
        let frame = self.pending.pop_front()?;
        let rx = RxToken {
            buffers: &self.buffers,
            buf: Some(frame),
            stats: &self.stats,
        };
        let tx = TxToken {
            side: TxSide {
                tx: &self.tx,
                buffers: &self.buffers,
                doorbell: &self.doorbell,
                reserved: &self.reserved,
                blocked: &self.blocked,
                stats: &self.stats,
            },
            buf: None,
            scratch: Some(&mut self.scratch),
        };
        Some((rx, tx))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, T, B, H>> {
        let side = TxSide {
            tx: &self.tx,
            buffers: &self.buffers,
            doorbell: &self.doorbell,
            reserved: &self.reserved,
            blocked: &self.blocked,
            stats: &self.stats,
        };
        let buf = side.reserve()?;
        Some(TxToken {
            side,
            buf: Some(buf),
            scratch: None,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.caps.clone()
    }
}

impl<T, I, B, H> fmt::Debug for Device<T, I, B, H>
where
    T: TxQueue,
    I: RxQueue<Packet = T::Packet>,
    B: Buffers<Buffer = T::Packet>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("mtu", &self.caps.max_transmission_unit)
            .field("pending", &self.pending.len())
            .field("reserved", &self.reserved.get())
            .field("stats", &self.stats.snapshot())
            .finish_non_exhaustive()
    }
}

/// A received frame for smoltcp ([`phy::RxToken`]): consumed, it shows the
/// frame and frees the buffer; dropped, it frees the buffer unread.
pub struct RxToken<'a, B: Buffers> {
    buffers: &'a B,
    buf: Option<B::Buffer>,
    stats: &'a Stats,
}

impl<B: Buffers> phy::RxToken for RxToken<'_, B> {
    fn consume<R, F>(mut self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let buf = self
            .buf
            .take()
            .expect("an RxToken holds its frame until consumed");
        let r = f(self.buffers.frame(&buf));
        self.buffers.free(buf);
        bump(&self.stats.rx_frames);
        r
    }
}

impl<B: Buffers> Drop for RxToken<'_, B> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.buffers.free(buf);
            bump(&self.stats.rx_tokens_dropped);
        }
    }
}

impl<B: Buffers> fmt::Debug for RxToken<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RxToken").finish_non_exhaustive()
    }
}

/// A frame to transmit ([`phy::TxToken`]). From
/// [`transmit`](phy::Device::transmit) it holds a buffer and a promised
/// send-queue slot; from [`receive`](phy::Device::receive) (a reply) it
/// takes them when smoltcp writes. Consumed, the frame goes to the send
/// queue; dropped unconsumed, the buffer goes back to the pool and the slot
/// is released.
pub struct TxToken<'a, T, B, H>
where
    T: TxQueue,
    B: Buffers<Buffer = T::Packet>,
{
    side: TxSide<'a, T, B, H>,
    /// The reserved buffer (`None` for a reply token until it writes).
    buf: Option<B::Buffer>,
    /// A reply token's fallback when there is no room to send.
    scratch: Option<&'a mut Vec<u8>>,
}

impl<T, B, H, N> phy::TxToken for TxToken<'_, T, B, H>
where
    T: TxQueue,
    B: Buffers<Buffer = T::Packet>,
    H: Deref<Target = Doorbell<N>>,
    N: Notify,
{
    /// # Panics
    ///
    /// If `len` is above the device's MTU (smoltcp never asks for more than
    /// the `max_transmission_unit` the device reports).
    fn consume<R, F>(mut self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let buffer_size = self.side.buffers.buffer_size();
        assert!(
            len <= buffer_size,
            "smoltcp asked for a {len}-byte frame, above the {buffer_size}-byte buffers"
        );
        if let Some(buf) = self.buf.take().or_else(|| self.side.reserve()) {
            return self.side.send(buf, len, f);
        }
        // A reply with no room or no buffer: written and dropped, as a full
        // NIC would drop it.
        bump(&self.side.stats.replies_dropped);
        let scratch = self
            .scratch
            .take()
            .expect("only a reply token is handed out without a buffer");
        scratch.clear();
        scratch.resize(len, 0);
        f(scratch)
    }
}

impl<T, B, H> Drop for TxToken<'_, T, B, H>
where
    T: TxQueue,
    B: Buffers<Buffer = T::Packet>,
{
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.side.buffers.free(buf);
            self.side.reserved.set(self.side.reserved.get() - 1);
            bump(&self.side.stats.tx_tokens_dropped);
        }
    }
}

impl<T, B, H> fmt::Debug for TxToken<'_, T, B, H>
where
    T: TxQueue,
    B: Buffers<Buffer = T::Packet>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxToken")
            .field("reserved", &self.buf.is_some())
            .finish_non_exhaustive()
    }
}
