//! One entry point for loading a model: [`load`] takes a Hugging Face model
//! directory (`config.json`, `*.safetensors` single or sharded through
//! `model.safetensors.index.json`, `tokenizer.json`, optional
//! `tokenizer_config.json`), reads the architecture from `model_type` (or
//! `architectures`) and builds the matching [`super::lm::CausalLm`]. Supported:
//! `llama` and LLaMA-layout configs (`mistral`), `gpt2`, and Gemma 3
//! (`gemma3_text`, as `lm.finetune` saves a fine-tuned Gemma 3, and the
//! text model of a multimodal `gemma3`; see [`super::gemma3_hf`]). A
//! `.gguf` file is dispatched to the GGUF reader (see `gguf.rs`).
//!
//! Config errors name the file and the key; nothing here panics on a
//! malformed directory.

use super::checkpoint::{self, CheckpointError, Loaded};
use super::config::{ConfigReader, LlamaConfig};
use super::error::ferr;
use super::tokenizer::{ChatConfig, TextTokenizer};
use candle_core::{DType, Device};
use serde_json::{Map, Value};
use std::path::Path;

/// Architectures [`load`] understands, by `model_type`.
pub const SUPPORTED: &[&str] = &["llama", "mistral", "gpt2", "gemma3_text", "gemma3"];

pub use super::tokenizer::PLAIN_CHAT_TEMPLATE;

/// End-of-turn markers of common chat templates, recognised when the
/// template uses one and the vocabulary has it.
const END_OF_TURN: &[&str] = &["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>"];

/// Reads a JSON object file.
pub fn read_json_object(path: &Path) -> Result<Map<String, Value>, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|e| ferr(path, e))?;
    match serde_json::from_str::<Value>(&text).map_err(|e| ferr(path, e))? {
        Value::Object(m) => Ok(m),
        _ => Err(ferr(path, "must hold a JSON object")),
    }
}

/// The architecture of a config: `model_type`, else inferred from
/// `architectures` (`LlamaForCausalLM` -> `llama`, `GPT2LMHeadModel` ->
/// `gpt2`, ...). An unknown one is an error naming the file, the key and
/// the supported architectures.
pub fn model_type(path: &Path, obj: &Map<String, Value>) -> Result<String, CheckpointError> {
    let r = ConfigReader::new(path, obj);
    let supported = SUPPORTED.join(", ");
    if let Some(t) = r.opt_str("model_type")? {
        if SUPPORTED.contains(&t.as_str()) {
            return Ok(t);
        }
        return Err(r.err(
            "model_type",
            format!("unsupported architecture `{t}` (supported: {supported})"),
        ));
    }
    let archs = r.opt_strings("architectures")?.unwrap_or_default();
    for a in &archs {
        let t = match a.as_str() {
            "LlamaForCausalLM" => "llama",
            "MistralForCausalLM" => "mistral",
            "GPT2LMHeadModel" | "GPT2Model" => "gpt2",
            "Gemma3ForCausalLM" => "gemma3_text",
            "Gemma3ForConditionalGeneration" => "gemma3",
            _ => continue,
        };
        return Ok(t.to_string());
    }
    Err(r.err(
        "model_type",
        format!(
            "missing, and `architectures` ({}) names no supported architecture (supported: {supported})",
            archs.join(", ")
        ),
    ))
}

/// A LLaMA-layout config (`llama`, `mistral`) from `config.json`, with
/// features this model does not implement rejected by key.
pub fn llama_config(path: &Path, obj: &Map<String, Value>) -> Result<LlamaConfig, CheckpointError> {
    let r = ConfigReader::new(path, obj);
    if let Some(act) = r.opt_str("hidden_act")?
        && act != "silu"
    {
        return Err(r.err(
            "hidden_act",
            format!("only `silu` is supported, found `{act}`"),
        ));
    }
    for key in ["attention_bias", "mlp_bias"] {
        if r.bool_or(key, false)? {
            return Err(r.err(key, "biases are not supported by the LLaMA model"));
        }
    }
    // transformers 5 writes `rope_parameters: {rope_theta, rope_type}`;
    // earlier versions `rope_theta` and `rope_scaling`. Only plain RoPE is
    // implemented.
    let mut rope_theta = r.f64_or("rope_theta", 10_000.0)?;
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(v) = r.present(key) else { continue };
        let Some(o) = v.as_object() else {
            return Err(r.err(key, format!("must be an object, found {v}")));
        };
        let kind = o.get("rope_type").or_else(|| o.get("type"));
        if let Some(kind) = kind
            && kind.as_str() != Some("default")
        {
            return Err(r.err(
                key,
                format!("RoPE type {kind} is not supported (only \"default\")"),
            ));
        }
        if let Some(t) = o.get("rope_theta") {
            rope_theta = t
                .as_f64()
                .ok_or_else(|| r.err(key, format!("`rope_theta` must be a number, found {t}")))?;
        }
        if kind.is_none() && key == "rope_scaling" {
            return Err(r.err(key, "RoPE scaling is not supported"));
        }
    }
    let cfg = LlamaConfig {
        hidden_size: r.usize("hidden_size")?,
        intermediate_size: r.usize("intermediate_size")?,
        num_hidden_layers: r.usize("num_hidden_layers")?,
        num_attention_heads: r.usize("num_attention_heads")?,
        num_key_value_heads: r.opt_usize("num_key_value_heads")?,
        vocab_size: r.usize("vocab_size")?,
        rms_norm_eps: r.f64_or("rms_norm_eps", 1e-5)?,
        rope_theta,
        max_position_embeddings: r.opt_usize("max_position_embeddings")?.unwrap_or(2048),
        tie_word_embeddings: r.bool_or("tie_word_embeddings", false)?,
        architectures: r
            .opt_strings("architectures")?
            .unwrap_or_else(|| vec!["LlamaForCausalLM".into()]),
        model_type: r.opt_str("model_type")?.unwrap_or_else(|| "llama".into()),
    };
    if let Some(hd) = r.opt_usize("head_dim")?
        && cfg.num_attention_heads > 0
        && hd != cfg.head_dim()
    {
        return Err(r.err(
            "head_dim",
            format!(
                "{hd} differs from hidden_size / num_attention_heads = {}; not supported",
                cfg.head_dim()
            ),
        ));
    }
    cfg.validate().map_err(|e| ferr(path, e))?;
    Ok(cfg)
}

/// Loads a model in f32: a Hugging Face directory (see the module doc) or
/// a `.gguf` file. `trainable` wraps the weights in variables for training.
pub fn load(path: &Path, trainable: bool, device: &Device) -> Result<Loaded, CheckpointError> {
    load_as(path, trainable, device, DType::F32)
}

/// [`load`] with the weights in `dtype` (f32, bf16 or f16; see
/// [`super::precision`]). Checkpoint tensors of any float type are cast.
pub fn load_as(
    path: &Path,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> Result<Loaded, CheckpointError> {
    super::precision::check(dtype)?;
    if is_gguf(path) {
        return super::gguf::load_as(path, trainable, device, dtype);
    }
    if !path.is_dir() {
        return Err(ferr(
            path,
            "not a model directory (expected config.json, *.safetensors, tokenizer.json) or a GGUF file",
        ));
    }
    let cfg_path = path.join("config.json");
    let obj = read_json_object(&cfg_path)?;
    let arch = model_type(&cfg_path, &obj)?;
    match arch.as_str() {
        "llama" | "mistral" => {
            let cfg = llama_config(&cfg_path, &obj)?;
            let tokenizer = load_tokenizer(path, &obj)?;
            let tensors = checkpoint::read_tensors(path, device)?;
            checkpoint::load_llama(path, &cfg, tensors, tokenizer, trainable, device, dtype)
        }
        "gpt2" => {
            let cfg = super::gpt2::Gpt2Config::from_json(&cfg_path, &obj)?;
            let tokenizer = load_tokenizer(path, &obj)?;
            let tensors = checkpoint::read_tensors(path, device)?;
            super::gpt2::load(path, &cfg, tensors, tokenizer, trainable, device, dtype)
        }
        "gemma3_text" | "gemma3" => {
            let cfg = super::gemma3_hf::gemma3_config(&cfg_path, &obj)?;
            let tokenizer = load_tokenizer(path, &obj)?;
            let tensors = checkpoint::read_tensors(path, device)?;
            super::gemma3_hf::load(path, &cfg, tensors, tokenizer, trainable, device, dtype)
        }
        other => Err(ConfigReader::new(&cfg_path, &obj).err(
            "model_type",
            format!(
                "unsupported architecture `{other}` (supported: {})",
                SUPPORTED.join(", ")
            ),
        )),
    }
}

/// The positions a model can attend over (`max_position_embeddings`,
/// GPT-2's `n_positions`, a GGUF's `<arch>.context_length`), read from its
/// config alone, without the weights: what a training `seq_len` or a
/// prompt plus its new tokens must fit in.
pub fn max_positions(path: &Path) -> Result<usize, CheckpointError> {
    if is_gguf(path) {
        let g = super::gguf_file::Gguf::open(path).map_err(|e| ferr(path, e))?;
        let key = format!("{}.context_length", g.arch().map_err(|e| ferr(path, e))?);
        return g.usize(&key).map_err(|e| ferr(path, e));
    }
    let cfg_path = path.join("config.json");
    let obj = read_json_object(&cfg_path)?;
    match model_type(&cfg_path, &obj)?.as_str() {
        "gpt2" => Ok(super::gpt2::Gpt2Config::from_json(&cfg_path, &obj)?.n_positions),
        "gemma3_text" | "gemma3" => {
            Ok(super::gemma3_hf::gemma3_config(&cfg_path, &obj)?.max_position_embeddings)
        }
        _ => Ok(llama_config(&cfg_path, &obj)?.max_position_embeddings),
    }
}

/// Whether `path` is a GGUF file: by its magic bytes, since a pipeline
/// input has no extension (it sits at `in/<name>`).
fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    if !path.is_file() {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"GGUF")
}

/// A token given as a string or as an `AddedToken` object `{content, ...}`.
fn token_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(String::from),
        _ => None,
    }
}

/// The tokenizer of whatever a pipeline gives as a model or tokenizer: a
/// GGUF file (built from its vocabulary, see `gguf_tokenizer`), a Hugging
/// Face model directory (`config.json` + `tokenizer.json`), or a directory
/// written by `tokenizer.train` / our checkpoints.
pub fn load_tokenizer_any(path: &Path) -> Result<TextTokenizer, CheckpointError> {
    if is_gguf(path) {
        let g = super::gguf::Gguf::open(path).map_err(|e| CheckpointError::Model(e.to_string()))?;
        return super::gguf_tokenizer::from_gguf(&g)
            .map_err(|e| CheckpointError::Model(e.to_string()));
    }
    let cfg = path.join("config.json");
    if cfg.is_file() {
        return load_tokenizer(path, &read_json_object(&cfg)?);
    }
    TextTokenizer::load_dir(path).map_err(|e| CheckpointError::Model(e.to_string()))
}

/// The tokenizer of a model directory.
///
/// A directory written by us (its `tokenizer_config.json` has our
/// `end_of_turn` key) loads as saved. Otherwise `tokenizer.json` is taken
/// with `tokenizer_config.json`'s `chat_template` (a string, or the
/// `default` of a named list; else `chat_template.jinja`; else
/// [`PLAIN_CHAT_TEMPLATE`]) and `eos_token`/`bos_token` (strings or
/// `AddedToken` objects; else `config.json`'s `eos_token_id`/`bos_token_id`).
pub fn load_tokenizer(
    dir: &Path,
    config: &Map<String, Value>,
) -> Result<TextTokenizer, CheckpointError> {
    let tc_path = dir.join("tokenizer_config.json");
    let tc = if tc_path.exists() {
        read_json_object(&tc_path)?
    } else {
        Map::new()
    };
    if tc.contains_key("end_of_turn") {
        return TextTokenizer::load_dir(dir).map_err(|e| CheckpointError::Model(e.to_string()));
    }
    let tj = dir.join("tokenizer.json");
    if !tj.exists() {
        return Err(ferr(
            &tj,
            "missing (only tokenizer.json tokenizers are supported)",
        ));
    }
    let inner = tokenizers::Tokenizer::from_file(&tj).map_err(|e| ferr(&tj, e))?;
    let by_id = |key: &str| -> Option<String> {
        let id = config.get(key)?.as_u64()?;
        inner.id_to_token(id as u32)
    };
    let tc_token = |key: &str| -> Result<Option<String>, CheckpointError> {
        match tc.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => token_text(v).map(Some).ok_or_else(|| {
                ferr(
                    &tc_path,
                    format!("key `{key}`: must be a string or {{\"content\": ...}}, found {v}"),
                )
            }),
        }
    };
    let eos = match tc_token("eos_token")? {
        Some(t) => t,
        None => by_id("eos_token_id").ok_or_else(|| {
            ferr(
                &tc_path,
                "key `eos_token`: missing, and config.json has no usable `eos_token_id`",
            )
        })?,
    };
    let bos = match tc_token("bos_token")? {
        Some(t) => Some(t),
        None => by_id("bos_token_id"),
    };
    let template = match tc.get("chat_template") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(String::from),
        Some(v) => {
            return Err(ferr(
                &tc_path,
                format!(
                    "key `chat_template`: must be a string or a list of {{name, template}}, found {v}"
                ),
            ));
        }
    };
    let template = match template {
        Some(t) => t,
        None => {
            let jinja = dir.join("chat_template.jinja");
            if jinja.exists() {
                std::fs::read_to_string(&jinja).map_err(|e| ferr(&jinja, e))?
            } else {
                PLAIN_CHAT_TEMPLATE.to_string()
            }
        }
    };
    let end_of_turn = END_OF_TURN
        .iter()
        .find(|m| template.contains(*m) && inner.token_to_id(m).is_some() && **m != eos)
        .map(|m| m.to_string());
    let chat = ChatConfig {
        chat_template: template,
        eos_token: eos,
        end_of_turn,
        bos_token: bos,
    };
    TextTokenizer::new(inner, chat).map_err(|e| ferr(&tj, e))
}
