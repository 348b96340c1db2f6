//! loom model of the doorbell's "tx room" handshake: a device that finds
//! the send queue full and sleeps is always woken by the driver's next room.
//!
//! Run with
//! `RUSTFLAGS="--cfg mpsafe_loom -C debug-assertions" LOOM_MAX_PREEMPTIONS=2 cargo test --release --features loom -p mpsafe-smoltcp --test loom_doorbell`.
//!
//! Under `cfg(mpsafe_loom)` the crate's `Doorbell` takes its atomics and
//! fences from loom (`src/sync.rs`), so the model runs the real
//! `want_tx`/`tx_room`. The queue's fullness is a relaxed atomic here, the
//! weakest room check a [`TxQueue`](mpsafe_smoltcp::TxQueue) may have (an
//! `IfQueue` checks under its lock, which orders more than this needs).
//!
//! Weakening checked (weaken, see the model fail, restore):
//! - `Doorbell::want_tx`'s `fence(SeqCst)` removed:
//!   `a_sleeping_device_is_always_woken` fails ("the device sleeps and
//!   nobody wakes it").
//! - `Doorbell::tx_room`'s `fence(SeqCst)` removed: the same.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]
#![cfg(mpsafe_loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use mpsafe_smoltcp::{Doorbell, Notify};

/// Counts wake-ups.
struct Count(AtomicUsize);

impl Notify for Count {
    fn notify(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_sleeping_device_is_always_woken() {
    loom::model(|| {
        let bell = Arc::new(Doorbell::new(Count(AtomicUsize::new(0))));
        // A send queue of one slot, full.
        let queued = Arc::new(AtomicUsize::new(1));

        let driver = {
            let (bell, queued) = (bell.clone(), queued.clone());
            loom::thread::spawn(move || {
                // The start routine takes the packet: room. Then the doorbell.
                queued.store(0, Ordering::Relaxed);
                bell.tx_room();
            })
        };

        // The device's `transmit`: full, mark, check again.
        let sleeps = if queued.load(Ordering::Relaxed) == 1 {
            bell.want_tx();
            queued.load(Ordering::Relaxed) == 1
        } else {
            false
        };

        driver.join().unwrap();
        if sleeps {
            assert!(
                bell.notifier().0.load(Ordering::Relaxed) >= 1,
                "the device sleeps and nobody wakes it"
            );
        }
    });
}

#[test]
fn a_mark_is_answered_once() {
    loom::model(|| {
        let bell = Arc::new(Doorbell::new(Count(AtomicUsize::new(0))));
        bell.want_tx();
        let other = {
            let bell = bell.clone();
            loom::thread::spawn(move || bell.tx_room())
        };
        bell.tx_room();
        other.join().unwrap();
        // Two start passes on two CPUs, one mark: one wake-up.
        assert_eq!(bell.notifier().0.load(Ordering::Relaxed), 1);
        assert!(!bell.tx_wanted());
    });
}
