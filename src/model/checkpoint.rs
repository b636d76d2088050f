//! Model directories in the Hugging Face layout: `config.json`,
//! `model.safetensors` (or shards listed in `model.safetensors.index.json`),
//! `tokenizer.json` and `tokenizer_config.json`.

use super::config::LlamaConfig;
use super::llama::Llama;
use super::lm::CausalLm;
use super::params::ParamStore;
use super::tokenizer::TextTokenizer;
use candle_core::{DType, Device, Tensor, Var};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub use super::error::CheckpointError;
use super::error::ferr;

/// Reads `config.json`.
pub fn read_config(dir: &Path) -> Result<LlamaConfig, CheckpointError> {
    let p = dir.join("config.json");
    let text = std::fs::read_to_string(&p).map_err(|e| ferr(&p, e))?;
    let cfg: LlamaConfig = serde_json::from_str(&text).map_err(|e| ferr(&p, e))?;
    cfg.validate().map_err(|e| ferr(&p, e))?;
    Ok(cfg)
}

/// Reads every tensor of the directory (single file or shards).
pub fn read_tensors(
    dir: &Path,
    device: &Device,
) -> Result<HashMap<String, Tensor>, CheckpointError> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return candle_core::safetensors::load(&single, device).map_err(|e| ferr(&single, e));
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .map_err(|_| ferr(dir, "no model.safetensors or model.safetensors.index.json"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ferr(&index, e))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| ferr(&index, "no `weight_map` object"))?;
    let mut files: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
    files.sort();
    files.dedup();
    let mut all = HashMap::new();
    for f in files {
        if f.contains('/') || f.contains("..") {
            return Err(ferr(
                &index,
                format!("shard name `{f}` must be a plain file name"),
            ));
        }
        let p = dir.join(f);
        all.extend(candle_core::safetensors::load(&p, device).map_err(|e| ferr(&p, e))?);
    }
    Ok(all)
}

/// A loaded model with its tokenizer and, when trainable, its weights.
pub struct Loaded {
    /// The model (any architecture).
    pub model: Box<dyn CausalLm>,
    /// Its tokenizer.
    pub tokenizer: TextTokenizer,
    /// Named trainable weights (empty when loaded for inference).
    pub vars: Vec<(String, Var)>,
}

/// Builds a LLaMA from a validated config, the directory's tensors and a
/// tokenizer, with the weights cast to `dtype`; checkpoint tensors the
/// model does not use are an error.
pub fn load_llama(
    dir: &Path,
    cfg: &LlamaConfig,
    tensors: HashMap<String, Tensor>,
    tokenizer: TextTokenizer,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> Result<Loaded, CheckpointError> {
    let cfg = cfg.clone();
    let mut store = ParamStore::loaded(tensors, trainable, device, dtype);
    let model = Llama::new(&cfg, &mut store, device)
        .map_err(|e| CheckpointError::Model(format!("{}: {e}", dir.display())))?;
    finish_load(
        dir,
        store,
        Box::new(model),
        tokenizer,
        cfg.tie_word_embeddings,
        |n| n.ends_with("rotary_emb.inv_freq"),
    )
}

/// Finishes loading a checkpoint: the tensors of `store` the model did not
/// take are an error naming them, except a tied head's `lm_head.weight`
/// and names `ignored` accepts (buffers such as RoPE tables). Then packs
/// the model, its tokenizer and its variables.
pub(crate) fn finish_load(
    dir: &Path,
    store: ParamStore,
    model: Box<dyn CausalLm>,
    tokenizer: TextTokenizer,
    tied: bool,
    ignored: impl Fn(&str) -> bool,
) -> Result<Loaded, CheckpointError> {
    let unused: Vec<String> = store
        .unused()
        .into_iter()
        .filter(|n| !(ignored(n) || (tied && n == "lm_head.weight")))
        .collect();
    if !unused.is_empty() {
        return Err(CheckpointError::Model(format!(
            "{}: weights the config does not use: {}",
            dir.display(),
            unused.join(", ")
        )));
    }
    Ok(Loaded {
        model,
        tokenizer,
        vars: store.into_vars(),
    })
}

/// Writes a model directory: config, weights (sorted by name, so the bytes
/// are the same for the same weights) and tokenizer. `cfg` is any
/// architecture's config struct (its fields become `config.json`).
pub fn save(
    dir: &Path,
    cfg: &impl serde::Serialize,
    weights: &[(String, Tensor)],
    tokenizer: &TextTokenizer,
) -> Result<(), CheckpointError> {
    let cfg_text = serde_json::to_string_pretty(cfg).map_err(|e| ferr(dir, e))?;
    save_text(dir, &cfg_text, weights, tokenizer)
}

/// [`save`] with the `config.json` text given (e.g. from
/// [`CausalLm::config_json`]).
pub fn save_text(
    dir: &Path,
    cfg_text: &str,
    weights: &[(String, Tensor)],
    tokenizer: &TextTokenizer,
) -> Result<(), CheckpointError> {
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    let cfg_text = cfg_text.to_string();
    let p = dir.join("config.json");
    std::fs::write(&p, cfg_text + "\n").map_err(|e| ferr(&p, e))?;
    let sorted: BTreeMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let p = dir.join("model.safetensors");
    safetensors::tensor::serialize_to_file(sorted, None, &p).map_err(|e| ferr(&p, e))?;
    tokenizer
        .save_dir(dir)
        .map_err(|e| CheckpointError::Model(e.to_string()))
}
