//! Memory estimates for training and inference, checked against the device
//! before the first step: a run that cannot fit is refused with the numbers
//! and the knobs that would make it fit, instead of running out of memory
//! hours in.
//!
//! The estimate counts what a step holds at its peak, by part:
//!
//! | part | training | inference |
//! | --- | --- | --- |
//! | weights | params x bytes of `dtype` | params x bytes of `dtype` |
//! | master weights | params x 4 when `dtype` is half (f32 master copy) | - |
//! | gradients | params x bytes of `dtype` | - |
//! | accumulated gradients | params x 4 when a step has several micro-batches | - |
//! | optimizer state | params x 8 (AdamW's m and v, f32) | - |
//! | activations | per block and token: 10 x hidden + 4 x MLP width values, and per block, row and head the seq x seq attention scores and probabilities in f32; with activation checkpointing, one input per block plus one block's worth | the prefill of the widest batch, one block at a time |
//! | KV cache | - | 2 x blocks x KV width x batch tokens x bytes of `dtype` |
//! | logits | tokens x vocabulary x (bytes of `dtype` + 8): the logits, their f32 log-softmax and its gradient | rows x vocabulary x 4 |
//!
//! It is an estimate of the tensors' sizes, not an allocator's peak: the
//! allocator's slack, the CUDA context (about 0.5 GB) and temporary copies
//! come on top, so [`check_fits`] keeps a 10% margin.

use candle_core::{DType, Device};
use std::fmt;

/// The sizes of a transformer that memory scales with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Parameters.
    pub params: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Inner width of the MLP.
    pub mlp: usize,
    /// Attention heads.
    pub heads: usize,
    /// Width of the keys (and of the values): KV heads x head width.
    pub kv_width: usize,
    /// Vocabulary size.
    pub vocab: usize,
}

impl Shape {
    /// The shape of a LLaMA-family model.
    pub fn of_llama(c: &super::config::LlamaConfig) -> Shape {
        Shape {
            params: c.param_count(),
            layers: c.num_hidden_layers,
            hidden: c.hidden_size,
            mlp: c.intermediate_size,
            heads: c.num_attention_heads,
            kv_width: c.kv_heads() * c.head_dim(),
            vocab: c.vocab_size,
        }
    }

    /// The shape of a GPT-2.
    pub fn of_gpt2(c: &super::config::Gpt2Config) -> Shape {
        Shape {
            params: c.param_count(),
            layers: c.n_layer,
            hidden: c.n_embd,
            mlp: c.inner(),
            heads: c.n_head,
            kv_width: c.n_embd,
            vocab: c.vocab_size,
        }
    }
}

impl Shape {
    /// The shape of a model from its `config.json` object (the names of
    /// LLaMA-family, Gemma 3 and GPT-2 configs) and its parameter count;
    /// `None` when a size is missing.
    pub fn from_config(cfg: &serde_json::Value, params: usize) -> Option<Shape> {
        let cfg = cfg.get("text_config").unwrap_or(cfg);
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| cfg.get(*k).and_then(serde_json::Value::as_u64))
                .map(|v| v as usize)
        };
        let hidden = get(&["hidden_size", "n_embd"])?;
        let heads = get(&["num_attention_heads", "n_head"])?;
        let head_dim = get(&["head_dim"]).unwrap_or(hidden / heads.max(1));
        Some(Shape {
            params,
            layers: get(&["num_hidden_layers", "n_layer"])?,
            hidden,
            mlp: get(&["intermediate_size", "n_inner"]).unwrap_or(4 * hidden),
            heads,
            kv_width: get(&["num_key_value_heads"]).unwrap_or(heads) * head_dim,
            vocab: get(&["vocab_size"])?,
        })
    }
}

/// How a training run is laid out, as far as memory goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainLayout {
    /// Tokens per window.
    pub seq_len: usize,
    /// Windows per forward and backward pass.
    pub micro_batch: usize,
    /// Windows per optimizer step (a multiple of micro-batches).
    pub batch: usize,
    /// Compute dtype of the weights.
    pub dtype: DType,
    /// Whether each block's activations are recomputed in the backward pass.
    pub activation_checkpointing: bool,
}

/// An estimate, part by part, in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Estimate {
    /// `(part, bytes)` in the order of the module's table; parts of zero
    /// bytes are left out.
    pub parts: Vec<(&'static str, u64)>,
}

impl Estimate {
    fn push(&mut self, part: &'static str, bytes: u64) {
        if bytes > 0 {
            self.parts.push((part, bytes));
        }
    }

    /// All parts together.
    pub fn total(&self) -> u64 {
        self.parts.iter().map(|(_, b)| b).sum()
    }
}

impl fmt::Display for Estimate {
    /// `41.2 GB (weights 3.1 GB, optimizer state 12.4 GB, ...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", gb(self.total()))?;
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(p, b)| format!("{p} {}", gb(*b)))
            .collect();
        write!(f, " ({})", parts.join(", "))
    }
}

/// Bytes as gigabytes (10^9) with one decimal.
pub fn gb(bytes: u64) -> String {
    format!("{:.1} GB", bytes as f64 / 1e9)
}

fn bytes_of(dtype: DType) -> u64 {
    dtype.size_in_bytes() as u64
}

fn is_half(dtype: DType) -> bool {
    matches!(dtype, DType::BF16 | DType::F16)
}

/// What one training step holds at its peak (see the module doc).
pub fn training(shape: &Shape, layout: &TrainLayout) -> Estimate {
    let p = shape.params as u64;
    let elt = bytes_of(layout.dtype);
    let micro = layout.micro_batch.clamp(1, layout.batch.max(1)) as u64;
    let seq = layout.seq_len as u64;
    let tokens = micro * seq;
    let mut e = Estimate::default();
    e.push("weights", p * elt);
    e.push(
        "master weights",
        if is_half(layout.dtype) { p * 4 } else { 0 },
    );
    e.push("gradients", p * elt);
    let accumulating = (layout.micro_batch as u64) < layout.batch as u64;
    e.push(
        "accumulated gradients",
        if accumulating { p * 4 } else { 0 },
    );
    e.push("optimizer state", p * 8);
    let per_block = block_activations(shape, micro, seq, elt);
    let activations = if layout.activation_checkpointing {
        shape.layers as u64 * tokens * shape.hidden as u64 * elt + per_block
    } else {
        shape.layers as u64 * per_block
    };
    e.push("activations", activations);
    e.push("logits", tokens * shape.vocab as u64 * (elt + 8));
    e
}

/// Activations one block keeps for its backward pass over `rows` windows
/// of `seq` tokens: its matrices' inputs and outputs, and the attention
/// scores and probabilities in f32.
fn block_activations(shape: &Shape, rows: u64, seq: u64, elt: u64) -> u64 {
    let per_token = (10 * shape.hidden as u64 + 4 * shape.mlp as u64) * elt;
    let scores = rows * shape.heads as u64 * seq * seq * 4 * 2;
    rows * seq * per_token + scores
}

/// What generation holds at its peak: the weights, a KV cache of
/// `batch_tokens` (rows x (prompt + new tokens)), the prefill of `rows`
/// rows of `batch_tokens / rows` tokens one block at a time, and the last
/// position's logits.
pub fn inference(shape: &Shape, dtype: DType, rows: usize, batch_tokens: usize) -> Estimate {
    let elt = bytes_of(dtype);
    let rows = rows.max(1) as u64;
    let tokens = batch_tokens as u64;
    let mut e = Estimate::default();
    e.push("weights", shape.params as u64 * elt);
    e.push(
        "KV cache",
        2 * shape.layers as u64 * shape.kv_width as u64 * tokens * elt,
    );
    e.push(
        "activations",
        block_activations(shape, rows, tokens / rows, elt),
    );
    e.push("logits", rows * shape.vocab as u64 * 4);
    e
}

/// Memory the device can give: free memory on a GPU, `MemAvailable` on
/// the CPU; `None` when it cannot be read.
pub fn available(device: &Device) -> Option<u64> {
    match device {
        Device::Cpu => cpu_available(),
        #[cfg(feature = "cuda")]
        Device::Cuda(d) => cuda_free(d),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A size as written in `REPRO_MEMORY_LIMIT`: bytes, or a number with a
/// `K`, `M`, `G` or `T` suffix (powers of 10, an optional `B`): `80G`,
/// `80GB`, `1.5T`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (num, scale) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 1e3),
        'M' => (&t[..t.len() - 1], 1e6),
        'G' => (&t[..t.len() - 1], 1e9),
        'T' => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * scale) as u64)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes.
fn cpu_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Free memory of a CUDA device.
#[cfg(feature = "cuda")]
fn cuda_free(d: &candle_core::CudaDevice) -> Option<u64> {
    use candle_core::cuda_backend::cudarc::driver::result;
    d.cuda_stream().context().bind_to_thread().ok()?;
    result::mem_get_info()
        .ok()
        .map(|(free, _total)| free as u64)
}

/// Why a run was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "needs an estimated {needed} but {device} has {available} free (with a 10% margin); {advice}"
)]
pub struct DoesNotFit {
    /// The estimate, with its parts.
    pub needed: String,
    /// The device, as provenance names it.
    pub device: String,
    /// What the device can give.
    pub available: String,
    /// What to change.
    pub advice: String,
}

/// Checks `estimate` against what the device can give (`available`
/// bytes, e.g. from [`available`]), keeping a 10% margin. `advice` says
/// what to change when it does not fit. An unknown `available` passes.
pub fn check_fits(
    estimate: &Estimate,
    available: Option<u64>,
    device: &str,
    advice: &str,
) -> Result<(), DoesNotFit> {
    let Some(free) = available else {
        return Ok(());
    };
    if estimate.total() as f64 <= free as f64 * 0.9 {
        return Ok(());
    }
    Err(DoesNotFit {
        needed: estimate.to_string(),
        device: device.to_string(),
        available: gb(free),
        advice: advice.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LLaMA 7B's published config.json.
    fn llama_7b() -> Shape {
        Shape {
            params: 6_738_415_616,
            layers: 32,
            hidden: 4096,
            mlp: 11008,
            heads: 32,
            kv_width: 4096,
            vocab: 32000,
        }
    }

    fn layout(micro: usize, dtype: DType, ckpt: bool) -> TrainLayout {
        TrainLayout {
            seq_len: 2048,
            micro_batch: micro,
            batch: 32,
            dtype,
            activation_checkpointing: ckpt,
        }
    }

    #[test]
    fn full_fine_tuning_holds_16_bytes_per_parameter_before_activations() {
        let e = training(&llama_7b(), &layout(32, DType::BF16, false));
        let states: u64 = e
            .parts
            .iter()
            .filter(|(p, _)| {
                ["weights", "master weights", "gradients", "optimizer state"].contains(p)
            })
            .map(|(_, b)| b)
            .sum();
        assert_eq!(states, 16 * 6_738_415_616);
    }

    #[test]
    fn checkpointing_and_micro_batches_shrink_activations() {
        let act = |l: &TrainLayout| {
            training(&llama_7b(), l)
                .parts
                .iter()
                .find(|(p, _)| *p == "activations")
                .map(|(_, b)| *b)
                .unwrap_or(0)
        };
        let full = act(&layout(32, DType::BF16, false));
        let micro = act(&layout(1, DType::BF16, false));
        let ckpt = act(&layout(1, DType::BF16, true));
        assert_eq!(full, 32 * micro);
        assert!(ckpt * 10 < micro, "{ckpt} vs {micro}");
    }

    #[test]
    fn a_13b_evaluation_in_bf16_fits_an_80_gb_card_and_f32_does_not() {
        let s = Shape {
            params: 13_015_864_320,
            layers: 40,
            hidden: 5120,
            mlp: 13824,
            heads: 40,
            kv_width: 5120,
            vocab: 32000,
        };
        let card = Some(80_000_000_000);
        let bf16 = inference(&s, DType::BF16, 16, 16 * 1024);
        assert!(check_fits(&bf16, card, "cuda:0", "").is_ok(), "{bf16}");
        let f32 = inference(&s, DType::F32, 16, 16 * 1024);
        let err = check_fits(&f32, card, "cuda:0", "use bf16").unwrap_err();
        assert!(err.to_string().contains("cuda:0 has 80.0 GB free"), "{err}");
        assert!(err.to_string().ends_with("use bf16"), "{err}");
    }

    #[test]
    fn shapes_come_from_config_json() {
        let llama = serde_json::json!({"hidden_size": 4096, "intermediate_size": 11008,
            "num_hidden_layers": 32, "num_attention_heads": 32, "vocab_size": 32000});
        assert_eq!(Shape::from_config(&llama, 6_738_415_616), Some(llama_7b()));
        let gpt2 =
            serde_json::json!({"n_embd": 1600, "n_layer": 48, "n_head": 25, "vocab_size": 50257});
        let s = Shape::from_config(&gpt2, 1).expect("gpt2 shape");
        assert_eq!((s.mlp, s.kv_width, s.layers), (6400, 1600, 48));
        assert_eq!(
            Shape::from_config(&serde_json::json!({"n_embd": 8}), 1),
            None
        );
    }

    #[test]
    fn sizes_parse_with_decimal_suffixes() {
        assert_eq!(parse_size("80G"), Some(80_000_000_000));
        assert_eq!(parse_size("80gb"), Some(80_000_000_000));
        assert_eq!(parse_size("1.5T"), Some(1_500_000_000_000));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1G"), None);
    }

    #[test]
    fn an_unknown_device_size_passes() {
        let e = training(&llama_7b(), &layout(1, DType::BF16, true));
        assert!(check_fits(&e, None, "cuda:0", "").is_ok());
    }

    #[test]
    fn the_display_names_every_part() {
        let e = training(&llama_7b(), &layout(4, DType::BF16, true));
        let s = e.to_string();
        for part in [
            "weights",
            "master weights",
            "gradients",
            "accumulated gradients",
            "optimizer state",
            "activations",
            "logits",
        ] {
            assert!(s.contains(part), "{part}: {s}");
        }
    }
}
