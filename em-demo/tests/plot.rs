//! The demo's `--plot` figure: written, valid XML, the same numbers as the
//! JSON of the same run, and bad input refused with a clear error without
//! losing the rest of the run's output.
#![allow(clippy::std_instead_of_core, clippy::std_instead_of_alloc)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output};

use mpsafe_em_demo::plot;
use serde_json::Value;

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

/// A fresh directory of this test's own under the system's temp dir.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("mpsafe-plot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One chart's data-to-pixel mapping from the SVG's metadata.
struct Chart {
    x: (f64, f64, f64, f64),
    y: (f64, f64, f64, f64),
}

impl Chart {
    fn px(&self, x: f64) -> f64 {
        let (x0, x1, p0, p1) = self.x;
        p0 + (x - x0) / (x1 - x0) * (p1 - p0)
    }
    fn py(&self, y: f64) -> f64 {
        let (y0, y1, p0, p1) = self.y;
        p0 + (y - y0) / (y1 - y0) * (p1 - p0)
    }
}

fn chart(doc: &roxmltree::Document<'_>, id: &str) -> Chart {
    let n = doc
        .descendants()
        .find(|n| n.tag_name().name() == "chart" && n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no chart {id:?} in the metadata"));
    let f = |a: &str| -> f64 { n.attribute(a).unwrap().parse().unwrap() };
    Chart {
        x: (f("x0"), f("x1"), f("px0"), f("px1")),
        y: (f("y0"), f("y1"), f("py0"), f("py1")),
    }
}

struct Line {
    stroke: String,
    dashed: bool,
    points: Vec<(f64, f64)>,
}

fn lines(doc: &roxmltree::Document<'_>) -> Vec<Line> {
    doc.descendants()
        .filter(|n| n.tag_name().name() == "polyline")
        .map(|n| Line {
            stroke: n.attribute("stroke").unwrap_or("").to_ascii_uppercase(),
            dashed: n.attribute("stroke-dasharray").is_some(),
            points: n
                .attribute("points")
                .unwrap_or("")
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect(),
        })
        .collect()
}

/// Pixels are whole numbers: a drawn point is within one pixel (and a bit)
/// of where its value maps.
const TOL: f64 = 1.5;

/// Asserts that a polyline of colour `stroke` goes through exactly the
/// points `data` maps to on `chart`.
fn assert_line(lines: &[Line], chart: &Chart, stroke: &str, data: &[(f64, f64)], what: &str) {
    assert!(!data.is_empty(), "{what}: no data");
    let want: Vec<(f64, f64)> = data
        .iter()
        .map(|&(x, y)| (chart.px(x), chart.py(y)))
        .collect();
    let found = lines.iter().any(|l| {
        l.stroke == stroke.to_ascii_uppercase()
            && l.points.len() == want.len()
            && l.points
                .iter()
                .zip(&want)
                .all(|(a, b)| (a.0 - b.0).abs() <= TOL && (a.1 - b.1).abs() <= TOL)
    });
    assert!(found, "{what}: no {stroke} line through {want:?}");
}

/// Asserts a filled rectangle of `fill` from `x0` up to `top` on `chart`.
fn assert_bar(doc: &roxmltree::Document<'_>, chart: &Chart, fill: &str, x0: f64, top: f64) {
    let (want_x, want_top, want_base) = (chart.px(x0), chart.py(top), chart.py(0.0));
    let found = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "rect")
        .filter(|n| {
            n.attribute("fill")
                .is_some_and(|f| f.eq_ignore_ascii_case(fill))
        })
        .any(|n| {
            let f = |a: &str| -> f64 { n.attribute(a).unwrap().parse().unwrap() };
            (f("x") - want_x).abs() <= TOL
                && (f("y") - want_top).abs() <= TOL
                && (f("y") + f("height") - want_base).abs() <= TOL
        });
    assert!(
        found,
        "no {fill} bar at x {want_x} from {want_base} up to {want_top}"
    );
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn the_figure_is_xml_and_draws_the_json_numbers() {
    let dir = scratch("same-numbers");
    let svg = dir.join("run.SVG");
    let o = demo([
        "--mode",
        "mpsafe,biglock",
        "--seconds",
        "0.2",
        "--cycles",
        "0",
        "--interval",
        "0.1",
        "--switch-every",
        "0.3",
        "--after-up",
        "--watermarks",
        "both",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("figure written to"));
    let v: Value = serde_json::from_slice(&o.stdout).expect("the JSON is whole");
    let body = std::fs::read_to_string(&svg).expect("the figure was written");
    let doc = roxmltree::Document::parse(&body).expect("the figure is XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    let lines = lines(&doc);
    let modes = v["modes"].as_array().unwrap();
    assert_eq!(v["config"]["keep_watermarks"], "both");

    // Efficiency bars: one per mode, up to the median of its runs (two
    // runs each: reset and kept).
    let eff = chart(&doc, "efficiency");
    for (i, m) in modes.iter().enumerate() {
        let name = m["mode"].as_str().unwrap();
        assert_eq!(m["runs"], 2, "{name}");
        let s = &m["packets_per_driver_cpu_s"];
        assert_bar(
            &doc,
            &eff,
            &plot::mode_stroke(name, false),
            i as f64 + 0.18,
            f(&s["median"]),
        );
        // The whisker spans the runs' range.
        assert_line(
            &lines,
            &eff,
            "#222222",
            &[
                (i as f64 + 0.5, f(&s["min"])),
                (i as f64 + 0.5, f(&s["max"])),
            ],
            &format!("{name} whisker"),
        );
    }

    // Big-lock acquisitions per second: a bar per path (in the driver's
    // table order) per mode that took the lock on that path.
    let locks = chart(&doc, "big-lock");
    let w = 0.8 / modes.len() as f64;
    let mut bars = 0;
    for (i, m) in modes.iter().enumerate() {
        let name = m["mode"].as_str().unwrap();
        for (p, path) in mpsafe_em_sim::Path::ALL.iter().enumerate() {
            let c = f(&m["big_lock_per_s"][path.name()]);
            if c > 0.0 {
                assert_bar(
                    &doc,
                    &locks,
                    &plot::mode_stroke(name, false),
                    p as f64 + 0.1 + i as f64 * w,
                    c,
                );
                bars += 1;
            }
        }
    }
    assert!(bars >= 2, "biglock's bars");

    // Time series: every run's rx and tx packets/s and each ring's
    // watermark, sample for sample.
    let samples = v["samples"].as_array().unwrap();
    for m in modes {
        let name = m["mode"].as_str().unwrap();
        let (pps, cwm) = (
            chart(&doc, &format!("pps/{name}")),
            chart(&doc, &format!("cwm/{name}")),
        );
        for run in [1, 2] {
            let of_run: Vec<&Value> = samples
                .iter()
                .filter(|s| s["mode"] == name && s["run"] == run)
                .collect();
            assert!(
                of_run.len() >= 3,
                "{name} run {run}: {} samples",
                of_run.len()
            );
            let series = |key: &str| -> Vec<(f64, f64)> {
                of_run.iter().map(|s| (f(&s["t_s"]), f(&s[key]))).collect()
            };
            let what = format!("{name} run {run}");
            assert_line(&lines, &pps, plot::RX_STROKE, &series("rx_pps"), &what);
            assert_line(&lines, &pps, plot::TX_STROKE, &series("tx_pps"), &what);
            let ring0: Vec<(f64, f64)> = of_run
                .iter()
                .map(|s| (f(&s["t_s"]), f(&s["cwm"][0])))
                .collect();
            assert_line(&lines, &cwm, &plot::ring_stroke(0), &ring0, &what);
        }
        // --switch-every 0.3: a mark at 0.3 s and 0.6 s on the time axis.
        for t in [0.3, 0.6] {
            assert!(
                lines.iter().any(|l| l.points.len() == 2
                    && l.points.iter().all(|p| (p.0 - pps.px(t)).abs() <= TOL)
                    && (l.points[0].1 - pps.y.2).abs() <= TOL
                    && (l.points[1].1 - pps.y.3).abs() <= TOL),
                "{name}: no switch mark at {t} s"
            );
        }
    }

    // The first second after up: watermark and missed frames, reset solid
    // and kept dashed.
    let (acwm, amissed) = (chart(&doc, "after-up/cwm"), chart(&doc, "after-up/missed"));
    for m in modes {
        let name = m["mode"].as_str().unwrap();
        let probes = m["after_up"].as_array().unwrap();
        let kept: Vec<bool> = probes
            .iter()
            .map(|a| a["kept"].as_bool().unwrap())
            .collect();
        assert_eq!(kept, [false, true], "{name}");
        for a in probes {
            let kept = a["kept"].as_bool().unwrap();
            let trace = a["trace"].as_array().unwrap();
            // A point at up, then later ones (about every 10 ms when the
            // machine keeps up; how many is not this test's business).
            assert!(trace.len() >= 2, "{name}: {} points", trace.len());
            assert_eq!(f(&trace[0]["ms"]), 0.0, "{name}");
            assert!(
                trace.windows(2).all(|w| f(&w[0]["ms"]) < f(&w[1]["ms"])),
                "{name}: time goes forward"
            );
            let stroke = plot::mode_stroke(name, kept);
            let pts = |k: &str| -> Vec<(f64, f64)> {
                trace.iter().map(|p| (f(&p["ms"]), f(&p[k]))).collect()
            };
            let what = format!("{name} after up, kept {kept}");
            assert_line(&lines, &acwm, &stroke, &pts("cwm"), &what);
            assert_line(&lines, &amissed, &stroke, &pts("rx_missed"), &what);
            let last = trace.last().unwrap();
            // The probe's own count is read just after its last point.
            assert!(
                f(&last["rx_missed"]) <= f(&a["rx_missed_first_s"]),
                "{what}"
            );
            assert!(
                lines
                    .iter()
                    .filter(|l| l.stroke == stroke.to_ascii_uppercase() && l.points.len() > 2)
                    .all(|l| l.dashed == kept),
                "{what}: kept dashed, reset solid"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn a_name_that_is_not_svg_is_refused_before_running() {
    let dir = scratch("not-svg");
    for name in ["out.png", "out", "-"] {
        let target = dir.join(name);
        let arg = if name == "-" {
            "-".into()
        } else {
            target.display().to_string()
        };
        let o = demo(["--seconds", "0.1", "--cycles", "0", "--plot", &arg]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("--plot") && err.contains("SVG only"),
            "{name}: {err}"
        );
        assert!(err.contains("ending in .svg"), "{name}: {err}");
        assert!(o.stdout.is_empty(), "{name}: nothing ran");
        assert!(!target.exists(), "{name}: no file made");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "runs a process")]
fn an_unwritable_path_is_said_before_the_runs() {
    let dir = scratch("unwritable");
    let missing = dir.join("no-such-dir").join("out.svg");
    let a_dir = dir.join("a-directory.svg");
    std::fs::create_dir(&a_dir).unwrap();
    for target in [&missing, &a_dir] {
        let o = demo([
            "--seconds",
            "0.1",
            "--cycles",
            "0",
            "--plot",
            target.to_str().unwrap(),
        ]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{target:?}: {err}");
        assert!(err.contains("--plot: cannot create"), "{target:?}: {err}");
        assert!(err.contains(target.to_str().unwrap()), "{target:?}: {err}");
        assert!(
            !err.contains("running"),
            "{target:?}: no run started: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    assert!(!missing.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
#[cfg(target_os = "linux")]
#[cfg_attr(miri, ignore = "runs a process")]
fn a_figure_that_cannot_be_written_loses_none_of_the_report() {
    // Created fine, but every write fails (ENOSPC): the JSON on stdout is
    // still whole, and the error names the file.
    let dir = scratch("full");
    let full = dir.join("full.svg");
    std::os::unix::fs::symlink("/dev/full", &full).unwrap();
    let o = demo([
        "--mode",
        "mpsafe",
        "--seconds",
        "0.1",
        "--cycles",
        "0",
        "--json",
        "--plot",
        full.to_str().unwrap(),
    ]);
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("--plot: cannot write"), "{err}");
    assert!(err.contains("full.svg"), "{err}");
    let v: Value = serde_json::from_slice(&o.stdout).expect("the JSON is whole");
    assert_eq!(v["modes"][0]["mode"], "mpsafe");
    assert_eq!(v["modes"][0]["accounting"], "ok");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_report_without_runs_has_nothing_to_draw() {
    // What the library says to a front end (the QEMU guest's report, say)
    // that hands it a report with no measured run; no file is left behind.
    let dir = scratch("nothing");
    let target = dir.join("empty.svg");
    let file = plot::PlotFile::create(&target).unwrap();
    assert!(target.exists());
    let e = file
        .write(&mpsafe_em_demo::report::Report::default())
        .unwrap_err();
    assert!(matches!(e, plot::PlotError::NothingToDraw), "{e}");
    assert!(e.to_string().contains("nothing to draw"), "{e}");
    assert!(!target.exists(), "the empty file is removed");
    std::fs::remove_dir_all(&dir).unwrap();
}
