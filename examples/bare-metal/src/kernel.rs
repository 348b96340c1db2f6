//! What the kernel brings: a spin lock, a wait, a tick counter and a packet
//! type. Each is the smallest honest version of what a real kernel already
//! has. (The queueing disciplines are the crate's allocation-free
//! `ArrayFifo` and `ArrayPriq`.)

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use mpsafe_ifqueue::{Packet, Priority};
use mpsafe_serializer::Wait;

/// How many times any [`SpinLock`] was taken: lets the checks see that the
/// queues really lock with the kernel's lock.
pub(crate) static LOCKS: AtomicU32 = AtomicU32::new(0);

/// The kernel's spin lock, as a [`lock_api::RawMutex`] (a real kernel would
/// also raise the IPL / disable interrupts here; see the guide's chapter on
/// interrupt context).
pub(crate) struct SpinLock(AtomicBool);

// SAFETY: `lock` returns only after swapping the flag from false to true with
// Acquire, `try_lock` only reports success for that same swap, and `unlock`
// stores false with Release: one holder at a time, and each holder sees the
// previous holder's writes.
unsafe impl lock_api::RawMutex for SpinLock {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = Self(AtomicBool::new(false));
    // A kernel spin lock may be released on the CPU that took it only; the
    // guard stays on its thread.
    type GuardMarker = lock_api::GuardNoSend;

    fn lock(&self) {
        while !self.try_lock() {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    fn try_lock(&self) -> bool {
        let taken = self
            .0
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if taken {
            LOCKS.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    unsafe fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How many times a [`KernelWait`] woke sleepers.
pub(crate) static WAKES: AtomicU32 = AtomicU32::new(0);

/// The kernel's way to wait for a word to change. A real kernel would put
/// the thread on a sleep queue keyed by the word's address (OpenBSD `sleep_setup`
/// on a wait channel, Linux `wait_var_event`); this one spins for a while and
/// then returns, which the [`Wait`] contract allows (a spurious return: every
/// caller re-reads the word and calls again).
pub(crate) struct KernelWait;

impl Wait for KernelWait {
    fn wait(word: &AtomicU32, expected: u32) {
        for _ in 0..1024 {
            if word.load(Ordering::Relaxed) != expected {
                return;
            }
            core::hint::spin_loop();
        }
    }

    fn wake_one(_word: &AtomicU32) {
        WAKES.fetch_add(1, Ordering::Relaxed);
    }

    fn wake_all(_word: &AtomicU32) {
        WAKES.fetch_add(1, Ordering::Relaxed);
    }
}

/// The kernel's tick counter, 32 bits as in a C kernel (OpenBSD's `int
/// ticks`), advanced by the clock interrupt.
pub(crate) static TICKS: AtomicU32 = AtomicU32::new(0);

/// The clock interrupt: one tick.
pub(crate) fn hardclock() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// The last widened tick, shared by every caller of [`ticks64`].
static TICKS64: AtomicU64 = AtomicU64::new(0);

/// The tick counter widened to the monotonic `u64` the rx ring takes.
///
/// The low 32 bits of the result are always the kernel's `ticks`; the result
/// advances by the signed 32-bit difference from the last widened value, as
/// C kernels compare ticks (`ticks - last > 0`). So it never goes back (a
/// caller that read `ticks` just before another caller widened a later value
/// gets that later value) and it is exact as long as some caller widens at
/// least once every 2^31 ticks (about 8 months at 100 Hz; a kernel calls it
/// from the clock interrupt to be sure). Passing the 32-bit value straight
/// through would make time jump back by 2^32 at the wrap, and the ring would
/// stop adjusting its watermark until the new ticks caught up.
pub(crate) fn ticks64() -> u64 {
    let mut last = TICKS64.load(Ordering::Relaxed);
    loop {
        let now = TICKS.load(Ordering::Relaxed);
        let ahead = now.wrapping_sub(last as u32) as i32;
        if ahead <= 0 {
            return last;
        }
        let widened = last + ahead as u64;
        // Relaxed: one word, monotonic through the CAS; it orders nothing
        // else.
        match TICKS64.compare_exchange_weak(last, widened, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return widened,
            Err(seen) => last = seen,
        }
    }
}

/// Sets the tick counter and its widened value (boot: the clock starts at an
/// arbitrary value; the checks start just below the 32-bit wrap).
pub(crate) fn set_ticks(now: u32) {
    TICKS.store(now, Ordering::Relaxed);
    TICKS64.store(u64::from(now), Ordering::Relaxed);
}

/// The kernel's packet: a handle into its buffer pool with the header bits
/// the queues look at copied in, so the queue never touches the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mbuf {
    /// Index of the buffer in the pool.
    pub(crate) slot: u16,
    /// Frame length in bytes.
    pub(crate) len: u16,
    /// Transmit priority.
    pub(crate) prio: Priority,
    /// The stack's flow hash, if any.
    pub(crate) flow: Option<u32>,
}

impl Mbuf {
    /// A 60-byte frame in buffer `slot`, default priority, no flow hash.
    pub(crate) const fn new(slot: u16) -> Self {
        Self {
            slot,
            len: 60,
            prio: Priority::DEFAULT,
            flow: None,
        }
    }
}

impl Packet for Mbuf {
    fn byte_len(&self) -> usize {
        usize::from(self.len)
    }

    fn priority(&self) -> Priority {
        self.prio
    }

    fn flow_hash(&self) -> Option<u32> {
        self.flow
    }
}
