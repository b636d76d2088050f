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

use super::adamw::{AdamW, AdamWConfig};
use super::llama::Llama;
use super::lm::CausalLm;
use super::manual::{ManualStep, TokenBatch};
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
    /// Windows per step.
    pub batch_size: usize,
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
    let dev = model.device();
    let Some(tb) = token_batch(batch) else {
        return Ok(None);
    };
    let (b, t, n) = (tb.b, tb.t, tb.rows.len());
    let ids = Tensor::from_vec(tb.ids, (b, t), dev)?;
    let h = model.hidden(&ids, None, None, fast)?;
    let d = h.dim(2)?;
    let rows = Tensor::from_vec(tb.rows, n, dev)?;
    let h = h.reshape((b * t, d))?.index_select(&rows, 0)?;
    let logits = model.logits(&h)?;
    let targets = Tensor::from_vec(tb.targets, n, dev)?;
    let loss = super::kernels::cross_entropy(&logits, &targets)?;
    Ok(Some((loss, n)))
}

/// How a training step computes its gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// candle's autograd over the model's differentiable ops (any model,
    /// any device).
    Autograd,
    /// The hand-written forward and backward passes of [`super::manual`]
    /// (our LLaMA with f32 weights on the CPU only).
    Manual,
}

impl Engine {
    /// What [`train`] uses for `model`: the hand-written step for our
    /// LLaMA with f32 weights on the CPU, autograd otherwise.
    pub fn default_for(model: &dyn CausalLm) -> Engine {
        match as_llama(model) {
            Some(m) if m.device().is_cpu() && m.dtype() == DType::F32 => Engine::Manual,
            _ => Engine::Autograd,
        }
    }
}

/// `model` as our LLaMA, when it is one.
fn as_llama(model: &dyn CausalLm) -> Option<&Llama> {
    model.as_any().and_then(|m| m.downcast_ref::<Llama>())
}

/// One training step's gradient computation, whichever engine runs it.
enum Stepper {
    Autograd,
    Manual(Box<ManualStep<f32>>),
}

impl Stepper {
    fn new(model: &dyn CausalLm, engine: Engine) -> Result<Self> {
        match engine {
            Engine::Autograd => Ok(Stepper::Autograd),
            Engine::Manual => match as_llama(model) {
                Some(m) => Ok(Stepper::Manual(Box::new(ManualStep::new(m)?))),
                None => candle_core::bail!("the manual training step supports only llama models"),
            },
        }
    }

    /// Loss and learned count of `batch`, after updating the weights.
    fn step(
        &mut self,
        model: &dyn CausalLm,
        opt: &mut AdamW,
        batch: &[&Window],
        lr: f64,
    ) -> Result<Option<(f64, usize)>> {
        match self {
            Stepper::Autograd => {
                let Some((loss, learned)) = batch_loss(model, batch, false)? else {
                    return Ok(None);
                };
                let grads = loss.backward()?;
                opt.step(&grads, lr)?;
                Ok(Some((loss.to_scalar::<f32>()? as f64, learned)))
            }
            Stepper::Manual(m) => {
                let Some(tb) = token_batch(batch) else {
                    return Ok(None);
                };
                let Some(loss) = m.forward(&tb)? else {
                    return Ok(None);
                };
                m.backward()?;
                opt.step_with(|t| m.grad_of(t), lr)?;
                // The same rounding as the autograd path's f32 loss.
                Ok(Some((loss as f32 as f64, tb.rows.len())))
            }
        }
    }
}

/// Trains `model` (whose weights are `vars`) on `windows`. `on_step` sees
/// (step, total steps, loss) and may stop the run by returning `false`.
/// Uses the engine [`Engine::default_for`] picks.
pub fn train(
    model: &dyn CausalLm,
    vars: &[Var],
    windows: &[Window],
    cfg: &TrainConfig,
    on_step: impl FnMut(usize, usize, f64) -> bool,
) -> Result<TrainReport> {
    train_with(
        model,
        vars,
        windows,
        cfg,
        Engine::default_for(model),
        on_step,
    )
}

/// [`train`] with an explicit gradient engine.
pub fn train_with(
    model: &dyn CausalLm,
    vars: &[Var],
    windows: &[Window],
    cfg: &TrainConfig,
    engine: Engine,
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
    let mut opt = AdamW::new(vars, cfg.adamw)?;
    let mut stepper = Stepper::new(model, engine)?;
    let mut order = WindowOrder::new(windows.len(), cfg.seed);
    let t0 = Instant::now();
    for step in 0..total {
        let batch: Vec<&Window> = order
            .next_batch(cfg.batch_size)
            .into_iter()
            .map(|i| &windows[i])
            .collect();
        let lr = lr_at(cfg, step, total);
        let Some((l, learned)) = stepper.step(model, &mut opt, &batch, lr)? else {
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
