//! The one place this crate takes its atomics from.
//!
//! Normally `core::sync::atomic`; under `--cfg loom` the loom model checker's
//! instrumented atomics, so every algorithm in the crate can be model-checked
//! without a line of it changing.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Busy-waiting under loom: a spin must yield so the model checker schedules
/// the thread we are waiting for; otherwise the exploration never ends.
/// (Outside loom the spinning code uses `crossbeam_utils::Backoff`.)
#[cfg(loom)]
#[inline]
pub(crate) fn spin_hint() {
    loom::thread::yield_now();
}
