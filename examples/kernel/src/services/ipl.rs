//! Interrupt priority levels and the IPL-raising spin mutex.
//!
//! A level is a local-APIC priority class (vector `>> 4`): raising the level
//! to `L` writes `L` to the task priority register (CR8), so the CPU holds
//! every interrupt of class `L` and below pending until the level drops
//! again, when the hardware delivers them (OpenBSD's `splraise`/`splx` on an
//! APIC machine). [`IPL_HIGH`] masks everything (`cli`).
//!
//! The kernel's vectors are allocated by class so the levels mean what their
//! names say:
//!
//! | level | vectors | what runs there |
//! |---|---|---|
//! | [`IPL_SOFT`] (3) | `0x30` softclock, `0x31` tasks | timeouts and deferred tasks |
//! | [`IPL_NET`] (5) | `0x50..=0x5f` | device interrupts (the NICs) |
//! | [`IPL_CLOCK`] (14) | `0xe0` | the local APIC timer tick, the watchdog |
//! | 15 | `0xf0` wake-up IPI, `0xff` spurious | nothing that takes a lock |
//! | [`IPL_HIGH`] | everything | the console, the heap, the per-vector table |
//!
//! Interrupt handlers run with interrupts masked (interrupt gates) until they
//! return, so nothing nests on top of a handler.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use lock_api::{GuardNoSend, RawMutex};

use crate::arch;

/// No interrupt blocked.
pub const IPL_NONE: u8 = 0;
/// Blocks the soft interrupts: timeouts and deferred tasks.
pub const IPL_SOFT: u8 = 3;
/// Blocks device interrupts (and the soft ones).
pub const IPL_NET: u8 = 5;
/// Blocks the clock too.
pub const IPL_CLOCK: u8 = 14;
/// Blocks every maskable interrupt (`cli`).
pub const IPL_HIGH: u8 = 16;

/// What [`splraise`] changed, for [`splx`] to undo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "the level must be restored with splx"]
pub struct Spl(u8);

impl Spl {
    /// The saved state as a byte, to keep in an atomic.
    pub(crate) const fn bits(self) -> u8 {
        self.0
    }

    /// Back from [`bits`](Spl::bits).
    pub(crate) const fn from_bits(b: u8) -> Self {
        Self(b)
    }
}

/// Bit of [`Spl`]: interrupts were enabled and `splraise` masked them.
const SPL_STI: u8 = 0x10;

/// Raises this CPU's level to at least `ipl`; returns what to restore.
pub fn splraise(ipl: u8) -> Spl {
    let old = arch::tpr();
    if ipl >= IPL_HIGH {
        let was_on = arch::interrupts_enabled();
        arch::cli();
        Spl(old | if was_on { SPL_STI } else { 0 })
    } else {
        if old < ipl {
            arch::set_tpr(ipl);
        }
        Spl(old)
    }
}

/// Restores the level [`splraise`] returned; interrupts it no longer blocks
/// are delivered now.
pub fn splx(s: Spl) {
    let tpr = s.0 & 0x0f;
    if arch::tpr() != tpr {
        arch::set_tpr(tpr);
    }
    if s.0 & SPL_STI != 0 {
        arch::sti();
    }
}

/// This CPU's current level: [`IPL_HIGH`] with interrupts masked (always so
/// inside a handler), else the TPR class.
pub fn current_ipl() -> u8 {
    if arch::interrupts_enabled() {
        arch::tpr()
    } else {
        IPL_HIGH
    }
}

/// A spin mutex that raises this CPU's level to `IPL` *before* it spins and
/// restores it only *after* it releases, so no interrupt at or below `IPL`
/// can run on the holder's CPU while it holds the lock (OpenBSD's
/// `mtx_init(&m, IPL)`, Linux's `spin_lock_irqsave`). Its `IPL` must be the
/// highest level of any interrupt that takes it.
///
/// Use it through [`lock_api::Mutex`] (see [`Mutex`]); the guards are
/// `!Send`: the saved level belongs to the CPU that took the lock.
pub struct IplMutex<const IPL: u8> {
    locked: AtomicBool,
    /// The [`Spl`] to restore on unlock; written and read by the holder only.
    saved: AtomicU8,
}

impl<const IPL: u8> IplMutex<IPL> {
    /// Takes the lock *without* raising the level: the deliberate mistake the
    /// self-test's `fault=noipl` run makes, to show the watchdog catching the
    /// deadlock that follows when the interrupt arrives on this CPU (and, in
    /// a debug build, the lock-order witness reporting the handler's
    /// acquisition before it spins). Never correct for a lock an interrupt
    /// handler takes.
    pub fn lock_without_ipl_fault_injection(&self) {
        self.spin_acquire();
        self.saved.store(arch::tpr(), Ordering::Relaxed);
    }

    fn spin_acquire(&self) {
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    /// Whether some CPU holds the lock (a snapshot, for diagnostics).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }
}

// SAFETY: `lock` returns only after this CPU swapped `locked` from false to
// true with Acquire, `try_lock` reports success only for that same swap, and
// `unlock` stores false with Release: one holder at a time, each seeing the
// previous holder's writes. `saved` is touched only by the holder, between
// its acquire and its release.
unsafe impl<const IPL: u8> RawMutex for IplMutex<IPL> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self {
        locked: AtomicBool::new(false),
        saved: AtomicU8::new(0),
    };
    type GuardMarker = GuardNoSend;

    fn lock(&self) {
        // Raise first: a holder on this CPU is then never the code this
        // CPU's interrupt handler would spin against.
        let s = splraise(IPL);
        self.spin_acquire();
        self.saved.store(s.0, Ordering::Relaxed);
    }

    fn try_lock(&self) -> bool {
        let s = splraise(IPL);
        let got = self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if got {
            self.saved.store(s.0, Ordering::Relaxed);
        } else {
            splx(s);
        }
        got
    }

    unsafe fn unlock(&self) {
        let s = Spl(self.saved.load(Ordering::Relaxed));
        // Release, then lower: an interrupt held pending runs after the lock
        // is free.
        self.locked.store(false, Ordering::Release);
        splx(s);
    }
}

/// A mutex whose lock is an [`IplMutex`] at level `IPL`.
pub type Mutex<const IPL: u8, T> = lock_api::Mutex<IplMutex<IPL>, T>;
/// Its guard.
pub type MutexGuard<'a, const IPL: u8, T> = lock_api::MutexGuard<'a, IplMutex<IPL>, T>;
