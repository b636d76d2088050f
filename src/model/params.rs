//! Where a model's weights come from: a seeded N(0, 0.02) initialisation
//! (HF's `initializer_range`; candle's default init runs into denormal floats
//! and trains 4-7x slower on CPU) or named tensors from a checkpoint. Every
//! weight is created through [`ParamStore::get`] in a fixed order, so the
//! initialisation is the same for the same seed on every machine, and the
//! store remembers each trainable [`Var`] by its Hugging Face name.

use crate::rng::Rng;
use candle_core::{DType, Device, Result, Tensor, Var};
use std::collections::HashMap;

/// How a fresh weight is initialised.
#[derive(Debug, Clone, Copy)]
pub enum Init {
    /// Normal with the store's standard deviation.
    Normal,
    /// All ones (norm gains).
    Ones,
    /// All zeros (biases).
    Zeros,
}

enum Source {
    Fresh { rng: Rng, std: f64 },
    Loaded(HashMap<String, Tensor>),
}

/// Creates (or loads) the weights of a model in construction order.
pub struct ParamStore {
    source: Source,
    device: Device,
    dtype: DType,
    trainable: bool,
    named: Vec<(String, Var)>,
    plain: Vec<(String, Tensor)>,
}

impl ParamStore {
    /// Fresh weights from `seed`, N(0, `std`) for matrices, ones for norms.
    pub fn fresh(seed: u64, std: f64, device: &Device, dtype: DType) -> Self {
        ParamStore {
            source: Source::Fresh {
                rng: Rng::derive(seed, "init"),
                std,
            },
            device: device.clone(),
            dtype,
            trainable: true,
            named: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// Weights from named tensors; `trainable` wraps them in [`Var`]s. For
    /// inference on the CPU their memory is moved to huge pages
    /// ([`super::cpu::back_with_huge_pages`]).
    pub fn loaded(
        tensors: HashMap<String, Tensor>,
        trainable: bool,
        device: &Device,
        dtype: DType,
    ) -> Self {
        if !trainable && device.is_cpu() {
            super::cpu::back_with_huge_pages(tensors.values());
        }
        ParamStore {
            source: Source::Loaded(tensors),
            device: device.clone(),
            dtype,
            trainable,
            named: Vec::new(),
            plain: Vec::new(),
        }
    }

    /// The weight `name` of `shape`, created or taken from the checkpoint.
    pub fn get(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let t = match &mut self.source {
            Source::Fresh { rng, std } => {
                let n: usize = shape.iter().product();
                let data: Vec<f32> = match init {
                    Init::Ones => vec![1.0; n],
                    Init::Zeros => vec![0.0; n],
                    Init::Normal => (0..n).map(|_| (rng.normal() * *std) as f32).collect(),
                };
                Tensor::from_vec(data, shape, &self.device)?.to_dtype(self.dtype)?
            }
            Source::Loaded(map) => {
                let t = map.remove(name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("checkpoint has no weight `{name}`"))
                })?;
                if t.dims() != shape {
                    candle_core::bail!(
                        "weight `{name}` has shape {:?}, the config needs {:?}",
                        t.dims(),
                        shape
                    );
                }
                t.to_device(&self.device)?.to_dtype(self.dtype)?
            }
        };
        if self.trainable {
            let v = Var::from_tensor(&t)?;
            let out = v.as_tensor().clone();
            self.named.push((name.to_string(), v));
            Ok(out)
        } else {
            self.plain.push((name.to_string(), t.clone()));
            Ok(t)
        }
    }

    /// Whether the checkpoint holds `name` (always false for fresh weights).
    pub fn contains(&self, name: &str) -> bool {
        match &self.source {
            Source::Fresh { .. } => false,
            Source::Loaded(map) => map.contains_key(name),
        }
    }

    /// Names of checkpoint tensors the model did not use.
    pub fn unused(&self) -> Vec<String> {
        match &self.source {
            Source::Fresh { .. } => Vec::new(),
            Source::Loaded(map) => {
                let mut v: Vec<String> = map.keys().cloned().collect();
                v.sort();
                v
            }
        }
    }

    /// The trainable variables with their names, in construction order.
    pub fn into_vars(self) -> Vec<(String, Var)> {
        self.named
    }

    /// All weights with their names, in construction order.
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        if self.trainable {
            self.named
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect()
        } else {
            self.plain.clone()
        }
    }
}
