//! A hand-written training step for our LLaMA ([`super::llama::Llama`]) on
//! the CPU, without candle's autograd, in the style of llm.c.
//!
//! Why: through autograd, every op allocates a fresh tensor, each graph
//! node's gradient starts as `zeros_like` and is added to, and elementwise
//! steps run as separate whole-tensor passes; the backward pass cost about 3x
//! PyTorch's. Here [`ManualStep::forward`] runs the model on raw slices,
//! keeping what the backward pass needs, and [`ManualStep::backward`] writes
//! the gradient of every weight into buffers that live as long as the step
//! object, so a training run allocates nothing per step once the shapes are
//! known.
//!
//! What the forward pass stashes per layer (rows `n = b * t`): the residual
//! input `x`, RMSNorm reciprocal roots `r1`/`r2` and outputs `h1`/`h2`, the
//! rotated queries and keys and the values, the attention probabilities
//! `(b, heads, t, t)`, the attention output `y` (before `o_proj`), the
//! residual after attention `xmid`, and the MLP's `gate`, `up`, `sigmoid(gate)` and
//! `silu(gate) * up`. After the layers it keeps only the rows whose target is
//! learned (as `train::batch_loss` selects them before the head): their
//! residual, final-norm output and the logits, which the cross-entropy turns
//! into their own gradient in place.
//!
//! Kernels ([`kernels`]) are fused row passes parallel over fixed-size row
//! chunks; attention runs one task per (sequence, key/value head) with the
//! query heads of a group in order; matrix products use the `gemm` crate (as
//! candle's CPU matmul does) with strides instead of transposes. Reductions
//! run in a fixed order, so gradients are bit-identical for any thread
//! count. Supports grouped-query attention, tied and untied heads, any
//! `rope_theta`/`rms_norm_eps`, and f32 or f64 weights.

mod attention;
mod backward;
mod forward;
pub mod kernels;
pub mod num;

use super::llama::Llama;
use candle_core::backprop::GradStore;
use candle_core::{Device, Result, Storage, Tensor};
use kernels::Real;

/// One batch of token windows padded to the same length `t`.
#[derive(Debug, Clone, Default)]
pub struct TokenBatch {
    /// Sequences.
    pub b: usize,
    /// Positions per sequence.
    pub t: usize,
    /// Input ids, `b * t`, row-major (padding positions hold any valid id).
    pub ids: Vec<u32>,
    /// Flat positions (`i * t + j`) whose next token is learned, ascending.
    pub rows: Vec<u32>,
    /// The learned next token of each entry of `rows`.
    pub targets: Vec<u32>,
}

/// Shapes of the model and the current batch.
#[derive(Debug, Clone, Copy, Default)]
struct Dims {
    b: usize,
    t: usize,
    n: usize,
    d: usize,
    h: usize,
    kv: usize,
    hd: usize,
    inter: usize,
    vocab: usize,
    layers: usize,
    eps: f64,
    tied: bool,
}

impl Dims {
    fn hq(&self) -> usize {
        self.h * self.hd
    }
    fn hkv(&self) -> usize {
        self.kv * self.hd
    }
    /// Index of the final norm's gain in the weight list.
    fn norm_idx(&self) -> usize {
        1 + 9 * self.layers
    }
    /// Index of the head in the weight list (the embedding when tied).
    fn head_idx(&self) -> usize {
        if self.tied { 0 } else { 2 + 9 * self.layers }
    }
}

/// What one layer keeps from the forward pass for the backward pass.
struct LayerStash<T> {
    x: Vec<T>,
    r1: Vec<T>,
    h1: Vec<T>,
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    att: Vec<T>,
    y: Vec<T>,
    xmid: Vec<T>,
    r2: Vec<T>,
    h2: Vec<T>,
    g: Vec<T>,
    u: Vec<T>,
    a: Vec<T>,
    sig: Vec<T>,
}

/// Activations and scratch space, reused from step to step.
struct Buffers<T> {
    layers: Vec<LayerStash<T>>,
    xf: Vec<T>,
    xs: Vec<T>,
    rs: Vec<T>,
    hs: Vec<T>,
    logits: Vec<T>,
    dres: Vec<T>,
    dh: Vec<T>,
    dy: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
    da: Vec<T>,
    datt: Vec<T>,
    dhs: Vec<T>,
    dxs: Vec<T>,
}

impl<T> Default for LayerStash<T> {
    fn default() -> Self {
        let e = Vec::new;
        LayerStash {
            x: e(),
            r1: e(),
            h1: e(),
            q: e(),
            k: e(),
            v: e(),
            att: e(),
            y: e(),
            xmid: e(),
            r2: e(),
            h2: e(),
            g: e(),
            u: e(),
            a: e(),
            sig: e(),
        }
    }
}

impl<T> Default for Buffers<T> {
    fn default() -> Self {
        let e = Vec::new;
        Buffers {
            layers: Vec::new(),
            xf: e(),
            xs: e(),
            rs: e(),
            hs: e(),
            logits: e(),
            dres: e(),
            dh: e(),
            dy: e(),
            dq: e(),
            dk: e(),
            dv: e(),
            da: e(),
            datt: e(),
            dhs: e(),
            dxs: e(),
        }
    }
}

fn fit<T: Real>(v: &mut Vec<T>, n: usize) {
    v.resize(n, T::zero());
}

impl<T: Real> Buffers<T> {
    fn ensure(&mut self, dm: &Dims, learned: usize) {
        let (n, d, tt) = (dm.n, dm.d, dm.b * dm.t * dm.t);
        self.layers.resize_with(dm.layers, Default::default);
        for st in &mut self.layers {
            for (v, len) in [
                (&mut st.x, n * d),
                (&mut st.r1, n),
                (&mut st.h1, n * d),
                (&mut st.q, n * dm.hq()),
                (&mut st.k, n * dm.hkv()),
                (&mut st.v, n * dm.hkv()),
                (&mut st.att, tt * dm.h),
                (&mut st.y, n * dm.hq()),
                (&mut st.xmid, n * d),
                (&mut st.r2, n),
                (&mut st.h2, n * d),
                (&mut st.g, n * dm.inter),
                (&mut st.u, n * dm.inter),
                (&mut st.a, n * dm.inter),
                (&mut st.sig, n * dm.inter),
            ] {
                fit(v, len);
            }
        }
        for (v, len) in [
            (&mut self.xf, n * d),
            (&mut self.xs, learned * d),
            (&mut self.rs, learned),
            (&mut self.hs, learned * d),
            (&mut self.logits, learned * dm.vocab),
            (&mut self.dres, n * d),
            (&mut self.dh, n * d),
            (&mut self.dy, n * dm.hq()),
            (&mut self.dq, n * dm.hq()),
            (&mut self.dk, n * dm.hkv()),
            (&mut self.dv, n * dm.hkv()),
            (&mut self.da, n * dm.inter),
            (&mut self.datt, tt * dm.kv),
            (&mut self.dhs, learned * d),
            (&mut self.dxs, learned * d),
        ] {
            fit(v, len);
        }
    }
}

/// The hand-written training step of one model: its weights (shared with
/// the model, read at every call), RoPE tables, activations and gradients.
pub struct ManualStep<T: Real> {
    dims: Dims,
    params: Vec<Tensor>,
    cos: Vec<T>,
    sin: Vec<T>,
    buf: Buffers<T>,
    grads: Vec<Vec<T>>,
    batch: TokenBatch,
    ready: bool,
}

/// Runs `f` on the CPU slices of `tensors` (read-locked meanwhile).
fn with_weights<T: Real, R>(tensors: &[Tensor], f: impl FnOnce(&[&[T]]) -> R) -> Result<R> {
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let mut w = Vec::with_capacity(guards.len());
    for (g, l) in &guards {
        let Storage::Cpu(cs) = &**g else {
            candle_core::bail!("manual step: weights must be on the CPU");
        };
        let s = cs.as_slice::<T>()?;
        let Some((a, b)) = l.contiguous_offsets() else {
            candle_core::bail!("manual step: weights must be contiguous");
        };
        w.push(&s[a..b]);
    }
    Ok(f(&w))
}

impl<T: Real> ManualStep<T> {
    /// A step for `model`, whose weights must be on the CPU in type `T`.
    pub fn new(model: &Llama) -> Result<Self> {
        if !model.device().is_cpu() || model.dtype() != T::DTYPE {
            candle_core::bail!(
                "manual step: needs {:?} weights on the CPU, got {:?} on {:?}",
                T::DTYPE,
                model.dtype(),
                model.device()
            );
        }
        let cfg = model.config();
        let dims = Dims {
            d: cfg.hidden_size,
            h: cfg.num_attention_heads,
            kv: cfg.kv_heads(),
            hd: cfg.head_dim(),
            inter: cfg.intermediate_size,
            vocab: cfg.vocab_size,
            layers: cfg.num_hidden_layers,
            eps: cfg.rms_norm_eps,
            tied: cfg.tie_word_embeddings,
            ..Default::default()
        };
        let params = model.param_tensors();
        let (cos, sin) = model.rope_tables();
        let grads = params
            .iter()
            .map(|p| vec![T::zero(); p.elem_count()])
            .collect();
        Ok(ManualStep {
            dims,
            params,
            cos: cos.flatten_all()?.to_vec1::<T>()?,
            sin: sin.flatten_all()?.to_vec1::<T>()?,
            buf: Buffers::default(),
            grads,
            batch: TokenBatch::default(),
            ready: false,
        })
    }

    /// Runs the forward pass on `batch` and returns the mean cross-entropy
    /// over its learned rows (`None` when it has none).
    pub fn forward(&mut self, batch: &TokenBatch) -> Result<Option<f64>> {
        self.ready = false;
        if batch.rows.is_empty() || batch.t == 0 {
            return Ok(None);
        }
        let dm = &mut self.dims;
        let max_pos = self.cos.len() / (dm.hd / 2).max(1);
        if batch.t > max_pos {
            candle_core::bail!("sequence of {} positions exceeds {max_pos}", batch.t);
        }
        if batch.ids.len() != batch.b * batch.t
            || batch.rows.len() != batch.targets.len()
            || batch
                .ids
                .iter()
                .chain(&batch.targets)
                .any(|&i| i as usize >= dm.vocab)
            || batch.rows.iter().any(|&r| r as usize >= batch.b * batch.t)
        {
            candle_core::bail!("manual step: malformed batch");
        }
        dm.b = batch.b;
        dm.t = batch.t;
        dm.n = batch.b * batch.t;
        self.batch.clone_from(batch);
        self.buf.ensure(&self.dims, batch.rows.len());
        let (dm, cos, sin, buf) = (&self.dims, &self.cos, &self.sin, &mut self.buf);
        let loss = with_weights::<T, _>(&self.params, |w| {
            forward::forward(dm, w, cos, sin, batch, buf)
        })?;
        self.ready = true;
        Ok(Some(loss.to_f64()))
    }

    /// Runs the backward pass of the last [`ManualStep::forward`], writing
    /// the gradient of every weight.
    pub fn backward(&mut self) -> Result<()> {
        if !self.ready {
            candle_core::bail!("manual step: backward needs a forward pass first");
        }
        self.ready = false;
        let (dm, cos, sin, buf, grads, batch) = (
            &self.dims,
            &self.cos,
            &self.sin,
            &mut self.buf,
            &mut self.grads,
            &self.batch,
        );
        with_weights::<T, _>(&self.params, |w| {
            backward::backward(dm, w, cos, sin, batch, buf, grads)
        })
    }

    /// The weights, in the order of [`Llama::param_tensors`].
    pub fn params(&self) -> &[Tensor] {
        &self.params
    }

    /// The gradient of the weight `t` (by tensor id), if it is one of ours.
    pub fn grad_of(&self, t: &Tensor) -> Option<&[T]> {
        let id = t.id();
        self.params
            .iter()
            .position(|p| p.id() == id)
            .map(|i| self.grads[i].as_slice())
    }

    /// The gradients as a candle [`GradStore`] keyed by the weights, as
    /// `loss.backward()` would return them.
    pub fn grad_store(&self) -> Result<GradStore> {
        let mut store = GradStore::default();
        for (p, g) in self.params.iter().zip(&self.grads) {
            store.insert(p, Tensor::from_slice(g, p.shape(), &Device::Cpu)?);
        }
        Ok(store)
    }
}
