//! What each kernel service costs, measured with the TSC on both CPUs.
//!
//! A short phase after the em run (so it never runs in the `fault=noipl`
//! builds, which stop in the NIC test): each service is timed call by call
//! with `rdtsc` and the table gives the median and the 99th percentile in
//! TSC cycles and in nanoseconds, at the TSC rate the boot CPU measured
//! against the PIT ([`TSC_PER_US`]). Nothing here asserts on a time: the
//! phase fails only if a measurement did not run (a row without samples,
//! the level not raised under the IPL mutex, fewer wake-up IPIs or halts
//! than half the rounds). A cross-CPU row stops early, with the samples it
//! has, after [`ROW_BUDGET_US`], so a loaded host cannot stretch the phase
//! far; the measuring CPU's progress watch is armed, one mark per round.
//!
//! Cross-CPU latencies are read on one CPU's TSC only: the initiator takes
//! the first stamp and, once it sees the other CPU's answer, the second.
//! They include the answer's trip back (a cache line), and are labelled
//! round trips where the answer is a second hand-off.
//!
//! The driver's own `Em::transmit` is sampled by the em run (its `mpsafe`
//! run, both CPUs, the first [`TX_SAMPLES`] calls of each that queued a
//! frame; [`transmit_sample`]), and shown here beside the services. It
//! runs at `IPL_NET` like every driver call there; the figure is the call
//! alone, and it includes QEMU's e1000 sending the frame: the `TDT` write
//! is emulated in the writing CPU's thread.
//!
//! Under QEMU's TCG every instruction is translated, and the figures are
//! those of that machine, not of hardware: MMIO, CR8 writes, IPIs and `hlt`
//! are emulated in QEMU's own code, and each virtual CPU is a host thread
//! the host may deschedule (the p99 column shows it).

use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering, compiler_fence};

use lock_api::RawMutex;

use crate::apic::{TSC_PER_US, Trigger, delay_us};
use crate::arch::{rdtsc, tpr};
use crate::console::kprintln;
use crate::cpu::CPUS;
use crate::services::biglock::KERNEL_LOCK;
use crate::services::intr::{intr_barrier, intr_disestablish, intr_establish};
use crate::services::ipl::{IPL_HIGH, IPL_NET, IplMutex, Mutex, splraise, splx};
use crate::services::task::{Task, task_add};
use crate::services::timeout::{Timeout, ticks, timeout_add};
use crate::services::wait::{sleep_until, wake_cpu};
use crate::services::{cpu_id, watchdog};
use crate::smp;

/// Samples of the cheap calls, per CPU.
const FAST: usize = 2048;
/// Round trips between the CPUs, per direction (each needs both vCPU
/// threads running: on a loaded host a round can wait a host time slice).
const TRIPS: usize = 100;
/// Tasks added per row.
const TASKS: usize = 128;
/// A cross-CPU row stops early after this long (µs of TSC), with the
/// samples it has: on a loaded host each round can wait for the host to
/// run both vCPU threads, and the phase must stay short.
const ROW_BUDGET_US: u64 = 100_000;
/// Wake-ups of a halted CPU, per direction (each waits 20 µs first).
const WAKES: usize = 100;
/// One-tick timeouts per arming CPU (each takes up to a tick).
const TIMEOUTS: usize = 8;
/// Tick periods timed on the boot CPU.
const PERIODS: usize = 8;
/// An IOAPIC input nothing drives on QEMU's `pc` machine (its PCI slots'
/// INTx lines reach ISA IRQs 10 and 11 through the PIIX's PIRQ routing).
const IDLE_GSI: u32 = 23;
/// `Em::transmit` samples kept per CPU.
const TX_SAMPLES: usize = 8192;

/// Whether a cross-CPU row that began at `start` (a [`stamp`]) has used up
/// its [`ROW_BUDGET_US`].
fn over_budget(start: u64) -> bool {
    stamp() - start > ROW_BUDGET_US * TSC_PER_US.load(Ordering::Relaxed).max(1)
}

/// The TSC now, not moved across the code around it by the compiler.
pub(crate) fn stamp() -> u64 {
    compiler_fence(Ordering::SeqCst);
    let t = rdtsc();
    compiler_fence(Ordering::SeqCst);
    t
}

/// Whether the em run is sampling `Em::transmit` now (its `mpsafe` run).
static TX_ON: AtomicBool = AtomicBool::new(false);
/// Per CPU: samples taken (may pass [`TX_SAMPLES`]; only the first are kept).
static TX_N: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
/// Per CPU: cycles per call; written only by that CPU.
static TX: [[AtomicU32; TX_SAMPLES]; 2] = [const { [const { AtomicU32::new(0) }; TX_SAMPLES] }; 2];

/// Starts (or stops) sampling `Em::transmit` (the em run, around its
/// `mpsafe` run).
pub(crate) fn transmit_sampling(on: bool) {
    TX_ON.store(on, Ordering::SeqCst);
}

/// Records one `Em::transmit` call that began at `t0` (a [`stamp`]) and
/// queued its frame, if sampling is on.
pub(crate) fn transmit_sample(t0: u64) {
    let dt = stamp().saturating_sub(t0);
    let cpu = cpu_id();
    if !TX_ON.load(Ordering::Relaxed) || cpu >= 2 {
        return;
    }
    // Relaxed: only this CPU writes its slots; the reader reads them after
    // the run's senders have stopped (the AP's job handed back through
    // `smp::Done`, sequentially consistent).
    let i = TX_N[cpu].fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = TX[cpu].get(i) {
        slot.store(u32::try_from(dt).unwrap_or(u32::MAX), Ordering::Relaxed);
    }
}

fn transmit_samples(cpu: usize) -> Vec<u64> {
    let n = TX_N[cpu].load(Ordering::SeqCst).min(TX_SAMPLES);
    TX[cpu][..n]
        .iter()
        .map(|s| u64::from(s.load(Ordering::Relaxed)))
        .collect()
}

/// One line of the table.
struct Row {
    what: &'static str,
    cpu: &'static str,
    samples: Vec<u64>,
    /// TSC cycles the measurement took, start to end.
    took: u64,
}

/// Runs `init` on CPU `initiator` and `resp` on the other one, at once;
/// returns `init`'s samples.
fn pair(
    initiator: usize,
    init: impl FnOnce() -> Vec<u64> + Send + 'static,
    resp: impl FnOnce() + Send + 'static,
) -> Vec<u64> {
    // The initiator's progress watch is armed while it measures (each
    // round marks progress): a round stuck for the watchdog's interval is
    // reported. The responder's waits belong to the initiator's rounds.
    let init = move || {
        watchdog::arm(true);
        let v = init();
        watchdog::arm(false);
        v
    };
    if initiator == 0 {
        let d = smp::run_on(1, resp);
        let v = init();
        d.wait();
        v
    } else {
        let out: Arc<Mutex<IPL_HIGH, Vec<u64>>> = Arc::new(Mutex::new(Vec::new()));
        let o = Arc::clone(&out);
        let d = smp::run_on(1, move || {
            let v = init();
            *o.lock() = v;
        });
        resp();
        d.wait();
        core::mem::take(&mut *out.lock())
    }
}

/// Runs `f` on `cpu` (the other one idles, halted).
fn on(cpu: usize, f: impl FnOnce() -> Vec<u64> + Send + 'static) -> Vec<u64> {
    pair(cpu, f, || {})
}

/// Times `f` `n` times, one call per sample.
fn each(n: usize, mut f: impl FnMut()) -> Vec<u64> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        watchdog::progress();
        let t0 = stamp();
        f();
        v.push(stamp() - t0);
    }
    v
}

/// The lock the IPL-mutex rows take.
static IPL_LOCK: IplMutex<IPL_NET> = <IplMutex<IPL_NET> as RawMutex>::INIT;
/// Set if the level was not `IPL_NET` under [`IPL_LOCK`].
static IPL_WRONG: AtomicBool = AtomicBool::new(false);

fn ipl_lock() {
    IPL_LOCK.lock();
    if tpr() != IPL_NET {
        IPL_WRONG.store(true, Ordering::Relaxed);
    }
}

fn ipl_unlock() {
    // SAFETY: called only by the CPU that took it in `ipl_lock`.
    unsafe { IPL_LOCK.unlock() }
}

fn big_lock() {
    core::mem::forget(KERNEL_LOCK.lock());
}

fn big_unlock() {
    // SAFETY: called only by the CPU that took it in `big_lock`.
    unsafe { KERNEL_LOCK.unlock_raw() }
}

/// The hand-off rounds' steps: the initiator's round number once it holds
/// the lock, the responder's once it is about to take it and once it got it.
static HO_GO: AtomicUsize = AtomicUsize::new(0);
static HO_READY: AtomicUsize = AtomicUsize::new(0);
static HO_GOT: AtomicUsize = AtomicUsize::new(0);
/// The initiator stopped (its rounds or its budget are used up).
static HO_DONE: AtomicBool = AtomicBool::new(false);

fn spin_until(cond: impl Fn() -> bool) {
    while !cond() {
        core::hint::spin_loop();
    }
}

/// A lock's round trip between the CPUs: the initiator releases it to the
/// responder spinning on it, which takes it, says so and releases it; the
/// sample ends when the initiator holds it again.
fn handoff(initiator: usize, lock: fn(), unlock: fn()) -> Vec<u64> {
    HO_GO.store(0, Ordering::SeqCst);
    HO_READY.store(0, Ordering::SeqCst);
    HO_GOT.store(0, Ordering::SeqCst);
    HO_DONE.store(false, Ordering::SeqCst);
    let init = move || {
        let mut v = Vec::with_capacity(TRIPS);
        let start = stamp();
        for i in 1..=TRIPS {
            if over_budget(start) {
                break;
            }
            watchdog::progress();
            lock();
            HO_GO.store(i, Ordering::SeqCst);
            spin_until(|| HO_READY.load(Ordering::SeqCst) == i);
            let t0 = stamp();
            unlock();
            // The lock is unfair: wait for the responder to have had it.
            spin_until(|| HO_GOT.load(Ordering::SeqCst) == i);
            lock();
            v.push(stamp() - t0);
            unlock();
        }
        HO_DONE.store(true, Ordering::SeqCst);
        v
    };
    let resp = move || {
        for i in 1..=TRIPS {
            spin_until(|| HO_GO.load(Ordering::SeqCst) == i || HO_DONE.load(Ordering::SeqCst));
            if HO_GO.load(Ordering::SeqCst) != i {
                break;
            }
            HO_READY.store(i, Ordering::SeqCst);
            lock();
            HO_GOT.store(i, Ordering::SeqCst);
            unlock();
        }
    };
    pair(initiator, init, resp)
}

/// Runs of the task (and fires of the timeout) measured so far.
static RAN: AtomicUsize = AtomicUsize::new(0);
/// Tells a busy responder to stop.
static STOP: AtomicBool = AtomicBool::new(false);

/// `task_add` on `from` to the task running on `to`, as seen by `from`.
/// The target, when it is the other CPU, is busy (not halted), so the
/// figure is the soft interrupt's IPI and dispatch, not a wake-up.
fn task_latency(from: usize, to: usize) -> Vec<u64> {
    RAN.store(0, Ordering::SeqCst);
    STOP.store(false, Ordering::SeqCst);
    let init = move || {
        let task = Task::new(
            || {
                RAN.fetch_add(1, Ordering::SeqCst);
            },
            true,
        );
        let mut v = Vec::with_capacity(TASKS);
        let start = stamp();
        for i in 1..=TASKS {
            if over_budget(start) {
                break;
            }
            watchdog::progress();
            let t0 = stamp();
            task_add(&task, to);
            spin_until(|| RAN.load(Ordering::SeqCst) == i);
            v.push(stamp() - t0);
        }
        STOP.store(true, Ordering::SeqCst);
        v
    };
    if from == to {
        on(from, init)
    } else {
        pair(from, init, || spin_until(|| STOP.load(Ordering::SeqCst)))
    }
}

/// `timeout_add(1)` on `from` to the timeout's call (softclock on the boot
/// CPU), as seen by `from`. Each is armed right after the previous one
/// fired, that is just after a tick, so it waits most of a period.
fn timeout_latency(from: usize) -> Vec<u64> {
    RAN.store(0, Ordering::SeqCst);
    on(from, || {
        let t = Timeout::new(
            || {
                RAN.fetch_add(1, Ordering::SeqCst);
            },
            true,
        );
        let mut v = Vec::with_capacity(TIMEOUTS);
        for i in 1..=TIMEOUTS {
            watchdog::progress();
            let t0 = stamp();
            timeout_add(&t, 1);
            spin_until(|| RAN.load(Ordering::SeqCst) == i);
            v.push(stamp() - t0);
        }
        v
    })
}

/// The boot CPU's tick period, seen by polling `ticks()`.
fn tick_periods() -> Vec<u64> {
    let mut last = ticks();
    spin_until(|| ticks() != last);
    last = ticks();
    let mut t0 = stamp();
    let mut v = Vec::with_capacity(PERIODS);
    for _ in 0..PERIODS {
        watchdog::progress();
        spin_until(|| ticks() != last);
        let t1 = stamp();
        last = ticks();
        v.push(t1 - t0);
        t0 = t1;
    }
    v
}

/// The wake-up rounds: the waker's round number, and the sleeper's once
/// awake.
static WAKE_GO: AtomicUsize = AtomicUsize::new(0);
static WAKE_ACK: AtomicUsize = AtomicUsize::new(0);
/// The waker stopped (its rounds or its budget are used up).
static WAKE_DONE: AtomicBool = AtomicBool::new(false);

/// A CPU halted in `sleep_until`, woken by the other with `wake_cpu`: from
/// the waker's store to the sleeper's answer seen by the waker.
fn wake_latency(waker: usize) -> Vec<u64> {
    let sleeper = 1 - waker;
    WAKE_GO.store(0, Ordering::SeqCst);
    WAKE_ACK.store(0, Ordering::SeqCst);
    WAKE_DONE.store(false, Ordering::SeqCst);
    let init = move || {
        let mut v = Vec::with_capacity(WAKES);
        let start = stamp();
        for i in 1..=WAKES {
            if over_budget(start) {
                break;
            }
            watchdog::progress();
            spin_until(|| CPUS[sleeper].sleeping.load(Ordering::SeqCst));
            // Give it time to reach `hlt` after publishing `sleeping`.
            delay_us(20);
            let t0 = stamp();
            WAKE_GO.store(i, Ordering::SeqCst);
            wake_cpu(sleeper);
            spin_until(|| WAKE_ACK.load(Ordering::SeqCst) == i);
            v.push(stamp() - t0);
        }
        WAKE_DONE.store(true, Ordering::SeqCst);
        wake_cpu(sleeper);
        v
    };
    let resp = || {
        for i in 1..=WAKES {
            sleep_until(|| WAKE_GO.load(Ordering::SeqCst) == i || WAKE_DONE.load(Ordering::SeqCst));
            if WAKE_GO.load(Ordering::SeqCst) != i {
                break;
            }
            WAKE_ACK.store(i, Ordering::SeqCst);
        }
    };
    pair(waker, init, resp)
}

fn median_p99(v: &mut [u64]) -> (u64, u64) {
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return (0, 0);
    }
    (v[n / 2], v[(n * 99 / 100).min(n - 1)])
}

/// Runs the phase and prints the table; `Err` if a measurement did not run.
pub(crate) fn run() -> Result<(), String> {
    let mhz = TSC_PER_US.load(Ordering::Relaxed).max(1);
    let start = stamp();
    let ticks0 = ticks();
    kprintln!(
        "costs: each service timed call by call with the TSC ({mhz} MHz, calibrated against the PIT at boot), on both CPUs; {} build",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let mut rows = Vec::new();
    let mut last = stamp();
    let mut add = |what, cpu, samples| {
        let now = stamp();
        rows.push(Row {
            what,
            cpu,
            samples,
            took: now - last,
        });
        last = now;
    };
    for (c, name) in [(0, "0"), (1, "1")] {
        add(
            "rdtsc; rdtsc (the clock's own cost)",
            name,
            on(c, || each(FAST, || {})),
        );
    }
    for (c, name) in [(0, "0"), (1, "1")] {
        add(
            "splraise(IPL_NET); splx (the TPR alone)",
            name,
            on(c, || each(FAST, || splx(splraise(IPL_NET)))),
        );
    }
    for (c, name) in [(0, "0"), (1, "1")] {
        add(
            "IplMutex<IPL_NET> lock+unlock (TPR up, down)",
            name,
            on(c, || {
                each(FAST, || {
                    ipl_lock();
                    ipl_unlock();
                })
            }),
        );
    }
    for (c, name) in [(0, "0"), (1, "1")] {
        add(
            "KERNEL_LOCK lock+unlock",
            name,
            on(c, || {
                each(FAST, || {
                    big_lock();
                    big_unlock();
                })
            }),
        );
        add(
            "KERNEL_LOCK nested lock+unlock",
            name,
            on(c, || {
                big_lock();
                let v = each(FAST, || {
                    big_lock();
                    big_unlock();
                });
                big_unlock();
                v
            }),
        );
    }
    for (c, name) in [(0, "0>1>0"), (1, "1>0>1")] {
        add(
            "IplMutex hand-off round trip",
            name,
            handoff(c, ipl_lock, ipl_unlock),
        );
        add(
            "KERNEL_LOCK hand-off round trip",
            name,
            handoff(c, big_lock, big_unlock),
        );
    }
    for (from, to, name) in [(0, 0, "0"), (1, 1, "1"), (0, 1, "0>1"), (1, 0, "1>0")] {
        add("task_add to the task running", name, task_latency(from, to));
    }
    let ipis = [0, 1].map(|c| CPUS[c].stats.wake_ipi.load(Ordering::Relaxed));
    let sleeps = [0, 1].map(|c| CPUS[c].stats.sleeps.load(Ordering::Relaxed));
    // Rounds in which each CPU was the sleeper.
    let mut slept = [0u64; 2];
    for (waker, name) in [(0, "0>1"), (1, "1>0")] {
        let v = wake_latency(waker);
        slept[1 - waker] = v.len() as u64;
        add("wake-up IPI: sleep_until woken, answer seen", name, v);
    }
    let ipis = [0, 1].map(|c| CPUS[c].stats.wake_ipi.load(Ordering::Relaxed) - ipis[c]);
    let sleeps = [0, 1].map(|c| CPUS[c].stats.sleeps.load(Ordering::Relaxed) - sleeps[c]);
    add("tick period (100 Hz)", "0", on(0, tick_periods));
    for (c, name) in [(0, "0"), (1, "1>0")] {
        add(
            "timeout_add(1 tick) to the timeout running",
            name,
            timeout_latency(c),
        );
    }
    let idle = intr_establish(
        IDLE_GSI,
        Trigger {
            level: false,
            active_low: false,
        },
        0,
        true,
        Arc::new(|| false),
    )
    .map_err(|e| format!("intr_establish on GSI {IDLE_GSI}: {e}"))?;
    let idle = Arc::new(idle);
    for (c, name) in [(0, "0"), (1, "1")] {
        let h = Arc::clone(&idle);
        add(
            "intr_barrier, idle line",
            name,
            on(c, move || each(FAST, || intr_barrier(&h))),
        );
    }
    match Arc::try_unwrap(idle) {
        Ok(h) => intr_disestablish(h),
        Err(_) => return Err(String::from("the idle line's handle is still shared")),
    }
    let tx_calls = [0, 1].map(|c| TX_N[c].load(Ordering::SeqCst));
    for (c, name) in [(0, "0"), (1, "1")] {
        add(
            "Em::transmit, mpsafe, in the em run",
            name,
            transmit_samples(c),
        );
    }
    let took_ms = (stamp() - start) / mhz / 1000;

    kprintln!(
        "{:<44} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>5}",
        "service",
        "CPU",
        "n",
        "med cyc",
        "p99 cyc",
        "med ns",
        "p99 ns",
        "ms"
    );
    let mut errors = Vec::new();
    for r in &mut rows {
        let n = r.samples.len();
        let (med, p99) = median_p99(&mut r.samples);
        kprintln!(
            "{:<44} {:>6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>5}",
            r.what,
            r.cpu,
            n,
            med,
            p99,
            med * 1000 / mhz,
            p99 * 1000 / mhz,
            r.took / mhz / 1000
        );
        if n == 0 {
            errors.push(format!("{} (CPU {}): no samples", r.what, r.cpu));
        }
    }
    kprintln!(
        "(CPU a>b: started on a, answered on b, timed on a; a cross-CPU row stops after {} ms with the samples it has; the wake-ups: {} and {} IPIs received by CPU 0 and 1, {} and {} halts; Em::transmit: the first {TX_SAMPLES} of {} and {} calls that queued a frame; phase {took_ms} ms, {} ticks)",
        ROW_BUDGET_US / 1000,
        ipis[0],
        ipis[1],
        sleeps[0],
        sleeps[1],
        tx_calls[0],
        tx_calls[1],
        ticks() - ticks0,
    );
    if IPL_WRONG.load(Ordering::Relaxed) {
        errors.push(String::from("the level was not IPL_NET under the IplMutex"));
    }
    // A round whose sleeper a clock tick woke just before the store finds
    // it awake and sends no IPI (and is then no wake-up measurement): at
    // least half the rounds must have been real ones.
    if (0..2).any(|c| ipis[c] < slept[c] / 2 || sleeps[c] < slept[c] / 2) {
        errors.push(format!(
            "wake-ups: {ipis:?} IPIs received and {sleeps:?} halts by CPU 0 and 1, in {slept:?} rounds as the sleeper"
        ));
    }
    if errors.is_empty() {
        kprintln!("costs: ok (each measurement ran; no time is checked)");
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
