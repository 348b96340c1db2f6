//! The network stack above the driver (`if_input`), and a sink for tests
//! and the demo.

use crate::sync::counter::{AtomicU64, Ordering};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

use crossbeam_utils::CachePadded;
use mpsafe_ifqueue::{IfInputQueue, InputConfig, InputConfigError, InputCounters, Pressure};

use crate::buf::{Buffer, BufferPool};

/// The network stack above the driver (`if_input`).
///
/// # Context
///
/// `input` runs in the interrupt handler's context (inside the device's
/// interrupt gate), after the rx mutex is released, with what the mode's
/// receive entry holds:
///
/// | mode | held during `input` |
/// | --- | --- |
/// | [`Mode::BigLock`](super::Mode::BigLock) | the big lock |
/// | [`Mode::RxUnlocked`](super::Mode::RxUnlocked), [`Mode::Mpsafe`](super::Mode::Mpsafe) | nothing of the driver's |
/// | [`Mode::Serialized`](super::Mode::Serialized) | the ifnet serializer (as DragonFly's `if_input`) |
///
/// It may call [`Em::transmit`](super::Em::transmit) (a reply, a bridge) and
/// [`Em::flush_tx`](super::Em::flush_tx) in every mode: in `Serialized`
/// mode the packet is only queued, and the handler starts the send queues
/// when `input` returns. It must not wait for the interrupt it runs in:
/// [`Em::set_mode`](super::Em::set_mode), `init`/`up` and `set_ring_sizes`
/// return [`EmError::InInterrupt`](super::EmError::InInterrupt) there, and
/// `stop`/`down` panic. A stack with real work to do queues the packets
/// (as [`InputQueues`] does) and processes them on a thread of its own.
///
/// `B` is the driver's buffer ([`BufOf`](super::BufOf) of its device).
pub trait Stack<B>: Send + Sync {
    /// Takes every packet in `packets` (leaving it empty) received on
    /// `queue`. Returns `true` if the stack is falling behind, so the driver
    /// backs its receive ring off (`if_rxr_livelocked`). See the trait's
    /// [context](Stack#context) for what is held and what may be called.
    fn input(&self, queue: usize, packets: &mut Vec<B>) -> bool;

    /// Transmit completion ran on `queue`: ring slots were freed and the
    /// send queue restarted if it had stalled (`oactive`), so there may be
    /// room in the send queue again. A stack that waits for room (a poll
    /// loop that found the queue full, such as `mpsafe-smoltcp`'s
    /// `Doorbell::tx_room`) wakes up here. Called once per queue at the end
    /// of every interrupt that found the interface running, in the same
    /// context as [`input`](Stack::input); it must not block. The default
    /// does nothing.
    fn tx_room(&self, queue: usize) {
        let _ = queue;
    }
}

/// A stack that counts what it receives and frees it at once.
#[derive(Debug)]
pub struct Sink<P> {
    pool: P,
    packets: CachePadded<AtomicU64>,
    bytes: AtomicU64,
}

impl<P: BufferPool> Sink<P> {
    /// A sink that frees into `pool`.
    pub fn new(pool: P) -> Self {
        Self {
            pool,
            packets: CachePadded::new(AtomicU64::new(0)),
            bytes: AtomicU64::new(0),
        }
    }

    /// Packets received so far.
    pub fn packets(&self) -> u64 {
        self.packets.load(Ordering::Relaxed)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

impl<P: BufferPool> Stack<P::Buf> for Sink<P> {
    fn input(&self, _queue: usize, packets: &mut Vec<P::Buf>) -> bool {
        let bytes: usize = packets.iter().map(Buffer::len).sum();
        self.packets
            .fetch_add(packets.len() as u64, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.pool.free_all(packets.drain(..));
        false
    }
}

/// A stack with one input queue per receive queue (OpenBSD's `ifiq`): the
/// driver's batch goes into an [`IfInputQueue`], whose [`Pressure`] is the
/// driver's signal to back its receive ring off; the stack's softnet task
/// ([`process`](InputQueues::process)) takes what is queued later, on its
/// own thread. A batch the queue drops (far behind) is freed here and
/// counted in the queue's `qdrops`.
pub struct InputQueues<P: BufferPool> {
    queues: Box<[IfInputQueue<P::Buf>]>,
    pool: P,
    processed: AtomicU64,
    pressured: AtomicU64,
}

impl<P: BufferPool> InputQueues<P> {
    /// `queues` input queues with `config`, freeing into `pool`.
    ///
    /// # Errors
    ///
    /// The queue's [`InputConfigError`] for watermarks out of order.
    pub fn new(pool: P, queues: usize, config: InputConfig) -> Result<Self, InputConfigError> {
        let queues = (0..queues)
            .map(|_| IfInputQueue::new(config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            queues: queues.into_boxed_slice(),
            pool,
            processed: AtomicU64::new(0),
            pressured: AtomicU64::new(0),
        })
    }

    /// The softnet task (`ifiq_process`): takes every queued packet of every
    /// queue, "processes" it (counts and frees it). Returns how many.
    pub fn process(&self) -> usize {
        let mut batch = VecDeque::new();
        for q in self.queues.iter() {
            q.take_into(&mut batch);
        }
        let n = batch.len();
        self.processed.fetch_add(n as u64, Ordering::Relaxed);
        self.pool.free_all(batch);
        n
    }

    /// Packets processed by [`process`](InputQueues::process) so far.
    pub fn processed(&self) -> u64 {
        self.processed.load(Ordering::Relaxed)
    }

    /// Batches answered with high pressure (the driver was told to back
    /// off).
    pub fn pressured(&self) -> u64 {
        self.pressured.load(Ordering::Relaxed)
    }

    /// Counters of input queue `q` (packets offered, bytes, `qdrops`).
    ///
    /// # Panics
    ///
    /// If there is no queue `q`.
    pub fn counters(&self, q: usize) -> InputCounters {
        self.queues[q].counters()
    }
}

impl<P: BufferPool> core::fmt::Debug for InputQueues<P> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("InputQueues")
            .field("queues", &self.queues.len())
            .field("processed", &self.processed())
            .field("pressured", &self.pressured())
            .finish_non_exhaustive()
    }
}

impl<P: BufferPool> Drop for InputQueues<P> {
    /// `ifiq_destroy`: what the stack never took is freed, not leaked.
    fn drop(&mut self) {
        for q in self.queues.iter() {
            self.pool.free_all(q.purge());
        }
    }
}

impl<P: BufferPool> Stack<P::Buf> for InputQueues<P> {
    fn input(&self, queue: usize, packets: &mut Vec<P::Buf>) -> bool {
        let Some(q) = self.queues.get(queue) else {
            self.pool.free_all(packets.drain(..));
            return true;
        };
        let pressure = q.input(packets);
        if matches!(pressure, Pressure::Dropped) {
            // Left with us: the queue counted the drop.
            self.pool.free_all(packets.drain(..));
        }
        if pressure.is_high() {
            self.pressured.fetch_add(1, Ordering::Relaxed);
        }
        pressure.is_high()
    }
}
