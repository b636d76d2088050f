//! Content digests of files and directories, memoized by a stat cache.
//!
//! A file's digest is the blake3 of its bytes. A directory's digest is the
//! blake3 of its manifest: canonical JSON
//! `{"format":"repro-tree-1","entries":[{"bytes","digest","exec","path"},...]}`
//! with entries sorted by relative path (`/`-separated). Symlinks are followed.
//!
//! The stat cache (`.repro/statcache.json`, per machine, never committed)
//! remembers `(size, mtime_ns, inode) -> digest` per absolute path, as DVC's
//! state database does, so unchanged files are not read again. An entry is
//! only trusted when the file's mtime is more than 2 s older than the moment
//! it was hashed (a file rewritten within the same clock tick would otherwise
//! keep a stale digest: git's "racy clean" problem).

use super::fasthash::FastMap;
use super::statdir::StatDir;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Serializes JSON canonically: object keys sorted bytewise at every level
/// whatever the map implementation's order, no whitespace, strings with
/// serde_json's escaping, numbers as serde_json writes them (integers as
/// integers, floats in their shortest round-trip form). Cache keys
/// (`crate::graph::key`), directory manifests and API request keys are the
/// blake3 of this text.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", Value::String((*k).clone()), canonical_json(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical_json).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// One manifest entry of a directory artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TreeEntry {
    /// Relative path with `/` separators.
    pub path: String,
    /// Content digest.
    pub digest: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Executable bit.
    pub exec: bool,
}

/// A directory manifest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Always `repro-tree-1`.
    pub format: String,
    /// Sorted entries.
    pub entries: Vec<TreeEntry>,
}

impl Manifest {
    /// Canonical bytes (the digest is their blake3).
    pub fn to_bytes(&self) -> Vec<u8> {
        canonical_json(&serde_json::to_value(self).unwrap_or_default()).into_bytes()
    }
    /// Total size of the files.
    pub fn total_bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum()
    }
}

/// Manifest format tag.
pub const TREE_FORMAT: &str = "repro-tree-1";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
struct Stat {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

fn stat_of(meta: &std::fs::Metadata) -> Stat {
    Stat {
        size: meta.len(),
        mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
        ino: meta.ino(),
    }
}

/// Memo entries (by the path's bytes: hashing and comparing them is cheaper
/// than `Path`'s component-wise `Hash` and `Eq`) and whether they changed
/// since loading.
type Memo = (FastMap<OsString, (Stat, String)>, bool);

/// The per-machine memo of file digests.
#[derive(Default)]
pub struct StatCache {
    path: Option<PathBuf>,
    map: Mutex<Memo>,
}

/// One memo entry on disk: path, size, mtime in ns, inode, digest.
#[derive(Serialize, Deserialize)]
struct Row(PathBuf, u64, i128, u64, String);

/// A [`Row`] whose mtime fits an i64.
#[derive(Deserialize)]
struct Row64(PathBuf, u64, i64, u64, String);

/// A memo file whose mtimes all fit an i64, read straight into the map.
struct Rows64(FastMap<OsString, (Stat, String)>);

impl<'de> Deserialize<'de> for Rows64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Rows64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list of stat memo rows")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Rows64, A::Error> {
                let mut map = FastMap::with_capacity_and_hasher(
                    a.size_hint().unwrap_or(0),
                    Default::default(),
                );
                while let Some(Row64(p, size, mtime_ns, ino, d)) = a.next_element()? {
                    let st = Stat {
                        size,
                        mtime_ns: i128::from(mtime_ns),
                        ino,
                    };
                    map.insert(p.into_os_string(), (st, d));
                }
                Ok(Rows64(map))
            }
        }
        d.deserialize_seq(V)
    }
}

impl StatCache {
    /// Loads the memo from `path` (a missing or unreadable file is an empty memo).
    pub fn load(path: PathBuf) -> Self {
        let bytes = std::fs::read(&path).unwrap_or_default();
        // Every mtime before the year 2262 fits an i64, which parses faster
        // (straight into the map); any other memo takes the general path.
        let map = match serde_json::from_slice::<Rows64>(&bytes) {
            Ok(Rows64(map)) => map,
            Err(_) => {
                let rows: Vec<Row> = serde_json::from_slice(&bytes).unwrap_or_default();
                let mut map = FastMap::with_capacity_and_hasher(rows.len(), Default::default());
                for Row(p, size, mtime_ns, ino, d) in rows {
                    let st = Stat {
                        size,
                        mtime_ns,
                        ino,
                    };
                    map.insert(p.into_os_string(), (st, d));
                }
                map
            }
        };
        StatCache {
            path: Some(path),
            map: Mutex::new((map, false)),
        }
    }

    /// Writes the memo back if it changed.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let guard = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if !guard.1 {
            return Ok(());
        }
        let mut rows: Vec<Row> = guard
            .0
            .iter()
            .map(|(p, (s, d))| Row(PathBuf::from(p), s.size, s.mtime_ns, s.ino, d.clone()))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        drop(guard);
        super::atomic::write(path, &serde_json::to_vec(&rows).unwrap_or_default())
    }

    /// Forgets a path (e.g. after an object failed verification).
    pub fn forget(&self, path: &Path) {
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if g.0.remove(path.as_os_str()).is_some() {
            g.1 = true;
        }
    }

    /// Digest of a file, from the memo when its stat is unchanged.
    pub fn file_digest(&self, path: &Path) -> std::io::Result<(String, u64)> {
        self.file_digest_of(path, &std::fs::metadata(path)?)
    }

    /// [`StatCache::file_digest`] of a file whose metadata was just read.
    fn file_digest_of(
        &self,
        path: &Path,
        meta: &std::fs::Metadata,
    ) -> std::io::Result<(String, u64)> {
        let st = stat_of(meta);
        if let Some(d) = self.memoized(path, &st) {
            return Ok((d, st.size));
        }
        let digest = hash_file(path)?;
        self.remember(path, st, &digest);
        Ok((digest, st.size))
    }

    /// Whether [`StatCache::file_digest`] of `path` would return `digest`
    /// from the memo (the memo has that digest for the file's current stat),
    /// with the file's size if so. Never reads the file or changes the memo.
    pub fn vouches(&self, path: &Path, digest: &str) -> Option<u64> {
        let st = stat_of(&std::fs::metadata(path).ok()?);
        let g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match g.0.get(path.as_os_str()) {
            Some((s, d)) if *s == st && d == digest => Some(st.size),
            _ => None,
        }
    }

    /// [`StatCache::vouches`] for `rel` under an open directory.
    pub fn vouches_in(&self, dir: &StatDir, rel: &str, digest: &str) -> Option<u64> {
        let s = dir.stat(rel).ok()?;
        let st = Stat {
            size: s.size,
            mtime_ns: s.mtime_ns,
            ino: s.ino,
        };
        dir.with_path(rel, |path| {
            let g = self.map.lock().unwrap_or_else(|e| e.into_inner());
            match g.0.get(path) {
                Some((s, d)) if *s == st && d == digest => Some(st.size),
                _ => None,
            }
        })
    }

    fn memoized(&self, path: &Path, st: &Stat) -> Option<String> {
        let g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0.get(path.as_os_str())
            .filter(|(s, _)| s == st)
            .map(|(_, d)| d.clone())
    }

    /// Records a digest just computed for a file with this metadata.
    pub fn remember_meta(&self, path: &Path, meta: &std::fs::Metadata, digest: &str) {
        self.remember(path, stat_of(meta), digest);
    }

    fn remember(&self, path: &Path, st: Stat, digest: &str) {
        let now_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        if now_ns - st.mtime_ns < 2_000_000_000 {
            return; // racy: could change again within the same mtime tick
        }
        let mut g = self.map.lock().unwrap_or_else(|e| e.into_inner());
        g.0.insert(path.as_os_str().to_owned(), (st, digest.to_string()));
        g.1 = true;
    }

    /// Digest of a file or directory (directories: their manifest digest).
    pub fn digest(&self, path: &Path) -> std::io::Result<Artifact> {
        let meta = std::fs::metadata(path)?;
        if meta.is_dir() {
            let manifest = self.manifest(path)?;
            let bytes = manifest.to_bytes();
            Ok(Artifact {
                digest: blake3::hash(&bytes).to_hex().to_string(),
                bytes: manifest.total_bytes(),
                manifest: Some(manifest),
            })
        } else {
            // One stat, not two: a fan-out of 10,000 nodes over one shared
            // `file:` input looks at it once per node.
            let (digest, bytes) = self.file_digest_of(path, &meta)?;
            Ok(Artifact {
                digest,
                bytes,
                manifest: None,
            })
        }
    }

    /// The manifest of a directory.
    pub fn manifest(&self, dir: &Path) -> std::io::Result<Manifest> {
        let mut entries = Vec::new();
        walk(dir, dir, &mut |rel, abs, meta| {
            let (digest, bytes) = self.file_digest(abs)?;
            use std::os::unix::fs::PermissionsExt;
            entries.push(TreeEntry {
                path: rel.to_string(),
                digest,
                bytes,
                exec: meta.permissions().mode() & 0o111 != 0,
            });
            Ok(())
        })?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest {
            format: TREE_FORMAT.into(),
            entries,
        })
    }
}

/// A hashed file or directory.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Content digest.
    pub digest: String,
    /// Total bytes.
    pub bytes: u64,
    /// Set for directories.
    pub manifest: Option<Manifest>,
}

type Visit<'a> = dyn FnMut(&str, &Path, &std::fs::Metadata) -> std::io::Result<()> + 'a;

/// Calls `f(relative path, absolute path, metadata)` for every file under `dir`.
pub fn walk(root: &Path, dir: &Path, f: &mut Visit) -> std::io::Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let abs = e.path();
        let meta = std::fs::metadata(&abs)?;
        if meta.is_dir() {
            walk(root, &abs, f)?;
        } else if !meta.is_file() {
            // FIFOs, sockets and devices cannot be hashed (reading a FIFO blocks).
            return Err(std::io::Error::other(format!(
                "{} is not a regular file or directory",
                abs.display()
            )));
        } else {
            let rel = abs.strip_prefix(root).unwrap_or(&abs);
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            f(&rel.join("/"), &abs, &meta)?;
        }
    }
    Ok(())
}

/// Blake3 of a file's bytes (memory-mapped and multi-threaded for large files).
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    let len = std::fs::metadata(path)?.len();
    if len > 16 * 1024 * 1024 {
        hasher.update_mmap_rayon(path)?;
    } else {
        let mut f = std::fs::File::open(path)?;
        let mut buf = vec![0u8; (len as usize).clamp(1, 1 << 20)];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn canonical_json_sorts_keys() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, {"f": 2, "e": 3}], "c": "x"}}"#)
                .unwrap();
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"c":"x","d":[1,{"e":3,"f":2}]},"b":1}"#
        );
    }
}
