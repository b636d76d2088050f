//! The figure renderer: a declarative [`FigureSpec`] plus data rows become an
//! SVG or PNG figure in the paper's plotting style (seaborn "whitegrid"
//! look: light grid, titles above panels, dashed reference levels, solid
//! imitation-model lines with large markers and translucent bands).
//!
//! Rendering is pure and deterministic: the same spec and rows give
//! byte-identical SVG and PNG on every run and machine. Text uses only DejaVu
//! Sans, embedded from the `dejavu` crate and registered with plotters under
//! the family name `sans-serif`, so no system font is ever consulted. PNGs are
//! encoded by a small in-crate encoder (see `figure/png.rs`).
//!
//! [`describe`] summarises what would be drawn (titles, axis labels, tick
//! labels, series and their point counts) for golden tests and
//! `repro verify`.

mod canvas;
mod draw;
mod font;
mod geom;
mod png;
mod prepare;
mod scale;

use prepare::{PPanel, prepare};
use scale::round6;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One data row: field name to JSON value.
pub type Row = serde_json::Map<String, Value>;

/// A figure spec, deserialized from the `report.figure` op's params (JSON
/// from YAML).
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    /// Figure title, drawn bold above all panels.
    #[serde(default)]
    pub title: Option<String>,
    /// Width in pixels (default 1500).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Height in pixels (default 450).
    #[serde(default = "default_height")]
    pub height: u32,
    /// Panels per row; default: all panels in one row.
    #[serde(default)]
    pub columns: Option<u32>,
    /// The panels, laid out left to right, then top to bottom.
    pub panels: Vec<Panel>,
    /// Caption; not drawn, kept for the HTML report.
    #[serde(default)]
    pub caption: Option<String>,
}

fn default_width() -> u32 {
    1500
}

fn default_height() -> u32 {
    450
}

fn default_true() -> bool {
    true
}

/// What a panel draws.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Lines through each series' points (sorted by x), markers by style.
    #[default]
    Line,
    /// Markers only.
    Point,
    /// Grouped bars: one bar per series within each x category.
    Bar,
    /// Bars stacked by series within each x category.
    StackedBar,
}

/// One panel (axes) of a figure.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Panel {
    /// Title drawn above the panel.
    #[serde(default)]
    pub title: Option<String>,
    /// `line` (default), `point`, `bar` or `stacked_bar`.
    #[serde(default)]
    pub kind: Kind,
    /// The x axis: row field and presentation.
    pub x: Axis,
    /// The y axis: row field and presentation.
    pub y: Axis,
    /// Row field whose value groups rows into series (one line and colour
    /// per distinct value, in first-seen order); `None` means one series.
    #[serde(default)]
    pub series: Option<String>,
    /// Keep only rows whose fields equal all of these (numbers compare by
    /// value, so `1` matches `1.0`).
    #[serde(default)]
    pub filter: BTreeMap<String, Value>,
    /// Row field holding a ± half-width: a translucent band around line
    /// series (error bars on bar kinds).
    #[serde(default)]
    pub band: Option<String>,
    /// Horizontal reference lines (e.g. ChatGPT, the base model).
    #[serde(default)]
    pub ref_lines: Vec<RefLine>,
    /// Legend position: `best` (default: the corner that hides the least
    /// data), `upper_right`, `upper_left`, `lower_right`, `lower_left`,
    /// `upper_center`, `lower_center` or `none`.
    #[serde(default)]
    pub legend: Option<String>,
    /// Per-series (or reference-line label) style overrides.
    #[serde(default)]
    pub styles: BTreeMap<String, SeriesStyle>,
}

/// An axis: which row field it shows and how.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct Axis {
    /// Row field holding the values.
    pub field: String,
    /// Axis label; default: the field name.
    #[serde(default)]
    pub label: Option<String>,
    /// Logarithmic (base 10) axis; values ≤ 0 are skipped.
    #[serde(default)]
    pub log: bool,
    /// Lower end; default: data range minus 5% padding.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper end; default: data range plus 5% padding.
    #[serde(default)]
    pub max: Option<f64>,
    /// Tick positions; default: automatic "nice" ticks.
    #[serde(default)]
    pub ticks: Option<Vec<f64>>,
}

/// A horizontal reference line, listed in the legend under its label.
#[derive(Deserialize, Serialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct RefLine {
    /// Height in y data units.
    pub y: f64,
    /// Legend label (also picks the default colour, as for series names).
    pub label: String,
    /// Colour `#RRGGBB`; default by label (ChatGPT green, LLaMA black, ...).
    #[serde(default)]
    pub color: Option<String>,
    /// Dashed (default) or solid.
    #[serde(default = "default_true")]
    pub dashed: bool,
}

/// Style overrides for one series.
#[derive(Deserialize, Serialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct SeriesStyle {
    /// Colour `#RRGGBB`.
    #[serde(default)]
    pub color: Option<String>,
    /// Dashed line.
    #[serde(default)]
    pub dashed: Option<bool>,
    /// Circle markers at the data points.
    #[serde(default)]
    pub marker: Option<bool>,
}

/// Why a figure could not be rendered. Messages name the panel and field.
#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    /// A figure-level setting is invalid.
    #[error("figure: `{field}`: {message}")]
    Figure {
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A panel setting is invalid.
    #[error("{panel}: `{field}`: {message}")]
    Panel {
        /// The panel, e.g. `panel 2 ("MMLU 5-Shot")`.
        panel: String,
        /// The offending field, e.g. `y.min`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A row holds a value of the wrong type for a panel.
    #[error("{panel}: row {row}: field `{field}`: {message}")]
    Value {
        /// The panel.
        panel: String,
        /// Index of the row in the rows given.
        row: usize,
        /// The row field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The embedded font could not be registered.
    #[error("font: {0}")]
    Font(String),
    /// The drawing backend failed.
    #[error("drawing failed: {0}")]
    Draw(String),
}

/// Renders the whole figure as SVG; rows for every panel come from `rows`
/// (each panel applies its filter).
pub fn render_svg(spec: &FigureSpec, rows: &[Row]) -> Result<String, FigureError> {
    let fig = prepare(spec, rows)?;
    canvas::svg(&fig)
}

/// Renders the whole figure as a PNG file (8-bit RGB, `width` × `height`).
pub fn render_png(spec: &FigureSpec, rows: &[Row]) -> Result<Vec<u8>, FigureError> {
    let fig = prepare(spec, rows)?;
    canvas::png(&fig)
}

/// Summary used by golden tests and by `repro verify`: the figure's size and
/// grid, and per panel the title, kind, axis labels, ranges, tick labels,
/// reference lines, series (name, style, point count) and skipped rows.
pub fn describe(spec: &FigureSpec, rows: &[Row]) -> Result<Value, FigureError> {
    let fig = prepare(spec, rows)?;
    let panels: Vec<Value> = fig.panels.iter().map(describe_panel).collect();
    Ok(json!({
        "title": fig.title,
        "width": fig.width,
        "height": fig.height,
        "columns": fig.columns,
        "rows": fig.grid_rows,
        "panels": panels,
    }))
}

fn describe_panel(p: &PPanel) -> Value {
    let series: Vec<Value> = p
        .series
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "points": s.points.len(),
                "color": s.style.color.hex(),
                "dashed": s.style.dashed,
                "marker": s.style.marker,
            })
        })
        .collect();
    let refs: Vec<Value> = p
        .refs
        .iter()
        .map(|r| json!({"label": r.label, "y": round6(r.y), "color": r.style.color.hex(), "dashed": r.style.dashed}))
        .collect();
    let mut v = json!({
        "title": p.title,
        "kind": p.kind,
        "x_label": p.x_label,
        "y_label": p.y_label,
        "x_log": p.x.log,
        "y_log": p.y.log,
        "x_range": [round6(p.x.lo), round6(p.x.hi)],
        "y_range": [round6(p.y.lo), round6(p.y.hi)],
        "x_ticks": p.x.labels,
        "y_ticks": p.y.labels,
        "series": series,
        "ref_lines": refs,
        "legend": p.legend.name(),
        "skipped_rows": p.skipped,
        "empty": p.is_empty(),
    });
    if matches!(p.kind, Kind::Bar | Kind::StackedBar) {
        v["categories"] = json!(p.categories);
    }
    v
}
