//! Activation recompute (gradient checkpointing) per block, on candle's
//! autograd: the forward pass keeps only each block's input, and the
//! backward pass runs each block again, from the top, to get its gradients.
//!
//! 1. Forward: the embedding, then each block on the previous output
//!    detached from the graph (so the block's activations are freed as soon
//!    as it has run); block `i`'s input `x_i` is kept.
//! 2. Top: the last output as a fresh tracked variable, through the final
//!    norm, the head and the loss; its backward pass gives the gradients of
//!    the final norm and the head, and `g`, the loss's gradient with respect
//!    to the last output.
//! 3. Blocks, last to first: `x_i` as a tracked variable, block `i` run
//!    again, and the backward pass of `sum(block_i(x_i) * g)`, whose
//!    gradients are block `i`'s weight gradients and, at `x_i`, the next
//!    `g` (the vector-Jacobian product of the block).
//! 4. Bottom: the embedding run again and `sum(embed(ids) * g)`'s backward
//!    pass gives the embedding's gradient (added to the head's when they are
//!    tied).
//!
//! Activations held at once: the `L` block inputs plus one block's graph,
//! instead of every block's graph; the price is a second forward pass of
//! each block. The gradients are those of the plain backward pass up to
//! float rounding.

use super::blockwise::BlockwiseLm;
use super::grads::GradSum;
use super::lm::CausalLm;
use super::loss::{head_loss, ids_tensor};
use super::manual::TokenBatch;
use candle_core::{Result, Tensor, Var};

/// `model` step by step, or an error naming the architecture.
pub fn blockwise(model: &dyn CausalLm) -> Result<&dyn BlockwiseLm> {
    model.blockwise().ok_or_else(|| {
        candle_core::Error::Msg(format!(
            "recompute: the {} model cannot run block by block (supported: llama, gpt2, gemma3_text)",
            model.arch()
        ))
    })
}

/// The loss of `tb` (mean over its learned rows, f32), with its gradients
/// added to `sum` times `weight`, computed with activation recompute.
pub fn loss_and_grads(
    model: &dyn CausalLm,
    tb: &TokenBatch,
    sum: &mut GradSum,
    weight: f64,
) -> Result<f32> {
    let bw = blockwise(model)?;
    let ids = ids_tensor(model, tb)?;
    let ctx = bw.block_context(tb.t)?;
    let mut inputs = Vec::with_capacity(bw.num_blocks());
    let mut x = bw.embed(&ids)?.detach();
    for i in 0..bw.num_blocks() {
        let out = bw.block(i, &x, &ctx)?.detach();
        inputs.push(std::mem::replace(&mut x, out));
    }
    let top = Var::from_tensor(&x)?;
    drop(x);
    let loss = head_loss(model, &bw.final_norm(top.as_tensor())?, tb)?;
    let grads = loss.backward()?;
    sum.add(&grads, weight)?;
    let mut g = grad_at(&grads, &top)?;
    drop(grads);
    for i in (0..bw.num_blocks()).rev() {
        let Some(input) = inputs.pop() else {
            candle_core::bail!("recompute: no stored input for block {i}");
        };
        let x = Var::from_tensor(&input)?;
        drop(input);
        let grads = vjp(&bw.block(i, x.as_tensor(), &ctx)?, &g)?;
        sum.add(&grads, weight)?;
        g = grad_at(&grads, &x)?;
    }
    let grads = vjp(&bw.embed(&ids)?, &g)?;
    sum.add(&grads, weight)?;
    loss.to_scalar::<f32>()
}

/// The backward pass of `sum(out * g)`: gradients as if `g` were the
/// gradient arriving at `out`.
fn vjp(out: &Tensor, g: &Tensor) -> Result<candle_core::backprop::GradStore> {
    (out * g)?.sum_all()?.backward()
}

/// The gradient at `x`, which must have one.
fn grad_at(grads: &candle_core::backprop::GradStore, x: &Var) -> Result<Tensor> {
    grads
        .get(x.as_tensor())
        .cloned()
        .ok_or_else(|| candle_core::Error::Msg("recompute: no gradient reached a block".into()))
}
