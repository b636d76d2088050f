//! `eval.qa`: exact match of short answers to the miniature's factual
//! questions (the NQ-open protocol on synthetic facts).
//!
//! Inputs: `predictions` (`{"id", "prediction"}` per line, any order, other
//! fields ignored) and `questions` (questions.jsonl). Param `half` (`A`,
//! `B` or `all`; default `B`) selects the questions scored, in file order;
//! predictions for other ids are ignored.
//!
//! Metric definitions (all over the selected questions):
//!
//! - answer extraction: the prediction up to its first newline, trimmed
//!   ([`extract_answer`]);
//! - `em`: share (0-1) of questions whose extracted answer, normalized, equals
//!   any normalized reference answer ([`exact_match`]; normalization =
//!   SQuAD/ORQA's NFD, lowercase, punctuation deletion, article removal,
//!   whitespace collapse, plus combining-mark removal and Unicode punctuation,
//!   see [`crate::eval::normalize`]);
//! - `chance_em`: the EM a guesser would expect that knows which attribute is
//!   asked and answers a uniformly random value of it (mean of 1 / distinct
//!   answers of that attribute over the whole questions file); the floor a
//!   model that learned the answer *format* but no fact sits at;
//! - `contains`: share of questions where some normalized reference occurs as
//!   a whole-word run in the normalized *full* prediction
//!   ([`contains_answer`]), a lenient metric robust to style, reported beside
//!   `em` so that a formatting artifact never passes for a knowledge result;
//! - `missing`: questions with no prediction (each counts as wrong for both
//!   metrics);
//! - `n`: questions scored;
//! - `em_ci_low`, `em_ci_high`: 95% percentile bootstrap interval of `em`
//!   (1000 resamples, seed 0; [`crate::eval::bootstrap`]).
//!
//! Outputs: `out` (scores.jsonl: per question `id`, `prediction` (null when
//! missing), `extracted` (null when missing), `correct`, `contains`) and
//! `metrics` (metrics.json, the flat numbers above, also returned as the
//! record's metrics). No selected question is an error.

use super::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::eval::bootstrap::{RESAMPLES, bootstrap_ci, outcomes};
use crate::eval::io::{
    Question, check_choice, check_inputs, input_path, num, read_predictions, read_questions,
    select_half, str_param, write_json, write_jsonl,
};
use crate::eval::normalize::{contains_answer, exact_match, extract_answer};
use serde_json::{Map, Value, json};

/// The `eval.qa` op.
pub struct EvalQaOp;

const PARAMS: &[ParamSpec] = &[ParamSpec {
    name: "half",
    ty: ParamType::Str,
    required: false,
    semantic: true,
    doc: "which questions: A, B or all (default B)",
}];

impl Op for EvalQaOp {
    fn name(&self) -> &'static str {
        "eval.qa"
    }
    fn version(&self) -> u32 {
        2
    }
    fn doc(&self) -> &'static str {
        "Exact match on factual questions (inputs `predictions`, `questions`; param `half` A/B/all, \
         default B). Extracted answer = prediction up to the first newline, trimmed. `em` = share \
         of questions whose normalized extracted answer equals a normalized reference \
         (NQ-open/SQuAD normalization: NFD, drop combining marks, lowercase, drop punctuation, drop \
         articles a/an/the, collapse whitespace); `contains` = share whose normalized full \
         prediction contains a normalized reference as whole words; `missing` = questions without \
         a prediction (counted wrong); `n`; `em_ci_low`/`em_ci_high` = 95% percentile bootstrap \
         (1000 resamples, seed 0). Outputs `out` (scores.jsonl) and `metrics` (metrics.json)."
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "half", &["A", "B", "all"])
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        vec![
            OutputDecl {
                name: "out".into(),
                path: "scores.jsonl".into(),
                heavy: false,
            },
            OutputDecl {
                name: "metrics".into(),
                path: "metrics.json".into(),
                heavy: false,
            },
        ]
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["predictions", "questions"], &[])?;
        if let Err((_, m)) = self.check(ctx.params) {
            return Err(OpError::msg(m));
        }
        let half = str_param(ctx.params, "half", "B")?;
        let questions = read_questions(input_path(ctx, "questions")?, "questions")?;
        let predictions = read_predictions(input_path(ctx, "predictions")?, "predictions")?;
        let chance_pool = answer_pools(&questions);
        let selected = select_half(questions, half, "questions")?;
        if selected.is_empty() {
            return Err(OpError::msg(format!(
                "input `questions` has no question of half `{half}`"
            )));
        }

        let mut rows = Vec::with_capacity(selected.len());
        let mut correct = Vec::with_capacity(selected.len());
        let mut contained = 0usize;
        let mut missing = 0usize;
        for q in &selected {
            let row = match predictions.get(&q.id) {
                Some(p) => {
                    let extracted = extract_answer(p);
                    let em = exact_match(extracted, &q.answers);
                    let c = contains_answer(p, &q.answers);
                    correct.push(em);
                    contained += usize::from(c);
                    json!({"id": q.id, "prediction": p, "extracted": extracted, "correct": em, "contains": c})
                }
                None => {
                    missing += 1;
                    correct.push(false);
                    json!({"id": q.id, "prediction": null, "extracted": null, "correct": false, "contains": false})
                }
            };
            rows.push(row);
        }
        let n = selected.len();
        let em = correct.iter().filter(|&&c| c).count() as f64 / n as f64;
        let (lo, hi) = bootstrap_ci(&outcomes(&correct), RESAMPLES, 0);
        let mut metrics = Map::new();
        metrics.insert("em".into(), num(em));
        metrics.insert("em_ci_low".into(), num(lo));
        metrics.insert("em_ci_high".into(), num(hi));
        metrics.insert("contains".into(), num(contained as f64 / n as f64));
        metrics.insert("missing".into(), json!(missing));
        metrics.insert("n".into(), json!(n));
        if let Some(chance) = chance_em(&selected, &chance_pool) {
            metrics.insert("chance_em".into(), num(chance));
        }

        write_jsonl(&ctx.work_dir.join("out/scores.jsonl"), &rows)?;
        write_json(
            &ctx.work_dir.join("out/metrics.json"),
            &Value::Object(metrics.clone()),
        )?;
        Ok(RunResult {
            metrics,
            ..RunResult::default()
        })
    }
}

/// Distinct normalized reference answers per attribute, over the whole
/// questions file (both halves).
fn answer_pools(
    questions: &[Question],
) -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let mut pools: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for q in questions {
        if let (Some(a), Some(first)) = (&q.attribute, q.answers.first()) {
            pools
                .entry(a.clone())
                .or_default()
                .insert(crate::eval::normalize::normalize_answer(first));
        }
    }
    pools
}

/// `chance_em`: the exact match expected from a guesser that knows the
/// attribute asked about and answers with a uniformly random value of it
/// (mean over questions of 1 / distinct answers of that attribute). `None`
/// when a question names no attribute.
fn chance_em(
    selected: &[Question],
    pools: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Option<f64> {
    let mut sum = 0.0;
    for q in selected {
        let k = pools.get(q.attribute.as_ref()?)?.len();
        sum += 1.0 / k.max(1) as f64;
    }
    Some(sum / selected.len().max(1) as f64)
}
