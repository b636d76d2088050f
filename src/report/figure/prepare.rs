//! Preparation: a spec plus rows become what to draw (series with resolved
//! styles, reference lines, scales with ticks). Shared by the renderers and
//! `describe`, so the two never disagree.

use super::scale::{self, Scale, fmt_num};
use super::{Axis, FigureError, FigureSpec, Kind, Panel, RefLine, Row, SeriesStyle};
use serde_json::Value;
use std::collections::BTreeMap;

/// An RGB colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    pub(super) fn hex(self) -> String {
        format!("#{:02X}{:02X}{:02X}", self.0, self.1, self.2)
    }

    fn parse(s: &str) -> Option<Rgb> {
        let h = s.strip_prefix('#')?;
        if h.len() != 6 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&h[i..i + 2], 16).ok();
        Some(Rgb(byte(0)?, byte(2)?, byte(4)?))
    }
}

const FORESTGREEN: Rgb = Rgb(0x22, 0x8B, 0x22);
const ROYALBLUE: Rgb = Rgb(0x41, 0x69, 0xE1);
const BLACK: Rgb = Rgb(0, 0, 0);
/// Colours for series without a paper-defined look, in first-seen order
/// (colours already taken in the panel are skipped).
const PALETTE: [Rgb; 10] = [
    ROYALBLUE,
    Rgb(0xFF, 0x7F, 0x0E),
    Rgb(0xD6, 0x27, 0x28),
    Rgb(0x94, 0x67, 0xBD),
    Rgb(0x8C, 0x56, 0x4B),
    Rgb(0xE3, 0x77, 0xC2),
    Rgb(0x17, 0xBE, 0xCF),
    Rgb(0xBC, 0xBD, 0x22),
    Rgb(0x7F, 0x7F, 0x7F),
    Rgb(0x2C, 0xA0, 0x2C),
];

/// A resolved series or reference-line style.
#[derive(Clone, Copy, Debug)]
pub(super) struct Style {
    pub color: Rgb,
    pub dashed: bool,
    pub marker: bool,
}

/// The paper's look for a name, if it has one.
fn paper_style(name: &str) -> Option<Style> {
    if name.starts_with("ChatGPT") {
        Some(Style {
            color: FORESTGREEN,
            dashed: true,
            marker: false,
        })
    } else if name.starts_with("LLaMA") {
        Some(Style {
            color: BLACK,
            dashed: true,
            marker: false,
        })
    } else if name.starts_with("Imitation Model") {
        Some(Style {
            color: ROYALBLUE,
            dashed: false,
            marker: true,
        })
    } else {
        None
    }
}

/// Where the legend goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LegendPos {
    Best,
    UpperRight,
    UpperLeft,
    LowerRight,
    LowerLeft,
    UpperCenter,
    LowerCenter,
    None,
}

impl LegendPos {
    const ALL: [(&'static str, LegendPos); 8] = [
        ("best", LegendPos::Best),
        ("upper_right", LegendPos::UpperRight),
        ("upper_left", LegendPos::UpperLeft),
        ("lower_right", LegendPos::LowerRight),
        ("lower_left", LegendPos::LowerLeft),
        ("upper_center", LegendPos::UpperCenter),
        ("lower_center", LegendPos::LowerCenter),
        ("none", LegendPos::None),
    ];

    pub(super) fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("best", |(n, _)| n)
    }
}

/// One data point; for bar kinds `x` is the category index.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pt {
    pub x: f64,
    pub y: f64,
    pub band: Option<f64>,
}

/// A series ready to draw.
#[derive(Clone, Debug)]
pub(super) struct PSeries {
    pub name: String,
    pub style: Style,
    pub points: Vec<Pt>,
}

/// A reference line ready to draw.
#[derive(Clone, Debug)]
pub(super) struct PRef {
    pub y: f64,
    pub label: String,
    pub style: Style,
}

/// A panel ready to draw.
#[derive(Clone, Debug)]
pub(super) struct PPanel {
    pub title: Option<String>,
    pub kind: Kind,
    pub x_label: String,
    pub y_label: String,
    pub x: Scale,
    pub y: Scale,
    pub categories: Vec<String>,
    pub series: Vec<PSeries>,
    pub refs: Vec<PRef>,
    pub legend: LegendPos,
    /// A single unnamed series and no reference lines: no legend needed.
    pub legend_needed: bool,
    pub skipped: usize,
}

impl PPanel {
    /// No series has a point to draw.
    pub fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }
}

/// A figure ready to draw.
#[derive(Clone, Debug)]
pub(super) struct Prepared {
    pub title: Option<String>,
    pub width: u32,
    pub height: u32,
    pub columns: u32,
    pub grid_rows: u32,
    pub panels: Vec<PPanel>,
}

/// Largest accepted side, and pixel count, of a figure.
const MAX_SIDE: u32 = 16_384;
const MAX_PIXELS: u64 = 40_000_000;

pub(super) fn prepare(spec: &FigureSpec, rows: &[Row]) -> Result<Prepared, FigureError> {
    let fig_err = |field: &str, message: String| FigureError::Figure {
        field: field.into(),
        message,
    };
    for (name, v) in [("width", spec.width), ("height", spec.height)] {
        if !(16..=MAX_SIDE).contains(&v) {
            return Err(fig_err(name, format!("{v} px is outside 16..={MAX_SIDE}")));
        }
    }
    if spec.width as u64 * spec.height as u64 > MAX_PIXELS {
        return Err(fig_err(
            "width",
            format!(
                "{}x{} px exceeds {MAX_PIXELS} pixels",
                spec.width, spec.height
            ),
        ));
    }
    if spec.panels.is_empty() {
        return Err(fig_err(
            "panels",
            "is empty: a figure needs at least one panel".into(),
        ));
    }
    let n = spec.panels.len() as u32;
    let columns = match spec.columns {
        Some(0) => return Err(fig_err("columns", "must be at least 1".into())),
        Some(c) => c.min(n),
        None => n,
    };
    let grid_rows = n.div_ceil(columns);
    // Tick density follows the panel size, so `describe` needs no fonts.
    let cell_w = spec.width as f64 / columns as f64;
    let cell_h = spec.height as f64 / grid_rows as f64;
    let x_target = ((cell_w / 100.0).round() as usize).clamp(3, 8);
    let y_target = ((cell_h / 70.0).round() as usize).clamp(3, 8);
    let panels = spec
        .panels
        .iter()
        .enumerate()
        .map(|(i, p)| prepare_panel(i, p, rows, x_target, y_target))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        title: spec.title.clone(),
        width: spec.width,
        height: spec.height,
        columns,
        grid_rows,
        panels,
    })
}

/// `panel 2 ("MMLU 5-Shot")`, 1-based, for error messages.
fn panel_name(i: usize, p: &Panel) -> String {
    match &p.title {
        Some(t) => format!("panel {} ({t:?})", i + 1),
        None => format!("panel {}", i + 1),
    }
}

/// Equality for filters: numbers by value, everything else structurally.
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// A JSON value as a series or category name.
fn value_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), fmt_num),
        Value::Bool(b) => b.to_string(),
        Value::Null => "(none)".to_string(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn prepare_panel(
    i: usize,
    p: &Panel,
    rows: &[Row],
    x_target: usize,
    y_target: usize,
) -> Result<PPanel, FigureError> {
    let pname = panel_name(i, p);
    let perr = |field: &str, message: String| FigureError::Panel {
        panel: pname.clone(),
        field: field.into(),
        message,
    };
    let bars = matches!(p.kind, Kind::Bar | Kind::StackedBar);

    // --- validate the spec
    let legend = match &p.legend {
        None => LegendPos::Best,
        Some(s) => LegendPos::ALL
            .iter()
            .find(|(n, _)| n == s)
            .map(|(_, l)| *l)
            .ok_or_else(|| {
                let names: Vec<&str> = LegendPos::ALL.iter().map(|(n, _)| *n).collect();
                perr(
                    "legend",
                    format!(
                        "unknown position {s:?}; expected one of {}",
                        names.join(", ")
                    ),
                )
            })?,
    };
    if bars {
        for (set, what) in [
            (p.x.log, "x.log"),
            (p.x.min.is_some(), "x.min"),
            (p.x.max.is_some(), "x.max"),
            (p.x.ticks.is_some(), "x.ticks"),
        ] {
            if set {
                return Err(perr(
                    what,
                    "does not apply to the categorical x axis of a bar panel".into(),
                ));
            }
        }
    }
    for (axis, name) in [(&p.x, "x"), (&p.y, "y")] {
        for (v, bound) in [(axis.min, "min"), (axis.max, "max")] {
            if let Some(v) = v {
                if !v.is_finite() {
                    return Err(perr(
                        &format!("{name}.{bound}"),
                        format!("{v} is not a finite number"),
                    ));
                }
                if axis.log && v <= 0.0 {
                    return Err(perr(
                        &format!("{name}.{bound}"),
                        format!("{v} must be positive on a log axis"),
                    ));
                }
            }
        }
        if let (Some(lo), Some(hi)) = (axis.min, axis.max) {
            if lo >= hi {
                return Err(perr(
                    &format!("{name}.min"),
                    format!("min ({lo}) must be less than max ({hi})"),
                ));
            }
        }
    }
    let mut style_over: BTreeMap<&str, (Option<Rgb>, &SeriesStyle)> = BTreeMap::new();
    for (name, st) in &p.styles {
        let color = match &st.color {
            None => None,
            Some(c) => Some(Rgb::parse(c).ok_or_else(|| {
                perr(
                    &format!("styles.{name}.color"),
                    format!("{c:?} is not a colour of the form #RRGGBB"),
                )
            })?),
        };
        style_over.insert(name.as_str(), (color, st));
    }

    // --- rows -> series
    let mut skipped = 0usize;
    let mut names: Vec<String> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut points: Vec<Vec<Pt>> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    let mut cat_index: BTreeMap<String, usize> = BTreeMap::new();
    let unnamed = p.y.label.clone().unwrap_or_else(|| p.y.field.clone());
    let verr = |row: usize, field: &str, message: String| FigureError::Value {
        panel: pname.clone(),
        row,
        field: field.into(),
        message,
    };
    for (ri, row) in rows.iter().enumerate() {
        if !p
            .filter
            .iter()
            .all(|(k, v)| row.get(k).is_some_and(|rv| values_equal(rv, v)))
        {
            continue;
        }
        let y = match row.get(&p.y.field) {
            None | Some(Value::Null) => {
                skipped += 1;
                continue;
            }
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(other) => {
                return Err(verr(
                    ri,
                    &p.y.field,
                    format!("must be a number, found {}", type_name(other)),
                ));
            }
        };
        let xv = match row.get(&p.x.field) {
            None | Some(Value::Null) => {
                skipped += 1;
                continue;
            }
            Some(v) => v,
        };
        let x = if bars {
            match xv {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                    let c = value_name(xv);
                    let next = categories.len();
                    let ci = *cat_index.entry(c.clone()).or_insert(next);
                    if ci == next {
                        categories.push(c);
                    }
                    ci as f64
                }
                other => {
                    return Err(verr(
                        ri,
                        &p.x.field,
                        format!(
                            "must be a category (string or number), found {}",
                            type_name(other)
                        ),
                    ));
                }
            }
        } else {
            match xv {
                Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
                other => {
                    return Err(verr(
                        ri,
                        &p.x.field,
                        format!(
                            "must be a number, found {} (use kind: bar for categories)",
                            type_name(other)
                        ),
                    ));
                }
            }
        };
        let band = match &p.band {
            None => None,
            Some(f) => match row.get(f) {
                None | Some(Value::Null) => None,
                Some(Value::Number(n)) => n.as_f64().filter(|b| b.is_finite()).map(f64::abs),
                Some(other) => {
                    return Err(verr(
                        ri,
                        f,
                        format!("band must be a number, found {}", type_name(other)),
                    ));
                }
            },
        };
        if !x.is_finite() || !y.is_finite() || (p.x.log && x <= 0.0) || (p.y.log && y <= 0.0) {
            skipped += 1;
            continue;
        }
        let name = match &p.series {
            None => unnamed.clone(),
            Some(f) => value_name(row.get(f).unwrap_or(&Value::Null)),
        };
        let next = names.len();
        let si = *index.entry(name.clone()).or_insert(next);
        if si == next {
            names.push(name);
            points.push(Vec::new());
        }
        points[si].push(Pt { x, y, band });
    }
    if p.kind == Kind::Line {
        for pts in &mut points {
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        }
    }

    // --- styles: paper look and overrides first, palette for the rest
    let refs_in: Vec<&RefLine> = p
        .ref_lines
        .iter()
        .filter(|r| r.y.is_finite() && (!p.y.log || r.y > 0.0))
        .collect();
    let mut used: Vec<Rgb> = Vec::new();
    let fixed = |name: &str, explicit: Option<Rgb>| -> Option<Rgb> {
        explicit
            .or_else(|| style_over.get(name).and_then(|(c, _)| *c))
            .or_else(|| paper_style(name).map(|s| s.color))
    };
    for name in &names {
        used.extend(fixed(name, None));
    }
    for r in &refs_in {
        let explicit = match &r.color {
            None => None,
            Some(c) => Some(Rgb::parse(c).ok_or_else(|| {
                perr(
                    &format!("ref_lines.{}.color", r.label),
                    format!("{c:?} is not a colour of the form #RRGGBB"),
                )
            })?),
        };
        used.extend(fixed(&r.label, explicit));
    }
    let mut next_palette = 0usize;
    let mut pick = |used: &mut Vec<Rgb>| -> Rgb {
        let free = (0..PALETTE.len())
            .map(|k| PALETTE[(next_palette + k) % PALETTE.len()])
            .position(|c| !used.contains(&c));
        let c = match free {
            Some(k) => {
                let c = PALETTE[(next_palette + k) % PALETTE.len()];
                next_palette += k + 1;
                c
            }
            None => {
                let c = PALETTE[next_palette % PALETTE.len()];
                next_palette += 1;
                c
            }
        };
        used.push(c);
        c
    };
    let mut series = Vec::with_capacity(names.len());
    for (name, pts) in names.into_iter().zip(points) {
        let base = paper_style(&name);
        let over = style_over.get(name.as_str());
        let color = match fixed(&name, None) {
            Some(c) => c,
            None => pick(&mut used),
        };
        let dashed = over
            .and_then(|(_, s)| s.dashed)
            .or(base.map(|b| b.dashed))
            .unwrap_or(false);
        let marker = p.kind == Kind::Point
            || over
                .and_then(|(_, s)| s.marker)
                .or(base.map(|b| b.marker))
                .unwrap_or(pts.len() <= 25);
        series.push(PSeries {
            name,
            style: Style {
                color,
                dashed,
                marker,
            },
            points: pts,
        });
    }
    let mut refs = Vec::with_capacity(refs_in.len());
    for r in refs_in {
        let explicit = r.color.as_deref().and_then(Rgb::parse);
        let color = match fixed(&r.label, explicit) {
            Some(c) => c,
            None => pick(&mut used),
        };
        refs.push(PRef {
            y: r.y,
            label: r.label.clone(),
            style: Style {
                color,
                dashed: r.dashed,
                marker: false,
            },
        });
    }

    // --- ranges and ticks
    let (x, categories) = if bars {
        let n = categories.len().max(1) as f64;
        let ticks: Vec<f64> = (0..categories.len()).map(|k| k as f64).collect();
        (
            Scale {
                lo: -0.5,
                hi: n - 0.5,
                log: false,
                ticks,
                labels: categories.clone(),
            },
            categories,
        )
    } else {
        let xs: Vec<f64> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|pt| pt.x))
            .collect();
        (
            axis_scale(&p.x, "x", &xs, false, x_target, &perr)?,
            Vec::new(),
        )
    };
    let mut ys: Vec<f64> = refs.iter().map(|r| r.y).collect();
    if p.kind == Kind::StackedBar {
        let mut pos = vec![0.0f64; categories.len()];
        let mut neg = vec![0.0f64; categories.len()];
        for s in &series {
            for pt in &s.points {
                let c = pt.x as usize;
                let acc = if pt.y >= 0.0 {
                    &mut pos[c]
                } else {
                    &mut neg[c]
                };
                *acc += pt.y;
                ys.push(*acc);
            }
        }
    } else {
        for s in &series {
            for pt in &s.points {
                ys.push(pt.y);
                if let Some(b) = pt.band {
                    ys.push(pt.y + b);
                    if !p.y.log || pt.y - b > 0.0 {
                        ys.push(pt.y - b);
                    }
                }
            }
        }
    }
    let y = axis_scale(&p.y, "y", &ys, bars, y_target, &perr)?;

    let legend_needed = !(p.series.is_none() && refs.is_empty() && series.len() <= 1);
    Ok(PPanel {
        title: p.title.clone(),
        kind: p.kind,
        x_label: p.x.label.clone().unwrap_or_else(|| p.x.field.clone()),
        y_label: unnamed,
        x,
        y,
        categories,
        series,
        refs,
        legend,
        legend_needed,
        skipped,
    })
}

/// Range and ticks of a numeric axis from its data, honouring the spec's
/// bounds and ticks. `bars`: the axis holds bar heights, so 0 is included
/// without padding below it (above it for all-negative data).
fn axis_scale(
    a: &Axis,
    name: &str,
    data: &[f64],
    bars: bool,
    target: usize,
    perr: &dyn Fn(&str, String) -> FigureError,
) -> Result<Scale, FigureError> {
    let finite = data
        .iter()
        .copied()
        .filter(|v| v.is_finite() && (!a.log || *v > 0.0));
    let (dlo, dhi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let (mut lo, mut hi) = if dlo <= dhi {
        let (plo, phi) = scale::padded(dlo, dhi, a.log);
        if bars && !a.log && dlo >= 0.0 {
            (0.0, if dhi > 0.0 { phi } else { 1.0 })
        } else if bars && !a.log && dhi <= 0.0 {
            (plo, 0.0)
        } else {
            (plo, phi)
        }
    } else if a.log {
        (1.0, 10.0)
    } else {
        (0.0, 1.0)
    };
    match (a.min, a.max) {
        (Some(l), Some(h)) => (lo, hi) = (l, h),
        (Some(l), None) => {
            lo = l;
            if hi <= lo {
                hi = scale::extend_from(lo, true, a.log);
            }
        }
        (None, Some(h)) => {
            hi = h;
            if lo >= hi {
                lo = scale::extend_from(hi, false, a.log);
            }
        }
        (None, None) => {}
    }
    if !(lo.is_finite() && hi.is_finite() && lo < hi) {
        return Err(perr(
            &format!("{name}.min"),
            format!("axis range {lo}..{hi} is empty"),
        ));
    }
    let (ticks, labels) = match &a.ticks {
        Some(t) => scale::custom_ticks(t, lo, hi, a.log),
        None => scale::auto_ticks(lo, hi, a.log, target),
    };
    Ok(Scale {
        lo,
        hi,
        log: a.log,
        ticks,
        labels,
    })
}
