//! Sleeping waits: halt until an interrupt or the wake-up IPI, re-check,
//! repeat; spin instead where sleeping is not allowed (interrupts masked,
//! inside a handler, or the level raised by a held lock).
//!
//! The sleeper publishes `sleeping` and then re-checks its condition with
//! interrupts masked; a waker publishes the condition and then looks at
//! `sleeping` (both sequentially consistent), so at least one of them sees
//! the other: either the sleeper sees the condition and does not halt, or
//! the waker sees the sleeper and sends the IPI, which stays pending while
//! interrupts are masked and wakes the `sti; hlt`.

use core::sync::atomic::{AtomicU32, Ordering, fence};

use crate::apic;
use crate::arch;
use crate::cpu::{CPUS, cpu_id, this_cpu};
use crate::services::VEC_WAKE;

/// Whether this context may halt: interrupts on and no level raised.
pub fn may_sleep() -> bool {
    arch::interrupts_enabled() && arch::tpr() == 0
}

/// Returns once `cond()` holds. Halts between checks where allowed (see
/// [`may_sleep`]), else spins. Whoever makes `cond` true must call
/// [`wake_cpu`] or [`wake_all`] afterwards, unless an interrupt on this CPU
/// is what makes it true.
pub fn sleep_until(mut cond: impl FnMut() -> bool) {
    let me = this_cpu();
    loop {
        if cond() {
            return;
        }
        if !may_sleep() {
            me.stats.spin_waits.fetch_add(1, Ordering::Relaxed);
            while !cond() {
                core::hint::spin_loop();
            }
            return;
        }
        arch::cli();
        me.sleeping.store(true, Ordering::SeqCst);
        if cond() {
            me.sleeping.store(false, Ordering::Relaxed);
            arch::sti();
            return;
        }
        me.stats.sleeps.fetch_add(1, Ordering::Relaxed);
        arch::sti_hlt();
        me.sleeping.store(false, Ordering::Relaxed);
    }
}

/// Wakes `cpu` if it is halted in [`sleep_until`]. Call after publishing
/// what it waits for.
pub fn wake_cpu(cpu: usize) {
    fence(Ordering::SeqCst);
    let c = &CPUS[cpu];
    if cpu != cpu_id() && c.sleeping.load(Ordering::SeqCst) {
        apic::send_ipi(c.apic_id.load(Ordering::Relaxed), VEC_WAKE);
        this_cpu().stats.wake_sent.fetch_add(1, Ordering::Relaxed);
    }
}

/// Wakes every other CPU halted in [`sleep_until`].
pub fn wake_all() {
    let me = cpu_id();
    for (i, c) in CPUS.iter().enumerate() {
        if i != me && c.online.load(Ordering::Relaxed) {
            wake_cpu(i);
        }
    }
}

/// The kernel's wait as the primitives' [`mpsafe_serializer::Wait`]: a
/// waiter sleeps (or spins) until the word changes; a wake wakes every
/// sleeping CPU (there is no per-word sleep queue: with two CPUs, the
/// other one is the only candidate).
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelWait;

impl mpsafe_serializer::Wait for KernelWait {
    fn wait(word: &AtomicU32, expected: u32) {
        sleep_until(|| word.load(Ordering::SeqCst) != expected);
    }

    fn wake_one(_word: &AtomicU32) {
        wake_all();
    }

    fn wake_all(_word: &AtomicU32) {
        wake_all();
    }
}
