//! `ref.published`: a table of published values with its citation.
//!
//! The values come from `rows:` in the pipeline and/or from an input `data`
//! (a YAML or JSON file with `rows:` and optionally `citation:`, `columns:`,
//! `notes:`). Each row is a mapping of scalars; a `value` field, when present,
//! must be a number or null. The output `out` is JSON:
//! `{"kind": "published", "citation", "columns", "notes", "rows"}`, so every
//! report can label these numbers as published, never as computed.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `ref.published` op.
pub struct PublishedOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "citation",
        ParamType::Str,
        "where the numbers are published",
    ),
    ParamSpec::optional(
        "rows",
        ParamType::List,
        "rows of the table: mappings of scalars",
    ),
    ParamSpec::optional("columns", ParamType::List, "column names, in display order"),
    ParamSpec::optional("notes", ParamType::Str, "how the numbers were obtained"),
];

impl Op for PublishedOp {
    crate::op_identity! { "ref.published", 1, PARAMS, "A table of published values with a citation (inline `rows:` and/or a YAML/JSON input `data`), stored as light JSON." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        if let Some(Value::Array(rows)) = params.get("rows") {
            check_rows(rows).map_err(|m| ("rows".to_string(), m))?;
        }
        Ok(())
    }
    fn is_ingest(&self) -> bool {
        true
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "published.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let mut rows: Vec<Value> = ctx
            .params
            .get("rows")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut citation = ctx.params.get("citation").cloned().unwrap_or(Value::Null);
        let mut columns = ctx.params.get("columns").cloned().unwrap_or(Value::Null);
        let mut notes = ctx.params.get("notes").cloned().unwrap_or(Value::Null);
        for (name, path) in ctx.inputs {
            if name != "data" {
                return Err(OpError::msg(format!(
                    "unexpected input `{name}` (ref.published takes only `data`)"
                )));
            }
            let text = std::fs::read_to_string(path)?;
            let mut sources = crate::spec::source::Sources::default();
            let id = sources.add(std::path::Path::new("in/data"), text);
            let doc = crate::spec::yaml::parse(&sources, id)
                .map_err(|e| OpError::msg(e.to_string()))?
                .to_json();
            let Value::Object(doc) = doc else {
                return Err(OpError::msg("input `data` must be a mapping with `rows:`"));
            };
            if let Some(Value::Array(more)) = doc.get("rows") {
                rows.extend(more.iter().cloned());
            } else {
                return Err(OpError::msg("input `data` has no `rows:` list"));
            }
            for (slot, field) in [
                (&mut citation, "citation"),
                (&mut columns, "columns"),
                (&mut notes, "notes"),
            ] {
                if slot.is_null()
                    && let Some(v) = doc.get(field)
                {
                    *slot = v.clone();
                }
            }
        }
        check_rows(&rows).map_err(OpError::msg)?;
        let out = json!({"kind": "published", "citation": citation, "columns": columns, "notes": notes, "rows": rows});
        let bytes = serde_json::to_vec_pretty(&out).map_err(|e| OpError::msg(e.to_string()))?;
        std::fs::write(ctx.work_dir.join("out/published.json"), bytes)?;
        Ok(RunResult::default())
    }
}

fn check_rows(rows: &[Value]) -> Result<(), String> {
    for (i, r) in rows.iter().enumerate() {
        let Value::Object(m) = r else {
            return Err(format!("row {i} must be a mapping"));
        };
        for (k, v) in m {
            if v.is_array() || v.is_object() {
                return Err(format!("row {i}: `{k}` must be a scalar"));
            }
        }
        if let Some(v) = m.get("value")
            && !v.is_number()
            && !v.is_null()
        {
            return Err(format!("row {i}: `value` must be a number or null"));
        }
    }
    Ok(())
}
