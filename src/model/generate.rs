//! Batched decoding with a KV cache: greedy or temperature sampling, stop
//! tokens and stop strings.
//!
//! Prompts of a batch are left-padded to the same length and the padding is
//! masked out of attention. RoPE only sees relative positions inside the
//! attention product, so shifting a row by its padding does not change its
//! result; models with learned positions shift each row back
//! ([`CausalLm::hidden_padded`]). Tests check batched output equals
//! one-by-one output.

use super::llama::MASKED;
use super::lm::{CausalLm, KvCache};
use crate::rng::Rng;
use candle_core::{D, Device, Result, Tensor};

/// Decoding settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// 0 = greedy; otherwise softmax temperature.
    pub temperature: f64,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// Seed for sampling.
    pub seed: u64,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// A stop token was produced.
    StopToken,
    /// A stop string appeared in the text.
    StopString,
    /// `max_new_tokens` reached.
    Length,
}

/// One generated continuation (stop token excluded).
#[derive(Debug, Clone)]
pub struct Generated {
    /// New token ids.
    pub ids: Vec<u32>,
    /// Why it ended.
    pub finish: Finish,
}

fn pad_mask(pads: &[usize], t: usize, past: usize, device: &Device) -> Result<Tensor> {
    let total = past + t;
    let b = pads.len();
    let mut data = Vec::with_capacity(b * t * total);
    for &p in pads {
        for i in 0..t {
            for j in 0..total {
                let blocked = j < p || j > past + i;
                data.push(if blocked { MASKED } else { 0.0 });
            }
        }
    }
    Tensor::from_vec(data, (b, 1, t, total), device)
}

/// Continues each prompt with any [`CausalLm`]. `stop_ids` end a row;
/// `is_stopped(row_ids)` is asked after each token (for stop strings,
/// decoded by the caller). A model with a position limit decodes at most up
/// to it.
pub fn generate(
    model: &dyn CausalLm,
    prompts: &[Vec<u32>],
    stop_ids: &[u32],
    cfg: &GenConfig,
    mut is_stopped: impl FnMut(&[u32]) -> bool,
) -> Result<Vec<Generated>> {
    let mut out = Vec::with_capacity(prompts.len());
    let mut rng = Rng::derive(cfg.seed, "sampling");
    let dev = model.device().clone();
    let max_pos = model.max_positions();
    for chunk in prompts.chunks(cfg.batch_size.max(1)) {
        let longest = chunk.iter().map(|p| p.len()).max().unwrap_or(0).max(1);
        let budget = match max_pos {
            Some(max_pos) if longest >= max_pos => candle_core::bail!(
                "a prompt of {longest} tokens leaves no room below the model's {max_pos} positions"
            ),
            Some(max_pos) => cfg.max_new_tokens.min(max_pos - longest),
            None => cfg.max_new_tokens,
        };
        let pads: Vec<usize> = chunk.iter().map(|p| longest - p.len()).collect();
        let mut ids = Vec::with_capacity(chunk.len() * longest);
        for p in chunk {
            ids.extend(std::iter::repeat_n(
                stop_ids.first().copied().unwrap_or(0),
                longest - p.len(),
            ));
            ids.extend_from_slice(p);
        }
        let mut cache = KvCache::new();
        let input = Tensor::from_vec(ids, (chunk.len(), longest), &dev)?;
        let mask = pad_mask(&pads, longest, 0, &dev)?;
        let logits = model.logits(&model.hidden_padded(
            &input,
            Some(&mut cache),
            Some(&mask),
            &pads,
            true,
        )?)?;
        let mut last = logits.narrow(1, longest - 1, 1)?.squeeze(1)?;
        let mut gens: Vec<Generated> = chunk
            .iter()
            .map(|_| Generated {
                ids: Vec::new(),
                finish: Finish::Length,
            })
            .collect();
        let mut done = vec![false; chunk.len()];
        for _ in 0..budget {
            let next = pick(&last, cfg.temperature, &mut rng)?;
            for (r, &tok) in next.iter().enumerate() {
                if done[r] {
                    continue;
                }
                if stop_ids.contains(&tok) {
                    done[r] = true;
                    gens[r].finish = Finish::StopToken;
                    continue;
                }
                gens[r].ids.push(tok);
                if is_stopped(&gens[r].ids) {
                    done[r] = true;
                    gens[r].finish = Finish::StopString;
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
            let past = cache.len();
            let input = Tensor::from_vec(next, (chunk.len(), 1), &dev)?;
            let mask = pad_mask(&pads, 1, past, &dev)?;
            last = model
                .logits(&model.hidden_padded(
                    &input,
                    Some(&mut cache),
                    Some(&mask),
                    &pads,
                    true,
                )?)?
                .squeeze(1)?;
        }
        out.extend(gens);
    }
    Ok(out)
}

/// Next token per row: argmax, or a sample at `temperature`.
fn pick(logits: &Tensor, temperature: f64, rng: &mut Rng) -> Result<Vec<u32>> {
    if temperature <= 0.0 {
        return logits.argmax(D::Minus1)?.to_vec1::<u32>();
    }
    let probs = candle_nn::ops::softmax_last_dim(&(logits / temperature)?)?;
    let rows = probs.to_vec2::<f32>()?;
    Ok(rows
        .iter()
        .map(|p| {
            let u = rng.f64() as f32 * p.iter().sum::<f32>();
            let mut acc = 0.0;
            for (i, x) in p.iter().enumerate() {
                acc += x;
                if acc > u {
                    return i as u32;
                }
            }
            (p.len() - 1) as u32
        })
        .collect())
}
