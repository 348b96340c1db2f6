//! The runtime witness: each inversion the types cannot see, provoked through
//! a fresh context (what a callback does), and the report checked for both
//! locks and where each was taken. Debug builds only (the witness does not
//! exist in release).
#![cfg(debug_assertions)]

use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;

use mpsafe_order::{Barrier, Ctx, Ordered};
use mpsafe_serializer::RawSerializer;

type Mutex<T> = lock_api::Mutex<RawSerializer, T>;

mod driver {
    mpsafe_order::lock_order! {
        /// An interrupt gate's level.
        pub Intr,
        /// An rx ring mutex.
        pub Rx,
        /// A per-ring lock, picked by index.
        pub Ring,
    }
}
mod other {
    // A second, unrelated chain: its ranks say nothing about `driver`'s.
    mpsafe_order::lock_order! { pub Cache }
}
use driver::{Intr, Ring, Rx};
use other::Cache;

/// The panic message of `f`, which must panic.
fn report(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the witness should have panicked");
    err.downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap()
}

/// A callback's view: a fresh context (hiding the caller's locks) takes
/// `lock` and runs `then` under it; returns the line it was called from.
#[track_caller]
fn fresh<
    M: mpsafe_order::Level + mpsafe_order::LockAfter<mpsafe_order::Unlocked>,
    T: mpsafe_order::Lock,
>(
    lock: &Ordered<M, T>,
    then: impl FnOnce(),
) -> u32 {
    let line = core::panic::Location::caller().line();
    let mut ctx = Ctx::new();
    let _held = ctx.lock(lock);
    then();
    line
}

fn addr<T>(t: &T) -> String {
    format!("{:#x}", core::ptr::from_ref(t).addr())
}

fn at(line: u32) -> String {
    format!("witness.rs:{line}:")
}

#[test]
fn in_order_is_quiet() {
    let rx: Ordered<Rx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let ring: Ordered<Ring, Mutex<u32>> = Ordered::new(Mutex::new(0));
    for _ in 0..3 {
        let mut ctx = Ctx::new();
        let (_rx, mut ctx) = ctx.lock(&rx);
        let (_ring, _) = ctx.lock(&ring);
    }
    // Released: taking them apart, in any order, is fine.
    fresh(&ring, || {});
    fresh(&rx, || {});
}

/// Two chains the types do not relate, taken both ways round through fresh
/// contexts (each a callback run under its caller's lock): the second is a
/// lock order reversal, reported with where both orders were taken.
#[test]
fn reversal_through_callbacks() {
    let rx: Ordered<Rx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let cache: Ordered<Cache, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let mut ctx = Ctx::new();
    let (rx_first, g) = (line!(), ctx.lock(&rx));
    let cache_second = fresh(&cache, || {}); // establishes Rx → Cache
    drop(g);

    let base = line!();
    let msg = report(|| {
        fresh(&cache, || {
            fresh(&rx, || {});
        });
    });
    let (cache_held, rx_again) = (base + 2, base + 3);
    assert!(msg.contains("lock order reversal"), "{msg}");
    assert!(msg.contains(&format!("`Rx` ({})", addr(&rx))), "{msg}");
    assert!(
        msg.contains(&format!("`Cache` ({})", addr(&cache))),
        "{msg}"
    );
    // Both acquisitions of this inversion...
    assert!(msg.contains(&at(rx_again)), "{msg}");
    assert!(msg.contains(&at(cache_held)), "{msg}");
    // ... and where the other order was established.
    assert!(msg.contains(&at(rx_first)), "{msg}");
    assert!(msg.contains(&at(cache_second)), "{msg}");
}

/// Locks of one level picked by index: the types allow one at a time; a
/// callback that takes a second one under the first is reported (the
/// declared order has no edge inside a level).
#[test]
fn second_lock_of_a_level_picked_by_index() {
    let rings: [Ordered<Ring, Mutex<u32>>; 2] =
        [Ordered::new(Mutex::new(0)), Ordered::new(Mutex::new(0))];
    let base = line!();
    let msg = report(|| {
        fresh(&rings[1], || {
            fresh(&rings[0], || {});
        });
    });
    let (held, taken) = (base + 2, base + 3);
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(
        msg.contains(&format!("`Ring` ({})", addr(&rings[0]))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("`Ring` ({})", addr(&rings[1]))),
        "{msg}"
    );
    assert!(msg.contains(&at(held)), "{msg}");
    assert!(msg.contains(&at(taken)), "{msg}");
}

/// `lock_all_with` takes a level's locks together, in index order; a thread
/// that later takes two of them the other way round is a reversal.
#[test]
fn all_of_a_level_in_index_order_then_reversed() {
    let rings: Ordered<Ring, [Mutex<u32>; 2]> = Ordered::new([Mutex::new(0), Mutex::new(0)]);
    {
        let mut ctx = Ctx::new();
        let (all, _) = ctx.lock_all_with(&rings, |r| (r[0].lock(), r[1].lock()));
        drop(all);
    }
    let [zero, one] = rings.unordered();
    let msg = report(|| {
        fresh(Ordered::<Ring, _>::declare(one), || {
            fresh(Ordered::<Ring, _>::declare(zero), || {});
        });
    });
    assert!(msg.contains(&format!("`Ring` ({})", addr(zero))), "{msg}");
    assert!(msg.contains(&format!("`Ring` ({})", addr(one))), "{msg}");
}

/// A second acquisition of a held lock is reported before it would hang.
#[test]
fn recursion_is_reported_instead_of_deadlocking() {
    let rx: Ordered<Rx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let msg = report(|| {
        fresh(&rx, || {
            fresh(&rx, || {});
        });
    });
    assert!(msg.contains("already held"), "{msg}");
    assert!(msg.contains(&format!("`Rx` ({})", addr(&rx))), "{msg}");
}

struct Handlers(Mutex<()>);
impl Barrier for Handlers {
    type Output = ();
    fn barrier(&self) {
        // Waits for a running handler: it holds this mutex while it runs.
        drop(self.0.lock());
    }
}

/// Blocking while holding: a barrier for handlers that take `Rx`, waited
/// for by a thread holding `Rx` (through a fresh context), is reported
/// before it waits.
#[test]
fn barrier_waited_while_holding_a_lock_its_routine_takes() {
    let gate: Ordered<Intr, Handlers> = Ordered::new(Handlers(Mutex::new(())));
    let rx: Ordered<Rx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    gate.run_inside(|mut ctx| {
        let (_rx, _) = ctx.lock(&rx); // the handler: Intr → Rx
    });
    let msg = report(|| {
        fresh(&rx, || Ctx::new().wait(&gate));
    });
    assert!(msg.contains(&format!("`Intr` ({})", addr(&gate))), "{msg}");
    assert!(msg.contains(&format!("`Rx` ({})", addr(&rx))), "{msg}");
}

/// A barrier waited for from inside its own routine.
#[test]
fn barrier_waited_from_its_own_routine() {
    let gate: Ordered<Intr, Handlers> = Ordered::new(Handlers(Mutex::new(())));
    let msg = report(|| {
        gate.run_inside(|_ctx| Ctx::new().wait(&gate));
    });
    assert!(msg.contains("already held"), "{msg}");
    assert!(msg.contains(&format!("`Intr` ({})", addr(&gate))), "{msg}");
}

/// A dropped lock's history goes with it: another lock at the same address
/// starts clean.
type Pair = (Ordered<Rx, Mutex<u32>>, Ordered<Cache, Mutex<u32>>);

#[test]
fn a_dropped_lock_is_forgotten() {
    for _ in 0..2 {
        let pair: Box<Pair> = Box::new((Ordered::new(Mutex::new(0)), Ordered::new(Mutex::new(0))));
        fresh(&pair.0, || {
            fresh(&pair.1, || {});
        });
    }
    for _ in 0..2 {
        let pair: Box<Pair> = Box::new((Ordered::new(Mutex::new(0)), Ordered::new(Mutex::new(0))));
        fresh(&pair.1, || {
            fresh(&pair.0, || {});
        });
    }
}

mod kernel {
    mpsafe_order::lock_order! {
        /// A serializer the big lock is taken under (and a start routine's
        /// level, whose barrier is waited for under it).
        pub Serial,
        /// A big lock its holder may take again.
        pub Giant (recursive),
        /// A mutex taken under it.
        pub Mtx,
    }
}
use kernel::{Giant, Mtx, Serial};

/// A thread id for `lock_api::ReentrantMutex`: the address of a thread-local.
struct Tid;
// SAFETY: a thread-local's address is unique among live threads and nonzero.
unsafe impl lock_api::GetThreadId for Tid {
    const INIT: Self = Tid;
    fn nonzero_thread_id(&self) -> core::num::NonZeroUsize {
        std::thread_local!(static MARK: u8 = const { 0 });
        MARK.with(|m| core::num::NonZeroUsize::new(core::ptr::from_ref(m).addr()).unwrap())
    }
}

/// A recursive big lock: the thread that holds it takes it again at once.
struct BigLock(lock_api::ReentrantMutex<RawSerializer, Tid, ()>);

impl BigLock {
    fn new() -> Self {
        Self(lock_api::ReentrantMutex::new(()))
    }
}

impl mpsafe_order::Lock for BigLock {
    type Guard<'a> = lock_api::ReentrantMutexGuard<'a, RawSerializer, Tid, ()>;
    fn lock(&self) -> Self::Guard<'_> {
        self.0.lock()
    }
    fn try_lock(&self) -> Option<Self::Guard<'_>> {
        self.0.try_lock()
    }
}

/// A lock of a recursive level, taken again by its holder through fresh
/// contexts (the interrupt holds the big lock and runs a start routine that
/// takes it again), even under a lock taken after it: not reported, since
/// the re-acquisition cannot wait. Each nesting is released by its own
/// guard: once all are dropped, another thread takes it.
#[test]
fn a_recursive_lock_is_taken_again_by_its_holder() {
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let mtx: Ordered<Mtx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    fresh(&giant, || {
        fresh(&giant, || {
            fresh(&mtx, || {
                fresh(&giant, || {});
            });
        });
        // Still held by the outermost guard: taken again, and Mtx after it.
        fresh(&giant, || {});
        fresh(&mtx, || {});
    });
    std::thread::scope(|s| {
        s.spawn(|| {
            fresh(&giant, || {
                fresh(&mtx, || {});
            })
        });
    });
}

/// The outermost acquisition of a recursive lock is still checked: taken
/// under a lock that comes after it in the declared order, it is a lock
/// order violation naming both.
#[test]
fn a_recursive_lock_still_reports_a_declared_inversion() {
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let mtx: Ordered<Mtx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let base = line!();
    let msg = report(|| {
        fresh(&mtx, || {
            fresh(&giant, || {});
        });
    });
    let (held, taken) = (base + 2, base + 3);
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(
        msg.contains(&format!("`Giant` ({})", addr(&giant))),
        "{msg}"
    );
    assert!(msg.contains(&format!("`Mtx` ({})", addr(&mtx))), "{msg}");
    assert!(msg.contains(&at(held)) && msg.contains(&at(taken)), "{msg}");
}

/// Against a lock of another chain, the graph still sees a recursive lock
/// taken both ways round: a lock order reversal naming both.
#[test]
fn a_recursive_lock_still_reports_a_reversal() {
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let cache: Ordered<Cache, Mutex<u32>> = Ordered::new(Mutex::new(0));
    fresh(&giant, || {
        fresh(&cache, || {}); // Giant → Cache
    });
    let msg = report(|| {
        fresh(&cache, || {
            fresh(&giant, || {});
        });
    });
    assert!(msg.contains("lock order reversal"), "{msg}");
    assert!(
        msg.contains(&format!("`Giant` ({})", addr(&giant))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("`Cache` ({})", addr(&cache))),
        "{msg}"
    );
}

/// A big lock released around a sleep (`tsleep` dropping the kernel lock,
/// every nesting of it) is not held while its holder sleeps: a lock taken
/// before it in the declared order, or a barrier at such a level, is quiet
/// there. Taken back, it is held again at every nesting. Before
/// `Ordered::released`, the witness reported the first as a lock order
/// violation under `Giant`.
#[test]
fn a_lock_released_around_a_sleep_is_not_held_while_asleep() {
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let serial: Ordered<Serial, Mutex<u32>> = Ordered::new(Mutex::new(0));
    let barrier: Ordered<Serial, Handlers> = Ordered::new(Handlers(Mutex::new(())));
    fresh(&giant, || {
        fresh(&giant, || {
            // The witness's view only: this test's thread is the only one,
            // so the lock itself need not be released.
            let released = giant.released();
            fresh(&serial, || {});
            Ctx::new().wait(&barrier);
            released.retake();
            // Held again: `Serial` under it is an inversion...
            let msg = report(|| {
                fresh(&serial, || {});
            });
            assert!(msg.contains("lock order violation"), "{msg}");
            assert!(msg.contains("`Giant`") && msg.contains("`Serial`"), "{msg}");
        });
        // ... and so it is under the outer nesting alone.
        let msg = report(|| {
            fresh(&serial, || {});
        });
        assert!(msg.contains("`Giant`") && msg.contains("`Serial`"), "{msg}");
    });
    // Every nesting released: quiet.
    fresh(&serial, || {});
}

/// Taking the big lock back is a blocking acquisition, checked before it
/// can block: a sleeper that took a lock after it while asleep and still
/// holds it is reported at the retake, naming both.
#[test]
fn retaking_a_released_lock_is_checked() {
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let mtx: Ordered<Mtx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    fresh(&giant, || {
        let released = giant.released();
        let mut ctx = Ctx::new();
        let (held, _) = ctx.lock(&mtx);
        let msg = report(|| released.retake());
        assert!(msg.contains("lock order violation"), "{msg}");
        assert!(
            msg.contains(&format!("`Giant` ({})", addr(&giant))),
            "{msg}"
        );
        assert!(msg.contains(&format!("`Mtx` ({})", addr(&mtx))), "{msg}");
        drop(held);
    });
}

/// A routine run inside a barrier whose entry never waits (a start routine
/// run by whichever thread asked for it) is not checked against what that
/// thread holds: a thread holding a lock after the barrier's level runs it
/// quietly. What the routine takes is still checked against everything.
#[test]
fn a_routine_run_under_a_later_lock_is_not_checked_on_entry() {
    let start: Ordered<Serial, Handlers> = Ordered::new(Handlers(Mutex::new(())));
    let giant: Ordered<Giant, BigLock> = Ordered::new(BigLock::new());
    let mtx: Ordered<Mtx, Mutex<u32>> = Ordered::new(Mutex::new(0));
    fresh(&giant, || {
        start.run_inside(|mut ctx| {
            let (_g, _) = ctx.lock(&giant); // nested: quiet
        });
    });
    let msg = report(|| {
        fresh(&mtx, || {
            start.run_inside(|mut ctx| {
                let (_g, _) = ctx.lock(&giant); // under `Mtx`: reported
            });
        });
    });
    assert!(msg.contains("`Giant`") && msg.contains("`Mtx`"), "{msg}");
}
