//! `repro verify`: the CI check. Recomputes every key from the current YAML
//! and code, requires a record for each, re-hashes every light object (and
//! heavy blobs that are present; absent ones are fine: a reviewer's clone
//! has none), checks each record's key against its own preimage, and checks
//! that the lock file is current. A compute node the lock file does not
//! name and that cannot run here because a `file:` input (model weights) or
//! a credential (the chat API) is missing is listed as "not run", not failed
//! (any never-run compute node with `--allow-not-run`); report nodes
//! are checked as `repro report` renders them (an upstream that is not cached
//! is a missing input, shown as a dash). `--rerun NODE` re-executes nodes and
//! compares their metrics with the cached ones within declared tolerances.

use super::{Failure, Outcome, PipelineArgs, load};
use crate::cache::short;
use crate::exec::freshness::{self, Check, Eval, Evaluator};
use crate::exec::node::{Job, run_node};
use crate::graph::Tolerance;
use crate::graph::key;
use crate::op::CancelToken;
use clap::Args;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Arguments of `repro verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    /// Re-execute these nodes and compare metrics within their `tolerance:`.
    #[arg(long = "rerun", value_name = "NODE")]
    pub rerun: Vec<String>,
    /// Accept any compute node that never ran (not in the lock file); they
    /// are listed. Without it only blocked nodes (a missing `file:` input or
    /// credential, with the reason) may be unrun.
    #[arg(long = "allow-not-run")]
    pub allow_not_run: bool,
}

/// Runs `repro verify`.
pub fn verify(a: VerifyArgs) -> Outcome {
    let l = &load(&a.p, None)?;
    if !a.rerun.is_empty() {
        return rerun(l, &a.rerun, a.json);
    }
    let _lock_guard = crate::exec::shared_cache_lock(&l.cache, true)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let lock = l.lock()?;
    // Report nodes are checked as `repro report` renders them: an upstream
    // that is not cached is a missing input (a dash in the table).
    let ev = Evaluator {
        missing_ok: true,
        ..l.evaluator(&lock, Check::Exists)
    };
    let evals = freshness::evaluate_all(&ev);
    l.cache.stat.save().ok();
    let blocked = l.dag.missing_inputs();
    let unmet = crate::exec::needs::unmet_here(&l.dag);
    let mut rows = Vec::new();
    for &i in &l.dag.order {
        let n = &l.dag.nodes[i];
        let id = n.id();
        let blocked_by = blocked.as_ref().map(|b| &b[i]).filter(|b| !b.is_empty());
        let why = |reason: &str| match (blocked_by, &unmet[i]) {
            (Some(b), _) => l.dag.missing_reason(b),
            (None, Some(u)) => u.clone(),
            (None, None) => reason.to_string(),
        };
        // A compute node that was never run here (the lock file does not
        // name it) and cannot run here (a missing `file:` input, a missing
        // credential) is not a claim to check: it is listed as blocked, not
        // failed. The lock file's entries and every report node must check out.
        let never_run = !lock.nodes.contains_key(id)
            && !n.op.is_report()
            && (blocked_by.is_some() || unmet[i].is_some() || a.allow_not_run);
        let (status, problem) = match &evals[i] {
            Eval::Miss { reason, .. } | Eval::Pending { reason } if never_run => {
                ("not-run", Some(why(reason)))
            }
            Eval::Miss { reason, .. } => (
                "fail",
                Some(format!("not cached for its current key: {}", why(reason))),
            ),
            Eval::Pending { reason } => ("fail", Some(format!("not cached: {}", why(reason)))),
            Eval::Hit { key, outputs } => {
                let p = check_hit(l, key, outputs, lock.nodes.get(id))
                    .or_else(|| check_report(l, &evals, i, key));
                (if p.is_some() { "fail" } else { "ok" }, p)
            }
        };
        let mut row = json!({"node": id, "key": evals[i].key(), "ok": status != "fail", "status": status, "reason": problem});
        if let Some(b) = blocked_by {
            row["missing_inputs"] = b.iter().map(|&m| json!(l.dag.missing[m].written)).collect();
        }
        rows.push(row);
    }
    let extra: Vec<&String> = lock
        .nodes
        .keys()
        .filter(|id| l.dag.index_of(id).is_none())
        .collect();
    let lock_problem = (!extra.is_empty()).then(|| {
        format!(
            "{} lists nodes the pipeline no longer has: {:?}; run `repro run` to rewrite it",
            l.lock_path.display(),
            extra
        )
    });
    let failures =
        rows.iter().filter(|r| r["ok"] == false).count() + usize::from(lock_problem.is_some());
    let not_run: Vec<&Value> = rows.iter().filter(|r| r["status"] == "not-run").collect();
    if a.json {
        let missing_inputs = blocked
            .as_ref()
            .map_or(json!([]), |b| super::status::missing_json(&l.dag, b));
        let out = json!({"pipeline": l.dag.pipeline.name, "ok": failures == 0, "checked": rows.len(), "failures": failures, "not_run": not_run.len(), "missing_inputs": missing_inputs, "lock": lock_problem, "nodes": rows});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    } else {
        for r in rows.iter().filter(|r| r["ok"] == false) {
            println!(
                "FAIL {}: {}",
                r["node"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or("")
            );
        }
        if let Some(p) = &lock_problem {
            println!("FAIL lock file: {p}");
        }
        if !not_run.is_empty() {
            let n_blocked = not_run
                .iter()
                .filter(|r| r.get("missing_inputs").is_some())
                .count();
            let n_unmet = not_run
                .iter()
                .filter(|r| {
                    r.get("missing_inputs").is_none()
                        && r["reason"]
                            .as_str()
                            .is_some_and(|x| x.starts_with("needs a credential"))
                })
                .count();
            let files: Vec<String> = l.dag.missing.iter().map(|m| m.phrase()).collect();
            println!(
                "note: {} node(s) never ran here and are not in {} (not checked){}; `repro status` lists them",
                not_run.len(),
                l.lock_path.display(),
                if n_blocked > 0 {
                    format!(
                        "; {n_blocked} of them need missing inputs: {}",
                        files.join(", ")
                    )
                } else {
                    String::new()
                }
            );
            if n_unmet > 0 {
                println!(
                    "note: {n_unmet} of them need a credential this machine lacks: {}",
                    crate::exec::needs::api_unmet(&|_| None)
                        .unwrap_or_default()
                        .trim_start_matches("needs a credential: ")
                );
            }
        }
        println!(
            "verify {}: {} nodes checked, {} ok, {} not run, {} failing",
            l.dag.pipeline.name,
            rows.len(),
            rows.iter().filter(|r| r["status"] == "ok").count(),
            not_run.len(),
            failures
        );
    }
    if failures > 0 {
        Err(Failure::Exit(1))
    } else {
        Ok(())
    }
}

fn check_hit(
    l: &super::Loaded,
    key: &str,
    outputs: &crate::cache::Digests,
    entry: Option<&crate::cache::lockfile::LockEntry>,
) -> Option<String> {
    let rec = match l.cache.read_record(key) {
        Ok(Some(r)) => r,
        Ok(None) => return Some(format!("record {} vanished", short(key))),
        Err(e) => return Some(format!("record unreadable: {e}")),
    };
    let recomputed = key::key_of(&rec.preimage);
    if recomputed != key {
        return Some(format!(
            "record {} was edited: its preimage hashes to {}",
            short(key),
            short(&recomputed)
        ));
    }
    for (name, o) in &rec.outputs {
        if let Err(e) = l.cache.check_output(o, true, false) {
            return Some(format!("output `{name}`: {e}"));
        }
    }
    let rec_outs: crate::cache::Digests = rec
        .outputs
        .iter()
        .map(|(k, o)| (k.clone(), o.digest.clone()))
        .collect();
    match entry {
        None => Some(format!(
            "missing from {}; run `repro run` to rewrite it",
            l.lock_path.display()
        )),
        Some(e) if e.key != key => Some(format!(
            "lock file names key {} but the current key is {}; run `repro run`",
            short(&e.key),
            short(key)
        )),
        Some(e) if e.outputs != rec_outs || &rec_outs != outputs => {
            Some("lock file output digests differ from the record".into())
        }
        Some(_) => None,
    }
}

fn rerun(l: &super::Loaded, names: &[String], json_out: bool) -> Outcome {
    let lock = l.lock()?;
    let evals = l.evaluate_all(&lock, Check::Quick);
    let token = CancelToken::default();
    crate::exec::cancel::install(&token);
    let mut all_ok = true;
    let mut report = Vec::new();
    for name in names {
        let sel = l.dag.select(name);
        if sel.is_empty() {
            return Err(Failure::Input(format!("no node matches `{name}`")));
        }
        for i in sel {
            let n = &l.dag.nodes[i];
            let Eval::Hit { key, .. } = &evals[i] else {
                return Err(Failure::Failed(format!(
                    "`{}` is not cached; run it first (`repro run --only '{}'`)",
                    n.id(),
                    n.id()
                )));
            };
            let cached = l
                .cache
                .read_record(key)?
                .ok_or_else(|| Failure::Failed(format!("record {key} vanished")))?;
            let fresh = rerun_uncached(l, evals.as_slice(), i, key, &cached.preimage, &token)
                .map_err(|e| Failure::Failed(format!("re-running `{}` failed: {e}", n.id())))?;
            let mut checks = Vec::new();
            let names: std::collections::BTreeSet<&String> =
                cached.metrics.keys().chain(fresh.metrics.keys()).collect();
            for m in names {
                let tol = n
                    .tolerance
                    .get(m.as_str())
                    .or_else(|| n.tolerance.get("default"))
                    .copied()
                    .unwrap_or(Tolerance::EXACT);
                let (old, new) = (
                    cached.metrics.get(m.as_str()),
                    fresh.metrics.get(m.as_str()),
                );
                let ok = match (old.and_then(Value::as_f64), new.and_then(Value::as_f64)) {
                    (Some(a), Some(b)) => tol.accepts(a, b),
                    _ => old == new,
                };
                all_ok &= ok;
                checks.push(json!({"metric": m, "cached": old, "rerun": new, "abs_tol": tol.abs, "rel_tol": tol.rel, "ok": ok}));
            }
            let mut outputs = Vec::new();
            for (o, rec) in &cached.outputs {
                let same = fresh
                    .outputs
                    .get(o)
                    .map(|f| f.digest == rec.digest)
                    .unwrap_or(false);
                outputs.push(json!({"output": o, "identical": same}));
            }
            if checks.is_empty() {
                // No metrics declared: the outputs themselves must be identical.
                let same = outputs.iter().all(|o| o["identical"] == true);
                all_ok &= same;
            }
            report.push(json!({"node": n.id(), "metrics": checks, "outputs": outputs}));
        }
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"ok": all_ok, "reruns": report}))
                .unwrap_or_default()
        );
    } else {
        for r in &report {
            println!("{}", r["node"].as_str().unwrap_or(""));
            for c in r["metrics"].as_array().into_iter().flatten() {
                println!(
                    "  {:<4} {:<24} cached {:<14} rerun {:<14} tolerance abs {} rel {}",
                    if c["ok"] == true { "PASS" } else { "FAIL" },
                    c["metric"].as_str().unwrap_or(""),
                    c["cached"].to_string(),
                    c["rerun"].to_string(),
                    c["abs_tol"],
                    c["rel_tol"]
                );
            }
            for o in r["outputs"].as_array().into_iter().flatten() {
                println!(
                    "  {:<4} output {} {}",
                    if o["identical"] == true {
                        "same"
                    } else {
                        "diff"
                    },
                    o["output"].as_str().unwrap_or(""),
                    if o["identical"] == true {
                        "byte-identical"
                    } else {
                        "differs from the cached bytes"
                    }
                );
            }
        }
        println!(
            "verify --rerun: {}",
            if all_ok {
                "all within tolerance"
            } else {
                "FAILED"
            }
        );
    }
    if all_ok {
        Ok(())
    } else {
        Err(Failure::Exit(1))
    }
}

/// For report nodes: re-render from the cached inputs and compare bytes with
/// the cached outputs, check the exported files, and fail on gated
/// comparisons outside tolerance.
fn check_report(l: &super::Loaded, evals: &[Eval], i: usize, key: &str) -> Option<String> {
    let n = &l.dag.nodes[i];
    if !n.op.is_report() {
        return None;
    }
    let cached = match l.cache.read_record(key) {
        Ok(Some(r)) => r,
        _ => return Some("record vanished".into()),
    };
    let fresh = match rerun_uncached(l, evals, i, key, &cached.preimage, &CancelToken::default()) {
        Ok(r) => r,
        Err(e) => return Some(format!("re-rendering failed: {e}")),
    };
    for (name, o) in &cached.outputs {
        if fresh.outputs.get(name).map(|f| &f.digest) != Some(&o.digest) {
            return Some(format!(
                "output `{name}` no longer renders the same from its cached inputs (template or renderer changed without a version bump?)"
            ));
        }
    }
    if let Err(m) = crate::exec::export::check(&l.cache, &l.dag, i, key) {
        return Some(m);
    }
    match cached.metrics.get("gates_failed").and_then(Value::as_u64) {
        Some(f) if f > 0 => Some(format!(
            "{f} published-vs-reproduced comparison(s) outside tolerance"
        )),
        _ => None,
    }
}

/// Re-executes a cached node from its cached inputs without touching the
/// cache (outputs are hashed, not stored) and returns the fresh record.
fn rerun_uncached(
    l: &super::Loaded,
    evals: &[Eval],
    i: usize,
    key: &str,
    preimage: &Value,
    token: &CancelToken,
) -> Result<crate::cache::record::Record, crate::exec::node::NodeError> {
    // Only cached upstream feed the node (a report sees the others as missing).
    let upstream_keys: BTreeMap<usize, String> = l.dag.nodes[i]
        .upstream
        .iter()
        .filter_map(|u| match &evals[*u] {
            Eval::Hit { key, .. } => Some((*u, key.clone())),
            _ => None,
        })
        .collect();
    let job = Job {
        idx: i,
        key,
        preimage,
        upstream_keys: &upstream_keys,
        env: &[],
        device: "cpu".into(),
        threads: 1,
        status: &|_| {},
        executor: &crate::exec::executor::local::Local::new(&l.cache.state),
    };
    run_node(&l.cache, &l.dag, &job, token, false)
}
