//! Published-vs-reproduced comparison rows for tables.
//!
//! A `compare:` block in a `report.table` node says how the rows of a
//! `ref.published` table match reproduced results:
//!
//! ```yaml
//! compare:
//!   published: published        # input name of the ref.published table
//!   reproduced: results         # input name of the results list
//!   match: {model: size, data: data}   # published field -> reproduced field (coordinate or metric)
//!   metric: nq_em               # the reproduced metric
//!   scale: 100                  # multiply the metric (fraction -> %), default 1
//!   tolerance: 3                # optional: |reproduced - published| <= 3 passes
//! ```
//!
//! Each published row becomes a comparison row with `published`,
//! `reproduced` (null when not reproduced), `delta`, `pass` (null without a
//! tolerance or a value) and, when the matching node exists but is not cached,
//! `missing_node` (its id), which templates render as a dash with a footnote.

use super::inputs::{ReportInput, result_row};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The `compare:` param.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Compare {
    /// Input holding the published table.
    pub published: String,
    /// Input holding the reproduced results.
    pub reproduced: Option<String>,
    /// Published field -> reproduced field.
    #[serde(rename = "match", default)]
    pub matching: BTreeMap<String, String>,
    /// Reproduced metric name.
    pub metric: Option<String>,
    /// Scale applied to the reproduced metric.
    #[serde(default = "one")]
    pub scale: f64,
    /// Absolute tolerance for a pass mark.
    pub tolerance: Option<f64>,
    /// Published field holding the value (default `value`).
    #[serde(default = "value_field")]
    pub value: String,
}

fn one() -> f64 {
    1.0
}
fn value_field() -> String {
    "value".into()
}

/// Comparison rows plus counts of gated comparisons.
#[derive(Debug, Default)]
pub struct Comparison {
    /// One row per published row.
    pub rows: Vec<Value>,
    /// Ids of matching nodes that are not cached, in order (footnotes).
    pub missing: Vec<String>,
    /// Gated comparisons within tolerance.
    pub passed: usize,
    /// Gated comparisons outside tolerance.
    pub failed: usize,
    /// Whether a tolerance is declared (tables then show pass/fail marks).
    pub gated: bool,
}

/// Parses `compare:` from params (None when absent).
pub fn parse(params: &Map<String, Value>) -> Result<Option<Compare>, String> {
    match params.get("compare") {
        None => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| format!("compare: {e}")),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Builds the comparison rows.
pub fn build(c: &Compare, inputs: &[(String, ReportInput)]) -> Result<Comparison, String> {
    let find = |name: &str| inputs.iter().find(|(n, _)| n == name).map(|(_, i)| i);
    let doc = match find(&c.published) {
        Some(ReportInput::Published(doc)) => doc,
        Some(ReportInput::Results(v))
            if v.iter().any(|r| r.get("missing") == Some(&json!(true))) =>
        {
            return Err(format!(
                "compare.published: input `{}` is not in the cache",
                c.published
            ));
        }
        _ => {
            return Err(format!(
                "compare.published: input `{}` is not a ref.published table",
                c.published
            ));
        }
    };
    let results: Vec<Map<String, Value>> = match c.reproduced.as_deref().map(|r| (r, find(r))) {
        None => Vec::new(),
        Some((_, Some(ReportInput::Results(v)))) => v.iter().map(result_row).collect(),
        Some((r, _)) => {
            return Err(format!(
                "compare.reproduced: input `{r}` is not a list of results"
            ));
        }
    };
    let mut out = Comparison {
        gated: c.tolerance.is_some(),
        ..Default::default()
    };
    for row in doc
        .get("rows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let published = row.get(&c.value).and_then(Value::as_f64);
        let hit = if c.matching.is_empty() {
            None
        } else {
            results.iter().find(|r| {
                c.matching
                    .iter()
                    .all(|(pf, rf)| match (row.get(pf), r.get(rf)) {
                        (Some(a), Some(b)) => text(a) == text(b),
                        _ => false,
                    })
            })
        };
        let mut cmp = json!({"published": published, "reproduced": null, "delta": null, "pass": null, "node": null, "missing_node": null, "footnote": null});
        if let Some(r) = hit {
            cmp["node"] = r.get("node").cloned().unwrap_or(Value::Null);
            if r.get("missing") == Some(&json!(true)) {
                let id = text(r.get("node").unwrap_or(&Value::Null));
                cmp["missing_node"] = json!(id);
                out.missing.push(id);
                cmp["footnote"] = json!(out.missing.len());
            } else if let Some(v) = c
                .metric
                .as_ref()
                .and_then(|m| r.get(m))
                .and_then(Value::as_f64)
            {
                let v = v * c.scale;
                cmp["reproduced"] = json!(v);
                if let Some(p) = published {
                    let d = v - p;
                    cmp["delta"] = json!(d);
                    if let Some(t) = c.tolerance {
                        let pass = d.abs() <= t;
                        cmp["pass"] = json!(pass);
                        if pass {
                            out.passed += 1;
                        } else {
                            out.failed += 1;
                        }
                    }
                }
            }
        }
        let mut merged = row.as_object().cloned().unwrap_or_default();
        if let Value::Object(m) = cmp {
            merged.extend(m);
        }
        out.rows.push(Value::Object(merged));
    }
    Ok(out)
}
