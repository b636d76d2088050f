//! A LLaMA-family decoder with Hugging Face weight names, returning logits for
//! every position (what training needs), with grouped-query attention and its
//! own KV cache.
//!
//! The `fast` switch picks the kernels: `false` uses only differentiable ops
//! (`rms_norm_slow`, `rope_slow`, `ops::softmax`), which training must use
//! because candle's fused kernels (`ops::rms_norm`, `rotary_emb::rope`,
//! `softmax_last_dim`) have no backward pass and silently cut the gradient;
//! `true` uses the fused kernels, about 2x faster for generation. Both give
//! the same numbers up to float rounding.
//!
//! `candle_transformers::models::llama::Llama` cannot serve here: it returns
//! only the last position and cannot be trained. Tests compare with it.

use super::blockwise::{BlockContext, BlockwiseLm};
use super::config::LlamaConfig;
use super::kernels;
pub use super::lm::KvCache;
use super::lm::{CausalLm, LayerKv, attend, extend_slot, linear, linear_many, silu_gated};
use super::params::{Init, ParamStore};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::ops;
use candle_nn::rotary_emb;

pub use super::lm::{MASKED, causal_mask};

struct Block {
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    post_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

/// The model: weights plus the RoPE tables.
pub struct Llama {
    cfg: LlamaConfig,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Tensor,
    cos: Tensor,
    sin: Tensor,
    device: Device,
}

/// `x @ w^T` for each of `N` weights, in one fork-join for one row on the
/// CPU ([`linear_many`]).
fn projections<const N: usize>(x: &Tensor, ws: [&Tensor; N]) -> Result<[Tensor; N]> {
    linear_many(x, &ws)?
        .try_into()
        .map_err(|_| candle_core::Error::Msg("linear_many: one output per weight".into()))
}

impl Llama {
    /// Builds the model, taking each weight from `store` in a fixed order.
    pub fn new(cfg: &LlamaConfig, store: &mut ParamStore, device: &Device) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let d = cfg.hidden_size;
        let hd = cfg.head_dim();
        let h = cfg.num_attention_heads;
        let kv = cfg.kv_heads();
        let inter = cfg.intermediate_size;
        let embed = store.get(
            "model.embed_tokens.weight",
            &[cfg.vocab_size, d],
            Init::Normal,
        )?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{i}.{s}.weight");
            blocks.push(Block {
                input_norm: store.get(&p("input_layernorm"), &[d], Init::Ones)?,
                q: store.get(&p("self_attn.q_proj"), &[h * hd, d], Init::Normal)?,
                k: store.get(&p("self_attn.k_proj"), &[kv * hd, d], Init::Normal)?,
                v: store.get(&p("self_attn.v_proj"), &[kv * hd, d], Init::Normal)?,
                o: store.get(&p("self_attn.o_proj"), &[d, h * hd], Init::Normal)?,
                post_norm: store.get(&p("post_attention_layernorm"), &[d], Init::Ones)?,
                gate: store.get(&p("mlp.gate_proj"), &[inter, d], Init::Normal)?,
                up: store.get(&p("mlp.up_proj"), &[inter, d], Init::Normal)?,
                down: store.get(&p("mlp.down_proj"), &[d, inter], Init::Normal)?,
            });
        }
        let norm = store.get("model.norm.weight", &[d], Init::Ones)?;
        let head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            store.get("lm_head.weight", &[cfg.vocab_size, d], Init::Normal)?
        };
        let (cos, sin) = rope_tables(cfg, device)?;
        let (cos, sin) = (cos.to_dtype(embed.dtype())?, sin.to_dtype(embed.dtype())?);
        Ok(Llama {
            cfg: cfg.clone(),
            embed,
            blocks,
            norm,
            head,
            cos,
            sin,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LlamaConfig {
        &self.cfg
    }

    /// The float type of the weights.
    pub fn dtype(&self) -> DType {
        self.embed.dtype()
    }

    /// The device the weights live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Final hidden states `(b, t, hidden)` of token ids `(b, t)`.
    ///
    /// With a cache, the ids continue the cached positions and the cache is
    /// extended. `mask` is an additive mask broadcastable to
    /// `(b, heads, t, past + t)`; `None` means plain causal.
    pub fn hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let past = cache.as_ref().map(|c| c.len()).unwrap_or(0);
        if past + t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {} positions exceeds max_position_embeddings {}",
                past + t,
                self.cfg.max_position_embeddings
            );
        }
        // Training on CPU uses the fused causal softmax and needs no mask.
        let owned_mask;
        let mask = match mask {
            Some(m) => Some(m),
            None if self.fused(fast) => None,
            None => {
                owned_mask = causal_mask(t, past, &self.device)?;
                Some(&owned_mask)
            }
        };
        let cos = self.cos.narrow(0, past, t)?;
        let sin = self.sin.narrow(0, past, t)?;
        let mut x = self.embed_ids(ids, b, t)?;
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_layers(self.blocks.len());
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer_mut(i));
            x = self.block_forward(blk, &x, (&cos, &sin), mask, slot, fast)?;
        }
        if let Some(c) = cache {
            c.set_len(past + t);
        }
        self.norm(&x, &self.norm, fast)
    }

    /// The token embeddings `(b, t, hidden)` of ids `(b, t)`.
    fn embed_ids(&self, ids: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        self.embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, self.cfg.hidden_size))
    }

    /// One block: attention and the gated MLP, each after its RMSNorm and
    /// added to the residual stream `x`. `rope` is the `(cos, sin)` rows
    /// of the new positions.
    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        (cos, sin): (&Tensor, &Tensor),
        mask: Option<&Tensor>,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let h = self.norm(x, &blk.input_norm, fast)?;
        let a = self.attention(blk, &h, cos, sin, mask, slot, fast)?;
        let x = (x + a)?;
        let h = self.norm(&x, &blk.post_norm, fast)?;
        let m = linear(&silu_gated(&h, &blk.gate, &blk.up)?, &blk.down)?;
        x + m
    }

    /// Logits over the vocabulary for hidden states of any leading shape,
    /// in f32 for half-precision weights (see [`CausalLm::logits`]).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        super::lm::widen(&linear(hidden, &self.head)?)
    }

    /// Logits `(b, t, vocab)` for every position of `ids` `(b, t)`.
    pub fn forward(
        &self,
        ids: &Tensor,
        cache: Option<&mut KvCache>,
        mask: Option<&Tensor>,
        fast: bool,
    ) -> Result<Tensor> {
        self.logits(&self.hidden(ids, cache, mask, fast)?)
    }

    /// The trainable weights in the order the hand-written training step
    /// ([`super::manual`]) uses: the embedding, then per layer
    /// `input_layernorm`, `q`, `k`, `v`, `o`, `post_attention_layernorm`,
    /// `gate`, `up`, `down`, then the final norm, then the head unless it
    /// is tied to the embedding.
    pub fn param_tensors(&self) -> Vec<Tensor> {
        let mut out = vec![self.embed.clone()];
        for b in &self.blocks {
            out.extend(
                [
                    &b.input_norm,
                    &b.q,
                    &b.k,
                    &b.v,
                    &b.o,
                    &b.post_norm,
                    &b.gate,
                    &b.up,
                    &b.down,
                ]
                .map(Tensor::clone),
            );
        }
        out.push(self.norm.clone());
        if !self.cfg.tie_word_embeddings {
            out.push(self.head.clone());
        }
        out
    }

    /// The RoPE tables `(cos, sin)`, each `(max_position_embeddings,
    /// head_dim / 2)` in the weights' float type.
    pub fn rope_tables(&self) -> (&Tensor, &Tensor) {
        (&self.cos, &self.sin)
    }

    /// Whether the training path uses the fused CPU kernels (with their
    /// own backward passes) instead of composite differentiable ops.
    fn fused(&self, fast: bool) -> bool {
        !fast && self.device.is_cpu() && !super::lm::is_half(self.embed.dtype())
    }

    fn norm(&self, x: &Tensor, w: &Tensor, fast: bool) -> Result<Tensor> {
        let eps = self.cfg.rms_norm_eps as f32;
        if self.fused(fast) {
            kernels::rms_norm(x, w, self.cfg.rms_norm_eps)
        } else if fast {
            ops::rms_norm(&x.contiguous()?, w, eps)
        } else {
            ops::rms_norm_slow(x, w, eps)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        mask: Option<&Tensor>,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let h = self.cfg.num_attention_heads;
        let kvh = self.cfg.kv_heads();
        let hd = self.cfg.head_dim();
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            y.reshape((b, t, n, hd))?.transpose(1, 2)?.contiguous()
        };
        let fused = self.fused(fast);
        let rope = |x: Tensor| -> Result<Tensor> {
            if fused {
                kernels::rope(&x, cos, sin)
            } else if fast {
                rotary_emb::rope(&x, cos, sin)
            } else {
                rotary_emb::rope_slow(&x, cos, sin)
            }
        };
        let [q, k, v] = projections(x, [&blk.q, &blk.k, &blk.v])?;
        let q = rope(heads(q, h)?)?;
        let k = rope(heads(k, kvh)?)?;
        let v = heads(v, kvh)?;
        let (k, v) = extend_slot(slot, k, v)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let probs = |scores: &Tensor| super::lm::attention_probs(scores, scale, mask, fast);
        let y = attend(&q, k, v, probs, fast)?;
        linear(&y.transpose(1, 2)?.reshape((b, t, d))?, &blk.o)
    }
}

impl BlockwiseLm for Llama {
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
        if t > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {t} positions exceeds max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        self.embed_ids(ids, b, t)
    }
    fn block(&self, i: usize, x: &Tensor, ctx: &BlockContext) -> Result<Tensor> {
        let Some(blk) = self.blocks.get(i) else {
            candle_core::bail!("block {i} of a model with {}", self.blocks.len());
        };
        let rope = (
            &self.cos.narrow(0, 0, ctx.t)?,
            &self.sin.narrow(0, 0, ctx.t)?,
        );
        self.block_forward(blk, x, rope, ctx.causal.as_ref(), None, false)
    }
    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm(x, &self.norm, false)
    }
}

impl CausalLm for Llama {
    fn arch(&self) -> &'static str {
        "llama"
    }
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
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
        Llama::hidden(self, ids, cache, mask, fast)
    }
    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Llama::logits(self, hidden)
    }
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }
    fn max_positions(&self) -> Option<usize> {
        Some(self.cfg.max_position_embeddings)
    }
    fn device(&self) -> &Device {
        &self.device
    }
    fn dtype(&self) -> DType {
        Llama::dtype(self)
    }
    fn param_count(&self) -> usize {
        self.cfg.param_count()
    }
    fn config_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.cfg).map_err(candle_core::Error::wrap)
    }
}

fn rope_tables(cfg: &LlamaConfig, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = cfg.head_dim();
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / (cfg.rope_theta as f32).powf(2.0 * i as f32 / hd as f32))
        .collect();
    let n = cfg.max_position_embeddings;
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let pos = Tensor::arange(0u32, n as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    Ok((freqs.cos()?, freqs.sin()?))
}
