//! `pipelines/<name>.lock`: node id -> key -> output digests.
//!
//! Sorted, stable, diffable in review, rewritten after each run. It is also
//! the fast index a no-op `status` or `run` reads instead of every record,
//! and the "last run" that `repro explain` diffs against.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Lock file layout version.
pub const LOCK_FORMAT: u32 = 1;

/// One node's entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockEntry {
    /// The key last computed for this node id.
    pub key: String,
    /// Output name -> digest.
    pub outputs: super::Digests,
}

/// A whole lock file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LockFile {
    /// Pipeline name.
    pub pipeline: String,
    /// Layout version.
    pub repro_lock: u32,
    /// Entries by instance id.
    pub nodes: BTreeMap<String, LockEntry>,
}

impl LockFile {
    /// Reads a lock file; a missing one is empty. A corrupt one is an error.
    pub fn read(path: &Path) -> Result<LockFile, String> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not a valid lock file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// The canonical text (pretty JSON, sorted, trailing newline).
    pub fn to_text(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Writes atomically if the content changed; returns whether it did.
    pub fn write_if_changed(&self, path: &Path) -> std::io::Result<bool> {
        let text = self.to_text();
        if std::fs::read_to_string(path).ok().as_deref() == Some(text.as_str()) {
            return Ok(false);
        }
        super::atomic::write(path, text.as_bytes())?;
        Ok(true)
    }
}
