//! A modelled futex for the loom models.
//!
//! The `Futex` strategy of `mpsafe-serializer` degrades to a yield under loom,
//! which hides lost wake-ups: a waiter that would sleep forever just re-reads.
//! This one really blocks. Like the kernel's futex, it checks the word and
//! enqueues the sleeper under one lock that every wake also takes, and a wake
//! only reaches sleepers of the same address (`wake_one` exactly one of them),
//! so a waiter that misses its wake-up sleeps forever and loom reports the
//! deadlock.

use loom::sync::atomic::Ordering;
use loom::sync::{Condvar, Mutex};
use mpsafe_serializer::__shim::AtomicU32;
use mpsafe_serializer::Wait;

struct Table {
    next_id: u64,
    /// (sleeper id, word address, woken)
    sleepers: Vec<(u64, usize, bool)>,
}

loom::lazy_static! {
    static ref FUTEX: (Mutex<Table>, Condvar) = (
        Mutex::new(Table { next_id: 0, sleepers: Vec::new() }),
        Condvar::new(),
    );
}

fn address(word: &AtomicU32) -> usize {
    core::ptr::from_ref(word).addr()
}

/// A futex whose sleepers block until a wake on their word reaches them.
pub(crate) struct ModelFutex;

impl Wait for ModelFutex {
    fn wait(word: &AtomicU32, expected: u32) {
        let (lock, condvar) = &*FUTEX;
        let mut table = lock.lock().unwrap();
        // Relaxed, like the kernel's read: the table lock orders it after any
        // waker that already took the lock.
        if word.load(Ordering::Relaxed) != expected {
            return;
        }
        let id = table.next_id;
        table.next_id += 1;
        table.sleepers.push((id, address(word), false));
        loop {
            table = condvar.wait(table).unwrap();
            if let Some(at) = table.sleepers.iter().position(|s| s.0 == id && s.2) {
                table.sleepers.swap_remove(at);
                return;
            }
        }
    }

    fn wake_one(word: &AtomicU32) {
        wake(word, 1);
    }

    fn wake_all(word: &AtomicU32) {
        wake(word, usize::MAX);
    }
}

fn wake(word: &AtomicU32, mut count: usize) {
    let (lock, condvar) = &*FUTEX;
    let mut table = lock.lock().unwrap();
    let at = address(word);
    for sleeper in table.sleepers.iter_mut() {
        if count > 0 && sleeper.1 == at && !sleeper.2 {
            sleeper.2 = true;
            count -= 1;
        }
    }
    condvar.notify_all();
}

/// Runs a loom model bounded as the crate's CI runs it
/// (`LOOM_MAX_PREEMPTIONS` from the environment, default 2).
#[allow(dead_code)] // not every model file uses both
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
    model_preempting(2, f);
}

/// Runs a loom model with at least `min` preemptions, for a model whose
/// interesting interleaving needs more than the default bound.
pub(crate) fn model_preempting(min: usize, f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(builder.preemption_bound.unwrap_or(2).max(min));
    builder.check(f);
}
