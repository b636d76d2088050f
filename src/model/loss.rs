//! The training loss of a batch of token windows: the mean next-token
//! cross-entropy over the positions whose target is learned, in f32.
//!
//! Only the learned rows of the final hidden states go through the head
//! (the head is the largest matrix product of a small model), and the
//! logits are f32 whatever the weights' type ([`CausalLm::logits`]), so the
//! cross-entropy ([`super::kernels::cross_entropy`]) and the loss are f32
//! for bf16 and f16 models too.

use super::lm::CausalLm;
use super::manual::TokenBatch;
use candle_core::{Result, Tensor};

/// The ids of a batch as a `(b, t)` tensor on `model`'s device.
pub fn ids_tensor(model: &dyn CausalLm, tb: &TokenBatch) -> Result<Tensor> {
    Tensor::from_slice(&tb.ids, (tb.b, tb.t), model.device())
}

/// The mean cross-entropy of the learned rows of final hidden states `h`
/// `(b, t, hidden)`: the rows `tb.rows` are selected, run through the head
/// and scored against `tb.targets`.
pub fn head_loss(model: &dyn CausalLm, h: &Tensor, tb: &TokenBatch) -> Result<Tensor> {
    let dev = model.device();
    let (b, t, n) = (tb.b, tb.t, tb.rows.len());
    let d = h.dim(2)?;
    let rows = Tensor::from_slice(&tb.rows, n, dev)?;
    let h = h.reshape((b * t, d))?.index_select(&rows, 0)?;
    let logits = model.logits(&h)?;
    let targets = Tensor::from_slice(&tb.targets, n, dev)?;
    super::kernels::cross_entropy(&logits, &targets)
}

/// The loss of a batch through the whole model in one go (the graph of
/// every block kept for the backward pass).
pub fn token_batch_loss(model: &dyn CausalLm, tb: &TokenBatch, fast: bool) -> Result<Tensor> {
    let h = model.hidden(&ids_tensor(model, tb)?, None, None, fast)?;
    head_loss(model, &h, tb)
}
