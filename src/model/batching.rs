//! How [`super::generate`] groups prompts into batches: in prompt order or
//! by length ([`GenConfig::bucket_by_length`]), at most
//! [`GenConfig::batch_size`] prompts and, when set,
//! [`GenConfig::max_batch_tokens`] tokens per batch (rows x (longest prompt
//! + new tokens), what the KV cache and activations scale with).

use candle_core::Result;

/// One batch: which prompts, padded to what length, decoding how far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Indices of the prompts, in batch row order.
    pub rows: Vec<usize>,
    /// The longest prompt (at least 1: an empty prompt is one pad token).
    pub longest: usize,
    /// New tokens per row: `max_new_tokens`, less where the model's
    /// positions run out.
    pub new_tokens: usize,
}

impl Plan {
    /// Tokens the batch holds at its end: rows x (longest + new tokens).
    pub fn tokens(&self) -> usize {
        self.rows.len() * (self.longest + self.new_tokens)
    }
}

/// The new tokens a batch whose longest prompt is `longest` may decode
/// under a position limit; a prompt that leaves no room is an error.
fn new_tokens(longest: usize, max_new: usize, max_pos: Option<usize>) -> Result<usize> {
    match max_pos {
        Some(max_pos) if longest >= max_pos => candle_core::bail!(
            "a prompt of {longest} tokens leaves no room below the model's {max_pos} positions"
        ),
        Some(max_pos) => Ok(max_new.min(max_pos - longest)),
        None => Ok(max_new),
    }
}

/// Splits `prompts` into batches (see the module doc). Every prompt is in
/// exactly one batch. A prompt that alone exceeds the token budget is a
/// batch of its own.
pub fn plan(prompts: &[Vec<u32>], cfg: &GenConfig, max_pos: Option<usize>) -> Result<Vec<Plan>> {
    let mut order: Vec<usize> = (0..prompts.len()).collect();
    if cfg.bucket_by_length {
        order.sort_by_key(|&i| prompts[i].len());
    }
    let size = cfg.batch_size.max(1);
    let mut out = Vec::new();
    let mut cur = Plan {
        rows: Vec::new(),
        longest: 1,
        new_tokens: 0,
    };
    for i in order {
        let longest = cur.longest.max(prompts[i].len());
        let grown = Plan {
            rows: cur.rows.iter().copied().chain([i]).collect(),
            longest,
            new_tokens: new_tokens(longest, cfg.max_new_tokens, max_pos)?,
        };
        let over = cfg.max_batch_tokens.is_some_and(|b| grown.tokens() > b);
        if !cur.rows.is_empty() && (cur.rows.len() == size || over) {
            out.push(std::mem::replace(
                &mut cur,
                Plan {
                    rows: vec![i],
                    longest: prompts[i].len().max(1),
                    new_tokens: new_tokens(prompts[i].len().max(1), cfg.max_new_tokens, max_pos)?,
                },
            ));
        } else {
            cur = grown;
        }
    }
    if !cur.rows.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// Decoding settings.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Most new tokens per prompt.
    pub max_new_tokens: usize,
    /// 0 = greedy; otherwise softmax temperature.
    pub temperature: f64,
    /// Most prompts decoded together.
    pub batch_size: usize,
    /// Seed for sampling.
    pub seed: u64,
    /// Most tokens a batch may hold, counted as rows x (longest prompt +
    /// new tokens): bounds the KV cache and activations. `None`: only
    /// `batch_size` bounds a batch. A prompt that alone exceeds the budget
    /// is decoded on its own.
    pub max_batch_tokens: Option<usize>,
    /// Groups prompts of similar length into batches (less padding)
    /// instead of taking them in order. Padding can change float rounding,
    /// so this can change outputs (rarely): callers that key results on
    /// their settings must key this one too.
    pub bucket_by_length: bool,
}

impl Default for GenConfig {
    /// Greedy, 256 new tokens, batches of 8 in prompt order, seed 0, no
    /// token budget.
    fn default() -> Self {
        GenConfig {
            max_new_tokens: 256,
            temperature: 0.0,
            batch_size: 8,
            seed: 0,
            max_batch_tokens: None,
            bucket_by_length: false,
        }
    }
}
