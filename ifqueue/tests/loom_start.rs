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
//! Weakening checked (weaken, see the model fail, restore; `.ci/mutants
//! ifqueue` does it for every ordering):
//! - `set_running`'s Release or `is_running`'s Acquire to Relaxed:
//!   `set_running_publishes_the_ring_to_start` fails (causality violation on
//!   the ring the init path wrote before RUNNING).
//! - the restart task not clearing `oactive`:
//!   `two_completions_restart_and_later_packets_go_out` fails (the packet
//!   sent after the ring filled up is stranded behind `oactive`).
//! - the bundling hand-off (`start`'s Release swap of the pending flag,
//!   `flush_bundle`'s Acquire swap) to Relaxed, or a deferral that does not
//!   set the flag: `bundled_starts_are_never_lost` fails. (With the original
//!   Relaxed store/swap it failed too: the flusher's start task read a stale
//!   queue length, found the queue empty and dropped the deferred start.)
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

/// The init path: the driver writes its ring state, then `set_running(true)`
/// ("RUNNING last: a handler or start that sees it sees the rings"), while
/// another CPU's `start()` runs the start routine, which reads that state if
/// it finds the queue running. Weakening `set_running`'s Release or
/// `is_running`'s Acquire to Relaxed fails this model (causality violation
/// on the ring cell).
#[test]
fn set_running_publishes_the_ring_to_start() {
    struct Init {
        /// The ring's state, set up by init before RUNNING.
        ring: UnsafeCell<usize>,
        sent: AtomicUsize,
    }
    impl Start<Q, DefaultLock> for Init {
        fn start(&self, q: &SendQueue<Q, DefaultLock>, _owner: &TaskOwner<'_>) {
            // SAFETY: (model) init wrote the ring before set_running(true),
            // and the start routine runs only once it sees RUNNING.
            let size = self.ring.with(|p| unsafe { *p });
            assert_eq!(size, 8, "the start routine saw the ring before init");
            while q.dequeue().is_some() {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    loom::model(|| {
        let q = ifq(Init {
            ring: UnsafeCell::new(0),
            sent: AtomicUsize::new(0),
        });
        q.set_running(false);
        let stack = {
            let q = q.clone();
            thread::spawn(move || {
                q.enqueue(Pkt).unwrap();
                q.start();
            })
        };
        // init: set up the ring, then RUNNING last.
        // SAFETY: (model) no start routine reads the ring before RUNNING.
        q.driver().ring.with_mut(|p| unsafe { *p = 8 });
        q.set_running(true);
        stack.join().unwrap();
        // The packet went out, or waits for the next start.
        q.start();
        assert_eq!(q.driver().sent.load(Ordering::Relaxed), 1);
    });
}

/// Two ring slots, two completions and a packet sent after the ring filled
/// up: the start routine fills both slots and sets `oactive` (a third packet
/// waits); two completion CPUs each free a slot and `restart_if_oactive`,
/// while the stack transmits a fourth packet. Every packet goes out. A
/// restart must clear `oactive`, since a start skips an oactive queue: the
/// "restart does not clear oactive" mutant strands the fourth packet.
#[test]
fn two_completions_restart_and_later_packets_go_out() {
    struct TwoSlots {
        busy: AtomicUsize,
        sent: AtomicUsize,
    }
    impl Start<Q, DefaultLock> for TwoSlots {
        fn start(&self, q: &SendQueue<Q, DefaultLock>, _owner: &TaskOwner<'_>) {
            loop {
                // As em_start: no room on the ring, mark oactive and stop
                // (unless a completion freed a slot meanwhile).
                if self.busy.load(Ordering::Relaxed) == 2
                    && q.set_oactive_unless(|| self.busy.load(Ordering::Relaxed) < 2)
                {
                    break;
                }
                if q.dequeue().is_none() {
                    break;
                }
                self.busy.fetch_add(1, Ordering::Relaxed);
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    loom::model(|| {
        let q = ifq(TwoSlots {
            busy: AtomicUsize::new(0),
            sent: AtomicUsize::new(0),
        });
        for _ in 0..3 {
            q.enqueue(Pkt).unwrap();
        }
        // Fills both slots, leaves the third packet, sets oactive.
        q.start();
        assert!(q.is_oactive());
        let completions: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    // One slot's packet is transmitted: free it, restart.
                    q.driver().busy.fetch_sub(1, Ordering::Relaxed);
                    q.restart_if_oactive();
                })
            })
            .collect();
        q.transmit(Pkt).unwrap();
        for c in completions {
            c.join().unwrap();
        }
        assert_eq!(q.lock().len(), 0, "a packet is stranded");
        assert_eq!(q.driver().sent.load(Ordering::Relaxed), 4);
    });
}

/// Bundling (`Config::bundle`): a start below the threshold only marks a
/// start pending, and `flush_bundle` (the softnet task) runs it. With two
/// CPUs transmitting below the threshold (3) and a third flushing, no packet
/// is ever left queued without a pending start for the next flush: when all
/// have returned, the queue is empty or `flush_bundle` finds a start
/// pending, and after it the queue is empty. A deferral that does not mark
/// the start pending fails it.
#[test]
fn bundled_starts_are_never_lost() {
    loom::model(|| {
        let q = Arc::new(
            IfQueue::new(Fifo::new(), Config::with_maxlen(4).bundle(3), Ring::new()).unwrap(),
        );
        let cpus: Vec<_> = (0..2)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    q.enqueue(Pkt).unwrap();
                    q.start();
                })
            })
            .collect();
        q.flush_bundle();
        for cpu in cpus {
            cpu.join().unwrap();
        }
        if !q.is_empty() {
            assert!(q.flush_bundle(), "a deferred start was lost");
        }
        assert_eq!(q.lock().len(), 0);
        assert_eq!(q.driver().sent(), 2);
    });
}
