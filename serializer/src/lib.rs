//! Serializers for MP-safe network drivers.
//!
//! Three ways to make a piece of driver code run on one CPU at a time, each
//! from a kernel that needed it to take a network stack off its big lock:
//!
//! | primitive | origin | a second caller… |
//! | --- | --- | --- |
//! | [`Combiner`] | OpenBSD 2015 atomic `if_start` serialiser | returns at once; the owner runs the work again for it |
//! | [`TaskSerializer`] | OpenBSD ifq serializer | marks its task pending and returns; the owner runs it |
//!
//! All of them are `no_std`. The `std` feature (on by default) adds futex
//! waits ([`Futex`]) and thread identity for deadlock detection.
//!
//! # Locked and unlocked entrypoints
//!
//! Every operation that must run inside a serializer has two forms:
//! `foo(&self)` enters the serializer itself, and `foo_locked(&self, proof)` is
//! for a caller that is already inside and proves it with the token the
//! serializer hands out ([`TaskOwner`]). The proof cannot be forged, cannot
//! outlive the critical section and cannot move to another thread.
//!
//! ```
//! use core::sync::atomic::{AtomicU32, Ordering};
//! use mpsafe_serializer::{Task, TaskOwner, TaskSerializer};
//!
//! const START: Task = Task::new(0);
//!
//! struct Driver {
//!     serializer: TaskSerializer,
//!     queued: AtomicU32,
//!     sent: AtomicU32,
//! }
//!
//! impl Driver {
//!     /// Public entrypoint: any CPU, any time, never blocks.
//!     fn start(&self) {
//!         self.serializer.add(START, |_, owner| self.start_locked(owner));
//!     }
//!     /// Lock-held entrypoint: only with the proof of being inside.
//!     fn start_locked(&self, _owner: &TaskOwner<'_>) {
//!         let n = self.queued.swap(0, Ordering::Acquire);
//!         self.sent.fetch_add(n, Ordering::Relaxed);
//!     }
//! }
//!
//! let drv = Driver {
//!     serializer: TaskSerializer::new(),
//!     queued: AtomicU32::new(4),
//!     sent: AtomicU32::new(0),
//! };
//! drv.start();
//! assert_eq!(drv.sent.load(Ordering::Relaxed), 4);
//! ```
//!
//! # Model checking
//!
//! Every algorithm takes its atomics from one internal shim that switches to
//! [loom](https://docs.rs/loom)'s under `RUSTFLAGS="--cfg loom"`; the models are
//! in `tests/loom_*.rs`.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

#[cfg(feature = "std")]
extern crate std;

mod combiner;
mod sync;
mod task;
mod wait;

pub use combiner::Combiner;
pub use task::{Task, TaskIndexError, TaskOwner, TaskSerializer};
#[cfg(feature = "std")]
pub use wait::Futex;
pub use wait::{DefaultWait, Spin, Wait};
