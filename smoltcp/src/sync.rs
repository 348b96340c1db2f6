//! The one place this crate switches on its model-checking cfg.
//!
//! The atomics and the fence come from `mpsafe-serializer`'s shim:
//! `core::sync::atomic` normally, loom's under `RUSTFLAGS="--cfg mpsafe_loom"`
//! with `--features loom`, so `tests/loom_doorbell.rs` checks the
//! [`Doorbell`](crate::Doorbell) handshake with the real code. The rest of the
//! crate never mentions the cfg. ([`Signal`](crate::Signal), the `std` sleep
//! built on a mutex and a condition variable, is not modelled: it keeps
//! `core`'s atomics under both.)

pub(crate) use mpsafe_serializer::__shim::{AtomicBool, Ordering, fence};

/// Statistics counters (never part of a handshake); the shim above has no
/// 64-bit atomic, so this one switches here.
#[cfg(not(mpsafe_loom))]
pub(crate) use core::sync::atomic::AtomicU64;
#[cfg(mpsafe_loom)]
pub(crate) use loom::sync::atomic::AtomicU64;

#[cfg(all(mpsafe_loom, not(feature = "loom")))]
compile_error!("`--cfg mpsafe_loom` needs the `loom` feature (`--features loom`)");

/// Declares a constructor once (`const fn`, or a plain `fn` under the
/// models, where loom's atomics cannot be made at compile time).
pub(crate) use mpsafe_serializer::__const_fn as const_fn;
