//! Lock order checked at compile time, and a WITNESS-style runtime witness
//! for what the types cannot see.
//!
//! Seed 003 (NetBSD, 2005) asks for "a locking hierarchy (or locking order
//! rule), which guarantees the kernel remains still deadlock-free". The BSDs
//! check it at run time (WITNESS, LOCKDEBUG), Linux with lockdep; Fuchsia's
//! netstack3 checks it at compile time inside its own stack. This crate is
//! the compile-time form as a reusable piece, in netstack3's style:
//!
//! - **Levels are types.** [`lock_order!`] declares uninhabited level types
//!   and the order between them once: each level may be taken while any
//!   earlier one is held ([`LockBefore`]/[`LockAfter`]), never the other way.
//! - **Locks carry their level.** [`Ordered<L, T>`](Ordered) declares the lock
//!   `T` (a [`lock_api::Mutex`], a serializer, an rx ring lock, a send queue:
//!   anything implementing [`Lock`]) at level `L`; it adds no field.
//! - **A context token is presented to lock.** [`Ctx<'_, L>`](Ctx) says the
//!   code runs at level `L`; [`Ctx::lock`] takes a lock at level `M` only if
//!   `L: LockBefore<M>`, and hands back the guard with the context re-typed to
//!   `M` while the guard lives. Blocking waits ([`Ctx::wait`]) need a context
//!   that holds nothing at or after the barrier's level.
//!
//! Levels and contexts are zero-sized: an ordered acquisition compiles to the
//! plain one (the `order` group of `mpsafe-benches` measures it beside the
//! plain form). The plain API stays: [`Ordered::unordered`] reaches it.
//!
//! The [`witness`] records, in debug builds only, every acquisition and wait
//! made through a context, and panics at the first lock order reversal,
//! recursion or blocking wait that could deadlock, naming both locks and
//! where each was taken: it catches locks picked by index, barriers across
//! queues and locks taken through callbacks, which the types cannot order.
//!
//! # Examples
//!
//! ```
//! use mpsafe_order::{Ctx, LockBefore, Ordered};
//! use mpsafe_serializer::RawSerializer;
//!
//! mpsafe_order::lock_order! {
//!     /// The driver's softc lock.
//!     pub Softc,
//!     /// The rx ring accounting.
//!     pub Rx,
//! }
//!
//! type Mutex<T> = lock_api::Mutex<RawSerializer, T>;
//!
//! struct Nic {
//!     softc: Ordered<Softc, Mutex<bool>>,
//!     rx: Ordered<Rx, Mutex<u32>>,
//! }
//!
//! impl Nic {
//!     // Callable from any context that holds nothing at `Rx` or after it.
//!     fn refill<L: LockBefore<Rx>>(&self, ctx: &mut Ctx<'_, L>) {
//!         let (mut rx, _) = ctx.lock(&self.rx);
//!         **rx += 1;
//!     }
//!
//!     fn init(&self) {
//!         let mut ctx = Ctx::new();
//!         let (mut up, mut ctx) = ctx.lock(&self.softc);
//!         **up = true;
//!         self.refill(&mut ctx); // Softc before Rx: compiles
//!     }
//! }
//!
//! let nic = Nic { softc: Ordered::new(Mutex::new(false)), rx: Ordered::new(Mutex::new(0)) };
//! nic.init();
//! assert_eq!(*nic.rx.unordered().lock(), 1);
//! ```
//!
//! Taking the softc lock from inside `refill`'s context would not compile,
//! since `Rx: LockBefore<Softc>` does not hold.

#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs)]
#![warn(unsafe_op_in_unsafe_fn)]

#[cfg(any(feature = "std", test))]
extern crate std;

mod ctx;
mod level;
// Only the witness (debug builds) has shared state to model.
#[cfg(debug_assertions)]
mod sync;
pub mod witness;

pub use ctx::{Barrier, Ctx, Held, Lock, Ordered, Released};
pub use level::{Level, LockAfter, LockBefore, Unlocked};

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
