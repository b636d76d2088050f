//! Executors: where a node's op runs once the scheduler decided to run it.
//!
//! The scheduler keeps the DAG, the cache and the record; an executor only
//! turns a prepared work directory (`in/`, `node.json`) into `out/` plus a
//! result. `local` runs the op in this process; `slurm` submits
//! `repro exec-node <work>` with `sbatch` and tracks it with `squeue`.
//! Another backend (Kubernetes, a cloud batch service) is one more file
//! implementing [`Executor`] and one line in [`Executors::get`].

pub mod local;
pub mod slurm;

use crate::exec::error::NodeError;
pub use crate::exec::host::{describe_cpu, describe_devices};
use crate::exec::task::Task;
use crate::graph::resources::Resources;
use crate::op::CancelToken;
use crate::op::RunResult;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One node handed to an executor.
pub struct ExecJob<'a> {
    /// The work directory (`in/` placed, `node.json` written).
    pub work: &'a Path,
    /// The task (as in `node.json`).
    pub task: &'a Task,
    /// The node's resources (time, memory, GPUs, partition ...).
    pub resources: &'a Resources,
    /// Set on Ctrl-C / SIGTERM.
    pub cancel: &'a CancelToken,
    /// Shows the node's progress (e.g. `slurm job 123 PENDING (Resources)`).
    pub status: &'a (dyn Fn(&str) + Sync),
    /// Devices granted by the local GPU pool (`cpu` when none).
    pub device: &'a str,
    /// The work directory was kept from an earlier run
    /// ([`Executor::can_resume`] said yes), not prepared afresh.
    pub resumed: bool,
}

/// What an executor reports besides the op's own result.
#[derive(Debug, Default)]
pub struct Ran {
    /// The op's result.
    pub result: RunResult,
    /// Host the op ran on, when not this one.
    pub host: Option<String>,
    /// Devices the op ran on (e.g. `cuda:0`), for provenance.
    pub device: Option<String>,
    /// Cluster job id.
    pub job_id: Option<String>,
}

/// A place where ops run.
pub trait Executor: Send + Sync {
    /// Name as written in `resources.executor`.
    fn name(&self) -> &'static str;
    /// The work directory for a key. Cluster executors use a fixed one per
    /// key, so a later run finds the job an earlier, killed run submitted.
    fn work_dir(&self, key: &str) -> PathBuf;
    /// Whether `work` holds a job of `task` that an earlier run submitted and
    /// that is still queued, running, or finished well; the work directory is
    /// then kept as it is instead of being prepared afresh.
    fn can_resume(&self, _work: &Path, _task: &Task) -> bool {
        false
    }
    /// Runs the task; its outputs end up in `<work>/out/`.
    fn execute(&self, job: &ExecJob) -> Result<Ran, NodeError>;
    /// Cancels whatever this executor still has running (after Ctrl-C).
    fn cancel_all(&self) {}
}

/// The executors of one run, created on first use.
pub struct Executors {
    local: local::Local,
    slurm: OnceLock<Result<slurm::Slurm, String>>,
    state: PathBuf,
    config: crate::config::Config,
}

impl Executors {
    /// Executors whose work directories live under `state` (`.repro/`).
    pub fn new(state: &Path, config: crate::config::Config) -> Executors {
        Executors {
            local: local::Local::new(state),
            slurm: OnceLock::new(),
            state: state.to_path_buf(),
            config,
        }
    }

    /// The local executor.
    pub fn local(&self) -> &dyn Executor {
        &self.local
    }

    /// The executor called `name`, or why it cannot be used here.
    pub fn get(&self, name: &str) -> Result<&dyn Executor, String> {
        match name {
            "local" => Ok(&self.local),
            "slurm" => self
                .slurm
                .get_or_init(|| slurm::Slurm::new(&self.state, &self.config.slurm))
                .as_ref()
                .map(|s| s as &dyn Executor)
                .map_err(Clone::clone),
            other => Err(format!("unknown executor `{other}`")),
        }
    }

    /// Cancels every executor's outstanding work.
    pub fn cancel_all(&self) {
        if let Some(Ok(s)) = self.slurm.get() {
            s.cancel_all();
        }
    }
}
