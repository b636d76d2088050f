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

/// Builds a panel's errors, which name the panel.
struct PanelErrors {
    /// E.g. `panel 2 ("MMLU 5-Shot")`.
    panel: String,
}

impl PanelErrors {
    /// A panel setting is invalid.
    fn field(&self, field: &str, message: String) -> FigureError {
        FigureError::Panel {
            panel: self.panel.clone(),
            field: field.into(),
            message,
        }
    }

    /// Row `row` holds a value of the wrong type.
    fn value(&self, row: usize, field: &str, message: String) -> FigureError {
        FigureError::Value {
            panel: self.panel.clone(),
            row,
            field: field.into(),
            message,
        }
    }
}

/// Style overrides by series (or reference-line) name, colours parsed.
type Overrides<'p> = BTreeMap<&'p str, (Option<Rgb>, &'p SeriesStyle)>;

/// Panel `i` ready to draw, from its spec and the figure's rows; ticks aim
/// at `x_target` and `y_target` per axis.
fn prepare_panel(
    i: usize,
    p: &Panel,
    rows: &[Row],
    x_target: usize,
    y_target: usize,
) -> Result<PPanel, FigureError> {
    let err = PanelErrors {
        panel: panel_name(i, p),
    };
    let bars = matches!(p.kind, Kind::Bar | Kind::StackedBar);
    // --- validate the spec
    let legend = legend_pos(p, &err)?;
    check_axes(p, bars, &err)?;
    let over = style_overrides(p, &err)?;
    // --- rows -> series
    let data = collect_rows(p, rows, bars, &err)?;
    // --- styles: paper look and overrides first, palette for the rest
    let (series, refs) = styles(p, &over, data.names, data.points, &err)?;
    // --- ranges and ticks
    let (x, categories) = x_scale(p, bars, data.categories, &series, x_target, &err)?;
    let ys = y_data(p, categories.len(), &series, &refs);
    let y = axis_scale(&p.y, "y", &ys, bars, y_target, &err)?;
    let legend_needed = !(p.series.is_none() && refs.is_empty() && series.len() <= 1);
    Ok(PPanel {
        title: p.title.clone(),
        kind: p.kind,
        x_label: p.x.label.clone().unwrap_or_else(|| p.x.field.clone()),
        y_label: y_label(p),
        x,
        y,
        categories,
        series,
        refs,
        legend,
        legend_needed,
        skipped: data.skipped,
    })
}

/// The y axis label, also the name of a panel's single unnamed series.
fn y_label(p: &Panel) -> String {
    p.y.label.clone().unwrap_or_else(|| p.y.field.clone())
}

/// The panel's `legend:` position (`best` when not given).
fn legend_pos(p: &Panel, err: &PanelErrors) -> Result<LegendPos, FigureError> {
    let Some(s) = &p.legend else {
        return Ok(LegendPos::Best);
    };
    (LegendPos::ALL.iter())
        .find(|(n, _)| n == s)
        .map(|(_, l)| *l)
        .ok_or_else(|| {
            let names: Vec<&str> = LegendPos::ALL.iter().map(|(n, _)| *n).collect();
            let expected = names.join(", ");
            let msg = format!("unknown position {s:?}; expected one of {expected}");
            err.field("legend", msg)
        })
}

/// Axis settings: a bar panel's categorical x axis takes no `log`, `min`,
/// `max` or `ticks`; bounds are finite, positive on a log axis, and
/// `min < max`.
fn check_axes(p: &Panel, bars: bool, err: &PanelErrors) -> Result<(), FigureError> {
    if bars {
        for (set, what) in [
            (p.x.log, "x.log"),
            (p.x.min.is_some(), "x.min"),
            (p.x.max.is_some(), "x.max"),
            (p.x.ticks.is_some(), "x.ticks"),
        ] {
            if set {
                let msg = "does not apply to the categorical x axis of a bar panel";
                return Err(err.field(what, msg.into()));
            }
        }
    }
    for (axis, name) in [(&p.x, "x"), (&p.y, "y")] {
        check_bounds(axis, name, err)?;
    }
    Ok(())
}

/// One axis's `min` and `max` (see [`check_axes`]).
fn check_bounds(axis: &Axis, name: &str, err: &PanelErrors) -> Result<(), FigureError> {
    for (v, bound) in [(axis.min, "min"), (axis.max, "max")] {
        let Some(v) = v else { continue };
        if !v.is_finite() {
            let msg = format!("{v} is not a finite number");
            return Err(err.field(&format!("{name}.{bound}"), msg));
        }
        if axis.log && v <= 0.0 {
            let msg = format!("{v} must be positive on a log axis");
            return Err(err.field(&format!("{name}.{bound}"), msg));
        }
    }
    if let (Some(lo), Some(hi)) = (axis.min, axis.max)
        && lo >= hi
    {
        let msg = format!("min ({lo}) must be less than max ({hi})");
        return Err(err.field(&format!("{name}.min"), msg));
    }
    Ok(())
}

/// A `#RRGGBB` colour given at `field`, if any.
fn parse_colour(
    c: Option<&str>,
    field: &str,
    err: &PanelErrors,
) -> Result<Option<Rgb>, FigureError> {
    c.map(|c| {
        Rgb::parse(c)
            .ok_or_else(|| err.field(field, format!("{c:?} is not a colour of the form #RRGGBB")))
    })
    .transpose()
}

/// The panel's `styles:`, with their colours parsed.
fn style_overrides<'p>(p: &'p Panel, err: &PanelErrors) -> Result<Overrides<'p>, FigureError> {
    let mut over = BTreeMap::new();
    for (name, st) in &p.styles {
        let field = format!("styles.{name}.color");
        let color = parse_colour(st.color.as_deref(), &field, err)?;
        over.insert(name.as_str(), (color, st));
    }
    Ok(over)
}

/// The points of a panel's rows, grouped into series.
#[derive(Default)]
struct Collected {
    /// Series names, in first-seen order.
    names: Vec<String>,
    /// Series index by name.
    index: BTreeMap<String, usize>,
    /// Each series' points, in row order.
    points: Vec<Vec<Pt>>,
    /// Bar categories, in first-seen order.
    categories: Vec<String>,
    /// Category index by name.
    cat_index: BTreeMap<String, usize>,
    /// Rows left out: a missing value, or one a (log) axis cannot show.
    skipped: usize,
}

impl Collected {
    /// The index of category `c`, added if new.
    fn category(&mut self, c: String) -> usize {
        let next = self.categories.len();
        let ci = *self.cat_index.entry(c.clone()).or_insert(next);
        if ci == next {
            self.categories.push(c);
        }
        ci
    }

    /// Adds a point to series `name`, added if new.
    fn push(&mut self, name: String, pt: Pt) {
        let next = self.names.len();
        let si = *self.index.entry(name.clone()).or_insert(next);
        if si == next {
            self.names.push(name);
            self.points.push(Vec::new());
        }
        self.points[si].push(pt);
    }
}

/// The rows that pass the panel's `filter:`, as points of their series;
/// a line panel's points sorted by x.
fn collect_rows(
    p: &Panel,
    rows: &[Row],
    bars: bool,
    err: &PanelErrors,
) -> Result<Collected, FigureError> {
    let mut data = Collected::default();
    let unnamed = y_label(p);
    for (ri, row) in rows.iter().enumerate() {
        let kept = (p.filter.iter()).all(|(k, v)| row.get(k).is_some_and(|rv| values_equal(rv, v)));
        if !kept {
            continue;
        }
        let Some(pt) = row_point(p, row, ri, bars, &mut data, err)? else {
            data.skipped += 1;
            continue;
        };
        let name = match &p.series {
            None => unnamed.clone(),
            Some(f) => value_name(row.get(f).unwrap_or(&Value::Null)),
        };
        data.push(name, pt);
    }
    if p.kind == Kind::Line {
        for pts in &mut data.points {
            pts.sort_by(|a, b| a.x.total_cmp(&b.x));
        }
    }
    Ok(data)
}

/// Row `ri` as a point, or `None` when it is skipped: a missing x or y, or
/// a value the axes cannot show. A bar panel's x is a category, added to
/// `data` as it is met.
fn row_point(
    p: &Panel,
    row: &Row,
    ri: usize,
    bars: bool,
    data: &mut Collected,
    err: &PanelErrors,
) -> Result<Option<Pt>, FigureError> {
    let y = match row.get(&p.y.field) {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(other) => {
            let msg = format!("must be a number, found {}", type_name(other));
            return Err(err.value(ri, &p.y.field, msg));
        }
    };
    let xv = match row.get(&p.x.field) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let x = if bars {
        bar_x(xv, data).map_err(|m| err.value(ri, &p.x.field, m))?
    } else {
        numeric_x(xv).map_err(|m| err.value(ri, &p.x.field, m))?
    };
    let band = band(p, row, ri, err)?;
    if !x.is_finite() || !y.is_finite() || (p.x.log && x <= 0.0) || (p.y.log && y <= 0.0) {
        return Ok(None);
    }
    Ok(Some(Pt { x, y, band }))
}

/// A bar panel's x: the index of its category.
fn bar_x(xv: &Value, data: &mut Collected) -> Result<f64, String> {
    match xv {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            Ok(data.category(value_name(xv)) as f64)
        }
        other => Err(format!(
            "must be a category (string or number), found {}",
            type_name(other)
        )),
    }
}

/// A line or point panel's x: a number.
fn numeric_x(xv: &Value) -> Result<f64, String> {
    match xv {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        other => Err(format!(
            "must be a number, found {} (use kind: bar for categories)",
            type_name(other)
        )),
    }
}

/// A row's band half-width, if the panel has a `band:` field and the row a
/// finite value in it.
fn band(p: &Panel, row: &Row, ri: usize, err: &PanelErrors) -> Result<Option<f64>, FigureError> {
    let Some(f) = &p.band else {
        return Ok(None);
    };
    match row.get(f) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().filter(|b| b.is_finite()).map(f64::abs)),
        Some(other) => {
            let msg = format!("band must be a number, found {}", type_name(other));
            Err(err.value(ri, f, msg))
        }
    }
}

/// Hands out colours: a name's fixed colour (given explicitly, in
/// `styles:`, or by the paper's look), else the next palette colour not
/// yet used in the panel.
struct Colours<'o, 'p> {
    over: &'o Overrides<'p>,
    /// Colours taken in the panel.
    used: Vec<Rgb>,
    /// Where the palette goes on.
    next: usize,
}

impl Colours<'_, '_> {
    /// A name's fixed colour, if it has one.
    fn fixed(&self, name: &str, explicit: Option<Rgb>) -> Option<Rgb> {
        explicit
            .or_else(|| self.over.get(name).and_then(|(c, _)| *c))
            .or_else(|| paper_style(name).map(|s| s.color))
    }

    /// Marks a name's fixed colour, if any, as taken.
    fn reserve(&mut self, name: &str, explicit: Option<Rgb>) {
        let fixed = self.fixed(name, explicit);
        self.used.extend(fixed);
    }

    /// A name's colour: its fixed one, else the next free palette colour
    /// (the next one at all, when every palette colour is taken).
    fn pick(&mut self, name: &str, explicit: Option<Rgb>) -> Rgb {
        if let Some(c) = self.fixed(name, explicit) {
            return c;
        }
        let n = PALETTE.len();
        let free = (0..n)
            .map(|k| PALETTE[(self.next + k) % n])
            .position(|c| !self.used.contains(&c));
        let c = match free {
            Some(k) => {
                let c = PALETTE[(self.next + k) % n];
                self.next += k + 1;
                c
            }
            None => {
                let c = PALETTE[self.next % n];
                self.next += 1;
                c
            }
        };
        self.used.push(c);
        c
    }
}

/// Styles the series and the reference lines a (log) y axis can show.
/// Every fixed colour is reserved first, so the palette never repeats one.
fn styles(
    p: &Panel,
    over: &Overrides,
    names: Vec<String>,
    points: Vec<Vec<Pt>>,
    err: &PanelErrors,
) -> Result<(Vec<PSeries>, Vec<PRef>), FigureError> {
    let refs_in: Vec<&RefLine> = (p.ref_lines.iter())
        .filter(|r| r.y.is_finite() && (!p.y.log || r.y > 0.0))
        .collect();
    let mut colours = Colours {
        over,
        used: Vec::new(),
        next: 0,
    };
    for name in &names {
        colours.reserve(name, None);
    }
    for r in &refs_in {
        let field = format!("ref_lines.{}.color", r.label);
        let explicit = parse_colour(r.color.as_deref(), &field, err)?;
        colours.reserve(&r.label, explicit);
    }
    let series = (names.into_iter().zip(points))
        .map(|(name, pts)| series_style(p, &mut colours, name, pts))
        .collect();
    let refs = (refs_in.into_iter())
        .map(|r| ref_style(&mut colours, r))
        .collect();
    Ok((series, refs))
}

/// A series with its style: overrides, else the paper's look, else solid,
/// with markers on point panels and on series of at most 25 points.
fn series_style(p: &Panel, colours: &mut Colours, name: String, pts: Vec<Pt>) -> PSeries {
    let base = paper_style(&name);
    let over = colours.over.get(name.as_str()).map(|(_, s)| *s);
    let color = colours.pick(&name, None);
    let dashed = (over.and_then(|s| s.dashed))
        .or(base.map(|b| b.dashed))
        .unwrap_or(false);
    let marker = p.kind == Kind::Point
        || (over.and_then(|s| s.marker))
            .or(base.map(|b| b.marker))
            .unwrap_or(pts.len() <= 25);
    PSeries {
        name,
        style: Style {
            color,
            dashed,
            marker,
        },
        points: pts,
    }
}

/// A reference line with its style (its colour was checked before).
fn ref_style(colours: &mut Colours, r: &RefLine) -> PRef {
    let explicit = r.color.as_deref().and_then(Rgb::parse);
    PRef {
        y: r.y,
        label: r.label.clone(),
        style: Style {
            color: colours.pick(&r.label, explicit),
            dashed: r.dashed,
            marker: false,
        },
    }
}

/// The x scale and the categories: one slot per category on a bar panel,
/// else from the data (no categories).
fn x_scale(
    p: &Panel,
    bars: bool,
    categories: Vec<String>,
    series: &[PSeries],
    target: usize,
    err: &PanelErrors,
) -> Result<(Scale, Vec<String>), FigureError> {
    if !bars {
        let xs: Vec<f64> = (series.iter())
            .flat_map(|s| s.points.iter().map(|pt| pt.x))
            .collect();
        return Ok((axis_scale(&p.x, "x", &xs, false, target, err)?, Vec::new()));
    }
    let n = categories.len().max(1) as f64;
    let scale = Scale {
        lo: -0.5,
        hi: n - 0.5,
        log: false,
        ticks: (0..categories.len()).map(|k| k as f64).collect(),
        labels: categories.clone(),
    };
    Ok((scale, categories))
}

/// The y values the y axis must show: reference lines, then the stack
/// tops of a stacked bar panel (positive and negative stacks apart), or
/// else every point with its band.
fn y_data(p: &Panel, n_categories: usize, series: &[PSeries], refs: &[PRef]) -> Vec<f64> {
    let mut ys: Vec<f64> = refs.iter().map(|r| r.y).collect();
    let points = series.iter().flat_map(|s| &s.points);
    if p.kind == Kind::StackedBar {
        let mut pos = vec![0.0f64; n_categories];
        let mut neg = vec![0.0f64; n_categories];
        for pt in points {
            let c = pt.x as usize;
            let acc = if pt.y >= 0.0 {
                &mut pos[c]
            } else {
                &mut neg[c]
            };
            *acc += pt.y;
            ys.push(*acc);
        }
        return ys;
    }
    for pt in points {
        ys.push(pt.y);
        if let Some(b) = pt.band {
            ys.push(pt.y + b);
            if !p.y.log || pt.y - b > 0.0 {
                ys.push(pt.y - b);
            }
        }
    }
    ys
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
    err: &PanelErrors,
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
        return Err(err.field(
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
