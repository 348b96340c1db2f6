//! loom models of the mode switch (`Em::set_mode`) against the paths it
//! quiesces: the interrupt handler and the refill timeout.
#![cfg(all(mpsafe_loom, feature = "std"))]

mod support;

use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;
use mpsafe_em::Mode;
use support::{config, model, rig, spawn};

/// A stray interrupt (a shared line: it fires whatever the mask) at any
/// point of a switch from `from` to `Serialized`. One that enters the gate
/// after the switch's interrupt barrier must do nothing: the switch holds
/// the barrier open (the hook) until that handler has returned, and a
/// handler that reads `ICR` meanwhile ran in the old mode beside the new.
fn stray_interrupt_across_a_switch(from: Mode) {
    model(move || {
        let r = Arc::new(rig(config(from), 3));
        let done = Arc::new(AtomicBool::new(false));
        {
            let (probe, done) = (std::sync::Arc::clone(&r.probe), Arc::clone(&done));
            r.nic.after_intr_barrier(move || {
                probe.open_window(|| {
                    while !done.load(Ordering::Acquire) {
                        thread::yield_now();
                    }
                });
            });
        }
        let handler = {
            let (r, done) = (Arc::clone(&r), Arc::clone(&done));
            spawn(move || {
                r.nic.fire();
                done.store(true, Ordering::Release);
            })
        };
        r.em.set_mode(Mode::Serialized).unwrap();
        handler.join().unwrap();
        assert_eq!(r.em.mode(), Mode::Serialized);
        r.down_and_check(0);
    });
}

#[test]
fn a_stray_interrupt_across_biglock_to_serialized_does_nothing() {
    stray_interrupt_across_a_switch(Mode::BigLock);
}

#[test]
fn a_stray_interrupt_across_mpsafe_to_serialized_does_nothing() {
    stray_interrupt_across_a_switch(Mode::Mpsafe);
}
