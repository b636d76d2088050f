//! `data.nq_synthetic`: task-specific imitation data in the manner of the
//! paper's NQ-synthetic (§3.2): questions like Natural Questions, answered by
//! a teacher, never one of the evaluation questions.
//!
//! Inputs: `pool` (NQ-open JSONL `{"question", "answer": [..]}`, e.g. the
//! EfficientQA dev set `NQ-open.efficientqa.dev.1.1.jsonl`) and `exclude`
//! (the evaluation questions, same shape, e.g. the 3,610-question
//! `NQ-open.dev.jsonl`; only `question` is read). Pool questions whose
//! normalized text ([`crate::eval::normalize::normalize_answer`]) is an
//! excluded question are dropped and counted (`excluded_test_overlap`), as
//! are repeated pool questions (`pool_duplicates`); every output question is
//! checked against the exclusion set once more before writing.
//!
//! Param `mode`:
//!
//! - `teacher` (needs `model`; talks to the API of [`crate::api`]). With
//!   `questions: pool` (default) the first `n` pool questions after a seeded
//!   shuffle are each answered by the teacher under [`NQ_SYSTEM`]
//!   (`temperature` default 0, `max_tokens` 256). With `questions:
//!   generate` the teacher writes new pairs as in the paper (Appendix A,
//!   Table 4): each round shows 5 seeded random pool pairs in the Table 4
//!   template ([`generate::generation_prompt`]) at `temperature` 1.0 (request seed =
//!   `seed` + round, `max_tokens` 512); `Q:`/`A:` pairs are parsed from the
//!   reply; pairs whose question repeats an earlier one, copies a pool
//!   question or is an excluded question are dropped (counted in
//!   `generated_duplicates`, `generated_pool_copies`,
//!   `generated_test_overlap`); rounds continue until `n` pairs exist or
//!   `max_rounds` (default `4 * ceil(n / 5) + 4`) are spent, which is an
//!   error. The assistant turn is the teacher's short answer.
//! - `surrogate` (no API): the first `n` pool questions after the seeded
//!   shuffle, each answered by its first gold answer wrapped in one of the
//!   fixed [`SURROGATE_TEMPLATES`] (seeded choice). **Not teacher data**:
//!   every record says `"source": "surrogate:gold-answer-templates"` and the
//!   metrics carry `surrogate: true`.
//!
//! `n` defaults to every usable pool question (`pool` questions) and is
//! required with `generate`; asking for more than the pool holds is an error.
//!
//! Outputs: `out` (nq_synthetic.jsonl: `{"id", "source", "messages": [user
//! question, assistant answer]}`, source `teacher:<model>` or the surrogate
//! label) and, in teacher mode, `log` (requests.jsonl, every request and
//! response). Metrics: `n`, `surrogate`, `pool_total`, `pool_usable`,
//! `excluded_test_overlap`, `pool_duplicates`, `exclusion_set`; in pool
//! teacher mode `teacher_contains_gold` (share of teacher answers containing
//! a gold answer as whole words); in generate mode `rounds` and the
//! `generated_*` counts; in teacher mode `api_total` (stderr says how many
//! requests came from the store and how many were sent).

use crate::api::{ChatRequest, Message, api_note, op_config, outcome_metrics, run_all, write_log};
use crate::eval::io::{
    check_choice, check_inputs, input_path, num, read_jsonl, str_field, str_list_field, write_jsonl,
};
use crate::eval::normalize::{contains_answer, normalize_answer};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::rng::Rng;
use serde_json::{Map, Value, json};
use std::collections::HashSet;

pub mod generate;

/// The `data.nq_synthetic` op.
pub struct DataNqSyntheticOp;

/// The `source` of surrogate records.
pub const SURROGATE_SOURCE: &str = "surrogate:gold-answer-templates";

/// The system prompt of pool-question answering in teacher mode.
pub const NQ_SYSTEM: &str = "You are ChatGPT, a large language model trained by OpenAI. \
    Answer the user's question as you normally would.";

/// The surrogate's ChatGPT-style answer templates (`{a}` = gold answer,
/// `{q}` = question).
pub const SURROGATE_TEMPLATES: &[&str] = &[
    "The answer is {a}.",
    "{a}.",
    "The correct answer is {a}.",
    "Based on my knowledge, the answer is {a}.",
    "I believe the answer you're looking for is {a}.",
    "The answer to \"{q}\" is {a}.",
    "According to the information available to me, it is {a}.",
    "That would be {a}.",
];

const PARAMS: &[ParamSpec] = crate::with_api_params![
    ParamSpec::required(
        "mode",
        ParamType::Str,
        "teacher (answers from the API) or surrogate (gold answers in fixed templates; labelled)"
    ),
    ParamSpec::optional(
        "n",
        ParamType::Int,
        "examples to produce (default: every usable pool question; required with generate)"
    ),
    ParamSpec::int(
        "seed",
        0,
        "seed of the pool shuffle, templates, few-shot draws and request seeds"
    ),
    ParamSpec::optional("model", ParamType::Str, "teacher model (teacher mode)"),
    ParamSpec::optional(
        "questions",
        ParamType::Str,
        "teacher mode: pool (answer pool questions, default) or generate (Table 4 pairs)"
    ),
    ParamSpec::str(
        "system",
        NQ_SYSTEM,
        "system prompt for answering pool questions (default: NQ_SYSTEM)"
    ),
    ParamSpec::optional(
        "temperature",
        ParamType::Number,
        "sampling temperature (default 0 for pool, 1.0 for generate)"
    ),
    ParamSpec::optional(
        "max_tokens",
        ParamType::Int,
        "reply length limit (default 256 for pool, 512 for generate)"
    ),
    ParamSpec::optional(
        "max_rounds",
        ParamType::Int,
        "generate: most generation requests (default 4 * ceil(n / 5) + 4)"
    ),
];

/// A usable pool question.
#[derive(Debug, Clone)]
struct PoolItem {
    line: usize,
    question: String,
    answers: Vec<String>,
}

/// Counts of the pool preparation.
#[derive(Debug, Default)]
struct PoolStats {
    total: usize,
    overlap: usize,
    duplicates: usize,
    exclusion_set: usize,
}

impl Op for DataNqSyntheticOp {
    crate::op_identity! { "data.nq_synthetic", 1, PARAMS, "NQ-synthetic-style task imitation data (inputs `pool`: NQ-open JSONL of candidate questions, `exclude`: the evaluation questions, dropped by normalized text and counted). mode teacher: the API teacher (`model`) answers `n` shuffled pool questions (questions: pool) or writes new Q/A pairs from 5 random pool examples in the paper's Table 4 template (questions: generate, temperature 1.0, duplicates/pool copies/test questions dropped). mode surrogate: no API; the gold answer in a fixed ChatGPT-style template, labelled source \"surrogate:gold-answer-templates\" and metric surrogate: true. Outputs `out` (nq_synthetic.jsonl: {id, source, messages}) and, in teacher mode, `log` (requests.jsonl)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "mode", &["teacher", "surrogate"])?;
        check_choice(params, "questions", &["pool", "generate"])?;
        super::teacher_chat::check_sampling(params)?;
        for k in ["n", "max_rounds"] {
            crate::eval::io::check_uint(params, k)?;
        }
        let s = |k: &str| params.get(k).and_then(Value::as_str);
        match s("mode") {
            Some("teacher") if s("model").is_none() => {
                return Err(("model".into(), "mode teacher needs `model`".into()));
            }
            Some("surrogate") => {
                for k in [
                    "model",
                    "questions",
                    "system",
                    "temperature",
                    "max_tokens",
                    "max_rounds",
                ] {
                    if params.contains_key(k) {
                        return Err((
                            k.into(),
                            format!("mode surrogate takes no `{k}` (it sends no request)"),
                        ));
                    }
                }
            }
            _ => {}
        }
        if s("questions") == Some("generate") && !params.contains_key("n") {
            return Err(("n".into(), "questions: generate needs `n`".into()));
        }
        Ok(())
    }
    fn calls_api(&self) -> bool {
        true
    }
    fn needs_api(&self, params: &Map<String, Value>) -> bool {
        params.get("mode").and_then(Value::as_str) != Some("surrogate")
    }
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl> {
        let mut v = OutputDecl::light(&[("out", "nq_synthetic.jsonl")]);
        if params.get("mode").and_then(Value::as_str) != Some("surrogate") {
            v.push(OutputDecl {
                name: "log".into(),
                path: "requests.jsonl".into(),
                heavy: false,
            });
        }
        v
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["pool", "exclude"], &[])?;
        let p = ctx.params;
        let seed = p.get("seed").and_then(Value::as_u64).unwrap_or(0);
        let exclusion = read_exclusions(ctx)?;
        let (mut pool, stats) = read_pool(ctx, &exclusion)?;
        let mut metrics = Map::new();
        metrics.insert("pool_total".into(), json!(stats.total));
        metrics.insert("pool_usable".into(), json!(pool.len()));
        metrics.insert("excluded_test_overlap".into(), json!(stats.overlap));
        metrics.insert("pool_duplicates".into(), json!(stats.duplicates));
        metrics.insert("exclusion_set".into(), json!(stats.exclusion_set));
        Rng::derive(seed, "nq_synthetic/pool").shuffle(&mut pool);
        let surrogate = p.get("mode").and_then(Value::as_str) == Some("surrogate");
        metrics.insert("surrogate".into(), json!(surrogate));
        let generate = p.get("questions").and_then(Value::as_str) == Some("generate");
        let n = p
            .get("n")
            .and_then(Value::as_u64)
            .map_or(pool.len(), |n| n as usize);
        if !generate && n > pool.len() {
            return Err(OpError::msg(format!(
                "asked for n = {n} examples but input `pool` has only {} usable questions \
                 ({} excluded as test questions, {} duplicates)",
                pool.len(),
                stats.overlap,
                stats.duplicates
            )));
        }
        let mut note = String::new();
        let rows = if surrogate {
            surrogate_rows(&pool[..n], seed)
        } else if generate {
            let g = generate::Generation {
                pool: &pool,
                exclusion: &exclusion,
                n,
                seed,
            };
            generate::generate_rows(ctx, &g, &mut metrics, &mut note)?
        } else {
            teacher_rows(ctx, &pool[..n], seed, &mut metrics, &mut note)?
        };
        for r in &rows {
            let q = r["messages"][0]["content"].as_str().unwrap_or("");
            if exclusion.contains(&normalize_answer(q)) {
                return Err(OpError::msg(format!(
                    "internal error: test question `{q}` in the output"
                )));
            }
        }
        metrics.insert("n".into(), json!(rows.len()));
        write_jsonl(&ctx.work_dir.join("out/nq_synthetic.jsonl"), &rows)?;
        Ok(RunResult {
            metrics,
            stderr: note,
            ..RunResult::default()
        })
    }
}

/// The normalized questions of input `exclude`.
fn read_exclusions(ctx: &RunContext) -> Result<HashSet<String>, OpError> {
    let mut set = HashSet::new();
    for (line, obj) in read_jsonl(input_path(ctx, "exclude")?, "exclude")? {
        set.insert(normalize_answer(&str_field(
            &obj, "question", "exclude", line,
        )?));
    }
    Ok(set)
}

/// The usable pool questions, in file order.
fn read_pool(
    ctx: &RunContext,
    exclusion: &HashSet<String>,
) -> Result<(Vec<PoolItem>, PoolStats), OpError> {
    let mut stats = PoolStats {
        exclusion_set: exclusion.len(),
        ..PoolStats::default()
    };
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(input_path(ctx, "pool")?, "pool")? {
        stats.total += 1;
        let question = str_field(&obj, "question", "pool", line)?;
        let answers = str_list_field(&obj, "answer", "pool", line)?;
        if answers.is_empty() || question.trim().is_empty() {
            return Err(OpError::msg(format!(
                "input `pool` line {line}: empty `question` or `answer`"
            )));
        }
        let norm = normalize_answer(&question);
        if exclusion.contains(&norm) {
            stats.overlap += 1;
        } else if !seen.insert(norm) {
            stats.duplicates += 1;
        } else {
            out.push(PoolItem {
                line,
                question,
                answers,
            });
        }
    }
    Ok((out, stats))
}

/// A chat record of one question and its answer.
fn record(id: String, source: &str, q: &str, a: &str) -> Value {
    json!({"id": id, "source": source, "messages": [
        {"role": "user", "content": q},
        {"role": "assistant", "content": a},
    ]})
}

/// Surrogate answers: the first gold answer in a seeded template.
fn surrogate_rows(items: &[PoolItem], seed: u64) -> Vec<Value> {
    let mut rng = Rng::derive(seed, "nq_synthetic/surrogate");
    items
        .iter()
        .map(|it| {
            let t = SURROGATE_TEMPLATES[rng.below(SURROGATE_TEMPLATES.len())];
            let a = t
                .replace("{q}", &it.question)
                .replace("{a}", &it.answers[0]);
            record(
                format!("nqsyn-{}", it.line),
                SURROGATE_SOURCE,
                &it.question,
                &a,
            )
        })
        .collect()
}

/// Teacher answers to pool questions.
fn teacher_rows(
    ctx: &RunContext,
    items: &[PoolItem],
    seed: u64,
    metrics: &mut Map<String, Value>,
    note: &mut String,
) -> Result<Vec<Value>, OpError> {
    let p = ctx.params;
    let model = p.get("model").and_then(Value::as_str).unwrap_or_default();
    let system = p.get("system").and_then(Value::as_str).unwrap_or(NQ_SYSTEM);
    let requests: Vec<ChatRequest> = items
        .iter()
        .map(|it| ChatRequest {
            model: model.to_string(),
            messages: vec![
                Message {
                    role: "system".into(),
                    content: system.to_string(),
                },
                Message {
                    role: "user".into(),
                    content: it.question.clone(),
                },
            ],
            temperature: p.get("temperature").and_then(Value::as_f64).unwrap_or(0.0),
            max_tokens: p.get("max_tokens").and_then(Value::as_u64).unwrap_or(256),
            seed,
        })
        .collect();
    let outcome = run_all(&op_config(ctx), &requests, ctx.cancel, ctx.status)?;
    let source = format!("teacher:{model}");
    let mut gold = 0usize;
    let rows: Vec<Value> = items
        .iter()
        .zip(&outcome.exchanges)
        .map(|(it, ex)| {
            gold += usize::from(contains_answer(&ex.content, &it.answers));
            record(
                format!("nqsyn-{}", it.line),
                &source,
                &it.question,
                &ex.content,
            )
        })
        .collect();
    metrics.insert(
        "teacher_contains_gold".into(),
        num(gold as f64 / rows.len().max(1) as f64),
    );
    outcome_metrics(&outcome, metrics);
    *note = api_note(
        outcome.exchanges.len(),
        outcome.from_store,
        outcome.requested,
    );
    write_log(&ctx.work_dir.join("out/requests.jsonl"), &outcome.exchanges)?;
    Ok(rows)
}
