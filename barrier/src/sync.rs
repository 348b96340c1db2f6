//! The one place this crate switches on its model-checking cfg.
//!
//! The atomics and the back-off come from `mpsafe-serializer`'s shim, so they
//! are the very type its [`Wait`](mpsafe_serializer::Wait) takes, and they
//! switch with it: `core::sync::atomic` and `crossbeam_utils::Backoff`
//! normally; loom's atomics (with a `const fn new`) and a back-off that never
//! spins, only yields to the model's scheduler, under
//! `RUSTFLAGS="--cfg mpsafe_loom"` with `--features loom`. The rest of the
//! crate never mentions the cfg. The public API is the same under both,
//! except that constructors (declared once, with `const_fn!`) are not `const`
//! under the models: loom objects cannot be made at compile time.

pub(crate) use mpsafe_serializer::__shim::{AtomicU32, Ordering, Poll, wait_until};

/// Declares a constructor once (`const fn`, or a plain `fn` under the
/// models): the serializer shim's one definition.
pub(crate) use mpsafe_serializer::__const_fn as const_fn;

/// `[$slot; GATE_SLOTS]` for a non-`Copy` slot: an inline `const` normally,
/// built at run time under the models.
#[cfg(not(mpsafe_loom))]
macro_rules! slot_array {
    ($slot:expr) => {
        [const { $slot }; crate::sync::GATE_SLOTS]
    };
}
#[cfg(mpsafe_loom)]
macro_rules! slot_array {
    ($slot:expr) => {
        core::array::from_fn(|_| $slot)
    };
}
pub(crate) use slot_array;

/// How many slots a gate spreads its invocations over (a power of two).
#[cfg(not(mpsafe_loom))]
pub(crate) const GATE_SLOTS: usize = 8;
/// Two slots are enough for the models to exercise cross-slot draining.
#[cfg(mpsafe_loom)]
pub(crate) const GATE_SLOTS: usize = 2;

/// The calling thread's gate slot: its number from `mpsafe-serializer`'s
/// thread identity (handed out in order, so concurrent handler threads
/// usually land on distinct cache lines).
#[cfg(all(feature = "std", not(mpsafe_loom)))]
#[inline]
pub(crate) fn slot_hint() -> usize {
    mpsafe_serializer::__shim::thread_id() % GATE_SLOTS
}

/// Without thread-locals, spread by stack address: distinct threads (or the
/// per-CPU interrupt stacks of a kernel) run on stacks at least 16 KiB apart,
/// so they usually hash to distinct slots. Use `Gate::enter_on` with the CPU
/// number for a guaranteed spread.
#[cfg(all(not(feature = "std"), not(mpsafe_loom)))]
#[inline]
pub(crate) fn slot_hint() -> usize {
    let marker = 0u8;
    let stack = core::ptr::from_ref(&marker).addr() >> 14;
    // Fibonacci hashing: the top bits of the product mix all the low ones.
    const GOLDEN: usize = 0x9E37_79B9_7F4A_7C15_u64 as usize;
    stack.wrapping_mul(GOLDEN) >> (usize::BITS - GATE_SLOTS.trailing_zeros())
}

/// Under the models, `Gate::enter_on` chooses the slot explicitly, and the
/// default is one fixed slot (a run-dependent choice would make loom's replay
/// non-deterministic).
#[cfg(mpsafe_loom)]
#[inline]
pub(crate) fn slot_hint() -> usize {
    0
}
