//! The crate's documented accessor pattern for serializer-protected data
//! (`ring_mut(&self, &mut Serialized) -> &mut T`), exercised the way a driver
//! uses it: nested lock-held calls that pass the proof down, the interrupt
//! handler path, the "serialize all" path, and two threads contending.
//!
//! Meant for Miri (`cargo +nightly miri test -p mpsafe-serializer --test
//! serialized_access`), which checks that no two `&mut` to the ring are ever
//! live at once. The earlier pattern took `&Serialized` and let two calls with
//! one guard produce aliasing `&mut`; with `&mut Serialized` that code no
//! longer compiles (see the `compile_fail` example in the crate docs).
#![cfg(all(not(mpsafe_loom), feature = "std"))]

use core::cell::UnsafeCell;
use mpsafe_serializer::{Serialized, Serializer, enter_all};

struct Driver {
    serializer: Serializer,
    ring: UnsafeCell<Vec<u32>>,
}

// SAFETY: `ring` is only reached through `ring_mut`, which needs the proof of
// being inside `serializer`.
unsafe impl Sync for Driver {}

impl Driver {
    fn new() -> Self {
        Self {
            serializer: Serializer::new(),
            ring: UnsafeCell::new(Vec::new()),
        }
    }

    fn ring_mut<'g>(&'g self, guard: &'g mut Serialized<'_>) -> &'g mut Vec<u32> {
        assert!(core::ptr::eq(guard.serializer(), &self.serializer));
        // SAFETY: inside `serializer` (the guard is `!Send`), and `guard` stays
        // mutably borrowed while the returned reference lives.
        unsafe { &mut *self.ring.get() }
    }

    fn start(&self, value: u32) {
        let mut guard = self.serializer.enter();
        self.start_locked(&mut guard, value);
    }

    /// Uses the ring, then passes the proof down to another lock-held call,
    /// then uses the ring again: each borrow ends before the next begins.
    fn start_locked(&self, guard: &mut Serialized<'_>, value: u32) {
        self.ring_mut(guard).push(value);
        self.reap_locked(guard);
        let ring = self.ring_mut(guard);
        ring.push(value);
    }

    fn reap_locked(&self, guard: &mut Serialized<'_>) {
        let ring = self.ring_mut(guard);
        if ring.len() > 8 {
            ring.drain(..4);
        }
    }

    fn len(&self) -> usize {
        self.ring_mut(&mut self.serializer.enter()).len()
    }
}

#[test]
fn nested_lock_held_calls_and_the_handler_path() {
    let drv = Driver::new();
    drv.start(1);
    assert_eq!(
        drv.serializer.handler_call(|g| drv.start_locked(g, 2)),
        Some(())
    );
    assert_eq!(
        drv.serializer.handler_try(|g| drv.ring_mut(g).len()),
        Some(4)
    );
    assert_eq!(drv.len(), 4);
}

#[test]
fn serialize_all_lends_a_mutable_proof() {
    let drivers = [Driver::new(), Driver::new()];
    let serializers: [Serializer; 2] = [Serializer::new(), Serializer::new()];
    let mut all = enter_all(&serializers);
    for (i, _) in drivers.iter().enumerate() {
        all.with(i, |proof| {
            assert!(core::ptr::eq(proof.serializer(), &serializers[i]))
        });
    }
    drop(all);
    drivers[0].start(7);
    assert_eq!(drivers[0].len(), 2);
}

#[test]
fn two_threads_never_alias_the_ring() {
    let drv = Driver::new();
    let rounds = if cfg!(miri) { 10 } else { 1000 };
    std::thread::scope(|s| {
        for t in 0..2 {
            let drv = &drv;
            s.spawn(move || {
                for i in 0..rounds {
                    if i % 2 == 0 {
                        drv.start(t);
                    } else {
                        drv.serializer.handler_call(|g| drv.start_locked(g, t));
                    }
                }
            });
        }
    });
    assert!(drv.len() <= 9);
}
