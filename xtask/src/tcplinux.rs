//! `cargo xtask tcp-linux [--check] [--timeout SECS] [--mib N] [--runs N]`:
//! Linux's own e1000 driver and TCP doing the bulk transfer of the TCP
//! figures between the same two emulated NICs, the peer our driver's
//! TCP goodput is read against (issue 25, item 4).
//!
//! 1. finds QEMU, the kernel in `/boot` and a static busybox as
//!    `cargo xtask qemu` does, plus `e1000.ko` and what it depends on;
//! 2. builds `tcp-bulk` (a binary of mpsafe-em-uio) statically;
//! 3. packs a busybox initramfs whose `/init` loads e1000, moves eth1 into
//!    a second network namespace (held by a sleeping `unshare -n`; busybox's
//!    `ip link set DEV netns PID` and `nsenter`), so that 10.0.0.1 (eth0)
//!    and 10.0.0.2 (eth1) are not local to each other and every byte crosses
//!    both e1000s and QEMU's hub, and runs the transfer N times: the
//!    receiver in eth1's namespace pinned to CPU 1, the sender pinned to
//!    CPU 0;
//! 4. boots it on the machine `cargo xtask qemu` uses (two vCPUs under
//!    multi-threaded TCG, two e1000s joined by hub 0 and nothing else);
//! 5. checks every run (both sides' byte counts and hashes agree, the
//!    receiving NIC counted at least the payload in `rx_bytes`) and prints
//!    goodput and CPU time per MiB.
//!
//! It exits non-zero if the guest fails or a run does not check out; it
//! never judges a rate.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::initramfs;
use crate::pktgen;
use crate::tools::Tools;

/// The line `/init` prints last, followed by its status.
const EXIT_MARK: &str = "MPSAFE-TCP-LINUX-EXIT ";
/// One side's result: `<mark><run> <tcp-bulk's line>`.
const SEND_MARK: &str = "TCP-LINUX-SEND ";
const RECV_MARK: &str = "TCP-LINUX-RECV ";
/// The receiving NIC's `rx_bytes` before and after a run: `<run> <before> <after>`.
const RX_BYTES_MARK: &str = "TCP-LINUX-RX-BYTES ";
/// The guest binary that transfers and checks.
const TOOL: &str = "tcp-bulk";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(240);
const DEFAULT_MIB: u32 = 32;
const DEFAULT_RUNS: u32 = 3;

#[derive(Debug)]
struct TcpArgs {
    timeout: Duration,
    check_only: bool,
    mib: u32,
    runs: u32,
}

impl TcpArgs {
    fn parse(args: &[String]) -> Result<Self, String> {
        let mut a = Self {
            timeout: DEFAULT_TIMEOUT,
            check_only: false,
            mib: DEFAULT_MIB,
            runs: DEFAULT_RUNS,
        };
        let mut it = args.iter();
        let number = |it: &mut std::slice::Iter<'_, String>, what: &str, max: u32| {
            let v = it.next().ok_or(format!("{what} needs a value"))?;
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| format!("bad {what} {v:?} (1 to {max})"))
        };
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--timeout" => {
                    a.timeout = Duration::from_secs(u64::from(number(&mut it, arg, 3600)?));
                }
                "--mib" => a.mib = number(&mut it, arg, 1024)?,
                "--runs" => a.runs = number(&mut it, arg, 20)?,
                "--check" => a.check_only = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(a)
    }
}

pub(crate) fn usage() -> &'static str {
    "cargo xtask tcp-linux [--check] [--timeout SECS] [--mib N] [--runs N]\n\
     \n\
     Boots the Linux kernel from /boot on the same QEMU pair and measures Linux's\n\
     e1000 driver and TCP: N MiB (default 32) from eth0 to eth1 in a second network\n\
     namespace, checked end to end, --runs times (default 3); prints goodput and\n\
     CPU time per MiB."
}

pub(crate) fn main(args: &[String]) -> ExitCode {
    let args = match TcpArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("xtask tcp-linux: {e}\nusage: {}", usage());
            return ExitCode::from(2);
        }
    };
    let tools = match crate::tools::find_or_report("tcp-linux") {
        Ok(t) => t,
        Err(status) => return status,
    };
    let modules = match pktgen::guest_modules("tcp-linux", &tools, &["e1000"]) {
        Ok(m) => m,
        Err(status) => return status,
    };
    if args.check_only {
        return ExitCode::SUCCESS;
    }
    let root = crate::workspace_root();
    let out = root.join("target/tcp-linux");
    let run = || -> Result<ExitCode, String> {
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        let tool = crate::build_guest_bin(&root, TOOL)?;
        let initrd = out.join("initramfs.gz");
        pack_initramfs(&tools, &modules, &tool, &args, &initrd)?;
        let load_before = pktgen::loadavg();
        let lines = pktgen::boot("tcp-linux", &tools, &initrd, args.timeout)?;
        let result = report(&lines, args.mib, args.runs);
        // The host's CPUs are shared: say how busy they were around the run.
        eprintln!(
            "xtask tcp-linux: host load average (1 min) {} before the run, {} after, {} CPUs",
            load_before,
            pktgen::loadavg(),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        result
    };
    run().unwrap_or_else(|e| {
        eprintln!("xtask tcp-linux: {e}");
        ExitCode::FAILURE
    })
}

fn init_script(modules: &[String], mib: u32, runs: u32) -> String {
    format!(
        r#"#!/bin/busybox sh
# The guest: Linux's e1000 driver and TCP, eth0 in the first network
# namespace and eth1 in a second one, {mib} MiB eth0 -> eth1, {runs} runs.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {{ echo "TCP-LINUX-FAIL $*"; echo "{EXIT_MARK}1"; poweroff -f; sleep 60; }}
for m in {modules}; do insmod /lib/modules/$m || fail "insmod $m"; done
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
for i in eth0 eth1; do [ -d /sys/class/net/$i ] || fail "no interface $i"; done
# eth1's namespace, held by a process that sleeps in it; wait until it has
# left ours before moving eth1 there.
unshare -n sleep 100000 &
peer=$!
n=0
until [ "$(readlink /proc/$peer/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do
  n=$((n + 1)); [ $n -le 200 ] || fail "no second namespace after 20 s"; usleep 100000
done
peerns() {{ nsenter -t $peer -n "$@"; }}
peerns sh -c 'echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6'
ip link set eth1 netns $peer || fail "ip link set eth1 netns $peer"
[ -d /sys/class/net/eth1 ] && fail "eth1 is still in the first namespace"
peerns ip link set lo up || fail "lo up in eth1's namespace"
peerns ip addr add 10.0.0.2/24 dev eth1 || fail "address of eth1"
peerns ip link set eth1 up || fail "eth1 up"
ip link set lo up || fail "lo up"
ip addr add 10.0.0.1/24 dev eth0 || fail "address of eth0"
ip link set eth0 up || fail "eth0 up"
n=0
until ip link show eth0 | grep -q LOWER_UP && peerns ip link show eth1 | grep -q LOWER_UP; do
  n=$((n + 1)); [ $n -le 200 ] || fail "no carrier after 20 s"; usleep 100000
done
echo "TCP-LINUX-NS first $(readlink /proc/self/ns/net): $(ls /sys/class/net | tr '\n' ' ')"
echo "TCP-LINUX-NS second $(readlink /proc/$peer/ns/net): $(peerns cat /proc/net/dev | sed -n 's/^ *\([^:]*\):.*/\1/p' | tr '\n' ' ')"
# eth1's received bytes, read in its namespace.
rx_bytes() {{ peerns cat /proc/net/dev | sed -n 's/^ *eth1: *//p' | awk '{{print $1}}'; }}
r=1
while [ $r -le {runs} ]; do
  before=$(rx_bytes)
  peerns /bin/{TOOL} recv $((5000 + r)) {mib} --cpu 1 > /tmp/recv 2>&1 &
  receiver=$!
  /bin/{TOOL} send 10.0.0.2:$((5000 + r)) {mib} --cpu 0 > /tmp/send 2>&1
  sent=$?
  wait $receiver
  received=$?
  sed "s/^/{SEND_MARK}$r /" /tmp/send
  sed "s/^/{RECV_MARK}$r /" /tmp/recv
  [ $sent = 0 ] || fail "run $r: the sender failed"
  [ $received = 0 ] || fail "run $r: the receiver failed"
  echo "{RX_BYTES_MARK}$r $before $(rx_bytes)"
  r=$((r + 1))
done
grep -E 'CPU|eth' /proc/interrupts | sed "s/^/TCP-LINUX-IRQ /"
kill $peer
echo "{EXIT_MARK}0"
poweroff -f
"#,
        modules = modules.join(" ")
    )
}

fn pack_initramfs(
    tools: &Tools,
    modules: &[PathBuf],
    tool: &Path,
    args: &TcpArgs,
    out: &Path,
) -> Result<(), String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut c = initramfs::busybox_root(&tools.busybox)?;
    c.file(&format!("bin/{TOOL}"), 0o755, &read(tool)?);
    let names = initramfs::add_modules(&mut c, modules)?;
    c.file(
        "init",
        0o755,
        init_script(&names, args.mib, args.runs).as_bytes(),
    );
    initramfs::gzip_to(&c.finish(), out).map_err(|e| format!("{}: {e}", out.display()))
}

/// One checked run.
#[derive(Debug, Clone, PartialEq)]
struct Run {
    bytes: u64,
    /// The sender's span, from the connection to the receiver's answer.
    secs: f64,
    mbit: f64,
    send_cpu_ms: f64,
    recv_cpu_ms: f64,
    /// Both CPUs' non-idle time over the sender's span.
    guest_busy_ms: f64,
    /// What eth1 counted in `rx_bytes` during the run.
    rx_bytes: u64,
}

/// `key=value` of a `tcp-bulk` line.
fn field<'a>(line: &'a str, key: &str) -> Result<&'a str, String> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| format!("no {key}= in {line:?}"))
}

fn number<T: std::str::FromStr>(line: &str, key: &str) -> Result<T, String> {
    let v = field(line, key)?;
    v.parse()
        .map_err(|_| format!("malformed {key}={v} in {line:?}"))
}

/// Every run, checked, or why one does not check out.
fn runs(lines: &[String], mib: u32, count: u32) -> Result<Vec<Run>, String> {
    let find = |mark: &str, run: u32| {
        let tag = format!("{run} ");
        lines
            .iter()
            .filter_map(|l| l.trim().strip_prefix(mark))
            .find_map(|l| l.strip_prefix(&tag))
            .ok_or_else(|| format!("no {mark}line for run {run}"))
    };
    let want = u64::from(mib) << 20;
    let mut out = Vec::new();
    for r in 1..=count {
        let send = find(SEND_MARK, r)?;
        let recv = find(RECV_MARK, r)?;
        let send = send
            .strip_prefix("TCP-BULK-SEND ")
            .ok_or_else(|| format!("run {r}: the sender said {send:?}"))?;
        let recv = recv
            .strip_prefix("TCP-BULK-RECV ")
            .ok_or_else(|| format!("run {r}: the receiver said {recv:?}"))?;
        let (sb, rb): (u64, u64) = (number(send, "bytes")?, number(recv, "bytes")?);
        let (sh, rh) = (field(send, "hash")?, field(recv, "hash")?);
        if sb != want || rb != want || sh != rh {
            return Err(format!(
                "run {r}: sent {sb} bytes hashing to {sh}, received {rb} hashing to {rh}, \
                 expected {want} bytes"
            ));
        }
        let rx = find(RX_BYTES_MARK, r)?;
        let rx: Vec<u64> = rx
            .split_whitespace()
            .map(|n| {
                n.parse()
                    .map_err(|_| format!("malformed {RX_BYTES_MARK}{rx:?}"))
            })
            .collect::<Result<_, _>>()?;
        let [before, after] = rx[..] else {
            return Err(format!("run {r}: malformed rx_bytes reading {rx:?}"));
        };
        let rx_bytes = after.wrapping_sub(before);
        // Every payload byte came in through eth1 (with its headers): the
        // transfer crossed the NICs, not a loopback.
        if after < before || rx_bytes < want {
            return Err(format!(
                "run {r}: eth1 received {rx_bytes} bytes for a {want}-byte transfer"
            ));
        }
        let run = Run {
            bytes: sb,
            secs: number(send, "secs")?,
            mbit: number(send, "mbit")?,
            send_cpu_ms: number(send, "cpu_ms")?,
            recv_cpu_ms: number(recv, "cpu_ms")?,
            guest_busy_ms: number(send, "guest_busy_ms")?,
            rx_bytes,
        };
        if !(run.secs > 0.0 && run.mbit > 0.0) {
            return Err(format!("run {r}: no time or rate: {run:?}"));
        }
        out.push(run);
    }
    Ok(out)
}

fn table(runs: &[Run]) -> String {
    let mut t = format!(
        "{:<4} {:>8} {:>7} {:>9} {:>12} {:>12} {:>12} {:>11}\n",
        "run", "MiB", "secs", "Mbit/s", "send ms/MB", "recv ms/MB", "guest ms/MB", "eth1 rx MB"
    );
    for (i, r) in runs.iter().enumerate() {
        let mib = r.bytes as f64 / f64::from(1 << 20);
        // CPU per MB (10^6 bytes), as the TCP runs over our driver give it.
        let mb = r.bytes as f64 / 1e6;
        t.push_str(&format!(
            "{:<4} {:>8.0} {:>7.2} {:>9.1} {:>12.1} {:>12.1} {:>12.1} {:>11.1}\n",
            i + 1,
            mib,
            r.secs,
            r.mbit,
            r.send_cpu_ms / mb,
            r.recv_cpu_ms / mb,
            r.guest_busy_ms / mb,
            r.rx_bytes as f64 / 1e6
        ));
    }
    t
}

fn report(lines: &[String], mib: u32, count: u32) -> Result<ExitCode, String> {
    let status = lines
        .iter()
        .rev()
        .find_map(|l| l.trim().strip_prefix(EXIT_MARK))
        .ok_or_else(|| format!("QEMU exited without the guest's {EXIT_MARK:?} line"))?;
    if status.trim() != "0" {
        return Err(format!("the guest failed (status {})", status.trim()));
    }
    let runs = runs(lines, mib, count)?;
    println!(
        "\nLinux e1000 + TCP, {mib} MiB eth0 (10.0.0.1) -> eth1 (10.0.0.2, second network \
         namespace), 2 vCPUs (TCG), two e1000s on one hub\n\
         goodput: payload over the sender's span (connect to the receiver's answer); \
         ms/MB: CPU time\n\
         per MB (10^6 bytes) of payload, of the sender (CPU 0), the receiver (CPU 1) and both guest CPUs \
         (/proc/stat)\n"
    );
    print!("{}", table(&runs));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<TcpArgs, String> {
        TcpArgs::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn arguments() {
        let a = parse(&["--timeout", "9", "--mib", "4", "--runs", "2"]).unwrap();
        assert_eq!(a.timeout, Duration::from_secs(9));
        assert_eq!((a.mib, a.runs), (4, 2));
        let d = parse(&[]).unwrap();
        assert_eq!((d.mib, d.runs), (DEFAULT_MIB, DEFAULT_RUNS));
        assert!(parse(&["--mib", "0"]).is_err());
        assert!(parse(&["--runs"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }

    fn guest(skip: &str) -> Vec<String> {
        let mut v = vec![
            "TCP-LINUX-SEND 1 TCP-BULK-SEND bytes=2097152 hash=00ff secs=0.500 cpu_ms=100 guest_busy_ms=800 mbit=33.6",
            "TCP-LINUX-RECV 1 TCP-BULK-RECV bytes=2097152 hash=00ff secs=0.490 cpu_ms=200",
            "TCP-LINUX-RX-BYTES 1 1000 2200000",
            "TCP-LINUX-SEND 2 TCP-BULK-SEND bytes=2097152 hash=00ff secs=1.000 cpu_ms=50 guest_busy_ms=400 mbit=16.8",
            "TCP-LINUX-RECV 2 TCP-BULK-RECV bytes=2097152 hash=00ff secs=0.990 cpu_ms=60",
            "TCP-LINUX-RX-BYTES 2 2200000 4400000",
            "MPSAFE-TCP-LINUX-EXIT 0",
        ];
        v.retain(|l| !l.starts_with(skip));
        v.into_iter().map(String::from).collect()
    }

    #[test]
    fn runs_are_read_and_checked() {
        let r = runs(&guest("nothing"), 2, 2).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].rx_bytes, 2_199_000);
        assert!((r[1].mbit - 16.8).abs() < 1e-9);
        let t = table(&r);
        // 400 ms over 2 MiB, 2.097152 MB.
        assert!(t.contains("190.7"), "guest ms per MB: {t}");
        assert!(report(&guest("nothing"), 2, 2).is_ok());
    }

    #[test]
    fn a_bad_run_fails() {
        for skip in [
            "TCP-LINUX-SEND 2",
            "TCP-LINUX-RECV 1",
            "TCP-LINUX-RX-BYTES 2",
            "MPSAFE-TCP-LINUX-EXIT",
        ] {
            assert!(report(&guest(skip), 2, 2).is_err(), "{skip}");
        }
        // Another size than asked, or more runs than reported.
        assert!(runs(&guest("nothing"), 4, 2).is_err());
        assert!(runs(&guest("nothing"), 2, 3).is_err());
        let swap = |from: &str, to: &str| -> Vec<String> {
            guest("nothing")
                .into_iter()
                .map(|l| l.replace(from, to))
                .collect()
        };
        // Hashes that differ.
        let mut bad = guest("TCP-LINUX-RECV 2");
        bad.push("TCP-LINUX-RECV 2 TCP-BULK-RECV bytes=2097152 hash=00fe secs=1 cpu_ms=1".into());
        assert!(runs(&bad, 2, 2).is_err());
        // Fewer bytes through eth1 than the payload: it went another way.
        assert!(runs(&swap("2200000 4400000", "2200000 2300000"), 2, 2).is_err());
        // A side that failed.
        assert!(
            runs(
                &swap("TCP-BULK-SEND bytes=2097152", "tcp-bulk: FAILED"),
                2,
                2
            )
            .is_err()
        );
        let mut failed = guest("MPSAFE-TCP-LINUX-EXIT");
        failed.push("MPSAFE-TCP-LINUX-EXIT 1".into());
        assert!(report(&failed, 2, 2).is_err());
    }

    #[test]
    fn the_receiver_is_in_the_second_namespace() {
        let s = init_script(&["e1000.ko".into()], 32, 3);
        assert!(s.contains("unshare -n sleep"));
        assert!(s.contains("ip link set eth1 netns $peer"));
        assert!(s.contains("peerns /bin/tcp-bulk recv $((5000 + r)) 32 --cpu 1"));
        assert!(s.contains("/bin/tcp-bulk send 10.0.0.2:$((5000 + r)) 32 --cpu 0"));
        assert!(s.contains("for m in e1000.ko;"));
    }
}
