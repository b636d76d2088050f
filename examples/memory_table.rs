//! The README's memory table: what each model node of a pipeline needs on
//! one GPU, from the estimate the training ops print before their first
//! step (`repro::model::memory`, with the plan `lm_common` makes) and the
//! node's compiled params, without the weights.
//!
//! ```text
//! cargo run --release --example memory_table -- [pipelines/paper.yaml] \
//!     [--configs pipelines/paper/base_configs] [--gpu-gb 80]
//! ```
//!
//! A node's base is its `base` coordinate; its sizes come from
//! `<configs>/<base>.json` (the published `config.json`). Training nodes:
//! `engine: candle` holds everything on its one device; `engine: torch`
//! (FSDP2) shards weights, master weights, gradients and optimizer state
//! over the node's GPUs and keeps one micro-batch's activations per GPU.
//! Generating nodes: a KV cache of `max_batch_tokens` (or `batch_size` x
//! (the model's positions), a bound when no cap is written). `eval.mmlu`
//! scores `batch_size` prompts of at most the model's positions.

use repro::model::memory::{self, Estimate, Shape, TrainLayout};
use repro::op::param;
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

type BoxErr = Box<dyn std::error::Error>;

/// Command line.
struct Args {
    pipeline: PathBuf,
    configs: PathBuf,
    gpu_gb: f64,
}

fn parse_args() -> Result<Args, BoxErr> {
    let mut a = Args {
        pipeline: "pipelines/paper.yaml".into(),
        configs: "pipelines/paper/base_configs".into(),
        gpu_gb: 80.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--configs" => a.configs = it.next().ok_or("--configs needs a folder")?.into(),
            "--gpu-gb" => a.gpu_gb = it.next().ok_or("--gpu-gb needs a number")?.parse()?,
            "-h" | "--help" => {
                println!("memory_table [PIPELINE] [--configs DIR] [--gpu-gb GB]");
                std::process::exit(0);
            }
            other if !other.starts_with('-') => a.pipeline = other.into(),
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok(a)
}

/// A base model's sizes and positions from its config file.
fn base_shape(configs: &Path, base: &str) -> Result<(Shape, usize), BoxErr> {
    let path = configs.join(format!("{base}.json"));
    let obj = repro::model::load::read_json_object(&path)?;
    let arch = repro::model::load::model_type(&path, &obj)?;
    let (params, positions) = if arch == "gpt2" {
        let c = repro::model::config::Gpt2Config::from_json(&path, &obj)?;
        (c.param_count(), c.n_positions)
    } else {
        let c = repro::model::load::llama_config(&path, &obj)?;
        (c.param_count(), c.max_position_embeddings)
    };
    let shape = Shape::from_config(&Value::Object(obj), params)
        .ok_or_else(|| format!("{}: sizes missing", path.display()))?;
    Ok((shape, positions))
}

/// One row of the table.
struct Row {
    node: String,
    base: String,
    setting: String,
    gpus: usize,
    per_gpu: Estimate,
}

/// The estimate of a training node, per GPU.
fn training_row(params: &Map<String, Value>, shape: &Shape, gpus: usize) -> (String, Estimate) {
    let train = repro::ops::lm_common::train_config(params);
    let torch = repro::ops::lm_finetune_torch::selected(params);
    let (micro, ckpt, dtype, engine) = if torch {
        let s = repro::ops::lm_finetune_torch::settings(params, 1);
        let dtype = match s.precision.as_str() {
            "bf16" => candle_core::DType::BF16,
            _ => candle_core::DType::F32,
        };
        (s.micro_batch, s.activation_checkpointing, dtype, "torch")
    } else {
        let dtype = repro::model::precision::parse(param::str(
            repro::ops::lm_common::TRAIN_PARAMS,
            params,
            "dtype",
        ))
        .unwrap_or(candle_core::DType::F32);
        let micro = train.micro_batch_size.unwrap_or(train.batch_size);
        (micro, train.recompute, dtype, "candle")
    };
    let layout = TrainLayout {
        seq_len: train.seq_len,
        micro_batch: micro,
        batch: if torch { micro + 1 } else { train.batch_size },
        dtype,
        activation_checkpointing: ckpt,
    };
    let mut e = memory::training(shape, &layout);
    if torch {
        // FSDP2 shards the model's states over the GPUs.
        for (part, bytes) in &mut e.parts {
            if [
                "weights",
                "master weights",
                "gradients",
                "accumulated gradients",
                "optimizer state",
            ]
            .contains(part)
            {
                *bytes /= gpus.max(1) as u64;
            }
        }
    }
    let setting = format!(
        "{engine}, {}, micro-batch {micro} x {} of {}{}",
        repro::model::precision::name(dtype),
        train.seq_len,
        train.batch_size,
        if ckpt { ", recompute" } else { "" }
    );
    (setting, e)
}

/// The estimate of an evaluation node on one GPU.
fn eval_row(
    op: &str,
    params: &Map<String, Value>,
    shape: &Shape,
    positions: usize,
) -> (String, Estimate) {
    let dtype = params
        .get("dtype")
        .and_then(Value::as_str)
        .and_then(repro::model::precision::parse)
        .unwrap_or(candle_core::DType::F32);
    let specs = repro::ops::find(op).map(|o| o.params()).unwrap_or(&[]);
    let rows = param::int(specs, params, "batch_size") as usize;
    let (tokens, how) = match params.get("max_batch_tokens").and_then(Value::as_u64) {
        Some(cap) => (cap as usize, format!("max_batch_tokens {cap}")),
        None => (
            rows * positions,
            format!("{rows} x {positions} positions (no cap)"),
        ),
    };
    let e = memory::inference(shape, dtype, rows, tokens);
    let setting = format!(
        "{op}, {}, batch {rows}, {how}",
        repro::model::precision::name(dtype)
    );
    (setting, e)
}

fn main() -> Result<(), BoxErr> {
    let a = parse_args()?;
    let root = repro::project::find_root(Path::new(".")).ok_or("not inside a repro project")?;
    let p = repro::spec::load(&a.pipeline, &[])?;
    let dag = repro::graph::compile(&root, p)?;
    let mut rows: Vec<Row> = Vec::new();
    for n in &dag.nodes {
        let op = n.op.name();
        let model_op = ["lm.finetune", "lm.generate", "eval.nq", "eval.mmlu"].contains(&op);
        let Some(base) = n.inst.coords.iter().find(|(k, _)| k == "base") else {
            continue;
        };
        if !model_op {
            continue;
        }
        let base = base.1.text.clone();
        let (shape, positions) = base_shape(&a.configs, &base)?;
        let params: &Map<String, Value> = &n.inst.params;
        let gpus = n.resources.gpus;
        let (setting, per_gpu) = if op == "lm.finetune" {
            training_row(params, &shape, gpus)
        } else {
            eval_row(op, params, &shape, positions)
        };
        let node = dag.pipeline.node_ids[n.inst.node].clone();
        // Nodes with the same setting on the same base share a row.
        if let Some(r) = rows
            .iter_mut()
            .find(|r| r.base == base && r.setting == setting)
        {
            if !r.node.split(", ").any(|x| x == node) {
                r.node = format!("{}, {node}", r.node);
            }
            continue;
        }
        rows.push(Row {
            node,
            base,
            setting,
            gpus,
            per_gpu,
        });
    }
    let limit = (a.gpu_gb * 1e9) as u64;
    println!(
        "| nodes | base | setting | GPUs | estimate per GPU | fits {} GB |",
        a.gpu_gb
    );
    println!("| --- | --- | --- | ---: | --- | --- |");
    for r in &rows {
        let fits = memory::check_fits(&r.per_gpu, Some(limit), "the GPU", "").is_ok();
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.node,
            r.base,
            r.setting,
            r.gpus,
            r.per_gpu,
            if fits { "yes" } else { "**no**" }
        );
    }
    Ok(())
}
