//! What every causal language model here offers, whatever its architecture:
//! the [`CausalLm`] trait (logits for every position, an optional KV cache
//! and additive mask, a `fast` inference switch) and the architecture-neutral
//! [`KvCache`]. Training ([`super::train`]), decoding ([`super::generate`])
//! and the model ops work through it, so a LLaMA ([`super::llama`]) and a
//! GPT-2 ([`super::gpt2`]) are interchangeable there.

use candle_core::{DType, Device, Result, Tensor};

/// A decoder-only language model.
///
/// `ids` are token ids `(b, t)`. With a cache, the ids continue the cached
/// positions and the cache is extended by `t`. `mask` is an additive mask
/// broadcastable to `(b, heads, t, past + t)` (use
/// [`super::llama::MASKED`] for blocked entries); `None` means plain causal
/// attention. `fast = false` is the training path: only ops with a backward
/// pass (or fused kernels with their own); `fast = true` may use fused
/// kernels without one, for inference. Both give the same numbers up to
/// float rounding.
pub trait CausalLm: Send + Sync {
    /// The architecture's Hugging Face `model_type` (`llama`, `gpt2`, ...).
    fn arch(&self) -> &'static str;

    /// Final hidden states `(b, t, hidden)` (after the last norm).
    fn hidden(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor>;

    /// Logits over the vocabulary for hidden states of any leading shape.
    fn logits(&self, hidden: &Tensor) -> Result<Tensor>;

    /// [`CausalLm::hidden`] for rows left-padded by `pads[r]` tokens (which
    /// `mask` blocks): a model with absolute positions starts each row's
    /// positions at its first real token. RoPE models see only relative
    /// positions, so the default ignores `pads`.
    fn hidden_padded(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        pads: &[usize],
        fast: bool,
    ) -> Result<Tensor> {
        let _ = pads;
        self.hidden(ids, cache, mask, fast)
    }

    /// Logits `(b, t, vocab)` for every position of `ids` `(b, t)`.
    fn forward(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor> {
        self.logits(&self.hidden(ids, cache, mask, fast)?)
    }

    /// This model as `Any`, for callers that need the concrete type (the
    /// hand-written training step ([`super::manual`]) runs only our LLaMA
    /// and downcasts to it); `None` when the model does not offer it.
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        None
    }

    /// Rows of the embedding (and columns of the logits).
    fn vocab_size(&self) -> usize;

    /// The longest sequence (cache included) the model accepts, or `None`
    /// when it has no hard limit. Learned positions (GPT-2) limit it; our
    /// LLaMA also reports its RoPE table length, which is finite.
    fn max_positions(&self) -> Option<usize>;

    /// The device the weights live on.
    fn device(&self) -> &Device;

    /// The float type of the weights.
    fn dtype(&self) -> DType;

    /// Number of parameters (a tied head counted once).
    fn param_count(&self) -> usize;

    /// The Hugging Face `config.json` text (pretty JSON, no trailing
    /// newline) that rebuilds this architecture, in the config's field
    /// order, so checkpoints written from it load back here and in
    /// `transformers`.
    fn config_json(&self) -> Result<String>;
}

/// Keys and values of the positions seen so far: one `(k, v)` per layer,
/// each `(b, kv_heads, len, head_dim)`, plus the number of cached positions.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of positions already in the cache.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Makes room for `n` layers (dropping entries of a different layout).
    pub fn ensure_layers(&mut self, n: usize) {
        if self.layers.len() != n {
            self.layers = (0..n).map(|_| None).collect();
        }
    }

    /// The slot of layer `i`; [`KvCache::ensure_layers`] must come first.
    pub fn layer_mut(&mut self, i: usize) -> &mut Option<(Tensor, Tensor)> {
        &mut self.layers[i]
    }

    /// Records that `len` positions are now cached.
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }
}

/// Appends the new keys and values `(b, heads, t, hd)` to a layer's slot
/// (when there is one) and returns the full keys and values.
pub fn extend_slot(
    slot: Option<&mut Option<(Tensor, Tensor)>>,
    k: Tensor,
    v: Tensor,
) -> Result<(Tensor, Tensor)> {
    let Some(slot) = slot else {
        return Ok((k, v));
    };
    let (k, v) = match slot.as_ref() {
        Some((pk, pv)) => (Tensor::cat(&[pk, &k], 2)?, Tensor::cat(&[pv, &v], 2)?),
        None => (k, v),
    };
    *slot = Some((k.clone(), v.clone()));
    Ok((k, v))
}

/// `x @ w^T` over the last dimension, for any leading shape (`w` is
/// `(out, in)`, the `nn.Linear` layout).
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, last))?.matmul(&w.t()?)?;
    let mut out = dims;
    let n = out.len();
    out[n - 1] = w.dim(0)?;
    y.reshape(out)
}

/// Attention probabilities from raw scores `q @ k^T`: scaled, masked and
/// softmaxed over the keys. Without a mask, the fused causal softmax (with
/// its own backward pass); with an additive mask, the fused inference
/// softmax when `fast`, else candle's differentiable one.
pub fn attention_probs(
    scores: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
    fast: bool,
) -> Result<Tensor> {
    match mask {
        None => super::kernels::causal_softmax(scores, scale),
        Some(mask) => {
            let att = (scores * scale)?.broadcast_add(&mask.to_dtype(scores.dtype())?)?;
            if fast {
                candle_nn::ops::softmax_last_dim(&att)
            } else {
                candle_nn::ops::softmax(&att, candle_core::D::Minus1)
            }
        }
    }
}
