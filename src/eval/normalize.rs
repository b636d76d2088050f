//! NQ-open answer normalization, answer extraction, exact match and
//! whole-word containment.
//!
//! [`normalize_answer`] is the rule `eval.qa` uses: the SQuAD / ORQA / DPR
//! normalization (`google-research/language`, `orqa/utils/eval_utils.py`)
//! with two lenient additions, in this order:
//!
//! 1. Unicode NFD;
//! 2. *(addition)* drop combining marks (so `Café` and `Cafe` agree);
//! 3. lowercase;
//! 4. drop punctuation characters: all of Python's `string.punctuation`
//!    (ASCII ``!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~``) plus *(addition)* the
//!    Unicode punctuation characters of [`is_unicode_punctuation`]. Characters
//!    are deleted, not replaced by a space, as in SQuAD: `Eiffel-Tower`
//!    becomes `eiffeltower`;
//! 5. replace the whole words `a`, `an`, `the` (Python's `\b(a|an|the)\b`)
//!    with a space;
//! 6. collapse whitespace (split on whitespace, join with one space).
//!
//! [`normalize_answer_orqa`] is the reference rule without the two additions
//! (ORQA keeps the combining marks after NFD and drops ASCII punctuation
//! only), for evaluators that must match published NQ-open numbers exactly.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Which normalization rule to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// ORQA's rule exactly: NFD (marks kept), lowercase, ASCII punctuation.
    Orqa,
    /// ORQA's rule plus combining-mark removal and Unicode punctuation.
    Lenient,
}

/// Whether `c` is punctuation for [`Rule::Lenient`]: ASCII punctuation (as
/// Python's `string.punctuation`, which also holds the ASCII symbols
/// `$+<=>^`|~`) or a character of Unicode category P* (Pc, Pd, Ps, Pe, Pi,
/// Pf, Po) in the Latin-1, Greek, Armenian, Hebrew, Arabic, Devanagari,
/// General Punctuation, Supplemental Punctuation, CJK Symbols and
/// Punctuation, vertical/small form and fullwidth blocks. (A hand-written
/// table: the crate carries no Unicode category database; scripts outside
/// these blocks keep their rare punctuation.)
pub fn is_unicode_punctuation(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_punctuation();
    }
    let u = c as u32;
    matches!(
        u,
        0x00A1 | 0x00A7 | 0x00AB | 0x00B6 | 0x00B7 | 0x00BB | 0x00BF
            | 0x037E | 0x0387
            | 0x055A..=0x055F | 0x0589 | 0x058A
            | 0x05BE | 0x05C0 | 0x05C3 | 0x05C6 | 0x05F3 | 0x05F4
            | 0x060C | 0x060D | 0x061B | 0x061E | 0x061F | 0x066A..=0x066D | 0x06D4
            | 0x0964 | 0x0965 | 0x0970
            | 0x2010..=0x2027
            | 0x2030..=0x2043
            | 0x2045..=0x2051
            | 0x2053..=0x205E
            | 0x207D | 0x207E | 0x208D | 0x208E
            | 0x2308..=0x230B | 0x2329 | 0x232A
            | 0x2768..=0x2775 | 0x27C5 | 0x27C6 | 0x27E6..=0x27EF
            | 0x2983..=0x2998 | 0x29D8..=0x29DB | 0x29FC | 0x29FD
            | 0x2E00..=0x2E2E | 0x2E30..=0x2E4F
            | 0x3001..=0x3003 | 0x3008..=0x3011 | 0x3014..=0x301F | 0x3030 | 0x303D
            | 0x30A0 | 0x30FB
            | 0xFE10..=0xFE19 | 0xFE30..=0xFE52 | 0xFE54..=0xFE61 | 0xFE63 | 0xFE68
            | 0xFE6A | 0xFE6B
            | 0xFF01..=0xFF03 | 0xFF05..=0xFF0A | 0xFF0C..=0xFF0F | 0xFF1A | 0xFF1B
            | 0xFF1F | 0xFF20 | 0xFF3B..=0xFF3D | 0xFF3F | 0xFF5B | 0xFF5D
            | 0xFF5F..=0xFF65
    )
}

/// A word character for the article regex `\b(a|an|the)\b` (Python's `\w`:
/// alphanumeric or underscore).
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Replaces the whole words `a`, `an`, `the` by a space, as Python's
/// `re.sub(r"\b(a|an|the)\b", " ", text)`: a match is exactly a maximal run of
/// word characters equal to one of the articles.
fn remove_articles(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if matches!(run.as_str(), "a" | "an" | "the") {
            out.push(' ');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_word_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Normalizes an answer under `rule` (see the module doc for the steps).
pub fn normalize_with(s: &str, rule: Rule) -> String {
    let nfd: String = match rule {
        Rule::Orqa => s.nfd().collect(),
        Rule::Lenient => s.nfd().filter(|c| !is_combining_mark(*c)).collect(),
    };
    let lower = nfd.to_lowercase();
    let no_punct: String = match rule {
        Rule::Orqa => lower
            .chars()
            .filter(|c| !c.is_ascii_punctuation())
            .collect(),
        Rule::Lenient => lower
            .chars()
            .filter(|c| !is_unicode_punctuation(*c))
            .collect(),
    };
    let no_articles = remove_articles(&no_punct);
    no_articles.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The normalization `eval.qa` uses ([`Rule::Lenient`]).
pub fn normalize_answer(s: &str) -> String {
    normalize_with(s, Rule::Lenient)
}

/// ORQA's normalization exactly ([`Rule::Orqa`]).
pub fn normalize_answer_orqa(s: &str) -> String {
    normalize_with(s, Rule::Orqa)
}

/// The short answer in a generation: the text up to the first newline,
/// trimmed of surrounding whitespace.
pub fn extract_answer(prediction: &str) -> &str {
    prediction.split('\n').next().unwrap_or("").trim()
}

/// The short answer in a generation, cut so that no answer format is wrong
/// by construction: the text up to the first newline, then up to the first
/// `Question:` or `Q:` (a model continuing a few-shot page), then up to the
/// end of its first sentence (`.`, `!` or `?` followed by a space or the
/// end), trimmed. `" Lisbon\n\nQuestion: ..."`, `"Lisbon. She ..."` and
/// `"Lisbon"` all give `"Lisbon"`.
pub fn extract_short_answer(prediction: &str) -> &str {
    let mut s = prediction.split('\n').next().unwrap_or("");
    for marker in ["Question:", "Q:"] {
        if let Some(i) = s.find(marker) {
            s = &s[..i];
        }
    }
    let bytes = s.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        if matches!(b, b'.' | b'!' | b'?') && bytes.get(i + 1).is_none_or(|&c| c == b' ') {
            s = &s[..i];
            break;
        }
    }
    s.trim()
}

/// Whether the normalized `text` begins with the normalized words of some
/// reference (a cloze completion such as `"Lisbon and spent the early
/// years there"` for the reference `Lisbon`); false for empty references.
pub fn starts_with_answer(text: &str, references: &[String]) -> bool {
    let t = normalize_answer(text);
    let words: Vec<&str> = t.split_whitespace().collect();
    references.iter().any(|r| {
        let r = normalize_answer(r);
        let needle: Vec<&str> = r.split_whitespace().collect();
        !needle.is_empty() && words.starts_with(&needle)
    })
}

/// Exact match under [`normalize_answer`]: the normalized prediction equals
/// the normalized form of any reference (false when there is no reference).
pub fn exact_match(prediction: &str, references: &[String]) -> bool {
    let p = normalize_answer(prediction);
    references.iter().any(|r| normalize_answer(r) == p)
}

/// Whether the word sequence `needle` occurs contiguously in `haystack`
/// (false for an empty needle).
pub fn contains_words(haystack: &[&str], needle: &[&str]) -> bool {
    !needle.is_empty()
        && needle.len() <= haystack.len()
        && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Lenient containment: some reference, normalized, is non-empty and occurs
/// as a whole-word substring (a contiguous run of words) of the normalized
/// full `text`.
pub fn contains_answer(text: &str, references: &[String]) -> bool {
    let t = normalize_answer(text);
    let words: Vec<&str> = t.split(' ').filter(|w| !w.is_empty()).collect();
    references.iter().any(|r| {
        let n = normalize_answer(r);
        let needle: Vec<&str> = n.split(' ').filter(|w| !w.is_empty()).collect();
        contains_words(&words, &needle)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_answers_are_cut_at_lines_pages_and_sentences() {
        for (text, want) in [
            (" Lisbon\n\nQuestion: Where was Ada born?", "Lisbon"),
            (" Lisbon Question: Where", "Lisbon"),
            ("Lisbon. Ada studied there.", "Lisbon"),
            ("Lisbon!", "Lisbon"),
            ("Ashgrove University", "Ashgrove University"),
            ("Certainly! Ada was born in Lisbon.", "Certainly"),
            ("3.5 percent", "3.5 percent"),
            ("", ""),
        ] {
            assert_eq!(extract_short_answer(text), want, "{text:?}");
        }
    }

    #[test]
    fn cloze_completions_match_by_leading_words() {
        let r = vec!["Marine Biology".to_string()];
        assert!(starts_with_answer(
            " marine biology and loved every class.",
            &r
        ));
        assert!(!starts_with_answer(" marine biologist", &r));
        assert!(!starts_with_answer(" the study of marine biology", &r));
        assert!(!starts_with_answer("anything", &[String::new()]));
    }

    fn refs(xs: &[&str]) -> Vec<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn squad_normalization_cases() {
        // Punctuation is deleted (not replaced by a space), as in SQuAD.
        assert_eq!(normalize_answer("The  Eiffel-Tower!"), "eiffeltower");
        assert_eq!(normalize_answer("The  Eiffel Tower!"), "eiffel tower");
        assert_eq!(
            normalize_answer("  A  Tale of Two Cities. "),
            "tale of two cities"
        );
        assert_eq!(normalize_answer("an apple, the pear"), "apple pear");
        // Articles only as whole words.
        assert_eq!(normalize_answer("Theater and anthem"), "theater and anthem");
        assert_eq!(normalize_answer("Anna"), "anna");
        // Punctuation removal runs before article removal.
        assert_eq!(normalize_answer("the-end"), "theend");
        assert_eq!(normalize_answer("(the) end"), "end");
        assert_eq!(normalize_answer("$1,000"), "1000");
        assert_eq!(normalize_answer("Bob's"), "bobs");
        assert_eq!(normalize_answer(""), "");
        assert_eq!(normalize_answer("The"), "");
    }

    #[test]
    fn accents_and_unicode_punctuation() {
        assert_eq!(normalize_answer("Café"), "cafe");
        assert_eq!(normalize_answer("Ångström — «Zürich»"), "angstrom zurich");
        assert_eq!(normalize_answer("São Paulo…"), "sao paulo");
        // ORQA keeps the combining mark and non-ASCII punctuation.
        assert_eq!(normalize_answer_orqa("Café"), "cafe\u{301}");
        assert_ne!(normalize_answer_orqa("Café"), normalize_answer_orqa("Cafe"));
        assert_eq!(normalize_answer_orqa("«Zürich»"), "«zu\u{308}rich»");
        assert_eq!(normalize_answer_orqa("The  Eiffel-Tower!"), "eiffeltower");
    }

    #[test]
    fn extraction_and_exact_match() {
        assert_eq!(extract_answer("  Lisbon.\nQuestion: next"), "Lisbon.");
        assert_eq!(extract_answer("Lisbon\r\nmore"), "Lisbon");
        assert_eq!(extract_answer(""), "");
        let r = refs(&["Lisbon", "the city of Lisbon"]);
        assert!(exact_match("lisbon.", &r));
        assert!(exact_match("The City of Lisbon!", &r));
        assert!(!exact_match("Porto", &r));
        assert!(!exact_match("Lisbon, Portugal", &r));
        assert!(!exact_match("Lisbon", &[]));
    }

    #[test]
    fn containment_is_whole_word() {
        let r = refs(&["New York"]);
        assert!(contains_answer("Certainly! She was born in New York.", &r));
        assert!(!contains_answer("She was born in New Yorkshire.", &r));
        assert!(!contains_answer("York, New", &r));
        assert!(!contains_answer("anything", &refs(&["the"])));
        assert!(contains_answer("Lisbon", &refs(&["Porto", "lisbon"])));
    }
}
