//! A one-shot timeout of the simulated kernel (`timeout_add(t, 1)`,
//! `timeout_del_barrier`), run on its own thread, one tick after it is
//! armed. The rx refill retry uses it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use mpsafe_barrier::Gate;

/// One tick of the simulated kernel's clock (`hz` = 1000).
pub(crate) const TICK: Duration = Duration::from_millis(1);

#[derive(Default)]
struct State {
    armed: bool,
    shutdown: bool,
}

#[derive(Default)]
pub(crate) struct Timeout {
    state: Mutex<State>,
    cv: Condvar,
    /// The callback runs inside it, so `del_barrier` can wait for it.
    gate: Gate,
}

impl Timeout {
    fn state(&self) -> MutexGuard<'_, State> {
        // Two booleans: consistent after a panic elsewhere.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arms the timeout to fire one tick from now (`timeout_add(t, 1)`);
    /// arming an armed timeout changes nothing.
    pub(crate) fn add(&self) {
        let mut s = self.state();
        if !s.armed {
            s.armed = true;
            self.cv.notify_one();
        }
    }

    /// Disarms, then waits for a callback in flight (`timeout_del_barrier`).
    /// A callback that re-armed meanwhile is disarmed again.
    pub(crate) fn del_barrier(&self) {
        self.state().armed = false;
        self.gate.barrier();
        self.state().armed = false;
    }

    /// Stops [`run`](Timeout::run) (for detach).
    pub(crate) fn shutdown(&self) {
        self.state().shutdown = true;
        self.cv.notify_one();
    }

    /// The timeout thread: waits until armed, a tick, then runs `fire`
    /// if still armed. Returns after [`shutdown`](Timeout::shutdown).
    pub(crate) fn run(&self, fire: impl Fn()) {
        loop {
            let mut s = self.state();
            while !s.armed && !s.shutdown {
                s = self.cv.wait(s).unwrap_or_else(PoisonError::into_inner);
            }
            if s.shutdown {
                return;
            }
            drop(s);
            std::thread::sleep(TICK);
            // Armed is checked and cleared inside the gate, so a
            // `del_barrier` either disarmed first or waits for this call.
            self.gate.enter(|| {
                let armed = core::mem::take(&mut self.state().armed);
                if armed {
                    fire();
                }
            });
        }
    }
}
