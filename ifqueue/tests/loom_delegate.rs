//! loom models of the delegated start (`StartTask`): a task thread runs the
//! start routine for the CPUs that transmit.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-ifqueue --test loom_delegate`.
//!
//! The start task reads the queue length without the lock, so a request
//! that does not carry the enqueue to the task thread lets it find the queue
//! "empty" and skip the packet.
//!
//! Weakening checked (weaken, see the model fail, restore):
//! - `StartTask::run`'s Acquire `fetch_and` to Relaxed: both models fail
//!   (the packet is left queued).
//! - `StartTask::request`'s Release `fetch_or` to Relaxed:
//!   `a_request_is_served_before_stop` fails (the task thread takes the
//!   request, reads a stale empty queue and the packet waits for `stop`:
//!   loom reports the waiting thread's endless spin).
//! - `StartTask::stop`'s Release `fetch_or` to Relaxed:
//!   `stop_alone_carries_an_enqueue` fails (the last pass reads a stale empty
//!   queue and returns, the packet stays queued). The other two models cannot
//!   see it: their enqueuing thread also requests, and `stop`'s
//!   read-modify-write continues that request's release sequence.
#![cfg(all(mpsafe_loom, feature = "std"))]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;
use mpsafe_ifqueue::{
    Config, DefaultLock, Fifo, IfQueue, Packet, SendQueue, Start, StartTask, TaskOwner,
};

#[derive(Debug)]
struct Pkt;
impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        60
    }
}

type Q = Fifo<Pkt>;

/// The driver: counts what the start routine put on the ring.
struct Ring {
    sent: AtomicUsize,
}

impl Start<Q, DefaultLock> for Ring {
    fn start(&self, q: &SendQueue<Q, DefaultLock>, _owner: &TaskOwner<'_>) {
        while q.dequeue().is_some() {
            self.sent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Shared {
    ifq: IfQueue<Q, Ring>,
    task: StartTask,
}

fn shared() -> Arc<Shared> {
    Arc::new(Shared {
        ifq: IfQueue::new(
            Fifo::new(),
            Config::with_maxlen(4),
            Ring {
                sent: AtomicUsize::new(0),
            },
        )
        .unwrap(),
        task: StartTask::new(),
    })
}

/// A CPU transmits through the task thread; after `stop` and the join,
/// nothing is left queued and the packet went out once.
#[test]
fn nothing_is_left_after_stop() {
    loom::model(|| {
        let s = shared();
        let task = {
            let s = s.clone();
            thread::spawn(move || s.task.run(&s.ifq))
        };
        let cpu = {
            let s = s.clone();
            thread::spawn(move || s.task.transmit(&s.ifq, Pkt).unwrap())
        };
        cpu.join().unwrap();
        s.task.stop();
        task.join().unwrap();
        assert!(s.ifq.lock().is_empty(), "a packet was left in the queue");
        assert_eq!(s.ifq.driver().sent.load(Ordering::Relaxed), 1);
    });
}

/// The request alone (no `stop`) gets the packet sent: the waiting thread
/// only stops the task once it has seen the packet go out.
#[test]
fn a_request_is_served_before_stop() {
    loom::model(|| {
        let s = shared();
        let task = {
            let s = s.clone();
            thread::spawn(move || s.task.run(&s.ifq))
        };
        s.task.transmit(&s.ifq, Pkt).unwrap();
        while s.ifq.driver().sent.load(Ordering::Relaxed) == 0 {
            thread::yield_now();
        }
        s.task.stop();
        task.join().unwrap();
        assert!(s.ifq.lock().is_empty());
    });
}

/// A packet enqueued without a request (a driver queueing directly, then
/// taking the interface down) still goes out: `stop` alone carries the
/// enqueue to the task thread's last pass.
#[test]
fn stop_alone_carries_an_enqueue() {
    loom::model(|| {
        let s = shared();
        let task = {
            let s = s.clone();
            thread::spawn(move || s.task.run(&s.ifq))
        };
        // `SendQueue::enqueue`, not `StartTask::transmit`: no request, so no
        // release sequence for `stop` to continue.
        s.ifq.enqueue(Pkt).unwrap();
        s.task.stop();
        task.join().unwrap();
        assert!(
            s.ifq.lock().is_empty(),
            "the last pass did not see a packet enqueued before stop"
        );
        assert_eq!(s.ifq.driver().sent.load(Ordering::Relaxed), 1);
    });
}
