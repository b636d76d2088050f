//! GGUF model files (llama.cpp's format), read into our own f32 models.
//!
//! A GGUF file holds typed metadata (`general.architecture`,
//! `<arch>.block_count`, the tokenizer, the chat template) and tensors,
//! most of them block-quantized (Q4_0/Q4_1/Q5_0/Q8_0/Q4_K/Q6_K, ...). We
//! read the header with candle's [`candle_core::quantized::gguf_file::Content::read`] and
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
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

pub use super::gguf_file::{
    Gguf, GgufError, SUPPORTED_ARCHS, llama_config, llama_hf_name, permute_qk, unpermute_qk,
};

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
