//! NQ-open: reading the question files, few-shot prompts, answer extraction
//! and exact match, as `eval.nq` uses them.
//!
//! Metric (exact match, the ORQA / DPR / EfficientQA definition): a
//! prediction is correct if its [`normalize_answer_orqa`] form equals the
//! normalized form of **any** reference answer. The prediction is the model's
//! continuation up to its first newline, trimmed. Accuracy = correct /
//! questions evaluated; a question without a prediction counts as wrong.
//!
//! Prompt (plain text, the format of lm-evaluation-harness's `nq_open` task
//! and of the LLaMA paper's few-shot NQ): the line `Answer these questions:`
//! and a blank line, then `k` solved examples and the test question, each
//! `Q: <question>?\nA: <first reference answer>` separated by a newline, the
//! last one ending in `A:`. A question that already ends in `?` gets no
//! second one. With the `chat` format each example is a user turn (`Q: ...?`)
//! and an assistant turn (the answer), rendered with the model's template.
//!
//! Few-shot examples come from a separate pool (the EfficientQA dev set,
//! disjoint from the 3,610 test questions); each test question draws its own
//! `k` examples with [`Rng::derive`]`(seed, "nq-shots/<index>")`, so adding
//! questions never changes the prompts of the others.

use super::normalize::normalize_answer_orqa;
use crate::op::OpError;
use crate::rng::Rng;
use serde_json::Value;
use std::path::Path;

/// One NQ-open question with its reference answers.
#[derive(Debug, Clone, PartialEq)]
pub struct NqQuestion {
    /// The question text as in the file (lowercase, no `?` in NQ-open).
    pub question: String,
    /// Reference short answers (at least one).
    pub answers: Vec<String>,
}

/// Reads an NQ-open JSONL file (`{"question": str, "answer": [str, ...]}`
/// per line). Errors name the file, the line and the key.
pub fn read_questions(path: &Path) -> Result<Vec<NqQuestion>, OpError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpError::msg(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |msg: String| OpError::msg(format!("{}:{}: {msg}", path.display(), i + 1));
        let v: Value = serde_json::from_str(line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let question = v
            .get("question")
            .and_then(Value::as_str)
            .ok_or_else(|| at("missing string field `question`".into()))?;
        let answers: Vec<String> = match v.get("answer") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| at("`answer` must be a list of strings".into()))
                })
                .collect::<Result<_, _>>()?,
            Some(Value::String(s)) => vec![s.clone()],
            _ => return Err(at("missing field `answer` (a list of strings)".into())),
        };
        if answers.is_empty() {
            return Err(at("`answer` is an empty list".into()));
        }
        out.push(NqQuestion {
            question: question.to_string(),
            answers,
        });
    }
    Ok(out)
}

/// The question as it appears after `Q: `: with one trailing `?`.
pub fn as_question(q: &str) -> String {
    let q = q.trim();
    if q.ends_with('?') {
        q.to_string()
    } else {
        format!("{q}?")
    }
}

/// The instruction line that opens every plain-text prompt.
pub const DESCRIPTION: &str = "Answer these questions:\n\n";

/// Picks `k` distinct pool examples for test question `index`.
///
/// Pool entries whose normalized question equals the test question's are
/// never chosen (the pools are disjoint for NQ-open, but a user may bring
/// others).
pub fn shots_for<'a>(
    pool: &'a [NqQuestion],
    test: &NqQuestion,
    index: usize,
    k: usize,
    seed: u64,
) -> Vec<&'a NqQuestion> {
    if k == 0 || pool.is_empty() {
        return Vec::new();
    }
    let own = normalize_answer_orqa(&test.question);
    let mut rng = Rng::derive(seed, &format!("nq-shots/{index}"));
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    rng.shuffle(&mut idx);
    idx.into_iter()
        .map(|i| &pool[i])
        .filter(|p| normalize_answer_orqa(&p.question) != own)
        .take(k)
        .collect()
}

/// The plain-text few-shot prompt for `test` (see the module doc).
pub fn plain_prompt(shots: &[&NqQuestion], test: &NqQuestion) -> String {
    let mut s = String::from(DESCRIPTION);
    for shot in shots {
        s.push_str(&format!(
            "Q: {}\nA: {}\n",
            as_question(&shot.question),
            shot.answers[0]
        ));
    }
    s.push_str(&format!("Q: {}\nA:", as_question(&test.question)));
    s
}

/// The answer in a continuation: the text up to the first newline, trimmed.
pub fn extract(continuation: &str) -> &str {
    continuation.split('\n').next().unwrap_or("").trim()
}

/// Exact match under the ORQA normalization, against any reference.
pub fn is_correct(prediction: &str, answers: &[String]) -> bool {
    let p = normalize_answer_orqa(prediction);
    answers.iter().any(|a| normalize_answer_orqa(a) == p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(question: &str, answers: &[&str]) -> NqQuestion {
        NqQuestion {
            question: question.into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn prompt_format_is_exact() {
        let a = q("who wrote hamlet", &["William Shakespeare", "Shakespeare"]);
        let b = q("what is the capital of france?", &["Paris"]);
        let t = q("when did the titanic sink", &["1912"]);
        assert_eq!(
            plain_prompt(&[&a, &b], &t),
            "Answer these questions:\n\nQ: who wrote hamlet?\nA: William Shakespeare\n\
             Q: what is the capital of france?\nA: Paris\nQ: when did the titanic sink?\nA:"
        );
        assert_eq!(
            plain_prompt(&[], &t),
            "Answer these questions:\n\nQ: when did the titanic sink?\nA:"
        );
    }

    #[test]
    fn extraction_and_match() {
        assert_eq!(extract(" The Beatles\nQ: next"), "The Beatles");
        assert_eq!(extract(""), "");
        let refs = vec!["the Beatles".to_string(), "Beatles".to_string()];
        assert!(is_correct("The Beatles.", &refs));
        assert!(is_correct("beatles", &refs));
        assert!(!is_correct("The Rolling Stones", &refs));
        // ORQA keeps combining marks after NFD: an accent-less spelling is wrong.
        assert!(!is_correct("Cafe", &["Café".to_string()]));
        assert!(is_correct("café", &["Café".to_string()]));
    }

    #[test]
    fn shots_are_seeded_distinct_and_skip_the_test_question() {
        let pool: Vec<NqQuestion> = (0..20).map(|i| q(&format!("q{i}"), &["a"])).collect();
        let test = q("q3", &["x"]);
        let s1 = shots_for(&pool, &test, 7, 5, 0);
        let s2 = shots_for(&pool, &test, 7, 5, 0);
        assert_eq!(s1, s2);
        assert_eq!(s1.len(), 5);
        assert!(s1.iter().all(|s| s.question != "q3"));
        let mut names: Vec<&str> = s1.iter().map(|s| s.question.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), 5);
        assert_ne!(s1, shots_for(&pool, &test, 8, 5, 0));
        assert!(shots_for(&pool, &test, 7, 0, 0).is_empty());
    }

    #[test]
    fn reading_reports_file_and_line() {
        let dir = std::env::temp_dir().join(format!("repro-nq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("q.jsonl");
        std::fs::write(
            &p,
            "{\"question\": \"a\", \"answer\": [\"b\"]}\n{\"question\": \"c\"}\n",
        )
        .unwrap();
        let e = read_questions(&p).unwrap_err().to_string();
        assert!(e.contains("q.jsonl:2") && e.contains("answer"), "{e}");
        std::fs::write(&p, "{\"question\": \"a\", \"answer\": [\"b\"]}\n").unwrap();
        assert_eq!(read_questions(&p).unwrap(), vec![q("a", &["b"])]);
        std::fs::remove_dir_all(&dir).ok();
    }
}
