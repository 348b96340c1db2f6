//! The context token, the ordered lock wrapper and the held guard.

use core::fmt;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::panic::Location;

use crate::level::{Level, LockBefore, Unlocked};
use crate::witness;

/// A lock-like value that [`Ctx::lock`] can take: a mutex, a serializer, a
/// lock with a guard that proves it is held.
///
/// Implemented for [`lock_api::Mutex`] here and, in each mpsafe crate, for
/// its own locks (`Serializer`, `LockedRxRing`, `SendQueue`).
pub trait Lock {
    /// What holding the lock gives: the guard (and proof) of the plain API.
    type Guard<'a>
    where
        Self: 'a;

    /// Takes the lock, waiting as long as it takes.
    fn lock(&self) -> Self::Guard<'_>;

    /// Takes the lock if it is free; never waits.
    fn try_lock(&self) -> Option<Self::Guard<'_>>;
}

impl<R: lock_api::RawMutex, T: ?Sized> Lock for lock_api::Mutex<R, T> {
    type Guard<'a>
        = lock_api::MutexGuard<'a, R, T>
    where
        Self: 'a;

    #[inline]
    fn lock(&self) -> Self::Guard<'_> {
        lock_api::Mutex::lock(self)
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard<'_>> {
        lock_api::Mutex::try_lock(self)
    }
}

/// A blocking wait that returns once work that runs "inside" the barrier
/// (a start routine, an interrupt handler) has finished: waiting for it is
/// ordered as taking a lock at the barrier's level and dropping it at once.
///
/// Implemented in the mpsafe crates for `Gate`, `Completion` and the
/// interface queue's start barrier.
pub trait Barrier {
    /// What the wait returns (an error if it could never return, say).
    type Output;

    /// Waits.
    fn barrier(&self) -> Self::Output;
}

/// A lock (or barrier) `T` declared at level `L`.
///
/// The wrapper is the declaration: the level is part of the lock's type, so
/// each lock sits at one level and every acquisition through [`Ctx`] is
/// checked against it. It adds no field (`#[repr(transparent)]`, the level is
/// a zero-sized marker). [`unordered`](Ordered::unordered) is the plain API,
/// for what neither locks nor waits, or for callers that opt out.
#[repr(transparent)]
pub struct Ordered<L, T: ?Sized> {
    level: PhantomData<fn() -> L>,
    inner: T,
}

impl<L, T> Ordered<L, T> {
    /// Declares `inner` at level `L`.
    #[inline]
    pub const fn new(inner: T) -> Self {
        Self {
            level: PhantomData,
            inner,
        }
    }
}

impl<L, T: ?Sized> Ordered<L, T> {
    /// Declares a lock held by reference at level `L`: for adapters handed
    /// a lock that another value owns (a start routine is handed its queue).
    ///
    /// Declare each lock at one level: the runtime witness keys its records
    /// by address *and* level name, so the same lock declared at two levels
    /// is two locks to it.
    #[inline]
    pub fn declare(inner: &T) -> &Self {
        let ptr = core::ptr::from_ref(inner) as *const Self;
        // SAFETY: `Ordered` is `repr(transparent)` over `T` (its other field
        // is a zero-sized `PhantomData`), so it has `T`'s layout and
        // metadata, and the reference keeps `inner`'s lifetime.
        unsafe { &*ptr }
    }

    /// The lock itself, with its plain API: nothing through this reference
    /// is order-checked.
    #[inline]
    pub fn unordered(&self) -> &T {
        &self.inner
    }

    /// The lock itself, exclusively: no lock is needed to reach its data.
    #[inline]
    pub fn unordered_mut(&mut self) -> &mut T {
        &mut self.inner
    }

    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    fn addr(&self) -> usize {
        core::ptr::from_ref(self).cast::<u8>().addr()
    }
}

impl<L: Level, T: ?Sized> Ordered<L, T> {
    /// Runs `f` as the body that barriers at level `L` on this value wait
    /// for (a start routine run through its serializer, an interrupt handler
    /// run through its gate), handing it a context at level `L`: what `f`
    /// takes must come after `L`, and a barrier on this value waited for
    /// from inside `f` is reported by the witness.
    ///
    /// Getting inside never waits (a busy serializer hands the work to its
    /// owner and returns, a gate only counts the entry), so the witness
    /// records the value as held while `f` runs without checking it
    /// against what the thread already holds, as it does a
    /// [`try_lock`](Ctx::try_lock): a routine may be run by whichever
    /// thread asked for it, whatever that thread holds. What `f` takes is
    /// checked against all of it, and a barrier on this value is checked
    /// against what its waiter holds.
    #[track_caller]
    #[inline]
    pub fn run_inside<R>(&self, f: impl FnOnce(Ctx<'_, L>) -> R) -> R {
        let _record = witness::Record::acquire(
            witness::LockRef::of::<L>(self.addr()),
            Location::caller(),
            true,
        );
        f(Ctx::at())
    }

    /// Tells the witness that this thread is about to release every hold
    /// it has on this lock (each nesting of a recursive one) to sleep, as
    /// `tsleep` releases the kernel lock or `cv_wait` its mutex, and will
    /// take it back: until [`Released::retake`], waits and acquisitions are
    /// not ordered after this lock, which is not held.
    ///
    /// Call it before releasing the lock; call [`retake`](Released::retake)
    /// just before taking it back, which checks that acquisition against
    /// what the thread holds then (before it can block) and records the
    /// holds again, with the sites they were first taken at. If the
    /// `Released` is dropped without it (a panic while asleep), the holds
    /// are recorded again unchecked.
    ///
    /// ```
    /// mpsafe_order::lock_order! { pub Outer, pub Giant, pub Inner }
    /// use mpsafe_order::{Ctx, Ordered};
    /// type Mutex<T> = lock_api::Mutex<mpsafe_serializer::RawSerializer, T>;
    ///
    /// let giant: Ordered<Giant, Mutex<()>> = Ordered::new(Mutex::new(()));
    /// let outer: Ordered<Outer, Mutex<()>> = Ordered::new(Mutex::new(()));
    /// let mut ctx = Ctx::new();
    /// let (held, _) = ctx.lock(&giant);
    ///
    /// // A sleep that drops the giant lock.
    /// let mut released = giant.released();
    /// // SAFETY: this thread holds the lock (`held`).
    /// unsafe { giant.unordered().force_unlock() };
    /// // Not held: `Outer` may be taken here.
    /// drop(Ctx::new().lock(&outer));
    /// released.retake();
    /// core::mem::forget(giant.unordered().lock()); // `held` owns it again
    /// drop(held);
    /// ```
    #[inline]
    pub fn released(&self) -> Released<'_> {
        Released {
            saved: witness::Saved::release(witness::LockRef::of::<L>(self.addr())),
            _marker: PhantomData,
        }
    }
}

/// A lock this thread released around a sleep, as the
/// [witness](crate::witness) sees it ([`Ordered::released`]): take it back
/// with [`retake`](Released::retake).
#[must_use = "retake the lock, or the witness takes it back unchecked when this drops"]
#[derive(Debug)]
pub struct Released<'a> {
    saved: witness::Saved,
    /// Borrows the lock; `!Send`: the holds are this thread's.
    _marker: PhantomData<(&'a (), *const ())>,
}

impl Released<'_> {
    /// Checks taking the lock back against what this thread holds now, as
    /// a blocking acquisition (call it just before the lock is taken back),
    /// then records the holds again.
    ///
    /// # Panics
    ///
    /// In debug builds, if the witness sees taking the lock back invert an
    /// order (the thread took a lock that comes after it while asleep, and
    /// still holds it).
    #[track_caller]
    #[inline]
    pub fn retake(mut self) {
        self.saved.check_retake(Location::caller());
        self.saved.restore();
    }
}

impl Drop for Released<'_> {
    #[inline]
    fn drop(&mut self) {
        self.saved.restore();
    }
}

impl<L, T: Default> Default for Ordered<L, T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

impl<L: Level, T: ?Sized + fmt::Debug> fmt::Debug for Ordered<L, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ordered")
            .field("level", &L::NAME)
            .field("inner", &&self.inner)
            .finish()
    }
}

#[cfg(debug_assertions)]
impl<L, T: ?Sized> Drop for Ordered<L, T> {
    fn drop(&mut self) {
        // Another lock may be built at this address: its history starts anew.
        witness::forget(self.addr(), core::mem::size_of_val(&self.inner).max(1));
    }
}

/// The context token: proof of which level the current code runs at.
///
/// Taking a lock at level `M` needs a `Ctx<'_, L>` with `L:`
/// [`LockBefore<M>`](LockBefore) and re-types it to `Ctx<'_, M>` for as long
/// as the guard lives (the old token stays mutably borrowed by both), so
/// locks taken while holding it must come after `M`. Blocking waits take a
/// context too. Zero-sized, `!Send`: a context belongs to the thread whose
/// locks it describes.
///
/// Make one with [`Ctx::new`] where no ordered lock can be held (a thread's
/// entry point, a system call's, an interrupt's); every function that may be
/// called with locks held takes `&mut Ctx<'_, L>` with the bound it needs.
#[allow(clippy::type_complexity)] // three markers: borrow, level, !Send
pub struct Ctx<'a, L> {
    _marker: PhantomData<(&'a mut (), fn() -> L, *const ())>,
}

impl Ctx<'static, Unlocked> {
    /// A context holding no ordered lock.
    ///
    /// The types cannot tell whether the caller really holds nothing (a
    /// callback that makes a new context under its caller's locks hides
    /// them); the [witness](crate::witness) sees it at the next acquisition.
    #[inline]
    #[must_use]
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self::at()
    }
}

impl<'a, L> Ctx<'a, L> {
    const fn at() -> Self {
        Self {
            _marker: PhantomData,
        }
    }

    /// A shorter-lived context at the same level, to pass down while this
    /// one stays usable afterwards.
    #[inline]
    pub fn reborrow(&mut self) -> Ctx<'_, L> {
        Ctx::at()
    }

    /// A shorter-lived context at a later level `M`: it may take only what
    /// comes after `M`, part of what this one may take, so no order is
    /// lost. For code that hands back one context type whichever way it
    /// went (a lock at `M` taken in some modes, nothing in others).
    ///
    /// ```
    /// mpsafe_order::lock_order! { pub Outer, pub Inner }
    /// use mpsafe_order::{Ctx, Ordered};
    /// type Mutex<T> = lock_api::Mutex<mpsafe_serializer::RawSerializer, T>;
    ///
    /// let inner: Ordered<Inner, Mutex<u32>> = Ordered::new(Mutex::new(0));
    /// let mut ctx = Ctx::new();
    /// let mut at_outer = ctx.restrict::<Outer>();
    /// let (_g, _) = at_outer.lock(&inner); // Outer before Inner
    /// ```
    ///
    /// A context cannot be moved to an earlier level:
    ///
    /// ```compile_fail,E0277
    /// mpsafe_order::lock_order! { pub Outer, pub Inner }
    /// let mut ctx = mpsafe_order::Ctx::new();
    /// let mut inner = ctx.restrict::<Inner>();
    /// let _outer = inner.restrict::<Outer>(); // Inner: LockBefore<Outer> is not implemented
    /// ```
    #[inline]
    pub fn restrict<M>(&mut self) -> Ctx<'_, M>
    where
        L: LockBefore<M>,
    {
        Ctx::at()
    }
}

impl<L> Ctx<'_, L> {
    /// Takes `lock`, which comes after this context's level, and returns its
    /// guard with the context re-typed to the lock's level.
    ///
    /// ```
    /// mpsafe_order::lock_order! { pub Outer, pub Inner }
    /// use mpsafe_order::{Ctx, Ordered};
    /// use mpsafe_serializer::RawSerializer;
    ///
    /// type Mutex<T> = lock_api::Mutex<RawSerializer, T>;
    /// let outer: Ordered<Outer, Mutex<u32>> = Ordered::new(Mutex::new(1));
    /// let inner: Ordered<Inner, Mutex<u32>> = Ordered::new(Mutex::new(2));
    ///
    /// let mut ctx = Ctx::new();
    /// let (mut a, mut ctx) = ctx.lock(&outer);
    /// let (b, _) = ctx.lock(&inner);
    /// **a += **b; // the `Held` derefs to the lock's guard, the guard to the data
    /// ```
    ///
    /// Out of order, it does not compile:
    ///
    /// ```compile_fail,E0277
    /// mpsafe_order::lock_order! { pub Outer, pub Inner }
    /// use mpsafe_order::{Ctx, Ordered};
    /// type Mutex<T> = lock_api::Mutex<mpsafe_serializer::RawSerializer, T>;
    /// let outer: Ordered<Outer, Mutex<u32>> = Ordered::new(Mutex::new(1));
    /// let inner: Ordered<Inner, Mutex<u32>> = Ordered::new(Mutex::new(2));
    /// let mut ctx = Ctx::new();
    /// let (_b, mut ctx) = ctx.lock(&inner);
    /// let (_a, _) = ctx.lock(&outer); // Inner: LockBefore<Outer> is not implemented
    /// ```
    ///
    /// # Panics
    ///
    /// In debug builds, if the [witness](crate::witness) sees this
    /// acquisition invert an order it has seen or declared.
    #[track_caller]
    #[inline]
    pub fn lock<'b, M, T>(
        &'b mut self,
        lock: &'b Ordered<M, T>,
    ) -> (Held<'b, M, T::Guard<'b>>, Ctx<'b, M>)
    where
        M: Level,
        T: Lock + ?Sized,
        L: LockBefore<M>,
    {
        self.lock_with(lock, |t| t.lock())
    }

    /// Takes `lock` if it is free, as [`lock`](Ctx::lock); never waits, so
    /// the witness records it as held without checking its order.
    #[track_caller]
    #[inline]
    #[allow(clippy::type_complexity)]
    pub fn try_lock<'b, M, T>(
        &'b mut self,
        lock: &'b Ordered<M, T>,
    ) -> Option<(Held<'b, M, T::Guard<'b>>, Ctx<'b, M>)>
    where
        M: Level,
        T: Lock + ?Sized,
        L: LockBefore<M>,
    {
        let guard = lock.inner.try_lock()?;
        let record = witness::Record::acquire(
            witness::LockRef::of::<M>(lock.addr()),
            Location::caller(),
            true,
        );
        Some(Held::new(guard, record))
    }

    /// Takes `lock` by calling `acquire` on it: for adapters whose lock has
    /// more than one way in (a serializer's `handler_call`). The witness
    /// checks the order *before* `acquire` runs, so an inversion is reported
    /// instead of deadlocking, and records the lock as held once `acquire`
    /// returned: an interrupt handler that runs on this CPU while `acquire`
    /// has not taken the lock yet (before an IPL-raising lock raised the
    /// level) does not see it held.
    #[track_caller]
    #[inline]
    pub fn lock_with<'b, M, T, G>(
        &'b mut self,
        lock: &'b Ordered<M, T>,
        acquire: impl FnOnce(&'b T) -> G,
    ) -> (Held<'b, M, G>, Ctx<'b, M>)
    where
        M: Level,
        T: ?Sized,
        L: LockBefore<M>,
    {
        let lock_ref = witness::LockRef::of::<M>(lock.addr());
        witness::check(lock_ref, Location::caller());
        let guard = acquire(&lock.inner);
        // Checked above: recorded as held without a second check.
        let record = witness::Record::acquire(lock_ref, Location::caller(), true);
        Held::new(guard, record)
    }

    /// Takes every lock of `locks`, all at level `M`, by calling `acquire`
    /// (which must take them in index order, as `enter_all` does): the one
    /// place two locks of a level are held at once. The witness checks
    /// each, in index order, before `acquire` runs, so a thread that takes
    /// two of them the other way round is reported, and records them as
    /// held once `acquire` returned.
    #[track_caller]
    #[inline]
    pub fn lock_all_with<'b, M, T, G, const N: usize>(
        &'b mut self,
        locks: &'b Ordered<M, [T; N]>,
        acquire: impl FnOnce(&'b [T; N]) -> G,
    ) -> (Held<'b, M, G>, Ctx<'b, M>)
    where
        M: Level,
        L: LockBefore<M>,
    {
        let first = witness::LockRef::of::<M>(locks.addr());
        let stride = core::mem::size_of::<T>();
        let batch = witness::check_all(first, N, stride, Location::caller());
        let guard = acquire(&locks.inner);
        // Checked above: recorded as held once taken, as `lock_with` does.
        let record = witness::Record::acquire_all(first, N, stride, Location::caller(), batch);
        Held::new(guard, record)
    }

    /// Waits on `barrier`, which comes after this context's level: the
    /// context must hold nothing the work behind the barrier could need.
    ///
    /// # Panics
    ///
    /// In debug builds, if the witness sees the wait close a cycle (it
    /// waits for a routine that takes a lock this thread holds, or this is
    /// that routine).
    #[track_caller]
    #[inline]
    pub fn wait<M, T>(&mut self, barrier: &Ordered<M, T>) -> T::Output
    where
        M: Level,
        T: Barrier + ?Sized,
        L: LockBefore<M>,
    {
        self.wait_with(barrier, T::barrier)
    }

    /// Waits on `barrier` by calling `wait`, as [`wait`](Ctx::wait): for
    /// adapters whose barrier has more than one way in.
    #[track_caller]
    #[inline]
    pub fn wait_with<'b, M, T, R>(
        &'b mut self,
        barrier: &'b Ordered<M, T>,
        wait: impl FnOnce(&'b T) -> R,
    ) -> R
    where
        M: Level,
        T: ?Sized,
        L: LockBefore<M>,
    {
        // Checked and recorded as held, then released before waiting: the
        // wait holds nothing, it only needs what it waits for to finish.
        let checked = witness::Record::acquire(
            witness::LockRef::of::<M>(barrier.addr()),
            Location::caller(),
            false,
        );
        #[allow(clippy::drop_non_drop)] // releases the record in debug builds
        drop(checked);
        wait(&barrier.inner)
    }
}

impl<L: Level> fmt::Debug for Ctx<'_, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ctx").field(&L::NAME).finish()
    }
}

/// A guard taken through [`Ctx`]: derefs to the lock's own guard (the proof
/// its `*_locked` functions take) and keeps the context it was taken from
/// borrowed while it lives. Dropping it releases the lock, after the
/// witness has forgotten the hold (so an interrupt handler that runs on
/// this CPU once an IPL-raising lock lowered the level does not see it
/// held).
#[must_use = "dropping the guard releases the lock at once"]
#[allow(clippy::type_complexity)]
pub struct Held<'a, L, G> {
    // Dropped in this order: the witness's record, then the lock's guard.
    record: witness::Record,
    guard: G,
    _marker: PhantomData<(&'a mut (), fn() -> L)>,
}

impl<'a, L, G> Held<'a, L, G> {
    #[inline]
    fn new(guard: G, record: witness::Record) -> (Self, Ctx<'a, L>) {
        (
            Self {
                guard,
                record,
                _marker: PhantomData,
            },
            Ctx::at(),
        )
    }
}

impl<L, G> Deref for Held<'_, L, G> {
    type Target = G;

    #[inline]
    fn deref(&self) -> &G {
        &self.guard
    }
}

impl<L, G> DerefMut for Held<'_, L, G> {
    #[inline]
    fn deref_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

impl<L: Level, G: fmt::Debug> fmt::Debug for Held<'_, L, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("level", &L::NAME)
            .field("guard", &self.guard)
            .field("record", &self.record)
            .finish()
    }
}
