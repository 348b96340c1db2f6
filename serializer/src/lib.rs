//! Serializers for MP-safe network drivers.
//!
//! Three ways to make a piece of driver code run on one CPU at a time, each
//! from a kernel that needed it to take a network stack off its big lock:
//!
//! | primitive | origin | a second caller… |
//! | --- | --- | --- |
//! | [`Combiner`] | OpenBSD 2015 atomic `if_start` serialiser | returns at once; the owner runs the work again for it |
//! | [`TaskSerializer`] | OpenBSD ifq serializer | marks its task pending and returns; the owner runs it |
//! | [`Serializer`] | DragonFly LWKT serializer | spins briefly, then sleeps until the holder exits |
//!
//! The first two never block anyone: they suit idempotent "drain what is
//! there" work such as `if_start`. The blocking serializer is a lock, for code
//! that must run *now* and exclusively (`init`, `ioctl`, the interrupt
//! handler), with an interrupt-handler disable bit that makes it a barrier
//! against a running handler ([`Serializer::handler_disable`]). Its lock word
//! is a [`lock_api::RawMutex`] ([`RawSerializer`]), so [`SerializerMutex`] is a
//! mutex that owns its data; with [`Spin`] waits it needs nothing from the
//! platform. Where nothing ever sleeps, [`RawSpinMutex`] ([`SpinMutex`]) is
//! the cheaper spin lock: its exit is one Release store. [`enter_all`] enters an array of serializers in order (a
//! multi-queue driver's "serialize all").
//!
//! All of them are `no_std`. The `std` feature (on by default) adds futex
//! waits ([`Futex`]) and thread identity for deadlock detection.
//!
//! # Locked and unlocked entrypoints
//!
//! Every operation that must run inside a serializer has two forms:
//! `foo(&self)` enters the serializer itself, and `foo_locked(&self, proof)` is
//! for a caller that is already inside and proves it with the guard the
//! serializer hands out ([`Serialized`], or [`TaskOwner`] for the task
//! serializer). The proof cannot be forged, cannot outlive the critical
//! section and cannot move to another thread, so a lock-held entrypoint can
//! never be called without the lock.
//!
//! Data that only the serializer protects sits in an `UnsafeCell`, and the
//! accessor that hands out `&mut` to it takes the proof **by `&mut`**:
//! `fn ring_mut<'g>(&'g self, guard: &'g mut Serialized<'_>) -> &'g mut T`.
//! The returned borrow keeps the guard exclusively borrowed, so a second
//! accessor call (or a second accessor of the same data) cannot overlap it.
//! Taking `&Serialized` instead would be unsound: two calls with one shared
//! guard give two live `&mut T` to the same data. The guard is only lent out
//! as `&mut` ([`Serializer::handler_call`], [`SerializedAll::with`]) where no
//! other proof of the same serializer can exist at the same time.
//!
//! ```
//! use core::cell::UnsafeCell;
//! use mpsafe_serializer::{Serialized, Serializer};
//!
//! struct Driver {
//!     serializer: Serializer,
//!     /// The transmit ring: only touched inside `serializer`.
//!     ring: UnsafeCell<Vec<u32>>,
//!     queue: std::sync::Mutex<Vec<u32>>,
//! }
//!
//! // SAFETY: `ring` is only reached through `ring_mut`, which takes the proof
//! // of being inside `serializer`, so one thread at a time touches it.
//! unsafe impl Sync for Driver {}
//!
//! impl Driver {
//!     /// Public entrypoint: enters the serializer itself.
//!     fn start(&self) {
//!         let mut guard = self.serializer.enter();
//!         self.start_locked(&mut guard);
//!     }
//!
//!     /// Lock-held entrypoint (from `init_locked`, the interrupt handler...):
//!     /// cannot be called without the proof.
//!     fn start_locked(&self, guard: &mut Serialized<'_>) {
//!         let ring = self.ring_mut(guard);
//!         ring.extend(self.queue.lock().unwrap().drain(..));
//!     }
//!
//!     /// The ring, for as long as the caller lends its proof exclusively:
//!     /// the borrow of `guard` is what stops a second `&mut` to the ring.
//!     fn ring_mut<'g>(&'g self, guard: &'g mut Serialized<'_>) -> &'g mut Vec<u32> {
//!         assert!(core::ptr::eq(guard.serializer(), &self.serializer));
//!         // SAFETY: the guard proves this thread is inside `serializer` (and
//!         // is `!Send`), so no other thread touches the ring; it stays
//!         // mutably borrowed as long as the returned reference lives, so no
//!         // other reference to the ring made through `ring_mut` is live.
//!         unsafe { &mut *self.ring.get() }
//!     }
//! }
//!
//! let drv = Driver {
//!     serializer: Serializer::new(),
//!     ring: UnsafeCell::new(Vec::new()),
//!     queue: std::sync::Mutex::new(vec![1, 2]),
//! };
//! drv.start();
//! // An interrupt handler is already inside when it wants to start more.
//! drv.queue.lock().unwrap().push(3);
//! drv.serializer.handler_call(|guard| drv.start_locked(guard));
//! assert_eq!(drv.ring_mut(&mut drv.serializer.enter()), &[1, 2, 3]);
//! ```
//!
//! Two accessor borrows at once do not compile:
//!
//! ```compile_fail,E0499
//! # use core::cell::UnsafeCell;
//! # use mpsafe_serializer::{Serialized, Serializer};
//! # struct Driver { serializer: Serializer, ring: UnsafeCell<Vec<u32>> }
//! # impl Driver {
//! #     fn ring_mut<'g>(&'g self, guard: &'g mut Serialized<'_>) -> &'g mut Vec<u32> {
//! #         assert!(core::ptr::eq(guard.serializer(), &self.serializer));
//! #         // SAFETY: as above.
//! #         unsafe { &mut *self.ring.get() }
//! #     }
//! # }
//! # let drv = Driver { serializer: Serializer::new(), ring: UnsafeCell::new(Vec::new()) };
//! let mut guard = drv.serializer.enter();
//! let a = drv.ring_mut(&mut guard);
//! let b = drv.ring_mut(&mut guard); // error: `guard` is already borrowed
//! a.push(1);
//! b.push(2);
//! ```
//!
//! The non-blocking serializers follow the same convention with their own
//! proof, [`TaskOwner`]: `start()` asks for the start task, and whoever runs
//! it calls `start_locked(owner)`.
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
//! Every algorithm takes its atomics, back-off and futex from one internal
//! shim that switches to [loom](https://docs.rs/loom)'s under
//! `RUSTFLAGS="--cfg mpsafe_loom"` with `--features loom` (an optional
//! dependency, so it never reaches a user's lockfile); the public API is the
//! same under both. The models are in `tests/loom_*.rs`.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod blocking;
mod combiner;
mod order;
mod spin;
mod sync;

#[doc(hidden)]
pub use sync::shared as __shim;
mod task;
mod thread;
mod wait;

pub use blocking::{
    RawSerializer, Serialized, SerializedAll, Serializer, enter_all, try_enter_all,
};
pub use blocking::{SerializerMutex, SerializerMutexGuard};
pub use combiner::Combiner;
pub use order::{OrderedSerializer, OrderedSerializers};
pub use spin::{RawSpinMutex, SpinMutex, SpinMutexGuard};
pub use task::{Task, TaskIndexError, TaskOwner, TaskSerializer};
#[cfg(feature = "std")]
pub use thread::CurrentThreadId;
#[cfg(feature = "std")]
pub use wait::Futex;
pub use wait::{DefaultWait, Spin, Wait};

/// The `lock_api` crate this one implements [`lock_api::RawMutex`] from, so a
/// user needs no direct dependency to name `lock_api::Mutex` or write a raw
/// mutex of their own.
pub use lock_api;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
