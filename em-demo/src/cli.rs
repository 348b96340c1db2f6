//! The demo's command line, parsed from `OsString`s (`std::env::args_os`),
//! so a non-UTF-8 argument is an error message, not a panic.
//!
//! Hand-written rather than a dependency: the demo has a dozen flags of the
//! forms `--flag`, `--flag VALUE` and `--flag=VALUE`, and each value has its
//! own range check and message here anyway.

use std::ffi::OsString;
use std::fmt;

use mpsafe_em_sim::{Mode, TxStart};

/// The demo's usage text (`--help`).
pub const HELP: &str = "\
mpsafe-em-demo: the reference em(4) driver on a simulated Intel 8254x NIC

Runs the driver in each locking mode with receive traffic from the simulated
wire and a paced transmit load, prints a table (rx/tx packets per second,
drops by cause, interrupts, CPU time per packet split into driver and
simulated device, ratios to BigLock, big-lock acquisitions per path), the
receive ring table at the end of each measurement, then brings the interface
down and up under load and prints the buffer accounting, which must end with
0 in use and 0 leaked. With --repeat N each mode runs N times (interleaved)
and the table gives medians and spreads.

USAGE: mpsafe-em-demo [OPTIONS]

OPTIONS:
  --mode <MODES>       comma list of modes (any case), or all [default: all]
  --seconds <S>        measured seconds per run, 0.1 to 60 [default: 2]
  --repeat <N>         runs per mode, 1 to 50; medians and spreads [default: 1]
  --rate <RATE>        offered packets/s per queue and direction: a number,
                       `line` (gigabit line rate for the frame size) or `max`
                       (the wire fills every posted descriptor; tx at line
                       rate) [default: line]
  --frame-size <B>     frame length in bytes, 60 to 1514 [default: 60]
  --queues <N>         queue pairs, 1 or 2 [default: 1]
  --cycles <N>         up/down cycles under load after each run [default: 50]
  --bundle <N>         transmit bundling: start the queue once per N packets
                       (1 to 256, at most the send queue's 256; 1 = start
                       on every packet) [default: 1]
  --start <S>          where transmit runs the start routine: direct (on
                       the transmitting thread) or delegated (a task thread
                       per send queue, seed 002's taskq) [default: direct]
  --producers <N>      transmitting threads per queue, 1 to 8, sharing the
                       rate: with 2 or more, CPUs contend for each send
                       queue's start routine [default: 1]
  --tx-latency         time every transmit call in the measurement and
                       print p50, p99, p99.9 and max per mode (the caller's
                       time: as the start routine's owner it also sends what
                       the other producers queued)
  --keep-watermarks    keep each rx ring's current watermark across down/up
                       instead of restarting it at the low watermark
  --watermarks <W>     reset (the default), keep (= --keep-watermarks) or
                       both: every run twice, watermarks reset then kept
                       (with --after-up, both curves in one figure)
  --after-up           after each run, bring the interface down and up once
                       and report rx drops and the time to regain the
                       watermark in the first second after `up`
  --switch-every <S>   switch the mode at run time every S seconds (0.01 to
                       60) during each run, through all modes in turn
                       starting from the run's mode [default: never]
  --interval <S>       also sample every S seconds (0.01 to 60): time, rx/tx
                       pps, drops and each rx ring's watermark
  --format <F>         text, json or csv [default: text]
  --plot <FILE.svg>    also draw the report as one SVG figure (any format):
                       efficiency and big-lock bars, with --interval the
                       time series, with --after-up the first second
  --json               same as --format json
  --stack <S>          what receives the frames: sink (count and free; the
                       measurements above) or tcp: TCP over smoltcp between
                       two simulated NICs joined by a cable, a bulk flow
                       em0 to em1 and four of 512 KiB both ways, every byte
                       checked; prints goodput and CPU per MB per mode
                       (uses --mode, --repeat and --tcp-mib only)
                       [default: sink]
  --tcp-mib <N>        the bulk flow of --stack tcp in MiB, 1 to 1024
                       [default: 32]
  -V, --version        print the version
  -h, --help           this text
";

/// Offered load per queue and direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    /// Gigabit line rate for the frame size.
    Line,
    /// The wire fills every posted descriptor (tx at line rate).
    Max,
    /// This many packets per second.
    Pps(u64),
}

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Tables for people.
    Text,
    /// One JSON document: configuration, one record per mode, samples.
    Json,
    /// One CSV row per mode; with `--interval`, then a blank line and one
    /// row per sample.
    Csv,
}

/// What receives the frames (`--stack`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// A sink that counts and frees: the driver measured alone.
    Sink,
    /// TCP over smoltcp between two cabled NICs ([`crate::tcp`]).
    Tcp,
}

/// What the demo runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Args {
    /// Modes, in the order given, without duplicates.
    pub modes: Vec<Mode>,
    /// Measured seconds per run.
    pub seconds: f64,
    /// Runs per mode.
    pub repeat: u32,
    /// Offered load.
    pub rate: Rate,
    /// Frame length in bytes.
    pub frame: u16,
    /// Queue pairs.
    pub queues: usize,
    /// Up/down cycles after each run.
    pub cycles: u32,
    /// Transmit bundling, if set.
    pub bundle: Option<usize>,
    /// Where transmit runs the start routine.
    pub start: TxStart,
    /// Keep rx watermarks across down/up.
    pub keep_watermarks: bool,
    /// Run everything twice, watermarks reset then kept (`--watermarks
    /// both`); `keep_watermarks` is then false.
    pub watermarks_both: bool,
    /// Probe the first second after `up`.
    pub after_up: bool,
    /// Switch the mode at run time this often (seconds), if set.
    pub switch_every: Option<f64>,
    /// Sampling interval in seconds, if set.
    pub interval: Option<f64>,
    /// Output format.
    pub format: Format,
    /// Where to draw the figure (`--plot`), if anywhere: a `.svg` name.
    pub plot: Option<std::path::PathBuf>,
    /// What receives the frames.
    pub stack: StackKind,
    /// The bulk flow of [`StackKind::Tcp`], in MiB.
    pub tcp_mib: u64,
    /// Transmitting threads per queue.
    pub producers: usize,
    /// Time every `transmit` call.
    pub tx_latency: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            modes: Mode::ALL.to_vec(),
            seconds: 2.0,
            repeat: 1,
            rate: Rate::Line,
            frame: 60,
            queues: 1,
            cycles: 50,
            bundle: None,
            start: TxStart::Direct,
            keep_watermarks: false,
            watermarks_both: false,
            after_up: false,
            switch_every: None,
            interval: None,
            format: Format::Text,
            plot: None,
            stack: StackKind::Sink,
            tcp_mib: 32,
            producers: 1,
            tx_latency: false,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Run the measurements.
    Run(Args),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
}

/// A command line the demo cannot run, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (see --help)", self.0)
    }
}

impl std::error::Error for CliError {}

/// `s` without case, `-` or `_`: "RxUnlocked", "rx_unlocked" and
/// "rx-unlocked" are one name.
fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Parses a comma list of mode names (any case, `-`/`_` optional) or `all`.
///
/// # Errors
///
/// The first unknown or empty name, with the valid ones.
pub fn parse_modes(list: &str) -> Result<Vec<Mode>, CliError> {
    let mut modes = Vec::new();
    for name in list.split(',').map(str::trim) {
        if name.eq_ignore_ascii_case("all") {
            for m in Mode::ALL {
                if !modes.contains(&m) {
                    modes.push(m);
                }
            }
            continue;
        }
        let m = Mode::ALL
            .into_iter()
            .find(|m| fold(m.name()) == fold(name) && !name.is_empty())
            .ok_or_else(|| {
                let valid: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
                CliError(format!(
                    "--mode: unknown mode {name:?}: expected {} or all, comma-separated",
                    valid.join(", ")
                ))
            })?;
        if !modes.contains(&m) {
            modes.push(m);
        }
    }
    Ok(modes)
}

fn number<T: std::str::FromStr + PartialOrd>(
    name: &str,
    value: &str,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<T, CliError> {
    value
        .parse::<T>()
        .ok()
        .filter(|v| range.contains(v))
        .ok_or_else(|| CliError(format!("{name} {value:?}: expected {what}")))
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// [`CliError`] for an unknown flag, a missing or out-of-range value, or an
/// argument that is not UTF-8.
pub fn parse<I>(args: I) -> Result<Action, CliError>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    let mut a = Args::default();
    let mut it = args.into_iter().map(Into::into);
    while let Some(raw) = it.next() {
        let flag = raw.into_string().map_err(|raw| {
            CliError(format!(
                "argument {:?} is not valid UTF-8",
                raw.to_string_lossy()
            ))
        })?;
        match flag.as_str() {
            "-h" | "--help" => return Ok(Action::Help),
            "-V" | "--version" => return Ok(Action::Version),
            "--json" => {
                a.format = Format::Json;
                continue;
            }
            "--keep-watermarks" => {
                a.keep_watermarks = true;
                a.watermarks_both = false;
                continue;
            }
            "--after-up" => {
                a.after_up = true;
                continue;
            }
            "--tx-latency" => {
                a.tx_latency = true;
                continue;
            }
            _ => {}
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (flag.clone(), None),
        };
        const VALUED: [&str; 17] = [
            "--mode",
            "--seconds",
            "--repeat",
            "--rate",
            "--frame-size",
            "--queues",
            "--cycles",
            "--bundle",
            "--start",
            "--interval",
            "--switch-every",
            "--format",
            "--watermarks",
            "--plot",
            "--stack",
            "--tcp-mib",
            "--producers",
        ];
        if !VALUED.contains(&name.as_str()) {
            return Err(CliError(format!("unknown option {flag:?}")));
        }
        let value = match inline {
            Some(v) => v,
            None => match it.next() {
                None => return Err(CliError(format!("{name} needs a value"))),
                Some(v) => v.into_string().map_err(|v| {
                    CliError(format!(
                        "{name}: value {:?} is not valid UTF-8",
                        v.to_string_lossy()
                    ))
                })?,
            },
        };
        let v = value.as_str();
        match name.as_str() {
            "--mode" => a.modes = parse_modes(v)?,
            "--seconds" => a.seconds = number(&name, v, 0.1..=60.0, "seconds from 0.1 to 60")?,
            "--repeat" => a.repeat = number(&name, v, 1..=50, "runs per mode from 1 to 50")?,
            "--rate" => {
                a.rate = match v.to_ascii_lowercase().as_str() {
                    "line" => Rate::Line,
                    "max" => Rate::Max,
                    _ => Rate::Pps(number(
                        &name,
                        v,
                        1..=100_000_000,
                        "packets/s (1 to 100000000), line or max",
                    )?),
                }
            }
            "--frame-size" => {
                a.frame = number(&name, v, 60..=1514, "a frame length from 60 to 1514 bytes")?
            }
            "--queues" => {
                a.queues = number(
                    &name,
                    v,
                    1..=mpsafe_em_sim::device::MAX_QUEUES,
                    "1 or 2: the simulated device's queue pairs",
                )?
            }
            "--cycles" => a.cycles = number(&name, v, 0..=10_000, "0 to 10000")?,
            "--bundle" => a.bundle = Some(number(&name, v, 1..=256, "1 to 256 packets")?),
            "--start" => a.start = v.parse().map_err(|e| CliError(format!("{name}: {e}")))?,
            "--interval" => {
                a.interval = Some(number(&name, v, 0.01..=60.0, "seconds from 0.01 to 60")?)
            }
            "--switch-every" => {
                a.switch_every = Some(number(&name, v, 0.01..=60.0, "seconds from 0.01 to 60")?)
            }
            "--format" => {
                a.format = match v.to_ascii_lowercase().as_str() {
                    "text" => Format::Text,
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    _ => {
                        return Err(CliError(format!(
                            "--format {v:?}: expected text, json or csv"
                        )));
                    }
                }
            }
            "--watermarks" => {
                (a.keep_watermarks, a.watermarks_both) = match v.to_ascii_lowercase().as_str() {
                    "reset" => (false, false),
                    "keep" => (true, false),
                    "both" => (false, true),
                    _ => {
                        return Err(CliError(format!(
                            "--watermarks {v:?}: expected reset, keep or both"
                        )));
                    }
                }
            }
            "--plot" => {
                let path = std::path::PathBuf::from(v);
                crate::plot::check_name(&path).map_err(|e| CliError(format!("--plot: {e}")))?;
                a.plot = Some(path);
            }
            "--stack" => {
                a.stack = match v.to_ascii_lowercase().as_str() {
                    "sink" => StackKind::Sink,
                    "tcp" => StackKind::Tcp,
                    _ => return Err(CliError(format!("--stack {v:?}: expected sink or tcp"))),
                }
            }
            "--tcp-mib" => a.tcp_mib = number(&name, v, 1..=1024, "MiB from 1 to 1024")?,
            "--producers" => a.producers = number(&name, v, 1..=8, "1 to 8 threads per queue")?,
            _ => unreachable!("every name in VALUED has an arm"),
        }
    }
    check_stack(&a)?;
    Ok(Action::Run(a))
}

/// `--stack tcp` runs transfers, not the sink's measurements: a flag of
/// those would be ignored, so it is refused, named.
fn check_stack(a: &Args) -> Result<(), CliError> {
    let d = Args::default();
    let unused: Vec<&str> = match a.stack {
        StackKind::Sink => (a.tcp_mib != d.tcp_mib)
            .then_some("--tcp-mib")
            .into_iter()
            .collect(),
        StackKind::Tcp => [
            (a.seconds != d.seconds, "--seconds"),
            (a.rate != d.rate, "--rate"),
            (a.frame != d.frame, "--frame-size"),
            (a.queues != d.queues, "--queues"),
            (a.cycles != d.cycles, "--cycles"),
            (a.bundle != d.bundle, "--bundle"),
            (a.start != d.start, "--start"),
            (a.keep_watermarks || a.watermarks_both, "--watermarks"),
            (a.after_up, "--after-up"),
            (a.switch_every.is_some(), "--switch-every"),
            (a.interval.is_some(), "--interval"),
            (a.format != d.format, "--format"),
            (a.plot.is_some(), "--plot"),
            (a.producers != d.producers, "--producers"),
            (a.tx_latency, "--tx-latency"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect(),
    };
    if unused.is_empty() {
        Ok(())
    } else {
        let stack = if a.stack == StackKind::Tcp {
            "tcp"
        } else {
            "sink"
        };
        Err(CliError(format!(
            "--stack {stack} does not use {}",
            unused.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, CliError> {
        match parse(args.iter().copied())? {
            Action::Run(a) => Ok(a),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        assert_eq!(run(&[]).unwrap(), Args::default());
        assert_eq!(Args::default().modes, Mode::ALL.to_vec());
    }

    #[test]
    fn modes_any_case_and_comma_lists() {
        assert_eq!(run(&["--mode", "MPSAFE"]).unwrap().modes, [Mode::Mpsafe]);
        assert_eq!(
            run(&["--mode=RxUnlocked,biglock"]).unwrap().modes,
            [Mode::RxUnlocked, Mode::BigLock]
        );
        assert_eq!(
            run(&["--mode", "rx_unlocked, Rx-Unlocked"]).unwrap().modes,
            [Mode::RxUnlocked]
        );
        assert_eq!(
            run(&["--mode", "mpsafe,ALL"]).unwrap().modes[0],
            Mode::Mpsafe
        );
        assert_eq!(
            run(&["--mode", "mpsafe,ALL"]).unwrap().modes.len(),
            Mode::ALL.len()
        );
        for bad in ["", "mp", "biglock,", "fast"] {
            let e = run(&["--mode", bad]).unwrap_err();
            assert!(e.0.contains("unknown mode"), "{bad:?}: {e}");
            assert!(e.to_string().contains("biglock"), "{e}");
        }
    }

    #[test]
    fn values_inline_or_next_and_checked() {
        let a = run(&[
            "--seconds=0.5",
            "--repeat",
            "5",
            "--rate",
            "MAX",
            "--queues=2",
            "--bundle",
            "16",
            "--start=Delegated",
            "--interval",
            "0.1",
            "--switch-every=0.5",
            "--format",
            "CSV",
            "--keep-watermarks",
            "--after-up",
            "--cycles",
            "0",
            "--frame-size",
            "1514",
        ])
        .unwrap();
        assert_eq!(a.seconds, 0.5);
        assert_eq!(a.repeat, 5);
        assert_eq!(a.rate, Rate::Max);
        assert_eq!(a.queues, 2);
        assert_eq!(a.bundle, Some(16));
        assert_eq!(a.start, TxStart::Delegated);
        assert_eq!(a.interval, Some(0.1));
        assert_eq!(a.switch_every, Some(0.5));
        assert_eq!(a.format, Format::Csv);
        assert!(a.keep_watermarks && a.after_up);
        assert_eq!((a.cycles, a.frame), (0, 1514));
        assert_eq!(run(&["--rate", "1000"]).unwrap().rate, Rate::Pps(1000));
        assert_eq!(run(&["--json"]).unwrap().format, Format::Json);
        for (args, needle) in [
            (&["--seconds", "0"][..], "--seconds \"0\""),
            (&["--seconds", "nan"], "--seconds"),
            (&["--repeat", "0"], "--repeat"),
            (&["--rate", "0"], "--rate"),
            (&["--queues", "3"], "--queues"),
            (&["--frame-size", "59"], "--frame-size"),
            (&["--bundle", "0"], "--bundle"),
            (&["--start", "taskq"], "--start: unknown start \"taskq\""),
            (&["--interval", "0.001"], "--interval"),
            (&["--switch-every", "0"], "--switch-every"),
            (&["--format", "xml"], "--format"),
            (&["--cycles"], "needs a value"),
            (&["--bogus"], "unknown option"),
            (&["--json=1"], "unknown option"),
            (&["--warmup", "1"], "unknown option"),
            (&["--stack", "udp"], "--stack \"udp\": expected sink or tcp"),
            (
                &["--stack", "tcp", "--json"],
                "--stack tcp does not use --format",
            ),
            (
                &["--stack=tcp", "--seconds", "1", "--plot", "a.svg"],
                "--stack tcp does not use --seconds, --plot",
            ),
            (&["--tcp-mib", "8"], "--stack sink does not use --tcp-mib"),
            (&["--producers", "0"], "--producers"),
            (
                &["--stack", "tcp", "--tx-latency"],
                "--stack tcp does not use --tx-latency",
            ),
            (&["--stack", "tcp", "--tcp-mib", "0"], "--tcp-mib"),
            (&["-x"], "unknown option"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.0.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn watermarks_and_plot() {
        let a = run(&["--watermarks", "BOTH", "--plot", "out.SVG"]).unwrap();
        assert!(a.watermarks_both && !a.keep_watermarks);
        assert_eq!(a.plot, Some(std::path::PathBuf::from("out.SVG")));
        let a = run(&["--watermarks=both", "--keep-watermarks"]).unwrap();
        assert!(a.keep_watermarks && !a.watermarks_both);
        let a = run(&["--watermarks=keep"]).unwrap();
        assert!(a.keep_watermarks && !a.watermarks_both);
        assert!(
            !run(&["--keep-watermarks", "--watermarks", "reset"])
                .unwrap()
                .keep_watermarks
        );
        for (args, needle) in [
            (
                &["--watermarks", "kept"][..],
                "--watermarks \"kept\": expected",
            ),
            (
                &["--plot", "out.png"],
                "--plot: out.png: the figure is drawn as SVG only",
            ),
            (&["--plot", "-"], "ending in .svg"),
            (&["--plot"], "needs a value"),
        ] {
            let e = run(args).unwrap_err();
            assert!(e.0.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn help_and_version_win() {
        assert_eq!(parse(["--seconds", "5", "-h"]).unwrap(), Action::Help);
        assert_eq!(parse(["--version"]).unwrap(), Action::Version);
        assert_eq!(parse(["-V", "--bogus"]).unwrap(), Action::Version);
    }

    #[test]
    #[cfg(unix)]
    fn non_utf8_is_an_error_not_a_panic() {
        use std::os::unix::ffi::OsStringExt;
        let bad = OsString::from_vec(vec![b'-', b'-', 0xff]);
        let e = parse([bad]).unwrap_err();
        assert!(e.0.contains("not valid UTF-8"), "{e}");
        let bad = OsString::from_vec(vec![b'm', 0xfe]);
        let e = parse([OsString::from("--mode"), bad]).unwrap_err();
        assert!(e.0.contains("--mode: value"), "{e}");
    }
}
