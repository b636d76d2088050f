//! The float type a model computes in: f32, bf16 or f16.
//!
//! The loaders ([`super::load::load_as`],
//! [`super::gguf::load_as`]) cast every weight to it; the plain `load`
//! functions keep f32. Whatever the weights' type:
//! - attention masks are f32 and scores are masked and softmaxed in f32
//!   ([`super::lm::attention_probs`]), so a row that sees only padding stays
//!   finite in f16 (where [`super::llama::MASKED`] would be -inf);
//! - logits come back in f32 ([`super::lm::CausalLm::logits`]), so losses,
//!   log-softmaxes, sampling and host read-backs work in f32;
//! - on the CPU, which has no bf16 matmul in candle, bf16 products are
//!   computed in f32 and rounded to bf16 ([`super::lm::matmul`]).
//!
//! The CPU training paths (the fused kernels and the hand-written step) stay
//! f32; a half-precision model trains through candle's autograd, with f32
//! master weights in the optimizer ([`super::adamw::AdamW::with_masters`])
//! and an f32 loss ([`super::loss`]).

use super::checkpoint::CheckpointError;
use candle_core::{DType, Device};

/// The names [`parse`] accepts, in the order documentation lists them.
pub const NAMES: [&str; 3] = ["f32", "bf16", "f16"];

/// The float type named `name` (`f32`, `bf16`, `f16`), or `None`.
pub fn parse(name: &str) -> Option<DType> {
    match name {
        "f32" => Some(DType::F32),
        "bf16" => Some(DType::BF16),
        "f16" => Some(DType::F16),
        _ => None,
    }
}

/// The name of a float type as [`parse`] reads it (`f64` for f64, which
/// tests use).
pub fn name(dtype: DType) -> &'static str {
    dtype.as_str()
}

/// The default for a device: f32 on the CPU (candle has no bf16 CPU
/// matmul, and f32 is what every committed result was computed in), bf16
/// on a GPU.
pub fn default_for(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::BF16
    }
}

/// Accepts the float types a model can be loaded in (f32, bf16, f16, and
/// f64 for tests); integer types are an error.
pub fn check(dtype: DType) -> Result<(), CheckpointError> {
    match dtype {
        DType::F32 | DType::BF16 | DType::F16 | DType::F64 => Ok(()),
        other => Err(CheckpointError::Model(format!(
            "cannot load a model in {} (use one of {})",
            other.as_str(),
            NAMES.join(", ")
        ))),
    }
}
