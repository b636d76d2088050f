//! `data.mix`: a weighted, seeded mixture of chat sources.
//!
//! Input `sources`: a list input of normalized chat files (the `out` of
//! `data.sharegpt` / `data.chat_jsonl`, or any JSONL with `messages`). The
//! engine names list entries by instance id (`sharegpt`, `loader[src=hc3]`)
//! or, for `file:` items, by the path with `/` replaced by `_`; the
//! `weights` mapping is keyed by those names and entries are taken in
//! sorted name order. A single file as `sources` is one source named
//! `sources`. Optional input `tokenizer` (a tokenizer or model directory)
//! is required when `unit` is `tokens`.
//!
//! Params: `size` (required; total examples, or tokens), `unit` (`examples`
//! (default) or `tokens`), `count` (`all` (default) or `assistant`: which
//! tokens count, see [`crate::data::budget`]), `weights` (mapping entry ->
//! weight; default equal), `seed` (default 0), `upsample` (default false:
//! a source smaller than its share is used whole and the shortfall
//! reported), `shuffle` (default true: one seeded shuffle of the result;
//! false: source by source in input order). Sampling: [`crate::data::mix`].
//!
//! Outputs: `out` (mix.jsonl, heavy: the chosen records unchanged, with `source`
//! set to the entry name when a record has none) and `metrics`
//! (metrics.json: `examples`, `size`, `unit_tokens` (0/1), and per source
//! `<name>.weight`, `.available` (records), `.available_size`, `.target`,
//! `.examples`, `.size`, `.short`, `.passes`).

use super::lm_common::{model_err, on_threads};
use crate::data::budget::{Count, count_many};
use crate::data::io::{JsonlWriter, check_choice, numeric, write_json};
use crate::data::jsonl::{ChatLine, read_normalized};
use crate::data::mix::{MixSource, mix};
use crate::eval::io::{check_inputs, input_path};
use crate::model::tokenizer::TextTokenizer;
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `data.mix` op.
pub struct DataMixOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required("size", ParamType::Int, "total size of the mix, in `unit`s"),
    ParamSpec::str(
        "unit",
        "examples",
        "examples (default) or tokens (needs input `tokenizer`)",
    ),
    ParamSpec::str(
        "count",
        "all",
        "with unit tokens: all (rendered chat, default) or assistant tokens",
    ),
    ParamSpec::optional(
        "weights",
        ParamType::Map,
        "weight per source entry name (default: equal)",
    ),
    ParamSpec::int("seed", 0, "sampling seed"),
    ParamSpec::bool(
        "upsample",
        false,
        "repeat a source smaller than its share (default false: use it whole, report the shortfall)",
    ),
    ParamSpec::bool(
        "shuffle",
        true,
        "shuffle the result (default true; false: source by source, input order)",
    ),
];

/// Reads the sources of a list input (or one file), sorted by entry name.
fn read_sources(ctx: &RunContext) -> Result<Vec<(String, Vec<ChatLine>)>, OpError> {
    let path = input_path(ctx, "sources")?;
    if path.is_file() {
        return Ok(vec![(
            "sources".into(),
            read_normalized("input `sources`", path)?,
        )]);
    }
    let mut names: Vec<String> = std::fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let p = path.join(&n);
        let label = format!("input `sources` entry `{n}`");
        if !p.is_file() {
            return Err(OpError::msg(format!(
                "{label}: expected a chat JSONL file, found a directory"
            )));
        }
        let lines = read_normalized(&label, &p)?;
        out.push((n, lines));
    }
    if out.is_empty() {
        return Err(OpError::msg("input `sources` holds no source"));
    }
    Ok(out)
}

/// The weight of each source, from the `weights` mapping (default 1 each).
fn weights_for(params: &Map<String, Value>, names: &[&str]) -> Result<Vec<f64>, OpError> {
    let Some(w) = params.get("weights").and_then(Value::as_object) else {
        return Ok(vec![1.0; names.len()]);
    };
    for k in w.keys() {
        if !names.contains(&k.as_str()) {
            return Err(OpError::msg(format!(
                "`weights` names `{k}`, which is not a source (sources: {})",
                names.join(", ")
            )));
        }
    }
    names
        .iter()
        .map(|n| match w.get(*n).and_then(Value::as_f64) {
            Some(x) if x >= 0.0 && x.is_finite() => Ok(x),
            Some(x) => Err(OpError::msg(format!(
                "`weights.{n}` must not be negative, found {x}"
            ))),
            None => Err(OpError::msg(format!(
                "`weights` has no number for source `{n}`"
            ))),
        })
        .collect()
}

impl Op for DataMixOp {
    // 2: token counts come from one tokenization of each whole
    //    conversation (`TextTokenizer::encode_chat`).
    crate::op_identity! { "data.mix", 2, PARAMS, "Mixes chat sources (list input `sources`; optional `tokenizer` for unit tokens) by `weights` (per entry name) to a total `size` in examples or tokens, seeded (`seed`), without repeats unless `upsample`; outputs `out` (mix.jsonl) and `metrics` (per-source targets, counts and shortfalls)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "unit", &["examples", "tokens"])?;
        check_choice(params, "count", &["all", "assistant"])?;
        if let Some(w) = params.get("weights").and_then(Value::as_object) {
            for (k, v) in w {
                match v.as_f64() {
                    Some(x) if x >= 0.0 => {}
                    _ => {
                        return Err((
                            "weights".into(),
                            format!("`weights.{k}` must be a non-negative number"),
                        ));
                    }
                }
            }
            if w.values().filter_map(Value::as_f64).sum::<f64>() <= 0.0 {
                return Err(("weights".into(), "the weights must not all be zero".into()));
            }
        }
        Ok(())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        vec![
            OutputDecl {
                name: "out".into(),
                path: "mix.jsonl".into(),
                heavy: true,
            },
            OutputDecl {
                name: "metrics".into(),
                path: "metrics.json".into(),
                heavy: false,
            },
        ]
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["sources"], &["tokenizer"])?;
        let tokens = param::str(PARAMS, ctx.params, "unit") == "tokens";
        let count = Count::parse(param::str(PARAMS, ctx.params, "count")).unwrap_or(Count::All);
        let size = param::int(PARAMS, ctx.params, "size");
        let seed = param::int(PARAMS, ctx.params, "seed");
        let sources = read_sources(ctx)?;
        let names: Vec<&str> = sources.iter().map(|(n, _)| n.as_str()).collect();
        let weights = weights_for(ctx.params, &names)?;
        let tok = match (tokens, ctx.inputs.get("tokenizer")) {
            (true, Some(dir)) => Some(TextTokenizer::load_dir(dir).map_err(model_err)?),
            (true, None) => return Err(OpError::msg("`unit: tokens` needs an input `tokenizer`")),
            (false, _) => None,
        };
        let mut mix_sources = Vec::new();
        for ((name, lines), &weight) in sources.iter().zip(&weights) {
            let sizes = match &tok {
                None => vec![1; lines.len()],
                Some(t) => {
                    let convs: Vec<&[_]> = lines.iter().map(|l| l.messages.as_slice()).collect();
                    on_threads(ctx, || {
                        count_many(t, &convs, count).map_err(|(i, e)| {
                            OpError::msg(format!(
                                "input `sources` entry `{name}` line {}: {e}",
                                lines[i].line
                            ))
                        })
                    })?
                }
            };
            mix_sources.push(MixSource {
                name: name.clone(),
                weight,
                sizes,
            });
        }
        let (picks, taken) = mix(
            &mix_sources,
            size,
            !tokens,
            seed,
            param::bool(PARAMS, ctx.params, "upsample"),
            param::bool(PARAMS, ctx.params, "shuffle"),
        );
        let mut w = JsonlWriter::create(&ctx.work_dir.join("out/mix.jsonl"))?;
        let mut total = 0u64;
        for &(si, i) in &picks {
            let (name, lines) = &sources[si];
            let mut obj = lines[i].object.clone();
            obj.entry("source").or_insert_with(|| json!(name));
            total += mix_sources[si].sizes[i] as u64;
            w.write(&obj)?;
        }
        w.finish()?;
        let mut m = Map::new();
        m.insert("examples".into(), json!(picks.len()));
        m.insert("size".into(), json!(total));
        m.insert("unit_tokens".into(), json!(u8::from(tokens)));
        for ((s, t), (_, lines)) in mix_sources.iter().zip(&taken).zip(&sources) {
            let n = &s.name;
            let avail: u64 = s.sizes.iter().map(|&x| x as u64).sum();
            for (k, v) in [
                ("weight", json!(s.weight)),
                ("available", json!(lines.len())),
                ("available_size", json!(avail)),
                ("target", json!(t.target)),
                ("examples", json!(t.items)),
                ("size", json!(t.size)),
                ("short", json!(t.short)),
                ("passes", json!(t.passes)),
            ] {
                m.insert(format!("{n}.{k}"), v);
            }
        }
        write_json(&ctx.work_dir.join("out/metrics.json"), &m)?;
        Ok(RunResult {
            metrics: numeric(&m),
            ..RunResult::default()
        })
    }
}
