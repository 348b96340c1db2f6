//! The driver test in one mode: em0 and em1 up, each sending to the other
//! from its own thread at once; a measured phase; a measured phase with two
//! senders, one per CPU, both onto em0 ([`crate::two_cpu`]); up/down cycles
//! under load with the buffer table checked after each down; a drain; the
//! accounting.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use mpsafe_em_sim::cpu::process_cpu_time;
use mpsafe_em_sim::{Em, EmStats, LockCounts, Mode, Path, Pool};
use mpsafe_em_uio::UioDevice;

use crate::traffic::{Checker, OWN, Sender, TxCounts};
use crate::two_cpu::{self, Phase, SLICE_MS, TwoCpu};

/// A down/up cycle longer than this may have left the receiver disabled
/// past QEMU's 1 s receive hold (the host was busy).
const LONG_DOWN: Duration = Duration::from_millis(900);

/// One attached interface and what the test needs around it.
pub(crate) struct Nic {
    pub name: &'static str,
    pub em: Em<UioDevice>,
    pub pool: Pool,
    pub mac: [u8; 6],
    pub stack: Arc<Checker>,
    /// Interrupts the backend delivered so far.
    pub interrupts: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The device's missed packets count (`MPC`, cumulative on QEMU).
    pub missed: Box<dyn Fn() -> u64 + Send + Sync>,
    /// The device's state in one line, for a failure report.
    pub regs: Box<dyn Fn() -> String + Send + Sync>,
}

/// How long each phase runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub measure: Duration,
    pub cycles: u32,
    pub cycle_gap: Duration,
    pub window: u64,
    /// Stay down this long in the first cycle (0 normally): shows what a
    /// host stall longer than QEMU's receive hold does.
    pub first_down_stall: Duration,
    /// Runtime mode switches ([`Em::set_mode`]) under load after the
    /// cycles, both interfaces, through every mode; 0 for a fixed-mode run.
    pub switches: u32,
    /// The two-CPU phase (two senders onto em0), if any.
    pub two_cpu: Phase,
}

/// What one mode measured.
#[derive(Debug)]
pub(crate) struct ModeReport {
    pub mode: Mode,
    /// The table's row name: the mode, or `switching`.
    pub label: String,
    pub secs: f64,
    pub rx_pps: f64,
    pub tx_pps: f64,
    pub intr_per_sec: f64,
    pub cpu_us_per_packet: Option<f64>,
    pub interrupts: u64,
    pub big_lock: LockCounts,
    /// Big-lock acquisitions during the measured `secs` only.
    pub big_lock_window: LockCounts,
    /// The two-CPU phase, if the plan ran it.
    pub two_cpu: Option<TwoCpu>,
    pub cycles: u32,
    /// Per direction: sent, received, written off (with causes), residual.
    pub lines: Vec<String>,
    pub after_down: [EmStats; 2],
    pub errors: Vec<String>,
    /// When `errors` is not empty: the missing sequence numbers and the
    /// timeline of down/up cycles and switches, to place them.
    pub diagnostics: Vec<String>,
}

fn written_off(sender: &EmStats, receiver: &EmStats) -> u64 {
    // Lost after `transmit` accepted them, with a counter that says why:
    // purged from the sender's queue at its down, flushed from the
    // receiver's ring at its down, or received with an error.
    sender.tx_purged + receiver.rx_flushed + receiver.rx_errors
}

/// Runs the whole test for the two interfaces (already attached in `mode`,
/// down). Returns the report; `errors` lists what does not add up.
pub(crate) fn run(mode: Mode, nics: &[Nic; 2], plan: Plan) -> ModeReport {
    let mut errors = Vec::new();
    // What happened when, printed only if the accounting fails: which
    // down/up or switch a missing sequence number belongs to.
    let mut timeline = Vec::new();
    let epoch = Instant::now();
    let tx = [TxCounts::default(), TxCounts::default()];
    let hands = [RwLock::new(()), RwLock::new(())];
    let stop = AtomicBool::new(false);
    for n in nics {
        n.stack.mark_up();
        if let Err(e) = n.em.up() {
            errors.push(format!("{}: up: {e}", n.name));
        }
    }
    let intr0: u64 = nics.iter().map(|n| (n.interrupts)()).sum();
    // Per receiver: down/up cycles that took longer than QEMU's receive
    // hold, and the frames lost toward it over them.
    let mut long_downs = [0u64; 2];
    let mut disabled_too_long = [0u64; 2];
    let missed0 = [(nics[0].missed)(), (nics[1].missed)()];
    let mut cycles = 0;
    let mut measured = (0.0, 0, 0, None, 0);
    // Big-lock acquisitions in the measured phase only (one kernel, one
    // lock: em0's counts are both interfaces').
    let mut window_locks = LockCounts::default();
    let mut two = None;
    thread::scope(|s| {
        for i in 0..2 {
            let (me, peer) = (&nics[i], &nics[1 - i]);
            let sender = Sender {
                em: &me.em,
                pool: me.pool.clone(),
                src: me.mac,
                dst: peer.mac,
                counts: &tx[i],
                rx: &peer.stack.counts[OWN],
                window: plan.window,
                hand: &hands[i],
                stop: &stop,
                run: mode as u8,
                id: OWN as u8,
            };
            thread::Builder::new()
                .name(format!("tx {}", me.name))
                .spawn_scoped(s, move || sender.run())
                .expect("spawn sender");
        }
        // 1. Measured phase (after the 1 s QEMU holds receive after the
        //    RCTL write of `up`).
        thread::sleep(Duration::from_millis(1200));
        let rx = || -> u64 {
            nics.iter()
                .map(|n| n.stack.counts[OWN].received.load(Ordering::Relaxed))
                .sum()
        };
        let txs = || -> u64 { tx.iter().map(|t| t.sent.load(Ordering::Relaxed)).sum() };
        let intr = || -> u64 { nics.iter().map(|n| (n.interrupts)()).sum() };
        let locks = || nics[0].em.stats().big_lock;
        let lk0 = locks();
        let (r0, t0, i0, c0, at) = (rx(), txs(), intr(), process_cpu_time(), Instant::now());
        thread::sleep(plan.measure);
        let (r1, t1, i1, c1, secs) = (
            rx(),
            txs(),
            intr(),
            process_cpu_time(),
            at.elapsed().as_secs_f64(),
        );
        let cpu = match (c0, c1) {
            (Some(a), Some(b)) if r1 + t1 > r0 + t0 => {
                Some((b - a).as_secs_f64() * 1e6 / ((r1 - r0) + (t1 - t0)) as f64)
            }
            _ => None,
        };
        measured = (secs, r1 - r0, t1 - t0, cpu, i1 - i0);
        let lk1 = locks();
        window_locks = LockCounts(core::array::from_fn(|i| lk1.0[i] - lk0.0[i]));
        // 1b. Two senders, one per CPU, onto em0; em1 only receiving (the
        //     own senders held meanwhile).
        if plan.two_cpu != Phase::Off {
            let r = two_cpu::run(nics, &hands, &tx, missed0, mode, plan);
            errors.extend(r.errors.iter().cloned());
            timeline.push(format!(
                "{:>6} ms two-CPU phase done",
                epoch.elapsed().as_millis()
            ));
            two = Some(r);
        }
        // 2. Up/down cycles under load, alternating the interfaces.
        for c in 0..plan.cycles {
            let i = (c % 2) as usize;
            let n = &nics[i];
            let before = n.em.stats();
            let t_down = Instant::now();
            let peer_sent = tx[1 - i].sent.load(Ordering::Relaxed);
            n.em.down();
            {
                // No buffer in the sender's hand: the table must be empty.
                let _hands = hands[i].write().unwrap_or_else(|e| e.into_inner());
                let st = n.em.stats();
                if st.pool.in_use() != 0 || st.pool.leaked != 0 || st.pool.dma_errors != 0 {
                    errors.push(format!("{} after down {}: {}", n.name, c + 1, st.pool));
                }
                // What this down lost, with its cause, leaves the windows.
                let off_out = st.tx_purged - before.tx_purged;
                let off_in = st.rx_flushed - before.rx_flushed + st.rx_errors - before.rx_errors;
                tx[i].written_off.fetch_add(off_out, Ordering::Relaxed);
                tx[1 - i].written_off.fetch_add(off_in, Ordering::Relaxed);
            }
            if c == 0 {
                thread::sleep(plan.first_down_stall);
            }
            n.stack.mark_up();
            match n.em.up() {
                Ok(()) => cycles += 1,
                Err(e) => errors.push(format!("{}: up in cycle {}: {e}", n.name, c + 1)),
            }
            let st = n.em.stats();
            timeline.push(format!(
                "{:>6} ms cycle {}: {} down/up in {} µs; toward it seq {}..={} sent meanwhile; flushed at its down {}, it purged {}",
                t_down.duration_since(epoch).as_millis(),
                c + 1,
                n.name,
                t_down.elapsed().as_micros(),
                peer_sent + 1,
                tx[1 - i].sent.load(Ordering::Relaxed),
                st.rx_flushed - before.rx_flushed,
                st.tx_purged - before.tx_purged,
            ));
            if t_down.elapsed() > LONG_DOWN {
                // The receiver may have stayed disabled longer than QEMU's
                // 1 s hold: QEMU then drops what it queued for it, with no
                // counter (the smoke test shows it). Hold the peer's sender,
                // let what survived arrive, and write off the rest with
                // that cause; more than a window lost is an error.
                long_downs[i] += 1;
                let _held = hands[1 - i].write().unwrap_or_else(|e| e.into_inner());
                thread::sleep(Duration::from_millis(1300));
                let (t, r) = (&tx[1 - i], &n.stack.counts[OWN]);
                let missed = (n.missed)() - missed0[i];
                let gone = t.sent.load(Ordering::Relaxed).saturating_sub(
                    r.received.load(Ordering::Relaxed)
                        + r.late_in_hold.load(Ordering::Relaxed)
                        + t.written_off.load(Ordering::Relaxed)
                        + missed,
                );
                if gone > plan.window {
                    errors.push(format!(
                        "{}: {gone} frames lost over one long down/up, more than the window",
                        n.name
                    ));
                }
                disabled_too_long[i] += gone;
                t.written_off.fetch_add(gone, Ordering::Relaxed);
            }
            thread::sleep(plan.cycle_gap);
        }
        // 2b. Runtime switches under load, back to `mode` at the end.
        for k in 0..plan.switches {
            for (i, n) in nics.iter().enumerate() {
                let to = Mode::ALL[(k as usize + 1 + i) % Mode::ALL.len()];
                timeline.push(format!(
                    "{:>6} ms switch {}: {} to {to}; toward it seq {} sent so far",
                    epoch.elapsed().as_millis(),
                    k + 1,
                    n.name,
                    tx[1 - i].sent.load(Ordering::Relaxed),
                ));
                if let Err(e) = n.em.set_mode(to) {
                    errors.push(format!("{}: set_mode({to}): {e}", n.name));
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        if plan.switches > 0 {
            for n in nics {
                if let Err(e) = n.em.set_mode(mode) {
                    errors.push(format!("{}: set_mode({mode}): {e}", n.name));
                }
            }
        }
        // 3. Let the last hold pass and the windows drain, then stop.
        thread::sleep(Duration::from_millis(1200));
        stop.store(true, Ordering::Relaxed);
    });
    // 4. Drain: everything accepted arrives or is written off.
    let settled = |i: usize| {
        let t = &tx[i];
        let r = &nics[1 - i].stack.counts[OWN];
        let missed = (nics[1 - i].missed)() - missed0[1 - i];
        t.sent.load(Ordering::Relaxed)
            <= r.received.load(Ordering::Relaxed)
                + r.late_in_hold.load(Ordering::Relaxed)
                + t.written_off.load(Ordering::Relaxed)
                + missed
    };
    let t = Instant::now();
    while !(settled(0) && settled(1)) && t.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(10));
    }
    if !(settled(0) && settled(1)) {
        for n in nics {
            errors.push(format!("{} not drained: {}", n.name, (n.regs)()));
        }
    }
    for n in nics {
        n.em.down();
    }
    let after = [nics[0].em.stats(), nics[1].em.stats()];
    let missed = [
        (nics[0].missed)() - missed0[0],
        (nics[1].missed)() - missed0[1],
    ];
    let interrupts = nics.iter().map(|n| (n.interrupts)()).sum::<u64>() - intr0;
    let mut lines = Vec::new();
    for i in 0..2 {
        let (t, r) = (&tx[i], &nics[1 - i].stack.counts[OWN]);
        let sent = t.sent.load(Ordering::Relaxed);
        let received = r.received.load(Ordering::Relaxed);
        let off = written_off(&after[i], &after[1 - i]) + missed[1 - i] + disabled_too_long[1 - i];
        let gaps = r.gaps.load(Ordering::Relaxed);
        let trailing = sent.saturating_sub(r.last.load(Ordering::Relaxed));
        let (corrupt, ooo) = (
            r.corrupt.load(Ordering::Relaxed),
            r.out_of_order.load(Ordering::Relaxed),
        );
        let late = r.late_in_hold.load(Ordering::Relaxed);
        lines.push(format!(
            "{} -> {}: sent {sent}, received intact and in order {received}, lost {} ({} purged at {} down; at {}: {} flushed at down, {} errors, {} missed (MPC), {} while disabled longer than QEMU's hold in {} slow down/up), late in QEMU's hold release {late}, corrupt {corrupt}, out of order {ooo}; refused by transmit: {} down, {} queue full (retried)",
            nics[i].name,
            nics[1 - i].name,
            gaps + trailing,
            after[i].tx_purged,
            nics[i].name,
            nics[1 - i].name,
            after[1 - i].rx_flushed,
            after[1 - i].rx_errors,
            missed[1 - i],
            disabled_too_long[1 - i],
            long_downs[1 - i],
            t.refused_down.load(Ordering::Relaxed),
            t.refused_full.load(Ordering::Relaxed),
        ));
        if corrupt + ooo != 0 {
            errors.push(format!(
                "{} -> {}: {corrupt} corrupt, {ooo} out of order",
                nics[i].name,
                nics[1 - i].name
            ));
        }
        if gaps + trailing != off || received + late + off != sent {
            errors.push(format!(
                "{} -> {}: sent {sent} != received {received} + late {late} + lost with a cause {off} (gaps seen {})",
                nics[i].name,
                nics[1 - i].name,
                gaps + trailing
            ));
        }
    }
    let mut diagnostics = Vec::new();
    if !errors.is_empty() {
        for (i, n) in nics.iter().enumerate() {
            diagnostics.push(format!(
                "{} -> {}: missing sequence numbers: {}",
                nics[1 - i].name,
                n.name,
                n.stack.missing_ranges(OWN, 20)
            ));
        }
        diagnostics.push(format!("timeline:\n    {}", timeline.join("\n    ")));
        if let Some(t) = &two {
            diagnostics.extend(t.diagnostics.iter().cloned());
        }
    }
    for (n, st) in nics.iter().zip(&after) {
        if st.pool.in_use() != 0 || st.pool.leaked != 0 || st.pool.dma_errors != 0 {
            errors.push(format!("{} after the final down: {}", n.name, st.pool));
        }
    }
    // One kernel, one big lock: both interfaces report the same counts.
    let big_lock = after[0].big_lock;
    // The modes whose policy never enters the big lock must not take it
    // (a switching run visits the others).
    if plan.switches == 0 && Path::ALL.iter().all(|&p| !mode.locks(p)) && big_lock.total() != 0 {
        errors.push(format!("{mode} took the big lock: {big_lock}"));
    }
    if interrupts == 0 {
        errors.push("no interrupt was delivered".into());
    }
    let (secs, rx, txn, cpu, intr) = measured;
    ModeReport {
        mode,
        label: if plan.switches == 0 {
            mode.name().to_string()
        } else {
            "switching".to_string()
        },
        secs,
        rx_pps: rx as f64 / secs,
        tx_pps: txn as f64 / secs,
        intr_per_sec: intr as f64 / secs,
        cpu_us_per_packet: cpu,
        interrupts,
        big_lock,
        big_lock_window: window_locks,
        two_cpu: two,
        cycles,
        lines,
        after_down: after,
        errors,
        diagnostics,
    }
}

/// Prints the per-mode table (the simulator demo's columns, for QEMU's
/// e1000 pair, then the two-CPU phase's packets/s and its ratio to
/// biglock's), the two-CPU ratios in a line, and the big-lock table.
pub(crate) fn print_tables(reports: &[ModeReport]) {
    let base = reports.iter().find(|r| r.mode == Mode::BigLock);
    let ratio = |v: f64, b: Option<f64>| match b {
        Some(b) if b > 0.0 => format!("{:.2}", v / b),
        _ => "-".into(),
    };
    println!();
    println!(
        "{:<12} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
        "mode",
        "rx pps",
        "tx pps",
        "intr/s",
        "CPU µs/p",
        "pps/BigL",
        "CPU/BigL",
        "2CPU pps",
        "2CPU/BigL",
        "cycles"
    );
    // A rotated phase's total mixes the modes: its line below splits it.
    let two_pps = |r: &ModeReport| {
        r.two_cpu
            .as_ref()
            .filter(|t| t.rotated.is_empty())
            .map(|t| t.tx_pps)
    };
    let two_base = base.and_then(two_pps);
    for r in reports {
        println!(
            "{:<12} {:>9.0} {:>9.0} {:>8.0} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7}",
            r.label,
            r.rx_pps,
            r.tx_pps,
            r.intr_per_sec,
            r.cpu_us_per_packet
                .map_or("-".into(), |c| format!("{c:.1}")),
            ratio(r.rx_pps + r.tx_pps, base.map(|b| b.rx_pps + b.tx_pps)),
            r.cpu_us_per_packet.map_or("-".into(), |c| ratio(
                c,
                base.and_then(|b| b.cpu_us_per_packet)
            )),
            two_pps(r).map_or("-".into(), |p| format!("{p:.0}")),
            two_pps(r).map_or("-".into(), |p| ratio(p, two_base)),
            r.cycles,
        );
    }
    let two: Vec<String> = reports
        .iter()
        .filter(|r| r.mode != Mode::BigLock)
        .filter_map(|r| Some(format!("{} {}", r.label, ratio(two_pps(r)?, two_base))))
        .collect();
    if !two.is_empty() {
        println!(
            "2CPU: two senders, one pinned to each CPU, onto em0 (em1 only receiving); packets/s over biglock's: {}",
            two.join(", ")
        );
    }
    for r in reports {
        let Some(t) = r.two_cpu.as_ref().filter(|t| !t.rotated.is_empty()) else {
            continue;
        };
        let pps = |m: Mode| {
            t.rotated
                .iter()
                .find(|x| x.0 == m)
                .map(|&(_, f, s)| f as f64 / s)
        };
        let base = pps(Mode::BigLock);
        let b = t.rotated.iter().position(|x| x.0 == Mode::BigLock);
        let cells: Vec<String> = t
            .rotated
            .iter()
            .enumerate()
            .map(|(j, &(m, f, s))| {
                let p = f as f64 / s;
                let Some(b) = b.filter(|&b| b != j) else {
                    return format!("{m} {p:.0} pps");
                };
                // The same ratio round by round, each against biglock's
                // slice of that round.
                let mut per_round: Vec<f64> = t
                    .rounds
                    .iter()
                    .filter(|x| x[b] > 0.0)
                    .map(|x| x[j] / x[b])
                    .collect();
                match spread(&mut per_round) {
                    Some((lo, med, hi)) => format!(
                        "{m} {p:.0} ({}; by round {lo:.2}..{hi:.2}, median {med:.2})",
                        ratio(p, base)
                    ),
                    None => format!("{m} {p:.0} ({})", ratio(p, base)),
                }
            })
            .collect();
        println!(
            "2CPU interleaved ({} run: both interfaces switched through every mode, {} rounds of {} ms slices, {:.1} s per mode): {}",
            r.label,
            t.rounds.len(),
            SLICE_MS,
            t.rotated.first().map_or(0.0, |x| x.2),
            cells.join(", ")
        );
    }
    println!();
    println!("big-lock acquisitions per path (0 = runs without it)");
    print!("{:<12}", "mode");
    for p in Path::ALL {
        print!(" {:>10}", p.name());
    }
    println!();
    for r in reports {
        print!("{:<12}", r.label);
        for p in Path::ALL {
            print!(" {:>10}", r.big_lock.get(p));
        }
        println!();
    }
}

/// The smallest, the median (the upper one of an even count) and the
/// largest of `v` (sorted in place), or `None` if it is empty.
fn spread(v: &mut [f64]) -> Option<(f64, f64, f64)> {
    v.sort_by(f64::total_cmp);
    Some((*v.first()?, v[v.len() / 2], *v.last()?))
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_of_round_ratios() {
        assert_eq!(spread(&mut []), None);
        assert_eq!(spread(&mut [1.5]), Some((1.5, 1.5, 1.5)));
        assert_eq!(spread(&mut [2.0, 0.5, 1.0]), Some((0.5, 1.0, 2.0)));
        assert_eq!(spread(&mut [3.0, 0.5, 1.0, 2.0]), Some((0.5, 2.0, 3.0)));
    }
}
