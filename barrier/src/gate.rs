//! The interrupt gate: OpenBSD `intr_barrier`, Linux `synchronize_irq`.
//!
//! # How it works
//!
//! Invocations are counted in a few *slots*, each a cache-padded 32-bit word
//! that holds two 15-bit counters and a parity bit naming the *current*
//! counter:
//!
//! ```text
//!   bit 31   bit 30    bits 29..15    bits 14..0
//!   unused | PARITY | counter 1    | counter 0
//! ```
//!
//! An invocation picks a slot (its thread's, or the CPU number it passes),
//! and increments that slot's current counter with one compare-and-swap,
//! which tells it which counter it is in; leaving decrements the same counter.
//! Two handler CPUs on two slots never touch the same cache line.
//!
//! [`Gate::barrier`] flips the parity bit of every slot (an atomic RMW on each
//! word), so every later invocation counts in the other counter, then waits
//! until the *retired* counter of every slot has drained to zero. Invocations
//! that start after the flip do not delay it, so a continuous stream of
//! handlers cannot starve a barrier. Barriers on one gate take turns, so a
//! retired counter is always empty before it becomes current again.
//!
//! Why no invocation is missed, without any `SeqCst`: an invocation's CAS and
//! the barrier's flip are read-modify-writes of the *same* word, so one of them
//! comes first in that word's modification order.
//!
//! - CAS first: the invocation counts in the counter the flip retires, and the
//!   barrier waits for it.
//! - Flip first: the CAS reads the flip's value (or a later one), so the
//!   Release flip synchronizes with the Acquire CAS: the invocation sees
//!   everything the barrier's caller did before calling it, such as
//!   [`Gate::disable`] or a cleared `RUNNING` flag, and leaves at once.
//!
//! Either way nothing touches what the caller frees next. The last invocation
//! to leave a retired counter bumps a wake-up word the barrier sleeps on (with
//! the [`Wait`] strategy, after a short back-off spin).

use core::fmt;
use core::marker::PhantomData;

use crossbeam_utils::CachePadded;
use mpsafe_serializer::{DefaultWait, Serializer, Wait};

use crate::sync::{AtomicU32, GATE_SLOTS, Ordering, Poll, slot_hint, wait_until};

/// How many slots a gate spreads its invocations over (a power of two).
const SLOTS: usize = GATE_SLOTS;

const FIELD_BITS: u32 = 15;
const FIELD_MAX: u32 = (1 << FIELD_BITS) - 1;
const PARITY_SHIFT: u32 = 30;
const PARITY: u32 = 1 << PARITY_SHIFT;

/// Which counter is current in slot word `word` (0 or 1).
#[inline]
const fn parity(word: u32) -> u32 {
    (word & PARITY) >> PARITY_SHIFT
}

/// Counter `parity` of slot word `word`.
#[inline]
const fn count(word: u32, parity: u32) -> u32 {
    (word >> (FIELD_BITS * parity)) & FIELD_MAX
}

/// The amount to add to a slot word to count one invocation in `parity`.
#[inline]
const fn one(parity: u32) -> u32 {
    1 << (FIELD_BITS * parity)
}

/// An interrupt barrier: handler invocations run through the gate, and
/// [`barrier`](Gate::barrier) returns only once every invocation that started
/// before it has finished.
///
/// This is what a driver needs before it frees memory its interrupt handler
/// reads: OpenBSD's `intr_barrier`, Linux's `synchronize_irq`, the "handler
/// disable" half of the DragonFly serializer. Stop new invocations first
/// ([`disable`](Gate::disable), or a `RUNNING` flag the handler checks inside
/// the gate), then call `barrier`, then free.
///
/// - [`enter`](Gate::enter) runs a closure as one invocation, or skips it and
///   returns `None` while the gate is disabled, so the caller can count a
///   spurious interrupt. [`try_enter`](Gate::try_enter) hands out an RAII
///   [`GateGuard`] instead.
/// - Entering and leaving cost two atomic read-modify-writes on a cache line
///   private to the calling thread (one of a few per-thread slots), so
///   handlers on different CPUs do not slow each other down.
/// - `barrier` is never starved: invocations that start after it began do not
///   delay it. Concurrent barriers on one gate run one after another.
/// - Waiting spins briefly, then sleeps with the strategy `W`.
///
/// # Examples
///
/// ```
/// use core::sync::atomic::{AtomicU32, Ordering};
/// use mpsafe_barrier::Gate;
///
/// let gate: Gate = Gate::new();
/// let handled = AtomicU32::new(0);
/// std::thread::scope(|s| {
///     // The "interrupt line": runs the handler through the gate.
///     s.spawn(|| {
///         while gate.enter(|| handled.fetch_add(1, Ordering::Relaxed)).is_some() {}
///     });
///     // Teardown: no new invocations, then wait out the one in flight.
///     gate.disable();
///     gate.barrier();
///     // From here on the handler never runs: its memory may be freed.
///     let seen = handled.load(Ordering::Relaxed);
///     assert_eq!(gate.enter(|| unreachable!()), None);
///     assert_eq!(handled.load(Ordering::Relaxed), seen);
/// });
/// ```
///
/// # Deadlocks
///
/// `barrier` called from inside an invocation of the same gate waits for
/// itself forever, as `synchronize_irq` from the handler does.
pub struct Gate<W: Wait = DefaultWait> {
    /// Per-slot invocation counters, each on its own cache line.
    slots: [CachePadded<AtomicU32>; SLOTS],
    /// Read by every invocation, written only by disable/enable and barriers.
    control: CachePadded<Control<W>>,
    _wait: PhantomData<fn() -> W>,
}

struct Control<W: Wait> {
    /// Non-zero while the gate is disabled.
    disabled: AtomicU32,
    /// Serializes barriers (the blocking serializer as a plain lock).
    turn: Serializer<W>,
    /// Bumped by the last invocation to leave a retired counter; the draining
    /// barrier sleeps on it.
    wake: AtomicU32,
}

impl<W: Wait> Gate<W> {
    crate::sync::const_fn! {
        /// An enabled gate with nothing in flight.
        pub fn new() -> Self {
            Self {
                slots: crate::sync::slot_array!(CachePadded::new(AtomicU32::new(0))),
                control: CachePadded::new(Control {
                    disabled: AtomicU32::new(0),
                    turn: Serializer::new(),
                    wake: AtomicU32::new(0),
                }),
                _wait: PhantomData,
            }
        }
    }

    /// Runs `f` as one invocation through the gate and returns its result, or
    /// returns `None` without calling `f` if the gate is disabled (a spurious
    /// interrupt, for the caller to count).
    ///
    /// A panic in `f` leaves the gate correctly (the guard is dropped on
    /// unwinding).
    ///
    /// # Panics
    ///
    /// If more than 32767 invocations are in flight on one slot at once
    /// (handlers nested that deep), which no real interrupt handler does.
    #[inline]
    pub fn enter<R>(&self, f: impl FnOnce() -> R) -> Option<R> {
        let _guard = self.try_enter()?;
        Some(f())
    }

    /// Starts an invocation that lasts until the returned guard is dropped, or
    /// returns `None` if the gate is disabled.
    ///
    /// # Panics
    ///
    /// As [`enter`](Gate::enter).
    #[inline]
    pub fn try_enter(&self) -> Option<GateGuard<'_, W>> {
        self.try_enter_on(slot_hint())
    }

    /// [`enter`](Gate::enter), counting the invocation in slot `cpu` (modulo
    /// the number of slots) instead of the calling thread's slot.
    ///
    /// For a kernel that knows which CPU it is on (interrupt handlers usually
    /// do): invocations on distinct CPUs then never share a cache line. Any
    /// value is correct; only speed depends on the spread.
    ///
    /// # Panics
    ///
    /// As [`enter`](Gate::enter).
    #[inline]
    pub fn enter_on<R>(&self, cpu: usize, f: impl FnOnce() -> R) -> Option<R> {
        let _guard = self.try_enter_on(cpu)?;
        Some(f())
    }

    /// [`try_enter`](Gate::try_enter) in slot `cpu`, as for
    /// [`enter_on`](Gate::enter_on).
    ///
    /// # Panics
    ///
    /// As [`enter`](Gate::enter).
    pub fn try_enter_on(&self, cpu: usize) -> Option<GateGuard<'_, W>> {
        let slot = cpu % SLOTS;
        let word = &self.slots[slot];
        let mut current = word.load(Ordering::Relaxed);
        let parity = loop {
            let parity = parity(current);
            assert!(
                count(current, parity) < FIELD_MAX,
                "mpsafe_barrier::Gate: more than {FIELD_MAX} invocations in flight on one slot"
            );
            // Acquire: if a barrier's flip of this word comes first, we read
            // it (or a later RMW in its release sequence) and so see
            // everything the barrier's caller did before it: `disable()`, a
            // cleared RUNNING flag. If we come first, we are counted in the
            // counter the flip retires and the barrier waits for us.
            match word.compare_exchange_weak(
                current,
                current + one(parity),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break parity,
                Err(now) => current = now,
            }
        };
        let guard = GateGuard {
            gate: self,
            slot,
            parity,
        };
        // Acquire, paired with `enable`'s Release: an invocation that finds
        // the gate enabled by `enable()` sees what was set up before it (a
        // fresh ring). `disable()` needs no pairing here: the Acquire CAS
        // above orders it (see there); one that no barrier has followed yet
        // races with this invocation, which is then legitimately in flight.
        if self.control.disabled.load(Ordering::Acquire) != 0 {
            drop(guard);
            return None;
        }
        Some(guard)
    }

    /// Returns once every invocation that started before this call has
    /// finished (and everything it did is visible to the caller).
    ///
    /// Invocations that start during the barrier do not delay it. To keep new
    /// ones away from what you are about to free, [`disable`](Gate::disable)
    /// the gate or clear a flag the handler checks inside the gate *before*
    /// calling `barrier`: every invocation the barrier does not wait for is
    /// guaranteed to see that write.
    ///
    /// Blocks (spin, then sleep with `W`). Barriers on the same gate take
    /// turns.
    ///
    /// # Deadlocks
    ///
    /// Must not be called from inside an invocation of this gate.
    pub fn barrier(&self) {
        // Barriers take turns: the flip-and-drain of one must be complete
        // before the next flips the same counters back. The serializer's
        // Acquire entry and Release exit order the previous drain before our
        // flips.
        let turn = self.control.turn.enter();
        let mut retired = 0;
        for word in &self.slots {
            // Release: an invocation that reads this flip (its CAS comes after
            // it) sees what our caller did before calling `barrier`. Taking the
            // barrier lock (Acquire) ordered us after the previous barrier's
            // drain, so the counter we make current is empty.
            retired = parity(word.fetch_xor(PARITY, Ordering::Release));
        }
        // The wake word is read first (Acquire, in `wait_until`, paired with
        // the Release bump in `GateGuard::drop`: if we read a bump, we also
        // read the decrement made before it, so we never sleep on a stale
        // count), then the counters. No sleepers bit: the last invocation out
        // of a retired counter always bumps and wakes, and the sleep only
        // begins if no bump happened since the read.
        wait_until::<W>(&self.control.wake, 0, |_seq| {
            // Acquire, paired with the invocations' Release decrements: once
            // a counter reads zero, everything they did happens-before us.
            let drained = self
                .slots
                .iter()
                .all(|word| count(word.load(Ordering::Acquire), retired) == 0);
            if drained { Poll::Ready } else { Poll::Sleep }
        });
        drop(turn);
    }

    /// Stops new invocations: from now on [`enter`](Gate::enter) skips its
    /// closure and returns `None`.
    ///
    /// Does not wait for invocations in flight: follow it with
    /// [`barrier`](Gate::barrier). Never blocks; callable from a handler.
    /// Disabling twice is the same as once (not a nesting count).
    pub fn disable(&self) {
        // Relaxed: an invocation that misses this store is either in flight
        // (and a later barrier waits for it) or synchronized with the
        // barrier's Release flip, which orders this store before it.
        self.control.disabled.store(1, Ordering::Relaxed);
    }

    /// Lets invocations run again.
    ///
    /// Publishes: an invocation that finds the gate enabled by this call sees
    /// everything the caller did before it, so set up what handlers touch (a
    /// freshly allocated ring) first, then enable.
    pub fn enable(&self) {
        // Release: pairs with the Acquire load in `try_enter_on`.
        self.control.disabled.store(0, Ordering::Release);
    }

    /// Whether the gate lets invocations run (a hint: it may change at once).
    pub fn is_enabled(&self) -> bool {
        self.control.disabled.load(Ordering::Relaxed) == 0
    }

    /// Called by the last invocation to leave a retired counter.
    #[cold]
    fn wake_barrier(&self) {
        // Release: see `barrier`'s Acquire load of `wake`.
        self.control.wake.fetch_add(1, Ordering::Release);
        // Only the barrier holding the lock sleeps on `wake`.
        W::wake_one(&self.control.wake);
    }
}

impl<W: Wait> Default for Gate<W> {
    fn default() -> Self {
        Self::new()
    }
}

impl<W: Wait> fmt::Debug for Gate<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_flight: u32 = self
            .slots
            .iter()
            .map(|word| {
                let word = word.load(Ordering::Relaxed);
                count(word, 0) + count(word, 1)
            })
            .sum();
        f.debug_struct("Gate")
            .field("enabled", &self.is_enabled())
            .field("in_flight", &in_flight)
            .finish_non_exhaustive()
    }
}

/// One invocation in flight through a [`Gate`]; dropping it ends the
/// invocation (and wakes a barrier waiting for it).
///
/// Made by [`Gate::try_enter`]. A barrier waits for the guard, so keep it for
/// exactly as long as the handler touches what the barrier protects.
#[must_use = "the invocation ends when the guard is dropped"]
pub struct GateGuard<'a, W: Wait = DefaultWait> {
    gate: &'a Gate<W>,
    slot: usize,
    parity: u32,
}

impl<W: Wait> GateGuard<'_, W> {
    /// The gate this invocation runs through.
    pub fn gate(&self) -> &Gate<W> {
        self.gate
    }
}

impl<W: Wait> Drop for GateGuard<'_, W> {
    #[inline]
    fn drop(&mut self) {
        // Release: everything the invocation did happens-before the barrier's
        // Acquire load that sees this counter drained.
        let prev = self.gate.slots[self.slot].fetch_sub(one(self.parity), Ordering::Release);
        // Our counter is no longer the current one: a barrier flipped it and
        // is waiting for it to drain (it cannot finish before we leave). If we
        // were the last one in it, wake the barrier.
        if count(prev, self.parity) == 1 && parity(prev) != self.parity {
            self.gate.wake_barrier();
        }
    }
}

impl<W: Wait> fmt::Debug for GateGuard<'_, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GateGuard")
            .field("slot", &self.slot)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicBool, AtomicUsize};
    use std::{format, thread};

    static_assertions::assert_impl_all!(Gate: Send, Sync);
    static_assertions::const_assert!(SLOTS.is_power_of_two());

    /// The parity every slot has been flipped to (white-box), or `None` while a
    /// barrier is half-way through flipping.
    fn current_parity(gate: &Gate) -> Option<u32> {
        let first = parity(gate.slots[0].load(Ordering::Relaxed));
        let all = gate.slots.iter();
        all.map(|w| parity(w.load(Ordering::Relaxed)))
            .all(|p| p == first)
            .then_some(first)
    }

    #[test]
    fn enter_runs_and_disable_skips() {
        let gate: Gate = Gate::new();
        assert_eq!(gate.enter(|| 5), Some(5));
        gate.disable();
        assert!(!gate.is_enabled());
        assert_eq!(gate.enter(|| unreachable!()), None::<()>);
        assert!(gate.try_enter().is_none());
        gate.enable();
        assert_eq!(gate.enter(|| 6), Some(6));
        assert!(format!("{gate:?}").contains("in_flight: 0"));
    }

    #[test]
    fn barrier_on_idle_gate_returns() {
        let gate: Gate = Gate::new();
        gate.barrier();
        gate.barrier();
        gate.disable();
        gate.barrier();
        assert_eq!(current_parity(&gate), Some(1));
    }

    #[test]
    fn nested_and_every_slot() {
        let gate: Gate = Gate::new();
        let guards: [_; 2 * SLOTS] = core::array::from_fn(|cpu| gate.try_enter_on(cpu).unwrap());
        assert!(format!("{gate:?}").contains(&format!("in_flight: {}", 2 * SLOTS)));
        drop(guards);
        gate.barrier();
    }

    #[test]
    fn panic_in_handler_leaves_the_gate() {
        let gate: Gate = Gate::new();
        let result = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
            gate.enter(|| panic!("handler bug"))
        }));
        assert!(result.is_err());
        gate.barrier();
        assert!(format!("{gate:?}").contains("in_flight: 0"));
    }

    /// The barrier waits for an invocation in flight on another slot, and not
    /// for one that starts after its flip, even though that one stays in
    /// flight until the barrier has returned (no starvation).
    #[test]
    fn barrier_waits_for_old_not_new() {
        let gate: Gate = Gate::new();
        let old = gate.try_enter_on(3).unwrap();
        let returned = AtomicBool::new(false);
        thread::scope(|s| {
            let barrier = s.spawn(|| {
                gate.barrier();
                returned.store(true, Ordering::Release);
            });
            // Wait for the barrier's flip of every slot (white-box), then
            // start a new invocation.
            while current_parity(&gate) != Some(1) {
                thread::yield_now();
            }
            let new = gate.try_enter_on(3).unwrap();
            assert!(!returned.load(Ordering::Acquire), "barrier ignored `old`");
            drop(old);
            barrier.join().unwrap();
            assert!(returned.load(Ordering::Acquire));
            drop(new);
        });
        gate.barrier();
    }

    #[test]
    fn concurrent_barriers_take_turns() {
        let gate: Gate = Gate::new();
        let inside = AtomicUsize::new(0);
        let rounds = if cfg!(miri) { 5 } else { 200 };
        thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..rounds {
                        gate.barrier();
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..rounds * 4 {
                    gate.enter(|| inside.fetch_add(1, Ordering::Relaxed));
                }
            });
        });
        assert_eq!(inside.load(Ordering::Relaxed), rounds * 4);
        assert!(format!("{gate:?}").contains("in_flight: 0"));
    }

    #[test]
    fn a_thread_keeps_its_slot() {
        let a = slot_hint();
        assert!(a < SLOTS);
        assert_eq!(a, slot_hint());
        assert!(thread::spawn(slot_hint).join().unwrap() < SLOTS);
    }

    #[test]
    #[cfg_attr(miri, ignore = "32768 CAS under Miri is slow; nothing Miri-specific")]
    #[should_panic(expected = "invocations in flight on one slot")]
    fn counter_overflow_panics() {
        let gate: Gate = Gate::new();
        for _ in 0..=FIELD_MAX {
            core::mem::forget(gate.try_enter_on(0));
        }
    }
}
