//! The cache: content-addressed objects, node records, lock files, locking.
//!
//! Layout (semantics modelled on DVC's `dvc.lock` and run-cache, with blake3
//! content addressing as in Bazel's CAS):
//!
//! ```text
//! cache/records/<key>.json          one record per computed key (committed)
//! cache/objects/<d[0:2]>/<d[2:]>    light outputs by content digest (committed)
//! .repro/blobs/<d[0:2]>/<d[2:]>     heavy outputs (REPRO_BLOBS overrides; not in git)
//! .repro/statcache.json             per-machine digest memo (not in git)
//! .repro/work/                      work directories of running / failed nodes
//! cache/.locks/                     flock files (ignored by git)
//! pipelines/<name>.lock             node id -> key -> output digests (committed)
//! ```
//!
//! `REPRO_CACHE` moves `cache/`. Every write is a temp file in the target
//! directory, fsync, rename, directory fsync; a record is written only after
//! all its objects are durable, so a crash at any moment leaves either no
//! record or a complete one. Objects are verified against their digest by
//! `repro verify` (always) and by `repro run` (when their stat changed); a
//! corrupt object is moved to `.repro/quarantine/` and recomputed.

pub mod atomic;
pub mod digests;
pub mod fasthash;
pub mod flock;
pub mod hash;
pub mod index;
pub mod lockfile;
pub mod record;
pub mod statdir;

pub use digests::Digests;
use hash::{Manifest, StatCache};
pub use index::RecordIndex;
use record::{ArtifactKind, OutputRecord, Record, Storage};
use std::path::{Path, PathBuf};

/// A cache problem that is not the user's YAML.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// File-system error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A record or manifest that does not parse.
    #[error("{path}: corrupt: {message}")]
    Corrupt {
        /// Path involved.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A heavy blob that is not in this machine's blob store.
    #[error("heavy blob {digest} is not in the blob store {store}")]
    BlobMissing {
        /// Digest.
        digest: String,
        /// Blob store directory.
        store: PathBuf,
    },
}

/// Adds the path to an io error.
pub fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An open cache.
pub struct Cache {
    /// Project root.
    pub root: PathBuf,
    /// `cache/` (or `REPRO_CACHE`).
    pub dir: PathBuf,
    /// Blob store (`.repro/blobs` or `REPRO_BLOBS`).
    pub blobs: PathBuf,
    /// Per-machine state (`.repro/`).
    pub state: PathBuf,
    /// Digest memo.
    pub stat: StatCache,
}

impl Cache {
    /// Opens (and creates) the cache of a project.
    pub fn open(root: &Path) -> Result<Cache, CacheError> {
        let dir = std::env::var_os("REPRO_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("cache"));
        let state = root.join(".repro");
        let blobs = std::env::var_os("REPRO_BLOBS")
            .map(PathBuf::from)
            .unwrap_or_else(|| state.join("blobs"));
        for d in [dir.join("records"), dir.join("objects"), state.clone()] {
            std::fs::create_dir_all(&d).map_err(io_at(&d))?;
        }
        let gi = dir.join(".gitignore");
        if !gi.exists() {
            atomic::write(&gi, b".locks/\n.tmp-*\n**/.tmp-*\n").map_err(io_at(&gi))?;
        }
        let sgi = state.join(".gitignore");
        if !sgi.exists() {
            atomic::write(&sgi, b"*\n").map_err(io_at(&sgi))?;
        }
        let stat = StatCache::load(state.join("statcache.json"));
        Ok(Cache {
            root: root.to_path_buf(),
            dir,
            blobs,
            state,
            stat,
        })
    }

    /// Path of a record.
    pub fn record_path(&self, key: &str) -> PathBuf {
        self.dir.join("records").join(format!("{key}.json"))
    }

    /// Whether a record exists for `key`.
    pub fn has_record(&self, key: &str) -> bool {
        self.record_path(key).is_file()
    }

    /// Lists the record directory once (see [`RecordIndex`]).
    pub fn record_index(&self) -> std::io::Result<RecordIndex> {
        RecordIndex::read(self)
    }

    /// Reads a record; `Ok(None)` when there is none.
    pub fn read_record(&self, key: &str) -> Result<Option<Record>, CacheError> {
        let path = self.record_path(key);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CacheError::Io { path, source: e }),
        };
        let rec: Record = serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if rec.key != key {
            return Err(CacheError::Corrupt {
                path,
                message: format!("holds key {}", rec.key),
            });
        }
        Ok(Some(rec))
    }

    /// Writes a record atomically (after its objects are stored).
    pub fn write_record(&self, rec: &Record) -> Result<(), CacheError> {
        let path = self.record_path(&rec.key);
        let bytes = serde_json::to_vec_pretty(rec).map_err(|e| CacheError::Corrupt {
            path: path.clone(),
            message: e.to_string(),
        })?;
        atomic::write(&path, &bytes).map_err(io_at(&path))
    }

    /// Where an object with this digest lives.
    pub fn object_path(&self, digest: &str, storage: Storage) -> PathBuf {
        let mut p = PathBuf::with_capacity(self.dir.as_os_str().len() + digest.len() + 16);
        match storage {
            Storage::Light => {
                p.push(&self.dir);
                p.push("objects");
            }
            Storage::Heavy => p.push(&self.blobs),
        }
        let (a, b) = digest.split_at(digest.len().min(2));
        p.push(a);
        p.push(b);
        p
    }

    /// Path of the lock file for `name` under `pipelines/`.
    pub fn lock_path(&self, pipeline_dir: &Path, name: &str) -> PathBuf {
        pipeline_dir.join(format!("{name}.lock"))
    }

    /// Path of a flock file.
    pub fn flock_path(&self, name: &str) -> PathBuf {
        self.dir.join(".locks").join(name)
    }

    /// Moves a file into the store under its digest (dedupes identical content).
    fn put_file(&self, src: &Path, digest: &str, storage: Storage) -> Result<(), CacheError> {
        let dest = self.object_path(digest, storage);
        if dest.is_file() {
            return Ok(());
        }
        let dir = dest.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(io_at(dir))?;
        std::fs::copy(src, tmp.path()).map_err(io_at(src))?;
        tmp.as_file().sync_all().map_err(io_at(tmp.path()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o444))
            .map_err(io_at(tmp.path()))?;
        tmp.persist(&dest).map_err(|e| CacheError::Io {
            path: dest.clone(),
            source: e.error,
        })?;
        atomic::sync_dir(dir).map_err(io_at(dir))
    }

    /// Hashes an output the op wrote and stores it; returns its record entry.
    pub fn store_output(
        &self,
        path: &Path,
        rel: &str,
        storage: Storage,
    ) -> Result<OutputRecord, CacheError> {
        let meta = std::fs::metadata(path).map_err(io_at(path))?;
        if meta.is_dir() {
            let manifest = self.stat.manifest(path).map_err(io_at(path))?;
            for e in &manifest.entries {
                self.put_file(&path.join(&e.path), &e.digest, storage)?;
            }
            let bytes = manifest.to_bytes();
            let digest = blake3::hash(&bytes).to_hex().to_string();
            let mpath = self.object_path(&digest, Storage::Light);
            if !mpath.is_file() {
                atomic::write(&mpath, &bytes).map_err(io_at(&mpath))?;
            }
            Ok(OutputRecord {
                digest,
                bytes: manifest.total_bytes(),
                kind: ArtifactKind::Dir,
                storage,
                media: record::media_type(rel, true),
                path: rel.into(),
            })
        } else {
            let digest = hash::hash_file(path).map_err(io_at(path))?;
            self.put_file(path, &digest, storage)?;
            Ok(OutputRecord {
                digest,
                bytes: meta.len(),
                kind: ArtifactKind::File,
                storage,
                media: record::media_type(rel, false),
                path: rel.into(),
            })
        }
    }

    /// Reads a directory manifest object.
    pub fn read_manifest(&self, digest: &str) -> Result<Manifest, CacheError> {
        let path = self.object_path(digest, Storage::Light);
        let bytes = std::fs::read(&path).map_err(io_at(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Corrupt {
            path,
            message: e.to_string(),
        })
    }

    fn blob_source(&self, digest: &str, storage: Storage) -> Result<PathBuf, CacheError> {
        let p = self.object_path(digest, storage);
        if p.is_file() {
            Ok(p)
        } else if storage == Storage::Heavy {
            Err(CacheError::BlobMissing {
                digest: digest.into(),
                store: self.blobs.clone(),
            })
        } else {
            Err(CacheError::Io {
                path: p,
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        }
    }

    /// Copies an output out of the cache to `dest` (a file or a directory tree).
    pub fn materialize(&self, out: &OutputRecord, dest: &Path) -> Result<(), CacheError> {
        match out.kind {
            ArtifactKind::File => {
                let src = self.blob_source(&out.digest, out.storage)?;
                copy_writable(&src, dest)
            }
            ArtifactKind::Dir => {
                let m = self.read_manifest(&out.digest)?;
                std::fs::create_dir_all(dest).map_err(io_at(dest))?;
                for e in &m.entries {
                    if e.path.split('/').any(|c| c == ".." || c.is_empty()) {
                        return Err(CacheError::Corrupt {
                            path: dest.into(),
                            message: format!("manifest entry `{}` escapes its directory", e.path),
                        });
                    }
                    let src = self.blob_source(&e.digest, out.storage)?;
                    let d = dest.join(&e.path);
                    if let Some(parent) = d.parent() {
                        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
                    }
                    copy_writable(&src, &d)?;
                    if e.exec {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755))
                            .map_err(io_at(&d))?;
                    }
                }
                Ok(())
            }
        }
    }

    /// Checks an output against its digest. `deep` re-reads every byte;
    /// otherwise unchanged stats are trusted. Absent heavy blobs pass unless
    /// `need_heavy`. Returns a reason on failure.
    pub fn check_output(
        &self,
        out: &OutputRecord,
        deep: bool,
        need_heavy: bool,
    ) -> Result<(), String> {
        let check_file = |digest: &str, storage: Storage| -> Result<(), String> {
            let p = self.object_path(digest, storage);
            if !p.is_file() {
                return if storage == Storage::Heavy && !need_heavy {
                    Ok(())
                } else {
                    Err(format!(
                        "object {} is missing ({})",
                        short(digest),
                        p.display()
                    ))
                };
            }
            let got = if deep {
                hash::hash_file(&p).map_err(|e| format!("{}: {e}", p.display()))?
            } else {
                self.stat
                    .file_digest(&p)
                    .map_err(|e| format!("{}: {e}", p.display()))?
                    .0
            };
            if got != digest {
                self.stat.forget(&p);
                return Err(format!(
                    "object {} is corrupt: its content hashes to {} ({})",
                    short(digest),
                    short(&got),
                    p.display()
                ));
            }
            Ok(())
        };
        match out.kind {
            ArtifactKind::File => check_file(&out.digest, out.storage),
            ArtifactKind::Dir => {
                check_file(&out.digest, Storage::Light)?;
                let m = self.read_manifest(&out.digest).map_err(|e| e.to_string())?;
                for e in &m.entries {
                    check_file(&e.digest, out.storage)?;
                }
                Ok(())
            }
        }
    }

    /// The fast check of a no-op `status` or `run`: the light object with this
    /// digest exists and its content (re-hashed only if its stat changed)
    /// matches; for a directory manifest, every entry passes the same check.
    /// `false` means "look closer" (read the record), not "corrupt": heavy
    /// blobs, for instance, are not light objects.
    pub fn quick_light_ok(&self, digest: &str) -> bool {
        let p = self.object_path(digest, Storage::Light);
        // The common case: the memo already holds this digest for the
        // object's current stat, and it is not a manifest.
        if let Some(bytes) = self.stat.vouches(&p, digest)
            && !looks_like_manifest(&p, bytes)
        {
            return true;
        }
        match self.stat.file_digest(&p) {
            Ok((d, bytes)) if d == digest => {
                if looks_like_manifest(&p, bytes) {
                    return match self.read_manifest(digest) {
                        Ok(m) => m.entries.iter().all(|e| {
                            let ep = self.object_path(&e.digest, Storage::Light);
                            self.stat.file_digest(&ep).is_ok_and(|(d, _)| d == e.digest)
                        }),
                        Err(_) => false,
                    };
                }
                true
            }
            _ => false,
        }
    }

    /// The light object directory, opened for [`Cache::quick_light_ok_in`].
    pub fn objects_dir(&self) -> std::io::Result<statdir::StatDir> {
        statdir::StatDir::open(&self.dir.join("objects"))
    }

    /// [`Cache::quick_light_ok`], looking objects up under `objects` (the
    /// open [`Cache::objects_dir`]) when the memo can vouch for them.
    pub fn quick_light_ok_in(&self, objects: Option<&statdir::StatDir>, digest: &str) -> bool {
        if let Some(dir) = objects
            && digest.len() == 64
            && digest.bytes().all(|b| b.is_ascii_hexdigit())
        {
            let rel = format!("{}/{}", &digest[..2], &digest[2..]);
            if let Some(bytes) = self.stat.vouches_in(dir, &rel, digest)
                && !(manifest_sized(bytes) && is_manifest(&dir.path(&rel)))
            {
                return true;
            }
        }
        self.quick_light_ok(digest)
    }

    /// Moves a corrupt object aside so the next run recomputes it.
    pub fn quarantine(&self, digest: &str, storage: Storage) -> std::io::Result<()> {
        let p = self.object_path(digest, storage);
        if p.is_file() {
            let q = self.state.join("quarantine");
            std::fs::create_dir_all(&q)?;
            std::fs::rename(&p, q.join(digest))?;
            self.stat.forget(&p);
        }
        Ok(())
    }
}

fn copy_writable(src: &Path, dest: &Path) -> Result<(), CacheError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io_at(parent))?;
    }
    std::fs::copy(src, dest).map_err(io_at(src))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o444)).map_err(io_at(dest))?;
    Ok(())
}

/// First 12 hex digits of a digest or key, for display.
pub fn short(d: &str) -> &str {
    &d[..d.len().min(12)]
}

/// Whether a light object of `bytes` bytes may be a directory manifest: a
/// manifest ends with its format tag (canonical JSON, sorted keys).
fn looks_like_manifest(p: &Path, bytes: u64) -> bool {
    manifest_sized(bytes) && is_manifest(p)
}

/// Whether a light object of this size could be a manifest at all.
fn manifest_sized(bytes: u64) -> bool {
    bytes > 64 && bytes < (1 << 24)
}

/// Whether the light object at `p` ends as a manifest does.
fn is_manifest(p: &Path) -> bool {
    ends_with(p, b"\"format\":\"repro-tree-1\"}")
}

fn ends_with(p: &Path, tail: &[u8]) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(p) else {
        return false;
    };
    if f.seek(SeekFrom::End(-(tail.len() as i64))).is_err() {
        return false;
    }
    let mut buf = vec![0u8; tail.len()];
    f.read_exact(&mut buf).is_ok() && buf == tail
}
