//! The scheduler: runs what is not cached, in parallel, within CPU and GPU
//! slots, with early cutoff, cancellation and per-key locking.
//!
//! - A node is evaluated (key computed, cache checked) as soon as all its
//!   upstream nodes are done, so an upstream that re-ran with identical
//!   output bytes leaves it a cache hit (early cutoff).
//! - `-j N` CPU slots; a node takes `resources.cpus` of them. GPU nodes get
//!   concrete device ids from the `--gpus` pool (`CUDA_VISIBLE_DEVICES`), so two
//!   GPU nodes never share a device; the ids go into the record, not the key.
//! - Two processes never compute the same key at once: each takes an OS lock
//!   on the key, and a second process waits, then finds the record.
//! - `repro gc` takes the cache lock exclusively; runs take it shared.
//! - On Ctrl-C, nothing new starts, running ops kill their process groups, and
//!   no record is written for them; finished nodes stay recorded.

mod books;
pub mod cancel;
pub mod error;
pub mod executor;
pub mod export;
pub mod freshness;
pub mod host;
pub mod needs;
pub mod node;
pub mod progress;
pub mod task;

use crate::cache::flock::{self, Mode};
use crate::cache::lockfile::LockFile;
use crate::cache::record::Record;
use crate::cache::{Cache, short};
use crate::graph::Dag;
use crate::op::CancelToken;
use books::{record_preimage, repair, write_lock};
use executor::Executors;
use freshness::{Check, Eval, Evaluator, Known, Snapshot};
use node::{Job, NodeError};
use progress::Progress;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// CPU slots (`-j`).
    pub jobs: usize,
    /// GPU device ids available to this run.
    pub gpus: Vec<String>,
    /// Selected nodes (with their upstream); `None` = all.
    pub selected: Option<Vec<bool>>,
    /// Nodes to re-run even when cached.
    pub force: Vec<bool>,
    /// Keep running independent nodes after a failure.
    pub keep_going: bool,
    /// A plan to follow: instance id -> expected key (None when it was pending).
    pub plan: Option<BTreeMap<String, Option<String>>>,
    /// List cache hits too.
    pub verbose: bool,
    /// No progress output.
    pub quiet: bool,
    /// `repro report`: compute nothing; report ops render from what is cached.
    pub report_only: bool,
    /// `--executor`: where every compute node runs, whatever its `resources:` say.
    pub executor: Option<String>,
    /// Cluster and machine settings (`repro.toml`, never in a key).
    pub config: crate::config::Config,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    /// Nodes computed.
    pub ran: usize,
    /// Nodes found in the cache.
    pub cached: usize,
    /// Failed nodes: id, message.
    pub failed: Vec<(String, String)>,
    /// Nodes not run because an upstream failed or the run stopped.
    pub skipped: usize,
    /// Interrupted by Ctrl-C / SIGTERM.
    pub cancelled: bool,
    /// Wall time.
    pub elapsed: Duration,
    /// Whether the lock file changed.
    pub lock_changed: bool,
    /// `repro report`: compute nodes that are not cached (reported as missing).
    pub unavailable: usize,
}

/// A run that could not even start or finish bookkeeping.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Cache trouble.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// Lock file trouble.
    #[error("{0}")]
    Lock(String),
    /// The plan does not match the pipeline any more.
    #[error("{0}")]
    StalePlan(String),
}

struct Done {
    idx: usize,
    result: Result<(Record, bool), NodeError>,
    gpus: Vec<String>,
    cpus: usize,
    secs: f64,
}

/// Runs the pipeline.
pub fn run(
    dag: &Dag,
    cache: &Cache,
    lock_path: &Path,
    opts: &RunOptions,
    cancel: &CancelToken,
) -> Result<Summary, ExecError> {
    let t0 = Instant::now();
    let _cache_lock = shared_cache_lock(cache, opts.quiet)?;
    let lock = LockFile::read(lock_path).map_err(ExecError::Lock)?;
    let mut ev = Evaluator {
        dag,
        cache,
        lock: &lock,
        check: Check::Quick,
        missing_ok: opts.report_only,
        snapshot: None,
    };
    let snapshot = Snapshot::new(&ev);
    ev.snapshot = Some(&snapshot);
    let n = dag.nodes.len();
    let selected: Vec<bool> = match &opts.plan {
        Some(plan) => {
            for id in plan.keys() {
                if dag.index_of(id).is_none() {
                    return Err(ExecError::StalePlan(format!(
                        "the plan names `{id}`, which is not a node of this pipeline any more"
                    )));
                }
            }
            dag.nodes
                .iter()
                .map(|x| plan.contains_key(x.id()))
                .collect()
        }
        None => opts.selected.clone().unwrap_or_else(|| vec![true; n]),
    };
    let mut downstream: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut deps_left = vec![0usize; n];
    for (i, node) in dag.nodes.iter().enumerate() {
        for &u in &node.upstream {
            downstream[u].push(i);
            if selected[u] {
                deps_left[i] += 1;
            }
        }
    }
    // Upstream outside the selection (a plan's cached nodes) are evaluated up front.
    let mut known: Vec<Option<Known>> = vec![None; n];
    for &i in dag.order.iter().filter(|_| opts.plan.is_some()) {
        if !selected[i] {
            if let Eval::Hit { key, outputs } = ev.eval(i, &known) {
                known[i] = Some(Known { key, outputs });
            }
        }
    }
    let total = selected.iter().filter(|s| **s).count();
    let mut st = RunState {
        summary: Summary::default(),
        progress: Progress::new(total, opts.verbose, opts.quiet),
        blocked: vec![false; n],
        stopping: false,
    };
    let mut ready: VecDeque<usize> = dag
        .order
        .iter()
        .copied()
        .filter(|&i| selected[i] && deps_left[i] == 0)
        .collect();
    let mut runq: VecDeque<(usize, String, Value, String)> = VecDeque::new();
    let jobs = opts.jobs.max(1);
    let mut cpu_free = jobs;
    let mut gpu_free: Vec<String> = opts.gpus.clone();
    let mut running = 0usize;
    let (tx, rx) = mpsc::channel::<Done>();
    let executors = Executors::new(&cache.state, opts.config.clone());
    let executors = &executors;
    let mut cancel_sent = false;

    std::thread::scope(|scope| -> Result<(), ExecError> {
        loop {
            if cancel.is_cancelled() {
                st.stopping = true;
                st.summary.cancelled = true;
                if !cancel_sent {
                    // Cluster jobs are cancelled at once, not one by one.
                    executors.cancel_all();
                    cancel_sent = true;
                }
            }
            while let Some(i) = ready.pop_front() {
                if st.blocked[i] {
                    continue;
                }
                let id = dag.nodes[i].id();
                let e = ev.eval(i, &known);
                if opts.report_only && !dag.nodes[i].op.is_report() && !dag.nodes[i].op.is_ingest()
                {
                    // `repro report` never computes: what is not cached is a missing input.
                    match e {
                        Eval::Hit { key, outputs } => {
                            known[i] = Some(Known { key, outputs });
                            st.summary.cached += 1;
                            st.progress.hit(id);
                        }
                        _ => st.summary.unavailable += 1,
                    }
                    release(i, &downstream, &selected, &mut deps_left, &mut ready);
                    continue;
                }
                if let (Some(plan), Some(k)) = (&opts.plan, e.key()) {
                    if let Some(Some(want)) = plan.get(id) {
                        if want != k {
                            return Err(ExecError::StalePlan(format!(
                                "`{id}` now has key {} but the plan expected {}; make a new plan",
                                short(k),
                                short(want)
                            )));
                        }
                    }
                }
                let forced = opts.force.get(i).copied().unwrap_or(false);
                match e {
                    Eval::Hit { key, outputs } if !forced => {
                        if let Err(m) = export::export(cache, dag, i, &key) {
                            st.fail(i, &m, dag, &downstream, opts.keep_going);
                            continue;
                        }
                        known[i] = Some(Known { key, outputs });
                        st.summary.cached += 1;
                        st.progress.hit(id);
                        release(i, &downstream, &selected, &mut deps_left, &mut ready);
                    }
                    Eval::Hit { key, .. } => {
                        let pre = record_preimage(cache, &key);
                        runq.push_back((i, key, pre, "forced".into()));
                    }
                    Eval::Miss {
                        key,
                        preimage,
                        reason,
                        ..
                    } => {
                        repair(cache, &key);
                        runq.push_back((i, key, preimage, reason));
                    }
                    Eval::Pending { reason } => {
                        st.fail(
                            i,
                            &format!("cannot compute the key: {reason}"),
                            dag,
                            &downstream,
                            opts.keep_going,
                        );
                    }
                }
            }
            while !st.stopping {
                // Local nodes wait for CPU and GPU slots; cluster nodes take none.
                let Some(pos) = runq.iter().position(|(i, ..)| {
                    let r = &dag.nodes[*i].resources;
                    executor_of(dag, *i, opts) != "local"
                        || (r.cpus.min(jobs) <= cpu_free
                            && (r.gpus <= gpu_free.len() || r.gpus > opts.gpus.len()))
                }) else {
                    break;
                };
                let Some((i, key, preimage, why)) = runq.remove(pos) else {
                    break;
                };
                let node = &dag.nodes[i];
                let r = &node.resources;
                let ex_name = executor_of(dag, i, opts);
                let executor = match executors.get(ex_name) {
                    Ok(e) => e,
                    Err(m) => {
                        st.fail(i, &m, dag, &downstream, opts.keep_going);
                        continue;
                    }
                };
                let is_local = ex_name == "local";
                if is_local && r.gpus > opts.gpus.len() {
                    let m = format!(
                        "needs {} GPU(s) but this run has {} (give device ids with --gpus 0,1, or run it with --executor slurm)",
                        r.gpus,
                        opts.gpus.len()
                    );
                    st.fail(i, &m, dag, &downstream, opts.keep_going);
                    continue;
                }
                let (cpus, gpus): (usize, Vec<String>) = if is_local {
                    (r.cpus.min(jobs), gpu_free.drain(..r.gpus).collect())
                } else {
                    (0, Vec::new())
                };
                cpu_free -= cpus;
                running += 1;
                let op_status = st.progress.started(i, node.id(), &why);
                let tx = tx.clone();
                let upstream_keys: BTreeMap<usize, String> = node
                    .upstream
                    .iter()
                    .filter_map(|u| known[*u].as_ref().map(|k| (*u, k.key.clone())))
                    .collect();
                let cancel = cancel.clone();
                let quiet = opts.quiet;
                // The node may write anywhere: `file:` inputs are looked at
                // afresh from now on.
                snapshot.forget_files();
                scope.spawn(move || {
                    let start = Instant::now();
                    let env: Vec<(String, String)> = if gpus.is_empty() {
                        Vec::new()
                    } else {
                        vec![("CUDA_VISIBLE_DEVICES".into(), gpus.join(","))]
                    };
                    let device = executor::describe_devices(&gpus);
                    let status = |m: &str| op_status.set(m);
                    let job = Job {
                        status: &status,
                        idx: i,
                        key: &key,
                        preimage: &preimage,
                        upstream_keys: &upstream_keys,
                        env: &env,
                        device,
                        threads: r.cpus.min(jobs),
                        executor,
                    };
                    let result = run_locked(cache, dag, &job, &cancel, quiet);
                    let _ = tx.send(Done {
                        idx: i,
                        result,
                        gpus,
                        cpus,
                        secs: start.elapsed().as_secs_f64(),
                    });
                });
            }
            if running == 0 && ready.is_empty() && (runq.is_empty() || st.stopping) {
                st.summary.skipped += runq.len();
                break;
            }
            st.progress.counts(format!(
                "{} ran, {} cached, {} running",
                st.summary.ran, st.summary.cached, running
            ));
            let done = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(d) => d,
                Err(_) => continue,
            };
            running -= 1;
            cpu_free += done.cpus;
            gpu_free.extend(done.gpus);
            let id = dag.nodes[done.idx].id();
            match done.result {
                Ok((rec, ran)) => {
                    if let Err(m) = export::export(cache, dag, done.idx, &rec.key) {
                        st.summary.failed.push((id.to_string(), m.clone()));
                        st.progress.finished(done.idx, id, "FAILED", done.secs, &m);
                        block_downstream(done.idx, &downstream, &mut st.blocked);
                        st.stopping |= !opts.keep_going;
                        continue;
                    }
                    known[done.idx] = Some(Known {
                        key: rec.key.clone(),
                        outputs: rec
                            .outputs
                            .iter()
                            .map(|(k, o)| (k.clone(), o.digest.clone()))
                            .collect(),
                    });
                    if ran {
                        st.summary.ran += 1;
                        st.progress.finished(done.idx, id, "ran", done.secs, "");
                    } else {
                        st.summary.cached += 1;
                        st.progress.finished(
                            done.idx,
                            id,
                            "cached",
                            done.secs,
                            "(computed by another process)",
                        );
                    }
                    release(done.idx, &downstream, &selected, &mut deps_left, &mut ready);
                }
                Err(NodeError::Cancelled) => {
                    st.progress
                        .finished(done.idx, id, "cancelled", done.secs, "nothing recorded");
                    st.summary.cancelled = true;
                    st.summary.skipped += 1;
                }
                Err(e) => {
                    let mut msg = e.to_string();
                    if let NodeError::Failed {
                        stderr, work_dir, ..
                    } = &e
                    {
                        let tail: Vec<&str> = stderr
                            .lines()
                            .rev()
                            .take(12)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect();
                        if !tail.is_empty() {
                            msg.push_str(&format!(
                                "\n    stderr (last lines):\n      {}",
                                tail.join("\n      ")
                            ));
                        }
                        if let Some(w) = work_dir {
                            msg.push_str(&format!("\n    work directory kept at {}", w.display()));
                        }
                    }
                    st.summary.failed.push((id.to_string(), msg.clone()));
                    st.progress
                        .finished(done.idx, id, "FAILED", done.secs, &msg);
                    block_downstream(done.idx, &downstream, &mut st.blocked);
                    st.stopping |= !opts.keep_going;
                }
            }
        }
        Ok(())
    })?;
    st.progress.finish();
    st.summary.skipped += (0..n)
        .filter(|&i| {
            selected[i]
                && st.blocked[i]
                && !st
                    .summary
                    .failed
                    .iter()
                    .any(|(f, _)| f == dag.nodes[i].id())
        })
        .count();
    st.summary.lock_changed = write_lock(dag, cache, lock_path, &known, &lock)?;
    cache.stat.save().ok();
    st.summary.elapsed = t0.elapsed();
    Ok(st.summary)
}

/// The executor a node runs on: `--executor` for compute nodes, else its
/// `resources.executor`. Report and ingest ops always run here: they only
/// read the repository and the cache.
fn executor_of<'a>(dag: &'a Dag, i: usize, opts: &'a RunOptions) -> &'a str {
    let n = &dag.nodes[i];
    if n.op.is_report() || n.op.is_ingest() {
        return "local";
    }
    opts.executor.as_deref().unwrap_or(&n.resources.executor)
}

/// Takes the cache lock shared, telling the user if `repro gc` holds it.
pub fn shared_cache_lock(cache: &Cache, quiet: bool) -> Result<flock::Lock, ExecError> {
    let path = cache.flock_path("cache");
    let io = |e: std::io::Error| {
        ExecError::Cache(crate::cache::CacheError::Io {
            path: path.clone(),
            source: e,
        })
    };
    match flock::try_lock(&path, Mode::Shared).map_err(io)? {
        Some(l) => Ok(l),
        None => {
            if !quiet {
                eprintln!("repro: waiting for `repro gc` to release the cache ...");
            }
            flock::lock_wait(&path, Mode::Shared).map_err(io)
        }
    }
}

/// Takes the key's lock, then runs the node unless another process recorded it meanwhile.
fn run_locked(
    cache: &Cache,
    dag: &Dag,
    job: &Job,
    cancel: &CancelToken,
    quiet: bool,
) -> Result<(Record, bool), NodeError> {
    let path = cache.flock_path(&format!("key-{}", job.key));
    let io = |e: std::io::Error| {
        NodeError::Cache(crate::cache::CacheError::Io {
            path: path.clone(),
            source: e,
        })
    };
    let _guard = match flock::try_lock(&path, Mode::Exclusive).map_err(io)? {
        Some(g) => g,
        None => {
            if !quiet {
                eprintln!(
                    "  waiting  {}  (another process is computing key {})",
                    dag.nodes[job.idx].id(),
                    short(job.key)
                );
            }
            let g = flock::lock_wait(&path, Mode::Exclusive).map_err(io)?;
            if let Ok(Some(rec)) = cache.read_record(job.key) {
                if rec
                    .outputs
                    .values()
                    .all(|o| cache.check_output(o, false, false).is_ok())
                {
                    return Ok((rec, false));
                }
            }
            g
        }
    };
    node::run_node(cache, dag, job, cancel, true).map(|r| (r, true))
}

fn release(
    i: usize,
    downstream: &[Vec<usize>],
    selected: &[bool],
    deps_left: &mut [usize],
    ready: &mut VecDeque<usize>,
) {
    for &d in &downstream[i] {
        if selected[d] {
            deps_left[d] -= 1;
            if deps_left[d] == 0 {
                ready.push_back(d);
            }
        }
    }
}

fn block_downstream(i: usize, downstream: &[Vec<usize>], blocked: &mut [bool]) {
    let mut stack = downstream[i].clone();
    while let Some(d) = stack.pop() {
        if !blocked[d] {
            blocked[d] = true;
            stack.extend(&downstream[d]);
        }
    }
}

/// What the scheduler loop tracks besides the queues.
struct RunState {
    summary: Summary,
    progress: Progress,
    /// Nodes below a failure: never run.
    blocked: Vec<bool>,
    /// No new node starts (a failure without --keep-going, or Ctrl-C).
    stopping: bool,
}

impl RunState {
    /// Records a node's failure, blocks what depends on it, and stops the
    /// run unless `keep_going`.
    fn fail(
        &mut self,
        i: usize,
        msg: &str,
        dag: &Dag,
        downstream: &[Vec<usize>],
        keep_going: bool,
    ) {
        let id = dag.nodes[i].id();
        self.summary.failed.push((id.to_string(), msg.to_string()));
        self.progress.finished(i, id, "FAILED", 0.0, msg);
        block_downstream(i, downstream, &mut self.blocked);
        self.stopping |= !keep_going;
    }
}
