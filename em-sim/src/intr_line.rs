//! The delivery half of an interrupt line, shared by the Linux-process
//! backends (the simulated device, the uio device): [`IntrLine`].

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use mpsafe_barrier::Gate;
#[cfg(doc)]
use mpsafe_em::Hardware;
use mpsafe_em::IntrHandler;

/// The delivery half of an interrupt line, shared by the backends: the
/// established handler and the gate its calls pass through.
///
/// A backend's interrupt thread (the simulator's MSI thread, a loop blocked
/// on `/dev/uioN`) calls [`deliver`](IntrLine::deliver) per interrupt; the
/// backend's [`Hardware`] methods forward to the rest.
#[derive(Default)]
pub struct IntrLine {
    handler: Mutex<Option<Weak<dyn IntrHandler>>>,
    gate: Gate,
}

impl IntrLine {
    /// A line with no handler.
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Weak<dyn IntrHandler>>> {
        // An Option of a pointer: consistent even after a panic elsewhere.
        self.handler.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs `handler` ([`Hardware::intr_establish`]).
    pub fn establish(&self, handler: Weak<dyn IntrHandler>) {
        *self.slot() = Some(handler);
    }

    /// Removes the handler, then waits out a call in flight
    /// ([`Hardware::intr_disestablish`]).
    pub fn disestablish(&self) {
        *self.slot() = None;
        self.gate.barrier();
    }

    /// Waits for every call that started before ([`Hardware::intr_barrier`]).
    pub fn barrier(&self) {
        self.gate.barrier();
    }

    /// Calls the handler for one interrupt: `Some(claimed)`, or `None` if no
    /// handler is established (or the driver state is gone).
    ///
    /// The weak reference is upgraded *inside* the gate: a
    /// [`disestablish`](IntrLine::disestablish) that returns has waited for
    /// this call, so the driver's state is never dropped here, on the
    /// interrupt thread, after its owner let go of it.
    pub fn deliver(&self) -> Option<bool> {
        self.gate
            .enter(|| {
                let h: Arc<dyn IntrHandler> = self.slot().as_ref()?.upgrade()?;
                Some(h.intr())
            })
            .flatten()
    }
}

impl fmt::Debug for IntrLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IntrLine")
            .field("established", &self.slot().is_some())
            .finish_non_exhaustive()
    }
}
