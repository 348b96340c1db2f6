//! The witness on interface queues: what the levels cannot see because a
//! start routine made a fresh context (as a callback into other driver code
//! does). Debug builds only.
#![cfg(all(debug_assertions, feature = "std"))]

use core::panic::AssertUnwindSafe;
use std::panic::catch_unwind;

use mpsafe_ifqueue::{Config, Fifo, IfQueue, OrderedIfQueue, OrderedStart, SendQueue, TaskOwner};
use mpsafe_order::{Ctx, Ordered};

mpsafe_order::lock_order! { IfqStart, IfqMutex }

type Queue = SendQueue<Fifo<Vec<u8>>>;
type Routine =
    Box<dyn Fn(&Ordered<IfqMutex, Queue>, &TaskOwner<'_>, Ctx<'_, IfqStart>) + Send + Sync>;
type Ifq = Ordered<IfqStart, IfQueue<Fifo<Vec<u8>>, OrderedStart<IfqStart, IfqMutex, Routine>>>;

fn report(f: impl FnOnce()) -> String {
    let err = catch_unwind(AssertUnwindSafe(f)).expect_err("the witness should have panicked");
    err.downcast_ref::<String>().cloned().unwrap_or_default()
}

fn addr<T>(t: &T) -> String {
    format!("{:#x}", core::ptr::from_ref(t).addr())
}

/// Two queues whose start routines each wait for the other's barrier
/// through a fresh context: the first wait, from inside a routine at
/// `IfqStart`, on a barrier at `IfqStart`, is reported, naming both queues.
#[test]
fn start_routines_waiting_on_each_others_barriers() {
    use std::sync::OnceLock;
    type Q = Ifq;
    static A: OnceLock<Q> = OnceLock::new();
    static B: OnceLock<Q> = OnceLock::new();
    let make = |other: &'static OnceLock<Q>| -> Q {
        Ordered::new(
            IfQueue::new(
                Fifo::new(),
                Config::default(),
                OrderedStart::new(Box::new(
                    move |q: &Ordered<IfqMutex, Queue>,
                          _: &TaskOwner<'_>,
                          _ctx: Ctx<'_, IfqStart>| {
                        {
                            let mut fresh = Ctx::new();
                            let (mut q, _) = fresh.lock(q);
                            while q.dequeue().is_some() {}
                        }
                        // A callback into code that does not know it runs inside
                        // a start routine: its context is fresh.
                        let _ = other.get().unwrap().barrier(&mut Ctx::new());
                    },
                ) as Routine),
            )
            .unwrap(),
        )
    };
    let _ = A.set(make(&B));
    let _ = B.set(make(&A));
    let (a, b) = (A.get().unwrap(), B.get().unwrap());

    let msg = report(|| {
        let _ = a.transmit(&mut Ctx::new(), vec![0; 60]);
    });
    assert!(msg.contains("lock order violation"), "{msg}");
    assert!(
        msg.contains(&format!("`IfqStart` ({})", addr(a.unordered().queue()))),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("`IfqStart` ({})", addr(b.unordered().queue()))),
        "{msg}"
    );
}

/// A start barrier waited for while holding the queue mutex (taken through
/// a fresh context, so the types cannot see it): reported before waiting.
#[test]
fn start_barrier_while_holding_the_queue_mutex() {
    let routine: Routine = Box::new(|_, _, _| {});
    let ifq: Ifq = Ordered::new(
        IfQueue::new(Fifo::new(), Config::default(), OrderedStart::new(routine)).unwrap(),
    );
    let msg = report(|| {
        let mut held = Ctx::new();
        let (_q, _) = ifq.lock(&mut held);
        let _ = ifq.barrier(&mut Ctx::new());
    });
    assert!(msg.contains("`IfqStart`"), "{msg}");
    assert!(
        msg.contains(&format!("`IfqMutex` ({})", addr(ifq.unordered().queue()))),
        "{msg}"
    );
}
