//! The hand-off between the scheduler and whatever runs a node: a task file
//! (`<work>/node.json`) that says everything the op needs, and a status file
//! (`<work>/status.json`) that the runner writes last.
//!
//! The local executor runs the task in-process; a cluster job runs the same
//! binary as `repro exec-node <work>`, which reads the task file, runs the op
//! into `<work>/out/`, and writes the status file. The submitting process then
//! stores the outputs and writes the record: it is the cache's only writer,
//! so a job can never half-write the cache.

use crate::cache::atomic;
use crate::op::CancelToken;
use crate::op::{OpError, RunContext, RunResult};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Layout version of the task and status files.
pub const TASK_FORMAT: u32 = 1;
/// The task file's name in a work directory.
pub const TASK_FILE: &str = "node.json";
/// The status file's name in a work directory.
pub const STATUS_FILE: &str = "status.json";

/// Everything needed to run one node, independent of the pipeline files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Task {
    /// [`TASK_FORMAT`].
    pub format: u32,
    /// The node's key.
    pub key: String,
    /// Instance id.
    pub node: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Op name.
    pub op: String,
    /// Op version the key was computed with; a job whose binary has another
    /// version refuses to run.
    pub op_version: u32,
    /// Params after interpolation.
    pub params: Map<String, Value>,
    /// Input name -> path under `<work>/in/`, relative to the work directory.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Input name -> where it came from (for the record).
    pub sources: BTreeMap<String, Value>,
    /// For report ops: the input records.
    pub records: Map<String, Value>,
    /// Extra environment for the op.
    pub env: Vec<(String, String)>,
    /// CPU threads granted.
    pub threads: usize,
}

/// What a runner reports about one task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    /// [`TASK_FORMAT`].
    pub format: u32,
    /// The task's key (a stale status file from another key is ignored).
    pub key: String,
    /// The op succeeded and wrote its outputs.
    pub ok: bool,
    /// The op was interrupted (SIGTERM from `scancel` or a time limit).
    pub cancelled: bool,
    /// One line on failure.
    pub message: String,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
    /// Metrics.
    pub metrics: Map<String, Value>,
    /// Peak RSS, KiB.
    pub peak_rss_kib: Option<u64>,
    /// Host the op ran on.
    pub host: String,
    /// `CUDA_VISIBLE_DEVICES` as the job saw it.
    pub cuda_visible_devices: Option<String>,
    /// The devices, named (see `describe_devices`).
    pub device: Option<String>,
    /// The cluster job id, when run by one.
    pub job_id: Option<String>,
    /// Wall seconds of the op.
    pub duration_s: f64,
    /// Start time, RFC 3339.
    pub started: String,
    /// What the op reported about its environment (`RunResult::environment`).
    #[serde(default)]
    pub environment: Map<String, Value>,
}

impl Task {
    /// Writes `<work>/node.json` atomically.
    pub fn write(&self, work: &Path) -> std::io::Result<()> {
        write_json(&work.join(TASK_FILE), self)
    }

    /// Reads `<work>/node.json`; `None` if absent or unreadable.
    pub fn read(work: &Path) -> Option<Task> {
        let t: Task = serde_json::from_slice(&std::fs::read(work.join(TASK_FILE)).ok()?).ok()?;
        (t.format == TASK_FORMAT).then_some(t)
    }
}

impl Status {
    /// Writes `<work>/status.json` atomically (the runner's last act).
    pub fn write(&self, work: &Path) -> std::io::Result<()> {
        write_json(&work.join(STATUS_FILE), self)
    }

    /// Reads `<work>/status.json` if it exists and belongs to `key`.
    pub fn read(work: &Path, key: &str) -> Option<Status> {
        let s: Status =
            serde_json::from_slice(&std::fs::read(work.join(STATUS_FILE)).ok()?).ok()?;
        (s.format == TASK_FORMAT && s.key == key).then_some(s)
    }

    /// The op's result, as the scheduler expects it.
    pub fn into_result(self) -> Result<RunResult, OpError> {
        if self.cancelled {
            return Err(OpError::Cancelled);
        }
        if !self.ok {
            return Err(OpError::Failed {
                message: self.message,
                stderr: self.stderr,
            });
        }
        Ok(RunResult {
            stdout: self.stdout,
            stderr: self.stderr,
            metrics: self.metrics,
            peak_rss_kib: self.peak_rss_kib,
            environment: self.environment,
            device: None,
        })
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(std::io::Error::other)?;
    atomic::write(path, &bytes)
}

/// Runs a task's op in this process, in `work` (inputs under `in/`, outputs to `out/`).
pub fn run_task(
    task: &Task,
    work: &Path,
    cancel: &CancelToken,
    status: &(dyn Fn(&str) + Sync),
) -> Result<RunResult, OpError> {
    let op = crate::ops::find(&task.op).ok_or_else(|| {
        OpError::msg(format!(
            "this repro binary has no op `{}` (built from another version?)",
            task.op
        ))
    })?;
    if op.version() != task.op_version {
        return Err(OpError::msg(format!(
            "op `{}` is version {} in this binary but the key was computed with version {}; run jobs with the same repro binary",
            task.op,
            op.version(),
            task.op_version
        )));
    }
    let inputs: BTreeMap<String, PathBuf> = task
        .inputs
        .iter()
        .map(|(k, p)| (k.clone(), work.join(p)))
        .collect();
    let params = crate::op::schema::with_defaults(op.params(), &task.params);
    let ctx = RunContext {
        node: &task.node,
        work_dir: work,
        params: &params,
        inputs: &inputs,
        cancel,
        env: &task.env,
        threads: task.threads,
        records: &task.records,
        status,
    };
    op.run(&ctx)
}

/// `repro exec-node <work>`: runs the task a cluster job was given and writes
/// its status file. Returns the process exit code (0 when the op succeeded).
pub fn exec_node(work: &Path) -> i32 {
    let work = match std::fs::canonicalize(work) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("repro exec-node: {}: {e}", work.display());
            return 2;
        }
    };
    let Some(task) = Task::read(&work) else {
        eprintln!(
            "repro exec-node: {} has no readable {TASK_FILE} (format {TASK_FORMAT})",
            work.display()
        );
        return 2;
    };
    let cancel = CancelToken::default();
    crate::exec::cancel::install(&cancel);
    let started = crate::exec::host::now_rfc3339();
    let t0 = std::time::Instant::now();
    // Progress lines go to the job's stderr (slurm.err), prefixed and flushed.
    let show = |m: &str| eprintln!("[{}] {m}", task.node);
    let result = run_task(&task, &work, &cancel, &show);
    let mut st = Status {
        format: TASK_FORMAT,
        key: task.key.clone(),
        host: crate::exec::host::hostname(),
        cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").ok(),
        device: Some(crate::exec::host::describe_devices(
            &std::env::var("CUDA_VISIBLE_DEVICES")
                .unwrap_or_default()
                .split(',')
                .filter(|g| !g.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )),
        job_id: std::env::var("SLURM_JOB_ID").ok(),
        duration_s: t0.elapsed().as_secs_f64(),
        started,
        ..Status::default()
    };
    match result {
        Ok(r) => {
            st.ok = !cancel.is_cancelled();
            st.cancelled = cancel.is_cancelled();
            st.stdout = r.stdout;
            st.stderr = r.stderr;
            st.metrics = r.metrics;
            st.peak_rss_kib = r.peak_rss_kib;
            st.environment = r.environment;
            if r.device.is_some() {
                st.device = r.device;
            }
        }
        Err(OpError::Cancelled) => st.cancelled = true,
        Err(OpError::Failed { message, stderr }) => {
            st.message = message;
            st.stderr = stderr;
        }
        Err(OpError::Io(e)) => st.message = e.to_string(),
    }
    // SIGTERM (scancel, a time limit) may surface as the op's own failure
    // (its child killed by the signal): it is a cancellation all the same.
    if cancel.is_cancelled() {
        st.ok = false;
        st.cancelled = true;
    }
    let ok = st.ok;
    if let Err(e) = st.write(&work) {
        eprintln!("repro exec-node: writing {STATUS_FILE}: {e}");
        return 1;
    }
    if ok { 0 } else { 1 }
}
