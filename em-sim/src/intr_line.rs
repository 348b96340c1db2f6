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

    /// As [`deliver`](IntrLine::deliver), but when no handler is
    /// established calls `unclaimed` (a backend masks the device's causes
    /// there) before an [`establish`](IntrLine::establish) can install one.
    ///
    /// Without that order a backend's interrupt thread that found no
    /// handler could mask the causes *after* a new driver's `attach` had
    /// established its handler and `init` had unmasked them: that driver
    /// would never see an interrupt again.
    pub fn deliver_or(&self, unclaimed: impl FnOnce()) -> Option<bool> {
        self.gate
            .enter(|| {
                let slot = self.slot();
                match slot.as_ref().and_then(Weak::upgrade) {
                    Some(h) => {
                        drop(slot);
                        Some(h.intr())
                    }
                    None => {
                        // Still holding the slot: establish waits for this.
                        unclaimed();
                        None
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    struct Claims;

    impl IntrHandler for Claims {
        fn intr(&self) -> bool {
            true
        }
    }

    /// An `establish` racing an interrupt that found no handler waits for
    /// that interrupt's `unclaimed`: the backend's mask of the causes is
    /// never written after the new driver's handler is in place. (With
    /// `unclaimed` called after the slot is released, the establish below
    /// completes inside the window and the test fails.)
    #[test]
    fn establish_waits_for_an_unclaimed_interrupt() {
        let line = Arc::new(IntrLine::new());
        let handler: Arc<dyn IntrHandler> = Arc::new(Claims);
        let established = Arc::new(AtomicBool::new(false));
        let (inside_tx, inside_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let establisher = {
            let line = Arc::clone(&line);
            let established = Arc::clone(&established);
            let weak = Arc::downgrade(&handler);
            std::thread::spawn(move || {
                inside_rx.recv().unwrap();
                line.establish(weak);
                // Release: pairs with the Acquire load in `unclaimed`.
                established.store(true, Ordering::Release);
                done_tx.send(()).unwrap();
            })
        };
        let mut seen = None;
        let r = line.deliver_or(|| {
            inside_tx.send(()).unwrap();
            // Give the establisher every chance to get through: it cannot
            // while this runs, so the wait always runs out (bounded).
            let _ = done_rx.recv_timeout(Duration::from_millis(300));
            seen = Some(established.load(Ordering::Acquire));
        });
        assert_eq!(r, None, "no handler: unclaimed");
        assert_eq!(
            seen,
            Some(false),
            "a handler was established while an unclaimed interrupt was being handled"
        );
        establisher.join().unwrap();
        // Once established, the next interrupt reaches the handler.
        assert_eq!(
            line.deliver_or(|| panic!("a handler is established")),
            Some(true)
        );
    }
}
