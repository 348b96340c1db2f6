//! Two adapters joined by an in-memory cable, each under its own smoltcp
//! `Interface` polled on its own thread.
//!
//! Side X's send queue is an `IfQueue` whose start routine plays a NIC's
//! transmit path: it moves frames into a bounded tx ring (the "wire") and
//! marks the queue `oactive` when the ring is full. A wire thread plays the
//! NIC's transmitter and tx completion: it takes frames off the ring, calls
//! `restart_if_oactive`, loses a few frames on purpose (deterministically,
//! so TCP's recovery always runs) and hands the rest as a batch to the
//! other side's input queue through its doorbell, whose drop mark drops a
//! whole batch when that side's stack falls behind (OpenBSD's `ifiq`). Every
//! buffer comes from one `VecPool`, and every one is back at the end.

#![allow(dead_code)] // each test file uses a part

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpsafe_ifqueue::{
    Config as IfqConfig, DefaultLock, Fifo, IfInputQueue, IfQueue, InputConfig, Pressure,
    SendQueue, Start, TaskOwner,
};
use mpsafe_smoltcp::{
    Buffers, Config, Device, DeviceStats, Doorbell, Notify, Signal, VecPool, WakeOnStart,
};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

pub(crate) type Frame = Vec<u8>;

/// A NIC's transmit path: the tx ring the start routine fills.
pub(crate) struct Nic {
    ring: Mutex<VecDeque<Frame>>,
    ring_size: usize,
    /// Wakes this NIC's wire thread.
    wire: Signal,
    /// Times the start routine found the ring full and set `oactive`.
    pub(crate) oactive_sets: AtomicU64,
}

impl Start<Fifo<Frame>, DefaultLock> for Nic {
    fn start(&self, q: &SendQueue<Fifo<Frame>>, _owner: &TaskOwner<'_>) {
        let mut moved = false;
        {
            let mut ring = self.ring.lock().unwrap();
            loop {
                if ring.len() >= self.ring_size {
                    // Set under the ring lock: completion frees slots only
                    // under it, so it sees the flag after freeing.
                    if q.set_oactive_unless(|| ring.len() < self.ring_size) {
                        self.oactive_sets.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
                match q.dequeue() {
                    Some(f) => {
                        ring.push_back(f);
                        moved = true;
                    }
                    None => break,
                }
            }
        }
        if moved {
            self.wire.notify();
        }
    }
}

pub(crate) type Bell = Doorbell<Signal>;
pub(crate) type Txq = IfQueue<Fifo<Frame>, WakeOnStart<Nic, Arc<Bell>>>;
pub(crate) type Rxq = IfInputQueue<Frame>;
pub(crate) type Dev = Device<Arc<Txq>, Arc<Rxq>, Arc<VecPool>, Arc<Bell>>;

/// The driver-side objects of one NIC.
pub(crate) struct Port {
    pub(crate) txq: Arc<Txq>,
    pub(crate) rxq: Arc<Rxq>,
    pub(crate) bell: Arc<Bell>,
}

/// How the cable is built.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CableConfig {
    pub(crate) send_queue: usize,
    pub(crate) tx_ring: usize,
    pub(crate) input: InputConfig,
    /// Frames the wire loses, per 10,000 (after the first 64, so ARP and
    /// the handshakes go through quickly), at pseudo-random places; with
    /// any loss at all, frame 100 is always lost too, so a short run (the
    /// sanitizer's scaled-down one) still makes TCP recover.
    pub(crate) loss_per_10k: u64,
    pub(crate) pool: usize,
    /// The device wrapper drops one token in this many unconsumed, of each
    /// kind, from the 10th on (0: none). A receive pair dropped loses its
    /// frame, as a stack that gives up on a packet does; a transmit token
    /// dropped loses nothing.
    pub(crate) drop_token_every: u64,
}

impl Default for CableConfig {
    fn default() -> Self {
        Self {
            send_queue: 64,
            tx_ring: 32,
            input: InputConfig::new(96, 192),
            loss_per_10k: 20,
            pool: 2048,
            drop_token_every: 0,
        }
    }
}

impl Port {
    pub(crate) fn new(cfg: &CableConfig) -> Self {
        let bell = Arc::new(Doorbell::new(Signal::new()));
        let nic = Nic {
            ring: Mutex::new(VecDeque::new()),
            ring_size: cfg.tx_ring,
            wire: Signal::new(),
            oactive_sets: AtomicU64::new(0),
        };
        let txq = IfQueue::new(
            Fifo::new(),
            IfqConfig::with_maxlen(cfg.send_queue),
            WakeOnStart::new(nic, bell.clone()),
        )
        .unwrap();
        Self {
            txq: Arc::new(txq),
            rxq: Arc::new(IfInputQueue::new(cfg.input).unwrap()),
            bell,
        }
    }

    pub(crate) fn nic(&self) -> &Nic {
        self.txq.driver().driver()
    }

    pub(crate) fn device(&self, pool: &Arc<VecPool>) -> Dev {
        Device::new(
            self.txq.clone(),
            self.rxq.clone(),
            pool.clone(),
            self.bell.clone(),
            Config::default(),
        )
        .unwrap()
    }
}

/// What a wire thread counted.
#[derive(Default, Debug)]
pub(crate) struct WireStats {
    pub(crate) frames: AtomicU64,
    pub(crate) lost: AtomicU64,
    pub(crate) batches_dropped: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) pressured: AtomicU64,
    pub(crate) restarts: AtomicU64,
}

/// A 64-bit mixer (splitmix64's finaliser): deterministic "randomness".
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The NIC transmitter of `from` and the receiver of `to`: until `stop`.
pub(crate) fn wire(
    from: &Port,
    to: &Port,
    pool: &VecPool,
    cfg: &CableConfig,
    salt: u64,
    stop: &AtomicBool,
    stats: &WireStats,
) {
    let nic = from.nic();
    let mut batch: Vec<Frame> = Vec::new();
    // Frames this wire carried so far: the loss pattern's clock.
    let mut n: u64 = 0;
    loop {
        {
            let mut ring = nic.ring.lock().unwrap();
            let k = ring.len().min(32);
            batch.extend(ring.drain(..k));
        }
        if batch.is_empty() {
            // Acquire: pairs with the Release store of `stop` after the
            // poll threads finished.
            if stop.load(Ordering::Acquire) {
                return;
            }
            // Woken by the start routine that fills the ring, or by the
            // end of the run (which sets `stop` first).
            nic.wire.wait(None);
            continue;
        }
        // Tx completion: ring slots are free, restart a stalled queue.
        if from.txq.restart_if_oactive() {
            stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
        // The wire loses a few frames.
        let mut kept = Vec::with_capacity(batch.len());
        stats
            .frames
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for f in batch.drain(..) {
            n += 1;
            let lose = cfg.loss_per_10k > 0
                && n > 64
                && (n == 100 || mix(n ^ salt) % 10_000 < cfg.loss_per_10k);
            if lose {
                stats.lost.fetch_add(1, Ordering::Relaxed);
                pool.free(f);
            } else {
                kept.push(f);
            }
        }
        let len = kept.len() as u64;
        match to.bell.input(&to.rxq, &mut kept) {
            Pressure::Dropped => {
                stats.batches_dropped.fetch_add(1, Ordering::Relaxed);
                stats.frames_dropped.fetch_add(len, Ordering::Relaxed);
                for f in kept.drain(..) {
                    pool.free(f);
                }
            }
            Pressure::High => {
                stats.pressured.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        batch = kept;
    }
}

/// Bytes of flow `seed` at stream position `pos` onward, into `out`.
pub(crate) fn pattern(seed: u64, pos: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let p = pos + i as u64;
        *b = mix(seed ^ (p >> 3)).to_le_bytes()[(p & 7) as usize];
    }
}

/// FNV-1a, 64-bit, running.
pub(crate) fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
pub(crate) const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// One TCP connection of a run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Flow {
    /// The side that sends (0 or 1); the other listens and receives.
    pub(crate) from: usize,
    pub(crate) port: u16,
    pub(crate) bytes: u64,
}

/// What each end of a flow saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct End {
    pub(crate) bytes: u64,
    pub(crate) hash: u64,
    pub(crate) done: bool,
}

enum Role {
    Sender {
        handle: SocketHandle,
        flow: usize,
        sent: u64,
        hash: u64,
        closed: bool,
        done: bool,
    },
    Receiver {
        handle: SocketHandle,
        flow: usize,
        got: u64,
        hash: u64,
        done: bool,
    },
}

/// A device that drops some of the tokens its inner device hands out
/// before smoltcp sees them, then hands out the next ones.
struct Chaos<'d> {
    dev: &'d mut Dev,
    every: u64,
    /// Receive and transmit requests so far.
    clocks: &'d mut [u64; 2],
}

impl Chaos<'_> {
    /// Whether request number `clocks[kind]` (counted from 1) is one to drop.
    fn roll(&mut self, kind: usize) -> bool {
        self.clocks[kind] += 1;
        let k = self.clocks[kind];
        k >= 10 && (k - 10).is_multiple_of(self.every)
    }
}

impl smoltcp::phy::Device for Chaos<'_> {
    type RxToken<'a>
        = <Dev as smoltcp::phy::Device>::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = <Dev as smoltcp::phy::Device>::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, t: SmolInstant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.roll(0) {
            drop(self.dev.receive(t));
        }
        self.dev.receive(t)
    }

    fn transmit(&mut self, t: SmolInstant) -> Option<Self::TxToken<'_>> {
        if self.roll(1) {
            drop(self.dev.transmit(t));
        }
        self.dev.transmit(t)
    }

    fn capabilities(&self) -> smoltcp::phy::DeviceCapabilities {
        self.dev.capabilities()
    }
}

pub(crate) struct Side {
    pub(crate) dev: Dev,
    drop_token_every: u64,
    chaos_clocks: [u64; 2],
    pub(crate) iface: Interface,
    pub(crate) sockets: SocketSet<'static>,
    roles: Vec<Role>,
    index: usize,
}

fn addr(side: usize) -> IpAddress {
    IpAddress::v4(10, 0, 0, side as u8 + 1)
}

fn smol_now(epoch: Instant) -> SmolInstant {
    SmolInstant::from_micros(epoch.elapsed().as_micros() as i64)
}

impl Side {
    pub(crate) fn new(
        index: usize,
        port: &Port,
        pool: &Arc<VecPool>,
        flows: &[Flow],
        epoch: Instant,
    ) -> Self {
        let mut dev = port.device(pool);
        let mut cfg = IfaceConfig::new(EthernetAddress([2, 0, 0, 0, 0, index as u8 + 1]).into());
        cfg.random_seed = 0x5eed + index as u64;
        let mut iface = Interface::new(cfg, &mut dev, smol_now(epoch));
        iface.update_ip_addrs(|a| a.push(IpCidr::new(addr(index), 24)).unwrap());
        let mut sockets = SocketSet::new(Vec::new());
        let mut roles = Vec::new();
        for (i, f) in flows.iter().enumerate() {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 256 * 1024]),
                tcp::SocketBuffer::new(vec![0; 256 * 1024]),
            );
            if f.from == index {
                s.connect(iface.context(), (addr(1 - index), f.port), 49152 + i as u16)
                    .unwrap();
                roles.push(Role::Sender {
                    handle: sockets.add(s),
                    flow: i,
                    sent: 0,
                    hash: FNV_START,
                    closed: false,
                    done: false,
                });
            } else {
                s.listen(f.port).unwrap();
                roles.push(Role::Receiver {
                    handle: sockets.add(s),
                    flow: i,
                    got: 0,
                    hash: FNV_START,
                    done: false,
                });
            }
        }
        Self {
            dev,
            drop_token_every: 0,
            chaos_clocks: [0; 2],
            iface,
            sockets,
            roles,
            index,
        }
    }

    /// Moves data between the application and the sockets; returns whether
    /// anything moved, and fails on a reset or wrong byte.
    fn step(&mut self, flows: &[Flow]) -> Result<bool, String> {
        let mut progress = false;
        let mut chunk = [0u8; 4096];
        for role in &mut self.roles {
            match role {
                Role::Sender {
                    handle,
                    flow,
                    sent,
                    hash,
                    closed,
                    done,
                } => {
                    let total = flows[*flow].bytes;
                    let s = self.sockets.get_mut::<tcp::Socket>(*handle);
                    while *sent < total && s.can_send() {
                        let want = ((total - *sent) as usize).min(chunk.len());
                        pattern(*flow as u64, *sent, &mut chunk[..want]);
                        let n = s
                            .send_slice(&chunk[..want])
                            .map_err(|e| format!("flow {flow}: send: {e:?}"))?;
                        if n == 0 {
                            break;
                        }
                        *hash = fnv(*hash, &chunk[..n]);
                        *sent += n as u64;
                        progress = true;
                    }
                    if *sent == total && !*closed {
                        s.close();
                        *closed = true;
                        progress = true;
                    }
                    match s.state() {
                        // Our FIN was acknowledged: every byte before it was.
                        tcp::State::FinWait2 | tcp::State::TimeWait if *closed && !*done => {
                            *done = true;
                            progress = true;
                        }
                        tcp::State::Closed if !*done => {
                            return Err(format!(
                                "flow {flow}: sender's connection closed after {sent} bytes"
                            ));
                        }
                        _ => {}
                    }
                }
                Role::Receiver {
                    handle,
                    flow,
                    got,
                    hash,
                    done,
                } => {
                    let total = flows[*flow].bytes;
                    let s = self.sockets.get_mut::<tcp::Socket>(*handle);
                    while s.can_recv() {
                        let pos = *got;
                        let n = s
                            .recv(|buf| {
                                let mut expect = vec![0u8; buf.len()];
                                pattern(*flow as u64, pos, &mut expect);
                                (buf.len(), (buf == &expect[..], fnv(*hash, buf), buf.len()))
                            })
                            .map_err(|e| format!("flow {flow}: recv: {e:?}"))?;
                        if !n.0 {
                            return Err(format!("flow {flow}: wrong bytes at stream offset {pos}"));
                        }
                        *hash = n.1;
                        *got += n.2 as u64;
                        if *got > total {
                            return Err(format!("flow {flow}: {got} bytes received, {total} sent"));
                        }
                        progress = true;
                    }
                    if !*done && *got == total && !s.may_recv() && s.state() != tcp::State::Listen {
                        s.close();
                        *done = true;
                        progress = true;
                    }
                    if !*done && s.state() == tcp::State::Closed {
                        return Err(format!(
                            "flow {flow}: receiver's connection closed after {got} bytes"
                        ));
                    }
                }
            }
        }
        Ok(progress)
    }

    fn all_done(&self) -> bool {
        self.roles.iter().all(|r| match r {
            Role::Sender { done, .. } | Role::Receiver { done, .. } => *done,
        })
    }

    fn ends(&self) -> Vec<(usize, bool, End)> {
        self.roles
            .iter()
            .map(|r| match r {
                Role::Sender {
                    flow,
                    sent,
                    hash,
                    done,
                    ..
                } => (
                    *flow,
                    true,
                    End {
                        bytes: *sent,
                        hash: *hash,
                        done: *done,
                    },
                ),
                Role::Receiver {
                    flow,
                    got,
                    hash,
                    done,
                    ..
                } => (
                    *flow,
                    false,
                    End {
                        bytes: *got,
                        hash: *hash,
                        done: *done,
                    },
                ),
            })
            .collect()
    }

    /// Polls until both sides are done (`finished` reaches 2) or the
    /// deadline passes.
    fn run(
        &mut self,
        flows: &[Flow],
        epoch: Instant,
        deadline: Instant,
        finished: &AtomicUsize,
        failed: &AtomicBool,
        peer: &Bell,
    ) -> Result<(), String> {
        let mut counted = false;
        loop {
            // Acquire: pairs with the other side's Release increment.
            if finished.load(Ordering::Acquire) == 2 {
                return Ok(());
            }
            if failed.load(Ordering::Relaxed) {
                return Err("the other side failed".into());
            }
            let now = Instant::now();
            if now > deadline {
                return Err(format!(
                    "side {}: deadline passed; ends {:?}",
                    self.index,
                    self.ends()
                ));
            }
            let t = smol_now(epoch);
            if self.drop_token_every > 0 {
                let mut chaos = Chaos {
                    dev: &mut self.dev,
                    every: self.drop_token_every,
                    clocks: &mut self.chaos_clocks,
                };
                self.iface.poll(t, &mut chaos, &mut self.sockets);
            } else {
                self.iface.poll(t, &mut self.dev, &mut self.sockets);
            }
            let progress = self.step(flows)?;
            if !counted && self.all_done() {
                counted = true;
                // Release: pairs with the Acquire load above. The last side
                // to finish wakes the other, which may be asleep.
                if finished.fetch_add(1, Ordering::Release) == 1 {
                    peer.rx_pending();
                }
            }
            if progress {
                continue;
            }
            // Sleep until smoltcp's next timer, a received batch, or room in
            // the send queue (`poll_sleep`: smoltcp's zero delay while the
            // queue is full becomes "until the doorbell"); never past the
            // deadline (checked above).
            let delay = self
                .dev
                .poll_sleep(self.iface.poll_delay(t, &self.sockets))
                .map(|d| Duration::from_micros(d.total_micros()));
            let cap = deadline.saturating_duration_since(now) + Duration::from_millis(1);
            let wait = delay.map_or(cap, |d| d.min(cap));
            self.dev.doorbell().notifier().wait(Some(wait));
        }
    }
}

/// What a run did.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) elapsed: Duration,
    pub(crate) bytes: u64,
    pub(crate) dev: [DeviceStats; 2],
    pub(crate) wire: [WireStats; 2],
    pub(crate) oactive_sets: [u64; 2],
    pub(crate) qdrops: [u64; 2],
}

impl Report {
    pub(crate) fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Runs `flows` over a cable built with `cfg`, within `limit`; checks every
/// flow's bytes end to end and that every buffer is back in the pool.
pub(crate) fn run(flows: &[Flow], cfg: CableConfig, limit: Duration) -> Report {
    let pool = Arc::new(VecPool::new(cfg.pool, 1514).unwrap());
    let ports = [Port::new(&cfg), Port::new(&cfg)];
    let epoch = Instant::now();
    let deadline = epoch + limit;
    let mut sides = [
        Side::new(0, &ports[0], &pool, flows, epoch),
        Side::new(1, &ports[1], &pool, flows, epoch),
    ];
    for side in &mut sides {
        side.drop_token_every = cfg.drop_token_every;
    }
    let finished = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let wire_stats = [WireStats::default(), WireStats::default()];
    let start = Instant::now();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let wires: Vec<_> = (0..2)
            .map(|i| {
                let (from, to) = (&ports[i], &ports[1 - i]);
                let (pool, stop, stats, cfg) = (&*pool, &stop, &wire_stats[i], &cfg);
                s.spawn(move || wire(from, to, pool, cfg, 0x1000 * (i as u64 + 1), stop, stats))
            })
            .collect();
        let polls: Vec<_> = sides
            .iter_mut()
            .map(|side| {
                let (finished, failed, ports) = (&finished, &failed, &ports);
                s.spawn(move || {
                    let peer = &ports[1 - side.index].bell;
                    let r = side.run(flows, epoch, deadline, finished, failed, peer);
                    if r.is_err() {
                        failed.store(true, Ordering::Relaxed);
                        // Wake the other poll loop to see it.
                        for p in ports {
                            p.bell.rx_pending();
                        }
                    }
                    r
                })
            })
            .collect();
        let results: Vec<_> = polls.into_iter().map(|h| h.join().unwrap()).collect();
        // Release: pairs with the wire threads' Acquire load.
        stop.store(true, Ordering::Release);
        for p in &ports {
            p.nic().wire.notify();
        }
        for w in wires {
            w.join().unwrap();
        }
        results
    });
    let elapsed = start.elapsed();
    for r in &results {
        if let Err(e) = r {
            panic!(
                "{e}\nwire 0: {:?}\nwire 1: {:?}\ndev 0: {:?}\ndev 1: {:?}",
                wire_stats[0],
                wire_stats[1],
                sides[0].dev.stats(),
                sides[1].dev.stats()
            );
        }
    }
    // End to end: each flow's sender and receiver saw the same bytes.
    let mut total = 0;
    for (i, f) in flows.iter().enumerate() {
        let sent = sides[f.from]
            .ends()
            .into_iter()
            .find(|e| e.0 == i && e.1)
            .unwrap()
            .2;
        let got = sides[1 - f.from]
            .ends()
            .into_iter()
            .find(|e| e.0 == i && !e.1)
            .unwrap()
            .2;
        assert_eq!(
            (sent.bytes, got.bytes),
            (f.bytes, f.bytes),
            "flow {i}: byte counts"
        );
        assert_eq!(sent.hash, got.hash, "flow {i}: hashes differ");
        assert!(sent.done && got.done, "flow {i} not finished");
        total += f.bytes;
    }
    let report = Report {
        elapsed,
        bytes: total,
        dev: [sides[0].dev.stats(), sides[1].dev.stats()],
        oactive_sets: [
            ports[0].nic().oactive_sets.load(Ordering::Relaxed),
            ports[1].nic().oactive_sets.load(Ordering::Relaxed),
        ],
        qdrops: [
            ports[0].txq.counters().qdrops,
            ports[1].txq.counters().qdrops,
        ],
        wire: wire_stats,
    };
    // Nothing lost: free everything still somewhere, then count the pool.
    for side in &sides {
        assert_eq!(side.dev.reserved(), 0, "a slot promised to no token");
    }
    drop(sides); // frees what the devices took and never handed out
    for p in &ports {
        p.txq.set_running(false);
        p.txq.barrier().unwrap();
        for f in p.txq.purge() {
            pool.free(f);
        }
        for f in p.rxq.purge() {
            pool.free(f);
        }
        for f in p.nic().ring.lock().unwrap().drain(..) {
            pool.free(f);
        }
    }
    let st = pool.stats();
    assert_eq!((st.in_use(), st.bad_frees), (0, 0), "buffers lost: {st:?}");
    report
}

/// `n` scaled by `MPSAFE_STRESS_SCALE` (percent, default 100), as the
/// other crates' stress tests take it: CI's sanitizer run sets 10.
pub(crate) fn scale(n: u64) -> u64 {
    let percent = std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(100);
    (n * percent / 100).max(1)
}
