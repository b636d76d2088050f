//! `eval.mmlu`: MMLU accuracy of a model, k-shot, by answer-letter logits.
//!
//! Inputs: `model` (a model directory or file the model loader accepts) and
//! `data` (a directory with `dev/<subject>_dev.csv` and
//! `test/<subject>_test.csv`, the original layout; `data/mmlu`).
//!
//! Protocol ([`crate::eval::mmlu`] has the exact prompt): the first `shots`
//! dev examples of the subject (5, as in the paper's Figure 4 "MMLU 5-Shot"),
//! then the question; fewer examples when the prompt would not fit the
//! model's context. The predicted letter is the one whose token has the
//! highest logit at the last position.
//!
//! Metric definitions:
//! - `acc_<subject>`: share (0-1) of the subject's evaluated questions
//!   answered correctly;
//! - `acc_macro`: unweighted mean over the evaluated subjects (the number
//!   MMLU papers report as "average");
//! - `acc_micro`: share over all evaluated questions;
//! - `n`, `subjects`, `truncated_shots` (questions whose prompt lost
//!   examples to fit).
//!
//! Params `subjects` (default: every subject in `data/test`) and `limit`
//! (the first N test questions of each subject; 0 = all) select a subset.
//!
//! Outputs: `predictions` (predictions.jsonl: subject, index, predicted and
//! gold letter, `correct`, the four letter logits) and `metrics`
//! (metrics.json).

use super::lm_common::{self, input, model_err};
use crate::eval::io::{num, write_jsonl};
use crate::eval::mmlu::{self, Item, LETTERS};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use candle_core::{IndexOp, Tensor};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The `eval.mmlu` op.
pub struct EvalMmluOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::int("shots", 5, "dev examples per prompt"),
    ParamSpec::optional(
        "subjects",
        ParamType::List,
        "subjects to evaluate (default: all in data/test)",
    ),
    ParamSpec::int(
        "limit",
        0,
        "first N test questions per subject (default 0 = all)",
    ),
    ParamSpec::int("batch_size", 4, "prompts per forward pass"),
    lm_common::DEVICE,
    lm_common::DTYPE,
];

impl Op for EvalMmluOp {
    crate::op_identity! { "eval.mmlu", 1, PARAMS, "MMLU k-shot accuracy by answer-letter logits (inputs `model`, `data` directory); outputs `predictions` and `metrics` (per-subject, macro and micro accuracy)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        lm_common::check_placement(params)?;
        if let Some(Value::Array(a)) = params.get("subjects")
            && a.iter().any(|s| !s.is_string())
        {
            return Err((
                "subjects".into(),
                "`subjects` must be a list of subject names".into(),
            ));
        }
        param::check_positive(PARAMS, params, &["batch_size"])
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[
            ("predictions", "predictions.jsonl"),
            ("metrics", "metrics.json"),
        ])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let model_path = input(ctx, "model")?.clone();
        let data = input(ctx, "data")?.clone();
        let available = mmlu::subjects(&data.join("test"), "test")?;
        let subjects: Vec<String> = match ctx.params.get("subjects") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect(),
            _ => available.clone(),
        };
        if subjects.is_empty() {
            return Err(OpError::msg("no MMLU subject selected"));
        }
        for s in &subjects {
            if !available.contains(s) {
                return Err(OpError::msg(format!(
                    "param `subjects`: no `{s}_test.csv` in input `data` (known: {})",
                    available.join(", ")
                )));
            }
        }
        let shots = param::int(PARAMS, ctx.params, "shots") as usize;
        let limit = param::int(PARAMS, ctx.params, "limit") as usize;
        let batch = param::int(PARAMS, ctx.params, "batch_size") as usize;
        // (subject, index, item, dev examples)
        let mut work: Vec<(String, usize, Item, Vec<Item>)> = Vec::new();
        for s in &subjects {
            let dev = mmlu::read_items(&data.join("dev").join(format!("{s}_dev.csv")))?;
            if dev.len() < shots {
                return Err(OpError::msg(format!(
                    "`shots` is {shots} but {s}_dev.csv holds {} examples",
                    dev.len()
                )));
            }
            let mut test = mmlu::read_items(&data.join("test").join(format!("{s}_test.csv")))?;
            if limit > 0 {
                test.truncate(limit);
            }
            for (i, item) in test.into_iter().enumerate() {
                work.push((s.clone(), i, item, dev[..shots].to_vec()));
            }
        }
        let placed = lm_common::place(ctx)?;
        let dtype = lm_common::dtype(ctx)?;
        let (rows, truncated) = lm_common::on_threads(ctx, || {
            let device = placed.device.clone();
            let loaded = crate::model::load::load_as(&model_path, false, &device, dtype)
                .map_err(model_err)?;
            let tok = &loaded.tokenizer;
            let model = loaded.model.as_ref();
            let ids = mmlu::letter_ids(|t| tok.encode_prompt(t).map_err(|e| e.to_string()))
                .map_err(OpError::msg)?;
            let max_pos = model.max_positions().unwrap_or(1 << 20);
            let mut prompts = Vec::with_capacity(work.len());
            let mut truncated = 0usize;
            for (s, i, item, dev) in &work {
                let mut k = dev.len();
                let enc = loop {
                    let enc = tok
                        .encode_prompt(&mmlu::prompt(s, &dev[..k], item))
                        .map_err(model_err)?;
                    if enc.len() <= max_pos || k == 0 {
                        break enc;
                    }
                    k -= 1;
                };
                if enc.len() > max_pos {
                    return Err(OpError::msg(format!(
                        "{s} question {}: {} tokens exceed the model's context of {max_pos} \
                         even without examples",
                        i + 1,
                        enc.len()
                    )));
                }
                if k < dev.len() {
                    truncated += 1;
                }
                prompts.push((enc, k));
            }
            let total = prompts.len();
            let mut order: Vec<usize> = (0..total).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(prompts[i].0.len()));
            let mut letter_logits = vec![[0f32; 4]; total];
            let mut done = 0usize;
            for chunk in order.chunks(batch.max(1)) {
                if ctx.cancel.is_cancelled() {
                    return Err(OpError::Cancelled);
                }
                let longest = chunk.iter().map(|&i| prompts[i].0.len()).max().unwrap_or(1);
                let mut flat = Vec::with_capacity(chunk.len() * longest);
                for &i in chunk {
                    let p = &prompts[i].0;
                    flat.extend_from_slice(p);
                    // Right padding: causal attention never lets the last
                    // real position see it.
                    flat.extend(std::iter::repeat_n(0u32, longest - p.len()));
                }
                let input =
                    Tensor::from_vec(flat, (chunk.len(), longest), &device).map_err(model_err)?;
                let hidden = model.hidden(&input, None, None, true).map_err(model_err)?;
                for (r, &i) in chunk.iter().enumerate() {
                    let last = hidden
                        .i((r, prompts[i].0.len() - 1))
                        .and_then(|h| model.logits(&h.unsqueeze(0)?))
                        .and_then(|l| l.squeeze(0)?.to_vec1::<f32>())
                        .map_err(model_err)?;
                    for k in 0..4 {
                        letter_logits[i][k] = last[ids[k] as usize];
                    }
                }
                done += chunk.len();
                (ctx.status)(&format!("{done}/{total} questions"));
            }
            let rows: Vec<(String, usize, usize, usize, [f32; 4], usize)> = work
                .iter()
                .zip(&letter_logits)
                .zip(&prompts)
                .map(|(((s, i, item, _), l), (_, k))| {
                    let pred = mmlu::predict(l, &[0, 1, 2, 3]);
                    (s.clone(), *i, pred, item.answer, *l, *k)
                })
                .collect();
            Ok((rows, truncated))
        })?;
        let mut per: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
        let mut lines = Vec::with_capacity(rows.len());
        for (s, i, pred, gold, l, k) in &rows {
            let e = per.entry(s.as_str()).or_default();
            e.1 += 1;
            if pred == gold {
                e.0 += 1;
            }
            lines.push(json!({
                "subject": s, "index": i, "prediction": LETTERS[*pred], "answer": LETTERS[*gold],
                "correct": pred == gold, "shots": k,
                "logits": l.iter().map(|x| num(*x as f64)).collect::<Vec<_>>(),
            }));
        }
        let mut metrics = Map::new();
        let (mut hits, mut n, mut macro_sum) = (0usize, 0usize, 0.0);
        for (s, (c, t)) in &per {
            metrics.insert(format!("acc_{s}"), num(*c as f64 / *t as f64));
            hits += c;
            n += t;
            macro_sum += *c as f64 / *t as f64;
        }
        metrics.insert("acc_macro".into(), num(macro_sum / per.len() as f64));
        metrics.insert("acc_micro".into(), num(hits as f64 / n.max(1) as f64));
        metrics.insert("n".into(), json!(n));
        metrics.insert("subjects".into(), json!(per.len()));
        metrics.insert("shots".into(), json!(shots));
        metrics.insert("truncated_shots".into(), json!(truncated));
        write_jsonl(&ctx.work_dir.join("out/predictions.jsonl"), &lines)?;
        let mut result = crate::op::io::finish_with_metrics(ctx, metrics)?;
        result.device = Some(placed.described);
        Ok(result)
    }
}
