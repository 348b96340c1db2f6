//! The guide's figures (`docs/figures/NAME.svg`, shown by a `{{figure:NAME}}`
//! line) are recorded demo runs: each SVG sits beside the JSON of the same
//! run (`NAME.json`), and what the SVG draws is that JSON's numbers.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn docs() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every `{{figure:NAME}}` of every chapter.
fn figure_names() -> Vec<String> {
    let mut names = Vec::new();
    for entry in fs::read_dir(docs().join("chapters")).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("{{figure:") {
            let tail = &rest[at + "{{figure:".len()..];
            let end = tail.find("}}").expect("a closed placeholder");
            names.push(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
    names
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// A chart's data-to-pixel mapping, from the SVG's metadata.
fn map(doc: &roxmltree::Document<'_>, id: &str) -> impl Fn(f64, f64) -> (f64, f64) {
    let n = doc
        .descendants()
        .find(|n| n.tag_name().name() == "chart" && n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no chart {id:?}"));
    let a = |k: &str| -> f64 { n.attribute(k).unwrap().parse().unwrap() };
    let (x0, x1, px0, px1) = (a("x0"), a("x1"), a("px0"), a("px1"));
    let (y0, y1, py0, py1) = (a("y0"), a("y1"), a("py0"), a("py1"));
    move |x, y| {
        (
            px0 + (x - x0) / (x1 - x0) * (px1 - px0),
            py0 + (y - y0) / (y1 - y0) * (py1 - py0),
        )
    }
}

const TOL: f64 = 1.5;

#[test]
fn each_figure_draws_the_json_of_its_run() {
    let names = figure_names();
    assert!(!names.is_empty(), "the benchmark chapter shows a figure");
    for name in names {
        let dir: PathBuf = docs().join("figures");
        let svg = fs::read_to_string(dir.join(format!("{name}.svg"))).unwrap();
        let json = fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
        let v: Value = serde_json::from_str(&json).expect("the recorded JSON");
        let doc = roxmltree::Document::parse(&svg).expect("the figure is XML");
        let modes = v["modes"].as_array().unwrap();
        assert!(!modes.is_empty(), "{name}");

        // The efficiency bars: a bar of the mode's colour per mode, up to
        // the median of its runs.
        let to_px = map(&doc, "efficiency");
        let rects: Vec<(f64, f64)> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "rect")
            .map(|n| {
                let a = |k: &str| -> f64 { n.attribute(k).unwrap().parse().unwrap() };
                (a("x"), a("y"))
            })
            .collect();
        for (i, m) in modes.iter().enumerate() {
            let (x, y) = to_px(i as f64 + 0.18, f(&m["packets_per_driver_cpu_s"]["median"]));
            assert!(
                rects
                    .iter()
                    .any(|r| (r.0 - x).abs() <= TOL && (r.1 - y).abs() <= TOL),
                "{name}: no bar for {} at ({x}, {y})",
                m["mode"]
            );
        }

        // The after-up curves: each probe's missed frames, point for point.
        let to_px = map(&doc, "after-up/missed");
        let lines: Vec<Vec<(f64, f64)>> = doc
            .descendants()
            .filter(|n| n.tag_name().name() == "polyline")
            .map(|n| {
                n.attribute("points")
                    .unwrap()
                    .split_whitespace()
                    .map(|p| {
                        let (x, y) = p.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect();
        let mut probes = 0;
        for m in modes {
            for a in m["after_up"].as_array().unwrap() {
                let want: Vec<(f64, f64)> = a["trace"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| to_px(f(&p["ms"]), f(&p["rx_missed"])))
                    .collect();
                assert!(
                    lines.iter().any(|l| l.len() == want.len()
                        && l.iter().zip(&want).all(|(a, b)| {
                            (a.0 - b.0).abs() <= TOL && (a.1 - b.1).abs() <= TOL
                        })),
                    "{name}: no curve for {}'s after-up probe",
                    m["mode"]
                );
                probes += 1;
            }
        }
        assert!(
            probes > 0,
            "{name}: the figure shows the first second after up"
        );
    }
}
