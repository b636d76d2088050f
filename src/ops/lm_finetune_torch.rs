//! `lm.finetune` with `engine: torch`: repro prepares the data, PyTorch
//! trains (FSDP2 under `torchrun`, the script `trainer/fsdp_train.py`).
//!
//! repro does what the candle engine does up to the first step: one
//! `encode_chat` per conversation, the token budget, packing into windows,
//! the seeded window order and the learning rate of every step. It writes
//! them to `torch/windows.safetensors` in the work directory (see
//! [`crate::torch::windows`]), finds the Python environment
//! ([`crate::torch::env`]), writes `torch/launch.sh` ([`crate::torch::launch`])
//! and runs it. The trainer writes the model to `out/model` (a Hugging Face
//! directory every downstream op reads) and its results, which become the
//! record's metrics and `out/train.json` as with candle.
//!
//! What enters the key, beyond the candle engine's params: `engine: torch`
//! itself, `precision`, and the digests of the two implicit inputs
//! `trainer` (`trainer/fsdp_train.py`) and `python_lock`
//! (`trainer/requirements.lock`). Not in the key: the number of GPUs and
//! nodes (resources), `micro_batch`, `checkpoint_every` and
//! `activation_checkpointing`, which change only float rounding and memory.
//! The candle engine's `dtype`, `micro_batch_size` and `recompute` are
//! errors here (each names the torch param that does its job), and a torch
//! node granted GPUs does not get `dtype`'s bf16 default, so its key does
//! not depend on its GPUs.
//!
//! Distributed checkpoints go to `torch/ckpt/` in the work directory, which
//! Slurm's `retries:` keeps, so a preempted job resumes from the last one.

use super::lm_common::{self, model_err};
use crate::model::train::TrainConfig;
use crate::op::param;
use crate::op::{OpError, ParamSpec, RunContext, RunResult};
use crate::torch::{self, TorchError, env, launch, windows};
use serde_json::{Map, Value, json};
use std::path::Path;

/// The trainer script, relative to the project root.
pub const TRAINER: &str = "trainer/fsdp_train.py";
/// The Python lock file, relative to the project root.
pub const LOCK: &str = "trainer/requirements.lock";

/// The params `lm.finetune` takes for the engines.
pub const PARAMS: &[ParamSpec] = &[
    ParamSpec::str(
        "engine",
        "candle",
        "trainer: `candle` (one device) or `torch` (PyTorch FSDP2 under torchrun, many GPUs)",
    ),
    ParamSpec::str(
        "precision",
        "bf16",
        "engine torch: `bf16` (bf16 compute, f32 master weights and reductions) or `f32`",
    ),
    ParamSpec::int(
        "micro_batch",
        1,
        "engine torch: windows per forward pass on one GPU; gradients accumulate to `batch_size`",
    )
    .not_semantic(),
    ParamSpec::int(
        "checkpoint_every",
        50,
        "engine torch: steps between distributed checkpoints a restart resumes from, 0 = none",
    )
    .not_semantic(),
    ParamSpec::bool(
        "activation_checkpointing",
        true,
        "engine torch: recompute each block's activations in the backward pass",
    )
    .not_semantic(),
];

/// The candle engine's params a torch node must not set, each with the
/// torch param that does its job. (A torch node granted GPUs does not get
/// `dtype`'s GPU default either: `lm.finetune`'s `gpu_defaults_apply`.)
const CANDLE_ONLY: &[(&str, &str)] = &[("dtype", "precision")];

/// The shared training params and the torch params they stand for.
const SHARED: &[(&str, &str)] = &[
    ("micro_batch_size", "micro_batch"),
    ("recompute", "activation_checkpointing"),
];

/// Whether the params select the torch engine.
pub fn selected(params: &Map<String, Value>) -> bool {
    params.get("engine").and_then(Value::as_str) == Some("torch")
}

/// Checks the engine params; `Err((param, message))`.
pub fn check(params: &Map<String, Value>) -> Result<(), (String, String)> {
    if let Some(e) = params.get("engine").and_then(Value::as_str)
        && e != "candle"
        && e != "torch"
    {
        return Err((
            "engine".into(),
            format!("`engine` must be `candle` or `torch`, found `{e}`"),
        ));
    }
    if !selected(params) {
        for p in PARAMS.iter().skip(1) {
            if params.contains_key(p.name) {
                return Err((
                    p.name.into(),
                    format!("`{}` applies to `engine: torch` only", p.name),
                ));
            }
        }
        return Ok(());
    }
    for (name, instead) in CANDLE_ONLY {
        if params.contains_key(*name) {
            return Err((
                name.to_string(),
                format!(
                    "`{name}` applies to `engine: candle`; with `engine: torch` use `{instead}`"
                ),
            ));
        }
    }
    for (shared, torch) in SHARED {
        if params.contains_key(*shared) && params.contains_key(*torch) {
            return Err((
                torch.to_string(),
                format!("`{shared}` and `{torch}` are one setting with `engine: torch`; write one"),
            ));
        }
    }
    if let Some(p) = params.get("precision").and_then(Value::as_str)
        && p != "bf16"
        && p != "f32"
    {
        return Err((
            "precision".into(),
            format!("`precision` must be `bf16` or `f32`, found `{p}`"),
        ));
    }
    if params.get("micro_batch").and_then(Value::as_u64) == Some(0) {
        return Err((
            "micro_batch".into(),
            "`micro_batch` must be positive".into(),
        ));
    }
    Ok(())
}

/// The implicit inputs of the torch engine: the trainer script and the
/// lock file, so that their digests are in the key.
pub fn implicit_inputs(params: &Map<String, Value>) -> Vec<(String, String)> {
    if !selected(params) {
        return Vec::new();
    }
    vec![
        ("python_lock".into(), LOCK.into()),
        ("trainer".into(), TRAINER.into()),
    ]
}

fn terr(e: TorchError) -> OpError {
    match e {
        TorchError::Cancelled => OpError::Cancelled,
        TorchError::Trainer { message, stderr } => OpError::Failed { message, stderr },
        other => OpError::msg(other.to_string()),
    }
}

/// The trainer settings of these params and granted threads.
pub fn settings(params: &Map<String, Value>, threads: usize) -> windows::PlanSettings {
    windows::PlanSettings {
        precision: param::str(PARAMS, params, "precision").to_string(),
        micro_batch: params
            .get("micro_batch_size")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| param::int(PARAMS, params, "micro_batch"))
            .max(1) as usize,
        checkpoint_every: param::int(PARAMS, params, "checkpoint_every") as usize,
        activation_checkpointing: params
            .get("recompute")
            .and_then(Value::as_bool)
            .unwrap_or_else(|| param::bool(PARAMS, params, "activation_checkpointing")),
        threads,
    }
}

/// Checks that `base` is a model directory the torch trainer takes.
fn check_base(base: &Path) -> Result<(), OpError> {
    let cfg = base.join("config.json");
    if !cfg.is_file() {
        return Err(OpError::msg(format!(
            "engine torch needs a Hugging Face model directory as `base` (config.json, *.safetensors, tokenizer files); {} has no config.json (a GGUF model trains with engine candle)",
            base.display()
        )));
    }
    let obj = crate::model::load::read_json_object(&cfg).map_err(model_err)?;
    let arch = crate::model::load::model_type(&cfg, &obj).map_err(model_err)?;
    if arch != "llama" && arch != "mistral" {
        return Err(OpError::msg(format!(
            "engine torch trains LLaMA-architecture models (llama, mistral); `{arch}` trains with engine candle"
        )));
    }
    Ok(())
}

/// Runs the torch engine (see the module doc).
pub fn run(
    ctx: &RunContext,
    base: &Path,
    records: &[Value],
    budget: Option<u64>,
    tcfg: &TrainConfig,
) -> Result<RunResult, OpError> {
    check_base(base)?;
    let tokenizer = crate::model::load::load_tokenizer_any(base).map_err(model_err)?;
    let (examples, used_tokens) = super::lm_common::examples(&tokenizer, records, budget)?;
    let var = |k: &str| {
        ctx.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(k).ok())
    };
    let topo = launch::Topology::detect(&var);
    let threads = (ctx.threads / topo.world_size().min(ctx.threads.max(1))).max(1);
    let dir = ctx.work_dir.join("torch");
    let out = ctx.work_dir.join("out").join("model");
    let prepared = windows::prepare(
        &dir,
        base,
        &out,
        &examples,
        tcfg,
        &settings(ctx.params, threads),
    )
    .map_err(terr)?;
    let lock = lm_common::input(ctx, "python_lock")?;
    let trainer = std::path::absolute(lm_common::input(ctx, "trainer")?)?;
    let py = env::find(ctx.work_dir, lock, LOCK, ctx.status).map_err(terr)?;
    let script_text = launch::script(&py.python, &trainer, &prepared.plan, topo, &[]);
    let script = dir.join("launch.sh");
    std::fs::write(&script, script_text)?;
    let mut child_env = ctx.env.to_vec();
    child_env.push(("OMP_NUM_THREADS".into(), threads.to_string()));
    (ctx.status)(&format!(
        "torch engine: {} process(es), {} steps",
        topo.world_size(),
        prepared.steps
    ));
    let cancel = ctx.cancel;
    let result = torch::run::run(&torch::run::Launch {
        script: &script,
        dir: &dir,
        env: &child_env,
        cancelled: &|| cancel.is_cancelled(),
        status: ctx.status,
        steps: prepared.steps,
    })
    .map_err(terr)?;
    if !out.join("config.json").is_file() {
        return Err(OpError::msg(format!(
            "the torch trainer exited without writing {}",
            out.display()
        )));
    }
    let mut extra = Map::new();
    extra.insert("examples".into(), json!(examples.len()));
    extra.insert("data_tokens".into(), json!(used_tokens));
    extra.insert("available_examples".into(), json!(records.len()));
    extra.insert("windows".into(), json!(prepared.windows));
    let metrics = finish(ctx, base, &result, extra)?;
    let log = std::fs::read_to_string(dir.join("trainer.log")).unwrap_or_default();
    Ok(RunResult {
        metrics,
        stderr: crate::op::tail(&log, 16_000),
        environment: environment(&py, &result, topo),
        ..Default::default()
    })
}

fn r4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// The record's `provenance.environment`: the interpreter and where it came
/// from, the versions of Python, torch, transformers and CUDA, the device
/// and the launch topology.
fn environment(py: &env::PythonEnv, result: &Value, topo: launch::Topology) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("engine".into(), json!("torch"));
    m.insert("python_path".into(), json!(py.python.display().to_string()));
    m.insert("python_source".into(), json!(py.source));
    for k in ["python", "torch", "transformers", "safetensors", "cuda"] {
        if let Some(v) = py.versions.get(k) {
            m.insert(k.into(), json!(v));
        }
    }
    if let Some(d) = result["versions"]["device"].as_str() {
        m.insert("device".into(), json!(d));
    }
    m.insert("launch".into(), json!(format!("{topo:?}")));
    m
}

/// Writes `out/train.json` (what the same inputs always give, as the candle
/// engine's log, plus `engine`) and returns the record metrics: the candle
/// engine's, peak memory, world size and the step resumed from.
fn finish(
    ctx: &RunContext,
    base: &Path,
    result: &Value,
    mut extra: Map<String, Value>,
) -> Result<Map<String, Value>, OpError> {
    let losses: Vec<f64> = result["losses"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let n = losses.len();
    let tail = (n / 10).max(1).min(n.max(1));
    let final_loss = if n == 0 {
        f64::NAN
    } else {
        losses[n - tail..].iter().sum::<f64>() / tail as f64
    };
    let every = (n / 100).max(1);
    let curve: Vec<Value> = losses
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i + 1 == n)
        .map(|(i, l)| json!([i, r4(*l)]))
        .collect();
    let num = |k: &str| result[k].as_f64().unwrap_or(0.0);
    for (k, v) in [
        ("final_loss", json!(r4(final_loss))),
        ("first_loss", json!(losses.first().map(|l| r4(*l)))),
        ("steps", json!(n)),
        ("tokens", json!(num("tokens") as u64)),
        ("learned_tokens", json!(num("learned_tokens") as u64)),
        ("params", json!(num("params") as u64)),
    ] {
        extra.insert(k.into(), v);
    }
    let mut log = extra.clone();
    log.insert("engine".into(), json!("torch"));
    log.insert("loss_curve".into(), Value::Array(curve));
    let cfg = std::fs::read_to_string(base.join("config.json"))?;
    log.insert(
        "config".into(),
        serde_json::from_str::<Value>(&cfg).map_err(model_err)?,
    );
    lm_common::write_json(
        &ctx.work_dir.join("out").join("train.json"),
        &Value::Object(log),
    )?;
    let mut m = lm_common::metrics_of(&Value::Object(extra));
    m.insert(
        "seconds".into(),
        json!((num("seconds") * 100.0).round() / 100.0),
    );
    m.insert("tokens_per_s".into(), json!(num("tokens_per_s").round()));
    m.insert(
        "peak_memory_mib".into(),
        json!((num("peak_memory_bytes") / 1048576.0).round()),
    );
    m.insert("world_size".into(), json!(num("world_size") as u64));
    m.insert(
        "resumed_from_step".into(),
        json!(num("resumed_from") as u64),
    );
    Ok(m)
}
