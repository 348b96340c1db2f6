//! Keeps the guide honest about what it cites.
//!
//! - Every "seed NNN" in the chapters, the crate docs and the READMEs names a
//!   row of the seed table in the first chapter, and outside code blocks it
//!   is a link to that row.
//! - Every benchmark placeholder in a chapter resolves against
//!   `benches/RESULTS.md`, and the benchmark chapter writes no measured
//!   figure of its own: each one comes from RESULTS.md through a placeholder
//!   (see `render.rs`).
//! - Every group of RESULTS.md is shown in the benchmark chapter.
//! - A published crate's README that names a seed defines it, for readers
//!   who see the README without the guide (crates.io).
//! - No chapter and no published README cites an issue number, which a
//!   reader cannot look up.
//! - Every repository file a chapter names in backticks exists.

#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

#[path = "../render.rs"]
mod render;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

fn docs() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn chapters() -> Vec<PathBuf> {
    let mut v: Vec<_> = fs::read_dir(docs().join("chapters"))
        .expect("docs/chapters")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    v.sort();
    v
}

fn results() -> render::Results {
    render::parse(&read(&docs().join("RESULTS.md")))
}

/// The seed numbers of the table in the first chapter: rows that start with
/// `| <a id="seed-NNN"></a>NNN |`.
fn seed_table() -> BTreeSet<String> {
    let why = read(&docs().join("chapters/01-why.md"));
    let mut seeds = BTreeSet::new();
    for line in why.lines() {
        let Some(rest) = line.strip_prefix("| <a id=\"seed-") else {
            continue;
        };
        let (id, rest) = rest.split_once("\"></a>").expect("an anchor row");
        let shown = rest.split('|').next().expect("a cell").trim();
        assert_eq!(
            id, shown,
            "the anchor and the number of a seed row differ: {line}"
        );
        seeds.insert(id.to_string());
    }
    seeds
}

/// A mention of a seed: where it starts, and its three digits.
struct Mention {
    at: usize,
    end: usize,
    number: String,
}

/// Every "seed NNN", "Seed NNN", "seed-NNN" and "seeds NNN" (only the first
/// number of a list: lists must be written as separate links).
fn mentions(text: &str) -> Vec<Mention> {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("seed") {
        let at = from + i;
        from = at + 4;
        // Not the tail of a longer word ("seeds/", "reseed").
        if at > 0 && bytes[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        // A link target (`#seed-000`) or an anchor (`id="seed-000"`).
        if at > 0 && matches!(bytes[at - 1], b'#' | b'"') {
            continue;
        }
        let mut j = at + 4;
        if bytes.get(j) == Some(&b's') {
            j += 1;
        }
        if !matches!(bytes.get(j), Some(b' ' | b'-')) {
            continue;
        }
        j += 1;
        let digits = &lower[j..(j + 3).min(lower.len())];
        if digits.len() == 3
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !bytes.get(j + 3).is_some_and(|b| b.is_ascii_digit())
        {
            out.push(Mention {
                at,
                end: j + 3,
                number: digits.to_string(),
            });
        }
    }
    out
}

/// Byte ranges of fenced code blocks (```), where a mention cannot be a link.
fn code_blocks(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut open = None;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        if t.starts_with("```") {
            match open {
                None => open = Some(pos),
                Some(start) => {
                    out.push((start, pos + line.len()));
                    open = None;
                }
            }
        }
        pos += line.len();
    }
    out
}

/// Files that may mention seeds, with the link prefix that reaches the table
/// from each (`None`: no link is possible there, so no mention is allowed).
fn seed_sources() -> Vec<(PathBuf, Option<&'static [&'static str]>)> {
    const CHAPTER: &[&str] = &["](crate::why#seed-", "](#seed-"];
    const LIB: &[&str] = &["](why#seed-", "](crate::why#seed-"];
    let mut v: Vec<_> = chapters().into_iter().map(|p| (p, Some(CHAPTER))).collect();
    v.push((docs().join("src/lib.rs"), Some(LIB)));
    v.push((docs().join("README.md"), None));
    v.push((docs().join("../README.md"), None));
    v
}

#[test]
fn every_seed_reference_resolves_and_links_to_the_table() {
    let table = seed_table();
    assert_eq!(
        table,
        ["000", "001", "002", "003"].map(String::from).into(),
        "the seed table in 01-why.md"
    );
    let mut problems = Vec::new();
    for (path, links) in seed_sources() {
        let text = read(&path);
        let code = code_blocks(&text);
        for m in mentions(&text) {
            let line = text[..m.at].lines().count().max(1);
            let place = format!("{}:{line}", path.display());
            if !table.contains(&m.number) {
                problems.push(format!(
                    "{place}: seed {} is not in the seed table",
                    m.number
                ));
                continue;
            }
            if code.iter().any(|&(s, e)| (s..e).contains(&m.at)) {
                continue; // inside a code block: resolved, cannot be a link
            }
            let Some(links) = links else {
                problems.push(format!(
                    "{place}: a seed number in a file rendered outside rustdoc; name the message instead"
                ));
                continue;
            };
            let linked = m.at > 0
                && text.as_bytes()[m.at - 1] == b'['
                && links
                    .iter()
                    .any(|l| text[m.end..].starts_with(&format!("{l}{})", m.number)));
            if !linked {
                problems.push(format!(
                    "{place}: `{}` is not a link to its row ([seed {n}](crate::why#seed-{n}))",
                    &text[m.at..m.end],
                    n = m.number
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "seed references:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_mention_scanner_finds_what_it_must() {
    let found: Vec<String> = mentions(
        "[Seed 000](crate::why#seed-000)'s rule, seeds 002, the seed-001 path; seeds/ and reseed 123",
    )
    .into_iter()
    .map(|m| m.number)
    .collect();
    assert_eq!(found, ["000", "002", "001"]);
}

#[test]
fn every_benchmark_placeholder_resolves() {
    let results = results();
    let mut problems = Vec::new();
    for path in chapters() {
        let (_, unresolved) = render::render(&read(&path), &results);
        for u in unresolved {
            problems.push(format!("{}: {{{{{}}}}}", path.display(), u.placeholder));
        }
    }
    assert!(
        problems.is_empty(),
        "not in benches/RESULTS.md:\n{}",
        problems.join("\n")
    );
}

/// Units a measured figure is written in.
const UNITS: [&str; 6] = ["ns", "µs", "ms", "×", "x", "Mpps"];

/// Figures written into `text` outside placeholders and code blocks: a
/// number directly followed (after at most one space) by a unit.
fn literal_figures(text: &str) -> Vec<String> {
    let mut blanked = text.to_string();
    let mut ranges: Vec<(usize, usize)> = render::placeholders(text)
        .into_iter()
        .map(|(s, e, _)| (s, e))
        .collect();
    ranges.extend(code_blocks(text));
    for (s, e) in ranges {
        blanked.replace_range(s..e, &" ".repeat(e - s));
    }
    let mut out = Vec::new();
    let b = blanked.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let mut j = i;
            if b.get(j) == Some(&b' ') {
                j += 1;
            }
            let rest = &blanked[j..];
            if let Some(unit) = UNITS.iter().find(|u| rest.starts_with(**u)) {
                let after = rest[unit.len()..].chars().next();
                if !after.is_some_and(|c| c.is_alphanumeric()) {
                    out.push(blanked[start..j + unit.len()].to_string());
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn the_benchmark_chapter_quotes_no_figure_of_its_own() {
    let chapter = read(&docs().join("chapters/08-benchmarks.md"));
    let figures = literal_figures(&chapter);
    assert!(
        figures.is_empty(),
        "08-benchmarks.md writes figures by hand (use a RESULTS.md placeholder): {figures:?}"
    );
}

#[test]
fn the_figure_scanner_finds_what_it_must() {
    let found = literal_figures("costs 7.4 ns, 0.11× and 4x; {{ratio:a:b}} 2 vCPUs, x86_64, 1p1c");
    assert_eq!(found, ["7.4 ns", "0.11×", "4x"]);
}

#[test]
fn the_benchmark_chapter_shows_every_group() {
    let chapter = read(&docs().join("chapters/08-benchmarks.md"));
    let placeholders = render::placeholders(&chapter);
    if placeholders.iter().any(|(_, _, p)| *p == "other-tables") {
        return; // every group not named shows up there
    }
    let named: BTreeSet<&str> = placeholders
        .iter()
        .filter_map(|(_, _, p)| p.strip_prefix("table:"))
        .collect();
    for g in results().groups {
        assert!(
            named.contains(g.name.as_str()),
            "group {} is not in the chapter",
            g.name
        );
    }
}

#[test]
fn rendering_copies_the_figures_of_results_md() {
    let results = render::parse(
        "# Benchmark results\n\nrun of a day\n\n## g/x\n\nPeer: `p`.\n\n| benchmark | median | per element | Melem/s | speed vs peer |\n| --- | ---: | ---: | ---: | ---: |\n| `a::b c` | 8.3 ns | 4.2 ns | 240.19 | 4.15× |\n| `p` | 34.6 ns | 17.3 ns | 57.82 | 1.00× |\n",
    );
    let (out, bad) = render::render(
        "{{preamble}}{{ratio:g/x:a::b c}} {{per:g/x:a::b c}} {{median:g/x:p}} {{peer:g/x}} {{ratio:g/x:nope}} {{ \"not ours\" }}",
        &results,
    );
    assert_eq!(bad.len(), 1);
    assert!(
        out.starts_with("run of a day\n4.15× 4.2 ns 34.6 ns `p` **[not in"),
        "{out}"
    );
    assert!(out.ends_with("{{ \"not ours\" }}"));
    let tails = render::parse(
        "# r\n\n## g/t\n\nPeer: `p`.\n\nWhat it is.\n\n| benchmark | p50 | p99.9 / p50 |\n| --- | ---: | ---: |\n| `a::b c` | 40 ns | 3.5 |\n",
    );
    let (cells, bad) = render::render(
        "{{cell:g/t:a::b c:p50}} {{cell:g/t:a::b c:P99.9 / p50}} {{cell:g/t:a::b c:max}}",
        &tails,
    );
    assert_eq!(bad.len(), 1, "an absent column does not resolve");
    assert!(cells.starts_with("40 ns 3.5 **[not in"), "{cells}");
    let (table, bad) = render::render("{{table:g/x}}{{other-tables}}", &results);
    assert!(bad.is_empty());
    assert!(
        table.starts_with("Group `g/x`. Peer: `p`.\n\n| benchmark |"),
        "{table}"
    );
    assert_eq!(
        table.matches("Group `g/x`").count(),
        1,
        "a named group is not repeated"
    );
    let (note, _) = render::render("{{written-for:0}}", &results);
    assert!(note.contains("written for an earlier run"));
    let fp = format!("{{{{written-for:{:x}}}}}", results.fingerprint);
    assert_eq!(render::render(&fp, &results).0, "");
}

/// The id rustdoc gives a heading: its text without markup, lower-cased,
/// letters, digits, `-` and `_` kept, spaces turned into `-`.
fn heading_id(heading: &str) -> String {
    let mut text = String::new();
    let mut rest = heading;
    // `[text](target)` renders as `text`.
    while let Some(open) = rest.find('[') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find("](")
            .and_then(|c| after[c..].find(')').map(|e| (c, c + e)))
        {
            Some((close, end)) => {
                text.push_str(&after[..close]);
                rest = &after[end + 1..];
            }
            None => {
                text.push('[');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text.trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            c if c.is_whitespace() => Some('-'),
            _ => None,
        })
        .collect()
}

/// The anchors of a chapter: its headings' ids and its `<a id="..">`s.
fn anchors(chapter: &str) -> BTreeSet<String> {
    let code = code_blocks(chapter);
    let mut ids = BTreeSet::new();
    let mut pos = 0;
    for line in chapter.split_inclusive('\n') {
        let in_code = code.iter().any(|&(s, e)| (s..e).contains(&pos));
        pos += line.len();
        if in_code {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            ids.insert(heading_id(h.trim_start_matches('#')));
        }
        let mut rest = line;
        while let Some(i) = rest.find("<a id=\"") {
            let tail = &rest[i + 7..];
            let end = tail.find('"').expect("a closed id");
            ids.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    ids
}

/// Module name -> chapter file, from the `include_str!` lines of lib.rs.
fn modules() -> Vec<(String, PathBuf)> {
    let lib = read(&docs().join("src/lib.rs"));
    let mut out = Vec::new();
    let mut file = None;
    for line in lib.lines() {
        if line.contains("include_str!") {
            let end = line.find(".md\"").expect("an .md include");
            let start = line[..end].rfind('/').expect("a path") + 1;
            file = Some(format!("{}.md", &line[start..end]));
        } else if let (Some(rest), Some(f)) = (line.strip_prefix("pub mod "), file.take()) {
            let name = rest.split_whitespace().next().expect("a module name");
            out.push((name.to_string(), docs().join("chapters").join(f)));
        }
    }
    out
}

#[test]
fn every_chapter_link_with_a_fragment_lands_on_an_anchor() {
    let modules = modules();
    assert!(
        modules.len() >= 10,
        "lib.rs registers the chapters: {modules:?}"
    );
    let targets: Vec<(String, BTreeSet<String>)> = modules
        .iter()
        .map(|(m, f)| (m.clone(), anchors(&read(f))))
        .collect();
    let find = |m: &str| targets.iter().find(|(n, _)| n == m).map(|(_, a)| a);
    let mut problems = Vec::new();
    let mut sources: Vec<(PathBuf, Option<String>)> = modules
        .iter()
        .map(|(m, f)| (f.clone(), Some(m.clone())))
        .collect();
    sources.push((docs().join("src/lib.rs"), None));
    for (path, own) in sources {
        let text = read(&path);
        let mut rest = text.as_str();
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            rest = tail;
            let Some(end) = tail.find(')') else { break };
            let target = &tail[..end];
            let Some((item, frag)) = target.split_once('#') else {
                continue;
            };
            let module = match item.strip_prefix("crate::") {
                Some(m) => Some(m.to_string()),
                None if item.is_empty() => own.clone(),
                None if !item.contains([':', '/', '.']) => Some(item.to_string()),
                None => None, // an item path or a URL: rustdoc checks those
            };
            let Some(module) = module else { continue };
            match find(&module) {
                Some(a) if a.contains(frag) => {}
                Some(_) => problems.push(format!(
                    "{}: #{frag} is not an anchor of {module}",
                    path.display()
                )),
                None => problems.push(format!("{}: no chapter module {module}", path.display())),
            }
        }
    }
    assert!(
        problems.is_empty(),
        "links to missing anchors:\n{}",
        problems.join("\n")
    );
}

#[test]
fn heading_ids_are_rustdocs() {
    assert_eq!(
        heading_id(" What today's OpenBSD does instead"),
        "what-todays-openbsd-does-instead"
    );
    assert_eq!(
        heading_id(" OpenBSD, August 2015: em(4) rx"),
        "openbsd-august-2015-em4-rx"
    );
    assert_eq!(heading_id(" A kernel `Wait`"), "a-kernel-wait");
    assert_eq!(
        heading_id(" Receive: [seed 000](crate::why#seed-000)"),
        "receive-seed-000"
    );
}

/// The READMEs of the published crates other than the guide (crates.io
/// shows them without the guide beside them).
fn crate_readmes() -> Vec<PathBuf> {
    [
        "order",
        "serializer",
        "rxring",
        "barrier",
        "ifqueue",
        "em",
        "em-sim",
        "em-uio",
        "em-demo",
    ]
    .iter()
    .map(|c| docs().join("..").join(c).join("README.md"))
    .filter(|p| p.exists())
    .collect()
}

#[test]
fn every_crate_readme_defines_the_seeds_it_names() {
    let table = seed_table();
    let readmes = crate_readmes();
    assert!(readmes.len() >= 5, "the crate READMEs: {readmes:?}");
    let mut problems = Vec::new();
    for path in readmes {
        let text = read(&path);
        for m in mentions(&text) {
            let line = text[..m.at].lines().count().max(1);
            if !table.contains(&m.number) {
                problems.push(format!(
                    "{}:{line}: seed {} is not in the seed table",
                    path.display(),
                    m.number
                ));
            } else if !text.contains(&format!("**seed {}**:", m.number)) {
                problems.push(format!(
                    "{}:{line}: seed {} is named but not defined (a `- **seed {n}**: ...` line)",
                    path.display(),
                    m.number,
                    n = m.number
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every "issue N" (any case) in `text`, with its line.
fn issue_citations(text: &str) -> Vec<(usize, String)> {
    let lower = text.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find("issue") {
        let at = from + i;
        from = at + 5;
        let rest = lower[from..].trim_start_matches([' ', '#']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let word_start = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
        if word_start && !digits.is_empty() {
            let line = text[..at].lines().count().max(1);
            out.push((line, format!("issue {digits}")));
        }
    }
    out
}

#[test]
fn the_issue_scanner_finds_what_it_must() {
    let found: Vec<String> =
        issue_citations("Issue 17 asked; issues are not; see issue #3, tissue 4")
            .into_iter()
            .map(|(_, c)| c)
            .collect();
    assert_eq!(found, ["issue 17", "issue 3"]);
}

#[test]
fn no_chapter_or_crate_readme_cites_an_issue_number() {
    let mut files = chapters();
    files.push(docs().join("src/lib.rs"));
    files.push(docs().join("README.md"));
    files.extend(crate_readmes());
    let mut problems = Vec::new();
    for path in files {
        for (line, c) in issue_citations(&read(&path)) {
            problems.push(format!("{}:{line}: `{c}`", path.display()));
        }
    }
    assert!(
        problems.is_empty(),
        "issue numbers a reader cannot look up:\n{}",
        problems.join("\n")
    );
}

/// Repository paths a text names in backticks (`em/src/desc.rs`,
/// `tests/refill.rs`): a relative path with a `/`, ending in `.rs`, `.md`
/// or `.toml`, outside code blocks, with no wildcard.
fn cited_paths(text: &str) -> Vec<(usize, String)> {
    let code = code_blocks(text);
    let mut out = Vec::new();
    let mut pos = 0;
    for piece in text.split('`').collect::<Vec<_>>().chunks(2) {
        // Even pieces are outside backticks, odd ones inside.
        pos += piece[0].len() + 1;
        let Some(&inside) = piece.get(1) else { break };
        let at = pos;
        pos += inside.len() + 1;
        if code.iter().any(|&(s, e)| (s..e).contains(&at)) {
            continue;
        }
        let is_path = inside.contains('/')
            && !inside.starts_with('/')
            && [".rs", ".md", ".toml"].iter().any(|x| inside.ends_with(x))
            && inside
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_./-".contains(c));
        if is_path {
            let line = text[..at].lines().count().max(1);
            out.push((line, inside.to_string()));
        }
    }
    out
}

#[test]
fn the_path_scanner_finds_what_it_must() {
    let found: Vec<String> = cited_paths(
        "see `em/src/desc.rs` and `tests/refill.rs`, not `mode.rs`, `/proc/self/pagemap`, `barrier/tests/loom_*.rs` or `hw/net/e1000.c`\n```text\n`a/b.rs`\n```\n",
    )
    .into_iter()
    .map(|(_, p)| p)
    .collect();
    assert_eq!(found, ["em/src/desc.rs", "tests/refill.rs"]);
}

#[test]
fn every_repository_path_a_chapter_names_exists() {
    let root = docs().join("..");
    // The workspace root, each crate and its `src`: a chapter may name a
    // path from any of them (`driver/rx.rs` within em/src).
    let mut roots = vec![root.clone()];
    for entry in fs::read_dir(&root).expect("the workspace root") {
        let dir = entry.expect("an entry").path();
        if dir.join("Cargo.toml").exists() {
            roots.push(dir.join("src"));
            roots.push(dir);
        }
    }
    let mut problems = Vec::new();
    let mut files = chapters();
    files.push(docs().join("src/lib.rs"));
    let mut seen = 0;
    for path in files {
        for (line, cited) in cited_paths(&read(&path)) {
            // A placeholder (`benches/benches/NAME.rs`), or a path in
            // another project (`atomic-wait/src/lib.rs`): its first
            // directory is none of ours.
            let placeholder = cited
                .split(['/', '.'])
                .any(|c| c.len() > 1 && c.chars().all(|ch| ch.is_ascii_uppercase()));
            let first = cited.split('/').next().expect("a component");
            if placeholder || !roots.iter().any(|r| r.join(first).is_dir()) {
                continue;
            }
            seen += 1;
            if !roots.iter().any(|r| r.join(&cited).exists()) {
                problems.push(format!("{}:{line}: `{cited}`", path.display()));
            }
        }
    }
    assert!(
        seen >= 10,
        "the chapters name repository files: {seen} found"
    );
    assert!(
        problems.is_empty(),
        "paths that do not exist in the repository:\n{}",
        problems.join("\n")
    );
}
