//! Property test: random enqueue / enqueue_burst / deq_begin+commit / deq_begin+rollback /
//! burst / purge sequences against a reference model (a `Vec` per priority),
//! comparing contents and counters after every step. Seeded and
//! deterministic; a failure prints the seed and the step.
#![cfg(all(not(mpsafe_loom), feature = "alloc"))]

use arrayvec::ArrayVec;
use mpsafe_ifqueue::{
    ArrayFifo, ArrayPriq, Counters, Discipline, Dropped, Fifo, Packet, Priority, Priq, SendQueue,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pkt {
    id: u32,
    prio: u8,
    len: u16,
    mcast: bool,
}

impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        self.len.into()
    }
    fn priority(&self) -> Priority {
        Priority::new(self.prio).unwrap()
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

/// The reference: one `Vec` per priority (a single one for FIFO), and the
/// counters computed the obvious way.
#[derive(Default)]
struct Model {
    priq: bool,
    levels: [Vec<Pkt>; 8],
    maxlen: usize,
    c: Counters,
}

impl Model {
    fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
    fn level(&self, p: &Pkt) -> usize {
        if self.priq { p.prio as usize } else { 0 }
    }
    fn contents(&self) -> Vec<Pkt> {
        self.levels.iter().rev().flatten().cloned().collect()
    }
    fn head_level(&self) -> Option<usize> {
        (0..8).rev().find(|&l| !self.levels[l].is_empty())
    }
    fn enqueue(&mut self, p: Pkt) -> Result<(), Dropped<Pkt>> {
        let mut evicted = None;
        if self.len() >= self.maxlen {
            let below = if self.priq { p.prio as usize } else { 0 };
            match (0..below).find(|&l| !self.levels[l].is_empty()) {
                Some(l) => evicted = Some(self.levels[l].remove(0)),
                None => {
                    self.c.qdrops += 1;
                    return Err(Dropped::Refused(p));
                }
            }
        }
        self.c.packets += 1;
        self.c.bytes += u64::from(p.len);
        self.c.mcasts += u64::from(p.mcast);
        let l = self.level(&p);
        self.levels[l].push(p);
        match evicted {
            Some(old) => {
                self.c.qdrops += 1;
                Err(Dropped::Evicted(old))
            }
            None => Ok(()),
        }
    }
    fn dequeue(&mut self) -> Option<Pkt> {
        let l = self.head_level()?;
        Some(self.levels[l].remove(0))
    }
}

fn run<D>(seed: u64, steps: usize, maxlen: usize, priq: bool, disc: D)
where
    D: Discipline<Packet = Pkt>,
    for<'a> &'a D: Contents,
{
    let q: SendQueue<D> = SendQueue::new(disc, maxlen).unwrap();
    let mut m = Model {
        priq,
        maxlen,
        ..Model::default()
    };
    let mut rng = Rng(seed | 1);
    let mut next_id = 0;
    for step in 0..steps {
        let ctx = format!("seed {seed:#x} step {step} priq {priq} maxlen {maxlen}");
        let mut packet = |rng: &mut Rng| {
            next_id += 1;
            Pkt {
                id: next_id,
                prio: rng.below(8) as u8,
                len: rng.below(1500) as u16 + 1,
                mcast: rng.below(4) == 0,
            }
        };
        match rng.below(100) {
            0..=39 => {
                let p = packet(&mut rng);
                assert_eq!(q.enqueue(p.clone()), m.enqueue(p), "{ctx}: enqueue");
            }
            40..=49 => {
                // A burst: the same outcome as one by one, drops in order.
                let burst: Vec<Pkt> = (0..rng.below(12)).map(|_| packet(&mut rng)).collect();
                let mut dropped = Vec::new();
                let accepted = q.enqueue_burst(burst.clone(), &mut dropped);
                let mut want = Vec::new();
                let mut want_accepted = 0;
                for p in burst {
                    match m.enqueue(p) {
                        Ok(()) => want_accepted += 1,
                        Err(d) => {
                            want_accepted += usize::from(d.offered_was_queued());
                            want.push(d);
                        }
                    }
                }
                assert_eq!(dropped, want, "{ctx}: burst drops");
                assert_eq!(accepted, want_accepted, "{ctx}: burst accepted");
            }
            50..=69 => {
                let got = q.deq_begin().map(|g| g.commit());
                assert_eq!(got, m.dequeue(), "{ctx}: deq_begin+commit");
            }
            70..=84 => {
                // Look at the head, then roll back: nothing changes.
                let head = q.deq_begin().map(|g| (*g).clone());
                let want = m.head_level().map(|l| m.levels[l][0].clone());
                assert_eq!(head, want, "{ctx}: deq_begin+rollback");
            }
            85..=96 => {
                let k = rng.below(6) as usize;
                let mut out = ArrayVec::<Pkt, 4>::new();
                let n = q.dequeue_burst(&mut out, k);
                let want: Vec<_> = (0..k.min(4)).map_while(|_| m.dequeue()).collect();
                assert_eq!(n, want.len(), "{ctx}: burst count");
                assert_eq!(out.as_slice(), want.as_slice(), "{ctx}: burst");
            }
            _ => {
                let got: Vec<_> = q.purge().collect();
                let want = m.contents();
                m.c.qdrops += want.len() as u64;
                m.levels = Default::default();
                assert_eq!(got, want, "{ctx}: purge");
            }
        }
        let l = q.lock();
        assert_eq!(l.len(), m.len(), "{ctx}: len");
        assert_eq!(q.len(), m.len(), "{ctx}: len hint");
        assert_eq!(l.counters(), m.c, "{ctx}: counters");
        assert_eq!(l.discipline().contents(), m.contents(), "{ctx}: contents");
    }
}

/// Reads a discipline's contents in leaving order.
trait Contents {
    fn contents(self) -> Vec<Pkt>;
}
impl Contents for &Fifo<Pkt> {
    fn contents(self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}
impl Contents for &Priq<Pkt> {
    fn contents(self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}

impl<const N: usize> Contents for &ArrayFifo<Pkt, N> {
    fn contents(self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}
impl<const N: usize> Contents for &ArrayPriq<Pkt, N> {
    fn contents(self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}

fn steps() -> usize {
    if cfg!(miri) { 200 } else { 4000 }
}

fn seeds() -> impl Iterator<Item = u64> {
    let n = if cfg!(miri) { 2 } else { 24 };
    (0..n).map(|i| 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(i + 1))
}

#[test]
fn priq_matches_the_model() {
    for (i, seed) in seeds().enumerate() {
        run(seed, steps(), 1 + i % 9, true, Priq::new());
    }
}

#[test]
fn fifo_matches_the_model() {
    for (i, seed) in seeds().enumerate() {
        run(seed, steps(), 1 + i % 9, false, Fifo::new());
    }
}

// The allocation-free forms against the same model, with `maxlen` up to
// their capacity (9 slots: every maxlen the seeds pick, 1..=9).
#[test]
fn array_priq_matches_the_model() {
    for (i, seed) in seeds().enumerate() {
        run(seed, steps(), 1 + i % 9, true, ArrayPriq::<Pkt, 9>::new());
    }
}

#[test]
fn array_fifo_matches_the_model() {
    for (i, seed) in seeds().enumerate() {
        run(seed, steps(), 1 + i % 9, false, ArrayFifo::<Pkt, 9>::new());
    }
}
