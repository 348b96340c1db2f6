//! The witness in a kernel with interrupt handlers that take ordered locks:
//! per-CPU stacks through the CPU-id hook, and the kernel's interrupt mask
//! around the witness's own bookkeeping (its own test binary: both hooks
//! are global). Debug builds only, and not under the loom cfg (its statics
//! need a constant lock, which the serializer's loom build does not have).
#![cfg(all(debug_assertions, not(mpsafe_loom)))]

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::panic::catch_unwind;

use mpsafe_order::witness::{self, InterruptMask};
use mpsafe_order::{Ctx, Lock, Ordered};

type Mutex<T> = lock_api::Mutex<mpsafe_serializer::RawSerializer, T>;

mpsafe_order::lock_order! {
    /// A ring lock an interrupt handler shares with thread context.
    pub Ring,
}

/// The simulated CPU's interrupt-enable flag.
static ENABLED: AtomicBool = AtomicBool::new(true);
/// Calls of `mask` and of `restore`.
static MASKS: AtomicUsize = AtomicUsize::new(0);
static RESTORES: AtomicUsize = AtomicUsize::new(0);
/// Times the witness asked for the CPU id with interrupts enabled.
static UNMASKED_LOOKUPS: AtomicUsize = AtomicUsize::new(0);

fn mask() -> usize {
    MASKS.fetch_add(1, Ordering::Relaxed);
    usize::from(ENABLED.swap(false, Ordering::Relaxed))
}

fn restore(was: usize) {
    RESTORES.fetch_add(1, Ordering::Relaxed);
    ENABLED.store(was != 0, Ordering::Relaxed);
}

static MASK: InterruptMask = InterruptMask { mask, restore };

/// CPU 0; the witness reaches its stack only from inside its bookkeeping.
fn cpu() -> usize {
    if ENABLED.load(Ordering::Relaxed) {
        UNMASKED_LOOKUPS.fetch_add(1, Ordering::Relaxed);
    }
    0
}

/// An IPL-raising lock, as far as the witness can tell: the interrupt
/// "arrives" inside `lock` before the lock is taken (before the level is
/// raised) and inside the guard's drop after it is released (once the level
/// is lowered), unless another such lock keeps the level raised, and its
/// handler takes the same locks.
struct IplLock(Mutex<u32>);

struct IplGuard<'a>(Option<lock_api::MutexGuard<'a, mpsafe_serializer::RawSerializer, u32>>);

impl Lock for IplLock {
    type Guard<'a> = IplGuard<'a>;

    fn lock(&self) -> IplGuard<'_> {
        interrupt();
        let g = self.0.lock();
        RAISED.fetch_add(1, Ordering::Relaxed);
        IplGuard(Some(g))
    }

    fn try_lock(&self) -> Option<IplGuard<'_>> {
        let g = self.0.try_lock()?;
        RAISED.fetch_add(1, Ordering::Relaxed);
        Some(IplGuard(Some(g)))
    }
}

impl Drop for IplGuard<'_> {
    fn drop(&mut self) {
        drop(self.0.take());
        RAISED.fetch_sub(1, Ordering::Relaxed);
        interrupt();
    }
}

/// `IplLock`s held: the level is raised while any is.
static RAISED: AtomicUsize = AtomicUsize::new(0);
static IPL_RING: Ordered<Ring, IplLock> = Ordered::new(IplLock(Mutex::new(0)));
/// Two rings taken together (`lock_all_with`); the handler takes the first.
static IPL_RINGS: Ordered<Ring, [IplLock; 2]> =
    Ordered::new([IplLock(Mutex::new(0)), IplLock(Mutex::new(0))]);
/// In the simulated handler (it does not interrupt itself).
static IN_HANDLER: AtomicBool = AtomicBool::new(false);
static HANDLED: AtomicUsize = AtomicUsize::new(0);

/// The handler, on the same CPU if the level lets it in: a fresh context
/// takes the lock, then the first of the two rings.
fn interrupt() {
    if RAISED.load(Ordering::Relaxed) == 0 && !IN_HANDLER.swap(true, Ordering::Relaxed) {
        let mut intr = Ctx::new();
        drop(intr.lock(&IPL_RING));
        let first: &Ordered<Ring, IplLock> = Ordered::declare(&IPL_RINGS.unordered()[0]);
        drop(intr.lock(first));
        HANDLED.fetch_add(1, Ordering::Relaxed);
        IN_HANDLER.store(false, Ordering::Relaxed);
    }
}

/// The lock is recorded as held only once it is taken, and forgotten before
/// it is released: a handler in either window sees it free.
fn handler_around_the_raise_and_the_lower_is_not_reported() {
    let mut ctx = Ctx::new();
    let (held, _) = ctx.lock(&IPL_RING);
    assert_eq!(HANDLED.load(Ordering::Relaxed), 1, "before the raise");
    drop(held);
    assert_eq!(HANDLED.load(Ordering::Relaxed), 2, "after the lower");

    // Both rings together: the handler gets in before the first is taken
    // and after the last is released, never between.
    let (both, _) = ctx.lock_all_with(&IPL_RINGS, |r| (r[0].lock(), r[1].lock()));
    assert_eq!(HANDLED.load(Ordering::Relaxed), 3, "before the raise");
    drop(both);
    assert_eq!(HANDLED.load(Ordering::Relaxed), 4, "after the lower");
}

/// One test, since both hooks are global to the binary.
#[test]
fn a_handler_taking_a_lock_its_cpu_holds_is_reported() {
    witness::set_interrupt_mask(&MASK);
    witness::set_thread_hook(cpu);
    let ring: Ordered<Ring, Mutex<u32>> = Ordered::new(Mutex::new(0));

    // Thread context takes the ring lock (at too low a level, so the
    // interrupt gets in).
    let mut ctx = Ctx::new();
    let (held, _) = ctx.lock(&ring);
    let held_line = line!() - 1;
    assert!(MASKS.load(Ordering::Relaxed) > 0, "the mask was never used");
    assert!(
        ENABLED.load(Ordering::Relaxed),
        "interrupts left masked after the witness's bookkeeping"
    );

    // The interrupt handler on the same CPU: a fresh context, as an
    // interrupt's entry makes, takes the same lock. The witness reports
    // it before the handler would spin on it, naming both acquisitions.
    let err = catch_unwind(AssertUnwindSafe(|| {
        let mut intr = Ctx::new();
        drop(intr.lock(&ring));
    }))
    .expect_err("the handler takes a lock its CPU holds");
    let msg = err.downcast_ref::<String>().expect("a formatted report");
    assert!(msg.starts_with("witness: `Ring`"), "{msg}");
    assert!(msg.contains("already held by this thread"), "{msg}");
    assert!(msg.contains("interrupt handler"), "{msg}");
    let here = file!();
    assert!(
        msg.contains(&format!("{here}:{held_line}:")),
        "names the interrupted code's acquisition: {msg}"
    );
    assert_eq!(
        msg.matches(here).count(),
        2,
        "names both acquisitions: {msg}"
    );
    drop(held);

    // Held at the right level, the handler runs only once the lock is
    // free: nothing is reported.
    {
        let mut intr = Ctx::new();
        let (mut g, _) = intr.lock(&ring);
        **g += 1;
    }

    handler_around_the_raise_and_the_lower_is_not_reported();

    assert_eq!(UNMASKED_LOOKUPS.load(Ordering::Relaxed), 0);
    assert_eq!(
        MASKS.load(Ordering::Relaxed),
        RESTORES.load(Ordering::Relaxed),
        "each mask is restored once"
    );
    assert!(ENABLED.load(Ordering::Relaxed));

    // Cleared, the mask is not called again.
    witness::clear_thread_hook();
    witness::clear_interrupt_mask();
    let before = MASKS.load(Ordering::Relaxed);
    drop(Ctx::new().lock(&ring));
    assert_eq!(MASKS.load(Ordering::Relaxed), before);
}
