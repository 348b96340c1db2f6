//! The barriers under a lock order ([`mpsafe_order`]).
//!
//! A [`Gate`] or a [`Completion`] declared at a level with [`Ordered`] is
//! waited for with [`Ctx::wait`](mpsafe_order::Ctx::wait), which needs a
//! context holding nothing at the barrier's level or after it. Interrupt
//! handlers enter an ordered gate with [`OrderedGate::enter`], which hands
//! them a context at the gate's level: what they take comes after it, so a
//! barrier waited for while holding such a lock does not compile, and one
//! made through a fresh context is reported by the witness.
//!
//! ```
//! use mpsafe_barrier::{Gate, OrderedGate};
//! use mpsafe_order::{Ctx, Ordered};
//!
//! mpsafe_order::lock_order! { pub Intr, pub RxMutex }
//!
//! let gate: Ordered<Intr, Gate> = Ordered::new(Gate::new());
//! assert_eq!(gate.enter(|_ctx| 7), Some(7)); // `_ctx` is at `Intr`
//! Ctx::new().wait(&gate); // no handler in flight: returns at once
//! ```

use mpsafe_order::{Barrier, Ctx, Level, Ordered};

use crate::completion::Completion;
use crate::gate::Gate;
use mpsafe_serializer::Wait;

impl<W: Wait> Barrier for Gate<W> {
    type Output = ();

    #[inline]
    fn barrier(&self) {
        Gate::barrier(self);
    }
}

impl<W: Wait> Barrier for Completion<W> {
    type Output = ();

    #[inline]
    fn barrier(&self) {
        self.wait();
    }
}

/// Handler entry through a [`Gate`] declared at level `L`.
pub trait OrderedGate<L: Level> {
    /// [`Gate::enter`]: runs the handler `f` as an invocation of the gate,
    /// with a context at `L`; `None` if the gate is disabled.
    #[track_caller]
    fn enter<R>(&self, f: impl FnOnce(Ctx<'_, L>) -> R) -> Option<R>;
}

impl<L: Level, W: Wait> OrderedGate<L> for Ordered<L, Gate<W>> {
    #[track_caller]
    #[inline]
    fn enter<R>(&self, f: impl FnOnce(Ctx<'_, L>) -> R) -> Option<R> {
        let _invocation = self.unordered().try_enter()?;
        Some(self.run_inside(f))
    }
}
