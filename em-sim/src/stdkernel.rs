//! The kernel services of a Linux process ([`StdKernel`]): threads play the
//! interrupt (the backends' own), the start task and the refill timeout;
//! futexes are the sleep queues; a blocking, recursive lock is the big lock.
//!
//! What each stands in for, and what a real kernel does instead, is in the
//! driver's [`Kernel`] trait; the bare-metal kernel in `examples/kernel`
//! implements the same trait with real interrupts.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use mpsafe_barrier::Gate;
use mpsafe_serializer::{Futex, RawSerializer, Wait};

use crate::biglock::RawBigLock;
use crate::kernel::{Deferred, Kernel};

/// The kernel of a Linux process: see the [module](self).
#[derive(Clone, Copy, Debug, Default)]
pub struct StdKernel;

/// One tick of this kernel's clock (`hz` = 1000).
pub const TICK: Duration = Duration::from_millis(1);

std::thread_local! {
    /// The handler this thread runs ([`Kernel::current_handler`]).
    static HANDLER: Cell<usize> = const { Cell::new(0) };
}

impl Kernel for StdKernel {
    /// Blocking (a futex): the simulated CPUs are threads on a shared
    /// machine, where spinning against a preempted holder measures the
    /// scheduler.
    type RxLock = RawSerializer;
    type QueueLock = mpsafe_ifqueue::DefaultLock;
    type Wait = Futex;
    type BigLock = StdBigLock;
    type Deferred = StdDeferred;
    type Error = io::Error;

    /// Milliseconds since the first call in this process.
    fn ticks() -> u64 {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn deferred(
        name: &str,
        delay: u32,
        f: Box<dyn Fn() + Send + Sync>,
    ) -> Result<StdDeferred, io::Error> {
        StdDeferred::spawn(name, TICK * delay, f)
    }

    fn current_handler() -> usize {
        HANDLER.with(Cell::get)
    }

    fn set_current_handler(mark: usize) -> usize {
        HANDLER.with(|c| c.replace(mark))
    }
}

#[derive(Default)]
struct State {
    /// Thread identity of the holder, 0 when free.
    owner: usize,
    depth: u32,
}

/// The process's big lock: recursive and blocking rather than spinning (two
/// simulated CPUs are real threads on a shared machine: spinning against a
/// preempted holder would measure the scheduler).
#[derive(Default)]
pub struct StdBigLock {
    state: Mutex<State>,
    cv: Condvar,
    /// Mirror of `state.owner`, so a nested acquisition by the holder skips
    /// the mutex. Only the holder ever finds its own identity here.
    owner: AtomicUsize,
}

/// This thread's identity: the address of one of its thread-locals,
/// distinct among live threads.
fn thread_identity() -> usize {
    std::thread_local!(static MARK: Cell<u8> = const { Cell::new(0) });
    MARK.with(|m| core::ptr::from_ref(m).addr())
}

impl StdBigLock {
    fn state(&self) -> MutexGuard<'_, State> {
        // Two plain integers: consistent even after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the lock is free, then takes it at `depth`.
    fn acquire(&self, depth: u32) {
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

// SAFETY: `owner` (under the mutex) admits one thread at a time: `acquire`
// waits for 0 and stores the caller; only the holder's `unlock` or
// `release_all` stores 0. `is_held` compares the mirror with the caller's
// identity, which only the caller stores.
unsafe impl RawBigLock for StdBigLock {
    fn lock(&self) {
        if self.owner.load(Ordering::Relaxed) == thread_identity() {
            // Only this thread stores its own identity, so it is the holder.
            self.state().depth += 1;
        } else {
            self.acquire(1);
        }
    }

    unsafe fn unlock(&self) {
        let mut s = self.state();
        s.depth -= 1;
        if s.depth == 0 {
            s.owner = 0;
            self.owner.store(0, Ordering::Relaxed);
            drop(s);
            self.cv.notify_one();
        }
    }

    fn is_held(&self) -> bool {
        // Relaxed: only this thread stores its own identity, and only this
        // thread clears it (release_all, unlock), so the read is exact for
        // the question "is it me".
        self.owner.load(Ordering::Relaxed) == thread_identity()
    }

    unsafe fn release_all(&self) -> u32 {
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
        self.acquire(depth);
    }
}

impl std::fmt::Debug for StdBigLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdBigLock")
            .field("held", &(self.owner.load(Ordering::Relaxed) != 0))
            .finish_non_exhaustive()
    }
}

/// A call is scheduled.
const PENDING: u32 = 1;
/// The thread is to return.
const STOP: u32 = 2;

struct Shared {
    /// `PENDING | STOP`; the thread sleeps on it.
    word: AtomicU32,
    /// Each call runs inside it, so `del_barrier` can wait for a call.
    gate: Gate,
    f: Box<dyn Fn() + Send + Sync>,
}

/// A task or timeout of [`StdKernel`]: a thread that sleeps until an
/// [`add`](Deferred::add), waits the delay, and calls the function.
pub struct StdDeferred {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    id: ThreadId,
}

impl StdDeferred {
    fn spawn(name: &str, delay: Duration, f: Box<dyn Fn() + Send + Sync>) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            word: AtomicU32::new(0),
            gate: Gate::new(),
            f,
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || s.run(delay))?;
        Ok(Self {
            id: thread.thread().id(),
            shared,
            thread: Some(thread),
        })
    }
}

impl Shared {
    fn run(&self, delay: Duration) {
        loop {
            let w = self.word.load(Ordering::Relaxed);
            if w & STOP != 0 {
                return;
            }
            if w & PENDING == 0 {
                Futex::wait(&self.word, w);
                continue;
            }
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            // PENDING is taken inside the gate, so a `del_barrier` either
            // cleared it first or waits for this call. Acquire: pairs with
            // `add`'s Release, so the call sees what was published before
            // the add it serves (a packet enqueued for the start task).
            // Taken before the call: an add during it schedules another.
            self.gate.enter(|| {
                if self.word.fetch_and(!PENDING, Ordering::Acquire) & PENDING != 0 {
                    (self.f)();
                }
            });
        }
    }
}

impl Deferred for StdDeferred {
    fn add(&self) -> bool {
        // Release: see `run`.
        let prev = self.shared.word.fetch_or(PENDING, Ordering::Release);
        let scheduled = prev & PENDING == 0;
        if scheduled {
            Futex::wake_one(&self.shared.word);
        }
        scheduled
    }

    fn del_barrier(&self) {
        let word = &self.shared.word;
        // Relaxed: the gate's barrier orders the clear before every call
        // it does not wait for.
        word.fetch_and(!PENDING, Ordering::Relaxed);
        self.shared.gate.barrier();
        // A call that re-armed itself before the barrier saw it finish.
        word.fetch_and(!PENDING, Ordering::Relaxed);
    }
}

impl Drop for StdDeferred {
    fn drop(&mut self) {
        self.shared.word.fetch_or(STOP, Ordering::Relaxed);
        Futex::wake_all(&self.shared.word);
        // Dropped by its own call (the last owner of the driver let go
        // while the call ran): the thread returns by itself after it.
        if std::thread::current().id() != self.id {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl std::fmt::Debug for StdDeferred {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdDeferred")
            .field(
                "pending",
                &(self.shared.word.load(Ordering::Relaxed) & PENDING != 0),
            )
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mpsafe_order::Ordered;

    use crate::{KernelLock, Path};

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

#[cfg(test)]
mod deferred_tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Barrier, Mutex};

    use mpsafe_em::{Deferred, Kernel};

    use super::{StdDeferred, StdKernel};

    fn deferred(delay: u32, f: impl Fn() + Send + Sync + 'static) -> StdDeferred {
        StdKernel::deferred("test", delay, Box::new(f)).unwrap()
    }

    /// Waits, bounded, until `cond` holds.
    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        for _ in 0..20_000 {
            if cond() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("{what}: not within 20 s");
    }

    /// Adds fold into one scheduled call; each call sees what was written
    /// before the add that scheduled it; an add during a call schedules
    /// the next.
    #[test]
    fn adds_fold_and_publish() {
        let seen = Arc::new(AtomicU32::new(0));
        let written = Arc::new(AtomicU32::new(0));
        let calls = Arc::new(AtomicU32::new(0));
        let (s, w, c) = (Arc::clone(&seen), Arc::clone(&written), Arc::clone(&calls));
        let d = deferred(0, move || {
            // Relaxed: the add's Release and the run's Acquire order it.
            s.store(w.load(Ordering::Relaxed), Ordering::Relaxed);
            c.fetch_add(1, Ordering::Relaxed);
        });
        for i in 1..=100 {
            written.store(i, Ordering::Relaxed);
            d.add();
            wait_for("the call for this add", || {
                seen.load(Ordering::Relaxed) == i
            });
        }
        assert!(calls.load(Ordering::Relaxed) >= 100);
    }

    /// `del_barrier` waits for a call in flight and cancels a scheduled
    /// one: after it returns the function does not run until the next add.
    #[test]
    fn del_barrier_waits_for_the_call_in_flight() {
        let entered = Arc::new(Barrier::new(2));
        let release = Arc::new(Mutex::new(()));
        let done = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU32::new(0));
        let (e, r, dn, c) = (
            Arc::clone(&entered),
            Arc::clone(&release),
            Arc::clone(&done),
            Arc::clone(&calls),
        );
        let d = Arc::new(deferred(0, move || {
            if c.fetch_add(1, Ordering::Relaxed) == 0 {
                e.wait();
                drop(r.lock().unwrap());
                dn.store(true, Ordering::Relaxed);
            }
        }));
        let held = release.lock().unwrap();
        d.add();
        entered.wait(); // the first call runs, blocked on `release`
        d.add(); // scheduled behind it
        let (d2, dn2) = (Arc::clone(&d), Arc::clone(&done));
        let barrier = std::thread::spawn(move || {
            d2.del_barrier();
            // Whether the call in flight had finished when it returned.
            dn2.load(Ordering::Relaxed)
        });
        // The call cannot finish while `held` is held, so a barrier that
        // returns now did not wait; give a broken one time to show it.
        let start = std::time::Instant::now();
        while !barrier.is_finished() && start.elapsed() < std::time::Duration::from_millis(200) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(held);
        assert!(
            barrier.join().unwrap(),
            "del_barrier returned while the call ran"
        );
        let after = calls.load(Ordering::Relaxed);
        assert!(after <= 2, "{after}");
        d.add();
        wait_for("a call after the barrier", || {
            calls.load(Ordering::Relaxed) > after
        });
    }

    /// A timeout that re-arms itself runs again a tick later; dropping it
    /// stops it, and dropping it from its own call does not wait for itself.
    #[test]
    fn rearm_and_drop_from_its_own_call() {
        let calls = Arc::new(AtomicU32::new(0));
        let dropped = Arc::new(AtomicBool::new(false));
        let slot: Arc<Mutex<Option<Arc<StdDeferred>>>> = Arc::new(Mutex::new(None));
        let (c, sl, dr) = (Arc::clone(&calls), Arc::clone(&slot), Arc::clone(&dropped));
        let d = Arc::new(deferred(1, move || {
            let n = c.fetch_add(1, Ordering::Relaxed) + 1;
            let me = sl.lock().unwrap().clone();
            if let Some(me) = me {
                if n < 5 {
                    me.add();
                } else {
                    // The last owner goes away inside the call.
                    *sl.lock().unwrap() = None;
                    drop(me);
                    dr.store(true, Ordering::Relaxed);
                }
            }
        }));
        *slot.lock().unwrap() = Some(Arc::clone(&d));
        d.add();
        drop(d);
        wait_for("five calls, then the drop", || {
            calls.load(Ordering::Relaxed) == 5 && dropped.load(Ordering::Relaxed)
        });
    }
}
