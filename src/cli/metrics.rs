//! `repro metrics`: the metrics of every instance as a table (matrix
//! coordinates and metrics as columns, one row per instance, dashes with
//! the reason for instances that are not computed), `--diff [REV]` against
//! the lock file and records at a git revision, and `--lm-eval DIR` to
//! export evaluation metrics as lm-evaluation-harness results files.
//!
//! The rows are gathered here; filtering, sorting, diffing and formatting
//! live in [`crate::report::metrics`].

use super::gitrev::GitRev;
use super::{Failure, Loaded, Outcome, PipelineArgs, load};
use crate::cache::lockfile::LockFile;
use crate::cache::record::Record;
use crate::eval::lm_eval;
use crate::exec::freshness::{Check, Eval, Evaluator};
use crate::report::metrics::{self as table, Format, Gate, Row, SortKey};
use clap::Args;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Arguments of `repro metrics`.
#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// Nodes, instance ids or selectors (`qa`, `qa[size=l,*]`); default:
    /// every node that reports metrics (report nodes excepted).
    #[arg(value_name = "NODE")]
    pub nodes: Vec<String>,
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Metric columns, comma-separated (`-m em,em_ci_low`); default: all.
    #[arg(
        short = 'm',
        long = "metrics",
        value_name = "METRIC",
        value_delimiter = ','
    )]
    pub metrics: Vec<String>,
    /// Sort rows by columns (`em`, `em:desc`, `size`), comma-separated; ties keep pipeline order.
    #[arg(long, value_name = "COLUMN", value_delimiter = ',')]
    pub sort: Vec<String>,
    /// JSON output.
    #[arg(long, conflicts_with_all = ["csv", "md"])]
    pub json: bool,
    /// CSV output (full precision).
    #[arg(long, conflicts_with = "md")]
    pub csv: bool,
    /// Markdown output.
    #[arg(long)]
    pub md: bool,
    /// Decimals shown in text and Markdown (JSON and CSV keep full precision).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub precision: usize,
    /// Compare with the lock file and records at a git revision (default HEAD):
    /// old, new and change per metric, and added and removed instances.
    #[arg(long, value_name = "REV", num_args = 0..=1, default_missing_value = "HEAD")]
    pub diff: Option<String>,
    /// With --diff: list every metric, not only those that changed.
    #[arg(long, requires = "diff")]
    pub all: bool,
    /// With --diff: exit 1 when a gated metric (one the node's `tolerance:`
    /// covers) moved beyond its tolerance.
    #[arg(long, requires = "diff")]
    pub check: bool,
    /// Write the evaluation metrics as lm-evaluation-harness results files,
    /// one per model (coordinates without `from`), under DIR.
    #[arg(long = "lm-eval", value_name = "DIR", conflicts_with = "diff")]
    pub lm_eval: Option<PathBuf>,
}

impl MetricsArgs {
    fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.csv {
            Format::Csv
        } else if self.md {
            Format::Markdown
        } else {
            Format::Text
        }
    }
}

/// The node name of an instance id (`qa[size=l]` -> `qa`).
fn node_of(id: &str) -> &str {
    id.split('[').next().unwrap_or(id)
}

/// The coordinates of an instance id (`qa[size=l,data=x]`).
fn coords_of(id: &str) -> Vec<(String, String)> {
    id.split_once('[')
        .map(|(_, rest)| rest.trim_end_matches(']'))
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Whether an instance id that is no longer in the pipeline matches a
/// selector (`qa`, `qa[size=l,*]`, an instance id).
fn matches(id: &str, pattern: &str) -> bool {
    if id == pattern {
        return true;
    }
    match crate::spec::refs::parse(pattern) {
        Ok(crate::spec::refs::Ref::Node(r)) => {
            let coords = coords_of(id);
            r.node == node_of(id)
                && r.filters
                    .iter()
                    .all(|(k, v)| coords.iter().any(|(ck, cv)| ck == k && cv == v))
        }
        _ => false,
    }
}

/// The instances the arguments select, in pipeline order; every selector
/// must match something.
fn select(l: &Loaded, nodes: &[String]) -> Result<Vec<usize>, Failure> {
    if nodes.is_empty() {
        return Ok((0..l.dag.nodes.len())
            .filter(|&i| !l.dag.nodes[i].op.is_report())
            .collect());
    }
    let mut set = BTreeSet::new();
    for pat in nodes {
        let sel = l.dag.select(pat);
        if sel.is_empty() {
            return Err(Failure::Input(format!(
                "no node matches `{pat}` (see `repro status`)"
            )));
        }
        set.extend(sel);
    }
    Ok(set.into_iter().collect())
}

/// Evaluates the pipeline as `repro status` does.
fn evaluate(l: &Loaded) -> Result<(LockFile, Vec<Eval>), Failure> {
    let lock = l.lock()?;
    let ev = Evaluator {
        missing_ok: true,
        ..l.evaluator(&lock, Check::Exists)
    };
    let evals = crate::exec::freshness::evaluate_all(&ev);
    l.cache.stat.save().ok();
    Ok((lock, evals))
}

/// The current row of each selected instance, with its record when cached.
fn current_rows(
    l: &Loaded,
    lock: &LockFile,
    evals: &[Eval],
    selected: &[usize],
) -> Vec<(Row, Option<Record>)> {
    let states = super::status::states(l, lock, evals);
    selected
        .iter()
        .map(|&i| {
            let n = &l.dag.nodes[i];
            let rec = match &evals[i] {
                Eval::Hit { key, .. } => l.cache.read_record(key),
                _ => Ok(None),
            };
            let metrics = match (&rec, &states[i]) {
                (Ok(Some(r)), _) => Ok(r.metrics.clone()),
                (Err(e), _) => Err(format!("record unreadable: {e}")),
                (Ok(None), (state, reason)) if reason.is_empty() => Err(state.to_string()),
                (Ok(None), (state, reason)) => Err(format!("{state}: {reason}")),
            };
            // The metric names of the last run, for a row without a record.
            let last = match &metrics {
                Ok(_) => Vec::new(),
                Err(_) => lock
                    .nodes
                    .get(n.id())
                    .and_then(|e| l.cache.read_record(&e.key).ok().flatten())
                    .map(|r| r.metrics.keys().cloned().collect())
                    .unwrap_or_default(),
            };
            let row = Row {
                id: n.id().to_string(),
                node: l.dag.pipeline.node_ids[n.inst.node].clone(),
                coords: n
                    .inst
                    .coords
                    .iter()
                    .map(|(k, c)| (k.clone(), c.text.clone()))
                    .collect(),
                metrics,
                last,
            };
            (row, rec.ok().flatten())
        })
        .collect()
}

/// Drops nodes none of whose instances has metrics (data and prompt nodes),
/// unless the node was named or has instances that are not computed.
fn with_metrics(rows: Vec<Row>, named: bool) -> Vec<Row> {
    if named {
        return rows;
    }
    let keep: BTreeSet<String> = rows
        .iter()
        .filter(|r| r.metrics.as_ref().map_or(true, |m| !m.is_empty()))
        .map(|r| r.node.clone())
        .collect();
    rows.into_iter()
        .filter(|r| keep.contains(&r.node))
        .collect()
}

/// With `-m`: only the nodes that have one of the chosen metrics.
fn having(rows: Vec<Row>, chosen: &[String]) -> Vec<Row> {
    if chosen.is_empty() {
        return rows;
    }
    let keep: BTreeSet<String> = rows
        .iter()
        .filter(|r| {
            r.metrics
                .as_ref()
                .is_ok_and(|m| chosen.iter().any(|c| m.contains_key(c)))
        })
        .map(|r| r.node.clone())
        .collect();
    rows.into_iter()
        .filter(|r| keep.contains(&r.node))
        .collect()
}

/// Runs `repro metrics`.
pub fn metrics(a: MetricsArgs) -> Outcome {
    let sort: Vec<SortKey> = a
        .sort
        .iter()
        .map(|s| SortKey::parse(s))
        .collect::<Result<_, _>>()
        .map_err(Failure::Input)?;
    let l = load(&a.p, None)?;
    let selected = select(&l, &a.nodes)?;
    let (lock, evals) = evaluate(&l)?;
    let current = current_rows(&l, &lock, &evals, &selected);
    if let Some(dir) = &a.lm_eval {
        return export_lm_eval(&l, &current, dir, !a.nodes.is_empty());
    }
    let rows = with_metrics(
        current.into_iter().map(|(r, _)| r).collect(),
        !a.nodes.is_empty(),
    );
    if let Some(rev) = &a.diff {
        return diff(&l, &a, rev, rows);
    }
    let chosen = table::choose_metrics(&rows, &a.metrics).map_err(Failure::Input)?;
    let rows = having(rows, &a.metrics);
    let format = a.format();
    // Text and Markdown: one table per node (their metrics differ); JSON, CSV
    // and an explicit -m: one table.
    let groups: Vec<Vec<Row>> =
        if matches!(format, Format::Text | Format::Markdown) && a.metrics.is_empty() {
            let mut order: Vec<String> = Vec::new();
            let mut by: BTreeMap<String, Vec<Row>> = BTreeMap::new();
            for r in rows {
                if !by.contains_key(&r.node) {
                    order.push(r.node.clone());
                }
                by.entry(r.node.clone()).or_default().push(r);
            }
            order.iter().filter_map(|n| by.remove(n)).collect()
        } else {
            vec![rows]
        };
    let tables: Vec<table::Table> = groups
        .iter()
        .map(|rows| {
            let cols = if a.metrics.is_empty() {
                table::metric_names(rows)
            } else {
                chosen.clone()
            };
            table::table(rows, &cols)
        })
        .collect();
    // A sort column must exist in some table; tables without it keep their order.
    for k in &sort {
        if !tables.is_empty() && !tables.iter().any(|t| t.columns.contains(&k.column)) {
            let mut all: Vec<&String> = tables.iter().flat_map(|t| &t.columns).collect();
            all.sort();
            all.dedup();
            let all: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
            return Err(Failure::Input(format!(
                "--sort {}: no such column (columns: {})",
                k.column,
                all.join(", ")
            )));
        }
    }
    let mut out = String::new();
    for (g, (rows, mut t)) in groups.iter().zip(tables).enumerate() {
        let keys: Vec<SortKey> = sort
            .iter()
            .filter(|k| t.columns.contains(&k.column))
            .cloned()
            .collect();
        table::sort(&mut t, &keys).map_err(Failure::Input)?;
        if g > 0 {
            out.push('\n');
        }
        if format == Format::Markdown && groups.len() > 1 {
            out.push_str(&format!("### {}\n\n", rows[0].node));
        }
        out.push_str(&table::render(&t, format, a.precision));
    }
    if groups.iter().all(|g| g.is_empty()) && format == Format::Text {
        out = format!("pipeline {}: no metrics\n", l.dag.pipeline.name);
    }
    print!("{out}");
    Ok(())
}

/// The rows of the lock file at a revision, with their records' metrics
/// (the local cache first, then git; a record missing at both is a dash).
fn rows_at(
    l: &Loaded,
    rev: &GitRev,
    keep: &dyn Fn(&str, Option<&Record>) -> bool,
) -> Result<Vec<Row>, Failure> {
    let root = &l.dag.root;
    let lock_rel = l
        .lock_path
        .strip_prefix(root)
        .unwrap_or(&l.lock_path)
        .to_string_lossy()
        .to_string();
    let Some(bytes) = rev.read(&lock_rel)? else {
        // No lock file at that revision: every instance is added.
        return Ok(Vec::new());
    };
    let lock: LockFile = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::Failed(format!(
            "{lock_rel} at {}: not a valid lock file: {e}",
            rev.name
        ))
    })?;
    let mut records: Vec<Option<Record>> = lock
        .nodes
        .values()
        .map(|e| l.cache.read_record(&e.key).ok().flatten())
        .collect();
    let absent: Vec<usize> = (0..records.len())
        .filter(|&i| records[i].is_none())
        .collect();
    let paths: Vec<String> = absent
        .iter()
        .filter_map(|&i| lock.nodes.values().nth(i))
        .map(|e| format!("cache/records/{}.json", e.key))
        .collect();
    for (&i, bytes) in absent.iter().zip(rev.read_many(&paths)?) {
        records[i] = bytes.and_then(|b| serde_json::from_slice(&b).ok());
    }
    Ok(lock
        .nodes
        .keys()
        .zip(records)
        .filter(|(id, rec)| keep(id, rec.as_ref()))
        .map(|(id, rec)| Row {
            id: id.clone(),
            node: node_of(id).to_string(),
            coords: coords_of(id),
            metrics: rec
                .map(|r| r.metrics)
                .ok_or_else(|| format!("no record at {}", rev.name)),
            last: Vec::new(),
        })
        .collect())
}

/// The tolerance of a node's metric (`tolerance:` names it, or `default:`).
fn gate(l: &Loaded, id: &str, metric: &str) -> Option<Gate> {
    let n = &l.dag.nodes[l.dag.index_of(id)?];
    n.tolerance
        .get(metric)
        .or_else(|| n.tolerance.get("default"))
        .map(|t| Gate {
            abs: t.abs,
            rel: t.rel,
        })
}

/// `repro metrics --diff REV`.
fn diff(l: &Loaded, a: &MetricsArgs, rev: &str, new: Vec<Row>) -> Outcome {
    let rev = GitRev::open(&l.dag.root, rev)?;
    let new_ids: BTreeSet<&str> = new.iter().map(|r| r.id.as_str()).collect();
    let keep = |id: &str, rec: Option<&Record>| -> bool {
        if new_ids.contains(id) {
            return true;
        }
        match l.dag.index_of(id) {
            // Still in the pipeline but not selected (or a report node).
            Some(_) => false,
            // Removed since: kept when its node is named, or no node is.
            None => {
                let is_report = rec.is_some_and(|r| {
                    crate::ops::find(r.preimage["op"].as_str().unwrap_or(""))
                        .is_some_and(|op| op.is_report())
                });
                (a.nodes.is_empty() && !is_report) || a.nodes.iter().any(|p| matches(id, p))
            }
        }
    };
    let old = rows_at(l, &rev, &keep)?;
    let both: Vec<Row> = old.iter().chain(&new).cloned().collect();
    let chosen = table::choose_metrics(&both, &a.metrics).map_err(Failure::Input)?;
    let chosen = if a.metrics.is_empty() {
        Vec::new()
    } else {
        chosen
    };
    let lines = table::diff(&old, &new, &chosen, &|id, m| gate(l, id, m));
    let failed: Vec<&table::DiffLine> = lines.iter().filter(|x| x.within == Some(false)).collect();
    let shown: Vec<table::DiffLine> = lines
        .iter()
        .filter(|x| a.all || table::is_change(x))
        .cloned()
        .collect();
    let added = new
        .iter()
        .filter(|r| !old.iter().any(|o| o.id == r.id))
        .count();
    let removed = old
        .iter()
        .filter(|o| !new_ids.contains(o.id.as_str()))
        .count();
    let changed: BTreeSet<&str> = lines
        .iter()
        .filter(|x| x.change == "kept" && x.old != x.new)
        .map(|x| x.id.as_str())
        .collect();
    let old_name = format!("{} ({})", rev.name, rev.short());
    let format = a.format();
    if format == Format::Json {
        let mut doc: Value = serde_json::from_str(&table::render_diff(
            &shown,
            &old_name,
            "workspace",
            format,
            a.precision,
        ))
        .unwrap_or(Value::Null);
        doc = json!({
            "pipeline": l.dag.pipeline.name,
            "old": {"rev": rev.name, "commit": rev.commit},
            "new": "workspace",
            "instances": {"changed": changed.len(), "added": added, "removed": removed},
            "gated_failures": failed.len(),
            "ok": failed.is_empty(),
            "lines": doc,
        });
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        if shown.is_empty() {
            println!("no metric changed since {old_name}");
        } else {
            print!(
                "{}",
                table::render_diff(&shown, &old_name, "workspace", format, a.precision)
            );
        }
        if format == Format::Text {
            println!(
                "metrics diff {old_name} -> workspace: {} instance(s) changed, {added} added, {removed} removed{}",
                changed.len(),
                if failed.is_empty() {
                    String::new()
                } else {
                    format!("; {} gated metric(s) beyond tolerance", failed.len())
                }
            );
        }
    }
    if a.check && !failed.is_empty() {
        for f in &failed {
            eprintln!(
                "FAIL {} {}: {} -> {} is beyond its tolerance",
                f.id,
                f.metric,
                f.old.as_ref().map_or("-".into(), |v| v.to_string()),
                f.new.as_ref().map_or("-".into(), |v| v.to_string())
            );
        }
        return Err(Failure::Exit(1));
    }
    Ok(())
}

/// Whether an op is an evaluation op (its metrics are lm-eval tasks).
fn is_evaluation(op: &str) -> bool {
    op.starts_with("eval.") || op.starts_with("rate.")
}

/// `repro metrics --lm-eval DIR`: one results file per model, a model being
/// the coordinates without `from` (the upstream a `for_each` came from), a
/// task the node name.
fn export_lm_eval(
    l: &Loaded,
    rows: &[(Row, Option<Record>)],
    dir: &std::path::Path,
    named: bool,
) -> Outcome {
    let mut models: BTreeMap<String, lm_eval::Model> = BTreeMap::new();
    let mut latest: BTreeMap<String, String> = BTreeMap::new();
    for (row, rec) in rows {
        let Some(rec) = rec else { continue };
        let op = rec.preimage["op"].as_str().unwrap_or("");
        if !(named || is_evaluation(op)) || !rec.metrics.values().any(Value::is_number) {
            continue;
        }
        let (model_coords, own) = split_coords(l, row);
        let args = model_coords.join(",");
        let name = if args.is_empty() {
            l.dag.pipeline.name.clone()
        } else {
            format!("{}/{args}", l.dag.pipeline.name)
        };
        let m = models
            .entry(name.clone())
            .or_insert_with(|| lm_eval::Model {
                name: name.clone(),
                args: args.clone(),
                device: rec.provenance.device.clone(),
                git_hash: rec.provenance.git_rev.clone(),
                date: f64::MAX,
                seconds: 0.0,
                tasks: Vec::new(),
            });
        m.date = m.date.min(unix_time(&rec.provenance.started));
        m.seconds += rec.provenance.duration_s;
        let newest = latest.entry(name).or_default();
        if rec.provenance.started > *newest {
            *newest = rec.provenance.started.clone();
            m.git_hash = rec.provenance.git_rev.clone();
        }
        let mut task = if own.is_empty() {
            row.node.clone()
        } else {
            format!("{}[{}]", row.node, own.join(","))
        };
        if m.tasks.iter().any(|t| t.name == task) {
            task = row.id.clone();
        }
        let dataset = rec
            .input_sources
            .iter()
            .find(|(k, _)| !["predictions", "model"].contains(&k.as_str()))
            .map(|(_, v)| v.as_str().map_or_else(|| v.to_string(), str::to_string))
            .unwrap_or_default();
        m.tasks.push(lm_eval::Task {
            name: task,
            op: op.to_string(),
            version: rec.preimage["op_version"].as_u64().unwrap_or(0) as u32,
            n_shot: rec
                .provenance
                .params
                .get("shots")
                .and_then(Value::as_u64)
                .unwrap_or(0),
            metrics: rec.metrics.clone(),
            metadata: json!({
                "node": row.id,
                "key": rec.key,
                "op": op,
                "params": rec.preimage["params"],
                "inputs": rec.input_sources,
                "metrics": rec.metrics,
            }),
            dataset,
        });
    }
    if models.is_empty() {
        return Err(Failure::Input(
            "no cached evaluation result among the selected nodes to export".into(),
        ));
    }
    for (name, m) in &models {
        if m.date == f64::MAX {
            // No parsable start time: lm-eval's date is still a number.
            let _ = name;
        }
        let sub = dir.join(lm_eval::sanitize(name));
        std::fs::create_dir_all(&sub)
            .map_err(|e| Failure::Failed(format!("{}: {e}", sub.display())))?;
        let file = sub.join(lm_eval::file_name(
            latest.get(name).map_or("", String::as_str),
        ));
        let mut doc = lm_eval::export(m);
        if m.date == f64::MAX {
            doc["date"] = Value::Null;
        }
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        std::fs::write(&file, text)
            .map_err(|e| Failure::Failed(format!("{}: {e}", file.display())))?;
        println!("{}  {} task(s)", file.display(), m.tasks.len());
    }
    Ok(())
}

/// An instance's coordinates as `k=v`, split into those of the model it
/// evaluates (inherited from an upstream instance) and its own (a matrix
/// of the evaluation itself, such as `rater`); `from` (which upstream node
/// a `for_each` instance came from) is in neither.
fn split_coords(l: &Loaded, row: &Row) -> (Vec<String>, Vec<String>) {
    let inherited: BTreeSet<&str> = l
        .dag
        .index_of(&row.id)
        .map(|i| {
            l.dag.nodes[i]
                .upstream
                .iter()
                .flat_map(|&u| l.dag.nodes[u].inst.coords.iter().map(|(k, _)| k.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let (mut model, mut own) = (Vec::new(), Vec::new());
    for (k, v) in row.coords.iter().filter(|(k, _)| k != "from") {
        if inherited.contains(k.as_str()) {
            model.push(format!("{k}={v}"));
        } else {
            own.push(format!("{k}={v}"));
        }
    }
    (model, own)
}

/// Seconds since 1970 of an RFC 3339 UTC time (`2026-11-20T10:00:01.5Z`).
fn unix_time(t: &str) -> f64 {
    let num = |s: &str| s.parse::<i64>().ok();
    let parse = || -> Option<f64> {
        let (date, time) = t.trim_end_matches('Z').split_once('T')?;
        let mut d = date.split('-').map(num);
        let (y, mo, da) = (d.next()??, d.next()??, d.next()??);
        let mut h = time.split(':');
        let (hh, mm) = (num(h.next()?)?, num(h.next()?)?);
        let ss: f64 = h.next()?.parse().ok()?;
        // Days from civil (Howard Hinnant's algorithm).
        let y = if mo <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        Some((days * 86_400 + hh * 3600 + mm * 60) as f64 + ss)
    };
    parse().unwrap_or(f64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_split_into_node_and_coordinates() {
        assert_eq!(node_of("qa[from=answer,size=l]"), "qa");
        assert_eq!(
            coords_of("qa[from=answer,size=l]"),
            [
                ("from".to_string(), "answer".to_string()),
                ("size".into(), "l".into())
            ]
        );
        assert!(coords_of("world").is_empty());
        assert!(matches("qa[from=answer,size=l]", "qa"));
        assert!(matches("qa[from=answer,size=l]", "qa[size=l,*]"));
        assert!(!matches("qa[from=answer,size=l]", "qa[size=m,*]"));
        assert!(!matches("qa_seen[size=l]", "qa"));
    }

    #[test]
    fn unix_time_of_rfc3339() {
        assert_eq!(unix_time("1970-01-02T00:00:01Z"), 86_401.0);
        assert_eq!(unix_time("2000-03-01T00:00:00Z"), 951_868_800.0);
        assert_eq!(unix_time("garbage"), f64::MAX);
    }
}
