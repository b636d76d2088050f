//! `data.budget`: nested subsets of chat data by token budget, for scaling
//! sweeps whose smaller data sets are prefixes of the larger ones.
//!
//! Inputs: `data` (normalized chat JSONL, e.g. `data.sharegpt`'s `out`) and
//! `tokenizer` (a GGUF model file, a Hugging Face model directory, or a
//! directory with `tokenizer.json` and
//! `tokenizer_config.json`: a `tokenizer.train` output or a model
//! checkpoint directory). Params: `budgets` (list of positive token
//! counts, e.g. `[300000, 1000000, 3000000]`), `count` (`all` (default):
//! every token of the rendered chat, as `lm.finetune` counts; `assistant`:
//! only the learned assistant tokens), `seed` (default 0) and `shuffle`
//! (default true): the records are put in one seeded order
//! (`Rng::derive(seed, "data.budget")`), or kept in input order when false.
//!
//! Each budget's subset is the longest prefix of that order whose tokens add
//! up to at most the budget ([`crate::data::budget::prefix_within`], the
//! rule of `lm.finetune`'s `tokens` param), so every subset is a prefix of
//! the next larger one. A budget beyond the data gives all of it
//! (`clamped`).
//!
//! Outputs (the data heavy, the metrics light): `tokens_<budget>` (`tokens_<budget>.jsonl`) per budget, `out`
//! (all.jsonl: every record in the chosen order, the superset of every
//! subset) and `metrics` (metrics.json: `examples`, `tokens` of all the data,
//! and per budget `tokens_<budget>.examples`, `.tokens` (reached),
//! `.clamped`).

use super::lm_common::on_threads;
use crate::data::budget::{Count, count_many, nested};
use crate::data::io::{JsonlWriter, check_choice, numeric, write_json};
use crate::data::jsonl::read_normalized;
use crate::eval::io::{check_inputs, input_path};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::rng::Rng;
use serde_json::{Map, Value, json};

/// The `data.budget` op.
pub struct DataBudgetOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "budgets",
        ParamType::List,
        "token budgets, e.g. [300000, 1000000, 3000000]; one output `tokens_<budget>` each",
    ),
    ParamSpec::str(
        "count",
        "all",
        "all (every rendered token, as lm.finetune counts; default) or assistant (learned tokens only)",
    ),
    ParamSpec::int("seed", 0, "seed of the one shuffle"),
    ParamSpec::bool(
        "shuffle",
        true,
        "shuffle once before taking prefixes (default true; false keeps input order)",
    ),
];

/// The budgets param as numbers (invalid entries are skipped; `check` rejects them).
fn budgets(params: &Map<String, Value>) -> Vec<u64> {
    params
        .get("budgets")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

impl Op for DataBudgetOp {
    // 2: token counts come from one tokenization of each whole
    //    conversation (`TextTokenizer::encode_chat`).
    crate::op_identity! { "data.budget", 2, PARAMS, "Nested token-budget subsets of chat data (inputs `data`, `tokenizer`; params `budgets`, `count` all/assistant, `seed`, `shuffle`): one seeded order, each budget the longest prefix within it (lm.finetune's rule), so subsets nest; outputs `tokens_<budget>` per budget, `out` (all records in that order) and `metrics` (tokens reached, clamping)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "count", &["all", "assistant"])?;
        let raw = params
            .get("budgets")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if raw.is_empty() {
            return Err((
                "budgets".into(),
                "`budgets` must list at least one budget".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for v in &raw {
            match v.as_u64() {
                Some(b) if b > 0 => {
                    if !seen.insert(b) {
                        return Err(("budgets".into(), format!("budget {b} is listed twice")));
                    }
                }
                _ => {
                    return Err((
                        "budgets".into(),
                        format!("budgets must be positive integers, found {v}"),
                    ));
                }
            }
        }
        Ok(())
    }
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl> {
        let mut v: Vec<OutputDecl> = budgets(params)
            .into_iter()
            .map(|b| OutputDecl {
                name: format!("tokens_{b}"),
                path: format!("tokens_{b}.jsonl"),
                heavy: true,
            })
            .collect();
        v.push(OutputDecl {
            name: "out".into(),
            path: "all.jsonl".into(),
            heavy: true,
        });
        v.push(OutputDecl {
            name: "metrics".into(),
            path: "metrics.json".into(),
            heavy: false,
        });
        v
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["data", "tokenizer"], &[])?;
        let count = Count::parse(param::str(PARAMS, ctx.params, "count")).unwrap_or(Count::All);
        let tok = crate::model::load::load_tokenizer_any(input_path(ctx, "tokenizer")?)
            .map_err(|e| OpError::msg(format!("input `tokenizer`: {e}")))?;
        let lines = read_normalized("input `data`", input_path(ctx, "data")?)?;
        let mut order: Vec<usize> = (0..lines.len()).collect();
        if param::bool(PARAMS, ctx.params, "shuffle") {
            Rng::derive(param::int(PARAMS, ctx.params, "seed"), "data.budget").shuffle(&mut order);
        }
        let convs: Vec<&[_]> = order
            .iter()
            .map(|&i| lines[i].messages.as_slice())
            .collect();
        (ctx.status)(&format!("counting tokens of {} conversations", convs.len()));
        let sizes = on_threads(ctx, || {
            count_many(&tok, &convs, count).map_err(|(k, e)| {
                OpError::msg(format!("input `data` line {}: {e}", lines[order[k]].line))
            })
        })?;
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let bs = budgets(ctx.params);
        let subsets = nested(&sizes, &bs);
        let out = ctx.work_dir.join("out");
        let mut all = JsonlWriter::create(&out.join("all.jsonl"))?;
        for &i in &order {
            all.write(&lines[i].object)?;
        }
        all.finish()?;
        let mut m = Map::new();
        m.insert("examples".into(), json!(lines.len()));
        m.insert(
            "tokens".into(),
            json!(sizes.iter().map(|&s| s as u64).sum::<u64>()),
        );
        for s in &subsets {
            let name = format!("tokens_{}", s.budget);
            let mut w = JsonlWriter::create(&out.join(format!("{name}.jsonl")))?;
            for &i in &order[..s.examples] {
                w.write(&lines[i].object)?;
            }
            w.finish()?;
            m.insert(format!("{name}.examples"), json!(s.examples));
            m.insert(format!("{name}.tokens"), json!(s.tokens));
            m.insert(format!("{name}.clamped"), json!(s.clamped));
        }
        write_json(&out.join("metrics.json"), &m)?;
        Ok(RunResult {
            metrics: numeric(&m),
            ..RunResult::default()
        })
    }
}
