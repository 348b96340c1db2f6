//! Interrupt establishment and dispatch: a per-vector handler table, the
//! IOAPIC routing of device lines, interrupt barriers, and the kernel's own
//! vectors (clock, wake-up, soft interrupts).
//!
//! A device handler is a closure returning whether it claimed the
//! interrupt. [`intr_establish`] gives it a vector at [`IPL_NET`], installs
//! it, and routes the line to one CPU through the IOAPIC.
//! [`intr_disestablish`] masks the line, removes the handler and waits for a
//! call in flight on any CPU, so after it returns the handler is neither
//! running nor called again. Handlers not marked MP-safe run under the big
//! lock.
//!
//! [`IPL_NET`]: crate::services::ipl::IPL_NET

use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU16, AtomicU64, Ordering};

use crate::apic::{self, Trigger};
use crate::cpu::{CPUS, MAX_CPUS, this_cpu};
use crate::services::biglock::KERNEL_LOCK;
use crate::services::ipl::{IPL_HIGH, Mutex};
use crate::services::{
    DEVICE_VECTORS, VEC_DEVICE_FIRST, VEC_SOFTCLOCK, VEC_SOFTTASK, VEC_TIMER, VEC_WAKE, task,
    timeout, watchdog,
};

/// A device interrupt handler: returns whether the interrupt was its
/// device's.
pub type Handler = Arc<dyn Fn() -> bool + Send + Sync>;

/// Why an interrupt could not be established.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IntrError {
    /// Every device vector is taken.
    NoVector,
    /// The CPU asked for is not online.
    CpuOffline(usize),
    /// No IOAPIC pin serves this global system interrupt.
    NoPin(u32),
}

impl fmt::Display for IntrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVector => write!(f, "no free device vector"),
            Self::CpuOffline(c) => write!(f, "CPU {c} is not online"),
            Self::NoPin(g) => write!(f, "no IOAPIC pin for GSI {g}"),
        }
    }
}

impl core::error::Error for IntrError {}

/// An established interrupt; give it back to [`intr_disestablish`].
#[derive(Debug)]
pub struct IntrHandle {
    vector: u8,
    gsi: u32,
    cpu: usize,
}

impl IntrHandle {
    /// The vector it was given.
    pub fn vector(&self) -> u8 {
        self.vector
    }

    /// The CPU it is delivered to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Interrupts the handler claimed, per CPU.
    pub fn claimed(&self, cpu: usize) -> u64 {
        slot(self.vector).claimed[cpu].load(Ordering::Relaxed)
    }

    /// Interrupts it did not claim (a shared or stray line), all CPUs.
    pub fn unclaimed(&self) -> u64 {
        slot(self.vector).unclaimed.load(Ordering::Relaxed)
    }
}

struct Slot {
    handler: Mutex<IPL_HIGH, Option<(Handler, bool)>>,
    claimed: [AtomicU64; MAX_CPUS],
    unclaimed: AtomicU64,
}

static SLOTS: [Slot; DEVICE_VECTORS] = [const {
    Slot {
        handler: Mutex::new(None),
        claimed: [const { AtomicU64::new(0) }; MAX_CPUS],
        unclaimed: AtomicU64::new(0),
    }
}; DEVICE_VECTORS];

/// Device vectors in use, one bit each.
static ALLOCATED: AtomicU16 = AtomicU16::new(0);

fn slot(vector: u8) -> &'static Slot {
    &SLOTS[usize::from(vector - VEC_DEVICE_FIRST)]
}

/// Hooks `handler` to global system interrupt `gsi`, delivered to `cpu`
/// (`pci_intr_establish`). Runs under the big lock unless `mpsafe`.
///
/// # Errors
///
/// No free vector, `cpu` not online, or no IOAPIC pin for `gsi`.
pub fn intr_establish(
    gsi: u32,
    trigger: Trigger,
    cpu: usize,
    mpsafe: bool,
    handler: Handler,
) -> Result<IntrHandle, IntrError> {
    if cpu >= MAX_CPUS || !CPUS[cpu].online.load(Ordering::Acquire) {
        return Err(IntrError::CpuOffline(cpu));
    }
    let bits = ALLOCATED
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
            (b != u16::MAX).then(|| b | (1 << (!b).trailing_zeros()))
        })
        .map_err(|_| IntrError::NoVector)?;
    let index = (!bits).trailing_zeros() as u8;
    let vector = VEC_DEVICE_FIRST + index;
    *slot(vector).handler.lock() = Some((handler, mpsafe));
    let dest = CPUS[cpu].apic_id.load(Ordering::Relaxed);
    if apic::ioapic_route(gsi, vector, dest, trigger, false).is_err() {
        let old = slot(vector).handler.lock().take();
        drop(old);
        ALLOCATED.fetch_and(!(1 << index), Ordering::AcqRel);
        return Err(IntrError::NoPin(gsi));
    }
    Ok(IntrHandle { vector, gsi, cpu })
}

/// Unhooks the handler (`pci_intr_disestablish`): masks the line, removes
/// the handler, and waits for a call in flight on any CPU.
///
/// # Panics
///
/// If called from the handler itself (it would wait for itself).
pub fn intr_disestablish(h: IntrHandle) {
    apic::ioapic_mask(h.gsi);
    let old = slot(h.vector).handler.lock().take();
    drop(old);
    barrier(h.vector);
    ALLOCATED.fetch_and(!(1 << (h.vector - VEC_DEVICE_FIRST)), Ordering::AcqRel);
}

/// Returns once every call of the handler that started before it has
/// returned (`intr_barrier`).
///
/// # Panics
///
/// If called from the handler itself.
pub fn intr_barrier(h: &IntrHandle) {
    barrier(h.vector);
}

fn barrier(vector: u8) {
    let me = this_cpu();
    assert!(
        me.in_intr.load(Ordering::Relaxed) != u32::from(vector) + 1,
        "interrupt barrier from the handler it waits for"
    );
    // Pairs with the dispatcher, which marks `in_intr` before it looks at
    // the slot: whoever took the handler before we changed or passed the
    // slot is seen here as inside it.
    core::sync::atomic::fence(Ordering::SeqCst);
    for c in &CPUS {
        if core::ptr::eq(c, me) || !c.online.load(Ordering::Relaxed) {
            continue;
        }
        let exits = c.intr_exits.load(Ordering::Acquire);
        if c.in_intr.load(Ordering::SeqCst) == u32::from(vector) + 1 {
            while c.intr_exits.load(Ordering::Acquire) == exits {
                core::hint::spin_loop();
            }
        }
    }
}

/// Called by the entry stub for every vector 32..=255, interrupts masked.
pub(crate) fn dispatch(vector: u8) {
    let me = this_cpu();
    match vector {
        VEC_TIMER => {
            me.heartbeat.fetch_add(1, Ordering::Relaxed);
            me.stats.timer.fetch_add(1, Ordering::Relaxed);
            if me.index.load(Ordering::Relaxed) == 0 {
                timeout::tick();
            }
            watchdog::check();
        }
        VEC_WAKE => {
            me.stats.wake_ipi.fetch_add(1, Ordering::Relaxed);
        }
        VEC_SOFTCLOCK => timeout::softclock(),
        VEC_SOFTTASK => task::softtask(),
        apic::VEC_SPURIOUS => {
            // Not in service: no EOI.
            me.stats.stray.fetch_add(1, Ordering::Relaxed);
            return;
        }
        v if (VEC_DEVICE_FIRST..VEC_DEVICE_FIRST + DEVICE_VECTORS as u8).contains(&v) => {
            me.stats.device.fetch_add(1, Ordering::Relaxed);
            // `in_intr` was set (Relaxed) by the entry; make it visible
            // before the slot is read, for `barrier`.
            core::sync::atomic::fence(Ordering::SeqCst);
            let s = slot(v);
            let h = s.handler.lock().clone();
            match h {
                Some((f, mpsafe)) => {
                    let claimed = if mpsafe {
                        f()
                    } else {
                        let _big = KERNEL_LOCK.lock();
                        f()
                    };
                    if claimed {
                        s.claimed[me.index.load(Ordering::Relaxed) as usize]
                            .fetch_add(1, Ordering::Relaxed);
                    } else {
                        s.unclaimed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    s.unclaimed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        _ => {
            me.stats.stray.fetch_add(1, Ordering::Relaxed);
        }
    }
    apic::eoi();
}
