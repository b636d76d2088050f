//! `eval.nq`: Natural Questions (NQ-open) exact match of a model, few-shot.
//!
//! Inputs: `model` (a model directory or file the model loader accepts),
//! `questions` (NQ-open JSONL, `{"question", "answer": [...]}`; the 3,610
//! question split is `data/nq_open/NQ-open.dev.jsonl`) and `pool` (the
//! few-shot examples, same format; `data/nq_open/NQ-open.efficientqa.dev.1.1.jsonl`,
//! disjoint from the test questions).
//!
//! Protocol ([`crate::eval::nq`] has the exact prompt): `shots` examples per
//! question drawn from the pool with a per-question seed; `format: plain`
//! (default) is the `Answer these questions:` / `Q: ...?` / `A: ...` text
//! prompt, `format: chat` puts each example in a user and an assistant turn
//! of the model's chat template. Greedy decoding, at most `max_new_tokens`,
//! stopping at the first newline; the answer is the continuation up to its
//! first newline, trimmed.
//!
//! Metric definitions:
//! - `em`: share (0-1) of evaluated questions whose answer equals any
//!   reference under the ORQA normalization (NFD, lowercase, ASCII
//!   punctuation deleted, `a`/`an`/`the` dropped, whitespace collapsed;
//!   [`crate::eval::normalize::normalize_answer_orqa`]);
//! - `em_ci_low`, `em_ci_high`: 95% percentile bootstrap interval (1000
//!   resamples, seed 0);
//! - `n`: questions evaluated: the first `limit` of the file (all when
//!   `limit` is 0 or absent), so a smaller run is a prefix of a larger one;
//! - `correct`, `shots`, `truncated_shots` (questions whose prompt lost
//!   examples to fit the model's context).
//!
//! Outputs: `predictions` (predictions.jsonl: per question its index,
//! question, references, raw continuation, extracted answer, `correct` and
//! the number of examples in its prompt) and `metrics` (metrics.json).

use super::lm_common::{self, input, model_err};
use crate::eval::bootstrap::{RESAMPLES, bootstrap_ci, outcomes};
use crate::eval::io::{num, write_jsonl};
use crate::eval::nq::{self, NqQuestion};
use crate::model::generate::{GenConfig, generate};
use crate::model::tokenizer::Message;
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `eval.nq` op.
pub struct EvalNqOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::int(
        "shots",
        3,
        "few-shot examples per question (default 3, the paper's Figure 4 setting)",
    ),
    ParamSpec::int(
        "limit",
        0,
        "evaluate the first N questions (default 0 = all)",
    ),
    ParamSpec::optional(
        "format",
        ParamType::Str,
        "`plain` (default: Q:/A: text) or `chat` (examples as chat turns)",
    ),
    ParamSpec::int("seed", 0, "seed of the per-question example draw"),
    ParamSpec::int("max_new_tokens", 24, "most tokens generated per answer"),
    ParamSpec::int(
        "batch_size",
        8,
        "prompts decoded together (default 8; padding can change float rounding)",
    ),
    lm_common::DEVICE,
    lm_common::DTYPE,
    lm_common::MAX_BATCH_TOKENS,
];

impl Op for EvalNqOp {
    crate::op_identity! { "eval.nq", 1, PARAMS, "NQ-open exact match, few-shot (inputs `model`, `questions`, `pool`); outputs `predictions` (predictions.jsonl) and `metrics` (metrics.json: em with bootstrap CI)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        lm_common::check_placement(params)?;
        if let Some(f) = params.get("format")
            && !matches!(f.as_str(), Some("plain" | "chat"))
        {
            return Err(("format".into(), "`format` must be `plain` or `chat`".into()));
        }
        param::check_positive(PARAMS, params, &["batch_size", "max_new_tokens"])
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[
            ("predictions", "predictions.jsonl"),
            ("metrics", "metrics.json"),
        ])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let model_path = input(ctx, "model")?.clone();
        let mut questions = nq::read_questions(input(ctx, "questions")?)?;
        let pool = nq::read_questions(input(ctx, "pool")?)?;
        let limit = param::int(PARAMS, ctx.params, "limit") as usize;
        if limit > 0 {
            questions.truncate(limit);
        }
        if questions.is_empty() {
            return Err(OpError::msg("input `questions` holds no question"));
        }
        let shots = param::int(PARAMS, ctx.params, "shots") as usize;
        if shots > pool.len() {
            return Err(OpError::msg(format!(
                "`shots` is {shots} but input `pool` holds only {} questions",
                pool.len()
            )));
        }
        let seed = param::int(PARAMS, ctx.params, "seed");
        let chat = ctx.params.get("format").and_then(Value::as_str) == Some("chat");
        let cfg = GenConfig {
            max_new_tokens: param::int(PARAMS, ctx.params, "max_new_tokens") as usize,
            temperature: 0.0,
            batch_size: param::int(PARAMS, ctx.params, "batch_size") as usize,
            seed: 0,
            max_batch_tokens: lm_common::max_batch_tokens(ctx),
            ..Default::default()
        };
        let placed = lm_common::place(ctx)?;
        let dtype = lm_common::dtype(ctx)?;
        let (rows, correct, truncated) = lm_common::on_threads(ctx, || {
            let device = placed.device.clone();
            let loaded = crate::model::load::load_as(&model_path, false, &device, dtype)
                .map_err(model_err)?;
            let tok = &loaded.tokenizer;
            let max_pos = loaded.model.max_positions().unwrap_or(1 << 20);
            let room = max_pos.saturating_sub(cfg.max_new_tokens).max(1);
            let mut prompts = Vec::with_capacity(questions.len());
            let mut used = Vec::with_capacity(questions.len());
            let mut truncated = 0usize;
            for (i, q) in questions.iter().enumerate() {
                let mut ex = nq::shots_for(&pool, q, i, shots, seed);
                let ids = loop {
                    let text = if chat {
                        tok.render_chat(&chat_messages(&ex, q), true)
                            .map_err(model_err)?
                    } else {
                        nq::plain_prompt(&ex, q)
                    };
                    let ids = tok.encode_prompt(&text).map_err(model_err)?;
                    if ids.len() < room || ex.is_empty() {
                        break ids;
                    }
                    ex.pop();
                };
                if ex.len() < shots {
                    truncated += 1;
                }
                if ids.len() >= room {
                    return Err(OpError::msg(format!(
                        "question {} does not fit the model's context of {max_pos} tokens \
                         even without examples",
                        i + 1
                    )));
                }
                used.push(ex.len());
                prompts.push(ids);
            }
            let total = prompts.len();
            let mut order: Vec<usize> = (0..total).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].len()));
            let sorted: Vec<Vec<u32>> = order.iter().map(|&i| prompts[i].clone()).collect();
            let cancel = ctx.cancel;
            let mut done = 0usize;
            let mut outputs: Vec<String> = Vec::with_capacity(total);
            for chunk in sorted.chunks(cfg.batch_size.max(1) * 4) {
                if cancel.is_cancelled() {
                    return Err(OpError::Cancelled);
                }
                let gens = generate(loaded.model.as_ref(), chunk, &tok.stop_ids(), &cfg, |row| {
                    cancel.is_cancelled() || tok.decode(row).is_ok_and(|t| t.contains('\n'))
                })
                .map_err(model_err)?;
                for g in gens {
                    outputs.push(tok.decode(&g.ids).map_err(model_err)?);
                }
                done += chunk.len();
                (ctx.status)(&format!("{done}/{total} questions"));
            }
            if cancel.is_cancelled() {
                return Err(OpError::Cancelled);
            }
            let mut raw = vec![String::new(); total];
            for (text, &i) in outputs.into_iter().zip(&order) {
                raw[i] = text;
            }
            let mut rows = Vec::with_capacity(total);
            let mut correct = Vec::with_capacity(total);
            for (i, q) in questions.iter().enumerate() {
                let answer = nq::extract(&raw[i]).to_string();
                let ok = nq::is_correct(&answer, &q.answers);
                correct.push(ok);
                rows.push(json!({
                    "index": i,
                    "question": q.question,
                    "answers": q.answers,
                    "continuation": raw[i],
                    "prediction": answer,
                    "correct": ok,
                    "shots": used[i],
                }));
            }
            Ok((rows, correct, truncated))
        })?;
        let n = correct.len();
        let hits = correct.iter().filter(|&&c| c).count();
        let em = hits as f64 / n as f64;
        let (lo, hi) = bootstrap_ci(&outcomes(&correct), RESAMPLES, 0);
        let mut metrics = Map::new();
        metrics.insert("em".into(), num(em));
        metrics.insert("em_ci_low".into(), num(lo));
        metrics.insert("em_ci_high".into(), num(hi));
        metrics.insert("correct".into(), json!(hits));
        metrics.insert("n".into(), json!(n));
        metrics.insert("shots".into(), json!(shots));
        metrics.insert("truncated_shots".into(), json!(truncated));
        write_jsonl(&ctx.work_dir.join("out/predictions.jsonl"), &rows)?;
        let mut result = crate::op::io::finish_with_metrics(ctx, metrics)?;
        result.device = Some(placed.described);
        Ok(result)
    }
}

/// The examples and the question as chat turns.
fn chat_messages(shots: &[&NqQuestion], q: &NqQuestion) -> Vec<Message> {
    let mut m = Vec::with_capacity(2 * shots.len() + 1);
    for s in shots {
        m.push(Message {
            role: "user".into(),
            content: format!("Q: {}", nq::as_question(&s.question)),
        });
        m.push(Message {
            role: "assistant".into(),
            content: s.answers[0].clone(),
        });
    }
    m.push(Message {
        role: "user".into(),
        content: format!("Q: {}", nq::as_question(&q.question)),
    });
    m
}
