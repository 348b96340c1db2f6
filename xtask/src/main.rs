//! Workspace automation, the `cargo xtask` pattern (an ordinary binary
//! crate run through the alias in `.cargo/config.toml`; never published).
//!
//! `cargo xtask qemu [--check] [--timeout SECS] [-- GUEST-ARGS]` runs the reference em
//! driver on QEMU's emulated Intel 82540EM (`e1000`):
//!
//! 1. checks for `qemu-system-x86_64`, a kernel in `/boot` with its `uio`
//!    and `uio_pci_generic` modules, and a static busybox, and names the apt
//!    packages for whatever is missing (exit status 2; `--check` stops
//!    here);
//! 2. builds the guest test `em-uio` statically (`+crt-static`, its own
//!    target directory, `--features uio`);
//! 3. packs a busybox initramfs whose `/init` binds both NICs to
//!    `uio_pci_generic`, reserves hugepages and runs the guest test;
//! 4. boots QEMU with two vCPUs (multi-threaded TCG) and two e1000 NICs
//!    joined by a QEMU hub and nothing else, streams the serial console
//!    and kills the guest at the timeout;
//! 5. exits with the guest test's status, read from the last line it prints,
//!    having written the per-mode figure the guest prints (the demo's
//!    `--plot` picture of these runs) to `target/qemu/em-qemu.svg`.
//!
//! `cargo xtask kernel` boots the bare-metal SMP kernel in `examples/kernel`
//! instead (see [`kernel`]); `cargo xtask pktgen` boots Linux itself on the
//! same pair and measures its e1000 driver with pktgen (see [`pktgen`]);
//! `cargo xtask tcp-linux` measures its e1000 driver and TCP there, the two
//! NICs in two network namespaces (see [`tcplinux`]).
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

mod figure;
mod initramfs;
mod kernel;
mod pktgen;
mod tcplinux;
mod tools;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tools::{APT_PACKAGES, Tools};

/// The line the guest's `/init` prints last, followed by the test's status.
const EXIT_MARK: &str = "MPSAFE-QEMU-EXIT ";
/// Default hard limit for the whole guest run (boot, test, power-off).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(400);
/// The guest test binary (the `[[bin]]` of mpsafe-em-uio).
const GUEST_BIN: &str = "em-uio";

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask qemu [--check] [--timeout SECS] [-- GUEST-ARGS...]\n\
         \n\
         Runs the em driver's guest test on QEMU's emulated e1000 pair.\n\
         Needs: apt-get install {}\n\
         \n\
         usage: {}\n\
         \n\
         usage: {}\n\
         \n\
         usage: {}",
        APT_PACKAGES.join(" "),
        kernel::usage(),
        pktgen::usage(),
        tcplinux::usage()
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("kernel") => kernel::main(&args[1..]),
        Some("pktgen") => pktgen::main(&args[1..]),
        Some("tcp-linux") => tcplinux::main(&args[1..]),
        Some("qemu") => match QemuArgs::parse(&args[1..]) {
            Ok(a) => qemu(&a),
            Err(e) => {
                eprintln!("xtask qemu: {e}");
                usage()
            }
        },
        _ => usage(),
    }
}

struct QemuArgs {
    timeout: Duration,
    /// Only check the host's tools (`--check`), as CI does before it decides
    /// to install them.
    check_only: bool,
    guest_args: Vec<String>,
}

impl QemuArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = Self {
            timeout: DEFAULT_TIMEOUT,
            check_only: false,
            guest_args: Vec::new(),
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
                "--" => {
                    a.guest_args = it.by_ref().cloned().collect();
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        // The arguments go into /init, a shell script: keep them plain.
        if let Some(bad) = a.guest_args.iter().find(|s| {
            s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_=.,:/".contains(c))
        }) {
            return Err(format!(
                "guest argument {bad:?}: use [A-Za-z0-9-_=.,:/] only"
            ));
        }
        Ok(a)
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits in the workspace")
        .to_path_buf()
}

fn qemu(args: &QemuArgs) -> ExitCode {
    let tools = match crate::tools::find_or_report("qemu") {
        Ok(t) => t,
        Err(status) => return status,
    };
    eprintln!(
        "xtask qemu: {} | kernel {} | busybox {}",
        tools.qemu.display(),
        tools.kernel.display(),
        tools.busybox.display()
    );
    if args.check_only {
        return ExitCode::SUCCESS;
    }
    let root = workspace_root();
    let out = root.join("target/qemu");
    let run = || -> Result<ExitCode, String> {
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let guest = build_guest(&root)?;
        let initrd = out.join("initramfs.gz");
        pack_initramfs(&tools, &guest, &args.guest_args, &initrd)?;
        boot(&tools, &initrd, args.timeout)
    };
    run().unwrap_or_else(|e| {
        eprintln!("xtask qemu: {e}");
        ExitCode::FAILURE
    })
}

/// Builds the guest test as a static executable in `target/qemu-guest`.
fn build_guest(root: &Path) -> Result<PathBuf, String> {
    build_guest_bin(root, GUEST_BIN)
}

/// Builds the binary `bin` of mpsafe-em-uio as a static executable in
/// `target/qemu-guest`.
pub(crate) fn build_guest_bin(root: &Path, bin: &str) -> Result<PathBuf, String> {
    let target = "x86_64-unknown-linux-gnu";
    let target_dir = root.join("target/qemu-guest");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("xtask: building {bin} (static, release)");
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "-p", "mpsafe-em-uio"])
        .args(["--bin", bin, "--target", target])
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .status()
        .map_err(|e| format!("running cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the guest's {bin} failed: {status}"));
    }
    Ok(target_dir.join(target).join("release").join(bin))
}

/// Reads a kernel module, decompressing `.xz`, `.zst` or `.gz` with the
/// host's tool (busybox `insmod` loads plain ELF objects only).
fn read_module(path: &Path) -> Result<Vec<u8>, String> {
    let tool = match path.extension().and_then(|e| e.to_str()) {
        Some("xz") => "xz",
        Some("zst") => "zstd",
        Some("gz") => "gzip",
        _ => return std::fs::read(path).map_err(|e| format!("{}: {e}", path.display())),
    };
    let o = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| format!("{tool} -dc {}: {e}", path.display()))?;
    if !o.status.success() {
        return Err(format!("{tool} -dc {} failed", path.display()));
    }
    Ok(o.stdout)
}

fn init_script(guest_args: &[String]) -> String {
    format!(
        r#"#!/bin/busybox sh
# The guest: bind both e1000 NICs to uio_pci_generic, reserve hugepages for
# DMA memory, run the test, report its status on the last line, power off.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo 16 > /proc/sys/vm/nr_hugepages
insmod /lib/modules/uio.ko
insmod /lib/modules/uio_pci_generic.ko
echo 8086 100e > /sys/bus/pci/drivers/uio_pci_generic/new_id
/bin/{GUEST_BIN} {args}
echo "{EXIT_MARK}$?"
poweroff -f
"#,
        args = guest_args.join(" ")
    )
}

fn pack_initramfs(
    tools: &Tools,
    guest: &Path,
    guest_args: &[String],
    out: &Path,
) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut c = initramfs::busybox_root(&tools.busybox)?;
    c.file("init", 0o755, init_script(guest_args).as_bytes());
    c.file(&format!("bin/{GUEST_BIN}"), 0o755, &read(guest)?);
    c.file("lib/modules/uio.ko", 0o644, &read_module(&tools.uio)?);
    c.file(
        "lib/modules/uio_pci_generic.ko",
        0o644,
        &read_module(&tools.uio_pci_generic)?,
    );
    initramfs::gzip_to(&c.finish(), out).map_err(|e| format!("{}: {e}", out.display()))
}

/// The QEMU command line. The two NICs are joined by hub 0 and nothing else:
/// `-nodefaults` also keeps QEMU from adding its default network backend.
fn qemu_command(tools: &Tools, initrd: &Path) -> Command {
    let mut cmd = Command::new(&tools.qemu);
    cmd.args(["-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "pc", "-m", "512", "-smp", "2"])
        .args(["-accel", "tcg,thread=multi"])
        .arg("-kernel")
        .arg(&tools.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 quiet panic=-1"])
        .args(["-serial", "stdio", "-no-reboot"]);
    for (i, mac) in ["52:54:00:00:00:01", "52:54:00:00:00:02"]
        .iter()
        .enumerate()
    {
        cmd.arg("-netdev")
            .arg(format!("hubport,id=n{i},hubid=0"))
            .arg("-device")
            .arg(format!("e1000,netdev=n{i},mac={mac}"));
    }
    cmd
}

fn boot(tools: &Tools, initrd: &Path, timeout: Duration) -> Result<ExitCode, String> {
    let mut cmd = qemu_command(tools, initrd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "xtask qemu: booting (kernel {}, timeout {} s)",
        tools.kernel_version,
        timeout.as_secs()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("starting QEMU: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    // The console reader streams every line and hands the status line over.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut figure = figure::Capture::default();
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches('\r');
            if figure.feed(line) {
                continue;
            }
            println!("{line}");
            if let Some(code) = line.trim().strip_prefix(EXIT_MARK) {
                let _ = tx.send(code.trim().parse::<i32>().unwrap_or(-1));
            }
        }
        figure
    });
    let mut status = None;
    loop {
        if let Ok(code) = rx.try_recv() {
            status = Some(code);
        }
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let _ = reader.join();
            return Err(format!(
                "timeout: the guest ran longer than {} s; QEMU killed",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The per-mode figure, beside the initramfs in target/qemu.
    if let Some(svg) = reader.join().ok().and_then(figure::Capture::svg) {
        let path = initrd.with_file_name("em-qemu.svg");
        match figure::write(&svg, &path) {
            Ok(()) => eprintln!("xtask qemu: figure written to {}", path.display()),
            Err(e) => eprintln!("xtask qemu: no figure: {e}"),
        }
    }
    if status.is_none() {
        status = rx.try_recv().ok();
    }
    let secs = started.elapsed().as_secs_f64();
    match status {
        Some(0) => {
            eprintln!("xtask qemu: guest test passed ({secs:.1} s in QEMU)");
            Ok(ExitCode::SUCCESS)
        }
        Some(code) => {
            eprintln!("xtask qemu: guest test failed with status {code} ({secs:.1} s in QEMU)");
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)))
        }
        None => Err("QEMU exited without the guest's status line".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_arguments_are_checked() {
        let parse =
            |v: &[&str]| QemuArgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let a = parse(&["--timeout", "9", "--", "smoke", "--cycles=3"]).unwrap();
        assert_eq!(a.timeout, Duration::from_secs(9));
        assert_eq!(a.guest_args, ["smoke", "--cycles=3"]);
        assert!(parse(&["--", "a;reboot"]).is_err());
        assert!(parse(&["--timeout"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn only_a_hub_between_the_nics() {
        let tools = Tools {
            qemu: "qemu".into(),
            kernel: "vmlinuz".into(),
            kernel_version: "v".into(),
            uio: "uio.ko".into(),
            uio_pci_generic: "uio_pci_generic.ko".into(),
            busybox: "busybox".into(),
        };
        let cmd = qemu_command(&tools, Path::new("initrd"));
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
    }
}
