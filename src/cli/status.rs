//! `repro status` and `repro explain`.

use super::{Failure, Loaded, Outcome, PipelineArgs, load};
use crate::cache::lockfile::LockFile;
use crate::cache::short;
use crate::exec::freshness::{self, Check, Eval, Evaluator};
use crate::graph::key;
use crate::graph::{Dag, Input, Source};
use serde_json::{Value, json};
use std::io::Write;

/// cached / stale / missing / blocked, with a reason, for one node.
/// `blocked_by` lists the missing `file:` inputs the node needs (indices
/// into [`Dag::missing`]); `unmet` says why it cannot run here for want of
/// a credential ([`crate::exec::needs`]).
fn classify(
    e: &Eval,
    lock: &LockFile,
    i: usize,
    dag: &Dag,
    blocked_by: &[usize],
    unmet: Option<&str>,
) -> (&'static str, String) {
    let id = dag.nodes[i].id();
    match e {
        // Cached from the run the lock file names, though an input is absent.
        Eval::Hit { .. } if !blocked_by.is_empty() && !dag.nodes[i].op.is_report() => {
            let files: Vec<String> = blocked_by
                .iter()
                .map(|&m| format!("file:{}", dag.missing[m].written))
                .collect();
            (
                "cached",
                format!("from the last run; absent here: {}", files.join(", ")),
            )
        }
        Eval::Hit { .. } => ("cached", String::new()),
        // A report renders with missing inputs (`repro report`): not blocked.
        _ if !blocked_by.is_empty() && !dag.nodes[i].op.is_report() => {
            ("blocked", dag.missing_reason(blocked_by))
        }
        _ if unmet.is_some() && !dag.nodes[i].op.is_report() => {
            ("blocked", unmet.unwrap_or_default().to_string())
        }
        Eval::Miss { reason, .. } | Eval::Pending { reason } => (
            if lock.nodes.contains_key(id) {
                "stale"
            } else {
                "missing"
            },
            reason.clone(),
        ),
    }
}

/// Per node (by index): its state (cached / stale / missing / blocked) and
/// the reason, exactly as `repro status` prints them.
pub(super) fn states(l: &Loaded, lock: &LockFile, evals: &[Eval]) -> Vec<(&'static str, String)> {
    let blocked = l.dag.missing_inputs();
    let unmet = crate::exec::needs::unmet_here(&l.dag);
    let none: &[usize] = &[];
    (0..l.dag.nodes.len())
        .map(|i| {
            let b = blocked.as_ref().map_or(none, |b| b[i].as_slice());
            classify(&evals[i], lock, i, &l.dag, b, unmet[i].as_deref())
        })
        .collect()
}

/// The missing `file:` inputs of a pipeline as lines for the end of `repro
/// status`: the path, where it is asked for, and how many nodes wait for it.
fn missing_lines(dag: &Dag, blocked: &[Vec<usize>]) -> Vec<String> {
    let n_blocked = blocked.iter().filter(|b| !b.is_empty()).count();
    let mut lines = vec![format!(
        "missing inputs: {} file(s); {} node(s) cannot run until they exist:",
        dag.missing.len(),
        n_blocked
    )];
    for (m, f) in dag.missing.iter().enumerate() {
        let users = blocked.iter().filter(|b| b.contains(&m)).count();
        lines.push(format!("  {} needed by {users} node(s)", f.phrase()));
        lines.push(format!("      {}", f.origin()));
    }
    lines
}

/// The missing `file:` inputs as JSON, with the number of nodes each blocks.
pub(super) fn missing_json(dag: &Dag, blocked: &[Vec<usize>]) -> Value {
    Value::Array(
        dag.missing
            .iter()
            .enumerate()
            .map(|(m, f)| {
                json!({
                    "file": f.written,
                    "path": f.path,
                    "reason": f.phrase(),
                    "at": f.at,
                    "key": f.key,
                    "param": f.param,
                    "nodes": blocked.iter().filter(|b| b.contains(&m)).count(),
                })
            })
            .collect(),
    )
}

/// Evaluates every node as `repro report` and `repro verify` see report
/// nodes: an upstream that is not cached is a missing input of the report
/// (a dash), so a report rendered that way is "cached".
fn evaluate(l: &Loaded) -> Result<(LockFile, Vec<Eval>), Failure> {
    let lock = l.lock()?;
    let ev = Evaluator {
        missing_ok: true,
        ..l.evaluator(&lock, Check::Quick)
    };
    let evals = freshness::evaluate_all(&ev);
    l.cache.stat.save().ok();
    Ok((lock, evals))
}

/// Runs `repro status`.
pub fn status(p: &PipelineArgs, json_out: bool) -> Outcome {
    let l = load(p, None)?;
    let (lock, evals) = evaluate(&l)?;
    let blocked = l.dag.missing_inputs();
    let none: &[usize] = &[];
    let blocked_by = |i: usize| blocked.as_ref().map_or(none, |b| b[i].as_slice());
    let jobs = super::jobs::live_jobs(&l);
    let unmet = crate::exec::needs::unmet_here(&l.dag);
    let mut rows = Vec::with_capacity(l.dag.nodes.len());
    for &i in &l.dag.order {
        let id = l.dag.nodes[i].id();
        let (state, mut reason) = classify(
            &evals[i],
            &lock,
            i,
            &l.dag,
            blocked_by(i),
            unmet[i].as_deref(),
        );
        if let Some((job, st)) = evals[i]
            .key()
            .and_then(|k| jobs.get(k))
            .filter(|_| state != "cached")
        {
            reason = format!("slurm job {job} {st}; {reason}");
        }
        rows.push((id, state, evals[i].key(), reason, i));
    }
    let count = |s: &str| rows.iter().filter(|r| r.1 == s).count();
    // One write per buffer, not per line (stdout is line-buffered).
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = if json_out {
        let nodes: Vec<Value> = rows
            .iter()
            .map(|(id, s, k, r, i)| {
                let mut v = json!({"node": id, "status": s, "key": k, "reason": r});
                let b = blocked_by(*i);
                if !b.is_empty() {
                    v["missing_inputs"] =
                        b.iter().map(|&m| json!(l.dag.missing[m].written)).collect();
                }
                v
            })
            .collect();
        let missing_inputs = blocked
            .as_ref()
            .map_or(json!([]), |b| missing_json(&l.dag, b));
        let doc = json!({"pipeline": l.dag.pipeline.name, "cached": count("cached"), "stale": count("stale"), "missing": count("missing"), "blocked": count("blocked"), "missing_inputs": missing_inputs, "nodes": nodes});
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).min(48);
        rows.iter()
            .try_for_each(|(id, s, k, r, _)| {
                writeln!(
                    out,
                    "{s:<8} {id:<width$} {:<12} {r}",
                    k.map(short).unwrap_or("-")
                )
            })
            .and_then(|_| match &blocked {
                Some(b) => missing_lines(&l.dag, b)
                    .iter()
                    .try_for_each(|line| writeln!(out, "{line}")),
                None => Ok(()),
            })
            .and_then(|_| {
                let blocked = if count("blocked") > 0 {
                    format!(
                        ", {} blocked by missing inputs or credentials",
                        count("blocked")
                    )
                } else {
                    String::new()
                };
                writeln!(
                    out,
                    "pipeline {}: {} nodes: {} cached, {} stale, {} missing{blocked}",
                    l.dag.pipeline.name,
                    rows.len(),
                    count("cached"),
                    count("stale"),
                    count("missing")
                )
            })
    };
    written
        .and_then(|_| out.flush())
        .map_err(|e| Failure::Failed(format!("writing the status: {e}")))?;
    // The process exits next: freeing thousands of evaluations, lock entries
    // and memo entries one by one would only cost time.
    drop(out);
    std::mem::forget(rows);
    std::mem::forget((evals, lock, l));
    Ok(())
}

/// Runs `repro explain NODE`.
pub fn explain(p: &PipelineArgs, pattern: &str, json_out: bool) -> Outcome {
    let l = load(p, None)?;
    let sel = l.dag.select(pattern);
    if sel.is_empty() {
        return Err(Failure::Input(format!(
            "no node matches `{pattern}` (see `repro status`)"
        )));
    }
    let (lock, evals) = evaluate(&l)?;
    let ev = l.evaluator(&lock, Check::Quick);
    let mut out = Vec::new();
    for i in sel {
        out.push(explain_one(&l, &ev, &evals, i));
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(out)).unwrap_or_default()
        );
    } else {
        for o in &out {
            print_explain(o);
        }
    }
    Ok(())
}

fn explain_one(l: &Loaded, ev: &Evaluator, evals: &[Eval], i: usize) -> Value {
    let dag = &l.dag;
    let n = &dag.nodes[i];
    let key_params = n.key_params();
    let blocked = dag.missing_inputs();
    let none: &[usize] = &[];
    let blocked_by = |i: usize| blocked.as_ref().map_or(none, |b| b[i].as_slice());
    let unmet = crate::exec::needs::unmet_here(dag);
    let (state, reason) = classify(
        &evals[i],
        ev.lock,
        i,
        dag,
        blocked_by(i),
        unmet[i].as_deref(),
    );
    // Inputs: digest (or why unknown) and where from.
    let mut inputs = Vec::new();
    let describe = |s: &Source| -> (Value, String) {
        match s {
            Source::File { written, path } => (
                l.cache
                    .stat
                    .digest(path)
                    .map(|a| json!(a.digest))
                    .unwrap_or(Value::Null),
                if path.exists() {
                    format!("file:{written}")
                } else {
                    format!("file:{written} (does not exist)")
                },
            ),
            Source::Node { idx, output } => {
                let up = dag.nodes[*idx].id();
                let d = match &evals[*idx] {
                    Eval::Hit { outputs, .. } => {
                        outputs.get(output).map(|d| json!(d)).unwrap_or(Value::Null)
                    }
                    _ => Value::Null,
                };
                let (ust, ur) = classify(
                    &evals[*idx],
                    ev.lock,
                    *idx,
                    dag,
                    blocked_by(*idx),
                    unmet[*idx].as_deref(),
                );
                let tail = if ur.is_empty() {
                    String::new()
                } else {
                    format!(": {ur}")
                };
                (
                    d,
                    format!(
                        "upstream {up}{} ({ust}{tail})",
                        if output == "out" {
                            String::new()
                        } else {
                            format!(".{output}")
                        }
                    ),
                )
            }
        }
    };
    for (name, input) in &n.inputs {
        match input {
            Input::One(s) => {
                let (d, from) = describe(s);
                inputs.push(json!({"input": name, "digest": d, "from": from}));
            }
            Input::List(entries) => {
                for (e, s) in entries {
                    let (d, from) = describe(s);
                    inputs
                        .push(json!({"input": format!("{name}[{e}]"), "digest": d, "from": from}));
                }
            }
        }
    }
    // Changes against the last run recorded in the lock file.
    let last = ev.lock.nodes.get(n.id());
    let last_rec = last.and_then(|e| l.cache.read_record(&e.key).ok().flatten());
    let changes: Vec<Value> = match (&evals[i], &last_rec) {
        (Eval::Miss { preimage, .. }, Some(old)) => key::diff(&old.preimage, preimage)
            .iter()
            .map(|c| json!({"field": c.path, "old": c.old, "new": c.new, "text": freshness::describe_change(dag, i, c)}))
            .collect(),
        (Eval::Pending { .. }, Some(old)) => {
            // The key is unknown; compare what is known (op, version, params).
            let partial = key::preimage(n.op.name(), n.op.version(), &key_params, serde_json::Map::new());
            let mut oldp = old.preimage.clone();
            if let Some(o) = oldp.as_object_mut() {
                o.insert("inputs".into(), json!({}));
                o.remove("records");
            }
            key::diff(&oldp, &partial)
                .iter()
                .map(|c| json!({"field": c.path, "old": c.old, "new": c.new, "text": freshness::describe_change(dag, i, c)}))
                .collect()
        }
        _ => Vec::new(),
    };
    json!({
        "node": n.id(),
        "op": n.op.name(),
        "op_version": n.op.version(),
        "status": state,
        "reason": reason,
        "key": evals[i].key(),
        "params": key_params,
        "non_semantic_params": params_where(n, &key_params, false),
        "default_params": params_where(n, &key_params, true),
        "resources": n.resources,
        "inputs": inputs,
        "last_key": last.map(|e| e.key.clone()),
        "changes": changes,
    })
}

/// The node's written params left out of its key: those equal to their
/// default (`defaults = true`), or the non-semantic ones.
fn params_where(
    n: &crate::graph::DagNode,
    key_params: &serde_json::Map<String, Value>,
    defaults: bool,
) -> serde_json::Map<String, Value> {
    n.inst
        .params
        .iter()
        .filter(|(k, _)| !key_params.contains_key(*k))
        .filter(|(k, _)| {
            let semantic =
                n.op.params()
                    .iter()
                    .any(|s| s.name == k.as_str() && s.semantic);
            semantic == defaults
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn print_explain(o: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!(
        "{} ({} v{}): {}",
        s(&o["node"]),
        s(&o["op"]),
        o["op_version"],
        s(&o["status"])
    );
    match o["key"].as_str() {
        Some(k) => println!("  key      {k}"),
        None => println!(
            "  key      unknown until upstream runs ({})",
            s(&o["reason"])
        ),
    }
    println!("  key ingredients:");
    println!(
        "    op           {} (version {})",
        s(&o["op"]),
        o["op_version"]
    );
    if let Some(m) = o["params"].as_object() {
        for (k, v) in m {
            println!("    params.{k:<6} {}", one_line(v));
        }
    }
    for inp in o["inputs"].as_array().into_iter().flatten() {
        let d = inp["digest"].as_str().map(short).unwrap_or("(unknown)");
        println!(
            "    inputs.{:<6} {d}  <- {}",
            s(&inp["input"]),
            s(&inp["from"])
        );
    }
    if let Some(m) = o["non_semantic_params"].as_object()
        && !m.is_empty()
    {
        let names: Vec<&String> = m.keys().collect();
        println!("  not in the key: params {:?}, resources, tolerance", names);
    }
    if let Some(m) = o["default_params"].as_object()
        && !m.is_empty()
    {
        let names: Vec<&String> = m.keys().collect();
        println!("  written with their default value (so not in the key): params {names:?}");
    }
    match o["last_key"].as_str() {
        None => println!("  no earlier run of this node in the lock file"),
        Some(k) if Some(k) == o["key"].as_str() => {
            println!("  same key as the last run in the lock file")
        }
        Some(k) => {
            println!("  changed since the last run (key {}):", short(k));
            let changes = o["changes"].as_array().cloned().unwrap_or_default();
            if changes.is_empty() {
                println!(
                    "    (its own op and params are unchanged; {})",
                    s(&o["reason"])
                );
            }
            for c in changes {
                println!("    {}", s(&c["text"]));
            }
        }
    }
    if o["status"] == "cached" {
        return;
    }
    if !o["reason"].as_str().unwrap_or("").is_empty() {
        println!("  reason: {}", s(&o["reason"]));
    }
}

fn one_line(v: &Value) -> String {
    let t = v.to_string();
    if t.len() > 100 {
        format!(
            "{}...",
            &t[..t.char_indices().nth(97).map(|(i, _)| i).unwrap_or(t.len())]
        )
    } else {
        t
    }
}
