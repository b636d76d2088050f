//! Imitation-data preparation: loaders that turn external chat and QA files
//! into one normalized format, and the sampling steps that build training
//! sets from them. The ops in `src/ops/data_*.rs` are thin wrappers around
//! these functions.
//!
//! - [`stream`]: a streaming scanner over the elements of a top-level JSON
//!   array that tolerates a file cut mid-element (ShareGPT's wheel copy is);
//! - [`chat`]: the normalized chat record
//!   (`{"id", "source", "messages": [{"role", "content"}]}`), the role table
//!   and the cleaning pipeline (empty turns, non-ChatGPT conversations,
//!   merging, deduplication) with a count for every filter;
//! - [`sharegpt`]: the ShareGPT JSON loader (stream parse plus cleaning);
//! - [`jsonl`]: generic JSONL loaders for chat data (messages, ShareGPT,
//!   Alpaca and HC3 shapes) and the reader of normalized chat files;
//! - [`qa`]: the QA loader (NQ-open shape, with exclusions);
//! - [`mix`]: weighted, seeded sampling from several chat sources;
//! - [`budget`]: token counting and nested token-budget prefixes;
//! - [`io`]: param getters and writers shared by the `data.*` ops.
//!
//! Every content error is a [`DataError`] naming the file, the 1-based line
//! and, where one applies, the key.

pub mod budget;
pub mod chat;
pub mod io;
pub mod jsonl;
pub mod mix;
pub mod qa;
pub mod sharegpt;
pub mod stream;

use crate::op::OpError;
use std::fmt;

/// A content or I/O error in a data file, located as precisely as known.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError {
    /// The file as the user knows it (e.g. ``input `data` ``, or a path).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The offending key (e.g. `conversations[2].from`), when one applies.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl DataError {
    /// An error in `file` with no line or key.
    pub fn file(file: &str, message: impl Into<String>) -> Self {
        DataError {
            file: file.to_string(),
            line: None,
            key: None,
            message: message.into(),
        }
    }

    /// An error at `line` of `file`.
    pub fn at(file: &str, line: usize, message: impl Into<String>) -> Self {
        DataError {
            line: Some(line),
            ..DataError::file(file, message)
        }
    }

    /// An error at `line` of `file` about `key`.
    pub fn key(
        file: &str,
        line: usize,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        DataError {
            key: Some(key.into()),
            ..DataError::at(file, line, message)
        }
    }
}

impl fmt::Display for DataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, " line {l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, " key `{k}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for DataError {}

impl From<DataError> for OpError {
    fn from(e: DataError) -> Self {
        OpError::msg(e.to_string())
    }
}
