//! Random tiny Gemma 3 models with Hugging Face weight names, shared by
//! tests/gguf_gemma3.rs and tests/gemma3_reload.rs.

use candle_core::{DType, Device, Tensor};
use repro::model::gemma3::{Gemma3, Gemma3Config};
use std::collections::HashMap;

/// A tiny Gemma 3 text config: `layers` layers, every sixth global, the
/// others with a sliding window of `window`, over `vocab` tokens.
pub fn gemma_config(layers: usize, window: usize, vocab: usize) -> Gemma3Config {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": layers,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "vocab_size": vocab, "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0, "sliding_window": window,
        "sliding_window_pattern": 6, "query_pre_attn_scalar": 32.0,
        "max_position_embeddings": 64, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": true, "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text"
    }))
    .unwrap()
}

/// Random HF-named Gemma 3 weights; norms N(0, 0.1) around HF's 0.
pub fn gemma_weights(cfg: &Gemma3Config, seed: u64) -> Vec<(String, Tensor)> {
    let dev = Device::Cpu;
    let (d, hd, f) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
    let (q, kv) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
    let mut shapes: Vec<(String, Vec<usize>)> =
        vec![("model.embed_tokens.weight".into(), vec![cfg.vocab_size, d])];
    for i in 0..cfg.num_hidden_layers {
        for (n, s) in [
            ("input_layernorm", vec![d]),
            ("self_attn.q_proj", vec![q, d]),
            ("self_attn.k_proj", vec![kv, d]),
            ("self_attn.v_proj", vec![kv, d]),
            ("self_attn.o_proj", vec![d, q]),
            ("self_attn.q_norm", vec![hd]),
            ("self_attn.k_norm", vec![hd]),
            ("post_attention_layernorm", vec![d]),
            ("pre_feedforward_layernorm", vec![d]),
            ("post_feedforward_layernorm", vec![d]),
            ("mlp.gate_proj", vec![f, d]),
            ("mlp.up_proj", vec![f, d]),
            ("mlp.down_proj", vec![d, f]),
        ] {
            shapes.push((format!("model.layers.{i}.{n}.weight"), s));
        }
    }
    shapes.push(("model.norm.weight".into(), vec![d]));
    let mut rng = seed;
    shapes
        .into_iter()
        .map(|(n, s)| {
            let std = if s.len() == 1 { 0.1 } else { 0.2 };
            let count: usize = s.iter().product();
            // A small deterministic LCG-driven Box-Muller, independent of candle's RNG.
            let data: Vec<f32> = (0..count)
                .map(|_| {
                    let mut next = || {
                        rng = rng
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        ((rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64
                    };
                    let (u, v) = (next(), next());
                    ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos() * std) as f32
                })
                .collect();
            (n, Tensor::from_vec(data, s, &dev).unwrap())
        })
        .collect()
}

/// A Gemma 3 model built from `weights`.
pub fn gemma_model(cfg: &Gemma3Config, weights: &[(String, Tensor)]) -> Gemma3 {
    let map: HashMap<String, Tensor> = weights.iter().cloned().collect();
    let mut store = repro::model::params::ParamStore::loaded(map, false, &Device::Cpu, DType::F32);
    Gemma3::new(cfg, &mut store, &Device::Cpu).unwrap()
}
