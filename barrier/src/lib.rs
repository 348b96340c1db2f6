//! Barriers for tearing down an MP-safe network driver.
//!
//! Once a driver's interrupt handler and start routine run without a big lock,
//! on any CPU, bringing the interface down is the hard part: something must
//! prove that no other CPU is still walking the rings before they are freed.
//! This crate has the three pieces that proof is built from:
//!
//! | primitive | origin | guarantees |
//! | --- | --- | --- |
//! | [`Completion`] | OpenBSD `struct cond` (`cond_wait`/`cond_signal`) | a one-shot event that publishes the signaller's writes to every waiter |
//! | [`Gate`] | OpenBSD `intr_barrier`, Linux `synchronize_irq` | [`barrier`](Gate::barrier) returns once every handler invocation that started before it has finished |
//! | [`StartBarrier`] | OpenBSD `ifq_barrier` (2015: `if_start_barrier`) | returns once every start routine that began before it has finished |
//!
//! All are `no_std`. Blocking goes through the [`Wait`] strategy of
//! `mpsafe-serializer` (re-exported here, so this crate alone is enough): a
//! futex with the `std` feature (default), a back-off spin ([`Spin`]) without
//! it, or the kernel's own sleep queue.
//!
//! # The teardown order
//!
//! A barrier is about the *past*: it waits for what already started. A flag is
//! about the *future*: it turns away what starts later. Tearing down needs
//! both, in this order:
//!
//! 1. **Clear `RUNNING`** (or [`Gate::disable`]). New interrupts and new start
//!    routines now leave the rings alone.
//! 2. **Interrupt barrier**, [`Gate::barrier`]: every handler that read
//!    `RUNNING` before it was cleared has returned.
//! 3. **Start barrier**, [`StartBarrier::wait`]: every start routine that read
//!    `RUNNING` before it was cleared has returned, including any a handler
//!    from step 2 queued on its way out.
//! 4. **Free the rings.** Nothing can reach them.
//!
//! ```
//! use core::ptr;
//! use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
//! use mpsafe_barrier::{BarrierError, Gate, StartBarrier};
//! use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};
//!
//! const START: Task = Task::new(0);
//! const BARRIER: Task = Task::new(1);
//!
//! /// Descriptor ring shared by the interrupt handler and the start routine.
//! struct Ring {
//!     produced: AtomicU64,
//! }
//!
//! struct Nic {
//!     running: AtomicBool,
//!     ring: AtomicPtr<Ring>,
//!     intr: Gate,
//!     tx: TaskSerializer,
//!     tx_barrier: StartBarrier,
//! }
//!
//! impl Nic {
//!     fn up(&self) {
//!         let ring = Box::into_raw(Box::new(Ring { produced: AtomicU64::new(0) }));
//!         // Release: a handler or start that sees RUNNING sees the ring.
//!         self.ring.store(ring, Ordering::Release);
//!         self.running.store(true, Ordering::Release);
//!         self.intr.enable();
//!     }
//!
//!     /// The interrupt line calls this, on any CPU, at any time.
//!     fn intr(&self) -> bool {
//!         self.intr
//!             .enter(|| {
//!                 if !self.running.load(Ordering::Acquire) {
//!                     return;
//!                 }
//!                 // SAFETY: RUNNING was set when we looked, inside the gate,
//!                 // so `down` has not passed its Gate::barrier: the ring is
//!                 // live until this closure returns.
//!                 let ring = unsafe { &*self.ring.load(Ordering::Acquire) };
//!                 ring.produced.load(Ordering::Relaxed); // "tx completion"
//!                 // Descriptors were freed: restart transmission (the
//!                 // OpenBSD ifq_restart), from interrupt context.
//!                 self.start();
//!             })
//!             .is_some()
//!     }
//!
//!     fn start(&self) {
//!         self.tx.add(START, |t, o| self.run(t, o));
//!     }
//!
//!     fn run(&self, task: Task, owner: &TaskOwner<'_>) {
//!         match task {
//!             START => self.start_locked(owner),
//!             BARRIER => self.tx_barrier.run_locked(owner),
//!             _ => unreachable!(),
//!         }
//!     }
//!
//!     fn start_locked(&self, _owner: &TaskOwner<'_>) {
//!         if !self.running.load(Ordering::Acquire) {
//!             return;
//!         }
//!         // SAFETY: RUNNING was set when we looked, inside the serializer,
//!         // so `down` has not passed its start barrier.
//!         let ring = unsafe { &*self.ring.load(Ordering::Acquire) };
//!         ring.produced.fetch_add(1, Ordering::Relaxed); // "fill descriptors"
//!     }
//!
//!     fn down(&self) -> Result<(), BarrierError> {
//!         // 1. Turn away new handlers and starts.
//!         self.running.store(false, Ordering::Release);
//!         self.intr.disable(); // and count later interrupts as spurious
//!         // 2. Wait out handlers in flight (which may queue one more start).
//!         self.intr.barrier();
//!         // 3. Wait out starts in flight or queued.
//!         self.tx_barrier.wait(&self.tx, BARRIER, |t, o| self.run(t, o))?;
//!         // 4. Free.
//!         let ring = self.ring.swap(ptr::null_mut(), Ordering::Acquire);
//!         // SAFETY: `up` made it with Box::into_raw; steps 1-3 proved no
//!         // handler or start still holds it, and none will look again.
//!         drop(unsafe { Box::from_raw(ring) });
//!         Ok(())
//!     }
//! }
//!
//! let nic = Nic {
//!     running: AtomicBool::new(false),
//!     ring: AtomicPtr::new(ptr::null_mut()),
//!     intr: Gate::new(),
//!     tx: TaskSerializer::new(),
//!     tx_barrier: StartBarrier::new(),
//! };
//! std::thread::scope(|s| {
//!     for _ in 0..3 {
//!         nic.up();
//!         s.spawn(|| while nic.intr() {}); // interrupt storm until disabled
//!         s.spawn(|| for _ in 0..100 { nic.start() }); // the stack sending
//!         nic.down().unwrap();
//!     }
//! });
//! ```
//!
//! On orderings: *clearing* `RUNNING` could be `Relaxed`, because the gate's
//! and the start barrier's own Release/Acquire pairs order that store before
//! every invocation they do not wait for. *Setting* it in `up` must be a
//! Release store read by an Acquire load, as written: that is what publishes
//! the freshly allocated ring to a handler that sees `RUNNING` (the crate's
//! stress test, run under Miri, caught a `Relaxed` load there as a null ring
//! pointer). [`Gate::enable`] publishes the same way for a driver that turns
//! handlers away with `disable` alone.
//!
//! ## What goes wrong without each step
//!
//! - **Without clearing `RUNNING`**: the barriers wait for what is in flight,
//!   then return; the next interrupt, or the next packet the stack queues,
//!   walks into freed memory a microsecond later. A barrier alone never
//!   protects the future.
//! - **Without the interrupt barrier**: a handler on another CPU that read
//!   `RUNNING` just before it was cleared is still reaping the rx ring when it
//!   is freed. (Seed 000, OpenBSD em(4) 2015, closed this window for rx alone
//!   with `if_rxr_init(&sc->rx_ring, 0, 0)` under the rx mutex, so `rxeof`
//!   finds no filled slots; the gate closes it for the whole handler.)
//! - **Without the start barrier**: a start routine running on another CPU,
//!   from the stack or restarted by the interrupt handler after it freed tx
//!   descriptors, is still filling the tx ring. Seed 002 (OpenBSD `if_start`,
//!   2015) made this step part of the MP-safe driver contract: "clearing
//!   IFF_RUNNING before calling if_start_barrier() on its way down".
//! - **Start barrier before the interrupt barrier**: a handler still in
//!   flight restarts transmission after the start barrier has returned. The
//!   restart path (OpenBSD's `ifq_restart_task`) does not check `RUNNING`,
//!   so that start runs on a ring about to be freed. The interrupt barrier
//!   goes first, so no handler is left to queue work behind the start barrier.
//! - **Waiting from inside what you wait for**: a start barrier requested
//!   from a start routine, or a gate barrier from inside the handler, would
//!   wait for itself. The first is reported as
//!   [`BarrierError::InsideSerializer`] (with `std`); the second is documented
//!   under [`Gate::barrier`].
//!
//! # Model checking
//!
//! Every algorithm takes its atomics from one internal shim that switches to
//! [loom](https://docs.rs/loom)'s under `RUSTFLAGS="--cfg mpsafe_loom"` with
//! `--features loom` (an optional dependency, so it never reaches a user's
//! lockfile); the public API is the same under both. The models,
//! in `tests/loom_*.rs`, run against a modelled futex so a lost wake-up shows
//! up as a deadlock, and note which weakened ordering each one catches.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod completion;
mod gate;
mod order;
mod start;
mod sync;

pub use completion::Completion;
pub use gate::{Gate, GateGuard};
pub use order::OrderedGate;
pub use start::{BarrierError, StartBarrier};

/// How the barriers block (their `W` parameter), re-exported from
/// `mpsafe-serializer` so a kernel names its own strategy without depending
/// on that crate: the trait, the spinning strategy and the default (a futex
/// with `std`, [`Spin`] without).
pub use mpsafe_serializer::{DefaultWait, Spin, Wait};

/// The futex wait strategy (re-exported from `mpsafe-serializer`).
#[cfg(feature = "std")]
pub use mpsafe_serializer::Futex;
