//! The Rust half of `scripts/gpu-check.sh`: repro's figures on one GPU
//! (issue 15), each printed as one JSON object per line on stdout.
//!
//! ```text
//! gpu_check device   --device cuda
//! gpu_check logits   --builtin tiny-llama --device cuda [--tolerance 0.05]
//! gpu_check logits   --model DIR --device cuda
//! gpu_check generate --model DIR --prompt-ids FILE --device cuda \
//!                    --batch 1 --batch 16 --batch 64 --new-tokens 128 [--repeats 3]
//! gpu_check train    --config DIR/config.json --device cuda \
//!                    --seq 1024 --micro-batch 8 [--warmup-steps 3 --steps 10]
//! ```
//!
//! - `logits`: the model in `--dtype` (bf16) on `--device` against f32 on the
//!   CPU, measured as `tests/dtype.rs` measures bf16 on the CPU: the largest
//!   logit difference over the largest f32 logit on a fixed prompt set, the
//!   share of positions along f32's greedy continuations where the
//!   next-token argmaxes agree, and how many first greedy tokens are equal.
//!   `--builtin tiny-llama` / `tiny-gpt2` are `tests/dtype.rs`'s own tiny
//!   models (same seed, same weights); with `--tolerance` the run fails when
//!   a bound of that test is broken. It also reports bf16 on the CPU, the
//!   figure the test measures.
//! - `generate`: generated tokens per second of a model directory (any
//!   weights; every row decodes exactly `--new-tokens` tokens, greedy, no
//!   stop), one batch of the first `b` prompts of `--prompt-ids` (one JSON
//!   array of ids per line) per `--batch b`, after a short warm-up at that
//!   batch; the median of `--repeats` runs, the prefill (one new token)
//!   timed apart, as `examples/decode_bench.rs` does.
//! - `train`: training tokens/s of a freshly initialised LLaMA of a
//!   `config.json`'s shape on random tokens, through
//!   `repro::model::train::train_with` (autograd, AdamW with its defaults,
//!   warm-up plus cosine learning rate): the median step time of the steps
//!   after `--warmup-steps`. Each step reads its loss back, so a step's
//!   time is the device's. Peak memory is measured outside (the script polls
//!   `nvidia-smi`).
//! - `device`: opens the device and prints what it is (a check that CUDA
//!   works before anything long runs).
//!
//! Every mode runs on the CPU too (`--device cpu`, tiny shapes), which is
//! how `tests/gpu_check.rs` and `scripts/gpu-check.sh run --cpu-smoke`
//! test it without a GPU. A failed check prints its JSON (with
//! `"ok": false`) and exits 1; an error exits 2 with the error on stderr.

use candle_core::{D, DType, Device, Tensor};
use clap::{Args, Parser, Subcommand, ValueEnum};
use repro::model::generate::{GenConfig, generate};
use repro::model::gpt2::{Gpt2, Gpt2Config};
use repro::model::params::ParamStore;
use repro::model::{CausalLm, Llama, LlamaConfig};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

type BoxErr = Box<dyn std::error::Error>;

#[derive(Parser)]
#[command(
    name = "gpu_check",
    about = "repro's GPU figures (logits, generation, training), one JSON line each"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Opens the device and prints what it is.
    Device(DeviceArg),
    /// Logits in --dtype on --device against f32 on the CPU.
    Logits(LogitsArgs),
    /// Generated tokens/s at several batch sizes.
    Generate(GenerateArgs),
    /// Training tokens/s of a freshly initialised LLaMA.
    Train(TrainArgs),
}

#[derive(Args)]
struct DeviceArg {
    /// `cpu`, `cuda` (the first GPU) or `cuda:N`.
    #[arg(long, default_value = "cuda")]
    device: String,
}

#[derive(Args)]
struct LogitsArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A Hugging Face model directory (config.json, model.safetensors,
    /// tokenizer.json).
    #[arg(long, conflicts_with = "builtin", required_unless_present = "builtin")]
    model: Option<PathBuf>,
    /// One of tests/dtype.rs's tiny models, with its weights.
    #[arg(long, value_enum)]
    builtin: Option<Builtin>,
    /// The type compared against CPU f32 (`bf16` or `f16`).
    #[arg(long, default_value = "bf16")]
    dtype: String,
    /// Greedy tokens along which next-token argmaxes are compared.
    #[arg(long, default_value_t = 12)]
    new_tokens: usize,
    /// Fail when the largest relative logit difference exceeds this (and
    /// the agreement is below --min-agreement, or a first token differs).
    #[arg(long)]
    tolerance: Option<f64>,
    /// Least next-token agreement accepted with --tolerance.
    #[arg(long, default_value_t = 0.9)]
    min_agreement: f64,
    /// Also measure --dtype on the CPU (what tests/dtype.rs measures).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    cpu_too: bool,
    /// A name for the summary.
    #[arg(long)]
    label: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Builtin {
    /// tests/dtype.rs's tiny LLaMA (64 wide, 3 layers, vocab 300).
    TinyLlama,
    /// tests/dtype.rs's tiny GPT-2 (64 wide, 3 layers, vocab 300).
    TinyGpt2,
}

#[derive(Args)]
struct GenerateArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A Hugging Face model directory.
    #[arg(long)]
    model: PathBuf,
    /// Prompts: one JSON array of token ids per line.
    #[arg(long)]
    prompt_ids: PathBuf,
    /// Weights' type (default: bf16 on a GPU, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Batch sizes, each one batch of the first `b` prompts (repeatable).
    #[arg(long = "batch", required = true)]
    batches: Vec<usize>,
    /// New tokens per row (exactly: no stop token).
    #[arg(long, default_value_t = 128)]
    new_tokens: usize,
    /// Timed runs per batch size (the median is reported).
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Writes the generated ids of the last run at batch b to PREFIX.bB.ids.
    #[arg(long)]
    ids_out: Option<PathBuf>,
}

#[derive(Args)]
struct TrainArgs {
    #[command(flatten)]
    device: DeviceArg,
    /// A LLaMA `config.json` giving the shape.
    #[arg(long)]
    config: PathBuf,
    /// Weights' type (default: bf16 on a GPU, f32 on the CPU).
    #[arg(long)]
    dtype: Option<String>,
    /// Tokens per window (model inputs).
    #[arg(long, default_value_t = 1024)]
    seq: usize,
    /// Windows per step.
    #[arg(long, default_value_t = 8)]
    micro_batch: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup_steps: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Gradient engine: `autograd` (any device) or `manual` (CPU f32 only).
    #[arg(long, default_value = "autograd")]
    engine: String,
    /// Peak learning rate (warm-up over 10% of the steps, cosine to 10%).
    #[arg(long, default_value_t = 3e-4)]
    lr: f64,
}

/// Where a mode's JSON records go: stdout here, a list in the tests.
pub(crate) type Emit<'a> = &'a mut dyn FnMut(&serde_json::Value);

/// Runs one mode, handing each record to `emit` as soon as it exists (so
/// that a run killed by its time limit keeps what it measured). `Ok(false)`:
/// a check failed.
pub(crate) fn run(cli: Cli, emit: Emit) -> Result<bool, BoxErr> {
    repro::model::cpu::tune_malloc();
    match cli.cmd {
        Cmd::Device(a) => device_cmd(&a, emit),
        Cmd::Logits(a) => logits_cmd(&a, emit),
        Cmd::Generate(a) => generate_cmd(&a, emit),
        Cmd::Train(a) => train_cmd(&a, emit),
    }
}

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any other thread starts.
    unsafe { repro::model::cpu::set_candle_env() };
    let cli = Cli::parse();
    match run(cli, &mut |v| println!("{v}")) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("gpu_check: error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Opens `cpu`, `cuda` or `cuda:N`. Without the `cuda` feature candle
/// answers a CUDA device with an error saying so.
fn open_device(name: &str) -> Result<Device, BoxErr> {
    let ordinal = match name {
        "cpu" => return Ok(Device::Cpu),
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(format!("--device {other}: expected cpu, cuda or cuda:N").into()),
        },
    };
    let hint = if cfg!(feature = "cuda") {
        "is an NVIDIA driver loaded and a GPU visible? see nvidia-smi"
    } else {
        "this binary was built without `--features cuda`; scripts/gpu-check.sh build makes one"
    };
    Device::new_cuda(ordinal)
        .map_err(|e| format!("cannot open CUDA device {ordinal}: {e} ({hint})").into())
}

/// The weights' type: `--dtype` when given, else the device's default.
fn dtype_for(arg: Option<&str>, device: &Device) -> Result<DType, BoxErr> {
    match arg {
        None => Ok(repro::model::precision::default_for(device)),
        Some(s) => repro::model::precision::parse(s)
            .ok_or_else(|| format!("--dtype {s}: expected f32, bf16 or f16").into()),
    }
}

/// The device as the summary names it.
fn describe(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => repro::model::cpu::describe(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        other => format!("{other:?}"),
    }
}

fn device_cmd(a: &DeviceArg, emit: Emit) -> Result<bool, BoxErr> {
    let dev = open_device(&a.device)?;
    // A small product proves kernels load and run, not only that the
    // context opens.
    let x = Tensor::arange(0f32, 6.0, &dev)?.reshape((2, 3))?;
    let y = x.matmul(&x.t()?)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
    let ok = y == vec![vec![5.0, 14.0], vec![14.0, 50.0]];
    emit(
        &json!({"part": "device", "impl": "repro", "device": describe(&dev),
               "cuda_compiled": cfg!(feature = "cuda"), "matmul_ok": ok, "ok": ok}),
    );
    Ok(ok)
}

// ---- logits ----------------------------------------------------------------

/// tests/dtype.rs's tiny LLaMA config.
fn tiny_llama_cfg() -> LlamaConfig {
    serde_json::from_value(json!({
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    }))
    .expect("a valid tiny LLaMA config")
}

/// tests/dtype.rs's tiny GPT-2 config.
fn tiny_gpt2_cfg() -> Gpt2Config {
    serde_json::from_value(json!({
        "vocab_size": 300, "n_positions": 64, "n_embd": 64, "n_layer": 3, "n_head": 4,
        "n_inner": 96, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
        "tie_word_embeddings": true, "scale_attn_weights": true,
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"
    }))
    .expect("a valid tiny GPT-2 config")
}

type Build = Box<dyn Fn(&mut ParamStore, &Device) -> candle_core::Result<Box<dyn CausalLm>>>;

/// A builtin model's builder and its weights (tests/dtype.rs's: seed 5,
/// N(0, 0.1), f32 on the CPU).
fn builtin(which: Builtin) -> Result<(Build, HashMap<String, Tensor>), BoxErr> {
    let build: Build = match which {
        Builtin::TinyLlama => {
            let cfg = tiny_llama_cfg();
            Box::new(move |s, d| Ok(Box::new(Llama::new(&cfg, s, d)?) as Box<dyn CausalLm>))
        }
        Builtin::TinyGpt2 => {
            let cfg = tiny_gpt2_cfg();
            Box::new(move |s, d| Ok(Box::new(Gpt2::new(&cfg, s, d)?) as Box<dyn CausalLm>))
        }
    };
    let mut store = ParamStore::fresh(5, 0.1, &Device::Cpu, DType::F32);
    build(&mut store, &Device::Cpu)?;
    Ok((build, store.tensors().into_iter().collect()))
}

/// tests/dtype.rs's prompts, ids taken modulo `vocab`.
fn fixed_prompts(vocab: usize) -> Vec<Vec<u32>> {
    (0..6)
        .map(|i| {
            (0..3 + 2 * i)
                .map(|j| ((i * 37 + j * 11 + 1) % vocab) as u32)
                .collect()
        })
        .collect()
}

/// Max |a - b| over max |a|, both read back to the CPU in f32.
fn rel_diff(a: &Tensor, b: &Tensor) -> Result<f32, BoxErr> {
    let a = a.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let b = b.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
    let scale = a.abs()?.max_all()?.to_scalar::<f32>()?;
    let diff = (&a - &b)?.abs()?.max_all()?.to_scalar::<f32>()?;
    Ok(diff / scale.max(1e-6))
}

fn greedy(
    model: &dyn CausalLm,
    ps: &[Vec<u32>],
    batch: usize,
    new: usize,
) -> Result<Vec<Vec<u32>>, BoxErr> {
    let cfg = GenConfig {
        max_new_tokens: new,
        batch_size: batch,
        ..Default::default()
    };
    Ok(generate(model, ps, &[], &cfg, |_| false)?
        .into_iter()
        .map(|g| g.ids)
        .collect())
}

/// The next-token argmax at every position of `seq`.
fn argmaxes(model: &dyn CausalLm, seq: &[u32]) -> Result<Vec<u32>, BoxErr> {
    let ids = Tensor::from_vec(seq.to_vec(), (1, seq.len()), model.device())?;
    Ok(model
        .forward(&ids, None, None, true)?
        .squeeze(0)?
        .argmax(D::Minus1)?
        .to_vec1()?)
}

/// What `tests/dtype.rs` measures of `b` against the f32 reference `a`.
struct Closeness {
    max_rel_diff: f32,
    agreement: f64,
    first_equal: usize,
}

fn closeness(
    a: &dyn CausalLm,
    b: &dyn CausalLm,
    ps: &[Vec<u32>],
    new: usize,
) -> Result<Closeness, BoxErr> {
    let mut worst = 0f32;
    for p in ps {
        let ids = |m: &dyn CausalLm| Tensor::from_vec(p.clone(), (1, p.len()), m.device());
        let la = a.forward(&ids(a)?, None, None, true)?;
        let lb = b.forward(&ids(b)?, None, None, true)?;
        if lb.dtype() != DType::F32 {
            return Err(format!("logits came back in {:?}, not f32", lb.dtype()).into());
        }
        worst = worst.max(rel_diff(&la, &lb)?);
    }
    let conts = greedy(a, ps, 1, new)?;
    let (mut same, mut all) = (0usize, 0usize);
    for (p, c) in ps.iter().zip(&conts) {
        let seq: Vec<u32> = p.iter().chain(c).copied().collect();
        let (ta, tb) = (argmaxes(a, &seq)?, argmaxes(b, &seq)?);
        for i in p.len() - 1..seq.len() - 1 {
            same += usize::from(ta[i] == tb[i]);
            all += 1;
        }
    }
    let firsts = greedy(b, ps, ps.len(), 1)?;
    let first_equal = firsts
        .iter()
        .zip(&conts)
        .filter(|(x, y)| x.first() == y.first())
        .count();
    Ok(Closeness {
        max_rel_diff: worst,
        agreement: same as f64 / all.max(1) as f64,
        first_equal,
    })
}

fn logits_cmd(a: &LogitsArgs, emit: Emit) -> Result<bool, BoxErr> {
    let dev = open_device(&a.device.device)?;
    let dtype = dtype_for(Some(&a.dtype), &dev)?;
    let t0 = Instant::now();
    let (what, reference, on_dev, on_cpu) = match (&a.model, a.builtin) {
        (Some(dir), _) => {
            let load = |d: &Device, t: DType| repro::model::load::load_as(dir, false, d, t);
            (
                dir.display().to_string(),
                load(&Device::Cpu, DType::F32)?.model,
                load(&dev, dtype)?.model,
                if a.cpu_too {
                    Some(load(&Device::Cpu, dtype)?.model)
                } else {
                    None
                },
            )
        }
        (None, Some(which)) => {
            let (build, w) = builtin(which)?;
            let make = |d: &Device, t: DType| -> Result<Box<dyn CausalLm>, BoxErr> {
                let mut store = ParamStore::loaded(w.clone(), false, d, t);
                Ok(build(&mut store, d)?)
            };
            let name = match which {
                Builtin::TinyLlama => "tiny-llama",
                Builtin::TinyGpt2 => "tiny-gpt2",
            };
            (
                name.to_string(),
                make(&Device::Cpu, DType::F32)?,
                make(&dev, dtype)?,
                if a.cpu_too {
                    Some(make(&Device::Cpu, dtype)?)
                } else {
                    None
                },
            )
        }
        (None, None) => return Err("give --model DIR or --builtin NAME".into()),
    };
    let ps = fixed_prompts(reference.vocab_size());
    let c = closeness(reference.as_ref(), on_dev.as_ref(), &ps, a.new_tokens)?;
    let cpu = match &on_cpu {
        Some(m) => Some(closeness(
            reference.as_ref(),
            m.as_ref(),
            &ps,
            a.new_tokens,
        )?),
        None => None,
    };
    let ok = a.tolerance.map(|tol| {
        c.max_rel_diff > 0.0
            && f64::from(c.max_rel_diff) <= tol
            && c.agreement >= a.min_agreement
            && c.first_equal == ps.len()
    });
    let mut report = json!({
        "part": "logits", "impl": "repro",
        "label": a.label.clone().unwrap_or_else(|| what.clone()),
        "model": what, "arch": reference.arch(), "params": reference.param_count(),
        "device": describe(&dev), "dtype": repro::model::precision::name(dtype),
        "reference": "f32 on the CPU", "prompts": ps.len(), "new_tokens": a.new_tokens,
        "max_rel_diff": c.max_rel_diff, "agreement": c.agreement,
        "first_token_equal": c.first_equal,
        "tolerance": a.tolerance, "min_agreement": a.tolerance.map(|_| a.min_agreement),
        "seconds": t0.elapsed().as_secs_f64(),
        "ok": ok,
    });
    if let Some(cpu) = cpu {
        report["cpu_max_rel_diff"] = json!(cpu.max_rel_diff);
        report["cpu_agreement"] = json!(cpu.agreement);
        report["cpu_first_token_equal"] = json!(cpu.first_equal);
    }
    emit(&report);
    Ok(ok != Some(false))
}

// ---- generate --------------------------------------------------------------

/// One JSON array of ids per line.
fn read_prompt_ids(path: &Path) -> Result<Vec<Vec<u32>>, BoxErr> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Vec<u32>>(l)
                .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1).into())
        })
        .collect()
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn generate_cmd(a: &GenerateArgs, emit: Emit) -> Result<bool, BoxErr> {
    let dev = open_device(&a.device.device)?;
    let dtype = dtype_for(a.dtype.as_deref(), &dev)?;
    let prompts = read_prompt_ids(&a.prompt_ids)?;
    let t0 = Instant::now();
    let loaded = repro::model::load::load_as(&a.model, false, &dev, dtype)?;
    let load_s = t0.elapsed().as_secs_f64();
    let model = loaded.model.as_ref();
    for &batch in &a.batches {
        if batch == 0 || batch > prompts.len() {
            return Err(format!(
                "--batch {batch}: {} has {} prompts",
                a.prompt_ids.display(),
                prompts.len()
            )
            .into());
        }
        let ps = &prompts[..batch];
        let run = |new: usize| -> Result<(f64, Vec<Vec<u32>>), BoxErr> {
            let t = Instant::now();
            let out = greedy(model, ps, batch, new)?;
            Ok((t.elapsed().as_secs_f64(), out))
        };
        run(2.min(a.new_tokens))?;
        let mut prefill = Vec::new();
        let mut gen_s = Vec::new();
        let mut last = Vec::new();
        for _ in 0..a.repeats.max(1) {
            prefill.push(run(1)?.0);
            let (s, ids) = run(a.new_tokens)?;
            gen_s.push(s);
            last = ids;
        }
        let generated: usize = last.iter().map(Vec::len).sum();
        if generated != batch * a.new_tokens {
            return Err(format!(
                "batch {batch}: {generated} tokens generated, expected {} (a row stopped early)",
                batch * a.new_tokens
            )
            .into());
        }
        if let Some(p) = &a.ids_out {
            let lines: Vec<String> = last
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<_, _>>()?;
            std::fs::write(
                format!("{}.b{batch}.ids", p.display()),
                lines.join("\n") + "\n",
            )?;
        }
        let gen_med = median(&gen_s);
        let prompt_tokens: usize = ps.iter().map(Vec::len).sum();
        emit(&json!({
            "part": "generate", "impl": "repro", "device": describe(&dev),
            "dtype": repro::model::precision::name(dtype), "model": a.model.display().to_string(),
            "params": model.param_count(), "batch": batch, "new_tokens": a.new_tokens,
            "prompt_tokens": prompt_tokens, "generated_tokens": generated,
            "prefill_s": median(&prefill), "gen_s": gen_med, "gen_s_all": gen_s,
            "gen_tok_s": generated as f64 / gen_med, "load_s": load_s,
            "threads": candle_core::utils::get_num_threads(), "ok": true,
        }));
    }
    Ok(true)
}

// ---- train -----------------------------------------------------------------

/// `n` pseudo-random token ids below `vocab` (SplitMix64, seed 0).
fn random_ids(n: usize, vocab: usize) -> Vec<u32> {
    let mut s = 0u64;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % vocab as u64) as u32
        })
        .collect()
}

fn train_cmd(a: &TrainArgs, emit: Emit) -> Result<bool, BoxErr> {
    use repro::model::train::{Engine, Example, TrainConfig, pack, train_with};
    let dev = open_device(&a.device.device)?;
    let dtype = dtype_for(a.dtype.as_deref(), &dev)?;
    let obj = repro::model::load::read_json_object(&a.config)?;
    let cfg = repro::model::load::llama_config(&a.config, &obj)?;
    if a.seq > cfg.max_position_embeddings {
        return Err(format!(
            "--seq {} exceeds the config's max_position_embeddings {}",
            a.seq, cfg.max_position_embeddings
        )
        .into());
    }
    let engine = match a.engine.as_str() {
        "autograd" => Engine::Autograd,
        "manual" => Engine::Manual,
        other => return Err(format!("--engine {other}: expected autograd or manual").into()),
    };
    let steps = a.warmup_steps + a.steps;
    let windows = steps * a.micro_batch;
    let t0 = Instant::now();
    let (model, vars) = repro::model::init(&cfg, 0, &dev, dtype)?;
    let vars: Vec<_> = vars.into_iter().map(|(_, v)| v).collect();
    let params: usize = vars.iter().map(|v| v.elem_count()).sum();
    let init_s = t0.elapsed().as_secs_f64();
    // A matrix to compare after training: a run that never updates its
    // weights would time something else than training.
    let probe = vars
        .iter()
        .find(|v| v.rank() == 2)
        .ok_or("the model has no matrix")?;
    let before = probe.as_tensor().to_dtype(DType::F32)?.copy()?;
    let example = Example {
        ids: random_ids(windows * a.seq + 1, cfg.vocab_size),
        learn: vec![true; windows * a.seq + 1],
    };
    let packed = pack(&[example], a.seq);
    let tcfg = TrainConfig {
        seq_len: a.seq,
        batch_size: a.micro_batch,
        micro_batch_size: None,
        recompute: false,
        epochs: 1.0,
        lr: a.lr,
        min_lr_ratio: 0.1,
        warmup: 0.1,
        adamw: repro::model::adamw::AdamWConfig::default(),
        seed: 0,
    };
    let mut marks = vec![Instant::now()];
    let report = train_with(
        &model,
        &vars,
        &packed,
        &tcfg,
        engine,
        |step, total, loss| {
            let now = Instant::now();
            // Progress in the log, should the step's time limit cut the run.
            eprintln!(
                "gpu_check: train step {}/{total}: {:.3} s, loss {loss:.4}",
                step + 1,
                (now - marks[marks.len() - 1]).as_secs_f64()
            );
            marks.push(now);
            true
        },
    )?;
    if report.steps != steps {
        return Err(format!("{} steps ran, expected {steps}", report.steps).into());
    }
    let step_s: Vec<f64> = marks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let timed = &step_s[a.warmup_steps.min(step_s.len())..];
    let med = median(timed);
    let tokens_per_step = a.micro_batch * a.seq;
    let change = (probe.as_tensor().to_dtype(DType::F32)? - &before)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
    let finite = report.losses.iter().all(|l| l.is_finite());
    let ok = finite && change > 0.0;
    emit(&json!({
        "part": "train", "impl": "repro", "device": describe(&dev),
        "dtype": repro::model::precision::name(dtype), "engine": a.engine,
        "params": params, "seq": a.seq, "micro_batch": a.micro_batch,
        "tokens_per_step": tokens_per_step, "warmup_steps": a.warmup_steps,
        "timed_steps": timed.len(), "step_s_median": med, "step_s_all": step_s,
        "tokens_per_s": tokens_per_step as f64 / med,
        "loss_first": report.losses.first(), "loss_last": report.losses.last(),
        "init_s": init_s, "weights_dtype": repro::model::precision::name(probe.dtype()),
        "max_weight_change": change,
        "optimizer": "repro AdamW (0.9, 0.95, eps 1e-8, wd 0.1 on matrices, clip 1.0)",
        "ok": ok,
    }));
    if !finite {
        eprintln!("gpu_check: a loss was not finite: {:?}", report.losses);
    }
    if change == 0.0 {
        eprintln!("gpu_check: training left the weights unchanged");
    }
    Ok(ok)
}
