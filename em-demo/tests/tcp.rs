//! TCP between em0 and em1 on the simulator ([`tcp::run_sim`]): two
//! simulated 8254x devices joined by a cable, each with its own heap-backed
//! pool and its own em driver and smoltcp interface. Every flow is checked
//! end to end, and every buffer of both pools after both drivers are
//! detached: the run fails otherwise.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::time::Duration;

use mpsafe_em_demo::tcp::{self, Meddle, Report};
use mpsafe_em_sim::Mode;
use mpsafe_em_sim::harness::with_watchdog;

/// The deadline of each run: a failure, never a sleep.
const LIMIT: Duration = Duration::from_secs(300);

/// `n` scaled by `MPSAFE_STRESS_SCALE` (percent, default 100): the
/// sanitizer runs shrink byte counts with it.
fn scaled(n: u64) -> u64 {
    let pct: u64 = std::env::var("MPSAFE_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    (n * pct / 100).max(1)
}

/// The bulk flow (em0 to em1, `MPSAFE_EM_TCP_MIB` MiB, default 8) and four
/// smaller concurrent ones, two each way.
fn flows() -> Vec<tcp::Flow> {
    let mib = std::env::var("MPSAFE_EM_TCP_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    tcp::flows(scaled(mib << 20), scaled(512 << 10))
}

/// Runs the flows between two cabled simulated NICs starting in `mode`;
/// panics on a failed run or a buffer not back in its pool.
fn run(mode: Mode, meddle: Meddle) -> Report {
    let r = tcp::run_sim(mode, &flows(), meddle, LIMIT)
        .unwrap_or_else(|e| panic!("{mode}, {meddle:?}: {e}"))
        .tcp;
    println!(
        "tcp {mode} {meddle:?}: {} bytes in {:.3} s = {:.1} Mbit/s, {:.2} ms CPU/MB; \
         switches {}, up/down cycles {}, lost while down {}",
        r.bytes,
        r.elapsed.as_secs_f64(),
        r.mbit_per_s(),
        r.cpu_ms_per_mb().unwrap_or(f64::NAN),
        r.switches,
        r.cycles,
        r.lost_down,
    );
    r
}

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn bulk_and_concurrent_transfers_in_every_mode() {
    with_watchdog(LIMIT * 5, || {
        for mode in Mode::ALL {
            run(mode, Meddle::None);
        }
    });
}

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn transfers_survive_mode_switches_on_both_nics() {
    with_watchdog(LIMIT * 2, || {
        for mode in [Mode::BigLock, Mode::Serialized] {
            let r = run(mode, Meddle::Switch(12));
            assert!(r.switches >= 12, "{r:?}");
        }
    });
}

#[test]
#[cfg_attr(miri, ignore = "threads, devices and megabytes: too slow under Miri")]
fn transfers_survive_up_down_cycles_of_either_nic() {
    with_watchdog(LIMIT * 2, || {
        for mode in [Mode::Mpsafe, Mode::RxUnlocked] {
            let r = run(mode, Meddle::UpDown(4));
            assert_eq!(r.cycles, 4, "{r:?}");
            // Frames were lost while a NIC was down: TCP recovered.
            assert!(r.lost_down > 0, "{r:?}");
        }
    });
}
