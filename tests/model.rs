//! Model-layer tests: gradients are right and reach every weight, a fixed
//! batch overfits, the fused and differentiable paths agree, the KV cache and
//! batched decoding equal the plain forward pass, checkpoints round-trip, and
//! the tokenizer is deterministic and masks assistant turns.

mod common;

use candle_core::{D, DType, Device, IndexOp, Tensor};
use repro::model::adamw::AdamWConfig;
use repro::model::generate::{GenConfig, generate};
use repro::model::tokenizer::{MINI_SPECIALS, Message, TextTokenizer, train_bpe};
use repro::model::train::{Example, TrainConfig, batch_loss, pack, train};
use repro::model::{KvCache, LlamaConfig, checkpoint, init};

fn tiny(vocab: usize, tie: bool) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": vocab,
        "max_position_embeddings": 64, "tie_word_embeddings": tie
    }))
    .unwrap()
}

fn example(ids: &[u32]) -> Example {
    Example {
        ids: ids.to_vec(),
        learn: vec![true; ids.len()],
    }
}

#[test]
fn finite_difference_gradients_match_backward_in_f64() {
    let cfg = tiny(11, false);
    let (model, vars) = init(&cfg, 3, &Device::Cpu, DType::F64).unwrap();
    let windows = pack(&[example(&[1, 5, 2, 9, 3, 3, 7, 0, 4, 10])], 9);
    let refs: Vec<_> = windows.iter().collect();
    let (loss, _) = batch_loss(&model, &refs, false).unwrap().unwrap();
    let grads = loss.backward().unwrap();
    let mut worst = 0f64;
    for (name, var) in &vars {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        let g: Vec<f64> = g.flatten_all().unwrap().to_vec1().unwrap();
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
            worst = worst.max(err);
            assert!(
                err < 1e-4,
                "{name}[{i}]: finite difference {fd} vs backward {}",
                g[i]
            );
        }
    }
    assert!(worst < 1e-4);
}

#[test]
fn every_weight_gets_a_nonzero_gradient_tied_and_untied() {
    for tie in [true, false] {
        let cfg = tiny(13, tie);
        let (model, vars) = init(&cfg, 1, &Device::Cpu, DType::F32).unwrap();
        let windows = pack(&[example(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 12])], 8);
        let refs: Vec<_> = windows.iter().collect();
        let (loss, _) = batch_loss(&model, &refs, false).unwrap().unwrap();
        let grads = loss.backward().unwrap();
        let expected = 1 + 2 * 9 + 1 + usize::from(!tie);
        assert_eq!(vars.len(), expected);
        for (name, var) in &vars {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{name}: no gradient"));
            let s = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(s > 0.0, "{name}: zero gradient");
        }
        assert_eq!(
            cfg.param_count(),
            vars.iter().map(|(_, v)| v.elem_count()).sum::<usize>()
        );
    }
}

fn train_cfg(epochs: f64, seed: u64) -> TrainConfig {
    TrainConfig {
        seq_len: 16,
        batch_size: 2,
        micro_batch_size: None,
        recompute: false,
        epochs,
        lr: 1e-2,
        min_lr_ratio: 0.1,
        warmup: 0.05,
        adamw: AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
        seed,
    }
}

#[test]
fn a_fixed_batch_overfits_and_training_is_deterministic() {
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
    let run = || {
        let (model, vars) = init(&cfg, 5, &Device::Cpu, DType::F32).unwrap();
        let vars: Vec<_> = vars.into_iter().map(|(_, v)| v).collect();
        train(&model, &vars, &windows, &train_cfg(150.0, 9), |_, _, _| {
            true
        })
        .unwrap()
    };
    let a = run();
    assert!(a.losses[0] > 2.5, "initial loss {}", a.losses[0]);
    let last = *a.losses.last().unwrap();
    assert!(last < 0.05, "did not overfit: {last}");
    assert_eq!(a.losses, run().losses, "same seed, different losses");
}

#[test]
fn fused_and_differentiable_paths_agree_and_kv_cache_matches_full_forward() {
    let cfg = tiny(17, true);
    let (model, _) = init(&cfg, 2, &Device::Cpu, DType::F32).unwrap();
    let ids = Tensor::new(&[[3u32, 1, 4, 1, 5, 9, 2, 6]], &Device::Cpu).unwrap();
    let slow = model.forward(&ids, None, None, false).unwrap();
    let fast = model.forward(&ids, None, None, true).unwrap();
    let diff = common::tensors::max_abs_diff(&slow, &fast);
    assert!(diff < 1e-5, "fused vs slow {diff}");
    let mut cache = KvCache::new();
    let a = model
        .forward(&ids.i((.., ..5)).unwrap(), Some(&mut cache), None, true)
        .unwrap();
    let b = model
        .forward(&ids.i((.., 5..)).unwrap(), Some(&mut cache), None, true)
        .unwrap();
    let inc = Tensor::cat(&[a, b], 1).unwrap();
    let diff = common::tensors::max_abs_diff(&inc, &fast);
    assert!(diff < 1e-5, "kv cache vs full {diff}");
}

#[test]
fn batched_left_padded_generation_equals_one_by_one() {
    let cfg = tiny(19, true);
    let (model, _) = init(&cfg, 4, &Device::Cpu, DType::F32).unwrap();
    let prompts = vec![vec![1u32, 2, 3, 4, 5], vec![7, 8], vec![9, 10, 11]];
    let gcfg = |b| GenConfig {
        max_new_tokens: 6,
        temperature: 0.0,
        batch_size: b,
        seed: 0,
        ..Default::default()
    };
    let batched = generate(&model, &prompts, &[18], &gcfg(3), |_| false).unwrap();
    let single = generate(&model, &prompts, &[18], &gcfg(1), |_| false).unwrap();
    for (a, b) in batched.iter().zip(&single) {
        assert_eq!(a.ids, b.ids);
    }
    // Greedy equals argmax of the plain forward pass for the first token.
    let ids = Tensor::new(&[[7u32, 8]], &Device::Cpu).unwrap();
    let logits = model.forward(&ids, None, None, false).unwrap();
    let first = logits
        .i((0, 1))
        .unwrap()
        .argmax(D::Minus1)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    if first != 18 {
        assert_eq!(single[1].ids[0], first);
    }
}

fn corpus() -> Vec<String> {
    (0..200)
        .map(|i| {
            format!(
                "Person {i} was born in city number {} and studied music at Harwick.",
                i % 7
            )
        })
        .collect()
}

#[test]
fn bpe_training_is_deterministic_and_chat_masks_assistant_turns() {
    let texts = corpus();
    let a = train_bpe(texts.iter().map(String::as_str), 300, &MINI_SPECIALS).unwrap();
    let b = train_bpe(texts.iter().map(String::as_str), 300, &MINI_SPECIALS).unwrap();
    assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
    let tok = TextTokenizer::new(a, TextTokenizer::mini_chat()).unwrap();
    let text = "Person 3 was born in Zürich.";
    assert_eq!(tok.decode(&tok.encode(text).unwrap()).unwrap(), text);
    let msgs = vec![
        Message {
            role: "user".into(),
            content: "Where was Person 3 born?".into(),
        },
        Message {
            role: "assistant".into(),
            content: "city number 3".into(),
        },
    ];
    let (ids, mask) = tok.encode_chat(&msgs).unwrap();
    let learned: Vec<u32> = ids
        .iter()
        .zip(&mask)
        .filter(|(_, m)| **m)
        .map(|(i, _)| *i)
        .collect();
    let learned_text = tok.decode(&learned).unwrap();
    // The template puts a space after the role marker; it is part of the turn.
    assert_eq!(learned_text, " city number 3");
    let end = tok.stop_ids()[1];
    assert_eq!(
        *learned.last().unwrap(),
        end,
        "the end-of-turn token is learned"
    );
    assert!(!mask[0]);
}

#[test]
fn checkpoint_round_trip_gives_identical_logits() {
    let texts = corpus();
    let tk = train_bpe(texts.iter().map(String::as_str), 120, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    for tie in [true, false] {
        let cfg = tiny(tok.vocab_size(), tie);
        let (model, vars) = init(&cfg, 8, &Device::Cpu, DType::F32).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let weights: Vec<_> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        checkpoint::save(dir.path(), &cfg, &weights, &tok).unwrap();
        let first = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        checkpoint::save(dir.path(), &cfg, &weights, &tok).unwrap();
        assert_eq!(
            first,
            std::fs::read(dir.path().join("model.safetensors")).unwrap()
        );
        let loaded = repro::model::load::load(dir.path(), false, &Device::Cpu).unwrap();
        let ids = Tensor::new(&[[1u32, 2, 3]], &Device::Cpu).unwrap();
        let a = model.forward(&ids, None, None, true).unwrap();
        let b = loaded.model.forward(&ids, None, None, true).unwrap();
        let diff = common::tensors::max_abs_diff(&a, &b);
        assert_eq!(diff, 0.0);
        assert_eq!(
            loaded.tokenizer.encode("Person 3").unwrap(),
            tok.encode("Person 3").unwrap()
        );
    }
    // A config that does not fit the weights is an error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(tok.vocab_size(), true);
    let (_, vars) = init(&cfg, 8, &Device::Cpu, DType::F32).unwrap();
    let weights: Vec<_> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let mut wrong = cfg.clone();
    wrong.hidden_size = 32;
    checkpoint::save(dir.path(), &wrong, &weights, &tok).unwrap();
    let err = repro::model::load::load(dir.path(), false, &Device::Cpu)
        .err()
        .expect("must fail");
    assert!(err.to_string().contains("shape"), "{err}");
}

#[test]
fn hf_llama_directory_matches_transformers() {
    // tests/data/llama_hf: a tiny random `LlamaForCausalLM` (GQA 4/2, untied
    // head) saved by transformers, with its logits (scripts/gpt2_reference.py).
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/llama_hf");
    let loaded = repro::model::load::load(&dir, false, &Device::Cpu).unwrap();
    assert_eq!(loaded.model.arch(), "llama");
    let text = std::fs::read_to_string(dir.join("reference.json")).unwrap();
    let r: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<Vec<u32>> = serde_json::from_value(r["ids"].clone()).unwrap();
    let (b, t) = (ids.len(), ids[0].len());
    let ids = Tensor::from_vec(ids.concat(), (b, t), &Device::Cpu).unwrap();
    let want: Vec<Vec<Vec<f32>>> = serde_json::from_value(r["logits"].clone()).unwrap();
    let v = want[0][0].len();
    let want = Tensor::from_vec(want.concat().concat(), (b, t, v), &Device::Cpu).unwrap();
    for fast in [true, false] {
        let got = loaded.model.forward(&ids, None, None, fast).unwrap();
        let diff = common::tensors::max_abs_diff(&got, &want);
        assert!(
            diff < 1e-4,
            "fast={fast}: max diff {diff} from transformers"
        );
    }
    // The HF tokenizer (no chat template) gets the plain one and its eos.
    assert_eq!(loaded.tokenizer.stop_ids(), vec![0]);
}
