//! GPT-2 model tests: the logits of a tiny random `transformers` GPT-2
//! (tests/data/gpt2, made by scripts/gpt2_reference.py) are reproduced;
//! checkpoints with HF names (Conv1D layout, with or without the
//! `transformer.` prefix, single or sharded) round-trip; the KV cache, the
//! training path and batched decoding agree with the plain forward pass;
//! gradients are right (f64 finite differences) and a fixed batch overfits;
//! a malformed `config.json` is an error naming the file and the key.

use candle_core::{D, DType, Device, IndexOp, Tensor};
use repro::model::adamw::AdamWConfig;
use repro::model::generate::{GenConfig, generate};
use repro::model::gpt2::{Gpt2Config, init};
use repro::model::llama::MASKED;
use repro::model::load::{load, load_tokenizer};
use repro::model::tokenizer::TextTokenizer;
use repro::model::train::{Example, TrainConfig, batch_loss, pack, train};
use repro::model::{CausalLm, KvCache, checkpoint};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gpt2")
}

fn tokenizer() -> TextTokenizer {
    load_tokenizer(&fixture(), &serde_json::Map::new()).unwrap()
}

fn tiny(vocab: usize, tie: bool) -> Gpt2Config {
    serde_json::from_value(json!({
        "vocab_size": vocab, "n_positions": 32, "n_embd": 16, "n_layer": 2, "n_head": 2,
        "n_inner": 24, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
        "tie_word_embeddings": tie, "scale_attn_weights": true,
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"
    }))
    .unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn ids(rows: &[&[u32]]) -> Tensor {
    let t = rows[0].len();
    let flat: Vec<u32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu).unwrap()
}

fn tensor3(v: &Value) -> Tensor {
    let rows: Vec<Vec<Vec<f32>>> = serde_json::from_value(v.clone()).unwrap();
    let (b, t, n) = (rows.len(), rows[0].len(), rows[0][0].len());
    let flat: Vec<f32> = rows.into_iter().flatten().flatten().collect();
    Tensor::from_vec(flat, (b, t, n), &Device::Cpu).unwrap()
}

fn pad_mask(pads: &[usize], t: usize) -> Tensor {
    let mut data = Vec::new();
    for &p in pads {
        for i in 0..t {
            for j in 0..t {
                data.push(if j < p || j > i { MASKED } else { 0.0 });
            }
        }
    }
    Tensor::from_vec(data, (pads.len(), 1, t, t), &Device::Cpu).unwrap()
}

#[test]
fn reference_logits_match_transformers() {
    let loaded = load(&fixture(), false, &Device::Cpu).unwrap();
    let model = loaded.model.as_ref();
    assert_eq!(model.arch(), "gpt2");
    assert_eq!(model.max_positions(), Some(24));
    let text = std::fs::read_to_string(fixture().join("reference.json")).unwrap();
    let r: Value = serde_json::from_str(&text).unwrap();
    let input: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let input = ids(&input.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let want = tensor3(&r["logits"]);
    for fast in [true, false] {
        let got = model.forward(&input, None, None, fast).unwrap();
        let d = max_diff(&got, &want);
        eprintln!("fast={fast}: max |ours - transformers| = {d:e}");
        assert!(d < 1e-4, "fast={fast}: max diff {d} from transformers");
    }
    // Left padding: positions restart at each row's first real token.
    let padded: Vec<Vec<u32>> = serde_json::from_value(r["padded_ids"].clone()).unwrap();
    let pads: Vec<usize> = serde_json::from_value(r["padded_pads"].clone()).unwrap();
    let input = ids(&padded.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let want = tensor3(&r["padded_logits"]);
    let h = model
        .hidden_padded(&input, None, Some(&pad_mask(&pads, 8)), &pads, true)
        .unwrap();
    let got = model.logits(&h).unwrap();
    for (row, &p) in pads.iter().enumerate() {
        let d = max_diff(&got.i((row, p..)).unwrap(), &want.i((row, p..)).unwrap());
        assert!(d < 1e-4, "padded row {row}: max diff {d}");
    }
    // Greedy decoding with the KV cache equals transformers' generate.
    let prompt: Vec<u32> = serde_json::from_value(r["greedy_prompt"].clone()).unwrap();
    let expect: Vec<u32> = serde_json::from_value(r["greedy_new"].clone()).unwrap();
    let cfg = GenConfig {
        max_new_tokens: expect.len(),
        temperature: 0.0,
        batch_size: 1,
        seed: 0,
        ..Default::default()
    };
    let got = generate(model, &[prompt], &[], &cfg, |_| false).unwrap();
    assert_eq!(got[0].ids, expect);
}

fn save_random(dir: &Path, cfg: &Gpt2Config, seed: u64) -> Vec<(String, Tensor)> {
    let (_, vars) = init(cfg, seed, &Device::Cpu, DType::F32).unwrap();
    let weights: Vec<_> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    checkpoint::save(dir, cfg, &weights, &tokenizer()).unwrap();
    weights
}

fn logits_of(dir: &Path) -> Tensor {
    let loaded = load(dir, false, &Device::Cpu).unwrap();
    let x = ids(&[&[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, 12]]);
    loaded.model.forward(&x, None, None, true).unwrap()
}

#[test]
fn save_and_reload_with_hf_names_prefixless_and_sharded() {
    for tie in [true, false] {
        let cfg = tiny(64, tie);
        let dir = tempfile::tempdir().unwrap();
        let weights = save_random(dir.path(), &cfg, 3);
        let (model, _) = init(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
        let x = ids(&[&[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, 12]]);
        let want = model.forward(&x, None, None, true).unwrap();
        assert_eq!(max_diff(&logits_of(dir.path()), &want), 0.0);
        // The Conv1D layout: c_attn is (in, out) = (16, 48).
        let w = weights
            .iter()
            .find(|(n, _)| n == "transformer.h.0.attn.c_attn.weight")
            .unwrap();
        assert_eq!(w.1.dims(), &[16, 48]);
        assert_eq!(
            weights.iter().any(|(n, _)| n == "lm_head.weight"),
            !tie,
            "the tied head is not stored"
        );

        // Without the `transformer.` prefix (as GPT-2 hub checkpoints are).
        let bare = tempfile::tempdir().unwrap();
        std::fs::copy(
            dir.path().join("config.json"),
            bare.path().join("config.json"),
        )
        .unwrap();
        for f in ["tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(dir.path().join(f), bare.path().join(f)).unwrap();
        }
        let stripped: BTreeMap<String, &Tensor> = weights
            .iter()
            .map(|(n, t)| (n.trim_start_matches("transformer.").to_string(), t))
            .collect();
        safetensors::tensor::serialize_to_file(
            stripped,
            None,
            &bare.path().join("model.safetensors"),
        )
        .unwrap();
        assert_eq!(max_diff(&logits_of(bare.path()), &want), 0.0);

        // Sharded: two files and model.safetensors.index.json.
        let sharded = tempfile::tempdir().unwrap();
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            std::fs::copy(dir.path().join(f), sharded.path().join(f)).unwrap();
        }
        let mut map = serde_json::Map::new();
        let (a, b): (Vec<_>, Vec<_>) = weights.iter().partition(|(n, _)| n.contains(".h.0."));
        for (file, part) in [
            ("model-00001-of-00002.safetensors", a),
            ("model-00002-of-00002.safetensors", b),
        ] {
            let m: BTreeMap<&str, &Tensor> = part.iter().map(|(n, t)| (n.as_str(), t)).collect();
            for n in m.keys() {
                map.insert(n.to_string(), json!(file));
            }
            safetensors::tensor::serialize_to_file(m, None, &sharded.path().join(file)).unwrap();
        }
        let index = json!({"metadata": {}, "weight_map": map});
        std::fs::write(
            sharded.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        assert_eq!(max_diff(&logits_of(sharded.path()), &want), 0.0);
    }
}

#[test]
fn kv_cache_and_training_path_equal_the_fast_forward() {
    let cfg = tiny(40, true);
    let (model, _) = init(&cfg, 2, &Device::Cpu, DType::F32).unwrap();
    let x = ids(&[
        &[3, 1, 4, 1, 5, 9, 2, 6, 5, 3],
        &[2, 7, 1, 8, 2, 8, 1, 8, 2, 8],
    ]);
    let fast = model.forward(&x, None, None, true).unwrap();
    let slow = model.forward(&x, None, None, false).unwrap();
    assert!(max_diff(&fast, &slow) < 1e-5, "training vs fast path");
    let mut cache = KvCache::new();
    let mut parts = Vec::new();
    for (a, b) in [(0, 4), (4, 5), (5, 10)] {
        parts.push(
            model
                .forward(&x.i((.., a..b)).unwrap(), Some(&mut cache), None, true)
                .unwrap(),
        );
    }
    assert_eq!(cache.len(), 10);
    let inc = Tensor::cat(&parts, 1).unwrap();
    assert!(max_diff(&inc, &fast) < 1e-5, "kv cache vs full forward");
    // Past the learned positions is an error, not a panic.
    let long = Tensor::zeros((1, 33), DType::U32, &Device::Cpu).unwrap();
    let err = model.forward(&long, None, None, true).unwrap_err();
    assert!(err.to_string().contains("n_positions"), "{err}");
}

#[test]
fn batched_left_padded_generation_equals_one_by_one() {
    let cfg = tiny(30, true);
    let (model, _) = init(&cfg, 4, &Device::Cpu, DType::F32).unwrap();
    let prompts = vec![vec![1u32, 2, 3, 4, 5], vec![7, 8], vec![9, 10, 11]];
    let gcfg = |b| GenConfig {
        max_new_tokens: 6,
        temperature: 0.0,
        batch_size: b,
        seed: 0,
        ..Default::default()
    };
    let batched = generate(&model, &prompts, &[29], &gcfg(3), |_| false).unwrap();
    let single = generate(&model, &prompts, &[29], &gcfg(1), |_| false).unwrap();
    for (a, b) in batched.iter().zip(&single) {
        assert_eq!(a.ids, b.ids);
    }
    let x = ids(&[&[7, 8]]);
    let first = model
        .forward(&x, None, None, false)
        .unwrap()
        .i((0, 1))
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    if first != 29 {
        assert_eq!(single[1].ids[0], first);
    }
}

fn example(ids: &[u32]) -> Example {
    Example {
        ids: ids.to_vec(),
        learn: vec![true; ids.len()],
    }
}

#[test]
fn finite_difference_gradients_match_backward_in_f64() {
    for tie in [false, true] {
        let cfg = tiny(11, tie);
        let (model, vars) = init(&cfg, 3, &Device::Cpu, DType::F64).unwrap();
        let windows = pack(&[example(&[1, 5, 2, 9, 3, 3, 7, 0, 4, 10])], 9);
        let refs: Vec<_> = windows.iter().collect();
        let (loss, _) = batch_loss(&model, &refs, false).unwrap().unwrap();
        let grads = loss.backward().unwrap();
        assert_eq!(
            cfg.param_count(),
            vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>()
        );
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
            assert!(g.iter().any(|x| *x != 0.0), "{name}: zero gradient");
            let w0: Vec<f64> = var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
            for &i in &[0, w0.len() / 2, w0.len() - 1] {
                let eps = 1e-6;
                let eval = |delta: f64| {
                    let mut w = w0.clone();
                    w[i] += delta;
                    var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap())
                        .unwrap();
                    let (l, _) = batch_loss(&model, &refs, false).unwrap().unwrap();
                    l.to_scalar::<f64>().unwrap()
                };
                let fd = (eval(eps) - eval(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(w0.clone(), var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
                let err = (fd - g[i]).abs() / (fd.abs().max(g[i].abs()).max(1e-4));
                assert!(
                    err < 1e-4,
                    "tie={tie} {name}[{i}]: finite difference {fd} vs backward {}",
                    g[i]
                );
            }
        }
    }
}

#[test]
fn a_fixed_batch_overfits_through_the_shared_train_loop() {
    let cfg = tiny(20, true);
    let data: Vec<Example> = (0..4)
        .map(|k| {
            example(
                &(0..17)
                    .map(|i| ((i * 7 + k * 3) % 20) as u32)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let windows = pack(&data, 16);
    let tcfg = TrainConfig {
        seq_len: 16,
        batch_size: 2,
        micro_batch_size: None,
        recompute: false,
        epochs: 150.0,
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup: 0.05,
        adamw: AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
        seed: 9,
    };
    let run = || {
        let (model, vars) = init(&cfg, 5, &Device::Cpu, DType::F32).unwrap();
        let vars: Vec<_> = vars.into_iter().map(|(_, v)| v).collect();
        train(&model, &vars, &windows, &tcfg, |_, _, _| true).unwrap()
    };
    let a = run();
    assert!(a.losses[0] > 2.5, "initial loss {}", a.losses[0]);
    let last = *a.losses.last().unwrap();
    assert!(last < 0.05, "did not overfit: {last}");
    assert_eq!(a.losses, run().losses, "same seed, different losses");
}

/// Writes the fixture with `edit` applied to its config and returns the
/// load error.
fn config_error(edit: impl Fn(&mut serde_json::Map<String, Value>)) -> String {
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut cfg: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    edit(&mut cfg);
    std::fs::write(
        dir.path().join("config.json"),
        Value::Object(cfg).to_string(),
    )
    .unwrap();
    match load(dir.path(), false, &Device::Cpu) {
        Ok(_) => panic!("a malformed config loaded"),
        Err(e) => e.to_string(),
    }
}

/// A change to a config object.
type Edit = dyn Fn(&mut serde_json::Map<String, Value>);

#[test]
fn malformed_config_is_an_error_naming_file_and_key() {
    let cases: Vec<(&str, Box<Edit>)> = vec![
        (
            "n_embd",
            Box::new(|c| {
                c.remove("n_embd");
            }),
        ),
        (
            "n_head",
            Box::new(|c| {
                c.insert("n_head".into(), json!("two"));
            }),
        ),
        (
            "n_head",
            Box::new(|c| {
                c.insert("n_head".into(), json!(3));
            }),
        ),
        (
            "layer_norm_epsilon",
            Box::new(|c| {
                c.insert("layer_norm_epsilon".into(), json!([1]));
            }),
        ),
        (
            "activation_function",
            Box::new(|c| {
                c.insert("activation_function".into(), json!("swiglu"));
            }),
        ),
        (
            "model_type",
            Box::new(|c| {
                c.insert("model_type".into(), json!("bert"));
            }),
        ),
        (
            "model_type",
            Box::new(|c| {
                c.remove("model_type");
                c.insert("architectures".into(), json!(["BertModel"]));
            }),
        ),
    ];
    for (key, edit) in cases {
        let err = config_error(edit);
        assert!(err.contains("config.json"), "{err}");
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
    }
    let err = config_error(|c| {
        c.insert("model_type".into(), json!("bert"));
    });
    assert!(
        err.contains("gpt2") && err.contains("llama"),
        "lists the supported: {err}"
    );
    // Architecture from `architectures` alone works.
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
    ] {
        std::fs::copy(fixture().join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(fixture().join("config.json")).unwrap();
    let mut cfg: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
    cfg.remove("model_type");
    std::fs::write(
        dir.path().join("config.json"),
        Value::Object(cfg).to_string(),
    )
    .unwrap();
    assert_eq!(
        load(dir.path(), false, &Device::Cpu).unwrap().model.arch(),
        "gpt2"
    );
    // Weights that do not fit the config are an error too.
    let err = config_error(|c| {
        c.insert("n_embd".into(), json!(32));
    });
    assert!(err.contains("shape"), "{err}");
}

#[test]
fn hf_tokenizer_gets_a_plain_chat_template_and_eos() {
    let tok = tokenizer();
    assert_eq!(tok.stop_ids(), vec![0]);
    let msgs = vec![
        repro::model::tokenizer::Message {
            role: "user".into(),
            content: "w3 w4".into(),
        },
        repro::model::tokenizer::Message {
            role: "assistant".into(),
            content: "w5".into(),
        },
    ];
    let text = tok.render_chat(&msgs, false).unwrap();
    assert_eq!(text, "User: w3 w4\nAssistant: w5<|endoftext|>");
    let prompt = tok.render_chat(&msgs[..1], true).unwrap();
    assert_eq!(prompt, "User: w3 w4\nAssistant:");
}

#[test]
fn a_loaded_gpt2_trains_and_saves_through_the_model_trait() {
    // What lm.finetune does: load trainable, train, save config_json + vars.
    let loaded = load(&fixture(), true, &Device::Cpu).unwrap();
    assert_eq!(loaded.vars.len(), 2 + 2 * 12 + 2);
    let vars: Vec<_> = loaded.vars.iter().map(|(_, v)| v.clone()).collect();
    let data = vec![example(&[
        5, 17, 3, 60, 1, 42, 8, 9, 5, 17, 3, 60, 1, 42, 8, 9,
    ])];
    let windows = pack(&data, 8);
    let tcfg = TrainConfig {
        seq_len: 8,
        batch_size: 2,
        micro_batch_size: None,
        recompute: false,
        epochs: 20.0,
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup: 0.05,
        adamw: AdamWConfig::default(),
        seed: 1,
    };
    let report = train(loaded.model.as_ref(), &vars, &windows, &tcfg, |_, _, _| {
        true
    })
    .unwrap();
    assert!(report.losses.last().unwrap() < &report.losses[0]);
    let dir = tempfile::tempdir().unwrap();
    let weights: Vec<_> = loaded
        .vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let text = loaded.model.config_json().unwrap();
    checkpoint::save_text(dir.path(), &text, &weights, &loaded.tokenizer).unwrap();
    let x = ids(&[&[1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, 12]]);
    let want = loaded.model.forward(&x, None, None, true).unwrap();
    assert_eq!(max_diff(&logits_of(dir.path()), &want), 0.0);
    assert_eq!(
        loaded.model.param_count(),
        weights.iter().map(|(_, t)| t.elem_count()).sum::<usize>()
    );
}

#[test]
fn lm_pretrain_builds_a_gpt2_when_asked() {
    use repro::ops::lm_pretrain::{PretrainModel, model_config};
    let params = |m: Value| {
        json!({"model": m, "seq_len": 64})
            .as_object()
            .unwrap()
            .clone()
    };
    let p = params(json!({"model_type": "gpt2", "n_embd": 16, "n_layer": 2, "n_head": 2}));
    match model_config(&p, 100).unwrap() {
        PretrainModel::Gpt2(c) => {
            assert_eq!((c.vocab_size, c.n_positions, c.inner()), (100, 256, 64));
            assert_eq!(c.activation_function, "gelu_new");
        }
        other => panic!("expected a GPT-2, got {other:?}"),
    }
    let p = params(json!({"model_type": "gpt2", "n_embd": 16, "n_layer": 2}));
    let err = model_config(&p, 100).unwrap_err();
    assert!(err.contains("`n_head`"), "{err}");
    let p = params(
        json!({"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1,
        "num_attention_heads": 2}),
    );
    assert!(matches!(
        model_config(&p, 100).unwrap(),
        PretrainModel::Llama(_)
    ));
}
