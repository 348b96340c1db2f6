//! `cargo xtask pktgen [--check] [--timeout SECS] [--seconds N] [--clone-skb N]`: Linux's
//! own e1000 driver and its packet generator on the same emulated NIC pair,
//! the peer the kernel and uio measurements are read against (issue 24,
//! item 5).
//!
//! 1. finds QEMU, the kernel in `/boot` and a static busybox exactly as
//!    `cargo xtask qemu` does, plus `e1000.ko` and `pktgen.ko` of that
//!    kernel and every module they depend on (from its `modules.dep`);
//! 2. packs a busybox initramfs whose `/init` loads them, brings both NICs
//!    up, waits for their carrier and runs pktgen twice with 60-byte frames
//!    (`pkt_size 60`, the minimum Ethernet frame without its CRC) addressed
//!    to the other NIC's MAC:
//!    - `one-way`: eth0 -> eth1 from pktgen's thread on CPU 0;
//!    - `both-ways`: eth0 -> eth1 on CPU 0 and eth1 -> eth0 on CPU 1 at
//!      once;
//! 3. boots it on the machine `cargo xtask qemu` uses (two vCPUs under
//!    multi-threaded TCG, two e1000s joined by hub 0 and nothing else);
//! 4. reads the counters the guest prints (pktgen's `Result:` lines and each
//!    receiving interface's `rx_packets` before and after, with the guest's
//!    uptime) and prints transmit and receive packets per second per
//!    direction and in total.
//!
//! By default pktgen builds a fresh buffer (`sk_buff`) for every frame, as a
//! stack's transmit path does; `--clone-skb N` makes it send each buffer
//! N times instead (pktgen's `clone_skb`), which measures the driver and the
//! device with most of the allocation taken out.
//!
//! It exits non-zero if the guest fails, if a counter is missing or
//! malformed, or if a direction moved no frame at all; it never judges a
//! rate.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::initramfs;
use crate::tools::{APT_PACKAGES, Tools};

/// The line `/init` prints last, followed by its status.
const EXIT_MARK: &str = "MPSAFE-PKTGEN-EXIT ";
/// pktgen's result for one sending device: `<run> <tx> <rx> <Result: ...>`.
const TX_MARK: &str = "PKTGEN-TX ";
/// A receiving interface's `rx_packets` and the guest's uptime, taken just
/// before pktgen starts and just after it stops: `<run> <dev> <count> <uptime>`.
const RX_BEFORE_MARK: &str = "PKTGEN-RX-BEFORE ";
const RX_AFTER_MARK: &str = "PKTGEN-RX-AFTER ";
/// The frame size pktgen is told to send, without the CRC.
const FRAME: u32 = 60;
const DEFAULT_SECONDS: u32 = 3;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);
/// The runs and their directions (sender, receiver); sender `i` is added to
/// pktgen's thread `kpktgend_i`, which runs on CPU `i`.
const RUNS: [(&str, &[(&str, &str)]); 2] = [
    ("one-way", &[("eth0", "eth1")]),
    ("both-ways", &[("eth0", "eth1"), ("eth1", "eth0")]),
];
/// The modules `/init` needs; their dependencies are added from `modules.dep`.
const MODULES: [&str; 2] = ["e1000", "pktgen"];

#[derive(Debug)]
struct PktgenArgs {
    timeout: Duration,
    check_only: bool,
    seconds: u32,
    /// pktgen's `clone_skb`: how many frames each buffer is sent as (0 and
    /// 1 both build a fresh buffer for every frame).
    clone_skb: u32,
}

impl PktgenArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = Self {
            timeout: DEFAULT_TIMEOUT,
            check_only: false,
            seconds: DEFAULT_SECONDS,
            clone_skb: 0,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => {
                    let v = it.next().ok_or("--timeout needs a value")?;
                    let secs: u64 = v.parse().map_err(|_| format!("bad --timeout {v:?}"))?;
                    a.timeout = Duration::from_secs(secs);
                }
                "--seconds" => {
                    let v = it.next().ok_or("--seconds needs a value")?;
                    a.seconds = v
                        .parse()
                        .ok()
                        .filter(|s| (1..=600).contains(s))
                        .ok_or_else(|| format!("bad --seconds {v:?} (1 to 600)"))?;
                }
                "--clone-skb" => {
                    let v = it.next().ok_or("--clone-skb needs a value")?;
                    a.clone_skb = v.parse().map_err(|_| format!("bad --clone-skb {v:?}"))?;
                }
                "--check" => a.check_only = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(a)
    }
}

pub(crate) fn usage() -> &'static str {
    "cargo xtask pktgen [--check] [--timeout SECS] [--seconds N] [--clone-skb N]\n\
     \n\
     Boots the Linux kernel from /boot on the same QEMU pair (two vCPUs, two e1000\n\
     NICs on a hub) and measures Linux's e1000 driver with pktgen, 60-byte frames,\n\
     N seconds (default 3) one way (eth0->eth1) and both ways at once. --clone-skb N\n\
     sends each buffer N times (default 0: a fresh buffer for every frame)."
}

pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match PktgenArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask pktgen: {e}\nusage: {}", usage());
            return ExitCode::from(2);
        }
    };
    let tools = match crate::tools::find_or_report("pktgen") {
        Ok(t) => t,
        Err(status) => return status,
    };
    let modules = match guest_modules("pktgen", &tools, &MODULES) {
        Ok(m) => m,
        Err(status) => return status,
    };
    if args.check_only {
        return ExitCode::SUCCESS;
    }
    let out = crate::workspace_root().join("target/pktgen");
    let run = || -> Result<ExitCode, String> {
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let initrd = out.join("initramfs.gz");
        pack_initramfs(&tools, &modules, &args, &initrd)?;
        let load_before = loadavg();
        let lines = boot("pktgen", &tools, &initrd, args.timeout)?;
        let result = report(&lines, args.clone_skb);
        // The host's CPUs are shared: say how busy they were around the run.
        eprintln!(
            "xtask pktgen: host load average (1 min) {} before the run, {} after, {} CPUs",
            load_before,
            loadavg(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        result
    };
    run().unwrap_or_else(|e| {
        eprintln!("xtask pktgen: {e}");
        ExitCode::FAILURE
    })
}

/// The host's one-minute load average, as `/proc/loadavg` gives it.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// The module files for `names` and everything they depend on, each once,
/// dependencies before their users (the order `insmod` needs), read from
/// `dir/modules.dep` (`path: dep dep ...`, paths relative to `dir`).
pub(crate) fn load_order(dir: &Path, names: &[&str]) -> Result<Vec<PathBuf>, String> {
    let dep_file = dir.join("modules.dep");
    let text =
        std::fs::read_to_string(&dep_file).map_err(|e| format!("{}: {e}", dep_file.display()))?;
    let order = resolve(&text, names)?;
    Ok(order.into_iter().map(|p| dir.join(p)).collect())
}

/// The module name of a `modules.dep` path: `kernel/net/core/pktgen.ko.xz`
/// is `pktgen`.
pub(crate) fn module_name(path: &str) -> &str {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split_once(".ko").map_or(file, |(name, _)| name)
}

/// [`load_order`] of `names` for the boot kernel's modules, for the xtask
/// `who`: prints the tools and modules it will use, or what is missing with
/// the package that provides it and gives the exit status 2.
pub(crate) fn guest_modules(
    who: &str,
    tools: &Tools,
    names: &[&str],
) -> Result<Vec<PathBuf>, ExitCode> {
    let modules_dir = Path::new("/lib/modules").join(&tools.kernel_version);
    let modules = load_order(&modules_dir, names).map_err(|e| {
        let them = if names.len() == 1 { "it" } else { "them" };
        eprintln!(
            "xtask {who}: {e} (the kernel package {} provides {them})",
            APT_PACKAGES[1]
        );
        ExitCode::from(2)
    })?;
    eprintln!(
        "xtask {who}: {} | kernel {} | busybox {} | modules {}",
        tools.qemu.display(),
        tools.kernel.display(),
        tools.busybox.display(),
        modules
            .iter()
            .map(|m| m.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(modules)
}

/// [`load_order`] on the text of a `modules.dep`.
fn resolve<'a>(dep_text: &'a str, names: &[&str]) -> Result<Vec<&'a str>, String> {
    let deps: Vec<(&str, Vec<&str>)> = dep_text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    // Module names treat `-` and `_` alike.
    let same = |a: &str, b: &str| a.replace('-', "_") == b.replace('-', "_");
    let mut order: Vec<&str> = Vec::new();
    for name in names {
        let (path, closure) = deps
            .iter()
            .find(|(m, _)| same(module_name(m), name))
            .ok_or_else(|| format!("module {name} is not in modules.dep"))?;
        // modules.dep lists a module's whole dependency closure, the
        // deepest last: load it from the end.
        for d in closure.iter().rev().chain([path]) {
            if !order.contains(d) {
                order.push(d);
            }
        }
    }
    Ok(order)
}

fn init_script(modules: &[String], seconds: u32, clone_skb: u32) -> String {
    let mut runs = String::new();
    for (name, dirs) in RUNS {
        let pairs: Vec<String> = dirs.iter().map(|(t, r)| format!("{t}:{r}")).collect();
        runs.push_str(&format!("run {name} {}\n", pairs.join(" ")));
    }
    format!(
        r#"#!/bin/busybox sh
# The guest: Linux's e1000 driver and pktgen on the two NICs, {FRAME}-byte
# frames for {seconds} s per run; every counter goes to the console.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {{ echo "PKTGEN-FAIL $*"; echo "{EXIT_MARK}1"; poweroff -f; sleep 60; }}
for m in {modules}; do insmod /lib/modules/$m || fail "insmod $m"; done
# No IPv6 autoconfiguration chatter in the receive counters.
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6 2>/dev/null
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 2>/dev/null
for i in eth0 eth1; do
  [ -d /sys/class/net/$i ] || fail "no interface $i"
  ip link set $i up || fail "ip link set $i up"
done
n=0
until [ "$(cat /sys/class/net/eth0/carrier)" = 1 ] && [ "$(cat /sys/class/net/eth1/carrier)" = 1 ]; do
  n=$((n + 1)); [ $n -le 200 ] || fail "no carrier after 20 s"; usleep 100000
done
for i in eth0 eth1; do echo "PKTGEN-NIC $i $(cat /sys/class/net/$i/address)"; done
pg() {{ echo "$2" > "/proc/net/pktgen/$1" || fail "pktgen: '$2' > $1"; }}
# run NAME TX:RX...: sender number i goes to pktgen's thread on CPU i.
run() {{
  name=$1; shift
  pg pgctrl reset
  t=0
  for d in "$@"; do
    tx=${{d%:*}}; rx=${{d#*:}}
    pg kpktgend_$t "add_device $tx"
    pg $tx "count 0"
    pg $tx "pkt_size {FRAME}"
    pg $tx "delay 0"
    pg $tx "clone_skb {clone_skb}"
    pg $tx "dst_mac $(cat /sys/class/net/$rx/address)"
    pg $tx "src_min 198.18.0.$((t + 1))"
    pg $tx "src_max 198.18.0.$((t + 1))"
    pg $tx "dst 198.18.0.$((2 - t))"
    t=$((t + 1))
  done
  for d in "$@"; do
    rx=${{d#*:}}; read up _ < /proc/uptime
    echo "{RX_BEFORE_MARK}$name $rx $(cat /sys/class/net/$rx/statistics/rx_packets) $up"
  done
  echo start > /proc/net/pktgen/pgctrl &
  started=$!
  sleep {seconds}
  echo stop > /proc/net/pktgen/pgctrl
  wait $started
  for d in "$@"; do
    rx=${{d#*:}}; read up _ < /proc/uptime
    echo "{RX_AFTER_MARK}$name $rx $(cat /sys/class/net/$rx/statistics/rx_packets) $up"
  done
  for d in "$@"; do
    tx=${{d%:*}}; rx=${{d#*:}}
    echo "{TX_MARK}$name $tx $rx $(sed -n '/^Result:/{{N;s/\n/ /;p}}' /proc/net/pktgen/$tx)"
  done
  grep -E 'CPU|eth' /proc/interrupts | sed "s/^/PKTGEN-IRQ $name /"
}}
{runs}echo "{EXIT_MARK}0"
poweroff -f
"#,
        modules = modules.join(" ")
    )
}

fn pack_initramfs(
    tools: &Tools,
    modules: &[PathBuf],
    args: &PktgenArgs,
    out: &Path,
) -> Result<(), String> {
    let mut c = initramfs::busybox_root(&tools.busybox)?;
    let names = initramfs::add_modules(&mut c, modules)?;
    let init = init_script(&names, args.seconds, args.clone_skb);
    c.file("init", 0o755, init.as_bytes());
    initramfs::gzip_to(&c.finish(), out).map_err(|e| format!("{}: {e}", out.display()))
}

/// Boots the guest, streams its console and returns every line once QEMU has
/// exited; kills QEMU at the timeout.
pub(crate) fn boot(
    who: &str,
    tools: &Tools,
    initrd: &Path,
    timeout: Duration,
) -> Result<Vec<String>, String> {
    let mut cmd = crate::qemu_command(tools, initrd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    eprintln!(
        "xtask {who}: booting Linux {} (timeout {} s)",
        tools.kernel_version,
        timeout.as_secs()
    );
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("starting QEMU: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line);
            if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        match rx.recv_timeout(left) {
            Ok(line) => {
                println!("{line}");
                lines.push(line);
            }
            // QEMU closed its console: it has exited.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = reader.join();
                return Err(format!(
                    "timeout: the guest ran longer than {} s; QEMU killed",
                    timeout.as_secs()
                ));
            }
        }
    }
    let status = child.wait().map_err(|e| format!("waiting for QEMU: {e}"))?;
    let _ = reader.join();
    eprintln!(
        "xtask {who}: QEMU exited ({status}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(lines)
}

/// One direction of one run, from the guest's counters.
#[derive(Debug, Clone, PartialEq)]
struct Direction {
    run: String,
    tx_dev: String,
    rx_dev: String,
    /// Frames pktgen sent (its `sofar`) and the time it ran, in µs.
    tx_frames: u64,
    tx_usec: u64,
    /// pktgen's own rate and its failed transmits.
    tx_pps_pktgen: u64,
    tx_errors: u64,
    /// The receiver's `rx_packets` delta and the guest time between the two
    /// readings, in seconds.
    rx_frames: u64,
    rx_secs: f64,
}

impl Direction {
    fn tx_pps(&self) -> f64 {
        self.tx_frames as f64 * 1e6 / self.tx_usec as f64
    }

    fn rx_pps(&self) -> f64 {
        self.rx_frames as f64 / self.rx_secs
    }
}

/// pktgen's result, `Result: OK: 3000123(c2999000+d1123) usec, 231000
/// (60byte,0frags) 77000pps 36Mb/sec (36960000bps) errors: 0`, as
/// (usec, frames, frame size, pps, errors).
fn parse_result(s: &str) -> Result<(u64, u64, u32, u64, u64), String> {
    let bad = || format!("malformed pktgen result {s:?}");
    let rest = s
        .trim()
        .strip_prefix("Result: OK: ")
        .ok_or_else(|| format!("pktgen did not report OK: {s:?}"))?;
    let num = |t: &str| t.parse::<u64>().map_err(|_| bad());
    let (usec, rest) = rest.split_once('(').ok_or_else(bad)?;
    let (_, rest) = rest.split_once(") usec, ").ok_or_else(bad)?;
    let (frames, rest) = rest.split_once(" (").ok_or_else(bad)?;
    let (size, rest) = rest.split_once("byte,").ok_or_else(bad)?;
    let (_, rest) = rest.split_once(')').ok_or_else(bad)?;
    let (pps, rest) = rest.trim().split_once("pps").ok_or_else(bad)?;
    let (_, errors) = rest.split_once("errors:").ok_or_else(bad)?;
    Ok((
        num(usec.trim())?,
        num(frames.trim())?,
        size.trim().parse().map_err(|_| bad())?,
        num(pps)?,
        num(errors.trim())?,
    ))
}

/// Every direction of every run in [`RUNS`], or what is missing.
fn directions(lines: &[String]) -> Result<Vec<Direction>, String> {
    let find = |mark: &str, run: &str, dev: &str| {
        lines
            .iter()
            .filter_map(|l| l.trim().strip_prefix(mark))
            .find_map(|l| {
                let rest = l.strip_prefix(run)?.strip_prefix(' ')?;
                rest.strip_prefix(dev)?.strip_prefix(' ')
            })
            .ok_or_else(|| format!("no {}line for {run} {dev}", mark))
    };
    let rx_reading = |mark: &str, run: &str, dev: &str| -> Result<(u64, f64), String> {
        let l = find(mark, run, dev)?;
        let mut w = l.split_whitespace();
        let count = w.next().and_then(|c| c.parse().ok());
        let up = w.next().and_then(|u| u.parse().ok());
        match (count, up) {
            (Some(c), Some(u)) => Ok((c, u)),
            _ => Err(format!("malformed {mark}line {l:?}")),
        }
    };
    let mut out = Vec::new();
    for (run, dirs) in RUNS {
        for (tx_dev, rx_dev) in dirs {
            let tx_line = find(TX_MARK, run, tx_dev)?;
            let result = tx_line
                .strip_prefix(rx_dev)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| format!("{TX_MARK}{run} {tx_dev}: not sent to {rx_dev}"))?;
            let (tx_usec, tx_frames, size, tx_pps_pktgen, tx_errors) = parse_result(result)?;
            if size != FRAME {
                return Err(format!("{run} {tx_dev}: pktgen sent {size}-byte frames"));
            }
            let (before, up0) = rx_reading(RX_BEFORE_MARK, run, rx_dev)?;
            let (after, up1) = rx_reading(RX_AFTER_MARK, run, rx_dev)?;
            let rx_frames = after
                .checked_sub(before)
                .ok_or_else(|| format!("{run} {rx_dev}: rx_packets went back"))?;
            let rx_secs = up1 - up0;
            let d = Direction {
                run: run.into(),
                tx_dev: (*tx_dev).into(),
                rx_dev: (*rx_dev).into(),
                tx_frames,
                tx_usec,
                tx_pps_pktgen,
                tx_errors,
                rx_frames,
                rx_secs,
            };
            if tx_frames == 0
                || tx_usec == 0
                || rx_frames == 0
                || !rx_secs.is_finite()
                || rx_secs <= 0.0
            {
                return Err(format!("{run} {tx_dev}->{rx_dev}: nothing moved: {d:?}"));
            }
            out.push(d);
        }
    }
    Ok(out)
}

fn table(dirs: &[Direction]) -> String {
    let mut t = format!(
        "{:<10} {:<11} {:>10} {:>9} {:>10} {:>9} {:>7}\n",
        "run", "direction", "tx frames", "tx pps", "rx frames", "rx pps", "rx/tx"
    );
    let row = |t: &mut String, run: &str, dir: &str, tf: u64, tp: f64, rf: u64, rp: f64| {
        t.push_str(&format!(
            "{run:<10} {dir:<11} {tf:>10} {tp:>9.0} {rf:>10} {rp:>9.0} {:>6.1}%\n",
            100.0 * rf as f64 / tf as f64
        ));
    };
    for (run, _) in RUNS {
        let these: Vec<&Direction> = dirs.iter().filter(|d| d.run == run).collect();
        for d in &these {
            let dir = format!("{}->{}", d.tx_dev, d.rx_dev);
            row(
                &mut t,
                run,
                &dir,
                d.tx_frames,
                d.tx_pps(),
                d.rx_frames,
                d.rx_pps(),
            );
        }
        if these.len() > 1 {
            row(
                &mut t,
                run,
                "total",
                these.iter().map(|d| d.tx_frames).sum(),
                these.iter().map(|d| d.tx_pps()).sum(),
                these.iter().map(|d| d.rx_frames).sum(),
                these.iter().map(|d| d.rx_pps()).sum(),
            );
        }
    }
    t
}

fn report(lines: &[String], clone_skb: u32) -> Result<ExitCode, String> {
    let status = lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARK))
        .ok_or_else(|| format!("QEMU exited without the guest's {EXIT_MARK:?} line"))?;
    if status.trim() != "0" {
        return Err(format!("the guest failed (status {})", status.trim()));
    }
    let dirs = directions(lines)?;
    println!(
        "\nLinux e1000 + pktgen (clone_skb {clone_skb}), {FRAME}-byte frames, 2 vCPUs (TCG), \
         two e1000s on one hub\n\
         tx: pktgen's frames / its run time; rx: the receiver's rx_packets delta / guest uptime\n"
    );
    print!("{}", table(&dirs));
    for d in &dirs {
        if d.tx_errors != 0 {
            println!(
                "{} {}: pktgen counted {} failed transmits (ring full, retried)",
                d.run, d.tx_dev, d.tx_errors
            );
        }
        let ours = d.tx_pps();
        let theirs = d.tx_pps_pktgen as f64;
        if (ours - theirs).abs() > 0.01 * theirs + 1.0 {
            println!(
                "{} {}: pktgen's own pps {} differs from frames/time {ours:.0}",
                d.run, d.tx_dev, d.tx_pps_pktgen
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<PktgenArgs, String> {
        PktgenArgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = parse(&["--timeout", "9", "--seconds", "5"]).unwrap();
        assert_eq!(a.timeout, Duration::from_secs(9));
        assert_eq!(a.seconds, 5);
        assert_eq!(parse(&[]).unwrap().seconds, DEFAULT_SECONDS);
        assert!(parse(&["--seconds", "0"]).is_err());
        assert_eq!(parse(&["--clone-skb", "7"]).unwrap().clone_skb, 7);
        assert!(parse(&["--clone-skb", "-1"]).is_err());
        assert!(parse(&["--seconds"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    #[test]
    fn dependencies_load_first() {
        let dep = "kernel/net/core/pktgen.ko.xz:\n\
                   kernel/drivers/net/ethernet/intel/e1000/e1000.ko: kernel/a/b.ko kernel/c/d-e.ko.zst\n\
                   kernel/a/b.ko: kernel/c/d-e.ko.zst\n\
                   kernel/c/d-e.ko.zst:\n";
        let order = resolve(dep, &["e1000", "pktgen"]).unwrap();
        assert_eq!(
            order,
            [
                "kernel/c/d-e.ko.zst",
                "kernel/a/b.ko",
                "kernel/drivers/net/ethernet/intel/e1000/e1000.ko",
                "kernel/net/core/pktgen.ko.xz",
            ]
        );
        assert!(resolve(dep, &["e1000e"]).is_err());
        assert_eq!(module_name("x/pktgen.ko.xz"), "pktgen");
    }

    #[test]
    fn pktgen_result() {
        let r = "Result: OK: 3000212(c2999712+d500) usec, 231092 (60byte,0frags)   \
                 77025pps 36Mb/sec (36972000bps) errors: 3";
        assert_eq!(parse_result(r).unwrap(), (3000212, 231092, 60, 77025, 3));
        assert!(parse_result("Result: Idle").is_err());
        assert!(parse_result("Result: OK: x(c1+d1) usec, 5 (60byte,0frags)").is_err());
    }

    fn guest_lines(skip: &str) -> Vec<String> {
        let mut v = vec![
            "PKTGEN-RX-BEFORE one-way eth1 10 5.00",
            "PKTGEN-RX-AFTER one-way eth1 3010 8.00",
            "PKTGEN-TX one-way eth0 eth1 Result: OK: 3000000(c3000000+d0) usec, 3000 (60byte,0frags) 1000pps 0Mb/sec (480000bps) errors: 0",
            "PKTGEN-RX-BEFORE both-ways eth1 3010 9.00",
            "PKTGEN-RX-BEFORE both-ways eth0 7 9.00",
            "PKTGEN-RX-AFTER both-ways eth1 4510 12.00",
            "PKTGEN-RX-AFTER both-ways eth0 907 12.00",
            "PKTGEN-TX both-ways eth0 eth1 Result: OK: 2000000(c2000000+d0) usec, 2000 (60byte,0frags) 1000pps 0Mb/sec (480000bps) errors: 0",
            "PKTGEN-TX both-ways eth1 eth0 Result: OK: 1000000(c1000000+d0) usec, 1000 (60byte,0frags) 1000pps 0Mb/sec (480000bps) errors: 0",
            "MPSAFE-PKTGEN-EXIT 0",
        ];
        v.retain(|l| !l.starts_with(skip));
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn counters_become_rates() {
        let d = directions(&guest_lines("nothing")).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!((d[0].tx_frames, d[0].rx_frames), (3000, 3000));
        assert!((d[0].tx_pps() - 1000.0).abs() < 1e-9);
        assert!((d[0].rx_pps() - 1000.0).abs() < 1e-9);
        assert_eq!((d[2].tx_dev.as_str(), d[2].rx_frames), ("eth1", 900));
        assert!((d[2].rx_pps() - 300.0).abs() < 1e-9);
        let t = table(&d);
        assert!(t.contains("both-ways  total"), "{t}");
        assert!(report(&guest_lines("nothing"), 0).is_ok());
    }

    #[test]
    fn a_missing_counter_fails() {
        for skip in [
            "PKTGEN-RX-BEFORE one-way",
            "PKTGEN-RX-AFTER both-ways eth0",
            "PKTGEN-TX both-ways eth1",
            "MPSAFE-PKTGEN-EXIT",
        ] {
            assert!(report(&guest_lines(skip), 0).is_err(), "{skip}");
        }
        let mut failed = guest_lines("MPSAFE-PKTGEN-EXIT");
        failed.push("MPSAFE-PKTGEN-EXIT 1".into());
        assert!(report(&failed, 0).is_err());
        let mut idle = guest_lines("PKTGEN-RX-AFTER one-way");
        idle.push("PKTGEN-RX-AFTER one-way eth1 10 8.00".into());
        assert!(directions(&idle).is_err(), "no frame received");
    }

    #[test]
    fn the_script_sends_to_the_other_nic() {
        let s = init_script(&["e1000.ko".into(), "pktgen.ko".into()], 3, 0);
        assert!(s.contains("run one-way eth0:eth1\n"));
        assert!(s.contains("run both-ways eth0:eth1 eth1:eth0\n"));
        assert!(s.contains(r#"dst_mac $(cat /sys/class/net/$rx/address)"#));
        assert!(s.contains("pkt_size 60"));
        assert!(s.contains("clone_skb 0"));
        assert!(s.contains("for m in e1000.ko pktgen.ko;"));
    }
}
