//! The witness through a kernel's CPU-id hook instead of thread-locals (its
//! own test binary: the hook is global). Debug builds only.
#![cfg(debug_assertions)]

use core::panic::AssertUnwindSafe;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::panic::catch_unwind;

use mpsafe_order::{Ctx, Ordered, witness};

type Mutex<T> = lock_api::Mutex<mpsafe_serializer::RawSerializer, T>;

mpsafe_order::lock_order! {
    /// The only level here.
    pub Softc,
}

static CPU: AtomicUsize = AtomicUsize::new(0);

fn cpu() -> usize {
    CPU.load(Ordering::Relaxed)
}

#[test]
fn stacks_are_kept_per_hook_id() {
    witness::set_thread_hook(cpu);
    let a: Ordered<Softc, Mutex<()>> = Ordered::new(Mutex::new(()));
    let b: Ordered<Softc, Mutex<()>> = Ordered::new(Mutex::new(()));

    // "CPU 5" holds `a`; "CPU 6" holds nothing, so it may take `b`.
    CPU.store(5, Ordering::Relaxed);
    let mut ctx = Ctx::new();
    let (held, _) = ctx.lock(&a);
    CPU.store(6, Ordering::Relaxed);
    let mut other = Ctx::new();
    drop(other.lock(&b));

    // Back on CPU 5, taking `b` under `a` is two locks of one level.
    CPU.store(5, Ordering::Relaxed);
    let err = catch_unwind(AssertUnwindSafe(|| {
        let mut fresh = Ctx::new();
        drop(fresh.lock(&b));
    }))
    .expect_err("CPU 5 holds `a`");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("`Softc`"), "{msg}");
    drop(held);

    // An id out of range is not recorded (and so not reported).
    CPU.store(witness::MAX_THREADS, Ordering::Relaxed);
    let mut ctx = Ctx::new();
    let (_a, _) = ctx.lock(&a);
    let mut fresh = Ctx::new();
    drop(fresh.lock(&b));
    witness::clear_thread_hook();
}
