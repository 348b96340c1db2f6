//! The simulated kernel's big lock (`KERNEL_LOCK`), counted per code path.
//!
//! Recursive, like OpenBSD's `__mp_lock`: the interrupt handler holds it and
//! calls `if_start`, whose non-MPSAFE start routine takes it again. Blocking
//! rather than spinning (two simulated CPUs are real threads on a shared
//! machine: spinning against a preempted holder would measure the scheduler),
//! and [`KernelGuard::sleep`] drops it around a wait, as `tsleep` drops the
//! kernel lock, so a barrier waiting for a handler that needs the lock does
//! not deadlock.
//!
//! Every acquisition, outermost or nested, is counted against the [`Path`]
//! that asked: the DragonFly `ps` 'M' marker made into numbers. A driver
//! running MP-safe shows zero on every path.
//!
//! The lock is declared at level [`BigLock`] of the driver's order
//! ([`driver::order`](crate::driver::order)): the driver takes it through
//! [`KernelLock::lock_in`], from a context that holds nothing after it.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use mpsafe_order::{Ctx, Held, LockBefore, Ordered};

use crate::levels::BigLock;

/// The driver code paths whose big-lock acquisitions are counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Path {
    /// Interrupt handler entry (`em_intr`).
    Interrupt,
    /// Receive completion (`em_rxeof`).
    Rx,
    /// Receive refill (`em_rxfill`).
    RxFill,
    /// Transmit completion (`em_txeof`).
    TxEof,
    /// Transmit start (`em_start`).
    Start,
    /// `init`, `stop`, `ioctl`.
    Ioctl,
}

impl Path {
    /// Every path, in table order.
    pub const ALL: [Path; 6] = [
        Path::Interrupt,
        Path::Rx,
        Path::RxFill,
        Path::TxEof,
        Path::Start,
        Path::Ioctl,
    ];

    /// Short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Path::Interrupt => "intr",
            Path::Rx => "rxeof",
            Path::RxFill => "rxfill",
            Path::TxEof => "txeof",
            Path::Start => "start",
            Path::Ioctl => "ioctl",
        }
    }
}

/// Big-lock acquisitions per [`Path`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LockCounts(pub [u64; 6]);

impl LockCounts {
    /// Acquisitions by `path`.
    pub fn get(&self, path: Path) -> u64 {
        self.0[path as usize]
    }

    /// Acquisitions by every path together.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl fmt::Display for LockCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in Path::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", p.name(), self.get(*p))?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct State {
    /// Thread identity of the holder, 0 when free.
    owner: usize,
    depth: u32,
}

/// A recursive, blocking, counted big lock, declared at level [`BigLock`].
#[derive(Default)]
pub struct KernelLock {
    /// The lock at its level; dropping it makes the witness forget it.
    raw: Ordered<BigLock, RawKernelLock>,
}

/// The lock itself, as [`Ordered`] declares it at its level.
#[derive(Default)]
struct RawKernelLock {
    state: Mutex<State>,
    cv: Condvar,
    /// Mirror of `state.owner`, so a nested acquisition by the holder skips
    /// the mutex. Only the holder ever finds its own identity here.
    owner: AtomicUsize,
    counts: [AtomicU64; 6],
}

/// Proof that the current thread holds the [`KernelLock`]: the argument of
/// every `*_locked` entry point that needs the big lock.
pub struct KernelGuard<'a> {
    /// The lock at its level: [`sleep`](KernelGuard::sleep) tells the
    /// witness it is released.
    lock: &'a Ordered<BigLock, RawKernelLock>,
    /// !Send: the lock belongs to this thread.
    _not_send: PhantomData<*const ()>,
}

fn thread_identity() -> usize {
    std::thread_local!(static MARK: Cell<u8> = const { Cell::new(0) });
    MARK.with(|m| core::ptr::from_ref(m).addr())
}

impl KernelLock {
    /// An unlocked big lock with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the lock for `path` (or nests, if this thread holds it),
    /// without the lock order: the plain API, for callers outside the
    /// driver's order. The driver takes it with [`lock_in`](Self::lock_in).
    pub fn lock(&self, path: Path) -> KernelGuard<'_> {
        self.raw.unordered().lock(path)
    }

    /// Takes the lock for `path` from `ctx`, which holds nothing declared
    /// after [`BigLock`] (the rx mutex): the outermost acquisition of
    /// every driver path that needs the big lock. Returns the guard and the
    /// context at [`BigLock`]. The runtime witness records it at its level;
    /// taken again by the thread that holds it (the interrupt running a
    /// start routine, through the routine's own context), it nests
    /// unchecked, since [`BigLock`] is declared recursive.
    ///
    /// Taking it while holding the rx mutex does not compile:
    ///
    /// ```compile_fail,E0277
    /// use mpsafe_em::driver::order::RxMutex;
    /// use mpsafe_em::{KernelLock, Path};
    /// use mpsafe_order::{Ctx, Lock, Ordered};
    ///
    /// fn inverted<T: Lock>(rx: &Ordered<RxMutex, T>, big: &KernelLock) {
    ///     let mut ctx = Ctx::new();
    ///     let (_rx, mut ctx) = ctx.lock(rx);
    ///     let _k = big.lock_in(&mut ctx, Path::Rx); // RxMutex: LockBefore<BigLock> is not implemented
    /// }
    /// ```
    ///
    /// nor does entering the ifnet serializer while holding it (seed 002's
    /// inversion: a caller holding the kernel lock calls into an ioctl):
    ///
    /// ```compile_fail,E0277
    /// use mpsafe_em::driver::order::Ifnet;
    /// use mpsafe_em::{KernelLock, Path};
    /// use mpsafe_order::{Ctx, Ordered};
    /// use mpsafe_serializer::Serializer;
    ///
    /// fn inverted(ifnet: &Ordered<Ifnet, Serializer>, big: &KernelLock) {
    ///     let mut ctx = Ctx::new();
    ///     let (_k, mut ctx) = big.lock_in(&mut ctx, Path::Ioctl);
    ///     let _s = ctx.lock(ifnet); // BigLock: LockBefore<Ifnet> is not implemented
    /// }
    /// ```
    ///
    /// In the declared order it does:
    ///
    /// ```
    /// use mpsafe_em::driver::order::{Ifnet, RxMutex};
    /// use mpsafe_em::{KernelLock, Path};
    /// use mpsafe_order::{Ctx, Lock, Ordered};
    /// use mpsafe_serializer::Serializer;
    ///
    /// fn in_order<T: Lock>(ifnet: &Ordered<Ifnet, Serializer>, big: &KernelLock, rx: &Ordered<RxMutex, T>) {
    ///     let mut ctx = Ctx::new();
    ///     let (_s, mut ctx) = ctx.lock(ifnet);
    ///     let (_k, mut ctx) = big.lock_in(&mut ctx, Path::Ioctl);
    ///     let _rx = ctx.lock(rx);
    /// }
    /// ```
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn lock_in<'b, L: LockBefore<BigLock>>(
        &'b self,
        ctx: &'b mut Ctx<'_, L>,
        path: Path,
    ) -> (Held<'b, BigLock, KernelGuard<'b>>, Ctx<'b, BigLock>) {
        ctx.lock_with(&self.raw, |raw| raw.lock(path))
    }

    /// Acquisitions so far, per path.
    pub fn counts(&self) -> LockCounts {
        self.raw.unordered().counts()
    }
}

impl RawKernelLock {
    fn state(&self) -> MutexGuard<'_, State> {
        // Two plain integers: consistent even after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the lock for `path` (or nests, if this thread holds it).
    fn lock(&self, path: Path) -> KernelGuard<'_> {
        self.counts[path as usize].fetch_add(1, Ordering::Relaxed);
        let me = thread_identity();
        let mut s = if self.owner.load(Ordering::Relaxed) == me {
            // Only this thread stores its own identity, so it is the holder.
            self.state()
        } else {
            let mut s = self.state();
            while s.owner != 0 {
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            s.owner = me;
            self.owner.store(me, Ordering::Relaxed);
            s
        };
        s.depth += 1;
        KernelGuard {
            lock: Ordered::declare(self),
            _not_send: PhantomData,
        }
    }

    fn counts(&self) -> LockCounts {
        LockCounts(core::array::from_fn(|i| {
            self.counts[i].load(Ordering::Relaxed)
        }))
    }

    fn release_all(&self) -> u32 {
        let mut s = self.state();
        let depth = s.depth;
        s.depth = 0;
        s.owner = 0;
        self.owner.store(0, Ordering::Relaxed);
        drop(s);
        self.cv.notify_one();
        depth
    }

    fn reacquire(&self, depth: u32) {
        let me = thread_identity();
        let mut s = self.state();
        while s.owner != 0 {
            s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
        s.owner = me;
        s.depth = depth;
        self.owner.store(me, Ordering::Relaxed);
    }
}

impl KernelGuard<'_> {
    /// Whether this guard holds `lock` (and not some other big lock): how a
    /// `*_locked` entry point checks that its proof names its own lock.
    pub fn is_of(&self, lock: &KernelLock) -> bool {
        core::ptr::eq(self.lock, &lock.raw)
    }

    /// Whether this thread holds the lock right now. A guard exists only
    /// while its lock is held, except inside [`sleep`](Self::sleep), which
    /// releases every nesting level: a second guard of the same thread
    /// (a nested [`KernelLock::lock`]) stays in scope there, but proves
    /// nothing until the sleep returns. `*_locked` entry points check this.
    pub fn is_held(&self) -> bool {
        // Relaxed: only this thread stores its own identity, and only this
        // thread clears it (release_all, drop), so the read is exact for
        // the question "is it me".
        self.lock.unordered().owner.load(Ordering::Relaxed) == thread_identity()
    }

    /// Runs `f` with the big lock fully released (every nesting level), then
    /// takes it back at the same depth: `tsleep` dropping the kernel lock.
    ///
    /// Borrows the guard mutably, so `f` cannot hold on to it as a proof
    /// of a lock that is not held while it runs:
    ///
    /// ```compile_fail
    /// use mpsafe_em::{KernelGuard, KernelLock, Path};
    ///
    /// fn needs_big_lock(_proof: &KernelGuard<'_>) {}
    ///
    /// let k = KernelLock::new();
    /// let mut g = k.lock(Path::Ioctl);
    /// g.sleep(|| needs_big_lock(&g)); // error: `g` is borrowed mutably
    /// ```
    ///
    /// A guard from a nested [`lock`](KernelLock::lock) is still in scope
    /// inside `f`, but [`is_held`](Self::is_held) says `false` there, and
    /// the driver's `*_locked` entry points refuse it.
    ///
    /// The runtime witness sees the release
    /// ([`Ordered::released`]): while `f` runs the big lock is not held,
    /// so what `f` takes or waits for (the ifnet serializer, a start
    /// barrier whose routine takes the big lock) is not ordered after it;
    /// taking it back is checked against what this thread holds before
    /// it blocks, and each nesting is recorded again.
    ///
    /// Unwind-safe: if `f` panics, the lock is taken back at the same
    /// depth before the panic goes on, so the guards drop cleanly.
    ///
    /// # Panics
    ///
    /// In debug builds, if the witness finds taking the lock back out of
    /// order (`f` left a lock after [`BigLock`] held).
    #[track_caller]
    pub fn sleep<R>(&mut self, f: impl FnOnce() -> R) -> R {
        /// Takes the lock back when dropped, on return or unwind.
        struct Retake<'a> {
            lock: &'a RawKernelLock,
            depth: u32,
        }
        impl Drop for Retake<'_> {
            fn drop(&mut self) {
                self.lock.reacquire(self.depth);
            }
        }
        let released = self.lock.released();
        let raw = self.lock.unordered();
        let retake = Retake {
            lock: raw,
            depth: raw.release_all(),
        };
        let r = f();
        // Checked before it can block; on unwind, `retake` takes the lock
        // back and `released` drops, recording it again unchecked.
        released.retake();
        drop(retake);
        r
    }
}

impl Drop for KernelGuard<'_> {
    fn drop(&mut self) {
        let lock = self.lock.unordered();
        let mut s = lock.state();
        s.depth -= 1;
        if s.depth == 0 {
            s.owner = 0;
            lock.owner.store(0, Ordering::Relaxed);
            drop(s);
            lock.cv.notify_one();
        }
    }
}

impl fmt::Debug for KernelLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelLock")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RawKernelLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawKernelLock")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for KernelGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelGuard").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn nests_counts_and_excludes() {
        let k = Arc::new(KernelLock::new());
        let mut g = k.lock(Path::Interrupt);
        {
            let _inner = k.lock(Path::Start);
        }
        let k2 = Arc::clone(&k);
        let t = std::thread::spawn(move || drop(k2.lock(Path::Ioctl)));
        // The other thread cannot get in while we hold it; let it in by
        // sleeping, then we hold it again.
        g.sleep(|| t.join().unwrap());
        drop(g);
        let c = k.counts();
        assert_eq!(
            (
                c.get(Path::Interrupt),
                c.get(Path::Start),
                c.get(Path::Ioctl)
            ),
            (1, 1, 1)
        );
        assert_eq!(c.total(), 3);
        assert!(c.to_string().contains("start=1"));
    }

    /// `sleep` releases the big lock, and the witness sees it: inside it,
    /// the ifnet serializer (before the big lock in the driver's order) is
    /// entered and a barrier at its level waited for, quietly, as stop
    /// waits for the interrupt and start barriers; back from it, the lock
    /// is held again at both nestings. Before `sleep` told the witness,
    /// the entry was reported as a lock order violation under `BigLock`.
    #[cfg(debug_assertions)]
    #[test]
    fn the_witness_sees_the_lock_released_while_asleep() {
        use crate::levels::Ifnet;
        use mpsafe_barrier::Gate;
        use mpsafe_order::Ctx;
        use mpsafe_serializer::Serializer;
        use std::panic::{AssertUnwindSafe, catch_unwind};

        let k = KernelLock::new();
        let ifnet: Ordered<Ifnet, Serializer> = Ordered::new(Serializer::new());
        let gate: Ordered<Ifnet, Gate> = Ordered::new(Gate::new());
        let enter_ifnet = || {
            let mut ctx = Ctx::new();
            drop(ctx.lock(&ifnet));
        };
        let mut ctx = Ctx::new();
        let (mut g, _) = k.lock_in(&mut ctx, Path::Ioctl);
        let mut nested = Ctx::new();
        let (inner, _) = k.lock_in(&mut nested, Path::Start);
        g.sleep(|| {
            enter_ifnet();
            Ctx::new().wait(&gate);
        });
        let err = catch_unwind(AssertUnwindSafe(enter_ifnet))
            .expect_err("the big lock is held again after the sleep");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("lock order violation"), "{msg}");
        assert!(
            msg.contains("`BigLock`") && msg.contains("`Ifnet`"),
            "{msg}"
        );
        drop(inner);
        assert!(catch_unwind(AssertUnwindSafe(enter_ifnet)).is_err());
        drop(g);
        enter_ifnet();
    }

    #[test]
    fn a_panic_while_asleep_leaves_the_lock_consistent() {
        let k = Arc::new(KernelLock::new());
        let mut g = k.lock(Path::Ioctl);
        let inner = k.lock(Path::Start);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            g.sleep(|| panic!("a barrier panicked while the lock was dropped"))
        }));
        assert!(r.is_err());
        // Held again at the same depth: both guards drop cleanly, and then
        // another thread gets the lock.
        drop(inner);
        drop(g);
        let k2 = Arc::clone(&k);
        std::thread::spawn(move || drop(k2.lock(Path::Rx)))
            .join()
            .unwrap();
        assert_eq!(k.counts().total(), 3);
    }
}
