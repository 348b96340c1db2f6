//! The one place this crate switches on its model-checking cfg.
//!
//! Only the witness has shared state (one global graph behind a spin lock,
//! debug builds only), so only the witness uses this shim. Normally: core's
//! `AtomicBool`, `AtomicPtr` and `UnsafeCell`, a plain `static` and a spin-loop hint.
//! Under `RUSTFLAGS="--cfg mpsafe_loom"` *with this crate's `loom` feature*
//! (its own model, `tests/loom_witness.rs`): loom's atomic and cell, a lazy
//! static built afresh for each execution of a model, and a yield to the
//! model's scheduler instead of spinning.
//!
//! Unlike the other mpsafe crates, the cfg without the feature is not an
//! error: every other crate's loom run sets the cfg for the whole build and
//! does not turn this feature on, so there the witness stays on core's
//! atomics, as debug bookkeeping outside the algorithms those models check
//! (modelling its lock there would multiply their executions, and a model's
//! threads share one OS thread's thread-locals anyway).

#[cfg(not(all(mpsafe_loom, feature = "loom")))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
#[cfg(all(mpsafe_loom, feature = "loom"))]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

#[cfg(all(mpsafe_loom, feature = "loom"))]
pub(crate) use loom::cell::UnsafeCell;

/// `core::cell::UnsafeCell` with loom's access API (`with_mut`), so the
/// witness reaches its state the same way under both.
#[cfg(not(all(mpsafe_loom, feature = "loom")))]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(all(mpsafe_loom, feature = "loom")))]
impl<T> UnsafeCell<T> {
    /// A cell holding `value`.
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    /// Runs `f` with a pointer to the value; the caller makes the access
    /// exclusive.
    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

/// One step of waiting for the spin lock: a spin-loop hint normally, a yield
/// under the models (so the holder gets to run and the exploration ends).
#[inline]
pub(crate) fn spin_loop() {
    #[cfg(not(all(mpsafe_loom, feature = "loom")))]
    core::hint::spin_loop();
    #[cfg(all(mpsafe_loom, feature = "loom"))]
    loom::thread::yield_now();
}

/// Declares a `static`: a plain one normally (so its initializer must be a
/// constant), a loom lazy static under the models, since loom objects exist
/// only inside one execution of a model.
macro_rules! global {
    ($(#[$m:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        #[cfg(not(all(mpsafe_loom, feature = "loom")))]
        $(#[$m])*
        static $name: $ty = $init;
        #[cfg(all(mpsafe_loom, feature = "loom"))]
        loom::lazy_static! {
            $(#[$m])*
            static ref $name: $ty = $init;
        }
    };
}
pub(crate) use global;
