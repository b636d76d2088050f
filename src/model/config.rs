//! The model configurations (LLaMA, GPT-2), in Hugging Face's `config.json`
//! field names so a checkpoint directory written here loads in
//! `transformers` and back.

use super::error::{CheckpointError, ferr};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::Path;

/// A LLaMA-family configuration (the subset of `LlamaConfig` this model uses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Inner width of the SwiGLU MLP.
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than the query heads).
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Longest sequence the RoPE tables cover.
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    /// Whether the output head shares the embedding matrix.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Always `["LlamaForCausalLM"]` when written by us.
    #[serde(default = "default_arch")]
    pub architectures: Vec<String>,
    /// Always `"llama"` when written by us.
    #[serde(default = "default_model_type")]
    pub model_type: String,
}

fn default_eps() -> f64 {
    1e-5
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_arch() -> Vec<String> {
    vec!["LlamaForCausalLM".into()]
}
fn default_model_type() -> String {
    "llama".into()
}

impl LlamaConfig {
    /// Key/value heads, defaulting to the query heads.
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks the shape constraints; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (k, v) in nonzero {
            if v == 0 {
                return Err(format!("`{k}` must be positive"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "`hidden_size` ({}) must be a multiple of `num_attention_heads` ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(
                "the head width (hidden_size / num_attention_heads) must be even for RoPE".into(),
            );
        }
        let kv = self.kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return Err(format!(
                "`num_key_value_heads` ({kv}) must divide `num_attention_heads` ({})",
                self.num_attention_heads
            ));
        }
        if !(self.rms_norm_eps > 0.0 && self.rope_theta > 0.0) {
            return Err("`rms_norm_eps` and `rope_theta` must be positive".into());
        }
        Ok(())
    }

    /// Number of parameters (the tied head counted once).
    pub fn param_count(&self) -> usize {
        let d = self.hidden_size;
        let hd = self.head_dim();
        let kv = self.kv_heads() * hd;
        let per_layer = d * d * 2 + d * kv * 2 + 3 * d * self.intermediate_size + 2 * d;
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        self.vocab_size * d + self.num_hidden_layers * per_layer + d + head
    }
}

/// A GPT-2 configuration in Hugging Face `GPT2Config` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gpt2Config {
    /// Vocabulary size (rows of `wte`).
    pub vocab_size: usize,
    /// Learned positions (rows of `wpe`): the longest sequence.
    pub n_positions: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Number of blocks.
    pub n_layer: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Inner width of the MLP (`None`: 4 x `n_embd`).
    #[serde(default)]
    pub n_inner: Option<usize>,
    /// LayerNorm epsilon.
    pub layer_norm_epsilon: f64,
    /// `gelu_new` (tanh approximation, GPT-2's), `gelu_pytorch_tanh`,
    /// `gelu_fast`, `gelu` (exact), `relu` or `silu`.
    pub activation_function: String,
    /// Whether the head shares the token embedding (GPT-2: true).
    pub tie_word_embeddings: bool,
    /// Whether attention scores are divided by `sqrt(head_dim)` (GPT-2: true).
    pub scale_attn_weights: bool,
    /// `["GPT2LMHeadModel"]`.
    pub architectures: Vec<String>,
    /// `"gpt2"`.
    pub model_type: String,
}

/// The activations GPT-2 configs may name.
const ACTIVATIONS: &[&str] = &[
    "gelu_new",
    "gelu_pytorch_tanh",
    "gelu_fast",
    "gelu",
    "relu",
    "silu",
];

impl Gpt2Config {
    /// Reads and checks a `config.json` object; errors name `path` and the key.
    pub fn from_json(
        path: &Path,
        obj: &Map<String, Value>,
    ) -> std::result::Result<Self, CheckpointError> {
        let r = ConfigReader::new(path, obj);
        for key in [
            "scale_attn_by_inverse_layer_idx",
            "reorder_and_upcast_attn",
            "add_cross_attention",
        ] {
            if r.bool_or(key, false)? {
                return Err(r.err(key, "not supported by this GPT-2 model"));
            }
        }
        let cfg = Gpt2Config {
            vocab_size: r.usize("vocab_size")?,
            n_positions: r.usize("n_positions")?,
            n_embd: r.usize("n_embd")?,
            n_layer: r.usize("n_layer")?,
            n_head: r.usize("n_head")?,
            n_inner: r.opt_usize("n_inner")?,
            layer_norm_epsilon: r.f64_or("layer_norm_epsilon", 1e-5)?,
            activation_function: r
                .opt_str("activation_function")?
                .unwrap_or_else(|| "gelu_new".into()),
            tie_word_embeddings: r.bool_or("tie_word_embeddings", true)?,
            scale_attn_weights: r.bool_or("scale_attn_weights", true)?,
            architectures: r
                .opt_strings("architectures")?
                .unwrap_or_else(|| vec!["GPT2LMHeadModel".into()]),
            model_type: "gpt2".into(),
        };
        cfg.validate().map_err(|(key, msg)| r.err(key, msg))?;
        Ok(cfg)
    }

    /// Inner width of the MLP.
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Checks the shape constraints; `Err((key, message))`.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        for (k, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_inner", self.inner()),
        ] {
            if v == 0 {
                return Err((k, "must be positive".into()));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return Err((
                "n_head",
                format!(
                    "must divide n_embd ({}), found {}",
                    self.n_embd, self.n_head
                ),
            ));
        }
        if self.layer_norm_epsilon.is_nan() || self.layer_norm_epsilon <= 0.0 {
            return Err(("layer_norm_epsilon", "must be positive".into()));
        }
        if !ACTIVATIONS.contains(&self.activation_function.as_str()) {
            return Err((
                "activation_function",
                format!(
                    "unsupported `{}` (supported: {})",
                    self.activation_function,
                    ACTIVATIONS.join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// Number of parameters (a tied head counted once).
    pub fn param_count(&self) -> usize {
        let (d, f) = (self.n_embd, self.inner());
        let per_layer = 4 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * f + f) + (f * d + d);
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.vocab_size * d
        };
        (self.vocab_size + self.n_positions) * d + self.n_layer * per_layer + 2 * d + head
    }
}

/// Typed access to a JSON object read from `path`; every error names the
/// file and the key.
pub struct ConfigReader<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl<'a> ConfigReader<'a> {
    /// Wraps the object `obj` read from `path`.
    pub fn new(path: &'a Path, obj: &'a Map<String, Value>) -> Self {
        ConfigReader { path, obj }
    }

    /// An error about `key`.
    pub fn err(&self, key: &str, msg: impl std::fmt::Display) -> CheckpointError {
        ferr(self.path, format!("key `{key}`: {msg}"))
    }

    /// The value of `key`, `None` when absent or null.
    pub(crate) fn present(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    /// An optional non-negative integer.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, CheckpointError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(|n| Some(n as usize))
                .ok_or_else(|| self.err(key, format!("must be a non-negative integer, found {v}"))),
        }
    }

    /// A required non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize, CheckpointError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.err(key, "missing (a non-negative integer is required)"))
    }

    /// A number, or `default` when absent.
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64, CheckpointError> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(key, format!("must be a number, found {v}"))),
        }
    }

    /// A boolean, or `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, CheckpointError> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, format!("must be true or false, found {v}"))),
        }
    }

    /// An optional string.
    pub fn opt_str(&self, key: &str) -> Result<Option<String>, CheckpointError> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.err(key, format!("must be a string, found {v}"))),
        }
    }

    /// An optional list of strings.
    pub fn opt_strings(&self, key: &str) -> Result<Option<Vec<String>>, CheckpointError> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or_else(|| self.err(key, format!("must list strings, found {v}")))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.err(key, format!("must be a list of strings, found {v}"))),
        }
    }
}
