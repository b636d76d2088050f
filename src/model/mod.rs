//! The model layer on candle: the architecture-neutral [`CausalLm`] trait
//! and KV cache ([`lm`]), a LLaMA-family decoder ([`llama`]) and a GPT-2
//! ([`gpt2`]) with Hugging Face weight names, one loader for model
//! directories ([`load`]), where weights come from ([`params`]), an in-place AdamW
//! ([`adamw`]), the training loop ([`train`]) with its steps ([`step`]:
//! micro-batches and gradient engines; [`loss`], [`grads`], activation
//! recompute in [`recompute`] over [`blockwise`] models), batched decoding
//! ([`generate`]), tokenizers and chat templates ([`tokenizer`]), model
//! directories ([`checkpoint`]) and CPU tuning ([`cpu`]). On the CPU, training
//! our LLaMA runs a hand-written forward and backward pass ([`manual`])
//! instead of candle's autograd.

pub mod adamw;
pub mod batching;
pub mod blockwise;
pub mod checkpoint;
pub mod config;
pub mod cpu;
pub mod error;
pub mod gemma3;
pub mod gemma3_hf;
pub mod generate;
pub mod gguf;
pub mod gguf_file;
pub mod gguf_gemma3;
pub mod gguf_tokenizer;
pub mod gpt2;
pub mod grads;
pub mod kernels;
pub mod llama;
pub mod lm;
pub mod load;
pub mod loss;
pub mod manual;
pub mod matvec;
pub mod memory;
pub mod params;
pub mod precision;
pub mod recompute;
pub mod step;
pub mod tokenizer;
pub mod train;

pub use config::{Gpt2Config, LlamaConfig};
pub use llama::Llama;
pub use lm::{CausalLm, KvCache};

/// A freshly initialised model (N(0, 0.02) matrices, unit norms) and its
/// named trainable weights, the same for the same seed on every machine.
pub fn init(
    cfg: &LlamaConfig,
    seed: u64,
    device: &candle_core::Device,
    dtype: candle_core::DType,
) -> candle_core::Result<(Llama, Vec<(String, candle_core::Var)>)> {
    let mut store = params::ParamStore::fresh(seed, 0.02, device, dtype);
    let model = Llama::new(cfg, &mut store, device)?;
    Ok((model, store.into_vars()))
}
