//! Demo: runs the reference em(4) driver in each locking mode on the
//! simulated 8254x and prints packets/s, CPU per packet, big-lock use and
//! the buffer accounting after up/down cycles under load.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use mpsafe_em::harness::{RunConfig, RunReport, gigabit_pps, run};
use mpsafe_em::{Mode, Path, WireRate};

const HELP: &str = "\
mpsafe-em: the reference em(4) driver on a simulated Intel 8254x NIC

Runs the driver in each locking mode with receive traffic from the simulated
wire and a paced transmit load, prints a table (rx/tx packets per second,
drops, interrupts, process CPU time per packet, ratios to BigLock, big-lock
acquisitions per path), then brings the interface down and up under load and
prints the buffer accounting, which must end with 0 in use and 0 leaked.

USAGE: mpsafe-em [OPTIONS]

OPTIONS:
  --mode <MODE>        biglock, rx-unlocked, mpsafe, serialized or all
                       [default: all]
  --seconds <S>        measured seconds per mode, 0.1 to 60 [default: 2]
  --rate <RATE>        offered packets/s per queue and direction: a number,
                       `line` (gigabit line rate for the frame size) or `max`
                       (the wire fills every posted descriptor; tx at line
                       rate) [default: line]
  --frame-size <B>     frame length in bytes, 60 to 1514 [default: 60]
  --queues <N>         queue pairs, 1 or 2 [default: 1]
  --cycles <N>         up/down cycles under load after each run [default: 50]
  --switch-every <S>   switch the mode at run time every S seconds (0.01 to
                       60) during each run, through all four modes in turn
                       starting from the run's mode [default: never]
  -h, --help           this text
";

struct Args {
    modes: Vec<Mode>,
    seconds: f64,
    rate: Option<u64>,
    max: bool,
    frame: u16,
    queues: usize,
    cycles: u32,
    switch_every: Option<f64>,
}

fn parse() -> Result<Option<Args>, String> {
    let mut a = Args {
        modes: Mode::ALL.to_vec(),
        seconds: 2.0,
        rate: None,
        max: false,
        frame: 60,
        queues: 1,
        cycles: 50,
        switch_every: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let known = [
            "--mode",
            "--seconds",
            "--rate",
            "--frame-size",
            "--queues",
            "--cycles",
            "--switch-every",
        ];
        if !known.contains(&name.as_str()) {
            return Err(format!("unknown option {flag:?} (see --help)"));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .ok_or_else(|| format!("{name} needs a value (see --help)"))?,
        };
        let bad = |what: &str| format!("{name} {value:?}: {what}");
        match name.as_str() {
            "--mode" => {
                a.modes = if value == "all" {
                    Mode::ALL.to_vec()
                } else {
                    vec![value.parse::<Mode>()?]
                }
            }
            "--seconds" => {
                a.seconds = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.1..=60.0).contains(s))
                    .ok_or_else(|| bad("expected seconds between 0.1 and 60"))?
            }
            "--rate" => match value.as_str() {
                "line" => (a.rate, a.max) = (None, false),
                "max" => (a.rate, a.max) = (None, true),
                v => {
                    a.rate = Some(
                        v.parse::<u64>()
                            .ok()
                            .filter(|r| (1..=100_000_000).contains(r))
                            .ok_or_else(|| {
                                bad("expected packets/s (1 to 100000000), line or max")
                            })?,
                    )
                }
            },
            "--frame-size" => {
                a.frame = value
                    .parse::<u16>()
                    .ok()
                    .filter(|f| (60..=1514).contains(f))
                    .ok_or_else(|| bad("expected a frame length from 60 to 1514 bytes"))?
            }
            "--queues" => {
                a.queues = value
                    .parse::<usize>()
                    .ok()
                    .filter(|q| (1..=mpsafe_em::device::MAX_QUEUES).contains(q))
                    .ok_or_else(|| bad("the simulated device has 1 or 2 queue pairs"))?
            }
            "--cycles" => {
                a.cycles = value
                    .parse::<u32>()
                    .ok()
                    .filter(|c| *c <= 10_000)
                    .ok_or_else(|| bad("expected 0 to 10000"))?
            }
            "--switch-every" => {
                a.switch_every = Some(
                    value
                        .parse::<f64>()
                        .ok()
                        .filter(|s| (0.01..=60.0).contains(s))
                        .ok_or_else(|| bad("expected seconds between 0.01 and 60"))?,
                )
            }
            _ => unreachable!(),
        }
    }
    Ok(Some(a))
}

fn ratio(x: f64, base: Option<f64>) -> String {
    match base {
        Some(b) if b > 0.0 => format!("{:.2}x", x / b),
        _ => "-".into(),
    }
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("mpsafe-em: {e}");
            return ExitCode::from(2);
        }
    };
    let line = gigabit_pps(args.frame);
    let rate = args.rate.unwrap_or(line);
    let wire = if args.max {
        WireRate::Unlimited
    } else {
        WireRate::Pps(rate)
    };
    println!(
        "simulated 8254x, {} queue(s), {}-byte frames, rx {} and tx {} pkt/s per queue, {:.1} s per mode, {} up/down cycles",
        args.queues,
        args.frame,
        if args.max {
            "max".to_string()
        } else {
            rate.to_string()
        },
        rate,
        args.seconds,
        args.cycles
    );
    let mut reports: Vec<RunReport> = Vec::new();
    for &mode in &args.modes {
        let mut cfg = RunConfig::new(mode);
        cfg.duration = Duration::from_secs_f64(args.seconds);
        cfg.wire = wire;
        cfg.tx_pps = rate;
        cfg.frame_size = args.frame;
        cfg.queues = args.queues;
        cfg.cycles = args.cycles;
        cfg.switch_every = args.switch_every.map(Duration::from_secs_f64);
        // A live progress line on a terminal; one line per mode in a log.
        let live = std::io::stderr().is_terminal();
        if !live {
            eprintln!("  running {mode} for {} s", args.seconds);
        }
        let r = run(&cfg, |f| {
            if live {
                eprint!("\r  running {mode:<12} {:>3.0}%", f * 100.0);
                let _ = std::io::stderr().flush();
            }
        });
        if live {
            eprint!("\r{:40}\r", "");
        }
        match r {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("mpsafe-em: {mode}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }

    let base = reports.iter().find(|r| r.mode == Mode::BigLock);
    let (base_pps, base_cpu) = (
        base.map(|r| r.rx_pps + r.tx_pps),
        base.and_then(|r| r.cpu_us_per_packet),
    );
    println!();
    println!(
        "{:<12} {:>10} {:>10} {:>9} {:>8} {:>8} {:>8} {:>10} {:>9}",
        "mode",
        "rx pps",
        "tx pps",
        "missed",
        "qdrops",
        "intr/s",
        "CPU µs/p",
        "pps/BigL",
        "CPU/BigL"
    );
    for r in &reports {
        let secs = r.elapsed.as_secs_f64();
        let cpu = r
            .cpu_us_per_packet
            .map_or("-".into(), |c| format!("{c:.3}"));
        println!(
            "{:<12} {:>10.0} {:>10.0} {:>9} {:>8} {:>8.0} {:>8} {:>10} {:>9}",
            r.mode.name(),
            r.rx_pps,
            r.tx_pps,
            r.missed,
            r.qdrops,
            r.interrupts as f64 / secs,
            cpu,
            ratio(r.rx_pps + r.tx_pps, base_pps),
            r.cpu_us_per_packet
                .map_or("-".into(), |c| ratio(c, base_cpu)),
        );
    }
    println!();
    println!("big-lock acquisitions per path (the DragonFly 'M' marker: 0 = runs without it)");
    print!("{:<12}", "mode");
    for p in Path::ALL {
        print!(" {:>10}", p.name());
    }
    println!();
    for r in &reports {
        print!("{:<12}", r.mode.name());
        for p in Path::ALL {
            print!(" {:>10}", r.big_lock.get(p));
        }
        println!();
    }
    println!();
    let mut ok = true;
    for r in &reports {
        println!(
            "{} after {} up/down cycles under load and the final down:",
            r.mode, r.cycles
        );
        for line in r.after_down.to_string().lines() {
            println!("  {line}");
        }
        if r.after_down.mode_switches > 0 {
            println!(
                "  {} runtime mode switches (started in {}, ended in {})",
                r.after_down.mode_switches, r.mode, r.after_down.mode
            );
        }
        match r.conservation() {
            Ok(()) => println!("  accounting: every frame and buffer accounted for"),
            Err(e) => {
                ok = false;
                println!("  ACCOUNTING ERROR: {e}");
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
