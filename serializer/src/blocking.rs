//! The blocking serializer: DragonFly's LWKT serializer.
//!
//! A non-recursive exclusive lock in one 32-bit word, with an integrated
//! interrupt-handler disable bit, so that a driver's interrupt handler and its
//! `if_start`/`if_init`/`if_ioctl` entry points share one serializer and the
//! whole interrupt path takes a single lock.
//!
//! ```text
//!   bit 31   bit 30             bits 29..0
//!   HELD  | HANDLERS_DISABLED | number of threads registered as waiters
//! ```
//!
//! Entering tries to set `HELD`; a thread that finds it set spins with
//! back-off for a bounded while, then registers as a waiter (increments the
//! count) and sleeps on the word through a [`Wait`] strategy, re-reading it
//! after every wake-up; it takes `HELD` and deregisters in one compare-exchange.
//! Exiting clears `HELD` and wakes one sleeper only if the count says there is
//! one, so an uncontended enter/exit is two atomic instructions and no call
//! into the wait strategy.
//!
//! No wake-up is lost: the exiting thread's clear of `HELD` and a waiter's
//! registration are read-modify-writes of the same word, so one of them sees
//! the other. If the exit comes first the waiter sees `HELD` clear (or held by
//! a newer owner, whose exit will wake it); if the registration comes first
//! the exit sees a non-zero count and wakes; and [`Wait::wait`] only sleeps
//! while the word still holds the value the waiter last read.

use core::fmt;
use core::marker::PhantomData;
use core::mem::ManuallyDrop;

use crossbeam_utils::CachePadded;

use crate::sync::{AtomicU32, Backoff, Ordering};
use crate::wait::{DefaultWait, Wait};

/// Set while some thread is inside the serializer.
const HELD: u32 = 1 << 31;
/// Set while interrupt handlers run through the serializer are disabled.
const HANDLERS_DISABLED: u32 = 1 << 30;
/// The low bits: threads that gave up spinning and registered as waiters.
const WAITERS: u32 = HANDLERS_DISABLED - 1;

/// The lock word of a [`Serializer`], usable on its own as a
/// [`lock_api::RawMutex`].
///
/// `W` says how a thread that cannot enter waits: [`Futex`](crate::Futex)
/// (the default with `std`) sleeps in the kernel, [`Spin`](crate::Spin) (the
/// default without `std`) spins with back-off, and a kernel can plug in its
/// own sleep queue.
///
/// Most code wants [`Serializer`] (guards, interrupt-handler gating) or
/// [`SerializerMutex`] (a lock that owns its data); this type is what both are
/// built on.
///
/// # Examples
///
/// The `no_std` spin mutex, as a queue lock:
///
/// ```
/// use mpsafe_serializer::{SerializerMutex, Spin};
///
/// static QUEUE: SerializerMutex<[u32; 4], Spin> = SerializerMutex::new([0; 4]);
///
/// QUEUE.lock()[0] = 7;
/// assert_eq!(QUEUE.lock()[0], 7);
/// ```
pub struct RawSerializer<W: Wait = DefaultWait> {
    /// `HELD | HANDLERS_DISABLED | waiters`. Every write to it is a
    /// read-modify-write, so a Release by an exiting owner heads a release
    /// sequence that no later write breaks.
    state: CachePadded<AtomicU32>,
    /// Identity of the holding thread (0 when none), so that entering twice
    /// from one thread panics instead of hanging. Debug builds with `std` only;
    /// written and compared only by the holding thread itself.
    #[cfg(all(feature = "std", debug_assertions))]
    owner_thread: core::sync::atomic::AtomicUsize,
    /// `fn() -> W`: the strategy is a type, never stored, and never affects
    /// `Send`/`Sync`.
    _wait: PhantomData<fn() -> W>,
}

impl<W: Wait> RawSerializer<W> {
    crate::sync::const_fn! {
        /// An unheld lock word, handlers enabled, no waiters.
        pub fn new() -> Self {
            Self {
                state: CachePadded::new(AtomicU32::new(0)),
                #[cfg(all(feature = "std", debug_assertions))]
                owner_thread: core::sync::atomic::AtomicUsize::new(0),
                _wait: PhantomData,
            }
        }
    }

    /// Takes `HELD` if it is clear; never waits.
    #[inline]
    fn try_acquire(&self) -> bool {
        // Guess the idle word first, so the uncontended enter is one
        // `lock cmpxchg`. (A `fetch_or` of bit 31 is no cheaper: LLVM turns
        // the sign-bit test into a compare-exchange loop, not `lock bts`.)
        let mut current = 0;
        loop {
            // Acquire: pairs with the Release in `release` of the previous
            // owner, so this owner sees everything done inside before.
            match self.state.compare_exchange_weak(
                current,
                current | HELD,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.set_owner_thread(true);
                    return true;
                }
                Err(now) if now & HELD != 0 => return false,
                // Waiters registered or handlers disabled (or a spurious
                // failure): keep those bits and try again.
                Err(now) => current = now,
            }
        }
    }

    /// Takes `HELD`, waiting as long as it takes.
    #[inline]
    fn acquire(&self) {
        if !self.try_acquire() {
            self.acquire_contended();
        }
    }

    #[cold]
    fn acquire_contended(&self) {
        self.assert_not_owner();

        // Adaptive part: the owner is probably running on another CPU and
        // about to leave; a few microseconds of spinning saves two system
        // calls. Bounded, because on a machine with fewer CPUs than runnable
        // threads the owner may be preempted and spinning only delays it.
        // (Empty under the loom models, whose back-off never spins: it only
        // repeats `try_acquire`, which the models cover, and would multiply
        // the explored interleavings.)
        let backoff = Backoff::new();
        while !backoff.is_completed() {
            if self.state.load(Ordering::Relaxed) & HELD == 0 && self.try_acquire() {
                return;
            }
            backoff.snooze();
        }

        // Register as a waiter. Relaxed is enough: the exit that must see this
        // registration is a read-modify-write of the same word, and coherence
        // alone decides which of the two comes first (see the module docs).
        let mut seen = self.state.fetch_add(1, Ordering::Relaxed) + 1;
        debug_assert!(seen & WAITERS != 0, "serializer waiter count overflow");
        loop {
            if seen & HELD == 0 {
                // Take the serializer and deregister in one step. Acquire:
                // pairs with the previous owner's Release.
                match self.state.compare_exchange_weak(
                    seen,
                    (seen | HELD) - 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        self.set_owner_thread(true);
                        return;
                    }
                    Err(now) => {
                        seen = now;
                        continue;
                    }
                }
            }
            // Sleeps only while the word still reads `seen`: an exit between
            // our read and the sleep changed it, so the sleep returns at once.
            W::wait(&self.state, seen);
            seen = self.state.load(Ordering::Relaxed);
        }
    }

    /// Clears `HELD` and wakes a waiter if one is registered.
    ///
    /// Only the holder calls this; the callers guarantee it (a guard's drop,
    /// or the `unsafe` contract of `RawMutex::unlock`).
    #[inline]
    fn release(&self) {
        self.set_owner_thread(false);
        // Release: the next owner (whose acquiring read-modify-write reads
        // this value or a later one in its release sequence) sees everything
        // done inside the serializer. Subtracting the known-set bit compiles
        // to one `lock xadd` where a `fetch_and` would be a CAS loop.
        let prev = self.state.fetch_sub(HELD, Ordering::Release);
        debug_assert!(prev & HELD != 0, "serializer released while not held");
        if prev & WAITERS != 0 {
            W::wake_one(&self.state);
        }
    }

    #[inline]
    fn is_held(&self) -> bool {
        self.state.load(Ordering::Relaxed) & HELD != 0
    }

    #[inline]
    fn set_owner_thread(&self, _owned: bool) {
        #[cfg(all(feature = "std", debug_assertions))]
        {
            // Relaxed: only the holding thread writes its own identity, and
            // clears it before it lets go; a thread always reads its own
            // latest write, and a stale value never equals another thread's
            // identity.
            let id = if _owned {
                crate::sync::shared::thread_id()
            } else {
                0
            };
            self.owner_thread
                .store(id, core::sync::atomic::Ordering::Relaxed);
        }
    }

    #[inline]
    fn assert_not_owner(&self) {
        #[cfg(all(feature = "std", debug_assertions))]
        assert!(
            self.owner_thread
                .load(core::sync::atomic::Ordering::Relaxed)
                != crate::sync::shared::thread_id(),
            "this thread already holds the serializer it is entering: a \
             serializer is not recursive, entering it again would deadlock"
        );
    }
}

impl<W: Wait> Default for RawSerializer<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for RawSerializer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load(Ordering::Relaxed);
        f.debug_struct("RawSerializer")
            .field("held", &(state & HELD != 0))
            .field("handlers_enabled", &(state & HANDLERS_DISABLED == 0))
            .field("waiters", &(state & WAITERS))
            .finish()
    }
}

// SAFETY: `try_acquire` and `acquire` return only once this call set `HELD`
// (a compare-exchange from a value with it clear, in both), and only
// `release` clears it, so at most one holder exists at a time.
// Both take it with Acquire and `release` clears it with Release, so what one
// holder did happens before the next holder's critical section. `unlock`'s
// contract (the caller holds the lock) is what `release` requires. The lock is
// not tied to a thread's identity except for the debug-only recursion check, but
// guards stay `!Send` (`GuardNoSend`) so a kernel may later record an owner.
unsafe impl<W: Wait> lock_api::RawMutex for RawSerializer<W> {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = crate::sync::const_init!(Self::new());

    type GuardMarker = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) {
        self.acquire();
    }

    #[inline]
    fn try_lock(&self) -> bool {
        self.try_acquire()
    }

    #[inline]
    unsafe fn unlock(&self) {
        self.release();
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.is_held()
    }
}

/// A mutex that owns its data, locked by a [`RawSerializer`]:
/// `lock_api::Mutex` with this crate's lock word.
///
/// With `W = Spin` it needs nothing from the platform and is the `no_std` spin
/// mutex for queue locks; with the default `Futex` it sleeps when contended.
///
/// # Examples
///
/// ```
/// use mpsafe_serializer::SerializerMutex;
///
/// let counters = SerializerMutex::<[u64; 2]>::new([0, 0]);
/// std::thread::scope(|s| {
///     for _ in 0..2 {
///         s.spawn(|| counters.lock()[1] += 1);
///     }
/// });
/// assert_eq!(*counters.lock(), [0, 2]);
/// ```
pub type SerializerMutex<T, W = DefaultWait> = lock_api::Mutex<RawSerializer<W>, T>;

/// The guard of a [`SerializerMutex`].
pub type SerializerMutexGuard<'a, T, W = DefaultWait> =
    lock_api::MutexGuard<'a, RawSerializer<W>, T>;

/// DragonFly's LWKT serializer: a sleeping, non-recursive exclusive lock with
/// an integrated interrupt-handler disable bit.
///
/// One serializer protects a device: the interrupt handler runs through
/// [`handler_call`](Serializer::handler_call) and the `start`/`init`/`ioctl`
/// entry points [`enter`](Serializer::enter) it, so the whole interrupt path
/// takes a single lock. [`handler_disable`](Serializer::handler_disable) turns
/// the handler into a no-op and waits for a running one to finish, which is
/// what `stop` needs before it frees the rings.
///
/// Entering returns a [`Serialized`] guard; dropping it exits. There is no way
/// to exit without having entered, and `*_locked` functions take
/// `&Serialized<'_>` as proof that the caller is inside.
///
/// # Handler gating and the serializer
///
/// | call | needs the serializer? | blocks? |
/// | --- | --- | --- |
/// | [`handler_disable`](Serializer::handler_disable) | enters it itself: do **not** hold it | until a running handler returns |
/// | [`Serialized::handler_disable`] | proof of holding it | no |
/// | [`handler_enable`](Serializer::handler_enable) / [`Serialized::handler_enable`] | no / proof of holding it | no |
/// | [`handler_call`](Serializer::handler_call) | enters it itself | until it can enter |
/// | [`handler_try`](Serializer::handler_try) | tries to enter it | no |
///
/// The disable bit is a flag, not a count (as in DragonFly): two disables need
/// one enable. Enabling handlers that are not disabled is a pairing bug and
/// panics in debug builds.
///
/// # Examples
///
/// An interrupt handler and a `stop` routine sharing one serializer:
///
/// ```
/// use core::cell::Cell;
/// use mpsafe_serializer::{Serialized, Serializer};
///
/// struct Nic {
///     serializer: Serializer,
///     // Only touched inside the serializer (a Cell, as this example is
///     // single-threaded; a real driver keeps an `UnsafeCell` and hands out
///     // access against the `Serialized` proof).
///     interrupts: Cell<u32>,
/// }
///
/// impl Nic {
///     fn intr(&self) -> bool {
///         self.serializer.handler_call(|s| self.intr_locked(s)).is_some()
///     }
///     fn intr_locked(&self, _s: &Serialized<'_>) {
///         self.interrupts.set(self.interrupts.get() + 1);
///     }
///     fn stop(&self) {
///         // Returns once no handler is running; none starts until enabled.
///         self.serializer.handler_disable();
///     }
/// }
///
/// let nic = Nic { serializer: Serializer::new(), interrupts: Cell::new(0) };
/// assert!(nic.intr());
/// nic.stop();
/// assert!(!nic.intr(), "a disabled handler is skipped");
/// nic.serializer.handler_enable();
/// assert!(nic.intr());
/// assert_eq!(nic.interrupts.get(), 2);
/// ```
pub struct Serializer<W: Wait = DefaultWait> {
    raw: RawSerializer<W>,
}

impl<W: Wait> Serializer<W> {
    crate::sync::const_fn! {
        /// An idle serializer with handlers enabled.
        pub fn new() -> Self {
            Self {
                raw: RawSerializer::new(),
            }
        }
    }

    /// Enters the serializer, waiting (spinning briefly, then sleeping through
    /// `W`) while another thread is inside. Dropping the guard exits.
    ///
    /// # Panics
    ///
    /// The serializer is not recursive: entering it again on a thread that is
    /// already inside would deadlock. Debug builds with `std` detect this and
    /// panic instead of hanging.
    ///
    /// # Examples
    ///
    /// ```
    /// use mpsafe_serializer::Serializer;
    ///
    /// let s: Serializer = Serializer::new();
    /// let guard = s.enter();
    /// assert!(s.is_held());
    /// drop(guard);
    /// assert!(!s.is_held());
    /// ```
    #[inline]
    pub fn enter(&self) -> Serialized<'_, W> {
        self.raw.acquire();
        Serialized::new(self)
    }

    /// Enters the serializer if nobody is inside; never waits.
    ///
    /// ```
    /// use mpsafe_serializer::Serializer;
    ///
    /// let s: Serializer = Serializer::new();
    /// let guard = s.try_enter().expect("idle");
    /// assert!(s.try_enter().is_none(), "busy (and not recursive)");
    /// drop(guard);
    /// ```
    #[inline]
    pub fn try_enter(&self) -> Option<Serialized<'_, W>> {
        self.raw.try_acquire().then(|| Serialized::new(self))
    }

    /// Whether some thread is inside right now (a hint, possibly stale).
    pub fn is_held(&self) -> bool {
        self.raw.is_held()
    }

    /// Whether handlers run through [`handler_call`](Self::handler_call) would
    /// run now (a hint, possibly stale unless read inside the serializer, see
    /// [`Serialized::handlers_enabled`]).
    pub fn handlers_enabled(&self) -> bool {
        self.raw.state.load(Ordering::Relaxed) & HANDLERS_DISABLED == 0
    }

    /// Disables handlers, as a barrier: when this returns, no handler is
    /// running and none starts until [`handler_enable`](Self::handler_enable).
    ///
    /// Enters the serializer to set the flag, so it waits for a running
    /// handler to return. Call it *after* masking the device's interrupt
    /// (so no new ones are raised), and then free what the handler touches.
    /// Disabling twice is harmless (the second call is just another barrier).
    ///
    /// Must not be called with the serializer held (it would deadlock): use
    /// [`Serialized::handler_disable`] there.
    ///
    /// # Panics
    ///
    /// As [`enter`](Self::enter), if the calling thread is already inside.
    pub fn handler_disable(&self) {
        self.enter().handler_disable();
    }

    /// Re-enables handlers disabled by
    /// [`handler_disable`](Self::handler_disable).
    ///
    /// Does not need the serializer and never blocks. Everything written
    /// before this call is visible to the handlers that run after it. Call it
    /// *before* unmasking the device's interrupt.
    ///
    /// # Panics
    ///
    /// In debug builds, if handlers are not disabled: an enable without a
    /// matching disable means the driver's pairing is broken (the flag is not
    /// a counter, so such an enable may undo a disable someone else relies
    /// on). Release builds leave handlers enabled.
    pub fn handler_enable(&self) {
        self.raw.enable_handlers();
    }

    /// Runs the interrupt handler `f` inside the serializer, unless handlers
    /// are disabled.
    ///
    /// Enters (waiting if needed), then checks the flag *inside*, so a handler
    /// never runs after [`handler_disable`](Self::handler_disable) has
    /// returned. Returns `None` without running `f` if handlers are disabled.
    ///
    /// # Panics
    ///
    /// As [`enter`](Self::enter), if the calling thread is already inside. A
    /// panic in `f` propagates; the serializer is exited on the way out.
    ///
    /// `f` gets the guard by `&mut`, so it can use accessors that hand out
    /// `&mut` to serializer-protected data (see the crate docs).
    pub fn handler_call<R>(&self, f: impl FnOnce(&mut Serialized<'_, W>) -> R) -> Option<R> {
        // Cheap early out, as DragonFly does: skipping a call that raced
        // with a disable is always allowed.
        if !self.handlers_enabled() {
            return None;
        }
        let mut guard = self.enter();
        guard.handlers_enabled().then(|| f(&mut guard))
    }

    /// Runs `f` as [`handler_call`](Self::handler_call) does, but only if the
    /// serializer is free: `None` if it is busy or handlers are disabled.
    /// Never waits.
    pub fn handler_try<R>(&self, f: impl FnOnce(&mut Serialized<'_, W>) -> R) -> Option<R> {
        if !self.handlers_enabled() {
            return None;
        }
        let mut guard = self.try_enter()?;
        guard.handlers_enabled().then(|| f(&mut guard))
    }
}

impl<W: Wait> RawSerializer<W> {
    fn enable_handlers(&self) {
        // Release: a handler that reads the cleared flag (with Acquire, inside
        // the serializer) sees what the enabler set up before enabling, even
        // when the enabler never entered the serializer.
        let prev = self.state.fetch_and(!HANDLERS_DISABLED, Ordering::Release);
        debug_assert!(
            prev & HANDLERS_DISABLED != 0,
            "handler_enable without a matching handler_disable: handlers were \
             already enabled"
        );
    }
}

impl<W: Wait> Default for Serializer<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for Serializer<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.raw.state.load(Ordering::Relaxed);
        f.debug_struct("Serializer")
            .field("held", &(state & HELD != 0))
            .field("handlers_enabled", &(state & HANDLERS_DISABLED == 0))
            .field("waiters", &(state & WAITERS))
            .finish()
    }
}

/// Proof of being inside a [`Serializer`], and the way out: dropping it exits.
///
/// Functions that must only run inside the serializer (a driver's
/// `start_locked`, `init_locked`) take `&Serialized<'_>` as an argument. The
/// guard cannot be forged, cannot outlive the serializer, and cannot move to
/// or be shared with another thread (`!Send`, `!Sync`), so holding a
/// reference to one proves the current thread is inside.
///
/// # Examples
///
/// ```
/// use core::cell::Cell;
/// use mpsafe_serializer::{Serialized, Serializer};
///
/// struct Driver {
///     serializer: Serializer,
///     running: Cell<bool>,
/// }
///
/// impl Driver {
///     fn init(&self) {
///         let s = self.serializer.enter();
///         self.init_locked(&s);
///     }
///     fn init_locked(&self, s: &Serialized<'_>) {
///         // A proof for *this* driver's serializer.
///         assert!(core::ptr::eq(s.serializer(), &self.serializer));
///         self.running.set(true);
///     }
/// }
///
/// let drv = Driver { serializer: Serializer::new(), running: Cell::new(false) };
/// drv.init();
/// assert!(drv.running.get());
/// ```
#[must_use = "dropping the guard exits the serializer at once"]
pub struct Serialized<'a, W: Wait = DefaultWait> {
    serializer: &'a Serializer<W>,
    // !Send + !Sync: the proof belongs to the thread inside.
    _not_send: PhantomData<*const ()>,
}

impl<'a, W: Wait> Serialized<'a, W> {
    /// Wraps an entry that the caller has just made.
    fn new(serializer: &'a Serializer<W>) -> Self {
        Self {
            serializer,
            _not_send: PhantomData,
        }
    }

    /// The serializer this guard is inside.
    pub fn serializer(&self) -> &'a Serializer<W> {
        self.serializer
    }

    /// Disables handlers, from inside the serializer (DragonFly's form).
    ///
    /// Holding the serializer is itself the barrier: no handler runs while
    /// the caller is inside (unless this *is* the handler, called with its
    /// own guard), and a handler that enters after the caller exits sees the
    /// flag and is skipped. Never blocks; disabling twice is harmless.
    pub fn handler_disable(&self) {
        // Relaxed: the flag is read inside the serializer, after an Acquire
        // entry that pairs with this holder's Release exit.
        self.serializer
            .raw
            .state
            .fetch_or(HANDLERS_DISABLED, Ordering::Relaxed);
    }

    /// Re-enables handlers, from inside the serializer.
    ///
    /// # Panics
    ///
    /// In debug builds, if handlers are not disabled (see
    /// [`Serializer::handler_enable`]).
    pub fn handler_enable(&self) {
        self.serializer.raw.enable_handlers();
    }

    /// Whether handlers are enabled. Exact as far as disabling goes (only a
    /// holder disables them); an enable from outside may land at any time.
    pub fn handlers_enabled(&self) -> bool {
        // Acquire: pairs with the Release of an enable made outside the
        // serializer, so a handler that runs because of it sees what the
        // enabler set up.
        self.serializer.raw.state.load(Ordering::Acquire) & HANDLERS_DISABLED == 0
    }
}

impl<W: Wait> Drop for Serialized<'_, W> {
    #[inline]
    fn drop(&mut self) {
        // This guard was made by an entry and is dropped once: we hold it.
        self.serializer.raw.release();
    }
}

impl<W: Wait> fmt::Debug for Serialized<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serialized")
            .field("handlers_enabled", &self.handlers_enabled())
            .finish_non_exhaustive()
    }
}

/// Enters every serializer of `serializers` in index order, waiting as long as
/// it takes: the ifnet "serialize all" of a multi-queue driver's `init`.
///
/// The returned guard exits them in reverse order when dropped. Taking them
/// always in index order is what keeps two "all" callers, or an "all" caller
/// and one taking a single serializer, from deadlocking. An empty slice gives
/// a guard that holds nothing.
///
/// # Panics
///
/// As [`Serializer::enter`], if the calling thread is already inside one of
/// them; the serializers entered so far are exited first.
///
/// # Examples
///
/// ```
/// use mpsafe_serializer::{Serializer, enter_all};
///
/// let rings: [Serializer; 3] = [Serializer::new(), Serializer::new(), Serializer::new()];
/// let mut all = enter_all(&rings);
/// assert!(rings.iter().all(Serializer::is_held));
/// all.with(1, |tx1| assert!(core::ptr::eq(tx1.serializer(), &rings[1])));
/// drop(all);
/// assert!(!rings.iter().any(Serializer::is_held));
/// ```
pub fn enter_all<W: Wait>(serializers: &[Serializer<W>]) -> SerializedAll<'_, W> {
    let mut all = SerializedAll::empty(serializers);
    for s in serializers {
        s.raw.acquire();
        all.held += 1;
    }
    all
}

/// Enters every serializer of `serializers` in index order if each is free;
/// never waits. On the first busy one, exits those already entered (in
/// reverse) and returns `None`.
pub fn try_enter_all<W: Wait>(serializers: &[Serializer<W>]) -> Option<SerializedAll<'_, W>> {
    let mut all = SerializedAll::empty(serializers);
    for s in serializers {
        if !s.raw.try_acquire() {
            return None;
        }
        all.held += 1;
    }
    Some(all)
}

/// Proof of being inside every serializer of a slice; exits them in reverse
/// index order when dropped. Made by [`enter_all`] and [`try_enter_all`].
#[must_use = "dropping the guard exits the serializers at once"]
pub struct SerializedAll<'a, W: Wait = DefaultWait> {
    serializers: &'a [Serializer<W>],
    /// How many of `serializers` (a prefix) this guard holds: all of them
    /// once made, fewer only while entering.
    held: usize,
    _not_send: PhantomData<*const ()>,
}

impl<'a, W: Wait> SerializedAll<'a, W> {
    fn empty(serializers: &'a [Serializer<W>]) -> Self {
        Self {
            serializers,
            held: 0,
            _not_send: PhantomData,
        }
    }

    /// The serializers held.
    pub fn serializers(&self) -> &'a [Serializer<W>] {
        self.serializers
    }

    /// Calls `f` with the proof of being inside serializer number `index`,
    /// for its `*_locked` functions; `None` if `index` is out of range.
    ///
    /// Takes `&mut self` and lends the proof by `&mut`, so `f` can use
    /// accessors that hand out `&mut` to serializer-protected data, and no
    /// second proof of the same serializer can be lent while it runs. The
    /// proof's lifetime is `f`'s own, so `f` cannot swap it with a guard it
    /// owns (which would make this guard exit the wrong serializer).
    pub fn with<R>(
        &mut self,
        index: usize,
        f: impl FnOnce(&mut Serialized<'_, W>) -> R,
    ) -> Option<R> {
        let serializer = self.serializers.get(index)?;
        // The proof is lent, not given: `f` only sees a reference, and this
        // guard (not the lent one) exits the serializer.
        let mut proof = ManuallyDrop::new(Serialized::new(serializer));
        Some(f(&mut proof))
    }
}

impl<W: Wait> Drop for SerializedAll<'_, W> {
    fn drop(&mut self) {
        for s in self.serializers[..self.held].iter().rev() {
            s.raw.release();
        }
    }
}

impl<W: Wait> fmt::Debug for SerializedAll<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SerializedAll")
            .field("held", &self.held)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wait::Spin;
    use core::cell::Cell;
    use core::sync::atomic::AtomicBool;
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    assert_impl_all!(Serializer: Send, Sync);
    assert_impl_all!(Serializer<Spin>: Send, Sync);
    assert_impl_all!(RawSerializer: Send, Sync);
    assert_impl_all!(SerializerMutex<Cell<u32>>: Send, Sync);
    assert_not_impl_any!(Serialized<'static>: Send, Sync);
    assert_not_impl_any!(SerializedAll<'static>: Send, Sync);
    assert_not_impl_any!(SerializerMutexGuard<'static, u32>: Send);

    fn waiters<W: Wait>(s: &Serializer<W>) -> u32 {
        s.raw.state.load(Ordering::Relaxed) & WAITERS
    }

    /// Waits (without a deadline) until some thread has given up spinning
    /// on `s` and registered as a waiter.
    fn until_waiter<W: Wait>(s: &Serializer<W>) {
        while waiters(s) == 0 {
            std::thread::yield_now();
        }
    }

    #[test]
    fn enter_and_drop() {
        let s: Serializer = Serializer::new();
        assert!(!s.is_held());
        let g = s.enter();
        assert!(s.is_held());
        assert!(core::ptr::eq(g.serializer(), &s));
        drop(g);
        assert!(!s.is_held());
        assert_eq!(s.raw.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn try_enter_fails_while_held_and_succeeds_after() {
        let s: Serializer<Spin> = Serializer::default();
        let g = s.try_enter().unwrap();
        assert!(s.try_enter().is_none());
        drop(g);
        assert!(s.try_enter().is_some());
        assert!(!s.is_held());
    }

    fn sleeper_is_woken<W: Wait + 'static>() {
        let s = Serializer::<W>::new();
        let inside = Cell::new(0u32);
        let entered = AtomicBool::new(false);
        let g = s.enter();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let _g = s.enter();
                entered.store(true, Ordering::Relaxed);
            });
            until_waiter(&s);
            // The other thread is past its spin phase and counted: it cannot
            // be inside, and our exit must wake it.
            assert!(!entered.load(Ordering::Relaxed));
            inside.set(1);
            drop(g);
        });
        assert!(entered.load(Ordering::Relaxed));
        assert_eq!(waiters(&s), 0, "the waiter deregistered on entry");
        assert!(!s.is_held());
        assert_eq!(inside.get(), 1);
    }

    #[test]
    #[cfg(feature = "std")]
    fn contended_enter_sleeps_and_is_woken_futex() {
        sleeper_is_woken::<crate::wait::Futex>();
    }

    #[test]
    fn contended_enter_sleeps_and_is_woken_spin() {
        sleeper_is_woken::<Spin>();
    }

    #[test]
    #[cfg(all(feature = "std", debug_assertions))]
    #[should_panic(expected = "not recursive")]
    fn entering_twice_on_one_thread_panics_in_debug() {
        let s: Serializer = Serializer::new();
        let _g = s.enter();
        let _again = s.enter();
    }

    #[test]
    fn handler_call_runs_when_enabled() {
        let s: Serializer = Serializer::new();
        assert!(s.handlers_enabled());
        let r = s.handler_call(|g| {
            assert!(s.is_held());
            assert!(g.handlers_enabled());
            7
        });
        assert_eq!(r, Some(7));
        assert!(!s.is_held());
    }

    #[test]
    fn handler_call_while_disabled_does_not_run() {
        let s: Serializer = Serializer::new();
        s.handler_disable();
        assert!(!s.handlers_enabled());
        assert!(!s.is_held(), "disable leaves the serializer");
        assert_eq!(s.handler_call(|_| unreachable!("disabled")), None::<()>);
        assert_eq!(s.handler_try(|_| unreachable!("disabled")), None::<()>);
        s.handler_disable(); // twice: harmless, still one flag
        s.handler_enable();
        assert!(s.handlers_enabled());
        assert_eq!(s.handler_call(|_| 1), Some(1));
    }

    #[test]
    fn handler_call_rechecks_the_flag_inside() {
        // The flag is set after the early-out check passed (here: by the
        // holder the handler waits for).
        let s: Serializer = Serializer::new();
        let ran = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let g = s.enter();
            scope.spawn(|| {
                s.handler_call(|_| ran.store(true, Ordering::Relaxed));
            });
            until_waiter(&s);
            g.handler_disable();
            drop(g);
        });
        assert!(!ran.load(Ordering::Relaxed));
    }

    #[test]
    fn handler_try_is_none_when_busy() {
        let s: Serializer = Serializer::new();
        let g = s.enter();
        assert_eq!(s.handler_try(|_| unreachable!("busy")), None::<()>);
        drop(g);
        assert_eq!(s.handler_try(|g| g.handlers_enabled()), Some(true));
        assert!(!s.is_held());
    }

    #[test]
    fn handler_disable_waits_for_the_running_handler() {
        let s: Serializer = Serializer::new();
        let handler_started = AtomicBool::new(false);
        let disable_returned = AtomicBool::new(false);
        let handler_runs = Cell::new(0u32);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                s.handler_call(|_| {
                    handler_started.store(true, Ordering::Relaxed);
                    // Hold on until the disabler is blocked on us...
                    until_waiter(&s);
                    // ...and check it really is.
                    assert!(!disable_returned.load(Ordering::Relaxed));
                });
            });
            while !handler_started.load(Ordering::Relaxed) {
                std::thread::yield_now();
            }
            s.handler_disable();
            disable_returned.store(true, Ordering::Relaxed);
            // After the barrier: no handler runs, so its state is ours.
            assert_eq!(s.handler_call(|_| handler_runs.set(1)), None);
        });
        assert_eq!(handler_runs.get(), 0);
        assert!(!s.handlers_enabled());
    }

    #[test]
    fn locked_disable_and_enable() {
        let s: Serializer = Serializer::new();
        {
            let g = s.enter();
            g.handler_disable();
            assert!(!g.handlers_enabled());
        }
        assert_eq!(s.handler_call(|_| ()), None);
        {
            let g = s.enter();
            g.handler_enable();
            assert!(g.handlers_enabled());
        }
        assert_eq!(s.handler_call(|_| ()), Some(()));
    }

    #[test]
    fn a_handler_may_disable_itself() {
        let s: Serializer = Serializer::new();
        assert_eq!(s.handler_call(|g| g.handler_disable()), Some(()));
        assert_eq!(s.handler_call(|_| ()), None);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "handler_enable without a matching handler_disable")]
    fn enable_without_disable_panics_in_debug() {
        let s: Serializer = Serializer::new();
        s.handler_enable();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "handler_enable without a matching handler_disable")]
    fn locked_enable_without_disable_panics_in_debug() {
        let s: Serializer = Serializer::new();
        s.enter().handler_enable();
    }

    #[test]
    fn handler_panic_exits_the_serializer() {
        let s: Serializer = Serializer::new();
        let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            s.handler_call(|_| panic!("handler bug"));
        }));
        assert!(r.is_err());
        assert!(!s.is_held());
        assert_eq!(s.handler_call(|_| 1), Some(1));
    }

    #[test]
    fn flags_survive_enter_and_exit() {
        let s: Serializer = Serializer::new();
        s.handler_disable();
        drop(s.enter());
        drop(s.try_enter());
        assert!(!s.handlers_enabled());
        assert_eq!(
            s.raw.state.load(Ordering::Relaxed),
            HANDLERS_DISABLED,
            "exit clears only HELD"
        );
    }

    #[test]
    fn enter_all_holds_all_and_releases_all() {
        let ss: [Serializer; 3] = Default::default();
        let mut all = enter_all(&ss);
        assert!(ss.iter().all(Serializer::is_held));
        assert_eq!(all.serializers().len(), 3);
        assert_eq!(
            all.with(2, |g| core::ptr::eq(g.serializer(), &ss[2])),
            Some(true)
        );
        assert_eq!(all.with(3, |_| ()), None);
        // The lent proof did not exit anything.
        assert!(ss.iter().all(Serializer::is_held));
        drop(all);
        assert!(!ss.iter().any(Serializer::is_held));
    }

    #[test]
    fn enter_all_of_nothing_holds_nothing() {
        let ss: [Serializer; 0] = [];
        drop(enter_all(&ss));
        assert!(try_enter_all(&ss).is_some());
    }

    #[test]
    fn try_enter_all_backs_out_on_a_busy_one() {
        let ss: [Serializer; 3] = Default::default();
        let busy = ss[2].enter();
        assert!(try_enter_all(&ss).is_none());
        assert!(!ss[0].is_held() && !ss[1].is_held(), "entered ones exited");
        drop(busy);
        let all = try_enter_all(&ss).unwrap();
        assert!(ss.iter().all(Serializer::is_held));
        drop(all);
        assert!(!ss.iter().any(Serializer::is_held));
    }

    #[test]
    #[cfg(all(feature = "std", debug_assertions))]
    fn enter_all_panicking_midway_exits_what_it_entered() {
        let ss: [Serializer; 3] = Default::default();
        let r = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            let _g = ss[1].enter();
            let _all = enter_all(&ss); // enters 0, then panics on 1
        }));
        assert!(r.is_err());
        assert!(!ss.iter().any(Serializer::is_held));
    }

    #[test]
    fn enter_all_waits_for_a_single_holder() {
        let ss: [Serializer; 2] = Default::default();
        let all_done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let g = ss[1].enter();
            scope.spawn(|| {
                let all = enter_all(&ss);
                all_done.store(true, Ordering::Relaxed);
                drop(all);
            });
            // The "all" caller takes 0, then sleeps on 1 (the loads are
            // hints: wait for them rather than assert them).
            until_waiter(&ss[1]);
            while !ss[0].is_held() {
                std::thread::yield_now();
            }
            assert!(
                !all_done.load(Ordering::Relaxed),
                "entered a held serializer"
            );
            drop(g);
        });
        assert!(all_done.load(Ordering::Relaxed));
        assert!(!ss.iter().any(Serializer::is_held));
    }

    static STATIC_QUEUE: SerializerMutex<u32, Spin> = SerializerMutex::new(0);

    #[test]
    fn serializer_mutex_locks() {
        use lock_api::RawMutex as _;
        *STATIC_QUEUE.lock() += 1;
        assert_eq!(*STATIC_QUEUE.lock(), 1);

        let m: SerializerMutex<u32> = SerializerMutex::new(5);
        let g = m.lock();
        assert!(m.is_locked());
        assert!(m.try_lock().is_none());
        drop(g);
        assert!(m.try_lock().is_some());

        let raw: RawSerializer<Spin> = RawSerializer::INIT;
        raw.lock();
        assert!(raw.is_locked());
        assert!(!raw.try_lock());
        // SAFETY: locked just above on this thread.
        unsafe { raw.unlock() };
        assert!(!raw.is_locked());
    }

    #[test]
    fn debug_output() {
        let s: Serializer = Serializer::new();
        let g = s.enter();
        assert!(std::format!("{s:?}").contains("held: true"));
        assert!(std::format!("{g:?}").contains("handlers_enabled: true"));
        drop(g);
        assert!(std::format!("{:?}", s.raw).contains("waiters: 0"));
        let ss: [Serializer; 1] = Default::default();
        assert!(std::format!("{:?}", enter_all(&ss)).contains("held: 1"));
    }
}
