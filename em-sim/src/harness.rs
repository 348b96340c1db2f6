//! A bounded end-to-end run: device, driver, a paced transmit producer and
//! the wire, measured. Shared by the demo, the tests and the benchmark.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::cpu::process_cpu_time;
use crate::device::{Device, DeviceConfig, DeviceError, DeviceStats, WireRate};
use crate::measure::{LatencyHistogram, LatencySummary, ThreadCpu};
use crate::pool::Pool;
use crate::{Em, EmConfig, EmError, EmStats, Mode, Sink, TxStart};
use crate::{KernelLock, LockCounts};

/// What to run.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunConfig {
    /// Driver locking design.
    pub mode: Mode,
    /// Measured time (after the warm-up).
    pub duration: Duration,
    /// Time before measuring, for the rx ring watermark to grow.
    pub warmup: Duration,
    /// Receive traffic from the wire, per queue.
    pub wire: WireRate,
    /// Transmit load in packets per second per queue (0: none).
    pub tx_pps: u64,
    /// Frame length in bytes.
    pub frame_size: u16,
    /// Queue pairs.
    pub queues: usize,
    /// Loop transmitted frames back to the receive side.
    pub loopback: bool,
    /// Up/down cycles to run under load after the measurement.
    pub cycles: u32,
    /// Switch the mode at run time ([`Em::set_mode`]) this often, through
    /// [`Mode::ALL`] in turn starting after `mode`, for the whole run.
    pub switch_every: Option<Duration>,
    /// Snapshot the counters this often during warm-up and measurement
    /// ([`RunReport::samples`]); `None`: only at the window's ends.
    pub interval: Option<Duration>,
    /// Transmit bundling threshold ([`EmConfig::tx_bundle`]); the producer
    /// calls [`Em::flush_tx`] after each burst.
    pub tx_bundle: usize,
    /// Where `transmit` runs the start routine ([`EmConfig::tx_start`]).
    pub tx_start: TxStart,
    /// Keep the rx watermarks across down/up
    /// ([`EmConfig::rx_keep_watermarks`]).
    pub keep_watermarks: bool,
    /// After the measurement, bring the interface down and up once and
    /// watch the first second ([`RunReport::after_up`]).
    pub after_up: bool,
    /// Transmitting threads per queue, each offering `tx_pps / producers`:
    /// with 2 or more, CPUs contend for each send queue's start routine.
    pub producers: usize,
    /// Time every `transmit` call during the measurement
    /// ([`RunReport::tx_call`]): the caller's time, which includes the
    /// start routine it ran as the owner for others' packets too.
    pub tx_latency: bool,
}

impl RunConfig {
    /// Defaults: 1 queue, gigabit line rate both ways with 60-byte frames,
    /// 2 s measured after 0.5 s warm-up, no cycles.
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            duration: Duration::from_secs(2),
            warmup: Duration::from_millis(500),
            wire: WireRate::gigabit(60),
            tx_pps: gigabit_pps(60),
            frame_size: 60,
            queues: 1,
            loopback: false,
            cycles: 0,
            switch_every: None,
            interval: None,
            tx_bundle: 1,
            tx_start: TxStart::Direct,
            keep_watermarks: false,
            after_up: false,
            producers: 1,
            tx_latency: false,
        }
    }
}

/// Gigabit line rate in packets/s for `frame_size`-byte frames.
pub fn gigabit_pps(frame_size: u16) -> u64 {
    match WireRate::gigabit(frame_size) {
        WireRate::Pps(p) => p,
        _ => 0,
    }
}

/// Why a run could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The device refused the configuration.
    Device(DeviceError),
    /// The driver refused the configuration.
    Driver(EmError),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Device(e) => write!(f, "device: {e}"),
            Self::Driver(e) => write!(f, "driver: {e}"),
        }
    }
}

impl std::error::Error for RunError {}

/// What a run measured.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RunReport {
    /// Driver mode.
    pub mode: Mode,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Frames received by the stack per second.
    pub rx_pps: f64,
    /// Frames transmitted (completed) per second.
    pub tx_pps: f64,
    /// Frames missed by the device during the measurement (no descriptor).
    pub missed: u64,
    /// Send queue drops during the measurement.
    pub qdrops: u64,
    /// Interrupts during the measurement.
    pub interrupts: u64,
    /// Process CPU time per packet (rx + tx) during the measurement, in µs.
    pub cpu_us_per_packet: Option<f64>,
    /// Big-lock acquisitions per path over the whole run.
    pub big_lock: LockCounts,
    /// Up/down cycles completed under load.
    pub cycles: u32,
    /// Driver statistics after the final `down`.
    pub after_down: EmStats,
    /// Device counters after the final `down`.
    pub device: DeviceStats,
    /// Packets the producer offered to `transmit`.
    pub tx_offered: u64,
    /// Packets `transmit` handed back (down, queue full, malformed).
    pub tx_refused: u64,
    /// Packets the stack received over the whole run.
    pub rx_total: u64,
    /// Driver statistics at the end of the measurement, before the cycles
    /// and teardown: the buffer table as it stood under load.
    pub at_end: EmStats,
    /// Big-lock acquisitions per path during the measurement only.
    pub big_lock_window: LockCounts,
    /// Process CPU time during the measurement (every thread).
    pub process_cpu: Option<Duration>,
    /// CPU time of the simulated device's DMA/wire thread (`em-device`)
    /// during the measurement, from its own CPU clock. The process is
    /// assumed to run one simulated device.
    pub device_cpu: Option<Duration>,
    /// CPU time of the interrupt thread (`em-intr`, which runs the driver's
    /// handler) during the measurement.
    pub intr_cpu: Option<Duration>,
    /// Receive frames per second the wire offered over all queues, if paced.
    pub offered_rx_pps: Option<f64>,
    /// Counter snapshots every [`RunConfig::interval`], from `up`.
    pub samples: Vec<Snapshot>,
    /// The first second after a down/up, if [`RunConfig::after_up`].
    pub after_up: Option<AfterUpProbe>,
    /// The time of each `transmit` call during the measurement, if
    /// [`RunConfig::tx_latency`].
    pub tx_call: Option<LatencySummary>,
}

/// Cumulative counters at one instant of a run.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Time since `up`.
    pub t: Duration,
    /// Frames the stack received so far.
    pub rx: u64,
    /// Frames transmitted (completed) so far.
    pub tx: u64,
    /// Frames the device missed so far.
    pub missed: u64,
    /// Send queue drops so far.
    pub qdrops: u64,
    /// Each receive ring's `(cwm, alive)`.
    pub rings: Vec<(u32, u32)>,
}

/// What the first second after a down/up under load looked like.
#[derive(Clone, Debug)]
pub struct AfterUpProbe {
    /// Sum over rings of the current watermark just before `down`.
    pub cwm_before: u32,
    /// Sum over rings of the current watermark just after `up`.
    pub cwm_at_up: u32,
    /// Time from `up` until the summed watermark was back to `cwm_before`
    /// (checked every millisecond), if within the second.
    pub to_steady: Option<Duration>,
    /// Frames missed in the first second.
    pub missed: u64,
    /// Frames received in the first second.
    pub rx: u64,
    /// The first second as a curve: a point at `up` and about every
    /// [`TRACE_STEP`] after it.
    pub trace: Vec<AfterUpPoint>,
}

/// How often [`AfterUpProbe::trace`] takes a point.
pub const TRACE_STEP: Duration = Duration::from_millis(10);

/// One point of the first second after `up`: the summed watermark and the
/// frames missed and received since `up`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AfterUpPoint {
    /// Time since `up`.
    pub t: Duration,
    /// Sum over rings of the current watermark.
    pub cwm: u32,
    /// Frames missed (no descriptor) since `up`.
    pub missed: u64,
    /// Frames received since `up`.
    pub rx: u64,
}

fn cwm_sum(st: &EmStats) -> u32 {
    st.rxrings.iter().map(|r| r.cwm).sum()
}

/// Down, up, and one second of watching the watermark come back.
fn probe_after_up(em: &Em<Device>, dev: &Device, sink: &Sink) -> AfterUpProbe {
    let cwm_before = cwm_sum(&em.stats());
    em.down();
    let up = em.up();
    let t_up = Instant::now();
    let (missed0, rx0) = (dev.stats().missed, sink.packets());
    let cwm_at_up = cwm_sum(&em.stats());
    let mut to_steady = (up.is_ok() && cwm_at_up >= cwm_before).then_some(Duration::ZERO);
    let point = |t: Duration, cwm: u32| AfterUpPoint {
        t,
        cwm,
        missed: dev.stats().missed - missed0,
        rx: sink.packets() - rx0,
    };
    let mut trace = vec![point(Duration::ZERO, cwm_at_up)];
    let mut next_point = TRACE_STEP;
    while t_up.elapsed() < Duration::from_secs(1) {
        thread::sleep(Duration::from_millis(1));
        let t = t_up.elapsed();
        let cwm = cwm_sum(&em.stats());
        if to_steady.is_none() && cwm >= cwm_before {
            to_steady = Some(t);
        }
        if t >= next_point {
            trace.push(point(t, cwm));
            while next_point <= t {
                next_point += TRACE_STEP;
            }
        }
    }
    AfterUpProbe {
        cwm_before,
        cwm_at_up,
        to_steady,
        missed: dev.stats().missed - missed0,
        rx: sink.packets() - rx0,
        trace,
    }
}

impl RunReport {
    /// Checks that nothing was lost, returning what does not add up.
    pub fn conservation(&self) -> Result<(), String> {
        let s = &self.after_down;
        let d = &self.device;
        let mut errs = Vec::new();
        if d.rx_offered != d.rx_delivered + d.missed {
            errs.push(format!(
                "wire: offered {} != delivered {} + missed {}",
                d.rx_offered, d.rx_delivered, d.missed
            ));
        }
        if d.rx_delivered != s.rx_packets + s.rx_errors + s.rx_flushed {
            errs.push(format!(
                "rx: delivered {} != input {} + errors {} + flushed {}",
                d.rx_delivered, s.rx_packets, s.rx_errors, s.rx_flushed
            ));
        }
        if s.rx_packets != self.rx_total {
            errs.push(format!(
                "stack got {} of {} input",
                self.rx_total, s.rx_packets
            ));
        }
        if self.tx_offered != s.ifq_packets + self.tx_refused {
            errs.push(format!(
                "tx: offered {} != enqueued {} + refused {}",
                self.tx_offered, s.ifq_packets, self.tx_refused
            ));
        }
        if s.ifq_packets != s.tx_posted + s.tx_purged {
            errs.push(format!(
                "ifq: enqueued {} != posted {} + purged {}",
                s.ifq_packets, s.tx_posted, s.tx_purged
            ));
        }
        if s.tx_posted != s.tx_completed + s.tx_flushed {
            errs.push(format!(
                "tx ring: posted {} != completed {} + flushed {}",
                s.tx_posted, s.tx_completed, s.tx_flushed
            ));
        }
        if s.pool.in_use() != 0 || s.pool.leaked != 0 || s.pool.dma_errors != 0 {
            errs.push(format!("buffers: {}", s.pool));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

struct Producer {
    offered: AtomicU64,
    refused: AtomicU64,
    stop: AtomicBool,
    /// Inside the measurement window: `transmit` calls are timed (if
    /// `latency` is set).
    measuring: AtomicBool,
    latency: Option<Mutex<LatencyHistogram>>,
}

fn produce(em: &Em<Device>, pool: &Pool, p: &Producer, q: usize, pps: u64, frame: u16) {
    let begin = Instant::now();
    let mut sent = 0u64;
    let mut seq = 0u64;
    let mut times = p.latency.as_ref().map(|_| LatencyHistogram::new());
    while !p.stop.load(Ordering::Relaxed) {
        // Relaxed: a flag read once per burst; a burst timed just outside
        // the window changes nothing that matters.
        let mut timed = times
            .as_mut()
            .filter(|_| p.measuring.load(Ordering::Relaxed));
        let due = (begin.elapsed().as_nanos() * u128::from(pps) / 1_000_000_000) as u64;
        // Bounded burst: after a stall, do not try to catch up at once.
        let burst = due.saturating_sub(sent).min(1024);
        for _ in 0..burst {
            sent += 1;
            let Some(mut m) = pool.alloc() else { continue };
            seq += 1;
            m.fill(frame, seq);
            p.offered.fetch_add(1, Ordering::Relaxed);
            let t = timed.is_some().then(Instant::now);
            let r = em.transmit(q, m);
            if let (Some(h), Some(t)) = (timed.as_deref_mut(), t) {
                h.record(t.elapsed());
            }
            if let Err(e) = r {
                p.refused.fetch_add(1, Ordering::Relaxed);
                e.into_packet().free();
            }
        }
        // End of the batch: a start that bundling deferred runs now.
        em.flush_tx(q);
        sent = sent.max(due.saturating_sub(1024));
        thread::sleep(Duration::from_micros(100));
    }
    if let (Some(all), Some(mine)) = (&p.latency, &times) {
        all.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(mine);
    }
}

/// Switches `em` to the next mode of [`Mode::ALL`] every `every` until
/// `stop`.
fn switch_modes(em: &Em<Device>, first: Mode, every: Duration, stop: &AtomicBool) {
    let mut i = Mode::ALL.iter().position(|&m| m == first).unwrap_or(0);
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(Duration::from_millis(1).min(every));
        if last.elapsed() >= every {
            i = (i + 1) % Mode::ALL.len();
            em.set_mode(Mode::ALL[i])
                .expect("every mode runs on the simulator");
            last = Instant::now();
        }
    }
}

/// Runs one bounded measurement (and the requested up/down cycles), brings
/// the interface down, and reports.
///
/// `progress` is called about every 250 ms with the fraction done.
///
/// # Errors
///
/// [`RunError`] if the device or driver refuse the configuration.
pub fn run(cfg: &RunConfig, mut progress: impl FnMut(f64)) -> Result<RunReport, RunError> {
    let per_queue = (crate::driver::MAX_DESC as usize) * 2 + 2048;
    let pool = Pool::new(per_queue * cfg.queues, 2048);
    let dev = Device::new(
        DeviceConfig {
            queues: cfg.queues,
            wire: cfg.wire,
            frame_size: cfg.frame_size,
            loopback: cfg.loopback,
            ..DeviceConfig::default()
        },
        pool.clone(),
    )
    .map_err(RunError::Device)?;
    let sink = Arc::new(Sink::new(pool.clone()));
    let em = Em::attach(
        Arc::clone(&dev),
        {
            let mut c = EmConfig::new(cfg.mode);
            c.tx_bundle = cfg.tx_bundle;
            c.tx_start = cfg.tx_start;
            c.rx_keep_watermarks = cfg.keep_watermarks;
            c
        },
        Arc::new(KernelLock::new()),
        sink.clone(),
    )
    .map_err(RunError::Driver)?;
    em.up().map_err(RunError::Driver)?;
    let producer = Producer {
        offered: AtomicU64::new(0),
        refused: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        measuring: AtomicBool::new(false),
        latency: cfg.tx_latency.then(|| Mutex::new(LatencyHistogram::new())),
    };
    let producers = cfg.producers.max(1);
    let total = cfg.warmup + cfg.duration;
    let report = thread::scope(|s| {
        if let Some(every) = cfg.switch_every {
            let (em, stop) = (&em, &producer.stop);
            s.spawn(move || switch_modes(em, cfg.mode, every, stop));
        }
        if cfg.tx_pps > 0 {
            let pps = (cfg.tx_pps / producers as u64).max(1);
            for q in (0..cfg.queues).flat_map(|q| std::iter::repeat_n(q, producers)) {
                let (em, pool, producer) = (&em, &pool, &producer);
                s.spawn(move || produce(em, pool, producer, q, pps, cfg.frame_size));
            }
        }
        let begin = Instant::now();
        let step = cfg
            .interval
            .unwrap_or(Duration::from_millis(250))
            .min(Duration::from_millis(250));
        let mut next_sample = cfg.interval.unwrap_or(Duration::MAX);
        let mut samples = Vec::new();
        let mut nap = |until: Duration, progress: &mut dyn FnMut(f64)| {
            while begin.elapsed() < until {
                let left = until.saturating_sub(begin.elapsed());
                let to_sample = next_sample.saturating_sub(begin.elapsed());
                thread::sleep(left.min(step).min(to_sample));
                progress((begin.elapsed().as_secs_f64() / total.as_secs_f64()).min(1.0));
                if let Some(every) = cfg.interval {
                    if begin.elapsed() >= next_sample {
                        let st = em.stats();
                        samples.push(Snapshot {
                            t: begin.elapsed(),
                            rx: sink.packets(),
                            tx: st.tx_completed,
                            missed: dev.stats().missed,
                            qdrops: st.tx_qdrops,
                            rings: st.rxrings.iter().map(|r| (r.cwm, r.alive)).collect(),
                        });
                        next_sample += every;
                    }
                }
            }
        };
        nap(cfg.warmup, &mut progress);
        producer.measuring.store(true, Ordering::Relaxed);
        let (rx0, st0, dev0, cpu0, thr0, t0) = (
            sink.packets(),
            em.stats(),
            dev.stats(),
            process_cpu_time(),
            ThreadCpu::snapshot(),
            Instant::now(),
        );
        nap(total, &mut progress);
        let (rx1, st1, dev1, cpu1, thr1, elapsed) = (
            sink.packets(),
            em.stats(),
            dev.stats(),
            process_cpu_time(),
            ThreadCpu::snapshot(),
            t0.elapsed(),
        );
        producer.measuring.store(false, Ordering::Relaxed);
        let probe = cfg.after_up.then(|| probe_after_up(&em, &dev, &sink));
        let mut cycles = 0;
        for _ in 0..cfg.cycles {
            em.down();
            if em.up().is_ok() {
                cycles += 1;
            }
        }
        producer.stop.store(true, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let thread_cpu = |name: &str| match (&thr0, &thr1) {
            (Some(a), Some(b)) => Some(b.named_since(a, name)),
            _ => None,
        };
        let window = Window {
            process_cpu: cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)),
            device_cpu: thread_cpu("em-device"),
            intr_cpu: thread_cpu("em-intr"),
            big_lock: LockCounts(core::array::from_fn(|i| {
                st1.big_lock.0[i] - st0.big_lock.0[i]
            })),
            samples,
            probe,
        };
        let at_end = st1.clone();
        let rx = rx1 - rx0;
        let tx = st1.tx_completed - st0.tx_completed;
        let cpu_us_per_packet = match (cpu0, cpu1) {
            (Some(a), Some(b)) if rx + tx > 0 => {
                Some((b - a).as_secs_f64() * 1e6 / (rx + tx) as f64)
            }
            _ => None,
        };
        (
            secs,
            rx,
            tx,
            dev1.missed - dev0.missed,
            st1.tx_qdrops - st0.tx_qdrops,
            dev1.interrupts - dev0.interrupts,
            cpu_us_per_packet,
            elapsed,
            cycles,
            at_end,
            window,
        )
    });
    let (
        secs,
        rx,
        tx,
        missed,
        qdrops,
        interrupts,
        cpu_us_per_packet,
        elapsed,
        cycles,
        at_end,
        window,
    ) = report;
    em.down();
    let after_down = em.stats();
    let device = dev.stats();
    let rx_total = sink.packets();
    drop(em);
    dev.shutdown();
    Ok(RunReport {
        mode: cfg.mode,
        elapsed,
        rx_pps: rx as f64 / secs,
        tx_pps: tx as f64 / secs,
        missed,
        qdrops,
        interrupts,
        cpu_us_per_packet,
        big_lock: after_down.big_lock,
        cycles,
        after_down,
        device,
        tx_offered: producer.offered.load(Ordering::Relaxed),
        tx_refused: producer.refused.load(Ordering::Relaxed),
        rx_total,
        at_end,
        big_lock_window: window.big_lock,
        process_cpu: window.process_cpu,
        device_cpu: window.device_cpu,
        intr_cpu: window.intr_cpu,
        offered_rx_pps: match cfg.wire {
            WireRate::Pps(p) => Some((p * cfg.queues as u64) as f64),
            WireRate::Off => Some(0.0),
            WireRate::Unlimited => None,
        },
        samples: window.samples,
        after_up: window.probe,
        tx_call: producer.latency.and_then(|h| {
            h.into_inner()
                .unwrap_or_else(PoisonError::into_inner)
                .summary()
        }),
    })
}

/// What the measurement window saw beyond the counters.
struct Window {
    process_cpu: Option<Duration>,
    device_cpu: Option<Duration>,
    intr_cpu: Option<Duration>,
    big_lock: LockCounts,
    samples: Vec<Snapshot>,
    probe: Option<AfterUpProbe>,
}

/// Aborts the whole process if `f` takes longer than `limit`: a deadlock
/// must fail a test, not hang CI. The watchdog thread wakes every 20 ms and
/// is joined before this returns.
pub fn with_watchdog<R>(limit: Duration, f: impl FnOnce() -> R) -> R {
    let done = Arc::new(AtomicBool::new(false));
    let d = Arc::clone(&done);
    let dog = thread::spawn(move || {
        let start = Instant::now();
        while !d.load(Ordering::Acquire) {
            if start.elapsed() > limit {
                eprintln!("watchdog: no progress in {limit:?}, deadlock?");
                std::process::abort();
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    let r = f();
    done.store(true, Ordering::Release);
    dog.join().unwrap();
    r
}
