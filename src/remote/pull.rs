//! `repro pull`: records into a private staging directory, then manifests,
//! then the objects they list; each object is checked against its digest
//! before it is renamed into the cache, and a record is installed only after
//! every light object it references is present.

use super::sync::{Objs, Report, Scope, add_obj, check_record, is_digest, object_key, record_key};
use super::{Remote, RemoteError, local_at};
use crate::cache::record::{ArtifactKind, Record, Storage};
use crate::cache::{Cache, atomic, hash, short};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Fetches what the local cache lacks.
pub fn pull(
    cache: &Cache,
    remote: &dyn Remote,
    scope: &Scope,
    blobs: bool,
) -> Result<Report, RemoteError> {
    let mut rep = Report::default();
    let keys: Vec<String> = match scope {
        Scope::Keys(k) => k.clone(),
        Scope::All => {
            let mut k: Vec<String> = remote
                .list("records/")?
                .iter()
                .filter_map(|k| k.strip_prefix("records/")?.strip_suffix(".json"))
                .filter(|k| is_digest(k))
                .map(str::to_string)
                .collect();
            k.sort();
            k
        }
    };
    let stage = tempfile::Builder::new()
        .prefix(".tmp-pull-")
        .tempdir_in(&cache.state)
        .map_err(local_at(&cache.state))?;
    let stage = stage.path();
    // 1. Records: local ones as they are, missing ones staged and parsed.
    let mut recs: Vec<(Record, Option<PathBuf>)> = Vec::new();
    let mut wanted = Vec::new();
    for key in keys {
        if !is_digest(&key) {
            rep.failures.push(format!("`{key}` is not a record key"));
            continue;
        }
        match cache.read_record(&key) {
            Ok(Some(r)) => {
                rep.already += 1;
                recs.push((r, None));
            }
            Ok(None) => wanted.push(record_key(&key)),
            Err(e) => rep.failures.push(e.to_string()),
        }
    }
    let got = remote.get_many(&wanted, stage)?;
    rep.absent += wanted.len() - got.len();
    for rk in got {
        let p = stage.join(&rk);
        let key = rk.trim_start_matches("records/").trim_end_matches(".json");
        let parsed = std::fs::read(&p)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice::<Record>(&b).map_err(|e| e.to_string()))
            .and_then(|r| {
                if r.key == key {
                    Ok(r)
                } else {
                    Err(format!("holds key {}", r.key))
                }
            })
            .and_then(|r| check_record(&r).map(|()| r));
        match parsed {
            Ok(r) => recs.push((r, Some(p))),
            Err(m) => rep.failures.push(format!(
                "remote {}: {rk}: corrupt record, not pulled: {m}",
                remote.url()
            )),
        }
    }
    // 2. Manifests and file objects; 3. the entries of the manifests.
    let mut bad: BTreeSet<String> = BTreeSet::new();
    let mut first = Objs::new();
    for (r, _) in &recs {
        for o in r.outputs.values() {
            match o.kind {
                ArtifactKind::File => add_obj(&mut first, &o.digest, o.storage),
                ArtifactKind::Dir => add_obj(&mut first, &o.digest, Storage::Light),
            };
        }
    }
    fetch(cache, remote, stage, &first, blobs, &mut bad, &mut rep)?;
    let mut second = Objs::new();
    for (r, _) in &recs {
        for o in r.outputs.values() {
            let mk = object_key(&o.digest, Storage::Light);
            if o.kind == ArtifactKind::Dir && !bad.contains(&mk) {
                match cache.read_manifest(&o.digest) {
                    Ok(m) if m.entries.iter().all(|e| is_digest(&e.digest)) => {
                        for e in &m.entries {
                            add_obj(&mut second, &e.digest, o.storage);
                        }
                    }
                    Ok(_) => {
                        rep.failures
                            .push(format!("manifest {}: malformed digest", short(&o.digest)));
                        bad.insert(mk);
                    }
                    Err(e) => {
                        rep.failures.push(e.to_string());
                        bad.insert(mk);
                    }
                }
            }
        }
    }
    fetch(cache, remote, stage, &second, blobs, &mut bad, &mut rep)?;
    // 4. Records whose light objects are all present.
    for (r, staged) in recs {
        let Some(staged) = staged else { continue };
        let dest = cache.record_path(&r.key);
        match missing_object(cache, &r) {
            None => {
                rep.bytes += std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0);
                install(&staged, &dest, 0o644).map_err(local_at(&dest))?;
                rep.records += 1;
            }
            Some(why) => rep
                .failures
                .push(format!("record {} not pulled: {why}", short(&r.key))),
        }
    }
    cache.stat.save().ok();
    Ok(rep)
}

/// The first light object a record references that the local cache lacks.
/// Heavy blobs are never required: a record without its blobs is what a git
/// clone holds too (a downstream node that needs one says how to get it).
fn missing_object(cache: &Cache, r: &Record) -> Option<String> {
    let need = |d: &str, s: Storage| -> Option<String> {
        let p = cache.object_path(d, s);
        (s == Storage::Light && !p.is_file())
            .then(|| format!("object {} is missing ({})", short(d), p.display()))
    };
    for o in r.outputs.values() {
        if let Some(m) = need(
            &o.digest,
            match o.kind {
                ArtifactKind::File => o.storage,
                ArtifactKind::Dir => Storage::Light,
            },
        ) {
            return Some(m);
        }
        if o.kind == ArtifactKind::Dir {
            let m = match cache.read_manifest(&o.digest) {
                Ok(m) => m,
                Err(e) => return Some(e.to_string()),
            };
            if let Some(m) = m.entries.iter().find_map(|e| need(&e.digest, o.storage)) {
                return Some(m);
            }
        }
    }
    None
}

/// Downloads the objects of `objs` the cache lacks, verifies, installs.
fn fetch(
    cache: &Cache,
    remote: &dyn Remote,
    stage: &Path,
    objs: &Objs,
    blobs: bool,
    bad: &mut BTreeSet<String>,
    rep: &mut Report,
) -> Result<(), RemoteError> {
    let mut wanted = Vec::new();
    for (k, (d, s)) in objs {
        if *s == Storage::Heavy && !blobs {
            rep.blobs_skipped += 1;
        } else if cache.object_path(d, *s).is_file() {
            rep.already += 1;
        } else {
            wanted.push(k.clone());
        }
    }
    let got: BTreeSet<String> = remote.get_many(&wanted, stage)?.into_iter().collect();
    for k in &wanted {
        let (d, s) = &objs[k];
        if !got.contains(k) {
            if *s == Storage::Heavy {
                rep.blobs_missing += 1;
            } else {
                rep.failures
                    .push(format!("remote {} lacks {k}", remote.url()));
                bad.insert(k.clone());
            }
            continue;
        }
        let p = stage.join(k);
        let h = hash::hash_file(&p).map_err(local_at(&p))?;
        if h != *d {
            rep.failures.push(format!(
                "remote {}: {k} is corrupt: its content hashes to {}; refused",
                remote.url(),
                short(&h)
            ));
            bad.insert(k.clone());
            let _ = std::fs::remove_file(&p);
            continue;
        }
        let dest = cache.object_path(d, *s);
        rep.bytes += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        install(&p, &dest, 0o444).map_err(local_at(&dest))?;
        rep.objects += 1;
    }
    Ok(())
}

/// Moves a verified staged file into place: a `.tmp-*` name in the target
/// directory (renamed there, or copied when across filesystems), fsync,
/// rename, directory fsync.
fn install(staged: &Path, dest: &Path, mode: u32) -> std::io::Result<()> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    if std::fs::rename(staged, tmp.path()).is_err() {
        std::fs::copy(staged, tmp.path())?;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(mode))?;
    std::fs::File::open(tmp.path())?.sync_all()?;
    tmp.persist(dest).map_err(|e| e.error)?;
    atomic::sync_dir(dir)
}
