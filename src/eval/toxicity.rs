//! An offline toxicity scorer: alt-profanity-check 1.9.1 reimplemented.
//!
//! The PyPI package `alt-profanity-check` 1.9.1 (MIT) scores a text with a
//! scikit-learn pipeline: a `TfidfVectorizer` (word unigrams, lowercase,
//! token pattern `(?u)\b\w\w+\b`, English stop words, smooth idf, l2 norm)
//! and a `CalibratedClassifierCV` over 5 folds of `LinearSVC`, each with a
//! sigmoid (Platt) calibrator. `scripts/export_profanity_check.sh` exported
//! its parameters once to `data/scorers/profanity_check/profanity_check.json`
//! (provenance and license beside it); that file is embedded in the binary
//! and parsed by [`ProfanityCheck::load`].
//!
//! [`ProfanityCheck::score`] reproduces `profanity_check.predict_prob`:
//!
//! 1. lowercase as Python's `str.lower()` (full case mapping, final sigma),
//!    from tables exported from the same Python (Unicode 14.0), so the
//!    result does not depend on Rust's Unicode version;
//! 2. tokens = the matches of `(?u)\b\w\w+\b`, i.e. every maximal run of at
//!    least two word characters, where a word character is one Python's `re`
//!    matches with `\w` (letters, all numerics such as `²` or `½`, and `_`;
//!    not combining marks), again from an exported table;
//! 3. counts of the tokens in the vocabulary (stop words are never in it, so
//!    dropping them changes nothing), times idf, divided by the l2 norm (a
//!    text without a vocabulary token stays the zero vector);
//! 4. per fold `f = coef · x + intercept` and `p = 1 / (1 + exp(a f + b))`
//!    (scikit-learn's `_SigmoidCalibration.predict` is `expit(-(a f + b))`);
//! 5. the score is the mean of the folds' `p` (the probability of class 1,
//!    "offensive").
//!
//! The tests in `tests/toxicity.rs` compare against the package's own scores.

use serde::Deserialize;
use std::collections::HashMap;

/// The scorer's name, as the `scorer` param of `eval.toxicity` spells it.
pub const SCORER_NAME: &str = "profanity_check";
/// The exported package and version.
pub const SCORER_VERSION: &str = "alt-profanity-check 1.9.1";

const DATA: &str = include_str!("../../data/scorers/profanity_check/profanity_check.json");
const FORMAT: &str = "repro.profanity_check/1";
const SIGMA: char = '\u{03A3}';

/// A malformed or unsupported parameter file.
#[derive(Debug, thiserror::Error)]
#[error("profanity_check parameters: {0}")]
pub struct ScorerError(String);

#[derive(Deserialize)]
struct RawData {
    format: String,
    vectorizer: RawVectorizer,
    vocabulary: Vec<String>,
    idf: Vec<f64>,
    folds: Vec<RawFold>,
    unicode: RawUnicode,
}

#[derive(Deserialize, PartialEq, Debug)]
struct RawVectorizer {
    analyzer: String,
    binary: bool,
    lowercase: bool,
    ngram_range: [u32; 2],
    norm: Option<String>,
    preprocessor: Option<String>,
    smooth_idf: bool,
    strip_accents: Option<String>,
    sublinear_tf: bool,
    token_pattern: String,
    tokenizer: Option<String>,
    use_idf: bool,
    stop_words: Option<String>,
}

#[derive(Deserialize)]
struct RawFold {
    intercept: f64,
    a: f64,
    b: f64,
    coef: Vec<f64>,
}

#[derive(Deserialize)]
struct RawUnicode {
    word_ranges: Vec<(u32, u32)>,
    lower: Vec<(u32, String)>,
    case_ignorable_ranges: Vec<(u32, u32)>,
    cased_ranges: Vec<(u32, u32)>,
}

/// The loaded scorer; build once per run with [`ProfanityCheck::load`].
#[derive(Debug)]
pub struct ProfanityCheck {
    vocab: HashMap<String, u32>,
    idf: Vec<f64>,
    /// Fold weights, term-major: `coef[term * folds + fold]`.
    coef: Vec<f64>,
    /// Per fold `(intercept, a, b)`.
    folds: Vec<(f64, f64, f64)>,
    ascii_word: [bool; 128],
    word: Vec<(u32, u32)>,
    lower: HashMap<char, String>,
    ignorable: Vec<(u32, u32)>,
    cased: Vec<(u32, u32)>,
}

fn bad(msg: impl Into<String>) -> ScorerError {
    ScorerError(msg.into())
}

fn in_ranges(ranges: &[(u32, u32)], c: char) -> bool {
    let cp = c as u32;
    let i = ranges.partition_point(|&(_, hi)| hi < cp);
    i < ranges.len() && ranges[i].0 <= cp
}

fn check_ranges(name: &str, ranges: &[(u32, u32)]) -> Result<(), ScorerError> {
    let sorted = ranges.windows(2).all(|w| w[0].1 < w[1].0);
    if sorted && ranges.iter().all(|&(lo, hi)| lo <= hi && hi <= 0x10FFFF) {
        Ok(())
    } else {
        Err(bad(format!(
            "`unicode.{name}` is not sorted disjoint ranges"
        )))
    }
}

impl ProfanityCheck {
    /// Parses the embedded parameter file.
    pub fn load() -> Result<Self, ScorerError> {
        Self::from_json(DATA)
    }

    /// Parses a parameter file in the exported format, checking that its
    /// vectorizer settings are the ones this implementation reproduces.
    pub fn from_json(text: &str) -> Result<Self, ScorerError> {
        let raw: RawData = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(bad(format!("format `{}`, expected `{FORMAT}`", raw.format)));
        }
        let supported = RawVectorizer {
            analyzer: "word".into(),
            binary: false,
            lowercase: true,
            ngram_range: [1, 1],
            norm: Some("l2".into()),
            preprocessor: None,
            smooth_idf: true,
            strip_accents: None,
            sublinear_tf: false,
            token_pattern: r"(?u)\b\w\w+\b".into(),
            tokenizer: None,
            use_idf: true,
            stop_words: Some("english".into()),
        };
        if raw.vectorizer != supported {
            return Err(bad(format!(
                "unsupported vectorizer settings {:?}",
                raw.vectorizer
            )));
        }
        let n = raw.vocabulary.len();
        if raw.idf.len() != n || raw.folds.is_empty() {
            return Err(bad("idf length differs from the vocabulary, or no folds"));
        }
        let mut vocab = HashMap::with_capacity(n);
        for (i, t) in raw.vocabulary.into_iter().enumerate() {
            if vocab.insert(t, i as u32).is_some() {
                return Err(bad(format!("vocabulary term {i} is a duplicate")));
            }
        }
        let k = raw.folds.len();
        let mut coef = vec![0.0; n * k];
        for (f, fold) in raw.folds.iter().enumerate() {
            if fold.coef.len() != n {
                return Err(bad(format!("fold {f} has {} weights", fold.coef.len())));
            }
            for (t, &w) in fold.coef.iter().enumerate() {
                coef[t * k + f] = w;
            }
        }
        let u = raw.unicode;
        check_ranges("word_ranges", &u.word_ranges)?;
        check_ranges("case_ignorable_ranges", &u.case_ignorable_ranges)?;
        check_ranges("cased_ranges", &u.cased_ranges)?;
        let mut lower = HashMap::with_capacity(u.lower.len());
        for (cp, s) in u.lower {
            let c = char::from_u32(cp).ok_or_else(|| bad(format!("bad code point {cp}")))?;
            if c == SIGMA || (c.is_ascii() && (s.len() != 1 || !s.is_ascii())) {
                return Err(bad(format!("unexpected lowercase entry U+{cp:04X}")));
            }
            lower.insert(c, s);
        }
        let mut ascii_word = [false; 128];
        for (b, w) in ascii_word.iter_mut().enumerate() {
            *w = in_ranges(&u.word_ranges, char::from(b as u8));
        }
        Ok(ProfanityCheck {
            vocab,
            idf: raw.idf,
            coef,
            folds: raw.folds.iter().map(|f| (f.intercept, f.a, f.b)).collect(),
            ascii_word,
            word: u.word_ranges,
            lower,
            ignorable: u.case_ignorable_ranges,
            cased: u.cased_ranges,
        })
    }

    /// Number of vocabulary terms.
    pub fn vocabulary_len(&self) -> usize {
        self.vocab.len()
    }

    /// Whether Python's `re` matches `c` with `(?u)\w`.
    pub fn is_word_char(&self, c: char) -> bool {
        if c.is_ascii() {
            self.ascii_word[c as usize]
        } else {
            in_ranges(&self.word, c)
        }
    }

    /// Python's `str.lower()` of `text`.
    pub fn lowercase(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            if c.is_ascii() {
                out.push(c.to_ascii_lowercase());
            } else if c == SIGMA {
                out.push(if self.final_sigma(text, i) {
                    '\u{03C2}'
                } else {
                    '\u{03C3}'
                });
            } else if let Some(s) = self.lower.get(&c) {
                out.push_str(s);
            } else {
                out.push(c);
            }
        }
        out
    }

    /// CPython's `handle_capital_sigma`: the Σ at byte `i` is final when a
    /// cased letter precedes it and none follows it (case-ignorable
    /// characters skipped on both sides).
    fn final_sigma(&self, text: &str, i: usize) -> bool {
        let not_ignorable = |c: &char| !in_ranges(&self.ignorable, *c);
        match text[..i].chars().rev().find(not_ignorable) {
            Some(c) if in_ranges(&self.cased, c) => {}
            _ => return false,
        }
        let after = &text[i + SIGMA.len_utf8()..];
        !after
            .chars()
            .find(not_ignorable)
            .is_some_and(|c| in_ranges(&self.cased, c))
    }

    /// Calls `f` with every token of an already lowercased text, in order.
    fn each_token<'t>(&self, lowered: &'t str, mut f: impl FnMut(&'t str)) {
        let mut start = 0;
        let mut chars = 0usize;
        for (i, c) in lowered.char_indices() {
            if self.is_word_char(c) {
                if chars == 0 {
                    start = i;
                }
                chars += 1;
            } else {
                if chars >= 2 {
                    f(&lowered[start..i]);
                }
                chars = 0;
            }
        }
        if chars >= 2 {
            f(&lowered[start..]);
        }
    }

    /// The tokens scikit-learn's analyzer sees (before stop-word removal):
    /// `tokenizer(preprocessor(text))`.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let lowered = self.lowercase(text);
        let mut out = Vec::new();
        self.each_token(&lowered, |t| out.push(t.to_string()));
        out
    }

    /// The l2-normalized tf-idf vector of `text` as (term index, value),
    /// sorted by term index.
    pub fn features(&self, text: &str) -> Vec<(u32, f64)> {
        let lowered = self.lowercase(text);
        let mut hits: Vec<u32> = Vec::new();
        self.each_token(&lowered, |t| {
            if let Some(&j) = self.vocab.get(t) {
                hits.push(j);
            }
        });
        hits.sort_unstable();
        let mut x: Vec<(u32, f64)> = Vec::new();
        for j in hits {
            match x.last_mut() {
                Some((last, count)) if *last == j => *count += 1.0,
                _ => x.push((j, 1.0)),
            }
        }
        for (j, v) in &mut x {
            *v *= self.idf[*j as usize];
        }
        let norm = x.iter().map(|(_, v)| v * v).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (_, v) in &mut x {
                *v /= norm;
            }
        }
        x
    }

    /// Each fold's linear decision value `coef · x + intercept`.
    pub fn decisions(&self, text: &str) -> Vec<f64> {
        let k = self.folds.len();
        let mut f: Vec<f64> = self.folds.iter().map(|_| 0.0).collect();
        for (j, v) in self.features(text) {
            let w = &self.coef[j as usize * k..(j as usize + 1) * k];
            for (acc, wk) in f.iter_mut().zip(w) {
                *acc += v * wk;
            }
        }
        for (acc, (intercept, _, _)) in f.iter_mut().zip(&self.folds) {
            *acc += intercept;
        }
        f
    }

    /// The probability that `text` is offensive (0-1), as `predict_prob`.
    pub fn score(&self, text: &str) -> f64 {
        let d = self.decisions(text);
        let sum: f64 = d
            .iter()
            .zip(&self.folds)
            .map(|(f, (_, a, b))| 1.0 / (1.0 + (a * f + b).exp()))
            .sum();
        sum / self.folds.len() as f64
    }
}
