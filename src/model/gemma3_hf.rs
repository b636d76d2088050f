//! Gemma 3 model directories in the Hugging Face layout, read into our
//! [`Gemma3`]: `model_type: gemma3_text` (`Gemma3ForCausalLM`, e.g.
//! Gemma-3-270m, and what `lm.finetune` saves after fine-tuning a Gemma 3
//! base, whose `config.json` is [`Gemma3Config`] serialized) and
//! `model_type: gemma3` (`Gemma3ForConditionalGeneration`: the text model of
//! its `text_config`, weights under `language_model.` or
//! `model.language_model.`; the vision tower and projector are not read).
//!
//! Config keys follow `Gemma3TextConfig`, with its defaults where a key is
//! absent (`head_dim` 256, `query_pre_attn_scalar` 256, `sliding_window`
//! 4096, `rope_theta` 10^6, `rope_local_base_freq` 10^4, `rms_norm_eps`
//! 10^-6, `max_position_embeddings` 131072, `tie_word_embeddings` true,
//! every 6th layer global); the sizes (`hidden_size`, `intermediate_size`,
//! `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`,
//! `vocab_size`) are required. Which layers are global comes from
//! `layer_types` when present (it must follow one period), else from
//! `sliding_window_pattern` (or `_sliding_window_pattern`). RoPE comes from
//! `rope_theta`/`rope_local_base_freq` or transformers 5's
//! `rope_parameters` (flat, or per layer type). What the model does not
//! implement is refused by key: RoPE scaling, logit soft-capping, attention
//! biases, bidirectional attention, an activation other than
//! `gelu_pytorch_tanh`. Every error names the file and the key.

use super::checkpoint::{CheckpointError, Loaded};
use super::config::ConfigReader;
use super::gemma3::{Gemma3, Gemma3Config};
use super::params::ParamStore;
use super::tokenizer::TextTokenizer;
use candle_core::{DType, Device, Tensor};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// Prefixes the key named in a config error with `text_config.` (the
/// multimodal config nests the text model's keys).
fn nested(e: CheckpointError, nest: bool) -> CheckpointError {
    match e {
        CheckpointError::File { path, message } if nest => CheckpointError::File {
            path,
            message: message.replacen("key `", "key `text_config.", 1),
        },
        e => e,
    }
}

/// The text model's config object: `obj` itself for `gemma3_text`, its
/// `text_config` for `gemma3`.
fn text_object<'a>(
    path: &Path,
    obj: &'a Map<String, Value>,
) -> Result<(&'a Map<String, Value>, bool), CheckpointError> {
    let r = ConfigReader::new(path, obj);
    if r.opt_str("model_type")?.as_deref() != Some("gemma3") {
        return Ok((obj, false));
    }
    match obj.get("text_config") {
        Some(Value::Object(t)) => Ok((t, true)),
        Some(v) => Err(r.err("text_config", format!("must be an object, found {v}"))),
        None => Err(r.err(
            "text_config",
            "missing (a `gemma3` config nests the text model's keys there)",
        )),
    }
}

/// A RoPE parameter object's theta; its `rope_type` must be `default`.
fn rope_object(r: &ConfigReader, key: &str, v: &Value) -> Result<Option<f64>, CheckpointError> {
    let Some(o) = v.as_object() else {
        return Err(r.err(key, format!("must be an object, found {v}")));
    };
    let kind = o.get("rope_type").or_else(|| o.get("type"));
    match kind {
        Some(k) if k.as_str() == Some("default") => {}
        Some(k) => {
            return Err(r.err(
                key,
                format!("RoPE type {k} is not supported (only \"default\")"),
            ));
        }
        None if o.contains_key("factor") => {
            return Err(r.err(key, "RoPE scaling is not supported"));
        }
        None => {}
    }
    match o.get("rope_theta") {
        None => Ok(None),
        Some(t) => t
            .as_f64()
            .map(Some)
            .ok_or_else(|| r.err(key, format!("`rope_theta` must be a number, found {t}"))),
    }
}

/// The global and local RoPE bases.
fn rope_bases(r: &ConfigReader, obj: &Map<String, Value>) -> Result<(f64, f64), CheckpointError> {
    let mut global = r.f64_or("rope_theta", 1_000_000.0)?;
    let mut local = r.f64_or("rope_local_base_freq", 10_000.0)?;
    if let Some(v) = obj.get("rope_scaling").filter(|v| !v.is_null()) {
        rope_object(r, "rope_scaling", v)?;
    }
    if let Some(v) = obj.get("rope_parameters").filter(|v| !v.is_null()) {
        let per_type = v.as_object().is_some_and(|o| {
            o.contains_key("full_attention") || o.contains_key("sliding_attention")
        });
        if per_type {
            for (kind, slot) in [
                ("full_attention", &mut global),
                ("sliding_attention", &mut local),
            ] {
                if let Some(p) = v.get(kind) {
                    let key = format!("rope_parameters.{kind}");
                    if let Some(t) = rope_object(r, &key, p)? {
                        *slot = t;
                    }
                }
            }
        } else if let Some(t) = rope_object(r, "rope_parameters", v)? {
            global = t;
        }
    }
    Ok((global, local))
}

/// The sliding-window pattern: from `layer_types` (which must repeat one
/// period: `pattern - 1` sliding layers, then a global one), else
/// `sliding_window_pattern`, else 6.
fn pattern(r: &ConfigReader, layers: usize) -> Result<usize, CheckpointError> {
    if let Some(types) = r.opt_strings("layer_types")? {
        if types.len() != layers {
            return Err(r.err(
                "layer_types",
                format!(
                    "lists {} layers, num_hidden_layers is {layers}",
                    types.len()
                ),
            ));
        }
        if let Some(bad) = types
            .iter()
            .find(|t| !matches!(t.as_str(), "sliding_attention" | "full_attention"))
        {
            return Err(r.err(
                "layer_types",
                format!("`{bad}` is not `sliding_attention` or `full_attention`"),
            ));
        }
        let p = types
            .iter()
            .position(|t| t == "full_attention")
            .map_or(layers + 1, |i| i + 1);
        let periodic = types
            .iter()
            .enumerate()
            .all(|(i, t)| (t == "sliding_attention") == ((i + 1) % p != 0));
        if !periodic {
            return Err(r.err(
                "layer_types",
                "global layers must recur with one period (every n-th layer); not supported",
            ));
        }
        return Ok(p);
    }
    match r.opt_usize("sliding_window_pattern")? {
        Some(p) => Ok(p),
        None => Ok(r.opt_usize("_sliding_window_pattern")?.unwrap_or(6)),
    }
}

/// The [`Gemma3Config`] of a `gemma3_text` or `gemma3` `config.json` read
/// from `path` (see the module doc for keys, defaults and refusals).
pub fn gemma3_config(
    path: &Path,
    obj: &Map<String, Value>,
) -> Result<Gemma3Config, CheckpointError> {
    let (text, nest) = text_object(path, obj)?;
    build_config(path, text).map_err(|e| nested(e, nest))
}

fn build_config(path: &Path, obj: &Map<String, Value>) -> Result<Gemma3Config, CheckpointError> {
    let r = ConfigReader::new(path, obj);
    for key in ["hidden_activation", "hidden_act"] {
        if let Some(act) = r.opt_str(key)?
            && act != "gelu_pytorch_tanh"
        {
            return Err(r.err(
                key,
                format!("only `gelu_pytorch_tanh` is supported, found `{act}`"),
            ));
        }
    }
    for key in ["attn_logit_softcapping", "final_logit_softcapping"] {
        if let Some(v) = obj.get(key).filter(|v| !v.is_null()) {
            return Err(r.err(
                key,
                format!("logit soft-capping is not supported, found {v}"),
            ));
        }
    }
    if r.bool_or("attention_bias", false)? {
        return Err(r.err(
            "attention_bias",
            "biases are not supported by the Gemma 3 model",
        ));
    }
    if r.bool_or("use_bidirectional_attention", false)? {
        return Err(r.err(
            "use_bidirectional_attention",
            "only causal attention is supported",
        ));
    }
    let (rope_theta, rope_local_base_freq) = rope_bases(&r, obj)?;
    let layers = r.usize("num_hidden_layers")?;
    let head_dim = r.opt_usize("head_dim")?.unwrap_or(256);
    let cfg = Gemma3Config {
        hidden_size: r.usize("hidden_size")?,
        intermediate_size: r.usize("intermediate_size")?,
        num_hidden_layers: layers,
        num_attention_heads: r.usize("num_attention_heads")?,
        num_key_value_heads: r.usize("num_key_value_heads")?,
        head_dim,
        vocab_size: r.usize("vocab_size")?,
        rms_norm_eps: r.f64_or("rms_norm_eps", 1e-6)?,
        rope_theta,
        rope_local_base_freq,
        sliding_window: r.opt_usize("sliding_window")?.unwrap_or(4096),
        sliding_window_pattern: pattern(&r, layers)?,
        query_pre_attn_scalar: r.f64_or("query_pre_attn_scalar", 256.0)?,
        max_position_embeddings: r.opt_usize("max_position_embeddings")?.unwrap_or(131_072),
        hidden_activation: "gelu_pytorch_tanh".into(),
        tie_word_embeddings: r.bool_or("tie_word_embeddings", true)?,
        architectures: vec!["Gemma3ForCausalLM".into()],
        model_type: "gemma3_text".into(),
    };
    if cfg.sliding_window_pattern == 0 {
        return Err(r.err("sliding_window_pattern", "must be positive"));
    }
    if cfg.query_pre_attn_scalar <= 0.0 {
        return Err(r.err("query_pre_attn_scalar", "must be positive"));
    }
    let (h, kv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
    if kv == 0 || h % kv != 0 {
        return Err(r.err(
            "num_key_value_heads",
            format!("{kv} key/value heads must divide {h} query heads (num_attention_heads)"),
        ));
    }
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(r.err("head_dim", format!("{head_dim} must be even and positive")));
    }
    cfg.validate()
        .map_err(|e| r.err("hidden_size", format!("inconsistent config: {e}")))?;
    Ok(cfg)
}

/// The text model's name of a checkpoint tensor: multimodal prefixes
/// (`language_model.model.`, `model.language_model.`,
/// `language_model.lm_head.`) mapped to `model.` and `lm_head.`; `None` for
/// the vision tower and the projector.
pub fn text_name(name: &str) -> Option<String> {
    for (from, to) in [
        ("language_model.model.", "model."),
        ("model.language_model.", "model."),
        ("language_model.lm_head.", "lm_head."),
    ] {
        if let Some(rest) = name.strip_prefix(from) {
            return Some(format!("{to}{rest}"));
        }
    }
    let vision = ["vision_tower.", "multi_modal_projector."].iter().any(|p| {
        name.starts_with(p)
            || name
                .strip_prefix("model.")
                .is_some_and(|r| r.starts_with(p))
    });
    (!vision).then(|| name.to_string())
}

/// Builds a Gemma 3 from a config, the directory's tensors and a
/// tokenizer, with the weights cast to `dtype`. Weights the model does not use are an error (a tied
/// `lm_head.weight` aside).
pub fn load(
    dir: &Path,
    cfg: &Gemma3Config,
    tensors: HashMap<String, Tensor>,
    tokenizer: TextTokenizer,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> Result<Loaded, CheckpointError> {
    let tensors: HashMap<String, Tensor> = tensors
        .into_iter()
        .filter_map(|(n, t)| text_name(&n).map(|n| (n, t)))
        .collect();
    let mut store = ParamStore::loaded(tensors, trainable, device, dtype);
    let model = Gemma3::new(cfg, &mut store, device)
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
