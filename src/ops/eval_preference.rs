//! `eval.preference`: how often a model's response is rated better than,
//! equal to, or worse than the teacher's, by an LLM judge and/or by people
//! (the paper's Figure 1 left: "% of outputs rated equal or better than
//! ChatGPT"; Figure 3 for GPT-4).
//!
//! Inputs: `prompts` (e.g. the Koala test set `{"id", "prompt"}`; shapes in
//! [`crate::api::records`]); `model` and `teacher` (responses keyed by
//! prompt id: `response` / `prediction` / `output` / `completion` /
//! `answer`, or chat records whose last assistant turn is the response, as
//! `teacher.chat` writes); `human` (optional ratings CSV, schema in
//! [`crate::eval::preference::csv`]). Params: `judge_model` (runs the LLM
//! judge over the API of [`crate::api`]; needs `model` and `teacher`),
//! `judge_temperature` (default 0), `judge_max_tokens` (default 512),
//! `judge_seed` (API seed, default 0), `seed` (bootstrap seed, default 0),
//! `human_model_position` (`A`/`B`: the model's position for CSV rows
//! without a `model_position` column) and the API params of
//! [`crate::with_api_params`]. At least one of `judge_model` and `human`.
//!
//! Metric definitions (protocol in [`crate::eval::preference`]): every
//! prompt with a model response is judged twice (model as Assistant 1, then
//! teacher as Assistant 1); a win counts only if both orders give it, else
//! `equal`; a prompt without a model response is `worse` and counted in
//! `judge_missing`; a prompt with an unparseable reply is left out and
//! counted in `judge_unparsed`. Human verdict per prompt = majority of its
//! ratings, `equal` without a unique majority (`human_split`). For each
//! source `judge` / `human`: `<src>_n`, `<src>_better`, `<src>_equal`,
//! `<src>_worse`, `<src>_equal_or_better` (shares 0-1 over `<src>_n`
//! prompts) with `_ci_low` / `_ci_high` (95% percentile bootstrap over
//! prompts, 1000 resamples, `seed`). Diagnostics: `judge_inconsistent`
//! (share of judged prompts whose two orders gave different verdicts),
//! `judge_first_preferred` (share of single-order verdicts with a winner
//! where Assistant 1 won; 0.5 = no position bias), `human_ratings`,
//! `human_raters`, `human_unrated` (prompts without a rating); in the
//! record only, `api_total` (judge requests; stderr says how many came
//! from the request store and how many were sent).
//!
//! Outputs: `out` (judgments.jsonl, per prompt in input order: `id`,
//! `judge` (`model_first` / `teacher_first`: `scores` [model, teacher] or
//! null, `verdict`; and the combined `verdict`: better / equal / worse /
//! unparsed / missing) and `human` (counts of `better`/`equal`/`worse`,
//! `verdict`, `split`), each null when not evaluated), `metrics`
//! (metrics.json, the numbers above and `judge_model`), and with a judge
//! `log` (requests.jsonl, every judge request and response).

use crate::api::records::{read_prompts, read_responses};
use crate::api::{ChatRequest, api_note, op_config, outcome_metrics, run_all, write_log};
use crate::eval::io::{check_choice, check_inputs, input_path, num, write_json, write_jsonl};
use crate::eval::preference::{
    Verdict, combine_orders, csv, judge_messages, majority, order_verdict, parse_scores, shares,
};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The `eval.preference` op.
pub struct EvalPreferenceOp;

const PARAMS: &[ParamSpec] = crate::with_api_params![
    ParamSpec::optional(
        "judge_model",
        ParamType::Str,
        "LLM judge model over the API (e.g. gpt-4); absent = no judge"
    ),
    ParamSpec::optional(
        "judge_temperature",
        ParamType::Number,
        "judge sampling temperature (default 0)"
    ),
    ParamSpec::optional(
        "judge_max_tokens",
        ParamType::Int,
        "judge reply length limit (default 512)"
    ),
    ParamSpec::int("judge_seed", 0, "the judge requests' API seed"),
    ParamSpec::int("seed", 0, "bootstrap seed"),
    ParamSpec::optional(
        "human_model_position",
        ParamType::Str,
        "A or B: the model's position for human CSV rows without a model_position column"
    ),
];

impl Op for EvalPreferenceOp {
    crate::op_identity! { "eval.preference", 1, PARAMS, "Pairwise preference of model responses vs the teacher's (inputs `prompts`, `model`, `teacher`, optional `human` ratings CSV: prompt_id, preference better/equal/worse or A/B/tie, optional rater, model_position). Judge (param `judge_model`, over the cached OpenAI-compatible API): FastChat/Vicuna pairwise prompt, 1-10 scores, run in both orders; a win counts only if both orders agree, else equal; unparseable replies are left out (judge_unparsed); missing model responses are worse. Humans: majority per prompt, no unique majority = equal. Metrics per source judge/human: n, better, equal, worse, equal_or_better, each with 95% bootstrap ci_low/ci_high (1000 resamples, `seed`); judge_inconsistent, judge_first_preferred, human_ratings, human_raters, human_split. Outputs `out` (judgments.jsonl), `metrics` (metrics.json), `log` with a judge." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "human_model_position", &["A", "B", "a", "b"])?;
        for k in [
            "judge_max_tokens",
            "judge_seed",
            "seed",
            "concurrency",
            "retries",
            "backoff_ms",
            "timeout_s",
        ] {
            crate::eval::io::check_uint(params, k)?;
        }
        if let Some(t) = params.get("judge_temperature").and_then(Value::as_f64)
            && !(0.0..=2.0).contains(&t)
        {
            return Err((
                "judge_temperature".into(),
                format!("must be in 0-2, found {t}"),
            ));
        }
        Ok(())
    }
    fn calls_api(&self) -> bool {
        true
    }
    fn needs_api(&self, params: &Map<String, Value>) -> bool {
        params.get("judge_model").is_some_and(|m| !m.is_null())
    }
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl> {
        let mut v = OutputDecl::light(&[("out", "judgments.jsonl"), ("metrics", "metrics.json")]);
        if params.contains_key("judge_model") {
            v.push(OutputDecl {
                name: "log".into(),
                path: "requests.jsonl".into(),
                heavy: false,
            });
        }
        v
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(
            ctx,
            self.name(),
            &["prompts"],
            &["model", "teacher", "human"],
        )?;
        let p = ctx.params;
        let seed = p.get("seed").and_then(Value::as_u64).unwrap_or(0);
        let judge_model = p.get("judge_model").and_then(Value::as_str);
        if judge_model.is_none() && !ctx.inputs.contains_key("human") {
            return Err(OpError::msg(
                "eval.preference needs the param `judge_model` or an input `human` (or both)",
            ));
        }
        let prompts = read_prompts(input_path(ctx, "prompts")?, "prompts")?;
        if prompts.is_empty() {
            return Err(OpError::msg("input `prompts` has no prompts"));
        }
        let mut rows: Vec<Map<String, Value>> = prompts
            .iter()
            .map(|pr| {
                let mut m = Map::new();
                m.insert("id".into(), json!(pr.id));
                m.insert("judge".into(), Value::Null);
                m.insert("human".into(), Value::Null);
                m
            })
            .collect();
        let mut metrics = Map::new();
        let mut record_metrics = Map::new();
        let mut note = String::new();
        if let Some(jm) = judge_model {
            metrics.insert("judge_model".into(), json!(jm));
            let (m, api, n) = judge(ctx, jm, &prompts, &mut rows, seed)?;
            metrics.extend(m);
            record_metrics.extend(api);
            note = n;
        }
        if ctx.inputs.contains_key("human") {
            metrics.extend(human(ctx, &prompts, &mut rows, seed)?);
        }
        let rows: Vec<Value> = rows.into_iter().map(Value::Object).collect();
        write_jsonl(&ctx.work_dir.join("out/judgments.jsonl"), &rows)?;
        write_json(
            &ctx.work_dir.join("out/metrics.json"),
            &Value::Object(metrics.clone()),
        )?;
        metrics.extend(record_metrics);
        Ok(RunResult {
            metrics,
            stderr: note,
            ..RunResult::default()
        })
    }
}

/// The judge's metrics, its `api_total` (only in the record) and the API
/// counts line for stderr.
type MetricsAndApi = (Map<String, Value>, Map<String, Value>, String);

/// Scores [model, teacher] of one order, `None` when unparsed.
type Scores = Option<(f64, f64)>;

/// Runs the judge in both orders; returns the metrics and the API counts.
fn judge(
    ctx: &RunContext,
    judge_model: &str,
    prompts: &[crate::api::records::Prompt],
    rows: &mut [Map<String, Value>],
    seed: u64,
) -> Result<MetricsAndApi, OpError> {
    let p = ctx.params;
    for name in ["model", "teacher"] {
        if !ctx.inputs.contains_key(name) {
            return Err(OpError::msg(format!(
                "the judge (param `judge_model`) needs an input `{name}`"
            )));
        }
    }
    let model = read_responses(input_path(ctx, "model")?, "model")?;
    let teacher = read_responses(input_path(ctx, "teacher")?, "teacher")?;
    let unknown: BTreeSet<&String> = model
        .keys()
        .chain(teacher.keys())
        .filter(|id| !prompts.iter().any(|pr| &pr.id == *id))
        .collect();
    if let Some(id) = unknown.first() {
        return Err(OpError::msg(format!(
            "a response has id `{id}`, which is not in input `prompts` ({} such ids)",
            unknown.len()
        )));
    }
    let request = |first: &str, second: &str, question: &str| ChatRequest {
        model: judge_model.to_string(),
        messages: judge_messages(question, first, second),
        temperature: p
            .get("judge_temperature")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        max_tokens: p
            .get("judge_max_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(512),
        seed: p.get("judge_seed").and_then(Value::as_u64).unwrap_or(0),
    };
    let mut requests = Vec::new();
    let mut judged: Vec<usize> = Vec::new();
    for (i, pr) in prompts.iter().enumerate() {
        let t = teacher.get(&pr.id).ok_or_else(|| {
            OpError::msg(format!(
                "input `teacher` has no response for prompt `{}` (prompts line {})",
                pr.id, pr.line
            ))
        })?;
        if let Some(m) = model.get(&pr.id) {
            requests.push(request(m, t, pr.instruction()));
            requests.push(request(t, m, pr.instruction()));
            judged.push(i);
        }
    }
    let cfg = op_config(ctx);
    let outcome = run_all(&cfg, &requests, ctx.cancel, ctx.status)?;
    write_log(&ctx.work_dir.join("out/requests.jsonl"), &outcome.exchanges)?;
    let mut api = Map::new();
    outcome_metrics(&outcome, &mut api);
    let note = api_note(
        outcome.exchanges.len(),
        outcome.from_store,
        outcome.requested,
    );

    let mut verdicts: Vec<Verdict> = Vec::new();
    let (mut missing, mut unparsed, mut inconsistent, mut first_won, mut decided) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut by_prompt: HashMap<usize, (Scores, Scores)> = HashMap::new();
    for (k, &i) in judged.iter().enumerate() {
        let mf = parse_scores(&outcome.exchanges[2 * k].content);
        // Teacher first: Assistant 1 = teacher; store as [model, teacher].
        let tf = parse_scores(&outcome.exchanges[2 * k + 1].content).map(|(a, b)| (b, a));
        by_prompt.insert(i, (mf, tf));
    }
    for (i, row) in rows.iter_mut().enumerate() {
        let order = |s: Option<(f64, f64)>| match s {
            Some((m, t)) => json!({"scores": [m, t], "verdict": order_verdict(m, t).as_str()}),
            None => json!({"scores": null, "verdict": "unparsed"}),
        };
        let value = match by_prompt.get(&i) {
            None => {
                missing += 1;
                verdicts.push(Verdict::Worse);
                json!({"model_first": null, "teacher_first": null, "verdict": "missing"})
            }
            Some(&(mf, tf)) => {
                let (a, b) = (
                    mf.map(|(m, t)| order_verdict(m, t)),
                    tf.map(|(m, t)| order_verdict(m, t)),
                );
                // Position bias: which position won, in each parsed order with a winner.
                for (v, model_is_first) in [(a, true), (b, false)] {
                    if let Some(v) = v.filter(|v| *v != Verdict::Equal) {
                        decided += 1;
                        first_won += usize::from((v == Verdict::Better) == model_is_first);
                    }
                }
                let combined = combine_orders(a, b);
                match combined {
                    Some(v) => {
                        inconsistent += usize::from(a != b);
                        verdicts.push(v);
                    }
                    None => unparsed += 1,
                }
                json!({"model_first": order(mf), "teacher_first": order(tf),
                       "verdict": combined.map_or("unparsed", Verdict::as_str)})
            }
        };
        row.insert("judge".into(), value);
    }
    let mut m = shares(&verdicts, seed, "judge");
    let parsed = judged.len() - unparsed;
    m.insert("judge_missing".into(), json!(missing));
    m.insert("judge_unparsed".into(), json!(unparsed));
    m.insert(
        "judge_inconsistent".into(),
        num(if parsed == 0 {
            f64::NAN
        } else {
            inconsistent as f64 / parsed as f64
        }),
    );
    m.insert(
        "judge_first_preferred".into(),
        num(if decided == 0 {
            f64::NAN
        } else {
            first_won as f64 / decided as f64
        }),
    );
    Ok((m, api, note))
}

/// Imports the human ratings and aggregates them per prompt.
fn human(
    ctx: &RunContext,
    prompts: &[crate::api::records::Prompt],
    rows: &mut [Map<String, Value>],
    seed: u64,
) -> Result<Map<String, Value>, OpError> {
    let pos = ctx
        .params
        .get("human_model_position")
        .and_then(Value::as_str);
    let ratings = csv::read_ratings(input_path(ctx, "human")?, "human", pos)?;
    let index: HashMap<&str, usize> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut votes: BTreeMap<usize, Vec<Verdict>> = BTreeMap::new();
    let mut raters = BTreeSet::new();
    for r in &ratings {
        let Some(&i) = index.get(r.prompt_id.as_str()) else {
            return Err(OpError::msg(format!(
                "input `human` line {}: prompt id `{}` is not in input `prompts`",
                r.line, r.prompt_id
            )));
        };
        votes.entry(i).or_default().push(r.verdict);
        raters.insert(r.rater.as_str());
    }
    let (mut verdicts, mut split) = (Vec::new(), 0usize);
    for (i, vs) in &votes {
        let Some((v, s)) = majority(vs) else { continue };
        split += usize::from(s);
        verdicts.push(v);
        let count = |x: Verdict| vs.iter().filter(|&&y| y == x).count();
        rows[*i].insert(
            "human".into(),
            json!({"better": count(Verdict::Better), "equal": count(Verdict::Equal),
                   "worse": count(Verdict::Worse), "verdict": v.as_str(), "split": s}),
        );
    }
    let mut m = shares(&verdicts, seed, "human");
    m.insert("human_ratings".into(), json!(ratings.len()));
    m.insert("human_raters".into(), json!(raters.len()));
    m.insert("human_split".into(), json!(split));
    m.insert("human_unrated".into(), json!(prompts.len() - votes.len()));
    Ok(m)
}
