//! Small helpers the `data.*` ops share: param getters and output writers.

use crate::op::OpError;
pub use crate::op::io::write_json;
pub use crate::op::param::check_choice;
use serde::Serialize;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::Path;

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
