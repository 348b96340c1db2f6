//! Hooks into the driver's insides for the platform crates' tests (the
//! witness tests of `mpsafe-em-sim` hold a lock the types hide and then
//! wait at a barrier, to see the witness report it). Hidden from the docs
//! and outside the crate's semver: nothing else should call these.

use mpsafe_order::{Ctx, Ordered};
use mpsafe_serializer::TaskOwner;

use super::order::IfqStart;
use super::tx::{ifq_mutex, start_barrier};
use super::{Em, Path};
use crate::hw::{Hardware, IntrHandler};

/// The driver's insides, for tests: see the [module](self).
#[doc(hidden)]
#[derive(Debug)]
pub struct Probe<'a, H: Hardware>(&'a Em<H>);

impl<H: Hardware> Em<H> {
    /// Test hooks; see [`Probe`].
    #[doc(hidden)]
    pub fn __probe(&self) -> Probe<'_, H> {
        Probe(self)
    }
}

impl<H: Hardware> Probe<'_, H> {
    /// Waits at send queue `q`'s start barrier from a context of its own,
    /// at the level its start routine runs at in the current mode.
    pub fn start_barrier(&self, q: usize) {
        let sc = &self.0.sc;
        start_barrier(sc.ifqs.queue(q), sc.core.mode(), &mut Ctx::new());
    }

    /// Waits at every barrier stop waits at, from a context of its own.
    pub fn barriers(&self) {
        self.0.sc.barriers(&mut Ctx::new());
    }

    /// Runs `f` holding send queue `q`'s mutex, taken through the order.
    pub fn with_queue_mutex<R>(&self, q: usize, f: impl FnOnce() -> R) -> R {
        let mut ctx = Ctx::new();
        let (_q, _) = ctx.lock(ifq_mutex(self.0.sc.ifqs.queue(q).queue()));
        f()
    }

    /// Runs `f` holding receive queue `q`'s mutex, taken through the order.
    pub fn with_rx_mutex<R>(&self, q: usize, f: impl FnOnce() -> R) -> R {
        let mut ctx = Ctx::new();
        let (_rx, _) = ctx.lock(&self.0.sc.rxqs[q].rx);
        f()
    }

    /// Runs `f` inside the ifnet serializer, entered through the order.
    pub fn with_ifnet<R>(&self, f: impl FnOnce() -> R) -> R {
        let mut ctx = Ctx::new();
        let (_s, _) = ctx.lock(&self.0.sc.core.ifnet);
        f()
    }

    /// Runs `f` holding the big lock, taken through the order for `path`.
    pub fn with_big_lock<R>(&self, path: Path, f: impl FnOnce() -> R) -> R {
        let mut ctx = Ctx::new();
        let (_k, _) = self.0.sc.core.big.lock_in(&mut ctx, path);
        f()
    }

    /// Runs `f` as if inside send queue `q`'s start routine (at
    /// [`IfqStart`]).
    pub fn inside_start_routine<R>(&self, q: usize, f: impl FnOnce() -> R) -> R {
        Ordered::<IfqStart, _>::declare(self.0.sc.ifqs.queue(q).queue()).run_inside(|_| f())
    }

    /// The address the witness names send queue `q`'s start level by.
    pub fn start_level_addr(&self, q: usize) -> usize {
        core::ptr::from_ref(self.0.sc.ifqs.queue(q).queue()).addr()
    }

    /// Calls the interrupt handler here, as the device's line would.
    pub fn intr(&self) -> bool {
        self.0.sc.intr()
    }

    /// Calls send queue `q`'s start routine with `owner`, a token of some
    /// serializer this thread runs.
    pub fn start_routine(&self, q: usize, owner: &TaskOwner<'_>) {
        use mpsafe_ifqueue::Start;
        let ifq = self.0.sc.ifqs.queue(q);
        ifq.driver().start(ifq.queue(), owner);
    }
}
