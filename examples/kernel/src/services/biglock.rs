//! The kernel-wide big lock (OpenBSD's `KERNEL_LOCK`, NetBSD's
//! `KERNEL_LOCK(1, NULL)`).
//!
//! Recursive on the CPU that holds it. It raises the level to
//! [`IPL_NET`] before spinning, like every lock an interrupt handler takes:
//! interrupt handlers established as not MP-safe, tasks and timeouts that
//! are not MP-safe all run under it, next to whatever thread holds it.
//! A holder must never wait for one of those while holding it (an
//! interrupt barrier, say): [`BigLock::release_around`] drops it for the
//! wait and takes it back, as `tsleep` drops the kernel lock.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::cpu::{MAX_CPUS, cpu_id};
use crate::services::ipl::{IPL_NET, Spl, splraise, splx};

/// The big lock. See the module documentation.
pub struct BigLock {
    /// `cpu + 1` of the holder, 0 when free.
    owner: AtomicU32,
    /// Nesting depth; only the holder touches it.
    depth: AtomicU32,
    /// The level to restore when the outermost hold ends.
    saved: AtomicU32,
    /// Outermost acquisitions, per CPU.
    acquired: [AtomicU64; MAX_CPUS],
    /// Outermost acquisitions that found it held by the other CPU.
    contended: AtomicU64,
}

/// The kernel's one big lock.
pub static KERNEL_LOCK: BigLock = BigLock {
    owner: AtomicU32::new(0),
    depth: AtomicU32::new(0),
    saved: AtomicU32::new(0),
    acquired: [const { AtomicU64::new(0) }; MAX_CPUS],
    contended: AtomicU64::new(0),
};

/// Proof that this CPU holds the big lock; releases one level on drop.
/// Not `Send`: it belongs to the CPU that took it.
#[must_use = "the big lock is released when the guard drops"]
pub struct BigLockGuard {
    _not_send: PhantomData<*const ()>,
}

impl BigLock {
    /// Takes the lock (again, if this CPU holds it).
    pub fn lock(&'static self) -> BigLockGuard {
        let me = cpu_id() as u32 + 1;
        if self.owner.load(Ordering::Relaxed) == me {
            // Only this CPU can have stored its own id: no race.
            self.depth.fetch_add(1, Ordering::Relaxed);
            return BigLockGuard {
                _not_send: PhantomData,
            };
        }
        let s = splraise(IPL_NET);
        let mut contended = false;
        while self
            .owner
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            contended = true;
            while self.owner.load(Ordering::Relaxed) != 0 {
                core::hint::spin_loop();
            }
        }
        self.depth.store(1, Ordering::Relaxed);
        self.saved.store(u32::from(s.bits()), Ordering::Relaxed);
        self.acquired[me as usize - 1].fetch_add(1, Ordering::Relaxed);
        if contended {
            self.contended.fetch_add(1, Ordering::Relaxed);
        }
        BigLockGuard {
            _not_send: PhantomData,
        }
    }

    /// Whether this CPU holds the lock.
    pub fn held(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == cpu_id() as u32 + 1
    }

    fn unlock_one(&self) {
        if self.depth.fetch_sub(1, Ordering::Relaxed) == 1 {
            let s = Spl::from_bits(self.saved.load(Ordering::Relaxed) as u8);
            self.owner.store(0, Ordering::Release);
            splx(s);
        }
    }

    /// Runs `f` with the lock fully released (however deep this CPU held
    /// it), then takes it back to the same depth. For waits under the lock.
    ///
    /// # Panics
    ///
    /// If this CPU does not hold the lock.
    pub fn release_around<R>(&'static self, _proof: &BigLockGuard, f: impl FnOnce() -> R) -> R {
        assert!(self.held(), "release_around without holding the big lock");
        // SAFETY: this CPU holds it (checked above).
        let depth = unsafe { self.release_all() };
        let r = f();
        self.reacquire(depth);
        r
    }

    /// Releases one level of this CPU's hold, for a caller that keeps no
    /// [`BigLockGuard`] (a driver's lock trait over this lock).
    ///
    /// # Safety
    ///
    /// This CPU holds the lock, at a level the caller took.
    pub unsafe fn unlock_raw(&self) {
        self.unlock_one();
    }

    /// Releases every level of this CPU's hold and returns how many there
    /// were, restoring the level the outermost acquisition raised from.
    ///
    /// # Safety
    ///
    /// This CPU holds the lock.
    pub unsafe fn release_all(&self) -> u32 {
        let depth = self.depth.load(Ordering::Relaxed);
        let s = Spl::from_bits(self.saved.load(Ordering::Relaxed) as u8);
        self.depth.store(0, Ordering::Relaxed);
        self.owner.store(0, Ordering::Release);
        splx(s);
        depth
    }

    /// Takes the lock back at `depth` levels after
    /// [`release_all`](Self::release_all) (counted as one acquisition).
    pub fn reacquire(&'static self, depth: u32) {
        let g = self.lock();
        core::mem::forget(g);
        self.depth.store(depth, Ordering::Relaxed);
    }

    /// Outermost acquisitions by `cpu` so far.
    pub fn acquisitions(&self, cpu: usize) -> u64 {
        self.acquired[cpu].load(Ordering::Relaxed)
    }

    /// Outermost acquisitions that had to wait for the other CPU.
    pub fn contended(&self) -> u64 {
        self.contended.load(Ordering::Relaxed)
    }
}

impl Drop for BigLockGuard {
    fn drop(&mut self) {
        KERNEL_LOCK.unlock_one();
    }
}
