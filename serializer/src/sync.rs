//! The one place this crate takes its atomics from.
//!
//! Normally `core::sync::atomic`; under `--cfg loom` the loom model checker's
//! instrumented atomics, so every algorithm in the crate can be model-checked
//! without a line of it changing.

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// Hint that we are busy-waiting on another CPU.
///
/// Under loom a spin must yield so the model checker schedules the thread we
/// are waiting for; otherwise the exploration never ends.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(not(loom))]
    core::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}
