//! `em-uio`: the em driver's test on real 8254x devices bound to
//! `uio_pci_generic`, the guest side of `cargo xtask qemu`.
//!
//! Finds the first two 8086:100e functions (em0, em1), which must be wired
//! to each other (QEMU: two `e1000` on one hub), and runs:
//!
//! - `smoke`: one frame em0 → em1 by hand, no driver;
//! - `held`: frames sent to em1 while it is down survive a re-arm of its
//!   interrupt line during the down;
//! - `driver`: both interfaces sending to each other in every mode, then
//!   two senders pinned to the two CPUs both sending onto em0, with down/up
//!   cycles and runtime switches under load, every frame and buffer
//!   accounted for;
//! - `tcp`: smoltcp above the driver on each NIC, a checked bulk transfer
//!   and four small flows at once, in every mode, switching modes and with
//!   up/down cycles, every buffer back in its pool after each run;
//!
//! and exits non-zero on any failure. Needs root.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod drive;
mod figure;
mod held;
mod smoke;
mod tcp;
mod traffic;
mod two_cpu;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use mpsafe_em_sim::{Em, EmConfig, KernelLock, Mbuf, Mode, Stack};

use mpsafe_em_uio::{DEVICE_82540EM, UioConfig, UioDevice, VENDOR_INTEL, find};

use crate::two_cpu::Phase;

/// The TCP test's bulk flow, in MiB.
const TCP_MIB: u64 = 32;

fn main() -> ExitCode {
    let what: Vec<String> = std::env::args().skip(1).collect();
    let what = if what.is_empty() {
        vec![
            "smoke".to_string(),
            "held".to_string(),
            "driver".to_string(),
            "tcp".to_string(),
        ]
    } else {
        what
    };
    match run(&what) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("em-uio: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(what: &[String]) -> Result<(), String> {
    let bdfs = find(VENDOR_INTEL, DEVICE_82540EM).map_err(|e| e.to_string())?;
    if bdfs.len() < 2 {
        return Err(format!(
            "need two 8086:100e functions wired together, found {bdfs:?}"
        ));
    }
    let cfg = UioConfig::default();
    let em0 = UioDevice::open(&bdfs[0], &cfg).map_err(|e| format!("em0 {}: {e}", bdfs[0]))?;
    let em1 = UioDevice::open(&bdfs[1], &cfg).map_err(|e| format!("em1 {}: {e}", bdfs[1]))?;
    for w in what {
        match w.as_str() {
            "smoke" => smoke::run(&em0, &em1)?,
            "held" => {
                let big = Arc::new(KernelLock::new());
                let nic0 = attach("em0", &em0, &em1, Mode::Mpsafe, &big)?;
                let nic1 = attach("em1", &em1, &em0, Mode::Mpsafe, &big)?;
                held::run(&nic0, &nic1, &em1, Mode::Mpsafe as u8)?;
            }
            "driver" => driver(&em0, &em1, Duration::ZERO, None)?,
            "tcp" => tcp::run(&em0, &em1, TCP_MIB)?,
            // The TCP test with another bulk size, e.g. `tcp=8`.
            other if other.starts_with("tcp=") => {
                let mib = other["tcp=".len()..]
                    .parse()
                    .ok()
                    .filter(|m| (1..=1024).contains(m))
                    .ok_or_else(|| format!("bad {other:?}: tcp=MIB, 1 to 1024"))?;
                tcp::run(&em0, &em1, mib)?;
            }
            // The driver test with em0 kept down 1.5 s in its first cycle,
            // as a stalled host would: shows QEMU dropping what it queued.
            "driver-stall" => driver(&em0, &em1, Duration::from_millis(1500), None)?,
            // Only some runs, e.g. `driver=serialized,switching`.
            other if other.starts_with("driver=") => {
                let runs: Vec<String> = other["driver=".len()..]
                    .split(',')
                    .map(str::to_ascii_lowercase)
                    .collect();
                driver(&em0, &em1, Duration::ZERO, Some(&runs))?;
            }
            other => {
                return Err(format!(
                    "unknown test {other:?} (smoke, held, driver, driver=<runs>, driver-stall, tcp, tcp=<MiB>)"
                ));
            }
        }
    }
    Ok(())
}

fn attach(
    name: &'static str,
    dev: &Arc<UioDevice>,
    peer: &Arc<UioDevice>,
    mode: Mode,
    big: &Arc<KernelLock>,
) -> Result<drive::Nic, String> {
    let mac = dev.mac().ok_or("no MAC in RAL0/RAH0")?;
    let peer_mac = peer.mac().ok_or("no MAC in RAL0/RAH0")?;
    let stack = Arc::new(traffic::Checker::new(
        dev.pool().clone(),
        mac,
        peer_mac,
        mode as u8,
    ));
    let mut cfg = EmConfig::new(mode);
    cfg.name = name.into();
    let em = Em::attach(
        Arc::clone(dev),
        cfg,
        Arc::clone(big),
        Arc::clone(&stack) as Arc<dyn Stack<Mbuf>>,
    )
    .map_err(|e| format!("{name}: attach: {e}"))?;
    let d = Arc::clone(dev);
    let r = Arc::clone(dev);
    let m = Arc::clone(dev);
    Ok(drive::Nic {
        // QEMU's MPC is not clear-on-read (the 8254x's is): differences of
        // reads are the frames missed in between.
        missed: Box::new(move || {
            use mpsafe_em_sim::Regs;
            u64::from(m.mmio().read(mpsafe_em_sim::regs::Reg::MPC))
        }),
        regs: Box::new(move || {
            use mpsafe_em_sim::Regs;
            use mpsafe_em_sim::regs::Reg;
            let m = r.mmio();
            format!(
                "ICS {:#x} ICR {:#x} IMS {:#x} RCTL {:#x} RDH {} RDT {} TDH {} TDT {} PCI command {:#x} {:?}",
                m.read(Reg::ICS),
                m.read(Reg::ICR),
                m.read(Reg::IMS),
                m.read(Reg::RCTL),
                m.read(Reg::rdh(0)),
                m.read(Reg::rdt(0)),
                m.read(Reg::tdh(0)),
                m.read(Reg::tdt(0)),
                r.pci().command().unwrap_or(0),
                r.stats()
            )
        }),
        name,
        em,
        pool: dev.pool().clone(),
        mac,
        stack,
        interrupts: Box::new(move || d.stats().interrupts),
    })
}

/// The driver test in every mode, then one run switching modes; `only`
/// keeps the runs it names (modes, or `switching`).
fn driver(
    em0: &Arc<UioDevice>,
    em1: &Arc<UioDevice>,
    stall: Duration,
    only: Option<&[String]>,
) -> Result<(), String> {
    let plan = drive::Plan {
        measure: Duration::from_secs(3),
        cycles: 20,
        cycle_gap: Duration::from_millis(50),
        switches: 0,
        first_down_stall: stall,
        // At most the receive ring's low watermark in flight per direction:
        // when QEMU flushes its queue into the ring it drops (and counts in
        // MPC) whatever does not fit, so a bigger window measures QEMU's
        // queue, not the driver.
        window: 16,
        two_cpu: Phase::Fixed,
    };
    let mut reports = Vec::new();
    // Every mode fixed, then one run that switches modes under load.
    let runs = Mode::ALL.into_iter().map(|m| (m, plan)).chain([(
        Mode::BigLock,
        drive::Plan {
            switches: 8,
            // All modes' two-CPU phases again, interleaved in one run, 8
            // rounds of every mode (0.5 s a slice, 16 s): comparable under a
            // host load that moves between the fixed runs.
            two_cpu: Phase::Rotate { rounds: 8 },
            ..plan
        },
    )]);
    let wanted = |mode: Mode, plan: &drive::Plan| {
        let name = if plan.switches == 0 {
            mode.to_string()
        } else {
            "switching".to_string()
        };
        only.is_none_or(|o| o.contains(&name))
    };
    for (mode, plan) in runs.filter(|(m, p)| wanted(*m, p)) {
        let big = Arc::new(KernelLock::new());
        let nics = [
            attach("em0", em0, em1, mode, &big)?,
            attach("em1", em1, em0, mode, &big)?,
        ];
        if plan.switches == 0 {
            println!("driver: {mode}: em0 and em1 sending to each other");
        } else {
            println!(
                "driver: switching: from {mode}, {} runtime switches through every mode under load; its two-CPU phase switches through every mode too",
                plan.switches
            );
        }
        let r = drive::run(mode, &nics, plan);
        for l in r
            .lines
            .iter()
            .chain(r.two_cpu.iter().flat_map(|t| &t.lines))
        {
            println!("  {l}");
        }
        println!(
            "  {} interrupts through /dev/uioN; measured {:.1} s; {} up/down cycles under load",
            r.interrupts, r.secs, r.cycles
        );
        for (n, st) in nics.iter().zip(&r.after_down) {
            println!(
                "  {} after {} cycles and the final down: {}",
                n.name, r.cycles, st.pool
            );
        }
        for e in &r.errors {
            println!("  ERROR: {e}");
        }
        for d in &r.diagnostics {
            println!("  {d}");
        }
        reports.push(r);
    }
    drive::print_tables(&reports);
    figure::print(&reports);
    let errors: usize = reports.iter().map(|r| r.errors.len()).sum();
    if errors == 0 {
        println!("driver: every frame and buffer accounted for in every mode");
        Ok(())
    } else {
        Err(format!("{errors} accounting errors"))
    }
}
