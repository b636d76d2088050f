//! `report.figure`: a declarative figure rendered with plotters to SVG
//! (output `out`) and PNG (output `png`), byte-identical across machines.
//!
//! Params are the figure spec of `report::figure::FigureSpec` (`title`,
//! `width`, `height`, `columns`, `panels`, `caption`) plus `labels` and
//! `export`. Rows come from the inputs:
//! - a `ref.published` table: its rows, with `source: published`;
//! - a list of results: per cached instance its coordinates and metrics (and
//!   `node`), with `source: reproduced`; instances not in the cache are
//!   skipped (never drawn as a value) and counted in the `missing` metric;
//! - every row gets `input: <input name>`, and `labels: {<input>: {field:
//!   value}}` adds constant fields (e.g. a series name for reproduced rows);
//! - `fields: {<input>: {field: {from, scale, offset, map}}}` derives fields
//!   of that input's reproduced rows from their coordinates and metrics, so
//!   they land on the published rows' axes: `offset + scale * row[from]`
//!   for a number (scale 1, offset 0 by default), `map[row[from]]` for a
//!   text such as `7B` (`map: {7B: 7}`). A row without `from` (or a text not
//!   in `map`) is left out, never drawn at a made-up position. Labels are
//!   applied after fields.
//!
//! A row whose x field is null is a reference level: it becomes a dashed
//! horizontal line labelled by its series (e.g. "ChatGPT"), so reference
//! lines come from data, not from the spec. A new value of a panel's
//! `series` field becomes a new series with no spec change.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::report::figure::{self, FigureSpec, RefLine, Row};
use crate::report::inputs::{self, ReportInput};
use serde_json::{Map, Value, json};

/// The `report.figure` op.
pub struct ReportFigureOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional("title", ParamType::Str, "figure title"),
    ParamSpec::optional("width", ParamType::Int, "pixels (default 1500)"),
    ParamSpec::optional("height", ParamType::Int, "pixels (default 450)"),
    ParamSpec::optional("columns", ParamType::Int, "panels per row"),
    ParamSpec::required(
        "panels",
        ParamType::List,
        "panels: kind, x, y, series, filter, band, ref_lines, legend, styles",
    ),
    ParamSpec::optional("caption", ParamType::Str, "caption (shown by report.html)"),
    ParamSpec::optional(
        "labels",
        ParamType::Map,
        "input name -> constant fields added to its rows",
    ),
    ParamSpec::optional(
        "fields",
        ParamType::Map,
        "input name -> {field: {from, scale, offset, map}} derived from reproduced rows",
    ),
    ParamSpec::optional(
        "export",
        ParamType::StrOrMap,
        "copy outputs out, e.g. {out: paper/figure1.svg, png: paper/figure1.png}",
    )
    .not_semantic(),
];

fn spec_of(params: &Map<String, Value>) -> Result<FigureSpec, String> {
    let mut m = params.clone();
    m.remove("labels");
    m.remove("fields");
    m.remove("export");
    serde_json::from_value(Value::Object(m)).map_err(|e| format!("figure spec: {e}"))
}

impl Op for ReportFigureOp {
    crate::op_identity! { "report.figure", 1, PARAMS, "A declarative figure (panels of line, point, bar or stacked bar; series, bands, reference levels) rendered to SVG and PNG." }
    fn is_report(&self) -> bool {
        true
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        spec_of(params).map_err(|m| ("panels".to_string(), m))?;
        fields_of(params).map_err(|m| ("fields".to_string(), m))?;
        super::report_common::check_export(params, &self.outputs(params))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "figure.svg"), ("png", "figure.png")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let mut spec = spec_of(ctx.params).map_err(OpError::msg)?;
        let labels = ctx
            .params
            .get("labels")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let fields = fields_of(ctx.params).map_err(OpError::msg)?;
        let mut rows: Vec<Row> = Vec::new();
        let mut missing = 0usize;
        for (name, input) in inputs::read_all(ctx).map_err(OpError::msg)? {
            let derive = fields.get(&name);
            let extra = labels
                .get(&name)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut push = |mut row: Row, source: &str| {
                row.insert("source".into(), json!(source));
                row.insert("input".into(), json!(name));
                for (k, v) in &extra {
                    row.insert(k.clone(), v.clone());
                }
                rows.push(row);
            };
            match input {
                ReportInput::Published(doc) => {
                    for r in doc
                        .get("rows")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        push(r.as_object().cloned().unwrap_or_default(), "published");
                    }
                }
                ReportInput::Results(views) => {
                    for v in views {
                        if v.get("missing") == Some(&json!(true)) {
                            missing += 1;
                            continue;
                        }
                        let mut row = inputs::result_row(&v);
                        if let Some(d) = derive {
                            match derive_fields(&row, d) {
                                Some(extra) => row.extend(extra),
                                None => continue,
                            }
                        }
                        push(row, "reproduced");
                    }
                }
                ReportInput::Text(_) => {}
            }
        }
        // Rows with a null x are reference levels of the panels they match.
        for panel in &mut spec.panels {
            for r in &rows {
                let matches = panel
                    .filter
                    .iter()
                    .all(|(k, v)| r.get(k).is_some_and(|x| same_value(x, v)));
                let x_null = matches!(r.get(&panel.x.field), None | Some(Value::Null));
                if let (true, true, Some(y)) = (
                    matches,
                    x_null,
                    r.get(&panel.y.field).and_then(Value::as_f64),
                ) {
                    let label = panel
                        .series
                        .as_ref()
                        .and_then(|s| r.get(s))
                        .and_then(Value::as_str)
                        .unwrap_or("reference")
                        .to_string();
                    panel.ref_lines.push(RefLine {
                        y,
                        label,
                        color: None,
                        dashed: true,
                    });
                }
            }
        }
        rows.retain(|r| {
            spec.panels
                .iter()
                .all(|p| !matches!(r.get(&p.x.field), Some(Value::Null)))
        });
        let svg = figure::render_svg(&spec, &rows).map_err(|e| OpError::msg(e.to_string()))?;
        let png = figure::render_png(&spec, &rows).map_err(|e| OpError::msg(e.to_string()))?;
        std::fs::write(ctx.work_dir.join("out/figure.svg"), svg)?;
        std::fs::write(ctx.work_dir.join("out/figure.png"), png)?;
        let mut metrics = Map::new();
        metrics.insert("missing".into(), json!(missing));
        metrics.insert("rows".into(), json!(rows.len()));
        Ok(RunResult {
            metrics,
            ..Default::default()
        })
    }
}

/// One derived field: `offset + scale * row[from]`, or `map[row[from]]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Derive {
    from: String,
    #[serde(default = "one")]
    scale: f64,
    #[serde(default)]
    offset: f64,
    #[serde(default)]
    map: Option<Map<String, Value>>,
}

fn one() -> f64 {
    1.0
}

/// The `fields` param: input name -> (field -> how to derive it).
fn fields_of(params: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let Some(f) = params.get("fields") else {
        return Ok(Map::new());
    };
    let m = f.as_object().ok_or("expected a mapping of input names")?;
    for (input, spec) in m {
        let spec = spec
            .as_object()
            .ok_or_else(|| format!("{input}: expected a mapping of fields"))?;
        for (field, d) in spec {
            serde_json::from_value::<Derive>(d.clone())
                .map_err(|e| format!("{input}.{field}: {e}"))?;
        }
    }
    Ok(m.clone())
}

/// The derived fields of one row, or `None` when one cannot be derived.
fn derive_fields(row: &Row, spec: &Value) -> Option<Row> {
    let mut out = Row::new();
    for (field, d) in spec.as_object()? {
        let d: Derive = serde_json::from_value(d.clone()).ok()?;
        let v = row.get(&d.from)?;
        let got = match (&d.map, v) {
            (Some(map), Value::String(t)) => map.get(t)?.clone(),
            (Some(map), other) => map.get(&other.to_string())?.clone(),
            (None, v) => json!(d.offset + d.scale * v.as_f64()?),
        };
        out.insert(field.clone(), got);
    }
    Some(out)
}

/// Filter equality as the renderer applies it: numbers by value (`1` = `1.0`).
fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}
