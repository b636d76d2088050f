//! Token counting of chat records and nested token-budget prefixes.
//!
//! Counting ([`Count`]): a conversation is rendered with the tokenizer's chat
//! template and encoded exactly as `lm.finetune` encodes it
//! ([`crate::model::tokenizer::TextTokenizer::encode_chat`]). `All` counts
//! every token of the rendering (what `lm.finetune`'s `tokens` param counts,
//! the default); `Assistant` counts only the learned tokens (assistant turns
//! and their end-of-turn text), the tokens the loss sees.
//!
//! Prefix rule ([`prefix_within`]): the leading records, in order, whose
//! counts add up to at most the budget, stopping at the first record that
//! would exceed it: the rule of `lm.finetune`'s `tokens` param, so a budget
//! file cut here and fed whole to `lm.finetune` trains on the same records as
//! `lm.finetune` with `tokens` set to that budget on the uncut file (same
//! tokenizer, `All`). Stopping (not skipping) is what keeps the subsets of
//! increasing budgets nested.

use crate::model::tokenizer::{Message, TextTokenizer, TokError};
use rayon::prelude::*;

/// Which tokens count towards a budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Count {
    /// Every token of the rendered conversation.
    All,
    /// Only assistant tokens (the learned ones).
    Assistant,
}

impl Count {
    /// Parses `all` / `assistant`.
    pub fn parse(s: &str) -> Option<Count> {
        match s {
            "all" => Some(Count::All),
            "assistant" => Some(Count::Assistant),
            _ => None,
        }
    }
}

/// The token count of one conversation.
pub fn count_tokens(
    tok: &TextTokenizer,
    messages: &[Message],
    count: Count,
) -> Result<usize, TokError> {
    let (ids, learn) = tok.encode_chat(messages)?;
    Ok(match count {
        Count::All => ids.len(),
        Count::Assistant => learn.iter().filter(|&&l| l).count(),
    })
}

/// Token counts of many conversations, in parallel on the current rayon
/// pool; the result is in input order. `Err((index, error))` names the first
/// failing conversation.
pub fn count_many(
    tok: &TextTokenizer,
    convs: &[&[Message]],
    count: Count,
) -> Result<Vec<usize>, (usize, TokError)> {
    convs
        .par_iter()
        .enumerate()
        .map(|(i, m)| count_tokens(tok, m, count).map_err(|e| (i, e)))
        .collect()
}

/// The leading items whose sizes add up to at most `budget`, stopping at
/// the first that would exceed it: `(items, total size)`.
pub fn prefix_within(sizes: &[usize], budget: u64) -> (usize, u64) {
    let mut total = 0u64;
    for (i, &s) in sizes.iter().enumerate() {
        if total + s as u64 > budget {
            return (i, total);
        }
        total += s as u64;
    }
    (sizes.len(), total)
}

/// One budget's subset.
#[derive(Debug, Clone, PartialEq)]
pub struct Subset {
    /// The budget asked for.
    pub budget: u64,
    /// Leading records taken.
    pub examples: usize,
    /// Their tokens.
    pub tokens: u64,
    /// The budget exceeds all the data: every record is in.
    pub clamped: bool,
}

/// The nested subsets of `budgets` over records of `sizes` (already in the
/// chosen order).
pub fn nested(sizes: &[usize], budgets: &[u64]) -> Vec<Subset> {
    let all: u64 = sizes.iter().map(|&s| s as u64).sum();
    budgets
        .iter()
        .map(|&b| {
            let (examples, tokens) = prefix_within(sizes, b);
            Subset {
                budget: b,
                examples,
                tokens,
                clamped: b >= all,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_stop_at_the_first_misfit_and_nest() {
        let sizes = [5, 3, 10, 1];
        assert_eq!(prefix_within(&sizes, 0), (0, 0));
        assert_eq!(prefix_within(&sizes, 8), (2, 8));
        assert_eq!(prefix_within(&sizes, 17), (2, 8));
        assert_eq!(prefix_within(&sizes, 19), (4, 19));
        let subs = nested(&sizes, &[4, 9, 18, 100]);
        let ex: Vec<usize> = subs.iter().map(|s| s.examples).collect();
        assert_eq!(ex, vec![0, 2, 3, 4]);
        assert!(subs[3].clamped && !subs[2].clamped);
        assert_eq!(subs[3].tokens, 19);
    }
}
