//! Bookkeeping around a run: the preimage of a forced re-run, moving corrupt
//! objects aside before a re-run, and merging what a run learned into the
//! lock file.

use super::ExecError;
use crate::cache::Cache;
use crate::cache::flock::{self, Mode};
use crate::cache::lockfile::{LockEntry, LockFile};
use crate::cache::record::{ArtifactKind, Storage};
use crate::exec::freshness::Known;
use crate::graph::Dag;
use serde_json::Value;
use std::path::Path;

/// The preimage stored in a key's record (a forced re-run keeps its key).
pub(super) fn record_preimage(cache: &Cache, key: &str) -> Value {
    cache
        .read_record(key)
        .ok()
        .flatten()
        .map(|r| r.preimage)
        .unwrap_or(Value::Null)
}

/// Moves every corrupt object of a key's record aside so the re-run stores fresh copies.
pub(super) fn repair(cache: &Cache, key: &str) {
    let Ok(Some(rec)) = cache.read_record(key) else {
        return;
    };
    let corrupt = |digest: &str, storage: Storage| {
        let p = cache.object_path(digest, storage);
        p.is_file() && crate::cache::hash::hash_file(&p).ok().as_deref() != Some(digest)
    };
    for o in rec.outputs.values() {
        match o.kind {
            ArtifactKind::File => {
                if corrupt(&o.digest, o.storage) {
                    let _ = cache.quarantine(&o.digest, o.storage);
                }
            }
            ArtifactKind::Dir => {
                if corrupt(&o.digest, Storage::Light) {
                    let _ = cache.quarantine(&o.digest, Storage::Light);
                } else if let Ok(m) = cache.read_manifest(&o.digest) {
                    for e in m.entries {
                        if corrupt(&e.digest, o.storage) {
                            let _ = cache.quarantine(&e.digest, o.storage);
                        }
                    }
                }
            }
        }
    }
}

/// Merges what this run knows into the lock file, under the lock file's lock.
pub(super) fn write_lock(
    dag: &Dag,
    cache: &Cache,
    lock_path: &Path,
    known: &[Option<Known>],
    start: &LockFile,
) -> Result<bool, ExecError> {
    let lpath = cache.flock_path(&format!("lockfile-{}", dag.pipeline.name));
    let _g = flock::lock_wait(&lpath, Mode::Exclusive)
        .map_err(|e| ExecError::Lock(format!("{}: {e}", lpath.display())))?;
    // A no-op run: this run learned nothing the lock file read at its start
    // did not say, and the file still holds exactly that lock's text. Then
    // the merge below would write nothing; skip parsing and rebuilding it.
    let nothing_new = start.pipeline == dag.pipeline.name
        && start.repro_lock == crate::cache::lockfile::LOCK_FORMAT
        && known.iter().flatten().count() == start.nodes.len()
        && known.iter().enumerate().all(|(i, k)| {
            k.as_ref().is_none_or(|k| {
                start
                    .nodes
                    .get(dag.nodes[i].id())
                    .is_some_and(|e| e.key == k.key && e.outputs == k.outputs)
            })
        });
    if nothing_new
        && std::fs::read(lock_path).is_ok_and(|bytes| bytes == start.to_text().as_bytes())
    {
        return Ok(false);
    }
    let mut lock = LockFile::read(lock_path).map_err(ExecError::Lock)?;
    lock.pipeline = dag.pipeline.name.clone();
    lock.repro_lock = crate::cache::lockfile::LOCK_FORMAT;
    lock.nodes.retain(|id, _| dag.index_of(id).is_some());
    for (i, k) in known.iter().enumerate() {
        if let Some(k) = k {
            lock.nodes.insert(
                dag.nodes[i].id().to_string(),
                LockEntry {
                    key: k.key.clone(),
                    outputs: k.outputs.clone(),
                },
            );
        }
    }
    lock.write_if_changed(lock_path)
        .map_err(|e| ExecError::Lock(format!("{}: {e}", lock_path.display())))
}
