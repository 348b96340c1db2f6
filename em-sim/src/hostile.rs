//! A hostile device for testing the driver against untrusted hardware
//! (issue 12, "the em device as untrusted input").
//!
//! [`Hostile`] implements [`Hardware`] with no thread of its own: a driver
//! of it does only what the caller makes happen, so a run is a pure function
//! of its input. [`run`] drives one [`Em`] with a stream of choices, mixing
//! what the device does (random write-backs: length, status, errors and
//! buffer address, on the next slot or any slot of the ring memory; DD on
//! transmit slots it was never given; head registers anywhere; random
//! interrupt causes) with what the driver is asked to do (transmit, down and
//! up, resize, switch mode), and checks after it that the driver did not
//! let a bad frame through and lost nothing. A panic anywhere is a finding.
//!
//! The choices come from a seeded generator (`tests/fuzz_device.rs`) or
//! from a fuzzer's bytes (`fuzz/fuzz_targets/em_device.rs`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use crate::IntrLine;
use crate::StdKernel;
use crate::desc::{DescRing, RXD_STAT_DD, TXD_STAT_DD};
use crate::hw::{Hardware, IntrHandler, Reg, Regs};
use crate::pool::{Mbuf, Pool};
use crate::regs::{ICR_RXO, ICR_RXT0, ICR_TXDW};
use crate::{Em, EmConfig, EmError, EmStats, Mode, Stack};
use crate::{KernelLock, Path};

/// Where the choices come from: each call gives the next one, `None` when
/// the input is used up.
pub struct Choices<'a> {
    next: &'a mut dyn FnMut() -> Option<u64>,
    done: bool,
}

impl<'a> Choices<'a> {
    /// Choices from `next`.
    pub fn new(next: &'a mut dyn FnMut() -> Option<u64>) -> Self {
        Self { next, done: false }
    }

    fn next(&mut self) -> u64 {
        match (self.next)() {
            Some(v) => v,
            None => {
                self.done = true;
                0
            }
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A device that does whatever it is told to, and nothing for itself.
pub struct Hostile {
    pool: Pool,
    line: IntrLine,
    regs: Mutex<HashMap<u32, u32>>,
    icr: AtomicU32,
    rings: Mutex<Vec<(u64, Arc<DescRing>)>>,
}

impl Regs for Hostile {
    fn read(&self, reg: Reg) -> u32 {
        if reg == Reg::ICR {
            return self.icr.swap(0, Ordering::AcqRel);
        }
        self.regs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&reg.0)
            .copied()
            .unwrap_or(0)
    }
    fn write(&self, reg: Reg, value: u32) {
        self.regs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(reg.0, value);
    }
}

impl Hardware for Hostile {
    type Error = Infallible;
    type Kernel = StdKernel;
    type Pool = Pool;
    fn queues(&self) -> usize {
        1
    }
    fn pool(&self) -> &Pool {
        &self.pool
    }
    fn dma_alloc(&self, n: usize) -> Result<(u64, Arc<DescRing>), Infallible> {
        let mut rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        let bus = 0x10_0000 * (rings.len() as u64 + 1);
        let ring = Arc::new(DescRing::new(n));
        rings.push((bus, Arc::clone(&ring)));
        Ok((bus, ring))
    }
    fn intr_establish(&self, h: Weak<dyn IntrHandler>) {
        self.line.establish(h);
    }
    fn intr_disestablish(&self) {
        self.line.disestablish();
    }
    fn intr_barrier(&self) {
        self.line.barrier();
    }
}

impl Hostile {
    /// A device with no rings yet, whose buffers are `pool`'s.
    pub fn new(pool: Pool) -> Self {
        Self {
            pool,
            line: IntrLine::new(),
            regs: Mutex::new(HashMap::new()),
            icr: AtomicU32::new(0),
            rings: Mutex::new(Vec::new()),
        }
    }

    /// The ring whose bus address the driver programmed into `base`.
    fn ring(&self, base: Reg) -> Option<Arc<DescRing>> {
        let bus = u64::from(self.read(base));
        let rings = self.rings.lock().unwrap_or_else(PoisonError::into_inner);
        rings
            .iter()
            .find(|(b, _)| *b == bus)
            .map(|(_, r)| Arc::clone(r))
    }

    /// One hostile act, chosen by `rng`; `cursor` is its own receive and
    /// transmit position.
    pub fn act(&self, rng: &mut Choices<'_>, cursor: &mut (u32, u32)) {
        let (rx, tx) = (self.ring(Reg::rdbal(0)), self.ring(Reg::tdbal(0)));
        match rng.below(8) {
            // A well-behaved receive on the next slot, so traffic flows.
            0 | 1 => {
                let (Some(rx), n) = (rx, self.read(Reg::rdlen(0)) / 16) else {
                    return;
                };
                if n > 0 && cursor.0 % n != self.read(Reg::rdt(0)) % n {
                    let d = rx.get((cursor.0 % n) as usize);
                    d.rx_complete(60 + rng.below(1455) as u16, 0);
                    cursor.0 = (cursor.0 + 1) % n;
                }
            }
            // Garbage write-back, on the next slot (where the driver looks)
            // or any slot of the ring's memory: random length, status,
            // errors and address.
            2 => {
                let (Some(rx), n) = (rx, self.read(Reg::rdlen(0)) / 16) else {
                    return;
                };
                let slot = if n > 0 && rng.chance(50) {
                    cursor.0 = (cursor.0 + 1) % n;
                    ((cursor.0 + n - 1) % n) as usize
                } else {
                    rng.below(rx.capacity() as u64) as usize
                };
                let len = match rng.below(4) {
                    0 => 0,
                    1 => 2048 + rng.below(65536 - 2048),
                    _ => rng.below(2048),
                };
                let status = rng.below(256)
                    | if rng.chance(70) {
                        u64::from(RXD_STAT_DD)
                    } else {
                        0
                    };
                let errors = if rng.chance(30) { rng.below(256) } else { 0 };
                let addr = if rng.chance(50) {
                    rx.get(slot).rx_addr()
                } else {
                    rng.next()
                };
                rx.get(slot)
                    .device_write(addr, len | status << 32 | errors << 40);
            }
            // Transmit: done in order up to the tail, or DD on any slot.
            3 => {
                let (Some(tx), n) = (tx, self.read(Reg::tdlen(0)) / 16) else {
                    return;
                };
                if n > 0 && rng.chance(60) {
                    while cursor.1 % n != self.read(Reg::tdt(0)) % n {
                        tx.get((cursor.1 % n) as usize).tx_complete();
                        cursor.1 = (cursor.1 + 1) % n;
                    }
                } else {
                    let slot = rng.below(tx.capacity() as u64) as usize;
                    let addr = if rng.chance(50) {
                        tx.get(slot).tx_fetch().0
                    } else {
                        rng.next()
                    };
                    let word = rng.next() | u64::from(TXD_STAT_DD) << 32;
                    tx.get(slot).device_write(addr, word);
                }
            }
            // Head registers anywhere.
            4 => {
                self.write(Reg::rdh(0), rng.next() as u32);
                self.write(Reg::tdh(0), rng.next() as u32);
            }
            // An interrupt with random causes, or the usual ones.
            _ => {
                let causes = if rng.chance(30) {
                    rng.next() as u32
                } else {
                    ICR_RXT0 | ICR_TXDW | ICR_RXO
                };
                self.icr.fetch_or(causes, Ordering::AcqRel);
                self.line.deliver();
            }
        }
    }
}

/// A stack that checks every frame it gets is well formed.
struct Checking {
    pool: Pool,
    packets: AtomicU64,
    malformed: AtomicU64,
}

impl Stack<Mbuf> for Checking {
    fn input(&self, _queue: usize, packets: &mut Vec<Mbuf>) -> bool {
        for m in packets.iter() {
            if m.is_empty() || m.len() > self.pool.buf_size() {
                self.malformed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.packets
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        self.pool.free_all(packets.drain(..));
        false
    }
}

/// Brings `em` down and checks what every run promises: no bad frame
/// reached the stack, every buffer is back (none in use, none leaked), the
/// stack got what the driver counted, and every posted frame completed or
/// was flushed. `what` prefixes the messages. Returns the statistics.
fn down_checked(em: Em<Hostile>, stack: &Checking, what: &str) -> EmStats {
    em.down();
    let st = em.stats();
    assert_eq!(
        stack.malformed.load(Ordering::Relaxed),
        0,
        "{what}the stack got a bad frame"
    );
    assert_eq!(st.pool.in_use(), 0, "{what}{}", st.pool);
    assert_eq!(st.pool.leaked, 0, "{what}{}", st.pool);
    assert_eq!(
        st.rx_packets,
        stack.packets.load(Ordering::Relaxed),
        "{what}the stack got what the driver counted"
    );
    assert_eq!(st.tx_posted, st.tx_completed + st.tx_flushed, "{what}{st}");
    st
}

/// What a [`run`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Steps run before the choices ran out (or `steps`).
    pub steps: u64,
    /// Bad descriptors the driver counted and dropped.
    pub rx_errors: u64,
    /// Frames the stack got.
    pub rx_packets: u64,
}

/// Runs up to `steps` steps chosen by `choices` against one driver on a
/// [`Hostile`] device, then brings it down.
///
/// # Panics
///
/// On any finding: the driver panicked, the stack got a malformed frame, a
/// buffer was lost or leaked, or a counter does not add up.
pub fn run(choices: &mut dyn FnMut() -> Option<u64>, steps: u64) -> Outcome {
    let mut rng = Choices::new(choices);
    let pool = Pool::new(4096 + 1024, 2048);
    let hw = Arc::new(Hostile::new(pool.clone()));
    let stack = Arc::new(Checking {
        pool: pool.clone(),
        packets: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
    });
    let mode = Mode::ALL[rng.below(4) as usize];
    let em = Em::attach(
        Arc::clone(&hw),
        EmConfig::new(mode),
        Arc::new(KernelLock::new()),
        stack.clone(),
    )
    .unwrap();
    em.up().unwrap();
    let mut cursor = (0, 0);
    let mut done = 0;
    while done < steps && !rng.done {
        done += 1;
        match rng.below(100) {
            0 => {
                em.down();
                em.up().unwrap();
                cursor = (0, 0);
            }
            1 => {
                em.set_ring_sizes(80 + 8 * rng.below(60) as u32, 80 + 8 * rng.below(60) as u32)
                    .unwrap();
                cursor = (0, 0);
            }
            2 => em.set_mode(Mode::ALL[rng.below(4) as usize]).unwrap(),
            3..=20 => {
                if let Some(mut m) = pool.alloc() {
                    m.fill(60 + rng.below(1455) as u16, rng.next());
                    if let Err(e) = em.transmit(0, m) {
                        e.into_packet().free();
                    }
                }
            }
            _ => hw.act(&mut rng, &mut cursor),
        }
    }
    let st = down_checked(em, &stack, "");
    Outcome {
        steps: done,
        rx_errors: st.rx_errors,
        rx_packets: st.rx_packets,
    }
}

/// [`run`] with the device on a thread of its own: it acts (random
/// descriptor write-backs, head registers anywhere, and an interrupt on
/// every other act, masked or not: a line that never stops firing) while
/// the driver, concurrently, transmits from one thread, runs `start_locked`
/// under the big lock from another, and switches modes, goes down and up
/// and resizes its rings from a third, for `steps` of those ioctls. `seed`
/// picks every choice; the interleaving is the scheduler's, so a failure
/// names its seed but may need several runs to reproduce.
///
/// # Panics
///
/// On any finding, as [`run`]: a driver panic on any thread, a malformed
/// frame, a buffer lost or leaked, a counter that does not add up.
pub fn run_concurrent(seed: u64, steps: u64) -> Outcome {
    let xorshift = |mut x: u64| {
        x |= 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x)
        }
    };
    let pool = Pool::new(4096 + 1024, 2048);
    let hw = Arc::new(Hostile::new(pool.clone()));
    let stack = Arc::new(Checking {
        pool: pool.clone(),
        packets: AtomicU64::new(0),
        malformed: AtomicU64::new(0),
    });
    let mut ioctl_next = xorshift(seed);
    let mut rng = Choices::new(&mut ioctl_next);
    let em = Em::attach(
        Arc::clone(&hw),
        EmConfig::new(Mode::ALL[rng.below(4) as usize]),
        Arc::new(KernelLock::new()),
        stack.clone(),
    )
    .unwrap();
    em.up().unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let acts = AtomicU64::new(0);
    std::thread::scope(|s| {
        let (em, hw, pool, stop, acts) = (&em, &hw, &pool, &stop, &acts);
        s.spawn(move || {
            let mut next = xorshift(seed ^ 0xdead_beef);
            let mut rng = Choices::new(&mut next);
            let mut cursor = (0, 0);
            while !stop.load(Ordering::Relaxed) {
                hw.act(&mut rng, &mut cursor);
                acts.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        s.spawn(move || {
            let mut tag = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut m) = pool.alloc() {
                    tag += 1;
                    m.fill(60 + (tag % 1455) as u16, tag);
                    if let Err(e) = em.transmit(0, m) {
                        e.into_packet().free();
                    }
                }
                std::thread::yield_now();
            }
        });
        s.spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let k = em.big_lock().lock(Path::Start);
                match em.start_locked(0, &k) {
                    Ok(()) | Err(EmError::WrongMode(_)) => {}
                    Err(e) => panic!("start_locked: {e}"),
                }
                drop(k);
                std::thread::yield_now();
            }
        });
        for _ in 0..steps {
            // Let the device act between two ioctls (a bounded wait: a
            // device thread that died leaves it to the scope's join).
            let seen = acts.load(Ordering::Relaxed);
            for _ in 0..100_000 {
                if acts.load(Ordering::Relaxed) >= seen + 50 {
                    break;
                }
                std::thread::yield_now();
            }
            match rng.below(3) {
                0 => {
                    em.down();
                    em.up().unwrap();
                }
                1 => em
                    .set_ring_sizes(80 + 8 * rng.below(60) as u32, 80 + 8 * rng.below(60) as u32)
                    .unwrap(),
                _ => em.set_mode(Mode::ALL[rng.below(4) as usize]).unwrap(),
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    let st = down_checked(em, &stack, &format!("seed {seed}: "));
    Outcome {
        steps,
        rx_errors: st.rx_errors,
        rx_packets: st.rx_packets,
    }
}
