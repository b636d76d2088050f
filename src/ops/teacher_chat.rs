//! `teacher.chat`: answers a JSONL of prompts with a teacher model through
//! an OpenAI-compatible chat API (see [`crate::api`] for the environment,
//! the request store and offline replay).
//!
//! Input `prompts`: one prompt per line, in any shape
//! [`crate::api::records::read_prompts`] accepts (`{"id", "prompt"}` as in
//! the Koala test set, or chat records with `messages`). Params: `model`
//! (required), `system` (a system prompt prepended to every conversation),
//! `temperature` (default 0), `max_tokens` (default 1024), `seed` (sent as
//! the API's `seed`, default 0), `limit` (answer only the first N prompts),
//! and the API params of [`crate::with_api_params`].
//!
//! Outputs: `out` (responses.jsonl: the normalized chat record
//! `{"id", "source": "teacher:<model>", "messages"}` per prompt, in input
//! order: the prompt's user/assistant turns (system turns dropped) followed
//! by the teacher's `assistant` turn) and `log` (requests.jsonl: every
//! request and raw response, [`crate::api::store::Exchange`]). Metrics: `n`,
//! `truncated` (answers cut by `max_tokens`, `finish_reason` = `length`),
//! `mean_chars`, `api_total`; stderr says how many requests came from the
//! store and how many were sent ([`crate::api::api_note`]).

use crate::api::records::read_prompts;
use crate::api::{ChatRequest, Message, api_note, op_config, outcome_metrics, run_all, write_log};
use crate::eval::io::{check_inputs, input_path, num, write_jsonl};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `teacher.chat` op.
pub struct TeacherChatOp;

const PARAMS: &[ParamSpec] = crate::with_api_params![
    ParamSpec::required(
        "model",
        ParamType::Str,
        "teacher model name as the API knows it (e.g. gpt-3.5-turbo)"
    ),
    ParamSpec::optional(
        "system",
        ParamType::Str,
        "system prompt prepended to every conversation (default none)"
    ),
    ParamSpec::optional(
        "temperature",
        ParamType::Number,
        "sampling temperature (default 0)"
    ),
    ParamSpec::optional(
        "max_tokens",
        ParamType::Int,
        "answer length limit in tokens (default 1024)"
    ),
    ParamSpec::optional(
        "seed",
        ParamType::Int,
        "the API's sampling seed (default 0)"
    ),
    ParamSpec::optional(
        "limit",
        ParamType::Int,
        "answer only the first N prompts (default all)"
    ),
];

/// Checks `temperature` >= 0 and positive `max_tokens`, for the API ops.
pub fn check_sampling(params: &Map<String, Value>) -> Result<(), (String, String)> {
    if let Some(t) = params.get("temperature").and_then(Value::as_f64)
        && !(0.0..=2.0).contains(&t)
    {
        return Err((
            "temperature".into(),
            format!("`temperature` must be in 0-2, found {t}"),
        ));
    }
    for k in [
        "max_tokens",
        "seed",
        "limit",
        "concurrency",
        "retries",
        "backoff_ms",
        "timeout_s",
    ] {
        crate::eval::io::check_uint(params, k)?;
    }
    if params.get("max_tokens").and_then(Value::as_u64) == Some(0) {
        return Err(("max_tokens".into(), "`max_tokens` must be positive".into()));
    }
    Ok(())
}

impl Op for TeacherChatOp {
    crate::op_identity! { "teacher.chat", 1, PARAMS, "Answers prompts with a teacher model over an OpenAI-compatible chat API (input `prompts`: {id, prompt|instruction|question|messages}; params `model`, `system`, `temperature` (0), `max_tokens` (1024), `seed` (0), `limit`, `provider`, `concurrency`, `retries`, `backoff_ms`, `timeout_s`). Base URL from REPRO_API_BASE or OPENAI_BASE_URL, key from REPRO_API_KEY or OPENAI_API_KEY; every request is kept in the request store (cache/api/), so re-runs are free and work offline. Outputs `out` (responses.jsonl: {id, source: \"teacher:<model>\", messages}) and `log` (requests.jsonl). Metrics: n, truncated (finish_reason length), mean_chars, api_total." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_sampling(params)
    }
    fn calls_api(&self) -> bool {
        true
    }
    fn needs_api(&self, _params: &Map<String, Value>) -> bool {
        true
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "responses.jsonl"), ("log", "requests.jsonl")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["prompts"], &[])?;
        let p = ctx.params;
        let model = p
            .get("model")
            .and_then(Value::as_str)
            .ok_or_else(|| OpError::msg("teacher.chat needs the param `model`"))?;
        let system = p.get("system").and_then(Value::as_str);
        let mut prompts = read_prompts(input_path(ctx, "prompts")?, "prompts")?;
        if let Some(l) = p.get("limit").and_then(Value::as_u64) {
            prompts.truncate(l as usize);
        }
        if prompts.is_empty() {
            return Err(OpError::msg("input `prompts` has no prompts"));
        }
        let requests: Vec<ChatRequest> = prompts
            .iter()
            .map(|pr| {
                let mut messages = Vec::with_capacity(pr.messages.len() + 1);
                if let Some(s) = system {
                    messages.push(Message {
                        role: "system".into(),
                        content: s.to_string(),
                    });
                }
                messages.extend(pr.messages.iter().cloned());
                ChatRequest {
                    model: model.to_string(),
                    messages,
                    temperature: p.get("temperature").and_then(Value::as_f64).unwrap_or(0.0),
                    max_tokens: p.get("max_tokens").and_then(Value::as_u64).unwrap_or(1024),
                    seed: p.get("seed").and_then(Value::as_u64).unwrap_or(0),
                }
            })
            .collect();
        let cfg = op_config(ctx);
        let outcome = run_all(&cfg, &requests, ctx.cancel, ctx.status)?;

        let source = format!("teacher:{model}");
        let mut rows = Vec::with_capacity(prompts.len());
        let (mut truncated, mut chars) = (0usize, 0usize);
        for (pr, ex) in prompts.iter().zip(&outcome.exchanges) {
            let mut messages: Vec<Message> = pr
                .messages
                .iter()
                .filter(|m| m.role != "system")
                .cloned()
                .collect();
            messages.push(Message {
                role: "assistant".into(),
                content: ex.content.clone(),
            });
            truncated += usize::from(ex.finish_reason.as_deref() == Some("length"));
            chars += ex.content.chars().count();
            rows.push(json!({"id": pr.id, "source": source, "messages": messages}));
        }
        write_jsonl(&ctx.work_dir.join("out/responses.jsonl"), &rows)?;
        write_log(&ctx.work_dir.join("out/requests.jsonl"), &outcome.exchanges)?;
        let mut metrics = Map::new();
        metrics.insert("n".into(), json!(rows.len()));
        metrics.insert("truncated".into(), json!(truncated));
        metrics.insert("mean_chars".into(), num(chars as f64 / rows.len() as f64));
        outcome_metrics(&outcome, &mut metrics);
        Ok(RunResult {
            metrics,
            stderr: api_note(rows.len(), outcome.from_store, outcome.requested),
            ..RunResult::default()
        })
    }
}
