//! The demo's output: per-mode records from one or more runs, printed as
//! tables for people, as one JSON document or as CSV for scripts and plots.
//!
//! Everything here is plain data and formatting, independent of how the
//! runs were made, so another front end (the QEMU guest test) can fill a
//! [`ModeRecord`] from its own counters and print the same table with
//! [`Report::write_text`].

use std::fmt::Write as _;
use std::io;

use mpsafe_rxring::{RxRingInfo, RxRingInfoTable};

use mpsafe_em_sim::PoolStats;
use mpsafe_em_sim::measure::{LatencySummary, Summary};

/// What one measured run (one mode, one repetition) saw.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFigures {
    /// Measured wall time in seconds.
    pub elapsed_s: f64,
    /// Frames the stack received per second.
    pub rx_pps: f64,
    /// Frames transmitted (completed) per second.
    pub tx_pps: f64,
    /// Receive frames offered by the wire per second over all queues;
    /// `None` when the wire fills every posted descriptor (`--rate max`).
    pub offered_rx_pps: Option<f64>,
    /// Frames the device missed: no posted receive descriptor (`MPC`).
    pub rx_missed: u64,
    /// Packets the send queue refused: full (`ifq_maxlen`).
    pub tx_qdrops: u64,
    /// Interrupts per second.
    pub interrupts_per_s: f64,
    /// Process CPU seconds in the window (every thread).
    pub process_cpu_s: Option<f64>,
    /// CPU seconds of the simulated device's DMA/wire thread (`em-device`).
    pub device_cpu_s: Option<f64>,
    /// CPU seconds of the interrupt thread (`em-intr`), which runs the
    /// driver's interrupt handler: driver time, shown on its own.
    pub intr_cpu_s: Option<f64>,
    /// Big-lock acquisitions per path in the window, `(path, count)`.
    pub big_lock: Vec<(String, u64)>,
    /// The time of each `transmit` call in the window (`--tx-latency`).
    pub tx_call: Option<LatencySummary>,
}

impl RunFigures {
    /// Packets (rx + tx) in the window.
    pub fn packets(&self) -> f64 {
        (self.rx_pps + self.tx_pps) * self.elapsed_s
    }

    /// CPU seconds of everything but the simulated device thread: the
    /// driver, its interrupt handler, the transmit producer and the stack.
    pub fn driver_cpu_s(&self) -> Option<f64> {
        Some((self.process_cpu_s? - self.device_cpu_s?).max(0.0))
    }

    /// Process CPU µs per packet.
    pub fn cpu_us_per_packet(&self) -> Option<f64> {
        per_packet(self.process_cpu_s?, self.packets())
    }

    /// Driver-side CPU µs per packet (see [`driver_cpu_s`](Self::driver_cpu_s)).
    pub fn driver_us_per_packet(&self) -> Option<f64> {
        per_packet(self.driver_cpu_s()?, self.packets())
    }

    /// Packets per driver-side CPU second: the efficiency figure the modes
    /// are compared by.
    pub fn packets_per_driver_cpu_s(&self) -> Option<f64> {
        let d = self.driver_cpu_s()?;
        (d > 0.0).then(|| self.packets() / d)
    }

    /// Fraction of one CPU the interrupt thread (the driver's handler for
    /// every queue) used.
    pub fn intr_busy(&self) -> Option<f64> {
        (self.elapsed_s > 0.0).then_some(self.intr_cpu_s? / self.elapsed_s)
    }

    /// Fraction of one CPU the device thread used.
    pub fn device_busy(&self) -> Option<f64> {
        (self.elapsed_s > 0.0).then_some(self.device_cpu_s? / self.elapsed_s)
    }

    /// Why pps says little about the driver in this run, if it does.
    pub fn bottleneck(&self) -> Option<Bottleneck> {
        if self.device_busy().is_some_and(|b| b >= 0.9) {
            return Some(Bottleneck::DeviceThread);
        }
        match self.offered_rx_pps {
            Some(o) if o > 0.0 && self.rx_pps >= 0.98 * o => Some(Bottleneck::OfferedRate),
            _ => None,
        }
    }
}

fn per_packet(cpu_s: f64, packets: f64) -> Option<f64> {
    (packets > 0.0).then(|| cpu_s * 1e6 / packets)
}

/// What limits packets/s when it is not the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bottleneck {
    /// The simulated device's thread used ≥ 90% of a CPU: the wire, not the
    /// driver, is the bottleneck.
    DeviceThread,
    /// The driver received ≥ 98% of what the paced wire offered: the
    /// offered rate sets pps; compare CPU per packet instead.
    OfferedRate,
}

impl Bottleneck {
    /// Short name for tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Bottleneck::DeviceThread => "device-thread",
            Bottleneck::OfferedRate => "offered-rate",
        }
    }

    /// One sentence for people.
    pub fn explain(self) -> &'static str {
        match self {
            Bottleneck::DeviceThread => {
                "the simulated device thread is busy >= 90% of a CPU: the wire, not the driver, is the bottleneck; compare driver CPU per packet"
            }
            Bottleneck::OfferedRate => {
                "received >= 98% of what the paced wire offered: the offered rate, not the driver, sets pps; compare driver CPU per packet"
            }
        }
    }
}

/// The buffer accounting at the end of a measurement (before teardown):
/// where every buffer is, and each receive ring's `systat mbuf` row.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BufferTable {
    /// Buffer pool counters.
    pub pool: PoolStats,
    /// One row per receive ring.
    pub rings: Vec<RxRingInfo>,
}

/// The first second after `up` (seed 000's question: reset or keep the
/// watermarks).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AfterUp {
    /// Whether the watermarks were kept across down/up.
    pub kept: bool,
    /// Sum over rings of the current watermark just before `down`.
    pub cwm_before: u32,
    /// Sum over rings of the current watermark just after `up`.
    pub cwm_at_up: u32,
    /// Milliseconds from `up` until the summed watermark was back to
    /// `cwm_before`; `None` if it was not within the probe.
    pub ms_to_steady: Option<f64>,
    /// Frames missed (no descriptor) in the first second after `up`.
    pub rx_missed_first_s: u64,
    /// Frames received in the first second after `up`.
    pub rx_first_s: u64,
    /// The first second as a curve, from `up` on.
    pub trace: Vec<AfterUpPoint>,
}

/// One point of [`AfterUp::trace`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AfterUpPoint {
    /// Milliseconds since `up`.
    pub ms: f64,
    /// Sum over rings of the current watermark.
    pub cwm: u32,
    /// Frames missed (no descriptor) since `up`.
    pub rx_missed: u64,
    /// Frames received since `up`.
    pub rx: u64,
}

/// Everything measured for one mode.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModeRecord {
    /// Mode name, as `--mode` spells it.
    pub mode: String,
    /// One entry per repetition.
    pub runs: Vec<RunFigures>,
    /// Buffer table at the end of the last run's measurement.
    pub buffers: BufferTable,
    /// The first second after `up`, one per repetition, if probed.
    pub after_up: Vec<AfterUp>,
    /// Up/down cycles completed under load, over all runs.
    pub cycles: u64,
    /// Why the buffer accounting did not add up, if it did not.
    pub accounting_error: Option<String>,
}

impl ModeRecord {
    /// Summary of `f` over the runs.
    pub fn summary(&self, f: impl Fn(&RunFigures) -> Option<f64>) -> Option<Summary> {
        let v: Vec<f64> = self.runs.iter().filter_map(f).collect();
        Summary::of(&v)
    }

    fn median_u64(&self, f: impl Fn(&RunFigures) -> u64) -> f64 {
        self.summary(|r| Some(f(r) as f64))
            .map_or(0.0, |s| s.median)
    }

    /// Median big-lock acquisitions per measured second, per path.
    pub fn big_lock_per_s(&self) -> Vec<(String, f64)> {
        let Some(first) = self.runs.first() else {
            return Vec::new();
        };
        first
            .big_lock
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                let s = self.summary(|r| {
                    let (_, c) = r.big_lock.get(i)?;
                    (r.elapsed_s > 0.0).then(|| *c as f64 / r.elapsed_s)
                });
                (name.clone(), s.map_or(0.0, |s| s.median))
            })
            .collect()
    }

    /// The bottleneck most runs saw.
    pub fn bottleneck(&self) -> Option<Bottleneck> {
        let mut best = None;
        let mut best_n = 0;
        for b in [Bottleneck::DeviceThread, Bottleneck::OfferedRate] {
            let n = self
                .runs
                .iter()
                .filter(|r| r.bottleneck() == Some(b))
                .count();
            if n * 2 > self.runs.len() && n > best_n {
                (best, best_n) = (Some(b), n);
            }
        }
        best
    }
}

/// One point of a `--interval` time series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Mode name.
    pub mode: String,
    /// Repetition, from 1.
    pub run: u32,
    /// Seconds since the interface came up.
    pub t_s: f64,
    /// Received frames per second over the interval.
    pub rx_pps: f64,
    /// Transmitted frames per second over the interval.
    pub tx_pps: f64,
    /// Frames missed in the interval.
    pub rx_missed: u64,
    /// Send queue drops in the interval.
    pub tx_qdrops: u64,
    /// Each receive ring's current watermark.
    pub cwm: Vec<u32>,
    /// Each receive ring's slots in use.
    pub alive: Vec<u32>,
}

/// A whole demo run, ready to print.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Program version.
    pub version: String,
    /// The configuration, as `(key, value)` pairs (values are strings or
    /// numbers as written).
    pub config: Vec<(String, String)>,
    /// One record per mode, in run order.
    pub modes: Vec<ModeRecord>,
    /// The time series, if sampled.
    pub samples: Vec<Sample>,
}

fn fmt_opt(v: Option<f64>, prec: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.prec$}"))
}

/// `median` with `±spread%` when there were several runs.
fn fmt_summary(s: Option<Summary>, prec: usize) -> String {
    match s {
        None => "-".into(),
        Some(s) if s.n == 1 => format!("{:.prec$}", s.median),
        Some(s) => format!("{:.prec$} ±{:.0}%", s.median, s.spread() * 100.0),
    }
}

impl Report {
    /// The record named `mode`.
    pub fn mode(&self, mode: &str) -> Option<&ModeRecord> {
        self.modes.iter().find(|m| m.mode == mode)
    }

    /// Why each mode with more drops than the best one has them, from its
    /// own counters (one line per finding).
    pub fn explanations(&self) -> Vec<String> {
        let mut out = Vec::new();
        let least = self
            .modes
            .iter()
            .map(|m| m.median_u64(|r| r.rx_missed))
            .fold(f64::INFINITY, f64::min);
        for m in &self.modes {
            let missed = m.median_u64(|r| r.rx_missed);
            if missed > least && missed > 0.0 {
                let locks = m.big_lock_per_s();
                let intr_locks: f64 = locks
                    .iter()
                    .filter(|(p, _)| matches!(p.as_str(), "intr" | "rxeof" | "rxfill" | "txeof"))
                    .map(|(_, c)| c)
                    .sum();
                let start_locks: f64 = locks
                    .iter()
                    .filter(|(p, _)| p == "start")
                    .map(|(_, c)| c)
                    .sum();
                let why = if intr_locks > 0.0 && start_locks > 0.0 {
                    format!(
                        "its interrupt handler takes the big lock ({intr_locks:.0}/s) that the transmit start routine also takes ({start_locks:.0}/s), so the interrupt, and with it the rx refill, waits while start runs and the posted descriptors run out"
                    )
                } else if intr_locks > 0.0 {
                    format!(
                        "its interrupt handler takes the big lock ({intr_locks:.0}/s) before it refills, so refill runs later than rx completion frees slots"
                    )
                } else {
                    let cwm: u32 = m.buffers.rings.iter().map(|r| r.cwm).sum();
                    let hwm: u32 = m.buffers.rings.iter().map(|r| r.hwm).sum();
                    let busy = m
                        .summary(RunFigures::intr_busy)
                        .map_or("-".into(), |s| format!("{:.0}%", s.median * 100.0));
                    format!(
                        "it takes no big lock on the rx path, so rx waits for CPU, not for a lock: the one interrupt thread (every queue's handler) got {busy} of a CPU while the transmit threads ran beside it (rx watermark {cwm} of {hwm} at the end)"
                    )
                };
                out.push(format!(
                    "{}: {missed:.0} rx frames missed (median; fewest in any mode: {least:.0}): the device found no posted descriptor; {why}.",
                    m.mode
                ));
            }
            let qdrops = m.median_u64(|r| r.tx_qdrops);
            if qdrops > 0.0 {
                out.push(format!(
                    "{}: {qdrops:.0} tx packets dropped (median) because the send queue was full: the start routine drained it slower than the producer filled it.",
                    m.mode
                ));
            }
            if let Some(b) = m.bottleneck() {
                out.push(format!("{}: {}.", m.mode, b.explain()));
            }
        }
        out
    }

    /// The tables for people: per-mode figures (medians and spreads with
    /// several runs), ratios to `biglock`, big-lock acquisitions per path,
    /// the buffer table at the end of each measurement, the first second
    /// after `up` if probed, and why a mode shows more drops.
    pub fn write_text(&self, w: &mut dyn io::Write) -> io::Result<()> {
        let base = self.mode("biglock");
        let base_eff = base
            .and_then(|b| b.summary(RunFigures::packets_per_driver_cpu_s))
            .map(|s| s.median);
        let runs = self.modes.iter().map(|m| m.runs.len()).max().unwrap_or(0);
        writeln!(w)?;
        if runs > 1 {
            writeln!(
                w,
                "medians of {runs} runs per mode, ±spread = (max - min) / median"
            )?;
        }
        writeln!(
            w,
            "{:<11} {:>15} {:>15} {:>8} {:>7} {:>7} {:>8} {:>8} {:>7} {:>17} {:>6}",
            "mode",
            "rx pps",
            "tx pps",
            "missed",
            "qdrops",
            "intr/s",
            "CPU µs/p",
            "drv µs/p",
            "dev CPU",
            "pkt/drv-CPU-s",
            "/BigL"
        )?;
        for m in &self.modes {
            let eff = m.summary(RunFigures::packets_per_driver_cpu_s);
            writeln!(
                w,
                "{:<11} {:>15} {:>15} {:>8.0} {:>7.0} {:>7} {:>8} {:>8} {:>7} {:>17} {:>6}",
                m.mode,
                fmt_summary(m.summary(|r| Some(r.rx_pps)), 0),
                fmt_summary(m.summary(|r| Some(r.tx_pps)), 0),
                m.median_u64(|r| r.rx_missed),
                m.median_u64(|r| r.tx_qdrops),
                fmt_opt(m.summary(|r| Some(r.interrupts_per_s)).map(|s| s.median), 0),
                fmt_opt(
                    m.summary(RunFigures::cpu_us_per_packet).map(|s| s.median),
                    3
                ),
                fmt_opt(
                    m.summary(RunFigures::driver_us_per_packet)
                        .map(|s| s.median),
                    3
                ),
                fmt_opt(
                    m.summary(RunFigures::device_busy).map(|s| s.median * 100.0),
                    0
                )
                .to_string()
                    + "%",
                fmt_summary(eff, 0),
                match (eff, base_eff) {
                    (Some(e), Some(b)) if b > 0.0 => format!("{:.2}x", e.median / b),
                    _ => "-".into(),
                },
            )?;
        }
        writeln!(
            w,
            "drv = every thread but the simulated device's (em-device), by per-thread CPU clocks; dev CPU = that thread's share of one CPU"
        )?;
        if let Some(b) = base.and_then(|b| b.summary(RunFigures::packets_per_driver_cpu_s)) {
            for m in self.modes.iter().filter(|m| m.mode != "biglock") {
                if let Some(e) = m.summary(RunFigures::packets_per_driver_cpu_s)
                    && e.n > 1
                    && b.n > 1
                {
                    writeln!(
                        w,
                        "  {} vs biglock, packets per driver CPU second: {:.2}x (range {:.2}x to {:.2}x){}",
                        m.mode,
                        e.median / b.median,
                        e.min / b.max,
                        e.max / b.min,
                        if e.overlaps(&b) {
                            ": the ranges overlap, these runs cannot tell them apart"
                        } else {
                            ""
                        }
                    )?;
                }
            }
        }

        if let Some(first) = self.modes.first() {
            writeln!(w)?;
            writeln!(
                w,
                "big-lock acquisitions per measured second, per path (the DragonFly 'M' marker: 0 = runs without it)"
            )?;
            write!(w, "{:<11}", "mode")?;
            for (p, _) in first.big_lock_per_s() {
                write!(w, " {p:>10}")?;
            }
            writeln!(w)?;
            for m in &self.modes {
                write!(w, "{:<11}", m.mode)?;
                for (_, c) in m.big_lock_per_s() {
                    write!(w, " {c:>10.0}")?;
                }
                writeln!(w)?;
            }
        }

        if self
            .modes
            .iter()
            .any(|m| m.runs.iter().any(|r| r.tx_call.is_some()))
        {
            writeln!(w)?;
            writeln!(
                w,
                "time of one transmit call, the caller's: as the start routine's owner it also sends what the others queued (median over runs)"
            )?;
            writeln!(
                w,
                "{:<11} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
                "mode", "calls", "p50 ns", "p99 ns", "p99.9 ns", "max ns", "p99.9/p50"
            )?;
            for m in &self.modes {
                let med = |f: fn(&LatencySummary) -> u64| {
                    m.summary(|r| r.tx_call.map(|t| f(&t) as f64))
                        .map_or(f64::NAN, |s| s.median)
                };
                let (p50, p999) = (med(|t| t.p50_ns), med(|t| t.p999_ns));
                writeln!(
                    w,
                    "{:<11} {:>10.0} {:>9.0} {:>9.0} {:>9.0} {:>10.0} {:>9.1}",
                    m.mode,
                    med(|t| t.count),
                    p50,
                    med(|t| t.p99_ns),
                    p999,
                    med(|t| t.max_ns),
                    p999 / p50
                )?;
            }
        }

        for m in &self.modes {
            writeln!(w)?;
            writeln!(
                w,
                "{} at the end of the measurement (before teardown):",
                m.mode
            )?;
            writeln!(w, "  mbuf: {}", m.buffers.pool)?;
            for line in RxRingInfoTable(&m.buffers.rings).to_string().lines() {
                writeln!(w, "  {line}")?;
            }
        }

        if self.modes.iter().any(|m| !m.after_up.is_empty()) {
            writeln!(w)?;
            writeln!(
                w,
                "the first second after down/up under load (watermarks kept or reset, seed 000):"
            )?;
            writeln!(
                w,
                "{:<11} {:>6} {:>10} {:>8} {:>16} {:>14} {:>12}",
                "mode",
                "kept",
                "cwm before",
                "cwm up",
                "ms to cwm before",
                "missed in 1 s",
                "rx in 1 s"
            )?;
            for m in &self.modes {
                for a in &m.after_up {
                    writeln!(
                        w,
                        "{:<11} {:>6} {:>10} {:>8} {:>16} {:>14} {:>12}",
                        m.mode,
                        a.kept,
                        a.cwm_before,
                        a.cwm_at_up,
                        fmt_opt(a.ms_to_steady, 1),
                        a.rx_missed_first_s,
                        a.rx_first_s
                    )?;
                }
            }
        }

        let why = self.explanations();
        if !why.is_empty() {
            writeln!(w)?;
            writeln!(w, "why:")?;
            for line in why {
                writeln!(w, "  {line}")?;
            }
        }
        Ok(())
    }

    /// The time series as text, one line per sample.
    pub fn write_samples_text(&self, w: &mut dyn io::Write) -> io::Result<()> {
        writeln!(
            w,
            "{:<11} {:>3} {:>7} {:>10} {:>10} {:>8} {:>7}  cwm/alive per ring",
            "mode", "run", "t s", "rx pps", "tx pps", "missed", "qdrops"
        )?;
        for s in &self.samples {
            let rings: Vec<String> = s
                .cwm
                .iter()
                .zip(&s.alive)
                .map(|(c, a)| format!("{c}/{a}"))
                .collect();
            writeln!(
                w,
                "{:<11} {:>3} {:>7.2} {:>10.0} {:>10.0} {:>8} {:>7}  {}",
                s.mode,
                s.run,
                s.t_s,
                s.rx_pps,
                s.tx_pps,
                s.rx_missed,
                s.tx_qdrops,
                rings.join(" ")
            )?;
        }
        Ok(())
    }

    /// One JSON document: `version`, `config`, `modes` (one record per mode
    /// with medians and every run), `samples`, `explanations`.
    pub fn to_json(&self) -> String {
        let mut j = String::new();
        j.push('{');
        field_str(&mut j, "version", &self.version);
        j.push_str(",\"config\":{");
        for (i, (k, v)) in self.config.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            if v.parse::<f64>().is_ok_and(f64::is_finite) {
                let _ = write!(j, "{}:{}", quote(k), v);
            } else {
                field_str(&mut j, k, v);
            }
        }
        j.push_str("},\"modes\":[");
        for (i, m) in self.modes.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            mode_json(&mut j, m);
        }
        j.push_str("],\"samples\":[");
        for (i, s) in self.samples.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            j.push('{');
            field_str(&mut j, "mode", &s.mode);
            let _ = write!(
                j,
                ",\"run\":{},\"t_s\":{},\"rx_pps\":{},\"tx_pps\":{},\"rx_missed\":{},\"tx_qdrops\":{},\"cwm\":{:?},\"alive\":{:?}}}",
                s.run,
                num(s.t_s),
                num(s.rx_pps),
                num(s.tx_pps),
                s.rx_missed,
                s.tx_qdrops,
                s.cwm,
                s.alive
            );
        }
        j.push_str("],\"explanations\":[");
        for (i, e) in self.explanations().iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            j.push_str(&quote(e));
        }
        j.push_str("]}");
        j
    }

    /// CSV: a header and one row per mode (medians), then, if there are
    /// samples, a blank line, a header and one row per sample.
    pub fn to_csv(&self) -> String {
        let mut c = String::from(
            "mode,runs,rx_pps,rx_pps_spread,tx_pps,tx_pps_spread,rx_missed,tx_qdrops,interrupts_per_s,cpu_us_per_packet,driver_us_per_packet,device_busy,packets_per_driver_cpu_s,packets_per_driver_cpu_s_spread,bottleneck",
        );
        let paths: Vec<String> = self
            .modes
            .first()
            .map(|m| m.big_lock_per_s().into_iter().map(|(p, _)| p).collect())
            .unwrap_or_default();
        for p in &paths {
            let _ = write!(c, ",big_lock_{p}_per_s");
        }
        c.push('\n');
        let med = |s: Option<Summary>| s.map_or(String::new(), |s| num(s.median));
        let spr = |s: Option<Summary>| s.map_or(String::new(), |s| num(s.spread()));
        for m in &self.modes {
            let rx = m.summary(|r| Some(r.rx_pps));
            let tx = m.summary(|r| Some(r.tx_pps));
            let eff = m.summary(RunFigures::packets_per_driver_cpu_s);
            let _ = write!(
                c,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&m.mode),
                m.runs.len(),
                med(rx),
                spr(rx),
                med(tx),
                spr(tx),
                m.median_u64(|r| r.rx_missed),
                m.median_u64(|r| r.tx_qdrops),
                med(m.summary(|r| Some(r.interrupts_per_s))),
                med(m.summary(RunFigures::cpu_us_per_packet)),
                med(m.summary(RunFigures::driver_us_per_packet)),
                med(m.summary(RunFigures::device_busy)),
                med(eff),
                spr(eff),
                m.bottleneck().map_or("", Bottleneck::name)
            );
            for (_, v) in m.big_lock_per_s() {
                let _ = write!(c, ",{}", num(v));
            }
            c.push('\n');
        }
        if !self.samples.is_empty() {
            c.push_str("\nmode,run,t_s,rx_pps,tx_pps,rx_missed,tx_qdrops,cwm,alive\n");
            for s in &self.samples {
                let join = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
                let _ = writeln!(
                    c,
                    "{},{},{},{},{},{},{},{},{}",
                    csv_field(&s.mode),
                    s.run,
                    num(s.t_s),
                    num(s.rx_pps),
                    num(s.tx_pps),
                    s.rx_missed,
                    s.tx_qdrops,
                    join(&s.cwm),
                    join(&s.alive)
                );
            }
        }
        c
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A JSON number, or `null` for NaN and infinities (JSON has neither).
fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        "null".into()
    }
}

fn opt(v: Option<f64>) -> String {
    v.map_or("null".into(), num)
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            '\t' => q.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(q, "\\u{:04x}", c as u32);
            }
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn field_str(j: &mut String, k: &str, v: &str) {
    let _ = write!(j, "{}:{}", quote(k), quote(v));
}

fn summary_json(s: Option<Summary>) -> String {
    match s {
        None => "null".into(),
        Some(s) => format!(
            "{{\"median\":{},\"min\":{},\"max\":{},\"spread\":{},\"n\":{}}}",
            num(s.median),
            num(s.min),
            num(s.max),
            num(s.spread()),
            s.n
        ),
    }
}

fn mode_json(j: &mut String, m: &ModeRecord) {
    j.push('{');
    field_str(j, "mode", &m.mode);
    let _ = write!(
        j,
        ",\"runs\":{},\"rx_pps\":{},\"tx_pps\":{},\"drops\":{{\"rx_missed\":{},\"tx_qdrops\":{}}},\"interrupts_per_s\":{},\"cpu_us_per_packet\":{},\"driver_us_per_packet\":{},\"device_busy\":{},\"packets_per_driver_cpu_s\":{},\"bottleneck\":{}",
        m.runs.len(),
        summary_json(m.summary(|r| Some(r.rx_pps))),
        summary_json(m.summary(|r| Some(r.tx_pps))),
        summary_json(m.summary(|r| Some(r.rx_missed as f64))),
        summary_json(m.summary(|r| Some(r.tx_qdrops as f64))),
        summary_json(m.summary(|r| Some(r.interrupts_per_s))),
        summary_json(m.summary(RunFigures::cpu_us_per_packet)),
        summary_json(m.summary(RunFigures::driver_us_per_packet)),
        summary_json(m.summary(RunFigures::device_busy)),
        summary_json(m.summary(RunFigures::packets_per_driver_cpu_s)),
        m.bottleneck().map_or("null".into(), |b| quote(b.name())),
    );
    j.push_str(",\"big_lock_per_s\":{");
    for (i, (p, c)) in m.big_lock_per_s().iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let _ = write!(j, "{}:{}", quote(p), num(*c));
    }
    let p = &m.buffers.pool;
    let _ = write!(
        j,
        "}},\"buffers\":{{\"pool\":{{\"total\":{},\"free\":{},\"in_use\":{},\"held\":{},\"on_rx_ring\":{},\"on_tx_ring\":{},\"leaked\":{},\"alloc_failures\":{},\"dma_errors\":{}}},\"rings\":[",
        p.total,
        p.free,
        p.in_use(),
        p.held,
        p.on_rx_ring,
        p.on_tx_ring,
        p.leaked,
        p.alloc_failures,
        p.dma_errors
    );
    for (i, r) in m.buffers.rings.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        j.push('{');
        field_str(j, "name", r.name.as_str());
        let _ = write!(
            j,
            ",\"size\":{},\"alive\":{},\"lwm\":{},\"hwm\":{},\"cwm\":{}}}",
            r.size, r.alive, r.lwm, r.hwm, r.cwm
        );
    }
    j.push_str("]},\"after_up\":[");
    for (i, a) in m.after_up.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let _ = write!(
            j,
            "{{\"kept\":{},\"cwm_before\":{},\"cwm_at_up\":{},\"ms_to_steady\":{},\"rx_missed_first_s\":{},\"rx_first_s\":{},\"trace\":[",
            a.kept,
            a.cwm_before,
            a.cwm_at_up,
            opt(a.ms_to_steady),
            a.rx_missed_first_s,
            a.rx_first_s
        );
        for (i, p) in a.trace.iter().enumerate() {
            if i > 0 {
                j.push(',');
            }
            let _ = write!(
                j,
                "{{\"ms\":{},\"cwm\":{},\"rx_missed\":{},\"rx\":{}}}",
                num(p.ms),
                p.cwm,
                p.rx_missed,
                p.rx
            );
        }
        j.push_str("]}");
    }
    let _ = write!(j, "],\"cycles\":{},\"accounting\":", m.cycles);
    match &m.accounting_error {
        None => j.push_str("\"ok\""),
        Some(e) => j.push_str(&quote(e)),
    }
    j.push_str(",\"runs_detail\":[");
    for (i, r) in m.runs.iter().enumerate() {
        if i > 0 {
            j.push(',');
        }
        let _ = write!(
            j,
            "{{\"elapsed_s\":{},\"rx_pps\":{},\"tx_pps\":{},\"offered_rx_pps\":{},\"rx_missed\":{},\"tx_qdrops\":{},\"interrupts_per_s\":{},\"process_cpu_s\":{},\"device_cpu_s\":{},\"intr_cpu_s\":{},\"driver_cpu_s\":{},\"tx_call\":{}}}",
            num(r.elapsed_s),
            num(r.rx_pps),
            num(r.tx_pps),
            opt(r.offered_rx_pps),
            r.rx_missed,
            r.tx_qdrops,
            num(r.interrupts_per_s),
            opt(r.process_cpu_s),
            opt(r.device_cpu_s),
            opt(r.intr_cpu_s),
            opt(r.driver_cpu_s()),
            r.tx_call.map_or_else(
                || "null".to_string(),
                |t| format!(
                    "{{\"calls\":{},\"p50_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"max_ns\":{}}}",
                    t.count, t.p50_ns, t.p99_ns, t.p999_ns, t.max_ns
                )
            )
        );
    }
    j.push_str("]}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rx: f64, missed: u64, cpu: f64, dev: f64, locks: [u64; 2]) -> RunFigures {
        RunFigures {
            elapsed_s: 2.0,
            rx_pps: rx,
            tx_pps: 1000.0,
            offered_rx_pps: Some(1_000_000.0),
            rx_missed: missed,
            tx_qdrops: 0,
            interrupts_per_s: 8000.0,
            process_cpu_s: Some(cpu),
            device_cpu_s: Some(dev),
            intr_cpu_s: Some(0.1),
            big_lock: vec![("intr".into(), locks[0]), ("start".into(), locks[1])],
            tx_call: None,
        }
    }

    fn report() -> Report {
        Report {
            version: "0.1.0".into(),
            config: vec![
                ("seconds".into(), "2".into()),
                ("rate".into(), "max".into()),
            ],
            modes: vec![
                ModeRecord {
                    mode: "biglock".into(),
                    runs: vec![
                        run(500_000.0, 100, 2.0, 1.0, [16000, 4000]),
                        run(510_000.0, 120, 2.1, 1.0, [16000, 4000]),
                        run(490_000.0, 90, 1.9, 1.0, [16000, 4000]),
                    ],
                    ..ModeRecord::default()
                },
                ModeRecord {
                    mode: "mpsafe \"x\"".into(),
                    runs: vec![run(999_000.0, 0, 1.5, 1.9, [0, 0])],
                    after_up: vec![AfterUp {
                        kept: true,
                        ms_to_steady: None,
                        ..AfterUp::default()
                    }],
                    accounting_error: Some("lost\n1".into()),
                    ..ModeRecord::default()
                },
            ],
            samples: vec![Sample {
                mode: "biglock".into(),
                run: 1,
                t_s: 0.5,
                rx_pps: f64::NAN,
                cwm: vec![16, 17],
                alive: vec![3, 4],
                ..Sample::default()
            }],
        }
    }

    #[test]
    fn derived_figures() {
        let r = run(500_000.0, 0, 2.0, 0.5, [0, 0]);
        assert_eq!(r.packets(), 1_002_000.0);
        assert_eq!(r.driver_cpu_s(), Some(1.5));
        assert_eq!(r.packets_per_driver_cpu_s(), Some(668_000.0));
        assert_eq!(r.device_busy(), Some(0.25));
        assert_eq!(r.bottleneck(), None);
        let busy = run(500_000.0, 0, 2.0, 1.9, [0, 0]);
        assert_eq!(busy.bottleneck(), Some(Bottleneck::DeviceThread));
        let paced = run(990_000.0, 0, 2.0, 0.5, [0, 0]);
        assert_eq!(paced.bottleneck(), Some(Bottleneck::OfferedRate));
        let none = RunFigures {
            process_cpu_s: None,
            ..busy
        };
        assert_eq!(none.driver_cpu_s(), None);
        assert_eq!(none.cpu_us_per_packet(), None);
    }

    #[test]
    fn text_has_medians_ratios_and_reasons() {
        let mut out = Vec::new();
        report().write_text(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("medians of 3 runs"), "{text}");
        // biglock median rx 500000, spread (510-490)/500 = 4%.
        assert!(text.contains("500000 ±4%"), "{text}");
        // Locks per measured second: 16000 / 2 s.
        assert!(text.contains("8000"), "{text}");
        assert!(text.contains("biglock: 100 rx frames missed"), "{text}");
        assert!(
            text.contains("transmit start routine also takes (2000/s)"),
            "{text}"
        );
        assert!(
            text.contains("the wire, not the driver, is the bottleneck"),
            "{text}"
        );
        assert!(text.contains("at the end of the measurement"), "{text}");
        assert!(text.contains("ms to cwm before"), "{text}");
    }

    #[test]
    fn csv_rows_and_samples() {
        let csv = report().to_csv();
        let mut blocks = csv.split("\n\n");
        let modes: Vec<&str> = blocks.next().unwrap().lines().collect();
        assert_eq!(modes.len(), 3);
        let cols = modes[0].split(',').count();
        assert!(modes[0].ends_with("big_lock_intr_per_s,big_lock_start_per_s"));
        assert!(
            modes[1].starts_with("biglock,3,500000,0.04,"),
            "{}",
            modes[1]
        );
        // The quoted name keeps its comma-free field count.
        assert!(
            modes[2].starts_with("\"mpsafe \"\"x\"\"\",1,"),
            "{}",
            modes[2]
        );
        assert_eq!(modes[1].split(',').count(), cols);
        let samples: Vec<&str> = blocks.next().unwrap().lines().collect();
        assert_eq!(samples[1], "biglock,1,0.5,null,0,0,0,16 17,3 4");
    }

    #[test]
    fn json_escapes_and_nulls() {
        let j = report().to_json();
        assert!(
            j.starts_with("{\"version\":\"0.1.0\",\"config\":{\"seconds\":2,\"rate\":\"max\"}")
        );
        assert!(j.contains("\"mode\":\"mpsafe \\\"x\\\"\""), "{j}");
        assert!(j.contains("\"accounting\":\"lost\\n1\""), "{j}");
        assert!(j.contains("\"rx_pps\":null"), "{j}");
        assert!(j.contains("\"ms_to_steady\":null"), "{j}");
        assert_eq!(quote("\u{1}"), "\"\\u0001\"");
    }
}
