//! One-shot timeouts in clock ticks (OpenBSD `timeout_add`), driven by the
//! local APIC timer.
//!
//! The boot CPU's clock interrupt notices an expired deadline and raises
//! the softclock soft interrupt ([`VEC_SOFTCLOCK`], level [`IPL_SOFT`]) on
//! itself; softclock runs every expired timeout there, under the big lock
//! unless it is MP-safe. Like tasks, timeouts run in interrupt context and
//! must not sleep.
//!
//! [`IPL_SOFT`]: crate::services::ipl::IPL_SOFT

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::apic;
use crate::cpu::this_cpu;
use crate::services::VEC_SOFTCLOCK;
use crate::services::biglock::KERNEL_LOCK;
use crate::services::ipl::{IPL_HIGH, Mutex};

/// Clock ticks since boot (the boot CPU's timer).
static TICKS: AtomicU64 = AtomicU64::new(0);
/// The earliest pending deadline (`u64::MAX`: none).
static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
/// Pending timeouts and their deadlines.
static PENDING: Mutex<IPL_HIGH, Vec<(u64, Arc<Timeout>)>> = Mutex::new(Vec::new());

/// Clock ticks since boot ([`HZ`](crate::services::HZ) per second).
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// A one-shot timeout.
pub struct Timeout {
    func: Box<dyn Fn() + Send + Sync>,
    mpsafe: bool,
    pending: AtomicBool,
    running: AtomicBool,
    fired: AtomicU64,
}

impl Timeout {
    /// A timeout running `func`, under the big lock unless `mpsafe`.
    pub fn new(func: impl Fn() + Send + Sync + 'static, mpsafe: bool) -> Arc<Self> {
        Arc::new(Self {
            func: Box::new(func),
            mpsafe,
            pending: AtomicBool::new(false),
            running: AtomicBool::new(false),
            fired: AtomicU64::new(0),
        })
    }

    /// Whether it is armed.
    pub fn pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// Times it fired.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }
}

/// Arms `t` to fire `ticks` ticks from now (at least one), moving its
/// deadline if it was armed; `true` if it was not armed before.
pub fn timeout_add(t: &Arc<Timeout>, ticks_from_now: u64) -> bool {
    let deadline = ticks() + ticks_from_now.max(1);
    let mut p = PENDING.lock();
    let fresh = !t.pending.swap(true, Ordering::AcqRel);
    if let Some(e) = p.iter_mut().find(|(_, x)| Arc::ptr_eq(x, t)) {
        e.0 = deadline;
    } else {
        p.push((deadline, Arc::clone(t)));
    }
    NEXT.fetch_min(deadline, Ordering::Relaxed);
    fresh
}

/// Disarms `t`; `true` if it was armed. A run already started is not
/// waited for: see [`timeout_del_barrier`].
pub fn timeout_del(t: &Arc<Timeout>) -> bool {
    let mut p = PENDING.lock();
    let before = p.len();
    p.retain(|(_, x)| !Arc::ptr_eq(x, t));
    t.pending.store(false, Ordering::Release);
    p.len() != before
}

/// Disarms `t` and waits until a run in progress has returned; a run that
/// re-armed `t` meanwhile is disarmed again (`timeout_del_barrier`). Must
/// not be called from `t` itself.
pub fn timeout_del_barrier(t: &Arc<Timeout>) -> bool {
    let was = timeout_del(t);
    crate::services::wait::sleep_until(|| !t.running.load(Ordering::Acquire));
    timeout_del(t) || was
}

/// The boot CPU's clock tick: advances the tick count and raises softclock
/// if a deadline passed.
pub(crate) fn tick() {
    let now = TICKS.fetch_add(1, Ordering::Relaxed) + 1;
    if now >= NEXT.load(Ordering::Relaxed) {
        apic::send_self_ipi(VEC_SOFTCLOCK);
    }
}

/// The softclock soft interrupt: runs every expired timeout.
pub(crate) fn softclock() {
    this_cpu().stats.softclock.fetch_add(1, Ordering::Relaxed);
    let now = ticks();
    let mut due = Vec::new();
    {
        let mut p = PENDING.lock();
        let mut next = u64::MAX;
        p.retain(|(d, t)| {
            if *d <= now {
                due.push(Arc::clone(t));
                false
            } else {
                next = next.min(*d);
                true
            }
        });
        NEXT.store(next, Ordering::Relaxed);
        for t in &due {
            t.running.store(true, Ordering::Relaxed);
            t.pending.store(false, Ordering::Release);
        }
    }
    for t in due {
        if t.mpsafe {
            (t.func)();
        } else {
            let _big = KERNEL_LOCK.lock();
            (t.func)();
        }
        t.fired.fetch_add(1, Ordering::Relaxed);
        t.running.store(false, Ordering::Release);
    }
}
