//! The compiled-DAG memo: a no-op `repro status` (or `run`) on a large
//! pipeline skips YAML parsing, expansion and compilation when nothing they
//! depend on changed. It is documented here the way cargo documents its
//! fingerprints: what is in the memo's key, what is deliberately not, and why
//! leaving it out is safe.
//!
//! # What the memo holds
//!
//! After a compile succeeds, `.repro/dag/<first 16 hex of blake3(pipeline
//! path)>.memo` records its result: node ids as written, every instance (id,
//! coordinates, params after interpolation), its op by name, its
//! [`KeyTemplate`](super::key::KeyTemplate) (the canonical JSON of the
//! preimage's `op`, `op_version` and semantic `params`: everything in a key
//! that does not depend on digests), outputs, resolved inputs (upstream
//! instance + output, or a `file:` path), resources, tolerances, and the
//! topological order. Upstream lists are re-derived from the inputs. There
//! is one memo per pipeline path, the last successful compile's: loading the
//! same pipeline with other `-s` overrides replaces it.
//!
//! # What the memo key holds
//!
//! The memo is used only when every one of these is unchanged since it was
//! written (anything else is a miss, and the full compile runs and rewrites it):
//!
//! 1. **Format**: the magic bytes and [`MEMO_FORMAT`].
//! 2. **Build identity**: the crate version, [`KEY_FORMAT`](super::key::KEY_FORMAT),
//!    the running executable's path, size, mtime (ns) and inode (a rebuilt or
//!    replaced binary never reads an older binary's memo), and the whole op
//!    registry: every op's name, version, kind flags and params schema.
//! 3. **Request**: the project root, the current directory (error messages
//!    and relative paths depend on it), the pipeline path as given, and the
//!    `-s name=value` overrides, in order.
//! 4. **Pipeline files**: for the root file and every include, the path as
//!    read, its canonical path (a retargeted symlink is a change) and the
//!    blake3 of its bytes (any byte: a whitespace edit moves spans). A file
//!    that cannot be read is a change.
//! 5. **`file:` inputs exist, or are still missing**: every `file:` path the
//!    DAG names must still be a regular file or a directory, and every path
//!    the compile found missing ([`Dag::missing`], which the memo holds with
//!    where each is asked for) must still be missing. A missing input that
//!    appears, or an input that disappears, is a change: the full compile
//!    runs and records the new set (otherwise `repro status` would keep
//!    saying "missing input" for a file that is there).
//!
//! Items 1-3 are hashed into one 32-byte digest at the head of the file.
//!
//! # What it does not hold, and why that is safe
//!
//! - **Contents of `file:` inputs**: keys take their digests at evaluation
//!   time, through the stat memo ([`crate::cache::hash::StatCache`]: path,
//!   size, mtime, inode), exactly as without the DAG memo.
//! - **Upstream digests, records, the lock file, the cache**: also read at
//!   evaluation time; report ops' record views are computed then.
//! - **Environment variables**: compilation reads none (`REPRO_CACHE` and
//!   `REPRO_BLOBS` only move the cache, which is read at evaluation).
//! - **Embedded pipelines** (`repro init`'s defaults run without files) are
//!   always compiled; they are small.
//!
//! # Integrity
//!
//! The memo is only written after a successful compile, and only after the
//! bytes about to be written were decoded again and compared equal to the
//! compiled DAG. It ends with a blake3 checksum of everything before it, and
//! decoding checks every length and index. A memo that is missing, stale,
//! truncated or corrupt is ignored (then rewritten), never trusted and never a
//! panic. It lives under `.repro/` (per machine, never committed) and is
//! written atomically ([`crate::cache::atomic::write`]: temp file, fsync,
//! rename, fsync of the directory); a memo that cannot be written only costs
//! the next load a compile.

use super::Dag;
use super::codec::{Corrupt, Reader, Writer};
use super::resolve::{FileCheck, check_file};
use super::serial::{self, ParamsFrom};
use crate::cache::fasthash::FastSet;
use crate::graph::{Input, Source};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Version of the memo layout; a memo of another version is ignored.
pub const MEMO_FORMAT: u64 = 4;

const MAGIC: &[u8; 16] = b"repro-dag-memo\n\0";

/// What a compile was asked for, besides the bytes of the files it read.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The project root.
    pub root: &'a Path,
    /// The root pipeline file, as the loader was given it.
    pub path: &'a Path,
    /// The `-s name=value` overrides, in order.
    pub overrides: &'a [String],
}

/// Why the memo was not used.
#[derive(Debug, thiserror::Error)]
pub enum Miss {
    /// There is no memo for this pipeline.
    #[error("no compiled-DAG memo")]
    Absent,
    /// Something the compile depends on changed.
    #[error("compiled-DAG memo is stale: {0}")]
    Stale(String),
    /// The memo does not decode.
    #[error(transparent)]
    Corrupt(#[from] Corrupt),
    /// The memo could not be read.
    #[error("compiled-DAG memo: {0}")]
    Io(#[from] std::io::Error),
}

/// Where the memo of a pipeline lives.
pub fn memo_path(req: &Request) -> PathBuf {
    let name = blake3::hash(req.path.as_os_str().as_bytes()).to_hex();
    req.root
        .join(".repro")
        .join("dag")
        .join(format!("{}.memo", &name[..16]))
}

/// The compiled DAG from the memo, if everything it depends on is unchanged.
pub fn load(req: &Request) -> Result<Dag, Miss> {
    let bytes = match std::fs::read(memo_path(req)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Miss::Absent),
        Err(e) => return Err(Miss::Io(e)),
    };
    let body_len = bytes
        .len()
        .checked_sub(32)
        .ok_or(Corrupt("shorter than its checksum"))?;
    if blake3::hash(&bytes[..body_len]).as_bytes() != &bytes[body_len..] {
        return Err(Corrupt("checksum mismatch").into());
    }
    let mut r = Reader::new(&bytes[..body_len]);
    if r.bytes()? != MAGIC || r.u64()? != MEMO_FORMAT {
        return Err(Miss::Stale("another memo format".into()));
    }
    if r.bytes()? != context(req)?.as_bytes() {
        return Err(Miss::Stale(
            "the binary, the op registry, the overrides or the paths changed".into(),
        ));
    }
    let n_files = r.count()?;
    for _ in 0..n_files {
        let path = r.path()?;
        let canonical = r.bytes()?;
        let digest = r.bytes()?;
        let hashed = std::fs::File::open(&path)
            .and_then(|f| blake3::Hasher::new().update_reader(f).map(|h| h.finalize()))
            .map_err(|e| Miss::Stale(format!("{}: {e}", path.display())))?;
        if hashed.as_bytes() != digest || canonical_bytes(&path) != canonical {
            return Err(Miss::Stale(format!("{} changed", path.display())));
        }
    }
    // Params stay encoded in the memo's bytes until something uses them.
    let dag_at = r.position();
    let bytes = Arc::new(bytes);
    let mut r = Reader::new(&bytes[dag_at..body_len]);
    let dag = serial::read_dag(&mut r, req.root, ParamsFrom::Lazy(&bytes, dag_at))?;
    if !r.at_end() {
        return Err(Corrupt("trailing bytes").into());
    }
    check_files(&dag)?;
    Ok(dag)
}

/// Records a DAG that `files` (each pipeline file read: path as read, text)
/// compiled to under `req`.
pub fn store(req: &Request, files: &[(&Path, &str)], dag: &Dag) -> Result<(), Miss> {
    let mut w = Writer::default();
    w.bytes(MAGIC);
    w.u64(MEMO_FORMAT);
    w.bytes(context(req)?.as_bytes());
    w.len(files.len());
    for (path, text) in files {
        w.path(path);
        w.bytes(&canonical_bytes(path));
        w.bytes(blake3::hash(text.as_bytes()).as_bytes());
    }
    let dag_at = w.buf.len();
    serial::write_dag(&mut w, dag);
    // What the memo will give back must be exactly what was compiled.
    let back = serial::read_dag(
        &mut Reader::new(&w.buf[dag_at..]),
        req.root,
        ParamsFrom::Decode,
    )?;
    if back.pipeline != dag.pipeline
        || back.nodes != dag.nodes
        || back.order != dag.order
        || back.missing != dag.missing
    {
        return Err(Corrupt("does not read back as written").into());
    }
    let sum = blake3::hash(&w.buf);
    w.buf.extend_from_slice(sum.as_bytes());
    crate::cache::atomic::write(&memo_path(req), &w.buf)?;
    Ok(())
}

/// Every `file:` path must still be usable, and every missing one still missing.
fn check_files(dag: &Dag) -> Result<(), Miss> {
    let mut seen: FastSet<&[u8]> = FastSet::default();
    for n in &dag.nodes {
        for (_, input) in &n.inputs {
            let sources: &mut dyn Iterator<Item = &Source> = match input {
                Input::One(s) => &mut std::iter::once(s),
                Input::List(entries) => &mut entries.iter().map(|(_, s)| s),
            };
            for s in sources {
                if let Source::File { path, written } = s {
                    if !seen.insert(path.as_os_str().as_bytes()) {
                        continue;
                    }
                    let was_missing = dag
                        .missing
                        .binary_search_by(|m| m.written.cmp(written))
                        .is_ok();
                    let want = if was_missing {
                        FileCheck::Missing
                    } else {
                        FileCheck::Usable
                    };
                    if check_file(path) != want {
                        return Err(Miss::Stale(if was_missing {
                            format!("`file:{written}` was missing and is not any more")
                        } else {
                            format!("`file:{written}` is not usable")
                        }));
                    }
                }
            }
        }
    }
    Ok(())
}

fn canonical_bytes(path: &Path) -> Vec<u8> {
    std::fs::canonicalize(path)
        .map(|c| c.as_os_str().as_bytes().to_vec())
        .unwrap_or_default()
}

/// A digest of everything besides the files that a compile depends on.
fn context(req: &Request) -> Result<blake3::Hash, Miss> {
    let mut w = Writer::default();
    w.str(env!("CARGO_PKG_VERSION"));
    w.u64(super::key::KEY_FORMAT);
    let exe = std::env::current_exe()?;
    let meta = std::fs::metadata(&exe)?;
    w.path(&exe);
    w.u64(meta.len());
    w.u64(meta.mtime() as u64);
    w.u64(meta.mtime_nsec() as u64);
    w.u64(meta.ino());
    w.len(crate::ops::REGISTRY.len());
    for op in crate::ops::REGISTRY {
        w.str(op.name());
        w.u64(u64::from(op.version()));
        w.bool(op.is_report());
        w.bool(op.is_ingest());
        w.bool(op.takes_inputs());
        w.str(&format!("{:?}", op.params()));
    }
    w.path(req.root);
    w.path(&std::env::current_dir()?);
    w.path(req.path);
    w.len(req.overrides.len());
    req.overrides.iter().for_each(|o| w.str(o));
    Ok(blake3::hash(&w.buf))
}
