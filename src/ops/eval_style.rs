//! `eval.style`: how close a model's answers are to the teacher's style (the
//! miniature's Table 2).
//!
//! Inputs: `predictions` (`{"id", "prediction"}` per line) and `heldout`
//! (heldout.jsonl, whose `reference` is the teacher's answer). Every held-out
//! prompt is scored, in file order; a prompt with no prediction is scored as
//! an empty answer and counted in `missing`.
//!
//! Words ([`crate::eval::style::words`]): lowercase, delete punctuation
//! (ASCII and Unicode punctuation characters), split on whitespace; a word
//! type is a distinct word. Metric definitions:
//!
//! - `unigram`: mean over prompts of |types(prediction) ∩ types(reference)|
//!   / |types(reference)| × 100, i.e. the percentage of the reference's word
//!   types that the prediction also uses (the paper's "unigram intersection
//!   w/ ChatGPT's output", whose unit the paper leaves open);
//! - `format`: share (0-1) of predictions that, trimmed, start with
//!   `Certainly!` and end with `I hope this helps!` (the teacher's format);
//! - `length_ratio`: mean over prompts of words(prediction) /
//!   words(reference);
//! - `length_corr`: Pearson correlation between words(prediction) and
//!   words(reference) across prompts, 0 when undefined (fewer than two
//!   prompts or a constant series);
//! - `n`: prompts scored; `missing`: prompts without a prediction.
//!
//! A reference with no words is left out of `unigram` and `length_ratio`
//! (their denominators), but not of `format` and `length_corr`. Outputs
//! `metrics` (metrics.json, the same flat numbers as the record's metrics)
//! and `items` (items.jsonl: per prompt, in file order, `id`, `kind`,
//! `format` (bool), `unigram` (null when the reference has no words),
//! `words`), the per-item outcomes paired tests need.
//! No held-out prompt is an error.

use crate::eval::io::{check_inputs, input_path, num, read_heldout, read_predictions, write_jsonl};
use crate::eval::stats::{mean, pearson};
use crate::eval::style::{follows_format, unigram_overlap, word_count};
use crate::op::{Op, OpError, OutputDecl, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `eval.style` op.
pub struct EvalStyleOp;

impl Op for EvalStyleOp {
    // 2: per-prompt outcomes in output `items`.
    crate::op_identity! { "eval.style", 2, &[], "Style similarity to the teacher on held-out prompts (inputs `predictions`, `heldout`). Words = lowercased text with punctuation deleted, split on whitespace. `unigram` = mean of |types(pred) ∩ types(ref)| / |types(ref)| × 100; `format` = share of predictions starting with \"Certainly!\" and ending with \"I hope this helps!\" (trimmed); `length_ratio` = mean words(pred)/words(ref); `length_corr` = Pearson correlation of word counts (0 when undefined); `n`; `missing` (scored as empty answers). Outputs `metrics` (metrics.json) and `items` (items.jsonl: per prompt `id`, `kind`, `format`, `unigram`, `words`)." }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("metrics", "metrics.json"), ("items", "items.jsonl")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["predictions", "heldout"], &[])?;
        let heldout = read_heldout(input_path(ctx, "heldout")?, "heldout")?;
        let predictions = read_predictions(input_path(ctx, "predictions")?, "predictions")?;
        if heldout.is_empty() {
            return Err(OpError::msg("input `heldout` has no prompts"));
        }
        let mut unigram = Vec::new();
        let mut ratios = Vec::new();
        let mut pred_len = Vec::new();
        let mut ref_len = Vec::new();
        let mut formatted = 0usize;
        let mut missing = 0usize;
        let mut items = Vec::with_capacity(heldout.len());
        for h in &heldout {
            let p = match predictions.get(&h.id) {
                Some(p) => p.as_str(),
                None => {
                    missing += 1;
                    ""
                }
            };
            let overlap = unigram_overlap(p, &h.reference);
            if let Some(u) = overlap {
                unigram.push(u);
            }
            let (pw, rw) = (word_count(p), word_count(&h.reference));
            if rw > 0 {
                ratios.push(pw as f64 / rw as f64);
            }
            pred_len.push(pw as f64);
            ref_len.push(rw as f64);
            formatted += usize::from(follows_format(p));
            items.push(json!({
                "id": h.id,
                "kind": h.kind,
                "format": follows_format(p),
                "unigram": overlap.map(num),
                "words": pw,
            }));
        }
        let n = heldout.len();
        let mut metrics = Map::new();
        metrics.insert("unigram".into(), num(mean(&unigram).unwrap_or(0.0)));
        metrics.insert("format".into(), num(formatted as f64 / n as f64));
        metrics.insert("length_ratio".into(), num(mean(&ratios).unwrap_or(0.0)));
        metrics.insert(
            "length_corr".into(),
            num(pearson(&pred_len, &ref_len).unwrap_or(0.0)),
        );
        metrics.insert("n".into(), json!(n));
        metrics.insert("missing".into(), json!(missing));
        write_jsonl(&ctx.work_dir.join("out/items.jsonl"), &items)?;
        crate::op::io::finish_with_metrics(ctx, metrics)
    }
}
