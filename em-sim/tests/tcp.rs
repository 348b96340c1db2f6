//! TCP between em0 and em1 on the simulator, through `mpsafe-smoltcp`.
//!
//! Two simulated 8254x devices joined by a cable ([`Device::connect`]),
//! each with its own heap-backed pool (frames carry real bytes, copied
//! across the cable), each driven by its own em driver. Above each driver
//! sits a smoltcp `Interface` on the adapter's `Device`: it transmits
//! through [`Em::transmit`] (room asked with [`Em::send_queue_space`]) and
//! receives from an `IfInputQueue` the driver's [`Stack::input`] fills,
//! whose doorbell also rings on the driver's [`Stack::tx_room`]. Each
//! interface is polled on its own thread.
//!
//! Every flow's bytes are generated from its number and position and
//! checked on arrival (every byte once, in order, with a running hash that
//! must match the sender's); every buffer of both pools is back at the end;
//! each run has a deadline, and a run that misses it fails.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mpsafe_em_sim::{
    Device as SimDevice, DeviceConfig, Em, EmConfig, KernelLock, Mbuf, Mode, Pool, Stack, WireRate,
};
use mpsafe_smoltcp::mpsafe_ifqueue::{Dropped, IfInputQueue, InputConfig, Pressure};
use mpsafe_smoltcp::{Buffers, Config, Device, DeviceStats, Doorbell, Signal, TxQueue};
use smoltcp::iface::{Config as IfaceConfig, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant as SmolInstant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

/// The deadline of each run: a failure, never a sleep.
const LIMIT: Duration = Duration::from_secs(300);

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
struct EmTx<'e> {
    em: &'e Em<SimDevice>,
    q: usize,
}

impl TxQueue for EmTx<'_> {
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
type Dev<'e> = Device<EmTx<'e>, Arc<Rxq>, Arc<EmBuffers>, Arc<Bell>>;

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

/// One NIC: its pool, simulated device, stack and driver.
struct Nic {
    pool: Pool,
    dev: Arc<SimDevice>,
    stack: Arc<AdapterStack>,
    em: Em<SimDevice>,
    buffers: Arc<EmBuffers>,
}

impl Nic {
    fn new(index: usize, mode: Mode) -> Self {
        let pool = Pool::with_heap(2048, 2048);
        let cfg = DeviceConfig {
            wire: WireRate::Off,
            frame_size: 1514,
            ..DeviceConfig::default()
        };
        let dev = SimDevice::new(cfg, pool.clone()).unwrap();
        let bell = Arc::new(Doorbell::new(Signal::new()));
        let stack = Arc::new(AdapterStack {
            rxq: Arc::new(IfInputQueue::new(InputConfig::new(256, 512)).unwrap()),
            bell,
            pool: pool.clone(),
            pressured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let mut ecfg = EmConfig::new(mode);
        ecfg.name = format!("em{index}");
        // A TCP window's worth of descriptors posted from the start: the
        // ring's watermark grows by one per millisecond from `rx_lwm`, and
        // the cable delivers a whole window in one device pass (the
        // simulated wire has no line rate), so from the default of 16 most
        // of each window would be missed for the first seconds.
        ecfg.rx_lwm = 256;
        let em = Em::attach(
            Arc::clone(&dev),
            ecfg,
            Arc::new(KernelLock::new()),
            stack.clone(),
        )
        .unwrap();
        em.init().unwrap();
        Self {
            buffers: Arc::new(EmBuffers(pool.clone())),
            pool,
            dev,
            stack,
            em,
        }
    }

    fn device(&self) -> Dev<'_> {
        Device::new(
            EmTx { em: &self.em, q: 0 },
            self.stack.rxq.clone(),
            self.buffers.clone(),
            self.stack.bell.clone(),
            Config::default(),
        )
        .unwrap()
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
#[derive(Clone, Copy, Debug)]
struct Flow {
    /// The side that sends (0 or 1); the other listens and receives.
    from: usize,
    port: u16,
    bytes: u64,
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
struct Side<'e> {
    index: usize,
    dev: Dev<'e>,
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

impl<'e> Side<'e> {
    fn new(index: usize, nic: &'e Nic, flows: &[Flow], epoch: Instant) -> Self {
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
#[derive(Clone, Copy, Debug)]
enum Meddle {
    /// Nothing.
    None,
    /// Switch each NIC's mode, in turn, through every mode, `n` times over
    /// the transfer.
    Switch(u32),
    /// Bring one NIC down and up again (em0, em1, em0, ...), `n` times.
    UpDown(u32),
}

/// What a run measured.
#[derive(Debug)]
struct Report {
    bytes: u64,
    elapsed: Duration,
    dev: [DeviceStats; 2],
    sim: [mpsafe_em_sim::DeviceStats; 2],
    switches: u32,
    cycles: u32,
    /// Frames lost to a NIC being down: sent to it, or refused by it.
    lost_down: u64,
}

impl Report {
    fn mbit_per_s(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.elapsed.as_secs_f64() / 1e6
    }
}

/// Runs `flows` between two NICs starting in `mode`, with `meddle` done to
/// them meanwhile; checks every flow end to end and every buffer back.
fn run(mode: Mode, flows: &[Flow], meddle: Meddle) -> Report {
    let nics = [Nic::new(0, mode), Nic::new(1, mode)];
    SimDevice::connect(&nics[0].dev, &nics[1].dev);
    let total: u64 = flows.iter().map(|f| f.bytes).sum();
    let epoch = Instant::now();
    let shared = Shared {
        epoch,
        deadline: epoch + LIMIT,
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
    let results: Vec<Result<(), String>> = thread::scope(|s| {
        let polls: Vec<_> = sides
            .iter_mut()
            .map(|side| {
                let shared = &shared;
                s.spawn(move || {
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
                    nic.em.set_mode(next).unwrap();
                    switches += 1;
                }
                Meddle::UpDown(_) => {
                    // Down until a frame was lost: one the peer sent that
                    // met the disabled receiver, or one this NIC's stack
                    // sent that the driver refused (whichever side has
                    // data to send; the other may only be acknowledging).
                    let lost = |nic: &Nic| nic.dev.stats().link_dropped + nic.em.stats().tx_down;
                    let before = lost(nic);
                    nic.em.down();
                    while lost(nic) == before
                        && Instant::now() < shared.deadline
                        && shared.finished.load(Ordering::Acquire) < 2
                    {
                        thread::sleep(Duration::from_millis(1));
                    }
                    nic.em.up().unwrap();
                    cycles += 1;
                }
            }
        }
        polls.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = epoch.elapsed();
    if results.iter().any(Result::is_err) {
        panic!(
            "{mode}, {meddle:?}: {results:?}\nem0: {:?}\nem1: {:?}",
            nics[0].dev.stats(),
            nics[1].dev.stats()
        );
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
        assert_eq!((sent.bytes, got.bytes), (f.bytes, f.bytes), "flow {i}");
        assert_eq!(sent.hash, got.hash, "flow {i}: hashes differ");
        assert!(sent.done && got.done, "flow {i} not finished");
    }
    let report = Report {
        bytes: total,
        elapsed,
        dev: [sides[0].dev.stats(), sides[1].dev.stats()],
        sim: [nics[0].dev.stats(), nics[1].dev.stats()],
        switches,
        cycles,
        lost_down: nics
            .iter()
            .map(|n| n.dev.stats().link_dropped + n.em.stats().tx_down)
            .sum(),
    };
    for side in &sides {
        assert_eq!(side.dev.reserved(), 0, "a slot promised to no token");
    }
    // Nothing lost: the adapters free what they took, the drivers go down
    // (every ring and send queue emptied into the pool), the input queues
    // are purged; then both pools must be whole.
    drop(sides);
    for nic in nics {
        let Nic {
            pool,
            dev,
            stack,
            em,
            buffers,
        } = nic;
        drop(em);
        pool.free_all(stack.rxq.purge());
        drop((stack, buffers));
        dev.shutdown();
        let st = pool.stats();
        assert_eq!(
            (st.in_use(), st.leaked, st.dma_errors),
            (0, 0, 0),
            "{mode}: buffers lost: {st}"
        );
    }
    report
}

fn print(name: &str, mode: Mode, r: &Report) {
    println!(
        "{name} {mode}: {} bytes in {:.3} s = {:.1} Mbit/s; missed {}+{}, link dropped {}+{}, \
         tx queue full {}+{}, tx refused {}+{}, switches {}, up/down cycles {}",
        r.bytes,
        r.elapsed.as_secs_f64(),
        r.mbit_per_s(),
        r.sim[0].missed,
        r.sim[1].missed,
        r.sim[0].link_dropped,
        r.sim[1].link_dropped,
        r.dev[0].tx_queue_full,
        r.dev[1].tx_queue_full,
        r.dev[0].tx_refused,
        r.dev[1].tx_refused,
        r.switches,
        r.cycles,
    );
}

/// `n` scaled by `MPSAFE_STRESS_SCALE` (percent, default 100).
fn scaled(n: u64) -> u64 {
    (n * common::scale() / 100).max(1)
}

/// The bulk flow (em0 to em1, `MPSAFE_EM_TCP_MIB` MiB, default 8) and
/// four smaller concurrent ones, two each way.
fn flows() -> Vec<Flow> {
    let mib = std::env::var("MPSAFE_EM_TCP_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let small = scaled(512 << 10);
    let mut flows = vec![Flow {
        from: 0,
        port: 5000,
        bytes: scaled(mib << 20),
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

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn bulk_and_concurrent_transfers_in_every_mode() {
    common::with_watchdog(LIMIT * 5, || {
        for mode in Mode::ALL {
            let r = run(mode, &flows(), Meddle::None);
            print("tcp", mode, &r);
        }
    });
}

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn transfers_survive_mode_switches_on_both_nics() {
    common::with_watchdog(LIMIT * 2, || {
        for mode in [Mode::BigLock, Mode::Serialized] {
            let r = run(mode, &flows(), Meddle::Switch(12));
            print("tcp switching", mode, &r);
            assert!(r.switches >= 12, "{r:?}");
        }
    });
}

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn transfers_survive_up_down_cycles_of_either_nic() {
    common::with_watchdog(LIMIT * 2, || {
        for mode in [Mode::Mpsafe, Mode::RxUnlocked] {
            let r = run(mode, &flows(), Meddle::UpDown(4));
            print("tcp up/down", mode, &r);
            assert_eq!(r.cycles, 4, "{r:?}");
            // Frames were lost while a NIC was down: TCP recovered.
            assert!(r.lost_down > 0, "{r:?}");
        }
    });
}
