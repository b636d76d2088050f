//! Tiny GGUF files written as llama.cpp writes them (a random LLaMA, a
//! byte-level BPE tokenizer like SmolLM2's in the metadata) and the helpers
//! of the real-model checks, shared by tests/gguf_*.rs.

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use repro::model::gguf::permute_qk;
use repro::model::{LlamaConfig, init};
use std::path::{Path, PathBuf};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim.
pub const SMOL_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

pub const SPECIALS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
pub const MERGES: [&str; 11] = [
    "H e", "l l", "He ll", "Hell o", "Ġ w", "o r", "Ġw or", "Ġwor l", "Ġworl d", "1 2", "Ċ Ċ",
];

/// A tiny byte-level vocabulary: specials, the 256 byte symbols, merges.
pub fn tiny_vocab() -> (Vec<String>, Vec<i32>) {
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

pub fn tiny_config(vocab: usize, tie: bool) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
        "max_position_embeddings": 128, "tie_word_embeddings": tie,
        "rope_theta": 10000.0, "rms_norm_eps": 1e-5
    }))
    .unwrap()
}

pub fn strs(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// llama.cpp metadata of `cfg` with the tiny tokenizer; `edit` may change it.
pub fn metadata(cfg: &LlamaConfig) -> Vec<(String, Value)> {
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
pub fn gguf_name(hf: &str) -> String {
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
pub fn write_gguf(
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

pub fn weights_of(cfg: &LlamaConfig, seed: u64) -> Vec<(String, Tensor)> {
    let (_, vars) = init(cfg, seed, &Device::Cpu, DType::F32).unwrap();
    vars.into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect()
}

pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
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

pub fn sample_ids(vocab: usize) -> Tensor {
    let ids: Vec<u32> = (0..2 * 9).map(|i| ((i * 37 + 5) % vocab) as u32).collect();
    Tensor::from_vec(ids, (2, 9), &Device::Cpu).unwrap()
}

pub fn tiny_tokenizer_file(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Value)>)) -> PathBuf {
    let (tokens, _) = tiny_vocab();
    let cfg = tiny_config(tokens.len(), true);
    let mut meta = metadata(&cfg);
    edit(&mut meta);
    let path = dir.join("tok.gguf");
    let weights = weights_of(&cfg, 1);
    write_gguf(&path, &cfg, &weights, &meta, GgmlDType::F32);
    path
}

pub fn external(rel: &str) -> PathBuf {
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
pub fn greedy(
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
pub fn reference_tokens(file: &str) -> Vec<(String, Vec<u32>)> {
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
pub fn argmax_agreement(
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
