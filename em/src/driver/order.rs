//! The driver's lock order, declared once ([`mpsafe_order`]).
//!
//! Every lock the driver takes, in the order it may take them, with what is
//! really held when each is taken (in some mode):
//!
//! | rank | level | lock | taken by | held when taken |
//! | --- | --- | --- | --- | --- |
//! | 1 | [`IfqStartSerialized`] | a send queue's start routine (its start serializer), in `Serialized` mode | whoever asks for a start (transmit, completion's restart); barrier: the mode switch | nothing (barrier); anything (a start never waits) |
//! | 2 | [`IntrSerialized`] | the interrupt handler, in `Serialized` mode (inside the device's interrupt gate) | the device; its barrier: the mode switch | nothing (barrier) |
//! | 3 | [`Ifnet`] | the ifnet serializer | every ioctl, the mode switch; in `Serialized` also the interrupt (`handler_call`), the start routine, the refill timeout (`try_lock`) | the start routine's or the interrupt's level (`Serialized` mode); the timeout's (a try) |
//! | 4 | [`IfqStart`] | a send queue's start routine, in the other modes | whoever asks for a start; barrier: stop (inside the ifnet serializer, the big lock released) and the mode switch | the ifnet serializer (barrier); anything (a start never waits) |
//! | 5 | [`Intr`] | the interrupt handler, in the other modes | the device; its barrier: stop (inside the ifnet serializer, the big lock released) and the mode switch | the ifnet serializer (barrier); nothing (handler) |
//! | 6 | [`Refill`] | the refill timeout's callback (inside the timeout's gate) | the kernel's timeout ([`Kernel::deferred`](crate::Kernel::deferred)); its barrier (`del_barrier`): stop, the mode switch | the ifnet serializer (barrier); nothing (callback) |
//! | 7 | [`BigLock`] `(recursive)` | the big lock ([`KernelLock`](crate::KernelLock)) | the mode policy in `BigLock` and `RxUnlocked` modes: interrupt, rxeof, refill, txeof, start, ioctl | ifnet serializer (ioctl), start level (start), itself (the interrupt's parts) |
//! | 8 | [`RxMutex`] | a receive ring's mutex | rxeof, refill, ring init and teardown, statistics | big lock and/or ifnet serializer |
//! | 9 | [`IfqMutex`] | a send queue's mutex (`ifq_mtx`) | the start routine (dequeue), transmit (enqueue), down (purge), statistics | start level, big lock or ifnet serializer |
//! | 10 | [`PoolMutex`] | the buffer pool's free list | refill (allocates), rxeof, txeof, stop, down, transmit (free) | rx mutex (refill), big lock, ifnet serializer |
//!
//! Every path takes these through a [`Ctx`](mpsafe_order::Ctx), from the
//! context of the caller where there is one; the places that start from
//! a context of their own say why (the interrupt's parts, which retake the
//! big lock under the interrupt's hold; the barriers stop waits at while
//! its context is borrowed by the big lock's guard; the public `*_locked`
//! entry points, whose caller entered through the plain API), and the
//! runtime witness checks them. The ifq mutex of a queue's *internal*
//! acquisitions (the bundling threshold's `maxlen`) is not recorded.
//!
//! **Why the big lock comes after the ifnet serializer** (not before it, as
//! in issue 15's example and in OpenBSD, whose ioctls hold the kernel lock
//! when they call into a driver): every ioctl here enters the ifnet
//! serializer first, and stop, inside it, drops and retakes the big lock
//! around the barriers ([`KernelGuard::sleep`](crate::KernelGuard::sleep),
//! as `tsleep` drops the kernel lock). With the big lock first, an ioctl
//! holding it and waiting for the serializer would deadlock against stop
//! retaking it; the declared order makes a caller that holds the big lock
//! and enters the ifnet serializer fail to compile instead (see
//! [`KernelLock::lock_in`](crate::KernelLock::lock_in)). The witness sees
//! the release ([`Ordered::released`](mpsafe_order::Ordered::released)), so
//! stop's barriers are not taken for waits under the big lock.
//!
//! The big lock is declared `(recursive)`: the interrupt holds it and runs
//! parts (rxeof, txeof, refill) and a start routine that take it again,
//! each counted against its own path. Those nested acquisitions go through
//! a context of their own, which the types cannot relate to the holder's;
//! the witness lets the holder's re-acquisition through (it cannot block)
//! and checks every outermost one. The ioctls run stop, the rings and the
//! refill under their one entry, so they take it once.
//!
//! **The start serializer sits at two levels**, one per kind of mode,
//! because the modes order it differently against the ifnet serializer: in
//! `Serialized` mode the start routine *enters* the ifnet serializer (start
//! → ifnet), in the others stop waits for the start barrier *inside* the
//! ifnet serializer (ifnet → start). One level for every mode would be a
//! cycle. So the routine runs inside the level of the mode it finds
//! (`TxRing::start`), and the barrier is waited for at the level of the
//! current mode; the witness keys its records by level as well as address,
//! so the two are two nodes and one mode's order never meets the other's.
//! That is sound because the mode switch quiesces both (`switch.rs`: the
//! queues paused, every start barrier waited for outside every lock, then
//! the mode stored): no routine of the old mode runs when a barrier of the
//! new one is waited for. The levels cannot check that; the switch's tests
//! run it under load. Entering a start never waits (a busy serializer
//! hands the work to its owner), so any path may ask for one, whatever it
//! holds (the interrupt holds the big lock); the witness records the
//! routine's level unchecked on entry and checks what it takes.
//!
//! The interrupt handler has two levels for the same reason as the start
//! routine (it enters the ifnet serializer in `Serialized` mode, and stop
//! waits for its gate inside that serializer in the others). The refill
//! timeout has one: in `Serialized` mode it only tries the serializer, and
//! a try never waits.
//!
//! **Outside the declaration**: the mode switch's own mutex
//! (`Core::switch`, taken only at the top of `set_mode`, with nothing held,
//! and by nothing else).
//!
//! Issue 15's inversions do not compile. The ifnet serializer entered under
//! the big lock: see [`KernelLock::lock_in`](crate::KernelLock::lock_in).
//! The ifnet serializer under an rx mutex:
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::{Ifnet, RxMutex};
//! use mpsafe_order::{Ctx, Lock, Ordered};
//! use mpsafe_serializer::Serializer;
//!
//! fn inverted<T: Lock>(rx: &Ordered<RxMutex, T>, ifnet: &Ordered<Ifnet, Serializer>) {
//!     let mut ctx = Ctx::new();
//!     let (_rx, mut ctx) = ctx.lock(rx);
//!     let _s = ctx.lock(ifnet); // RxMutex: LockBefore<Ifnet> is not implemented
//! }
//! ```
//!
//! A start barrier requested while holding the queue mutex (the barrier is
//! waited for as the driver does, at the routine's level, on the queue):
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::{IfqMutex, IfqStart};
//! use mpsafe_ifqueue::{Fifo, SendQueue};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! fn inverted<R: RawBigLock>(queue: &SendQueue<Fifo<Vec<u8>>>, barrier: impl FnOnce()) {
//!     let mut ctx = Ctx::new();
//!     let (_q, mut ctx) = ctx.lock(Ordered::<IfqMutex, _>::declare(queue));
//!     ctx.wait_with(Ordered::<IfqStart, _>::declare(queue), |_| barrier()); // IfqMutex: LockBefore<IfqStart> is not implemented
//! }
//! ```
//!
//! or while holding the big lock, which a start routine takes:
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::IfqStart;
//! use mpsafe_em::{KernelLock, Path, RawBigLock};
//! use mpsafe_ifqueue::{Fifo, SendQueue};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! fn inverted<R: RawBigLock>(queue: &SendQueue<Fifo<Vec<u8>>>, big: &KernelLock<R>, barrier: impl FnOnce()) {
//!     let mut ctx = Ctx::new();
//!     let (_k, mut ctx) = big.lock_in(&mut ctx, Path::Ioctl);
//!     ctx.wait_with(Ordered::<IfqStart, _>::declare(queue), |_| barrier()); // BigLock: LockBefore<IfqStart> is not implemented
//! }
//! ```
//!
//! or, in `Serialized` mode, inside the ifnet serializer, which the start
//! routine enters:
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::{Ifnet, IfqStartSerialized};
//! use mpsafe_ifqueue::{Fifo, SendQueue};
//! use mpsafe_order::{Ctx, Ordered};
//! use mpsafe_serializer::Serializer;
//!
//! fn inverted<R: RawBigLock>(queue: &SendQueue<Fifo<Vec<u8>>>, ifnet: &Ordered<Ifnet, Serializer>, barrier: impl FnOnce()) {
//!     let mut ctx = Ctx::new();
//!     let (_s, mut ctx) = ctx.lock(ifnet);
//!     ctx.wait_with(Ordered::<IfqStartSerialized, _>::declare(queue), |_| barrier()); // Ifnet: LockBefore<IfqStartSerialized> is not implemented
//! }
//! ```
//!
//! A start routine (its context at its start level) waiting for another
//! queue's start barrier, as two queues' routines waiting on each other's
//! would:
//!
//! ```compile_fail,E0277
//! use mpsafe_em::driver::order::IfqStart;
//! use mpsafe_ifqueue::{Fifo, SendQueue};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! fn inverted(mine: &SendQueue<Fifo<Vec<u8>>>, other: &SendQueue<Fifo<Vec<u8>>>, barrier: impl FnOnce()) {
//!     Ordered::<IfqStart, _>::declare(mine).run_inside(|mut ctx| {
//!         ctx.wait_with(Ordered::<IfqStart, _>::declare(other), |_| barrier()); // IfqStart: LockBefore<IfqStart> is not implemented
//!     });
//! }
//! ```
//!
//! In the declared order the same acquisitions and waits compile: stop's
//! barrier inside the ifnet serializer, and a start routine taking the big
//! lock, the queue mutex and the pool's.
//!
//! ```
//! use mpsafe_em::driver::order::{Ifnet, IfqMutex, IfqStart, PoolMutex};
//! use mpsafe_em::{KernelLock, Path, RawBigLock};
//! use mpsafe_ifqueue::{Fifo, SendQueue};
//! use mpsafe_order::{Ctx, Lock, Ordered};
//! use mpsafe_serializer::Serializer;
//!
//! fn stop(queue: &SendQueue<Fifo<Vec<u8>>>, ifnet: &Ordered<Ifnet, Serializer>, barrier: impl FnOnce()) {
//!     let mut ctx = Ctx::new();
//!     let (_s, mut ctx) = ctx.lock(ifnet);
//!     ctx.wait_with(Ordered::<IfqStart, _>::declare(queue), |_| barrier());
//! }
//!
//! fn start<R: RawBigLock, P: Lock>(queue: &SendQueue<Fifo<Vec<u8>>>, big: &KernelLock<R>, pool: &Ordered<PoolMutex, P>) {
//!     Ordered::<IfqStart, _>::declare(queue).run_inside(|mut ctx| {
//!         let (_k, mut ctx) = big.lock_in(&mut ctx, Path::Start);
//!         let (_q, mut ctx) = ctx.lock(Ordered::<IfqMutex, _>::declare(queue));
//!         let _p = ctx.lock(pool);
//!     });
//! }
//! ```

// The levels are declared at the bottom of the crate (`crate::levels`),
// which imports nothing of it, so the big lock and the pool take theirs
// without importing the driver back; this module is where the driver's
// order is documented, checked and named.
pub use crate::levels::{
    BigLock, Ifnet, IfqMutex, IfqStart, IfqStartSerialized, Intr, IntrSerialized, PoolMutex,
    Refill, RxMutex,
};
