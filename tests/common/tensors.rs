//! Comparing candle tensors in tests.

use candle_core::{DType, Tensor};

/// The largest `|t|` over all elements, in f32.
pub fn max_abs(t: &Tensor) -> f32 {
    t.to_dtype(DType::F32)
        .and_then(|t| t.abs())
        .and_then(|t| t.max_all())
        .and_then(|t| t.to_scalar::<f32>())
        .expect("max_abs of a tensor")
}

/// The largest `|a - b|` over all elements, both taken in f32.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (
        a.to_dtype(DType::F32).expect("a in f32"),
        b.to_dtype(DType::F32).expect("b in f32"),
    );
    max_abs(&(a - b).expect("a - b of equal shapes"))
}
