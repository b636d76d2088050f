//! The GPT-2 family (the paper's smallest base model is GPT-2 1.5B), with
//! Hugging Face `GPT2LMHeadModel` weight names: learned absolute positions,
//! pre-LayerNorm blocks with biases, GELU (tanh approximation, `gelu_new`),
//! causal attention scaled by `1/sqrt(head_dim)`, a head tied to the token
//! embedding. The attention and MLP projections are HF `Conv1D` layers whose
//! weights are stored `(in, out)`, transposed relative to `nn.Linear`; they
//! are kept in that layout so checkpoints round-trip unchanged.
//!
//! As in [`super::llama`], `fast = false` uses only differentiable ops (the
//! CPU training path uses the fused causal softmax of [`super::kernels`],
//! which has its own backward pass, and a composite LayerNorm, since
//! candle's `ops::layer_norm` has none), `fast = true` the fused kernels.

use super::blockwise::{BlockContext, BlockwiseLm};
use super::checkpoint::{CheckpointError, Loaded};
pub use super::config::Gpt2Config;
use super::llama::causal_mask;
use super::lm::{CausalLm, KvCache, LayerKv, attend, extend_slot, linear, matmul};
use super::params::{Init, ParamStore};
use super::tokenizer::TextTokenizer;
use candle_core::{D, DType, Device, Result, Tensor};
use candle_nn::ops;
use std::collections::HashMap;
use std::path::Path;

struct Block {
    ln1: (Tensor, Tensor),
    attn: (Tensor, Tensor),
    attn_proj: (Tensor, Tensor),
    ln2: (Tensor, Tensor),
    fc: (Tensor, Tensor),
    proj: (Tensor, Tensor),
}

/// The GPT-2 model.
pub struct Gpt2 {
    cfg: Gpt2Config,
    wte: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: (Tensor, Tensor),
    head: Tensor,
    device: Device,
}

/// An HF `Conv1D`: `x @ w + b` with `w` `(in, out)`, for any leading shape.
fn conv1d(x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let n = dims.len();
    let rows: usize = dims[..n - 1].iter().product();
    let y = matmul(&x.reshape((rows, dims[n - 1]))?, w)?.broadcast_add(b)?;
    let mut out = dims;
    out[n - 1] = w.dim(1)?;
    y.reshape(out)
}

/// `{name}.weight` of `shape` (initialised by `init`) and `{name}.bias`
/// (zeros) of the last dimension: a LayerNorm or a `Conv1D`.
fn pair(
    store: &mut ParamStore,
    name: &str,
    shape: &[usize],
    init: Init,
) -> Result<(Tensor, Tensor)> {
    let w = store.get(&format!("{name}.weight"), shape, init)?;
    let b = store.get(
        &format!("{name}.bias"),
        &shape[shape.len() - 1..],
        Init::Zeros,
    )?;
    Ok((w, b))
}

/// LayerNorm from differentiable ops, in the input's float type.
fn layer_norm_slow(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

impl Gpt2 {
    /// Builds the model, taking each weight from `store` (HF names with the
    /// `transformer.` prefix) in a fixed order.
    pub fn new(cfg: &Gpt2Config, store: &mut ParamStore, device: &Device) -> Result<Self> {
        cfg.validate()
            .map_err(|(k, m)| candle_core::Error::Msg(format!("`{k}` {m}")))?;
        let (d, f) = (cfg.n_embd, cfg.inner());
        let wte = store.get("transformer.wte.weight", &[cfg.vocab_size, d], Init::Normal)?;
        let wpe = store.get(
            "transformer.wpe.weight",
            &[cfg.n_positions, d],
            Init::Normal,
        )?;
        let mut blocks = Vec::with_capacity(cfg.n_layer);
        for i in 0..cfg.n_layer {
            let p = format!("transformer.h.{i}");
            blocks.push(Block {
                ln1: pair(store, &format!("{p}.ln_1"), &[d], Init::Ones)?,
                attn: pair(
                    store,
                    &format!("{p}.attn.c_attn"),
                    &[d, 3 * d],
                    Init::Normal,
                )?,
                attn_proj: pair(store, &format!("{p}.attn.c_proj"), &[d, d], Init::Normal)?,
                ln2: pair(store, &format!("{p}.ln_2"), &[d], Init::Ones)?,
                fc: pair(store, &format!("{p}.mlp.c_fc"), &[d, f], Init::Normal)?,
                proj: pair(store, &format!("{p}.mlp.c_proj"), &[f, d], Init::Normal)?,
            });
        }
        let ln_f = pair(store, "transformer.ln_f", &[d], Init::Ones)?;
        let head = if cfg.tie_word_embeddings {
            wte.clone()
        } else {
            store.get("lm_head.weight", &[cfg.vocab_size, d], Init::Normal)?
        };
        Ok(Gpt2 {
            cfg: cfg.clone(),
            wte,
            wpe,
            blocks,
            ln_f,
            head,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gpt2Config {
        &self.cfg
    }

    /// Whether the training path uses the fused CPU causal softmax.
    fn fused(&self, fast: bool) -> bool {
        !fast && self.device.is_cpu() && !super::lm::is_half(self.wte.dtype())
    }

    fn norm(&self, x: &Tensor, (w, b): &(Tensor, Tensor), fast: bool) -> Result<Tensor> {
        if fast {
            ops::layer_norm(&x.contiguous()?, w, b, self.cfg.layer_norm_epsilon as f32)
        } else {
            layer_norm_slow(x, w, b, self.cfg.layer_norm_epsilon)
        }
    }

    fn act(&self, x: &Tensor) -> Result<Tensor> {
        match self.cfg.activation_function.as_str() {
            "gelu" => x.gelu_erf(),
            "relu" => x.relu(),
            "silu" => x.silu(),
            _ => x.gelu(), // the tanh approximation (validated names only)
        }
    }

    /// Final hidden states for rows left-padded by `pads` tokens: each row's
    /// positions start at 0 on its first real token, as HF derives
    /// `position_ids` from the attention mask.
    fn run(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        pads: Option<&[usize]>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if past + t > self.cfg.n_positions {
            candle_core::bail!(
                "sequence of {} positions exceeds n_positions {}",
                past + t,
                self.cfg.n_positions
            );
        }
        let owned_mask;
        let mask = match mask {
            Some(m) => Some(m),
            None if self.fused(fast) => None,
            None => {
                owned_mask = causal_mask(t, past, &self.device)?;
                Some(&owned_mask)
            }
        };
        let d = self.cfg.n_embd;
        let tok = self
            .wte
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let mut x = match pads {
            Some(pads) if pads.iter().any(|&p| p > 0) => {
                if pads.len() != b {
                    candle_core::bail!("{} pad counts for a batch of {b}", pads.len());
                }
                let pos: Vec<u32> = pads
                    .iter()
                    .flat_map(|&p| (past..past + t).map(move |j| j.saturating_sub(p) as u32))
                    .collect();
                let pos = Tensor::from_vec(pos, b * t, &self.device)?;
                (tok + self.wpe.index_select(&pos, 0)?.reshape((b, t, d))?)?
            }
            _ => tok.broadcast_add(&self.wpe.narrow(0, past, t)?.unsqueeze(0)?)?,
        };
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_layers(self.blocks.len());
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = self.block_forward(blk, &x, mask, slot, fast)?;
        }
        if let Some(c) = cache {
            c.set_len(past + t);
        }
        self.norm(&x, &self.ln_f, fast)
    }

    /// One block: attention and the MLP, each after its LayerNorm and added
    /// to the residual stream `x`.
    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        mask: Option<&Tensor>,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let h = self.norm(x, &blk.ln1, fast)?;
        let a = self.attention(blk, &h, mask, slot, fast)?;
        let x = (x + a)?;
        let h = self.norm(&x, &blk.ln2, fast)?;
        let m = conv1d(&self.act(&conv1d(&h, &blk.fc)?)?, &blk.proj)?;
        x + m
    }

    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        mask: Option<&Tensor>,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let h = self.cfg.n_head;
        let hd = self.cfg.head_dim();
        let qkv = conv1d(x, &blk.attn)?;
        let heads = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i * d, d)?
                .reshape((b, t, h, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(0)?;
        let (k, v) = extend_slot(slot, heads(1)?, heads(2)?)?;
        let scale = if self.cfg.scale_attn_weights {
            1.0 / (hd as f64).sqrt()
        } else {
            1.0
        };
        let probs = |scores: &Tensor| super::lm::attention_probs(scores, scale, mask, fast);
        let y = attend(&q, k, v, probs, fast)?
            .transpose(1, 2)?
            .reshape((b, t, d))?;
        conv1d(&y, &blk.attn_proj)
    }
}

impl BlockwiseLm for Gpt2 {
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    fn block_context(&self, t: usize) -> Result<BlockContext> {
        let causal = if self.fused(false) {
            None
        } else {
            Some(causal_mask(t, 0, &self.device)?)
        };
        Ok(BlockContext {
            t,
            causal,
            local: None,
        })
    }
    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        if t > self.cfg.n_positions {
            candle_core::bail!(
                "sequence of {t} positions exceeds n_positions {}",
                self.cfg.n_positions
            );
        }
        let tok =
            self.wte
                .index_select(&ids.flatten_all()?, 0)?
                .reshape((b, t, self.cfg.n_embd))?;
        tok.broadcast_add(&self.wpe.narrow(0, 0, t)?.unsqueeze(0)?)
    }
    fn block(&self, i: usize, x: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
        let Some(blk) = self.blocks.get(i) else {
            candle_core::bail!("block {i} of a model with {}", self.blocks.len());
        };
        self.block_forward(blk, x, ctx.causal.as_ref(), None, false)
    }
    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm(x, &self.ln_f, false)
    }
}

impl CausalLm for Gpt2 {
    fn arch(&self) -> &'static str {
        "gpt2"
    }
    fn blockwise(&self) -> Option<&dyn BlockwiseLm> {
        Some(self)
    }
    fn hidden(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor> {
        self.run(ids, cache, mask, None, fast)
    }
    fn hidden_padded(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        pads: &[usize],
        fast: bool,
    ) -> Result<Tensor> {
        self.run(ids, cache, mask, Some(pads), fast)
    }
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        super::lm::widen(&linear(hidden, &self.head)?)
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn max_positions(&self) -> Option<usize> {
        Some(self.cfg.n_positions)
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn dtype(&self) -> DType {
        self.wte.dtype()
    }
    fn param_count(&self) -> usize {
        self.cfg.param_count()
    }
    fn config_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.cfg).map_err(candle_core::Error::wrap)
    }
}

/// A freshly initialised GPT-2 (N(0, 0.02) matrices and embeddings, zero
/// biases, unit LayerNorm gains) and its named trainable weights, the same
/// for the same seed on every machine.
pub fn init(
    cfg: &Gpt2Config,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<(Gpt2, Vec<(String, candle_core::Var)>)> {
    let mut store = ParamStore::fresh(seed, 0.02, device, dtype);
    let model = Gpt2::new(cfg, &mut store, device)?;
    Ok((model, store.into_vars()))
}

/// Whether a checkpoint tensor is a buffer HF GPT-2 checkpoints may carry
/// that holds no weight (the causal-mask buffers of older versions).
fn is_buffer(name: &str) -> bool {
    name.ends_with(".attn.bias") || name.ends_with(".attn.masked_bias")
}

/// Builds a GPT-2 from a checked config, the checkpoint's tensors (with or
/// without the `transformer.` prefix) and a tokenizer, with the weights
/// cast to `dtype`. Tensors the model does not use are an error (except
/// mask buffers and a tied `lm_head`).
pub fn load(
    dir: &Path,
    cfg: &Gpt2Config,
    tensors: HashMap<String, Tensor>,
    tokenizer: TextTokenizer,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> std::result::Result<Loaded, CheckpointError> {
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter(|(n, _)| !is_buffer(n))
        .map(|(n, t)| {
            if n.starts_with("transformer.") || n.starts_with("lm_head.") {
                (n, t)
            } else {
                (format!("transformer.{n}"), t)
            }
        })
        .collect();
    let mut store = ParamStore::loaded(tensors, trainable, device, dtype);
    let model = Gpt2::new(cfg, &mut store, device)
        .map_err(|e| CheckpointError::Model(format!("{}: {e}", dir.display())))?;
    super::checkpoint::finish_load(
        dir,
        store,
        Box::new(model),
        tokenizer,
        cfg.tie_word_embeddings,
        |_| false,
    )
}
