//! Gradients of one optimizer step summed over its parts: the micro-batches
//! of gradient accumulation, and the pieces activation recompute computes
//! (the head, each block, the embedding).
//!
//! A part's gradients come with a weight: a micro-batch holding `n_i` of a
//! step's `N` learned tokens counts `n_i / N`, so the sum is the gradient
//! of the whole batch's loss (the mean over all its learned tokens). Sums
//! are kept in f32 (f64 for f64 weights), also for bf16/f16 gradients.

use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};

/// The type a gradient of type `dtype` is summed in.
fn sum_dtype(dtype: DType) -> DType {
    if dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// Weighted sums of candle gradients, one per weight, in the order of the
/// weights given (the optimizer's order).
pub struct GradSum {
    vars: Vec<Var>,
    sums: Vec<Option<Tensor>>,
}

impl GradSum {
    /// Empty sums for `vars`.
    pub fn new(vars: &[Var]) -> Self {
        GradSum {
            vars: vars.to_vec(),
            sums: vec![None; vars.len()],
        }
    }

    /// Adds `weight` times the gradient in `store` of every weight that has
    /// one (others are left as they are).
    pub fn add(&mut self, store: &GradStore, weight: f64) -> Result<()> {
        for (var, sum) in self.vars.iter().zip(&mut self.sums) {
            let Some(g) = store.get(var.as_tensor()) else {
                continue;
            };
            let g = g.to_dtype(sum_dtype(g.dtype()))?;
            let g = if weight == 1.0 { g } else { (g * weight)? };
            *sum = Some(match sum.take() {
                None => g,
                Some(s) => (s + g)?,
            });
        }
        Ok(())
    }

    /// The sums, one per weight (`None` for a weight no part reached).
    pub fn into_grads(self) -> Vec<Option<Tensor>> {
        self.sums
    }
}

/// Weighted sums of host gradients in f32, for the hand-written training
/// step ([`super::manual`]), whose gradients are slices it overwrites at
/// every backward pass.
pub struct HostGradSum {
    params: Vec<Tensor>,
    sums: Vec<Vec<f32>>,
    empty: bool,
}

impl HostGradSum {
    /// Zero sums for `params` (the manual step's weights, in its order).
    pub fn new(params: &[Tensor]) -> Self {
        HostGradSum {
            params: params.to_vec(),
            sums: params.iter().map(|p| vec![0.0; p.elem_count()]).collect(),
            empty: true,
        }
    }

    /// Starts a new step: the next [`HostGradSum::add`] overwrites the sums.
    pub fn clear(&mut self) {
        self.empty = true;
    }

    /// Adds `weight` times each weight's gradient as `grad_of` gives it.
    pub fn add<'g>(
        &mut self,
        grad_of: impl Fn(&Tensor) -> Option<&'g [f32]>,
        weight: f32,
    ) -> Result<()> {
        for (p, sum) in self.params.iter().zip(&mut self.sums) {
            let Some(g) = grad_of(p) else {
                candle_core::bail!("manual step: no gradient for a weight");
            };
            if g.len() != sum.len() {
                candle_core::bail!("manual step: a gradient of {} for {}", g.len(), sum.len());
            }
            if self.empty {
                sum.iter_mut().zip(g).for_each(|(s, g)| *s = weight * g);
            } else {
                sum.iter_mut().zip(g).for_each(|(s, g)| *s += weight * g);
            }
        }
        self.empty = false;
        Ok(())
    }

    /// The summed gradient of the weight `t` (by tensor id).
    pub fn grad_of(&self, t: &Tensor) -> Option<&[f32]> {
        let id = t.id();
        self.params
            .iter()
            .position(|p| p.id() == id)
            .map(|i| self.sums[i].as_slice())
    }
}
