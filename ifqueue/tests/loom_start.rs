//! loom models of the serialized start (seed 002).
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-ifqueue --test loom_start`.
//!
//! Under `cfg(mpsafe_loom)` the crate takes its atomics from loom and swaps its queue
//! lock for `loom::sync::Mutex` (see `src/sync.rs`), so these models run the
//! real `IfQueue` code: the queue, the task serializer, the start barrier.
//! The "tx ring" the start routine fills is a `loom::cell::UnsafeCell`, so two
//! start routines at once, or a start routine racing the teardown that frees
//! the ring, is reported by loom as a data race.
//!
//! Weakening checked (weaken, see the model fail, restore):
//! - `SendQueue::set_oactive_unless`'s `fence(SeqCst)` weakened to
//!   `fence(AcqRel)`: `oactive_restart_is_never_lost` fails (the second
//!   packet stays queued with `oactive` set: the lost-restart race).
//! - The start serializer's own orderings belong to `mpsafe-serializer` and
//!   the barrier's to `mpsafe-barrier`, checked by their models. Here, with
//!   `IfQueue::run` given a fresh serializer per call (no serialization),
//!   `two_starts_never_overlap_and_leave_nothing` fails ("Concurrent write
//!   accesses to `UnsafeCell`"); with `IfQueue::barrier` returning without
//!   waiting, `barrier_after_clearing_running_waits_for_a_running_start`
//!   fails the same way.
#![cfg(all(mpsafe_loom, feature = "alloc"))]

use loom::cell::UnsafeCell;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::thread;
use mpsafe_ifqueue::{Config, DefaultLock, Fifo, IfQueue, Packet, SendQueue, Start, TaskOwner};

#[derive(Debug)]
struct Pkt;
impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        60
    }
}

type Q = Fifo<Pkt>;

/// The driver: a tx ring that counts what it was given.
struct Ring {
    /// Packets put on the ring; touched only by the start routine (and by
    /// the teardown after the barrier).
    sent: UnsafeCell<usize>,
    freed: AtomicBool,
}

impl Ring {
    fn new() -> Self {
        Self {
            sent: UnsafeCell::new(0),
            freed: AtomicBool::new(false),
        }
    }
    fn sent(&self) -> usize {
        // SAFETY: called after every thread that could run the start routine
        // has been joined (loom checks the access anyway).
        self.sent.with(|p| unsafe { *p })
    }
}

impl Start<Q, DefaultLock> for Ring {
    fn start(&self, q: &SendQueue<Q, DefaultLock>, _owner: &TaskOwner<'_>) {
        assert!(!self.freed.load(Ordering::Relaxed), "start after teardown");
        while q.dequeue().is_some() {
            // SAFETY: the serializer runs one start routine at a time; if it
            // did not, loom reports this access as a race.
            self.sent.with_mut(|p| unsafe { *p += 1 });
        }
    }
}

fn ifq<S: Start<Q, DefaultLock>>(driver: S) -> Arc<IfQueue<Q, S>> {
    Arc::new(IfQueue::new(Fifo::new(), Config::with_maxlen(4), driver).unwrap())
}

/// Two CPUs enqueue and start: the start routine never runs twice at once,
/// and when both have returned the queue is empty (each enqueue followed by
/// `start()` is seen by some start pass).
#[test]
fn two_starts_never_overlap_and_leave_nothing() {
    loom::model(|| {
        let q = ifq(Ring::new());
        let other = {
            let q = q.clone();
            thread::spawn(move || {
                q.enqueue(Pkt).unwrap();
                q.start();
            })
        };
        q.enqueue(Pkt).unwrap();
        q.start();
        other.join().unwrap();
        assert_eq!(q.lock().len(), 0, "a packet was left in the queue");
        assert_eq!(q.driver().sent(), 2);
    });
}

/// Teardown: clear RUNNING, then the barrier; after it returns no start
/// routine is running or will run, so the ring may be freed.
#[test]
fn barrier_after_clearing_running_waits_for_a_running_start() {
    loom::model(|| {
        let q = ifq(Ring::new());
        let stack = {
            let q = q.clone();
            thread::spawn(move || {
                q.enqueue(Pkt).unwrap();
                q.start();
            })
        };
        q.set_running(false);
        q.barrier().unwrap();
        // "Free the ring": a write loom checks against every start routine.
        q.driver().freed.store(true, Ordering::Relaxed);
        // SAFETY: after the barrier no start routine runs; loom reports a
        // race if one still could.
        q.driver().sent.with_mut(|p| unsafe { *p = usize::MAX });
        stack.join().unwrap();
    });
}

/// A ring with one slot and a completion thread: the start routine marks the
/// queue `oactive` when the slot is taken, completion frees the slot and
/// restarts if `oactive`. The handshake (`set_oactive_unless` /
/// `restart_if_oactive`) never strands a packet.
struct OneSlot {
    busy: AtomicUsize,
    sent: AtomicUsize,
}

impl Start<Q, DefaultLock> for OneSlot {
    fn start(&self, q: &SendQueue<Q, DefaultLock>, _owner: &TaskOwner<'_>) {
        loop {
            // Relaxed: the driver's own ring index; the handshake's fences
            // order it against `oactive`.
            if self.busy.load(Ordering::Relaxed) == 1
                && q.set_oactive_unless(|| self.busy.load(Ordering::Relaxed) == 0)
            {
                break;
            }
            if q.dequeue().is_none() {
                break;
            }
            self.busy.store(1, Ordering::Relaxed);
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn oactive_restart_is_never_lost() {
    loom::model(|| {
        let q = ifq(OneSlot {
            busy: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        });
        q.enqueue(Pkt).unwrap();
        q.enqueue(Pkt).unwrap();
        let completion = {
            let q = q.clone();
            thread::spawn(move || {
                // Wait for the first packet on the ring, "transmit" it, free
                // the slot, and restart if the start routine gave up.
                while q.driver().busy.load(Ordering::Relaxed) == 0 {
                    thread::yield_now();
                }
                q.driver().busy.store(0, Ordering::Relaxed);
                q.restart_if_oactive();
            })
        };
        q.start();
        completion.join().unwrap();
        assert_eq!(q.lock().len(), 0, "restart lost: a packet is stranded");
        assert_eq!(q.driver().sent.load(Ordering::Relaxed), 2);
    });
}
