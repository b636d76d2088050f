//! `gemma3` GGUF files (llama.cpp's layout) read into our [`Gemma3`].
//!
//! llama.cpp's converter stores every Gemma RMSNorm weight as `1 + w`
//! (`norm_shift = 1.0` in `convert_hf_to_gguf.py`), does not permute Q/K,
//! trims the embedding to the tokenizer's rows and writes no
//! `lm_head` (tied). The sliding-window pattern (every 6th layer global)
//! and the local RoPE base (10,000) are not in the metadata: llama.cpp
//! hard-codes them, as we do; the window itself is
//! `gemma3.attention.sliding_window`.

use super::checkpoint::Loaded;
use super::error::CheckpointError;
use super::gemma3::{Gemma3, Gemma3Config};
use super::gguf_file::{Gguf, GgufError};
use super::params::ParamStore;
use candle_core::{DType, Device};
use std::collections::HashMap;
use std::path::Path;

/// The [`Gemma3Config`] of a `gemma3` GGUF file. RoPE scaling (the 4B+
/// models' linear scaling of global layers) is refused by key.
pub fn gguf_config(g: &Gguf) -> Result<Gemma3Config, GgufError> {
    let k = |s: &str| format!("gemma3.{s}");
    let hidden = g.usize(&k("embedding_length"))?;
    let heads = g.usize(&k("attention.head_count"))?;
    let embd = "token_embd.weight";
    let vocab = match g.tensor_dims(embd).as_deref() {
        Some([v, d]) if *d == hidden => *v,
        Some(dims) => {
            return Err(g.tensor_err(embd, format!("shape {dims:?}, expected (vocab, {hidden})")));
        }
        None => return Err(g.tensor_err(embd, "missing")),
    };
    let head_dim = g
        .opt_usize(&k("attention.key_length"))?
        .unwrap_or(hidden / heads.max(1));
    if let Some(v) = g.opt_usize(&k("attention.value_length"))?
        && v != head_dim
    {
        return Err(g.key_err(
            &k("attention.value_length"),
            format!("{v} differs from key_length {head_dim}"),
        ));
    }
    if let Some(t) = g.opt_str(&k("rope.scaling.type"))?
        && t != "none"
    {
        return Err(g.key_err(
            &k("rope.scaling.type"),
            format!("RoPE scaling `{t}` is not supported"),
        ));
    }
    let cfg = Gemma3Config {
        hidden_size: hidden,
        intermediate_size: g.usize(&k("feed_forward_length"))?,
        num_hidden_layers: g.usize(&k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: g.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(heads),
        head_dim,
        vocab_size: vocab,
        rms_norm_eps: g
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-6),
        rope_theta: g.opt_f64(&k("rope.freq_base"))?.unwrap_or(1_000_000.0),
        rope_local_base_freq: 10_000.0,
        sliding_window: g.usize(&k("attention.sliding_window"))?,
        sliding_window_pattern: 6,
        query_pre_attn_scalar: head_dim as f64,
        max_position_embeddings: g.usize(&k("context_length"))?,
        hidden_activation: "gelu_pytorch_tanh".into(),
        tie_word_embeddings: !g.has_tensor("output.weight"),
        architectures: vec!["Gemma3ForCausalLM".into()],
        model_type: "gemma3_text".into(),
    };
    cfg.validate()
        .map_err(|e| g.key_err("gemma3.*", format!("inconsistent config: {e}")))?;
    Ok(cfg)
}

/// The HF name of a llama.cpp `gemma3` tensor, and whether it is a norm
/// (stored as `1 + w`).
pub fn gguf_hf_name(name: &str) -> Option<(String, bool)> {
    match name {
        "token_embd.weight" => return Some(("model.embed_tokens.weight".into(), false)),
        "output_norm.weight" => return Some(("model.norm.weight".into(), true)),
        "output.weight" => return Some(("lm_head.weight".into(), false)),
        _ => {}
    }
    let (layer, part) = name.strip_prefix("blk.")?.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (hf, norm) = match part {
        "attn_q.weight" => ("self_attn.q_proj", false),
        "attn_k.weight" => ("self_attn.k_proj", false),
        "attn_v.weight" => ("self_attn.v_proj", false),
        "attn_output.weight" => ("self_attn.o_proj", false),
        "attn_q_norm.weight" => ("self_attn.q_norm", true),
        "attn_k_norm.weight" => ("self_attn.k_norm", true),
        "attn_norm.weight" => ("input_layernorm", true),
        "post_attention_norm.weight" => ("post_attention_layernorm", true),
        "ffn_norm.weight" => ("pre_feedforward_layernorm", true),
        "post_ffw_norm.weight" => ("post_feedforward_layernorm", true),
        "ffn_gate.weight" => ("mlp.gate_proj", false),
        "ffn_up.weight" => ("mlp.up_proj", false),
        "ffn_down.weight" => ("mlp.down_proj", false),
        _ => return None,
    };
    Some((format!("model.layers.{layer}.{hf}.weight"), norm))
}

/// Loads a `gemma3` GGUF file (weights in `dtype`; `trainable` wraps them
/// in variables): HF names, norms shifted back to HF's `w` (in f32, before
/// the cast), tokenizer and (Gemma turn) chat template from the metadata.
pub fn load_gguf(
    path: &Path,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> Result<Loaded, CheckpointError> {
    let mut g = Gguf::open(path)?;
    let cfg = gguf_config(&g)?;
    let tokenizer = super::gguf_tokenizer::from_gguf(&g)?;
    let mut tensors = HashMap::new();
    for name in g.tensor_names() {
        let (hf, norm) = gguf_hf_name(&name).ok_or_else(|| {
            g.tensor_err(
                &name,
                "has no counterpart in the Gemma 3 model (not supported)",
            )
        })?;
        let mut t = g.dequantize(&name, device)?;
        if norm {
            t = (t - 1.0).map_err(|e| g.tensor_err(&name, e.to_string()))?;
        }
        tensors.insert(hf, t);
    }
    let mut store = ParamStore::loaded(tensors, trainable, device, dtype);
    let model = Gemma3::new(&cfg, &mut store, device)
        .map_err(|e| CheckpointError::Model(format!("{}: {e}", path.display())))?;
    let unused = store.unused();
    if !unused.is_empty() {
        return Err(CheckpointError::Model(format!(
            "{}: weights the config does not use: {}",
            path.display(),
            unused.join(", ")
        )));
    }
    Ok(Loaded {
        model: Box::new(model),
        tokenizer,
        vars: store.into_vars(),
    })
}
