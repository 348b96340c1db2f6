//! The platform self-test.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::console::kprintln;
use crate::cpu::{CPUS, online_cpus};
use crate::madt::Topology;
use crate::services::timeout::ticks;
use crate::services::wait::sleep_until;
use crate::{EXIT_FAIL, EXIT_PASS, smp};

/// Runs the self-test; returns the exit status.
pub(crate) fn run(topo: &Topology, _cmdline: &str) -> u32 {
    for d in crate::pci::scan_bus0() {
        let (line, pin) = d.interrupt();
        let bar0 = d.bar0_mem().unwrap_or(0);
        if pin == 0 {
            kprintln!(
                "pci: 00:{:02x}.{} {:04x}:{:04x} BAR0 {bar0:#x}",
                d.slot,
                d.func,
                d.vendor,
                d.device
            );
        } else {
            kprintln!(
                "pci: 00:{:02x}.{} {:04x}:{:04x} BAR0 {bar0:#x} INT{} line {line} -> GSI {}",
                d.slot,
                d.func,
                d.vendor,
                d.device,
                char::from(b'@' + pin),
                topo.gsi_for_isa_irq(line),
            );
        }
    }
    if online_cpus() < 2 {
        kprintln!("selftest: FAIL: {} CPU online, need 2", online_cpus());
        return EXIT_FAIL;
    }
    let start = ticks();
    sleep_until(|| CPUS[1].heartbeat.load(Ordering::Relaxed) >= 10 && ticks() >= start + 10);
    let ran_on = Arc::new(AtomicUsize::new(usize::MAX));
    let r = Arc::clone(&ran_on);
    smp::run_on(1, move || r.store(crate::cpu::cpu_id(), Ordering::Relaxed)).wait();
    kprintln!(
        "selftest: ticks CPU0 {} CPU1 {}; job ran on CPU {}",
        CPUS[0].heartbeat.load(Ordering::Relaxed),
        CPUS[1].heartbeat.load(Ordering::Relaxed),
        ran_on.load(Ordering::Relaxed)
    );
    let (used, free) = crate::heap::usage();
    kprintln!("selftest: heap {used} bytes used, {free} free");
    if ran_on.load(Ordering::Relaxed) != 1 {
        return EXIT_FAIL;
    }
    EXIT_PASS
}
