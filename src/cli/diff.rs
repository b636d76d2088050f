//! `repro diff [REV]`: which nodes' keys differ between the lock file at a
//! git revision and the working tree, and why, field by field (the diff of
//! `repro explain`, over the whole pipeline): "what does this change do to
//! our results?"

use super::gitrev::GitRev;
use super::{Failure, Loaded, Outcome, PipelineArgs, load};
use crate::cache::lockfile::LockFile;
use crate::cache::record::Record;
use crate::cache::short;
use crate::exec::freshness::{self, Check, Eval, Evaluator};
use crate::graph::key::{self, FieldChange};
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Arguments of `repro diff`.
#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The git revision to compare with.
    #[arg(value_name = "REV", default_value = "HEAD")]
    pub rev: String,
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// List unchanged nodes too.
    #[arg(long)]
    pub all: bool,
}

/// One node's verdict.
struct NodeDiff {
    id: String,
    /// `changed`, `added`, `removed`, `unchanged`.
    status: &'static str,
    old_key: Option<String>,
    new_key: Option<String>,
    /// Field-level changes with their one-line text.
    changes: Vec<(FieldChange, String)>,
    /// Why the new key is unknown, or the old record could not be read.
    note: String,
}

/// Runs `repro diff`.
pub fn diff(a: DiffArgs) -> Outcome {
    let l = load(&a.p, None)?;
    let rev = GitRev::open(&l.dag.root, &a.rev)?;
    let lock_rel = l
        .lock_path
        .strip_prefix(&l.dag.root)
        .unwrap_or(&l.lock_path)
        .to_string_lossy()
        .to_string();
    let old_lock: LockFile = match rev.read(&lock_rel)? {
        Some(b) => serde_json::from_slice(&b).map_err(|e| {
            Failure::Failed(format!(
                "{lock_rel} at {}: not a valid lock file: {e}",
                a.rev
            ))
        })?,
        None => LockFile::default(),
    };
    let lock = l.lock()?;
    let ev = Evaluator {
        missing_ok: true,
        ..l.evaluator(&lock, Check::Exists)
    };
    let evals = freshness::evaluate_all(&ev);
    l.cache.stat.save().ok();
    let old_records = records_at(&l, &rev, &old_lock)?;
    let mut rows = Vec::new();
    // Pipeline order (as written and expanded), then what was removed.
    for i in 0..l.dag.nodes.len() {
        rows.push(node_diff(&l, &evals, i, &old_lock, &old_records));
    }
    for (id, e) in &old_lock.nodes {
        if l.dag.index_of(id).is_none() {
            rows.push(NodeDiff {
                id: id.clone(),
                status: "removed",
                old_key: Some(e.key.clone()),
                new_key: None,
                changes: Vec::new(),
                note: String::new(),
            });
        }
    }
    print_diff(&l, &rev, &rows, a.json, a.all);
    Ok(())
}

/// The records of an old lock file: the local cache first, then git.
fn records_at(
    l: &Loaded,
    rev: &GitRev,
    lock: &LockFile,
) -> Result<BTreeMap<String, Record>, Failure> {
    let mut out = BTreeMap::new();
    let mut absent = Vec::new();
    for e in lock.nodes.values() {
        match l.cache.read_record(&e.key).ok().flatten() {
            Some(r) => {
                out.insert(e.key.clone(), r);
            }
            None => absent.push(e.key.clone()),
        }
    }
    let paths: Vec<String> = absent
        .iter()
        .map(|k| format!("cache/records/{k}.json"))
        .collect();
    for (k, bytes) in absent.iter().zip(rev.read_many(&paths)?) {
        if let Some(r) = bytes.and_then(|b| serde_json::from_slice::<Record>(&b).ok()) {
            out.insert(k.clone(), r);
        }
    }
    Ok(out)
}

/// The current preimage of a node: from the evaluation (a miss), its
/// record (a hit), or only op, version and params (key unknown).
fn preimage_now(l: &Loaded, e: &Eval, i: usize) -> (Option<Value>, bool) {
    match e {
        Eval::Miss { preimage, .. } => (Some(preimage.clone()), true),
        Eval::Hit { key, .. } => (
            l.cache.read_record(key).ok().flatten().map(|r| r.preimage),
            true,
        ),
        Eval::Pending { .. } => {
            let n = &l.dag.nodes[i];
            (
                Some(key::preimage(
                    n.op.name(),
                    n.op.version(),
                    &n.key_params(),
                    serde_json::Map::new(),
                )),
                false,
            )
        }
    }
}

fn node_diff(
    l: &Loaded,
    evals: &[Eval],
    i: usize,
    old_lock: &LockFile,
    old_records: &BTreeMap<String, Record>,
) -> NodeDiff {
    let id = l.dag.nodes[i].id().to_string();
    let new_key = evals[i].key().map(str::to_string);
    let Some(old) = old_lock.nodes.get(&id) else {
        return NodeDiff {
            id,
            status: "added",
            old_key: None,
            new_key,
            changes: Vec::new(),
            note: String::new(),
        };
    };
    if new_key.as_deref() == Some(old.key.as_str()) {
        return NodeDiff {
            id,
            status: "unchanged",
            old_key: Some(old.key.clone()),
            new_key,
            changes: Vec::new(),
            note: String::new(),
        };
    }
    let (now, complete) = preimage_now(l, &evals[i], i);
    let mut note = match &evals[i] {
        Eval::Pending { reason } => format!("new key unknown until upstream runs ({reason})"),
        _ => String::new(),
    };
    let changes = match (old_records.get(&old.key), now) {
        (Some(rec), Some(now)) => {
            let mut then = rec.preimage.clone();
            if !complete {
                // Only op, version and params are known now: compare those.
                if let Some(o) = then.as_object_mut() {
                    o.insert("inputs".into(), json!({}));
                    o.remove("records");
                }
            }
            key::diff(&then, &now)
                .into_iter()
                .map(|c| {
                    let text = change_text(l, i, &c);
                    (c, text)
                })
                .collect()
        }
        (None, _) => {
            note = format!(
                "no record of the old key {} here or in git: fields unknown",
                short(&old.key)
            );
            Vec::new()
        }
        (_, None) => Vec::new(),
    };
    if complete && changes.is_empty() && note.is_empty() {
        note = "same ingredients, different key (a key format change)".into();
    }
    if !complete && changes.is_empty() && note.is_empty() {
        note = "upstream changed".into();
    }
    NodeDiff {
        id,
        status: "changed",
        old_key: Some(old.key.clone()),
        new_key,
        changes,
        note,
    }
}

/// One change as a line, as `repro explain` words it; a long string (a
/// shell command, a template) shows the stretch around its first
/// difference instead of its cut-off start.
fn change_text(l: &Loaded, i: usize, c: &FieldChange) -> String {
    let (Some(Value::String(a)), Some(Value::String(b))) = (&c.old, &c.new) else {
        return freshness::describe_change(&l.dag, i, c);
    };
    let digest = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    if (a.chars().count() <= 60 && b.chars().count() <= 60)
        || c.path.starts_with("inputs.")
        || (digest(a) && digest(b))
    {
        return freshness::describe_change(&l.dag, i, c);
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let start = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let end = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
        .min(a.len().min(b.len()) - start);
    let snippet = |s: &[char]| {
        let from = start.saturating_sub(20);
        let to = (s.len() - end + 20).min(s.len());
        let body: String = s[from..to].iter().collect();
        format!(
            "{}{}{}",
            if from > 0 { "..." } else { "" },
            serde_json::to_string(&body)
                .unwrap_or_default()
                .trim_matches('"'),
            if to < s.len() { "..." } else { "" }
        )
    };
    format!(
        "{}: \"{}\" -> \"{}\" (from character {})",
        c.path,
        snippet(&a),
        snippet(&b),
        start + 1
    )
}

fn print_diff(l: &Loaded, rev: &GitRev, rows: &[NodeDiff], json_out: bool, all: bool) {
    let count = |s: &str| rows.iter().filter(|r| r.status == s).count();
    // Aggregated: how many nodes each field change touches.
    let mut by_field: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        for (c, _) in &r.changes {
            let field = if c.path.starts_with("inputs.") {
                format!(
                    "inputs.{}",
                    c.path["inputs.".len()..].split('.').next().unwrap_or("")
                )
            } else {
                c.path.clone()
            };
            *by_field.entry(field).or_default() += 1;
        }
    }
    if json_out {
        let nodes: Vec<Value> = rows
            .iter()
            .filter(|r| all || r.status != "unchanged")
            .map(|r| {
                json!({
                    "node": r.id,
                    "status": r.status,
                    "old_key": r.old_key,
                    "new_key": r.new_key,
                    "changes": r.changes.iter().map(|(c, t)| json!({"field": c.path, "old": c.old, "new": c.new, "text": t})).collect::<Vec<_>>(),
                    "note": r.note,
                })
            })
            .collect();
        let doc = json!({
            "pipeline": l.dag.pipeline.name,
            "old": {"rev": rev.name, "commit": rev.commit},
            "changed": count("changed"),
            "added": count("added"),
            "removed": count("removed"),
            "unchanged": count("unchanged"),
            "fields": by_field,
            "nodes": nodes,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    let width = rows.iter().map(|r| r.id.len()).max().unwrap_or(0).min(56);
    let k = |k: &Option<String>| k.as_deref().map(short).unwrap_or("-").to_string();
    for r in rows.iter().filter(|r| all || r.status != "unchanged") {
        let keys = match r.status {
            "added" => k(&r.new_key),
            "removed" => k(&r.old_key),
            _ => format!(
                "{} -> {}",
                k(&r.old_key),
                r.new_key.as_deref().map(short).unwrap_or("?")
            ),
        };
        println!("{:<9} {:<width$}  {keys}", r.status, r.id);
        for (_, t) in &r.changes {
            println!("    {t}");
        }
        if !r.note.is_empty() {
            println!("    ({})", r.note);
        }
    }
    if !by_field.is_empty() {
        let parts: Vec<String> = by_field.iter().map(|(f, n)| format!("{f} ({n})")).collect();
        println!("fields changed: {}", parts.join(", "));
    }
    println!(
        "diff {} ({}) -> working tree, pipeline {}: {} changed, {} added, {} removed, {} unchanged",
        rev.name,
        rev.short(),
        l.dag.pipeline.name,
        count("changed"),
        count("added"),
        count("removed"),
        count("unchanged")
    );
}
