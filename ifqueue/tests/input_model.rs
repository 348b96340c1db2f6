//! Property test of the input queues: random input / take / purge sequences
//! against one reference model, run on [`IfInputQueue`] and on
//! [`ArrayInputQueue`] through the same driver, comparing the pressure, the
//! packets left with the caller, the packets taken, the pending count and
//! the counters after every step. Seeded and deterministic; a failure prints
//! the seed and the step.
#![cfg(all(not(mpsafe_loom), feature = "alloc"))]

extern crate alloc;

use alloc::collections::VecDeque;

use arrayvec::ArrayVec;
use mpsafe_ifqueue::{ArrayInputQueue, IfInputQueue, InputConfig, InputCounters, Packet, Pressure};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pkt {
    id: u32,
    len: u16,
    mcast: bool,
}

impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        self.len.into()
    }
    fn is_multicast(&self) -> bool {
        self.mcast
    }
}

/// xorshift64*: small, seeded, good enough to pick operations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The largest batch the test hands in.
const MAX_BATCH: usize = 11;

/// The reference: a `VecDeque` and OpenBSD's rule written out, plus a room
/// limit (`usize::MAX` for the allocating queue).
struct Model {
    config: InputConfig,
    capacity: usize,
    pending: VecDeque<Pkt>,
    c: InputCounters,
}

impl Model {
    /// The pressure, and what stays with the caller.
    fn input(&mut self, batch: Vec<Pkt>) -> (Pressure, Vec<Pkt>) {
        if batch.is_empty() {
            return (Pressure::Normal, batch);
        }
        let n = batch.len() as u64;
        self.c.packets += n;
        self.c.bytes += batch.iter().map(|p| u64::from(p.len)).sum::<u64>();
        self.c.mcasts += batch.iter().filter(|p| p.mcast).count() as u64;
        let before = self.pending.len();
        if before > self.config.drop || before + batch.len() > self.capacity {
            self.c.qdrops += n;
            return (Pressure::Dropped, batch);
        }
        self.pending.extend(batch);
        let p = if before > self.config.pressure {
            Pressure::High
        } else {
            Pressure::Normal
        };
        (p, Vec::new())
    }
}

/// What the driver needs of an input queue, so one test drives both.
trait InputQueue {
    fn input(&self, batch: Vec<Pkt>) -> (Pressure, Vec<Pkt>);
    /// Everything pending, oldest first.
    fn take_all(&self) -> Vec<Pkt>;
    fn purge(&self) -> Vec<Pkt>;
    fn len(&self) -> usize;
    fn counters(&self) -> InputCounters;
}

impl InputQueue for IfInputQueue<Pkt> {
    fn input(&self, mut batch: Vec<Pkt>) -> (Pressure, Vec<Pkt>) {
        let p = IfInputQueue::input(self, &mut batch);
        (p, batch)
    }
    fn take_all(&self) -> Vec<Pkt> {
        let mut out = VecDeque::new();
        self.take_into(&mut out);
        out.into()
    }
    fn purge(&self) -> Vec<Pkt> {
        IfInputQueue::purge(self).into()
    }
    fn len(&self) -> usize {
        IfInputQueue::len(self)
    }
    fn counters(&self) -> InputCounters {
        IfInputQueue::counters(self)
    }
}

impl<const N: usize> InputQueue for ArrayInputQueue<Pkt, N> {
    fn input(&self, batch: Vec<Pkt>) -> (Pressure, Vec<Pkt>) {
        let mut batch: ArrayVec<Pkt, MAX_BATCH> = batch.into_iter().collect();
        let p = ArrayInputQueue::input(self, &mut batch);
        (p, batch.into_iter().collect())
    }
    fn take_all(&self) -> Vec<Pkt> {
        // In chunks of 4: the bounded take must hand them out in order.
        let mut all = Vec::new();
        loop {
            let mut out = ArrayVec::<Pkt, 4>::new();
            out.push(Pkt {
                id: 0,
                len: 0,
                mcast: false,
            }); // appended after, not overwritten
            let n = self.take_into(&mut out);
            assert_eq!(n, out.len() - 1);
            all.extend(out.into_iter().skip(1));
            if n == 0 {
                return all;
            }
        }
    }
    fn purge(&self) -> Vec<Pkt> {
        ArrayInputQueue::purge(self).collect()
    }
    fn len(&self) -> usize {
        ArrayInputQueue::len(self)
    }
    fn counters(&self) -> InputCounters {
        ArrayInputQueue::counters(self)
    }
}

fn run(seed: u64, steps: usize, config: InputConfig, capacity: usize, q: &impl InputQueue) {
    let mut m = Model {
        config,
        capacity,
        pending: VecDeque::new(),
        c: InputCounters::default(),
    };
    let mut rng = Rng(seed | 1);
    let mut next_id = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed:#x} step {step} {config:?} capacity {capacity}");
        match rng.below(100) {
            0..=69 => {
                let batch: Vec<Pkt> = (0..rng.below(MAX_BATCH as u64 + 1))
                    .map(|_| {
                        next_id += 1;
                        Pkt {
                            id: next_id,
                            len: rng.below(1500) as u16 + 1,
                            mcast: rng.below(4) == 0,
                        }
                    })
                    .collect();
                assert_eq!(q.input(batch.clone()), m.input(batch), "{ctx}: input");
            }
            70..=94 => {
                let want: Vec<_> = m.pending.drain(..).collect();
                assert_eq!(q.take_all(), want, "{ctx}: take");
            }
            _ => {
                let want: Vec<_> = m.pending.drain(..).collect();
                assert_eq!(q.purge(), want, "{ctx}: purge");
            }
        }
        assert_eq!(q.len(), m.pending.len(), "{ctx}: len");
        assert_eq!(q.counters(), m.c, "{ctx}: counters");
    }
}

fn steps() -> usize {
    if cfg!(miri) { 200 } else { 4000 }
}

/// Seeds and marks: pressure 1..=8, drop up to 8 above it (at most 16).
fn cases() -> impl Iterator<Item = (u64, InputConfig)> {
    let n = if cfg!(miri) { 2 } else { 24 };
    (0..n).map(|i| {
        let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1);
        let pressure = 1 + (i as usize) % 8;
        let drop = pressure + (seed >> 7) as usize % 9;
        (seed, InputConfig::new(pressure, drop))
    })
}

#[test]
fn input_queue_matches_the_model() {
    for (seed, config) in cases() {
        let q = IfInputQueue::new(config).unwrap();
        run(seed, steps(), config, usize::MAX, &q);
    }
}

// Room for the highest drop mark (16) plus the largest batch: never full, so
// the same outcomes as the allocating queue, step for step.
#[test]
fn array_input_queue_with_room_matches_the_model() {
    for (seed, config) in cases() {
        let q = ArrayInputQueue::<Pkt, { 16 + MAX_BATCH }>::new(config).unwrap();
        run(seed, steps(), config, usize::MAX, &q);
    }
}

// Too small for some batches: those are dropped whole, as the model says.
#[test]
fn array_input_queue_when_full_matches_the_model() {
    for (seed, config) in cases() {
        let q = ArrayInputQueue::<Pkt, 7>::new(config).unwrap();
        run(seed, steps(), config, 7, &q);
    }
}
