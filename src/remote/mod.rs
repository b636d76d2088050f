//! Remotes: `repro push` / `repro pull` share records, light objects and
//! (with `--blobs`) heavy blobs between machines, as `dvc push` / `dvc pull`.
//!
//! A remote is an object store: a flat set of keys, each a whole file, with
//! the cache's own layout as key names:
//!
//! ```text
//! records/<key>.json          node records
//! objects/<d[0:2]>/<d[2:]>    light objects and directory manifests
//! blobs/<d[0:2]>/<d[2:]>      heavy blobs (only with --blobs)
//! ```
//!
//! The [`Remote`] trait is object-store shaped on purpose (list by prefix,
//! exists, get, put, plus batch forms whose defaults loop): an S3-compatible
//! store is one more file implementing it and one more arm in [`open`]. Two
//! are written:
//!
//! - [`dir::DirRemote`]: a plain directory, e.g. on a shared filesystem;
//! - [`ssh::SshRemote`]: `ssh://[user@]host[:port]/path` or `[user@]host:path`,
//!   by running the ssh command with POSIX shell commands on the other side;
//!   batches travel as one `tar` stream over one ssh session.
//!
//! Invariants, the same as the local cache's: a `put` is atomic (the object
//! appears whole under its key or not at all; a crashed push leaves at most a
//! `.tmp-*` name that listing ignores); objects are pushed before the records
//! that reference them; every pulled object is checked against its blake3
//! digest before it enters the local cache, and a record is written locally
//! only after every object it references is present. The sync logic lives
//! in [`sync`] (push, and the shared parts) and [`pull`].

pub mod dir;
pub mod pull;
pub mod ssh;
pub mod sync;
pub mod tarstream;

use crate::config::RemoteConfig;
use std::path::{Path, PathBuf};

/// A remote problem.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL or settings do not describe a usable remote (bad input).
    #[error("remote `{url}`: {message}")]
    BadUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// Local path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The remote could not be reached, listed, read or written.
    #[error("remote {remote}: {message}")]
    Transfer {
        /// The remote's description (URL).
        remote: String,
        /// What failed, naming the key or command.
        message: String,
    },
}

impl RemoteError {
    /// Whether the error is bad input (exit 2) rather than a failed transfer (exit 1).
    pub fn is_input(&self) -> bool {
        matches!(self, RemoteError::BadUrl { .. })
    }
}

/// Adds a local path to an io error.
pub fn local_at(path: &Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// An object store holding a cache's records, objects and blobs under keys
/// such as `objects/ab/cdef...` (always `/`-separated, never `..`).
pub trait Remote {
    /// The remote's URL, for messages.
    fn url(&self) -> &str;

    /// Every key under `prefix` (e.g. `objects/`), in any order. Temporary
    /// names of unfinished puts (`.tmp-*`) are not listed. A prefix that does
    /// not exist yet lists nothing.
    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError>;

    /// Whether the remote holds `key`.
    fn exists(&self, key: &str) -> Result<bool, RemoteError>;

    /// Copies `key` to the local file `dest` (a temporary path the caller
    /// verifies before trusting). `Ok(false)` when the remote lacks `key`.
    fn get(&self, key: &str, dest: &Path) -> Result<bool, RemoteError>;

    /// Stores the local file `src` under `key` atomically: readers see the
    /// whole object or nothing, and a crash leaves no partial object visible.
    fn put(&self, src: &Path, key: &str) -> Result<(), RemoteError>;

    /// Which of `keys` the remote holds. The default lists each top-level
    /// prefix once (few round trips, whatever the number of keys).
    fn has_many(&self, keys: &[String]) -> Result<Vec<bool>, RemoteError> {
        let mut prefixes: Vec<&str> = keys.iter().map(|k| top_prefix(k)).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let mut have = std::collections::HashSet::new();
        for p in prefixes {
            have.extend(self.list(p)?);
        }
        Ok(keys.iter().map(|k| have.contains(k)).collect())
    }

    /// Downloads `keys` into `dir/<key>`; returns the keys obtained (a key
    /// the remote lacks is simply not returned). The default calls
    /// [`Remote::get`] per key; remotes with per-call overhead batch.
    fn get_many(&self, keys: &[String], dir: &Path) -> Result<Vec<String>, RemoteError> {
        let mut got = Vec::new();
        for k in keys {
            let dest = dir.join(k);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(local_at(parent))?;
            }
            if self.get(k, &dest)? {
                got.push(k.clone());
            }
        }
        Ok(got)
    }

    /// Stores each `(local file, key)` as [`Remote::put`] does. The default
    /// loops; remotes with per-call overhead batch.
    fn put_many(&self, items: &[(PathBuf, String)]) -> Result<(), RemoteError> {
        for (src, key) in items {
            self.put(src, key)?;
        }
        Ok(())
    }
}

/// `records/`, `objects/` or `blobs/` of a key (the part up to its first `/`).
pub fn top_prefix(key: &str) -> &str {
    match key.find('/') {
        Some(i) => &key[..=i],
        None => key,
    }
}

/// Whether `key` is a key this crate writes: `/`-separated, relative, no
/// empty, `.` or `..` component, no temporary name, and only
/// `[A-Za-z0-9._-]` characters (so it needs no quoting anywhere).
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.starts_with(".tmp-"))
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
}

/// Opens the remote a URL names: `ssh://...` or `[user@]host:path` is SSH,
/// anything else (`/path`, `./path`, `file:///path`) a directory.
pub fn open(url: &str, cfg: &RemoteConfig) -> Result<Box<dyn Remote>, RemoteError> {
    if url.trim().is_empty() {
        return Err(RemoteError::BadUrl {
            url: url.into(),
            message: "the url is empty".into(),
        });
    }
    if let Some(target) = ssh::SshTarget::parse(url)? {
        let command = std::env::var("REPRO_SSH")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| cfg.ssh_command.clone())
            .unwrap_or_else(|| "ssh".into());
        return Ok(Box::new(ssh::SshRemote::new(url, target, command)));
    }
    if let Some(scheme) = url.split_once("://").map(|(s, _)| s)
        && scheme != "file"
    {
        return Err(RemoteError::BadUrl {
            url: url.into(),
            message: format!(
                "unsupported scheme `{scheme}://` (supported: a directory path, file://, ssh://, host:path)"
            ),
        });
    }
    let path = url.strip_prefix("file://").unwrap_or(url);
    Ok(Box::new(dir::DirRemote::new(url, PathBuf::from(path))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("objects/ab/cdef"));
        assert!(valid_key("records/0123.json"));
        assert!(!valid_key("objects/../etc"));
        assert!(!valid_key("/abs"));
        assert!(!valid_key("objects/.tmp-x"));
        assert!(!valid_key("a b"));
        assert!(!valid_key("a'b"));
        assert_eq!(top_prefix("objects/ab/cd"), "objects/");
    }

    #[test]
    fn open_picks_by_url() {
        let cfg = RemoteConfig::default();
        assert!(open("s3://bucket/x", &cfg).is_err_and(|e| e.is_input()));
        assert!(open("", &cfg).is_err());
        assert_eq!(
            open("/tmp/r", &cfg)
                .map(|r| r.url().to_string())
                .ok()
                .as_deref(),
            Some("/tmp/r")
        );
        assert!(open("host:path", &cfg).is_ok());
        assert!(open("ssh://u@h:22/p", &cfg).is_ok());
    }
}
