//! `lm.generate`: a model's answers to a set of prompts.
//!
//! Inputs: `model` (a model directory or GGUF file, see
//! [`crate::model::load`]) and `prompts` (JSON lines, each with an `id` and
//! one of `messages` (rendered with the model's chat template and its
//! generation prompt), `prompt` (one user message, rendered the same way)
//! or `text` (used as is, e.g. a few-shot prompt; the model's BOS token is
//! put first when it uses one)). Decoding is batched with a KV cache: greedy
//! when `temperature` is 0, else sampled from `seed`; it stops at the
//! model's end-of-turn or end-of-document token, at any `stop` string (cut
//! off, not included), or after `max_new_tokens`. The prediction is
//! trimmed of surrounding whitespace unless `trim: false` (code). Output
//! `out` (`predictions.jsonl`): `{"id", "prediction", "tokens", "finish"}`
//! per prompt, in input order.

use super::lm_common::{self, input, model_err, read_jsonl};
use crate::model::generate::{Finish, GenConfig, generate};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `lm.generate` op.
pub struct LmGenerateOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::int("max_new_tokens", 48, "most new tokens per prompt"),
    ParamSpec::optional(
        "temperature",
        ParamType::Number,
        "0 = greedy (default), else sampling temperature",
    ),
    ParamSpec::int("seed", 0, "sampling seed"),
    ParamSpec::optional("stop", ParamType::List, "stop strings (default [\"\\n\"])"),
    ParamSpec::optional(
        "trim",
        ParamType::Bool,
        "strip leading and trailing whitespace from each prediction (default true; false for code, whose indentation matters)",
    ),
    ParamSpec::int(
        "batch_size",
        32,
        "prompts decoded together (default 32; padding can change float rounding, so it is in the key)",
    ),
    lm_common::DEVICE,
    lm_common::DTYPE,
    lm_common::MAX_BATCH_TOKENS,
];

impl Op for LmGenerateOp {
    crate::op_identity! { "lm.generate", 1, PARAMS, "Generates answers (inputs `model` directory, `prompts` JSON lines with `id` and `messages` or `text`); output `out` predictions.jsonl {id, prediction, tokens, finish}." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        lm_common::check_placement(params)?;
        if let Some(Value::Array(stops)) = params.get("stop")
            && stops
                .iter()
                .any(|s| !s.is_string() || s.as_str() == Some(""))
        {
            return Err((
                "stop".into(),
                "`stop` must be a list of non-empty strings".into(),
            ));
        }
        if let Some(t) = params.get("temperature").and_then(Value::as_f64)
            && t < 0.0
        {
            return Err((
                "temperature".into(),
                "`temperature` must not be negative".into(),
            ));
        }
        param::check_positive(PARAMS, params, &["batch_size"])
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "predictions.jsonl")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let dir = input(ctx, "model")?.clone();
        let records: Vec<Value> = read_jsonl(input(ctx, "prompts")?, "prompts")?;
        let stops: Vec<String> = match ctx.params.get("stop") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            _ => vec!["\n".into()],
        };
        let trim = ctx
            .params
            .get("trim")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let cfg = GenConfig {
            max_new_tokens: param::int(PARAMS, ctx.params, "max_new_tokens") as usize,
            temperature: ctx
                .params
                .get("temperature")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            batch_size: param::int(PARAMS, ctx.params, "batch_size") as usize,
            seed: param::int(PARAMS, ctx.params, "seed"),
            max_batch_tokens: lm_common::max_batch_tokens(ctx),
            ..Default::default()
        };
        let placed = lm_common::place(ctx)?;
        let dtype = lm_common::dtype(ctx)?;
        let (lines, metrics) = lm_common::on_threads(ctx, || {
            let device = placed.device.clone();
            let loaded =
                crate::model::load::load_as(&dir, false, &device, dtype).map_err(model_err)?;
            let tok = &loaded.tokenizer;
            let mut ids = Vec::with_capacity(records.len());
            let mut prompts = Vec::with_capacity(records.len());
            for (i, r) in records.iter().enumerate() {
                let id = r.get("id").cloned().ok_or_else(|| {
                    OpError::msg(format!("input `prompts` record {}: no `id`", i + 1))
                })?;
                let prompt = match (
                    r.get("text").and_then(Value::as_str),
                    r.get("prompt").and_then(Value::as_str),
                ) {
                    (Some(t), _) => tok.encode_prompt(t),
                    (None, Some(p)) => {
                        let msgs = [crate::model::tokenizer::Message {
                            role: "user".into(),
                            content: p.into(),
                        }];
                        tok.encode_chat_prompt(&msgs)
                    }
                    (None, None) => {
                        let msgs = lm_common::messages(r, "prompts", i + 1)?;
                        tok.encode_chat_prompt(&msgs)
                    }
                };
                ids.push(id);
                prompts.push(prompt.map_err(model_err)?);
            }
            // Longest first, so batches hold similar lengths; results are
            // written back in input order.
            let mut order: Vec<usize> = (0..prompts.len()).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
            let sorted: Vec<Vec<u32>> = order.iter().map(|&i| prompts[i].clone()).collect();
            let start = std::time::Instant::now();
            let cancel = ctx.cancel;
            let mut cancelled = false;
            let gens = generate(
                loaded.model.as_ref(),
                &sorted,
                &tok.stop_ids(),
                &cfg,
                |row| {
                    if cancel.is_cancelled() {
                        cancelled = true;
                        return true;
                    }
                    let text = tok.decode(row).unwrap_or_default();
                    stops.iter().any(|s| text.contains(s.as_str()))
                },
            )
            .map_err(model_err)?;
            if cancelled || cancel.is_cancelled() {
                return Err(OpError::Cancelled);
            }
            let secs = start.elapsed().as_secs_f64().max(1e-9);
            let mut out = vec![String::new(); prompts.len()];
            let mut new_tokens = 0usize;
            let mut by_finish = [0usize; 3];
            for (g, &i) in gens.iter().zip(&order) {
                let mut text = tok.decode(&g.ids).map_err(model_err)?;
                for s in &stops {
                    if let Some(p) = text.find(s.as_str()) {
                        text.truncate(p);
                    }
                }
                let finish = match g.finish {
                    Finish::StopToken => "stop_token",
                    Finish::StopString => "stop_string",
                    Finish::Length => "length",
                };
                by_finish[g.finish as usize] += 1;
                new_tokens += g.ids.len();
                let prediction = if trim { text.trim() } else { text.as_str() };
                let line = json!({"id": ids[i], "prediction": prediction, "tokens": g.ids.len(), "finish": finish});
                out[i] = line.to_string();
            }
            let m = json!({
                "prompts": prompts.len(),
                "new_tokens": new_tokens,
                "tokens_per_s": (new_tokens as f64 / secs).round(),
                "finish_length": by_finish[Finish::Length as usize],
            });
            Ok((out, lm_common::metrics_of(&m)))
        })?;
        let mut text = lines.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(ctx.work_dir.join("out").join("predictions.jsonl"), text)?;
        Ok(RunResult {
            device: Some(placed.described),
            metrics,
            ..Default::default()
        })
    }
}
