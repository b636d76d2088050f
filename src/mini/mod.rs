//! The CPU miniature of the paper's experiment: a synthetic world of people
//! (in the spirit of Allen-Zhu & Li, "Physics of Language Models 3.1") whose
//! biographies pretrain a tiny base model, and a "teacher" oracle (the
//! analogue of ChatGPT) that knows every fact, answers in one distinctive
//! style, and produces the imitation data.
//!
//! - [`lexicon`]: word pools and templates.
//! - [`world`]: the population, the pretraining corpus and the questions
//!   (op `mini.world`).
//! - [`teacher`]: broad and task imitation data, held-out prompts with
//!   reference answers, and the teacher's own answers (op `mini.teacher`).
//!
//! All randomness comes from [`crate::rng::Rng`], one derived stream per
//! purpose, and every collection that reaches an output is ordered, so the
//! outputs are byte-identical for the same params on every machine.

pub mod lexicon;
pub mod teacher;
pub mod world;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

/// Reads an integer param with a default and an inclusive range;
/// `Err((param, message))` as [`crate::op::Op::check`] wants it.
pub fn int_param(
    params: &Map<String, Value>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, (String, String)> {
    let v = match params.get(name) {
        None => default,
        Some(v) => v.as_i64().ok_or_else(|| {
            (
                name.to_string(),
                format!("`{name}` must be an integer between {min} and {max}, found {v}"),
            )
        })?,
    };
    if v < min || v > max {
        return Err((
            name.to_string(),
            format!("`{name}` must be between {min} and {max}, found {v}"),
        ));
    }
    Ok(v)
}

/// Reads a number param with a default and an inclusive range.
pub fn number_param(
    params: &Map<String, Value>,
    name: &str,
    default: f64,
    min: f64,
    max: f64,
) -> Result<f64, (String, String)> {
    let v = match params.get(name) {
        None => default,
        Some(v) => v.as_f64().ok_or_else(|| {
            (
                name.to_string(),
                format!("`{name}` must be a number between {min} and {max}, found {v}"),
            )
        })?,
    };
    if !(min..=max).contains(&v) {
        return Err((
            name.to_string(),
            format!("`{name}` must be between {min} and {max}, found {v}"),
        ));
    }
    Ok(v)
}

/// Reads the `seed` param (any integer; negative ones wrap to `u64`).
pub fn seed_param(params: &Map<String, Value>) -> Result<u64, (String, String)> {
    match params.get("seed") {
        None => Ok(0),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|i| i as u64))
            .ok_or_else(|| {
                (
                    "seed".into(),
                    format!("`seed` must be an integer, found {v}"),
                )
            }),
    }
}

/// Writes one compact JSON object per line.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for it in items {
        serde_json::to_writer(&mut w, it)?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Writes one line per string.
pub fn write_lines(path: &Path, lines: &[String]) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for l in lines {
        w.write_all(l.as_bytes())?;
        w.write_all(b"\n")?;
    }
    w.flush()
}

/// Parses a JSON-lines file; blank lines are skipped. Errors name the input
/// (`what`) and the 1-based line number.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>, String> {
    crate::op::io::read_jsonl(path, what).map_err(|e| e.to_string())
}

/// Number of whitespace-separated words.
pub fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}
