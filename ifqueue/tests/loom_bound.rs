//! loom models of the owner bound (`Config::owner_bound`): an owner that
//! reached its bound hands the start to the queue's start task, transmits
//! that find the hand-off post to the task, and the task takes the
//! serializer from the owner that handed off.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-ifqueue --test loom_bound`.
//!
//! The bound is one packet, so the owner hands off as soon as a second
//! start reaches it after its first pass. The hand-off flag (`delegated`)
//! is Relaxed on purpose: it publishes nothing (see `IfQueue::start_now`);
//! what carries a packet to the task is the request's Release/Acquire and
//! the serializer's own chain.
//!
//! Checked by weakening or breaking one thing, seeing a model fail, and
//! restoring it (each time `both_packets_go_out_before_stop` failed: loom
//! reported the waiting thread's endless spin; `both_packets_go_out_by_stop`
//! passed, since `stop`'s last pass sends what was left):
//! - `StartTask::run`'s Acquire `fetch_and` to Relaxed (the task may read
//!   a stale `delegated` and stop retrying, or miss the packet).
//! - `StartTask::request`'s Release `fetch_or` to Relaxed (the same, from
//!   the posting side).
//! - `IfQueue::start_from_task` returning after a handed-back START instead
//!   of retrying while `delegated` is set (the owner that handed off drops
//!   the task's mark and the packet stays queued).
#![cfg(all(mpsafe_loom, feature = "std"))]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
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

fn queue() -> Arc<IfQueue<Q, Ring>> {
    Arc::new(
        IfQueue::new(
            Fifo::new(),
            Config::with_maxlen(4).owner_bound(1),
            Ring {
                sent: AtomicUsize::new(0),
            },
        )
        .unwrap(),
    )
}

/// Two CPUs transmit one packet each; after `stop` and the task's join,
/// both went out once and nothing is queued.
#[test]
fn both_packets_go_out_by_stop() {
    loom::model(|| {
        let q = queue();
        let task = {
            let q = q.clone();
            thread::spawn(move || q.start_task().run(&q))
        };
        let cpu = {
            let q = q.clone();
            thread::spawn(move || q.transmit(Pkt).unwrap())
        };
        q.transmit(Pkt).unwrap();
        cpu.join().unwrap();
        q.start_task().stop();
        task.join().unwrap();
        assert!(q.lock().is_empty(), "a packet was left in the queue");
        assert_eq!(q.driver().sent.load(Ordering::Relaxed), 2);
    });
}

/// Without `stop`: the packets go out on their own (through the owner, or
/// the task it handed to). The waiting thread stops the task only once it
/// has seen both sent; a lost start leaves it spinning, which loom reports.
#[test]
fn both_packets_go_out_before_stop() {
    loom::model(|| {
        let q = queue();
        let task = {
            let q = q.clone();
            thread::spawn(move || q.start_task().run(&q))
        };
        let cpu = {
            let q = q.clone();
            thread::spawn(move || q.transmit(Pkt).unwrap())
        };
        q.transmit(Pkt).unwrap();
        cpu.join().unwrap();
        while q.driver().sent.load(Ordering::Relaxed) < 2 {
            thread::yield_now();
        }
        q.start_task().stop();
        task.join().unwrap();
        assert!(q.lock().is_empty());
    });
}
