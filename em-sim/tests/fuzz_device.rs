//! The device as untrusted input (issue 12), seeded: the driver against
//! [`mpsafe_em_sim::hostile::Hostile`], a device that writes random descriptor
//! status, lengths, error bits and buffer addresses, sets DD on slots it was
//! never given, moves its head registers anywhere and raises random
//! interrupt causes, while the driver transmits, goes down and up, resizes
//! its rings and switches mode. The driver must never panic, index out of
//! range, free a buffer twice or lose one; every bad descriptor is counted
//! and dropped, and the stack only ever sees well-formed frames
//! ([`mpsafe_em_sim::hostile::run`] checks all of it). Deterministic: one
//! thread, a seeded generator per run, so a failing seed reproduces. The
//! same run under a fuzzer: `fuzz/fuzz_targets/em_device.rs`.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod common;
use common::scale;

use mpsafe_em_sim::hostile;

#[test]
#[cfg_attr(miri, ignore = "thousands of steps: too slow under Miri")]
fn a_hostile_device_cannot_break_the_driver() {
    let runs = (20 * scale() / 100).max(4);
    let mut bad = 0;
    for seed in 0..runs {
        let mut x = (0x5eed_0000 + seed) | 1;
        let mut xorshift = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Some(x)
        };
        let out = hostile::run(&mut xorshift, 4000);
        assert_eq!(out.steps, 4000, "seed {seed}");
        bad += out.rx_errors;
    }
    assert!(
        bad > 0,
        "no bad descriptor was ever counted: the fuzzer is not biting"
    );
}

/// The same device acting on its own thread, its line firing all the time,
/// while the driver transmits, runs big-lock starts, switches modes, goes
/// down and up and resizes on three other threads ([`hostile::run_concurrent`]):
/// the races a single thread cannot reach (a switch meeting a stray
/// interrupt, a big-lock start meeting a switch).
#[test]
#[cfg_attr(miri, ignore = "threads: too slow under Miri")]
fn a_hostile_device_firing_during_switches_and_cycles_cannot_break_the_driver() {
    let runs = (8 * scale() / 100).max(2);
    let mut packets = 0;
    for seed in 0..runs {
        let out = hostile::run_concurrent(0x5eed_c0c0 + seed, 60);
        packets += out.rx_packets;
    }
    assert!(packets > 0, "no frame ever reached the stack");
}

#[test]
fn a_short_input_ends_the_run_cleanly() {
    let mut bytes = [7u64, 3, 99, 42].into_iter();
    let out = hostile::run(&mut || bytes.next(), 1000);
    assert!(out.steps <= 5, "{out:?}");
}
