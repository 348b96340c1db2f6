//! loom model of the witness's shared state: one global order graph and the
//! per-CPU stacks, behind a spin lock, reached by every thread that takes an
//! ordered lock.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-order --test loom_witness`.
//! Debug assertions are needed: the witness exists only with them.
//!
//! The witness's state is a loom `UnsafeCell` under the model, so loom
//! reports any two accesses to it that the spin lock does not order.
//!
//! Weakening checked (weaken, see the model fail, restore):
//! - `with_state`'s Acquire `compare_exchange_weak` to Relaxed: fails
//!   (loom: causality violation, concurrent accesses to the state).
//! - `with_state`'s Release `store` to Relaxed: fails the same way.
//! - `set_mask`'s Release `store` of the interrupt mask to Relaxed: fails
//!   (loom: causality violation, the mask reads what its kernel set up
//!   before publishing it, concurrently with that write).
//! - `with_state`'s Acquire `load` of the interrupt mask to Relaxed: fails
//!   the same way.
#![cfg(all(mpsafe_loom, debug_assertions))]

use core::any::Any;
use core::cell::Cell;
use core::panic::AssertUnwindSafe;
use std::panic::{catch_unwind, resume_unwind};

use loom::sync::Arc;
use loom::thread;
use mpsafe_order::witness::InterruptMask;
use mpsafe_order::{Ctx, Level, Lock, LockAfter, Ordered, Unlocked, witness};

/// loom's mutex as an ordered lock (a `lock_api` raw mutex needs a constant
/// initial value, which loom objects cannot have).
struct Mutex(loom::sync::Mutex<()>);

impl Lock for Mutex {
    type Guard<'a> = loom::sync::MutexGuard<'a, ()>;

    fn lock(&self) -> Self::Guard<'_> {
        self.0.lock().unwrap()
    }

    fn try_lock(&self) -> Option<Self::Guard<'_>> {
        self.0.try_lock().ok()
    }
}

fn mutex() -> Mutex {
    Mutex(loom::sync::Mutex::new(()))
}

// Two unrelated chains: a lock of one taken under a lock of the other through
// a fresh context (a callback's view) is checked only by the order graph.
mod first {
    mpsafe_order::lock_order! { pub Softc }
}
mod second {
    mpsafe_order::lock_order! { pub Cache }
}

loom::thread_local! {
    /// The modelled CPU's number, for the witness's hook (a model's threads
    /// share one OS thread, so std thread-locals cannot tell them apart).
    static CPU: Cell<usize> = Cell::new(usize::MAX);
}

fn cpu() -> usize {
    CPU.with(Cell::get)
}

struct Locks {
    softc: Ordered<first::Softc, Mutex>,
    cache: Ordered<second::Cache, Mutex>,
}

/// The witness's state is large (about 100 KiB): room for it on the stack
/// of the thread that builds it.
const STACK: usize = 1 << 20;

/// On CPU `id`, takes `outer`, then `inner` through a fresh context (a
/// callback's view); whether the witness reported taking `inner`.
fn nest<A, B>(id: usize, outer: &Ordered<A, Mutex>, inner: &Ordered<B, Mutex>) -> bool
where
    A: Level + LockAfter<Unlocked>,
    B: Level + LockAfter<Unlocked>,
{
    CPU.with(|c| c.set(id));
    witness::set_thread_hook(cpu);
    let mut ctx = Ctx::new();
    let (_outer, _) = ctx.lock(outer);
    match catch_unwind(AssertUnwindSafe(|| drop(Ctx::new().lock(inner)))) {
        Ok(()) => false,
        Err(panic) if is_report(&*panic) => true,
        // Anything else (loom's own failures among them) fails the model.
        Err(panic) => resume_unwind(panic),
    }
}

/// Whether a panic is the witness's report of a lock order reversal.
fn is_report(panic: &(dyn Any + Send)) -> bool {
    panic
        .downcast_ref::<String>()
        .is_some_and(|msg| msg.starts_with(REPORT))
}

const REPORT: &str = "witness: lock order reversal";

/// Two CPUs take the same two locks in opposite orders. The witness checks
/// and records each acquisition under its lock before blocking, so whichever
/// CPU comes second sees the other's edge and reports the reversal, and
/// never blocks: exactly one report, no deadlock, whatever the interleaving.
#[test]
fn two_cpus_share_one_order_graph() {
    // Quiet the witness's expected reports; anything else is printed.
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_report(info.payload()) {
            default(info);
        }
    }));
    loom::model(|| {
        let locks = Arc::new(Locks {
            softc: Ordered::new(mutex()),
            cache: Ordered::new(mutex()),
        });
        let spawn = |id, locks: Arc<Locks>| {
            thread::Builder::new()
                .stack_size(STACK)
                .spawn(move || {
                    if id == 0 {
                        nest(0, &locks.softc, &locks.cache)
                    } else {
                        nest(1, &locks.cache, &locks.softc)
                    }
                })
                .unwrap()
        };
        let a = spawn(0, locks.clone());
        let b = spawn(1, locks);
        // The last of the two threads drops the locks (the witness forgets
        // them there): this thread's stack is too small for the witness.
        let reports = [a.join().unwrap(), b.join().unwrap()];
        assert_eq!(
            reports.iter().filter(|r| **r).count(),
            1,
            "the reversal must be reported exactly once: {reports:?}"
        );
    });
}

loom::lazy_static! {
    /// What the kernel's interrupt mask reads (a per-CPU area, say), set up
    /// before the mask is handed to the witness.
    static ref MASK_CONFIG: loom::cell::UnsafeCell<usize> = loom::cell::UnsafeCell::new(0);
}

fn mask() -> usize {
    // SAFETY: written once by the thread that publishes the mask, before
    // it does; loom reports this read if that write is not ordered before it.
    MASK_CONFIG.with(|p| unsafe { *p })
}

fn restore(_: usize) {}

static MASK: InterruptMask = InterruptMask { mask, restore };

/// One CPU sets up what its interrupt mask reads and hands the mask to the
/// witness while another CPU takes an ordered lock: a CPU that finds the
/// mask sees what was set up before it was published.
#[test]
fn the_interrupt_mask_is_published_with_what_it_reads() {
    loom::model(|| {
        let boot = thread::Builder::new()
            .stack_size(STACK)
            .spawn(|| {
                MASK_CONFIG.with_mut(|p| {
                    // SAFETY: before the mask is published, nothing reads it.
                    unsafe { *p = 1 }
                });
                witness::set_interrupt_mask(&MASK);
            })
            .unwrap();
        let other = thread::Builder::new()
            .stack_size(STACK)
            .spawn(|| {
                // Built and dropped here: the witness's state may be built
                // on this thread, whose stack has room for it.
                let lock: Ordered<first::Softc, Mutex> = Ordered::new(mutex());
                drop(Ctx::new().lock(&lock));
            })
            .unwrap();
        boot.join().unwrap();
        other.join().unwrap();
    });
}
