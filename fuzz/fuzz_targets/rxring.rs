//! `RxRing` against a reference model: get, reserve with take_one / commit /
//! finish / drop, put (including over-release), livelocked, teardown and
//! re-init (including invalid watermarks), on a clock the fuzzer drives
//! forward, slightly backward and across the 64-bit wrap.
//!
//! The model is the one in `rxring/tests/model.rs`: `if_rxring` on unbounded
//! integers and absolute `i128` time; the ring sees that time as a wrapping
//! `u64`, or (half the inputs) as a 32-bit kernel tick widened by
//! `RxRing::widen_ticks`. A jump is at most 2^40 ticks (2^20 with 32-bit
//! ticks), so however many an input holds, a tick stays far inside the
//! ring's window ("up to 2^63 ahead counts as elapsed", 2^31 for 32-bit
//! ticks); half the inputs start within 2^16 ticks of the 64-bit wrap (of
//! the 2^31 or 2^32 boundary, with 32-bit ticks).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mpsafe_rxring::{RxRing, RxRingError};

#[derive(Arbitrary, Debug)]
enum Clock {
    Same,
    Forward(u8),
    /// A caller that read the tick a little earlier.
    Behind(u8),
    Jump(u64),
}

#[derive(Arbitrary, Debug)]
enum Op {
    Get(u8),
    /// Reserve up to `max`, commit `take` slots one by one or in one
    /// `commit` (possibly more than granted), then `finish` or drop.
    Reserve {
        max: u8,
        take: u8,
        bulk: bool,
        finish: bool,
    },
    Put(u8),
    /// Put back everything held (the common receive path).
    PutAll,
    Livelocked,
    Teardown,
    Init {
        lwm: u8,
        hwm: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Drive the ring with 32-bit kernel ticks through `widen_ticks`.
    ticks32: bool,
    near_wrap: bool,
    start: u64,
    lwm: u8,
    extra: u8,
    steps: Vec<(Clock, Op)>,
}

#[derive(Debug, Clone)]
struct Model {
    adjusted: i128,
    alive: u64,
    cwm: u64,
    lwm: u64,
    hwm: u64,
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
        })
    }

    fn get(&mut self, max: u64, now: i128) -> u64 {
        if now > self.adjusted && self.alive < self.lwm {
            self.cwm = (self.cwm + 1).min(self.hwm);
            self.adjusted = now;
        }
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

fn wrap(t: i128) -> u64 {
    t as u64
}

fn check(ring: &RxRing, m: &Model, held: u64, step: usize) {
    assert_eq!(u64::from(ring.inuse()), m.alive, "step {step}: inuse");
    assert_eq!(u64::from(ring.cwm()), m.cwm, "step {step}: cwm");
    assert_eq!(u64::from(ring.lwm()), m.lwm, "step {step}: lwm");
    assert_eq!(u64::from(ring.hwm()), m.hwm, "step {step}: hwm");
    assert_eq!(ring.adjusted(), wrap(m.adjusted), "step {step}: adjusted");
    assert_eq!(
        ring.needs_refill(),
        m.alive < m.lwm,
        "step {step}: needs_refill"
    );
    assert!(
        ring.lwm() <= ring.cwm() && ring.cwm() <= ring.hwm(),
        "step {step}"
    );
    // Conservation: every slot in use is a buffer the driver holds.
    assert_eq!(u64::from(ring.inuse()), held, "step {step}: conservation");
}

fuzz_target!(|input: Input| {
    // With 32-bit kernel ticks the ring is given `widen_ticks(t as u32)`,
    // which is `t` itself while `t` stays within 2^31 of the last
    // adjustment: jumps are then at most 2^20 ticks, and runs start near the
    // 2^31 or 2^32 boundary of the 32-bit counter.
    let mut t = match (input.ticks32, input.near_wrap) {
        (false, true) => i128::from(u64::MAX - (input.start & 0xffff)),
        (false, false) => i128::from(input.start),
        (true, true) => {
            let boundary = if input.start & 1 << 20 == 0 {
                1 << 31
            } else {
                1 << 32
            };
            boundary - i128::from(input.start & 0xffff)
        }
        (true, false) => i128::from(input.start as u32),
    };
    let jump_mask: u64 = if input.ticks32 {
        (1 << 20) - 1
    } else {
        (1 << 40) - 1
    };
    // The `now` the ring is given for absolute tick `now`.
    let ticks = |ring: &RxRing, now: i128| {
        if input.ticks32 {
            ring.widen_ticks(wrap(now) as u32)
        } else {
            wrap(now)
        }
    };
    let lwm = 1 + u64::from(input.lwm % 16);
    let hwm = lwm + u64::from(input.extra % 48);
    let mut ring = RxRing::new(lwm as u32, hwm as u32, wrap(t)).expect("valid watermarks");
    let mut m = Model::init(lwm, hwm, t).expect("valid watermarks");
    let mut held = 0u64;
    for (step, (clock, op)) in input.steps.iter().enumerate() {
        let now = match clock {
            Clock::Same => t,
            Clock::Forward(d) => {
                t += i128::from(*d % 4);
                t
            }
            Clock::Behind(d) => t - i128::from(*d % 4),
            Clock::Jump(d) => {
                t += i128::from(d & jump_mask);
                t
            }
        };
        match *op {
            Op::Get(max) => {
                let now_ = ticks(&ring, now);
                let g = ring.get(u32::from(max), now_);
                assert_eq!(u64::from(g), m.get(u64::from(max), now), "step {step}: get");
                held += u64::from(g);
            }
            Op::Reserve {
                max,
                take,
                bulk,
                finish,
            } => {
                let now_ = ticks(&ring, now);
                let mut fill = ring.reserve(u32::from(max), now_);
                let granted = m.get(u64::from(max), now);
                assert_eq!(u64::from(fill.len()), granted, "step {step}: reserve");
                let take = u32::from(take % 64);
                if bulk {
                    match fill.commit(take) {
                        Ok(()) => assert!(u64::from(take) <= granted, "step {step}"),
                        Err(RxRingError::OverCommit { committed, left }) => {
                            assert_eq!((committed, u64::from(left)), (take, granted));
                        }
                        Err(e) => panic!("step {step}: {e}"),
                    }
                } else {
                    for _ in 0..take {
                        if !fill.take_one() {
                            break;
                        }
                    }
                    assert!(fill.is_empty() || fill.committed() == take, "step {step}");
                }
                assert_eq!(
                    u64::from(fill.len() + fill.committed()),
                    granted,
                    "step {step}: reserved slots"
                );
                let used = if finish {
                    fill.finish()
                } else {
                    let used = fill.committed();
                    drop(fill);
                    used
                };
                assert!(m.put(granted - u64::from(used)), "step {step}");
                held += u64::from(used);
            }
            Op::Put(n) => {
                let n = u64::from(n % 40);
                let before = ring.clone();
                let res = ring.put(n as u32);
                assert_eq!(res.is_ok(), m.put(n), "step {step}: put {n}");
                if res.is_ok() {
                    held -= n;
                } else {
                    assert_eq!(ring, before, "step {step}: a failed put changed the ring");
                    assert_eq!(
                        res,
                        Err(RxRingError::OverRelease {
                            released: n as u32,
                            inuse: held as u32
                        })
                    );
                }
            }
            Op::PutAll => {
                assert!(ring.put(held as u32).is_ok() && m.put(held), "step {step}");
                held = 0;
            }
            Op::Livelocked => {
                ring.livelocked(ticks(&ring, now));
                m.livelocked(now);
            }
            Op::Teardown => {
                assert_eq!(u64::from(ring.teardown()), held, "step {step}: teardown");
                held = 0;
                m = Model::init(0, 0, m.adjusted).expect("(0, 0) is valid");
            }
            Op::Init { lwm, hwm } => {
                let (lwm, hwm) = (u64::from(lwm % 20), u64::from(hwm % 40));
                let before = ring.clone();
                match (
                    ring.init(lwm as u32, hwm as u32, ticks(&ring, now)),
                    Model::init(lwm, hwm, now),
                ) {
                    (Ok(was), Some(new)) => {
                        assert_eq!(u64::from(was), held, "step {step}: init returns inuse");
                        held = 0;
                        m = new;
                    }
                    (Err(_), None) => {
                        assert_eq!(ring, before, "step {step}: a failed init changed the ring")
                    }
                    (r, n) => panic!("step {step}: init({lwm},{hwm}) ring {r:?} model {n:?}"),
                }
            }
        }
        check(&ring, &m, held, step);
    }
});
