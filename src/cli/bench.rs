//! `repro bench-train`: training throughput of one model configuration on
//! random tokens, the Rust side of `bench/train_speed.sh` (which runs
//! PyTorch eager on the same architecture, init and batch beside it).

use super::{Failure, Outcome};
use crate::model::adamw::{AdamW, AdamWConfig};
use crate::model::{LlamaConfig, init};
use crate::rng::Rng;
use candle_core::{DType, Tensor};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `repro bench-train`.
#[derive(Args, Debug)]
pub struct BenchTrainArgs {
    /// A Hugging Face LLaMA config.json.
    #[arg(long)]
    pub config: PathBuf,
    /// Sequences per step.
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Untimed steps first (first-touch page faults).
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn merr(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// Runs the benchmark.
pub fn bench_train(a: BenchTrainArgs) -> Outcome {
    crate::model::cpu::tune_malloc();
    let text = std::fs::read_to_string(&a.config)
        .map_err(|e| Failure::Input(format!("{}: {e}", a.config.display())))?;
    let cfg: LlamaConfig = serde_json::from_str(&text)
        .map_err(|e| Failure::Input(format!("{}: {e}", a.config.display())))?;
    cfg.validate()
        .map_err(|e| Failure::Input(format!("{}: {e}", a.config.display())))?;
    if a.batch == 0 || a.seq == 0 || a.steps == 0 || a.seq > cfg.max_position_embeddings {
        return Err(Failure::Input(
            "--batch, --seq and --steps must be positive and --seq at most max_position_embeddings"
                .into(),
        ));
    }
    let dev = crate::model::cpu::device();
    let (model, vars) = init(&cfg, 0, &dev, DType::F32).map_err(merr)?;
    let vars: Vec<_> = vars.into_iter().map(|(_, v)| v).collect();
    let mut opt = AdamW::new(&vars, AdamWConfig::default());
    let mut rng = Rng::new(1);
    let mut times = Vec::new();
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    for step in 0..a.warmup + a.steps {
        let n = a.batch * (a.seq + 1);
        let data: Vec<u32> = (0..n).map(|_| rng.below(cfg.vocab_size) as u32).collect();
        let t = Tensor::from_vec(data, (a.batch, a.seq + 1), &dev).map_err(merr)?;
        let t0 = Instant::now();
        let inp = t
            .narrow(1, 0, a.seq)
            .map_err(merr)?
            .contiguous()
            .map_err(merr)?;
        let tgt = t
            .narrow(1, 1, a.seq)
            .map_err(merr)?
            .flatten_all()
            .map_err(merr)?;
        let logits = model.forward(&inp, None, None, false).map_err(merr)?;
        let logits = logits
            .reshape((a.batch * a.seq, cfg.vocab_size))
            .map_err(merr)?;
        let loss = crate::model::kernels::cross_entropy(&logits, &tgt).map_err(merr)?;
        let _ = loss.to_scalar::<f32>().map_err(merr)?;
        let t1 = Instant::now();
        let grads = loss.backward().map_err(merr)?;
        let t2 = Instant::now();
        opt.step(&grads, 1e-3).map_err(merr)?;
        let t3 = Instant::now();
        if step >= a.warmup {
            times.push((t3 - t0).as_secs_f64());
            fwd += (t1 - t0).as_secs_f64();
            bwd += (t2 - t1).as_secs_f64();
            upd += (t3 - t2).as_secs_f64();
        }
    }
    let total: f64 = times.iter().sum();
    let tps = (a.batch * a.seq * times.len()) as f64 / total.max(1e-9);
    let k = times.len() as f64;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "tokens_per_s": tps,
                "step_seconds": times,
                "params": cfg.param_count(),
                "forward_s": fwd / k, "backward_s": bwd / k, "optimizer_s": upd / k,
            })
        );
    } else {
        println!(
            "params {}  batch {}x{}  {:.0} tokens/s  step {:.3}s (forward {:.3}s, backward {:.3}s, optimizer {:.3}s)",
            cfg.param_count(),
            a.batch,
            a.seq,
            tps,
            total / k,
            fwd / k,
            bwd / k,
            upd / k
        );
    }
    Ok(())
}
