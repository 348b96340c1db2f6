//! Runs the criterion benchmarks as one recorded run, and turns recorded
//! results into a markdown table of ratios against the peer measured in the
//! same run, with where, when and with what they were measured.
//!
//! ```text
//! cargo run -p mpsafe-benches --bin bench-report -- run [CARGO BENCH ARGS]
//! cargo run -p mpsafe-benches --bin bench-report [-- CRITERION_DIR [OUT.md]]
//! ```
//!
//! For example, one group with short measurements, then the report:
//!
//! ```text
//! cargo run -p mpsafe-benches --bin bench-report -- run --bench ifqueue -- 1p1c --measurement-time 3
//! cargo run -p mpsafe-benches --bin bench-report
//! ```
//!
//! # Runs
//!
//! `run` records the run's provenance in
//! `<target>/criterion/mpsafe-runs/<RUN>.json` (start and end time in UTC,
//! commit and whether the work tree had uncommitted changes, `rustc -vV`, the
//! CPU model, logical CPU count and available parallelism, the command), runs
//! `cargo bench -p mpsafe-benches` with the given arguments, and when it
//! succeeds stamps every result it wrote (a `new/` directory whose
//! `estimates.json` is newer than the start) with `new/mpsafe-run.json`: the
//! run id and a hash of that `estimates.json`.
//!
//! # Report
//!
//! Without `run`, reads `<target>/criterion/**/new/{benchmark,estimates}.json`
//! and writes the table to stdout and to `benches/RESULTS.md` (or `OUT.md`).
//! It refuses, writing nothing, when a group would mix results of different
//! runs, or holds a result that no recorded run wrote (criterion run
//! directly, or an `estimates.json` that changed after it was stamped):
//! ratios between two runs on a shared machine compare the machine's load,
//! not the code. Different groups may come from different runs (rerunning one
//! group through `run` is fine); the preamble then names each run and
//! each group names its own.
//!
//! Each row shows criterion's 95% confidence interval of the median; a
//! ratio whose intervals overlap the peer's is not a measured difference.
//! In a group of parameterised entries (`name/param`), each is compared with
//! the peer of the same parameter (`peer/param`).
//!
//! A bench may also write a table criterion cannot hold (latency
//! percentiles) as `<criterion dir>/mpsafe-tails/<group>/new/tails.json`
//! (`mpsafe_benches::Tails`); `run` stamps it like criterion's results and
//! the report copies it as a group of its own, under the same rules.
//!
//! Groups of the RESULTS.md being replaced that the criterion directory
//! holds nothing of are carried over verbatim, with their run's record, so
//! recording some groups in a fresh target directory keeps the others.
//! The HTML plots criterion drew are in `<target>/criterion/report/index.html`.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

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
    ("ifqueue/2cpu_transmit", "big_lock"),
    ("ifqueue/2cpu_kernel_lock", "big_lock"),
    ("ifqueue/2cpu_owner_bound", "no_bound"),
    ("ifqueue/single", "transmit_bundle_1"),
    ("em/loopback_round_trip", "biglock"),
    ("em/loopback_driver_cpu", "biglock"),
    ("order/mutex", "plain"),
    ("order/serializer", "plain"),
    ("order/nested", "plain"),
    ("order/ifq_transmit", "plain"),
];

/// The stamp file `run` leaves in each result directory it wrote.
const STAMP: &str = "mpsafe-run.json";
/// The directory of run records, under the criterion directory.
const RUNS: &str = "mpsafe-runs";

/// One benchmark's result.
#[derive(Debug)]
struct Entry {
    function: String,
    /// Median time per iteration, in nanoseconds.
    median_ns: f64,
    /// criterion's confidence interval of the median: level, low, high (ns).
    median_ci: Option<(f64, f64, f64)>,
    /// Elements per iteration, when the bench declared a throughput.
    elements: Option<f64>,
    /// The recorded run that wrote it, if its stamp is valid.
    run: Option<String>,
    /// Why it has no run, when it has none.
    unstamped: &'static str,
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "run") {
        // Everything after `run` goes to `cargo bench -p mpsafe-benches`
        // verbatim: `run -- GROUP` filters, `run --bench ifqueue` picks a file.
        let extra: Vec<OsString> = args.skip(1).collect();
        return match run(&default_dir(), &extra) {
            Ok(id) => {
                eprintln!(
                    "bench-report: run {id} recorded; now `cargo run -p mpsafe-benches --bin bench-report`"
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench-report: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let dir = args.next().map(PathBuf::from).unwrap_or_else(default_dir);
    let out = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md"));

    let previous = std::fs::read_to_string(&out).ok();
    let table = match report(&dir, previous.as_deref()) {
        Ok(table) => table,
        Err(e) => {
            eprintln!("bench-report: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        .unwrap_or_else(|| workspace().join("target"));
    target.join("criterion")
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
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
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// FNV-1a, 64-bit: ties a stamp to the exact `estimates.json` it was made
/// for (a fingerprint against accidents, not against forgery).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn read_entry(new: &Path) -> Result<(String, Entry), String> {
    let bench = read_json(&new.join("benchmark.json"))?;
    let estimates_bytes = std::fs::read(new.join("estimates.json"))
        .map_err(|e| format!("{}/estimates.json: {e}", new.display()))?;
    let estimates: Value =
        serde_json::from_slice(&estimates_bytes).map_err(|e| format!("estimates.json: {e}"))?;
    let group = bench["group_id"].as_str().ok_or("no group_id")?.to_owned();
    let mut function = bench["function_id"].as_str().unwrap_or("").to_owned();
    if let Some(value) = bench["value_str"].as_str() {
        function = format!("{function}/{value}");
    }
    let median = &estimates["median"];
    let median_ns = median["point_estimate"]
        .as_f64()
        .ok_or("no median estimate")?;
    let ci = &median["confidence_interval"];
    let median_ci = match (
        ci["confidence_level"].as_f64(),
        ci["lower_bound"].as_f64(),
        ci["upper_bound"].as_f64(),
    ) {
        (Some(level), Some(lo), Some(hi)) => Some((level, lo, hi)),
        _ => None,
    };
    let elements = bench["throughput"]["Elements"].as_f64();
    let (run, unstamped) = stamped_run(new, &estimates_bytes);
    Ok((
        group,
        Entry {
            function,
            median_ns,
            median_ci,
            elements,
            run,
            unstamped,
        },
    ))
}

/// A table a bench wrote beside criterion's results (`mpsafe-tails/`):
/// measurements criterion cannot hold, such as latency percentiles.
#[derive(Debug)]
struct TailsTable {
    peer: Option<String>,
    about: String,
    columns: Vec<String>,
    rows: Vec<(String, Vec<String>)>,
    run: Option<String>,
    unstamped: &'static str,
}

/// The result file a `new/` directory holds: criterion's `estimates.json`,
/// or a bench's `tails.json`.
fn result_file(new: &Path) -> PathBuf {
    let tails = new.join("tails.json");
    if tails.exists() {
        tails
    } else {
        new.join("estimates.json")
    }
}

/// The run stamped on the result file `file` of `new`, if the stamp is valid.
fn stamped_run(new: &Path, file: &[u8]) -> (Option<String>, &'static str) {
    match read_json(&new.join(STAMP)) {
        Err(_) => (None, "not written by a recorded run"),
        Ok(stamp) => {
            let want = format!("{:016x}", fnv1a64(file));
            match (stamp["run"].as_str(), stamp["estimates_fnv1a64"].as_str()) {
                (Some(run), Some(hash)) if hash == want => (Some(run.to_owned()), ""),
                (Some(_), Some(_)) => (None, "its result file changed after its run stamped it"),
                _ => (None, "malformed run stamp"),
            }
        }
    }
}

fn read_tails(new: &Path) -> Result<(String, TailsTable), String> {
    let path = new.join("tails.json");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("tails.json: {e}"))?;
    let group = v["group"]
        .as_str()
        .ok_or("tails.json: no group")?
        .to_owned();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c.as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let rows = v["rows"]
        .as_array()
        .ok_or("tails.json: no rows")?
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap_or("").to_owned(),
                strings(&r["cells"]),
            )
        })
        .collect();
    let (run, unstamped) = stamped_run(new, &bytes);
    Ok((
        group,
        TailsTable {
            peer: v["peer"].as_str().map(str::to_owned),
            about: v["about"].as_str().unwrap_or("").to_owned(),
            columns: strings(&v["columns"]),
            rows,
            run,
            unstamped,
        },
    ))
}

/// A group of an earlier RESULTS.md, kept when this criterion directory
/// holds nothing of it: its section verbatim and its run's provenance.
#[derive(Debug)]
struct Carried {
    run: String,
    section: String,
}

/// Splits an earlier RESULTS.md into its run records (id -> the bullet
/// lines) and its group sections (name -> the section after its heading,
/// with the run it names).
fn parse_previous(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, Carried>) {
    let mut runs = BTreeMap::new();
    let mut groups = BTreeMap::new();
    let mut lines = text.lines().peekable();
    let mut current: Option<(String, String)> = None;
    let finish = |g: Option<(String, String)>, groups: &mut BTreeMap<String, Carried>| {
        if let Some((name, section)) = g {
            let run = section
                .lines()
                .find_map(|l| l.strip_prefix("Run: `")?.split('`').next())
                .unwrap_or("")
                .to_owned();
            groups.insert(
                name,
                Carried {
                    run,
                    section: format!("{}\n", section.trim()),
                },
            );
        }
    };
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("## ") {
            finish(current.take(), &mut groups);
            current = Some((name.trim().to_owned(), String::new()));
        } else if let Some((_, section)) = current.as_mut() {
            section.push_str(line);
            section.push('\n');
        } else if let Some(rest) = line.strip_prefix("Run `") {
            let Some(id) = rest.split('`').next() else {
                continue;
            };
            let mut bullets = String::new();
            while lines.peek().is_some_and(|l| l.trim().is_empty()) {
                lines.next();
            }
            while let Some(l) = lines.next_if(|l| l.starts_with("- ")) {
                bullets.push_str(l);
                bullets.push('\n');
            }
            runs.insert(id.to_owned(), bullets);
        }
    }
    finish(current.take(), &mut groups);
    (runs, groups)
}

/// Reads every result under `dir`, checks that each group comes from one
/// recorded run, and renders the report. Groups of `previous` (the
/// RESULTS.md being replaced) that `dir` holds nothing of are carried over
/// verbatim with their run's record, so a run of some groups in a fresh
/// target directory does not drop the others.
fn report(dir: &Path, previous: Option<&str>) -> Result<String, String> {
    let mut groups: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    let mut tails: BTreeMap<String, TailsTable> = BTreeMap::new();
    let mut found = Vec::new();
    find_results(dir, &mut found);
    for new in found {
        if new.join("tails.json").exists() {
            match read_tails(&new) {
                Ok((group, t)) => {
                    tails.insert(group, t);
                }
                Err(e) => eprintln!("bench-report: skipping {}: {e}", new.display()),
            }
            continue;
        }
        match read_entry(&new) {
            Ok((group, entry)) => groups.entry(group).or_default().push(entry),
            Err(e) => eprintln!("bench-report: skipping {}: {e}", new.display()),
        }
    }
    if groups.is_empty() && tails.is_empty() {
        return Err(format!(
            "no criterion results under {}; run `cargo run -p mpsafe-benches --bin bench-report -- run` first",
            dir.display()
        ));
    }
    let mut problems = Vec::new();
    let mut runs = BTreeMap::new();
    let mut need_run = |group: &str, id: &str, problems: &mut Vec<String>| {
        if !runs.contains_key(id) {
            match read_json(&dir.join(RUNS).join(format!("{id}.json"))) {
                Ok(meta) => {
                    runs.insert(id.to_owned(), meta);
                }
                Err(e) => problems.push(format!("{group}: run {id} has no record: {e}")),
            }
        }
    };
    for (group, entries) in &groups {
        for e in entries.iter().filter(|e| e.run.is_none()) {
            problems.push(format!("{group}: `{}` {}", e.function, e.unstamped));
        }
        let ids: BTreeSet<&str> = entries.iter().filter_map(|e| e.run.as_deref()).collect();
        if ids.len() > 1 {
            let list: Vec<String> = entries
                .iter()
                .filter_map(|e| Some(format!("`{}` from {}", e.function, e.run.as_deref()?)))
                .collect();
            problems.push(format!(
                "{group} mixes {} runs: {}",
                ids.len(),
                list.join(", ")
            ));
        }
        for id in ids {
            need_run(group, id, &mut problems);
        }
    }
    for (group, t) in &tails {
        match &t.run {
            Some(id) => need_run(group, id, &mut problems),
            None => problems.push(format!("{group}: its table {}", t.unstamped)),
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "refusing to report results that are not each group's own single run:\n  {}\n\
             Rerun the groups named (`bench-report run -- GROUP`), or all of them \
             (`bench-report run`).",
            problems.join("\n  ")
        ));
    }
    let (old_runs, old_groups) = previous.map(parse_previous).unwrap_or_default();
    let carried: BTreeMap<String, Carried> = old_groups
        .into_iter()
        .filter(|(g, _)| !groups.contains_key(g) && !tails.contains_key(g))
        .collect();
    Ok(render(&mut groups, &tails, &carried, &runs, &old_runs))
}

/// The provenance lines of a run record.
fn run_bullets(meta: &Value) -> String {
    let str_of = |k: &str| meta[k].as_str().unwrap_or("unknown").to_owned();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "- date: {} to {} (UTC)",
        str_of("started"),
        str_of("finished")
    );
    let _ = writeln!(s, "- commit: `{}`", str_of("commit"));
    let _ = writeln!(s, "- rustc: `{}`", str_of("rustc"));
    let _ = writeln!(
        s,
        "- CPU: {}; {} logical CPUs, available parallelism {}",
        str_of("cpu"),
        meta["logical_cpus"]
            .as_u64()
            .map_or("unknown".into(), |n| n.to_string()),
        meta["available_parallelism"]
            .as_u64()
            .map_or("unknown".into(), |n| n.to_string()),
    );
    if let (Some(a), Some(b)) = (
        meta["load_started"].as_str(),
        meta["load_finished"].as_str(),
    ) {
        let _ = writeln!(
            s,
            "- load average (1, 5, 15 min; /proc/loadavg): {a} at the start, {b} at the end"
        );
    }
    if let Some(policy) = meta["scheduling"].as_str() {
        let _ = writeln!(s, "- scheduling: {policy}");
    }
    let _ = writeln!(s, "- command: `{}`", str_of("command"));
    s
}

/// Orders names with their digit runs compared as numbers, so
/// `transmit_bundle_4` comes before `transmit_bundle_16` and `200ns` before
/// `1000ns`.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (x, y) = (chunks(a), chunks(b));
    for (p, q) in x.iter().zip(&y) {
        let o = match (p, q) {
            ((true, m), (true, n)) => {
                let (m, n) = (m.trim_start_matches('0'), n.trim_start_matches('0'));
                m.len().cmp(&n.len()).then_with(|| m.cmp(n))
            }
            ((_, m), (_, n)) => m.cmp(n),
        };
        if o.is_ne() {
            return o;
        }
    }
    x.len().cmp(&y.len()).then_with(|| a.cmp(b))
}

fn render(
    groups: &mut BTreeMap<String, Vec<Entry>>,
    tails: &BTreeMap<String, TailsTable>,
    carried: &BTreeMap<String, Carried>,
    runs: &BTreeMap<String, Value>,
    old_runs: &BTreeMap<String, String>,
) -> String {
    // Every section, by group name, with the run it comes from.
    let mut sections: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (group, entries) in groups.iter_mut() {
        entries.sort_by(|a, b| natural_cmp(&a.function, &b.function));
        let id = entries
            .first()
            .and_then(|e| e.run.clone())
            .unwrap_or_default();
        sections.insert(
            group.clone(),
            (id.clone(), criterion_section(group, entries, &id)),
        );
    }
    for (group, t) in tails {
        let id = t.run.clone().unwrap_or_default();
        sections.insert(group.clone(), (id.clone(), tails_section(t, &id)));
    }
    for (group, c) in carried {
        sections.insert(group.clone(), (c.run.clone(), c.section.clone()));
    }

    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Benchmark results\n\nMedian time per iteration from criterion, with criterion's confidence \
         interval of the median; *speed vs peer* is the peer's median time divided by this entry's, \
         measured in the same run (above 1: faster than the peer). A ratio whose interval overlaps \
         the peer's is not a measured difference.\n"
    );
    let ids: BTreeSet<&str> = sections.values().map(|(id, _)| id.as_str()).collect();
    for id in ids {
        let in_groups: Vec<&str> = sections
            .iter()
            .filter(|(_, (r, _))| r == id)
            .map(|(g, _)| g.as_str())
            .collect();
        let scope = if in_groups.len() == sections.len() {
            "every group".to_owned()
        } else {
            in_groups.join(", ")
        };
        let bullets = match runs.get(id) {
            Some(meta) => run_bullets(meta),
            None => old_runs.get(id).cloned().unwrap_or_else(|| {
                "- (carried over from the previous RESULTS.md, which had no record of it)\n".into()
            }),
        };
        let _ = writeln!(s, "Run `{id}` ({scope}):\n\n{bullets}");
    }
    for (group, (_, section)) in &sections {
        let _ = writeln!(s, "## {group}\n\n{section}");
    }
    s
}

/// The peer row of `function` in a group whose peer is `peer`: for a
/// parameterised entry (`name/param`) the peer with the same parameter if
/// the group has one, else the peer itself.
fn peer_of<'a>(entries: &'a [Entry], peer: &str, function: &str) -> Option<&'a Entry> {
    if let Some((_, param)) = function.split_once('/') {
        let want = format!("{peer}/{param}");
        if let Some(e) = entries.iter().find(|e| e.function == want) {
            return Some(e);
        }
    }
    entries.iter().find(|e| e.function == peer)
}

fn criterion_section(group: &str, entries: &[Entry], id: &str) -> String {
    let mut s = String::new();
    let peer_name = PEERS.iter().find(|(g, _)| *g == group).map(|(_, p)| *p);
    let has_peer = peer_name.is_some_and(|p| {
        entries
            .iter()
            .any(|e| e.function == p || e.function.starts_with(&format!("{p}/")))
    });
    if !id.is_empty() {
        let _ = writeln!(s, "Run: `{id}`.\n");
    }
    match (peer_name, has_peer) {
        (Some(name), true) => {
            let _ = writeln!(s, "Peer: `{name}`.\n");
        }
        (Some(name), false) => {
            let _ = writeln!(
                s,
                "Peer `{name}` was not measured in this run: no ratios.\n"
            );
        }
        (None, _) => {}
    }
    let level = entries
        .iter()
        .find_map(|e| e.median_ci)
        .map_or(95.0, |(l, _, _)| l * 100.0);
    let _ = writeln!(
        s,
        "| benchmark | median | {level:.0}% CI of median | per element | Melem/s | speed vs peer |"
    );
    let _ = writeln!(s, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for e in entries {
        let per_elem = e.elements.map(|n| e.median_ns / n);
        let rate = per_elem.map(|ns| 1e3 / ns);
        let ratio = peer_name
            .and_then(|p| peer_of(entries, p, &e.function))
            .map(|p| p.median_ns / e.median_ns);
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} |",
            e.function,
            time(e.median_ns),
            e.median_ci.map_or("".into(), |(_, lo, hi)| format!(
                "{} – {}",
                time_precise(lo),
                time_precise(hi)
            )),
            per_elem.map_or("".into(), time),
            rate.map_or("".into(), |r| format!("{r:.2}")),
            ratio.map_or("".into(), |r| format!("{r:.2}×")),
        );
    }
    s
}

fn tails_section(t: &TailsTable, id: &str) -> String {
    let mut s = String::new();
    if !id.is_empty() {
        let _ = writeln!(s, "Run: `{id}`.\n");
    }
    if let Some(p) = &t.peer {
        let _ = writeln!(s, "Peer: `{p}`.\n");
    }
    if !t.about.is_empty() {
        let _ = writeln!(s, "{}\n", t.about);
    }
    let _ = writeln!(s, "| benchmark | {} |", t.columns.join(" | "));
    let _ = writeln!(
        s,
        "| --- |{}",
        t.columns.iter().map(|_| " ---: |").collect::<String>()
    );
    for (name, cells) in &t.rows {
        let _ = writeln!(s, "| `{name}` | {} |", cells.join(" | "));
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

/// [`time`] with three significant digits, so a narrow interval does not
/// print as one value twice.
fn time_precise(ns: f64) -> String {
    let (value, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$} {unit}")
}

/// Records a run, runs `cargo bench -p mpsafe-benches` with `extra`
/// arguments (after `--` they go to criterion), and stamps what it wrote.
/// Returns the run id.
fn run(dir: &Path, extra: &[OsString]) -> Result<String, String> {
    let started = SystemTime::now();
    let id = format!(
        "{}-{}",
        utc(started).replace([':', '-'], ""),
        std::process::id()
    );
    let mut command = vec![
        "cargo".to_owned(),
        "bench".into(),
        "-p".into(),
        "mpsafe-benches".into(),
    ];
    command.extend(extra.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut meta = provenance(&command.join(" "));
    meta["started"] = json!(utc(started));
    meta["load_started"] = json!(loadavg());
    let runs = dir.join(RUNS);
    std::fs::create_dir_all(&runs).map_err(|e| format!("{}: {e}", runs.display()))?;
    let record = runs.join(format!("{id}.json"));
    let write = |meta: &Value| {
        std::fs::write(&record, format!("{meta:#}\n"))
            .map_err(|e| format!("{}: {e}", record.display()))
    };
    write(&meta)?;

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace())
        .args(["bench", "-p", "mpsafe-benches"])
        .args(extra)
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err(format!(
            "cargo bench failed ({status}); run {id} stamped nothing"
        ));
    }
    let stamped = stamp(dir, &id, started)?;
    if stamped == 0 {
        return Err(format!(
            "cargo bench wrote no result under {}",
            dir.display()
        ));
    }
    meta["finished"] = json!(utc(SystemTime::now()));
    meta["load_finished"] = json!(loadavg());
    meta["results"] = json!(stamped);
    write(&meta)?;
    Ok(id)
}

/// Stamps every result under `dir` whose `estimates.json` was written at or
/// after `started` as run `id`; returns how many.
fn stamp(dir: &Path, id: &str, started: SystemTime) -> Result<usize, String> {
    let mut found = Vec::new();
    find_results(dir, &mut found);
    let mut n = 0;
    for new in found {
        let estimates = result_file(&new);
        let Ok(modified) = std::fs::metadata(&estimates).and_then(|m| m.modified()) else {
            continue;
        };
        if modified < started {
            continue;
        }
        let bytes =
            std::fs::read(&estimates).map_err(|e| format!("{}: {e}", estimates.display()))?;
        let stamp = json!({ "run": id, "estimates_fnv1a64": format!("{:016x}", fnv1a64(&bytes)) });
        let path = new.join(STAMP);
        std::fs::write(&path, format!("{stamp}\n"))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        n += 1;
    }
    Ok(n)
}

/// Where and with what this run measures: commit, compiler, CPU.
fn provenance(command: &str) -> Value {
    let ws = workspace();
    let output = |program: &str, args: &[&str]| {
        Command::new(program)
            .current_dir(&ws)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = match output("git", &["rev-parse", "HEAD"]) {
        Some(head) => {
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{head} with uncommitted changes")
            } else {
                head
            }
        }
        None => "unknown (not a git checkout)".to_owned(),
    };
    let rustc_program = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc = output(&rustc_program, &["-vV"]).map_or("unknown".to_owned(), |v| {
        let field = |k: &str| {
            v.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|s| s.trim().to_owned())
        };
        let first = v.lines().next().unwrap_or("rustc").to_owned();
        match (field("host:"), field("LLVM version:")) {
            (Some(host), Some(llvm)) => format!("{first}, host {host}, LLVM {llvm}"),
            _ => first,
        }
    });
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    let logical = cpuinfo
        .lines()
        .filter(|l| {
            l.split_once(':')
                .is_some_and(|(k, _)| k.trim() == "processor")
        })
        .count();
    json!({
        "scheduling": scheduling(),
        "commit": commit,
        "rustc": rustc,
        "cpu": cpu,
        "logical_cpus": (logical > 0).then_some(logical),
        "available_parallelism": std::thread::available_parallelism().ok().map(|n| n.get()),
        "command": command,
        "started": null,
        "finished": null,
    })
}

/// This process's scheduling policy and real-time priority, from
/// `/proc/self/stat` (fields 40 and 41): a run under `chrt -f` (real-time,
/// so the benches' threads hold both CPUs on a loaded machine) says so.
fn scheduling() -> String {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: field 3 is the first after the closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let (Some(prio), Some(policy)) = (fields.get(37), fields.get(38)) else {
        return "unknown".to_owned();
    };
    let name = match *policy {
        "0" => "SCHED_OTHER (normal)",
        "1" => "SCHED_FIFO (real-time)",
        "2" => "SCHED_RR (real-time)",
        "3" => "SCHED_BATCH",
        "5" => "SCHED_IDLE",
        _ => "other",
    };
    if *prio == "0" {
        name.to_owned()
    } else {
        format!("{name}, priority {prio}")
    }
}

/// The 1, 5 and 15 minute load averages (`/proc/loadavg`), how busy the
/// machine was around a run; `unknown` where there is no such file.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A scratch criterion directory, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir()
                .join(format!("bench-report-test-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }

        /// Writes a criterion result for `group`/`function`.
        fn result(&self, group: &str, function: &str, median: f64) -> PathBuf {
            let new = self
                .0
                .join(group.replace('/', "_"))
                .join(function)
                .join("new");
            std::fs::create_dir_all(&new).unwrap();
            let bench = json!({
                "group_id": group, "function_id": function, "value_str": null,
                "throughput": {"Elements": 2},
            });
            std::fs::write(new.join("benchmark.json"), bench.to_string()).unwrap();
            let est = json!({"median": {
                "point_estimate": median,
                "confidence_interval": {
                    "confidence_level": 0.95,
                    "lower_bound": median * 0.9,
                    "upper_bound": median * 1.1,
                },
            }});
            std::fs::write(new.join("estimates.json"), est.to_string()).unwrap();
            new
        }

        /// Records run `id` and stamps everything written from `since` on.
        fn record(&self, id: &str, since: SystemTime) -> usize {
            let runs = self.0.join(RUNS);
            std::fs::create_dir_all(&runs).unwrap();
            let mut meta = provenance("cargo bench -p mpsafe-benches");
            meta["started"] = json!("2026-11-30T18:00:00Z");
            meta["finished"] = json!("2026-11-30T18:10:00Z");
            std::fs::write(runs.join(format!("{id}.json")), meta.to_string()).unwrap();
            stamp(&self.0, id, since).unwrap()
        }

        /// Makes `new`'s estimates look written long ago (after [`long_ago`]).
        fn age(&self, new: &Path) {
            let file = std::fs::File::options()
                .write(true)
                .open(new.join("estimates.json"))
                .unwrap();
            file.set_modified(UNIX_EPOCH + Duration::from_secs(3_000_000))
                .unwrap();
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn long_ago() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(2_000_000)
    }

    #[test]
    fn one_run_reports_its_provenance_and_intervals() {
        let s = Scratch::new("one");
        s.result("g", "peer", 20.0);
        s.result("g", "ours", 10.0);
        assert_eq!(s.record("R1", long_ago()), 2);
        let out = report(&s.0, None).unwrap();
        assert!(out.contains("Run `R1` (every group):"), "{out}");
        assert!(out.contains("- date: 2026-11-30T18:00:00Z to 2026-11-30T18:10:00Z (UTC)"));
        assert!(out.contains("- commit: `"), "{out}");
        assert!(out.contains("- rustc: `rustc "), "{out}");
        assert!(out.contains("available parallelism"), "{out}");
        assert!(out.contains("- scheduling: SCHED_"), "{out}");
        assert!(out.contains("| 95% CI of median |"), "{out}");
        assert!(
            out.contains("| `ours` | 10.0 ns | 9.00 ns – 11.0 ns | 5.0 ns |"),
            "{out}"
        );
        assert!(out.contains("Run: `R1`."), "{out}");
    }

    #[test]
    fn a_group_mixing_two_runs_is_refused() {
        let s = Scratch::new("mixed");
        let old = s.result("g", "peer", 20.0);
        s.age(&old);
        assert_eq!(s.record("R1", long_ago()), 1);
        // A later partial rerun of one benchmark of the same group.
        let since = SystemTime::now() - Duration::from_secs(60);
        s.result("g", "ours", 10.0);
        assert_eq!(s.record("R2", since), 1);
        let err = report(&s.0, None).unwrap_err();
        assert!(err.contains("g mixes 2 runs"), "{err}");
        assert!(
            err.contains("`peer` from R1") && err.contains("`ours` from R2"),
            "{err}"
        );
    }

    #[test]
    fn groups_from_different_runs_each_name_theirs() {
        let s = Scratch::new("groups");
        let old = s.result("a", "x", 20.0);
        s.age(&old);
        assert_eq!(s.record("R1", long_ago()), 1);
        let since = SystemTime::now() - Duration::from_secs(60);
        s.result("b", "y", 10.0);
        assert_eq!(s.record("R2", since), 1);
        let out = report(&s.0, None).unwrap();
        assert!(
            out.contains("Run `R1` (a):") && out.contains("Run `R2` (b):"),
            "{out}"
        );
        let a = out.find("## a").unwrap();
        let b = out.find("## b").unwrap();
        assert!(
            out[a..b].contains("Run: `R1`.") && out[b..].contains("Run: `R2`."),
            "{out}"
        );
    }

    #[test]
    fn an_unrecorded_or_changed_result_is_refused() {
        let s = Scratch::new("unstamped");
        s.result("g", "peer", 20.0);
        let err = report(&s.0, None).unwrap_err();
        assert!(
            err.contains("`peer` not written by a recorded run"),
            "{err}"
        );

        assert_eq!(s.record("R1", long_ago()), 1);
        assert!(report(&s.0, None).is_ok());
        // criterion run directly afterwards rewrites the estimates.
        s.result("g", "peer", 30.0);
        let err = report(&s.0, None).unwrap_err();
        assert!(err.contains("changed after its run stamped it"), "{err}");
    }

    #[test]
    fn a_run_without_its_record_is_refused() {
        let s = Scratch::new("norecord");
        s.result("g", "peer", 20.0);
        assert_eq!(stamp(&s.0, "R9", long_ago()).unwrap(), 1);
        let err = report(&s.0, None).unwrap_err();
        assert!(err.contains("run R9 has no record"), "{err}");
    }

    #[test]
    fn stamping_skips_results_older_than_the_run() {
        let s = Scratch::new("older");
        let old = s.result("g", "old", 1.0);
        s.age(&old);
        s.result("g", "fresh", 1.0);
        let since = SystemTime::now() - Duration::from_secs(60);
        assert_eq!(stamp(&s.0, "R1", since).unwrap(), 1);
        assert!(!old.join(STAMP).exists());
    }

    #[test]
    fn groups_not_rerun_are_carried_over_with_their_run() {
        let s = Scratch::new("carry");
        s.result("a", "x", 20.0);
        assert_eq!(s.record("R1", long_ago()), 1);
        let first = report(&s.0, None).unwrap();
        // A fresh criterion directory holding only group b, from run R2.
        let t = Scratch::new("carry2");
        t.result("b", "y", 10.0);
        assert_eq!(t.record("R2", long_ago()), 1);
        let out = report(&t.0, Some(&first)).unwrap();
        assert!(
            out.contains("Run `R1` (a):") && out.contains("Run `R2` (b):"),
            "{out}"
        );
        assert!(out.contains("## a\n\nRun: `R1`."), "{out}");
        assert!(out.contains("| `x` | 20.0 ns |"), "{out}");
        assert!(out.contains("- commit: `"), "R1's record is kept: {out}");
        // A rerun group replaces the carried one.
        let u = Scratch::new("carry3");
        u.result("a", "x", 40.0);
        assert_eq!(u.record("R3", long_ago()), 1);
        let again = report(&u.0, Some(&out)).unwrap();
        assert!(
            again.contains("| `x` | 40.0 ns |") && !again.contains("R1"),
            "{again}"
        );
        assert!(again.contains("Run `R2` (b):"), "{again}");
    }

    #[test]
    fn tails_tables_are_stamped_and_reported() {
        let s = Scratch::new("tails");
        let new = s.0.join("mpsafe-tails").join("g_t").join("new");
        std::fs::create_dir_all(&new).unwrap();
        let t = json!({
            "group": "g/t", "peer": "p", "about": "What it is.",
            "columns": ["p50", "p99"],
            "rows": [{"name": "p", "cells": ["1 ns", "2 ns"]}, {"name": "q", "cells": ["3 ns", "4 ns"]}],
        });
        std::fs::write(new.join("tails.json"), t.to_string()).unwrap();
        let err = report(&s.0, None).unwrap_err();
        assert!(
            err.contains("g/t: its table not written by a recorded run"),
            "{err}"
        );
        assert_eq!(s.record("R1", long_ago()), 1);
        let out = report(&s.0, None).unwrap();
        assert!(
            out.contains("## g/t\n\nRun: `R1`.\n\nPeer: `p`.\n\nWhat it is."),
            "{out}"
        );
        assert!(
            out.contains("| benchmark | p50 | p99 |\n| --- | ---: | ---: |\n| `p` | 1 ns | 2 ns |"),
            "{out}"
        );
    }

    #[test]
    fn parameterised_entries_meet_the_peer_of_their_parameter() {
        let s = Scratch::new("param");
        s.result("ifqueue/2cpu_kernel_lock", "big_lock/10ns", 20.0);
        s.result("ifqueue/2cpu_kernel_lock", "big_lock/200ns", 40.0);
        s.result("ifqueue/2cpu_kernel_lock", "ifq_default/10ns", 40.0);
        s.result("ifqueue/2cpu_kernel_lock", "ifq_default/200ns", 10.0);
        assert_eq!(s.record("R1", long_ago()), 4);
        let out = report(&s.0, None).unwrap();
        assert!(out.contains("Peer: `big_lock`."), "{out}");
        assert!(out.contains("| `ifq_default/10ns` | 40.0 ns |"), "{out}");
        let row = |name: &str| {
            out.lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap()
                .to_owned()
        };
        assert!(row("ifq_default/10ns").ends_with("| 0.50× |"), "{out}");
        assert!(row("ifq_default/200ns").ends_with("| 4.00× |"), "{out}");
        assert!(row("big_lock/200ns").ends_with("| 1.00× |"), "{out}");
        // 10ns before 200ns: digit runs compare as numbers.
        assert!(out.find("`big_lock/10ns`").unwrap() < out.find("`big_lock/200ns`").unwrap());
    }

    #[test]
    fn natural_order() {
        let mut v = vec!["b_16", "b_4", "a/1000ns", "a/200ns", "a/10ns", "b_1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["a/10ns", "a/200ns", "a/1000ns", "b_1", "b_4", "b_16"]);
    }

    #[test]
    fn utc_dates() {
        let at = |s| utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
