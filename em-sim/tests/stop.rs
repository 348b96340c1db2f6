//! `down` stops the device's DMA even on a device whose `CTRL.RST` does not:
//! QEMU's e1000 only clears the bit, leaving the receive and transmit units
//! enabled on their rings. The driver disables both units before the reset,
//! as OpenBSD's `em_reset_hw` does; without that, a stopped receiver keeps
//! writing arriving frames into the descriptors it still holds, whose
//! buffers `down` has just freed.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::{attach_sim, eventually};

use std::time::Duration;

use mpsafe_em_sim::{DeviceConfig, EmConfig, Mode, WireRate};

#[test]
#[cfg_attr(miri, ignore = "device threads: too slow under Miri")]
fn a_stopped_receiver_writes_nothing_when_the_reset_only_self_clears() {
    for mode in Mode::ALL {
        let (_pool, dev, sink, em) = attach_sim(
            4096,
            DeviceConfig {
                // The wire keeps offering frames throughout, at a rate the
                // driver keeps up with, so its ring is posted when it stops.
                wire: WireRate::Pps(100_000),
                reset_only_self_clears: true,
                ..DeviceConfig::default()
            },
            EmConfig::new(mode),
        );
        // Several cycles: each stops the receiver at a random point, and a
        // point where the driver has every descriptor back (none posted)
        // would hide a receiver left enabled.
        for cycle in 0..5 {
            let received = sink.packets();
            em.up().unwrap();
            assert!(
                eventually(|| sink.packets() >= received + 200),
                "{mode}: receiving"
            );
            em.down();
            let delivered = dev.stats().rx_delivered;
            // Some 5,000 frames' worth of wire time: a receiver left enabled
            // on its ring fills the descriptors it holds within a few ms.
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(
                (
                    dev.stats().rx_delivered - delivered,
                    em.stats().pool.dma_errors
                ),
                (0, 0),
                "{mode}, cycle {cycle}: frames written by the device after down (into freed buffers)"
            );
        }
        let s = em.stats();
        assert_eq!((s.pool.in_use(), s.pool.leaked), (0, 0), "{mode}");
        drop(em);
        dev.shutdown();
    }
}
