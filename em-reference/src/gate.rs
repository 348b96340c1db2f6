//! The interrupt gate seam: how the device's interrupt thread calls the
//! driver's handler so that `intr_barrier` can wait for it.
//!
//! Interim implementation (mutex + condvar) with the same shape as
//! `mpsafe_barrier::Gate`; replaced by it once that crate lands.

use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Debug, Default)]
struct State {
    started: u64,
    finished: u64,
    disabled: bool,
}

/// Counts handler invocations in and out so a barrier can wait for every
/// invocation that started before it.
#[derive(Debug, Default)]
pub(crate) struct IntrGate {
    state: Mutex<State>,
    cv: Condvar,
}

impl IntrGate {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` unless the gate is disabled.
    pub(crate) fn enter<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        {
            let mut s = self.lock();
            if s.disabled {
                return None;
            }
            s.started += 1;
        }
        let r = f();
        self.lock().finished += 1;
        self.cv.notify_all();
        Some(r)
    }

    /// Returns once every invocation that started before the call finished.
    pub(crate) fn barrier(&self) {
        let mut s = self.lock();
        let target = s.started;
        while s.finished < target {
            s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
