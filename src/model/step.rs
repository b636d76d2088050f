//! One optimizer step of a training run: the gradients of the step's
//! micro-batches, by the engine the plan picked ([`Engine`]), summed and
//! handed to AdamW.
//!
//! A step's batch arrives as micro-batches of windows (one, unless the run
//! accumulates gradients). With one micro-batch the step is what it always
//! was: one forward and backward pass, its gradients straight to the
//! optimizer. With several, micro-batch `i` with `n_i` of the step's `N`
//! learned tokens adds its gradients weighted `n_i / N` ([`super::grads`]),
//! so the step follows the gradient of the whole batch's loss, and the loss
//! it reports is the same weighted sum of the micro-batch losses.

use super::adamw::AdamW;
use super::grads::{GradSum, HostGradSum};
use super::llama::Llama;
use super::lm::CausalLm;
use super::loss::token_batch_loss;
use super::manual::{ManualStep, TokenBatch};
use candle_core::{DType, Result, Var};

/// How a training step computes its gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// candle's autograd over the model's differentiable ops (any model,
    /// any device, any float type; with or without activation recompute).
    Autograd,
    /// The hand-written forward and backward passes of [`super::manual`]
    /// (our LLaMA with f32 weights on the CPU only, without recompute).
    Manual,
}

impl Engine {
    /// The engine for `model` without recompute: the hand-written step for
    /// our LLaMA with f32 weights on the CPU, autograd otherwise.
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

/// The share of a step's learned tokens in each micro-batch.
fn shares(micro: &[TokenBatch]) -> Vec<f64> {
    let total: usize = micro.iter().map(|tb| tb.rows.len()).sum();
    micro
        .iter()
        .map(|tb| tb.rows.len() as f64 / total.max(1) as f64)
        .collect()
}

/// The gradient computation of a run's steps, whichever engine runs it.
pub enum Stepper {
    /// candle's autograd; `recompute` runs the blocks again in the backward
    /// pass ([`super::recompute`]).
    Autograd {
        /// The optimizer's weights, whose gradients are summed.
        vars: Vec<Var>,
        /// Activation recompute.
        recompute: bool,
    },
    /// The hand-written step, with the sums of accumulated gradients (made
    /// at the first step with more than one micro-batch).
    Manual(Box<ManualStep<f32>>, Option<HostGradSum>),
}

impl Stepper {
    /// The stepper of `engine` for `model` and its weights `vars`.
    pub fn new(
        model: &dyn CausalLm,
        vars: &[Var],
        engine: Engine,
        recompute: bool,
    ) -> Result<Self> {
        match engine {
            Engine::Autograd => Ok(Stepper::Autograd {
                vars: vars.to_vec(),
                recompute,
            }),
            Engine::Manual if recompute => {
                candle_core::bail!("recompute needs the autograd engine, not the manual step")
            }
            Engine::Manual => match as_llama(model) {
                Some(m) => Ok(Stepper::Manual(Box::new(ManualStep::new(m)?), None)),
                None => candle_core::bail!("the manual training step supports only llama models"),
            },
        }
    }

    /// Updates the weights from the micro-batches of one step; returns the
    /// step's loss and learned tokens (`None` when no micro-batch has any).
    pub fn step(
        &mut self,
        model: &dyn CausalLm,
        opt: &mut AdamW,
        micro: &[TokenBatch],
        lr: f64,
    ) -> Result<Option<(f64, usize)>> {
        let learned: usize = micro.iter().map(|tb| tb.rows.len()).sum();
        if learned == 0 {
            return Ok(None);
        }
        let loss = match self {
            Stepper::Autograd { vars, recompute } => {
                autograd_step(model, vars, *recompute, opt, micro, lr)?
            }
            Stepper::Manual(m, sum) => manual_step(m, sum, opt, micro, lr)?,
        };
        Ok(Some((loss, learned)))
    }
}

/// An autograd step. One micro-batch without recompute is the plain path:
/// the loss's gradients go to the optimizer as they are.
fn autograd_step(
    model: &dyn CausalLm,
    vars: &[Var],
    recompute: bool,
    opt: &mut AdamW,
    micro: &[TokenBatch],
    lr: f64,
) -> Result<f64> {
    if let [tb] = micro
        && !recompute
    {
        let loss = token_batch_loss(model, tb, false)?;
        let grads = loss.backward()?;
        opt.step(&grads, lr)?;
        return Ok(loss.to_scalar::<f32>()? as f64);
    }
    let mut sum = GradSum::new(vars);
    let mut loss = 0.0;
    for (tb, share) in micro.iter().zip(shares(micro)) {
        if tb.rows.is_empty() {
            continue;
        }
        let l = if recompute {
            super::recompute::loss_and_grads(model, tb, &mut sum, share)?
        } else {
            let l = token_batch_loss(model, tb, false)?;
            sum.add(&l.backward()?, share)?;
            l.to_scalar::<f32>()?
        };
        loss += share * l as f64;
    }
    opt.step_tensors(&sum.into_grads(), lr)?;
    // The rounding of a single micro-batch's f32 loss.
    Ok(loss as f32 as f64)
}

/// A step of the hand-written engine; several micro-batches sum their
/// gradients on the host.
fn manual_step(
    m: &mut ManualStep<f32>,
    sum: &mut Option<HostGradSum>,
    opt: &mut AdamW,
    micro: &[TokenBatch],
    lr: f64,
) -> Result<f64> {
    if let [tb] = micro {
        let Some(loss) = m.forward(tb)? else {
            candle_core::bail!("manual step: a micro-batch without learned rows");
        };
        m.backward()?;
        opt.step_with(|t| m.grad_of(t), lr)?;
        // The same rounding as the autograd path's f32 loss.
        return Ok(loss as f32 as f64);
    }
    let sum = sum.get_or_insert_with(|| HostGradSum::new(m.params()));
    sum.clear();
    let mut loss = 0.0;
    for (tb, share) in micro.iter().zip(shares(micro)) {
        let Some(l) = m.forward(tb)? else { continue };
        m.backward()?;
        sum.add(|t| m.grad_of(t), share as f32)?;
        loss += share * l;
    }
    opt.step_with(|t| sum.grad_of(t), lr)?;
    Ok(loss as f32 as f64)
}
