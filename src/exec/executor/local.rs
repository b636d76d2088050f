//! The local executor: runs the op in this process, on CPU threads and the
//! GPU ids the scheduler granted.

use super::{ExecJob, Executor, Ran};
use crate::exec::error::NodeError;
use crate::op::OpError;
use std::path::{Path, PathBuf};

/// Runs ops in-process.
pub struct Local {
    work_root: PathBuf,
}

impl Local {
    /// Work directories go under `<state>/work/`.
    pub fn new(state: &Path) -> Local {
        Local {
            work_root: state.join("work"),
        }
    }
}

impl Executor for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    fn work_dir(&self, key: &str) -> PathBuf {
        // The pid keeps two processes that both lost a key lock race apart.
        self.work_root.join(format!(
            "{}-{}",
            &key[..16.min(key.len())],
            std::process::id()
        ))
    }

    fn execute(&self, job: &ExecJob) -> Result<Ran, NodeError> {
        match crate::exec::task::run_task(job.task, job.work, job.cancel, job.status) {
            Ok(result) => Ok(Ran {
                result,
                ..Ran::default()
            }),
            Err(OpError::Cancelled) => Err(NodeError::Cancelled),
            Err(OpError::Failed { message, stderr }) => Err(NodeError::Failed {
                message,
                stderr,
                work_dir: Some(job.work.to_path_buf()),
            }),
            Err(OpError::Io(e)) => Err(NodeError::Failed {
                message: e.to_string(),
                stderr: String::new(),
                work_dir: Some(job.work.to_path_buf()),
            }),
        }
    }
}
