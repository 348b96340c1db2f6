//! This kernel as the em driver's [`mpsafe_em::Kernel`]: [`Kern`], a
//! zero-sized type naming the services of [`crate::services`].
//!
//! | the driver asks for | here |
//! |---|---|
//! | `RxLock`, `QueueLock` (shared with its handler) | [`IplMutex`] at [`IPL_NET`]: the level is raised before the spin |
//! | `Wait` (the ifnet serializer, barriers) | [`KernelWait`]: `hlt` until an interrupt or the wake-up IPI, a spin where sleeping is not allowed |
//! | `BigLock` | [`KernelBigLock`]: [`KERNEL_LOCK`] itself, which non-MP-safe handlers, tasks and timeouts also take |
//! | `Deferred`, delay 0 | [`KernelDeferred`] over a [`Task`] (soft interrupt at `IPL_SOFT`, always on one CPU) |
//! | `Deferred`, delay > 0 | [`KernelDeferred`] over a [`Timeout`] (softclock, LAPIC timer ticks) |
//! | `ticks` | the boot CPU's LAPIC timer ticks ([`timeout::ticks`], [`HZ`](crate::services::HZ) a second) |
//! | `current_handler` | one word per CPU: handlers run with interrupts masked, so nothing nests inside one |

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::convert::Infallible;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use mpsafe_em::{Deferred, Kernel, RawBigLock};

use crate::cpu::{MAX_CPUS, online_cpus};
use crate::services::biglock::KERNEL_LOCK;
use crate::services::cpu_id;
use crate::services::ipl::{IPL_NET, IplMutex};
use crate::services::task::{self, Task};
use crate::services::timeout::{self, Timeout};
use crate::services::wait::{KernelWait, sleep_until, wake_all};

/// This kernel, as the driver's services. See the [module](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct Kern;

/// The handler each CPU runs (`Kernel::current_handler`), 0 for none.
static HANDLER: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

impl Kernel for Kern {
    type RxLock = IplMutex<IPL_NET>;
    type QueueLock = IplMutex<IPL_NET>;
    type Wait = KernelWait;
    type BigLock = KernelBigLock;
    type Deferred = KernelDeferred;
    /// Making a task or timeout cannot fail here: both are heap objects,
    /// and the heap's exhaustion ends the run.
    type Error = Infallible;

    fn ticks() -> u64 {
        timeout::ticks()
    }

    fn deferred(
        _name: &str,
        delay: u32,
        f: Box<dyn Fn() + Send + Sync>,
    ) -> Result<KernelDeferred, Infallible> {
        Ok(KernelDeferred::new(delay, f))
    }

    fn current_handler() -> usize {
        // Relaxed: only this CPU writes its word, and nothing runs on this
        // CPU between another context's write and its restore.
        HANDLER[cpu_id()].load(Ordering::Relaxed)
    }

    fn set_current_handler(mark: usize) -> usize {
        HANDLER[cpu_id()].swap(mark, Ordering::Relaxed)
    }
}

/// The kernel's big lock ([`KERNEL_LOCK`]) as the driver's [`RawBigLock`]:
/// held by a CPU with whatever runs on it.
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelBigLock;

// SAFETY: KERNEL_LOCK admits one CPU at a time: `lock` spins until it swaps
// its own id into the owner word (Acquire) or finds its own id there (a
// nested hold by the same CPU); only the holder's last `unlock_raw` or its
// `release_all` stores 0 (Release). A context here is a CPU with what runs
// on it, as the trait allows: the lock raises the level to IPL_NET before
// it spins and keeps it raised while held, so no device interrupt, task or
// timeout runs on the holder's CPU meanwhile (the clock and the wake-up IPI
// above that level take no lock), and `is_held` (the owner word against
// this CPU's id, which only this CPU stores) is exact for the caller.
unsafe impl RawBigLock for KernelBigLock {
    fn lock(&self) {
        core::mem::forget(KERNEL_LOCK.lock());
    }

    unsafe fn unlock(&self) {
        // SAFETY: the caller's contract: this CPU holds the lock.
        unsafe { KERNEL_LOCK.unlock_raw() }
    }

    fn is_held(&self) -> bool {
        KERNEL_LOCK.held()
    }

    unsafe fn release_all(&self) -> u32 {
        // SAFETY: the caller's contract: this CPU holds the lock.
        unsafe { KERNEL_LOCK.release_all() }
    }

    fn reacquire(&self, depth: u32) {
        KERNEL_LOCK.reacquire(depth);
    }
}

/// Calls of the driver's functions so far: tasks, timeouts.
static CALLS: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// How many times the kernel has called the driver's deferred functions
/// so far: (tasks, timeouts).
pub fn deferred_calls() -> (u64, u64) {
    (
        CALLS[0].load(Ordering::Relaxed),
        CALLS[1].load(Ordering::Relaxed),
    )
}

/// What the kernel runs for a [`KernelDeferred`]: the driver's function
/// behind a gate of its own.
struct Gate {
    f: Box<dyn Fn() + Send + Sync>,
    /// Index in [`CALLS`]: 0 for a task, 1 for a timeout.
    kind: usize,
    /// A call is scheduled and has not started.
    pending: AtomicBool,
    /// `cpu + 1` of the CPU running the call now, 0 when none runs.
    active: AtomicU32,
}

impl Gate {
    /// The kernel's task or timeout: runs `f` once if a call is pending.
    ///
    /// `active` is published before `pending` is taken, both sequentially
    /// consistent, and `del_barrier` clears `pending` before it reads
    /// `active` (also SeqCst): a call that took `pending` before the clear
    /// is seen active and waited for; one that comes after finds nothing
    /// pending and does not call `f`.
    fn run(&self) {
        self.active.store(cpu_id() as u32 + 1, Ordering::SeqCst);
        // Taken before the call: an add during it schedules the next one.
        if self.pending.swap(false, Ordering::SeqCst) {
            (self.f)();
            CALLS[self.kind].fetch_add(1, Ordering::Relaxed);
        }
        self.active.store(0, Ordering::SeqCst);
        // A `del_barrier` may be halted waiting for this.
        wake_all();
    }
}

enum Kind {
    Task { task: Arc<Task>, cpu: usize },
    Timeout { timeout: Arc<Timeout>, ticks: u64 },
}

/// A task (delay 0) or a timeout (delay > 0) of this kernel, with the
/// driver's [`Deferred`] contract: adds fold while one is scheduled, calls
/// never overlap, `del_barrier` cancels and waits for a call in flight.
///
/// Tasks of one `KernelDeferred` always run on the same CPU (its soft
/// interrupt runs them one after another), timeouts on the boot CPU's
/// softclock: a call never overlaps the next. Both are MP-safe: the driver
/// takes the big lock itself where its mode asks for it.
pub struct KernelDeferred {
    gate: Arc<Gate>,
    kind: Kind,
}

/// Spreads tasks over the CPUs, one CPU per task for its lifetime.
static NEXT_TASK_CPU: AtomicUsize = AtomicUsize::new(0);

impl KernelDeferred {
    fn new(delay: u32, f: Box<dyn Fn() + Send + Sync>) -> Self {
        let gate = Arc::new(Gate {
            f,
            kind: usize::from(delay != 0),
            pending: AtomicBool::new(false),
            active: AtomicU32::new(0),
        });
        let g = Arc::clone(&gate);
        let run = move || g.run();
        let kind = if delay == 0 {
            let cpu = NEXT_TASK_CPU.fetch_add(1, Ordering::Relaxed) % online_cpus().max(1);
            Kind::Task {
                task: Task::new(run, true),
                cpu,
            }
        } else {
            Kind::Timeout {
                timeout: Timeout::new(run, true),
                ticks: u64::from(delay),
            }
        };
        Self { gate, kind }
    }

    /// Cancels the kernel's task or timeout, if queued.
    fn cancel(&self) {
        match &self.kind {
            Kind::Task { task, .. } => {
                task::task_del(task);
            }
            Kind::Timeout { timeout, .. } => {
                timeout::timeout_del(timeout);
            }
        }
    }
}

impl Deferred for KernelDeferred {
    fn add(&self) -> bool {
        // SeqCst: see `Gate::run`; also publishes what the caller wrote
        // before (a packet enqueued for the start task) to the call.
        if self.gate.pending.swap(true, Ordering::SeqCst) {
            return false;
        }
        match &self.kind {
            // Already queued (a cancelled call's run still to come): that
            // run finds `pending` and calls.
            Kind::Task { task, cpu } => {
                task::task_add(task, *cpu);
            }
            // Not armed, unless a `del_barrier` racing with this add has
            // yet to disarm it (then this arms it again).
            Kind::Timeout { timeout, ticks } => {
                timeout::timeout_add(timeout, *ticks);
            }
        }
        true
    }

    fn del_barrier(&self) {
        self.gate.pending.store(false, Ordering::SeqCst);
        self.cancel();
        sleep_until(|| self.gate.active.load(Ordering::SeqCst) == 0);
        // A call that re-armed itself before it returned.
        self.gate.pending.store(false, Ordering::SeqCst);
        self.cancel();
    }
}

impl Drop for KernelDeferred {
    fn drop(&mut self) {
        self.gate.pending.store(false, Ordering::SeqCst);
        self.cancel();
        // Dropped from its own call (the driver's last reference went away
        // while the call ran): on this CPU, in that soft interrupt. Waiting
        // would be waiting for itself; the call ends right after.
        let me = cpu_id() as u32 + 1;
        if self.gate.active.load(Ordering::SeqCst) != me {
            sleep_until(|| self.gate.active.load(Ordering::SeqCst) == 0);
        }
    }
}
