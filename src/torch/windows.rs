//! The window file: what repro hands the PyTorch trainer, so that it trains
//! on exactly the windows, order and schedule the candle trainer would use.
//!
//! `windows.safetensors` holds
//!
//! | tensor | dtype | shape | what |
//! | --- | --- | --- | --- |
//! | `ids` | I32 | `[windows, seq_len + 1]` | token ids of each window, zero-padded |
//! | `learn` | U8 | `[windows, seq_len + 1]` | 1 where the token is learned (as a target) |
//! | `lengths` | I32 | `[windows]` | tokens in each window (the last may be short) |
//! | `order` | I32 | `[steps, batch_size]` | the windows of each step's global batch |
//! | `lr` | F64 | `[steps]` | the learning rate of each step |
//!
//! with metadata `format` ([`WINDOWS_FORMAT`]) and `seq_len`. The windows come
//! from [`crate::model::train::pack`], the order from
//! [`crate::model::train::WindowOrder`] and the rates from
//! [`crate::model::train::lr_at`]: the candle trainer's own functions.

use super::{TorchError, ferr};
use crate::model::train::{TrainConfig, Window, WindowOrder, lr_at, total_steps};
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Layout version of `windows.safetensors`.
pub const WINDOWS_FORMAT: u32 = 1;

/// The steps of a run: which windows each step trains on and at what rate.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Window indices of each step's global batch.
    pub order: Vec<Vec<usize>>,
    /// Learning rate of each step.
    pub lr: Vec<f64>,
}

/// The schedule the candle trainer follows for `windows` windows and `cfg`.
pub fn schedule(windows: usize, cfg: &TrainConfig) -> Schedule {
    let total = total_steps(cfg, windows);
    let mut order = WindowOrder::new(windows, cfg.seed);
    Schedule {
        order: (0..total)
            .map(|_| order.next_batch(cfg.batch_size))
            .collect(),
        lr: (0..total).map(|s| lr_at(cfg, s, total)).collect(),
    }
}

/// The window file's tensors as bytes (little-endian), by name.
struct Tensors {
    data: BTreeMap<&'static str, (Dtype, Vec<usize>, Vec<u8>)>,
}

/// Writes `windows.safetensors` for `windows` (packed with `seq_len`) and
/// their `schedule`.
pub fn write(
    path: &Path,
    windows: &[Window],
    seq_len: usize,
    schedule: &Schedule,
) -> Result<(), TorchError> {
    let t = tensors(windows, seq_len, schedule).map_err(|e| ferr(path, e))?;
    let views: Vec<(&str, TensorView)> = t
        .data
        .iter()
        .map(|(k, (d, shape, bytes))| {
            TensorView::new(*d, shape.clone(), bytes)
                .map(|v| (*k, v))
                .map_err(|e| ferr(path, e))
        })
        .collect::<Result<_, _>>()?;
    let meta: HashMap<String, String> = [
        ("format".to_string(), WINDOWS_FORMAT.to_string()),
        ("seq_len".to_string(), seq_len.to_string()),
    ]
    .into();
    safetensors::tensor::serialize_to_file(views, Some(meta), path).map_err(|e| ferr(path, e))
}

fn tensors(windows: &[Window], seq_len: usize, s: &Schedule) -> Result<Tensors, String> {
    let width = seq_len + 1;
    let mut ids = Vec::with_capacity(windows.len() * width * 4);
    let mut learn = Vec::with_capacity(windows.len() * width);
    let mut lengths = Vec::with_capacity(windows.len() * 4);
    for w in windows {
        let n = w.ids().len();
        if n > width {
            return Err(format!(
                "a window of {n} tokens exceeds seq_len + 1 = {width}"
            ));
        }
        for j in 0..width {
            let id = w.ids().get(j).copied().unwrap_or(0);
            let id = i32::try_from(id).map_err(|_| format!("token id {id} exceeds i32"))?;
            ids.extend_from_slice(&id.to_le_bytes());
            learn.push(u8::from(w.learn().get(j).copied().unwrap_or(false)));
        }
        lengths.extend_from_slice(&(n as i32).to_le_bytes());
    }
    let batch = s.order.first().map_or(0, Vec::len);
    let mut order = Vec::with_capacity(s.order.len() * batch * 4);
    for step in &s.order {
        if step.len() != batch {
            return Err("every step must have the same batch size".into());
        }
        for &i in step {
            if i >= windows.len() {
                return Err(format!("step refers to window {i} of {}", windows.len()));
            }
            order.extend_from_slice(&(i as i32).to_le_bytes());
        }
    }
    let lr: Vec<u8> = s.lr.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut data = BTreeMap::new();
    data.insert("ids", (Dtype::I32, vec![windows.len(), width], ids));
    data.insert("learn", (Dtype::U8, vec![windows.len(), width], learn));
    data.insert("lengths", (Dtype::I32, vec![windows.len()], lengths));
    data.insert("order", (Dtype::I32, vec![s.order.len(), batch], order));
    data.insert("lr", (Dtype::F64, vec![s.lr.len()], lr));
    Ok(Tensors { data })
}

/// Trainer settings that are not in the window file.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    /// `bf16` (bf16 compute, f32 master weights and reductions) or `f32`.
    pub precision: String,
    /// Windows per forward pass on one process.
    pub micro_batch: usize,
    /// Steps between distributed checkpoints (0: none).
    pub checkpoint_every: usize,
    /// Recompute each block's activations in the backward pass.
    pub activation_checkpointing: bool,
    /// CPU threads per process (0: PyTorch's default).
    pub threads: usize,
}

/// `plan.json`: the optimizer and trainer settings, and the paths (the
/// window file relative to the plan's directory, `base` and `out` absolute).
pub fn plan_json(cfg: &TrainConfig, s: &PlanSettings, base: &Path, out: &Path) -> Value {
    json!({
        "format": 1,
        "windows": "windows.safetensors",
        "base": base.display().to_string(),
        "out": out.display().to_string(),
        "betas": [cfg.adamw.beta1, cfg.adamw.beta2],
        "eps": cfg.adamw.eps,
        "weight_decay": cfg.adamw.weight_decay,
        "clip": cfg.adamw.clip,
        "seed": cfg.seed,
        "precision": s.precision,
        "micro_batch": s.micro_batch,
        "checkpoint_every": s.checkpoint_every,
        "activation_checkpointing": s.activation_checkpointing,
        "threads": s.threads,
    })
}

/// A run directory ready for the trainer.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `plan.json`.
    pub plan: std::path::PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Windows in one epoch.
    pub windows: usize,
}

/// Packs `examples` as the candle trainer does, and writes
/// `windows.safetensors` and `plan.json` into `dir` for training `base`
/// into `out` (both made absolute).
pub fn prepare(
    dir: &Path,
    base: &Path,
    out: &Path,
    examples: &[crate::model::train::Example],
    cfg: &TrainConfig,
    settings: &PlanSettings,
) -> Result<Prepared, TorchError> {
    let windows = crate::model::train::pack(examples, cfg.seq_len);
    if windows.is_empty() {
        return Err(TorchError::File {
            path: dir.display().to_string(),
            message: "no training window has a token to learn (empty data?)".into(),
        });
    }
    std::fs::create_dir_all(dir).map_err(|e| ferr(dir, e))?;
    let abs = |p: &Path| std::path::absolute(p).map_err(|e| ferr(p, e));
    let s = schedule(windows.len(), cfg);
    write(&dir.join("windows.safetensors"), &windows, cfg.seq_len, &s)?;
    let plan = dir.join("plan.json");
    let text = serde_json::to_string_pretty(&plan_json(cfg, settings, &abs(base)?, &abs(out)?))
        .map_err(|e| ferr(&plan, e))?;
    std::fs::write(&plan, text + "\n").map_err(|e| ferr(&plan, e))?;
    Ok(Prepared {
        plan: abs(&plan)?,
        steps: s.order.len(),
        windows: windows.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::adamw::AdamWConfig;
    use crate::model::train::{Example, pack};

    fn cfg(batch: usize, epochs: f64) -> TrainConfig {
        TrainConfig {
            seq_len: 4,
            batch_size: batch,
            micro_batch_size: None,
            recompute: false,
            epochs,
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup: 0.1,
            adamw: AdamWConfig::default(),
            seed: 7,
        }
    }

    type Raw = HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

    fn read(path: &Path) -> (Raw, HashMap<String, String>) {
        let bytes = std::fs::read(path).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st
            .tensors()
            .into_iter()
            .map(|(k, v)| (k, (v.dtype(), v.shape().to_vec(), v.data().to_vec())))
            .collect();
        (t, meta.metadata().clone().unwrap_or_default())
    }

    fn i32s(b: &[u8]) -> Vec<i32> {
        b.chunks(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    #[test]
    fn window_file_holds_the_packed_windows_order_and_rates() {
        let ex = vec![
            Example {
                ids: (1..=7).collect(),
                learn: vec![false, false, true, true, true, false, true],
            },
            Example {
                ids: vec![20, 21, 22],
                learn: vec![false, true, true],
            },
        ];
        let c = cfg(2, 2.0);
        let windows = pack(&ex, c.seq_len);
        let s = schedule(windows.len(), &c);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("windows.safetensors");
        write(&p, &windows, c.seq_len, &s).unwrap();
        let (t, meta) = read(&p);
        assert_eq!(meta["format"], "1");
        assert_eq!(meta["seq_len"], "4");
        let (d, shape, ids) = &t["ids"];
        assert_eq!((*d, shape.clone()), (Dtype::I32, vec![windows.len(), 5]));
        let ids = i32s(ids);
        let learn = &t["learn"].2;
        let lengths = i32s(&t["lengths"].2);
        for (i, w) in windows.iter().enumerate() {
            let n = w.ids().len();
            assert_eq!(lengths[i] as usize, n);
            for j in 0..5 {
                let want = w.ids().get(j).map_or(0, |&x| x as i32);
                assert_eq!(ids[i * 5 + j], want);
                assert_eq!(learn[i * 5 + j] == 1, w.learn().get(j) == Some(&true));
            }
        }
        // The stream 1..7,20,21,22 in windows of 5 sharing a boundary token.
        assert_eq!(&ids[..5], &[1, 2, 3, 4, 5]);
        let order = i32s(&t["order"].2);
        assert_eq!(t["order"].1, vec![s.order.len(), 2]);
        let flat: Vec<i32> = s.order.iter().flatten().map(|&i| i as i32).collect();
        assert_eq!(order, flat);
        // Each epoch is a permutation of the windows.
        assert_eq!(windows.len(), 3);
        for epoch in order.chunks(3).filter(|c| c.len() == 3) {
            let mut e = epoch.to_vec();
            e.sort();
            assert_eq!(e, vec![0, 1, 2]);
        }
        let lr: Vec<f64> = t["lr"]
            .2
            .chunks(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let total = s.lr.len();
        for (i, x) in lr.iter().enumerate() {
            assert_eq!(*x, lr_at(&c, i, total));
        }
    }

    #[test]
    fn schedule_matches_the_candle_trainers_steps() {
        let c = cfg(3, 1.5);
        let s = schedule(5, &c);
        assert_eq!(s.order.len(), total_steps(&c, 5));
        assert_eq!(s.order.len(), 3); // ceil(1.5 * ceil(5 / 3))
        let mut o = WindowOrder::new(5, 7);
        for step in &s.order {
            assert_eq!(step, &o.next_batch(3));
        }
        let want: Vec<f64> = (0..3).map(|i| lr_at(&c, i, 3)).collect();
        assert_eq!(s.lr, want);
    }

    #[test]
    fn plan_names_every_setting_the_trainer_reads() {
        let s = PlanSettings {
            precision: "f32".into(),
            micro_batch: 2,
            checkpoint_every: 10,
            activation_checkpointing: true,
            threads: 1,
        };
        let p = plan_json(&cfg(2, 1.0), &s, Path::new("/b"), Path::new("/o"));
        for k in [
            "format",
            "windows",
            "base",
            "out",
            "betas",
            "eps",
            "weight_decay",
            "clip",
            "seed",
            "precision",
            "micro_batch",
            "checkpoint_every",
            "activation_checkpointing",
            "threads",
        ] {
            assert!(p.get(k).is_some(), "{k}");
        }
        assert_eq!(p["betas"], json!([0.9, 0.95]));
    }
}
