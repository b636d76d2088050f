//! The metrics table of `repro metrics` and `repro metrics --diff`: one row
//! per instance, its matrix coordinates and its metrics as columns, rendered
//! as aligned text, Markdown, CSV or JSON.
//!
//! Pure data in, text out: the command line gathers the rows (records from
//! the cache, old ones from a git revision) and this module filters,
//! sorts, diffs and formats them, so every output is deterministic for the
//! same rows.

use serde_json::{Map, Value, json};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

/// One instance and its metrics, or why it has none.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Instance id, e.g. `qa[from=answer,size=l]`.
    pub id: String,
    /// Node name as written, e.g. `qa`.
    pub node: String,
    /// Matrix coordinates in naming order (`size` -> `l`).
    pub coords: Vec<(String, String)>,
    /// The record's metrics, or why there is no record (`stale: ...`).
    pub metrics: Result<Map<String, Value>, String>,
    /// For a row without a record: the metric names of its last run (so a
    /// stale table keeps its columns, as dashes).
    pub last: Vec<String>,
}

/// How a metric may move before `--diff --check` fails (the node's `tolerance:`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// Absolute difference allowed.
    pub abs: f64,
    /// Difference allowed relative to the old value's magnitude.
    pub rel: f64,
}

impl Gate {
    /// Whether `new` is within the gate of `old`.
    pub fn accepts(&self, old: f64, new: f64) -> bool {
        let d = (old - new).abs();
        old == new || d <= self.abs || d <= self.rel * old.abs()
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for a terminal.
    Text,
    /// A GitHub Markdown table.
    Markdown,
    /// RFC 4180 CSV.
    Csv,
    /// Pretty JSON.
    Json,
}

/// A sort key: a column name and its direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// Column: `id`, `node`, a coordinate or a metric.
    pub column: String,
    /// Largest first.
    pub descending: bool,
}

impl SortKey {
    /// Parses `em`, `em:desc` or `em:asc`.
    pub fn parse(s: &str) -> Result<SortKey, String> {
        let (column, dir) = match s.rsplit_once(':') {
            Some((c, d)) => (c, d),
            None => (s, "asc"),
        };
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            other => {
                return Err(format!(
                    "--sort {s}: direction `{other}` is neither `asc` nor `desc`"
                ));
            }
        };
        if column.is_empty() {
            return Err(format!("--sort {s}: no column named"));
        }
        Ok(SortKey {
            column: column.to_string(),
            descending,
        })
    }
}

/// A table ready to print: the columns and one cell per column and row.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Column names: `node`, coordinates, metrics, and `why` when a row has no record.
    pub columns: Vec<String>,
    /// How many leading columns are keys (node and coordinates), not metrics.
    pub key_columns: usize,
    /// Cells (JSON values; `Value::Null` prints as a dash).
    pub rows: Vec<Vec<Value>>,
    /// The instance id of each row (in JSON output as `instance`).
    pub ids: Vec<String>,
}

/// The coordinate names of `rows`, in first-seen order.
fn coord_names(rows: &[Row]) -> Vec<String> {
    let mut seen = Vec::new();
    for r in rows {
        for (k, _) in &r.coords {
            if !seen.contains(k) {
                seen.push(k.clone());
            }
        }
    }
    seen
}

/// Every metric name any row has, sorted.
pub fn metric_names(rows: &[Row]) -> Vec<String> {
    let set: BTreeSet<&String> = rows
        .iter()
        .flat_map(|r| match &r.metrics {
            Ok(m) => m.keys().collect::<Vec<_>>(),
            Err(_) => r.last.iter().collect(),
        })
        .collect();
    set.into_iter().cloned().collect()
}

/// The metric columns: the chosen ones (each must exist in some row), or all.
pub fn choose_metrics(rows: &[Row], chosen: &[String]) -> Result<Vec<String>, String> {
    let all = metric_names(rows);
    if chosen.is_empty() {
        return Ok(all);
    }
    for m in chosen {
        if !all.contains(m) {
            return Err(format!(
                "-m {m}: no selected instance has a metric `{m}` (they have: {})",
                if all.is_empty() {
                    "none".to_string()
                } else {
                    all.join(", ")
                }
            ));
        }
    }
    Ok(chosen.to_vec())
}

/// Builds the table of `rows` with the chosen metric columns.
pub fn table(rows: &[Row], metrics: &[String]) -> Table {
    let coords = coord_names(rows);
    let mut columns = vec!["node".to_string()];
    columns.extend(coords.iter().cloned());
    let key_columns = columns.len();
    columns.extend(metrics.iter().cloned());
    let any_absent = rows.iter().any(|r| r.metrics.is_err());
    if any_absent {
        columns.push("why".into());
    }
    let cells = rows
        .iter()
        .map(|r| {
            let mut cells = vec![Value::String(r.node.clone())];
            for c in &coords {
                cells.push(
                    r.coords
                        .iter()
                        .find(|(k, _)| k == c)
                        .map_or(Value::Null, |(_, v)| Value::String(v.clone())),
                );
            }
            for m in metrics {
                let v = r.metrics.as_ref().ok().and_then(|ms| ms.get(m));
                cells.push(v.cloned().unwrap_or(Value::Null));
            }
            if any_absent {
                cells.push(Value::String(match &r.metrics {
                    Err(why) => why.clone(),
                    Ok(_) => String::new(),
                }));
            }
            cells
        })
        .collect();
    Table {
        columns,
        key_columns,
        rows: cells,
        ids: rows.iter().map(|r| r.id.clone()).collect(),
    }
}

/// Orders two cells: numbers by value, then strings, dashes last.
fn cmp_cells(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        _ => cell_text(a, 12).cmp(&cell_text(b, 12)),
    }
}

/// Sorts the table's rows by the keys (a stable sort: ties keep their order).
/// Numeric-looking coordinates (`3000`, `1e-5`) sort as numbers.
pub fn sort(t: &mut Table, keys: &[SortKey]) -> Result<(), String> {
    let mut at = Vec::new();
    for k in keys {
        let i = t
            .columns
            .iter()
            .position(|c| *c == k.column)
            .ok_or_else(|| {
                format!(
                    "--sort {}: no such column (columns: {})",
                    k.column,
                    t.columns.join(", ")
                )
            })?;
        at.push((i, k.descending));
    }
    let numeric = |v: &Value| match v {
        Value::String(s) => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| v.clone(), Value::Number),
        _ => v.clone(),
    };
    let mut order: Vec<usize> = (0..t.rows.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&t.rows[a], &t.rows[b]);
        for &(i, desc) in &at {
            let (x, y) = (numeric(&a[i]), numeric(&b[i]));
            let o = match (x.is_null(), y.is_null()) {
                // Dashes stay last in either direction.
                (false, false) if desc => cmp_cells(&y, &x),
                _ => cmp_cells(&x, &y),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
    t.rows = order.iter().map(|&i| t.rows[i].clone()).collect();
    t.ids = order.iter().map(|&i| t.ids[i].clone()).collect();
    Ok(())
}

/// A cell as text: a dash for none, numbers with at most `precision`
/// decimals (trailing zeros dropped), strings as they are.
pub fn cell_text(v: &Value, precision: usize) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.0);
            let s = format!("{f:.precision$}");
            let s = if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s
            };
            if s == "-0" { "0".into() } else { s }
        }
        other => other.to_string(),
    }
}

/// Renders a table in a format.
pub fn render(t: &Table, format: Format, precision: usize) -> String {
    match format {
        Format::Json => {
            let rows: Vec<Value> = t
                .rows
                .iter()
                .zip(&t.ids)
                .map(|(r, id)| {
                    let mut o = Map::new();
                    o.insert("instance".into(), json!(id));
                    o.extend(t.columns.iter().zip(r).map(|(c, v)| (c.clone(), v.clone())));
                    Value::Object(o)
                })
                .collect();
            let doc = json!({"columns": t.columns, "rows": rows});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        Format::Csv => {
            let mut out = String::new();
            let line = |cells: Vec<String>| {
                cells
                    .iter()
                    .map(|c| csv_field(c))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            out.push_str(&line(t.columns.clone()));
            out.push('\n');
            for r in &t.rows {
                // CSV keeps full precision; an absent value is an empty field.
                let cells = r
                    .iter()
                    .map(|v| match v {
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect();
                out.push_str(&line(cells));
                out.push('\n');
            }
            out
        }
        Format::Markdown => {
            let mut out = String::new();
            let esc = |s: String| s.replace('|', "\\|");
            out.push_str(&format!(
                "| {} |\n",
                t.columns
                    .iter()
                    .map(|c| esc(c.clone()))
                    .collect::<Vec<_>>()
                    .join(" | ")
            ));
            let align: Vec<&str> = (0..t.columns.len())
                .map(|i| {
                    if is_numeric_column(t, i) {
                        "---:"
                    } else {
                        "---"
                    }
                })
                .collect();
            out.push_str(&format!("| {} |\n", align.join(" | ")));
            for r in &t.rows {
                let cells: Vec<String> = r.iter().map(|v| esc(cell_text(v, precision))).collect();
                out.push_str(&format!("| {} |\n", cells.join(" | ")));
            }
            out
        }
        Format::Text => {
            let text: Vec<Vec<String>> = t
                .rows
                .iter()
                .map(|r| r.iter().map(|v| cell_text(v, precision)).collect())
                .collect();
            let n = t.columns.len();
            let width: Vec<usize> = (0..n)
                .map(|i| {
                    text.iter()
                        .map(|r| r[i].chars().count())
                        .chain([t.columns[i].chars().count()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let numeric: Vec<bool> = (0..n).map(|i| is_numeric_column(t, i)).collect();
            let line = |cells: &[String]| {
                let mut s = String::new();
                for (i, c) in cells.iter().enumerate() {
                    let pad = width[i].saturating_sub(c.chars().count());
                    if i > 0 {
                        s.push_str("  ");
                    }
                    if numeric[i] {
                        s.push_str(&" ".repeat(pad));
                        s.push_str(c);
                    } else {
                        s.push_str(c);
                        if i + 1 < n {
                            s.push_str(&" ".repeat(pad));
                        }
                    }
                }
                s.trim_end().to_string() + "\n"
            };
            let mut out = line(&t.columns);
            for r in &text {
                out.push_str(&line(r));
            }
            out
        }
    }
}

/// A column whose every value is a number or a dash (right-aligned).
fn is_numeric_column(t: &Table, i: usize) -> bool {
    i >= t.key_columns
        && t.columns[i] != "why"
        && t.rows
            .iter()
            .all(|r| matches!(r[i], Value::Number(_) | Value::Null))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line of a diff: an instance's metric at the old and the new revision.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffLine {
    /// Instance id.
    pub id: String,
    /// Node name.
    pub node: String,
    /// Metric name.
    pub metric: String,
    /// Value at the old revision (`None`: no record there).
    pub old: Option<Value>,
    /// Value now (`None`: not computed now).
    pub new: Option<Value>,
    /// `new - old` when both are numbers.
    pub delta: Option<f64>,
    /// Whether the instance exists only now (`added`), only then (`removed`), or in both (`kept`).
    pub change: &'static str,
    /// The gate, when the node's `tolerance:` covers this metric.
    pub gate: Option<Gate>,
    /// `Some(false)` when gated and moved beyond its tolerance.
    pub within: Option<bool>,
}

/// Diffs two sets of rows (old at a revision, new now) instance by instance,
/// metric by metric. `gate(id, metric)` is the tolerance that applies.
/// Lines come in the order of `new` (then removed instances in `old`'s order),
/// metrics sorted.
pub fn diff(
    old: &[Row],
    new: &[Row],
    metrics: &[String],
    gate: &dyn Fn(&str, &str) -> Option<Gate>,
) -> Vec<DiffLine> {
    let old_by: BTreeMap<&str, &Row> = old.iter().map(|r| (r.id.as_str(), r)).collect();
    let new_ids: BTreeSet<&str> = new.iter().map(|r| r.id.as_str()).collect();
    let mut out = Vec::new();
    let pairs = new
        .iter()
        .map(|r| (old_by.get(r.id.as_str()).copied(), Some(r)))
        .chain(
            old.iter()
                .filter(|r| !new_ids.contains(r.id.as_str()))
                .map(|r| (Some(r), None)),
        );
    for (o, n) in pairs {
        let Some(any) = n.or(o) else { continue };
        let change = match (o, n) {
            (None, _) => "added",
            (_, None) => "removed",
            _ => "kept",
        };
        let om = o.and_then(|r| r.metrics.as_ref().ok());
        let nm = n.and_then(|r| r.metrics.as_ref().ok());
        let names: BTreeSet<&String> = om
            .into_iter()
            .chain(nm)
            .flat_map(|m| m.keys())
            .filter(|k| metrics.is_empty() || metrics.contains(k))
            .collect();
        for m in names {
            let ov = om.and_then(|x| x.get(m)).cloned();
            let nv = nm.and_then(|x| x.get(m)).cloned();
            let (of, nf) = (
                ov.as_ref().and_then(Value::as_f64),
                nv.as_ref().and_then(Value::as_f64),
            );
            let delta = of.zip(nf).map(|(a, b)| b - a);
            let g = gate(&any.id, m);
            let within = match (g, of, nf) {
                (Some(g), Some(a), Some(b)) => Some(g.accepts(a, b)),
                (Some(_), _, _) if ov.is_some() && nv.is_some() => Some(ov == nv),
                _ => None,
            };
            out.push(DiffLine {
                id: any.id.clone(),
                node: any.node.clone(),
                metric: m.clone(),
                old: ov,
                new: nv,
                delta,
                change,
                gate: g,
                within,
            });
        }
    }
    out
}

/// Whether a diff line shows a change (a moved value, an added or removed instance).
pub fn is_change(l: &DiffLine) -> bool {
    l.change != "kept" || l.old != l.new
}

/// Renders diff lines (instance, metric, old, new, delta, and the gate when any line has one).
/// `old_name` and `new_name` head the value columns (`HEAD`, `workspace`).
pub fn render_diff(
    lines: &[DiffLine],
    old_name: &str,
    new_name: &str,
    format: Format,
    precision: usize,
) -> String {
    let gated = lines.iter().any(|l| l.gate.is_some());
    let mut columns: Vec<String> = vec![
        "instance".into(),
        "metric".into(),
        old_name.into(),
        new_name.into(),
        "change".into(),
    ];
    if gated {
        columns.push("tolerance".into());
    }
    let rows: Vec<Vec<Value>> = lines
        .iter()
        .map(|l| {
            let mut r = vec![
                json!(l.id),
                json!(l.metric),
                l.old.clone().unwrap_or(Value::Null),
                l.new.clone().unwrap_or(Value::Null),
                match (l.change, l.delta) {
                    ("added", _) => json!("added"),
                    ("removed", _) => json!("removed"),
                    (_, Some(d)) => json!(signed(d, precision)),
                    _ if l.old != l.new => json!("changed"),
                    _ => json!("0"),
                },
            ];
            if gated {
                r.push(match (l.gate, l.within) {
                    (Some(g), Some(false)) => json!(format!("FAIL (abs {} rel {})", g.abs, g.rel)),
                    (Some(g), Some(true)) => json!(format!("ok (abs {} rel {})", g.abs, g.rel)),
                    // Added, removed, or a dash on one side: nothing to gate.
                    _ => Value::Null,
                });
            }
            r
        })
        .collect();
    match format {
        Format::Json => {
            let doc: Vec<Value> = lines
                .iter()
                .map(|l| {
                    json!({
                        "instance": l.id,
                        "node": l.node,
                        "metric": l.metric,
                        "old": l.old,
                        "new": l.new,
                        "delta": l.delta,
                        "change": l.change,
                        "tolerance": l.gate.map(|g| json!({"abs": g.abs, "rel": g.rel})),
                        "within_tolerance": l.within,
                    })
                })
                .collect();
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        _ => render(
            &Table {
                columns,
                key_columns: 2,
                ids: lines.iter().map(|l| l.id.clone()).collect(),
                rows,
            },
            format,
            precision,
        ),
    }
}

/// `+0.0125`, `-0.1`, `0`: a delta with its sign and at most `precision` decimals.
fn signed(d: f64, precision: usize) -> String {
    let t = cell_text(&json!(d), precision);
    if t == "0" && d != 0.0 {
        // Smaller than the decimals shown: say so rather than print 0.
        return format!("{d:+.1e}");
    }
    if d > 0.0 && t != "0" {
        format!("+{t}")
    } else {
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, size: &str, em: Option<f64>) -> Row {
        Row {
            id: id.into(),
            node: "qa".into(),
            coords: vec![("size".into(), size.into())],
            metrics: match em {
                Some(v) => Ok([("em".to_string(), json!(v))].into_iter().collect()),
                None => Err("stale: params.lr: 1 -> 2".into()),
            },
            last: Vec::new(),
        }
    }

    #[test]
    fn table_has_coordinates_metrics_and_why() {
        let rows = [
            row("qa[size=s]", "s", Some(0.5)),
            row("qa[size=m]", "m", None),
        ];
        let t = table(&rows, &metric_names(&rows));
        assert_eq!(t.columns, ["node", "size", "em", "why"]);
        let text = render(&t, Format::Text, 4);
        assert_eq!(
            text,
            "node  size   em  why\nqa    s     0.5\nqa    m       -  stale: params.lr: 1 -> 2\n"
        );
    }

    #[test]
    fn sorts_numbers_descending_with_dashes_last() {
        let rows = [
            row("qa[size=s]", "s", Some(0.1)),
            row("qa[size=m]", "m", None),
            row("qa[size=l]", "l", Some(0.3)),
        ];
        let mut t = table(&rows, &metric_names(&rows));
        sort(&mut t, &[SortKey::parse("em:desc").unwrap()]).unwrap();
        let sizes: Vec<&str> = t.rows.iter().map(|r| r[1].as_str().unwrap()).collect();
        assert_eq!(sizes, ["l", "s", "m"]);
        assert!(sort(&mut t, &[SortKey::parse("nope").unwrap()]).is_err());
        assert!(SortKey::parse("em:up").is_err());
    }

    #[test]
    fn diff_gates_by_tolerance() {
        let old = [
            row("qa[size=s]", "s", Some(0.5)),
            row("qa[size=x]", "x", Some(0.1)),
        ];
        let new = [
            row("qa[size=s]", "s", Some(0.6)),
            row("qa[size=m]", "m", Some(0.2)),
        ];
        let gate = |_: &str, _: &str| {
            Some(Gate {
                abs: 0.05,
                rel: 0.0,
            })
        };
        let lines = diff(&old, &new, &[], &gate);
        let summary: Vec<(&str, &str, Option<bool>)> = lines
            .iter()
            .map(|l| (l.id.as_str(), l.change, l.within))
            .collect();
        assert_eq!(
            summary,
            [
                ("qa[size=s]", "kept", Some(false)),
                ("qa[size=m]", "added", None),
                ("qa[size=x]", "removed", None)
            ]
        );
        let text = render_diff(&lines, "HEAD", "workspace", Format::Text, 4);
        assert!(
            text.contains("qa[size=s]  em       0.5        0.6  +0.1"),
            "{text}"
        );
    }

    #[test]
    fn csv_quotes_and_keeps_precision() {
        let rows = [Row {
            id: "a".into(),
            node: "a".into(),
            coords: vec![("k".into(), "x,y".into())],
            metrics: Ok([("v".to_string(), json!(0.123456789))]
                .into_iter()
                .collect()),
            last: Vec::new(),
        }];
        let t = table(&rows, &metric_names(&rows));
        assert_eq!(
            render(&t, Format::Csv, 2),
            "node,k,v\na,\"x,y\",0.123456789\n"
        );
        assert_eq!(
            render(&t, Format::Text, 2),
            "node  k       v\na     x,y  0.12\n"
        );
    }
}
