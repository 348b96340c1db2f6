//! Seeded property test: random sequences of init / get / reserve / put /
//! livelocked / teardown against a reference model, with the invariants
//! checked after every step.
//!
//! The model keeps time as an unbounded `i128` and compares ticks directly;
//! the ring sees the same time as a wrapping `u64` that starts just below
//! `u64::MAX`, so every run crosses the wrap. A failure prints the seed and
//! step; rerun one seed with `RXRING_SEED=<seed>`.
//!
//! Hand-rolled rather than proptest: the generator is twenty lines, the
//! operation set is small, and a failing seed is already a short, exact
//! reproduction; shrinking would add a dependency and little insight.

#![cfg(not(mpsafe_loom))]

use mpsafe_rxring::{RxRing, RxRingError};

/// splitmix64: small, fast, good enough to drive a model.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (bias irrelevant here).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// The reference: `if_rxring` as the prose of the spec reads, on unbounded
/// integers and absolute time.
#[derive(Debug, Clone)]
struct Model {
    adjusted: i128,
    alive: u64,
    cwm: u64,
    lwm: u64,
    hwm: u64,
    /// Highest cwm since the last init: alive can never exceed it.
    peak: u64,
}

impl Model {
    fn init(lwm: u64, hwm: u64, now: i128) -> Option<Self> {
        let valid = (lwm == 0 && hwm == 0) || (lwm >= 1 && lwm <= hwm);
        valid.then_some(Self {
            adjusted: now,
            alive: 0,
            cwm: lwm,
            lwm,
            hwm,
            peak: lwm,
        })
    }

    fn get(&mut self, max: u64, now: i128) -> u64 {
        // A tick passed and the ring is below lwm: an adjustment happens
        // (growth if there is room), and it is recorded.
        if now > self.adjusted && self.alive < self.lwm {
            self.cwm = (self.cwm + 1).min(self.hwm);
            self.adjusted = now;
        }
        self.peak = self.peak.max(self.cwm);
        let grant = self.cwm.saturating_sub(self.alive).min(max);
        self.alive += grant;
        grant
    }

    fn livelocked(&mut self, now: i128) {
        if now > self.adjusted {
            self.cwm = self.cwm.saturating_sub(1).max(self.lwm);
            self.adjusted = now;
        }
    }

    fn put(&mut self, n: u64) -> bool {
        if n > self.alive {
            return false;
        }
        self.alive -= n;
        true
    }
}

/// Tick `t` (absolute) as the ring sees it.
fn wrap(t: i128) -> u64 {
    // Two's-complement truncation is exactly mod 2^64.
    t as u64
}

fn check(ring: &RxRing, m: &Model, held: u64, seed: u64, step: usize, op: &str) {
    let ctx = || format!("seed {seed:#x} step {step} after {op}: ring {ring:?} model {m:?}");
    assert_eq!(u64::from(ring.inuse()), m.alive, "alive: {}", ctx());
    assert_eq!(u64::from(ring.cwm()), m.cwm, "cwm: {}", ctx());
    assert_eq!(u64::from(ring.lwm()), m.lwm, "lwm: {}", ctx());
    assert_eq!(u64::from(ring.hwm()), m.hwm, "hwm: {}", ctx());
    assert_eq!(ring.adjusted(), wrap(m.adjusted), "adjusted: {}", ctx());
    assert_eq!(
        ring.needs_refill(),
        m.alive < m.lwm,
        "needs_refill: {}",
        ctx()
    );
    // Invariants, independent of the model's arithmetic.
    assert!(
        ring.lwm() <= ring.cwm() && ring.cwm() <= ring.hwm(),
        "{}",
        ctx()
    );
    assert!(ring.inuse() <= ring.hwm(), "{}", ctx());
    assert!(u64::from(ring.inuse()) <= m.peak, "{}", ctx());
    if ring.hwm() == 0 {
        assert_eq!(
            (ring.inuse(), ring.cwm(), ring.lwm()),
            (0, 0, 0),
            "{}",
            ctx()
        );
    }
    // Conservation: every slot in use is a buffer the driver holds.
    assert_eq!(u64::from(ring.inuse()), held, "conservation: {}", ctx());
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    // Start within a few hundred ticks of the wrap.
    let mut t: i128 = i128::from(u64::MAX) - rng.range(0, 300) as i128;
    let (lwm, hwm) = (rng.range(1, 8), 0);
    let hwm = hwm + lwm + rng.range(0, 24);
    let mut ring = RxRing::new(lwm as u32, hwm as u32, wrap(t)).unwrap();
    let mut m = Model::init(lwm, hwm, t).unwrap();
    let mut held: u64 = 0;

    for step in 0..steps {
        // The clock mostly stands still or advances a little; sometimes a
        // caller passes a tick read slightly behind; rarely it jumps.
        let now = match rng.range(0, 99) {
            0..=49 => t,
            50..=84 => {
                t += rng.range(1, 2) as i128;
                t
            }
            85..=94 => t - rng.range(1, 3) as i128,
            _ => {
                t += rng.range(3, 1 << 40) as i128;
                t
            }
        };
        let op = match rng.range(0, 99) {
            0..=29 => {
                let max = rng.range(0, 40);
                let g = ring.get(max as u32, wrap(now));
                assert_eq!(
                    u64::from(g),
                    m.get(max, now),
                    "seed {seed:#x} step {step}: get"
                );
                assert!(u64::from(g) <= max);
                held += u64::from(g);
                "get"
            }
            30..=49 => {
                let max = rng.range(0, 40);
                let want = rng.range(0, 45);
                let mut fill = ring.reserve(max as u32, wrap(now));
                let granted = m.get(max, now);
                assert_eq!(
                    u64::from(fill.len()),
                    granted,
                    "seed {seed:#x} step {step}: reserve"
                );
                // Fill slot by slot until "allocation fails" after `want`,
                // sometimes with one bulk commit, sometimes overcommitting.
                if rng.chance(30) {
                    let k = want.min(granted + 2) as u32;
                    match fill.commit(k) {
                        Ok(()) => assert!(u64::from(k) <= granted),
                        Err(RxRingError::OverCommit { committed, left }) => {
                            assert_eq!((committed, u64::from(left)), (k, granted));
                            assert!(u64::from(k) > granted);
                        }
                        Err(e) => panic!("seed {seed:#x} step {step}: {e}"),
                    }
                } else {
                    let mut n = 0;
                    while !fill.is_empty() && n < want {
                        assert!(fill.take_one());
                        n += 1;
                    }
                }
                let used = if rng.chance(50) {
                    fill.finish()
                } else {
                    let used = fill.committed();
                    drop(fill);
                    used
                };
                assert!(m.put(granted - u64::from(used)));
                held += u64::from(used);
                "reserve"
            }
            50..=74 => {
                // Mostly valid releases, some over-releases.
                let n = if held > 0 && rng.chance(85) {
                    rng.range(1, held)
                } else {
                    held + rng.range(0, 3)
                };
                let before = ring.clone();
                let res = ring.put(n as u32);
                assert_eq!(res.is_ok(), m.put(n), "seed {seed:#x} step {step}: put {n}");
                if res.is_ok() {
                    held -= n;
                } else {
                    assert_eq!(ring, before, "failed put changed the ring");
                    if n > 0 {
                        assert_eq!(
                            res,
                            Err(RxRingError::OverRelease {
                                released: n as u32,
                                inuse: held as u32
                            })
                        );
                    }
                }
                "put"
            }
            75..=91 => {
                ring.livelocked(wrap(now));
                m.livelocked(now);
                "livelocked"
            }
            92..=95 => {
                // The driver frees whatever was posted itself.
                let was = ring.teardown();
                assert_eq!(u64::from(was), held);
                held = 0;
                let adjusted = m.adjusted;
                m = Model::init(0, 0, adjusted).unwrap();
                "teardown"
            }
            _ => {
                let lwm = rng.range(0, 8);
                let hwm = if rng.chance(80) {
                    lwm + rng.range(0, 24)
                } else {
                    rng.range(0, 8)
                };
                let before = ring.clone();
                match (
                    ring.init(lwm as u32, hwm as u32, wrap(now)),
                    Model::init(lwm, hwm, now),
                ) {
                    (Ok(was), Some(new)) => {
                        assert_eq!(u64::from(was), held);
                        held = 0;
                        m = new;
                    }
                    (Err(_), None) => assert_eq!(ring, before, "failed init changed the ring"),
                    (r, n) => panic!(
                        "seed {seed:#x} step {step}: init({lwm},{hwm}) ring {r:?} model {n:?}"
                    ),
                }
                "init"
            }
        };
        check(&ring, &m, held, seed, step, op);
    }
}

#[test]
fn ring_matches_model() {
    let (seeds, steps) = if cfg!(miri) {
        (10, 1_000)
    } else {
        (200, 5_000)
    };
    if let Ok(s) = std::env::var("RXRING_SEED") {
        let seed = u64::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex seed");
        run(seed, steps);
        return;
    }
    for i in 0..seeds {
        run(0x5eed_0000 + i, steps);
    }
}
