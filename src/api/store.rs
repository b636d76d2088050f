//! The persistent request store: one JSON file per answered request.
//!
//! Layout: `<dir>/<key[0:2]>/<key[2:]>.json` where `key` is
//! [`super::ChatRequest::key`]. Each file is an [`Exchange`]: the request
//! body exactly as sent (never the API key), the provider label, the base URL
//! it was sent to, the raw response body, the extracted reply and the time.
//! Writes are atomic (temp file in the target directory, fsync, rename,
//! directory fsync: [`crate::cache::atomic::write`]), so a crash leaves a
//! file complete or absent; temp files start with `.tmp-` and are ignored by
//! the cache's `.gitignore`. The executor places the store at
//! `<cache dir>/api/` (committed with the cache: the answers of a
//! non-reproducible API are the evidence of a run).

use super::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Format version of stored exchanges.
pub const EXCHANGE_FORMAT: u32 = 1;

/// One stored request and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    /// [`EXCHANGE_FORMAT`].
    pub format: u32,
    /// The store key.
    pub key: String,
    /// The provider label that entered the key.
    pub provider: String,
    /// The request body as sent.
    pub request: Value,
    /// Base URL the request went to (no credentials, query or fragment).
    pub base_url: String,
    /// The raw response body.
    pub response: Value,
    /// `choices[0].message.content`.
    pub content: String,
    /// `choices[0].finish_reason`, when given.
    pub finish_reason: Option<String>,
    /// Unix seconds when the answer arrived.
    pub created: u64,
}

impl Exchange {
    /// Builds an exchange from a raw chat-completion response; an error when
    /// it has no `choices[0].message.content` string.
    pub fn new(
        key: &str,
        provider: &str,
        request: Value,
        base_url: &str,
        response: Value,
    ) -> Result<Exchange, ApiError> {
        let choice = response.get("choices").and_then(|c| c.get(0));
        let content = choice
            .and_then(|c| c.get("message"))
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::BadResponse {
                url: base_url.to_string(),
                message: format!(
                    "no `choices[0].message.content` string in {}",
                    super::client::excerpt(&response.to_string(), 300)
                ),
            })?
            .to_string();
        let finish_reason = choice
            .and_then(|c| c.get("finish_reason"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(Exchange {
            format: EXCHANGE_FORMAT,
            key: key.to_string(),
            provider: provider.to_string(),
            request,
            base_url: base_url.to_string(),
            response,
            content,
            finish_reason,
            created,
        })
    }
}

/// A request store rooted at a directory (created on first write).
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// A store at `dir`.
    pub fn new(dir: &Path) -> Self {
        Store {
            dir: dir.to_path_buf(),
        }
    }

    /// The file of `key`.
    pub fn path(&self, key: &str) -> PathBuf {
        let (a, b) = key.split_at(2.min(key.len()));
        self.dir.join(a).join(format!("{b}.json"))
    }

    /// The stored exchange of `key`, `None` when absent. A file that does not
    /// parse, or holds another key, is an error naming it (delete it to
    /// re-request).
    pub fn get(&self, key: &str) -> Result<Option<Exchange>, ApiError> {
        let path = self.path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store_err(&path, e)),
        };
        let ex: Exchange = serde_json::from_slice(&bytes)
            .map_err(|e| store_err(&path, format!("corrupt (delete it to re-request): {e}")))?;
        if ex.key != key {
            return Err(store_err(&path, format!("holds key {}", ex.key)));
        }
        Ok(Some(ex))
    }

    /// Stores `ex` atomically under its key.
    pub fn put(&self, ex: &Exchange) -> Result<(), ApiError> {
        let path = self.path(&ex.key);
        let mut bytes = serde_json::to_vec_pretty(ex).map_err(|e| store_err(&path, e))?;
        bytes.push(b'\n');
        crate::cache::atomic::write(&path, &bytes).map_err(|e| store_err(&path, e))
    }

    /// Number of stored exchanges (files ending in `.json`).
    pub fn len(&self) -> usize {
        let Ok(shards) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        shards
            .flatten()
            .filter_map(|s| std::fs::read_dir(s.path()).ok())
            .flat_map(|d| d.flatten())
            .filter(|f| {
                let n = f.file_name();
                let n = n.to_string_lossy();
                n.ends_with(".json") && !n.starts_with(".tmp-")
            })
            .count()
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn store_err(path: &Path, e: impl std::fmt::Display) -> ApiError {
    ApiError::Store {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::new(&dir.path().join("api"));
        assert!(s.get("abcdef").unwrap().is_none());
        let resp = json!({"choices": [{"message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]});
        let ex = Exchange::new("abcdef", "", json!({"model": "m"}), "http://x/v1", resp).unwrap();
        assert_eq!(ex.content, "hi");
        assert_eq!(ex.finish_reason.as_deref(), Some("stop"));
        s.put(&ex).unwrap();
        assert!(dir.path().join("api/ab/cdef.json").is_file());
        assert_eq!(s.get("abcdef").unwrap(), Some(ex));
        assert_eq!(s.len(), 1);
        std::fs::write(s.path("abcdef"), "{").unwrap();
        let e = s.get("abcdef").unwrap_err().to_string();
        assert!(e.contains("cdef.json") && e.contains("corrupt"), "{e}");
        let bad = Exchange::new("k", "", json!({}), "u", json!({"choices": []}));
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("choices[0].message.content")
        );
    }
}
