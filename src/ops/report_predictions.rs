//! `report.predictions`: judges pre-registered predictions on this run's
//! results and renders the verdicts.
//!
//! Params: the registration (`alpha`, `resamples`, `seed`, `predictions`;
//! schema and verdict rule in [`crate::report::predictions`]), checked when
//! the pipeline compiles; `preregistration` (free text naming the commit
//! that registered them, shown in the report); `export`.
//!
//! Inputs: lists of upstream instances (`qa[*].out`). A source picks the one
//! instance of its `input` whose coordinates match `where` plus the case;
//! with `field`, the instance's output is read as JSON lines and each row's
//! `id` and `field` give one outcome (success: the value is `true`, or one
//! of `equals`); with `metric`, the record's metric is a fixed rate. x and
//! y are paired by `id`: the items compared are x's ids that y also has.
//! An instance that is not computed makes its case inconclusive (n = 0).
//!
//! Outputs: `out` (predictions.md: one row per case, the prediction's
//! verdict on its first row) and `verdicts` (verdicts.json). Metrics:
//! `holds`, `contradicted`, `inconclusive` (predictions per verdict).

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::report::predictions::{
    CaseResult, Prediction, Registration, Series, Source, Verdict, judge, judge_case,
};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// The `report.predictions` op.
pub struct ReportPredictionsOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "alpha",
        ParamType::Number,
        "one-sided significance level and 1 - alpha bootstrap bounds (default 0.05)",
    ),
    ParamSpec::optional(
        "resamples",
        ParamType::Int,
        "paired bootstrap resamples (default 2000)",
    ),
    ParamSpec::optional("seed", ParamType::Int, "bootstrap seed (default 0)"),
    ParamSpec::required(
        "predictions",
        ParamType::List,
        "the predictions: {id, claim, paper?, test: greater|not_greater, min_effect, x, y, for?}",
    ),
    ParamSpec::optional(
        "preregistration",
        ParamType::Str,
        "where the predictions were registered (a commit), shown in the report",
    ),
    ParamSpec::optional(
        "export",
        ParamType::StrOrMap,
        "copy outputs into the project (e.g. paper/mini/predictions.md)",
    )
    .not_semantic(),
];

impl Op for ReportPredictionsOp {
    crate::op_identity! { "report.predictions", 1, PARAMS, "Judges pre-registered predictions (params alpha, resamples, seed, predictions) on per-item outcomes of its inputs: holds / contradicted / inconclusive per case and overall; outputs `out` (predictions.md) and `verdicts` (verdicts.json)." }
    fn is_report(&self) -> bool {
        true
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        Registration::parse(params)?;
        super::report_common::check_export(params, &self.outputs(params))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "predictions.md"), ("verdicts", "verdicts.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let reg = Registration::parse(ctx.params).map_err(|(_, m)| OpError::msg(m))?;
        let mut judged = Vec::new();
        for pred in &reg.predictions {
            let mut cases = Vec::new();
            for case in pred.case_list() {
                let series = series(ctx, pred, &case)?;
                cases.push(judge_case(&reg, pred, case, &series));
            }
            judged.push((pred, judge(&cases), cases));
        }
        let registered = ctx.params.get("preregistration").and_then(Value::as_str);
        let out = ctx.work_dir.join("out");
        std::fs::write(
            out.join("predictions.md"),
            render(&reg, &judged, registered),
        )?;
        let verdicts: Vec<Value> = judged
            .iter()
            .map(
                |(p, v, cases)| json!({"id": p.id, "claim": p.claim, "verdict": v, "cases": cases}),
            )
            .collect();
        let text =
            serde_json::to_string_pretty(&json!({"alpha": reg.alpha, "predictions": verdicts}))
                .map_err(|e| OpError::msg(e.to_string()))?;
        std::fs::write(out.join("verdicts.json"), text + "\n")?;
        let mut metrics = Map::new();
        for v in [Verdict::Holds, Verdict::Contradicted, Verdict::Inconclusive] {
            let n = judged.iter().filter(|(_, w, _)| *w == v).count();
            metrics.insert(v.as_str().into(), json!(n));
        }
        Ok(RunResult {
            metrics,
            ..Default::default()
        })
    }
}

/// The series of one case, or an empty one when an instance is missing.
fn series(
    ctx: &RunContext,
    pred: &Prediction,
    case: &BTreeMap<String, Value>,
) -> Result<Series, OpError> {
    let at = |m: String| OpError::msg(format!("prediction `{}`: {m}", pred.id));
    let Some(x) = instance(ctx, &pred.x, case).map_err(at)? else {
        return Ok(Series::Paired(Vec::new(), Vec::new()));
    };
    let Some(y) = instance(ctx, &pred.y, case).map_err(at)? else {
        return Ok(Series::Paired(Vec::new(), Vec::new()));
    };
    let xs = outcomes(ctx, &pred.x, &x).map_err(at)?;
    if let Some(metric) = &pred.y.metric {
        let rate = y
            .get("metrics")
            .and_then(|m| m.get(metric))
            .and_then(Value::as_f64)
            .ok_or_else(|| at(format!("`y`: the record has no metric `{metric}`")))?;
        return Ok(Series::Rate(xs.into_iter().map(|(_, o)| o).collect(), rate));
    }
    let ys: BTreeMap<String, bool> = outcomes(ctx, &pred.y, &y)
        .map_err(at)?
        .into_iter()
        .collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for (id, o) in xs {
        if let Some(&other) = ys.get(&id) {
            a.push(o);
            b.push(other);
        }
    }
    Ok(Series::Paired(a, b))
}

/// The one instance of `source.input` matching its `where` plus the case;
/// `None` when it is not computed.
fn instance(
    ctx: &RunContext,
    source: &Source,
    case: &BTreeMap<String, Value>,
) -> Result<Option<Value>, String> {
    let list = ctx
        .records
        .get(&source.input)
        .and_then(Value::as_array)
        .ok_or_else(|| {
            format!(
                "no list input `{}` (inputs: {})",
                source.input,
                input_names(ctx)
            )
        })?;
    let mut filter = source.filter.clone();
    filter.extend(case.iter().map(|(k, v)| (k.clone(), v.clone())));
    let found: Vec<&Value> = list.iter().filter(|e| matches(e, &filter)).collect();
    match found.as_slice() {
        [one] if one.get("missing") == Some(&json!(true)) => Ok(None),
        [one] => Ok(Some((*one).clone())),
        _ => Err(format!(
            "{} instances of input `{}` match {} (exactly one must): {}",
            found.len(),
            source.input,
            Value::Object(filter.into_iter().collect()),
            found
                .iter()
                .filter_map(|e| e.get("node").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn input_names(ctx: &RunContext) -> String {
    ctx.records.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// Whether an instance's coordinates match a filter (`null`: absent).
fn matches(entry: &Value, filter: &BTreeMap<String, Value>) -> bool {
    let coords = entry.get("coords").and_then(Value::as_object);
    filter
        .iter()
        .all(|(k, want)| match coords.and_then(|c| c.get(k)) {
            None => want.is_null(),
            Some(have) => scalar(have) == scalar(want),
        })
}

/// A JSON scalar as text, so `30000` and `"30000"` compare equal.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `(id, success)` per row of an instance's output, in file order.
fn outcomes(
    ctx: &RunContext,
    source: &Source,
    entry: &Value,
) -> Result<Vec<(String, bool)>, String> {
    let field = source.field.as_deref().unwrap_or_default();
    let name = entry
        .get("entry")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let dir = ctx
        .inputs
        .get(&source.input)
        .ok_or_else(|| format!("no input `{}`", source.input))?;
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", show(&path)))?;
    let mut out = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let row: Value = serde_json::from_str(line)
            .map_err(|e| format!("input `{}` ({name}) line {}: {e}", source.input, i + 1))?;
        let id = row
            .get("id")
            .map(scalar)
            .ok_or_else(|| format!("input `{}` ({name}) line {}: no `id`", source.input, i + 1))?;
        let value = row.get(field).ok_or_else(|| {
            format!(
                "input `{}` ({name}) line {}: no field `{field}`",
                source.input,
                i + 1
            )
        })?;
        let success = match &source.equals {
            Some(list) => list.iter().any(|w| scalar(w) == scalar(value)),
            None => value == &Value::Bool(true),
        };
        out.push((id, success));
    }
    Ok(out)
}

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The Markdown report.
fn render(
    reg: &Registration,
    judged: &[(&Prediction, Verdict, Vec<CaseResult>)],
    registered: Option<&str>,
) -> String {
    let pct = |v: f64| format!("{:.1}", v * 100.0);
    let conf = (1.0 - reg.alpha) * 100.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "**Pre-registered predictions, judged on this run.** The claims, their tests, α = {} (one-sided), the minimum effects and the cases were registered {} before the first full run; the verdict rule is fixed in `src/report/predictions.rs`: *greater* holds when the one-sided exact test (McNemar on paired items, binomial against a rate) gives p < α and x − y ≥ the minimum effect, and is contradicted when even the upper {conf:.0}% bound of x − y (paired bootstrap, {} resamples) is below the minimum effect; *not greater* holds when that upper bound is below the minimum effect and is contradicted when x − y is significantly at least the minimum effect. Everything else is inconclusive. A prediction holds when all its cases hold and is contradicted when any case is.\n",
        reg.alpha,
        registered
            .map(|r| format!("in {r}"))
            .unwrap_or_else(|| "in the pipeline".into()),
        reg.resamples,
    );
    let _ = writeln!(
        s,
        "| prediction | test | case | n | x (%) | y (%) | x − y (%) [{conf:.0}% bounds] | p | case | verdict |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---|---|");
    for (pred, verdict, cases) in judged {
        for (i, c) in cases.iter().enumerate() {
            let head = if i == 0 {
                let paper = pred
                    .paper
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default();
                format!("**{}**: {}{paper}", pred.id, pred.claim)
            } else {
                String::new()
            };
            let test = if i == 0 {
                let t = match pred.test {
                    crate::report::predictions::Test::Greater => "x > y by ≥",
                    crate::report::predictions::Test::NotGreater => "x ≯ y by",
                };
                format!("{t} {}", pct(pred.min_effect))
            } else {
                String::new()
            };
            let case: Vec<String> = c
                .case
                .iter()
                .map(|(k, v)| format!("{k}={}", scalar(v)))
                .collect();
            let _ = writeln!(
                s,
                "| {head} | {test} | {} | {} | {} | {} | {} [{}, {}] | {} | {} | {} |",
                if case.is_empty() {
                    "–".into()
                } else {
                    case.join(", ")
                },
                c.n,
                pct(c.x),
                pct(c.y),
                pct(c.diff),
                pct(c.lo),
                pct(c.hi),
                format_p(c.p),
                c.verdict.as_str(),
                if i == 0 {
                    format!("**{}**", verdict.as_str())
                } else {
                    String::new()
                },
            );
        }
    }
    let _ = writeln!(s, "\nThe series behind each x and y:\n");
    for (pred, _, _) in judged {
        let _ = writeln!(
            s,
            "- **{}**: x = {}; y = {}.",
            pred.id,
            describe(&pred.x),
            describe(&pred.y)
        );
    }
    s
}

fn format_p(p: f64) -> String {
    if p < 0.0001 {
        "<0.0001".into()
    } else {
        format!("{p:.4}")
    }
}

fn describe(src: &Source) -> String {
    let filter: Vec<String> = src
        .filter
        .iter()
        .map(|(k, v)| format!("{k}={}", scalar(v)))
        .collect();
    let what = match (&src.field, &src.metric) {
        (Some(f), _) => match &src.equals {
            Some(e) => format!("per-item `{f}` in {}", Value::Array(e.clone())),
            None => format!("per-item `{f}`"),
        },
        (None, Some(m)) => format!("the rate `{m}`"),
        _ => String::new(),
    };
    format!("{what} of `{}[{}]`", src.input, filter.join(","))
}
