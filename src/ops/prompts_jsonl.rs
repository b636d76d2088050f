//! `prompts.jsonl`: turns any JSONL dataset into the prompts file that
//! `lm.generate` reads, by JSON pointers (RFC 6901) into each record.
//!
//! Input `data` (JSONL). Params: `id` (pointer to the record's id; default
//! `/id`; numbers are written as text), exactly one of `text` (pointer to a
//! raw prompt, used as is: a base model's continuation prompt such as
//! HumanEval's `/prompt` or RealToxicityPrompts' `/prompt/text`) or `user`
//! (pointer to a user message, rendered with the model's chat template: the
//! Koala test set's `/prompt`), optional `where` (a pointer that must hold
//! `true` for the record to be kept, e.g. RTP's `/challenging`) and `limit`
//! (the first N kept records; 0 = all) and `template` (a string holding
//! `{text}`, which is replaced by the pointed field: e.g. the instruction of
//! the instruction-tuned HumanEval protocol around HumanEval's `/prompt`,
//! given with `user`; default: the field as is). Output `out` (prompts.jsonl): one
//! `{"id", "text"}` or `{"id", "prompt"}` per kept record, in input order.
//! A record without the pointed field is an error naming the file, line and
//! pointer; duplicate ids are an error too (later ops join by id).

use super::lm_common::input;
use crate::eval::io::write_jsonl;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// The `prompts.jsonl` op.
pub struct PromptsJsonlOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "id",
        ParamType::Str,
        "JSON pointer to the id (default `/id`)",
    ),
    ParamSpec::optional(
        "text",
        ParamType::Str,
        "JSON pointer to a raw prompt (used as is)",
    ),
    ParamSpec::optional(
        "user",
        ParamType::Str,
        "JSON pointer to a user message (rendered with the chat template)",
    ),
    ParamSpec::optional(
        "where",
        ParamType::Str,
        "JSON pointer that must hold `true` for a record to be kept",
    ),
    ParamSpec::optional(
        "template",
        ParamType::Str,
        "wrap the field: `{text}` in this string is replaced by it (default: the field as is)",
    ),
    ParamSpec::int("limit", 0, "keep the first N records (default 0 = all)"),
];

fn pointer_ok(p: Option<&Value>) -> bool {
    match p {
        None => true,
        Some(Value::String(s)) => s.is_empty() || s.starts_with('/'),
        Some(_) => false,
    }
}

impl Op for PromptsJsonlOp {
    crate::op_identity! { "prompts.jsonl", 1, PARAMS, "Prompts from any JSONL by JSON pointers (input `data`; params `id`, `text` or `user`, `where`, `limit`, `template` with `{text}`); output `out` prompts.jsonl for lm.generate." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        match (params.get("text"), params.get("user")) {
            (Some(_), Some(_)) => {
                return Err(("user".into(), "give `text` or `user`, not both".into()));
            }
            (None, None) => {
                return Err((
                    "text".into(),
                    "give `text` (a raw prompt) or `user` (a chat message)".into(),
                ));
            }
            _ => {}
        }
        if let Some(t) = params.get("template")
            && !t.as_str().is_some_and(|t| t.contains("{text}"))
        {
            return Err((
                "template".into(),
                "`template` must be a string holding `{text}`".into(),
            ));
        }
        for k in ["id", "text", "user", "where"] {
            if !pointer_ok(params.get(k)) {
                return Err((
                    k.into(),
                    format!("`{k}` must be a JSON pointer such as `/prompt/text`"),
                ));
            }
        }
        Ok(())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "prompts.jsonl")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let path = input(ctx, "data")?;
        let get = |k: &str| ctx.params.get(k).and_then(Value::as_str);
        let id_ptr = get("id").unwrap_or("/id");
        let (field, ptr) = match (get("text"), get("user")) {
            (Some(t), _) => ("text", t),
            (None, Some(u)) => ("prompt", u),
            (None, None) => return Err(OpError::msg("param `text` or `user` is required")),
        };
        let limit = ctx.params.get("limit").and_then(Value::as_u64).unwrap_or(0) as usize;
        let text = std::fs::read_to_string(path)
            .map_err(|e| OpError::msg(format!("input `data` ({}): {e}", path.display())))?;
        let mut rows = Vec::new();
        let mut seen = HashSet::new();
        let mut skipped = 0usize;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            if limit > 0 && rows.len() == limit {
                break;
            }
            let at = |m: String| OpError::msg(format!("input `data` line {}: {m}", i + 1));
            let v: Value =
                serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
            if let Some(w) = get("where")
                && v.pointer(w) != Some(&Value::Bool(true))
            {
                skipped += 1;
                continue;
            }
            let id = match v.pointer(id_ptr) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                _ => {
                    return Err(at(format!(
                        "no string or number at `{id_ptr}` (param `id`)"
                    )));
                }
            };
            let body = v
                .pointer(ptr)
                .and_then(Value::as_str)
                .ok_or_else(|| at(format!("no string at `{ptr}` (param `{field}`)")))?;
            if !seen.insert(id.clone()) {
                return Err(at(format!("duplicate id `{id}`")));
            }
            let body = match get("template") {
                Some(t) => t.replace("{text}", body),
                None => body.to_string(),
            };
            rows.push(json!({"id": id, field: body}));
        }
        if rows.is_empty() {
            return Err(OpError::msg("input `data`: no record was kept"));
        }
        write_jsonl(&ctx.work_dir.join("out/prompts.jsonl"), &rows)?;
        let mut metrics = Map::new();
        metrics.insert("prompts".into(), json!(rows.len()));
        metrics.insert("skipped".into(), json!(skipped));
        Ok(RunResult {
            metrics,
            ..Default::default()
        })
    }
}
