//! `cargo xtask kernel [--check] [--debug] [--timeout SECS] [--fault noipl] [-- KERNEL-ARGS]`
//! boots `examples/kernel` (mpsafe-kernel) on QEMU:
//!
//! 1. checks for `qemu-system-x86_64` and names the apt package when it is
//!    missing (exit status 2; `--check` stops here);
//! 2. builds the kernel for `x86_64-unknown-none` (release, or with
//!    `--debug` the dev profile, where `mpsafe-order`'s lock-order witness
//!    runs), installing that target with rustup if it is missing;
//! 3. boots it as a PVH ELF straight from `-kernel` on the `pc` machine with
//!    two CPUs under TCG, two e1000 NICs joined by hub 0 and nothing else,
//!    and `isa-debug-exit` for the verdict;
//! 4. streams the serial console, kills QEMU at the timeout, and exits with
//!    the guest's status: the kernel prints `MPSAFE-KERNEL-EXIT <n>` and
//!    writes `n` to `isa-debug-exit`, so QEMU's own status must be
//!    `(n << 1) | 1`; both are checked.
//!
//! The kernel runs its platform self-test, then the em driver itself
//! (`mpsafe-em`) in every mode and while switching modes, every frame and
//! buffer accounted for, and prints the per-mode table; last, it times
//! each kernel service on both CPUs and prints a costs table (checking
//! only that each measurement ran, never a time).
//!
//! `--fault noipl` runs the deliberately wrong build (the kernel command
//! line `fault=noipl`: CPU 0 takes a lock its NIC's handler shares without
//! raising the IPL) and passes only if the watchdog on the other CPU
//! reports the deadlock (status 3).
//!
//! `--debug` builds the kernel with debug assertions, so the lock-order
//! witness runs in it (one held-lock stack per CPU, interrupt handlers'
//! acquisitions on the stack of the CPU they interrupt). The correct build
//! must pass its self-test with the witness announced on the console and
//! reporting nothing. `--debug --fault noipl` passes only if the witness
//! reports the handler taking the rx lock its CPU already holds (a panic,
//! status 2, whose message names the handler's acquisition and the
//! interrupted code's) before the kernel hangs: no watchdog report first.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use crate::tools::which;

/// The line the kernel prints last, followed by its status.
const EXIT_MARK: &str = "MPSAFE-KERNEL-EXIT ";
/// The kernel's statuses (examples/kernel/src/main.rs).
const EXIT_PASS: i32 = 0;
const EXIT_PANIC: i32 = 2;
const EXIT_WATCHDOG: i32 = 3;
/// What a debug kernel prints once the witness is set up
/// (examples/kernel/src/main.rs).
const WITNESS_ON: &str = "mpsafe-kernel: lock-order witness on";
/// How the witness's report of a lock already held by this CPU begins, for
/// the NIC's rx lock (the level the self-test declares it at), and the
/// words that say what it is.
const WITNESS_RX_REPORT: &str = "witness: `NicRx`";
const WITNESS_HELD: &str = "is already held by this thread";
/// Where the self-test's NIC locks are taken: the report names two sites
/// there (the handler's acquisition and the interrupted code's).
const NIC_SOURCE: &str = "examples/kernel/src/selftest/nic.rs:";
/// How the watchdog's reports begin, in any case (`WATCHDOG: CPU 0 stuck`
/// from examples/kernel/src/services/watchdog.rs, `watchdog: ending the
/// run` from main.rs).
const WATCHDOG_MARK: &str = "watchdog:";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
const TARGET: &str = "x86_64-unknown-none";
const PACKAGE: &str = "mpsafe-kernel";
/// The apt package that provides QEMU.
const QEMU_APT: &str = "qemu-system-x86";

#[derive(Debug)]
struct KernelArgs {
    timeout: Duration,
    check_only: bool,
    /// `--debug`: the dev profile, with the lock-order witness.
    debug: bool,
    /// `--fault noipl`: expect the watchdog (or, with `--debug`, the
    /// witness) to catch the fault.
    fault_noipl: bool,
    kernel_args: Vec<String>,
}

impl KernelArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = Self {
            timeout: DEFAULT_TIMEOUT,
            check_only: false,
            debug: false,
            fault_noipl: false,
            kernel_args: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => {
                    let v = it.next().ok_or("--timeout needs a value")?;
                    let secs: u64 = v.parse().map_err(|_| format!("bad --timeout {v:?}"))?;
                    a.timeout = Duration::from_secs(secs);
                }
                "--check" => a.check_only = true,
                "--debug" => a.debug = true,
                "--fault" => match it.next().map(String::as_str) {
                    Some("noipl") => a.fault_noipl = true,
                    other => return Err(format!("--fault {other:?}: the known fault is noipl")),
                },
                "--" => a.kernel_args = it.by_ref().cloned().collect(),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if let Some(bad) = a.kernel_args.iter().find(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=.,:".contains(c))
        }) {
            return Err(format!(
                "kernel argument {bad:?}: use [A-Za-z0-9-_=.,:] only"
            ));
        }
        Ok(a)
    }

    /// The kernel command line (`-append`).
    fn cmdline(&self) -> String {
        let mut words = self.kernel_args.clone();
        if self.fault_noipl {
            words.push("fault=noipl".into());
        }
        words.join(" ")
    }

    /// The status that makes this run a success.
    fn expected(&self) -> i32 {
        match (self.fault_noipl, self.debug) {
            (true, true) => EXIT_PANIC,
            (true, false) => EXIT_WATCHDOG,
            (false, _) => EXIT_PASS,
        }
    }

    /// Whether the run showed what it must, given the kernel's `status` and
    /// its console `lines`: the expected status and, for a debug build, the
    /// witness announced and (with the fault) its report of the handler's
    /// acquisition, before any watchdog report. Says what it saw.
    fn verdict(&self, status: i32, lines: &[String]) -> Result<&'static str, String> {
        if status != self.expected() {
            return Err(format!(
                "kernel exited with status {status}, expected {}",
                self.expected()
            ));
        }
        if !self.debug {
            return Ok(if self.fault_noipl {
                "the IPL fault deadlocked and the watchdog reported it, as it must"
            } else {
                "kernel self-test passed"
            });
        }
        if !lines.iter().any(|l| l.starts_with(WITNESS_ON)) {
            return Err(format!(
                "no {WITNESS_ON:?} line: the kernel was not built with the witness"
            ));
        }
        if !self.fault_noipl {
            return Ok("kernel self-test passed with the lock-order witness on, reporting nothing");
        }
        let report = lines.iter().position(|l| {
            l.starts_with(WITNESS_RX_REPORT)
                && l.contains(WITNESS_HELD)
                && l.matches(NIC_SOURCE).count() == 2
        });
        let Some(report) = report else {
            return Err(format!(
                "the kernel panicked, but not with the witness's report of the rx lock \
                 taken by the handler on the CPU that holds it ({WITNESS_RX_REPORT:?} ... \
                 {WITNESS_HELD:?}, naming two sites in {NIC_SOURCE})"
            ));
        };
        if let Some(w) = lines[..report].iter().find(|l| {
            l.trim_start()
                .to_ascii_lowercase()
                .starts_with(WATCHDOG_MARK)
        }) {
            return Err(format!(
                "the watchdog reported a hang before the witness's report: {w:?}"
            ));
        }
        Ok(
            "the handler's acquisition of the rx lock its CPU held was reported by the \
            lock-order witness before the kernel could hang, as it must",
        )
    }
}

pub(crate) fn usage() -> &'static str {
    "cargo xtask kernel [--check] [--debug] [--timeout SECS] [--fault noipl] [-- KERNEL-ARGS...]\n\
     \n\
     Boots examples/kernel on QEMU (two CPUs, two e1000 NICs on a hub) and runs its\n\
     platform self-test, then the em driver in every mode and while switching modes.\n\
     KERNEL-ARGS: frames=N (per direction), oneway (em0->em1 only) for the platform\n\
     test; window=N (frames in flight per direction), measure=MS for the em run.\n\
     --debug builds it with debug assertions: the lock-order witness runs in it.\n\
     --fault noipl runs the deliberately wrong build and passes only if the watchdog\n\
     reports the deadlock (with --debug: only if the witness reports the handler's\n\
     acquisition of the lock its CPU holds, before any hang)."
}

pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match KernelArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask kernel: {e}\nusage: {}", usage());
            return ExitCode::from(2);
        }
    };
    let Some(qemu) = which("qemu-system-x86_64") else {
        eprintln!(
            "xtask kernel: missing qemu-system-x86_64 on PATH (apt package {QEMU_APT})\n\
             install it with: sudo apt-get install -y {QEMU_APT}"
        );
        return ExitCode::from(2);
    };
    eprintln!("xtask kernel: {}", qemu.display());
    if args.check_only {
        return ExitCode::SUCCESS;
    }
    let root = crate::workspace_root();
    let run = || -> Result<ExitCode, String> {
        let elf = build(&root, args.debug)?;
        boot(&qemu, &elf, &args)
    };
    run().unwrap_or_else(|e| {
        eprintln!("xtask kernel: {e}");
        ExitCode::FAILURE
    })
}

/// Builds the kernel (the dev profile if `debug`); returns the ELF's path.
fn build(root: &Path, debug: bool) -> Result<PathBuf, String> {
    let rustup_has_target = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        });
    if rustup_has_target == Some(false) {
        eprintln!("xtask kernel: rustup target add {TARGET}");
        let ok = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("'rustup target add {TARGET}' failed"));
        }
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if debug { "debug" } else { "release" };
    eprintln!("xtask kernel: building {PACKAGE} for {TARGET} ({profile})");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "-p", PACKAGE, "--target", TARGET]);
    if !debug {
        cmd.arg("--release");
    }
    let status = cmd.status().map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the kernel failed: {status}"));
    }
    Ok(root.join("target").join(TARGET).join(profile).join(PACKAGE))
}

/// The QEMU command line: the `pc` machine (SeaBIOS gives the NICs in slots
/// 2 and 3 INTx lines 10 and 11), two CPUs under multi-threaded TCG, the
/// kernel as a PVH ELF, two e1000s joined by hub 0 and nothing else
/// (`-nodefaults` keeps QEMU from adding its default network backend), and
/// `isa-debug-exit` at port 0xf4 for the verdict.
fn qemu_command(qemu: &Path, elf: &Path, cmdline: &str) -> Command {
    let mut cmd = Command::new(qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "pc", "-m", "256", "-smp", "2"])
        .args(["-accel", "tcg,thread=multi"])
        .arg("-kernel")
        .arg(elf)
        .args(["-append", cmdline])
        .args(["-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    for (i, mac) in ["52:54:00:12:34:01", "52:54:00:12:34:02"]
        .iter()
        .enumerate()
    {
        cmd.arg("-netdev")
            .arg(format!("hubport,id=p{i},hubid=0"))
            .arg("-device")
            .arg(format!("e1000,netdev=p{i},mac={mac}"));
    }
    cmd
}

fn boot(qemu: &Path, elf: &Path, args: &KernelArgs) -> Result<ExitCode, String> {
    let mut cmd = qemu_command(qemu, elf, &args.cmdline());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "xtask kernel: booting {} (cmdline {:?}, timeout {} s)",
        elf.display(),
        args.cmdline(),
        args.timeout.as_secs()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("starting QEMU: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    // The console, echoed as it comes and kept for the verdict.
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            println!("{line}");
            lines.push(line.to_owned());
        }
        lines
    });
    let qemu_status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
        if started.elapsed() > args.timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Err(format!(
                "timeout: the kernel ran longer than {} s; QEMU killed",
                args.timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let secs = started.elapsed().as_secs_f64();
    let lines = reader.join().unwrap_or_default();
    let printed = lines
        .iter()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARK))
        .map(|code| code.trim().parse::<i32>().unwrap_or(-1));
    let Some(status) = printed else {
        return Err(format!(
            "QEMU exited ({qemu_status}) without the kernel's {EXIT_MARK:?} line"
        ));
    };
    // isa-debug-exit: QEMU's status is (value << 1) | 1.
    if qemu_status.code() != Some((status << 1) | 1) {
        return Err(format!(
            "the kernel printed status {status} but QEMU exited with {qemu_status} \
             (isa-debug-exit would give {})",
            (status << 1) | 1
        ));
    }
    eprintln!("xtask kernel: boot to exit {secs:.2} s (QEMU wall time)");
    match args.verdict(status, &lines) {
        Ok(what) => {
            eprintln!("xtask kernel: {what}");
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("xtask kernel: FAIL: {why}");
            Ok(ExitCode::from(u8::try_from(status).unwrap_or(1).max(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<KernelArgs, String> {
        KernelArgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = parse(&["--timeout", "9", "--", "frames=100"]).unwrap();
        assert_eq!(a.timeout, Duration::from_secs(9));
        assert_eq!(a.cmdline(), "frames=100");
        assert_eq!(a.expected(), EXIT_PASS);
        let f = parse(&["--fault", "noipl"]).unwrap();
        assert_eq!(f.cmdline(), "fault=noipl");
        assert_eq!(f.expected(), EXIT_WATCHDOG);
        let d = parse(&["--debug", "--fault", "noipl"]).unwrap();
        assert!(d.debug && d.fault_noipl);
        assert_eq!(d.cmdline(), "fault=noipl");
        assert_eq!(d.expected(), EXIT_PANIC);
        assert_eq!(parse(&["--debug"]).unwrap().expected(), EXIT_PASS);
        assert!(parse(&["--fault", "other"]).is_err());
        assert!(parse(&["--", "a b"]).is_err());
        assert!(parse(&["--", "x;reboot"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    fn console(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    const ON: &str =
        "mpsafe-kernel: lock-order witness on (debug build): one held-lock stack per CPU";
    const REPORT: &str = "witness: `NicRx` (0x2af3b0) taken at examples/kernel/src/selftest/nic.rs:438:31 is already held by this thread, taken at examples/kernel/src/selftest/nic.rs:542:31 (recursion ...)";

    #[test]
    fn the_debug_fault_run_needs_the_witness_report_and_no_hang() {
        let args = parse(&["--debug", "--fault", "noipl"]).unwrap();
        let panic_line = "PANIC on CPU 0: panicked at order/src/witness.rs:781:13:";
        let good = console(&[ON, "", panic_line, REPORT, "MPSAFE-KERNEL-EXIT 2"]);
        assert!(args.verdict(EXIT_PANIC, &good).is_ok());
        // The watchdog (status 3), or a pass: the fault was not reported.
        assert!(args.verdict(EXIT_WATCHDOG, &good).is_err());
        assert!(args.verdict(EXIT_PASS, &console(&[ON])).is_err());
        // Another panic than the witness's report.
        let other = console(&[ON, "PANIC on CPU 0: panicked at x: index out of bounds"]);
        assert!(args.verdict(EXIT_PANIC, &other).is_err());
        // The report must name both sites.
        let one_site = console(&[
            ON,
            "witness: `NicRx` (0x1) taken at examples/kernel/src/selftest/nic.rs:438:31 is already held by this thread, taken at elsewhere.rs:1:1",
        ]);
        assert!(args.verdict(EXIT_PANIC, &one_site).is_err());
        // A hang reported before the witness spoke.
        let hung = console(&[ON, "WATCHDOG: CPU 0 stuck: spinning for 50 ticks", REPORT]);
        assert!(args.verdict(EXIT_PANIC, &hung).is_err());
        // No witness in the build.
        assert!(args.verdict(EXIT_PANIC, &console(&[REPORT])).is_err());
    }

    #[test]
    fn the_debug_run_needs_the_witness_on() {
        let args = parse(&["--debug"]).unwrap();
        assert!(args.verdict(EXIT_PASS, &console(&[ON])).is_ok());
        assert!(
            args.verdict(EXIT_PASS, &console(&["selftest: nic: PASS"]))
                .is_err()
        );
        assert!(args.verdict(EXIT_PANIC, &console(&[ON, REPORT])).is_err());
        let release = parse(&["--fault", "noipl"]).unwrap();
        assert!(release.verdict(EXIT_WATCHDOG, &[]).is_ok());
        assert!(release.verdict(EXIT_PASS, &[]).is_err());
    }

    #[test]
    fn only_a_hub_between_the_nics() {
        let cmd = qemu_command(Path::new("qemu"), Path::new("kernel"), "");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(args.contains(&"-nodefaults".to_string()));
        let netdevs: Vec<&String> = args
            .iter()
            .zip(args.iter().skip(1))
            .filter(|(k, _)| *k == "-netdev" || *k == "-net" || *k == "-nic")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(netdevs.len(), 2);
        assert!(
            netdevs
                .iter()
                .all(|v| v.starts_with("hubport,") && v.ends_with(",hubid=0"))
        );
        assert!(
            args.iter()
                .any(|a| a == "isa-debug-exit,iobase=0xf4,iosize=0x04")
        );
    }
}
