//! `em-uio`: the em driver's test on real 8254x devices bound to
//! `uio_pci_generic`, the guest side of `cargo xtask qemu`.
//!
//! Finds the first two 8086:100e functions (em0, em1), which must be wired
//! to each other (QEMU: two `e1000` on one hub), and runs:
//!
//! - `smoke`: one frame em0 → em1 by hand, no driver;
//!
//! and exits non-zero on any failure. Needs root.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod smoke;

use std::process::ExitCode;

use mpsafe_em::uio::{DEVICE_82540EM, UioConfig, UioDevice, VENDOR_INTEL, find};

fn main() -> ExitCode {
    let what: Vec<String> = std::env::args().skip(1).collect();
    let what = if what.is_empty() {
        vec!["smoke".to_string()]
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
            other => return Err(format!("unknown test {other:?} (smoke)")),
        }
    }
    Ok(())
}
