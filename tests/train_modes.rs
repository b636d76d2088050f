//! Training that fits on one device, checked on the CPU: gradient
//! accumulation over micro-batches, activation recompute per block, bf16
//! compute with f32 master weights, and the optimizer's device-side state;
//! then the training ops' params, logs and checkpoints.
//!
//! Tolerances, for tiny LLaMA, GPT-2 and Gemma 3 models trained [`STEPS`]
//! AdamW steps at lr 1e-2 (measured maxima in brackets, on 2 cores):
//! - accumulation over micro-batches of 1 and of 3 + 1 windows against one
//!   batch of 4 (the manual and autograd engines): losses within
//!   [`LOSS_TOL`] relative (2.2e-7), weights within [`WEIGHT_TOL`]
//!   absolute (6.3e-6);
//! - recompute against keeping every activation: the same bounds (LLaMA
//!   bit-identical, GPT-2 weights 1.2e-7, Gemma 3 2.4e-7; with
//!   micro-batches of 3 + 1 as well, 8.4e-6);
//! - bf16 compute with f32 masters against f32: losses within
//!   [`BF16_LOSS_TOL`] absolute (0.0018, on losses from 3.69 to 3.12); the
//!   bf16 weights are their f32 masters rounded, exactly; the masters
//!   themselves part from the f32 run's weights by up to 1.5e-2 (AdamW
//!   turns bf16's gradient noise on near-zero gradients into steps of the
//!   learning rate's size; not asserted);
//! - the device-side AdamW update of an f32 master against the host
//!   update: [`ADAMW_TOL`] (1.5e-8).
//!
//! Weights are compared where the loss depends on them ([`loss_bearing`]).

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::OpRun;
use common::gemma::{gemma_config, gemma_weights};
use repro::model::adamw::{AdamW, AdamWConfig};
use repro::model::gemma3::Gemma3;
use repro::model::gpt2::{self, Gpt2Config};
use repro::model::params::ParamStore;
use repro::model::train::{
    Engine, Example, TrainConfig, TrainPlan, TrainReport, Weights, Window, pack, train_planned,
};
use repro::model::{CausalLm, LlamaConfig, init};
use serde_json::{Value, json};

/// Optimizer steps of every comparison.
const STEPS: usize = 6;
/// Largest relative loss difference between equal computations.
const LOSS_TOL: f64 = 1e-5;
/// Largest absolute weight difference between equal computations.
const WEIGHT_TOL: f32 = 5e-5;
/// Largest absolute loss difference between bf16 and f32 training.
const BF16_LOSS_TOL: f64 = 0.05;
/// Largest difference between the device-side and host AdamW updates.
const ADAMW_TOL: f32 = 1e-6;

fn llama_cfg(vocab: usize) -> LlamaConfig {
    serde_json::from_value(json!({
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    }))
    .unwrap()
}

fn gpt2_cfg(vocab: usize) -> Gpt2Config {
    serde_json::from_value(json!({
        "vocab_size": vocab, "n_positions": 64, "n_embd": 32, "n_layer": 2, "n_head": 4,
        "n_inner": 48, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
        "tie_word_embeddings": true, "scale_attn_weights": true,
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"
    }))
    .unwrap()
}

/// Windows of unequal lengths whose learn masks leave out some targets, so
/// micro-batches hold different numbers of learned tokens.
fn windows(vocab: u32) -> Vec<Window> {
    let data: Vec<Example> = (0..9u32)
        .map(|k| {
            let ids: Vec<u32> = (0..20 + 3 * k)
                .map(|i| (i * 7 + k * 5 + i * i) % vocab)
                .collect();
            let learn = (0..ids.len() as u32).map(|i| (i + k) % 4 != 0).collect();
            Example { ids, learn }
        })
        .collect();
    pack(&data, 16)
}

fn train_cfg(micro_batch_size: Option<usize>, recompute: bool) -> TrainConfig {
    TrainConfig {
        seq_len: 16,
        batch_size: 4,
        micro_batch_size,
        recompute,
        epochs: 3.0,
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup: 0.2,
        adamw: AdamWConfig::default(),
        seed: 3,
    }
}

/// A model to train and its named weights.
type Trainee = (Box<dyn CausalLm>, Vec<(String, Var)>);

/// Builds a fresh model.
type Make = fn() -> Trainee;

/// A finished run: its report, named weights and plan.
type Run = (TrainReport, Vec<(String, Var)>, TrainPlan);

fn llama(dtype: DType) -> Trainee {
    let (m, v) = init(&llama_cfg(40), 1, &Device::Cpu, dtype).unwrap();
    (Box::new(m), v)
}

fn gpt2_model() -> Trainee {
    let (m, v) = gpt2::init(&gpt2_cfg(40), 1, &Device::Cpu, DType::F32).unwrap();
    (Box::new(m), v)
}

fn gemma_model() -> Trainee {
    let cfg = gemma_config(2, 5, 40);
    let map = gemma_weights(&cfg, 2).into_iter().collect();
    let mut store = ParamStore::loaded(map, true, &Device::Cpu, DType::F32);
    let m = Gemma3::new(&cfg, &mut store, &Device::Cpu).unwrap();
    (Box::new(m), store.into_vars())
}

fn unnamed(vars: &[(String, Var)]) -> Vec<Var> {
    vars.iter().map(|(_, v)| v.clone()).collect()
}

/// Trains a fresh model for [`STEPS`] steps as `cfg` and `engine` say
/// (`None`: the engine the plan picks).
fn run(make: Make, cfg: &TrainConfig, engine: Option<Engine>) -> Run {
    let (model, named) = make();
    let vars = unnamed(&named);
    let plan = match engine {
        Some(e) => TrainPlan::with_engine(model.as_ref(), cfg, e).unwrap(),
        None => TrainPlan::new(model.as_ref(), cfg).unwrap(),
    };
    let weights = Weights {
        vars: &vars,
        masters: None,
    };
    let ws = windows(40);
    let report = train_planned(model.as_ref(), weights, &ws, cfg, &plan, |s, _, _| {
        s + 1 < STEPS
    })
    .unwrap();
    assert_eq!(report.steps, STEPS);
    (report, named, plan)
}

/// Largest absolute difference between two lists of weights.
fn max_weight_diff(a: &[Var], b: &[Var]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| common::tensors::max_abs_diff(x, y))
        .fold(0.0, f32::max)
}

/// The entries of a weight that the loss depends on. GPT-2's key bias
/// (the middle third of `c_attn.bias`) is not among them: adding a
/// constant to every key adds the same amount to all of a query's scores,
/// which the softmax ignores, so its gradient is float noise, which AdamW
/// scales up to learning-rate-sized steps that differ from run to run.
fn loss_bearing(name: &str, w: &Tensor) -> Tensor {
    if !name.ends_with("attn.c_attn.bias") {
        return w.clone();
    }
    let d = w.dim(0).unwrap() / 3;
    Tensor::cat(
        &[w.narrow(0, 0, d).unwrap(), w.narrow(0, 2 * d, d).unwrap()],
        0,
    )
    .unwrap()
}

/// Largest absolute difference between the loss-bearing entries of two
/// runs' weights.
fn max_named_diff(a: &[(String, Var)], b: &[(String, Var)]) -> f32 {
    a.iter()
        .zip(b)
        .map(|((n, x), (_, y))| {
            common::tensors::max_abs_diff(&loss_bearing(n, x), &loss_bearing(n, y))
        })
        .fold(0.0, f32::max)
}

/// Largest relative difference between two loss curves.
fn max_loss_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / x.abs().max(1e-9))
        .fold(0.0, f64::max)
}

/// Asserts that two runs computed the same thing up to float rounding.
fn assert_same_run(what: &str, a: &Run, b: &Run) {
    let loss = max_loss_diff(&a.0.losses, &b.0.losses);
    let weight = max_named_diff(&a.1, &b.1);

    eprintln!("{what}: losses differ by {loss:.2e} (relative), weights by {weight:.2e}");
    assert!(
        loss <= LOSS_TOL,
        "{what}: losses {:?} vs {:?}",
        a.0.losses,
        b.0.losses
    );
    assert!(weight <= WEIGHT_TOL, "{what}: weights differ by {weight}");
    assert_eq!(a.0.learned_tokens, b.0.learned_tokens, "{what}");
}

#[test]
fn accumulating_micro_batches_equals_one_large_batch() {
    let models: [(&str, Make, Option<Engine>); 3] = [
        ("llama (manual engine)", || llama(DType::F32), None),
        (
            "llama (autograd)",
            || llama(DType::F32),
            Some(Engine::Autograd),
        ),
        ("gpt2", gpt2_model, None),
    ];
    for (name, make, engine) in models {
        let whole = run(make, &train_cfg(None, false), engine);
        assert_eq!(whole.2.accumulation_steps, 1);
        // 4 windows as 4 x 1, and as 3 + 1 (a smaller last micro-batch).
        for micro in [1, 3] {
            let acc = run(make, &train_cfg(Some(micro), false), engine);
            assert_eq!(acc.2.accumulation_steps, 4usize.div_ceil(micro));
            assert_eq!(acc.2.engine, whole.2.engine);
            assert_same_run(&format!("{name}, micro-batch {micro}"), &whole, &acc);
        }
    }
}

#[test]
fn recompute_equals_keeping_every_activation() {
    let models: [(&str, Make); 3] = [
        ("llama", || llama(DType::F32)),
        ("gpt2", gpt2_model),
        ("gemma3", gemma_model),
    ];
    for (name, make) in models {
        let plain = run(make, &train_cfg(None, false), Some(Engine::Autograd));
        let re = run(make, &train_cfg(None, true), None);
        assert!(re.2.recompute);
        assert_eq!(re.2.engine, Engine::Autograd, "recompute runs on autograd");
        assert_same_run(&format!("{name}, recompute"), &plain, &re);
        let both = run(make, &train_cfg(Some(3), true), None);
        assert_same_run(&format!("{name}, recompute + micro-batch 3"), &plain, &both);
    }
}

#[test]
fn recompute_with_the_manual_engine_is_an_error() {
    let (model, _) = llama(DType::F32);
    let err = TrainPlan::with_engine(model.as_ref(), &train_cfg(None, true), Engine::Manual)
        .unwrap_err()
        .to_string();
    assert!(err.contains("recompute needs the autograd engine"), "{err}");
}

#[test]
fn blockwise_steps_compose_to_the_hidden_states_bit_for_bit() {
    let ids = Tensor::new(
        &[[1u32, 5, 9, 2, 7, 7, 3], [4, 4, 0, 8, 1, 6, 2]],
        &Device::Cpu,
    )
    .unwrap();
    let models: [(&str, Make); 4] = [
        ("llama", || llama(DType::F32)),
        ("llama bf16", || llama(DType::BF16)),
        ("gpt2", gpt2_model),
        ("gemma3", gemma_model),
    ];
    for (name, make) in models {
        let (model, _) = make();
        let bw = model.blockwise().expect("blockwise");
        let ctx = bw.block_context(7).unwrap();
        let mut x = bw.embed(&ids).unwrap();
        for i in 0..bw.num_blocks() {
            x = bw.block(i, &x, &ctx).unwrap();
        }
        let steps = bw.final_norm(&x).unwrap().to_dtype(DType::F32).unwrap();
        let whole = model
            .hidden(&ids, None, None, false)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let a: Vec<f32> = steps.flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = whole.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(a, b, "{name}");
    }
}

/// bf16 compute with f32 masters: the same run as f32 within a tolerance,
/// the masters stay f32 and the model's weights are the masters rounded.
#[test]
fn bf16_training_follows_f32_with_f32_master_weights() {
    let cfg = train_cfg(None, false);
    let f32_run = run(|| llama(DType::F32), &cfg, None);
    let (model, named) = llama(DType::BF16);
    let vars = unnamed(&named);
    let masters = unnamed(&llama(DType::F32).1);
    let plan = TrainPlan::new(model.as_ref(), &cfg).unwrap();
    assert!(plan.mixed_precision());
    assert_eq!(plan.engine, Engine::Autograd, "the manual step is f32-only");
    let weights = Weights {
        vars: &vars,
        masters: Some(&masters),
    };
    let ws = windows(40);
    let report = train_planned(model.as_ref(), weights, &ws, &cfg, &plan, |s, _, _| {
        s + 1 < STEPS
    })
    .unwrap();
    let worst = f32_run
        .0
        .losses
        .iter()
        .zip(&report.losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    eprintln!(
        "bf16 vs f32: losses differ by {worst:.4} at most ({:?} vs {:?}); master weights by {:.2e}",
        report.losses,
        f32_run.0.losses,
        max_weight_diff(&masters, &unnamed(&f32_run.1))
    );
    assert!(worst <= BF16_LOSS_TOL, "{worst}");
    assert!(report.losses.last() < report.losses.first(), "bf16 learns");
    for (v, m) in vars.iter().zip(&masters) {
        assert_eq!(v.dtype(), DType::BF16);
        assert_eq!(m.dtype(), DType::F32);
        let rounded = m.as_tensor().to_dtype(DType::BF16).unwrap();
        assert_eq!(common::tensors::max_abs_diff(v, &rounded), 0.0);
    }
    // The masters moved off the bf16 grid: they hold what bf16 cannot.
    let off_grid = masters
        .iter()
        .zip(&vars)
        .any(|(m, v)| common::tensors::max_abs_diff(m, v) > 0.0);
    assert!(off_grid);
}

/// The device-side update (here: a bf16 weight with an f32 master, on the
/// CPU) does the host update's arithmetic.
#[test]
fn adamw_on_the_device_matches_the_host_update() {
    let w0: Vec<f32> = (0..24).map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0).collect();
    let host = Var::from_vec(w0.clone(), (4, 6), &Device::Cpu).unwrap();
    let master = Var::from_vec(w0, (4, 6), &Device::Cpu).unwrap();
    let half = Var::from_tensor(&master.as_tensor().to_dtype(DType::BF16).unwrap()).unwrap();
    let cfg = AdamWConfig {
        clip: 0.5,
        ..Default::default()
    };
    let mut on_host = AdamW::new(std::slice::from_ref(&host), cfg).unwrap();
    let mut on_device = AdamW::with_masters(
        std::slice::from_ref(&half),
        std::slice::from_ref(&master),
        cfg,
    )
    .unwrap();
    for step in 0..3 {
        let g: Vec<f32> = (0..24).map(|i| ((i + step * 5) % 9) as f32 - 4.0).collect();
        let g = Tensor::from_vec(g, (4, 6), &Device::Cpu).unwrap();
        let a = on_host.step_tensors(&[Some(g.clone())], 1e-2).unwrap();
        // A bf16 gradient (these values are exact in bf16).
        let b = on_device
            .step_tensors(&[Some(g.to_dtype(DType::BF16).unwrap())], 1e-2)
            .unwrap();
        assert!((a.grad_norm - b.grad_norm).abs() < 1e-9 * a.grad_norm);
    }
    let diff = common::tensors::max_abs_diff(&host, &master);
    eprintln!("adamw device vs host: {diff:.2e}");
    assert!(diff <= ADAMW_TOL, "{diff}");
    assert_eq!(on_device.masters()[0].map(|m| m.dtype()), Some(DType::F32));
    assert!(on_host.masters()[0].is_none());
    // Master copies are for half-precision weights only.
    let err = AdamW::with_masters(
        std::slice::from_ref(&host),
        std::slice::from_ref(&master),
        cfg,
    )
    .err()
    .expect("an f32 weight takes no master")
    .to_string();
    assert!(
        err.contains("master copies are for bf16/f16 weights"),
        "{err}"
    );
}

// ---------------------------------------------------------------- the ops

/// A tokenizer directory and a small corpus for `lm.pretrain`.
fn pretrain_inputs(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    use repro::model::tokenizer::{MINI_SPECIALS, TextTokenizer, train_bpe};
    let docs: Vec<String> = (0..24)
        .map(|i| {
            format!(
                "doc {i}: the cat sat on mat number {} and ran {}",
                i % 5,
                i % 3
            )
        })
        .collect();
    let tk = train_bpe(docs.iter().map(String::as_str), 120, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let tok_dir = dir.join("tok");
    std::fs::create_dir_all(&tok_dir).unwrap();
    tok.save_dir(&tok_dir).unwrap();
    (tok_dir, docs.join("\n") + "\n")
}

fn pretrain(params: Value) -> common::op::Ran {
    let tmp = tempfile::tempdir().unwrap();
    let (tok, corpus) = pretrain_inputs(tmp.path());
    let mut all = json!({
        "model": {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
                  "num_attention_heads": 2},
        "seq_len": 16, "batch_size": 4, "epochs": 1.0, "lr": 0.01
    });
    all.as_object_mut()
        .unwrap()
        .extend(params.as_object().unwrap().clone());
    OpRun::new("lm.pretrain")
        .params(all)
        .input("tokenizer", &tok)
        .input_text("corpus", corpus)
        .run()
}

/// The dtype of every tensor of a saved `model.safetensors`.
fn saved_dtypes(ran: &common::op::Ran) -> Vec<safetensors::Dtype> {
    let bytes = ran.bytes("model/model.safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors().into_iter().map(|(_, t)| t.dtype()).collect()
}

#[test]
fn a_default_run_logs_as_before_and_records_its_plan() {
    let ran = pretrain(json!({}));
    let log = ran.json("train.json");
    for k in [
        "micro_batch_size",
        "accumulation_steps",
        "recompute",
        "dtype",
    ] {
        assert!(log.get(k).is_none(), "default log has `{k}`: {log}");
    }
    let m = ran.metrics();
    assert_eq!(m["micro_batch_size"], json!(4));
    assert_eq!(m["accumulation_steps"], json!(1));
    assert_eq!(m["recompute"], json!(false));
    assert_eq!(m["dtype"], json!("f32"));
}

#[test]
fn bf16_micro_batched_recomputed_pretraining_saves_f32_weights_that_reload() {
    let ran = pretrain(json!({"dtype": "bf16", "micro_batch_size": 3, "recompute": true}));
    let log = ran.json("train.json");
    assert_eq!(log["dtype"], json!("bf16"));
    assert_eq!(log["micro_batch_size"], json!(3));
    assert_eq!(log["accumulation_steps"], json!(2));
    assert_eq!(log["recompute"], json!(true));
    assert!(ran.metric("final_loss").is_finite());
    let dtypes = saved_dtypes(&ran);
    assert!(!dtypes.is_empty());
    assert!(
        dtypes.iter().all(|d| *d == safetensors::Dtype::F32),
        "{dtypes:?}"
    );
    let loaded = repro::model::load::load(&ran.out("model"), false, &Device::Cpu).unwrap();
    assert_eq!(loaded.model.dtype(), DType::F32);
    // The micro-batched run learns what the whole-batch run learns.
    let whole = pretrain(json!({"dtype": "bf16"}));
    let (a, b) = (ran.metric("final_loss"), whole.metric("final_loss"));
    assert!((a - b).abs() < BF16_LOSS_TOL, "{a} vs {b}");
}

#[test]
fn bad_training_params_name_the_param() {
    let check = |params: Value| {
        let mut all = json!({"model": {"hidden_size": 16, "intermediate_size": 24,
            "num_hidden_layers": 1, "num_attention_heads": 2}});
        all.as_object_mut()
            .unwrap()
            .extend(params.as_object().unwrap().clone());
        OpRun::new("lm.pretrain").params(all).compile().unwrap_err()
    };
    let (p, m) = check(json!({"micro_batch_size": 0}));
    assert_eq!(p, "micro_batch_size", "{m}");
    let (p, m) = check(json!({"batch_size": 4, "micro_batch_size": 5}));
    assert_eq!(p, "micro_batch_size");
    assert!(m.contains("at most `batch_size` (4)"), "{m}");
    let (p, _) = check(json!({"dtype": "fp8"}));
    assert_eq!(p, "dtype");
    let (p, _) = check(json!({"recompute": "yes"}));
    assert_eq!(p, "recompute");
    // The torch engine has its own knobs for these.
    let torch = |params: Value| {
        let mut all = json!({"engine": "torch"});
        all.as_object_mut()
            .unwrap()
            .extend(params.as_object().unwrap().clone());
        OpRun::new("lm.finetune").params(all).compile().unwrap_err()
    };
    let (p, m) = torch(json!({"dtype": "bf16"}));
    assert_eq!(p, "dtype");
    assert!(m.contains("use `precision`"), "{m}");
    // The shared knobs stand for the torch ones; both names of one is an error.
    let (p, m) = torch(json!({"micro_batch_size": 2, "micro_batch": 2}));
    assert_eq!(p, "micro_batch");
    assert!(m.contains("one setting"), "{m}");
    let (p, _) = torch(json!({"recompute": false, "activation_checkpointing": true}));
    assert_eq!(p, "activation_checkpointing");
    let plan = |params: Value| {
        let s = repro::ops::lm_finetune_torch::settings(params.as_object().unwrap(), 1);
        (s.micro_batch, s.activation_checkpointing)
    };
    assert_eq!(plan(json!({"engine": "torch"})), (1, true));
    let shared = json!({"engine": "torch", "micro_batch_size": 4, "recompute": false});
    assert_eq!(plan(shared), (4, false));
}

/// A run whose memory estimate exceeds what the device may give is refused
/// before its first step, with the estimate and what to change.
#[test]
fn a_run_that_cannot_fit_is_refused_before_the_first_step() {
    let run = |limit: &str| {
        let tmp = tempfile::tempdir().unwrap();
        let (tok, corpus) = pretrain_inputs(tmp.path());
        OpRun::new("lm.pretrain")
            .params(json!({"model": {"hidden_size": 16, "intermediate_size": 24,
                "num_hidden_layers": 1, "num_attention_heads": 2},
                "seq_len": 16, "batch_size": 4}))
            .env("REPRO_MEMORY_LIMIT", limit)
            .input("tokenizer", &tok)
            .input_text("corpus", corpus)
            .run()
    };
    let refused = run("1K").err();
    assert!(refused.contains("needs an estimated"), "{refused}");
    assert!(refused.contains("the CPU has 0.0 GB free"), "{refused}");
    assert!(refused.contains("optimizer state"), "{refused}");
    assert!(refused.contains("`micro_batch_size`"), "{refused}");
    let ran = run("100G");
    assert!(ran.metric("memory_estimate_gb") >= 0.0);
    assert!(ran.json("train.json").get("memory_estimate_gb").is_none());
    let bad = run("lots").err();
    assert!(
        bad.contains("REPRO_MEMORY_LIMIT=`lots` is not a size"),
        "{bad}"
    );
}
