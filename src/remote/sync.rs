//! Push and pull: what the local cache has and the remote lacks, and back.
//!
//! Push sends objects (light objects, directory manifests, and heavy blobs
//! with `--blobs`) before the records that reference them, and never a
//! record whose light objects are missing or corrupt locally. Pull fetches
//! records into a private staging directory, then manifests, then the
//! objects they list; each object is checked against its blake3 digest
//! before it is renamed into the cache, and a record is installed only after
//! every light object it references is present. Heavy blobs (only with
//! `--blobs`) are optional, as in the local cache: a record without its
//! blobs is what a git clone holds too.

use super::{Remote, RemoteError, local_at};
use crate::cache::record::{ArtifactKind, Record, Storage};
use crate::cache::{Cache, short};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which records to transfer.
#[derive(Debug, Clone)]
pub enum Scope {
    /// These record keys (a pipeline's lock file).
    Keys(Vec<String>),
    /// Every record (the whole local cache on push, the whole remote on pull).
    All,
}

/// What a push or pull did.
#[derive(Debug, Default)]
pub struct Report {
    /// Records transferred.
    pub records: usize,
    /// Objects (light, manifests, blobs) transferred.
    pub objects: usize,
    /// Bytes transferred.
    pub bytes: u64,
    /// Records and objects the destination already had.
    pub already: usize,
    /// Records in scope that the source lacks.
    pub absent: usize,
    /// Heavy blobs left out for lack of `--blobs`.
    pub blobs_skipped: usize,
    /// Heavy blobs asked for (`--blobs`) that the source does not hold.
    pub blobs_missing: usize,
    /// Problems that left some records untransferred (each names a file or key).
    pub failures: Vec<String>,
}

impl Report {
    /// The one-line summary, e.g. `pushed 12 records, 40 objects (3.1 MB); 200 already on the remote`.
    pub fn summary(&self, verb: &str, place: &str) -> String {
        let mut s = format!(
            "{verb} {} record{}, {} object{} ({}); {} already {place}",
            self.records,
            plural(self.records),
            self.objects,
            plural(self.objects),
            human_bytes(self.bytes),
            self.already
        );
        if self.absent > 0 {
            s.push_str(&format!(
                "; {} record{} not found at the source",
                self.absent,
                plural(self.absent)
            ));
        }
        if self.blobs_missing > 0 {
            s.push_str(&format!(
                "; {} heavy blob{} not found at the source",
                self.blobs_missing,
                plural(self.blobs_missing)
            ));
        }
        if self.blobs_skipped > 0 {
            s.push_str(&format!(
                "; {} heavy blob{} not transferred (use --blobs)",
                self.blobs_skipped,
                plural(self.blobs_skipped)
            ));
        }
        s
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `3.1 MB`, `512 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Whether `s` is a blake3 hex digest (or key).
pub fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The remote key of a record.
pub fn record_key(key: &str) -> String {
    format!("records/{key}.json")
}

/// The remote key of an object.
pub fn object_key(digest: &str, storage: Storage) -> String {
    let top = match storage {
        Storage::Light => "objects",
        Storage::Heavy => "blobs",
    };
    format!("{top}/{}/{}", &digest[..2], &digest[2..])
}

/// Objects by remote key: digest and storage.
pub(super) type Objs = BTreeMap<String, (String, Storage)>;

pub(super) fn add_obj(objs: &mut Objs, digest: &str, storage: Storage) {
    objs.insert(object_key(digest, storage), (digest.to_string(), storage));
}

/// Checks the digests of a record's outputs (they become paths).
pub(super) fn check_record(rec: &Record) -> Result<(), String> {
    for (name, o) in &rec.outputs {
        if !is_digest(&o.digest) {
            return Err(format!("output `{name}` has a malformed digest"));
        }
    }
    Ok(())
}

/// Record keys in scope on the local side.
fn local_keys(cache: &Cache, scope: &Scope) -> Result<Vec<String>, RemoteError> {
    match scope {
        Scope::Keys(k) => Ok(k.clone()),
        Scope::All => {
            let dir = cache.dir.join("records");
            let mut keys: Vec<String> = std::fs::read_dir(&dir)
                .map_err(local_at(&dir))?
                .flatten()
                .filter_map(|e| {
                    let n = e.file_name().to_str()?.strip_suffix(".json")?.to_string();
                    is_digest(&n).then_some(n)
                })
                .collect();
            keys.sort();
            Ok(keys)
        }
    }
}

/// Sends what the remote lacks.
pub fn push(
    cache: &Cache,
    remote: &dyn Remote,
    scope: &Scope,
    blobs: bool,
) -> Result<Report, RemoteError> {
    let mut rep = Report::default();
    let mut records: Vec<(PathBuf, String)> = Vec::new();
    let mut objects: BTreeMap<String, PathBuf> = BTreeMap::new();
    for key in local_keys(cache, scope)? {
        if !is_digest(&key) {
            rep.failures.push(format!("`{key}` is not a record key"));
            continue;
        }
        let rec = match cache.read_record(&key) {
            Ok(Some(r)) => r,
            Ok(None) => {
                rep.absent += 1;
                continue;
            }
            Err(e) => {
                rep.failures.push(e.to_string());
                continue;
            }
        };
        match local_objects(cache, &rec, blobs, &mut rep) {
            Ok(objs) => {
                objects.extend(objs);
                records.push((cache.record_path(&key), record_key(&key)));
            }
            Err(m) => rep.failures.push(format!(
                "{}: not pushed: {m} (run `repro verify`)",
                cache.record_path(&key).display()
            )),
        }
    }
    cache.stat.save().ok();
    let objects: Vec<(PathBuf, String)> = objects.into_iter().map(|(k, p)| (p, k)).collect();
    // Objects first: a record on the remote always has its objects there.
    for batch in [objects, records] {
        let keys: Vec<String> = batch.iter().map(|(_, k)| k.clone()).collect();
        let have = remote.has_many(&keys)?;
        let todo: Vec<(PathBuf, String)> = batch
            .into_iter()
            .zip(have)
            .filter_map(|(item, h)| (!h).then_some(item))
            .collect();
        rep.already += keys.len() - todo.len();
        for (p, k) in &todo {
            rep.bytes += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            if k.starts_with("records/") {
                rep.records += 1;
            } else {
                rep.objects += 1;
            }
        }
        remote.put_many(&todo)?;
    }
    Ok(rep)
}

/// A local record's objects (remote key -> local path), each checked against
/// its digest (the stat memo spares unchanged files). Heavy blobs are
/// included with `blobs` when present; a missing or corrupt light object
/// is an error (the record is not pushed).
fn local_objects(
    cache: &Cache,
    rec: &Record,
    blobs: bool,
    rep: &mut Report,
) -> Result<Vec<(String, PathBuf)>, String> {
    check_record(rec)?;
    let mut out = Vec::new();
    let mut add = |digest: &str, storage: Storage, out: &mut Vec<(String, PathBuf)>| {
        if storage == Storage::Heavy && !blobs {
            rep.blobs_skipped += 1;
            return Ok(());
        }
        let p = cache.object_path(digest, storage);
        match cache.stat.file_digest(&p) {
            Ok((d, _)) if d == digest => {
                out.push((object_key(digest, storage), p));
                Ok(())
            }
            Ok((d, _)) => {
                cache.stat.forget(&p);
                Err(format!(
                    "object {} is corrupt: its content hashes to {} ({})",
                    short(digest),
                    short(&d),
                    p.display()
                ))
            }
            Err(_) if storage == Storage::Heavy => {
                rep.blobs_missing += 1;
                Ok(())
            }
            Err(e) => Err(format!("object {}: {e}", p.display())),
        }
    };
    for o in rec.outputs.values() {
        match o.kind {
            ArtifactKind::File => add(&o.digest, o.storage, &mut out)?,
            ArtifactKind::Dir => {
                add(&o.digest, Storage::Light, &mut out)?;
                let m = cache.read_manifest(&o.digest).map_err(|e| e.to_string())?;
                for e in &m.entries {
                    if !is_digest(&e.digest) {
                        return Err(format!("manifest {} is malformed", short(&o.digest)));
                    }
                    add(&e.digest, o.storage, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}
