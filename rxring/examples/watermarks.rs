//! How the rx watermark adapts: a 1024-descriptor ring under bursty load,
//! with periods where the stack cannot keep up (livelock).
//!
//! ```text
//! cargo run --example watermarks -p mpsafe-rxring
//! ```
//!
//! A deterministic simulation at 100 ticks per second, four interrupts per
//! tick. Each interrupt, the NIC fills posted buffers with the packets that
//! arrived (those that find no posted buffer are missed), the driver reaps
//! them (`put`), hands them to the stack's input queue, reports
//! `livelocked` if that queue overflowed, and refills (`reserve`) as em(4)
//! does. The stack drains its queue at a fixed rate, a fifth of it during
//! the "busy" periods. Printed every 25 ticks: the watermark grows by one per
//! tick while bursts run the ring dry, and backs off by one per tick while
//! the stack is livelocked.

#![allow(clippy::std_instead_of_core)]

use mpsafe_rxring::{RxRing, RxRingInfoTable, RxRingName};

const SLOTS: u32 = 1024;
const LWM: u32 = 4; // em(4): max(4, 2 * (hardmtu / MCLBYTES + 1))
const INTRS_PER_TICK: u64 = 4;
const TICKS: u64 = 1500;
const IFIQ_MAXLEN: u64 = 512; // stack input queue limit
const STACK_RATE: u64 = 700; // packets per tick the stack processes

/// Offered load (packets per tick) and whether the stack is starved, by tick.
fn phase(t: u64) -> (&'static str, u64, bool) {
    let busy = (600..700).contains(&t) || (1200..1300).contains(&t);
    let (name, load) = match t % 300 {
        0..=179 => ("burst", 520 + (t * 37 % 61)), // ~550 pps jittery burst
        _ => ("idle", 15),
    };
    (if busy { "busy" } else { name }, load, busy)
}

fn main() {
    let mut ring = RxRing::new(LWM, SLOTS, 0).expect("valid watermarks");
    // Buffers on the ring: posted empty, and filled by the NIC but not reaped.
    let (mut empty, mut filled) = (0u64, 0u64);
    let mut queue = 0u64; // stack input queue
    let (mut missed, mut qdrops, mut livelocks) = (0u64, 0u64, 0u64);

    // Initial fill, as em_setup_receive_structures does.
    empty += u64::from(ring.reserve(SLOTS, 0).finish_all());

    println!(
        "{:>5} {:>6} {:>5} {:>5} {:>5} {:>7} {:>7} {:>6}  cwm",
        "tick", "phase", "load", "alive", "cwm", "missed", "qdrops", "llock"
    );
    for now in 0..TICKS {
        let (name, load, busy) = phase(now);
        let rate = if busy { STACK_RATE / 5 } else { STACK_RATE };
        for i in 0..INTRS_PER_TICK {
            // Arrivals this interrupt interval; the NIC fills posted buffers.
            let arrive = load / INTRS_PER_TICK + u64::from(i < load % INTRS_PER_TICK);
            let got = arrive.min(empty);
            missed += arrive - got;
            empty -= got;
            filled += got;

            // em_rxeof: reap filled descriptors, input to the stack.
            ring.put(filled as u32)
                .expect("reaping only what was posted");
            let accepted = filled.min(IFIQ_MAXLEN - queue);
            qdrops += filled - accepted;
            queue += accepted;
            let pressure = filled > accepted;
            filled = 0;
            if pressure {
                // ifiq_input reported the stack is falling behind.
                ring.livelocked(now);
                livelocks += 1;
            }

            // em_rxfill: post as many buffers as the watermark allows.
            let fill = ring.reserve(SLOTS, now);
            empty += u64::from(fill.finish_all());

            // The stack runs between interrupts.
            queue -= queue.min(rate / INTRS_PER_TICK);
        }
        debug_assert_eq!(u64::from(ring.inuse()), empty + filled);
        if now % 25 == 0 {
            let bar = "#".repeat((ring.cwm() as usize).div_ceil(16));
            println!(
                "{now:>5} {name:>6} {load:>5} {:>5} {:>5} {missed:>7} {qdrops:>7} {livelocks:>6}  {bar}",
                ring.inuse(),
                ring.cwm(),
            );
        }
    }

    println!();
    let rows = [ring.info(RxRingName::new("em0").expect("short name"), 2048)];
    print!("{}", RxRingInfoTable(&rows));
    // Down: everything posted comes back to the driver.
    let posted = ring.teardown();
    println!(
        "down: {posted} buffers were on the ring, {} in use now",
        ring.inuse()
    );
}

/// Every slot reserved gets a buffer (the allocator never fails here).
trait FinishAll {
    fn finish_all(self) -> u32;
}

impl FinishAll for mpsafe_rxring::Fill<'_> {
    fn finish_all(mut self) -> u32 {
        let n = self.len();
        self.commit(n).expect("committing exactly what is left");
        self.finish()
    }
}
