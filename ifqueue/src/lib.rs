//! Interface queues for MP-safe network drivers: OpenBSD's `ifq` and `ifiq`.
//!
//! The send queue sits between the network stack, which enqueues packets on
//! any CPU, and the driver's start routine, which moves them to the hardware
//! ring. Seed 002 (OpenBSD, 2015) made the start routine run without the big
//! kernel lock by serializing it instead: only one start routine runs per
//! queue in the whole system, a CPU that finds it running returns at once, and
//! the running one loops again for it.
//!
//! | type | OpenBSD | what it is |
//! | --- | --- | --- |
//! | [`SendQueue`] | `ifq_enqueue`, `ifq_deq_begin`/`commit`/`rollback`, `ifq_purge` | a [`Discipline`] behind a lock, counters, `oactive` |
//! | [`Fifo`], [`Priq`] | `priq_ops` | tail-drop FIFO; 8 priority levels evicting the lowest |
//! | [`ArrayFifo`], [`ArrayPriq`] | | the same in `N` inline slots: no allocation, `const` constructors |
//! | [`IfQueue`] | `ifq_start`, `ifq_restart`, `ifq_barrier`, `ifq_serialize` | a send queue plus the serialized start and the start barrier |
//! | [`StartTask`] | `ifq_start` through a taskq | a task thread runs the start routine; transmitting CPUs only enqueue |
//! | [`IfQueues`] | `if_ifqs`, `ifq_idx` | the queues of a multiqueue interface, chosen by flow hash |
//! | [`IfInputQueue`] | `ifiq_input` | the receive hand-off with back-pressure |
//! | [`ArrayInputQueue`] | | the same in `N` inline slots: no allocation, a `const` constructor |
//!
//! # Example
//!
//! A driver whose tx ring holds 4 packets: the start routine fills it and
//! marks the queue `oactive` when full; tx completion empties it and
//! restarts.
//!
//! ```
//! use std::sync::Mutex;
//! use mpsafe_ifqueue::{Config, Fifo, IfQueue, SendQueue, Start, TaskOwner};
//!
//! /// The driver's per-queue state: its tx ring.
//! struct TxRing {
//!     ring: Mutex<Vec<Vec<u8>>>,
//! }
//!
//! impl Start<Fifo<Vec<u8>>, mpsafe_ifqueue::DefaultLock> for TxRing {
//!     fn start(&self, q: &SendQueue<Fifo<Vec<u8>>>, _owner: &TaskOwner<'_>) {
//!         let mut ring = self.ring.lock().unwrap();
//!         loop {
//!             if ring.len() == 4 {
//!                 // Full: stop until completion restarts us (re-checking
//!                 // for room closes the race with completion).
//!                 if q.set_oactive_unless(|| false) {
//!                     break;
//!                 }
//!             }
//!             match q.dequeue() {
//!                 Some(frame) => ring.push(frame),
//!                 None => break,
//!             }
//!         }
//!     }
//! }
//!
//! let ifq = IfQueue::new(
//!     Fifo::new(),
//!     Config::with_maxlen(16),
//!     TxRing { ring: Mutex::new(Vec::new()) },
//! )?;
//! for _ in 0..6 {
//!     ifq.transmit(vec![0u8; 60])?;
//! }
//! assert_eq!((ifq.driver().ring.lock().unwrap().len(), ifq.len()), (4, 2));
//! assert!(ifq.is_oactive());
//!
//! // Tx completion: free the sent frames, then restart.
//! ifq.driver().ring.lock().unwrap().clear();
//! assert!(ifq.restart_if_oactive());
//! assert_eq!((ifq.driver().ring.lock().unwrap().len(), ifq.len()), (2, 0));
//!
//! // Down: clear RUNNING, wait for a running start, then free the ring.
//! ifq.set_running(false);
//! ifq.barrier()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! - `alloc`: [`Fifo`], [`Priq`] and [`IfInputQueue`] (they keep packets in
//!   `VecDeque`s) and [`Packet`] for `Box<[u8]>` and `Vec<u8>`. Without it the
//!   crate still has [`SendQueue`], [`IfQueue`] and [`IfQueues`], the
//!   fixed-capacity [`ArrayFifo`], [`ArrayPriq`] and [`ArrayInputQueue`],
//!   and any [`Discipline`] of your own.
//! - `std` (default, implies `alloc`): futex waits for [`IfQueue::barrier`],
//!   yielding spins for the default lock, and detection of a barrier called
//!   from inside the start routine.
//!
//! # Locking
//!
//! The queue lock is any [`lock_api::RawMutex`]; the default [`DefaultLock`]
//! is the serializer crate's spin-only `RawSpinMutex` (OpenBSD's `ifq_mtx`
//! spins too). Operations take it once each; [`SendQueue::lock`] returns
//! the guard whose methods are the lock-held entrypoints. The start routine
//! gets a [`TaskOwner`] token proving it runs inside the queue's serializer.
//!
//! # Model checking
//!
//! Under `RUSTFLAGS="--cfg mpsafe_loom"` with `--features loom` (an optional
//! dependency, so it never reaches a user's lockfile) the atomics and the
//! queue lock come from [loom](https://docs.rs/loom); the public API is the
//! same under both. `tests/loom_start.rs` checks the
//! serialized start, the barrier and the `oactive` restart handshake;
//! `tests/loom_delegate.rs` the start task, `tests/loom_bound.rs` the owner
//! bound's hand-off to it.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod delegate;
mod discipline;
mod fixed;
mod ifq;
mod input;
mod multi;
mod order;
mod packet;
mod queue;
mod sync;

pub use delegate::StartTask;
pub use discipline::{Accepted, Discipline, Enqueue};
#[cfg(feature = "alloc")]
pub use discipline::{Fifo, Priq, PriqPurged};
pub use fixed::{ArrayFifo, ArrayFifoPurged, ArrayPriq, ArrayPriqPurged};
pub use ifq::{Config, IfQueue, Start, Started};
#[cfg(feature = "alloc")]
pub use input::IfInputQueue;
pub use input::{ArrayInputQueue, InputConfig, InputConfigError, InputCounters, Pressure};
/// Why [`IfQueue::barrier`] could not wait (re-exported from `mpsafe-barrier`).
pub use mpsafe_barrier::BarrierError;
pub use multi::{IfQueues, QueueCountError};
pub use order::{OrderedIfQueue, OrderedStart};
pub use packet::{Packet, Priority, PriorityError};
pub use queue::{ConfigError, Counters, DeqGuard, Dropped, Locked, MAX_MAXLEN, SendQueue};

/// The proof token a start routine receives: it runs inside its queue's
/// serializer (re-exported from `mpsafe-serializer`).
pub use mpsafe_serializer::TaskOwner;

/// How the start barrier waits ([`IfQueue`]'s `W` parameter), re-exported
/// from `mpsafe-serializer` so a kernel names its own strategy without
/// depending on that crate: the trait, the spinning strategy and the
/// default (a futex with `std`, [`Spin`] without).
pub use mpsafe_serializer::{DefaultWait, Spin, Wait};

/// The futex wait strategy (re-exported from `mpsafe-serializer`).
#[cfg(feature = "std")]
pub use mpsafe_serializer::Futex;

/// The crate of [`lock_api::RawMutex`], the trait of the queue lock `R`:
/// write a raw mutex of your own, or name `lock_api::Mutex`, without a direct
/// dependency.
pub use lock_api;

/// The crate whose [`ArrayVec`] [`SendQueue::dequeue_burst`] and
/// [`Discipline::dequeue_into`] fill.
pub use arrayvec;
/// The fixed-capacity vector [`SendQueue::dequeue_burst`] fills.
pub use arrayvec::ArrayVec;

/// The queue lock used when none is named: the serializer crate's
/// spin-only `RawSpinMutex`, with or without `std`.
///
/// The queue lock guards a few nanoseconds of work (a push, a pop, the
/// counters), as OpenBSD's spinning `ifq_mtx` does: spinning is cheaper than
/// sleeping there, and its exit is one Release store. Two CPUs transmitting
/// onto one queue went from parity with the big-lock design to about 1.4x
/// it when this replaced the futex `RawSerializer` (the `ifqueue/2cpu_transmit`
/// bench). A waiter yields its time slice after a short spin (with `std`),
/// so a preempted holder still gets to run. Name a sleeping lock
/// (`RawSerializer<Futex>`) with `with_lock` if the start routine holds the
/// queue lock across long work.
pub type DefaultLock = mpsafe_serializer::RawSpinMutex;

#[cfg(all(test, feature = "std"))]
mod tests {
    use super::*;
    use alloc::vec::Vec;
    use static_assertions::{assert_impl_all, assert_not_impl_any};

    type F = Fifo<Vec<u8>>;
    type StartFn = fn(&SendQueue<F>, &TaskOwner<'_>);

    // Shared between CPUs: the queues are Send + Sync when their packets are.
    assert_impl_all!(SendQueue<F>: Send, Sync);
    assert_impl_all!(IfQueue<F, StartFn>: Send, Sync);
    assert_impl_all!(IfQueues<F, StartFn, 4>: Send, Sync);
    assert_impl_all!(IfInputQueue<Vec<u8>>: Send, Sync);
    // The lock-held proofs stay on the thread that took the lock.
    assert_not_impl_any!(Locked<'static, F, DefaultLock>: Send);
    assert_not_impl_any!(DeqGuard<'static, F, DefaultLock>: Send);
    assert_not_impl_any!(TaskOwner<'static>: Send, Sync);
}
