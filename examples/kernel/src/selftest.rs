//! The platform self-test: the services, then real interrupts on both
//! CPUs from the two e1000 NICs ([`nic`]).
//!
//! This is a proof that the platform works, not the em driver: the NIC
//! part is a small throwaway test driver, to be replaced by the real driver
//! once it builds as a `no_std` crate.

pub(crate) mod costs;
mod nic;

use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::console::kprintln;
use crate::cpu::{CPUS, online_cpus};
use crate::madt::Topology;
use crate::services::biglock::KERNEL_LOCK;
use crate::services::ipl::{IPL_NET, IPL_NONE, IPL_SOFT, Mutex, current_ipl, splraise, splx};
use crate::services::task::{Task, task_add};
use crate::services::timeout::{Timeout, ticks, timeout_add, timeout_del, timeout_del_barrier};
use crate::services::wait::{sleep_until, wake_all, wake_cpu};
use crate::services::{HZ, cpu_id};
use crate::{EXIT_FAIL, EXIT_PASS, smp};

/// What the command line asks for (`key=value` words).
pub(crate) struct Options {
    /// Frames each direction sends (`frames=N`).
    pub(crate) frames: u64,
    /// `fault=noipl`: the deliberately wrong build of the NIC test.
    pub(crate) fault_noipl: bool,
    /// `oneway`: only em0 sends (em0→em1), for a one-way figure.
    pub(crate) oneway: bool,
    /// The em driver run's plan (`window=N`, `measure=MS`).
    pub(crate) em: crate::em::run::Plan,
}

impl Options {
    fn parse(cmdline: &str) -> Result<Self, &'static str> {
        let mut o = Self {
            frames: 100_000,
            fault_noipl: false,
            oneway: false,
            em: crate::em::run::Plan::default(),
        };
        let positive = |n: &str| n.parse().ok().filter(|&n: &u64| n > 0);
        for word in cmdline.split_ascii_whitespace() {
            match word.split_once('=') {
                Some(("frames", n)) => {
                    o.frames = n
                        .parse()
                        .ok()
                        .filter(|&n| n > 0)
                        .ok_or("frames=N needs N > 0")?;
                }
                Some(("fault", "noipl")) => o.fault_noipl = true,
                Some(("window", n)) => o.em.window = positive(n).ok_or("window=N needs N > 0")?,
                Some(("measure", ms)) => {
                    o.em.measure = positive(ms)
                        .map(|ms| ms.div_ceil(1000 / HZ))
                        .ok_or("measure=MS needs MS > 0")?;
                }
                None if word == "oneway" => o.oneway = true,
                _ => {
                    return Err(
                        "unknown option (known: frames=N, fault=noipl, oneway, window=N, measure=MS)",
                    );
                }
            }
        }
        Ok(o)
    }
}

/// Runs the self-test; returns the exit status.
pub(crate) fn run(topo: &Topology, cmdline: &str) -> u32 {
    let opts = match Options::parse(cmdline) {
        Ok(o) => o,
        Err(e) => {
            kprintln!("selftest: bad command line {cmdline:?}: {e}");
            return EXIT_FAIL;
        }
    };
    if online_cpus() < 2 {
        kprintln!("selftest: FAIL: {} CPU online, need 2", online_cpus());
        return EXIT_FAIL;
    }
    if let Err(e) = services() {
        kprintln!("selftest: services: FAIL: {e}");
        return EXIT_FAIL;
    }
    let result = nic::run(topo, &opts).and_then(|()| {
        // The em driver itself, once the platform is proven.
        crate::em::run::run(topo, opts.em).map_err(|e| {
            kprintln!("selftest: em: FAIL: {e}");
            "the em driver run failed"
        })
    });
    // What each service costs, once everything ran (never in the fault
    // runs, which stop in the NIC test).
    let result = result.and_then(|()| {
        costs::run().map_err(|e| {
            kprintln!("selftest: costs: FAIL: {e}");
            "a cost measurement did not run"
        })
    });
    let (used, free) = crate::heap::usage();
    kprintln!(
        "selftest: heap {} KiB used, {} KiB free",
        used >> 10,
        free >> 10
    );
    match result {
        Ok(()) => EXIT_PASS,
        Err(e) => {
            kprintln!("selftest: nic: FAIL: {e}");
            EXIT_FAIL
        }
    }
}

/// A counter that only a lock protects (no atomics), to show the lock
/// excludes: the two CPUs' increments add up only if it does.
struct Plain(UnsafeCell<u64>);

// SAFETY: every access to the cell is made under the lock the test names
// (the big lock or an IPL mutex).
unsafe impl Sync for Plain {}

static BIG_COUNTED: Plain = Plain(UnsafeCell::new(0));
static IPL_COUNTED: Mutex<IPL_NET, u64> = Mutex::new(0);
const ROUNDS: u64 = 20_000;

fn hammer_locks() {
    for _ in 0..ROUNDS {
        {
            let _g = KERNEL_LOCK.lock();
            let _nested = KERNEL_LOCK.lock();
            // SAFETY: under the big lock.
            unsafe { *BIG_COUNTED.0.get() += 1 };
        }
        *IPL_COUNTED.lock() += 1;
    }
}

fn check(cond: bool, what: &'static str) -> Result<(), &'static str> {
    if cond { Ok(()) } else { Err(what) }
}

/// Each service once, with both CPUs.
fn services() -> Result<(), &'static str> {
    // Both CPUs take clock interrupts.
    let t0 = ticks();
    sleep_until(|| ticks() >= t0 + 5 && CPUS[1].heartbeat.load(Ordering::Relaxed) >= 5);

    // The IPL mutex raises the level while held, and restores it.
    {
        let g = IPL_COUNTED.lock();
        check(
            current_ipl() == IPL_NET,
            "IPL not raised to IPL_NET under the mutex",
        )?;
        drop(g);
        check(
            current_ipl() == IPL_NONE,
            "IPL not restored after the mutex",
        )?;
    }

    // The big lock and an IPL mutex exclude across the two CPUs.
    let other = smp::run_on(1, hammer_locks);
    hammer_locks();
    other.wait();
    let big = {
        let _g = KERNEL_LOCK.lock();
        // SAFETY: under the big lock.
        unsafe { *BIG_COUNTED.0.get() }
    };
    check(big == 2 * ROUNDS, "big lock: increments lost")?;
    check(
        *IPL_COUNTED.lock() == 2 * ROUNDS,
        "IPL mutex: increments lost",
    )?;

    // A one-shot timeout fires once, after its ticks, on the clock CPU; the
    // deleted ones never fire (their deadlines pass before `t` fires).
    let fired_at = Arc::new(AtomicU64::new(0));
    let f = Arc::clone(&fired_at);
    let t = Timeout::new(
        move || {
            f.store(ticks(), Ordering::SeqCst);
            wake_all();
        },
        true,
    );
    let armed_at = ticks();
    check(timeout_add(&t, 3), "timeout_add: already armed")?;
    let never = Timeout::new(|| panic!("a deleted timeout fired"), false);
    timeout_add(&never, 2);
    check(timeout_del(&never), "timeout_del: not armed")?;
    let never_either = Timeout::new(|| panic!("a deleted timeout fired"), true);
    timeout_add(&never_either, 1);
    check(
        timeout_del_barrier(&never_either),
        "timeout_del_barrier: not armed",
    )?;
    check(
        !timeout_del_barrier(&never_either),
        "timeout_del_barrier: still armed",
    )?;
    sleep_until(|| fired_at.load(Ordering::SeqCst) != 0);
    check(
        fired_at.load(Ordering::SeqCst) >= armed_at + 3,
        "timeout fired early",
    )?;
    check(
        t.fired() == 1 && !t.pending(),
        "timeout fired more than once",
    )?;

    // A task added on CPU 0 runs on CPU 1; one added twice before it runs
    // runs once.
    let ran_on = Arc::new(AtomicUsize::new(usize::MAX));
    let r = Arc::clone(&ran_on);
    let task = Task::new(
        move || {
            r.store(cpu_id(), Ordering::SeqCst);
            wake_all();
        },
        true,
    );
    check(task_add(&task, 1), "task_add: already queued")?;
    sleep_until(|| ran_on.load(Ordering::SeqCst) != usize::MAX);
    check(
        ran_on.load(Ordering::SeqCst) == 1,
        "task ran on the wrong CPU",
    )?;
    let twice = Task::new(|| {}, false);
    let s = splraise(IPL_SOFT);
    let first = task_add(&twice, 0);
    let second = task_add(&twice, 0);
    check(twice.runs() == 0, "a task ran at IPL_SOFT")?;
    splx(s);
    check(
        first && !second && twice.runs() == 1,
        "a task added twice ran twice",
    )?;

    // A sleeping CPU is woken by the IPI.
    static GO: AtomicBool = AtomicBool::new(false);
    let ipis = CPUS[1].stats.wake_ipi.load(Ordering::Relaxed);
    let sleeper = smp::run_on(1, || sleep_until(|| GO.load(Ordering::SeqCst)));
    sleep_until(|| CPUS[1].sleeping.load(Ordering::SeqCst));
    GO.store(true, Ordering::SeqCst);
    wake_cpu(1);
    sleeper.wait();
    check(
        CPUS[1].stats.wake_ipi.load(Ordering::Relaxed) > ipis,
        "no wake-up IPI reached CPU 1",
    )?;

    kprintln!(
        "selftest: services ok: clock on both CPUs ({HZ} Hz), IPL mutex and big lock exclude across CPUs ({} acquisitions CPU0, {} CPU1, {} contended), timeout fired after {} ticks, task ran on CPU 1, wake-up IPI",
        KERNEL_LOCK.acquisitions(0),
        KERNEL_LOCK.acquisitions(1),
        KERNEL_LOCK.contended(),
        fired_at.load(Ordering::SeqCst) - armed_at,
    );
    Ok(())
}
