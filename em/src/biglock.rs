//! The kernel's big lock (`KERNEL_LOCK`) as the driver takes it: the
//! kernel's own lock ([`RawBigLock`]), counted per code path and declared
//! at its level of the driver's order.
//!
//! Recursive, like OpenBSD's `__mp_lock`: the interrupt handler holds it and
//! calls `if_start`, whose non-MPSAFE start routine takes it again.
//! [`KernelGuard::sleep`] drops it around a wait, as `tsleep` drops the
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

use crate::sync::counter::{AtomicU64, Ordering};
use core::fmt;
use core::marker::PhantomData;

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

/// The kernel's big lock itself: recursive, held by a context (a thread,
/// or a CPU with what it runs), released whole around a sleep.
///
/// # Safety
///
/// An implementation is a lock: while [`lock`](RawBigLock::lock) has
/// returned in one context and that context has not released every level
/// (by [`unlock`](RawBigLock::unlock)s or
/// [`release_all`](RawBigLock::release_all)), no other context's `lock` or
/// `reacquire` returns; [`is_held`](RawBigLock::is_held) is exact for the
/// calling context. The driver's proofs ([`KernelGuard`]) rest on this.
pub unsafe trait RawBigLock: Send + Sync + 'static {
    /// Takes the lock, or nests if this context holds it.
    fn lock(&self);

    /// Releases one level of this context's hold.
    ///
    /// # Safety
    ///
    /// This context holds the lock.
    unsafe fn unlock(&self);

    /// Whether this context holds the lock now.
    fn is_held(&self) -> bool;

    /// Releases every level of this context's hold and returns how many
    /// there were (`tsleep` dropping the kernel lock).
    ///
    /// # Safety
    ///
    /// This context holds the lock.
    unsafe fn release_all(&self) -> u32;

    /// Takes the lock back at `depth` levels, after
    /// [`release_all`](RawBigLock::release_all).
    fn reacquire(&self, depth: u32);
}

/// A recursive, counted big lock, declared at level [`BigLock`]: the
/// kernel's lock `R`, each acquisition counted against the [`Path`] that
/// asked.
pub struct KernelLock<R: RawBigLock> {
    /// The lock at its level; dropping it makes the witness forget it.
    raw: Ordered<BigLock, Counted<R>>,
}

/// The kernel's lock and the counts, as [`Ordered`] declares them.
struct Counted<R> {
    raw: R,
    counts: [AtomicU64; 6],
}

/// Proof that the current context holds the [`KernelLock`]: the argument
/// of every `*_locked` entry point that needs the big lock.
pub struct KernelGuard<'a, R: RawBigLock> {
    /// The lock at its level: [`sleep`](KernelGuard::sleep) tells the
    /// witness it is released.
    lock: &'a Ordered<BigLock, Counted<R>>,
    /// !Send: the lock belongs to this context.
    _not_send: PhantomData<*const ()>,
}

impl<R: RawBigLock + Default> Default for KernelLock<R> {
    fn default() -> Self {
        Self::from_raw(R::default())
    }
}

impl<R: RawBigLock + Default> KernelLock<R> {
    /// An unlocked big lock with zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }
}

impl<R: RawBigLock> KernelLock<R> {
    /// Counts the acquisitions of the kernel's lock `raw`.
    pub fn from_raw(raw: R) -> Self {
        Self {
            raw: Ordered::new(Counted {
                raw,
                counts: Default::default(),
            }),
        }
    }

    /// The kernel's lock.
    pub fn raw(&self) -> &R {
        &self.raw.unordered().raw
    }

    /// Takes the lock for `path` (or nests, if this context holds it),
    /// without the lock order: the plain API, for callers outside the
    /// driver's order. The driver takes it with [`lock_in`](Self::lock_in).
    pub fn lock(&self, path: Path) -> KernelGuard<'_, R> {
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
    /// use mpsafe_em::biglock::{KernelLock, Path, RawBigLock};
    /// use mpsafe_order::{Ctx, Lock, Ordered};
    ///
    /// fn inverted<R: RawBigLock, T: Lock>(rx: &Ordered<RxMutex, T>, big: &KernelLock<R>) {
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
    /// use mpsafe_em::biglock::{KernelLock, Path, RawBigLock};
    /// use mpsafe_order::{Ctx, Ordered};
    /// use mpsafe_serializer::Serializer;
    ///
    /// fn inverted<R: RawBigLock>(ifnet: &Ordered<Ifnet, Serializer>, big: &KernelLock<R>) {
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
    /// use mpsafe_em::biglock::{KernelLock, Path, RawBigLock};
    /// use mpsafe_order::{Ctx, Lock, Ordered};
    /// use mpsafe_serializer::Serializer;
    ///
    /// fn in_order<R: RawBigLock, T: Lock>(ifnet: &Ordered<Ifnet, Serializer>, big: &KernelLock<R>, rx: &Ordered<RxMutex, T>) {
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
    ) -> (Held<'b, BigLock, KernelGuard<'b, R>>, Ctx<'b, BigLock>) {
        ctx.lock_with(&self.raw, |raw| raw.lock(path))
    }

    /// Acquisitions so far, per path.
    pub fn counts(&self) -> LockCounts {
        let c = &self.raw.unordered().counts;
        LockCounts(core::array::from_fn(|i| c[i].load(Ordering::Relaxed)))
    }
}

impl<R: RawBigLock> Counted<R> {
    /// Takes the lock for `path` (or nests, if this context holds it).
    fn lock(&self, path: Path) -> KernelGuard<'_, R> {
        // Relaxed: a statistic.
        self.counts[path as usize].fetch_add(1, Ordering::Relaxed);
        self.raw.lock();
        KernelGuard {
            lock: Ordered::declare(self),
            _not_send: PhantomData,
        }
    }
}

impl<R: RawBigLock> KernelGuard<'_, R> {
    /// Whether this guard holds `lock` (and not some other big lock): how a
    /// `*_locked` entry point checks that its proof names its own lock.
    pub fn is_of(&self, lock: &KernelLock<R>) -> bool {
        core::ptr::eq(self.lock, &lock.raw)
    }

    /// Whether this context holds the lock right now. A guard exists only
    /// while its lock is held, except inside [`sleep`](Self::sleep), which
    /// releases every nesting level: a second guard of the same context
    /// (a nested [`KernelLock::lock`]) stays in scope there, but proves
    /// nothing until the sleep returns. `*_locked` entry points check this.
    pub fn is_held(&self) -> bool {
        self.lock.unordered().raw.is_held()
    }
    /// Runs `f` with the big lock fully released (every nesting level), then
    /// takes it back at the same depth: `tsleep` dropping the kernel lock.
    ///
    /// Borrows the guard mutably, so `f` cannot hold on to it as a proof
    /// of a lock that is not held while it runs:
    ///
    /// ```compile_fail
    /// use mpsafe_em::biglock::{KernelGuard, KernelLock, Path, RawBigLock};
    ///
    /// fn needs_big_lock<R: RawBigLock>(_proof: &KernelGuard<'_, R>) {}
    ///
    /// fn sleeps<R: RawBigLock>(k: &KernelLock<R>) {
    ///     let mut g = k.lock(Path::Ioctl);
    ///     g.sleep(|| needs_big_lock(&g)); // error: `g` is borrowed mutably
    /// }
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
    pub fn sleep<T>(&mut self, f: impl FnOnce() -> T) -> T {
        /// Takes the lock back when dropped, on return or unwind.
        struct Retake<'a, R: RawBigLock> {
            lock: &'a R,
            depth: u32,
        }
        impl<R: RawBigLock> Drop for Retake<'_, R> {
            fn drop(&mut self) {
                self.lock.reacquire(self.depth);
            }
        }
        let released = self.lock.released();
        let raw = &self.lock.unordered().raw;
        let retake = Retake {
            lock: raw,
            // SAFETY: this guard exists, so this context holds the lock
            // (`&mut self`: no nested sleep released it meanwhile).
            depth: unsafe { raw.release_all() },
        };
        let r = f();
        // Checked before it can block; on unwind, `retake` takes the lock
        // back and `released` drops, recording it again unchecked.
        released.retake();
        drop(retake);
        r
    }
}

impl<R: RawBigLock> Drop for KernelGuard<'_, R> {
    fn drop(&mut self) {
        // SAFETY: the guard exists outside a sleep (which borrows it
        // mutably), so this context holds the lock at this level.
        unsafe { self.lock.unordered().raw.unlock() }
    }
}

impl<R: RawBigLock> fmt::Debug for KernelLock<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelLock")
            .field("counts", &self.counts())
            .finish_non_exhaustive()
    }
}

impl<R: RawBigLock> fmt::Debug for KernelGuard<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelGuard").finish_non_exhaustive()
    }
}
