//! Turns the criterion results of the last `cargo bench -p mpsafe-benches` run
//! into a markdown table of ratios against the peer measured in the same run.
//!
//! ```text
//! cargo bench -p mpsafe-benches
//! cargo run -p mpsafe-benches --bin bench-report [-- CRITERION_DIR [OUT.md]]
//! ```
//!
//! Reads `<target>/criterion/**/new/{benchmark,estimates}.json` and writes the
//! table to stdout and to `benches/RESULTS.md` (or `OUT.md`). The HTML plots
//! criterion drew are in `<target>/criterion/report/index.html`.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

/// For each benchmark group, the peer every other entry is compared against:
/// what a user would pick instead of the mpsafe primitive.
const PEERS: &[(&str, &str)] = &[
    ("serializer/uncontended", "std::sync::Mutex lock+unlock"),
    ("serializer/2-threads", "std::sync::Mutex start()"),
    ("rxring", "atomic_usize"),
    ("barrier/uncontended", "rwlock_read_unlock"),
    ("barrier/2-threads", "rwlock_read_unlock"),
    ("barrier/completion", "mutex_condvar_signal_wait_reset"),
    ("ifqueue/single/per_packet", "mutex_vecdeque"),
    ("ifqueue/single/burst64", "mutex_vecdeque_push_loop"),
    ("ifqueue/1p1c", "mutex_vecdeque"),
    ("em/loopback_round_trip", "biglock"),
    ("order/mutex", "plain"),
    ("order/serializer", "plain"),
    ("order/nested", "plain"),
];

/// One benchmark's result.
struct Entry {
    function: String,
    /// Median time per iteration, in nanoseconds.
    median_ns: f64,
    /// Elements per iteration, when the bench declared a throughput.
    elements: Option<f64>,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let dir = args.next().map(PathBuf::from).unwrap_or_else(default_dir);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"));

    let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut found = Vec::new();
    find_results(&dir, &mut found);
    for new in found {
        match read_entry(&new) {
            Ok((group, entry)) => groups.entry(group).or_default().push(entry),
            Err(e) => eprintln!("bench-report: skipping {}: {e}", new.display()),
        }
    }
    if groups.is_empty() {
        eprintln!(
            "bench-report: no criterion results under {}; run `cargo bench -p mpsafe-benches` first",
            dir.display()
        );
        return ExitCode::FAILURE;
    }

    let table = render(&mut groups);
    print!("{table}");
    if let Err(e) = std::fs::write(&out, &table) {
        eprintln!("bench-report: cannot write {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    eprintln!("bench-report: wrote {}", out.display());
    ExitCode::SUCCESS
}

/// `$CARGO_TARGET_DIR/criterion`, else the workspace's `target/criterion`.
fn default_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// Every `new/` directory (criterion's latest measurement) under `dir`.
fn find_results(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            found.push(path);
        } else {
            find_results(&path, found);
        }
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| e.to_string())
}

fn read_entry(new: &Path) -> Result<(String, Entry), String> {
    let bench = read_json(&new.join("benchmark.json"))?;
    let estimates = read_json(&new.join("estimates.json"))?;
    let group = bench["group_id"].as_str().ok_or("no group_id")?.to_owned();
    let mut function = bench["function_id"].as_str().unwrap_or("").to_owned();
    if let Some(value) = bench["value_str"].as_str() {
        function = format!("{function}/{value}");
    }
    let median_ns = estimates["median"]["point_estimate"]
        .as_f64()
        .ok_or("no median estimate")?;
    let elements = bench["throughput"]["Elements"].as_f64();
    Ok((
        group,
        Entry {
            function,
            median_ns,
            elements,
        },
    ))
}

fn render(groups: &mut BTreeMap<String, Vec<Entry>>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmark results\n\nMedian time per iteration from criterion; *speed vs peer* is the peer's median \
         time divided by this entry's, measured in the same run (above 1: faster than the peer).\n"
    );
    for (group, entries) in groups.iter_mut() {
        entries.sort_by(|a, b| a.function.cmp(&b.function));
        let peer_name = PEERS.iter().find(|(g, _)| g == group).map(|(_, p)| *p);
        let peer = peer_name.and_then(|p| entries.iter().find(|e| e.function == p));
        let _ = writeln!(s, "## {group}\n");
        match (peer_name, peer) {
            (Some(name), Some(_)) => {
                let _ = writeln!(s, "Peer: `{name}`.\n");
            }
            (Some(name), None) => {
                let _ = writeln!(
                    s,
                    "Peer `{name}` was not measured in this run: no ratios.\n"
                );
            }
            (None, _) => {}
        }
        let _ = writeln!(
            s,
            "| benchmark | median | per element | Melem/s | speed vs peer |"
        );
        let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: |");
        for e in entries.iter() {
            let per_elem = e.elements.map(|n| e.median_ns / n);
            let rate = per_elem.map(|ns| 1e3 / ns);
            let ratio = peer.map(|p| p.median_ns / e.median_ns);
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} |",
                e.function,
                time(e.median_ns),
                per_elem.map_or("".into(), time),
                rate.map_or("".into(), |r| format!("{r:.2}")),
                ratio.map_or("".into(), |r| format!("{r:.2}×")),
            );
        }
        s.push('\n');
    }
    s
}

fn time(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}
