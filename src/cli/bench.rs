//! `repro bench-train`: training throughput of one model configuration on
//! random tokens, the Rust side of `bench/train_speed.sh` (which runs
//! PyTorch eager on the same architecture, init and batch beside it).

use super::{Failure, Outcome};
use crate::model::adamw::{AdamW, AdamWConfig};
use crate::model::manual::{ManualStep, TokenBatch};
use crate::model::train::Engine;
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
    /// How gradients are computed: `manual` (the hand-written step
    /// training uses for LLaMA on the CPU) or `autograd` (candle's);
    /// default: what `train` uses for this model and device.
    #[arg(long, value_enum)]
    pub engine: Option<EngineArg>,
}

/// The `--engine` values.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineArg {
    /// candle's autograd.
    Autograd,
    /// The hand-written forward and backward passes.
    Manual,
}

fn merr(e: impl std::fmt::Display) -> Failure {
    Failure::Failed(e.to_string())
}

/// One autograd step on the ids `data` (`batch` rows of `seq + 1`); returns
/// the instants at its start and after forward, backward and the update.
fn autograd_step(
    model: &crate::model::Llama,
    opt: &mut AdamW,
    data: Vec<u32>,
    a: &BenchTrainArgs,
    vocab: usize,
) -> Result<(Instant, Instant, Instant, Instant), Failure> {
    let dev = model.device();
    let t = Tensor::from_vec(data, (a.batch, a.seq + 1), dev).map_err(merr)?;
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
    let logits = logits.reshape((a.batch * a.seq, vocab)).map_err(merr)?;
    let loss = crate::model::kernels::cross_entropy(&logits, &tgt).map_err(merr)?;
    let _ = loss.to_scalar::<f32>().map_err(merr)?;
    let t1 = Instant::now();
    let grads = loss.backward().map_err(merr)?;
    let t2 = Instant::now();
    opt.step(&grads, 1e-3).map_err(merr)?;
    Ok((t0, t1, t2, Instant::now()))
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
    let mut opt = AdamW::new(&vars, AdamWConfig::default()).map_err(merr)?;
    let engine = match a.engine {
        Some(EngineArg::Autograd) => Engine::Autograd,
        Some(EngineArg::Manual) => Engine::Manual,
        None => Engine::default_for(&model),
    };
    let mut manual = match engine {
        Engine::Manual => Some(ManualStep::<f32>::new(&model).map_err(merr)?),
        Engine::Autograd => None,
    };
    let mut rng = Rng::new(1);
    let mut times = Vec::new();
    let (mut fwd, mut bwd, mut upd) = (0.0, 0.0, 0.0);
    for step in 0..a.warmup + a.steps {
        let n = a.batch * (a.seq + 1);
        let data: Vec<u32> = (0..n).map(|_| rng.below(cfg.vocab_size) as u32).collect();
        let (t0, t1, t2, t3) = match manual.as_mut() {
            Some(m) => {
                let t0 = Instant::now();
                let w = a.seq + 1;
                let tb = TokenBatch {
                    b: a.batch,
                    t: a.seq,
                    ids: data.chunks(w).flat_map(|r| r[..a.seq].to_vec()).collect(),
                    rows: (0..(a.batch * a.seq) as u32).collect(),
                    targets: data.chunks(w).flat_map(|r| r[1..].to_vec()).collect(),
                };
                m.forward(&tb).map_err(merr)?;
                let t1 = Instant::now();
                m.backward().map_err(merr)?;
                let t2 = Instant::now();
                opt.step_with(|t| m.grad_of(t), 1e-3).map_err(merr)?;
                (t0, t1, t2, Instant::now())
            }
            None => autograd_step(&model, &mut opt, data, &a, cfg.vocab_size)?,
        };
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
                "engine": format!("{engine:?}").to_lowercase(),
                "step_seconds": times,
                "params": cfg.param_count(),
                "forward_s": fwd / k, "backward_s": bwd / k, "optimizer_s": upd / k,
            })
        );
    } else {
        println!(
            "{:?}: params {}  batch {}x{}  {:.0} tokens/s  step {:.3}s (forward {:.3}s, backward {:.3}s, optimizer {:.3}s)",
            engine,
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
