//! `tcp-bulk`: one bulk TCP transfer through Linux's own sockets, checked
//! end to end, the Linux peer of the TCP figures (`cargo xtask tcp-linux`
//! runs it in a QEMU guest, the receiver in a second network namespace so
//! the bytes cross the two e1000s and QEMU's hub, never the loopback).
//!
//! ```text
//! tcp-bulk recv PORT MIB [--cpu N]
//! tcp-bulk send ADDR:PORT MIB [--cpu N]
//! ```
//!
//! The sender writes MIB MiB of a byte stream generated from its position
//! (splitmix64's finaliser of `position / 8`, byte `position % 8` of it)
//! and shuts its side down; the receiver checks every byte against the same
//! stream as it arrives, keeps a running 64-bit FNV-1a hash, and on the
//! sender's end of stream answers with the count and the hash (16 bytes,
//! little-endian). The sender compares them with its own, so a lost,
//! duplicated or reordered byte fails the run on both sides.
//!
//! Each side prints one line:
//!
//! ```text
//! TCP-BULK-RECV bytes=B hash=H secs=S cpu_ms=C
//! TCP-BULK-SEND bytes=B hash=H secs=S cpu_ms=C guest_busy_ms=G mbit=M
//! ```
//!
//! `secs` runs from the connection's establishment to the last event of
//! that side (the sender: the receiver's answer; the receiver: the end of
//! stream); `cpu_ms` is the process's own user and system time over that
//! span (`getrusage`); `guest_busy_ms` is every CPU's non-idle time over
//! the sender's span from `/proc/stat` (the softirq work of both stacks
//! and the e1000 interrupts, which no process is charged for reliably);
//! `mbit` is the goodput, payload bits over the sender's span. It exits
//! non-zero on any mismatch, error or short transfer.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How long the sender keeps trying to connect while the receiver starts.
const CONNECT_FOR: Duration = Duration::from_secs(20);
/// The size of each `write` and `read`.
const CHUNK: usize = 64 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tcp-bulk: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage: tcp-bulk recv PORT MIB [--cpu N] | tcp-bulk send ADDR:PORT MIB [--cpu N]".into()
}

fn run(args: &[String]) -> Result<String, String> {
    let (role, target, mib) = match args {
        [role, target, mib, ..] => (role.as_str(), target.as_str(), mib.as_str()),
        _ => return Err(usage()),
    };
    let mib: u64 = mib
        .parse()
        .ok()
        .filter(|m| (1..=4096).contains(m))
        .ok_or_else(|| format!("bad MIB {mib:?} (1 to 4096)"))?;
    match &args[3..] {
        [] => {}
        [flag, cpu] if flag == "--cpu" => {
            let cpu: usize = cpu.parse().map_err(|_| format!("bad --cpu {cpu:?}"))?;
            mpsafe_em_sim::cpu::pin_to(cpu)?;
        }
        _ => return Err(usage()),
    }
    let bytes = mib << 20;
    match role {
        "recv" => {
            let port: u16 = target.parse().map_err(|_| format!("bad PORT {target:?}"))?;
            let listener =
                TcpListener::bind(("0.0.0.0", port)).map_err(|e| format!("bind {port}: {e}"))?;
            receive(&listener, bytes)
        }
        "send" => {
            let addr: SocketAddr = target
                .parse()
                .map_err(|_| format!("bad ADDR:PORT {target:?}"))?;
            send(addr, bytes)
        }
        _ => Err(usage()),
    }
}

/// splitmix64's finaliser.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The stream's bytes from position `pos` on, into `out`.
fn pattern(pos: u64, out: &mut [u8]) {
    for (i, b) in out.iter_mut().enumerate() {
        let p = pos + i as u64;
        *b = mix(p >> 3).to_le_bytes()[(p & 7) as usize];
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a, 64-bit, running.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// This process's user plus system CPU time, in milliseconds.
fn cpu_ms() -> Result<f64, String> {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage` for the call to fill.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return Err(format!("getrusage: {}", std::io::Error::last_os_error()));
    }
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1e3 + t.tv_usec as f64 / 1e3;
    Ok(ms(ru.ru_utime) + ms(ru.ru_stime))
}

/// Every CPU's non-idle time so far, in milliseconds, from the `cpu` line
/// of `/proc/stat` (user nice system idle iowait irq softirq steal ..., in
/// clock ticks): everything but idle and iowait.
fn guest_busy_ms() -> Result<f64, String> {
    let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or("/proc/stat has no cpu line")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().map_err(|_| format!("/proc/stat: {line:?}")))
        .collect::<Result<_, _>>()?;
    if ticks.len() < 8 {
        return Err(format!("/proc/stat: short cpu line {line:?}"));
    }
    let busy: u64 = ticks[..8]
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, t)| t)
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return Err("sysconf(_SC_CLK_TCK) failed".into());
    }
    Ok(busy as f64 * 1e3 / hz as f64)
}

fn receive(listener: &TcpListener, bytes: u64) -> Result<String, String> {
    let (mut s, peer) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    let cpu0 = cpu_ms()?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let mut expect = vec![0u8; CHUNK];
    let (mut pos, mut hash) = (0u64, FNV_START);
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("read from {peer} at byte {pos}: {e}")),
        };
        pattern(pos, &mut expect[..n]);
        if let Some(i) = (0..n).find(|&i| buf[i] != expect[i]) {
            return Err(format!(
                "byte {} from {peer}: got {:#04x}, expected {:#04x}",
                pos + i as u64,
                buf[i],
                expect[i]
            ));
        }
        hash = fnv(hash, &buf[..n]);
        pos += n as u64;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ms()? - cpu0;
    let mut answer = [0u8; 16];
    answer[..8].copy_from_slice(&pos.to_le_bytes());
    answer[8..].copy_from_slice(&hash.to_le_bytes());
    s.write_all(&answer)
        .map_err(|e| format!("answering {peer}: {e}"))?;
    if pos != bytes {
        return Err(format!("received {pos} bytes, expected {bytes}"));
    }
    Ok(format!(
        "TCP-BULK-RECV bytes={pos} hash={hash:016x} secs={secs:.3} cpu_ms={cpu:.0}"
    ))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let started = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            // The receiver is not listening yet.
            Err(e)
                if e.kind() == ErrorKind::ConnectionRefused && started.elapsed() < CONNECT_FOR =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(format!("connect {addr}: {e}")),
        }
    }
}

fn send(addr: SocketAddr, bytes: u64) -> Result<String, String> {
    let mut s = connect(addr)?;
    let busy0 = guest_busy_ms()?;
    let cpu0 = cpu_ms()?;
    let t0 = Instant::now();
    let mut buf = vec![0u8; CHUNK];
    let (mut pos, mut hash) = (0u64, FNV_START);
    while pos < bytes {
        let n = usize::try_from((bytes - pos).min(CHUNK as u64)).expect("CHUNK fits");
        pattern(pos, &mut buf[..n]);
        s.write_all(&buf[..n])
            .map_err(|e| format!("write to {addr} at byte {pos}: {e}"))?;
        hash = fnv(hash, &buf[..n]);
        pos += n as u64;
    }
    s.shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut answer = [0u8; 16];
    s.read_exact(&mut answer)
        .map_err(|e| format!("the receiver's answer: {e}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ms()? - cpu0;
    let busy = guest_busy_ms()? - busy0;
    let got = u64::from_le_bytes(answer[..8].try_into().expect("8 bytes"));
    let got_hash = u64::from_le_bytes(answer[8..].try_into().expect("8 bytes"));
    if (got, got_hash) != (bytes, hash) {
        return Err(format!(
            "the receiver got {got} bytes hashing to {got_hash:016x}; sent {bytes} hashing to {hash:016x}"
        ));
    }
    let mbit = bytes as f64 * 8.0 / secs / 1e6;
    Ok(format!(
        "TCP-BULK-SEND bytes={bytes} hash={hash:016x} secs={secs:.3} cpu_ms={cpu:.0} \
         guest_busy_ms={busy:.0} mbit={mbit:.1}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_is_position_addressed() {
        let mut whole = [0u8; 40];
        pattern(5, &mut whole);
        let mut part = [0u8; 17];
        pattern(5 + 13, &mut part);
        assert_eq!(&whole[13..30], &part);
        assert_ne!(whole[..8], whole[8..16]);
    }

    /// A receiver on a free loopback port, running on its own thread.
    fn receiver(bytes: u64) -> (SocketAddr, std::thread::JoinHandle<Result<String, String>>) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        (addr, std::thread::spawn(move || receive(&listener, bytes)))
    }

    #[test]
    fn a_transfer_over_loopback_checks_out() {
        let (addr, rx) = receiver(1 << 20);
        let tx = send(addr, 1 << 20).unwrap();
        let rx = rx.join().unwrap().unwrap();
        assert!(tx.starts_with("TCP-BULK-SEND bytes=1048576 hash="), "{tx}");
        assert!(rx.starts_with("TCP-BULK-RECV bytes=1048576 hash="), "{rx}");
        let hash = |l: &str| l.split_whitespace().nth(2).unwrap().to_owned();
        assert_eq!(hash(&tx), hash(&rx));
    }

    #[test]
    fn a_short_transfer_fails_the_receiver() {
        // The receiver expects 2 MiB, the sender sends 1.
        let (addr, rx) = receiver(2 << 20);
        send(addr, 1 << 20).unwrap();
        let e = rx.join().unwrap().unwrap_err();
        assert!(
            e.contains("received 1048576 bytes, expected 2097152"),
            "{e}"
        );
    }

    #[test]
    fn a_wrong_byte_fails_the_receiver() {
        let (addr, rx) = receiver(1);
        let mut s = TcpStream::connect(addr).unwrap();
        let mut first = [0u8];
        pattern(0, &mut first);
        s.write_all(&[first[0] ^ 1]).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let e = rx.join().unwrap().unwrap_err();
        assert!(e.contains("byte 0 from"), "{e}");
    }

    #[test]
    fn a_wrong_answer_fails_the_sender() {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        // A receiver that reads everything and answers with a hash one off.
        let fake = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            let mut answer = [0u8; 16];
            answer[..8].copy_from_slice(&(all.len() as u64).to_le_bytes());
            answer[8..].copy_from_slice(&(fnv(FNV_START, &all) ^ 1).to_le_bytes());
            s.write_all(&answer).unwrap();
        });
        let e = send(addr, 1 << 20).unwrap_err();
        fake.join().unwrap();
        assert!(
            e.contains("the receiver got 1048576 bytes hashing to"),
            "{e}"
        );
    }
}
