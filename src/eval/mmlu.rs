//! MMLU (Hendrycks et al. 2021): reading the CSV files, the 5-shot prompt
//! and the answer-letter scoring that `eval.mmlu` uses.
//!
//! Data layout (the original `data.tar`): `dev/<subject>_dev.csv` (5
//! examples per subject, the few-shot examples) and
//! `test/<subject>_test.csv`; rows `question,A,B,C,D,answer` with no header,
//! RFC 4180 quoting (fields may hold commas, quotes and newlines).
//!
//! Prompt (Hendrycks' `evaluate.py` format): `The following are multiple
//! choice questions (with answers) about <subject with spaces>.\n\n`, then
//! each dev example as `<question>\nA. <a>\nB. <b>\nC. <c>\nD. <d>\nAnswer:
//! <letter>\n\n`, then the test question in the same form ending in
//! `Answer:`. When the prompt does not fit the model's context, examples are
//! dropped from the end until it does (as `evaluate.py` does).
//!
//! Metric: the prediction is the letter whose token has the highest
//! next-token logit after `Answer:` (the letter token is the single token
//! that `" A"` adds after `Answer:`, see [`letter_ids`]); accuracy per
//! subject, their unweighted mean (macro) and the accuracy over all
//! questions (micro). Chance is 25%.

use crate::op::OpError;
use std::path::Path;

/// The four answer letters.
pub const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

/// One multiple-choice question.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// The question.
    pub question: String,
    /// Choices A-D.
    pub choices: [String; 4],
    /// Index 0-3 of the correct choice.
    pub answer: usize,
}

/// Reads one subject file. Errors name the file and line.
pub fn read_items(path: &Path) -> Result<Vec<Item>, OpError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpError::msg(format!("{}: {e}", path.display())))?;
    let records = super::csv::parse(&text)
        .map_err(|(line, e)| OpError::msg(format!("{}:{line}: {e}", path.display())))?;
    let mut items = Vec::with_capacity(records.len());
    for (line, r) in records {
        let at = |m: String| OpError::msg(format!("{}:{line}: {m}", path.display()));
        if r.len() != 6 {
            return Err(at(format!(
                "expected 6 fields (question,A,B,C,D,answer), found {}",
                r.len()
            )));
        }
        let answer = LETTERS
            .iter()
            .position(|l| *l == r[5].trim())
            .ok_or_else(|| at(format!("answer `{}` is not one of A, B, C, D", r[5])))?;
        items.push(Item {
            question: r[0].clone(),
            choices: [r[1].clone(), r[2].clone(), r[3].clone(), r[4].clone()],
            answer,
        });
    }
    Ok(items)
}

/// The subjects of a split directory (`<subject>_<split>.csv`), sorted.
pub fn subjects(dir: &Path, split: &str) -> Result<Vec<String>, OpError> {
    let suffix = format!("_{split}.csv");
    let mut out = Vec::new();
    let entries =
        std::fs::read_dir(dir).map_err(|e| OpError::msg(format!("{}: {e}", dir.display())))?;
    for e in entries {
        let e = e.map_err(|e| OpError::msg(format!("{}: {e}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = name.strip_suffix(&suffix) {
            out.push(s.to_string());
        }
    }
    out.sort();
    Ok(out)
}

/// `Answer:`-terminated block of one item, with the answer when given.
pub fn format_item(item: &Item, with_answer: bool) -> String {
    let mut s = item.question.clone();
    for (l, c) in LETTERS.iter().zip(&item.choices) {
        s.push_str(&format!("\n{l}. {c}"));
    }
    s.push_str("\nAnswer:");
    if with_answer {
        s.push_str(&format!(" {}\n\n", LETTERS[item.answer]));
    }
    s
}

/// The prompt header of a subject (`high_school_physics` → "high school physics").
pub fn header(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    )
}

/// The k-shot prompt for `item`.
pub fn prompt(subject: &str, shots: &[Item], item: &Item) -> String {
    let mut s = header(subject);
    for shot in shots {
        s.push_str(&format_item(shot, true));
    }
    s.push_str(&format_item(item, false));
    s
}

/// The token id of each answer letter: the single token that `" X"` adds
/// after a text ending in `Answer:`, found with `encode`. An error when a
/// letter takes more than one token or two letters share one.
pub fn letter_ids(
    mut encode: impl FnMut(&str) -> Result<Vec<u32>, String>,
) -> Result<[u32; 4], String> {
    let probe = "Question?\nA. x\nB. y\nC. z\nD. w\nAnswer:";
    let base = encode(probe)?;
    let mut ids = [0u32; 4];
    for (k, l) in LETTERS.iter().enumerate() {
        let full = encode(&format!("{probe} {l}"))?;
        if full.len() != base.len() + 1 || full[..base.len()] != base[..] {
            return Err(format!(
                "the tokenizer does not encode ` {l}` after `Answer:` as one extra token \
                 ({} tokens become {}); MMLU letter scoring needs one token per letter",
                base.len(),
                full.len()
            ));
        }
        ids[k] = full[base.len()];
    }
    for a in 0..4 {
        for b in a + 1..4 {
            if ids[a] == ids[b] {
                return Err(format!(
                    "letters {} and {} map to the same token",
                    LETTERS[a], LETTERS[b]
                ));
            }
        }
    }
    Ok(ids)
}

/// The predicted choice: the letter with the highest logit (ties go to the
/// earlier letter).
pub fn predict(logits: &[f32], ids: &[u32; 4]) -> usize {
    let mut best = 0;
    for k in 1..4 {
        if logits[ids[k] as usize] > logits[ids[best] as usize] {
            best = k;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_commas_and_newlines() {
        let text = "q1,a,b,c,d,A\n\"q, \"\"two\"\"\nline\",1,2,3,4,D\r\nq3,,b,c,d,B";
        let r = crate::eval::csv::parse(text).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            (
                1,
                vec!["q1", "a", "b", "c", "d", "A"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        assert_eq!(r[1].0, 2);
        assert_eq!(r[1].1[0], "q, \"two\"\nline");
        assert_eq!(r[1].1[5], "D");
        assert_eq!(r[2].0, 4);
        assert_eq!(r[2].1[1], "");
        assert!(crate::eval::csv::parse("\"open,1").is_err());
    }

    #[test]
    fn prompt_matches_hendrycks_format() {
        let shot = Item {
            question: "1+1=?".into(),
            choices: ["1".into(), "2".into(), "3".into(), "4".into()],
            answer: 1,
        };
        let test = Item {
            question: "2+2=?".into(),
            choices: ["4".into(), "5".into(), "6".into(), "7".into()],
            answer: 0,
        };
        assert_eq!(
            prompt("elementary_mathematics", &[shot], &test),
            "The following are multiple choice questions (with answers) about elementary mathematics.\n\n\
             1+1=?\nA. 1\nB. 2\nC. 3\nD. 4\nAnswer: B\n\n\
             2+2=?\nA. 4\nB. 5\nC. 6\nD. 7\nAnswer:"
        );
    }

    #[test]
    fn letter_ids_and_prediction() {
        // A toy tokenizer: one id per character.
        let enc = |s: &str| Ok(s.chars().map(|c| c as u32).collect::<Vec<u32>>());
        // " A" adds two characters here, so it is rejected.
        assert!(letter_ids(enc).is_err());
        // Words split on spaces, the space glued to the next word.
        let enc = |s: &str| {
            let mut ids = Vec::new();
            for (i, w) in s.split(' ').enumerate() {
                let w = if i == 0 {
                    w.to_string()
                } else {
                    format!(" {w}")
                };
                ids.push(
                    w.bytes()
                        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32))
                        % 1000,
                );
            }
            Ok(ids)
        };
        let ids = letter_ids(enc).unwrap();
        let mut logits = vec![0.0f32; 1000];
        logits[ids[2] as usize] = 3.0;
        logits[ids[0] as usize] = 1.0;
        assert_eq!(predict(&logits, &ids), 2);
        let flat = vec![0.0f32; 1000];
        assert_eq!(predict(&flat, &ids), 0);
    }

    #[test]
    fn bad_answer_letter_names_the_line() {
        let dir = std::env::temp_dir().join(format!("repro-mmlu-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x_test.csv");
        std::fs::write(&p, "q,a,b,c,d,A\nq,a,b,c,d,E\n").unwrap();
        let e = read_items(&p).unwrap_err().to_string();
        assert!(e.contains("x_test.csv:2") && e.contains("`E`"), "{e}");
        std::fs::write(&p, "q,a,b,c,A\n").unwrap();
        assert!(read_items(&p).unwrap_err().to_string().contains("6 fields"));
        std::fs::remove_dir_all(&dir).ok();
    }
}
