//! The training loop: causal language-model loss on the tokens an example
//! marks as learnable, AdamW with linear warm-up and cosine decay, global
//! gradient-norm clipping, deterministic for a seed.
//!
//! Examples are packed end to end into one token stream (as the paper chunks
//! conversations into 2048-token blocks) and cut into windows of
//! `seq_len + 1` tokens; a window's targets are its tokens shifted by one,
//! and only targets whose learn flag is set enter the loss (all of them for
//! pretraining, assistant turns for supervised fine-tuning). Each epoch
//! visits the windows in a seeded order.
//!
//! Gradients come from candle's autograd, or, for our LLaMA with f32
//! weights on the CPU, from the hand-written step of [`super::manual`]
//! (same numbers up to float rounding, 2-3x faster; see [`Engine`]).
//!
//! What fits a run on one device, fixed before the first step in its
//! [`TrainPlan`] (the place for a memory estimate): gradient accumulation
//! (`micro_batch_size` windows per forward and backward pass, the step's
//! gradient the whole batch's, [`super::step`]; both engines), activation
//! recompute per block ([`super::recompute`]; autograd), and bf16/f16
//! compute with f32 master weights ([`Weights::masters`],
//! [`AdamW::with_masters`]; autograd, since the manual step is f32-only).
//! Defaults are the plain run: one pass per step, every activation kept,
//! the model's own float type.

use super::adamw::{AdamW, AdamWConfig};
use super::lm::CausalLm;
use super::manual::TokenBatch;
pub use super::step::Engine;
use super::step::Stepper;
use crate::rng::Rng;
use candle_core::{DType, Result, Tensor, Var};
use std::time::Instant;

/// One training example: token ids and, per token, whether it is learned.
#[derive(Debug, Clone)]
pub struct Example {
    /// Token ids.
    pub ids: Vec<u32>,
    /// Learn flag per token (same length).
    pub learn: Vec<bool>,
}

/// Hyper-parameters of a run.
#[derive(Debug, Clone)]
pub struct TrainConfig {
    /// Tokens per window (model inputs).
    pub seq_len: usize,
    /// Windows per optimizer step.
    pub batch_size: usize,
    /// Windows per forward and backward pass; a step accumulates the
    /// gradients of its micro-batches ([`super::step`]). `None`: the whole
    /// batch at once.
    pub micro_batch_size: Option<usize>,
    /// Activation recompute per block ([`super::recompute`]).
    pub recompute: bool,
    /// Passes over the data (fractional allowed).
    pub epochs: f64,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// Share of the steps spent warming up linearly.
    pub warmup: f64,
    /// AdamW settings (weight decay, clipping).
    pub adamw: AdamWConfig,
    /// Seed of the window order.
    pub seed: u64,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    /// Optimizer steps.
    pub steps: usize,
    /// Loss per step.
    pub losses: Vec<f64>,
    /// Learned (loss-bearing) tokens processed.
    pub learned_tokens: usize,
    /// All tokens processed (inputs).
    pub tokens: usize,
    /// Wall time of the loop, seconds.
    pub seconds: f64,
    /// Windows in one epoch.
    pub windows: usize,
}

/// A packed window of `seq_len + 1` tokens.
#[derive(Debug, Clone)]
pub struct Window {
    ids: Vec<u32>,
    learn: Vec<bool>,
}

impl Window {
    /// Input positions of the window (its tokens minus the last).
    pub fn positions(&self) -> usize {
        self.ids.len() - 1
    }

    /// The window's token ids (`seq_len + 1` at most).
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// The learn flag of each token.
    pub fn learn(&self) -> &[bool] {
        &self.learn
    }
}

/// Optimizer steps of a run over `windows` windows: `epochs` passes of
/// `ceil(windows / batch_size)` steps, rounded up, at least one.
pub fn total_steps(cfg: &TrainConfig, windows: usize) -> usize {
    let per_epoch = windows.div_ceil(cfg.batch_size.max(1));
    ((cfg.epochs * per_epoch as f64).ceil() as usize).max(1)
}

/// The seeded order in which training visits windows: each epoch a fresh
/// shuffle of all of them, batches taken in turn across epoch boundaries.
pub struct WindowOrder {
    rng: Rng,
    n: usize,
    order: Vec<usize>,
    cursor: usize,
}

impl WindowOrder {
    /// The order over `n` windows for `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        WindowOrder {
            rng: Rng::derive(seed, "window-order"),
            n,
            order: Vec::new(),
            cursor: 0,
        }
    }

    /// The indices of the next batch of `size` windows.
    pub fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size && self.n > 0 {
            if self.cursor >= self.order.len() {
                self.order = (0..self.n).collect();
                self.rng.shuffle(&mut self.order);
                self.cursor = 0;
            }
            batch.push(self.order[self.cursor]);
            self.cursor += 1;
        }
        batch
    }
}

/// Packs examples into windows of `seq_len + 1` tokens (consecutive windows
/// share one boundary token). Windows without any learned target are dropped.
pub fn pack(examples: &[Example], seq_len: usize) -> Vec<Window> {
    let mut ids = Vec::new();
    let mut learn = Vec::new();
    for e in examples {
        ids.extend_from_slice(&e.ids);
        learn.extend_from_slice(&e.learn);
    }
    let mut out = Vec::new();
    let mut start = 0;
    while start + 1 < ids.len() {
        let end = (start + seq_len + 1).min(ids.len());
        let w = Window {
            ids: ids[start..end].to_vec(),
            learn: learn[start..end].to_vec(),
        };
        if w.learn[1..].iter().any(|&l| l) {
            out.push(w);
        }
        start += seq_len;
    }
    out
}

/// Learning rate at `step` of `total`: linear warm-up, then cosine decay to
/// `min_lr_ratio * lr`.
pub fn lr_at(cfg: &TrainConfig, step: usize, total: usize) -> f64 {
    let warm = ((cfg.warmup * total as f64).round() as usize).max(1);
    if step < warm {
        return cfg.lr * (step + 1) as f64 / warm as f64;
    }
    let span = (total.saturating_sub(warm)).max(1) as f64;
    let p = ((step - warm) as f64 / span).min(1.0);
    let min = cfg.lr * cfg.min_lr_ratio;
    min + (cfg.lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
}

/// A batch of windows as token ids padded to the longest window (with id 0
/// and learn = false), the flat positions whose next token is learned, and
/// those tokens. `None` when no target is learned.
pub fn token_batch(batch: &[&Window]) -> Option<TokenBatch> {
    let t = batch.iter().map(|w| w.ids.len() - 1).max().unwrap_or(0);
    if t == 0 {
        return None;
    }
    let b = batch.len();
    let mut tb = TokenBatch {
        b,
        t,
        ids: Vec::with_capacity(b * t),
        ..Default::default()
    };
    for (i, w) in batch.iter().enumerate() {
        let n = w.ids.len() - 1;
        for j in 0..t {
            tb.ids.push(if j < n { w.ids[j] } else { 0 });
            if j < n && w.learn[j + 1] {
                tb.rows.push((i * t + j) as u32);
                tb.targets.push(w.ids[j + 1]);
            }
        }
    }
    (!tb.rows.is_empty()).then_some(tb)
}

/// Masked next-token cross-entropy of a batch of windows (padded to the
/// longest with learn = false). Returns the loss and the learned count.
pub fn batch_loss(
    model: &dyn CausalLm,
    batch: &[&Window],
    fast: bool,
) -> Result<Option<(Tensor, usize)>> {
    let Some(tb) = token_batch(batch) else {
        return Ok(None);
    };
    let loss = super::loss::token_batch_loss(model, &tb, fast)?;
    Ok(Some((loss, tb.rows.len())))
}

/// How a run executes its steps, fixed before the first one: what a memory
/// estimate of the run needs besides the model. [`train_planned`] follows
/// it; [`TrainPlan::new`] makes the plan [`train`] uses.
///
/// A step takes `batch_size` windows of at most `seq_len + 1` tokens and
/// runs them through the model `micro_batch` windows at a time
/// (`accumulation_steps` forward and backward passes, the last one
/// possibly smaller), computing in `dtype`; with `recompute`, only each
/// block's input is kept between the forward and the backward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainPlan {
    /// Input positions per window.
    pub seq_len: usize,
    /// Windows per optimizer step.
    pub batch_size: usize,
    /// Windows per forward and backward pass.
    pub micro_batch: usize,
    /// Forward and backward passes per optimizer step.
    pub accumulation_steps: usize,
    /// The float type the model computes in (its weights' type); with bf16
    /// or f16 the optimizer keeps f32 master copies.
    pub dtype: DType,
    /// Activation recompute per block.
    pub recompute: bool,
    /// The gradient engine.
    pub engine: Engine,
}

impl TrainPlan {
    /// The plan for `model` and `cfg`: the engine [`Engine::default_for`]
    /// picks (autograd with recompute), micro-batches of
    /// `cfg.micro_batch_size` windows (at most `batch_size`; default one
    /// micro-batch per step).
    pub fn new(model: &dyn CausalLm, cfg: &TrainConfig) -> Result<Self> {
        let engine = if cfg.recompute {
            Engine::Autograd
        } else {
            Engine::default_for(model)
        };
        Self::with_engine(model, cfg, engine)
    }

    /// [`TrainPlan::new`] with an explicit engine; recompute with the
    /// manual engine, or on a model that cannot run block by block, is an
    /// error.
    pub fn with_engine(model: &dyn CausalLm, cfg: &TrainConfig, engine: Engine) -> Result<Self> {
        if cfg.recompute {
            if engine == Engine::Manual {
                candle_core::bail!("recompute needs the autograd engine, not the manual step");
            }
            super::recompute::blockwise(model)?;
        }
        let batch_size = cfg.batch_size.max(1);
        let micro_batch = cfg
            .micro_batch_size
            .unwrap_or(batch_size)
            .clamp(1, batch_size);
        Ok(TrainPlan {
            seq_len: cfg.seq_len,
            batch_size,
            micro_batch,
            accumulation_steps: batch_size.div_ceil(micro_batch),
            dtype: model.dtype(),
            recompute: cfg.recompute,
            engine,
        })
    }

    /// Whether the model computes in half precision (bf16 or f16), so the
    /// optimizer keeps f32 master weights.
    pub fn mixed_precision(&self) -> bool {
        super::lm::is_half(self.dtype)
    }
}

/// The weights a run trains.
#[derive(Debug, Clone, Copy)]
pub struct Weights<'a> {
    /// The model's variables, what it computes with.
    pub vars: &'a [Var],
    /// For half-precision `vars`: their f32 master copies, one per variable
    /// in the same order, which the optimizer updates and the caller saves
    /// ([`AdamW::with_masters`]). `None`: the optimizer makes them from the
    /// variables (or needs none, for f32 weights).
    pub masters: Option<&'a [Var]>,
}

/// Trains `model` (whose weights are `vars`) on `windows`. `on_step` sees
/// (step, total steps, loss) and may stop the run by returning `false`.
/// Follows the plan [`TrainPlan::new`] makes.
pub fn train(
    model: &dyn CausalLm,
    vars: &[Var],
    windows: &[Window],
    cfg: &TrainConfig,
    on_step: impl FnMut(usize, usize, f64) -> bool,
) -> Result<TrainReport> {
    let plan = TrainPlan::new(model, cfg)?;
    let weights = Weights {
        vars,
        masters: None,
    };
    train_planned(model, weights, windows, cfg, &plan, on_step)
}

/// [`train`] with an explicit gradient engine.
pub fn train_with(
    model: &dyn CausalLm,
    vars: &[Var],
    windows: &[Window],
    cfg: &TrainConfig,
    engine: Engine,
    on_step: impl FnMut(usize, usize, f64) -> bool,
) -> Result<TrainReport> {
    let plan = TrainPlan::with_engine(model, cfg, engine)?;
    let weights = Weights {
        vars,
        masters: None,
    };
    train_planned(model, weights, windows, cfg, &plan, on_step)
}

/// [`train`] following `plan` (micro-batches, recompute, engine), with the
/// weights (and master weights) given. `cfg` gives the hyper-parameters
/// and the window order.
pub fn train_planned(
    model: &dyn CausalLm,
    weights: Weights,
    windows: &[Window],
    cfg: &TrainConfig,
    plan: &TrainPlan,
    mut on_step: impl FnMut(usize, usize, f64) -> bool,
) -> Result<TrainReport> {
    let mut report = TrainReport {
        windows: windows.len(),
        ..Default::default()
    };
    if windows.is_empty() || cfg.batch_size == 0 {
        return Ok(report);
    }
    let total = total_steps(cfg, windows.len());
    let mut opt = match weights.masters {
        Some(masters) => AdamW::with_masters(weights.vars, masters, cfg.adamw)?,
        None => AdamW::new(weights.vars, cfg.adamw)?,
    };
    let mut stepper = Stepper::new(model, weights.vars, plan.engine, plan.recompute)?;
    let mut order = WindowOrder::new(windows.len(), cfg.seed);
    let t0 = Instant::now();
    for step in 0..total {
        let batch: Vec<&Window> = order
            .next_batch(cfg.batch_size)
            .into_iter()
            .map(|i| &windows[i])
            .collect();
        let micro: Vec<TokenBatch> = batch
            .chunks(plan.micro_batch.max(1))
            .filter_map(token_batch)
            .collect();
        let lr = lr_at(cfg, step, total);
        let Some((l, learned)) = stepper.step(model, &mut opt, &micro, lr)? else {
            continue;
        };
        report.losses.push(l);
        report.learned_tokens += learned;
        report.tokens += batch.iter().map(|w| w.ids.len() - 1).sum::<usize>();
        report.steps += 1;
        if !l.is_finite() {
            candle_core::bail!("loss became {l} at step {step}; lower the learning rate");
        }
        if !on_step(step, total, l) {
            break;
        }
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}
