//! The two-CPU phase: two sender threads, each pinned to its own guest CPU,
//! transmit onto em0 at once while em1 only receives. Every `transmit` that
//! starts the queue ends in a doorbell, a `TDT` write QEMU emulates, so the
//! phase shows what each mode makes of two CPUs competing for one e1000.
//!
//! The interfaces' own senders are held meanwhile (their hands taken, as
//! the down/up cycles do) and their frames drained first, so em1 sees only
//! the two senders' frames; each numbers its own from 1 under its sender id
//! and em1's [`Checker`](crate::traffic::Checker) checks each sequence
//! apart, so every frame is accounted for exactly.
//!
//! Each mode's run measures the phase in its own mode ([`Phase::Fixed`]).
//! On a shared, loaded host the load moves between those runs, seconds
//! apart; [`Phase::Rotate`] measures all modes inside one run instead,
//! switching both interfaces ([`Em::set_mode`](mpsafe_em_sim::Em::set_mode))
//! through every mode in short slices, round after round, so that each
//! mode sees the same host.

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mpsafe_em_sim::Mode;
use mpsafe_em_sim::cpu::{allowed_cpus, pin_to, process_cpu_time};

use crate::drive::{Nic, Plan};
use crate::traffic::{OWN, Sender, TxCounts};

/// The two senders' ids in em1's checker.
const IDS: [usize; 2] = [1, 2];

/// Time for the senders to reach their steady state before the measured
/// window.
const WARM_UP: Duration = Duration::from_millis(300);
/// [`Phase::Rotate`]: after a switch, time before the slice's count starts.
const SETTLE: Duration = Duration::from_millis(100);
/// [`Phase::Rotate`]: one mode's measured slice, in ms.
pub(crate) const SLICE_MS: u64 = 400;
const SLICE: Duration = Duration::from_millis(SLICE_MS);

/// Whether and how a run measures the two-CPU phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not at all.
    Off,
    /// In the run's mode, for the plan's `measure`.
    Fixed,
    /// Every mode in turn, [`SLICE`] each, for `rounds` rounds, then back
    /// to the run's mode.
    Rotate { rounds: u32 },
}

/// What the two-CPU phase measured and checked.
#[derive(Debug, Default)]
pub(crate) struct TwoCpu {
    /// The CPU each sender was pinned to.
    pub cpus: [usize; 2],
    /// The measured window.
    pub secs: f64,
    /// Frames `transmit` accepted on em0 per second, both senders.
    pub tx_pps: f64,
    /// Frames em1 received intact per second.
    pub rx_pps: f64,
    /// Frames each sender had accepted in the window.
    pub window_sent: [u64; 2],
    /// The process's CPU time per frame sent plus frame received (the
    /// two-way table's measure).
    pub cpu_us_per_packet: Option<f64>,
    /// [`Phase::Rotate`]: per mode, frames sent in its slices and their
    /// total length in seconds.
    pub rotated: Vec<(Mode, u64, f64)>,
    /// [`Phase::Rotate`]: per round, each mode's packets/s in its slice, in
    /// `rotated`'s order (to show how much the ratios move between rounds).
    pub rounds: Vec<Vec<f64>>,
    /// The phase's accounting, one line per sender.
    pub lines: Vec<String>,
    pub errors: Vec<String>,
    /// When `errors` is not empty: the missing sequence numbers.
    pub diagnostics: Vec<String>,
}

/// Runs the phase (`plan.two_cpu`, not [`Phase::Off`]) inside
/// [`drive::run`](crate::drive::run)'s load: both interfaces up in `mode`,
/// their own senders running (held here through `hands`, their counts
/// `tx`), `missed0` the receivers' `MPC` at the start.
pub(crate) fn run(
    nics: &[Nic; 2],
    hands: &[RwLock<()>; 2],
    tx: &[TxCounts; 2],
    missed0: [u64; 2],
    mode: Mode,
    plan: Plan,
) -> TwoCpu {
    let run = mode as u8;
    let mut out = TwoCpu::default();
    let cpus = match allowed_cpus() {
        Ok(c) if c.len() >= 2 => [c[0], c[1]],
        Ok(c) => {
            out.errors
                .push(format!("two-CPU phase: needs two CPUs, may run on {c:?}"));
            return out;
        }
        Err(e) => {
            out.errors.push(format!("two-CPU phase: {e}"));
            return out;
        }
    };
    out.cpus = cpus;
    let (em0, em1) = (&nics[0], &nics[1]);
    // Hold both own senders, then let their frames in flight arrive (or be
    // missed with a count) so that em1 sees only the two senders' frames.
    let held: Vec<_> = hands
        .iter()
        .map(|h| h.write().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let own_settled = |i: usize| {
        let (t, r) = (&tx[i], &nics[1 - i].stack.counts[OWN]);
        t.sent.load(Ordering::Relaxed)
            <= r.received.load(Ordering::Relaxed)
                + r.late_in_hold.load(Ordering::Relaxed)
                + t.written_off.load(Ordering::Relaxed)
                + ((nics[1 - i].missed)() - missed0[1 - i])
    };
    let t = Instant::now();
    while !(own_settled(0) && own_settled(1)) && t.elapsed() < Duration::from_secs(2) {
        thread::sleep(Duration::from_millis(5));
    }
    let own = &em1.stack.counts[OWN];
    // Frames that fail the check are booked on the own account (no sender
    // id to trust); any of them during the phase is the phase's error.
    let (corrupt0, ooo0) = (
        own.corrupt.load(Ordering::Relaxed),
        own.out_of_order.load(Ordering::Relaxed),
    );
    let mpc0 = (em1.missed)();
    let counts = [TxCounts::default(), TxCounts::default()];
    let rx = [&em1.stack.counts[IDS[0]], &em1.stack.counts[IDS[1]]];
    // Nobody else takes these: the cycles run after the phase.
    let own_hands = [RwLock::new(()), RwLock::new(())];
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let senders: Vec<_> = (0..2)
            .map(|k| {
                let sender = Sender {
                    em: &em0.em,
                    pool: em0.pool.clone(),
                    src: em0.mac,
                    dst: em1.mac,
                    counts: &counts[k],
                    rx: rx[k],
                    // Together at most the two-way phase's window toward em1.
                    window: (plan.window / 2).max(1),
                    hand: &own_hands[k],
                    stop: &stop,
                    run,
                    id: IDS[k] as u8,
                };
                let cpu = cpus[k];
                thread::Builder::new()
                    .name(format!("tx em0 cpu{cpu}"))
                    .spawn_scoped(s, move || {
                        pin_to(cpu)?;
                        sender.run();
                        Ok::<(), String>(())
                    })
                    .expect("spawn sender")
            })
            .collect();
        thread::sleep(WARM_UP);
        let sent =
            || -> [u64; 2] { core::array::from_fn(|k| counts[k].sent.load(Ordering::Relaxed)) };
        let received = || -> u64 { rx.iter().map(|r| r.received.load(Ordering::Relaxed)).sum() };
        let total = || -> u64 { sent().iter().sum() };
        let (s0, r0, c0, at) = (sent(), received(), process_cpu_time(), Instant::now());
        if let Phase::Rotate { rounds } = plan.two_cpu {
            let mut per_mode = Mode::ALL.map(|m| (m, 0, 0.0));
            for _ in 0..rounds {
                let mut this_round = Vec::new();
                for (m, frames, secs) in &mut per_mode {
                    for n in nics {
                        if let Err(e) = n.em.set_mode(*m) {
                            out.errors.push(format!("{}: set_mode({m}): {e}", n.name));
                        }
                    }
                    thread::sleep(SETTLE);
                    let (f0, t0) = (total(), Instant::now());
                    thread::sleep(SLICE);
                    let (f, s) = (total() - f0, t0.elapsed().as_secs_f64());
                    *frames += f;
                    *secs += s;
                    this_round.push(f as f64 / s);
                }
                out.rounds.push(this_round);
            }
            for n in nics {
                if let Err(e) = n.em.set_mode(mode) {
                    out.errors
                        .push(format!("{}: set_mode({mode}): {e}", n.name));
                }
            }
            out.rotated = per_mode.to_vec();
        } else {
            thread::sleep(plan.measure);
        }
        let (s1, r1, c1, secs) = (
            sent(),
            received(),
            process_cpu_time(),
            at.elapsed().as_secs_f64(),
        );
        stop.store(true, Ordering::Relaxed);
        out.window_sent = core::array::from_fn(|k| s1[k] - s0[k]);
        let txn: u64 = out.window_sent.iter().sum();
        out.secs = secs;
        out.tx_pps = txn as f64 / secs;
        out.rx_pps = (r1 - r0) as f64 / secs;
        out.cpu_us_per_packet = match (c0, c1) {
            (Some(a), Some(b)) if txn + (r1 - r0) > 0 => {
                Some((b - a).as_secs_f64() * 1e6 / (txn + (r1 - r0)) as f64)
            }
            _ => None,
        };
        for (k, h) in senders.into_iter().enumerate() {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => out.errors.push(format!("two-CPU sender {}: {e}", IDS[k])),
                Err(_) => out
                    .errors
                    .push(format!("two-CPU sender {} panicked", IDS[k])),
            }
        }
    });
    // Drain: every frame accepted arrives or is missed with a count.
    let missed = || (em1.missed)() - mpc0;
    let settled = || {
        let sent: u64 = counts.iter().map(|c| c.sent.load(Ordering::Relaxed)).sum();
        let arrived: u64 = rx
            .iter()
            .map(|r| r.received.load(Ordering::Relaxed) + r.late_in_hold.load(Ordering::Relaxed))
            .sum();
        sent <= arrived + missed()
    };
    let t = Instant::now();
    while !settled() && t.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    // The accounting: per sender, every frame received in order or a gap;
    // all gaps together are what em1 counted missed.
    let missed = missed();
    let mut lost_total = 0;
    for k in 0..2 {
        let (c, r) = (&counts[k], rx[k]);
        let sent = c.sent.load(Ordering::Relaxed);
        let received = r.received.load(Ordering::Relaxed);
        let late = r.late_in_hold.load(Ordering::Relaxed);
        let lost =
            r.gaps.load(Ordering::Relaxed) + sent.saturating_sub(r.last.load(Ordering::Relaxed));
        let ooo = r.out_of_order.load(Ordering::Relaxed);
        lost_total += lost;
        out.lines.push(format!(
            "two CPUs onto em0: sender {} on CPU {}: sent {sent}, received intact and in order by em1 {received}, late {late}, lost {lost}, out of order {ooo}; refused by transmit: {} down, {} queue full (retried)",
            IDS[k],
            cpus[k],
            c.refused_down.load(Ordering::Relaxed),
            c.refused_full.load(Ordering::Relaxed),
        ));
        if sent == 0 || out.window_sent[k] == 0 {
            out.errors.push(format!(
                "two-CPU sender {} on CPU {} sent nothing in the measured window",
                IDS[k], cpus[k]
            ));
        }
        if ooo != 0 {
            out.errors
                .push(format!("two-CPU sender {}: {ooo} out of order", IDS[k]));
        }
        if received + late + lost != sent {
            out.errors.push(format!(
                "two-CPU sender {}: sent {sent} != received {received} + late {late} + lost {lost}",
                IDS[k]
            ));
        }
    }
    let corrupt = own.corrupt.load(Ordering::Relaxed) - corrupt0;
    let ooo = own.out_of_order.load(Ordering::Relaxed) - ooo0;
    out.lines.push(format!(
        "two CPUs onto em0{}: {:.0} pps sent ({:.0} received) in the measured {:.1} s, {} by CPU {} and {} by CPU {}; lost {lost_total}, em1 missed (MPC) {missed}; corrupt {corrupt}, own sender's frames out of order {ooo}; CPU µs/p {}",
        if out.rotated.is_empty() {
            ""
        } else {
            ", every mode in turn"
        },
        out.tx_pps,
        out.rx_pps,
        out.secs,
        out.window_sent[0],
        cpus[0],
        out.window_sent[1],
        cpus[1],
        out.cpu_us_per_packet.map_or("-".into(), |c| format!("{c:.1}")),
    ));
    if corrupt + ooo != 0 {
        out.errors.push(format!(
            "two-CPU phase: em1 saw {corrupt} corrupt frames, {ooo} of its peer's own sender out of order"
        ));
    }
    if lost_total != missed {
        out.errors.push(format!(
            "two-CPU phase: {lost_total} frames lost but em1 counted {missed} missed"
        ));
    }
    if !out.errors.is_empty() {
        for id in IDS {
            out.diagnostics.push(format!(
                "two-CPU sender {id} -> em1: missing sequence numbers: {}",
                em1.stack.missing_ranges(id, 20)
            ));
        }
    }
    out
}
