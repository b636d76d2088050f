//! Decoding that scales without changing what it computes: the split
//! matrix-vector product is bit-identical, a preallocated KV cache equals a
//! growing one, rows that finish leave the batch without changing the others
//! (greedy and sampled), and bucketing and token budgets plan every prompt
//! once and keep greedy outputs.

mod common;

use candle_core::{DType, Device, Tensor};
use repro::model::batching::plan;
use repro::model::generate::{Finish, GenConfig, Generated, generate};
use repro::model::lm::linear;
use repro::model::params::ParamStore;
use repro::model::{KvCache, Llama, LlamaConfig, init};

fn tiny(vocab: usize) -> LlamaConfig {
    serde_json::from_value(serde_json::json!({
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": vocab,
        "max_position_embeddings": 96, "tie_word_embeddings": true
    }))
    .unwrap()
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `n` prompts of 2 to 13 tokens below `vocab`.
fn prompts(n: usize, vocab: u32) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let len = 2 + (i * 7) % 12;
            (0..len)
                .map(|j| ((i * 31 + j * 17 + 3) as u32) % vocab)
                .collect()
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .into_iter()
        .map(f32::to_bits)
        .collect()
}

#[test]
fn one_row_split_over_threads_is_bit_identical() {
    for (out, inp) in [(300, 64), (576, 576), (1537, 96), (5000, 64), (200, 64)] {
        let x = Tensor::from_vec(values(inp, 1), (1, inp), &Device::Cpu).unwrap();
        let w = Tensor::from_vec(values(out * inp, 2), (out, inp), &Device::Cpu).unwrap();
        let split = linear(&x, &w).unwrap();
        let plain = x.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(bits(&split), bits(&plain), "({out}, {inp})");
    }
}

#[test]
fn preallocated_cache_equals_growing_cache_and_full_forward() {
    let (model, _) = init(&tiny(50), 1, &Device::Cpu, DType::F32).unwrap();
    let ids: Vec<u32> = (0..20).map(|i| (i * 7 % 50) as u32).collect();
    let full = model
        .forward(
            &Tensor::from_vec(ids.clone(), (1, 20), &Device::Cpu).unwrap(),
            None,
            None,
            true,
        )
        .unwrap();
    let mut outs = Vec::new();
    for mut cache in [KvCache::new(), KvCache::with_capacity(20)] {
        let mut parts = Vec::new();
        for (s, n) in [(0, 7), (7, 1), (8, 1), (9, 11)] {
            let x = Tensor::from_vec(ids[s..s + n].to_vec(), (1, n), &Device::Cpu).unwrap();
            parts.push(model.forward(&x, Some(&mut cache), None, true).unwrap());
        }
        assert_eq!(cache.len(), 20);
        outs.push(Tensor::cat(&parts, 1).unwrap());
    }
    assert_eq!(bits(&outs[0]), bits(&outs[1]));
    let diff = common::tensors::max_abs_diff(&outs[0], &full);
    assert!(diff < 1e-5, "cache vs full {diff}");
}

/// A model with N(0, 0.5) weights: varied greedy continuations.
fn spread(cfg: &LlamaConfig, seed: u64) -> Llama {
    let mut store = ParamStore::fresh(seed, 0.5, &Device::Cpu, DType::F32);
    Llama::new(cfg, &mut store, &Device::Cpu).unwrap()
}

fn cfg(batch: usize, new: usize, temperature: f64) -> GenConfig {
    GenConfig {
        max_new_tokens: new,
        temperature,
        batch_size: batch,
        seed: 7,
        ..Default::default()
    }
}

/// The token that ends the most rows early (first seen after a row's first
/// token and before its last), so that stopping on it ends rows at
/// different steps.
fn common_token(gens: &[Generated]) -> u32 {
    let mut counts = std::collections::HashMap::new();
    for g in gens {
        let mut seen = std::collections::HashSet::new();
        for (i, &t) in g.ids.iter().enumerate() {
            if seen.insert(t) && i >= 1 && i + 1 < g.ids.len() {
                *counts.entry(t).or_insert(0usize) += 1;
            }
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(t, c)| (c, std::cmp::Reverse(t)))
        .map(|(t, _)| t)
        .unwrap()
}

/// Decoding with a stop token equals decoding without one cut at its first
/// occurrence: rows that finish (and leave the batch) change nothing for
/// the others, nor the random stream of sampling.
fn assert_leaving_rows_change_nothing(temperature: f64) {
    // Vocabulary above 256 so that the head keeps gemm's general kernel;
    // large weights so that greedy rows do not repeat one token.
    let model = spread(&tiny(300), 2);
    let ps = prompts(24, 300);
    let c = cfg(24, 20, temperature);
    let free = generate(&model, &ps, &[], &c, |_| false).unwrap();
    let stop = common_token(&free);
    let stopped = generate(&model, &ps, &[stop], &c, |_| false).unwrap();
    let mut finished_early = 0;
    for (f, s) in free.iter().zip(&stopped) {
        match f.ids.iter().position(|&t| t == stop) {
            Some(at) => {
                assert_eq!(s.ids, f.ids[..at], "row cut at its stop token");
                assert_eq!(s.finish, Finish::StopToken);
                finished_early += usize::from(at + 1 < f.ids.len());
            }
            None => {
                assert_eq!(s.ids, f.ids);
                assert_eq!(s.finish, Finish::Length);
            }
        }
    }
    assert!(finished_early >= 4, "only {finished_early} rows left early");
}

#[test]
fn finished_rows_leave_greedy_batches_without_changing_others() {
    assert_leaving_rows_change_nothing(0.0);
}

#[test]
fn finished_rows_leave_sampled_batches_without_shifting_the_random_stream() {
    assert_leaving_rows_change_nothing(1.0);
}

#[test]
fn stop_strings_end_rows_like_stop_tokens() {
    let (model, _) = init(&tiny(300), 3, &Device::Cpu, DType::F32).unwrap();
    let ps = prompts(20, 300);
    let c = cfg(20, 12, 0.0);
    let free = generate(&model, &ps, &[], &c, |_| false).unwrap();
    let stopped = generate(&model, &ps, &[], &c, |ids| ids.len() >= 3).unwrap();
    for (f, s) in free.iter().zip(&stopped) {
        assert_eq!(s.ids, f.ids[..3]);
        assert_eq!(s.finish, Finish::StopString);
    }
}

#[test]
fn buckets_and_token_budgets_keep_greedy_outputs() {
    let (model, _) = init(&tiny(300), 4, &Device::Cpu, DType::F32).unwrap();
    let ps = prompts(30, 300);
    let base = generate(&model, &ps, &[5], &cfg(30, 10, 0.0), |_| false).unwrap();
    let variants = [
        GenConfig {
            bucket_by_length: true,
            ..cfg(8, 10, 0.0)
        },
        GenConfig {
            max_batch_tokens: Some(100),
            ..cfg(30, 10, 0.0)
        },
        GenConfig {
            bucket_by_length: true,
            max_batch_tokens: Some(150),
            ..cfg(30, 10, 0.0)
        },
    ];
    for v in &variants {
        let got = generate(&model, &ps, &[5], v, |_| false).unwrap();
        for (i, (a, b)) in base.iter().zip(&got).enumerate() {
            assert_eq!(a.ids, b.ids, "prompt {i} under {v:?}");
            assert_eq!(a.finish, b.finish);
        }
    }
}

#[test]
fn plans_hold_every_prompt_once_within_the_budget() {
    let ps = prompts(30, 300);
    for (bucket, budget, size) in [
        (false, None, 7),
        (true, None, 7),
        (true, Some(100), 64),
        (false, Some(60), 64),
        (true, Some(1), 64),
    ] {
        let c = GenConfig {
            bucket_by_length: bucket,
            max_batch_tokens: budget,
            ..cfg(size, 10, 0.0)
        };
        let batches = plan(&ps, &c, Some(96)).unwrap();
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..ps.len()).collect::<Vec<_>>());
        for b in &batches {
            assert!(b.rows.len() <= size);
            assert_eq!(
                b.longest,
                b.rows.iter().map(|&i| ps[i].len()).max().unwrap()
            );
            if let Some(budget) = budget {
                assert!(b.rows.len() == 1 || b.tokens() <= budget, "{b:?}");
            }
            if bucket {
                let lens: Vec<usize> = b.rows.iter().map(|&i| ps[i].len()).collect();
                assert!(lens.windows(2).all(|w| w[0] <= w[1]));
            }
        }
        if !bucket && budget.is_none() {
            let order: Vec<usize> = batches.iter().flat_map(|b| b.rows.clone()).collect();
            assert_eq!(order, (0..ps.len()).collect::<Vec<_>>());
        }
    }
    // A prompt with no room below the positions is an error, as before.
    let long = vec![vec![1u32; 96]];
    assert!(plan(&long, &cfg(1, 4, 0.0), Some(96)).is_err());
    // New tokens stop at the model's positions.
    let near = vec![vec![1u32; 90]];
    assert_eq!(
        plan(&near, &cfg(1, 20, 0.0), Some(96)).unwrap()[0].new_tokens,
        6
    );
}
