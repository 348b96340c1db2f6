//! `IfQueue` task sequences, single-threaded, against a model of OpenBSD's
//! `ifq_start` / `ifq_restart` / `ifq_barrier` / bundling and the
//! `IFF_RUNNING` / `oactive` handshake.
//!
//! The driver's start routine moves packets to a fixed-size "hardware" ring
//! and sets `oactive` when it is full; the fuzzer interleaves transmits,
//! plain enqueues, starts, restarts, completions that free ring slots,
//! bundle flushes, barriers, `set_running`, `set_oactive`, `set_maxlen`,
//! outside dequeues and purges. After every operation the queue, the ring,
//! the flags and the number of start-routine runs must match the model.
//!
//! Bundling follows `ifq_start`: the threshold is `min(bundle, maxlen)` with
//! the `maxlen` of the moment of the call. (This target found issue 12's bug
//! 1, a threshold fixed when the queue was built; its reproducer is
//! `corpus/if_queue/regression-frozen-bundle-threshold`.)

#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use mpsafe_ifqueue::{
    Config, DefaultLock, Dropped, Fifo, IfQueue, Packet, SendQueue, Start, Started, TaskOwner,
};

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pkt(u32);

impl Packet for Pkt {
    fn byte_len(&self) -> usize {
        60
    }
}

#[derive(Arbitrary, Debug)]
enum Op {
    Transmit,
    Enqueue,
    Start,
    Restart,
    RestartIfOactive,
    /// Tx completion: the hardware sent up to this many; their slots are free.
    Complete(u8),
    FlushBundle,
    Barrier,
    SetRunning(bool),
    SetOactive,
    SetMaxlen(u8),
    Dequeue,
    Purge,
}

#[derive(Arbitrary, Debug)]
struct Input {
    maxlen: u8,
    bundle: u8,
    ring: u8,
    ops: Vec<Op>,
}

/// The driver: a tx ring of `cap` slots.
struct Driver {
    hw: RefCell<VecDeque<u32>>,
    cap: usize,
    runs: Cell<u32>,
}

impl Start<Fifo<Pkt>, DefaultLock> for Driver {
    fn start(&self, q: &SendQueue<Fifo<Pkt>>, _owner: &TaskOwner<'_>) {
        self.runs.set(self.runs.get() + 1);
        let mut hw = self.hw.borrow_mut();
        loop {
            if hw.len() >= self.cap && q.set_oactive_unless(|| false) {
                break;
            }
            match q.dequeue() {
                Some(p) => hw.push_back(p.0),
                None => break,
            }
        }
    }
}

#[derive(Debug)]
struct Model {
    queue: VecDeque<u32>,
    maxlen: usize,
    bundle: usize,
    running: bool,
    oactive: bool,
    pending: bool,
    hw: VecDeque<u32>,
    cap: usize,
    runs: u32,
    packets: u64,
    qdrops: u64,
}

impl Model {
    fn enqueue(&mut self, id: u32) -> bool {
        if self.queue.len() >= self.maxlen {
            self.qdrops += 1;
            return false;
        }
        self.packets += 1;
        self.queue.push_back(id);
        true
    }

    fn routine(&mut self) {
        self.runs += 1;
        loop {
            if self.hw.len() >= self.cap {
                self.oactive = true;
                break;
            }
            match self.queue.pop_front() {
                Some(id) => self.hw.push_back(id),
                None => break,
            }
        }
    }

    fn start_task(&mut self) {
        if self.running && !self.oactive && !self.queue.is_empty() {
            self.routine();
        }
    }

    fn start(&mut self) -> Started {
        // `ifq_start`: below `min(bundle, maxlen)` the start is deferred, even
        // when that minimum is 1 and the queue is empty. A configured bundle
        // of 1 means no bundling at all (the crate's documented choice: start
        // on every call, which differs only for an empty queue, where the
        // start does nothing).
        if self.bundle > 1 {
            if self.queue.len() < self.bundle.min(self.maxlen) {
                self.pending = true;
                return Started::Deferred;
            }
            self.pending = false;
        }
        self.start_task();
        Started::Ran
    }

    fn restart(&mut self) {
        self.oactive = false;
        if self.running && !self.queue.is_empty() {
            self.routine();
        }
    }
}

fuzz_target!(|input: Input| {
    let bundle = 1 + usize::from(input.bundle % 6);
    let maxlen = 1 + usize::from(input.maxlen % 12);
    let cap = 1 + usize::from(input.ring % 6);
    let driver = Driver {
        hw: RefCell::new(VecDeque::new()),
        cap,
        runs: Cell::new(0),
    };
    let ifq = IfQueue::new(
        Fifo::new(),
        Config::with_maxlen(maxlen).bundle(bundle),
        driver,
    )
    .expect("valid config");
    let mut m = Model {
        queue: VecDeque::new(),
        maxlen,
        bundle,
        running: true,
        oactive: false,
        pending: false,
        hw: VecDeque::new(),
        cap,
        runs: 0,
        packets: 0,
        qdrops: 0,
    };
    let mut next = 0u32;
    for (step, op) in input.ops.iter().enumerate() {
        match *op {
            Op::Transmit => {
                next += 1;
                let got = ifq.transmit(Pkt(next));
                if m.enqueue(next) {
                    assert_eq!(got, Ok(()), "step {step}");
                    m.start();
                } else {
                    assert_eq!(got, Err(Dropped::Refused(Pkt(next))), "step {step}");
                }
            }
            Op::Enqueue => {
                next += 1;
                assert_eq!(
                    ifq.enqueue(Pkt(next)).is_ok(),
                    m.enqueue(next),
                    "step {step}"
                );
            }
            Op::Start => assert_eq!(ifq.start(), m.start(), "step {step}: start"),
            Op::Restart => {
                assert_eq!(ifq.restart(), Started::Ran, "step {step}");
                m.restart();
            }
            Op::RestartIfOactive => {
                let want = m.oactive;
                if want {
                    m.restart();
                }
                assert_eq!(ifq.restart_if_oactive(), want, "step {step}");
            }
            Op::Complete(n) => {
                let n = usize::from(n);
                let mut hw = ifq.driver().hw.borrow_mut();
                for _ in 0..n.min(hw.len().max(m.hw.len())) {
                    assert_eq!(hw.pop_front(), m.hw.pop_front(), "step {step}");
                }
            }
            Op::FlushBundle => {
                let want = m.pending;
                if want {
                    m.pending = false;
                    m.start_task();
                }
                assert_eq!(ifq.flush_bundle(), want, "step {step}: flush_bundle");
            }
            Op::Barrier => {
                assert_eq!(ifq.barrier(), Ok(()), "step {step}");
                m.pending = false;
            }
            Op::SetRunning(on) => {
                ifq.set_running(on);
                m.running = on;
            }
            Op::SetOactive => {
                ifq.set_oactive();
                m.oactive = true;
            }
            Op::SetMaxlen(n) => {
                let n = 1 + usize::from(n % 12);
                assert!(ifq.lock().set_maxlen(n).is_ok(), "step {step}");
                m.maxlen = n;
            }
            Op::Dequeue => {
                assert_eq!(
                    ifq.dequeue().map(|p| p.0),
                    m.queue.pop_front(),
                    "step {step}"
                );
            }
            Op::Purge => {
                let got: Vec<u32> = ifq.purge().map(|p| p.0).collect();
                let want: Vec<u32> = m.queue.drain(..).collect();
                m.qdrops += want.len() as u64;
                assert_eq!(got, want, "step {step}: purge");
            }
        }
        let ctx = || format!("step {step} after {op:?}: model {m:?}");
        assert_eq!(ifq.len(), m.queue.len(), "queue length: {}", ctx());
        assert!(ifq.iter_eq(&m.queue), "queue contents: {}", ctx());
        assert_eq!(*ifq.driver().hw.borrow(), m.hw, "ring: {}", ctx());
        assert_eq!(
            ifq.driver().runs.get(),
            m.runs,
            "start routine runs: {}",
            ctx()
        );
        assert_eq!(ifq.is_oactive(), m.oactive, "oactive: {}", ctx());
        assert_eq!(ifq.is_running(), m.running, "running: {}", ctx());
        assert!(!ifq.is_starting(), "{}", ctx());
        let c = ifq.counters();
        assert_eq!(
            (c.packets, c.qdrops),
            (m.packets, m.qdrops),
            "counters: {}",
            ctx()
        );
    }
});

/// Compares the queue's contents with the model's, under the queue lock.
trait IterEq {
    fn iter_eq(&self, want: &VecDeque<u32>) -> bool;
}

impl IterEq for IfQueue<Fifo<Pkt>, Driver> {
    fn iter_eq(&self, want: &VecDeque<u32>) -> bool {
        self.lock()
            .discipline()
            .iter()
            .map(|p| p.0)
            .eq(want.iter().copied())
    }
}
