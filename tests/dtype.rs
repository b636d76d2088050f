//! Half precision at the model layer, on the CPU: the same weights in bf16
//! give logits within a stated tolerance of f32 and the same greedy answers
//! on a fixed prompt set (a tiny LLaMA, a tiny GPT-2, and SmolLM2-135M when
//! `data/external/` has it); f16 stays finite on left-padded batches, whose
//! padding rows see nothing (the -1e9 mask is -inf in f16); the loaders take
//! a dtype and keep f32 by default.
//!
//! Tolerances. bf16 keeps 8 significant bits (relative rounding 2^-9), and
//! its error adds up over the layers, so logits are compared relative to the
//! largest f32 logit: at most [`TINY_TOLERANCE`] for the tiny models (N(0,
//! 0.1) weights), at most [`SMOL_TOLERANCE`] for SmolLM2 (30 layers;
//! measured 0.038). Rounding flips near-ties, after which free-running
//! continuations part, so "the same answers" means: the first greedy token
//! is equal on every prompt of the fixed set and the first [`SAME_FIRST`]
//! on all prompts but at most one (one by one and batched), and along f32's
//! greedy continuations the bf16 model's next-token argmax agrees at
//! [`MIN_AGREEMENT`] of the positions or more. Measured: GPT-2 1.0, tiny
//! LLaMA 0.986 (one prompt parts at its second token), SmolLM2 0.953 (the
//! same first 4 tokens on all 4 prompts, 2 of 4 answers equal over 12).

mod common;

use candle_core::{DType, Device, Tensor};
use repro::model::generate::{GenConfig, generate};
use repro::model::gpt2::{Gpt2, Gpt2Config};
use repro::model::params::ParamStore;
use repro::model::{CausalLm, Llama, LlamaConfig};
use std::collections::HashMap;
use std::path::Path;

/// Largest relative logit difference allowed for the tiny models.
const TINY_TOLERANCE: f32 = 0.05;
/// Largest relative logit difference allowed for SmolLM2-135M.
const SMOL_TOLERANCE: f32 = 0.06;
/// Greedy tokens that must be equal on every prompt.
const SAME_FIRST: usize = 4;
/// Share of positions where the next-token argmax must agree.
const MIN_AGREEMENT: f64 = 0.9;

fn llama_cfg() -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
        "max_position_embeddings": 64, "tie_word_embeddings": false
    }))
    .unwrap()
}

fn gpt2_cfg() -> Gpt2Config {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 300, "n_positions": 64, "n_embd": 64, "n_layer": 3, "n_head": 4,
        "n_inner": 96, "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
        "tie_word_embeddings": true, "scale_attn_weights": true,
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"
    }))
    .unwrap()
}

/// Random N(0, 0.3) weights by name, and a builder of the same model from
/// them in any dtype.
fn weights<M>(build: impl Fn(&mut ParamStore) -> M) -> HashMap<String, Tensor> {
    let mut store = ParamStore::fresh(5, 0.1, &Device::Cpu, DType::F32);
    build(&mut store);
    store.tensors().into_iter().collect()
}

fn in_dtype<M>(
    w: &HashMap<String, Tensor>,
    dtype: DType,
    build: impl Fn(&mut ParamStore) -> M,
) -> M {
    let mut store = ParamStore::loaded(w.clone(), false, &Device::Cpu, dtype);
    build(&mut store)
}

fn prompts() -> Vec<Vec<u32>> {
    (0..6)
        .map(|i| {
            (0..3 + 2 * i)
                .map(|j| ((i * 37 + j * 11 + 1) % 300) as u32)
                .collect()
        })
        .collect()
}

/// Max |a - b| over max |a|.
fn rel_diff(a: &Tensor, b: &Tensor) -> f32 {
    common::tensors::max_abs_diff(a, b) / common::tensors::max_abs(a).max(1e-6)
}

fn greedy(model: &dyn CausalLm, ps: &[Vec<u32>], batch: usize, new: usize) -> Vec<Vec<u32>> {
    let cfg = GenConfig {
        max_new_tokens: new,
        batch_size: batch,
        ..Default::default()
    };
    generate(model, ps, &[], &cfg, |_| false)
        .unwrap()
        .into_iter()
        .map(|g| g.ids)
        .collect()
}

/// Share of positions of `f32`'s greedy continuations (`new` tokens after
/// each prompt) where the two models' next-token argmaxes agree.
fn argmax_agreement(a: &dyn CausalLm, b: &dyn CausalLm, ps: &[Vec<u32>], new: usize) -> f64 {
    let conts = greedy(a, ps, 1, new);
    let (mut same, mut all) = (0, 0);
    for (p, c) in ps.iter().zip(&conts) {
        let seq: Vec<u32> = p.iter().chain(c).copied().collect();
        let ids = Tensor::from_vec(seq.clone(), (1, seq.len()), &Device::Cpu).unwrap();
        let top = |m: &dyn CausalLm| -> Vec<u32> {
            m.forward(&ids, None, None, true)
                .unwrap()
                .squeeze(0)
                .unwrap()
                .argmax(candle_core::D::Minus1)
                .unwrap()
                .to_vec1()
                .unwrap()
        };
        let (ta, tb) = (top(a), top(b));
        for i in p.len() - 1..seq.len() - 1 {
            same += usize::from(ta[i] == tb[i]);
            all += 1;
        }
    }
    same as f64 / all.max(1) as f64
}

/// The first [`SAME_FIRST`] tokens of each answer.
fn heads(answers: Vec<Vec<u32>>) -> Vec<Vec<u32>> {
    answers
        .into_iter()
        .map(|a| a.into_iter().take(SAME_FIRST).collect())
        .collect()
}

/// bf16 logits of every prompt within `tol` of f32, and the same greedy
/// answers (see the module doc) one by one and batched.
fn assert_bf16_close(f32_model: &dyn CausalLm, bf16_model: &dyn CausalLm, tol: f32) {
    assert_eq!(bf16_model.dtype(), DType::BF16);
    let mut worst = 0f32;
    for p in prompts() {
        let ids = Tensor::from_vec(p.clone(), (1, p.len()), &Device::Cpu).unwrap();
        let a = f32_model.forward(&ids, None, None, true).unwrap();
        let b = bf16_model.forward(&ids, None, None, true).unwrap();
        assert_eq!(b.dtype(), DType::F32, "logits come back in f32");
        worst = worst.max(rel_diff(&a, &b));
    }
    let ps = prompts();
    let agree = argmax_agreement(f32_model, bf16_model, &ps, 12);
    eprintln!(
        "{}: bf16 vs f32 logits, max relative diff {worst:.4}; next-token agreement {agree:.3}",
        f32_model.arch()
    );
    assert!(
        worst > 0.0,
        "bf16 logits equal f32 bit for bit: the dtype was not applied"
    );
    assert!(worst <= tol, "{worst} > {tol}");
    assert!(agree >= MIN_AGREEMENT, "{agree}");
    let want = heads(greedy(f32_model, &ps, 1, SAME_FIRST));
    for (how, batch) in [("one by one", 1), ("batched", 6)] {
        let got = heads(greedy(bf16_model, &ps, batch, SAME_FIRST));
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g[0], w[0], "{how}: first token");
        }
        let parted = got.iter().zip(&want).filter(|(g, w)| g != w).count();
        assert!(
            parted <= 1,
            "{how}: {parted} answers part: {got:?} vs {want:?}"
        );
    }
}

#[test]
fn tiny_llama_in_bf16_is_close_to_f32_and_answers_the_same() {
    let cfg = llama_cfg();
    let build = |s: &mut ParamStore| Llama::new(&cfg, s, &Device::Cpu).unwrap();
    let w = weights(build);
    let a = in_dtype(&w, DType::F32, build);
    let b = in_dtype(&w, DType::BF16, build);
    assert_bf16_close(&a, &b, TINY_TOLERANCE);
}

#[test]
fn tiny_gpt2_in_bf16_is_close_to_f32_and_answers_the_same() {
    let cfg = gpt2_cfg();
    let build = |s: &mut ParamStore| Gpt2::new(&cfg, s, &Device::Cpu).unwrap();
    let w = weights(build);
    let a = in_dtype(&w, DType::F32, build);
    let b = in_dtype(&w, DType::BF16, build);
    assert_bf16_close(&a, &b, TINY_TOLERANCE);
}

/// Logits of a left-padded batch (padding rows see only padding).
fn padded_logits(model: &dyn CausalLm) -> Tensor {
    let ps = prompts();
    let out = greedy(model, &ps, 6, 4);
    assert!(out.iter().all(|o| o.len() == 4));
    let longest = ps.iter().map(Vec::len).max().unwrap();
    let pads: Vec<usize> = ps.iter().map(|p| longest - p.len()).collect();
    let ids: Vec<u32> = ps
        .iter()
        .flat_map(|p| std::iter::repeat_n(0, longest - p.len()).chain(p.iter().copied()))
        .collect();
    let ids = Tensor::from_vec(ids, (ps.len(), longest), &Device::Cpu).unwrap();
    let mut mask = Vec::new();
    for &p in &pads {
        for i in 0..longest {
            mask.extend((0..longest).map(|j| if j < p || j > i { -1e9f32 } else { 0.0 }));
        }
    }
    let mask = Tensor::from_vec(mask, (ps.len(), 1, longest, longest), &Device::Cpu).unwrap();
    let h = model
        .hidden_padded(&ids, None, Some(&mask), &pads, true)
        .unwrap();
    model.logits(&h).unwrap()
}

fn all_finite(t: &Tensor) -> bool {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|x| x.is_finite())
}

#[test]
fn f16_stays_finite_on_left_padded_batches() {
    let lcfg = llama_cfg();
    let build = |s: &mut ParamStore| Llama::new(&lcfg, s, &Device::Cpu).unwrap();
    let w = weights(build);
    let m = in_dtype(&w, DType::F16, build);
    assert!(all_finite(&padded_logits(&m)), "llama f16");
    let gcfg = gpt2_cfg();
    let build = |s: &mut ParamStore| Gpt2::new(&gcfg, s, &Device::Cpu).unwrap();
    let w = weights(build);
    let m = in_dtype(&w, DType::F16, build);
    assert!(all_finite(&padded_logits(&m)), "gpt2 f16");
}

#[test]
fn loaders_take_a_dtype_and_keep_f32_by_default() {
    use repro::model::tokenizer::{MINI_SPECIALS, TextTokenizer, train_bpe};
    let texts = ["a small corpus of words", "more words for the tokenizer"];
    let tk = train_bpe(texts.iter().copied(), 120, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let mut cfg = llama_cfg();
    cfg.vocab_size = tok.vocab_size();
    let (_, vars) = repro::model::init(&cfg, 1, &Device::Cpu, DType::F32).unwrap();
    let weights: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    repro::model::checkpoint::save(dir.path(), &cfg, &weights, &tok).unwrap();
    let plain = repro::model::load::load(dir.path(), false, &Device::Cpu).unwrap();
    assert_eq!(plain.model.dtype(), DType::F32);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let l = repro::model::load::load_as(dir.path(), false, &Device::Cpu, dtype).unwrap();
        assert_eq!(l.model.dtype(), dtype);
    }
    let err = repro::model::load::load_as(dir.path(), false, &Device::Cpu, DType::U32);
    assert!(err.is_err());
    assert_eq!(repro::model::precision::parse("bf16"), Some(DType::BF16));
    assert_eq!(repro::model::precision::parse("f64"), None);
    assert_eq!(
        repro::model::precision::default_for(&Device::Cpu),
        DType::F32
    );
}

#[test]
fn smollm2_in_bf16_is_close_to_f32_and_answers_the_same() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/external/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.exists() {
        eprintln!(
            "skipped: {} is missing (scripts/fetch-offline.sh smollm2)",
            path.display()
        );
        return;
    }
    repro::model::cpu::tune_malloc();
    let gguf = repro::model::gguf::load_as;
    let a = gguf(&path, false, &Device::Cpu, DType::F32).unwrap();
    let b = gguf(&path, false, &Device::Cpu, DType::BF16).unwrap();
    let tok = &a.tokenizer;
    let questions = [
        "What is the capital of France?",
        "How many legs does a spider have?",
        "What color is the sky on a clear day?",
        "Who wrote Romeo and Juliet?",
    ];
    let ps: Vec<Vec<u32>> = questions
        .iter()
        .map(|q| {
            let msgs = vec![repro::model::tokenizer::Message {
                role: "user".into(),
                content: q.to_string(),
            }];
            tok.encode(&tok.render_chat(&msgs, true).unwrap()).unwrap()
        })
        .collect();
    let mut worst = 0f32;
    for p in &ps {
        let ids = Tensor::from_vec(p.clone(), (1, p.len()), &Device::Cpu).unwrap();
        let la = a.model.forward(&ids, None, None, true).unwrap();
        let lb = b.model.forward(&ids, None, None, true).unwrap();
        worst = worst.max(rel_diff(&la, &lb));
    }
    let agree = argmax_agreement(a.model.as_ref(), b.model.as_ref(), &ps, 16);
    eprintln!(
        "SmolLM2-135M: bf16 vs f32 logits, max relative diff {worst:.4}; next-token agreement {agree:.3}"
    );
    assert!(worst <= SMOL_TOLERANCE, "{worst} > {SMOL_TOLERANCE}");
    assert!(agree >= MIN_AGREEMENT, "{agree}");
    let cfg = GenConfig {
        max_new_tokens: 12,
        batch_size: 4,
        ..Default::default()
    };
    let stops = tok.stop_ids();
    let ga = generate(a.model.as_ref(), &ps, &stops, &cfg, |_| false).unwrap();
    let gb = generate(b.model.as_ref(), &ps, &stops, &cfg, |_| false).unwrap();
    for (q, (x, y)) in questions.iter().zip(ga.iter().zip(&gb)) {
        eprintln!("{q} f32: {:?}", tok.decode(&x.ids).unwrap());
        eprintln!("{q} bf16: {:?}", tok.decode(&y.ids).unwrap());
        assert_eq!(x.ids[..SAME_FIRST], y.ids[..SAME_FIRST], "{q}");
    }
}
