//! The Slurm executor: one `sbatch` per node, tracked by one shared `squeue`
//! poller, never `--dependency` chains (the scheduler submits a node only
//! when its inputs are ready, so a failed parent never strands a child) and
//! never `sbatch --wait`.
//!
//! A node's work directory is fixed per key (`<work_dir>/slurm-<key>`) and
//! on a filesystem the compute nodes see. It holds `node.json` (the task),
//! `job.sh`, `job.json` (job id and name, written right after submission),
//! `slurm.out`/`slurm.err`, and `status.json`, which the job writes last.
//! Success or failure comes from `status.json`; Slurm's own state is used
//! only for what the job cannot report (CANCELLED, TIMEOUT, NODE_FAIL,
//! OUT_OF_MEMORY, PREEMPTED ...). A job id that vanished from `squeue`
//! without a status file is reported lost.
//!
//! A run killed while its jobs were queued leaves `job.json` behind; the
//! next run finds the job (by id, or by its name when the id was never
//! written) and waits for it instead of submitting it again.

pub mod sbatch;
pub mod tracker;

use super::{ExecJob, Executor, Ran};
use crate::config::SlurmProfile;
use crate::exec::error::NodeError;
use crate::exec::task::{Status, Task};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracker::Tracker;

/// How long a job may be ended (or gone) without a status file before it is
/// reported: the file may still be on its way over a network filesystem.
const STATUS_GRACE: Duration = Duration::from_secs(10);

/// `job.json`: the job an executor submitted for a work directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobFile {
    /// Slurm job id.
    pub job_id: String,
    /// Job name (pipeline, node, key prefix).
    pub name: String,
    /// Pipeline name.
    pub pipeline: String,
    /// Instance id.
    pub node: String,
    /// The node's key.
    pub key: String,
    /// Submission time, RFC 3339.
    pub submitted: String,
}

impl JobFile {
    /// Reads `<work>/job.json`.
    pub fn read(work: &Path) -> Option<JobFile> {
        serde_json::from_slice(&std::fs::read(work.join("job.json")).ok()?).ok()
    }
}

/// Submits nodes to Slurm.
pub struct Slurm {
    work_root: PathBuf,
    profile: SlurmProfile,
    bin: PathBuf,
    tracker: Tracker,
    live: Mutex<BTreeSet<String>>,
}

/// The Slurm work root for a cache state directory and a profile.
pub fn work_root(state: &Path, profile: &SlurmProfile) -> PathBuf {
    profile
        .work_dir
        .clone()
        .unwrap_or_else(|| state.join("work"))
}

/// A key's Slurm work directory under `root`.
pub fn work_dir_in(root: &Path, key: &str) -> PathBuf {
    root.join(format!("slurm-{}", &key[..32.min(key.len())]))
}

impl Slurm {
    /// The executor, or why Slurm cannot be used from this machine.
    pub fn new(state: &Path, profile: &SlurmProfile) -> Result<Slurm, String> {
        if !on_path("sbatch") || !on_path("squeue") {
            return Err(
                "executor `slurm`: `sbatch`/`squeue` are not on PATH (run from a Slurm login node)"
                    .into(),
            );
        }
        let bin = match &profile.repro_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .map_err(|e| format!("executor `slurm`: cannot find this repro binary: {e}"))?,
        };
        Ok(Slurm {
            work_root: work_root(state, profile),
            profile: profile.clone(),
            bin,
            tracker: Tracker::new(Duration::from_millis(
                profile.poll_ms.unwrap_or(500).max(50),
            )),
            live: Mutex::new(BTreeSet::new()),
        })
    }

    fn submit(&self, job: &ExecJob) -> Result<JobFile, NodeError> {
        let t = job.task;
        let name = sbatch::job_name(&t.pipeline, &t.node, &t.key);
        let script = job.work.join("job.sh");
        let text = format!(
            "#!/bin/sh\n# repro: {} (key {})\nexec {} exec-node {}\n",
            t.node,
            t.key,
            shell_quote(&self.bin.display().to_string()),
            shell_quote(&job.work.display().to_string())
        );
        let fail = |message: String| NodeError::Failed {
            message,
            stderr: String::new(),
            work_dir: Some(job.work.to_path_buf()),
        };
        crate::cache::atomic::write(&script, text.as_bytes())
            .map_err(|e| fail(format!("{}: {e}", script.display())))?;
        let args = sbatch::sbatch_args(job.resources, &self.profile, &name, job.work, &script)
            .map_err(fail)?;
        (job.status)("submitting to slurm");
        let out = sbatch::run_retrying("sbatch", &args, &|| job.cancel.is_cancelled())
            .map_err(|e| fail(format!("sbatch refused the job: {e}")))?;
        let job_id = sbatch::parse_job_id(&out)
            .ok_or_else(|| fail(format!("sbatch printed no job id: {out:?}")))?;
        let jf = JobFile {
            job_id,
            name,
            pipeline: t.pipeline.clone(),
            node: t.node.clone(),
            key: t.key.clone(),
            submitted: crate::exec::node::now_rfc3339(),
        };
        let bytes = serde_json::to_vec_pretty(&jf).map_err(|e| fail(e.to_string()))?;
        crate::cache::atomic::write(&job.work.join("job.json"), &bytes)
            .map_err(|e| fail(format!("job.json: {e}")))?;
        Ok(jf)
    }

    /// A job of an earlier run still queued or running for this work directory.
    fn live_job(&self, work: &Path, task: &Task) -> Option<JobFile> {
        let alive = |s: &str| !s.is_empty() && !sbatch::is_terminal(s);
        if let Some(jf) = JobFile::read(work).filter(|j| j.key == task.key) {
            let rows = sbatch::squeue(std::slice::from_ref(&jf.job_id)).ok()?;
            return rows.iter().any(|(_, s, _)| alive(s)).then_some(jf);
        }
        // Killed between sbatch and writing job.json: find the job by name.
        let name = sbatch::job_name(&task.pipeline, &task.node, &task.key);
        let (id, _) = sbatch::jobs_named(&name)
            .ok()?
            .into_iter()
            .rev()
            .find(|(_, s)| alive(s))?;
        Some(JobFile {
            job_id: id,
            name,
            pipeline: task.pipeline.clone(),
            node: task.node.clone(),
            key: task.key.clone(),
            submitted: String::new(),
        })
    }

    /// Waits for a submitted job to end (or to write its status file).
    fn track(&self, job: &ExecJob, jf: &JobFile) -> Ended {
        let id = &jf.job_id;
        self.tracker.watch(id);
        if let Ok(mut l) = self.live.lock() {
            l.insert(id.clone());
        }
        let mut ended_at: Option<Instant> = None;
        let mut status_seen_at: Option<Instant> = None;
        let mut cancel_sent = false;
        let ended = loop {
            let seen = self.tracker.wait(id, Duration::from_millis(500));
            let over = sbatch::is_terminal(&seen.state) || seen.gone;
            let what = if seen.gone {
                "vanished from squeue (lost)".to_string()
            } else {
                format!("ended {} (reason: {})", seen.state, seen.reason)
            };
            if let Some(st) = Status::read(job.work, &job.task.key) {
                // A job that failed may have been stopped by Slurm (scancel,
                // a time limit) even when it reports its child's death by
                // SIGTERM rather than its own cancellation: wait for Slurm's
                // word on why, for at most STATUS_GRACE.
                let seen_at = *status_seen_at.get_or_insert_with(Instant::now);
                if st.ok || over || seen_at.elapsed() > STATUS_GRACE {
                    break Ended {
                        status: Some(st),
                        state: seen.state,
                        what,
                    };
                }
            }
            if job.cancel.is_cancelled() && !cancel_sent {
                sbatch::scancel(std::slice::from_ref(id));
                cancel_sent = true;
            }
            if over {
                let t = *ended_at.get_or_insert_with(Instant::now);
                if cancel_sent || t.elapsed() > STATUS_GRACE {
                    break Ended {
                        status: None,
                        state: seen.state,
                        what,
                    };
                }
            }
            let mut line = format!("slurm job {id} {}", nonempty(&seen.state, "SUBMITTED"));
            if !seen.reason.is_empty() && seen.reason != "None" {
                line.push_str(&format!(" ({})", seen.reason));
            }
            if let Some(e) = &seen.poll_error {
                line.push_str(&format!("; squeue failing, retrying: {e}"));
            }
            (job.status)(&line);
        };
        self.tracker.forget(id);
        if let Ok(mut l) = self.live.lock() {
            l.remove(id);
        }
        ended
    }
}

/// How a tracked job ended.
struct Ended {
    /// Its status file, if it wrote one.
    status: Option<Status>,
    /// Slurm's last state.
    state: String,
    /// Slurm's account of the end, for messages.
    what: String,
}

impl Ended {
    /// The job's own account of its failure, unless it was cancelled or
    /// Slurm ended it: then Slurm's account wins, since a time limit's
    /// SIGTERM may kill the op's child first and the job report that death
    /// before it notices its own cancellation.
    fn own_failure(&self) -> Option<&Status> {
        let slurm_stopped_it = sbatch::STOPPED_BY_SLURM.contains(&self.state.as_str());
        self.status
            .as_ref()
            .filter(|s| !s.ok && !s.cancelled && !slurm_stopped_it)
    }
}

impl Executor for Slurm {
    fn name(&self) -> &'static str {
        "slurm"
    }

    fn work_dir(&self, key: &str) -> PathBuf {
        work_dir_in(&self.work_root, key)
    }

    fn can_resume(&self, work: &Path, task: &Task) -> bool {
        Status::read(work, &task.key).is_some_and(|s| s.ok) || self.live_job(work, task).is_some()
    }

    fn execute(&self, job: &ExecJob) -> Result<Ran, NodeError> {
        if job.resumed
            && let Some(st) = Status::read(job.work, &job.task.key).filter(|s| s.ok)
        {
            return Ok(ran(st, None));
        }
        let fail = |message: String, stderr: String| NodeError::Failed {
            message,
            stderr,
            work_dir: Some(job.work.to_path_buf()),
        };
        let mut retries_left = job.resources.retries;
        // Only a kept work directory can have a job of an earlier run: a
        // fresh one is submitted without asking squeue.
        let mut adopted = if job.resumed {
            self.live_job(job.work, job.task)
        } else {
            None
        };
        loop {
            if job.cancel.is_cancelled() {
                return Err(NodeError::Cancelled);
            }
            let jf = match adopted.take() {
                Some(jf) => {
                    (job.status)(&format!("resuming slurm job {}", jf.job_id));
                    jf
                }
                None => {
                    let _ = std::fs::remove_file(job.work.join(crate::exec::task::STATUS_FILE));
                    self.submit(job)?
                }
            };
            let end = self.track(job, &jf);
            if let Some(st) = end.status.as_ref().filter(|s| s.ok) {
                return Ok(ran(st.clone(), Some(jf.job_id)));
            }
            if job.cancel.is_cancelled() {
                return Err(NodeError::Cancelled);
            }
            if sbatch::RETRYABLE.contains(&end.state.as_str()) && retries_left > 0 {
                retries_left -= 1;
                (job.status)(&format!(
                    "slurm job {} {}; resubmitting ({retries_left} retries left)",
                    jf.job_id, end.what
                ));
                continue;
            }
            let mut stderr = String::new();
            if let Some(st) = end.own_failure() {
                stderr.push_str(&st.stderr);
                append_tail(&mut stderr, &job.work.join("slurm.err"));
                return Err(fail(
                    format!("{} (slurm job {})", st.message, jf.job_id),
                    stderr,
                ));
            }
            if let Some(st) = end.status.as_ref() {
                stderr.push_str(&st.stderr);
            }
            append_tail(&mut stderr, &job.work.join("slurm.err"));
            let hint = match end.state.as_str() {
                "TIMEOUT" => format!(
                    ": it exceeded its time limit ({}); raise `resources.time`",
                    job.resources
                        .time
                        .as_deref()
                        .or(self.profile.time.as_deref())
                        .unwrap_or("the partition's default")
                ),
                "OUT_OF_MEMORY" => ": raise `resources.mem`".into(),
                "PREEMPTED" | "NODE_FAIL" | "BOOT_FAIL" => {
                    ": set `resources.retries` to resubmit automatically".into()
                }
                _ if end.status.is_none() => {
                    ": the job wrote no status file (see slurm.err)".into()
                }
                _ => String::new(),
            };
            return Err(fail(
                format!("slurm job {} {}{hint}", jf.job_id, end.what),
                stderr,
            ));
        }
    }

    fn cancel_all(&self) {
        let ids: Vec<String> = self
            .live
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default();
        sbatch::scancel(&ids);
    }
}

fn ran(st: Status, job_id: Option<String>) -> Ran {
    let device = st.device.clone().unwrap_or_else(|| "cpu".to_string());
    Ran {
        host: Some(st.host.clone()),
        device: Some(device),
        job_id: job_id.or(st.job_id.clone()),
        result: crate::op::RunResult {
            stdout: st.stdout,
            stderr: st.stderr,
            metrics: st.metrics,
            peak_rss_kib: st.peak_rss_kib,
            environment: st.environment,
            device: None,
        },
    }
}

fn append_tail(buf: &mut String, path: &Path) {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = crate::op::tail(&t, 4000);
        if !t.trim().is_empty() {
            if !buf.is_empty() {
                buf.push('\n');
            }
            buf.push_str(&t);
        }
    }
}

fn nonempty<'a>(s: &'a str, d: &'a str) -> &'a str {
    if s.is_empty() { d } else { s }
}

/// Single-quotes a string for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn on_path(prog: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            let f = d.join(prog);
            f.is_file()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(state: &str, ok: bool, cancelled: bool) -> Ended {
        Ended {
            status: Some(Status {
                ok,
                cancelled,
                message: "command killed by signal 15".into(),
                ..Status::default()
            }),
            state: state.into(),
            what: format!("ended {state}"),
        }
    }

    #[test]
    fn a_job_slurm_ended_is_reported_by_slurm_not_by_its_dying_child() {
        assert!(ended("TIMEOUT", false, false).own_failure().is_none());
        assert!(ended("CANCELLED", false, false).own_failure().is_none());
        assert!(ended("OUT_OF_MEMORY", false, false).own_failure().is_none());
        assert!(ended("TIMEOUT", false, true).own_failure().is_none());
    }

    #[test]
    fn a_job_that_failed_by_itself_reports_its_own_failure() {
        let end = ended("FAILED", false, false);
        let own = end.own_failure().map(|s| s.message.as_str());
        assert_eq!(own, Some("command killed by signal 15"));
        assert!(ended("COMPLETED", true, false).own_failure().is_none());
    }
}
