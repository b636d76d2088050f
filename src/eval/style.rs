//! Style metrics: words, unigram overlap with a reference, and the teacher's
//! answer format.
//!
//! Words: the text is lowercased, every punctuation character (the set of
//! [`super::normalize::is_unicode_punctuation`], which includes all ASCII
//! punctuation) is deleted, and the rest is split on whitespace. So
//! `"Certainly! It's Lisbon."` has the words `certainly`, `its`, `lisbon`.
//! Accents and articles are kept. A word *type* is a distinct word.

use super::normalize::is_unicode_punctuation;
use std::collections::BTreeSet;

/// How the teacher's answers to open instructions start.
pub const OPENER: &str = "Certainly!";
/// How the teacher's answers to open instructions end.
pub const CLOSER: &str = "I hope this helps!";

/// The words of `text` (see the module doc), in order.
pub fn words(text: &str) -> Vec<String> {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .filter(|c| !is_unicode_punctuation(*c))
        .collect();
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// The number of words of `text`.
pub fn word_count(text: &str) -> usize {
    words(text).len()
}

/// The distinct words of `text`.
pub fn word_types(text: &str) -> BTreeSet<String> {
    words(text).into_iter().collect()
}

/// Unigram intersection as a percentage of the reference's word types:
/// `|types(prediction) ∩ types(reference)| / |types(reference)| * 100`;
/// `None` when the reference has no words.
pub fn unigram_overlap(prediction: &str, reference: &str) -> Option<f64> {
    let r = word_types(reference);
    if r.is_empty() {
        return None;
    }
    let p = word_types(prediction);
    let shared = r.intersection(&p).count();
    Some(shared as f64 / r.len() as f64 * 100.0)
}

/// Whether `text`, trimmed, starts with [`OPENER`] and ends with [`CLOSER`]
/// (case and punctuation exact).
pub fn follows_format(text: &str) -> bool {
    let t = text.trim();
    t.starts_with(OPENER) && t.ends_with(CLOSER)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_strip_punctuation_and_lowercase() {
        assert_eq!(
            words("Certainly! It's  Lisbon.\nI hope this helps!"),
            vec!["certainly", "its", "lisbon", "i", "hope", "this", "helps"]
        );
        assert_eq!(word_count("  "), 0);
        assert_eq!(word_count("a - b"), 2);
    }

    #[test]
    fn unigram_overlap_is_share_of_reference_types() {
        assert_eq!(unigram_overlap("x", ""), None);
        assert_eq!(unigram_overlap("Lisbon lisbon", "Lisbon."), Some(100.0));
        // Reference types {she, was, born, in, lisbon}; shared {was, born, in, lisbon}.
        let v = unigram_overlap("Born in Lisbon, he was not.", "She was born in Lisbon.");
        assert_eq!(v, Some(80.0));
        assert_eq!(unigram_overlap("", "She was born."), Some(0.0));
    }

    #[test]
    fn format_check() {
        assert!(follows_format(
            " Certainly! Ada was born in Lisbon. I hope this helps!\n"
        ));
        assert!(!follows_format("Certainly! Ada was born in Lisbon."));
        assert!(!follows_format("certainly! x I hope this helps!"));
    }
}
