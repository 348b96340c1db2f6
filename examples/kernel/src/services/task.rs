//! Deferred tasks (OpenBSD `task_add`, NetBSD `softint_schedule`): work an
//! interrupt handler hands to soft-interrupt level on a chosen CPU.
//!
//! [`task_add`] queues the task on the CPU's list and sends that CPU the
//! task soft interrupt ([`VEC_SOFTTASK`], level [`IPL_SOFT`]), which runs
//! the queue once the CPU drops below that level (no lock a handler takes
//! is then held on it). A task added again before it ran runs once. Tasks
//! not marked MP-safe run under the big lock. Tasks must not sleep (they
//! run in interrupt context).
//!
//! [`IPL_SOFT`]: crate::services::ipl::IPL_SOFT

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::apic;
use crate::cpu::{CPUS, MAX_CPUS, cpu_id, this_cpu};
use crate::services::VEC_SOFTTASK;
use crate::services::biglock::KERNEL_LOCK;
use crate::services::ipl::{IPL_HIGH, Mutex};

/// A deferred task.
pub struct Task {
    func: Box<dyn Fn() + Send + Sync>,
    mpsafe: bool,
    pending: AtomicBool,
    runs: AtomicU64,
}

impl Task {
    /// A task running `func`, under the big lock unless `mpsafe`.
    pub fn new(func: impl Fn() + Send + Sync + 'static, mpsafe: bool) -> Arc<Self> {
        Arc::new(Self {
            func: Box::new(func),
            mpsafe,
            pending: AtomicBool::new(false),
            runs: AtomicU64::new(0),
        })
    }

    /// Times it ran.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

static QUEUES: [Mutex<IPL_HIGH, VecDeque<Arc<Task>>>; MAX_CPUS] =
    [const { Mutex::new(VecDeque::new()) }; MAX_CPUS];

/// Queues `task` to run on `cpu`; `false` if it was already queued (it
/// will run once).
pub fn task_add(task: &Arc<Task>, cpu: usize) -> bool {
    if task.pending.swap(true, Ordering::AcqRel) {
        return false;
    }
    QUEUES[cpu].lock().push_back(Arc::clone(task));
    if cpu == cpu_id() {
        apic::send_self_ipi(VEC_SOFTTASK);
    } else {
        apic::send_ipi(CPUS[cpu].apic_id.load(Ordering::Relaxed), VEC_SOFTTASK);
    }
    true
}

/// Removes `task` from whichever queue holds it; `true` if it was queued.
/// A run already started is not waited for.
pub fn task_del(task: &Arc<Task>) -> bool {
    for q in &QUEUES {
        let mut q = q.lock();
        if let Some(i) = q.iter().position(|t| Arc::ptr_eq(t, task)) {
            q.remove(i);
            task.pending.store(false, Ordering::Release);
            return true;
        }
    }
    false
}

/// The task soft interrupt: runs this CPU's queue until it is empty.
pub(crate) fn softtask() {
    this_cpu().stats.softtask.fetch_add(1, Ordering::Relaxed);
    let me = cpu_id();
    loop {
        let Some(t) = QUEUES[me].lock().pop_front() else {
            break;
        };
        // Cleared before the run: an add during the run queues it again.
        t.pending.store(false, Ordering::Release);
        if t.mpsafe {
            (t.func)();
        } else {
            let _big = KERNEL_LOCK.lock();
            (t.func)();
        }
        t.runs.fetch_add(1, Ordering::Relaxed);
    }
}
