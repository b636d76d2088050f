//! Batched decoding with a KV cache: greedy or temperature sampling, stop
//! tokens and stop strings.
//!
//! Prompts of a batch are left-padded to the same length and the padding is
//! masked out of attention. RoPE only sees relative positions inside the
//! attention product, so shifting a row by its padding does not change its
//! result; models with learned positions shift each row back
//! ([`CausalLm::hidden_padded`]). Tests check batched output equals
//! one-by-one output.
//!
//! What keeps the work down ([`super::batching`] plans the batches):
//! - prompts can be grouped by length ([`GenConfig::bucket_by_length`],
//!   less padding), and a batch bounded by a token budget
//!   ([`GenConfig::max_batch_tokens`]); both are off by default, since the
//!   padding of a row can change its float rounding;
//! - the KV cache is allocated once per batch for its longest sequence
//!   ([`KvCache::with_capacity`]) and written in place;
//! - the padding mask is built once per batch and narrowed each step;
//! - the prefill computes logits for the last position only;
//! - finished rows leave the batch, with their cache rows;
//! - a single row's matrix-vector products use every CPU thread
//!   ([`super::lm::linear`]).
//!
//! With the defaults none of this changes a bit of what a row computes:
//! every matrix product keeps the kernel (and so the rounding) it had when
//! the whole padded batch ran every step (see `Live::compact` and
//! `prefill`). Sampling draws one number per prompt of a batch and step,
//! in prompt order, finished or not, as before rows could leave, so a seed
//! gives the same text.

pub use super::batching::GenConfig;
use super::batching::{self, Plan};
use super::lm::MASKED;
use super::lm::{CausalLm, KvCache};
use crate::rng::Rng;
use candle_core::{D, Device, Result, Tensor};

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

/// The additive prefill mask `(b, 1, t, t)`: row `r` cannot see its
/// `pads[r]` padding positions nor the future.
fn prefill_mask(pads: &[usize], t: usize, device: &Device) -> Result<Tensor> {
    let mut data = Vec::with_capacity(pads.len() * t * t);
    for &p in pads {
        for i in 0..t {
            data.extend((0..t).map(|j| if j < p || j > i { MASKED } else { 0.0 }));
        }
    }
    Tensor::from_vec(data, (pads.len(), 1, t, t), device)
}

/// The additive decoding mask `(b, 1, 1, capacity)`, built once: row `r`
/// cannot see its padding; a step narrows it to the cached length.
fn step_mask(pads: &[usize], capacity: usize, device: &Device) -> Result<Tensor> {
    let mut data = Vec::with_capacity(pads.len() * capacity);
    for &p in pads {
        data.extend((0..capacity).map(|j| if j < p { MASKED } else { 0.0 }));
    }
    Tensor::from_vec(data, (pads.len(), 1, 1, capacity), device)
}

/// Continues each prompt with any [`CausalLm`]. `stop_ids` end a row;
/// `is_stopped(row_ids)` is asked after each token (for stop strings,
/// decoded by the caller). A model with a position limit decodes at most up
/// to it. Results come back in the order of `prompts`.
pub fn generate(
    model: &dyn CausalLm,
    prompts: &[Vec<u32>],
    stop_ids: &[u32],
    cfg: &GenConfig,
    mut is_stopped: impl FnMut(&[u32]) -> bool,
) -> Result<Vec<Generated>> {
    let mut rng = Rng::derive(cfg.seed, "sampling");
    let plan = batching::plan(prompts, cfg, model.max_positions())?;
    let mut out: Vec<Option<Generated>> = vec![None; prompts.len()];
    for batch in &plan {
        let rows: Vec<&[u32]> = batch.rows.iter().map(|&i| prompts[i].as_slice()).collect();
        let gens = decode_batch(
            model,
            &rows,
            batch,
            stop_ids,
            cfg,
            &mut rng,
            &mut is_stopped,
        )?;
        for (&i, g) in batch.rows.iter().zip(gens) {
            out[i] = Some(g);
        }
    }
    out.into_iter()
        .map(|g| {
            g.ok_or_else(|| candle_core::Error::Msg("generate: a prompt was not planned".into()))
        })
        .collect()
}

/// The rows still decoded and their cache: `present[i]` is the batch row
/// held at position `i` of the model's batch.
struct Live {
    present: Vec<usize>,
    cache: KvCache,
    mask: Tensor,
}

impl Live {
    /// Drops finished rows once enough of them have piled up (copying the
    /// cache costs about one step).
    ///
    /// The batch never shrinks below [`MIN_LIVE_ROWS`] rows (or its
    /// original size, if smaller): finished rows stay as company. gemm
    /// multiplies few rows by a narrow matrix (rows x columns <= 256) or a
    /// single row with other kernels, whose rounding differs, so a row would
    /// not compute what it does in the full batch.
    fn compact(&mut self, done: &[bool]) -> Result<()> {
        let present = self.present.len();
        let finished = self.present.iter().filter(|&&r| done[r]).count();
        let floor = MIN_LIVE_ROWS.min(done.len());
        if finished == 0 || finished * 8 < present || present <= floor {
            return Ok(());
        }
        let mut keep: Vec<usize> = (0..present).filter(|&i| !done[self.present[i]]).collect();
        let mut company = (0..present).filter(|&i| done[self.present[i]]);
        while keep.len() < floor {
            match company.next() {
                Some(i) => keep.push(i),
                None => break,
            }
        }
        keep.sort_unstable();
        if keep.len() == present {
            return Ok(());
        }
        self.cache.keep_rows(&keep)?;
        let idx: Vec<u32> = keep.iter().map(|&i| i as u32).collect();
        let idx = Tensor::from_vec(idx, keep.len(), self.mask.device())?;
        self.mask = self.mask.index_select(&idx, 0)?;
        self.present = keep.into_iter().map(|i| self.present[i]).collect();
        Ok(())
    }
}

/// The fewest rows a decoding batch keeps (see [`Live::compact`]): 17 rows
/// times any projection of 16 or more outputs exceed gemm's small-product
/// threshold of 256.
const MIN_LIVE_ROWS: usize = 17;

/// How many of the last positions of each of `b` rows the prefill sends
/// through the head of `vocab` outputs so that gemm uses the kernel it
/// uses for all `b * t` positions: a single row and small products (rows x
/// columns <= 256) take other kernels, and so do up to 64 rows of a head
/// of at most 64 outputs.
fn prefill_positions(b: usize, t: usize, vocab: usize) -> usize {
    let full = b * t;
    let mut rows = if full >= 2 { 2 } else { 1 };
    if full * vocab > 256 {
        rows = rows.max(256 / vocab.max(1) + 1);
    }
    if vocab <= 64 && full > 64 {
        rows = rows.max(65);
    }
    rows.div_ceil(b).clamp(1, t.max(1))
}

/// Decodes one planned batch; `rows` are its prompts in batch order.
fn decode_batch(
    model: &dyn CausalLm,
    rows: &[&[u32]],
    batch: &Plan,
    stop_ids: &[u32],
    cfg: &GenConfig,
    rng: &mut Rng,
    is_stopped: &mut impl FnMut(&[u32]) -> bool,
) -> Result<Vec<Generated>> {
    let dev = model.device().clone();
    let (n, longest, budget) = (rows.len(), batch.longest, batch.new_tokens);
    let pads: Vec<usize> = rows.iter().map(|p| longest - p.len()).collect();
    let pad_id = stop_ids.first().copied().unwrap_or(0);
    let mut ids = Vec::with_capacity(n * longest);
    for p in rows {
        ids.extend(std::iter::repeat_n(pad_id, longest - p.len()));
        ids.extend_from_slice(p);
    }
    let capacity = longest + budget;
    let mut live = Live {
        present: (0..n).collect(),
        cache: KvCache::with_capacity(capacity),
        mask: step_mask(&pads, capacity, &dev)?,
    };
    let mut last = prefill(model, &ids, &pads, longest, &mut live.cache)?;
    let mut gens: Vec<Generated> = (0..n)
        .map(|_| Generated {
            ids: Vec::new(),
            finish: Finish::Length,
        })
        .collect();
    let mut done = vec![false; n];
    for _ in 0..budget {
        let next = pick(&last, &live.present, n, cfg.temperature, rng)?;
        for (&r, &tok) in live.present.iter().zip(&next) {
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
        // The next tokens of the rows that stay.
        let before = live.present.clone();
        live.compact(&done)?;
        let next: Vec<u32> = live
            .present
            .iter()
            .map(|r| next[before.iter().position(|b| b == r).unwrap_or(0)])
            .collect();
        let past = live.cache.len();
        let input = Tensor::from_vec(next, (live.present.len(), 1), &dev)?;
        let mask = live.mask.narrow(3, 0, past + 1)?;
        let row_pads: Vec<usize> = live.present.iter().map(|&r| pads[r]).collect();
        last = model
            .logits(&model.hidden_padded(
                &input,
                Some(&mut live.cache),
                Some(&mask),
                &row_pads,
                true,
            )?)?
            .squeeze(1)?;
    }
    Ok(gens)
}

/// Runs the prompts `ids` (`(b, t)` flattened) through the model, filling
/// `cache`, and returns the last position's logits `(b, vocab)`.
///
/// Only the last position goes through the head (with a few positions
/// before it where needed, [`prefill_positions`], so that the head's
/// product rounds as it does over every position).
fn prefill(
    model: &dyn CausalLm,
    ids: &[u32],
    pads: &[usize],
    t: usize,
    cache: &mut KvCache,
) -> Result<Tensor> {
    let dev = model.device();
    let b = pads.len();
    let input = Tensor::from_vec(ids.to_vec(), (b, t), dev)?;
    let mask = prefill_mask(pads, t, dev)?;
    let hidden = model.hidden_padded(&input, Some(cache), Some(&mask), pads, true)?;
    let keep = prefill_positions(b, t, model.vocab_size());
    let logits = model.logits(&hidden.narrow(1, t - keep, keep)?)?;
    logits.narrow(1, keep - 1, 1)?.squeeze(1)
}

/// Next token of each present row: argmax, or a sample at `temperature`.
///
/// `logits` `(present.len(), vocab)` belong to the batch rows `present`
/// (ascending) of a batch of `n`. Sampling draws one number for each of the
/// `n` rows in order, present or not, so leaving rows does not shift the
/// random stream.
fn pick(
    logits: &Tensor,
    present: &[usize],
    n: usize,
    temperature: f64,
    rng: &mut Rng,
) -> Result<Vec<u32>> {
    let logits = super::lm::widen(logits)?;
    if temperature <= 0.0 {
        return logits.argmax(D::Minus1)?.to_vec1::<u32>();
    }
    let probs = candle_nn::ops::softmax_last_dim(&(logits / temperature)?)?;
    let rows = probs.to_vec2::<f32>()?;
    let mut out = Vec::with_capacity(present.len());
    let mut at = 0;
    for r in 0..n {
        let u = rng.f64() as f32;
        if present.get(at) != Some(&r) {
            continue;
        }
        out.push(sample(&rows[at], u));
        at += 1;
    }
    Ok(out)
}

/// The token whose cumulative probability first exceeds `u` times the
/// total.
fn sample(p: &[f32], u: f32) -> u32 {
    let u = u * p.iter().sum::<f32>();
    let mut acc = 0.0;
    for (i, x) in p.iter().enumerate() {
        acc += x;
        if acc > u {
            return i as u32;
        }
    }
    (p.len().max(1) - 1) as u32
}
