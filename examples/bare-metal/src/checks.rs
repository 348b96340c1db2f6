//! Every primitive, once, the way a kernel would use it, each result checked.
//!
//! The kernel is single-CPU here (nothing else runs), so these are not
//! concurrency tests (the crates' loom models are); they show that each
//! primitive links, runs and gives its documented result on bare metal with
//! the kernel's own lock, wait, packet, discipline and ticks.

use core::cell::Cell;
use core::ptr;

use arrayvec::ArrayVec;
use mpsafe_barrier::{Completion, Gate};
use mpsafe_ifqueue::{
    ArrayFifo, ArrayInputQueue, ArrayPriq, Config, Dropped, IfQueue, IfQueues, InputConfig,
    Pressure, Priority, SendQueue, Start, TaskOwner,
};
use mpsafe_rxring::{LockedRxRing, RxRing};
use mpsafe_serializer::{Combiner, Serializer, SerializerMutex, Task, TaskSerializer};

use crate::check;
use crate::kernel::{
    KernelWait, LOCKS, Mbuf, SpinLock, TICKS, WAKES, hardclock, set_ticks, ticks64,
};
use crate::sys::fail;

/// Runs every check; returns only if all hold.
pub(crate) fn run() {
    ticks();
    rxring();
    combiner();
    task_serializer();
    serializer();
    completion();
    gate();
    send_queue();
    if_queue();
    if_queues();
    input_queue();
}

/// The 32-bit tick counter widened across its wrap.
fn ticks() {
    set_ticks(u32::MAX - 1);
    let before = ticks64();
    check!(before == u64::from(u32::MAX - 1));
    hardclock();
    hardclock();
    hardclock();
    let after = ticks64();
    check!(TICKS.load(core::sync::atomic::Ordering::Relaxed) == 1);
    check!(after == before + 3 && after as u32 == 1);
}

/// The rx ring's receive-path cycle: refill, receive, tick-gated growth across
/// the 32-bit wrap, livelock back-off.
static RX: LockedRxRing<SpinLock, u32> = LockedRxRing::new(RxRing::torn_down(), 0);

fn rxring() {
    set_ticks(u32::MAX - 1);
    let boot = ticks64();
    // Interface up: lwm 2, hwm 4.
    check!(RX.init(2, 4, boot) == Ok(0));
    {
        let mut rx = RX.lock();
        let (ring, posted) = rx.split();
        // Refill: the ring grants cwm = lwm = 2 slots; post a buffer to each.
        let mut fill = ring.reserve(8, boot);
        check!(fill.len() == 2);
        while fill.take_one() {
            *posted += 1;
        }
        check!(fill.finish() == 2 && ring.inuse() == 2);
        // The hardware filled both; the driver took them off the ring.
        check!(ring.put(2).is_ok());
        *posted -= 2;

        // Two ticks later the 32-bit counter has wrapped to 0. Widened, it
        // moved forward, and a ring below lwm grows by one...
        hardclock();
        hardclock();
        let now = ticks64();
        check!(now == 1 << 32);
        // The ring's own widening of the raw 32-bit tick agrees.
        let raw = TICKS.load(core::sync::atomic::Ordering::Relaxed);
        check!(ring.widen_ticks(raw) == now);
        let mut naive = ring.clone();
        check!(ring.get(8, now) == 3 && ring.cwm() == 3);
        // ...while the raw 32-bit value looks 2^32 ticks old: no growth.
        check!(naive.get(8, u64::from(raw)) == 2 && naive.cwm() == 2);

        // Livelock: at most one shrink per tick.
        ring.livelocked(now);
        check!(ring.cwm() == 3);
        hardclock();
        ring.livelocked(ticks64());
        check!(ring.cwm() == 2 && ring.get(8, ticks64()) == 0);
        check!(ring.put(3).is_ok() && ring.put(1).is_err());
    }
    // Interface down.
    check!(RX.teardown() == 0 && *RX.lock().data() == 0);
}

/// The combining serializer: a request made while the work runs makes the
/// running caller go round once more.
static COMBINER: Combiner = Combiner::new();

fn combiner() {
    let passes = Cell::new(0u32);
    let ran = COMBINER.run(|| {
        passes.set(passes.get() + 1);
        if passes.get() == 1 {
            // "Another CPU" asks while we run: it returns at once.
            check!(!COMBINER.run(|| fail(line!())));
        }
    });
    check!(ran && passes.get() == 2 && !COMBINER.is_running());
}

/// The task serializer: a task added from inside runs in the same pass.
static TASKS: TaskSerializer = TaskSerializer::new();
const RX_TASK: Task = Task::new(0);
const TX_TASK: Task = Task::new(1);

fn task_serializer() {
    let order = Cell::new(0u32);
    let ran = TASKS.add(RX_TASK, |task, owner: &TaskOwner<'_>| {
        check!(ptr::eq(owner.serializer(), &TASKS));
        order.set(order.get() * 10 + u32::from(task.index()) + 1);
        if task == RX_TASK {
            check!(!TASKS.add(TX_TASK, |_, _| fail(line!())));
        }
    });
    check!(ran && order.get() == 12);
}

/// The blocking serializer with the kernel's wait, its interrupt-handler
/// switch, and its raw lock as a mutex that owns data.
static SERIALIZER: Serializer<KernelWait> = Serializer::new();
static STATS: SerializerMutex<u32, KernelWait> = SerializerMutex::new(0);

fn serializer() {
    {
        let guard = SERIALIZER.enter();
        check!(SERIALIZER.is_held() && ptr::eq(guard.serializer(), &SERIALIZER));
        check!(SERIALIZER.try_enter().is_none());
    }
    check!(!SERIALIZER.is_held());
    check!(SERIALIZER.handler_call(|_| 7) == Some(7));
    SERIALIZER.handler_disable();
    check!(SERIALIZER.handler_call(|_| fail(line!())).is_none());
    SERIALIZER.handler_enable();
    *STATS.lock() += 1;
    check!(*STATS.lock() == 1);
}

/// A completion signalled before anyone waits: the wait returns at once.
static DONE: Completion<KernelWait> = Completion::new();

fn completion() {
    check!(!DONE.is_signalled());
    DONE.signal();
    DONE.wait();
    check!(DONE.is_signalled());
}

/// The interrupt gate, entered with the CPU number the kernel knows.
static IRQ: Gate<KernelWait> = Gate::new();

fn gate() {
    let handled = Cell::new(0u32);
    let handler = || handled.set(handled.get() + 1);
    check!(IRQ.enter_on(1, handler).is_some());
    // Teardown: no handler runs after disable + barrier.
    IRQ.disable();
    IRQ.barrier();
    check!(IRQ.enter_on(1, handler).is_none());
    IRQ.enable();
    check!(IRQ.enter_on(3, handler).is_some() && handled.get() == 2);
}

/// A send queue in a `static`, with the kernel's lock and the allocation-free
/// FIFO: four inline slots.
static SNDQ: SendQueue<ArrayFifo<Mbuf, 4>, SpinLock> = SendQueue::new_const(ArrayFifo::new(), 4);

fn send_queue() {
    let q = &SNDQ;
    let locks = LOCKS.load(core::sync::atomic::Ordering::Relaxed);
    for slot in 0..4 {
        check!(q.enqueue(Mbuf::new(slot)).is_ok());
    }
    // Full: tail drop hands the packet back to be freed.
    check!(matches!(q.enqueue(Mbuf::new(4)), Err(Dropped::Refused(m)) if m.slot == 4));
    check!(LOCKS.load(core::sync::atomic::Ordering::Relaxed) - locks >= 5);
    // The kernel debugger's view of the queue, under its lock.
    {
        let locked = q.lock();
        let fifo = locked.discipline();
        check!(fifo.capacity() == 4 && fifo.iter().map(|m| m.slot).eq(0..4));
    }
    // Look at the head, do not take it.
    match q.deq_begin() {
        Some(head) => {
            check!(head.slot == 0);
            head.rollback();
        }
        None => fail(line!()),
    }
    check!(q.len() == 4);
    let mut burst = ArrayVec::<Mbuf, 2>::new();
    check!(q.dequeue_burst(&mut burst, 8) == 2);
    check!(burst[0].slot == 0 && burst[1].slot == 1);
    {
        let mut locked = q.lock();
        check!(locked.set_maxlen(2).is_ok());
        check!(locked.enqueue(Mbuf::new(5)).is_err());
    }
    let mut purged = 2;
    for m in q.purge() {
        check!(m.slot == purged);
        purged += 1;
    }
    check!(purged == 4 && q.is_empty());
    let c = q.counters();
    check!(c.packets == 4 && c.bytes == 240 && c.qdrops == 4);
}

/// The driver's transmit ring: two hardware slots.
struct TxRing {
    hw: lock_api::Mutex<SpinLock, ArrayVec<Mbuf, 2>>,
}

impl TxRing {
    const fn new() -> Self {
        Self {
            hw: lock_api::Mutex::new(ArrayVec::new_const()),
        }
    }
}

/// The transmit queues' discipline: eight priority levels in eight inline
/// slots.
type Txq = ArrayPriq<Mbuf, 8>;

impl Start<Txq, SpinLock> for TxRing {
    fn start(&self, q: &SendQueue<Txq, SpinLock>, _owner: &TaskOwner<'_>) {
        let mut hw = self.hw.lock();
        loop {
            if hw.is_full() {
                // Stop until tx completion restarts us, unless it freed a
                // slot meanwhile.
                if q.set_oactive_unless(|| !hw.is_full()) {
                    break;
                }
            }
            match q.dequeue() {
                Some(m) => hw.push(m),
                None => break,
            }
        }
    }
}

/// The serialized start, `oactive`, restart, and the start barrier at
/// teardown, on a queue in a `static`.
static TXQ: IfQueue<Txq, TxRing, SpinLock, KernelWait> =
    IfQueue::new_const(ArrayPriq::new(), Config::with_maxlen(8), TxRing::new());

fn if_queue() {
    let ifq = &TXQ;
    for slot in 0..3 {
        check!(ifq.transmit(Mbuf::new(slot)).is_ok());
    }
    check!(ifq.driver().hw.lock().len() == 2 && ifq.len() == 1 && ifq.is_oactive());
    // Tx completion frees the ring, then restarts.
    ifq.driver().hw.lock().clear();
    check!(ifq.restart_if_oactive());
    check!(ifq.driver().hw.lock()[0].slot == 2 && ifq.is_empty() && !ifq.is_oactive());
    // Down: no start after RUNNING is clear and the barrier returned.
    ifq.set_running(false);
    check!(ifq.transmit(Mbuf::new(3)).is_ok() && ifq.len() == 1);
    let wakes = WAKES.load(core::sync::atomic::Ordering::Relaxed);
    check!(ifq.barrier().is_ok());
    // Nobody slept, so nobody was woken.
    check!(WAKES.load(core::sync::atomic::Ordering::Relaxed) == wakes);
    // What down leaves queued, per priority level, before the purge.
    {
        let locked = ifq.lock();
        let priq = locked.discipline();
        check!(priq.capacity() == 8 && priq.level_len(Priority::DEFAULT) == 1);
        check!(priq.iter().map(|m| m.slot).eq([3]));
    }
    check!(ifq.purge().count() == 1 && ifq.counters().packets == 4);
}

/// Two send queues; the flow hash picks one.
static TXQS: IfQueues<Txq, TxRing, 2, SpinLock, KernelWait> = IfQueues::from_queues([
    IfQueue::new_const(ArrayPriq::new(), Config::with_maxlen(8), TxRing::new()),
    IfQueue::new_const(ArrayPriq::new(), Config::with_maxlen(8), TxRing::new()),
]);

fn if_queues() {
    let ifqs = &TXQS;
    let frame = Mbuf {
        flow: Some(3),
        ..Mbuf::new(0)
    };
    check!(ifqs.index_of(&frame) == 1);
    check!(ifqs.transmit(frame).is_ok());
    check!(ifqs.queue(0).counters().packets == 0 && ifqs.queue(1).counters().packets == 1);
    // Down: stop the starts, wait them out, purge every queue.
    ifqs.set_running_all(false);
    check!(ifqs.barrier_all().is_ok());
    check!(ifqs.transmit(Mbuf::new(1)).is_ok() && ifqs.queue(0).len() == 1);
    let purged: usize = ifqs.purge_all().into_iter().map(Iterator::count).sum();
    check!(purged == 1);
    // Up again: running, and every queue asked to start.
    ifqs.set_running_all(true);
    ifqs.start_all();
}

/// A receive ring's input queue in a `static`: pressure above 2 pending
/// packets, drops above 4, in 8 inline slots (4 + a 4-packet batch fit).
static RXQ: ArrayInputQueue<Mbuf, 8, SpinLock> = ArrayInputQueue::new_const(InputConfig::new(2, 4));

fn input_queue() {
    let q = &RXQ;
    let mut batch: ArrayVec<Mbuf, 4> = (0..3).map(Mbuf::new).collect();
    check!(q.input(&mut batch) == Pressure::Normal && batch.is_empty());
    batch.extend([Mbuf::new(3), Mbuf::new(4)]);
    // 3 > 2 were pending: queued, but the driver should back off.
    check!(q.input(&mut batch) == Pressure::High && q.len() == 5);
    batch.push(Mbuf::new(5));
    // 5 > 4 were pending: dropped whole, still the driver's to free.
    check!(q.input(&mut batch) == Pressure::Dropped && batch.len() == 1);
    // The stack takes what its vector holds, oldest first.
    let mut stack = ArrayVec::<Mbuf, 4>::new();
    check!(q.take_into(&mut stack) == 4 && stack[0].slot == 0 && stack[3].slot == 3);
    check!(q.purge().map(|m| m.slot).eq([4]) && q.is_empty());
    let c = q.counters();
    check!(c.packets == 6 && c.bytes == 360 && c.qdrops == 1);
}
