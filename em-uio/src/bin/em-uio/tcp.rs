//! The TCP test: smoltcp above the em driver on each of QEMU's two e1000s,
//! the transfer of [`mpsafe_em_demo::tcp`] (a bulk flow em0 -> em1 and four
//! small flows both ways at once, every byte checked with a running hash),
//! in every mode, then while switching modes, then with up/down cycles of
//! either NIC; after each run both drivers detach and every buffer must be
//! back in its pool. Each run prints its goodput, the process's CPU time
//! per MB (`getrusage`: the poll loops, the interrupt threads, their system
//! calls) and both guest CPUs' busy time per MB (`/proc/stat`, which also
//! holds the kernel's interrupt handling), the figures `cargo xtask
//! tcp-linux` gives for Linux's own driver and TCP.
//!
//! Two things of QEMU's e1000 the simulator does not have matter here:
//!
//! - it filters by destination address. The smoltcp interfaces of
//!   [`mpsafe_em_demo::tcp`] use the locally administered addresses
//!   `02:00:00:00:00:01` (em0) and `:02` (em1), not the NICs' own, so the
//!   test puts each in the NIC's second receive address entry (`RAL1` and
//!   `RAH1` with `AV`) for the runs and clears it afterwards; ARP's
//!   broadcasts come in through `RCTL.BAM`, which the driver sets;
//! - it holds receive for 1 s after every `RCTL` write (see the QEMU
//!   chapter), so each run starts 1.2 s after both drivers' `init`, and
//!   every `up` costs TCP about a second.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use mpsafe_em_demo::tcp::{self, Meddle, Nic};
use mpsafe_em_sim::regs::RCTL_EN;
use mpsafe_em_sim::{Mode, Reg, Regs};
use mpsafe_em_uio::{RAH_AV, UioDevice};

/// Each run's deadline: a failure, never a wait.
const LIMIT: Duration = Duration::from_secs(120);
/// The four small flows' size (two each way), as the simulator's runs.
const SMALL: u64 = 512 << 10;
/// QEMU's receive hold after the `RCTL` write of `init`, and a margin.
const HOLD: Duration = Duration::from_millis(1200);
/// The stack's address of NIC `i`: [`mpsafe_em_demo::tcp`]'s interfaces use
/// `02:00:00:00:00:0{i+1}`.
fn stack_mac(i: usize) -> [u8; 6] {
    [2, 0, 0, 0, 0, i as u8 + 1]
}

/// The second receive address entry (`RAL1`, `RAH1`).
const RAL1: Reg = Reg(0x5408);
const RAH1: Reg = Reg(0x540c);

/// Accepts `mac` on `dev` (its `RAL1`/`RAH1`), or stops accepting it.
fn accept(dev: &UioDevice, mac: Option<[u8; 6]>) -> Result<(), String> {
    let m = dev.mmio();
    match mac {
        Some(a) => {
            m.write(RAL1, u32::from_le_bytes([a[0], a[1], a[2], a[3]]));
            m.write(RAH1, u32::from(u16::from_le_bytes([a[4], a[5]])) | RAH_AV);
            if m.read(RAH1) & RAH_AV == 0 {
                return Err("RAH1.AV did not stick".into());
            }
        }
        None => m.write(RAH1, 0),
    }
    Ok(())
}

/// What an up/down cycle waits to see move while `me` is down: frames the
/// peer transmitted (its transmit head moved, counted modulo its ring)
/// between two readings that found `me`'s receiver disabled. QEMU holds
/// them (and drops them if the receiver stays disabled past its 1 s hold);
/// the device counts nothing at a disabled receiver.
fn sent_toward_disabled(
    me: Arc<UioDevice>,
    peer: Arc<UioDevice>,
) -> Box<dyn Fn() -> u64 + Send + Sync> {
    let last: Mutex<(Option<u32>, u64)> = Mutex::new((None, 0));
    Box::new(move || {
        let p = peer.mmio();
        let ring = p.read(Reg::tdlen(0)) / 16;
        let head = p.read(Reg::tdh(0));
        let disabled = me.mmio().read(Reg::RCTL) & RCTL_EN == 0;
        let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(prev) = l.0
            && disabled
            && ring > 0
            && head != prev
        {
            l.1 += u64::from((head + ring - prev % ring) % ring);
        }
        l.0 = Some(head);
        l.1
    })
}

/// Both guest CPUs' non-idle time so far, from the `cpu` line of
/// `/proc/stat` (user nice system idle iowait irq softirq steal, in clock
/// ticks): everything but idle and iowait. It holds what the process's own
/// CPU time does not: the kernel's interrupt handling for `/dev/uioN`.
/// `None` if it cannot be read.
fn guest_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = ticks
        .get(..8)?
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    (hz > 0).then(|| Duration::from_micros(busy * 1_000_000 / hz))
}

/// The device's state, for a failed run's diagnosis (nothing read here
/// clears anything: `ICS` reads back the pending causes).
fn registers(dev: &UioDevice) -> String {
    let m = dev.mmio();
    format!(
        "STATUS {:#x} RCTL {:#x} IMS {:#x} ICS {:#x} RDH {} RDT {} TDH {} TDT {} MPC {} RAH1 {:#x} \
         PCI command {:#x} {:?} pool {}",
        m.read(Reg::STATUS),
        m.read(Reg::RCTL),
        m.read(Reg::IMS),
        m.read(Reg::ICS),
        m.read(Reg::rdh(0)),
        m.read(Reg::rdt(0)),
        m.read(Reg::tdh(0)),
        m.read(Reg::tdt(0)),
        m.read(Reg::MPC),
        m.read(RAH1),
        dev.pci().command().unwrap_or(0),
        dev.stats(),
        dev.pool().stats()
    )
}

/// One row of the TCP table.
struct Row {
    name: String,
    meddle: Meddle,
    report: Result<tcp::Report, String>,
    /// Both guest CPUs' busy time over the run.
    guest: Option<Duration>,
    /// Buffers not back in a pool after the detach, per NIC.
    lost: Vec<String>,
}

/// One run: both drivers attached in `mode`, the transfer with `meddle`,
/// both detached and their pools checked.
fn one(
    em0: &Arc<UioDevice>,
    em1: &Arc<UioDevice>,
    name: String,
    mode: Mode,
    flows: &[tcp::Flow],
    meddle: Meddle,
) -> Result<Row, String> {
    let nic0 = Nic::attach(
        Arc::clone(em0),
        0,
        mode,
        sent_toward_disabled(Arc::clone(em0), Arc::clone(em1)),
    )?;
    let nic1 = match Nic::attach(
        Arc::clone(em1),
        1,
        mode,
        sent_toward_disabled(Arc::clone(em1), Arc::clone(em0)),
    ) {
        Ok(n) => n,
        Err(e) => {
            drop(nic0.detach());
            return Err(e);
        }
    };
    // QEMU refuses receive for 1 s after init's RCTL write (it queues
    // what arrives): start the clock after it.
    thread::sleep(HOLD);
    let nics = [nic0, nic1];
    let busy = guest_busy();
    let report = tcp::run(&nics, flows, meddle, LIMIT);
    if report.is_err() {
        for (i, (dev, nic)) in [em0, em1].into_iter().zip(&nics).enumerate() {
            println!("tcp: em{i} after the failure: {}", registers(dev));
            println!("tcp: em{i}'s driver: {:?}", nic.em().stats());
        }
    }
    let guest = guest_busy()
        .zip(busy)
        .map(|(now, then)| now.saturating_sub(then));
    let mut lost = Vec::new();
    for (i, nic) in nics.into_iter().enumerate() {
        let st = nic.detach().stats();
        if (st.in_use(), st.leaked, st.dma_errors) != (0, 0, 0) {
            lost.push(format!("em{i}: buffers lost: {st}"));
        }
    }
    Ok(Row {
        name,
        meddle,
        report,
        guest,
        lost,
    })
}

/// Every mode, then switching, then up/down cycles; `mib` MiB in the bulk
/// flow. Prints goodput and CPU per MB per run; fails if any run does.
pub(crate) fn run(em0: &Arc<UioDevice>, em1: &Arc<UioDevice>, mib: u64) -> Result<(), String> {
    let flows = tcp::flows(mib << 20, SMALL);
    println!(
        "tcp: smoltcp over the em driver on both e1000s: {mib} MiB em0->em1 and 4 x {} KiB both \
         ways at once, in every mode, then switching modes, then with up/down cycles",
        SMALL >> 10
    );
    for (i, dev) in [em0, em1].into_iter().enumerate() {
        accept(dev, Some(stack_mac(i)))?;
    }
    let mut runs: Vec<(String, Mode, Meddle)> = Mode::ALL
        .into_iter()
        .map(|m| (m.to_string(), m, Meddle::None))
        .collect();
    runs.push((
        "switching".into(),
        Mode::BigLock,
        Meddle::Switch(2 * Mode::ALL.len() as u32),
    ));
    runs.push(("up/down".into(), Mode::Mpsafe, Meddle::UpDown(4)));
    let mut rows = Vec::new();
    for (name, mode, meddle) in runs {
        let row = one(em0, em1, name, mode, &flows, meddle);
        match &row {
            Ok(r) => match &r.report {
                Ok(t) => println!(
                    "tcp: {}: {:.1} Mbit/s, {} switches, {} up/down cycles, {} frames toward a \
                     disabled receiver; adapters {:?} / {:?}",
                    r.name,
                    t.mbit_per_s(),
                    t.switches,
                    t.cycles,
                    t.lost_down,
                    t.dev[0],
                    t.dev[1]
                ),
                Err(e) => println!("tcp: {}: FAILED: {e}", r.name),
            },
            Err(e) => println!("tcp: attach: FAILED: {e}"),
        }
        rows.push(row);
    }
    for (i, dev) in [em0, em1].into_iter().enumerate() {
        accept(dev, None).map_err(|e| format!("em{i}: {e}"))?;
    }
    println!();
    println!(
        "{:<12} {:>10} {:>9} {:>11} {:>13} {:>9} {:>7}",
        "run", "Mbit/s", "time s", "CPU ms/MB", "guest ms/MB", "switches", "cycles"
    );
    let mut errors = Vec::new();
    for row in rows {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        match &row.report {
            Ok(t) => println!(
                "{:<12} {:>10.1} {:>9.3} {:>11} {:>13} {:>9} {:>7}",
                row.name,
                t.mbit_per_s(),
                t.elapsed.as_secs_f64(),
                t.cpu_ms_per_mb()
                    .map_or_else(|| "-".into(), |c| format!("{c:.1}")),
                row.guest.map_or_else(
                    || "-".into(),
                    |g| format!("{:.1}", g.as_secs_f64() * 1e3 / (t.bytes as f64 / 1e6))
                ),
                t.switches,
                t.cycles
            ),
            Err(e) => errors.push(format!("{}: {e}", row.name)),
        }
        if let Ok(t) = &row.report {
            // Every meddling point is before the transfer's end.
            let (switches, cycles) = match row.meddle {
                Meddle::Switch(n) => (n, 0),
                Meddle::UpDown(n) => (0, n),
                _ => (0, 0),
            };
            if (t.switches, t.cycles) != (switches, cycles) {
                errors.push(format!(
                    "{}: {} switches and {} up/down cycles, planned {switches} and {cycles}",
                    row.name, t.switches, t.cycles
                ));
            }
        }
        errors.extend(row.lost.iter().map(|l| format!("{}: {l}", row.name)));
    }
    if errors.is_empty() {
        println!(
            "tcp: every byte of every flow arrived once, in order, and every buffer is back, in every run"
        );
        Ok(())
    } else {
        for e in &errors {
            println!("  ERROR: {e}");
        }
        Err(format!("tcp: {} runs failed", errors.len()))
    }
}
