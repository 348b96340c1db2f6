//! TCP between two em NICs through `mpsafe-smoltcp`: the transfer the
//! demo's `--stack tcp`, the simulator's TCP test and the QEMU guest run.
//!
//! Each NIC ([`Nic`]) is an em driver with a smoltcp `Interface` on the
//! adapter's `Device` above it: it transmits through
//! [`Em::transmit`](mpsafe_em_sim::Em::transmit) (room asked with
//! [`Em::send_queue_space`](mpsafe_em_sim::Em::send_queue_space)) and
//! receives from an `IfInputQueue` the driver's
//! [`Stack::input`] fills, whose doorbell also
//! rings on the driver's [`Stack::tx_room`].
//! Each interface is polled on its own thread; [`run`] moves the flows and
//! meddles with the NICs (mode switches, up/down cycles) at points of the
//! transfer's progress.
//!
//! Every flow's bytes are generated from its number and position and
//! checked on arrival (every byte once, in order, with a running hash that
//! must match the sender's); [`Nic::detach`] gives the pool back for the
//! caller's buffer check; each run has a deadline, and a run that misses it
//! fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mpsafe_em_sim::cpu::{allowed_cpus, pin_to, process_cpu_time};
use mpsafe_em_sim::{Em, EmConfig, Hardware, KernelLock, Mbuf, Mode, Pool, Stack, StdKernel};
use mpsafe_smoltcp::mpsafe_ifqueue::{Dropped, IfInputQueue, InputConfig, Pressure};
use mpsafe_smoltcp::{Buffers, Config, Device, DeviceStats, Doorbell, Signal, TxQueue};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// How long a poll loop blocked on a full send queue sleeps at most: the
/// driver rings the doorbell from its interrupt ([`Stack::tx_room`]), but a
/// purge at `down` is not announced.
const QUEUE_FULL_RECHECK: Duration = Duration::from_millis(10);

/// Each socket's send and receive buffer: five connections' windows
/// together (about 220 full frames) stay below the 256 receive descriptors
/// posted, so the receiver misses frames only when its refill falls behind.
/// Every loss fast retransmit does not repair costs smoltcp's minimum
/// retransmission timeout, one second (RFC 6298), which would dominate the
/// run's time.
const SOCKET_BUFFER: usize = 64 * 1024;

/// The em pool's buffers for the adapter: a buffer is an [`Mbuf`] of a
/// pool with buffer memory ([`Pool::with_heap`]).
struct EmBuffers(Pool);

impl Buffers for EmBuffers {
    type Buffer = Mbuf;

    fn buffer_size(&self) -> usize {
        self.0.buf_size()
    }

    fn alloc(&self) -> Option<Mbuf> {
        self.0.alloc()
    }

    fn frame_mut<'b>(&'b self, buf: &'b mut Mbuf, len: usize) -> &'b mut [u8] {
        buf.set_len(u16::try_from(len).expect("the adapter asks at most buffer_size"));
        &mut buf.data_mut().expect("a pool with buffer memory")[..len]
    }

    fn frame<'b>(&'b self, buf: &'b Mbuf) -> &'b [u8] {
        buf.data().expect("a pool with buffer memory")
    }

    fn free(&self, buf: Mbuf) {
        buf.free();
    }
}

/// The driver's send queue `q` as the adapter's [`TxQueue`]: room from
/// [`Em::send_queue_space`], frames through [`Em::transmit`]. A frame the
/// driver refuses (down, queue full) comes back to the adapter, which
/// frees it; TCP retransmits.
struct EmTx<'e, H: Hardware> {
    em: &'e Em<H>,
    q: usize,
}

impl<H: Hardware<Pool = Pool>> TxQueue for EmTx<'_, H> {
    type Packet = Mbuf;

    fn has_room(&self, reserved: usize) -> bool {
        self.em
            .send_queue_space(self.q)
            .is_some_and(|s| s > reserved)
    }

    fn send(&self, packet: Mbuf) -> Result<(), Dropped<Mbuf>> {
        self.em
            .transmit(self.q, packet)
            .map_err(|e| Dropped::Refused(e.into_packet()))
    }
}

type Bell = Doorbell<Signal>;
type Rxq = IfInputQueue<Mbuf>;
type Dev<'e, H> = Device<EmTx<'e, H>, Arc<Rxq>, Arc<EmBuffers>, Arc<Bell>>;

/// The stack above one driver: its input queue and the doorbell of the
/// poll loop that drains it.
struct AdapterStack {
    rxq: Arc<Rxq>,
    bell: Arc<Bell>,
    pool: Pool,
    pressured: AtomicU64,
    dropped: AtomicU64,
}

impl Stack<Mbuf> for AdapterStack {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        let n = packets.len() as u64;
        let pressure = self.bell.input(&self.rxq, packets);
        if pressure == Pressure::Dropped {
            // Left with us: the queue counted the drop.
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.pool.free_all(packets.drain(..));
        }
        if pressure.is_high() {
            self.pressured.fetch_add(1, Ordering::Relaxed);
        }
        pressure.is_high()
    }

    fn tx_room(&self, _queue: usize) {
        self.bell.tx_room();
    }
}

/// One NIC: its driver and the stack above it.
pub struct Nic<H: Hardware<Pool = Pool, Kernel = StdKernel>> {
    pool: Pool,
    stack: Arc<AdapterStack>,
    em: Em<H>,
    buffers: Arc<EmBuffers>,
    lost: Box<dyn Fn() -> u64 + Send + Sync>,
}

impl<H: Hardware<Pool = Pool, Kernel = StdKernel>> Nic<H> {
    /// Attaches the driver to `hw` (whose pool must have buffer memory:
    /// frames carry real bytes) in `mode`, named `em{index}`, with the
    /// adapter's stack above it, and brings it up. `lost` counts the frames
    /// the device dropped at its disabled receiver so far; with the
    /// driver's `tx_down` it is what an up/down cycle waits to see move.
    ///
    /// # Errors
    ///
    /// The driver's attach or init error, as text.
    pub fn attach(
        hw: Arc<H>,
        index: usize,
        mode: Mode,
        lost: Box<dyn Fn() -> u64 + Send + Sync>,
    ) -> Result<Self, String> {
        let pool = hw.pool().clone();
        let bell = Arc::new(Doorbell::new(Signal::new()));
        let stack = Arc::new(AdapterStack {
            rxq: Arc::new(
                IfInputQueue::new(InputConfig::new(256, 512)).map_err(|e| e.to_string())?,
            ),
            bell,
            pool: pool.clone(),
            pressured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let mut ecfg = EmConfig::new(mode);
        ecfg.name = format!("em{index}");
        // A TCP window's worth of descriptors posted from the start: the
        // ring's watermark grows by one per tick from `rx_lwm`, and a
        // window can arrive in one burst, so from the default of 16 most
        // of each window would be missed for the first seconds.
        ecfg.rx_lwm = 256;
        let em = Em::attach(hw, ecfg, Arc::new(KernelLock::new()), stack.clone())
            .map_err(|e| format!("em{index}: attach: {e}"))?;
        em.init().map_err(|e| format!("em{index}: init: {e}"))?;
        Ok(Self {
            buffers: Arc::new(EmBuffers(pool.clone())),
            pool,
            stack,
            em,
            lost,
        })
    }

    /// The driver.
    pub fn em(&self) -> &Em<H> {
        &self.em
    }

    /// Frames lost to being down so far: the caller's count (the device's)
    /// plus the driver's refusals of a down interface.
    fn lost_down(&self) -> u64 {
        (self.lost)() + self.em.stats().tx_down
    }

    /// Detaches the driver (down: every ring and send queue emptied into
    /// the pool) and purges the input queue; returns the pool, whose every
    /// buffer should now be free.
    pub fn detach(self) -> Pool {
        let Self {
            pool, stack, em, ..
        } = self;
        drop(em);
        pool.free_all(stack.rxq.purge());
        pool
    }

    fn device(&self) -> Dev<'_, H> {
        Device::new(
            EmTx { em: &self.em, q: 0 },
            self.stack.rxq.clone(),
            self.buffers.clone(),
            self.stack.bell.clone(),
            Config::default(),
        )
        .expect("the adapter's default configuration")
    }
}

/// A 64-bit mixer (splitmix64's finaliser): the flows' bytes.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes of flow `seed` from stream position `pos` on, into `out`.
fn pattern(seed: u64, pos: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let p = pos + i as u64;
        *b = mix(seed ^ (p >> 3)).to_le_bytes()[(p & 7) as usize];
    }
}

/// FNV-1a, 64-bit, running.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// One TCP connection of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// The side that sends (0 or 1); the other listens and receives.
    pub from: usize,
    /// The receiver's port.
    pub port: u16,
    /// Bytes the flow carries.
    pub bytes: u64,
}

/// What one end of a flow saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct End {
    bytes: u64,
    hash: u64,
    done: bool,
}

#[derive(Debug)]
struct Role {
    handle: SocketHandle,
    flow: usize,
    sender: bool,
    end: End,
    closed: bool,
}

/// One interface's poll thread state.
struct Side<'e, H: Hardware<Pool = Pool>> {
    index: usize,
    dev: Dev<'e, H>,
    iface: Interface,
    sockets: SocketSet<'static>,
    roles: Vec<Role>,
}

fn addr(side: usize) -> IpAddress {
    IpAddress::v4(10, 0, 0, side as u8 + 1)
}

fn smol_now(epoch: Instant) -> SmolInstant {
    SmolInstant::from_micros(epoch.elapsed().as_micros() as i64)
}

impl<'e, H: Hardware<Pool = Pool, Kernel = StdKernel>> Side<'e, H> {
    fn new(index: usize, nic: &'e Nic<H>, flows: &[Flow], epoch: Instant) -> Self {
        let mut dev = nic.device();
        let mut cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, index as u8 + 1]).into());
        cfg.random_seed = 0x5eed + index as u64;
        let mut iface = Interface::new(cfg, &mut dev, smol_now(epoch));
        iface.update_ip_addrs(|a| a.push(IpCidr::new(addr(index), 24)).unwrap());
        let mut sockets = SocketSet::new(Vec::new());
        let mut roles = Vec::new();
        for (i, f) in flows.iter().enumerate() {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
                tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            );
            let sender = f.from == index;
            if sender {
                s.connect(iface.context(), (addr(1 - index), f.port), 49152 + i as u16)
                    .unwrap();
            } else {
                s.listen(f.port).unwrap();
            }
            roles.push(Role {
                handle: sockets.add(s),
                flow: i,
                sender,
                end: End {
                    hash: FNV_START,
                    ..End::default()
                },
                closed: false,
            });
        }
        Self {
            index,
            dev,
            iface,
            sockets,
            roles,
        }
    }

    /// Moves data between the application and the sockets; returns whether
    /// anything moved. Fails on a reset connection or a wrong byte.
    fn step(&mut self, flows: &[Flow], received: &AtomicU64) -> Result<bool, String> {
        let mut progress = false;
        let mut chunk = [0u8; 4096];
        for r in &mut self.roles {
            let total = flows[r.flow].bytes;
            let flow = r.flow;
            let s = self.sockets.get_mut::<tcp::Socket>(r.handle);
            if r.sender {
                while r.end.bytes < total && s.can_send() {
                    let want = ((total - r.end.bytes) as usize).min(chunk.len());
                    pattern(flow as u64, r.end.bytes, &mut chunk[..want]);
                    let n = s
                        .send_slice(&chunk[..want])
                        .map_err(|e| format!("flow {flow}: send: {e:?}"))?;
                    if n == 0 {
                        break;
                    }
                    r.end.hash = fnv(r.end.hash, &chunk[..n]);
                    r.end.bytes += n as u64;
                    progress = true;
                }
                if r.end.bytes == total && !r.closed {
                    s.close();
                    r.closed = true;
                    progress = true;
                }
                match s.state() {
                    // Our FIN was acknowledged: so was every byte before it.
                    tcp::State::FinWait2 | tcp::State::TimeWait if r.closed && !r.end.done => {
                        r.end.done = true;
                        progress = true;
                    }
                    tcp::State::Closed if !r.end.done => {
                        return Err(format!(
                            "flow {flow}: sender's connection closed after {} bytes",
                            r.end.bytes
                        ));
                    }
                    _ => {}
                }
            } else {
                while s.can_recv() {
                    let pos = r.end.bytes;
                    let (ok, hash, n) = s
                        .recv(|buf| {
                            let mut expect = vec![0u8; buf.len()];
                            pattern(flow as u64, pos, &mut expect);
                            (
                                buf.len(),
                                (buf == &expect[..], fnv(r.end.hash, buf), buf.len()),
                            )
                        })
                        .map_err(|e| format!("flow {flow}: recv: {e:?}"))?;
                    if !ok {
                        return Err(format!("flow {flow}: wrong bytes at stream offset {pos}"));
                    }
                    r.end.hash = hash;
                    r.end.bytes += n as u64;
                    received.fetch_add(n as u64, Ordering::Relaxed);
                    if r.end.bytes > total {
                        return Err(format!(
                            "flow {flow}: {} bytes received, {total} sent",
                            r.end.bytes
                        ));
                    }
                    progress = true;
                }
                if !r.end.done
                    && r.end.bytes == total
                    && !s.may_recv()
                    && s.state() != tcp::State::Listen
                {
                    s.close();
                    r.end.done = true;
                    progress = true;
                }
                if !r.end.done && s.state() == tcp::State::Closed {
                    return Err(format!(
                        "flow {flow}: receiver's connection closed after {} bytes",
                        r.end.bytes
                    ));
                }
            }
        }
        Ok(progress)
    }

    fn all_done(&self) -> bool {
        self.roles.iter().all(|r| r.end.done)
    }

    fn ends(&self) -> Vec<(usize, bool, End)> {
        self.roles
            .iter()
            .map(|r| (r.flow, r.sender, r.end))
            .collect()
    }

    /// Polls until both sides are done (`finished` reaches 2), the other
    /// side failed, or the deadline passes.
    fn run(&mut self, flows: &[Flow], shared: &Shared<'_>) -> Result<(), String> {
        let mut counted = false;
        loop {
            // Acquire: pairs with the other side's Release increment.
            if shared.finished.load(Ordering::Acquire) == 2 {
                return Ok(());
            }
            if shared.failed.load(Ordering::Relaxed) {
                return Err("the other side failed".into());
            }
            let now = Instant::now();
            if now > shared.deadline {
                return Err(format!(
                    "side {}: deadline passed; ends {:?}; device {:?}",
                    self.index,
                    self.ends(),
                    self.dev.stats()
                ));
            }
            let t = smol_now(shared.epoch);
            self.iface.poll(t, &mut self.dev, &mut self.sockets);
            let progress = self.step(flows, &shared.received)?;
            if !counted && self.all_done() {
                counted = true;
                // Release: pairs with the Acquire load above. The last side
                // to finish wakes the other, which may be asleep.
                if shared.finished.fetch_add(1, Ordering::Release) == 1 {
                    shared.bells[1 - self.index].rx_pending();
                }
            }
            if progress {
                continue;
            }
            // Sleep until smoltcp's next timer, a received batch, or room in
            // the send queue; never past the deadline (checked above).
            let delay = self
                .dev
                .poll_sleep(self.iface.poll_delay(t, &self.sockets))
                .map(|d| Duration::from_micros(d.total_micros()));
            let cap = shared.deadline.saturating_duration_since(now) + Duration::from_millis(1);
            let wait = delay.unwrap_or(QUEUE_FULL_RECHECK).min(cap);
            self.dev.doorbell().notifier().wait(Some(wait));
        }
    }
}

/// What the poll threads and the controller share.
struct Shared<'a> {
    epoch: Instant,
    deadline: Instant,
    finished: AtomicUsize,
    failed: AtomicBool,
    /// Bytes received so far over every flow: the controller's clock.
    received: AtomicU64,
    bells: [&'a Bell; 2],
}

/// What the controller does to the NICs during a run, at points of the
/// transfer's progress (bytes received), never at times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Meddle {
    /// Nothing.
    None,
    /// Switch each NIC's mode, in turn, through every mode, `n` times over
    /// the transfer.
    Switch(u32),
    /// Bring one NIC down and up again (em0, em1, em0, ...), `n` times.
    UpDown(u32),
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// Bytes every flow carried, together.
    pub bytes: u64,
    /// From the start of the transfer until both sides were done.
    pub elapsed: Duration,
    /// The process's CPU time over the run (every thread: the poll loops,
    /// the drivers' interrupts and tasks, and a simulated device's wire).
    pub cpu: Option<Duration>,
    /// Each side's adapter counters.
    pub dev: [DeviceStats; 2],
    /// Mode switches done.
    pub switches: u32,
    /// Up/down cycles done.
    pub cycles: u32,
    /// Frames lost to a NIC being down (see [`Nic::attach`]).
    pub lost_down: u64,
    /// Whether each poll thread ran pinned to a CPU of its own.
    pub pinned: bool,
}

impl Report {
    /// Goodput: the flows' bytes over the run's time.
    pub fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }

    /// CPU time per MB (10^6 bytes) carried, in milliseconds.
    pub fn cpu_ms_per_mb(&self) -> Option<f64> {
        self.cpu
            .map(|c| c.as_secs_f64() * 1e3 / (self.bytes as f64 / 1e6))
    }
}

/// The bulk flow (em0 to em1, `bulk` bytes) and four flows of `small`
/// bytes at once, two each way.
pub fn flows(bulk: u64, small: u64) -> Vec<Flow> {
    let mut flows = vec![Flow {
        from: 0,
        port: 5000,
        bytes: bulk,
    }];
    for (i, from) in [0, 1, 1, 0].into_iter().enumerate() {
        flows.push(Flow {
            from,
            port: 6000 + i as u16,
            bytes: small,
        });
    }
    flows
}

/// Runs `flows` between `nics` (joined by the caller: a cable, a hub),
/// with `meddle` done to them meanwhile, within `limit`; checks every flow
/// end to end. The caller detaches the NICs and checks their pools.
///
/// # Errors
///
/// What went wrong: a reset connection, a wrong byte, a missed deadline, a
/// failed mode switch or init.
pub fn run<H: Hardware<Pool = Pool, Kernel = StdKernel>>(
    nics: &[Nic<H>; 2],
    flows: &[Flow],
    meddle: Meddle,
    limit: Duration,
) -> Result<Report, String> {
    let total: u64 = flows.iter().map(|f| f.bytes).sum();
    let cpu_start = process_cpu_time();
    let epoch = Instant::now();
    let shared = Shared {
        epoch,
        deadline: epoch + limit,
        finished: AtomicUsize::new(0),
        failed: AtomicBool::new(false),
        received: AtomicU64::new(0),
        bells: [&nics[0].stack.bell, &nics[1].stack.bell],
    };
    let mut sides = [
        Side::new(0, &nics[0], flows, epoch),
        Side::new(1, &nics[1], flows, epoch),
    ];
    let (mut switches, mut cycles) = (0, 0);
    let mut meddled: Result<(), String> = Ok(());
    // Each interface polled on a CPU of its own where the process may use
    // two (side i on the i-th allowed CPU); elsewhere the threads float.
    let cpus = allowed_cpus().unwrap_or_default();
    let pinned = AtomicUsize::new(0);
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let polls: Vec<_> = sides
            .iter_mut()
            .map(|side| {
                let (shared, cpus, pinned) = (&shared, &cpus, &pinned);
                s.spawn(move || {
                    if cpus.len() >= 2 && pin_to(cpus[side.index]).is_ok() {
                        pinned.fetch_add(1, Ordering::Relaxed);
                    }
                    let r = side.run(flows, shared);
                    if r.is_err() {
                        shared.failed.store(true, Ordering::Relaxed);
                        for b in shared.bells {
                            b.rx_pending();
                        }
                    }
                    r
                })
            })
            .collect();
        // The controller: acts at progress points, waits for them.
        let points = match meddle {
            Meddle::None => 0,
            Meddle::Switch(n) | Meddle::UpDown(n) => n,
        };
        for k in 1..=points {
            let at = total * u64::from(k) / (u64::from(points) + 1);
            while shared.received.load(Ordering::Relaxed) < at
                && shared.finished.load(Ordering::Acquire) < 2
                && !shared.failed.load(Ordering::Relaxed)
                && Instant::now() < shared.deadline
            {
                thread::sleep(Duration::from_millis(1));
            }
            if shared.finished.load(Ordering::Acquire) == 2 || shared.failed.load(Ordering::Relaxed)
            {
                break;
            }
            let nic = &nics[k as usize % 2];
            match meddle {
                Meddle::None => {}
                Meddle::Switch(_) => {
                    let next = Mode::ALL[(k as usize / 2 + 1) % Mode::ALL.len()];
                    if let Err(e) = nic.em.set_mode(next) {
                        meddled = Err(format!("set_mode({next}): {e}"));
                        shared.failed.store(true, Ordering::Relaxed);
                        break;
                    }
                    switches += 1;
                }
                Meddle::UpDown(_) => {
                    // Down until a frame was lost: one the peer sent that
                    // met the disabled receiver, or one this NIC's stack
                    // sent that the driver refused (whichever side has
                    // data to send; the other may only be acknowledging).
                    let before = nic.lost_down();
                    nic.em.down();
                    while nic.lost_down() == before
                        && Instant::now() < shared.deadline
                        && shared.finished.load(Ordering::Acquire) < 2
                    {
                        thread::sleep(Duration::from_millis(1));
                    }
                    if let Err(e) = nic.em.up() {
                        meddled = Err(format!("up: {e}"));
                        shared.failed.store(true, Ordering::Relaxed);
                        break;
                    }
                    cycles += 1;
                }
            }
        }
        polls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = epoch.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_start)
        .map(|(now, start)| now.saturating_sub(start));
    meddled?;
    if results.iter().any(Result::is_err) {
        return Err(format!("{meddle:?}: {results:?}"));
    }
    // End to end: each flow's sender and receiver saw the same bytes.
    for (i, f) in flows.iter().enumerate() {
        let end = |side: usize, sender: bool| {
            sides[side]
                .ends()
                .into_iter()
                .find(|e| e.0 == i && e.1 == sender)
                .unwrap()
                .2
        };
        let (sent, got) = (end(f.from, true), end(1 - f.from, false));
        if (sent.bytes, got.bytes) != (f.bytes, f.bytes) {
            return Err(format!(
                "flow {i}: {} bytes sent, {} received, {} carried",
                sent.bytes, got.bytes, f.bytes
            ));
        }
        if sent.hash != got.hash {
            return Err(format!("flow {i}: hashes differ"));
        }
        if !(sent.done && got.done) {
            return Err(format!("flow {i} not finished"));
        }
    }
    for side in &sides {
        if side.dev.reserved() != 0 {
            return Err("a send queue slot promised to no token".into());
        }
    }
    Ok(Report {
        bytes: total,
        elapsed,
        cpu,
        pinned: pinned.into_inner() == 2,
        dev: [sides[0].dev.stats(), sides[1].dev.stats()],
        switches,
        cycles,
        lost_down: nics.iter().map(Nic::lost_down).sum(),
    })
}

/// What [`run_sim`] adds to a [`Report`]: each simulated device's counters.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// The transfer.
    pub tcp: Report,
    /// em0's and em1's simulated devices (frames missed for want of a
    /// descriptor, dropped at a disabled receiver...).
    pub devices: [mpsafe_em_sim::DeviceStats; 2],
}

/// Runs `flows` between two simulated 8254x devices joined by a cable
/// ([`Device::connect`](mpsafe_em_sim::Device::connect)), each with its
/// own heap-backed pool (frames carry real bytes, copied across the cable)
/// and driver, both starting in `mode`; then detaches both and checks that
/// every buffer of both pools is back.
///
/// # Errors
///
/// A failed run (see [`run`]), or a buffer missing from a pool.
pub fn run_sim(
    mode: Mode,
    flows: &[Flow],
    meddle: Meddle,
    limit: Duration,
) -> Result<SimReport, String> {
    use mpsafe_em_sim::{Device as SimDevice, DeviceConfig, WireRate};
    let nic = |index: usize| -> Result<(Arc<SimDevice>, Nic<SimDevice>), String> {
        let cfg = DeviceConfig {
            wire: WireRate::Off,
            frame_size: 1514,
            ..DeviceConfig::default()
        };
        let dev = SimDevice::new(cfg, Pool::with_heap(2048, 2048)).map_err(|e| e.to_string())?;
        let d = Arc::clone(&dev);
        let nic = Nic::attach(
            Arc::clone(&dev),
            index,
            mode,
            Box::new(move || d.stats().link_dropped),
        )?;
        Ok((dev, nic))
    };
    let (dev0, nic0) = nic(0)?;
    let (dev1, nic1) = nic(1)?;
    SimDevice::connect(&dev0, &dev1);
    let nics = [nic0, nic1];
    let result = run(&nics, flows, meddle, limit);
    let devices = [dev0.stats(), dev1.stats()];
    let [nic0, nic1] = nics;
    let mut lost = Vec::new();
    for (i, (nic, dev)) in [(nic0, dev0), (nic1, dev1)].into_iter().enumerate() {
        let pool = nic.detach();
        dev.shutdown();
        let st = pool.stats();
        if (st.in_use(), st.leaked, st.dma_errors) != (0, 0, 0) {
            lost.push(format!("em{i}: buffers lost: {st}"));
        }
    }
    match (result, lost.is_empty()) {
        (Ok(tcp), true) => Ok(SimReport { tcp, devices }),
        (Ok(_), false) => Err(lost.join("; ")),
        (Err(e), _) => Err(format!("{e}; {}", lost.join("; "))),
    }
}
