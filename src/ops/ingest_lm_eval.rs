//! `ingest.lm_eval`: one task of an lm-evaluation-harness results file
//! (`results_<date>.json`, e.g. from a vLLM run elsewhere) as a result of
//! this pipeline, with its provenance, so a report can place it beside
//! repro's own numbers.
//!
//! Param `path` names the file (relative to the project root; its content,
//! not its name, enters the key, as with the `file` op). `task` picks the
//! task (optional when the file holds one) and `filter` the lm-eval filter
//! (optional when the task has `none` or a single filter). The record's
//! metrics are the task's metrics under that filter with the `,filter`
//! suffix dropped (`exact_match`, `exact_match_stderr`; lm-eval's "N/A"
//! stderr is left out), `n` (effective samples) and `n_shot`. The output
//! `out` (metrics.json) holds those numbers and the file's provenance:
//! model, model args, lm-eval version, git hash, date, the run's `config`
//! and the task's config. See [`crate::eval::lm_eval`] for the format.

use crate::eval::io::write_json;
use crate::eval::lm_eval;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `ingest.lm_eval` op.
pub struct IngestLmEvalOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "path",
        ParamType::Str,
        "the lm-eval results JSON (its content, not its name, enters the key)",
    )
    .not_semantic(),
    ParamSpec::optional(
        "task",
        ParamType::Str,
        "the task to read (default: the file's only task)",
    ),
    ParamSpec::optional(
        "filter",
        ParamType::Str,
        "the lm-eval filter of the metrics (default: `none`, or the task's only filter)",
    ),
];

impl Op for IngestLmEvalOp {
    crate::op_identity! { "ingest.lm_eval", 1, PARAMS, "One task of an lm-evaluation-harness results JSON (param `path`; `task`, `filter` pick the entry) as this node's metrics (`exact_match`, `exact_match_stderr`, `n`, `n_shot`, the `,filter` suffix dropped), with the file's provenance (model, lm-eval version, config, task config) in output `out` (metrics.json)." }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "metrics.json")])
    }
    fn implicit_inputs(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        match params.get("path").and_then(Value::as_str) {
            Some(p) => vec![("results".into(), p.to_string())],
            None => Vec::new(),
        }
    }
    fn takes_inputs(&self) -> bool {
        false
    }
    fn is_ingest(&self) -> bool {
        true
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let path = ctx
            .inputs
            .get("results")
            .ok_or_else(|| OpError::msg("no `results` input"))?;
        let text = std::fs::read_to_string(path)
            .map_err(|e| OpError::msg(format!("reading the lm-eval results file: {e}")))?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            OpError::msg(format!(
                "the lm-eval results file is not JSON: line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })?;
        let param = |k: &str| ctx.params.get(k).and_then(Value::as_str);
        let got = lm_eval::ingest(&doc, param("task"), param("filter")).map_err(OpError::msg)?;
        let out = json!({
            "kind": "lm-eval",
            "task": got.task,
            "filter": got.filter,
            "metrics": got.metrics,
            "provenance": got.provenance,
        });
        write_json(&ctx.work_dir.join("out").join("metrics.json"), &out)?;
        Ok(RunResult {
            stdout: format!(
                "lm-eval task {} (filter {}) of model {}\n",
                got.task, got.filter, got.provenance["model_name"]
            ),
            metrics: got.metrics,
            ..RunResult::default()
        })
    }
}
