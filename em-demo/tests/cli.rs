//! The demo binary on good and bad command lines, and its JSON and CSV
//! output parsed back.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::ffi::OsString;
use std::process::{Command, Output};

fn demo<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: Into<OsString>,
{
    Command::new(env!("CARGO_BIN_EXE_mpsafe-em-demo"))
        .args(args.into_iter().map(Into::into))
        .output()
        .expect("run mpsafe-em-demo")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn version_and_help() {
    let o = demo(["--version"]);
    assert!(o.status.success());
    assert_eq!(
        text(&o.stdout),
        format!("mpsafe-em-demo {}\n", env!("CARGO_PKG_VERSION"))
    );
    let o = demo(["-h"]);
    assert!(o.status.success());
    assert!(text(&o.stdout).contains("--interval"));
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn bad_arguments_exit_2_with_a_reason() {
    for (args, needle) in [
        (&["--mode", "fast"][..], "unknown mode \"fast\""),
        (&["--mode", "mpsafe,,biglock"], "unknown mode"),
        (&["--seconds", "0"], "--seconds"),
        (&["--queues", "3"], "--queues"),
        (&["--format", "xml"], "--format"),
        (&["--interval"], "needs a value"),
        (&["--nope"], "unknown option"),
    ] {
        let o = demo(args);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(err.contains("--help"), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
#[cfg(unix)]
#[cfg_attr(miri, ignore = "runs a process")]
fn non_utf8_argument_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStringExt;
    let o = demo([
        OsString::from("--mode"),
        OsString::from_vec(vec![b'm', 0xff, b'x']),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not valid UTF-8"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn json_has_one_record_per_mode() {
    let o = demo([
        "--mode",
        "MPSAFE,BigLock",
        "--seconds",
        "0.2",
        "--cycles",
        "2",
        "--repeat",
        "2",
        "--interval",
        "0.1",
        "--after-up",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["config"]["repeat"], 2);
    let modes = v["modes"].as_array().unwrap();
    let names: Vec<&str> = modes.iter().map(|m| m["mode"].as_str().unwrap()).collect();
    assert_eq!(names, ["mpsafe", "biglock"]);
    for m in modes {
        let name = m["mode"].as_str().unwrap();
        assert_eq!(m["runs"], 2, "{name}");
        assert_eq!(m["runs_detail"].as_array().unwrap().len(), 2, "{name}");
        let rx = &m["rx_pps"];
        assert!(rx["min"].as_f64().unwrap() <= rx["median"].as_f64().unwrap());
        assert!(rx["median"].as_f64().unwrap() <= rx["max"].as_f64().unwrap());
        assert!(rx["median"].as_f64().unwrap() > 0.0, "{name}: {rx}");
        for cause in ["rx_missed", "tx_qdrops"] {
            assert!(m["drops"][cause]["median"].is_number(), "{name} {cause}");
        }
        assert!(m["interrupts_per_s"]["median"].as_f64().unwrap() > 0.0);
        assert!(m["cpu_us_per_packet"]["median"].as_f64().unwrap() > 0.0);
        assert!(m["driver_us_per_packet"]["median"].as_f64().unwrap() > 0.0);
        assert!(m["device_busy"]["median"].is_number());
        let locks = m["big_lock_per_s"].as_object().unwrap();
        assert_eq!(locks.len(), 6, "{name}");
        let start = locks["start"].as_f64().unwrap();
        match name {
            "mpsafe" => assert!(locks.values().all(|c| c == 0.0), "{name}: {locks:?}"),
            _ => assert!(start > 0.0, "{name}: {locks:?}"),
        }
        // The buffer table is taken at the end of the measurement, under
        // load, not after teardown (where it always reads 0).
        let rings = m["buffers"]["rings"].as_array().unwrap();
        assert_eq!(rings.len(), 1);
        assert_eq!(rings[0]["name"], "em0");
        // A live ring has watermarks (a torn-down one reads all 0); how many
        // buffers are posted at that instant may be anything, even 0 while
        // the big lock delays the refill.
        assert!(rings[0]["hwm"].as_u64().unwrap() > 0, "{name}: {rings:?}");
        assert!(rings[0]["lwm"].as_u64().unwrap() > 0, "{name}: {rings:?}");
        assert!(rings[0]["cwm"].as_u64().unwrap() >= rings[0]["lwm"].as_u64().unwrap());
        assert_eq!(m["buffers"]["pool"]["leaked"], 0);
        let probes = m["after_up"].as_array().unwrap();
        assert_eq!(probes.len(), 2, "{name}");
        assert!(probes[0]["cwm_before"].as_u64().unwrap() > 0);
        assert_eq!(m["cycles"], 4);
        assert_eq!(m["accounting"], "ok");
    }
    let samples = v["samples"].as_array().unwrap();
    for name in ["mpsafe", "biglock"] {
        for run in [1, 2] {
            let n = samples
                .iter()
                .filter(|s| s["mode"] == name && s["run"] == run)
                .count();
            // 0.5 s warm-up + 0.2 s measured, every 0.1 s.
            assert!(n >= 3, "{name} run {run}: {n} samples");
        }
    }
    assert_eq!(samples[0]["cwm"].as_array().unwrap().len(), 1);
    assert!(v["explanations"].is_array());
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn csv_has_a_header_and_a_row_per_mode() {
    let o = demo([
        "--format=csv",
        "--mode=rx-unlocked,mpsafe",
        "--seconds=0.1",
        "--cycles=0",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("mode,runs,rx_pps,"));
    let cols = lines[0].split(',').count();
    assert!(lines[1].starts_with("rx-unlocked,1,"));
    assert!(lines[2].starts_with("mpsafe,1,"));
    assert!(lines.iter().all(|l| l.split(',').count() == cols), "{out}");
}

/// `--stack tcp`: a transfer per mode asked for, each a row with a goodput,
/// and the closing line that every byte and buffer was checked.
#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn stack_tcp_runs_a_checked_transfer_per_mode() {
    let o = demo([
        "--stack",
        "tcp",
        "--tcp-mib",
        "1",
        "--mode",
        "mpsafe,serialized",
    ]);
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", text(&o.stderr));
    for mode in ["mpsafe", "serialized"] {
        let row = out
            .lines()
            .find(|l| l.starts_with(mode))
            .unwrap_or_else(|| panic!("no {mode} row: {out}"));
        let mbit: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert!(mbit > 0.0, "{row}");
    }
    assert!(!out.contains("biglock"), "{out}");
    assert!(out.contains("every buffer back in its pool"), "{out}");
}

/// `--producers 2 --tx-latency`: every run's transmit calls are timed and
/// reported in order (p50 <= p99 <= p99.9 <= max), in the JSON and in the
/// text table; without the flag the field is null.
#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn tx_latency_reports_ordered_percentiles() {
    let args = [
        "--mode",
        "mpsafe",
        "--seconds",
        "0.2",
        "--cycles",
        "0",
        "--producers",
        "2",
    ];
    let o = demo(args.iter().copied().chain(["--tx-latency", "--json"]));
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    let t = &v["modes"][0]["runs_detail"][0]["tx_call"];
    let get = |k: &str| t[k].as_u64().unwrap_or_else(|| panic!("{k}: {t}"));
    assert!(get("calls") > 0, "{t}");
    assert!(get("p50_ns") <= get("p99_ns"), "{t}");
    assert!(get("p99_ns") <= get("p999_ns"), "{t}");
    assert!(get("p999_ns") <= get("max_ns"), "{t}");
    let o = demo(args.iter().copied().chain(["--tx-latency"]));
    assert!(text(&o.stdout).contains("p99.9/p50"), "{}", text(&o.stdout));
    let o = demo(args.iter().copied().chain(["--json"]));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("one JSON document");
    assert!(v["modes"][0]["runs_detail"][0]["tx_call"].is_null());
}
