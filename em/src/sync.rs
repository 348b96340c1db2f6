//! The one place this crate switches on its model-checking cfg.
//!
//! Normally: `core::sync::atomic`. Under `RUSTFLAGS="--cfg mpsafe_loom"`
//! with the `loom` feature (which brings in the optional dependency and
//! turns on the primitives' own `loom` features, so their atomics switch
//! too): the [loom](https://docs.rs/loom) model checker's atomics, for the
//! words the driver's paths synchronize through: the mode word, RUNNING,
//! the transmit ring's `head`, `tail` and slot records, the ring sizes.
//! The rest of the crate never mentions the cfg; `tests/loom_*.rs` are the
//! models.
//!
//! Two kinds of atomics stay core's under the models, and say so where
//! they are declared:
//!
//! - [`counter`]: statistics counters, Relaxed and ordering nothing (a
//!   loom atomic each would only multiply the interleavings the models
//!   explore);
//! - the descriptors ([`crate::desc`]): they are the device's memory, with
//!   the device's 16-byte layout, not the driver's words.

#[cfg(all(mpsafe_loom, not(feature = "loom")))]
compile_error!("`--cfg mpsafe_loom` needs the `loom` feature (`--features loom`)");

#[cfg(not(mpsafe_loom))]
pub(crate) use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

#[cfg(mpsafe_loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

/// Statistics counters: core's atomics even under the models (Relaxed
/// increments and snapshots that order nothing).
pub(crate) mod counter {
    pub(crate) use core::sync::atomic::{AtomicU64, Ordering};
}
