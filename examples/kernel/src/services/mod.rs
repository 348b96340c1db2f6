//! The kernel services a driver needs, as plain functions and types (no
//! trait yet: a driver generic over a "kernel services" trait implements it
//! with one line per method on top of these).
//!
//! | the driver asks for | here |
//! |---|---|
//! | a lock shared with its interrupt handler | [`ipl::IplMutex`] / [`ipl::Mutex`] at [`ipl::IPL_NET`] (raises the level *before* it spins) |
//! | the big lock (`KERNEL_LOCK`) | [`biglock::KERNEL_LOCK`]: recursive, kernel-wide; non-MP-safe interrupts, tasks and timeouts run under it |
//! | a deferred task (`task_add`) | [`task::Task`], [`task::task_add`]: runs at [`ipl::IPL_SOFT`] on the CPU asked for |
//! | a timeout (`timeout_add`) | [`timeout::Timeout`], [`timeout::timeout_add`]: one-shot, in ticks of the local APIC timer |
//! | a sleeping wait | [`wait::sleep_until`] (`hlt` until an interrupt or the wake-up IPI; spins where sleeping is not allowed), [`wait::KernelWait`] as `mpsafe_serializer::Wait` |
//! | the current CPU | [`cpu_id`] |
//! | its interrupt (`pci_intr_establish`) | [`intr::intr_establish`], [`intr::intr_disestablish`], [`intr::intr_barrier`] |
//!
//! The em driver takes them through its own traits: [`crate::em::kernel`]
//! implements `mpsafe_em::Kernel` on top of these (and
//! [`crate::em::device`] the interrupt line, through [`intr`]), each method
//! a line or two, except the deferred calls, which wrap a task or timeout in
//! a gate so that `del_barrier` can wait for a call in flight.
//!
//! The watchdog ([`watchdog`]) runs in every CPU's clock interrupt and
//! reports a CPU that stops taking ticks (or, when armed, making progress).

pub mod biglock;
pub mod intr;
pub mod ipl;
pub mod task;
pub mod timeout;
pub mod wait;
pub mod watchdog;

/// Clock ticks per second (the local APIC timer's rate on every CPU).
pub const HZ: u64 = 100;

/// Vector of the softclock soft interrupt (timeouts), class [`ipl::IPL_SOFT`].
pub(crate) const VEC_SOFTCLOCK: u8 = 0x30;
/// Vector of the task soft interrupt, class [`ipl::IPL_SOFT`].
pub(crate) const VEC_SOFTTASK: u8 = 0x31;
/// First device vector, class [`ipl::IPL_NET`].
pub(crate) const VEC_DEVICE_FIRST: u8 = 0x50;
/// Device vectors available.
pub(crate) const DEVICE_VECTORS: usize = 16;
/// Vector of the local APIC timer, class [`ipl::IPL_CLOCK`].
pub(crate) const VEC_TIMER: u8 = 0xe0;
/// Vector of the wake-up IPI (above every lock's level).
pub(crate) const VEC_WAKE: u8 = 0xf0;

/// This CPU's index (0 is the boot CPU).
pub fn cpu_id() -> usize {
    crate::cpu::cpu_id()
}

/// Interrupts masked (`splhigh`) around the lock-order witness's own
/// bookkeeping: a handler must never find the witness's spin lock held by
/// the code it interrupted.
static WITNESS_MASK: mpsafe_order::witness::InterruptMask = mpsafe_order::witness::InterruptMask {
    mask: witness_mask,
    restore: witness_restore,
};

fn witness_mask() -> usize {
    usize::from(ipl::splraise(ipl::IPL_HIGH).bits())
}

fn witness_restore(saved: usize) {
    // The value `witness_mask` made from an `Spl`'s byte.
    let bits = u8::try_from(saved).unwrap_or(0);
    ipl::splx(ipl::Spl::from_bits(bits));
}

/// Starts `mpsafe-order`'s lock-order witness in this kernel (debug builds
/// only; release builds record nothing): each CPU keeps its own stack of
/// held ordered locks ([`cpu_id`] is the witness's thread hook), and an
/// interrupt handler's acquisitions go on the stack of the CPU it
/// interrupted, so a handler taking a lock its CPU holds at a lower IPL is
/// reported before it spins. Call on the boot CPU once its per-CPU state is
/// set, before any ordered lock is taken.
pub(crate) fn witness_init() {
    mpsafe_order::witness::set_interrupt_mask(&WITNESS_MASK);
    mpsafe_order::witness::set_thread_hook(cpu_id);
}
