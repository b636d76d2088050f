//! What every causal language model here offers, whatever its architecture:
//! the [`CausalLm`] trait (logits for every position, an optional KV cache
//! and additive mask, a `fast` inference switch) and the architecture-neutral
//! [`KvCache`]. Training ([`super::train`]), decoding ([`super::generate`])
//! and the model ops work through it, so a LLaMA ([`super::llama`]) and a
//! GPT-2 ([`super::gpt2`]) are interchangeable there.

use super::blockwise::BlockwiseLm;
use candle_core::{D, DType, Device, Result, Tensor};

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

    /// Logits over the vocabulary for hidden states of any leading shape,
    /// in f32 when the weights are half precision ([`widen`]), so losses,
    /// softmaxes and host read-backs see f32 (f32 and f64 stay as they are).
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

    /// This model step by step (embedding, blocks, final norm), for
    /// training with activation recompute; `None` when the architecture
    /// does not offer it.
    fn blockwise(&self) -> Option<&dyn BlockwiseLm> {
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

/// Keys and values of the positions seen so far, for every layer, in
/// preallocated buffers: each layer holds `(b, kv_heads, capacity,
/// head_dim)` tensors for keys and values, and a step writes its new
/// positions in place ([`Tensor::slice_set`]) instead of concatenating a new
/// tensor. A cache made with [`KvCache::with_capacity`] allocates its
/// buffers once (at the first step); one made with [`KvCache::new`] doubles
/// its buffers when they fill. Rows can be dropped ([`KvCache::keep_rows`])
/// when a batched decode finishes some sequences.
#[derive(Default)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
    capacity: usize,
}

impl KvCache {
    /// An empty cache that grows as needed.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache whose buffers hold `positions` positions (prompt and
    /// new tokens together), so decoding up to that length never copies it.
    pub fn with_capacity(positions: usize) -> Self {
        KvCache {
            capacity: positions,
            ..Self::default()
        }
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
            let capacity = self.capacity;
            self.layers = (0..n).map(|_| LayerKv::new(capacity)).collect();
        }
    }

    /// The slot of layer `i`; [`KvCache::ensure_layers`] must come first.
    pub fn layer_mut(&mut self, i: usize) -> &mut LayerKv {
        &mut self.layers[i]
    }

    /// Records that `len` positions are now cached.
    pub fn set_len(&mut self, len: usize) {
        self.len = len;
    }

    /// Keeps only the batch rows `rows` (indices into the current batch,
    /// in the order given): the cache of a batch from which finished
    /// sequences were dropped.
    pub fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        for layer in &mut self.layers {
            layer.keep_rows(rows)?;
        }
        Ok(())
    }
}

/// One layer's cached keys and values (see [`KvCache`]).
#[derive(Default)]
pub struct LayerKv {
    /// Key and value buffers `(b, heads, capacity, head_dim)`, contiguous.
    buf: Option<(Tensor, Tensor)>,
    /// Positions written.
    len: usize,
    /// Positions to allocate at the first write (0: just what is written).
    capacity: usize,
}

impl LayerKv {
    fn new(capacity: usize) -> Self {
        LayerKv {
            buf: None,
            len: 0,
            capacity,
        }
    }

    /// Writes the new keys and values `(b, heads, t, hd)` after the cached
    /// positions and returns views of all of them, `(b, heads, len + t, hd)`.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dim(2)?;
        let need = self.len + t;
        let room = match &self.buf {
            Some((kb, _)) => kb.dim(2)?,
            None => 0,
        };
        if need > room {
            self.grow(k, need.max(self.capacity).max(2 * room))?;
        }
        let Some((kb, vb)) = &self.buf else {
            candle_core::bail!("kv cache: no buffer after growing");
        };
        kb.slice_set(&k.contiguous()?, 2, self.len)?;
        vb.slice_set(&v.contiguous()?, 2, self.len)?;
        self.len = need;
        Ok((kb.narrow(2, 0, need)?, vb.narrow(2, 0, need)?))
    }

    /// Replaces the buffers by ones of `positions` positions shaped like
    /// `like` `(b, heads, _, hd)`, keeping what is cached.
    fn grow(&mut self, like: &Tensor, positions: usize) -> Result<()> {
        let (b, h, _, hd) = like.dims4()?;
        let new = || Tensor::zeros((b, h, positions, hd), like.dtype(), like.device());
        let (kn, vn) = (new()?, new()?);
        if let Some((kb, vb)) = &self.buf
            && self.len > 0
        {
            kn.slice_set(&kb.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
            vn.slice_set(&vb.narrow(2, 0, self.len)?.contiguous()?, 2, 0)?;
        }
        self.buf = Some((kn, vn));
        Ok(())
    }

    fn keep_rows(&mut self, rows: &[usize]) -> Result<()> {
        if let Some((kb, vb)) = &self.buf {
            let idx: Vec<u32> = rows.iter().map(|&r| r as u32).collect();
            let idx = Tensor::from_vec(idx, rows.len(), kb.device())?;
            self.buf = Some((kb.index_select(&idx, 0)?, vb.index_select(&idx, 0)?));
        }
        Ok(())
    }
}

/// Appends the new keys and values `(b, heads, t, hd)` to a layer's cache
/// (when there is one) and returns the full keys and values.
pub fn extend_slot(slot: Option<&mut LayerKv>, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
    match slot {
        Some(slot) => slot.append(&k, &v),
        None => Ok((k, v)),
    }
}

/// Fewest output rows per block when a matrix-vector product is split
/// over threads: gemm multiplies one row by more than 256 columns with its
/// matrix-vector kernel and by fewer with another one, so blocks stay above
/// it and every output is computed by the kernel one call would use.
const SPLIT_MIN_ROWS: usize = 257;

/// `a @ b` (batched like [`Tensor::matmul`]). bf16 has no CPU matmul in
/// candle, so on the CPU bf16 operands are multiplied in f32 and the product
/// rounded back to bf16 (as a GPU accumulates bf16 products in f32).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() == DType::BF16 && a.device().is_cpu() {
        return a
            .to_dtype(DType::F32)?
            .matmul(&b.to_dtype(DType::F32)?)?
            .to_dtype(DType::BF16);
    }
    a.matmul(b)
}

/// `x @ w^T` over the last dimension, for any leading shape (`w` is
/// `(out, in)`, the `nn.Linear` layout).
///
/// One row times a large matrix is a matrix-vector product, which the CPU
/// matmul runs on one thread; it is split here by output rows over the CPU
/// threads, by [`super::matvec::matvec`] where it repeats gemm's kernel on
/// this CPU and else by candle matmuls over blocks of rows. Several rows go
/// to [`super::matvec::rows::matmul_rows`] where it repeats gemm's kernel
/// (without packing the weights), else to candle's matmul. Each output is the
/// same dot product either way, so the result is bit for bit what one call
/// gives.
pub fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (x2, dims) = as_rows(x)?;
    let y = if x2.dim(0)? == 1 && x.device().is_cpu() {
        match super::matvec::matvec(&x2, w)? {
            Some(y) => y,
            None => row_split_matvec(&x2, w)?,
        }
    } else if x.device().is_cpu()
        && let Some(y) = super::matvec::rows::matmul_rows(&x2, w)?
    {
        y
    } else {
        matmul(&x2, &w.t()?)?
    };
    from_rows(&y, &dims)
}

/// [`linear`] of one `x` with each of `ws`: on the CPU all the products
/// run in one fork-join, for one row by [`super::matvec::matvec_many`] and
/// for several by [`super::matvec::rows::matmul_rows_many`] (which
/// transposes `x` once for all of them), else one by one. Each result is
/// bit for bit what [`linear`] gives.
pub fn linear_many(x: &Tensor, ws: &[&Tensor]) -> Result<Vec<Tensor>> {
    let (x2, dims) = as_rows(x)?;
    if x.device().is_cpu() {
        let together = if x2.dim(0)? == 1 {
            super::matvec::matvec_many(&x2, ws)?
        } else {
            super::matvec::rows::matmul_rows_many(&x2, ws)?
        };
        if let Some(ys) = together {
            return ys.iter().map(|y| from_rows(y, &dims)).collect();
        }
    }
    ws.iter().map(|w| linear(x, w)).collect()
}

/// `silu(linear(x, gate)) * linear(x, up)`, the gated input of a
/// LLaMA-style MLP: on the CPU both products and the combination in one
/// fork-join, for one row by [`super::matvec::matvec_silu_gated`] and for
/// several by [`super::matvec::rows::matmul_rows_silu_gated`], else
/// candle's ops (and always where autograd tracks an operand). The result
/// is bit for bit the same either way.
pub fn silu_gated(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let (x2, dims) = as_rows(x)?;
    if x.device().is_cpu() {
        let fused = if x2.dim(0)? == 1 {
            super::matvec::matvec_silu_gated(&x2, gate, up)?
        } else {
            super::matvec::rows::matmul_rows_silu_gated(&x2, gate, up)?
        };
        if let Some(h) = fused {
            return from_rows(&h, &dims);
        }
    }
    let [g, u]: [Tensor; 2] = linear_many(x, &[gate, up])?
        .try_into()
        .map_err(|_| candle_core::Error::Msg("linear_many: one output per weight".into()))?;
    g.silu()? * u
}

/// `x` as a matrix `(rows, last)` over its last dimension, and its dims.
fn as_rows(x: &Tensor) -> Result<(Tensor, Vec<usize>)> {
    let dims = x.dims().to_vec();
    let last = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    Ok((x.reshape((rows, last))?, dims))
}

/// A product `y` `(rows, out)` back in the leading shape of `dims`, with
/// `out` last.
fn from_rows(y: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let mut out = dims.to_vec();
    let n = out.len();
    out[n - 1] = y.dim(1)?;
    y.reshape(out)
}

/// `x (1, in) @ w^T` with `w`'s rows split into one block per CPU thread,
/// the blocks multiplied in parallel and their outputs concatenated.
fn row_split_matvec(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    use rayon::prelude::*;
    let out = w.dim(0)?;
    let blocks = split_blocks(out, candle_core::utils::get_num_threads());
    if blocks.len() < 2 {
        return matmul(x, &w.t()?);
    }
    let parts = blocks
        .par_iter()
        .map(|&(s, n)| matmul(x, &w.narrow(0, s, n)?.t()?))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 1)
}

/// `(start, len)` blocks splitting `out` rows over at most `threads`
/// threads, each at least [`SPLIT_MIN_ROWS`] long (one block when they
/// cannot be).
fn split_blocks(out: usize, threads: usize) -> Vec<(usize, usize)> {
    let n = threads.min(out / SPLIT_MIN_ROWS).max(1);
    let block = out.div_ceil(n);
    let blocks: Vec<(usize, usize)> = (0..out)
        .step_by(block.max(1))
        .map(|s| (s, block.min(out - s)))
        .collect();
    if blocks.iter().all(|&(_, len)| len >= SPLIT_MIN_ROWS) {
        blocks
    } else {
        vec![(0, out)]
    }
}

/// `t` in f32 when it is half precision, else unchanged: what logits and
/// other values read back to the host go through.
pub fn widen(t: &Tensor) -> Result<Tensor> {
    if is_half(t.dtype()) {
        t.to_dtype(DType::F32)
    } else {
        Ok(t.clone())
    }
}

/// Attention of the queries `q` `(b, h, t, hd)` over the keys and values
/// `k`, `v` `(b, kv_heads, len, hd)` (`h` a multiple of `kv_heads`), with
/// `probs` turning the raw scores `q @ k^T` into probabilities (for
/// instance [`attention_probs`] with the scale and mask); returns `(b, h,
/// t, hd)`. A decoding step (`t == 1`, `fast`) reads each KV head in place
/// ([`super::matvec::attention`]); otherwise each KV head is repeated for
/// its query heads and multiplied by candle's matmul. Both give the same
/// bits.
pub fn attend(
    q: &Tensor,
    k: Tensor,
    v: Tensor,
    probs: impl Fn(&Tensor) -> Result<Tensor>,
    fast: bool,
) -> Result<Tensor> {
    if fast {
        let rows = q.dim(2)?;
        let in_place = if rows == 1 {
            super::matvec::attention::attend_one_position(q, &k, &v, &probs)?
        } else {
            super::matvec::attention::attend_rows(q, &k, &v, &probs)?
        };
        if let Some(y) = in_place {
            return Ok(y);
        }
    }
    let n_rep = q.dim(1)? / k.dim(1)?;
    let (k, v) = (repeat_kv(k, n_rep)?, repeat_kv(v, n_rep)?);
    let scores = matmul(q, &k.t()?)?;
    matmul(&probs(&scores)?, &v)
}

/// Each of `x`'s `(b, kv_heads, len, hd)` heads repeated `n_rep` times in
/// place, `(b, kv_heads * n_rep, len, hd)` (grouped-query attention).
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kvh, t, hd) = x.dims4()?;
    x.unsqueeze(2)?
        .broadcast_as((b, kvh, n_rep, t, hd))?
        .reshape((b, kvh * n_rep, t, hd))
}

/// Whether `dtype` is a half-precision float (bf16 or f16).
pub fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// Attention probabilities from raw scores `q @ k^T`: scaled, masked and
/// softmaxed over the keys. Without a mask, the fused causal softmax (with
/// its own backward pass); with an additive mask, the fused inference
/// softmax when `fast` (for f32 on the CPU, [`super::matvec::softmax`]'s one
/// pass with candle's bits), else candle's differentiable one.
///
/// Half-precision scores are scaled, masked and softmaxed in f32 and the
/// probabilities rounded back: the mask stays finite ([`super::llama::MASKED`]
/// is -inf in f16, which turns a row that sees only padding into NaN) and
/// the sums keep f32 precision. f32 and f64 scores are left as they are.
pub fn attention_probs(
    scores: &Tensor,
    scale: f64,
    mask: Option<&Tensor>,
    fast: bool,
) -> Result<Tensor> {
    let dtype = scores.dtype();
    if is_half(dtype) {
        let scores = scores.to_dtype(DType::F32)?;
        let mask = match mask {
            Some(m) => m.to_dtype(DType::F32)?,
            None => {
                let (t, total) = (scores.dim(D::Minus2)?, scores.dim(D::Minus1)?);
                causal_mask(t, total - t, scores.device())?
            }
        };
        return attention_probs(&scores, scale, Some(&mask), fast)?.to_dtype(dtype);
    }
    match mask {
        None => super::kernels::causal_softmax(scores, scale),
        Some(mask) => {
            if fast
                && let Some(p) = super::matvec::softmax::scaled_masked_softmax(scores, scale, mask)?
            {
                return Ok(p);
            }
            let att = (scores * scale)?.broadcast_add(&mask.to_dtype(dtype)?)?;
            if fast {
                candle_nn::ops::softmax_last_dim(&att)
            } else {
                candle_nn::ops::softmax(&att, D::Minus1)
            }
        }
    }
}

/// The additive mask value for blocked positions: finite, so a row that
/// sees only padding stays finite instead of turning into NaN.
pub const MASKED: f32 = -1e9;

/// An additive causal mask `(1, 1, t, past + t)`: position i of the new
/// tokens sees every cached position and new positions up to i.
pub fn causal_mask(t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (1, 1, t, total), device)
}
