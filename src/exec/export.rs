//! `export:` copies a report node's outputs out of the cache into the work
//! tree (e.g. `paper/table1.tex`), after every run in which the node is
//! computed or found cached. `repro verify` checks that each exported file
//! still holds exactly the cached bytes, so a hand-edited export fails CI.
//!
//! `export: paper/table1.md` exports the output `out`; a mapping
//! `{out: paper/fig1.svg, png: paper/fig1.png}` names each output's path.
//! Paths are relative to the project root and must stay inside it.

use crate::cache::Cache;
use crate::cache::record::OutputRecord;
use crate::graph::{Dag, DagNode};
use serde_json::Value;
use std::path::{Component, Path, PathBuf};

/// The exports a node declares: output name -> path (relative to the root).
pub fn targets(node: &DagNode) -> Result<Vec<(String, String)>, String> {
    let bad = |m: &str| format!("`{}`: export: {m}", node.id());
    let list: Vec<(String, String)> = match node.inst.params.get("export") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(p)) => vec![("out".into(), p.clone())],
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|p| (k.clone(), p.to_string()))
                    .ok_or_else(|| bad("paths must be strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad("expected a path or a mapping of output -> path")),
    };
    for (out, p) in &list {
        if !node.outputs.iter().any(|o| &o.name == out) {
            return Err(bad(&format!("the node has no output `{out}`")));
        }
        let path = Path::new(p);
        if p.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(bad(&format!(
                "`{p}` must be a relative path inside the project"
            )));
        }
    }
    Ok(list)
}

/// Writes a node's exports from its cached record (only files whose bytes differ).
pub fn export(cache: &Cache, dag: &Dag, i: usize, key: &str) -> Result<Vec<PathBuf>, String> {
    let node = &dag.nodes[i];
    let list = targets(node)?;
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let rec = cache
        .read_record(key)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("`{}`: record vanished before export", node.id()))?;
    let mut written = Vec::new();
    for (out, rel) in list {
        let o = rec
            .outputs
            .get(&out)
            .ok_or_else(|| format!("`{}` has no output `{out}`", node.id()))?;
        let dest = dag.root.join(&rel);
        let bytes = cached_bytes(cache, o)?;
        if std::fs::read(&dest).ok().as_deref() != Some(bytes.as_slice()) {
            crate::cache::atomic::write(&dest, &bytes).map_err(|e| format!("export {rel}: {e}"))?;
            written.push(dest);
        }
    }
    Ok(written)
}

/// Checks that every export of a cached node matches the cached bytes.
pub fn check(cache: &Cache, dag: &Dag, i: usize, key: &str) -> Result<(), String> {
    let node = &dag.nodes[i];
    let list = targets(node)?;
    if list.is_empty() {
        return Ok(());
    }
    let rec = cache
        .read_record(key)
        .map_err(|e| e.to_string())?
        .ok_or("record vanished")?;
    for (out, rel) in list {
        let o = rec
            .outputs
            .get(&out)
            .ok_or_else(|| format!("no output `{out}`"))?;
        let want = cached_bytes(cache, o)?;
        match std::fs::read(dag.root.join(&rel)) {
            Ok(got) if got == want => {}
            Ok(_) => {
                return Err(format!(
                    "{rel} differs from the cached output `{out}` (edited by hand? `repro report` rewrites it)"
                ));
            }
            Err(_) => return Err(format!("{rel} is missing (`repro report` writes it)")),
        }
    }
    Ok(())
}

fn cached_bytes(cache: &Cache, o: &OutputRecord) -> Result<Vec<u8>, String> {
    let p = cache.object_path(&o.digest, o.storage);
    std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
}
