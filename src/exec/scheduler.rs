//! The scheduler as a small state machine.
//!
//! [`super::run`] sets up what a run reads (a [`Context`]), builds a
//! [`Scheduler`] from it, [drives](Scheduler::drive) it inside a thread scope,
//! then [finishes](Scheduler::finish) it. Each pass of the loop takes these
//! named steps:
//!
//! 1. [`check_cancel`](Scheduler::check_cancel): after Ctrl-C nothing new
//!    starts, and cluster jobs are cancelled at once.
//! 2. [`admit_ready`](Scheduler::admit_ready): each node whose upstream are
//!    done is evaluated; a cache hit is done at once (which may make its
//!    downstream ready), a miss is queued, a key that cannot be computed fails.
//! 3. [`start_queued`](Scheduler::start_queued): queued nodes start, each in
//!    its own thread, while CPU and GPU slots allow.
//! 4. When nothing runs and nothing more can start, the loop ends; otherwise
//!    [`collect_finished`](Scheduler::collect_finished) waits briefly for a
//!    node to end and books it ([`on_success`](Scheduler::on_success),
//!    [`on_cancelled`](Scheduler::on_cancelled) or
//!    [`on_failure`](Scheduler::on_failure)).
//!
//! A started node runs in its own thread (see `launch.rs`).

use super::books::{record_preimage, repair, write_lock};
use super::executor::Executors;
use super::export;
use super::freshness::{Eval, Evaluator, Known, Snapshot};
use super::launch::{Done, Launch};
use super::node::NodeError;
use super::progress::Progress;
use super::{ExecError, RunOptions, Summary};
use crate::cache::lockfile::LockFile;
use crate::cache::record::Record;
use crate::cache::{Cache, short};
use crate::graph::{Dag, Resources};
use crate::op::CancelToken;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::mpsc;
use std::thread::Scope;
use std::time::{Duration, Instant};

/// What a run reads and never changes: set up by [`super::run`].
#[derive(Clone, Copy)]
pub(super) struct Context<'a> {
    /// The pipeline.
    pub dag: &'a Dag,
    /// The cache.
    pub cache: &'a Cache,
    /// How to run.
    pub opts: &'a RunOptions,
    /// Set on Ctrl-C / SIGTERM.
    pub cancel: &'a CancelToken,
    /// Computes keys and checks the cache.
    pub ev: &'a Evaluator<'a>,
    /// The evaluator's snapshot of files and records.
    pub snapshot: &'a Snapshot,
    /// Where nodes run.
    pub executors: &'a Executors,
}

/// A node that is not cached, waiting for slots.
struct Queued {
    idx: usize,
    key: String,
    preimage: Value,
    /// Why it runs (`forced`, or why the cache missed), for the display.
    why: String,
}

/// The CPU slots (`-j`) and GPU device ids (`--gpus`) of local nodes.
struct Slots {
    /// All CPU slots: a node never takes more.
    jobs: usize,
    cpu_free: usize,
    /// How many device ids the run has.
    gpus_all: usize,
    gpu_free: Vec<String>,
}

impl Slots {
    /// All slots of a run free.
    fn new(opts: &RunOptions) -> Slots {
        let jobs = opts.jobs.max(1);
        Slots {
            jobs,
            cpu_free: jobs,
            gpus_all: opts.gpus.len(),
            gpu_free: opts.gpus.clone(),
        }
    }

    /// Whether a local node needing `r` can start now. One that needs more
    /// GPUs than the run has can start at once, to fail with a message.
    fn fits(&self, r: &Resources) -> bool {
        r.cpus.min(self.jobs) <= self.cpu_free
            && (r.gpus <= self.gpu_free.len() || r.gpus > self.gpus_all)
    }

    /// Takes a local node's slots: CPU slots and concrete device ids.
    fn take(&mut self, r: &Resources) -> (usize, Vec<String>) {
        let cpus = r.cpus.min(self.jobs);
        let gpus = self.gpu_free.drain(..r.gpus).collect();
        self.cpu_free -= cpus;
        (cpus, gpus)
    }

    /// Gives back what [`Slots::take`] took.
    fn give_back(&mut self, cpus: usize, gpus: Vec<String>) {
        self.cpu_free += cpus;
        self.gpu_free.extend(gpus);
    }
}

/// The scheduler's state between steps.
pub(super) struct Scheduler<'a> {
    cx: Context<'a>,
    /// Nodes this run is about (a plan's, or the selection with upstream).
    selected: Vec<bool>,
    /// Direct downstream of each node.
    downstream: Vec<Vec<usize>>,
    /// Per node, its selected upstream that are not done yet.
    deps_left: Vec<usize>,
    /// Key and output digests of each node done or cached.
    known: Vec<Option<Known>>,
    /// Nodes whose upstream are all done, to evaluate.
    ready: VecDeque<usize>,
    /// Nodes to compute, waiting for slots, in the order they were admitted.
    queued: VecDeque<Queued>,
    slots: Slots,
    /// Nodes running in threads.
    running: usize,
    /// Where node threads report.
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    /// The executors were told to cancel their work.
    cancel_sent: bool,
    summary: Summary,
    progress: Progress,
    /// Nodes below a failure: never run.
    blocked: Vec<bool>,
    /// No new node starts (a failure without --keep-going, or Ctrl-C).
    stopping: bool,
}

impl<'a> Scheduler<'a> {
    /// A scheduler with the nodes that have no pending upstream ready. Fails
    /// when the plan names a node the pipeline no longer has.
    pub(super) fn new(cx: Context<'a>) -> Result<Self, ExecError> {
        let n = cx.dag.nodes.len();
        let selected = selection(cx.dag, cx.opts)?;
        let (downstream, deps_left) = edges(cx.dag, &selected);
        let known = known_outside(cx, &selected);
        let total = selected.iter().filter(|s| **s).count();
        let progress = Progress::new(total, cx.opts.verbose, cx.opts.quiet);
        let ready = (cx.dag.order.iter().copied())
            .filter(|&i| selected[i] && deps_left[i] == 0)
            .collect();
        let (tx, rx) = mpsc::channel();
        Ok(Scheduler {
            cx,
            selected,
            downstream,
            deps_left,
            known,
            ready,
            queued: VecDeque::new(),
            slots: Slots::new(cx.opts),
            running: 0,
            tx,
            rx,
            cancel_sent: false,
            summary: Summary::default(),
            progress,
            blocked: vec![false; n],
            stopping: false,
        })
    }

    /// Runs the loop until nothing runs and nothing more can start. Node
    /// threads are spawned in `scope`, so all have ended when it returns.
    pub(super) fn drive<'s>(&mut self, scope: &'s Scope<'s, '_>) -> Result<(), ExecError>
    where
        'a: 's,
    {
        loop {
            self.check_cancel();
            self.admit_ready()?;
            self.start_queued(scope);
            if self.is_idle() {
                self.summary.skipped += self.queued.len();
                return Ok(());
            }
            self.progress.counts(format!(
                "{} ran, {} cached, {} running",
                self.summary.ran, self.summary.cached, self.running
            ));
            self.collect_finished();
        }
    }

    /// Ends the run: closes the display, counts the blocked nodes as
    /// skipped, writes the lock file and saves the stat cache.
    pub(super) fn finish(
        mut self,
        lock_path: &Path,
        lock: &LockFile,
        t0: Instant,
    ) -> Result<Summary, ExecError> {
        let (dag, cache) = (self.cx.dag, self.cx.cache);
        self.progress.finish();
        self.summary.skipped += self.blocked_not_failed();
        self.summary.lock_changed = write_lock(dag, cache, lock_path, &self.known, lock)?;
        cache.stat.save().ok();
        self.summary.elapsed = t0.elapsed();
        Ok(self.summary)
    }

    /// Selected nodes that never ran because an upstream failed.
    fn blocked_not_failed(&self) -> usize {
        let failed = &self.summary.failed;
        (0..self.cx.dag.nodes.len())
            .filter(|&i| {
                let id = self.cx.dag.nodes[i].id();
                self.selected[i] && self.blocked[i] && !failed.iter().any(|(f, _)| f == id)
            })
            .count()
    }

    /// Nothing runs, nothing waits to be evaluated, and nothing queued can
    /// ever start.
    fn is_idle(&self) -> bool {
        self.running == 0 && self.ready.is_empty() && (self.queued.is_empty() || self.stopping)
    }

    /// After Ctrl-C: stops starting nodes, and cancels cluster jobs at once
    /// (not one by one), the first time only.
    fn check_cancel(&mut self) {
        if !self.cx.cancel.is_cancelled() {
            return;
        }
        self.stopping = true;
        self.summary.cancelled = true;
        if !self.cancel_sent {
            self.cx.executors.cancel_all();
            self.cancel_sent = true;
        }
    }

    /// Evaluates every ready node that is not blocked (see [`Self::admit`]).
    fn admit_ready(&mut self) -> Result<(), ExecError> {
        while let Some(i) = self.ready.pop_front() {
            if !self.blocked[i] {
                self.admit(i)?;
            }
        }
        Ok(())
    }

    /// Evaluates one ready node: a cache hit is done at once, a miss (or a
    /// forced node) is queued to run, a key that cannot be computed fails
    /// the node. Fails the run when the key is not the one a plan expected.
    fn admit(&mut self, i: usize) -> Result<(), ExecError> {
        let node = &self.cx.dag.nodes[i];
        let e = self.cx.ev.eval(i, &self.known);
        if self.cx.opts.report_only && !node.op.is_report() && !node.op.is_ingest() {
            self.admit_report_only(i, e);
            return Ok(());
        }
        self.check_plan(i, &e)?;
        let forced = self.cx.opts.force.get(i).copied().unwrap_or(false);
        match e {
            Eval::Hit { key, outputs } if !forced => self.on_hit(i, Known { key, outputs }),
            Eval::Hit { key, .. } => {
                let preimage = record_preimage(self.cx.cache, &key);
                self.queue(i, key, preimage, "forced".into());
            }
            Eval::Miss {
                key,
                preimage,
                reason,
                ..
            } => {
                repair(self.cx.cache, &key);
                self.queue(i, key, preimage, reason);
            }
            Eval::Pending { reason } => {
                self.fail(i, &format!("cannot compute the key: {reason}"));
            }
        }
        Ok(())
    }

    /// `repro report` never computes: a compute node that is not cached is
    /// a missing input, and its downstream go ahead without it.
    fn admit_report_only(&mut self, i: usize, e: Eval) {
        match e {
            Eval::Hit { key, outputs } => {
                self.known[i] = Some(Known { key, outputs });
                self.summary.cached += 1;
                self.progress.hit(self.cx.dag.nodes[i].id());
            }
            _ => self.summary.unavailable += 1,
        }
        self.release(i);
    }

    /// With a plan, a node's key must be the one the plan expected.
    fn check_plan(&self, i: usize, e: &Eval) -> Result<(), ExecError> {
        let (Some(plan), Some(k)) = (&self.cx.opts.plan, e.key()) else {
            return Ok(());
        };
        let id = self.cx.dag.nodes[i].id();
        match plan.get(id) {
            Some(Some(want)) if want != k => Err(ExecError::StalePlan(format!(
                "`{id}` now has key {} but the plan expected {}; make a new plan",
                short(k),
                short(want)
            ))),
            _ => Ok(()),
        }
    }

    /// A cache hit: exports its outputs and releases its downstream.
    fn on_hit(&mut self, i: usize, known: Known) {
        let dag = self.cx.dag;
        if let Err(m) = export::export(self.cx.cache, dag, i, &known.key) {
            self.fail(i, &m);
            return;
        }
        self.known[i] = Some(known);
        self.summary.cached += 1;
        self.progress.hit(dag.nodes[i].id());
        self.release(i);
    }

    /// Queues a node to compute.
    fn queue(&mut self, idx: usize, key: String, preimage: Value, why: String) {
        self.queued.push_back(Queued {
            idx,
            key,
            preimage,
            why,
        });
    }

    /// Starts queued nodes while slots allow and the run is not stopping.
    fn start_queued<'s>(&mut self, scope: &'s Scope<'s, '_>)
    where
        'a: 's,
    {
        while !self.stopping {
            let Some(q) = self.next_startable() else {
                break;
            };
            self.start_node(scope, q);
        }
    }

    /// Takes the first queued node that can start now: local nodes wait for
    /// CPU and GPU slots; cluster nodes take none.
    fn next_startable(&mut self) -> Option<Queued> {
        let (dag, opts) = (self.cx.dag, self.cx.opts);
        let pos = self.queued.iter().position(|q| {
            executor_of(dag, q.idx, opts) != "local" || self.slots.fits(&dag.nodes[q.idx].resources)
        })?;
        self.queued.remove(pos)
    }

    /// Starts one node in its own thread of `scope`, with its slots taken;
    /// fails it instead when its executor cannot be had, or when it runs
    /// here and needs more GPUs than the run has.
    fn start_node<'s>(&mut self, scope: &'s Scope<'s, '_>, q: Queued)
    where
        'a: 's,
    {
        let (dag, opts) = (self.cx.dag, self.cx.opts);
        let i = q.idx;
        let r = &dag.nodes[i].resources;
        let ex_name = executor_of(dag, i, opts);
        let executor = match self.cx.executors.get(ex_name) {
            Ok(e) => e,
            Err(m) => return self.fail(i, &m),
        };
        let is_local = ex_name == "local";
        if is_local && r.gpus > opts.gpus.len() {
            let m = format!(
                "needs {} GPU(s) but this run has {} (give device ids with --gpus 0,1, or run it with --executor slurm)",
                r.gpus,
                opts.gpus.len()
            );
            return self.fail(i, &m);
        }
        let (cpus, gpus) = if is_local {
            self.slots.take(r)
        } else {
            (0, Vec::new())
        };
        self.running += 1;
        let launch = Launch {
            dag,
            cache: self.cx.cache,
            cancel: self.cx.cancel,
            quiet: opts.quiet,
            op_status: self.progress.started(i, dag.nodes[i].id(), &q.why),
            upstream_keys: self.upstream_keys(i),
            threads: r.cpus.min(self.slots.jobs),
            executor,
            cpus,
            gpus,
            idx: i,
            key: q.key,
            preimage: q.preimage,
            tx: self.tx.clone(),
        };
        // The node may write anywhere: `file:` inputs are looked at afresh
        // from now on.
        self.cx.snapshot.forget_files();
        scope.spawn(move || launch.run());
    }

    /// Keys of a node's upstream that are known (index -> key).
    fn upstream_keys(&self, i: usize) -> BTreeMap<usize, String> {
        (self.cx.dag.nodes[i].upstream.iter())
            .filter_map(|u| self.known[*u].as_ref().map(|k| (*u, k.key.clone())))
            .collect()
    }

    /// Waits up to 100 ms for a node to end; then gives back its slots and
    /// books how it ended.
    fn collect_finished(&mut self) {
        let Ok(done) = self.rx.recv_timeout(Duration::from_millis(100)) else {
            return;
        };
        self.running -= 1;
        self.slots.give_back(done.cpus, done.gpus);
        match done.result {
            Ok((rec, ran)) => self.on_success(done.idx, &rec, ran, done.secs),
            Err(NodeError::Cancelled) => self.on_cancelled(done.idx, done.secs),
            Err(e) => self.on_failure(done.idx, &e, done.secs),
        }
    }

    /// A node recorded (by this process, or by another one meanwhile when
    /// `!ran`): exports its outputs and releases its downstream.
    fn on_success(&mut self, i: usize, rec: &Record, ran: bool, secs: f64) {
        let dag = self.cx.dag;
        if let Err(m) = export::export(self.cx.cache, dag, i, &rec.key) {
            return self.fail_after(i, &m, secs);
        }
        self.known[i] = Some(Known {
            key: rec.key.clone(),
            outputs: (rec.outputs.iter())
                .map(|(k, o)| (k.clone(), o.digest.clone()))
                .collect(),
        });
        let id = dag.nodes[i].id();
        if ran {
            self.summary.ran += 1;
            self.progress.finished(i, id, "ran", secs, "");
        } else {
            self.summary.cached += 1;
            let note = "(computed by another process)";
            self.progress.finished(i, id, "cached", secs, note);
        }
        self.release(i);
    }

    /// A node stopped by Ctrl-C: nothing is recorded for it.
    fn on_cancelled(&mut self, i: usize, secs: f64) {
        let id = self.cx.dag.nodes[i].id();
        (self.progress).finished(i, id, "cancelled", secs, "nothing recorded");
        self.summary.cancelled = true;
        self.summary.skipped += 1;
    }

    /// A node that failed: its message, with the end of its stderr and
    /// where its work directory was kept.
    fn on_failure(&mut self, i: usize, e: &NodeError, secs: f64) {
        self.fail_after(i, &failure_message(e), secs);
    }

    /// Fails a node that never started.
    fn fail(&mut self, i: usize, msg: &str) {
        self.fail_after(i, msg, 0.0);
    }

    /// Records a node's failure after `secs`, blocks what depends on it, and
    /// stops the run unless `--keep-going`.
    fn fail_after(&mut self, i: usize, msg: &str, secs: f64) {
        let id = self.cx.dag.nodes[i].id();
        self.summary.failed.push((id.to_string(), msg.to_string()));
        self.progress.finished(i, id, "FAILED", secs, msg);
        self.block_downstream(i);
        self.stopping |= !self.cx.opts.keep_going;
    }

    /// A node is done: each selected downstream with no other pending
    /// upstream becomes ready.
    fn release(&mut self, i: usize) {
        for &d in &self.downstream[i] {
            if self.selected[d] {
                self.deps_left[d] -= 1;
                if self.deps_left[d] == 0 {
                    self.ready.push_back(d);
                }
            }
        }
    }

    /// Blocks everything below a failed node.
    fn block_downstream(&mut self, i: usize) {
        let mut stack = self.downstream[i].clone();
        while let Some(d) = stack.pop() {
            if !self.blocked[d] {
                self.blocked[d] = true;
                stack.extend(&self.downstream[d]);
            }
        }
    }
}

/// The nodes a run is about: a plan's nodes (which must all still exist),
/// else the selection, else all.
fn selection(dag: &Dag, opts: &RunOptions) -> Result<Vec<bool>, ExecError> {
    let Some(plan) = &opts.plan else {
        let n = dag.nodes.len();
        return Ok(opts.selected.clone().unwrap_or_else(|| vec![true; n]));
    };
    if let Some(id) = plan.keys().find(|id| dag.index_of(id).is_none()) {
        return Err(ExecError::StalePlan(format!(
            "the plan names `{id}`, which is not a node of this pipeline any more"
        )));
    }
    Ok(dag
        .nodes
        .iter()
        .map(|x| plan.contains_key(x.id()))
        .collect())
}

/// Each node's direct downstream, and how many selected upstream it has.
fn edges(dag: &Dag, selected: &[bool]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let n = dag.nodes.len();
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
    (downstream, deps_left)
}

/// With a plan, the upstream it leaves out (its cached nodes) are evaluated
/// up front, so that their keys are known to the nodes it runs.
fn known_outside(cx: Context, selected: &[bool]) -> Vec<Option<Known>> {
    let mut known: Vec<Option<Known>> = vec![None; cx.dag.nodes.len()];
    if cx.opts.plan.is_none() {
        return known;
    }
    for &i in &cx.dag.order {
        if !selected[i]
            && let Eval::Hit { key, outputs } = cx.ev.eval(i, &known)
        {
            known[i] = Some(Known { key, outputs });
        }
    }
    known
}

/// A failed node's message; for a failed op, with the last 12 lines of its
/// stderr and where its work directory was kept.
fn failure_message(e: &NodeError) -> String {
    let mut msg = e.to_string();
    if let NodeError::Failed {
        stderr, work_dir, ..
    } = e
    {
        let lines: Vec<&str> = stderr.lines().collect();
        let tail = &lines[lines.len().saturating_sub(12)..];
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
    msg
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
