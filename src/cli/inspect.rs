//! `repro dag`, `repro gc`, `repro cache show`, `repro ops`.

use super::{Failure, Outcome, PipelineArgs, load, root};
use crate::cache::flock::{self, Mode};
use crate::cache::lockfile::LockFile;
use crate::cache::record::{ArtifactKind, Record, Storage};
use crate::cache::{Cache, hash};
use crate::graph::Input;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Output format of `repro dag`.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum DagFormat {
    /// Graphviz DOT.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
}

/// Runs `repro dag`.
pub fn dag(p: &PipelineArgs, format: DagFormat) -> Outcome {
    let l = load(p, None)?;
    let dag = &l.dag;
    let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::new();
    let edges = || {
        dag.nodes.iter().enumerate().flat_map(move |(i, n)| {
            n.inputs.iter().flat_map(move |(name, inp)| {
                let srcs: Vec<_> = match inp {
                    Input::One(s) => vec![s.clone()],
                    Input::List(v) => v.iter().map(|(_, s)| s.clone()).collect(),
                };
                srcs.into_iter().filter_map(move |s| match s {
                    crate::graph::Source::Node { idx, .. } => Some((idx, i, name.clone())),
                    crate::graph::Source::File { .. } => None,
                })
            })
        })
    };
    match format {
        DagFormat::Dot => {
            out.push_str(&format!(
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box];\n",
                esc(&dag.pipeline.name)
            ));
            for n in &dag.nodes {
                out.push_str(&format!(
                    "  \"{}\" [label=\"{}\\n{}\"];\n",
                    esc(n.id()),
                    esc(n.id()),
                    esc(n.op.name())
                ));
            }
            for (a, b, name) in edges() {
                out.push_str(&format!(
                    "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
                    esc(dag.nodes[a].id()),
                    esc(dag.nodes[b].id()),
                    esc(&name)
                ));
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, n) in dag.nodes.iter().enumerate() {
                out.push_str(&format!(
                    "  n{i}[\"{}<br/>{}\"]\n",
                    n.id().replace('"', "#quot;"),
                    n.op.name()
                ));
            }
            for (a, b, name) in edges() {
                out.push_str(&format!("  n{a} -->|{name}| n{b}\n"));
            }
        }
    }
    print!("{out}");
    Ok(())
}

/// Runs `repro cache show KEY`.
pub fn cache_show(_p: &PipelineArgs, prefix: &str) -> Outcome {
    let root = root()?;
    let cache = Cache::open(&root)?;
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::Input(format!(
            "`{prefix}` is not a key or key prefix (hex digits)"
        )));
    }
    let dir = cache.dir.join("records");
    let matches: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Failure::Failed(format!("{}: {e}", dir.display())))?
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()?
                .strip_suffix(".json")
                .map(str::to_string)
        })
        .filter(|k| k.starts_with(prefix))
        .collect();
    match matches.as_slice() {
        [] => Err(Failure::Failed(format!("no record with key {prefix}..."))),
        [k] => {
            let rec = cache
                .read_record(k)?
                .ok_or_else(|| Failure::Failed(format!("record {k} vanished")))?;
            println!("{}", serde_json::to_string_pretty(&rec).unwrap_or_default());
            Ok(())
        }
        many => Err(Failure::Input(format!(
            "`{prefix}` is ambiguous: {} records match",
            many.len()
        ))),
    }
}

/// Runs `repro ops`.
pub fn ops(json_out: bool) -> Outcome {
    if json_out {
        let v: Vec<_> = crate::ops::REGISTRY
            .iter()
            .map(|op| {
                let params: Vec<_> = op
                    .params()
                    .iter()
                    .map(|p| serde_json::json!({"name": p.name, "type": p.ty.describe(), "required": p.required_param(), "default": p.default.value(), "semantic": p.semantic, "doc": p.doc}))
                    .collect();
                serde_json::json!({"op": op.name(), "version": op.version(), "doc": op.doc(), "params": params})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    for op in crate::ops::REGISTRY {
        println!("{} (version {})\n  {}", op.name(), op.version(), op.doc());
        for p in op.params() {
            println!(
                "    {:<10} {:<22} {}{}  {}",
                p.name,
                p.ty.describe(),
                if p.required_param() {
                    "required".to_string()
                } else {
                    match p.default.value() {
                        Some(v) => format!("default {v}"),
                        None => "optional".to_string(),
                    }
                },
                if p.semantic { "" } else { ", not in key" },
                p.doc
            );
        }
    }
    Ok(())
}

/// Runs `repro gc`: keeps what any `pipelines/*.lock` references.
pub fn gc(_p: &PipelineArgs, force: bool) -> Outcome {
    let root = root()?;
    let cache = Cache::open(&root)?;
    let lpath = cache.flock_path("cache");
    let _g = match flock::try_lock(&lpath, Mode::Exclusive)
        .map_err(|e| Failure::Failed(e.to_string()))?
    {
        Some(g) => g,
        None => {
            eprintln!("repro gc: waiting for running `repro` commands to finish ...");
            flock::lock_wait(&lpath, Mode::Exclusive).map_err(|e| Failure::Failed(e.to_string()))?
        }
    };
    let mut keep_keys = HashSet::new();
    for entry in std::fs::read_dir(root.join("pipelines"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = entry.path();
        if p.extension().and_then(|e| e.to_str()) == Some("lock") {
            let lock = LockFile::read(&p).map_err(Failure::Failed)?;
            keep_keys.extend(lock.nodes.into_values().map(|e| e.key));
        }
    }
    let mut keep_objects: HashSet<(String, Storage)> = HashSet::new();
    let mut doomed: Vec<(PathBuf, u64)> = Vec::new();
    let records = cache.dir.join("records");
    for entry in std::fs::read_dir(&records).into_iter().flatten().flatten() {
        let p = entry.path();
        let Some(key) = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .map(str::to_string)
        else {
            continue;
        };
        if key.starts_with(".tmp-") {
            doomed.push((p.clone(), size(&p)));
            continue;
        }
        if !keep_keys.contains(&key) {
            doomed.push((p.clone(), size(&p)));
            continue;
        }
        if let Ok(Some(rec)) = cache.read_record(&key) {
            keep_of(&cache, &rec, &mut keep_objects);
        }
    }
    for (dir, storage) in [
        (cache.dir.join("objects"), Storage::Light),
        (cache.blobs.clone(), Storage::Heavy),
    ] {
        let _ = hash::walk(&dir, &dir, &mut |rel, abs, meta| {
            let digest = rel.replace('/', "");
            let name = abs.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with(".tmp-") || !keep_objects.contains(&(digest, storage)) {
                doomed.push((abs.to_path_buf(), meta.len()));
            }
            Ok(())
        });
    }
    let bytes: u64 = doomed.iter().map(|d| d.1).sum();
    for (p, _) in &doomed {
        if force {
            std::fs::remove_file(p)
                .map_err(|e| Failure::Failed(format!("{}: {e}", p.display())))?;
        } else {
            println!("would remove {}", rel(&root, p));
        }
    }
    let work = cache.state.join("work");
    if force && work.exists() {
        let _ = std::fs::remove_dir_all(&work);
    }
    println!(
        "gc: {} {} files ({} bytes) no lock file references{}",
        if force { "removed" } else { "would remove" },
        doomed.len(),
        bytes,
        if force {
            ""
        } else {
            "; run `repro gc --force` to delete them"
        }
    );
    Ok(())
}

fn keep_of(cache: &Cache, rec: &Record, keep: &mut HashSet<(String, Storage)>) {
    for o in rec.outputs.values() {
        match o.kind {
            ArtifactKind::File => {
                keep.insert((o.digest.clone(), o.storage));
            }
            ArtifactKind::Dir => {
                keep.insert((o.digest.clone(), Storage::Light));
                if let Ok(m) = cache.read_manifest(&o.digest) {
                    keep.extend(m.entries.into_iter().map(|e| (e.digest, o.storage)));
                }
            }
        }
    }
}

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
