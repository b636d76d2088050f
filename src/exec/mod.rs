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
//!
//! [`run`] sets the run up; the scheduler itself is a small state machine
//! with named steps, in `scheduler.rs`; each node it starts runs in a thread
//! of its own (`launch.rs`).

mod books;
pub mod cancel;
pub mod error;
pub mod executor;
pub mod export;
pub mod freshness;
pub mod host;
mod launch;
pub mod needs;
pub mod node;
pub mod progress;
mod scheduler;
pub mod task;

use crate::cache::Cache;
use crate::cache::flock::{self, Mode};
use crate::cache::lockfile::LockFile;
use crate::graph::Dag;
use crate::op::CancelToken;
use executor::Executors;
use freshness::{Check, Evaluator, Snapshot};
use scheduler::{Context, Scheduler};
use std::collections::BTreeMap;
use std::path::Path;
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

/// Runs the pipeline: sets up what the run reads, then drives the
/// scheduler step by step and finishes it.
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
    let executors = Executors::new(&cache.state, opts.config.clone());
    let mut sched = Scheduler::new(Context {
        dag,
        cache,
        opts,
        cancel,
        ev: &ev,
        snapshot: &snapshot,
        executors: &executors,
    })?;
    std::thread::scope(|scope| sched.drive(scope))?;
    sched.finish(lock_path, &lock, t0)
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
