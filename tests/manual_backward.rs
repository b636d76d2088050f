//! The hand-written training step (`model::manual`) against candle's
//! autograd on the same model: loss and every weight's gradient agree in f64
//! (grouped-query and plain attention, tied and untied heads, padded batches
//! with partial learn masks, non-default RoPE theta and norm epsilon),
//! gradients are bit-identical across runs and thread counts, and training
//! with either engine gives the same losses.

use candle_core::{DType, Device};
use repro::model::adamw::AdamWConfig;
use repro::model::manual::ManualStep;
use repro::model::train::{
    Engine, Example, TrainConfig, Window, batch_loss, pack, token_batch, train_with,
};
use repro::model::{LlamaConfig, init};

fn cfg(heads: usize, kv: usize, tie: bool, layers: usize) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "vocab_size": 19,
        "max_position_embeddings": 64, "tie_word_embeddings": tie,
        "rope_theta": 500.0, "rms_norm_eps": 1e-4
    }))
    .unwrap()
}

/// Examples of different lengths with partly learned tokens, packed into
/// windows of 8 (the last window is short, so the batch is padded).
fn windows() -> Vec<Window> {
    windows_of(&[9, 6, 7], 8)
}

fn windows_of(lens: &[u32], seq: usize) -> Vec<Window> {
    let ex = |k: u32, len: u32| Example {
        ids: (0..len).map(|i| (i * 7 + k * 5 + 1) % 19).collect(),
        learn: (0..len).map(|i| !(i + k).is_multiple_of(3)).collect(),
    };
    let data: Vec<Example> = lens
        .iter()
        .enumerate()
        .map(|(k, &l)| ex(k as u32, l))
        .collect();
    pack(&data, seq)
}

fn flat(t: &candle_core::Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn loss_and_gradients_match_autograd_in_f64() {
    let ws = windows();
    assert!(
        ws.iter().any(|w| w.positions() < 8),
        "the batch must be padded"
    );
    // Windows of 45 positions span two attention row blocks (32 + 13).
    let long = windows_of(&[50, 30, 40], 45);
    assert!(long.iter().any(|w| w.positions() == 45));
    for (heads, kv, tie, ws) in [
        (4, 2, false, &ws),
        (4, 2, true, &ws),
        (2, 2, true, &ws),
        (4, 1, false, &ws),
        (4, 2, false, &long),
    ] {
        let refs: Vec<&Window> = ws.iter().collect();
        let tb = token_batch(&refs).unwrap();
        assert!(tb.rows.len() < tb.b * tb.t, "the batch must mask some rows");
        let c = cfg(heads, kv, tie, 2);
        let (model, vars) = init(&c, 7, &Device::Cpu, DType::F64).unwrap();
        let (loss, _) = batch_loss(&model, &refs, false).unwrap().unwrap();
        let grads = loss.backward().unwrap();
        let mut m = ManualStep::<f64>::new(&model).unwrap();
        let ml = m.forward(&tb).unwrap().unwrap();
        m.backward().unwrap();
        let al = loss.to_scalar::<f64>().unwrap();
        assert!((ml - al).abs() < 1e-12, "loss {ml} vs autograd {al}");
        let mine = m.grad_store().unwrap();
        for (name, var) in &vars {
            let a = flat(grads.get(var.as_tensor()).unwrap());
            let b = flat(mine.get(var.as_tensor()).unwrap());
            let scale = a.iter().fold(0f64, |s, x| s.max(x.abs())).max(1e-12);
            let err = a
                .iter()
                .zip(&b)
                .fold(0f64, |s, (x, y)| s.max((x - y).abs()));
            assert!(
                err / scale < 1e-10,
                "{heads}/{kv} tie={tie} {name}: max diff {err} (scale {scale})"
            );
            assert!(scale > 1e-9, "{name}: zero gradient");
        }
    }
}

fn manual_grads(model: &repro::model::Llama, ws: &[Window], threads: usize) -> Vec<Vec<f32>> {
    let refs: Vec<&Window> = ws.iter().collect();
    let tb = token_batch(&refs).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut m = ManualStep::<f32>::new(model).unwrap();
        m.forward(&tb).unwrap();
        m.backward().unwrap();
        m.params()
            .iter()
            .map(|p| m.grad_of(p).unwrap().to_vec())
            .collect()
    })
}

#[test]
fn gradients_are_bit_identical_across_runs_and_thread_counts() {
    let (model, _) = init(&cfg(4, 2, true, 2), 3, &Device::Cpu, DType::F32).unwrap();
    let ws = windows();
    let one = manual_grads(&model, &ws, 1);
    assert_eq!(one, manual_grads(&model, &ws, 1));
    assert_eq!(one, manual_grads(&model, &ws, 2));
    assert_eq!(one, manual_grads(&model, &ws, 3));
    // Big enough that gemm splits the products over threads.
    let big: LlamaConfig = serde_json::from_value(serde_json::json!({
        "hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    }))
    .unwrap();
    let (model, _) = init(&big, 3, &Device::Cpu, DType::F32).unwrap();
    let long: Vec<Window> = pack(
        &[Example {
            ids: (0..400u32).map(|i| (i * 37 + 11) % 300).collect(),
            learn: (0..400).map(|i| i % 5 != 0).collect(),
        }],
        64,
    );
    let one = manual_grads(&model, &long, 1);
    assert_eq!(one, manual_grads(&model, &long, 2));
}

#[test]
fn training_losses_match_the_autograd_engine() {
    let ws = windows();
    let tcfg = TrainConfig {
        seq_len: 8,
        batch_size: 2,
        micro_batch_size: None,
        recompute: false,
        epochs: 4.0,
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup: 0.1,
        adamw: AdamWConfig::default(),
        seed: 4,
    };
    let run = |engine| {
        let (model, vars) = init(&cfg(4, 2, false, 2), 5, &Device::Cpu, DType::F32).unwrap();
        let vars: Vec<_> = vars.into_iter().map(|(_, v)| v).collect();
        train_with(&model, &vars, &ws, &tcfg, engine, |_, _, _| true).unwrap()
    };
    let a = run(Engine::Autograd);
    let m = run(Engine::Manual);
    assert_eq!(a.steps, m.steps);
    assert!(a.steps >= 4);
    for (x, y) in a.losses.iter().zip(&m.losses) {
        assert!((x - y).abs() < 1e-4 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(m.losses, run(Engine::Manual).losses);
}
