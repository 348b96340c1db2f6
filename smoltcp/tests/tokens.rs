//! Tokens dropped unconsumed lose nothing: no buffer, no send-queue slot,
//! no count. And every other way a buffer can leave the device (sent,
//! refused, evicted, a reply with no room, frames taken and never handed
//! out) ends back in the pool. Single-threaded, driven by hand.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![cfg(not(mpsafe_loom))]

use std::sync::atomic::{AtomicUsize, Ordering};

use mpsafe_ifqueue::{Config, Fifo, IfInputQueue, IfQueue, InputConfig, Priority, Priq};
use mpsafe_smoltcp::{Buffers, ConfigError, Device, Doorbell, Notify, VecPool, WakeOnStart};
use smoltcp::phy::{Device as _, RxToken as _, TxToken as _};
use smoltcp::time::Instant;

/// Counts wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl Notify for Count {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

impl Count {
    fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

const NOW: Instant = Instant::ZERO;

fn frame(pool: &VecPool, byte: u8) -> Vec<u8> {
    let mut f = pool.alloc().expect("pool has a buffer");
    pool.frame_mut(&mut f, 64).fill(byte);
    f
}

#[test]
fn dropped_transmit_tokens_give_back_their_buffer_and_slot() {
    let pool = VecPool::new(8, 1514).unwrap();
    let bell = Doorbell::new(Count::default());
    let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(3), |_, _| {}).unwrap();
    txq.set_running(false); // frames stay queued where the test sees them
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();

    for _ in 0..100 {
        let t = dev.transmit(NOW).expect("room and buffers");
        assert_eq!(pool.stats().in_use(), 1, "the token holds a buffer");
        drop(t);
        assert_eq!((dev.reserved(), pool.stats().in_use()), (0, 0));
    }
    let c = txq.counters();
    assert_eq!(
        (c.packets, c.qdrops, txq.len()),
        (0, 0, 0),
        "nothing reached the queue"
    );
    assert_eq!(dev.stats().tx_tokens_dropped, 100);

    // The promised slots are real: three consumed tokens fill the queue of
    // three, and a held token counts against it.
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(1));
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(2));
    let held = dev.transmit(NOW).unwrap();
    drop(held);
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(3));
    assert_eq!(txq.len(), 3);
    assert!(dev.transmit(NOW).is_none());
    assert!(
        bell.tx_wanted(),
        "the doorbell is marked when the queue is full"
    );
    let s = dev.stats();
    assert_eq!(
        (s.tx_frames, s.tx_tokens_dropped, s.tx_queue_full),
        (3, 101, 1)
    );
    assert_eq!(pool.stats().in_use(), 3);

    // The driver makes room: the doorbell wakes the poll loop once.
    let f = txq.dequeue().unwrap();
    assert_eq!(f[0], 1);
    pool.free(f);
    bell.tx_room();
    bell.tx_room();
    assert_eq!(bell.notifier().get(), 1);
    assert!(!bell.tx_wanted());
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(4));

    // Every buffer is in the queue or the pool.
    drop(dev);
    for f in txq.purge() {
        pool.free(f);
    }
    let st = pool.stats();
    assert_eq!((st.in_use(), st.bad_frees), (0, 0));
}

#[test]
fn dropped_receive_pairs_free_the_frame_and_reserve_nothing() {
    let pool = VecPool::new(16, 1514).unwrap();
    let bell = Doorbell::new(Count::default());
    let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(4), |_, _| {}).unwrap();
    txq.set_running(false);
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();

    let mut batch: Vec<_> = (0..5).map(|i| frame(&pool, i)).collect();
    assert_eq!(
        bell.input(&rxq, &mut batch),
        mpsafe_ifqueue::Pressure::Normal
    );
    assert_eq!(bell.notifier().get(), 1, "rx pending woke the poll loop");
    assert_eq!(pool.stats().in_use(), 5);

    // Both tokens dropped: the frame goes back, the reply took nothing.
    let (rx, tx) = dev.receive(NOW).unwrap();
    drop(tx);
    drop(rx);
    assert_eq!((pool.stats().in_use(), dev.reserved()), (4, 0));
    // The receive token dropped, the reply used.
    let (rx, tx) = dev.receive(NOW).unwrap();
    drop(rx);
    tx.consume(60, |f| f.fill(0xaa));
    // The receive token used, the reply dropped.
    let (rx, tx) = dev.receive(NOW).unwrap();
    assert_eq!(rx.consume(|f| f[0]), 2);
    drop(tx);
    let s = dev.stats();
    assert_eq!(
        (
            s.rx_frames,
            s.rx_tokens_dropped,
            s.tx_frames,
            s.tx_tokens_dropped
        ),
        (1, 2, 1, 0)
    );
    assert_eq!((txq.len(), dev.pending()), (1, 2));

    // Frames taken from the input queue and never handed out are freed
    // with the device.
    drop(dev);
    for f in txq.purge() {
        pool.free(f);
    }
    assert_eq!(pool.stats().in_use(), 0);
    assert!(rxq.is_empty());
}

#[test]
fn a_reply_with_no_room_is_dropped_and_counted_not_leaked() {
    let pool = VecPool::new(3, 1514).unwrap();
    let bell = Doorbell::new(Count::default());
    let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(1), |_, _| {}).unwrap();
    txq.set_running(false);
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(9)); // the queue is full
    let mut batch = vec![frame(&pool, 1), frame(&pool, 2)];
    let _ = bell.input(&rxq, &mut batch); // the pool is empty now
    assert!(pool.alloc().is_none());

    let (rx, tx) = dev.receive(NOW).unwrap();
    let n = rx.consume(|f| {
        tx.consume(f.len(), |out| {
            out.copy_from_slice(f);
            out.len()
        })
    });
    assert_eq!(n, 64, "smoltcp still got a buffer to write its reply in");
    let s = dev.stats();
    assert_eq!((s.replies_dropped, s.tx_frames, s.rx_frames), (1, 1, 1));
    assert_eq!(txq.len(), 1);

    // No buffer for a plain transmit either, once the queue has room.
    let mut held = pool.alloc().unwrap(); // the receive freed one: take it
    pool.frame_mut(&mut held, 1);
    let sent = txq.dequeue().unwrap();
    assert!(dev.transmit(NOW).is_none());
    assert_eq!(dev.stats().tx_no_buffer, 1);
    pool.free(sent);
    pool.free(held);
    drop(dev); // one frame was still pending
    assert_eq!(pool.stats().in_use(), 0);
}

#[test]
fn what_the_send_queue_drops_is_freed() {
    let pool = VecPool::new(8, 1514).unwrap();
    let bell = Doorbell::new(Count::default());
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();

    // Another producer fills the queue between the token and its consume:
    // the queue refuses the frame, which goes back to the pool.
    let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(1), |_, _| {}).unwrap();
    txq.set_running(false);
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();
    let t = dev.transmit(NOW).unwrap();
    txq.enqueue(frame(&pool, 7)).unwrap();
    t.consume(60, |f| f.fill(8));
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.tx_refused), (0, 1));
    assert_eq!((txq.counters().qdrops, pool.stats().in_use()), (1, 1));
    drop(dev);
    for f in txq.purge() {
        pool.free(f);
    }

    assert_eq!(pool.stats().in_use(), 0);
}

/// A frame with a priority, from a pool that gives our frames the highest.
#[derive(Debug)]
struct PFrame {
    bytes: Vec<u8>,
    prio: Priority,
}

impl mpsafe_ifqueue::Packet for PFrame {
    fn byte_len(&self) -> usize {
        self.bytes.len()
    }
    fn priority(&self) -> Priority {
        self.prio
    }
}

struct PPool(VecPool);

impl Buffers for PPool {
    type Buffer = PFrame;
    fn buffer_size(&self) -> usize {
        self.0.buffer_size()
    }
    fn alloc(&self) -> Option<PFrame> {
        Some(PFrame {
            bytes: self.0.alloc()?,
            prio: Priority::HIGHEST,
        })
    }
    fn frame_mut<'b>(&'b self, buf: &'b mut PFrame, len: usize) -> &'b mut [u8] {
        self.0.frame_mut(&mut buf.bytes, len)
    }
    fn frame<'b>(&'b self, buf: &'b PFrame) -> &'b [u8] {
        &buf.bytes
    }
    fn free(&self, buf: PFrame) {
        self.0.free(buf.bytes)
    }
}

#[test]
fn what_a_priority_queue_evicts_for_our_frame_is_freed() {
    let pool = PPool(VecPool::new(4, 1514).unwrap());
    let bell = Doorbell::new(Count::default());
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let pq = IfQueue::from_fn(Priq::new(), Config::with_maxlen(1), |_, _| {}).unwrap();
    pq.set_running(false);
    let mut dev = Device::new(&pq, &rxq, &pool, &bell, Default::default()).unwrap();
    let t = dev.transmit(NOW).unwrap();
    // Another producer queues a low-priority frame meanwhile: the queue is
    // full, and ours (highest priority) evicts it.
    let low = PFrame {
        bytes: pool.0.alloc().unwrap(),
        prio: Priority::LOWEST,
    };
    pq.enqueue(low).unwrap();
    t.consume(60, |f| f.fill(1));
    let s = dev.stats();
    assert_eq!((s.tx_frames, s.tx_evicted, s.tx_refused), (1, 1, 0));
    assert_eq!(pq.counters().qdrops, 1);
    assert_eq!(
        pool.0.stats().in_use(),
        1,
        "the victim went back to the pool"
    );
    let ours = pq.dequeue().unwrap();
    assert_eq!((ours.prio, ours.bytes[0]), (Priority::HIGHEST, 1));
    pool.free(ours);
    drop(dev);
    assert_eq!(pool.0.stats().in_use(), 0);
}

#[test]
fn bad_configurations_are_refused() {
    let pool = VecPool::new(1, 1000).unwrap();
    let bell = Doorbell::new(Count::default());
    let txq = IfQueue::from_fn(Fifo::new(), Config::default(), |_, _| {}).unwrap();
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let e = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap_err();
    assert_eq!(
        e,
        ConfigError::MtuAboveBufferSize {
            mtu: 1514,
            buffer_size: 1000
        }
    );
    assert!(e.to_string().contains("does not fit"));
    let e = Device::new(
        &txq,
        &rxq,
        &pool,
        &bell,
        mpsafe_smoltcp::Config::with_mtu(100),
    )
    .unwrap_err();
    assert_eq!(e, ConfigError::MtuTooSmall { mtu: 100 });
    let dev = Device::new(
        &txq,
        &rxq,
        &pool,
        &bell,
        mpsafe_smoltcp::Config::with_mtu(1000),
    )
    .unwrap();
    assert_eq!(dev.capabilities().max_transmission_unit, 1000);
}

#[test]
fn wake_on_start_rings_after_every_pass_including_restart() {
    let bell = Doorbell::new(Count::default());
    let pool = VecPool::new(8, 1514).unwrap();
    let sent = std::sync::Mutex::new(Vec::new());
    let start = |q: &mpsafe_ifqueue::SendQueue<Fifo<Vec<u8>>>,
                 _: &mpsafe_ifqueue::TaskOwner<'_>| {
        let mut ring = sent.lock().unwrap();
        while ring.is_empty() {
            match q.dequeue() {
                Some(f) => ring.push(f),
                None => return,
            }
        }
        // The ring of one is full: stop until completion restarts us.
        let _ = q.set_oactive_unless(|| false);
    };
    let txq = IfQueue::new(
        Fifo::new(),
        Config::with_maxlen(1),
        WakeOnStart::new(start, &bell),
    )
    .unwrap();
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();
    // One to the ring, one in the queue (oactive), then full.
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(1));
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(2));
    assert!(txq.is_oactive());
    assert!(dev.transmit(NOW).is_none());
    assert_eq!(bell.notifier().get(), 0);
    // Tx completion: the ring empties, restart clears oactive, the start
    // pass moves the queued frame and rings the doorbell.
    for f in sent.lock().unwrap().drain(..) {
        pool.free(f);
    }
    assert!(txq.restart_if_oactive());
    assert_eq!(bell.notifier().get(), 1);
    assert!(dev.transmit(NOW).is_some());
    drop(dev);
    for f in sent.lock().unwrap().drain(..).chain(txq.purge()) {
        pool.free(f);
    }
    assert_eq!(pool.stats().in_use(), 0);
}

#[test]
fn a_blocked_device_turns_smoltcps_zero_delay_into_a_sleep() {
    use mpsafe_smoltcp::{NO_BUFFER_RETRY, TxBlocked};
    use smoltcp::time::Duration;
    let zero = Some(Duration::ZERO);
    let pool = VecPool::new(1, 1514).unwrap();
    let bell = Doorbell::new(Count::default());
    let txq = IfQueue::from_fn(Fifo::new(), Config::with_maxlen(4), |_, _| {}).unwrap();
    txq.set_running(false);
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let mut dev = Device::new(&txq, &rxq, &pool, &bell, Default::default()).unwrap();
    assert_eq!((dev.tx_blocked(), dev.poll_sleep(zero)), (None, zero));
    dev.transmit(NOW).unwrap().consume(60, |f| f.fill(1));
    // Room in the queue, no buffer in the pool: look again soon.
    assert!(dev.transmit(NOW).is_none());
    assert_eq!(dev.tx_blocked(), Some(TxBlocked::NoBuffer));
    assert_eq!(dev.poll_sleep(zero), Some(NO_BUFFER_RETRY));
    assert_eq!(
        dev.poll_sleep(None),
        None,
        "no timer, nothing to send: sleep"
    );
    // A buffer back: the next token clears the state.
    pool.free(txq.dequeue().unwrap());
    drop(dev.transmit(NOW).unwrap());
    assert_eq!((dev.tx_blocked(), dev.poll_sleep(zero)), (None, zero));
}

/// A driver whose start routine must not run on the stack's CPU: the
/// device enqueues through `Delegated`, the driver's task thread starts,
/// and the doorbell (rung by `WakeOnStart` on that thread) wakes the
/// sender whenever the queue was full.
#[test]
fn a_delegated_queue_is_started_only_by_the_task_thread() {
    use mpsafe_ifqueue::{DefaultLock, SendQueue, StartTask, TaskOwner};
    use mpsafe_smoltcp::{Delegated, Signal, TxBlocked};
    use std::thread::ThreadId;
    use std::time::{Duration as StdDuration, Instant as StdInstant};

    const FRAMES: usize = 2000;

    struct Wire<'a> {
        pool: &'a VecPool,
        sent: AtomicUsize,
        poll_thread: ThreadId,
        done: Signal,
    }
    impl Start<Fifo<Vec<u8>>, DefaultLock> for Wire<'_> {
        fn start(&self, q: &SendQueue<Fifo<Vec<u8>>>, _: &TaskOwner<'_>) {
            assert_ne!(
                std::thread::current().id(),
                self.poll_thread,
                "started on the stack's CPU"
            );
            while let Some(f) = q.dequeue() {
                self.pool.free(f);
                if self.sent.fetch_add(1, Ordering::Relaxed) + 1 == FRAMES {
                    self.done.notify();
                }
            }
        }
    }
    use mpsafe_ifqueue::Start;

    let pool = VecPool::new(8, 1514).unwrap();
    let bell = Doorbell::new(Signal::new());
    let wire = Wire {
        pool: &pool,
        sent: AtomicUsize::new(0),
        poll_thread: std::thread::current().id(),
        done: Signal::new(),
    };
    let ifq = IfQueue::new(
        Fifo::new(),
        Config::with_maxlen(4),
        WakeOnStart::new(wire, &bell),
    )
    .unwrap();
    let rxq = IfInputQueue::new(InputConfig::default()).unwrap();
    let task: StartTask = StartTask::new();
    let deadline = StdInstant::now() + StdDuration::from_secs(60);
    std::thread::scope(|s| {
        s.spawn(|| task.run(&ifq));
        let txq = Delegated {
            queue: &ifq,
            task: &task,
        };
        let mut dev = Device::new(txq, &rxq, &pool, &bell, Default::default()).unwrap();
        let mut i = 0;
        while i < FRAMES {
            assert!(StdInstant::now() < deadline, "deadline passed at frame {i}");
            if let Some(t) = dev.transmit(NOW) {
                t.consume(60, |f| f.fill(i as u8));
                i += 1;
                continue;
            }
            // Full: sleep until the task thread's start pass rings the
            // doorbell.
            assert_eq!(dev.tx_blocked(), Some(TxBlocked::QueueFull));
            bell.notifier()
                .wait(Some(deadline.saturating_duration_since(StdInstant::now())));
        }
        let wire = ifq.driver().driver();
        while wire.sent.load(Ordering::Relaxed) < FRAMES {
            assert!(StdInstant::now() < deadline, "the task thread stalled");
            wire.done
                .wait(Some(deadline.saturating_duration_since(StdInstant::now())));
        }
        task.stop();
        assert_eq!(dev.stats().tx_frames, FRAMES as u64);
    });
    assert_eq!(pool.stats().in_use(), 0);
}
