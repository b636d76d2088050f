//! A model as its steps: the embedding, each block, the final norm. Training
//! with activation recompute ([`super::recompute`]) runs the blocks one at a
//! time, keeping only each block's input, and runs a block again in the
//! backward pass; it needs these steps one by one, which
//! [`super::lm::CausalLm::hidden`] runs in one go.
//!
//! Every step is the training path (`fast = false`, no KV cache, plain
//! causal attention from position 0), and composing them gives exactly
//! what `hidden(ids, None, None, false)` gives: the models build `hidden`
//! from the same per-block function.

use candle_core::{Result, Tensor};

/// What every block of one batch shares, made once per batch by
/// [`BlockwiseLm::block_context`].
#[derive(Debug, Clone)]
pub struct BlockContext {
    /// Positions per row.
    pub t: usize,
    /// The additive causal mask `(1, 1, t, t)`, or `None` where the model's
    /// training path applies causality itself (the fused CPU softmax).
    pub causal: Option<Tensor>,
    /// The mask of sliding-window layers (Gemma 3), else `None`.
    pub local: Option<Tensor>,
}

/// A decoder whose forward pass can be run step by step; see the module
/// doc. `x` is the residual stream `(b, t, hidden)` throughout.
pub trait BlockwiseLm {
    /// Number of blocks.
    fn num_blocks(&self) -> usize;

    /// The masks of a batch of rows of `t` positions.
    fn block_context(&self, t: usize) -> Result<BlockContext>;

    /// The residual stream entering the first block, for token ids `(b, t)`
    /// (token embeddings, plus positions or scaling where the architecture
    /// has them).
    fn embed(&self, ids: &Tensor) -> Result<Tensor>;

    /// Block `i`'s output for its input `x`.
    fn block(&self, i: usize, x: &Tensor, ctx: &BlockContext) -> Result<Tensor>;

    /// The final norm of the last block's output: the hidden states
    /// [`super::lm::CausalLm::logits`] takes.
    fn final_norm(&self, x: &Tensor) -> Result<Tensor>;
}
