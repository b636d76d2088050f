//! What report ops read from their inputs: published tables, and results
//! (one per upstream instance) with coordinates, metrics and provenance.

use crate::op::RunContext;
use serde_json::{Map, Value, json};

/// One input of a report op, decoded.
#[derive(Debug, Clone)]
pub enum ReportInput {
    /// A `ref.published` table (its JSON).
    Published(Value),
    /// Results of upstream instances, in input order: each a record view
    /// (`node`, `coords`, `metrics`, `key`, `provenance`, `missing`), plus the
    /// output's JSON content under `data` when it is JSON.
    Results(Vec<Value>),
    /// Any other file, as text.
    Text(String),
}

/// Decodes every input of a report op.
pub fn read_all(ctx: &RunContext) -> Result<Vec<(String, ReportInput)>, String> {
    let mut out = Vec::new();
    for (name, path) in ctx.inputs {
        let view = ctx.records.get(name).cloned().unwrap_or(Value::Null);
        let input = match view {
            Value::Array(entries) => {
                let mut results = Vec::new();
                for mut e in entries {
                    let entry = e
                        .get("entry")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    let p = path.join(&entry);
                    if let Some(data) = read_json(&p)
                        && let Some(o) = e.as_object_mut()
                    {
                        o.insert("data".into(), data);
                    }
                    results.push(e);
                }
                ReportInput::Results(results)
            }
            Value::Object(mut view) => match read_json(path) {
                Some(doc) if doc.get("kind") == Some(&json!("published")) => {
                    ReportInput::Published(doc)
                }
                Some(doc) => {
                    view.insert("data".into(), doc);
                    ReportInput::Results(vec![Value::Object(view)])
                }
                None if view.get("missing") == Some(&json!(true)) => {
                    ReportInput::Results(vec![Value::Object(view)])
                }
                None => ReportInput::Text(
                    std::fs::read_to_string(path).map_err(|e| format!("input `{name}`: {e}"))?,
                ),
            },
            _ => ReportInput::Text(std::fs::read_to_string(path).unwrap_or_default()),
        };
        out.push((name.clone(), input));
    }
    Ok(out)
}

fn read_json(p: &std::path::Path) -> Option<Value> {
    if !p.is_file() {
        return None;
    }
    serde_json::from_slice(&std::fs::read(p).ok()?).ok()
}

/// Flattens a result view into one row: coordinates, metrics, and `node`.
pub fn result_row(view: &Value) -> Map<String, Value> {
    let mut row = Map::new();
    for part in ["coords", "metrics"] {
        if let Some(Value::Object(m)) = view.get(part) {
            for (k, v) in m {
                row.insert(k.clone(), v.clone());
            }
        }
    }
    for k in ["node", "key", "missing"] {
        if let Some(v) = view.get(k) {
            row.insert(k.into(), v.clone());
        }
    }
    row
}
