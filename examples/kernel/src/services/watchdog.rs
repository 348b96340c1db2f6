//! The watchdog: every CPU's clock interrupt checks the others.
//!
//! A CPU whose heartbeat (its own timer ticks) stays still for
//! [`STUCK_TICKS`] of the observer's ticks is stuck with interrupts masked:
//! spinning inside a handler, typically on a lock that the code it
//! interrupted holds. A CPU that armed its progress watch ([`arm`]) and
//! has not called [`progress`] for as long is stuck with interrupts on.
//! Either way the observer prints what the stuck CPU was doing and ends the
//! run with [`EXIT_WATCHDOG`](crate::EXIT_WATCHDOG).

use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use crate::console::print_emergency;
use crate::cpu::{CPUS, MAX_CPUS, cpu_id};
use crate::services::HZ;

/// Ticks without a sign of life before a CPU is reported (2 s).
pub const STUCK_TICKS: u64 = 2 * HZ;

struct Watch {
    /// Per observed CPU: the last heartbeat seen, and for how many ticks.
    seen: [AtomicU64; MAX_CPUS],
    still: [AtomicU64; MAX_CPUS],
    /// The same for the progress counter.
    seen_progress: [AtomicU64; MAX_CPUS],
    still_progress: [AtomicU64; MAX_CPUS],
}

/// One per observer.
static WATCH: [Watch; MAX_CPUS] = [const {
    Watch {
        seen: [const { AtomicU64::new(0) }; MAX_CPUS],
        still: [const { AtomicU64::new(0) }; MAX_CPUS],
        seen_progress: [const { AtomicU64::new(0) }; MAX_CPUS],
        still_progress: [const { AtomicU64::new(0) }; MAX_CPUS],
    }
}; MAX_CPUS];

static PROGRESS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static ARMED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static REPORTED: AtomicBool = AtomicBool::new(false);
/// What to print about the stuck run (registered by whoever runs one).
static DIAGNOSE: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());

/// Registers `f` to print diagnostics when the watchdog fires (it runs in
/// the observer's clock interrupt: atomics and `try_lock` only).
pub fn set_diagnose(f: fn()) {
    DIAGNOSE.store(f as *mut (), Ordering::Release);
}

/// Marks progress on this CPU (for its armed progress watch).
pub fn progress() {
    PROGRESS[cpu_id()].fetch_add(1, Ordering::Relaxed);
}

/// Arms (or disarms) the progress watch of this CPU: while armed, the
/// other CPUs report it if [`progress`] is not called for [`STUCK_TICKS`].
pub fn arm(on: bool) {
    progress();
    ARMED[cpu_id()].store(on, Ordering::Relaxed);
}

/// Called by every CPU's clock interrupt.
pub(crate) fn check() {
    let me = cpu_id();
    let w = &WATCH[me];
    for (o, cpu) in CPUS.iter().enumerate() {
        if o == me || !cpu.online.load(Ordering::Relaxed) {
            continue;
        }
        let hb = cpu.heartbeat.load(Ordering::Relaxed);
        if w.seen[o].swap(hb, Ordering::Relaxed) == hb {
            if w.still[o].fetch_add(1, Ordering::Relaxed) + 1 == STUCK_TICKS {
                report(o, "no clock tick (interrupts masked)");
            }
        } else {
            w.still[o].store(0, Ordering::Relaxed);
        }
        let p = PROGRESS[o].load(Ordering::Relaxed);
        if w.seen_progress[o].swap(p, Ordering::Relaxed) == p && ARMED[o].load(Ordering::Relaxed) {
            if w.still_progress[o].fetch_add(1, Ordering::Relaxed) + 1 == STUCK_TICKS {
                report(o, "no progress in its watched loop");
            }
        } else {
            w.still_progress[o].store(0, Ordering::Relaxed);
        }
    }
}

fn report(stuck: usize, what: &str) {
    if REPORTED.swap(true, Ordering::AcqRel) {
        return;
    }
    let c = &CPUS[stuck];
    let in_intr = c.in_intr.load(Ordering::Relaxed);
    print_emergency(format_args!(
        "\nWATCHDOG: CPU {stuck} stuck: {what} for {} ticks, seen from CPU {}\n",
        STUCK_TICKS,
        cpu_id()
    ));
    if in_intr != 0 {
        print_emergency(format_args!(
            "WATCHDOG: CPU {stuck} is inside the handler of vector {:#x} ({} handler returns so far)\n",
            in_intr - 1,
            c.intr_exits.load(Ordering::Relaxed)
        ));
    } else {
        print_emergency(format_args!("WATCHDOG: CPU {stuck} is not in a handler\n"));
    }
    let d = DIAGNOSE.load(Ordering::Acquire);
    if !d.is_null() {
        // SAFETY: only `set_diagnose` stores here, and it stores a `fn()`.
        let f: fn() = unsafe { core::mem::transmute::<*mut (), fn()>(d) };
        f();
    }
    crate::watchdog_fired(stuck);
}
