//! Each mode, a bounded run with traffic both ways, then `down`: nothing lost.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::time::Duration;

use mpsafe_em_sim::harness::{RunConfig, run};
use mpsafe_em_sim::{Mode, Path, WireRate};

fn scale() -> u32 {
    std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

fn bounded(mode: Mode, wire: WireRate, loopback: bool) {
    let mut cfg = RunConfig::new(mode);
    cfg.duration = Duration::from_millis(u64::from(10 * scale()).clamp(100, 1000));
    cfg.warmup = Duration::from_millis(100);
    cfg.wire = wire;
    cfg.tx_pps = 200_000;
    cfg.loopback = loopback;
    cfg.cycles = 3;
    let r = run(&cfg, |_| {}).unwrap();
    r.conservation()
        .unwrap_or_else(|e| panic!("{mode}: {e}\n{}", r.after_down));
    assert!(r.rx_total > 0, "{mode}: no traffic received");
    assert!(r.after_down.tx_completed > 0, "{mode}: nothing transmitted");
    assert_eq!(r.cycles, 3);
    match mode {
        Mode::Mpsafe | Mode::Serialized => assert_eq!(r.big_lock.total(), 0, "{}", r.big_lock),
        Mode::RxUnlocked => {
            assert_eq!(r.big_lock.get(Path::Rx), 0);
            assert_eq!(r.big_lock.get(Path::Interrupt), 0);
            assert!(r.big_lock.get(Path::TxEof) > 0);
        }
        Mode::BigLock => assert!(r.big_lock.get(Path::Interrupt) > 0),
    }
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn biglock_conserves() {
    bounded(Mode::BigLock, WireRate::Pps(300_000), false);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn rx_unlocked_conserves() {
    bounded(Mode::RxUnlocked, WireRate::Pps(300_000), false);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn mpsafe_conserves() {
    bounded(Mode::Mpsafe, WireRate::Pps(300_000), false);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn serialized_conserves() {
    bounded(Mode::Serialized, WireRate::Pps(300_000), false);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn serialized_unlimited_with_loopback_conserves() {
    bounded(Mode::Serialized, WireRate::Unlimited, true);
}

#[test]
#[cfg_attr(miri, ignore = "threads and timers: too slow under Miri")]
fn mpsafe_unlimited_with_loopback_conserves() {
    bounded(Mode::Mpsafe, WireRate::Unlimited, true);
}
