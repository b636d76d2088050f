//! `repro run`: execute, dry-run (`--dry-run [--json]`), or follow a plan (`--plan`).

use super::{Failure, Outcome, PipelineArgs, load};
use crate::exec::freshness::{Check, Eval};
use crate::exec::{self, RunOptions, cancel};
use clap::Args;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Arguments of `repro run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Pipeline: a YAML path or a name in pipelines/.
    #[arg(value_name = "PIPELINE")]
    pub positional: Option<String>,
    #[command(flatten)]
    pub p: PipelineArgs,
    /// Run only these nodes (instance ids, node names or selectors) and what they need.
    #[arg(long = "only", value_name = "NODE")]
    pub only: Vec<String>,
    /// Re-run these nodes even if cached (and replace their records).
    #[arg(long = "force", value_name = "NODE")]
    pub force: Vec<String>,
    /// CPU slots for parallel nodes (default: number of cores).
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// GPU device ids this run may hand out, e.g. `--gpus 0,1`.
    #[arg(long = "gpus", value_name = "IDS", value_delimiter = ',')]
    pub gpus: Vec<String>,
    /// Run every compute node on this executor (`local` or `slurm`),
    /// whatever its `resources.executor` says; report nodes stay local.
    #[arg(long = "executor", value_name = "NAME", value_parser = ["local", "slurm"])]
    pub executor: Option<String>,
    /// Keep running nodes that do not depend on a failed one.
    #[arg(short = 'k', long = "keep-going")]
    pub keep_going: bool,
    /// Print the plan (node, key, hit/miss/pending, reason) and run nothing.
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// With --dry-run: print the plan as JSON.
    #[arg(long)]
    pub json: bool,
    /// Execute exactly the plan in this JSON file (from `--dry-run --json`).
    #[arg(long = "plan", value_name = "FILE", conflicts_with_all = ["only", "dry_run"])]
    pub plan: Option<PathBuf>,
    /// List cache hits too.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print only errors and the summary.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

/// Runs `repro run`.
pub fn run(a: RunArgs) -> Outcome {
    let l = load(&a.p, a.positional.as_deref())?;
    let dag = &l.dag;
    let pick = |names: &[String]| -> Result<Vec<usize>, Failure> {
        let mut out = Vec::new();
        for name in names {
            let sel = dag.select(name);
            if sel.is_empty() {
                return Err(Failure::Input(format!(
                    "no node matches `{name}` (see `repro status`)"
                )));
            }
            out.extend(sel);
        }
        Ok(out)
    };
    let mut opts = RunOptions {
        jobs: a.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }),
        gpus: a.gpus.clone(),
        keep_going: a.keep_going,
        verbose: a.verbose,
        quiet: a.quiet,
        executor: a.executor.clone(),
        config: crate::config::Config::load(&dag.root)
            .map_err(|e| Failure::Input(e.to_string()))?,
        ..Default::default()
    };
    if !a.only.is_empty() {
        opts.selected = Some(dag.with_upstream(&pick(&a.only)?));
    }
    let mut force = vec![false; dag.nodes.len()];
    for i in pick(&a.force)? {
        force[i] = true;
    }
    opts.force = force;
    if let Some(path) = &a.plan {
        opts.plan = Some(read_plan(path, &dag.pipeline.name)?);
    }
    if a.dry_run {
        return dry_run(&l, &opts, a.json);
    }
    if !a.keep_going {
        missing_inputs_check(&l, &opts)?;
    }
    credentials_note(&l, &opts)?;
    let token = crate::op::CancelToken::default();
    cancel::install(&token);
    let s = exec::run(dag, &l.cache, &l.lock_path, &opts, &token).map_err(|e| match e {
        exec::ExecError::StalePlan(m) => Failure::Input(m),
        e => Failure::Failed(e.to_string()),
    })?;
    let total = s.ran + s.cached + s.failed.len() + s.skipped;
    let secs = s.elapsed.as_secs_f64();
    if s.cancelled {
        eprintln!(
            "repro: interrupted after {secs:.2}s: {} ran, {} cached; nothing partial was recorded",
            s.ran, s.cached
        );
        return Err(Failure::Exit(130));
    }
    if s.ran == 0 && s.failed.is_empty() && s.skipped == 0 {
        eprintln!("repro: nothing to do: all {total} nodes are cached ({secs:.2}s)");
    } else {
        eprintln!(
            "repro: {} ran, {} cached, {} failed, {} not run ({total} nodes) in {secs:.2}s{}",
            s.ran,
            s.cached,
            s.failed.len(),
            s.skipped,
            if s.lock_changed {
                format!("; updated {}", l.lock_path.display())
            } else {
                String::new()
            }
        );
    }
    if !s.failed.is_empty() {
        let names: Vec<&str> = s.failed.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Failure::Failed(format!("failed: {}", names.join(", "))));
    }
    Ok(())
}

/// Snakemake's `MissingInputException`, up front: when a node this run
/// would compute needs a `file:` input that does not exist, nothing runs and
/// the error lists every such file, where the pipeline asks for it and which
/// nodes need it. `-k` runs everything else instead (those nodes fail with
/// the same message before doing any work).
/// Nodes cached from an earlier run (the lock file names them) need nothing.
fn missing_inputs_check(l: &super::Loaded, opts: &RunOptions) -> Outcome {
    let dag = &l.dag;
    let Some(blocked) = dag.missing_inputs() else {
        return Ok(());
    };
    let lock = l.lock()?;
    let evals = l.evaluate_all(&lock, Check::Exists);
    let computes = |i: usize| {
        !matches!(evals[i], Eval::Hit { .. }) || opts.force.get(i).copied().unwrap_or(false)
    };
    let selected = |i: usize| match (&opts.plan, &opts.selected) {
        (Some(plan), _) => plan.contains_key(dag.nodes[i].id()),
        (None, Some(sel)) => sel[i],
        (None, None) => true,
    };
    let needing: Vec<usize> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| selected(i) && !blocked[i].is_empty() && computes(i))
        .collect();
    if needing.is_empty() {
        return Ok(());
    }
    let mut used: Vec<usize> = needing.iter().flat_map(|&i| blocked[i].clone()).collect();
    used.sort_unstable();
    used.dedup();
    let mut msg = format!(
        "missing inputs: {} file(s) do not exist, and {} node(s) of this run need them; nothing was run",
        used.len(),
        needing.len()
    );
    for m in used {
        let f = &dag.missing[m];
        let users: Vec<&str> = needing
            .iter()
            .filter(|&&i| blocked[i].contains(&m))
            .map(|&i| dag.nodes[i].id())
            .collect();
        let shown = users.iter().take(4).copied().collect::<Vec<_>>().join(", ");
        let more = if users.len() > 4 {
            format!(" and {} more", users.len() - 4)
        } else {
            String::new()
        };
        msg.push_str(&format!(
            "\n  {}\n      {}\n      needed by {shown}{more}",
            f.phrase(),
            f.origin()
        ));
    }
    msg.push_str(
        "\nprovide the files (or point the params at them with -s), run what does not need them with `repro run -k`, or pick nodes with `--only`; `repro status` lists every node",
    );
    Err(Failure::Failed(msg))
}

/// Before a run: the nodes it would compute that need a credential this
/// machine lacks are blocked in `repro status`; `run` still tries them,
/// since the request store may answer every request, and says so.
fn credentials_note(l: &super::Loaded, opts: &RunOptions) -> Outcome {
    let dag = &l.dag;
    let unmet = crate::exec::needs::unmet_here(dag);
    if unmet.iter().all(Option::is_none) {
        return Ok(());
    }
    let lock = l.lock()?;
    let evals = l.evaluate_all(&lock, Check::Exists);
    let selected = |i: usize| match (&opts.plan, &opts.selected) {
        (Some(plan), _) => plan.contains_key(dag.nodes[i].id()),
        (None, Some(sel)) => sel[i],
        (None, None) => true,
    };
    let direct: Vec<&str> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| {
            selected(i)
                && !matches!(evals[i], Eval::Hit { .. })
                && unmet[i]
                    .as_deref()
                    .is_some_and(|u| !u.contains(" (upstream "))
        })
        .map(|i| dag.nodes[i].id())
        .collect();
    if let Some(first) = direct.first() {
        let i = dag.index_of(first).unwrap_or(0);
        eprintln!(
            "note: blocked: {} {}; trying the request store (cache/api/), which fails the node if it lacks a request",
            direct.join(", "),
            unmet[i].as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn read_plan(path: &PathBuf, pipeline: &str) -> Result<BTreeMap<String, Option<String>>, Failure> {
    let bad = |m: String| Failure::Input(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if v.get("pipeline").and_then(|p| p.as_str()) != Some(pipeline) {
        return Err(bad(format!("this plan is not for pipeline `{pipeline}`")));
    }
    let nodes = v
        .get("nodes")
        .and_then(|n| n.as_array())
        .ok_or_else(|| bad("no `nodes` list".into()))?;
    let mut out = BTreeMap::new();
    for n in nodes {
        let id = n
            .get("node")
            .and_then(|x| x.as_str())
            .ok_or_else(|| bad("a plan entry has no `node`".into()))?;
        out.insert(
            id.to_string(),
            n.get("key").and_then(|k| k.as_str()).map(str::to_string),
        );
    }
    Ok(out)
}

fn dry_run(l: &super::Loaded, opts: &RunOptions, json_out: bool) -> Outcome {
    let lock = l.lock()?;
    let evals = l.evaluate_all(&lock, Check::Quick);
    let blocked = l.dag.missing_inputs();
    let mut rows = Vec::new();
    for &i in &l.dag.order {
        if opts.selected.as_ref().is_some_and(|s| !s[i]) {
            continue;
        }
        let id = l.dag.nodes[i].id();
        let forced = opts.force.get(i).copied().unwrap_or(false);
        let needs_missing = blocked.as_ref().map(|b| &b[i]).filter(|b| !b.is_empty());
        let (status, reason) = match &evals[i] {
            Eval::Hit { .. } if forced => ("miss", "forced".to_string()),
            Eval::Hit { .. } => ("hit", "cached".to_string()),
            _ if needs_missing.is_some() => (
                "blocked",
                l.dag
                    .missing_reason(needs_missing.map_or(&[][..], |b| b.as_slice())),
            ),
            Eval::Miss { reason, .. } => ("miss", reason.clone()),
            Eval::Pending { reason } => ("pending", reason.clone()),
        };
        rows.push(json!({"node": id, "key": evals[i].key(), "status": status, "reason": reason}));
    }
    if json_out {
        let plan = json!({"repro_plan": 1, "pipeline": l.dag.pipeline.name, "nodes": rows});
        println!(
            "{}",
            serde_json::to_string_pretty(&plan).unwrap_or_default()
        );
    } else {
        for r in &rows {
            println!(
                "{:<8} {:<40} {:<12} {}",
                r["status"].as_str().unwrap_or(""),
                r["node"].as_str().unwrap_or(""),
                r["key"].as_str().map(crate::cache::short).unwrap_or("-"),
                r["reason"].as_str().unwrap_or("")
            );
        }
        let count = |s: &str| rows.iter().filter(|r| r["status"] == s).count();
        let blocked = if count("blocked") > 0 {
            format!(
                ", {} blocked by missing inputs (`repro status` lists them)",
                count("blocked")
            )
        } else {
            String::new()
        };
        println!(
            "plan: {} to run, {} pending on them, {} cached{blocked}",
            count("miss"),
            count("pending"),
            count("hit")
        );
    }
    Ok(())
}

/// Runs `repro report`: report nodes only, from what is cached.
pub fn report(p: &PipelineArgs, positional: Option<&str>) -> Outcome {
    let l = load(p, positional)?;
    let opts = RunOptions {
        jobs: 1,
        report_only: true,
        ..Default::default()
    };
    let token = crate::op::CancelToken::default();
    cancel::install(&token);
    let s = exec::run(&l.dag, &l.cache, &l.lock_path, &opts, &token)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    eprintln!(
        "repro report: {} rendered, {} cached nodes used, {} compute nodes not in the cache (their cells show as missing) in {:.2}s",
        s.ran,
        s.cached,
        s.unavailable,
        s.elapsed.as_secs_f64()
    );
    if s.unavailable > 0 {
        blocked_note(&l)?;
    }
    if !s.failed.is_empty() {
        let names: Vec<&str> = s.failed.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Failure::Failed(format!("failed: {}", names.join(", "))));
    }
    Ok(())
}

/// After `repro report`: which of the nodes it could not use are blocked,
/// and why (the same states and reasons as `repro status`).
fn blocked_note(l: &super::Loaded) -> Outcome {
    let lock = l.lock()?;
    let ev = crate::exec::freshness::Evaluator {
        missing_ok: true,
        ..l.evaluator(&lock, Check::Exists)
    };
    let evals = crate::exec::freshness::evaluate_all(&ev);
    let states = super::status::states(l, &lock, &evals);
    let mut by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for (state, reason) in &states {
        if *state == "blocked" {
            let why = if reason.starts_with("missing input") {
                "a missing input file".to_string()
            } else {
                let r = reason
                    .split_once(" (upstream ")
                    .map_or(reason.as_str(), |(w, _)| w);
                r.trim_start_matches("needs ").to_string()
            };
            *by_reason.entry(why).or_default() += 1;
        }
    }
    for (why, n) in &by_reason {
        eprintln!("  blocked: {n} node(s) need {why}");
    }
    if !by_reason.is_empty() {
        eprintln!("  (`repro status` lists every node with its reason)");
    }
    Ok(())
}
