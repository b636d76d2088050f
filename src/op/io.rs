//! The input and output helpers every op shares: finding an input, reading
//! JSON lines, writing JSON and JSON lines, and finishing a run with its
//! `metrics.json`.
//!
//! Errors name the input as the op sees it (e.g. `predictions`) and, for
//! content errors, the 1-based line number. Blank lines are skipped.

use super::{OpError, RunContext, RunResult};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The path of input `name`, or an error naming it.
pub fn input<'a>(ctx: &'a RunContext, name: &str) -> Result<&'a PathBuf, OpError> {
    ctx.inputs
        .get(name)
        .ok_or_else(|| OpError::msg(format!("missing input `{name}`")))
}

/// Checks that the op got every input in `required`, and nothing outside
/// `required` and `optional`.
pub fn check_inputs(
    ctx: &RunContext,
    op: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<(), OpError> {
    for name in ctx.inputs.keys() {
        if !required.contains(&name.as_str()) && !optional.contains(&name.as_str()) {
            let mut all: Vec<&str> = required.to_vec();
            all.extend_from_slice(optional);
            return Err(OpError::msg(format!(
                "unexpected input `{name}` ({op} takes: {})",
                all.join(", ")
            )));
        }
    }
    for name in required {
        if !ctx.inputs.contains_key(*name) {
            return Err(OpError::msg(format!("{op} needs an input `{name}`")));
        }
    }
    Ok(())
}

/// An error about line `line` (1-based) of input `input`.
pub fn line_error(input: &str, line: usize, msg: impl std::fmt::Display) -> OpError {
    OpError::msg(format!("input `{input}` line {line}: {msg}"))
}

/// Parses a JSON-lines input into `(line number, item)` pairs; blank lines
/// are skipped.
pub fn read_jsonl_numbered<T: DeserializeOwned>(
    path: &Path,
    input: &str,
) -> Result<Vec<(usize, T)>, OpError> {
    if path.is_dir() {
        return Err(OpError::msg(format!(
            "input `{input}` is a directory; expected a JSONL file"
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| OpError::msg(format!("input `{input}`: cannot read: {e}")))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line)
            .map_err(|e| line_error(input, i + 1, format!("invalid JSON: {e}")))?;
        out.push((i + 1, item));
    }
    Ok(out)
}

/// Parses a JSON-lines input; blank lines are skipped.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path, input: &str) -> Result<Vec<T>, OpError> {
    Ok(read_jsonl_numbered(path, input)?
        .into_iter()
        .map(|(_, item)| item)
        .collect())
}

/// Writes one compact JSON value per line.
pub fn write_jsonl<T: Serialize>(path: &Path, items: &[T]) -> Result<(), OpError> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for item in items {
        serde_json::to_writer(&mut w, item).map_err(|e| OpError::msg(e.to_string()))?;
        w.write_all(b"\n")?;
    }
    w.flush()?;
    Ok(())
}

/// Writes pretty JSON with a trailing newline.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), OpError> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|e| OpError::msg(e.to_string()))?;
    bytes.push(b'\n');
    std::fs::write(path, bytes)?;
    Ok(())
}

/// Writes `metrics` to `out/metrics.json` and returns them as the run's
/// record metrics: the usual last step of an op whose output `metrics` is
/// its own record metrics.
pub fn finish_with_metrics(
    ctx: &RunContext,
    metrics: Map<String, Value>,
) -> Result<RunResult, OpError> {
    write_json(&ctx.work_dir.join("out/metrics.json"), &metrics)?;
    Ok(RunResult {
        metrics,
        ..RunResult::default()
    })
}
