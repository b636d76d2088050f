//! GGUF model files (llama.cpp's format), read into our own f32 models.
//!
//! A GGUF file holds typed metadata (`general.architecture`,
//! `<arch>.block_count`, the tokenizer, the chat template) and tensors,
//! most of them block-quantized (Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q6_K, ...). We
//! read the header with candle's [`gguf_file::Content::read`] and
//! **dequantize every tensor to f32** (candle's quantized matmuls give
//! degenerate answers on a 135M model: the activation quantization error
//! piles up over the layers), so the weights are trainable and the model is
//! the same code as a Hugging Face checkpoint's.
//!
//! For the `llama` architecture the tensors are renamed to Hugging Face's
//! names ([`llama_hf_name`]) and the query/key projections are un-permuted
//! ([`unpermute_qk`]): llama.cpp's converter reorders their rows for its
//! interleaved RoPE, our model uses HF's rotate-half RoPE. `gemma3` is
//! read by [`super::gguf_gemma3`] into [`super::gemma3`]. The tokenizer and
//! chat template come from the metadata ([`super::gguf_tokenizer`]).

use super::checkpoint::{CheckpointError, Loaded};
use super::config::LlamaConfig;
use super::tokenizer::TextTokenizer;
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Architectures (`general.architecture`) this module can load.
pub const SUPPORTED_ARCHS: [&str; 2] = ["llama", "gemma3"];

/// Why a GGUF file could not be read; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file is missing, unreadable or not GGUF.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// A metadata key is missing or has the wrong type or value.
    #[error("{path}: metadata key `{key}`: {message}")]
    Key {
        /// The file.
        path: String,
        /// The metadata key.
        key: String,
        /// What went wrong.
        message: String,
    },
    /// A tensor is missing, has the wrong shape or cannot be dequantized.
    #[error("{path}: tensor `{name}`: {message}")]
    Tensor {
        /// The file.
        path: String,
        /// The GGUF tensor name.
        name: String,
        /// What went wrong.
        message: String,
    },
}

impl From<GgufError> for CheckpointError {
    fn from(e: GgufError) -> Self {
        CheckpointError::Model(e.to_string())
    }
}

/// An open GGUF file: its header (metadata and tensor index) and a reader.
pub struct Gguf {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
}

impl Gguf {
    /// Opens `path` and reads its header (not the tensor data).
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let ferr = |m: String| GgufError::File {
            path: path.display().to_string(),
            message: m,
        };
        let file = File::open(path).map_err(|e| ferr(e.to_string()))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| ferr(format!("not a readable GGUF file: {e}")))?;
        Ok(Gguf {
            path: path.to_path_buf(),
            content,
            reader,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed header.
    pub fn content(&self) -> &Content {
        &self.content
    }

    /// An error about metadata `key`.
    pub fn key_err(&self, key: &str, message: impl Into<String>) -> GgufError {
        GgufError::Key {
            path: self.path.display().to_string(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// An error about tensor `name`.
    pub fn tensor_err(&self, name: &str, message: impl Into<String>) -> GgufError {
        GgufError::Tensor {
            path: self.path.display().to_string(),
            name: name.to_string(),
            message: message.into(),
        }
    }

    /// The metadata value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    /// The metadata value of `key`; missing is an error.
    pub fn value(&self, key: &str) -> Result<&Value, GgufError> {
        self.get(key).ok_or_else(|| self.key_err(key, "missing"))
    }

    /// A non-negative integer (any integer type), or `None` when absent.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n: Option<i128> = match v {
            Value::U8(x) => Some(*x as i128),
            Value::I8(x) => Some(*x as i128),
            Value::U16(x) => Some(*x as i128),
            Value::I16(x) => Some(*x as i128),
            Value::U32(x) => Some(*x as i128),
            Value::I32(x) => Some(*x as i128),
            Value::U64(x) => Some(*x as i128),
            Value::I64(x) => Some(*x as i128),
            _ => None,
        };
        match n.and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(self.key_err(key, format!("expected a non-negative integer, found {v:?}"))),
        }
    }

    /// A non-negative integer; missing is an error.
    pub fn usize(&self, key: &str) -> Result<usize, GgufError> {
        self.opt_usize(key)?
            .ok_or_else(|| self.key_err(key, "missing"))
    }

    /// A number (float or integer), or `None` when absent.
    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            // The f32 of a decimal config value (1e-5) back as that decimal.
            Some(Value::F32(x)) => Ok(Some(x.to_string().parse().unwrap_or(*x as f64))),
            Some(Value::F64(x)) => Ok(Some(*x)),
            Some(_) => self.opt_usize(key).map(|n| n.map(|n| n as f64)),
        }
    }

    /// A string, or `None` when absent.
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.key_err(key, format!("expected a string, found {v:?}"))),
        }
    }

    /// A string; missing is an error.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        self.opt_str(key)?
            .ok_or_else(|| self.key_err(key, "missing"))
    }

    /// A boolean, `default` when absent.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, GgufError> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(self.key_err(key, format!("expected a boolean, found {v:?}"))),
        }
    }

    /// An array; missing is an error.
    pub fn array(&self, key: &str) -> Result<&[Value], GgufError> {
        match self.value(key)? {
            Value::Array(a) => Ok(a),
            v => Err(self.key_err(
                key,
                format!("expected an array, found {:?}", v.value_type()),
            )),
        }
    }

    /// `general.architecture`, checked against [`SUPPORTED_ARCHS`].
    pub fn arch(&self) -> Result<&str, GgufError> {
        let key = "general.architecture";
        let arch = self.str(key)?;
        if !SUPPORTED_ARCHS.contains(&arch) {
            return Err(self.key_err(
                key,
                format!(
                    "architecture `{arch}` is not supported (supported: {})",
                    SUPPORTED_ARCHS.join(", ")
                ),
            ));
        }
        Ok(arch)
    }

    /// Names of all tensors, sorted.
    pub fn tensor_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.content.tensor_infos.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether the file holds tensor `name`.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// The dims of tensor `name` in candle's order (outermost first, so a
    /// projection is `(out, in)`, the `nn.Linear` layout).
    pub fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    /// Reads tensor `name` and dequantizes it to f32 on `device`.
    pub fn dequantize(&mut self, name: &str, device: &Device) -> Result<Tensor, GgufError> {
        let q = self
            .content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| self.tensor_err(name, e.to_string()))?;
        q.dequantize(&Device::Cpu)
            .and_then(|t| t.to_dtype(DType::F32))
            .and_then(|t| t.to_device(device))
            .map_err(|e| self.tensor_err(name, format!("dequantizing {:?}: {e}", q.dtype())))
    }
}

/// The Hugging Face name of a llama.cpp tensor of the `llama`
/// architecture, or `None` for a name our LLaMA has no place for.
pub fn llama_hf_name(name: &str) -> Option<String> {
    match name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let hf = match part {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf}"))
}

/// llama.cpp's converter permutation of a query or key projection `(out,
/// in)` with `n_head` heads (the key heads for K): within each head, rows
/// `[first half, second half]` become interleaved pairs, so its
/// interleaved RoPE rotates the same pairs as HF's rotate-half RoPE. This
/// is `w.reshape(n_head, 2, hd/2, in).swapaxes(1, 2)` of
/// `convert_hf_to_gguf.py`; tests use it to write GGUF files.
pub fn permute_qk(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if n_head == 0 || out % (2 * n_head) != 0 {
        candle_core::bail!("cannot split {out} rows into {n_head} heads of even width");
    }
    w.reshape((n_head, 2, out / n_head / 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

/// The exact inverse of [`permute_qk`]: a GGUF query or key projection
/// back in the Hugging Face row order.
pub fn unpermute_qk(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (out, inp) = w.dims2()?;
    if n_head == 0 || out % (2 * n_head) != 0 {
        candle_core::bail!("cannot split {out} rows into {n_head} heads of even width");
    }
    w.reshape((n_head, out / n_head / 2, 2, inp))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, inp))
}

/// The [`LlamaConfig`] of a `llama` GGUF file, from its metadata and the
/// embedding's shape. Features our LLaMA lacks (partial rotary, RoPE
/// scaling, mixture of experts) are errors naming their key.
pub fn llama_config(g: &Gguf) -> Result<LlamaConfig, GgufError> {
    let k = |s: &str| format!("llama.{s}");
    let hidden = g.usize(&k("embedding_length"))?;
    let heads = g.usize(&k("attention.head_count"))?;
    let kv_heads = g.opt_usize(&k("attention.head_count_kv"))?.unwrap_or(heads);
    let embd = "token_embd.weight";
    let vocab = match g.tensor_dims(embd).as_deref() {
        Some([v, d]) if *d == hidden => *v,
        Some(dims) => {
            return Err(g.tensor_err(embd, format!("shape {dims:?}, expected (vocab, {hidden})")));
        }
        None => return Err(g.tensor_err(embd, "missing")),
    };
    if let Some(v) = g.opt_usize(&k("vocab_size"))?
        && v != vocab
    {
        return Err(g.key_err(
            &k("vocab_size"),
            format!("{v}, but {embd} has {vocab} rows"),
        ));
    }
    let cfg = LlamaConfig {
        hidden_size: hidden,
        intermediate_size: g.usize(&k("feed_forward_length"))?,
        num_hidden_layers: g.usize(&k("block_count"))?,
        num_attention_heads: heads,
        num_key_value_heads: Some(kv_heads),
        vocab_size: vocab,
        rms_norm_eps: g
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5),
        rope_theta: g.opt_f64(&k("rope.freq_base"))?.unwrap_or(10_000.0),
        max_position_embeddings: g.usize(&k("context_length"))?,
        tie_word_embeddings: !g.has_tensor("output.weight"),
        architectures: vec!["LlamaForCausalLM".into()],
        model_type: "llama".into(),
    };
    cfg.validate()
        .map_err(|e| g.key_err("llama.*", format!("inconsistent config: {e}")))?;
    let hd = cfg.head_dim();
    for key in [
        "rope.dimension_count",
        "attention.key_length",
        "attention.value_length",
    ] {
        if let Some(n) = g.opt_usize(&k(key))?
            && n != hd
        {
            return Err(g.key_err(
                &k(key),
                format!("{n} differs from the head width {hd} (not supported)"),
            ));
        }
    }
    if let Some(t) = g.opt_str(&k("rope.scaling.type"))?
        && t != "none"
    {
        return Err(g.key_err(
            &k("rope.scaling.type"),
            format!("RoPE scaling `{t}` is not supported"),
        ));
    }
    if g.opt_usize(&k("expert_count"))?.unwrap_or(0) > 0 {
        return Err(g.key_err(
            &k("expert_count"),
            "mixture-of-experts models are not supported",
        ));
    }
    Ok(cfg)
}

/// A `llama` GGUF file read into Hugging Face form.
pub struct GgufLlama {
    /// The configuration built from the metadata.
    pub config: LlamaConfig,
    /// Every weight, dequantized to f32, under its Hugging Face name, with
    /// the query/key rows in HF order.
    pub tensors: HashMap<String, Tensor>,
    /// The tokenizer and chat template from the metadata.
    pub tokenizer: TextTokenizer,
}

/// Reads a `llama` GGUF file: config, HF-named f32 weights, tokenizer.
/// Tensors with no HF counterpart (biases, `rope_freqs`, ...) are errors.
pub fn read_llama(path: &Path, device: &Device) -> Result<GgufLlama, GgufError> {
    let mut g = Gguf::open(path)?;
    let arch = g.arch()?;
    if arch != "llama" {
        return Err(g.key_err("general.architecture", format!("`{arch}` is not `llama`")));
    }
    let config = llama_config(&g)?;
    let tokenizer = super::gguf_tokenizer::from_gguf(&g)?;
    let mut tensors = HashMap::new();
    for name in g.tensor_names() {
        let hf = llama_hf_name(&name).ok_or_else(|| {
            g.tensor_err(
                &name,
                "has no counterpart in the LLaMA model (not supported)",
            )
        })?;
        let mut t = g.dequantize(&name, device)?;
        let heads = if name.ends_with(".attn_q.weight") {
            Some(config.num_attention_heads)
        } else if name.ends_with(".attn_k.weight") {
            Some(config.kv_heads())
        } else {
            None
        };
        if let Some(h) = heads {
            t = unpermute_qk(&t, h).map_err(|e| g.tensor_err(&name, e.to_string()))?;
        }
        tensors.insert(hf, t);
    }
    Ok(GgufLlama {
        config,
        tensors,
        tokenizer,
    })
}

/// Loads a GGUF model of any [`SUPPORTED_ARCHS`] architecture as a
/// [`Loaded`] model in f32 (`trainable` wraps the weights in variables).
pub fn load(path: &Path, trainable: bool, device: &Device) -> Result<Loaded, CheckpointError> {
    load_as(path, trainable, device, DType::F32)
}

/// [`load`] with the weights in `dtype` (f32, bf16 or f16): every tensor
/// is dequantized to f32 and then cast.
pub fn load_as(
    path: &Path,
    trainable: bool,
    device: &Device,
    dtype: DType,
) -> Result<Loaded, CheckpointError> {
    super::precision::check(dtype)?;
    let g = Gguf::open(path)?;
    let arch = g.arch()?.to_string();
    drop(g);
    match arch.as_str() {
        "gemma3" => super::gguf_gemma3::load_gguf(path, trainable, device, dtype),
        _ => {
            let m = read_llama(path, device)?;
            super::checkpoint::load_llama(
                path,
                &m.config,
                m.tensors,
                m.tokenizer,
                trainable,
                device,
                dtype,
            )
        }
    }
}
