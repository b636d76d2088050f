//! The QA loader for question files a user brings (NQ-open's shape).
//!
//! QA: `{"question": str, "answer": str | [str]}` (NQ-open's shape; keys
//! renamable, [`QaFields`]). Questions are compared by
//! [`crate::eval::normalize::normalize_answer`] (NFD, lowercase, punctuation
//! and articles removed, whitespace collapsed). A question in the
//! exclusion set is dropped (`excluded`); a repeat of an earlier kept
//! question is dropped when deduplicating (`duplicates_dropped`); an empty
//! question is dropped (`empty_dropped`). A missing answer key gives an
//! empty answer list (`without_answers` counts them).

use super::DataError;
use super::jsonl::{each_object, id_of, str_of};
use crate::eval::normalize::normalize_answer;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;

/// Key names of the QA shape.
#[derive(Debug, Clone, PartialEq)]
pub struct QaFields {
    /// Question key (default `question`).
    pub question: String,
    /// Answer key, a string or list of strings (default `answer`).
    pub answers: String,
    /// Id key (default `id`; `<source>-<line>` when absent).
    pub id: String,
}

impl Default for QaFields {
    fn default() -> Self {
        QaFields {
            question: "question".into(),
            answers: "answer".into(),
            id: "id".into(),
        }
    }
}

/// One QA item as written (the shape `eval.qa` reads).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct QaRecord {
    /// Id.
    pub id: String,
    /// Question text.
    pub question: String,
    /// Accepted answers.
    pub answers: Vec<String>,
}

/// QA load counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct QaStats {
    /// Non-blank lines read.
    pub lines_read: u64,
    /// Dropped: question in the exclusion set.
    pub excluded: u64,
    /// Dropped: repeat of an earlier kept question.
    pub duplicates_dropped: u64,
    /// Dropped: empty question.
    pub empty_dropped: u64,
    /// Kept items without any answer.
    pub without_answers: u64,
    /// Kept.
    pub kept: u64,
    /// Distinct normalized questions in the exclusion set.
    pub exclusion_set: u64,
}

/// The normalized questions of exclusion files (only the question key is read).
pub fn read_exclusions(
    files: &[(String, PathBuf)],
    question_key: &str,
) -> Result<HashSet<String>, DataError> {
    let mut set = HashSet::new();
    for (file, path) in files {
        each_object(file, path, |line, obj| {
            set.insert(normalize_answer(&str_of(obj, question_key, file, line)?));
            Ok(())
        })?;
    }
    Ok(set)
}

/// Loads QA JSONL `files`, dropping excluded, empty and (with `dedup`)
/// repeated questions; kept items go to `sink` in input order.
pub fn load_qa(
    files: &[(String, PathBuf)],
    fields: &QaFields,
    source: &str,
    exclude: &HashSet<String>,
    dedup: bool,
    mut sink: impl FnMut(QaRecord) -> Result<(), DataError>,
) -> Result<QaStats, DataError> {
    let mut st = QaStats {
        exclusion_set: exclude.len() as u64,
        ..QaStats::default()
    };
    let mut seen = HashSet::new();
    for (file, path) in files {
        each_object(file, path, |line, obj| {
            st.lines_read += 1;
            let question = str_of(obj, &fields.question, file, line)?;
            let answers = match obj.get(&fields.answers) {
                None => Vec::new(),
                Some(Value::String(s)) => vec![s.clone()],
                Some(Value::Array(a)) => a
                    .iter()
                    .enumerate()
                    .map(|(i, x)| {
                        x.as_str().map(str::to_string).ok_or_else(|| {
                            DataError::key(
                                file,
                                line,
                                format!("{}[{i}]", fields.answers),
                                "must be a string",
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(DataError::key(
                        file,
                        line,
                        &fields.answers,
                        "must be a string or a list of strings",
                    ));
                }
            };
            let id = id_of(obj, &fields.id, file, line, source)?;
            let norm = normalize_answer(&question);
            if norm.is_empty() {
                st.empty_dropped += 1;
                return Ok(());
            }
            if exclude.contains(&norm) {
                st.excluded += 1;
                return Ok(());
            }
            if dedup && !seen.insert(norm) {
                st.duplicates_dropped += 1;
                return Ok(());
            }
            st.kept += 1;
            st.without_answers += u64::from(answers.is_empty());
            sink(QaRecord {
                id,
                question,
                answers,
            })
        })?;
    }
    Ok(st)
}
