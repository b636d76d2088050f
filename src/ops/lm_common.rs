//! Shared pieces of the model ops (`tokenizer.train`, `lm.pretrain`,
//! `lm.finetune`, `lm.generate`): reading their inputs, the training params
//! every training op takes, and running model work on the threads the
//! scheduler granted.

use crate::model::adamw::AdamWConfig;
use crate::model::tokenizer::{Message, TextTokenizer};
use crate::model::train::{Example, TrainConfig, TrainPlan};
pub use crate::op::io::{input, read_jsonl, write_json};
use crate::op::param;
use crate::op::{OpError, ParamSpec, ParamType, RunContext};
use serde_json::{Map, Value};

/// Params shared by the training ops (all semantic).
pub const TRAIN_PARAMS: &[ParamSpec] = &[
    ParamSpec::int("seq_len", 128, "tokens per training window"),
    ParamSpec::int("batch_size", 16, "windows per step"),
    ParamSpec::num("epochs", 1.0, "passes over the data, fractional allowed"),
    ParamSpec::num("lr", 1e-3, "peak learning rate"),
    ParamSpec::num(
        "min_lr_ratio",
        0.1,
        "final learning rate as a fraction of the peak",
    ),
    ParamSpec::num("warmup", 0.05, "share of steps warming up linearly"),
    ParamSpec::num(
        "weight_decay",
        0.1,
        "AdamW decoupled weight decay on matrices",
    ),
    ParamSpec::num("clip", 1.0, "global gradient-norm clip, 0 = off"),
    ParamSpec::int("seed", 0, "seed of initialisation and data order"),
    DEVICE,
    DTYPE,
    MICRO_BATCH_SIZE,
    RECOMPUTE,
];

/// The `micro_batch_size` param of the training ops.
pub const MICRO_BATCH_SIZE: ParamSpec = ParamSpec::optional(
    "micro_batch_size",
    ParamType::Int,
    "windows per forward and backward pass; a step accumulates the gradients of its micro-batches up to `batch_size` windows, the last one possibly smaller (default: `batch_size`, no accumulation)",
);

/// The `recompute` param of the training ops.
pub const RECOMPUTE: ParamSpec = ParamSpec::bool(
    "recompute",
    false,
    "activation recompute: keep only each block's input in the forward pass and run the block again in the backward pass (less memory, about one more forward pass of time; autograd engine)",
);

/// An integer param, or its default.
pub fn int(params: &Map<String, Value>, k: &str, default: u64) -> u64 {
    params.get(k).and_then(Value::as_u64).unwrap_or(default)
}

/// Checks the ranges of [`TRAIN_PARAMS`]; `Err((param, message))`.
pub fn check_train(params: &Map<String, Value>) -> Result<(), (String, String)> {
    check_placement(params)?;
    let positive = ["seq_len", "batch_size", "epochs", "lr"];
    for k in positive {
        if let Some(v) = params.get(k).and_then(Value::as_f64)
            && v <= 0.0
        {
            return Err((k.into(), format!("`{k}` must be positive, found {v}")));
        }
    }
    for k in ["min_lr_ratio", "warmup"] {
        if let Some(v) = params.get(k).and_then(Value::as_f64)
            && !(0.0..=1.0).contains(&v)
        {
            return Err((k.into(), format!("`{k}` must be in [0, 1], found {v}")));
        }
    }
    for k in ["weight_decay", "clip"] {
        if let Some(v) = params.get(k).and_then(Value::as_f64)
            && v < 0.0
        {
            return Err((k.into(), format!("`{k}` must not be negative, found {v}")));
        }
    }
    check_micro_batch(params)
}

/// Checks `micro_batch_size`: positive and at most `batch_size`.
fn check_micro_batch(params: &Map<String, Value>) -> Result<(), (String, String)> {
    let Some(v) = params.get("micro_batch_size") else {
        return Ok(());
    };
    let batch = param::int(TRAIN_PARAMS, params, "batch_size");
    match v.as_u64() {
        Some(m) if m > 0 && m <= batch => Ok(()),
        _ => Err((
            "micro_batch_size".into(),
            format!(
                "`micro_batch_size` must be a positive integer at most `batch_size` ({batch}), found {v}"
            ),
        )),
    }
}

/// The training config from params.
pub fn train_config(params: &Map<String, Value>) -> TrainConfig {
    TrainConfig {
        seq_len: param::int(TRAIN_PARAMS, params, "seq_len") as usize,
        batch_size: param::int(TRAIN_PARAMS, params, "batch_size") as usize,
        micro_batch_size: params
            .get("micro_batch_size")
            .and_then(Value::as_u64)
            .map(|m| m as usize),
        recompute: param::bool(TRAIN_PARAMS, params, "recompute"),
        epochs: param::num(TRAIN_PARAMS, params, "epochs"),
        lr: param::num(TRAIN_PARAMS, params, "lr"),
        min_lr_ratio: param::num(TRAIN_PARAMS, params, "min_lr_ratio"),
        warmup: param::num(TRAIN_PARAMS, params, "warmup"),
        adamw: AdamWConfig {
            weight_decay: param::num(TRAIN_PARAMS, params, "weight_decay"),
            clip: param::num(TRAIN_PARAMS, params, "clip"),
            ..AdamWConfig::default()
        },
        seed: param::int(TRAIN_PARAMS, params, "seed"),
    }
}

/// The `corpus_format` param of the ops that read a pretraining corpus.
pub const CORPUS_FORMAT: ParamSpec = ParamSpec::optional(
    "corpus_format",
    ParamType::Str,
    "how input `corpus` holds documents: lines (one per line, the default) or jsonl (one {\"text\"} per line, so a document may hold newlines)",
);

/// Checks `corpus_format`.
pub fn check_corpus_format(params: &Map<String, Value>) -> Result<(), (String, String)> {
    match params.get("corpus_format") {
        None => Ok(()),
        Some(Value::String(s)) if s == "lines" || s == "jsonl" => Ok(()),
        Some(v) => Err((
            "corpus_format".into(),
            format!("`corpus_format` must be `lines` or `jsonl`, found {v}"),
        )),
    }
}

/// The documents of input `corpus` in the param `corpus_format`; blank
/// documents are skipped; an error names the input and the line.
pub fn read_corpus(ctx: &RunContext) -> Result<Vec<String>, OpError> {
    let path = input(ctx, "corpus")?;
    if ctx.params.get("corpus_format").and_then(Value::as_str) != Some("jsonl") {
        let text = std::fs::read_to_string(path)
            .map_err(|e| OpError::msg(format!("input `corpus`: {e}")))?;
        return Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect());
    }
    let mut docs = Vec::new();
    for (i, v) in read_jsonl::<Value>(path, "corpus")?.into_iter().enumerate() {
        let text = v.get("text").and_then(Value::as_str).ok_or_else(|| {
            OpError::msg(format!("input `corpus` record {}: no string `text`", i + 1))
        })?;
        if !text.trim().is_empty() {
            docs.push(text.to_string());
        }
    }
    Ok(docs)
}

/// The `messages` of a chat record, checked.
pub fn messages(v: &Value, input: &str, line: usize) -> Result<Vec<Message>, OpError> {
    let msgs = v
        .get("messages")
        .cloned()
        .ok_or_else(|| OpError::msg(format!("input `{input}` record {line}: no `messages`")))?;
    serde_json::from_value(msgs).map_err(|e| {
        OpError::msg(format!(
            "input `{input}` record {line}: `messages` must be a list of {{role, content}}: {e}"
        ))
    })
}

/// Runs `f` on a thread pool of the granted size, with malloc tuned.
pub fn on_threads<T: Send>(
    ctx: &RunContext,
    f: impl FnOnce() -> Result<T, OpError> + Send,
) -> Result<T, OpError> {
    crate::model::cpu::tune_malloc();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(ctx.threads.max(1))
        .build()
        .map_err(|e| OpError::msg(format!("thread pool: {e}")))?;
    pool.install(f)
}

/// Wraps a model-layer error.
pub fn model_err(e: impl std::fmt::Display) -> OpError {
    OpError::msg(e.to_string())
}

/// Flattens the numbers of a JSON object into record metrics.
pub fn metrics_of(value: &Value) -> Map<String, Value> {
    value
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, v)| v.is_number())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The f32 master copies of the weights `vars` of a model computing in
/// `dtype`: `None` for f32 (the weights are their own masters); for bf16 or
/// f16, the f32 weights `load_f32` gives (the same model loaded or
/// initialised in f32, so training starts from the unrounded values),
/// checked against `vars` by name and shape.
pub fn masters_for(
    dtype: candle_core::DType,
    vars: &[(String, candle_core::Var)],
    load_f32: impl FnOnce() -> Result<Vec<(String, candle_core::Var)>, OpError>,
) -> Result<Option<Vec<(String, candle_core::Var)>>, OpError> {
    if !crate::model::lm::is_half(dtype) {
        return Ok(None);
    }
    let masters = load_f32()?;
    let same = masters.len() == vars.len()
        && masters
            .iter()
            .zip(vars)
            .all(|((a, x), (b, y))| a == b && x.shape() == y.shape());
    if !same {
        return Err(OpError::msg(
            "the f32 master weights do not match the model's weights by name and shape",
        ));
    }
    Ok(Some(masters))
}

/// The plan of a training run (micro-batches, dtype, recompute, engine),
/// made before the first step: the place where a memory check of the run
/// on its device belongs.
pub fn plan_training(
    model: &dyn crate::model::CausalLm,
    cfg: &TrainConfig,
) -> Result<TrainPlan, OpError> {
    TrainPlan::new(model, cfg).map_err(model_err)
}

/// The memory a training plan needs on `model`'s device
/// ([`crate::model::memory::training`]), or `None` when the model's config
/// does not name its sizes.
pub fn training_memory(
    model: &dyn crate::model::CausalLm,
    plan: &TrainPlan,
) -> Result<Option<crate::model::memory::Estimate>, OpError> {
    use crate::model::memory::{Shape, training};
    let cfg: Value =
        serde_json::from_str(&model.config_json().map_err(model_err)?).map_err(model_err)?;
    let Some(shape) = Shape::from_config(&cfg, model.param_count()) else {
        return Ok(None);
    };
    Ok(Some(training(&shape, &train_layout(plan))))
}

/// The memory layout of a training plan.
pub fn train_layout(plan: &TrainPlan) -> crate::model::memory::TrainLayout {
    crate::model::memory::TrainLayout {
        seq_len: plan.seq_len,
        micro_batch: plan.micro_batch,
        batch: plan.batch_size,
        dtype: plan.dtype,
        activation_checkpointing: plan.recompute,
    }
}

/// `REPRO_MEMORY_LIMIT` (the node's environment first, then the
/// process's): a cap on the memory a model op may plan to use, e.g. `80G`
/// to check that runs fit an 80 GB card on a larger one.
fn memory_limit(ctx: &RunContext) -> Result<Option<u64>, OpError> {
    const VAR: &str = "REPRO_MEMORY_LIMIT";
    let text = ctx
        .env
        .iter()
        .find(|(k, _)| k == VAR)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(VAR).ok());
    let Some(text) = text else { return Ok(None) };
    crate::model::memory::parse_size(&text)
        .map(Some)
        .ok_or_else(|| {
            OpError::msg(format!(
                "{VAR}=`{text}` is not a size (bytes, or a number with K, M, G or T: `80G`)"
            ))
        })
}

/// Shows the memory estimate of a run before its first step and refuses
/// one that cannot fit its device; returns the estimate in bytes.
fn check_training_memory(
    ctx: &RunContext,
    model: &dyn crate::model::CausalLm,
    plan: &TrainPlan,
) -> Result<Option<u64>, OpError> {
    use crate::model::memory;
    let Some(estimate) = training_memory(model, plan)? else {
        return Ok(None);
    };
    (ctx.status)(&format!("memory estimate {estimate}"));
    let device = model.device();
    let name = if device.is_cpu() {
        "the CPU"
    } else {
        "the GPU"
    };
    let available = match memory_limit(ctx)? {
        Some(limit) => Some(memory::available(device).map_or(limit, |a| a.min(limit))),
        None => memory::available(device),
    };
    memory::check_fits(
        &estimate,
        available,
        name,
        "lower `micro_batch_size` (gradients accumulate to `batch_size`), set `recompute: true`, \
         train in `dtype: bf16`, shorten `seq_len`, or shard the model over several GPUs with `engine: torch`",
    )
    .map_err(|e| OpError::msg(e.to_string()))?;
    Ok(Some(estimate.total()))
}

/// Trains `model` on `examples`, writes the checkpoint to `out/model` and
/// the log to `out/train.json` (deterministic: no wall-clock fields), and
/// returns the record metrics.
///
/// `masters` are the f32 master copies of a bf16/f16 model's weights
/// ([`masters_for`]); the optimizer updates them and the checkpoint holds
/// them, so a half-precision run saves f32 weights, which every loader
/// reads. The log holds the loss every `max(1, steps / 100)` steps; the
/// metrics `final_loss` (mean of the last tenth of the steps), `steps`,
/// `tokens`, `learned_tokens`, `seconds`, `tokens_per_s`, `params`,
/// `windows` and the plan's `micro_batch_size`, `accumulation_steps`,
/// `recompute` and `dtype`. The log names those four only when a param set
/// them away from their defaults, so a default run's log stays as it was.
pub fn train_and_save(
    ctx: &RunContext,
    loaded: crate::model::checkpoint::Loaded,
    masters: Option<Vec<(String, candle_core::Var)>>,
    examples: &[crate::model::train::Example],
    cfg: &TrainConfig,
    mut extra: Map<String, Value>,
) -> Result<Map<String, Value>, OpError> {
    use crate::model::{checkpoint, train};
    let windows = train::pack(examples, cfg.seq_len);
    if windows.is_empty() {
        return Err(OpError::msg(
            "no training window has a token to learn (empty data?)",
        ));
    }
    let plan = plan_training(loaded.model.as_ref(), cfg)?;
    let memory_estimate = check_training_memory(ctx, loaded.model.as_ref(), &plan)?;
    let vars: Vec<_> = loaded.vars.iter().map(|(_, v)| v.clone()).collect();
    let master_vars: Option<Vec<_>> = masters
        .as_ref()
        .map(|m| m.iter().map(|(_, v)| v.clone()).collect());
    let weights = train::Weights {
        vars: &vars,
        masters: master_vars.as_deref(),
    };
    let cancel = ctx.cancel;
    let started = std::time::Instant::now();
    let report = train::train_planned(
        loaded.model.as_ref(),
        weights,
        &windows,
        cfg,
        &plan,
        |step, total, loss| {
            if step % 5 == 0 || step + 1 == total {
                let secs = started.elapsed().as_secs_f64();
                let eta = secs / (step + 1) as f64 * (total - step - 1) as f64;
                (ctx.status)(&format!(
                    "step {}/{total}  loss {loss:.3}  eta {eta:.0}s",
                    step + 1
                ));
            }
            !cancel.is_cancelled()
        },
    )
    .map_err(model_err)?;
    if cancel.is_cancelled() {
        return Err(OpError::Cancelled);
    }
    let weights: Vec<_> = masters
        .as_ref()
        .unwrap_or(&loaded.vars)
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let cfg_text = loaded.model.config_json().map_err(model_err)?;
    checkpoint::save_text(
        &ctx.work_dir.join("out").join("model"),
        &cfg_text,
        &weights,
        &loaded.tokenizer,
    )
    .map_err(model_err)?;
    let n = report.losses.len();
    let tail = (n / 10).max(1).min(n.max(1));
    let final_loss = if n == 0 {
        f64::NAN
    } else {
        report.losses[n - tail..].iter().sum::<f64>() / tail as f64
    };
    let every = (n / 100).max(1);
    let curve: Vec<Value> = report
        .losses
        .iter()
        .enumerate()
        .filter(|(i, _)| i % every == 0 || *i + 1 == n)
        .map(|(i, l)| json!([i, (l * 1e4).round() / 1e4]))
        .collect();
    let secs = report.seconds.max(1e-9);
    for (k, v) in [
        ("final_loss", json!((final_loss * 1e4).round() / 1e4)),
        (
            "first_loss",
            json!(report.losses.first().map(|l| (l * 1e4).round() / 1e4)),
        ),
        ("steps", json!(report.steps)),
        ("windows", json!(report.windows)),
        ("tokens", json!(report.tokens)),
        ("learned_tokens", json!(report.learned_tokens)),
        ("seconds", json!((report.seconds * 100.0).round() / 100.0)),
        ("tokens_per_s", json!((report.tokens as f64 / secs).round())),
        ("params", json!(loaded.model.param_count())),
        (
            "memory_estimate_gb",
            json!(memory_estimate.map(|b| (b as f64 / 1e8).round() / 10.0)),
        ),
    ] {
        extra.insert(k.into(), v);
    }
    // The log is an output: only what the same inputs always give. Wall
    // time and speed stay in the record's metrics (and its provenance).
    let mut log = extra.clone();
    log.remove("seconds");
    log.remove("tokens_per_s");
    // The estimate follows the code's model of memory, not the inputs.
    log.remove("memory_estimate_gb");
    log.extend(plan_fields(&plan, cfg, false));
    log.insert("loss_curve".into(), Value::Array(curve));
    log.insert(
        "config".into(),
        serde_json::from_str::<Value>(&cfg_text).map_err(model_err)?,
    );
    write_json(
        &ctx.work_dir.join("out").join("train.json"),
        &Value::Object(log),
    )?;
    let mut metrics = metrics_of(&Value::Object(extra));
    metrics.extend(plan_fields(&plan, cfg, true));
    Ok(metrics)
}

/// How a run was executed, for its record (`all`) or its log (only what
/// params set away from the defaults): `micro_batch_size` and
/// `accumulation_steps` when `micro_batch_size` was given, `recompute` when
/// on, `dtype` when not f32.
fn plan_fields(plan: &TrainPlan, cfg: &TrainConfig, all: bool) -> Map<String, Value> {
    let mut out = Map::new();
    if all || cfg.micro_batch_size.is_some() {
        out.insert("micro_batch_size".into(), json!(plan.micro_batch));
        out.insert("accumulation_steps".into(), json!(plan.accumulation_steps));
    }
    if all || plan.recompute {
        out.insert("recompute".into(), json!(plan.recompute));
    }
    if all || plan.dtype != candle_core::DType::F32 {
        out.insert(
            "dtype".into(),
            json!(crate::model::precision::name(plan.dtype)),
        );
    }
    out
}

/// Outputs of the training ops: the model directory (heavy) and the log.
pub fn train_outputs() -> Vec<crate::op::OutputDecl> {
    vec![
        crate::op::OutputDecl {
            name: "out".into(),
            path: "model".into(),
            heavy: true,
        },
        crate::op::OutputDecl {
            name: "log".into(),
            path: "train.json".into(),
            heavy: false,
        },
    ]
}

use serde_json::json;

/// The chat records as training examples (one `encode_chat` per
/// conversation), the leading ones within `budget` tokens; also the tokens
/// they hold.
pub fn examples(
    tokenizer: &TextTokenizer,
    records: &[Value],
    budget: Option<u64>,
) -> Result<(Vec<Example>, usize), OpError> {
    let mut examples = Vec::new();
    let mut used_tokens = 0usize;
    for (i, r) in records.iter().enumerate() {
        let msgs = messages(r, "data", i + 1)?;
        let (ids, learn) = tokenizer
            .encode_chat(&msgs)
            .map_err(|e| OpError::msg(format!("input `data` record {}: {e}", i + 1)))?;
        if let Some(b) = budget
            && used_tokens + ids.len() > b as usize
        {
            break;
        }
        used_tokens += ids.len();
        examples.push(Example { ids, learn });
    }
    Ok((examples, used_tokens))
}

/// The `device` param of every op that runs a model.
pub const DEVICE: ParamSpec = ParamSpec::str(
    "device",
    "auto",
    "`auto`: the GPU the node is granted (`resources: {gpus: 1}`), else the CPU; `cpu`: the CPU even when the node is granted GPUs (default auto; not in the key)",
)
.not_semantic();

/// Where a model op computes, and how its record names that.
pub struct Placement {
    /// The candle device.
    pub device: candle_core::Device,
    /// For the record's `provenance.device` (`cpu (avx2)`, `cuda:1`).
    pub described: String,
}

/// The device of a model op: the CPU unless the node was granted GPUs and
/// its `device` param is `auto`; a granted GPU on a binary built without
/// CUDA is an error that says how to go on, never a silent CPU run.
pub fn place(ctx: &RunContext) -> Result<Placement, OpError> {
    let granted = granted_gpus(ctx);
    if param::str(&[DEVICE], ctx.params, "device") == "cpu" || granted.is_empty() {
        return Ok(Placement {
            device: candle_core::Device::Cpu,
            described: crate::model::cpu::describe(),
        });
    }
    cuda_placement(&granted)
}

/// The GPU ids the executor granted the node (`CUDA_VISIBLE_DEVICES`).
fn granted_gpus(ctx: &RunContext) -> Vec<String> {
    ctx.env
        .iter()
        .find(|(k, _)| k == "CUDA_VISIBLE_DEVICES")
        .map(|(_, v)| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Opens the first granted GPU. The CUDA ordinal is its position in this
/// process's own `CUDA_VISIBLE_DEVICES` when that is set (a Slurm job sees
/// only its GPUs), else the id itself (the local executor runs ops in
/// process, which sees every GPU).
#[cfg(feature = "cuda")]
fn cuda_placement(granted: &[String]) -> Result<Placement, OpError> {
    let id = &granted[0];
    let ordinal = match std::env::var("CUDA_VISIBLE_DEVICES") {
        Ok(visible) => visible.split(',').position(|v| v.trim() == id).unwrap_or(0),
        Err(_) => id
            .parse()
            .map_err(|_| OpError::msg(format!("granted GPU `{id}` is not a CUDA ordinal")))?,
    };
    let device = candle_core::Device::new_cuda(ordinal).map_err(|e| {
        OpError::msg(format!(
            "granted GPU {id}: cannot open CUDA device {ordinal}: {e}"
        ))
    })?;
    Ok(Placement {
        device,
        described: format!("cuda:{id}"),
    })
}

/// Without CUDA compiled in, a granted GPU cannot be used.
#[cfg(not(feature = "cuda"))]
fn cuda_placement(granted: &[String]) -> Result<Placement, OpError> {
    Err(OpError::msg(format!(
        "the node is granted GPU {} but this repro binary was built without CUDA; \
         rebuild with `cargo build --release --features cuda`, or set `device: cpu` \
         in the node's params to run it on the CPU",
        granted.join(",")
    )))
}

/// The `dtype` param of the ops that run a model for inference. Its default
/// is f32, and `bf16` on a node granted GPUs ([`ParamSpec::on_gpu`]: written
/// into such a node's params when the pipeline compiles, so it is in the
/// key); a CPU node that omits it or writes `f32` has the same key as before
/// the param existed.
pub const DTYPE: ParamSpec = ParamSpec::str(
    "dtype",
    "f32",
    "weights and compute precision: `f32`, `bf16` or `f16` (default f32; bf16 on a node granted GPUs)",
)
.on_gpu("bf16");

/// The `max_batch_tokens` param of the ops that generate: a cap on rows x
/// (longest prompt + new tokens) per batch, what the KV cache scales with.
pub const MAX_BATCH_TOKENS: ParamSpec = ParamSpec::optional(
    "max_batch_tokens",
    ParamType::Int,
    "most tokens per batch, rows x (longest prompt + new tokens), bounding the KV cache's memory (default: no cap; a cap changes batches, so it is in the key)",
);

/// Checks the `device` and `dtype` params of a model op.
pub fn check_placement(params: &Map<String, Value>) -> Result<(), (String, String)> {
    param::check_choice(params, "device", &["auto", "cpu"])?;
    param::check_choice(params, "dtype", &["f32", "bf16", "f16"])
}

/// The `dtype` a model op loads its weights in.
pub fn dtype(ctx: &RunContext) -> Result<candle_core::DType, OpError> {
    let name = param::str(&[DTYPE], ctx.params, "dtype");
    crate::model::precision::parse(name)
        .ok_or_else(|| OpError::msg(format!("`dtype` must be f32, bf16 or f16, found `{name}`")))
}

/// The `max_batch_tokens` param, when given.
pub fn max_batch_tokens(ctx: &RunContext) -> Option<usize> {
    ctx.params
        .get("max_batch_tokens")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
}

/// Checks that training windows of `seq_len` tokens fit in a model of
/// `positions` positions; `Err((param, message))` naming `seq_len`.
pub fn check_seq_len(
    params: &Map<String, Value>,
    positions: usize,
    model: &str,
) -> Result<(), (String, String)> {
    let seq_len = param::int(TRAIN_PARAMS, params, "seq_len");
    if seq_len as usize > positions {
        return Err((
            "seq_len".into(),
            format!(
                "`seq_len` is {seq_len} but {model} has {positions} positions; \
                 set `seq_len` to at most {positions}"
            ),
        ));
    }
    Ok(())
}
