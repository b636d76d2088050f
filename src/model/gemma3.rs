//! Gemma 3 text decoder (Gemma-3-270m and the other text sizes without
//! RoPE scaling), with Hugging Face weight names, as a [`CausalLm`].
//!
//! Differences from our LLaMA, each checked against Hugging Face's
//! `Gemma3TextModel`, candle-transformers' `gemma3.rs` and llama.cpp's
//! converter (`convert_hf_to_gguf.py`, `Gemma3Model`):
//! - the embedding output is multiplied by `sqrt(hidden_size)`;
//! - every RMSNorm scales by `1 + w` (HF stores `w`; llama.cpp's converter
//!   stores `1 + w`, so [`super::gguf_gemma3::load_gguf`] subtracts 1);
//! - queries and keys get their own RMSNorm over the head width (`q_norm`,
//!   `k_norm`) before RoPE;
//! - four norms per block: `input_layernorm` -> attention ->
//!   `post_attention_layernorm` -> residual, `pre_feedforward_layernorm` ->
//!   MLP -> `post_feedforward_layernorm` -> residual;
//! - the MLP is gated with GELU (tanh approximation): `down(gelu(gate(x)) *
//!   up(x))`;
//! - layers alternate sliding-window (local) and global attention: layer
//!   `i` is global when `(i + 1) % sliding_window_pattern == 0` (pattern 6),
//!   local layers see the last `sliding_window` positions (a query attends
//!   to keys with `q - k < window`) and use RoPE base
//!   `rope_local_base_freq` (10,000), global ones `rope_theta` (10^6);
//! - attention scores are scaled by `query_pre_attn_scalar^-1/2`;
//! - rotate-half RoPE over the full head width; llama.cpp does not permute
//!   Gemma's Q/K rows (it uses its NeoX RoPE for Gemma);
//! - the head is tied to the embedding; no logit soft-capping in Gemma 3.
//!
//! GGUF files are read by [`super::gguf_gemma3`].

use super::blockwise::{BlockContext, BlockwiseLm};
use super::kernels;
use super::llama::{MASKED, causal_mask};
use super::lm::{CausalLm, KvCache, LayerKv, attend, extend_slot, linear};
use super::params::{Init, ParamStore};
use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{ops, rotary_emb};
use serde::{Deserialize, Serialize};

/// A Gemma 3 text configuration, in HF `Gemma3TextConfig` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemma3Config {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Inner width of the gated MLP.
    pub intermediate_size: usize,
    /// Number of blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    pub num_key_value_heads: usize,
    /// Width of one head (not `hidden_size / heads` in Gemma).
    pub head_dim: usize,
    /// Rows of the embedding.
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f64,
    /// RoPE base of the global layers.
    pub rope_theta: f64,
    /// RoPE base of the sliding-window layers.
    pub rope_local_base_freq: f64,
    /// Positions a sliding-window layer sees.
    pub sliding_window: usize,
    /// Every `sliding_window_pattern`-th layer is global.
    pub sliding_window_pattern: usize,
    /// Scores are scaled by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: f64,
    /// Longest sequence (RoPE tables).
    pub max_position_embeddings: usize,
    /// Always `gelu_pytorch_tanh`.
    pub hidden_activation: String,
    /// Whether the head is the embedding.
    pub tie_word_embeddings: bool,
    /// `["Gemma3ForCausalLM"]`.
    pub architectures: Vec<String>,
    /// `gemma3_text`.
    pub model_type: String,
}

impl Gemma3Config {
    /// Whether layer `i` uses the sliding window (local attention).
    pub fn is_sliding(&self, i: usize) -> bool {
        !(i + 1).is_multiple_of(self.sliding_window_pattern.max(1))
    }

    /// Number of parameters (the tied head counted once).
    pub fn param_count(&self) -> usize {
        let (d, hd) = (self.hidden_size, self.head_dim);
        let q = self.num_attention_heads * hd;
        let kv = self.num_key_value_heads * hd;
        let per_layer = d * q * 2 + d * kv * 2 + 3 * d * self.intermediate_size + 4 * d + 2 * hd;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }

    /// Checks the shape constraints; the message names what is wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let h = self.num_attention_heads;
        let kv = self.num_key_value_heads;
        if [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            h,
            self.vocab_size,
        ]
        .contains(&0)
        {
            return Err("sizes must be positive".into());
        }
        if kv == 0 || !h.is_multiple_of(kv) {
            return Err(format!("{kv} key/value heads must divide {h} query heads"));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return Err(format!("head width {} must be even", self.head_dim));
        }
        Ok(())
    }
}

struct Block {
    input_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    pre_ffn_norm: Tensor,
    post_ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
    sliding: bool,
}

/// The Gemma 3 decoder.
pub struct Gemma3 {
    cfg: Gemma3Config,
    embed: Tensor,
    blocks: Vec<Block>,
    norm: Tensor,
    head: Tensor,
    global_rope: (Tensor, Tensor),
    local_rope: (Tensor, Tensor),
    device: Device,
}

fn rope_tables(hd: usize, base: f64, n: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv: Vec<f32> = (0..hd / 2)
        .map(|i| 1.0 / base.powf(2.0 * i as f64 / hd as f64) as f32)
        .collect();
    let inv = Tensor::from_vec(inv, (1, hd / 2), device)?;
    let pos = Tensor::arange(0u32, n as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((n, 1))?;
    let f = pos.broadcast_mul(&inv)?;
    Ok((f.cos()?, f.sin()?))
}

/// Blocks keys `window` or more positions behind the query: `(1, 1, t, past + t)`.
fn window_mask(t: usize, past: usize, window: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let data: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if past + i >= j + window { MASKED } else { 0.0 }))
        .collect();
    Tensor::from_vec(data, (1, 1, t, total), device)
}

impl Gemma3 {
    /// Builds the model from `store` (HF names; norms in HF's `w` form, so
    /// a fresh store's unit norms mean a scale of 2: Gemma is meant to be
    /// loaded, not trained from scratch).
    pub fn new(cfg: &Gemma3Config, store: &mut ParamStore, device: &Device) -> Result<Self> {
        cfg.validate().map_err(candle_core::Error::Msg)?;
        let (d, hd) = (cfg.hidden_size, cfg.head_dim);
        let (h, kv, inter) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.intermediate_size,
        );
        let embed = store.get(
            "model.embed_tokens.weight",
            &[cfg.vocab_size, d],
            Init::Normal,
        )?;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = |s: &str| format!("model.layers.{i}.{s}.weight");
            let mut g = |s: &str, shape: &[usize], init: Init| store.get(&p(s), shape, init);
            blocks.push(Block {
                input_norm: g("input_layernorm", &[d], Init::Ones)?,
                q: g("self_attn.q_proj", &[h * hd, d], Init::Normal)?,
                k: g("self_attn.k_proj", &[kv * hd, d], Init::Normal)?,
                v: g("self_attn.v_proj", &[kv * hd, d], Init::Normal)?,
                o: g("self_attn.o_proj", &[d, h * hd], Init::Normal)?,
                q_norm: g("self_attn.q_norm", &[hd], Init::Ones)?,
                k_norm: g("self_attn.k_norm", &[hd], Init::Ones)?,
                post_attn_norm: g("post_attention_layernorm", &[d], Init::Ones)?,
                pre_ffn_norm: g("pre_feedforward_layernorm", &[d], Init::Ones)?,
                post_ffn_norm: g("post_feedforward_layernorm", &[d], Init::Ones)?,
                gate: g("mlp.gate_proj", &[inter, d], Init::Normal)?,
                up: g("mlp.up_proj", &[inter, d], Init::Normal)?,
                down: g("mlp.down_proj", &[d, inter], Init::Normal)?,
                sliding: cfg.is_sliding(i),
            });
        }
        let norm = store.get("model.norm.weight", &[d], Init::Ones)?;
        let head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            store.get("lm_head.weight", &[cfg.vocab_size, d], Init::Normal)?
        };
        let n = cfg.max_position_embeddings;
        let dt = embed.dtype();
        let cast = |(c, s): (Tensor, Tensor)| -> Result<(Tensor, Tensor)> {
            Ok((c.to_dtype(dt)?, s.to_dtype(dt)?))
        };
        Ok(Gemma3 {
            cfg: cfg.clone(),
            global_rope: cast(rope_tables(hd, cfg.rope_theta, n, device)?)?,
            local_rope: cast(rope_tables(hd, cfg.rope_local_base_freq, n, device)?)?,
            embed,
            blocks,
            norm,
            head,
            device: device.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }

    fn fused(&self, fast: bool) -> bool {
        !fast && self.device.is_cpu() && !super::lm::is_half(self.embed.dtype())
    }

    /// RMSNorm scaled by `1 + w`.
    fn norm(&self, x: &Tensor, w: &Tensor, fast: bool) -> Result<Tensor> {
        let w = (w + 1.0)?;
        let eps = self.cfg.rms_norm_eps;
        if self.fused(fast) {
            kernels::rms_norm(x, &w, eps)
        } else if fast {
            ops::rms_norm(&x.contiguous()?, &w, eps as f32)
        } else {
            ops::rms_norm_slow(x, &w, eps as f32)
        }
    }

    /// One block: attention and the gated MLP, each between its two
    /// norms, added to the residual stream `x`; `mask` is the layer's
    /// (global or sliding-window) mask.
    fn block_forward(
        &self,
        blk: &Block,
        x: &Tensor,
        past: usize,
        mask: &Tensor,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let a = self.attention(
            blk,
            &self.norm(x, &blk.input_norm, fast)?,
            past,
            mask,
            slot,
            fast,
        )?;
        let x = (x + self.norm(&a, &blk.post_attn_norm, fast)?)?;
        let hn = self.norm(&x, &blk.pre_ffn_norm, fast)?;
        let mlp = linear(
            &(linear(&hn, &blk.gate)?.gelu()? * linear(&hn, &blk.up)?)?,
            &blk.down,
        )?;
        x + self.norm(&mlp, &blk.post_ffn_norm, fast)?
    }

    /// The token embeddings of ids `(b, t)`, scaled by `sqrt(hidden_size)`.
    fn embed_ids(&self, ids: &Tensor, b: usize, t: usize) -> Result<Tensor> {
        let d = self.cfg.hidden_size;
        self.embed
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, d))?
            * (d as f64).sqrt()
    }

    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        blk: &Block,
        x: &Tensor,
        past: usize,
        mask: &Tensor,
        slot: Option<&mut LayerKv>,
        fast: bool,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, hd) = (
            self.cfg.num_attention_heads,
            self.cfg.num_key_value_heads,
            self.cfg.head_dim,
        );
        let (cos, sin) = if blk.sliding {
            &self.local_rope
        } else {
            &self.global_rope
        };
        let (cos, sin) = (cos.narrow(0, past, t)?, sin.narrow(0, past, t)?);
        let fused = self.fused(fast);
        let heads = |w: &Tensor, n: usize| -> Result<Tensor> {
            linear(x, w)?
                .reshape((b, t, n, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let rope = |x: Tensor| -> Result<Tensor> {
            if fused {
                kernels::rope(&x, &cos, &sin)
            } else if fast {
                rotary_emb::rope(&x, &cos, &sin)
            } else {
                rotary_emb::rope_slow(&x, &cos, &sin)
            }
        };
        let q = rope(self.norm(&heads(&blk.q, h)?, &blk.q_norm, fast)?)?;
        let k = rope(self.norm(&heads(&blk.k, kvh)?, &blk.k_norm, fast)?)?;
        let v = heads(&blk.v, kvh)?;
        let (k, v) = extend_slot(slot, k, v)?;
        let scale = 1.0 / self.cfg.query_pre_attn_scalar.sqrt();
        let probs = |scores: &Tensor| super::lm::attention_probs(scores, scale, Some(mask), fast);
        let y = attend(&q, k, v, probs, fast)?;
        let y = y.transpose(1, 2)?.reshape((b, t, h * hd))?;
        linear(&y, &blk.o)
    }
}

impl BlockwiseLm for Gemma3 {
    fn num_blocks(&self) -> usize {
        self.blocks.len()
    }
    fn block_context(&self, t: usize) -> Result<BlockContext> {
        let global = causal_mask(t, 0, &self.device)?;
        let window = window_mask(t, 0, self.cfg.sliding_window, &self.device)?;
        let local = global.broadcast_add(&window)?;
        Ok(BlockContext {
            t,
            causal: Some(global),
            local: Some(local),
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
        let mask = if blk.sliding {
            ctx.local.as_ref()
        } else {
            ctx.causal.as_ref()
        };
        let Some(mask) = mask else {
            candle_core::bail!("gemma3: a block context without masks");
        };
        self.block_forward(blk, x, 0, mask, None, false)
    }
    fn final_norm(&self, x: &Tensor) -> Result<Tensor> {
        self.norm(x, &self.norm, false)
    }
}

impl CausalLm for Gemma3 {
    fn arch(&self) -> &'static str {
        "gemma3_text"
    }
    fn blockwise(&self) -> Option<&dyn BlockwiseLm> {
        Some(self)
    }

    fn hidden(
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
        // Masks stay f32 (finite in every dtype); attention_probs applies
        // them in f32 to half-precision scores.
        let global = match mask {
            Some(m) => m.to_dtype(DType::F32)?,
            None => causal_mask(t, past, &self.device)?,
        };
        let window = window_mask(t, past, self.cfg.sliding_window, &self.device)?;
        let local = global.broadcast_add(&window)?;
        let mut x = self.embed_ids(ids, b, t)?;
        if let Some(c) = cache.as_deref_mut() {
            c.ensure_layers(self.blocks.len());
        }
        for (i, blk) in self.blocks.iter().enumerate() {
            let slot = cache.as_deref_mut().map(|c| c.layer_mut(i));
            let m = if blk.sliding { &local } else { &global };
            x = self.block_forward(blk, &x, past, m, slot, fast)?;
        }
        if let Some(c) = cache {
            c.set_len(past + t);
        }
        self.norm(&x, &self.norm, fast)
    }

    fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        super::lm::widen(&linear(hidden, &self.head)?)
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
        self.embed.dtype()
    }

    fn param_count(&self) -> usize {
        self.cfg.param_count()
    }

    fn config_json(&self) -> Result<String> {
        serde_json::to_string_pretty(&self.cfg).map_err(candle_core::Error::wrap)
    }
}
