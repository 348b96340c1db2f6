//! Demo: runs the reference em(4) driver in each locking mode on the
//! simulated 8254x and prints packets/s, drops, CPU per packet (driver and
//! simulated device apart), big-lock use, the buffer table at the end of
//! each measurement and the buffer accounting after up/down cycles under
//! load; as tables, JSON or CSV (see `--help`).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use mpsafe_em_demo::cli::{self, Action, Args, Format, Rate, StackKind};
use mpsafe_em_demo::plot::PlotFile;
use mpsafe_em_demo::report::{
    AfterUp, AfterUpPoint, BufferTable, ModeRecord, Report, RunFigures, Sample,
};
use mpsafe_em_demo::tcp::{self, Meddle};
use mpsafe_em_sim::harness::{RunConfig, RunReport, gigabit_pps, run};
use mpsafe_em_sim::{Path, WireRate};

fn figures(r: &RunReport) -> RunFigures {
    let secs = r.elapsed.as_secs_f64();
    RunFigures {
        elapsed_s: secs,
        rx_pps: r.rx_pps,
        tx_pps: r.tx_pps,
        offered_rx_pps: r.offered_rx_pps,
        rx_missed: r.missed,
        tx_qdrops: r.qdrops,
        interrupts_per_s: r.interrupts as f64 / secs,
        process_cpu_s: r.process_cpu.map(|d| d.as_secs_f64()),
        device_cpu_s: r.device_cpu.map(|d| d.as_secs_f64()),
        intr_cpu_s: r.intr_cpu.map(|d| d.as_secs_f64()),
        big_lock: Path::ALL
            .iter()
            .map(|p| (p.name().to_string(), r.big_lock_window.get(*p)))
            .collect(),
        tx_call: r.tx_call,
    }
}

fn samples(r: &RunReport, run: u32) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut prev: Option<&mpsafe_em_sim::harness::Snapshot> = None;
    for s in &r.samples {
        let (dt, rx, tx, missed, qdrops) = match prev {
            Some(p) => (
                (s.t - p.t).as_secs_f64(),
                s.rx - p.rx,
                s.tx - p.tx,
                s.missed - p.missed,
                s.qdrops - p.qdrops,
            ),
            None => (s.t.as_secs_f64(), s.rx, s.tx, s.missed, s.qdrops),
        };
        let per_s = |n: u64| if dt > 0.0 { n as f64 / dt } else { 0.0 };
        out.push(Sample {
            mode: r.mode.name().to_string(),
            run,
            t_s: s.t.as_secs_f64(),
            rx_pps: per_s(rx),
            tx_pps: per_s(tx),
            rx_missed: missed,
            tx_qdrops: qdrops,
            cwm: s.rings.iter().map(|(c, _)| *c).collect(),
            alive: s.rings.iter().map(|(_, a)| *a).collect(),
        });
        prev = Some(s);
    }
    out
}

fn main() -> ExitCode {
    let args = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Action::Run(a)) => a,
        Ok(Action::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Action::Version) => {
            println!("mpsafe-em-demo {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mpsafe-em-demo: {e}");
            return ExitCode::from(2);
        }
    };
    let run = match args.stack {
        StackKind::Sink => demo,
        StackKind::Tcp => tcp_demo,
    };
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mpsafe-em-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every mode `args.repeat` times, interleaved (mode A, B, C, A, B,
/// C...) so that load from elsewhere on the machine falls on every mode
/// alike, prints the report, and returns whether the accounting held.
fn demo(args: &Args) -> Result<bool, String> {
    // Created before the runs: a path that cannot be written is said now,
    // not after minutes of measuring.
    let plot = args
        .plot
        .as_deref()
        .map(PlotFile::create)
        .transpose()
        .map_err(|e| format!("--plot: {e}"))?;
    let line = gigabit_pps(args.frame);
    let (wire, rate) = match args.rate {
        Rate::Line => (WireRate::Pps(line), line),
        Rate::Max => (WireRate::Unlimited, line),
        Rate::Pps(p) => (WireRate::Pps(p), p),
    };
    let text = args.format == Format::Text;
    let rate_name = match args.rate {
        Rate::Max => "max".to_string(),
        _ => rate.to_string(),
    };
    if text {
        println!(
            "simulated 8254x, {} queue(s), {}-byte frames, rx {} and tx {} pkt/s per queue, {} run(s) of {:.1} s per mode, {} up/down cycles, tx bundle {}, {} start",
            args.queues,
            args.frame,
            rate_name,
            rate,
            args.repeat,
            args.seconds,
            args.cycles,
            args.bundle.unwrap_or(1),
            args.start
        );
    }
    let mut records: Vec<ModeRecord> = args
        .modes
        .iter()
        .map(|m| ModeRecord {
            mode: m.name().to_string(),
            ..ModeRecord::default()
        })
        .collect();
    let mut series = Vec::new();
    let mut finals = Vec::new();
    let live = std::io::stderr().is_terminal();
    // `--watermarks both`: every repetition twice, reset then kept (the
    // policy acts only at `up`, so the measured window is alike either
    // way); `run` numbers a mode's runs from 1 in that order.
    let policies = if args.watermarks_both {
        vec![false, true]
    } else {
        vec![args.keep_watermarks]
    };
    let schedule = (1..=args.repeat).flat_map(|rep| {
        let p = &policies;
        p.iter()
            .enumerate()
            .map(move |(k, &keep)| (rep, keep, (rep - 1) * p.len() as u32 + k as u32 + 1))
    });
    for (rep, keep, run_no) in schedule {
        for (i, &mode) in args.modes.iter().enumerate() {
            let mut cfg = RunConfig::new(mode);
            cfg.duration = Duration::from_secs_f64(args.seconds);
            cfg.wire = wire;
            cfg.tx_pps = rate;
            cfg.frame_size = args.frame;
            cfg.queues = args.queues;
            cfg.cycles = args.cycles;
            cfg.interval = args.interval.map(Duration::from_secs_f64);
            cfg.after_up = args.after_up;
            cfg.keep_watermarks = keep;
            if let Some(b) = args.bundle {
                cfg.tx_bundle = b;
            }
            cfg.tx_start = args.start;
            cfg.producers = args.producers;
            cfg.tx_latency = args.tx_latency;
            cfg.switch_every = args.switch_every.map(Duration::from_secs_f64);
            // A live progress line on a terminal; one line per run in a log.
            if !live {
                eprintln!(
                    "  running {mode} for {} s ({rep}/{})",
                    args.seconds, args.repeat
                );
            }
            let r = run(&cfg, |f| {
                if live {
                    eprint!(
                        "\r  running {mode:<12} {rep}/{} {:>3.0}%",
                        args.repeat,
                        f * 100.0
                    );
                    let _ = std::io::stderr().flush();
                }
            });
            if live {
                eprint!("\r{:50}\r", "");
            }
            let r = r.map_err(|e| format!("{mode}: {e}"))?;
            let rec = &mut records[i];
            rec.runs.push(figures(&r));
            rec.buffers = BufferTable {
                pool: r.at_end.pool,
                rings: r.at_end.rxrings.clone(),
            };
            rec.cycles += u64::from(r.cycles);
            if let Some(p) = &r.after_up {
                rec.after_up.push(AfterUp {
                    kept: keep,
                    cwm_before: p.cwm_before,
                    cwm_at_up: p.cwm_at_up,
                    ms_to_steady: p.to_steady.map(|d| d.as_secs_f64() * 1e3),
                    rx_missed_first_s: p.missed,
                    rx_first_s: p.rx,
                    trace: p
                        .trace
                        .iter()
                        .map(|q| AfterUpPoint {
                            ms: q.t.as_secs_f64() * 1e3,
                            cwm: q.cwm,
                            rx_missed: q.missed,
                            rx: q.rx,
                        })
                        .collect(),
                });
            }
            if let Err(e) = r.conservation() {
                rec.accounting_error.get_or_insert(e);
            }
            series.extend(samples(&r, run_no));
            finals.push(r);
        }
    }
    let ok = records.iter().all(|r| r.accounting_error.is_none());
    let report = Report {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: vec![
            ("queues".into(), args.queues.to_string()),
            ("frame_size".into(), args.frame.to_string()),
            ("rate".into(), rate_name),
            ("tx_pps_per_queue".into(), rate.to_string()),
            ("seconds".into(), args.seconds.to_string()),
            ("repeat".into(), args.repeat.to_string()),
            ("cycles".into(), args.cycles.to_string()),
            ("tx_bundle".into(), args.bundle.unwrap_or(1).to_string()),
            ("tx_start".into(), args.start.to_string()),
            (
                "keep_watermarks".into(),
                if args.watermarks_both {
                    "both".into()
                } else {
                    args.keep_watermarks.to_string()
                },
            ),
            (
                "warmup_s".into(),
                RunConfig::new(args.modes[0])
                    .warmup
                    .as_secs_f64()
                    .to_string(),
            ),
            (
                "switch_every".into(),
                args.switch_every.map_or("never".into(), |s| s.to_string()),
            ),
        ],
        modes: records,
        samples: series,
    };
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| e.to_string();
    match args.format {
        Format::Json => writeln!(out, "{}", report.to_json()).map_err(io)?,
        Format::Csv => write!(out, "{}", report.to_csv()).map_err(io)?,
        Format::Text => {
            if !report.samples.is_empty() {
                writeln!(out).map_err(io)?;
                report.write_samples_text(&mut out).map_err(io)?;
            }
            report.write_text(&mut out).map_err(io)?;
            writeln!(out).map_err(io)?;
            let last = args.modes.len() * policies.len();
            for r in finals.iter().rev().take(last).rev() {
                writeln!(
                    out,
                    "{} after {} up/down cycles under load and the final down:",
                    r.mode, r.cycles
                )
                .map_err(io)?;
                for line in r.after_down.to_string().lines() {
                    writeln!(out, "  {line}").map_err(io)?;
                }
                if r.after_down.mode_switches > 0 {
                    writeln!(
                        out,
                        "  {} runtime mode switches (started in {}, ended in {})",
                        r.after_down.mode_switches, r.mode, r.after_down.mode
                    )
                    .map_err(io)?;
                }
            }
            for m in &report.modes {
                match &m.accounting_error {
                    None => writeln!(
                        out,
                        "{}: accounting: every frame and buffer accounted for",
                        m.mode
                    ),
                    Some(e) => writeln!(out, "{}: ACCOUNTING ERROR: {e}", m.mode),
                }
                .map_err(io)?;
            }
        }
    }
    drop(out);
    if let Some(p) = plot {
        let path = p.path().display().to_string();
        p.write(&report).map_err(|e| format!("--plot: {e}"))?;
        eprintln!("  figure written to {path}");
    }
    Ok(ok)
}

/// `--stack tcp`: TCP between two cabled simulated NICs, in each mode
/// `args.repeat` times (interleaved), every byte and buffer checked; prints
/// goodput and CPU per MB per run, and returns whether every run passed.
fn tcp_demo(args: &Args) -> Result<bool, String> {
    const SMALL: u64 = 512 << 10;
    let flows = tcp::flows(args.tcp_mib << 20, SMALL);
    println!(
        "TCP over smoltcp between two simulated 8254x NICs joined by a cable: {} MiB em0->em1 \
         and 4 x {} KiB both ways at once, {} run(s) per mode",
        args.tcp_mib,
        SMALL >> 10,
        args.repeat
    );
    println!();
    println!(
        "{:<12} {:>4} {:>10} {:>9} {:>11} {:>8} {:>8}",
        "mode", "run", "Mbit/s", "time s", "CPU ms/MB", "missed", "qfull"
    );
    let mut ok = true;
    let mut pinned = true;
    for run in 1..=args.repeat {
        for &mode in &args.modes {
            match tcp::run_sim(
                mode,
                &flows,
                Meddle::None,
                std::time::Duration::from_secs(300),
            ) {
                Ok(r) => {
                    let t = &r.tcp;
                    pinned &= t.pinned;
                    println!(
                        "{:<12} {:>4} {:>10.1} {:>9.3} {:>11} {:>8} {:>8}",
                        mode.name(),
                        run,
                        t.mbit_per_s(),
                        t.elapsed.as_secs_f64(),
                        t.cpu_ms_per_mb()
                            .map_or_else(|| "-".to_string(), |c| format!("{c:.2}")),
                        r.devices[0].missed + r.devices[1].missed,
                        t.dev[0].tx_queue_full + t.dev[1].tx_queue_full,
                    );
                }
                Err(e) => {
                    println!("{:<12} {:>4} FAILED: {e}", mode.name(), run);
                    ok = false;
                }
            }
        }
    }
    println!();
    println!(
        "CPU = the process's, every thread (poll loops, interrupts, tasks and the simulated \
         wire) over the run; missed = frames the receivers had no descriptor for (TCP \
         retransmits); qfull = times a stack found its send queue full"
    );
    println!(
        "{}",
        if pinned {
            "each NIC's poll thread ran pinned to a CPU of its own"
        } else {
            "the poll threads were not pinned (fewer than two CPUs allowed, or pinning refused)"
        }
    );
    if ok {
        println!(
            "every flow's bytes arrived once, in order, hashes equal; every buffer back in its pool"
        );
    }
    Ok(ok)
}
