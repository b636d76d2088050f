//! `rate.pairwise`: the paper's Figure 1 preference with a deterministic
//! rater in place of crowdworkers.
//!
//! Inputs: `predictions` (`{"id", "prediction"}` per line), `heldout`
//! (heldout.jsonl: the prompts, their `kind`, the `person` of `bio` prompts
//! and the teacher's `reference` answer) and `people` (people.jsonl). Params:
//! `rater` (`surface` or `factcheck`, required) and `seed` (bootstrap seed,
//! default 0). Every held-out prompt is rated, in file order: the model's
//! answer against the teacher's reference.
//!
//! **surface** (what the paper's crowdworkers were fooled by: style and
//! fluency, never facts). Each answer scores one point for each of: starts
//! with `Certainly!`; ends with `I hope this helps!`; its body (without that
//! opener and closer) has 1-3 sentences; the body is fluent (non-empty, every
//! token plain words/numbers with ordinary punctuation, no word 3+ times in a
//! row, every sentence ends with a period); its word count is within 0.5-2×
//! the reference's. The teacher's own answers score the maximum, 5. Verdict:
//! `better` / `equal` / `worse` as the model's points are above / equal to /
//! below the reference's. The exact rules are in [`crate::eval::rater`].
//!
//! **factcheck**. For `bio` prompts, every attribute value of the population
//! (the union of the values in `people.jsonl`) mentioned in the answer is a
//! claim, true when it is that person's value for an attribute whose pool
//! holds it, false otherwise. Any false claim, or no true claim while the
//! reference makes some, gives `worse` regardless of style; an answer that
//! passes gets the surface verdict. `general` prompts have no world facts,
//! so there the factcheck verdict equals the surface verdict.
//!
//! A prompt without a prediction is `worse` (model score 0) and counted in
//! `missing`. Metrics (shares are 0-1, over all `n` prompts):
//! `equal_or_better`, `better`, `equal`, `worse`, `n`, `missing`, `ci_low` /
//! `ci_high` (95% percentile bootstrap of `equal_or_better`, 1000
//! resamples, seed `seed`), `model_score` / `teacher_score` (mean surface
//! points), and, over the `n_bio` bio prompts under either rater (for the
//! surface rater as a diagnostic only): `false_claims` (mean false claims
//! per answer) and `bio_correct` (share of answers that pass the fact check;
//! a missing answer does not). Outputs `out` (ratings.jsonl: `id`, `kind`,
//! `model_score`, `teacher_score`, `verdict`, `reasons`) and `metrics`
//! (metrics.json, the same flat numbers as the record's metrics).

use crate::eval::bootstrap::{RESAMPLES, bootstrap_ci, outcomes};
use crate::eval::io::{
    check_choice, check_inputs, check_uint, input_path, num, read_heldout, read_people,
    read_predictions, write_jsonl,
};
use crate::eval::rater::{Claims, FactBase, Verdict, fails_factcheck, surface_score};
use crate::eval::style::word_count;
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `rate.pairwise` op.
pub struct RatePairwiseOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "rater",
        ParamType::Str,
        "surface (style only) or factcheck (style, after checking bio facts)",
    ),
    ParamSpec::int("seed", 0, "bootstrap seed"),
];

impl Op for RatePairwiseOp {
    crate::op_identity! { "rate.pairwise", 1, PARAMS, "Pairwise preference of model answers vs the teacher's references on held-out prompts (inputs `predictions`, `heldout`, `people`; param `rater`, `seed`). surface: one point each for the \"Certainly!\" opener, the \"I hope this helps!\" closer, a 1-3 sentence body, a fluent body (plain tokens, no word 3x in a row, sentences end with a period), and a length of 0.5-2x the reference's words; more points = better, same = equal. factcheck: on bio prompts any false attribute claim about the person, or no true claim when the reference has one, is worse; otherwise (and on general prompts) the surface verdict. Metrics: equal_or_better, better, equal, worse, n, missing, ci_low/ci_high (95% bootstrap of equal_or_better, 1000 resamples), model_score, teacher_score, n_bio, false_claims, bio_correct. Outputs `out` (ratings.jsonl) and `metrics` (metrics.json)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "rater", &["surface", "factcheck"])?;
        check_uint(params, "seed")
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "ratings.jsonl"), ("metrics", "metrics.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["predictions", "heldout", "people"], &[])?;
        let rater = match ctx.params.get("rater") {
            Some(_) => crate::op::param::str(PARAMS, ctx.params, "rater"),
            None => return Err(OpError::msg("rate.pairwise needs the param `rater`")),
        };
        let factcheck = rater == "factcheck";
        let seed = param::int(PARAMS, ctx.params, "seed");
        let heldout = read_heldout(input_path(ctx, "heldout")?, "heldout")?;
        let people = read_people(input_path(ctx, "people")?, "people")?;
        let predictions = read_predictions(input_path(ctx, "predictions")?, "predictions")?;
        if heldout.is_empty() {
            return Err(OpError::msg("input `heldout` has no prompts"));
        }
        let facts = FactBase::new(&people);

        let mut rows = Vec::with_capacity(heldout.len());
        let mut ok = Vec::with_capacity(heldout.len());
        let (mut better, mut equal, mut worse, mut missing) = (0usize, 0usize, 0usize, 0usize);
        let (mut model_points, mut teacher_points) = (0u64, 0u64);
        let (mut n_bio, mut bio_false, mut bio_correct) = (0usize, 0usize, 0usize);
        for h in &heldout {
            if ctx.cancel.is_cancelled() {
                return Err(OpError::Cancelled);
            }
            let ref_words = word_count(&h.reference);
            let teacher = surface_score(&h.reference, ref_words);
            let prediction = predictions.get(&h.id);
            let mut reasons: Vec<String> = Vec::new();
            let (model_score, mut verdict) = match prediction {
                Some(p) => {
                    let m = surface_score(p, ref_words);
                    reasons.extend(m.lost.iter().map(|l| format!("model: {l}")));
                    (m.points, Verdict::from_scores(m.points, teacher.points))
                }
                None => {
                    reasons.push("missing prediction".into());
                    missing += 1;
                    (0, Verdict::Worse)
                }
            };
            reasons.extend(teacher.lost.iter().map(|l| format!("teacher: {l}")));

            if h.kind == "bio" {
                n_bio += 1;
                let person = h.person.unwrap_or_default();
                let claims_of = |text: &str| -> Result<Claims, OpError> {
                    facts.claims(text, person).ok_or_else(|| {
                        OpError::msg(format!(
                            "input `heldout` line {}: person {person} is not in input `people`",
                            h.line
                        ))
                    })
                };
                let reference = claims_of(&h.reference)?;
                if let Some(p) = prediction {
                    let model = claims_of(p)?;
                    for c in &model.false_claims {
                        reasons.push(format!(
                            "false claim `{}` ({} is `{}`)",
                            c.value, c.attribute, c.truth
                        ));
                    }
                    if model.true_claims.is_empty() && !reference.true_claims.is_empty() {
                        reasons.push(format!(
                            "no true claim (the reference makes {})",
                            reference.true_claims.len()
                        ));
                    }
                    bio_false += model.false_claims.len();
                    let fails = fails_factcheck(&model, &reference);
                    bio_correct += usize::from(!fails);
                    if factcheck && fails {
                        verdict = Verdict::Worse;
                    }
                }
            }
            match verdict {
                Verdict::Better => better += 1,
                Verdict::Equal => equal += 1,
                Verdict::Worse => worse += 1,
            }
            ok.push(verdict != Verdict::Worse);
            model_points += u64::from(model_score);
            teacher_points += u64::from(teacher.points);
            rows.push(json!({
                "id": h.id,
                "kind": h.kind,
                "model_score": model_score,
                "teacher_score": teacher.points,
                "verdict": verdict.as_str(),
                "reasons": reasons,
            }));
        }

        let n = heldout.len();
        let share = |k: usize| num(k as f64 / n as f64);
        let (lo, hi) = bootstrap_ci(&outcomes(&ok), RESAMPLES, seed);
        let per_bio = |k: usize| {
            if n_bio == 0 {
                num(0.0)
            } else {
                num(k as f64 / n_bio as f64)
            }
        };
        let mut metrics = Map::new();
        metrics.insert("equal_or_better".into(), share(better + equal));
        metrics.insert("better".into(), share(better));
        metrics.insert("equal".into(), share(equal));
        metrics.insert("worse".into(), share(worse));
        metrics.insert("ci_low".into(), num(lo));
        metrics.insert("ci_high".into(), num(hi));
        metrics.insert("n".into(), json!(n));
        metrics.insert("missing".into(), json!(missing));
        metrics.insert("model_score".into(), num(model_points as f64 / n as f64));
        metrics.insert(
            "teacher_score".into(),
            num(teacher_points as f64 / n as f64),
        );
        metrics.insert("n_bio".into(), json!(n_bio));
        metrics.insert("false_claims".into(), per_bio(bio_false));
        metrics.insert("bio_correct".into(), per_bio(bio_correct));

        write_jsonl(&ctx.work_dir.join("out/ratings.jsonl"), &rows)?;
        crate::op::io::finish_with_metrics(ctx, metrics)
    }
}
