//! Fills the chapters' benchmark placeholders from `benches/RESULTS.md`.
//!
//! Shared by `build.rs` (which renders every chapter into `OUT_DIR` before
//! rustdoc includes it) and `tests/honest.rs` (which checks that every
//! placeholder resolves and that the benchmark chapter quotes no figure of its
//! own). A figure in a chapter is therefore always the figure in RESULTS.md,
//! and a refreshed RESULTS.md refreshes the guide with it.
//!
//! Placeholders, on one line each:
//!
//! | placeholder | renders |
//! | --- | --- |
//! | `{{table:GROUP}}` | the group's name, then its peer line and table copied verbatim |
//! | `{{median:GROUP:BENCH}}` | the `median` cell of that row |
//! | `{{per:GROUP:BENCH}}` | the `per element` cell |
//! | `{{ratio:GROUP:BENCH}}` | the `speed vs peer` cell |
//! | `{{cell:GROUP:BENCH:COLUMN}}` | the cell of that row under `COLUMN` (a header, any case), for the tables benches write beside criterion's (`p99`, `p99.9 / p50`) |
//! | `{{peer:GROUP}}` | the group's peer, in backticks |
//! | `{{preamble}}` | RESULTS.md's text between its title and first group |
//! | `{{other-tables}}` | every group no `{{table:..}}` of the chapter names |
//! | `{{written-for:HEX}}` | nothing if RESULTS.md's FNV-1a 64 hash is `HEX`, else a note that the prose was written for another run |
//!
//! `BENCH` is the benchmark's name without backticks and may contain `:`
//! (`std::sync::Mutex lock+unlock`); `GROUP` and `COLUMN` may not.

#![allow(dead_code)] // each includer uses a part
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::collections::BTreeSet;

/// One `## group` section of RESULTS.md.
pub(crate) struct Group {
    /// The group name (`ifqueue/1p1c`).
    pub(crate) name: String,
    /// The peer named on the `Peer:` line, if any.
    pub(crate) peer: Option<String>,
    /// The section's text after the heading, verbatim (peer line and table).
    pub(crate) body: String,
    /// Lower-cased column names of the table.
    pub(crate) columns: Vec<String>,
    /// Each row: the benchmark name (no backticks) and its cells.
    pub(crate) rows: Vec<(String, Vec<String>)>,
}

/// RESULTS.md, parsed.
pub(crate) struct Results {
    /// Text between the `#` title and the first group.
    pub(crate) preamble: String,
    /// The groups in file order.
    pub(crate) groups: Vec<Group>,
    /// FNV-1a 64 of the whole file.
    pub(crate) fingerprint: u64,
}

/// FNV-1a, 64-bit: a fingerprint, not a checksum against tampering.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// Parses RESULTS.md as `bench-report` writes it: `## group` sections, an
/// optional ``Peer: `name`.`` line, one markdown table whose first column is
/// the benchmark. Extra columns and extra text are kept and ignored.
pub(crate) fn parse(text: &str) -> Results {
    let mut preamble = String::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut seen_title = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("## ") {
            groups.push(Group {
                name: name.trim().to_string(),
                peer: None,
                body: String::new(),
                columns: Vec::new(),
                rows: Vec::new(),
            });
            continue;
        }
        let Some(g) = groups.last_mut() else {
            if line.starts_with("# ") && !seen_title {
                seen_title = true;
            } else {
                preamble.push_str(line);
                preamble.push('\n');
            }
            continue;
        };
        g.body.push_str(line);
        g.body.push('\n');
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("Peer:") {
            let p = rest.trim().trim_end_matches('.').trim_matches('`');
            g.peer = Some(p.to_string());
        } else if t.starts_with('|') {
            let c = cells(t);
            if g.columns.is_empty() {
                g.columns = c.iter().map(|s| s.to_lowercase()).collect();
            } else if c
                .iter()
                .all(|s| s.chars().all(|ch| matches!(ch, '-' | ':')))
            {
                // the separator row
            } else if let Some(first) = c.first() {
                let name = first.trim_matches('`').to_string();
                g.rows.push((name, c));
            }
        }
    }
    for g in &mut groups {
        g.body = format!("{}\n", g.body.trim());
    }
    Results {
        preamble: format!("{}\n", preamble.trim()),
        groups,
        fingerprint: fnv1a64(text.as_bytes()),
    }
}

impl Results {
    /// The group named `name`.
    pub(crate) fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The cell of `column` (a lower-cased header) in `bench`'s row of `group`.
    pub(crate) fn cell(&self, group: &str, bench: &str, column: &str) -> Option<&str> {
        let g = self.group(group)?;
        let col = g.columns.iter().position(|c| c == column)?;
        let (_, cells) = g.rows.iter().find(|(n, _)| n == bench)?;
        let v = cells.get(col)?.as_str();
        (!v.is_empty()).then_some(v)
    }
}

/// A placeholder that did not resolve.
#[derive(Debug)]
pub(crate) struct Unresolved {
    /// The placeholder's text, without the braces.
    pub(crate) placeholder: String,
}

fn column_of(kind: &str) -> Option<&'static str> {
    match kind {
        "median" => Some("median"),
        "per" => Some("per element"),
        "ratio" => Some("speed vs peer"),
        _ => None,
    }
}

/// Whether `inner` (between `{{` and `}}`) is one of ours.
fn is_placeholder(inner: &str) -> bool {
    const KINDS: [&str; 7] = [
        "table:",
        "median:",
        "per:",
        "ratio:",
        "cell:",
        "peer:",
        "written-for:",
    ];
    inner == "preamble" || inner == "other-tables" || KINDS.iter().any(|k| inner.starts_with(k))
}

/// Every `{{..}}` placeholder in `chapter`, in order, with its byte range.
pub(crate) fn placeholders(chapter: &str) -> Vec<(usize, usize, &str)> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(open) = chapter[at..].find("{{") {
        let start = at + open;
        let Some(close) = chapter[start..].find("}}") else {
            break;
        };
        let end = start + close + 2;
        let inner = &chapter[start + 2..end - 2];
        if is_placeholder(inner) {
            out.push((start, end, inner));
            at = end;
        } else {
            at = start + 2; // `{{` of something else (a format string): left alone
        }
    }
    out
}

/// Renders `chapter`: each placeholder becomes its figure or table. Whatever
/// does not resolve is rendered as a visible marker and returned.
pub(crate) fn render(chapter: &str, results: &Results) -> (String, Vec<Unresolved>) {
    let named: BTreeSet<&str> = placeholders(chapter)
        .iter()
        .filter_map(|(_, _, p)| p.strip_prefix("table:"))
        .collect();
    let mut out = String::with_capacity(chapter.len() * 2);
    let mut bad = Vec::new();
    let mut last = 0;
    for (start, end, p) in placeholders(chapter) {
        out.push_str(&chapter[last..start]);
        last = end;
        match resolve(p, results, &named) {
            Some(text) => out.push_str(&text),
            None => {
                out.push_str(&format!("**[not in benches/RESULTS.md: `{p}`]**"));
                bad.push(Unresolved {
                    placeholder: p.to_string(),
                });
            }
        }
    }
    out.push_str(&chapter[last..]);
    (out, bad)
}

/// A group's table, introduced by its name.
fn table(g: &Group) -> String {
    if g.body.starts_with('|') {
        format!("Group `{}`:\n\n{}", g.name, g.body)
    } else {
        format!("Group `{}`. {}", g.name, g.body)
    }
}

fn resolve(p: &str, r: &Results, named: &BTreeSet<&str>) -> Option<String> {
    if p == "preamble" {
        return Some(r.preamble.clone());
    }
    if p == "other-tables" {
        let mut s = String::new();
        for g in r.groups.iter().filter(|g| !named.contains(g.name.as_str())) {
            s.push_str(&table(g));
            s.push('\n');
        }
        return Some(s);
    }
    let (kind, rest) = p.split_once(':')?;
    match kind {
        "table" => r.group(rest).map(table),
        "peer" => r.group(rest)?.peer.as_ref().map(|p| format!("`{p}`")),
        "cell" => {
            let (group, rest) = rest.split_once(':')?;
            let (bench, column) = rest.rsplit_once(':')?;
            r.cell(group, bench, &column.to_lowercase())
                .map(str::to_string)
        }
        "written-for" => {
            let want = u64::from_str_radix(rest.trim(), 16).ok()?;
            Some(if want == r.fingerprint {
                String::new()
            } else {
                format!(
                    "> **Note:** the figures on this page come from the current \
                     `benches/RESULTS.md` (fingerprint `{:016x}`), but the prose around them \
                     was written for an earlier run (`{want:016x}`): where a sentence and \
                     its figure disagree, the figure is the measurement.\n",
                    r.fingerprint
                )
            })
        }
        _ => {
            let column = column_of(kind)?;
            let (group, bench) = rest.split_once(':')?;
            r.cell(group, bench, column).map(str::to_string)
        }
    }
}
