//! `SendQueue` with `Fifo`, `Priq` or their allocation-free forms
//! `ArrayFifo` and `ArrayPriq` (8 slots) against a reference model: enqueue,
//! bursts both ways, transactional dequeue (commit, rollback, the locked
//! forms), purge, `set_maxlen` (including invalid values and shrinking below
//! the current length) and every counter, compared after each operation.
//!
//! The model is the one in `ifqueue/tests/model.rs` (a `Vec` per priority,
//! counters computed the obvious way), plus `set_maxlen`, errors and the
//! fixed forms' capacity (full at `min(maxlen, N)`; `maxlen` ranges on both
//! sides of `N`).

#![no_main]

use arbitrary::Arbitrary;
use arrayvec::ArrayVec;
use libfuzzer_sys::fuzz_target;
use mpsafe_ifqueue::{
    ArrayFifo, ArrayPriq, ConfigError, Counters, Discipline, Dropped, Fifo, MAX_MAXLEN, Packet,
    Priority, Priq, SendQueue,
};

/// Slots of the fixed-capacity disciplines.
const SLOTS: usize = 8;

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
        Priority::new(self.prio).expect("prio < 8")
    }
    fn is_multicast(&self) -> bool {
        self.mcast
    }
}

/// A packet as the fuzzer describes it (the harness numbers them).
#[derive(Arbitrary, Debug, Clone, Copy)]
struct Spec {
    prio: u8,
    len: u16,
    mcast: bool,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Enqueue(Spec),
    EnqueueBurst(Vec<Spec>),
    /// `enqueue_burst` under a held lock.
    EnqueueBurstLocked(Vec<Spec>),
    Dequeue,
    DeqCommit,
    DeqRollback,
    /// `commit_locked`, then another dequeue under the same lock.
    DeqCommitLockedThenDequeue,
    /// `rollback_locked`, then an enqueue under the same lock.
    DeqRollbackLockedThenEnqueue(Spec),
    DequeueBurst(u8),
    Purge,
    SetMaxlen(u16),
    AddErrors(u8),
}

#[derive(Arbitrary, Debug)]
struct Input {
    priq: bool,
    /// `ArrayFifo`/`ArrayPriq` instead of `Fifo`/`Priq`.
    fixed: bool,
    maxlen: u8,
    ops: Vec<Op>,
}

/// The reference: one `Vec` per priority (level 0 only for FIFO).
#[derive(Default)]
struct Model {
    priq: bool,
    levels: [Vec<Pkt>; 8],
    maxlen: usize,
    /// The discipline's own capacity (`usize::MAX` for the allocating ones).
    capacity: usize,
    c: Counters,
}

impl Model {
    fn len(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }
    fn contents(&self) -> Vec<Pkt> {
        self.levels.iter().rev().flatten().cloned().collect()
    }
    fn head(&self) -> Option<&Pkt> {
        self.levels.iter().rev().find_map(|l| l.first())
    }
    fn enqueue(&mut self, p: Pkt) -> Result<(), Dropped<Pkt>> {
        let mut evicted = None;
        if self.len() >= self.maxlen.min(self.capacity) {
            let below = if self.priq { usize::from(p.prio) } else { 0 };
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
        let l = if self.priq { usize::from(p.prio) } else { 0 };
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
        let l = (0..8).rev().find(|&l| !self.levels[l].is_empty())?;
        Some(self.levels[l].remove(0))
    }
    fn purge(&mut self) -> Vec<Pkt> {
        let all = self.contents();
        self.c.qdrops += all.len() as u64;
        self.levels = Default::default();
        all
    }
    fn set_maxlen(&mut self, maxlen: usize) -> Result<(), ConfigError> {
        if maxlen == 0 || maxlen > MAX_MAXLEN {
            // The exact error is the queue's business; only "refused and
            // nothing changed" is compared.
            return Err(ConfigError::ZeroMaxlen);
        }
        self.maxlen = maxlen;
        Ok(())
    }
}

/// A discipline's contents in leaving order.
trait Contents {
    fn contents(&self) -> Vec<Pkt>;
}
impl Contents for Fifo<Pkt> {
    fn contents(&self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}
impl Contents for Priq<Pkt> {
    fn contents(&self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}
impl Contents for ArrayFifo<Pkt, SLOTS> {
    fn contents(&self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}
impl Contents for ArrayPriq<Pkt, SLOTS> {
    fn contents(&self) -> Vec<Pkt> {
        self.iter().cloned().collect()
    }
}

fn run<D: Discipline<Packet = Pkt> + Contents>(input: &Input, disc: D, capacity: usize) {
    let maxlen = 1 + usize::from(input.maxlen % 16);
    let q: SendQueue<D> = SendQueue::new(disc, maxlen).expect("valid maxlen");
    let mut m = Model {
        priq: input.priq,
        maxlen,
        capacity,
        ..Model::default()
    };
    let mut next_id = 0u32;
    let mut make = |s: &Spec| {
        next_id += 1;
        Pkt {
            id: next_id,
            prio: s.prio % 8,
            len: s.len,
            mcast: s.mcast,
        }
    };
    for (step, op) in input.ops.iter().enumerate() {
        match op {
            Op::Enqueue(s) => {
                let p = make(s);
                assert_eq!(q.enqueue(p.clone()), m.enqueue(p), "step {step}");
            }
            Op::EnqueueBurst(specs) | Op::EnqueueBurstLocked(specs) => {
                let burst: Vec<Pkt> = specs.iter().take(24).map(&mut make).collect();
                let mut dropped = Vec::new();
                let accepted = if matches!(op, Op::EnqueueBurst(_)) {
                    q.enqueue_burst(burst.clone(), &mut dropped)
                } else {
                    q.lock().enqueue_burst(burst.clone(), &mut dropped)
                };
                let (mut want, mut want_accepted) = (Vec::new(), 0);
                for p in burst {
                    match m.enqueue(p) {
                        Ok(()) => want_accepted += 1,
                        Err(d) => {
                            want_accepted += usize::from(d.offered_was_queued());
                            want.push(d);
                        }
                    }
                }
                assert_eq!(dropped, want, "step {step}: burst drops");
                assert_eq!(accepted, want_accepted, "step {step}: burst accepted");
            }
            Op::Dequeue => assert_eq!(q.dequeue(), m.dequeue(), "step {step}"),
            Op::DeqCommit => {
                let got = q.deq_begin().map(|g| g.commit());
                assert_eq!(got, m.dequeue(), "step {step}");
            }
            Op::DeqRollback => {
                let head = q.deq_begin().map(|g| (*g).clone());
                assert_eq!(head.as_ref(), m.head(), "step {step}");
            }
            Op::DeqCommitLockedThenDequeue => match q.deq_begin() {
                Some(g) => {
                    let (p, mut locked) = g.commit_locked();
                    assert_eq!(Some(p), m.dequeue(), "step {step}");
                    assert_eq!(locked.dequeue(), m.dequeue(), "step {step}");
                }
                None => assert_eq!(m.len(), 0, "step {step}"),
            },
            Op::DeqRollbackLockedThenEnqueue(s) => match q.deq_begin() {
                Some(g) => {
                    assert_eq!(Some(&*g), m.head(), "step {step}");
                    let mut locked = g.rollback_locked();
                    let p = make(s);
                    assert_eq!(locked.enqueue(p.clone()), m.enqueue(p), "step {step}");
                }
                None => assert_eq!(m.len(), 0, "step {step}"),
            },
            Op::DequeueBurst(k) => {
                let k = usize::from(*k % 8);
                let mut out = ArrayVec::<Pkt, 4>::new();
                let n = q.dequeue_burst(&mut out, k);
                let want: Vec<_> = (0..k.min(4)).map_while(|_| m.dequeue()).collect();
                assert_eq!(n, want.len(), "step {step}: burst count");
                assert_eq!(out.as_slice(), want.as_slice(), "step {step}: burst");
            }
            Op::Purge => {
                let got: Vec<_> = q.purge().collect();
                assert_eq!(got, m.purge(), "step {step}: purge");
            }
            Op::SetMaxlen(n) => {
                // Mostly small values; 0 and values past MAX_MAXLEN too.
                let n = match n % 64 {
                    62 => MAX_MAXLEN + 1,
                    63 => MAX_MAXLEN,
                    v => usize::from(v % 20),
                };
                let mut locked = q.lock();
                let before = locked.maxlen();
                let got = locked.set_maxlen(n);
                assert_eq!(
                    got.is_ok(),
                    m.set_maxlen(n).is_ok(),
                    "step {step}: set_maxlen {n}"
                );
                let want = if got.is_ok() { n } else { before };
                assert_eq!(locked.maxlen(), want, "step {step}");
            }
            Op::AddErrors(n) => {
                q.add_errors(u64::from(*n));
                m.c.errors += u64::from(*n);
            }
        }
        let locked = q.lock();
        assert_eq!(locked.len(), m.len(), "step {step}: len");
        assert_eq!(locked.maxlen(), m.maxlen, "step {step}: maxlen");
        assert_eq!(locked.counters(), m.c, "step {step}: counters");
        assert_eq!(
            locked.discipline().contents(),
            m.contents(),
            "step {step}: contents"
        );
        assert_eq!(
            locked.discipline().len(),
            m.len(),
            "step {step}: discipline len"
        );
        drop(locked);
        assert_eq!(q.len(), m.len(), "step {step}: len hint");
        assert_eq!(q.is_empty(), m.len() == 0, "step {step}: is_empty");
    }
}

fuzz_target!(|input: Input| {
    match (input.priq, input.fixed) {
        (false, false) => run(&input, Fifo::new(), usize::MAX),
        (true, false) => run(&input, Priq::new(), usize::MAX),
        (false, true) => run(&input, ArrayFifo::<Pkt, SLOTS>::new(), SLOTS),
        (true, true) => run(&input, ArrayPriq::<Pkt, SLOTS>::new(), SLOTS),
    }
});
