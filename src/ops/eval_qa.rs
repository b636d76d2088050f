//! `eval.qa`: exact match of short answers to the miniature's factual
//! questions (the NQ-open protocol on synthetic facts).
//!
//! Inputs: `predictions` (`{"id", "prediction"}` per line, any order, other
//! fields ignored) and `questions` (questions.jsonl). Param `half` (`P`,
//! `A`, `B` or `all`; default `B`) selects the questions scored, in file
//! order; predictions for other ids are ignored. Param `match` (`exact`,
//! the default, or `prefix`) chooses how `em` judges an answer.
//!
//! Metric definitions (all over the selected questions):
//!
//! - answer extraction: the prediction up to its first newline, then up to
//!   a following `Question:`/`Q:`, then up to the end of its first sentence,
//!   trimmed ([`extract_short_answer`]), so neither a few-shot page the model
//!   continues nor a sentence after the answer makes it wrong by
//!   construction;
//! - `em` with `match: exact`: share (0-1) of questions whose extracted
//!   answer, normalized, equals any normalized reference answer
//!   ([`exact_match`]; normalization = SQuAD/ORQA's NFD, lowercase,
//!   punctuation deletion, article removal, whitespace collapse, plus
//!   combining-mark removal and Unicode punctuation, see
//!   [`crate::eval::normalize`]); with `match: prefix` (a cloze probe such as
//!   "Ada Moreno was born in"): share whose normalized prediction *begins*
//!   with a normalized reference's words ([`starts_with_answer`]);
//! - `majority_em`: the EM of always answering, per attribute, the value
//!   most common among half A's answers (the facts the task imitation data
//!   teaches; ties to the alphabetically first normalized value): the floor
//!   a model reaches that learned the answer format and the training
//!   answers' distribution, but no held-out fact (absent when the questions
//!   file has no half A);
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

use crate::eval::bootstrap::{RESAMPLES, bootstrap_ci, outcomes};
use crate::eval::io::{
    Question, check_choice, check_inputs, input_path, num, read_predictions, read_questions,
    select_half, write_jsonl,
};
use crate::eval::normalize::{
    contains_answer, exact_match, extract_short_answer, normalize_answer, starts_with_answer,
};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, RunContext, RunResult};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The `eval.qa` op.
pub struct EvalQaOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::str("half", "B", "which questions: P (public), A, B or all"),
    ParamSpec::str(
        "match",
        "exact",
        "exact (the extracted answer equals a reference; default) or prefix (the prediction begins with a reference, for cloze probes)",
    ),
];

impl Op for EvalQaOp {
    // 3: answers are cut at a following `Question:` and at the end of
    //    the first sentence too; `match`; `majority_em`.
    crate::op_identity! { "eval.qa", 3, PARAMS, "Exact match on factual questions (inputs `predictions`, `questions`; param `half` P/A/B/all, default B; `match` exact/prefix). Extracted answer = prediction up to the first newline, a following `Question:`, or the end of the first sentence, trimmed. `em` = share of questions whose normalized extracted answer equals a normalized reference (prefix: whose normalized prediction begins with one); `majority_em` = EM of the most common half-A value per attribute (NQ-open/SQuAD normalization: NFD, drop combining marks, lowercase, drop punctuation, drop articles a/an/the, collapse whitespace); `contains` = share whose normalized full prediction contains a normalized reference as whole words; `missing` = questions without a prediction (counted wrong); `n`; `em_ci_low`/`em_ci_high` = 95% percentile bootstrap (1000 resamples, seed 0). Outputs `out` (scores.jsonl) and `metrics` (metrics.json)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "half", &["P", "A", "B", "all"])?;
        check_choice(params, "match", &["exact", "prefix"])
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "scores.jsonl"), ("metrics", "metrics.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["predictions", "questions"], &[])?;
        let half = param::str(PARAMS, ctx.params, "half");
        let prefix = param::str(PARAMS, ctx.params, "match") == "prefix";
        let questions = read_questions(input_path(ctx, "questions")?, "questions")?;
        let predictions = read_predictions(input_path(ctx, "predictions")?, "predictions")?;
        let chance_pool = answer_pools(&questions);
        let majority = majority_values(&questions);
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
                    let extracted = extract_short_answer(p);
                    let em = if prefix {
                        starts_with_answer(p, &q.answers)
                    } else {
                        exact_match(extracted, &q.answers)
                    };
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
        if let Some(m) = majority_em(&selected, &majority) {
            metrics.insert("majority_em".into(), num(m));
        }

        write_jsonl(&ctx.work_dir.join("out/scores.jsonl"), &rows)?;
        crate::op::io::finish_with_metrics(ctx, metrics)
    }
}

/// Per attribute, the normalized value most common among half A's answers
/// (ties to the alphabetically first).
fn majority_values(questions: &[Question]) -> BTreeMap<String, String> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for q in questions.iter().filter(|q| q.half.as_deref() == Some("A")) {
        if let (Some(a), Some(first)) = (&q.attribute, q.answers.first()) {
            *counts
                .entry(a.clone())
                .or_default()
                .entry(normalize_answer(first))
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .filter_map(|(a, values)| {
            let top = values.values().copied().max()?;
            let value = values.into_iter().find(|(_, n)| *n == top)?.0;
            Some((a, value))
        })
        .collect()
}

/// `majority_em`: the share of `selected` whose reference is the majority
/// value of its attribute; `None` when some question's attribute has none.
fn majority_em(selected: &[Question], majority: &BTreeMap<String, String>) -> Option<f64> {
    let mut hits = 0usize;
    for q in selected {
        let value = majority.get(q.attribute.as_ref()?)?;
        hits += usize::from(q.answers.iter().any(|r| &normalize_answer(r) == value));
    }
    Some(hits as f64 / selected.len().max(1) as f64)
}

/// Distinct normalized reference answers per attribute, over the whole
/// questions file (all halves).
fn answer_pools(questions: &[Question]) -> BTreeMap<String, BTreeSet<String>> {
    let mut pools: BTreeMap<String, BTreeSet<String>> = Default::default();
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
fn chance_em(selected: &[Question], pools: &BTreeMap<String, BTreeSet<String>>) -> Option<f64> {
    let mut sum = 0.0;
    for q in selected {
        let k = pools.get(q.attribute.as_ref()?)?.len();
        sum += 1.0 / k.max(1) as f64;
    }
    Some(sum / selected.len().max(1) as f64)
}
