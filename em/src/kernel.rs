//! The kernel services the driver takes from its host: [`Kernel`].
//!
//! The driver is written against OpenBSD's and DragonFly's kernel
//! interfaces; this trait names the few it uses, so the same code runs in
//! a bare-metal kernel (real interrupts, spin mutexes that raise the IPL,
//! the kernel's own big lock, softclock timeouts) and in a Linux process
//! (threads playing the interrupt and the timeout, futex waits):
//!
//! | the driver needs | OpenBSD | here |
//! |---|---|---|
//! | a mutex shared with the interrupt handler | `mtx_enter` at `IPL_NET` | [`Kernel::RxLock`], [`Kernel::QueueLock`] |
//! | a sleeping wait (serializers, barriers) | `sleep_setup`/`wakeup` | [`Kernel::Wait`] |
//! | the big lock | `KERNEL_LOCK` | [`Kernel::BigLock`] ([`RawBigLock`]) |
//! | a deferred call: the start task, the refill timeout | `task_add`, `timeout_add`, `timeout_del_barrier` | [`Kernel::Deferred`] ([`Deferred`]) |
//! | the clock | `ticks` | [`Kernel::ticks`] |
//! | which handler this CPU is running | `curcpu()->ci_idepth` | [`Kernel::current_handler`] |
//!
//! Every method is an associated function: a kernel's services are global,
//! and an implementation is a zero-sized type naming them. The device
//! ([`Hardware::Kernel`](crate::Hardware::Kernel)) says which kernel it
//! lives in.

use alloc::boxed::Box;
use core::fmt;

use lock_api::RawMutex;
use mpsafe_serializer::Wait;

use crate::biglock::RawBigLock;

/// A deferred call the kernel runs for the driver: a task (`task_add`, run
/// soon on a kernel thread or soft interrupt) or a timeout (`timeout_add`,
/// run some ticks later), made by [`Kernel::deferred`].
///
/// # Contract
///
/// - [`add`](Deferred::add) schedules one call of the function; while one
///   is scheduled and has not started, more adds fold into it. An add from
///   inside the call (a timeout re-arming itself) schedules the next one.
/// - What the caller wrote before an add is visible to the call that add
///   schedules (or to a call already scheduled): the start task reads the
///   packet `transmit` enqueued before adding it.
/// - Calls never overlap one another.
/// - [`del_barrier`](Deferred::del_barrier) cancels a scheduled call and
///   waits for a call in flight (`timeout_del_barrier`, `task_del` then
///   `taskq_barrier`): when it returns the function is not running, and
///   runs again only after a later `add`. Never called from the function
///   itself.
/// - Dropping it cancels a scheduled call and waits for one in flight
///   (unless dropped from the function itself).
pub trait Deferred: Send + Sync + 'static {
    /// Schedules a call (`task_add`, `timeout_add`); returns whether this
    /// add scheduled it (`false`: one was already scheduled).
    fn add(&self) -> bool;

    /// Cancels a scheduled call and waits for a call in flight.
    fn del_barrier(&self);
}

/// The kernel the driver runs in. See the [module](self) for what each
/// item stands for in OpenBSD.
pub trait Kernel: Send + Sync + 'static {
    /// The mutex of each receive ring: shared with the interrupt handler
    /// (a kernel's spin mutex that raises the IPL to the device's first).
    type RxLock: RawMutex + Send + Sync;
    /// The mutex of each send queue (`ifq_mtx`): taken by transmit, by the
    /// start routine and, through tx completion's restart, in the
    /// interrupt handler.
    type QueueLock: RawMutex + Send + Sync;
    /// How the ifnet serializer and the barriers wait.
    type Wait: Wait;
    /// The kernel's big lock, which the kernel's other work also takes.
    type BigLock: RawBigLock;
    /// A task or timeout ([`Kernel::deferred`]).
    type Deferred: Deferred;
    /// Why a deferred call could not be made.
    type Error: fmt::Display;

    /// The kernel's clock, in ticks (the receive rings' watermark clock).
    fn ticks() -> u64;

    /// A deferred call of `f`, run `delay` ticks after each add (0: a
    /// task, as soon as the kernel gets to it). `name` names it in the
    /// kernel's tables (a thread name, `ps`).
    ///
    /// # Errors
    ///
    /// The kernel has no room for it (no thread, no memory).
    fn deferred(
        name: &str,
        delay: u32,
        f: Box<dyn Fn() + Send + Sync>,
    ) -> Result<Self::Deferred, Self::Error>;

    /// The handler this context is running (a value the driver set with
    /// [`set_current_handler`](Kernel::set_current_handler)), 0 for none:
    /// how an entry point the stack calls from inside the driver's own
    /// interrupt handler knows where it is. Per thread in a process, per
    /// CPU in a kernel (an interrupt nested in a handler sets its own and
    /// restores this one).
    fn current_handler() -> usize;

    /// Records `mark` as the handler this context runs; returns the mark it
    /// replaces (restored when the handler returns).
    fn set_current_handler(mark: usize) -> usize;
}
