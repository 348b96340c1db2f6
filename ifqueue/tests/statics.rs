//! Queues in `static`s: the const constructors, used as a kernel would (no
//! lazy initialization, no allocation before first use).
#![cfg(all(not(mpsafe_loom), feature = "std"))]

use mpsafe_ifqueue::{Config, Fifo, IfQueue, IfQueues, Packet, Priq, SendQueue, TaskOwner};

#[derive(Debug, PartialEq, Eq)]
struct Frame(u32);

impl Packet for Frame {
    fn byte_len(&self) -> usize {
        64
    }
    fn flow_hash(&self) -> Option<u32> {
        Some(self.0)
    }
}

type StartFn = fn(&SendQueue<Fifo<Frame>>, &TaskOwner<'_>);

fn drain(q: &SendQueue<Fifo<Frame>>, _: &TaskOwner<'_>) {
    while q.dequeue().is_some() {}
}

static PRIQ: SendQueue<Priq<Frame>> = SendQueue::new_const(Priq::new(), 2);
static IFQ: IfQueue<Fifo<Frame>, StartFn> =
    IfQueue::new_const(Fifo::new(), Config::with_maxlen(8), drain);
static IFQS: IfQueues<Fifo<Frame>, StartFn, 2> = IfQueues::from_queues([
    IfQueue::new_const(Fifo::new(), Config::with_maxlen(4), drain),
    IfQueue::new_const(Fifo::new(), Config::with_maxlen(4).bundle(2), drain),
]);

#[test]
fn static_send_queue_keeps_its_maxlen() {
    assert_eq!(PRIQ.maxlen(), 2);
    PRIQ.enqueue(Frame(1)).unwrap();
    PRIQ.enqueue(Frame(2)).unwrap();
    assert!(PRIQ.enqueue(Frame(3)).is_err());
    assert_eq!(PRIQ.counters().qdrops, 1);
    assert_eq!(PRIQ.purge().count(), 2);
}

#[test]
fn static_ifqueue_starts() {
    assert!(IFQ.is_running());
    IFQ.transmit(Frame(7)).unwrap();
    assert!(IFQ.is_empty());
    assert_eq!(IFQ.counters().packets, 1);
    IFQ.barrier().unwrap();
}

#[test]
fn static_ifqueues_keep_each_config() {
    IFQS.transmit(Frame(0)).unwrap();
    assert!(IFQS.queue(0).is_empty());
    // Queue 1 bundles 2: one frame waits for the flush.
    IFQS.transmit(Frame(1)).unwrap();
    assert_eq!(IFQS.queue(1).len(), 1);
    assert!(IFQS.queue(1).flush_bundle());
    assert!(IFQS.queue(1).is_empty());
}

#[test]
#[should_panic(expected = "maxlen is 0")]
fn const_constructor_panics_at_run_time_too() {
    let _ = SendQueue::<Fifo<Frame>>::new_const(Fifo::new(), 0);
}
