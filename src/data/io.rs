//! Small helpers the `data.*` ops share: param getters and output writers.

use crate::op::OpError;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

/// A boolean param, or its default.
pub fn bool_param(params: &Map<String, Value>, k: &str, default: bool) -> bool {
    params.get(k).and_then(Value::as_bool).unwrap_or(default)
}

/// A string param, or its default.
pub fn str_param<'a>(params: &'a Map<String, Value>, k: &str, default: &'a str) -> &'a str {
    params.get(k).and_then(Value::as_str).unwrap_or(default)
}

/// An unsigned integer param, or its default.
pub fn u64_param(params: &Map<String, Value>, k: &str, default: u64) -> u64 {
    params.get(k).and_then(Value::as_u64).unwrap_or(default)
}

/// Checks that a string param, when given, is one of `allowed`.
pub fn check_choice(
    params: &Map<String, Value>,
    k: &str,
    allowed: &[&str],
) -> Result<(), (String, String)> {
    match params.get(k).and_then(Value::as_str) {
        Some(v) if !allowed.contains(&v) => Err((
            k.into(),
            format!("`{k}` must be one of {}, found `{v}`", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

/// A buffered JSON-lines writer.
pub struct JsonlWriter {
    w: std::io::BufWriter<std::fs::File>,
    /// Lines written.
    pub lines: u64,
}

impl JsonlWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path) -> Result<Self, OpError> {
        let f = std::fs::File::create(path)?;
        Ok(JsonlWriter {
            w: std::io::BufWriter::with_capacity(1 << 20, f),
            lines: 0,
        })
    }

    /// Writes one value as a line.
    pub fn write<T: Serialize>(&mut self, v: &T) -> Result<(), OpError> {
        serde_json::to_writer(&mut self.w, v)
            .map_err(|e| OpError::msg(format!("writing JSON: {e}")))?;
        self.w.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> Result<(), OpError> {
        self.w.flush()?;
        Ok(())
    }
}

/// Writes a JSON object pretty-printed with a final newline.
pub fn write_json(path: &Path, m: &Map<String, Value>) -> Result<(), OpError> {
    let text =
        serde_json::to_string_pretty(m).map_err(|e| OpError::msg(format!("writing JSON: {e}")))?;
    std::fs::write(path, text + "\n")?;
    Ok(())
}

/// The numeric entries of `m` (booleans as 0/1), for record metrics.
pub fn numeric(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter_map(|(k, v)| match v {
            Value::Number(_) => Some((k.clone(), v.clone())),
            Value::Bool(b) => Some((k.clone(), Value::from(u8::from(*b)))),
            _ => None,
        })
        .collect()
}
