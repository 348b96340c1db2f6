//! `mpsafe-kernel`: a minimal x86-64 SMP kernel written to host the em
//! driver on QEMU, with real interrupts on two CPUs.
//!
//! QEMU boots it straight from `-kernel` (a PVH ELF, `boot`); it brings
//! up long mode, a serial console (`console`), a heap (`heap`), the GDT,
//! TSS and IDT (`cpu`), reads the interrupt topology from ACPI's MADT
//! (`madt`), programs the local APICs and the IOAPIC (`apic`), starts
//! the second CPU (`smp`), and offers the kernel services a driver needs
//! (`services`): an IPL-raising spin mutex, the big lock, sleeping waits,
//! timeouts, deferred tasks, interrupt establishment, the current CPU. The
//! `selftest` then proves them with real interrupts on both CPUs from
//! QEMU's two e1000 NICs, joined by a hub and nothing else, and the run
//! ends through `isa-debug-exit` with the verdict.
//!
//! `cargo xtask kernel` builds it for `x86_64-unknown-none` and boots it;
//! see the README. Built for the host (as `cargo build --workspace` does),
//! this crate is only a stub that says so.

#![no_std]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(not(target_os = "none"))]
extern crate std;

/// Host build: the kernel runs only under QEMU.
#[cfg(not(target_os = "none"))]
fn main() {
    std::eprintln!(
        "mpsafe-kernel is a bare-metal kernel for x86_64-unknown-none; run it with `cargo xtask kernel`"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod apic;
#[cfg(target_os = "none")]
mod arch;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cpu;
#[cfg(target_os = "none")]
pub mod em;
#[cfg(target_os = "none")]
mod heap;
#[cfg(target_os = "none")]
mod madt;
#[cfg(target_os = "none")]
mod pci;
#[cfg(target_os = "none")]
mod selftest;
#[cfg(target_os = "none")]
pub mod services;
#[cfg(target_os = "none")]
mod smp;

#[cfg(target_os = "none")]
pub use kernel::*;

/// The run's verdicts, as written to `isa-debug-exit` (QEMU then exits with
/// `(status << 1) | 1`).
#[cfg(target_os = "none")]
mod kernel {
    use core::sync::atomic::Ordering;

    use crate::console::{kprintln, print_emergency};
    use crate::cpu::{self, CPUS};
    use crate::services::{HZ, VEC_TIMER};
    use crate::{apic, arch, boot, heap, madt, selftest, smp};

    /// Every check held.
    pub const EXIT_PASS: u32 = 0;
    /// A self-test check failed.
    pub const EXIT_FAIL: u32 = 1;
    /// A panic.
    pub const EXIT_PANIC: u32 = 2;
    /// The watchdog found a CPU stuck.
    pub const EXIT_WATCHDOG: u32 = 3;
    /// A CPU exception.
    pub const EXIT_EXCEPTION: u32 = 4;

    /// The highest physical address the boot page tables map (4 GiB).
    pub(crate) const IDENTITY_MAPPED: u64 = 4 << 30;

    /// The line `cargo xtask kernel` looks for, followed by the status.
    pub(crate) const EXIT_MARK: &str = "MPSAFE-KERNEL-EXIT ";

    /// Ends the run with `status`, announcing it on the console first.
    pub(crate) fn exit(status: u32) -> ! {
        print_emergency(format_args!("{EXIT_MARK}{status}\n"));
        arch::exit_qemu(status)
    }

    /// The watchdog found `cpu` stuck: end the run.
    pub(crate) fn watchdog_fired(cpu: usize) -> ! {
        print_emergency(format_args!("watchdog: ending the run (CPU {cpu} stuck)\n"));
        exit(EXIT_WATCHDOG)
    }

    /// The boot CPU's entry from `boot`, in long mode, interrupts masked.
    pub(crate) extern "C" fn kmain_bsp(_start_info: u32) -> ! {
        let tsc0 = arch::rdtsc();
        crate::console::init();
        kprintln!("mpsafe-kernel: booted (PVH, long mode)");
        // SAFETY: first thing on the boot CPU, before low memory is reused.
        let info = match unsafe { boot::boot_info() } {
            Ok(i) => i,
            Err(e) => fail_boot(e),
        };
        let Some((ram, len)) = info.free_ram else {
            fail_boot("no free RAM above the kernel in the memory map")
        };
        // SAFETY: the region is RAM above the kernel image that nothing else
        // uses; once.
        let heap_len = unsafe { heap::init(ram, len) };
        cpu::init_this_cpu(0, 0);
        crate::services::witness_init();
        let topo = match madt::read(info.rsdp) {
            Ok(t) => t,
            Err(e) => fail_boot(e),
        };
        apic::set_lapic_base(topo.lapic_base as usize);
        let bsp_apic = apic::lapic_id();
        CPUS[0].apic_id.store(bsp_apic, Ordering::Relaxed);
        apic::mask_8259();
        apic::lapic_init();
        let pins = apic::ioapic_init(topo.ioapic.1 as usize, topo.ioapic.2);
        kprintln!(
            "mpsafe-kernel: heap {} MiB at {ram:#x}; MADT: CPUs (APIC ids) {:?}, LAPIC {:#x}, IOAPIC id {} at {:#x} ({pins} pins from GSI {}), {} ISA overrides; cmdline {:?}",
            heap_len >> 20,
            topo.apic_ids,
            topo.lapic_base,
            topo.ioapic.0,
            topo.ioapic.1,
            topo.ioapic.2,
            topo.overrides.len(),
            info.cmdline(),
        );
        apic::calibrate(HZ);
        apic::start_timer(VEC_TIMER);
        CPUS[0].online.store(true, Ordering::Release);
        arch::sti();
        let cpus = smp::start_aps(&topo.apic_ids, bsp_apic);
        let tsc_per_us = apic::TSC_PER_US.load(Ordering::Relaxed);
        kprintln!(
            "mpsafe-kernel: {cpus} CPUs online; timer {} counts/tick at {HZ} Hz; TSC {tsc_per_us} MHz; boot took {} ms",
            apic::TIMER_PER_TICK.load(Ordering::Relaxed),
            (arch::rdtsc() - tsc0) / tsc_per_us / 1000,
        );
        if mpsafe_order::witness::ENABLED {
            kprintln!(
                "mpsafe-kernel: lock-order witness on (debug build): one held-lock stack per CPU, interrupt handlers' acquisitions on the stack of the CPU they interrupted"
            );
        }
        let status = selftest::run(&topo, info.cmdline());
        exit(status)
    }

    /// An application processor's entry from `boot`, in long mode on its own
    /// stack, interrupts masked.
    pub(crate) extern "C" fn kmain_ap(index: u32) -> ! {
        let index = index as usize;
        cpu::init_this_cpu(index, apic::lapic_id());
        apic::lapic_init();
        apic::start_timer(VEC_TIMER);
        CPUS[index].online.store(true, Ordering::Release);
        arch::sti();
        smp::ap_idle(index)
    }

    fn fail_boot(why: &str) -> ! {
        print_emergency(format_args!("mpsafe-kernel: boot failed: {why}\n"));
        exit(EXIT_FAIL)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        arch::cli();
        print_emergency(format_args!("\nPANIC on CPU {}: {info}\n", cpu::cpu_id()));
        exit(EXIT_PANIC)
    }
}
