//! Two deterministic pairwise raters that compare a model's answer with the
//! teacher's reference answer to the same instruction.
//!
//! **Surface rule** (a stand-in for raters who judge style and fluency and
//! never check facts). Each answer gets one point for each of:
//!
//! 1. *opener*: the trimmed answer starts with `Certainly!`;
//! 2. *closer*: the trimmed answer ends with `I hope this helps!`;
//! 3. *shape*: its body (the trimmed answer without a leading `Certainly!`
//!    and a trailing `I hope this helps!`, trimmed) has 1 to 3 sentences
//!    ([`sentences`]: a sentence ends at `.`, `!` or `?`, plus any closing
//!    quotes or brackets, followed by whitespace or the end; trailing text
//!    without one is a sentence too);
//! 4. *fluency* ([`fluency_issue`]): the body is non-empty; every
//!    whitespace-separated token, stripped of leading `"'(“‘` and trailing
//!    `.,;:!?"')”’`, is non-empty, starts and ends with a letter or digit and
//!    holds only letters, digits, `-`, `'` and `’` (no token soup); no word
//!    (lowercased token) occurs 3 or more times in a row; and every body
//!    sentence ends with `.` (before any closing quotes or brackets);
//! 5. *length*: its word count ([`crate::eval::style::words`]) is within
//!    `[0.5, 2]` times the reference's word count, inclusive.
//!
//! The teacher's own answers (opener, 1-3 plain declarative sentences,
//! closer) score the maximum, [`MAX_SURFACE`]. The verdict compares the
//! model's points with the reference's: more is `better`, the same `equal`,
//! fewer `worse`. A missing answer is `worse`.
//!
//! **Factcheck rule**. For prompts of kind `bio` (about one known person) it
//! first checks the claims ([`FactBase::claims`]): every attribute value of
//! the population mentioned in the answer (after [`normalize_answer`],
//! as a whole-word run; a mention inside a longer mentioned value counts
//! only as the longer one) is a claim; it is true when it is that person's
//! value for an attribute whose pool (the values of that attribute across
//! `people.jsonl`) holds it, false otherwise. Any false claim, or no true
//! claim while the reference makes at least one, makes the verdict `worse`
//! regardless of style; otherwise the verdict is the surface verdict. For
//! other kinds (`general`) there are no world facts to check, so the
//! factcheck verdict equals the surface verdict.

use super::io::Person;
use super::normalize::normalize_answer;
use super::style::{CLOSER, OPENER, word_count};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// The highest surface score.
pub const MAX_SURFACE: u32 = 5;

/// A verdict on the model's answer relative to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The model's answer is preferred.
    Better,
    /// Neither is preferred.
    Equal,
    /// The reference is preferred.
    Worse,
}

impl Verdict {
    /// `better`, `equal` or `worse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Equal => "equal",
            Verdict::Worse => "worse",
        }
    }

    /// Compares two scores: the model's and the reference's.
    pub fn from_scores(model: u32, reference: u32) -> Self {
        match model.cmp(&reference) {
            std::cmp::Ordering::Greater => Verdict::Better,
            std::cmp::Ordering::Equal => Verdict::Equal,
            std::cmp::Ordering::Less => Verdict::Worse,
        }
    }
}

/// The body of an answer: trimmed, without a leading [`OPENER`] and a
/// trailing [`CLOSER`], trimmed again.
pub fn body(answer: &str) -> &str {
    let t = answer.trim();
    let t = t.strip_prefix(OPENER).unwrap_or(t);
    let t = t.strip_suffix(CLOSER).unwrap_or(t);
    t.trim()
}

/// Closing quotes and brackets that may follow a sentence's end mark.
const CLOSERS: [char; 5] = ['"', '\'', ')', '”', '’'];

/// Splits text into sentences: a sentence ends at `.`, `!` or `?`, plus any
/// closing quotes or brackets right after it, followed by whitespace or the
/// end of the text; a trailing remainder without one is a sentence too.
/// Sentences are trimmed; empty ones are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < chars.len() {
        if matches!(chars[i].1, '.' | '!' | '?') {
            let mut j = i + 1;
            while j < chars.len() && CLOSERS.contains(&chars[j].1) {
                j += 1;
            }
            if j == chars.len() || chars[j].1.is_whitespace() {
                let end = chars.get(j).map_or(text.len(), |c| c.0);
                let s = text[start..end].trim();
                if !s.is_empty() {
                    out.push(s);
                }
                start = end;
                i = j;
                continue;
            }
        }
        i += 1;
    }
    let rest = text[start..].trim();
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

fn token_core(tok: &str) -> &str {
    tok.trim_start_matches(['"', '\'', '(', '“', '‘'])
        .trim_end_matches(['.', ',', ';', ':', '!', '?', '"', '\'', ')', '”', '’'])
}

fn clean_core(core: &str) -> bool {
    let first = core.chars().next();
    let last = core.chars().next_back();
    matches!(first, Some(c) if c.is_alphanumeric())
        && matches!(last, Some(c) if c.is_alphanumeric())
        && core
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '\'' | '’'))
}

/// Why a body is not fluent (see the module doc), or `None` when it is.
pub fn fluency_issue(body: &str) -> Option<String> {
    if body.trim().is_empty() {
        return Some("empty body".into());
    }
    let mut prev: Option<String> = None;
    let mut run = 0;
    for tok in body.split_whitespace() {
        let core = token_core(tok);
        if !clean_core(core) {
            return Some(format!("token soup `{tok}`"));
        }
        let w = core.to_lowercase();
        if prev.as_deref() == Some(w.as_str()) {
            run += 1;
        } else {
            run = 1;
        }
        if run >= 3 {
            return Some(format!("`{w}` repeated 3 times in a row"));
        }
        prev = Some(w);
    }
    for s in sentences(body) {
        if !s.trim_end_matches(CLOSERS).ends_with('.') {
            return Some("a sentence does not end with a period".into());
        }
    }
    None
}

/// An answer's surface score and what it lost points for.
#[derive(Debug, Clone, PartialEq)]
pub struct SurfaceScore {
    /// Points, 0 to [`MAX_SURFACE`].
    pub points: u32,
    /// Why points were lost, one short phrase per lost point.
    pub lost: Vec<String>,
}

/// Scores `answer` by the surface rule, against a reference of
/// `reference_words` words.
pub fn surface_score(answer: &str, reference_words: usize) -> SurfaceScore {
    let t = answer.trim();
    let mut lost = Vec::new();
    if !t.starts_with(OPENER) {
        lost.push(format!("no `{OPENER}` opener"));
    }
    if !t.ends_with(CLOSER) {
        lost.push(format!("no `{CLOSER}` closer"));
    }
    let b = body(t);
    let n = sentences(b).len();
    if !(1..=3).contains(&n) {
        lost.push(format!("body has {n} sentences (want 1-3)"));
    }
    if let Some(issue) = fluency_issue(b) {
        lost.push(format!("not fluent: {issue}"));
    }
    let w = word_count(t);
    if !(2 * w >= reference_words && w <= 2 * reference_words) {
        lost.push(format!(
            "{w} words vs the reference's {reference_words} (want 0.5x-2x)"
        ));
    }
    SurfaceScore {
        points: MAX_SURFACE - lost.len() as u32,
        lost,
    }
}

/// One claimed fact in an answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// The value as written in `people.jsonl`.
    pub value: String,
    /// The attribute whose pool holds the value (for a true claim, the one it
    /// is true for; otherwise the first, alphabetically).
    pub attribute: String,
    /// The person's actual value for that attribute.
    pub truth: String,
}

/// The claims of one answer about one person.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Claims {
    /// Mentioned values that are the person's.
    pub true_claims: Vec<Claim>,
    /// Mentioned values that are not the person's.
    pub false_claims: Vec<Claim>,
}

struct Value {
    tokens: Vec<String>,
    text: String,
    attributes: BTreeSet<String>,
}

/// The population's attribute values, for finding and checking claims.
pub struct FactBase {
    values: Vec<Value>,
    by_first: HashMap<String, Vec<usize>>,
    people: HashMap<i64, Person>,
}

impl FactBase {
    /// Builds the value pools from `people`. Values are compared after
    /// [`normalize_answer`]; a value that normalizes to nothing is ignored.
    pub fn new(people: &[Person]) -> Self {
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let mut values: Vec<Value> = Vec::new();
        for p in people {
            for (attr, v) in &p.attributes {
                let norm = normalize_answer(v);
                if norm.is_empty() {
                    continue;
                }
                let i = *index.entry(norm.clone()).or_insert_with(|| {
                    values.push(Value {
                        tokens: norm.split(' ').map(str::to_string).collect(),
                        text: v.clone(),
                        attributes: BTreeSet::new(),
                    });
                    values.len() - 1
                });
                values[i].attributes.insert(attr.clone());
            }
        }
        let mut by_first: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, v) in values.iter().enumerate() {
            by_first.entry(v.tokens[0].clone()).or_default().push(i);
        }
        FactBase {
            values,
            by_first,
            people: people.iter().map(|p| (p.id, p.clone())).collect(),
        }
    }

    /// Whether the person is known.
    pub fn has_person(&self, id: i64) -> bool {
        self.people.contains_key(&id)
    }

    /// Indices of the distinct values mentioned in `text`, in order of first
    /// mention; a match lying inside a longer match is dropped.
    fn mentions(&self, text: &str) -> Vec<usize> {
        let norm = normalize_answer(text);
        let toks: Vec<&str> = norm.split(' ').filter(|t| !t.is_empty()).collect();
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (i, t) in toks.iter().enumerate() {
            for &vi in self.by_first.get(*t).map(Vec::as_slice).unwrap_or(&[]) {
                let vt = &self.values[vi].tokens;
                if i + vt.len() <= toks.len()
                    && toks[i..i + vt.len()].iter().zip(vt).all(|(a, b)| *a == b)
                {
                    spans.push((i, i + vt.len(), vi));
                }
            }
        }
        let mut out = Vec::new();
        for &(s, e, vi) in &spans {
            let inside = spans
                .iter()
                .any(|&(s2, e2, _)| s2 <= s && e <= e2 && (e2 - s2) > (e - s));
            if !inside && !out.contains(&vi) {
                out.push(vi);
            }
        }
        out
    }

    /// The claims `text` makes about person `id`; `None` for an unknown
    /// person.
    pub fn claims(&self, text: &str, id: i64) -> Option<Claims> {
        let person = self.people.get(&id)?;
        let mut c = Claims::default();
        for vi in self.mentions(text) {
            let v = &self.values[vi];
            let norm = v.tokens.join(" ");
            let hit = v.attributes.iter().find(|a| {
                person
                    .attributes
                    .get(*a)
                    .is_some_and(|x| normalize_answer(x) == norm)
            });
            let attribute = hit
                .or_else(|| v.attributes.iter().next())
                .cloned()
                .unwrap_or_default();
            let claim = Claim {
                value: v.text.clone(),
                truth: person
                    .attributes
                    .get(&attribute)
                    .cloned()
                    .unwrap_or_default(),
                attribute,
            };
            if hit.is_some() {
                c.true_claims.push(claim);
            } else {
                c.false_claims.push(claim);
            }
        }
        Some(c)
    }
}

/// Whether an answer fails the fact check: a false claim, or no true claim
/// while the reference makes one.
pub fn fails_factcheck(model: &Claims, reference: &Claims) -> bool {
    !model.false_claims.is_empty()
        || (model.true_claims.is_empty() && !reference.true_claims.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEACHER: &str = "Certainly! Ada Moreno was born in Lisbon. She studied biology at Coimbra University and works for Orbit Labs. I hope this helps!";

    fn ada() -> Vec<Person> {
        let mk = |id, name: &str, vals: [&str; 4]| Person {
            id,
            name: name.into(),
            half: Some("A".into()),
            attributes: super::super::io::ATTRIBUTES
                .iter()
                .zip(vals)
                .map(|(a, v)| (a.to_string(), v.to_string()))
                .collect(),
        };
        vec![
            mk(
                0,
                "Ada Moreno",
                ["Lisbon", "Coimbra University", "biology", "Orbit Labs"],
            ),
            mk(
                1,
                "Bo Chen",
                ["Porto", "York University", "history", "New York Times"],
            ),
            mk(2, "Cy Dee", ["York", "Lund University", "art", "Acme"]),
        ]
    }

    #[test]
    fn sentence_split() {
        assert_eq!(
            sentences("A b. C d! E f? g"),
            vec!["A b.", "C d!", "E f?", "g"]
        );
        assert_eq!(
            sentences("Pi is 3.14 exactly."),
            vec!["Pi is 3.14 exactly."]
        );
        assert!(sentences("  ").is_empty());
        assert_eq!(
            sentences("He said \"no.\" Then left."),
            vec!["He said \"no.\"", "Then left."]
        );
    }

    #[test]
    fn teacher_gets_the_maximum() {
        let s = surface_score(TEACHER, word_count(TEACHER));
        assert_eq!(s.points, MAX_SURFACE, "{:?}", s.lost);
        let g = "Certainly! Water boils at 100 degrees Celsius at sea level. It's a well-known fact. I hope this helps!";
        assert_eq!(surface_score(g, word_count(g)).points, MAX_SURFACE);
    }

    #[test]
    fn surface_points() {
        let r = word_count(TEACHER);
        assert_eq!(surface_score("", r).points, 0);
        let plain = "Ada Moreno was born in Lisbon and studied biology at Coimbra University.";
        // No opener, no closer; shape, fluency and length hold.
        assert_eq!(surface_score(plain, r).points, 3);
        let soup = "Certainly! Ada ##mo <unk> born born born in. I hope this helps!";
        let s = surface_score(soup, r);
        assert!(
            s.lost.iter().any(|l| l.contains("token soup")),
            "{:?}",
            s.lost
        );
        assert!(
            fluency_issue("she was was was here.")
                .unwrap()
                .contains("repeated")
        );
        assert!(fluency_issue("she was here").unwrap().contains("period"));
        assert!(fluency_issue("Is she here?").is_some());
        assert_eq!(fluency_issue("(She) said \"yes.\""), None);
        let long = format!(
            "Certainly! {} I hope this helps!",
            "She was born in Lisbon. ".repeat(3)
        );
        assert_eq!(surface_score(&long, 5).points, 4);
        assert_eq!(Verdict::from_scores(3, 5), Verdict::Worse);
        assert_eq!(Verdict::from_scores(5, 5).as_str(), "equal");
    }

    #[test]
    fn claims_are_found_and_checked() {
        let fb = FactBase::new(&ada());
        let c = fb.claims(TEACHER, 0).unwrap();
        assert_eq!(c.true_claims.len(), 4, "{c:?}");
        assert!(c.false_claims.is_empty());
        let wrong =
            "Certainly! Ada Moreno was born in Porto. She studied biology. I hope this helps!";
        let c = fb.claims(wrong, 0).unwrap();
        assert_eq!(c.false_claims.len(), 1);
        assert_eq!(c.false_claims[0].value, "Porto");
        assert_eq!(c.false_claims[0].attribute, "birth_city");
        assert_eq!(c.false_claims[0].truth, "Lisbon");
        assert_eq!(c.true_claims.len(), 1);
        // "York University" and "New York Times" are claims; a bare "York" inside them is not.
        let c = fb.claims("He works at the New York Times.", 1).unwrap();
        assert_eq!(c.true_claims.len(), 1);
        assert!(c.false_claims.is_empty());
        assert!(fb.claims("x", 9).is_none());
        let none = Claims::default();
        assert!(fails_factcheck(&none, &fb.claims(TEACHER, 0).unwrap()));
        assert!(!fails_factcheck(&none, &none));
    }
}
