//! The one place this crate takes its atomics from.
//!
//! Normally `core::sync::atomic`; under `--cfg loom` the loom model checker's
//! instrumented atomics, so every algorithm in the crate can be model-checked
//! without a line of it changing. [`Wait`](mpsafe_serializer::Wait) takes the
//! same `AtomicU32` type (the serializer crate switches on the same cfg).

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, Ordering};

/// Spin a little, then block: `snooze` while the event is probably a few
/// hundred cycles away (a handler finishing on another CPU), then sleep with
/// the caller's [`Wait`](mpsafe_serializer::Wait) strategy.
///
/// Under loom there is no spinning phase: every wait goes straight to the
/// strategy,
/// which the models implement as a real (modelled) futex so a lost wake-up
/// shows up as a deadlock.
pub(crate) struct Backoff {
    #[cfg(not(loom))]
    inner: crossbeam_utils::Backoff,
}

impl Backoff {
    #[inline]
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(not(loom))]
            inner: crossbeam_utils::Backoff::new(),
        }
    }

    /// One back-off step while spinning is still worth it (`true`), or
    /// `false` once the caller should block with its [`Wait`] strategy.
    /// Always `false` under loom.
    #[inline]
    pub(crate) fn snooze(&self) -> bool {
        #[cfg(not(loom))]
        if !self.inner.is_completed() {
            self.inner.snooze();
            return true;
        }
        false
    }
}
