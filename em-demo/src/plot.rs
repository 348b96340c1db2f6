//! The demo's figure (`--plot FILE.svg`): one SVG file, drawn from the same
//! [`Report`] that the tables, the JSON and the CSV print, so every number
//! in the picture is one of theirs.
//!
//! Panels, top to bottom:
//!
//! 1. packets per driver-CPU second per mode (bars: the median of the
//!    `--repeat` runs; whisker: their range; dots: each run), and big-lock
//!    acquisitions per second per path per mode;
//! 2. with `--interval`, one row per mode: rx/tx packets per second over
//!    time, and each rx ring's current watermark over time between its low
//!    and high marks (the warm-up shaded, `--switch-every` switches marked);
//! 3. with `--after-up`, the first second after `up`: the summed watermark
//!    and the frames missed since `up`, watermarks reset (solid) against
//!    kept (dashed).
//!
//! Drawn with [`plotters`] (SVG backend only, no system libraries). The
//! file also carries, in its `<metadata>`, each chart's mapping from data to
//! pixels (`<mp:chart>` elements in the `urn:mpsafe:plot` namespace), so a
//! test can read the drawn series back and compare them with the JSON.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{ModeRecord, Report, RunFigures};
use mpsafe_em_sim::Mode;

/// The figure's width in pixels (the height grows with the panels).
pub const WIDTH: u32 = 1200;

const HEADER: u32 = 128;
const ROW_BARS: u32 = 380;
const ROW_SERIES: u32 = 250;
const ROW_AFTER_UP: u32 = 360;
const FONT: &str = "sans-serif";

/// Why the figure was not written.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlotError {
    /// The file name does not end in `.svg`: SVG is the only picture the
    /// demo draws.
    NotSvg {
        /// The name given.
        path: PathBuf,
    },
    /// The report has no measured run, so nothing to draw.
    NothingToDraw,
    /// The file could not be created.
    Create {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file was created but could not be written.
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The drawing library refused a drawing (a bug here, not bad input).
    Draw(String),
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotSvg { path } => write!(
                f,
                "{}: the figure is drawn as SVG only: give a file name ending in .svg",
                path.display()
            ),
            Self::NothingToDraw => write!(f, "nothing to draw: the report has no measured run"),
            Self::Create { path, source } => {
                write!(f, "cannot create {}: {source}", path.display())
            }
            Self::Write { path, source } => write!(f, "cannot write {}: {source}", path.display()),
            Self::Draw(e) => write!(f, "drawing the figure failed: {e}"),
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Create { source, .. } | Self::Write { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Checks that `path` names an SVG file (`.svg`, any case).
///
/// # Errors
///
/// [`PlotError::NotSvg`] otherwise (`-`, `out.png`, a name without
/// extension...).
pub fn check_name(path: &Path) -> Result<(), PlotError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => Ok(()),
        _ => Err(PlotError::NotSvg {
            path: path.to_path_buf(),
        }),
    }
}

/// The figure's file, created before the runs so that a path that cannot
/// be written is reported before minutes of measuring, and written after
/// them. Dropped unwritten (the runs failed), it removes the empty file it
/// created.
#[derive(Debug)]
pub struct PlotFile {
    path: PathBuf,
    file: Option<File>,
}

impl PlotFile {
    /// Creates (or truncates) `path`.
    ///
    /// # Errors
    ///
    /// [`PlotError::NotSvg`] for a name not ending in `.svg`,
    /// [`PlotError::Create`] if the file cannot be created.
    pub fn create(path: &Path) -> Result<Self, PlotError> {
        check_name(path)?;
        let file = File::create(path).map_err(|source| PlotError::Create {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Draws `report` ([`render_svg`]) into the file.
    ///
    /// # Errors
    ///
    /// [`PlotError::NothingToDraw`] or [`PlotError::Draw`] from
    /// [`render_svg`] (the empty file is removed), [`PlotError::Write`] if
    /// writing fails.
    pub fn write(mut self, report: &Report) -> Result<(), PlotError> {
        let svg = render_svg(report)?;
        let mut file = self.file.take().expect("taken only here");
        file.write_all(svg.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|source| PlotError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

impl Drop for PlotFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            // Never written: leave no empty figure behind.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// One chart's mapping from data to pixels: data `(x0, y0)` is drawn at
/// pixel `(px0, py0)` and `(x1, y1)` at `(px1, py1)`, linear in between.
#[derive(Clone, Debug, PartialEq)]
struct ChartMap {
    id: String,
    x: (f64, f64, i32, i32),
    y: (f64, f64, i32, i32),
}

/// A mode's colour; its "kept watermarks" twin differs in the last bit of
/// blue, which is how the dashed lines are found again after drawing.
fn mode_colour(name: &str) -> RGBColor {
    match name {
        "biglock" => RGBColor(0xD6, 0x27, 0x28),
        "rx-unlocked" => RGBColor(0xE6, 0x7E, 0x0E),
        "mpsafe" => RGBColor(0x1F, 0x77, 0xB4),
        "serialized" => RGBColor(0x2C, 0xA0, 0x2C),
        _ => RGBColor(0x55, 0x55, 0x55),
    }
}

fn kept_colour(name: &str) -> RGBColor {
    let c = mode_colour(name);
    RGBColor(c.0, c.1, c.2 ^ 1)
}

/// The stroke of the rx packets/s lines, as the SVG spells it.
pub const RX_STROKE: &str = "#1B9E77";
/// The stroke of the tx packets/s lines, as the SVG spells it.
pub const TX_STROKE: &str = "#7570B3";

/// The fill of `mode`'s bars and the stroke of its after-up lines, as the
/// SVG spells it; `kept`: its lines with the watermarks kept (dashed).
pub fn mode_stroke(mode: &str, kept: bool) -> String {
    svg_hex(if kept {
        kept_colour(mode)
    } else {
        mode_colour(mode)
    })
}

/// The stroke of rx ring `ring`'s watermark lines, as the SVG spells it.
pub fn ring_stroke(ring: usize) -> String {
    svg_hex(RINGS[ring % RINGS.len()])
}

const RX: RGBColor = RGBColor(0x1B, 0x9E, 0x77);
const TX: RGBColor = RGBColor(0x75, 0x70, 0xB3);
const RINGS: [RGBColor; 4] = [
    RGBColor(0xE7, 0x29, 0x8A),
    RGBColor(0x66, 0xA6, 0x1E),
    RGBColor(0xA6, 0x76, 0x1D),
    RGBColor(0x66, 0x66, 0x66),
];
const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
const FAINT: RGBColor = RGBColor(0x99, 0x99, 0x99);

fn svg_hex(c: RGBColor) -> String {
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// What one mode does, for the header.
fn mode_blurb(name: &str) -> &'static str {
    match name {
        "biglock" => "every path under one big kernel lock",
        "rx-unlocked" => "rx completion under an rx mutex, the rest under the big lock",
        "mpsafe" => "no big lock: serialized start, rx mutex",
        "serialized" => "no big lock: one serializer per interface",
        "switching" => "the mode switched at run time under load, through every mode",
        _ => "",
    }
}

fn config<'a>(report: &'a Report, key: &str) -> Option<&'a str> {
    report
        .config
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A count with a k/M suffix: `1234567.0` is `1.23M`.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// An axis label: `16M`, `1.6M`, `250k`, `0.2`, `1000`: no trailing zeros.
fn tick(v: &f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    let a = v.abs();
    if a >= 1e6 {
        format!("{}M", trim(format!("{:.2}", v / 1e6)))
    } else if a >= 1e4 {
        format!("{}k", trim(format!("{:.1}", v / 1e3)))
    } else {
        trim(format!("{v:.2}"))
    }
}

fn draw_err<E: fmt::Display>(e: E) -> PlotError {
    PlotError::Draw(e.to_string())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Whether the report has a time series, and after-up traces.
fn has_samples(report: &Report) -> bool {
    !report.samples.is_empty()
}

fn has_after_up(report: &Report) -> bool {
    report
        .modes
        .iter()
        .any(|m| m.after_up.iter().any(|a| !a.trace.is_empty()))
}

fn series_modes(report: &Report) -> Vec<&str> {
    report
        .modes
        .iter()
        .map(|m| m.mode.as_str())
        .filter(|m| report.samples.iter().any(|s| s.mode == *m))
        .collect()
}

/// The figure for `report`, as an SVG document.
///
/// # Errors
///
/// [`PlotError::NothingToDraw`] if no mode has a measured run;
/// [`PlotError::Draw`] if the drawing library fails.
pub fn render_svg(report: &Report) -> Result<String, PlotError> {
    if report.modes.iter().all(|m| m.runs.is_empty()) {
        return Err(PlotError::NothingToDraw);
    }
    let rows = series_modes(report);
    let height = HEADER
        + ROW_BARS
        + if has_samples(report) {
            ROW_SERIES * rows.len() as u32
        } else {
            0
        }
        + if has_after_up(report) {
            ROW_AFTER_UP
        } else {
            0
        };
    let mut svg = String::new();
    let mut maps = Vec::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let (header, rest) = root.split_vertically(HEADER);
        draw_header(&header, report)?;
        let (bars, mut rest) = rest.split_vertically(ROW_BARS);
        let (left, right) = bars.split_horizontally(WIDTH / 2);
        draw_efficiency(&left, report, &mut maps)?;
        draw_big_lock(&right, report, &mut maps)?;
        if has_samples(report) {
            for mode in &rows {
                let (row, r) = rest.split_vertically(ROW_SERIES);
                rest = r;
                let (left, right) = row.split_horizontally(WIDTH / 2);
                draw_pps(&left, report, mode, &mut maps)?;
                draw_cwm(&right, report, mode, &mut maps)?;
            }
        }
        if has_after_up(report) {
            let (row, _) = rest.split_vertically(ROW_AFTER_UP);
            draw_after_up(&row, report, &mut maps)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(finish(svg, report, &maps))
}

/// Dashes the kept-watermark lines and adds the charts' mappings.
fn finish(svg: String, report: &Report, maps: &[ChartMap]) -> String {
    let dashed: Vec<String> = report
        .modes
        .iter()
        .map(|m| format!("stroke=\"{}\"", svg_hex(kept_colour(&m.mode))))
        .collect();
    let mut out = String::with_capacity(svg.len() + 4096);
    for line in svg.lines() {
        if line.starts_with("<polyline") && dashed.iter().any(|d| line.contains(d.as_str())) {
            out.push_str("<polyline stroke-dasharray=\"7 4\"");
            out.push_str(&line["<polyline".len()..]);
        } else if line == "</svg>" {
            out.push_str("<metadata>\n<mp:charts xmlns:mp=\"urn:mpsafe:plot\">\n");
            for m in maps {
                out.push_str(&format!(
                    "<mp:chart id=\"{}\" x0=\"{}\" x1=\"{}\" px0=\"{}\" px1=\"{}\" y0=\"{}\" y1=\"{}\" py0=\"{}\" py1=\"{}\"/>\n",
                    m.id, m.x.0, m.x.1, m.x.2, m.x.3, m.y.0, m.y.1, m.y.2, m.y.3
                ));
            }
            out.push_str("</mp:charts>\n</metadata>\n</svg>");
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

fn text_style(size: u32, colour: RGBColor) -> TextStyle<'static> {
    TextStyle {
        color: colour.to_backend_color(),
        ..TextStyle::from((FONT, size).into_font())
    }
}

fn draw_header(area: &Area<'_>, report: &Report) -> Result<(), PlotError> {
    // Another front end (the QEMU guest test) names its own setting with
    // `title` and whatever `config` pairs it has.
    let title = config(report, "title").unwrap_or(
        "mpsafe-em: the reference em(4) driver on a simulated 8254x NIC, one colour per locking mode",
    );
    area.draw_text(
        title,
        &TextStyle::from((FONT, 24).into_font().style(FontStyle::Bold))
            .color(&INK)
            .pos(Pos::new(HPos::Left, VPos::Top)),
        (20, 12),
    )
    .map_err(draw_err)?;
    let c = |k: &str| config(report, k).unwrap_or("?").to_string();
    let runs = report.modes.iter().map(|m| m.runs.len()).max().unwrap_or(0);
    let line = if config(report, "frame_size").is_some() {
        format!(
            "{} queue(s), {}-byte frames, rx rate {} and tx {} pkt/s per queue; {} run(s) of {} s per mode; tx bundle {}, {} start; watermarks at up: {}",
            c("queues"),
            c("frame_size"),
            c("rate"),
            c("tx_pps_per_queue"),
            runs,
            c("seconds"),
            c("tx_bundle"),
            c("tx_start"),
            match config(report, "keep_watermarks") {
                Some("true") => "kept",
                Some("both") => "reset and kept",
                _ => "reset",
            }
        )
    } else {
        report
            .config
            .iter()
            .filter(|(k, _)| k != "title")
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let small = text_style(15, INK).pos(Pos::new(HPos::Left, VPos::Top));
    area.draw_text(&line, &small, (20, 46)).map_err(draw_err)?;
    for (i, m) in report.modes.iter().enumerate() {
        let y = 72 + (i as i32 / 2) * 22;
        let x = if i % 2 == 0 {
            20
        } else {
            20 + WIDTH as i32 / 2
        };
        area.draw(&Rectangle::new(
            [(x, y + 2), (x + 14, y + 14)],
            mode_colour(&m.mode).filled(),
        ))
        .map_err(draw_err)?;
        area.draw_text(
            &format!("{}: {}", m.mode, mode_blurb(&m.mode)),
            &small,
            (x + 20, y),
        )
        .map_err(draw_err)?;
    }
    Ok(())
}

/// Shared chart frame: caption, margins, label areas.
macro_rules! chart {
    ($area:expr, $caption:expr, $x:expr, $y:expr) => {
        ChartBuilder::on($area)
            .caption($caption, (FONT, 17))
            .margin(12)
            .margin_right(24)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d($x, $y)
            .map_err(draw_err)?
    };
}

fn map_of<DB: DrawingBackend>(
    id: String,
    chart: &ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    x: (f64, f64),
    y: (f64, f64),
) -> ChartMap {
    let (px0, py0) = chart.backend_coord(&(x.0, y.0));
    let (px1, py1) = chart.backend_coord(&(x.1, y.1));
    ChartMap {
        id,
        x: (x.0, x.1, px0, px1),
        y: (y.0, y.1, py0, py1),
    }
}

fn draw_efficiency(
    area: &Area<'_>,
    report: &Report,
    maps: &mut Vec<ChartMap>,
) -> Result<(), PlotError> {
    let n = report.modes.len();
    let eff: Vec<Vec<f64>> = report
        .modes
        .iter()
        .map(|m| {
            m.runs
                .iter()
                .filter_map(RunFigures::packets_per_driver_cpu_s)
                .collect()
        })
        .collect();
    let top = eff.iter().flatten().copied().fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.22 } else { 1.0 };
    let x = (0.0, n as f64);
    let mut chart = chart!(
        area,
        "Packets per second of driver CPU (higher: cheaper per packet)",
        x.0..x.1,
        0.0..y_max
    );
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(FAINT.mix(0.25))
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&tick)
        .y_desc("packets / driver-CPU second")
        .x_desc("bar: median of the runs; whisker: lowest to highest run; dots: each run; (Nx): N times biglock")
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(draw_err)?;
    maps.push(map_of("efficiency".into(), &chart, x, (0.0, y_max)));
    let base = report
        .mode("biglock")
        .and_then(|b| b.summary(RunFigures::packets_per_driver_cpu_s))
        .map(|s| s.median);
    for (i, m) in report.modes.iter().enumerate() {
        let colour = mode_colour(&m.mode);
        let xi = i as f64;
        chart
            .draw_series(std::iter::once(Text::new(
                m.mode.clone(),
                (xi + 0.5, -y_max * 0.015),
                text_style(15, INK).pos(Pos::new(HPos::Center, VPos::Top)),
            )))
            .map_err(draw_err)?;
        let Some(s) = m.summary(RunFigures::packets_per_driver_cpu_s) else {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no CPU clock",
                    (xi + 0.5, y_max * 0.05),
                    text_style(13, FAINT).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(draw_err)?;
            continue;
        };
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(xi + 0.18, 0.0), (xi + 0.82, s.median)],
                colour.mix(0.85).filled(),
            )))
            .map_err(draw_err)?;
        if s.n > 1 {
            let w = INK.stroke_width(2);
            chart
                .draw_series([
                    PathElement::new(vec![(xi + 0.5, s.min), (xi + 0.5, s.max)], w),
                    PathElement::new(vec![(xi + 0.42, s.min), (xi + 0.58, s.min)], w),
                    PathElement::new(vec![(xi + 0.42, s.max), (xi + 0.58, s.max)], w),
                ])
                .map_err(draw_err)?;
            chart
                .draw_series(
                    eff[i]
                        .iter()
                        .map(|&v| Circle::new((xi + 0.5, v), 3, INK.mix(0.6).filled())),
                )
                .map_err(draw_err)?;
        }
        let ratio = match base {
            Some(b) if b > 0.0 && m.mode != "biglock" => format!(" ({:.2}x)", s.median / b),
            _ => String::new(),
        };
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{}{ratio}", short(s.median)),
                (xi + 0.5, s.max),
                text_style(14, INK).pos(Pos::new(HPos::Center, VPos::Bottom)),
            )))
            .map_err(draw_err)?;
    }
    Ok(())
}

fn draw_big_lock(
    area: &Area<'_>,
    report: &Report,
    maps: &mut Vec<ChartMap>,
) -> Result<(), PlotError> {
    let per_mode: Vec<Vec<(String, f64)>> = report
        .modes
        .iter()
        .map(ModeRecord::big_lock_per_s)
        .collect();
    let paths: Vec<String> = per_mode
        .iter()
        .find(|p| !p.is_empty())
        .map(|p| p.iter().map(|(n, _)| n.clone()).collect())
        .unwrap_or_default();
    let np = paths.len().max(1);
    let nm = report.modes.len().max(1);
    let top = per_mode
        .iter()
        .flatten()
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.18 } else { 1.0 };
    let x = (0.0, np as f64);
    let mut chart = chart!(
        area,
        "Big-lock acquisitions per second, by code path",
        x.0..x.1,
        0.0..y_max
    );
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(FAINT.mix(0.25))
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&tick)
        .y_desc("acquisitions / s (median)")
        .x_desc("one bar per mode in each group; 0: the path never takes the big lock")
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(draw_err)?;
    maps.push(map_of("big-lock".into(), &chart, x, (0.0, y_max)));
    let w = 0.8 / nm as f64;
    for (p, name) in paths.iter().enumerate() {
        let xp = p as f64;
        chart
            .draw_series(std::iter::once(Text::new(
                name.clone(),
                (xp + 0.5, -y_max * 0.015),
                text_style(15, INK).pos(Pos::new(HPos::Center, VPos::Top)),
            )))
            .map_err(draw_err)?;
        for (i, m) in report.modes.iter().enumerate() {
            let v = per_mode[i].get(p).map_or(0.0, |(_, v)| *v);
            let x0 = xp + 0.1 + i as f64 * w;
            let colour = mode_colour(&m.mode);
            if v > 0.0 {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(x0, 0.0), (x0 + w * 0.9, v)],
                        colour.mix(0.85).filled(),
                    )))
                    .map_err(draw_err)?;
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    if v > 0.0 { short(v) } else { "0".into() },
                    (x0 + w * 0.45, v),
                    text_style(11, colour).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))
                .map_err(draw_err)?;
        }
    }
    Ok(())
}

/// Seconds from `up` at which the measurement starts.
fn warmup_s(report: &Report) -> Option<f64> {
    config(report, "warmup_s").and_then(|v| v.parse().ok())
}

/// Shades the warm-up and marks the mode switches on a time chart.
fn time_marks<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>,
    report: &Report,
    mode: &str,
    t_max: f64,
    y_max: f64,
) -> Result<(), PlotError> {
    if let Some(w) = warmup_s(report).filter(|w| *w > 0.0) {
        chart
            .draw_series([Rectangle::new(
                [(0.0, 0.0), (w.min(t_max), y_max)],
                FAINT.mix(0.15).filled(),
            )])
            .map_err(draw_err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                "warm-up",
                (w.min(t_max) / 2.0, y_max),
                text_style(12, FAINT).pos(Pos::new(HPos::Center, VPos::Top)),
            )))
            .map_err(draw_err)?;
    }
    let every = config(report, "switch_every").and_then(|v| v.parse::<f64>().ok());
    if let Some(every) = every.filter(|e| *e > 0.0) {
        let n = (t_max / every).floor() as usize;
        let start = Mode::ALL.iter().position(|m| m.name() == mode).unwrap_or(0);
        for k in 1..=n {
            let t = k as f64 * every;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(t, 0.0), (t, y_max)],
                    INK.mix(0.45).stroke_width(1),
                )))
                .map_err(draw_err)?;
            if n <= 12 {
                let next = Mode::ALL[(start + k) % Mode::ALL.len()].name();
                chart
                    .draw_series(std::iter::once(Text::new(
                        format!("-> {next}"),
                        (t, y_max * 0.9),
                        text_style(11, INK).pos(Pos::new(HPos::Left, VPos::Center)),
                    )))
                    .map_err(draw_err)?;
            }
        }
    }
    Ok(())
}

fn t_max(report: &Report, mode: &str) -> f64 {
    report
        .samples
        .iter()
        .filter(|s| s.mode == mode)
        .map(|s| s.t_s)
        .fold(0.0, f64::max)
        .max(0.01)
}

fn runs_of(report: &Report, mode: &str) -> Vec<u32> {
    let mut runs: Vec<u32> = report
        .samples
        .iter()
        .filter(|s| s.mode == mode)
        .map(|s| s.run)
        .collect();
    runs.sort_unstable();
    runs.dedup();
    runs
}

/// Full opacity for the first run, lighter for the others.
fn run_alpha(k: usize) -> f64 {
    if k == 0 { 1.0 } else { 0.45 }
}

fn finite(v: f64) -> f64 {
    if v.is_finite() { v } else { 0.0 }
}

fn draw_pps(
    area: &Area<'_>,
    report: &Report,
    mode: &str,
    maps: &mut Vec<ChartMap>,
) -> Result<(), PlotError> {
    let t_max = t_max(report, mode);
    let top = report
        .samples
        .iter()
        .filter(|s| s.mode == mode)
        .flat_map(|s| [finite(s.rx_pps), finite(s.tx_pps)])
        .fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    let runs = runs_of(report, mode);
    let caption = format!(
        "{mode}: packets per second over time{}",
        if runs.len() > 1 {
            format!(" ({} runs overlaid)", runs.len())
        } else {
            String::new()
        }
    );
    let mut chart = chart!(area, caption, 0.0..t_max, 0.0..y_max);
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(FAINT.mix(0.25))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc("seconds since up")
        .y_desc("packets / s")
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(draw_err)?;
    maps.push(map_of(
        format!("pps/{mode}"),
        &chart,
        (0.0, t_max),
        (0.0, y_max),
    ));
    time_marks(&mut chart, report, mode, t_max, y_max)?;
    for (k, run) in runs.iter().enumerate() {
        let pts = || {
            report
                .samples
                .iter()
                .filter(move |s| s.mode == mode && s.run == *run)
        };
        for (colour, label, f) in [
            (
                RX,
                "rx",
                (|s| finite(s.rx_pps)) as fn(&crate::report::Sample) -> f64,
            ),
            (TX, "tx", |s| finite(s.tx_pps)),
        ] {
            let style = colour.mix(run_alpha(k)).stroke_width(2);
            let series = chart
                .draw_series(LineSeries::new(pts().map(|s| (s.t_s, f(s))), style))
                .map_err(draw_err)?;
            if k == 0 {
                series
                    .label(format!("{label} packets/s"))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.6))
        .border_style(FAINT)
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn draw_cwm(
    area: &Area<'_>,
    report: &Report,
    mode: &str,
    maps: &mut Vec<ChartMap>,
) -> Result<(), PlotError> {
    let t_max = t_max(report, mode);
    let rings = report
        .mode(mode)
        .map(|m| m.buffers.rings.clone())
        .unwrap_or_default();
    let top = report
        .samples
        .iter()
        .filter(|s| s.mode == mode)
        .flat_map(|s| s.cwm.iter().map(|c| f64::from(*c)))
        .chain(rings.iter().map(|r| f64::from(r.hwm)))
        .fold(0.0, f64::max);
    let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
    let mut chart = chart!(
        area,
        format!("{mode}: rx ring watermark (descriptors kept posted)"),
        0.0..t_max,
        0.0..y_max
    );
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(FAINT.mix(0.25))
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .x_desc("seconds since up")
        .y_desc("current watermark (cwm)")
        .axis_desc_style((FONT, 14))
        .draw()
        .map_err(draw_err)?;
    maps.push(map_of(
        format!("cwm/{mode}"),
        &chart,
        (0.0, t_max),
        (0.0, y_max),
    ));
    time_marks(&mut chart, report, mode, t_max, y_max)?;
    for r in &rings {
        for (v, what) in [(r.lwm, "lwm"), (r.hwm, "hwm")] {
            let v = f64::from(v);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, v), (t_max, v)],
                    FAINT.stroke_width(1),
                )))
                .map_err(draw_err)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{} {what} {}", r.name.as_str(), v),
                    (0.0, v),
                    text_style(11, FAINT).pos(Pos::new(HPos::Left, VPos::Bottom)),
                )))
                .map_err(draw_err)?;
        }
    }
    let n_rings = report
        .samples
        .iter()
        .filter(|s| s.mode == mode)
        .map(|s| s.cwm.len())
        .max()
        .unwrap_or(0);
    for (k, run) in runs_of(report, mode).iter().enumerate() {
        for ring in 0..n_rings {
            let colour = RINGS[ring % RINGS.len()];
            let series = chart
                .draw_series(LineSeries::new(
                    report
                        .samples
                        .iter()
                        .filter(|s| s.mode == mode && s.run == *run)
                        .filter_map(|s| Some((s.t_s, f64::from(*s.cwm.get(ring)?)))),
                    colour.mix(run_alpha(k)).stroke_width(2),
                ))
                .map_err(draw_err)?;
            if k == 0 {
                let name = rings
                    .get(ring)
                    .map_or(format!("ring {ring}"), |r| r.name.as_str().to_string());
                series.label(format!("{name} cwm")).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.6))
        .border_style(FAINT)
        .label_font((FONT, 13))
        .draw()
        .map_err(draw_err)?;
    Ok(())
}

fn draw_after_up(
    area: &Area<'_>,
    report: &Report,
    maps: &mut Vec<ChartMap>,
) -> Result<(), PlotError> {
    let (note, charts) = area.split_vertically(46);
    let kept_any = report
        .modes
        .iter()
        .any(|m| m.after_up.iter().any(|a| a.kept));
    let reset_any = report
        .modes
        .iter()
        .any(|m| m.after_up.iter().any(|a| !a.kept));
    let small = text_style(14, INK).pos(Pos::new(HPos::Left, VPos::Top));
    note.draw_text(
        "The first second after down/up under load (seed 000): at up each rx ring's watermark restarts at its low mark (reset, solid)",
        &small,
        (20, 4),
    )
    .map_err(draw_err)?;
    note.draw_text(
        &format!(
            "or keeps its value from before down (--keep-watermarks, dashed). Few posted descriptors: the device misses frames.{}",
            match (reset_any, kept_any) {
                (true, false) => " This run: reset only (--watermarks both draws both).",
                (false, true) => " This run: kept only (--watermarks both draws both).",
                _ => "",
            }
        ),
        &small,
        (20, 24),
    )
    .map_err(draw_err)?;
    let (left, right) = charts.split_horizontally(WIDTH / 2);
    let traces: Vec<(&str, bool, usize, &crate::report::AfterUp)> = report
        .modes
        .iter()
        .flat_map(|m| {
            let mut seen = [0usize; 2];
            m.after_up.iter().map(move |a| {
                let k = seen[usize::from(a.kept)];
                seen[usize::from(a.kept)] += 1;
                (m.mode.as_str(), a.kept, k, a)
            })
        })
        .filter(|(_, _, _, a)| !a.trace.is_empty())
        .collect();
    let ms_max = traces
        .iter()
        .flat_map(|(_, _, _, a)| a.trace.iter().map(|p| p.ms))
        .fold(0.0, f64::max)
        .max(1.0);
    type Field = fn(&crate::report::AfterUpPoint) -> f64;
    let panels: [(&Area<'_>, &str, &str, &str, Field); 2] = [
        (
            &left,
            "after-up/cwm",
            "rx watermark after up (sum over rings)",
            "current watermark",
            |p| f64::from(p.cwm),
        ),
        (
            &right,
            "after-up/missed",
            "frames missed since up (no descriptor posted)",
            "frames missed (cumulative)",
            |p| p.rx_missed as f64,
        ),
    ];
    for (area, id, caption, y_desc, field) in panels {
        let top = traces
            .iter()
            .flat_map(|(_, _, _, a)| a.trace.iter().map(field))
            .chain(
                traces
                    .iter()
                    .filter(|_| id == "after-up/cwm")
                    .map(|(_, _, _, a)| f64::from(a.cwm_before)),
            )
            .fold(0.0, f64::max);
        let y_max = if top > 0.0 { top * 1.15 } else { 1.0 };
        let mut chart = chart!(area, caption, 0.0..ms_max, 0.0..y_max);
        chart
            .configure_mesh()
            .light_line_style(TRANSPARENT)
            .bold_line_style(FAINT.mix(0.25))
            .x_label_formatter(&tick)
            .y_label_formatter(&tick)
            .x_desc("milliseconds since up")
            .y_desc(y_desc)
            .axis_desc_style((FONT, 14))
            .draw()
            .map_err(draw_err)?;
        maps.push(map_of(id.into(), &chart, (0.0, ms_max), (0.0, y_max)));
        for (mode, kept, k, a) in &traces {
            let colour = if *kept {
                kept_colour(mode)
            } else {
                mode_colour(mode)
            };
            let series = chart
                .draw_series(LineSeries::new(
                    a.trace.iter().map(|p| (p.ms, field(p))),
                    colour.mix(run_alpha(*k)).stroke_width(2),
                ))
                .map_err(draw_err)?;
            if *k == 0 {
                series
                    .label(format!("{mode}, {}", if *kept { "kept" } else { "reset" }))
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                    });
            }
        }
        chart
            .configure_series_labels()
            .position(if id == "after-up/cwm" {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperLeft
            })
            .background_style(WHITE.mix(0.6))
            .border_style(FAINT)
            .label_font((FONT, 13))
            .draw()
            .map_err(draw_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert!(check_name(Path::new("a/b.svg")).is_ok());
        assert!(check_name(Path::new("B.SVG")).is_ok());
        for bad in ["-", "out.png", "svg", "out.svg.txt", ""] {
            let e = check_name(Path::new(bad)).unwrap_err();
            assert!(matches!(e, PlotError::NotSvg { .. }), "{bad:?}");
            assert!(e.to_string().contains(".svg"), "{e}");
        }
        assert_eq!(short(1_234_567.0), "1.23M");
        assert_eq!(short(12_345.0), "12k");
        assert_eq!(short(1_234.0), "1.2k");
        assert_eq!(short(12.0), "12");
        assert_eq!(tick(&16e6), "16M");
        assert_eq!(tick(&1.6e6), "1.6M");
        assert_eq!(tick(&250e3), "250k");
        assert_eq!(tick(&1000.0), "1000");
        assert_eq!(tick(&0.2), "0.2");
        assert_eq!(tick(&0.0), "0");
        assert_ne!(kept_colour("mpsafe"), mode_colour("mpsafe"));
        assert_eq!(svg_hex(RX), RX_STROKE);
        assert_eq!(svg_hex(TX), TX_STROKE);
    }

    #[test]
    fn an_empty_report_has_nothing_to_draw() {
        let e = render_svg(&Report::default()).unwrap_err();
        assert!(matches!(e, PlotError::NothingToDraw), "{e}");
    }
}
