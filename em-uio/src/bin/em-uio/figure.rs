//! The guest run's per-mode figure: the demo's `--plot` picture
//! ([`mpsafe_em_demo::plot`]) drawn from the QEMU runs, printed on the console
//! between two marker lines for `cargo xtask qemu` to write to a file.

use mpsafe_em_demo::plot;
use mpsafe_em_demo::report::{ModeRecord, Report, RunFigures};
use mpsafe_em_sim::Path;

use crate::drive::ModeReport;

/// The line before the figure's SVG.
pub(crate) const BEGIN: &str = "MPSAFE-QEMU-FIGURE-BEGIN";
/// The line after it.
pub(crate) const END: &str = "MPSAFE-QEMU-FIGURE-END";

/// The figure's report: one record per run, its driver CPU the guest's
/// process CPU (the device is QEMU, outside the guest), its big-lock counts
/// those of the measured phase.
fn report(reports: &[ModeReport]) -> Report {
    let modes = reports
        .iter()
        .map(|r| {
            let packets = (r.rx_pps + r.tx_pps) * r.secs;
            ModeRecord {
                mode: r.label.clone(),
                runs: vec![RunFigures {
                    elapsed_s: r.secs,
                    rx_pps: r.rx_pps,
                    tx_pps: r.tx_pps,
                    offered_rx_pps: None,
                    rx_missed: 0,
                    tx_qdrops: 0,
                    interrupts_per_s: r.intr_per_sec,
                    process_cpu_s: r.cpu_us_per_packet.map(|c| c * packets / 1e6),
                    device_cpu_s: Some(0.0),
                    intr_cpu_s: None,
                    big_lock: Path::ALL
                        .iter()
                        .map(|p| (p.name().to_string(), r.big_lock_window.get(*p)))
                        .collect(),
                    tx_call: None,
                }],
                cycles: u64::from(r.cycles),
                ..ModeRecord::default()
            }
        })
        .collect();
    Report {
        version: env!("CARGO_PKG_VERSION").to_string(),
        config: vec![
            (
                "title".into(),
                "mpsafe-em on QEMU's emulated e1000 pair through Linux uio, one colour per locking mode"
                    .into(),
            ),
            (
                "setting".into(),
                "em0 and em1 on a QEMU hub sending to each other".into(),
            ),
            (
                "measured".into(),
                format!("{:.1} s per mode", reports.first().map_or(0.0, |r| r.secs)),
            ),
            (
                "driver CPU".into(),
                "the guest test's process CPU (the device is QEMU, outside the guest)".into(),
            ),
        ],
        modes,
        samples: Vec::new(),
    }
}

/// Prints the figure between [`BEGIN`] and [`END`], or why there is none.
pub(crate) fn print(reports: &[ModeReport]) {
    match plot::render_svg(&report(reports)) {
        Ok(svg) => {
            println!("{BEGIN}");
            print!("{svg}");
            println!("{END}");
        }
        Err(e) => println!("figure: {e}"),
    }
}
