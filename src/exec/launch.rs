//! The thread side of the scheduler: a started node runs in its own thread,
//! under the OS lock on its key, and sends back how it ended.

use super::executor::{self, Executor};
use super::node::{self, Job, NodeError};
use super::progress::OpStatus;
use crate::cache::flock::{self, Mode};
use crate::cache::record::Record;
use crate::cache::{Cache, short};
use crate::graph::Dag;
use crate::op::CancelToken;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Instant;

/// What a node's thread sends back when the node ends.
pub(super) struct Done {
    /// The node.
    pub idx: usize,
    /// The record, and whether this process computed it (not another one).
    pub result: Result<(Record, bool), NodeError>,
    /// GPU device ids to give back.
    pub gpus: Vec<String>,
    /// CPU slots to give back.
    pub cpus: usize,
    /// How long it took.
    pub secs: f64,
}

/// Everything a node's thread needs.
pub(super) struct Launch<'a> {
    /// The pipeline.
    pub dag: &'a Dag,
    /// The cache.
    pub cache: &'a Cache,
    /// Set on Ctrl-C / SIGTERM.
    pub cancel: &'a CancelToken,
    /// No "waiting" message.
    pub quiet: bool,
    /// The node.
    pub idx: usize,
    /// Its key.
    pub key: String,
    /// Its key's preimage.
    pub preimage: Value,
    /// Where it runs.
    pub executor: &'a dyn Executor,
    /// CPU slots taken (none on a cluster).
    pub cpus: usize,
    /// GPU device ids taken (none on a cluster).
    pub gpus: Vec<String>,
    /// Threads the op may use.
    pub threads: usize,
    /// Keys of its upstream (index -> key).
    pub upstream_keys: BTreeMap<usize, String>,
    /// Its line in the display.
    pub op_status: OpStatus,
    /// Where to send [`Done`].
    pub tx: mpsc::Sender<Done>,
}

impl Launch<'_> {
    /// Runs the node (in its own thread) and reports how it ended.
    pub fn run(self) {
        let start = Instant::now();
        let env: Vec<(String, String)> = if self.gpus.is_empty() {
            Vec::new()
        } else {
            vec![("CUDA_VISIBLE_DEVICES".into(), self.gpus.join(","))]
        };
        let status = |m: &str| self.op_status.set(m);
        let job = Job {
            status: &status,
            idx: self.idx,
            key: &self.key,
            preimage: &self.preimage,
            upstream_keys: &self.upstream_keys,
            env: &env,
            device: executor::describe_devices(&self.gpus),
            threads: self.threads,
            executor: self.executor,
        };
        let result = run_locked(self.cache, self.dag, &job, self.cancel, self.quiet);
        let _ = self.tx.send(Done {
            idx: self.idx,
            result,
            gpus: self.gpus,
            cpus: self.cpus,
            secs: start.elapsed().as_secs_f64(),
        });
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
            if let Ok(Some(rec)) = cache.read_record(job.key)
                && rec
                    .outputs
                    .values()
                    .all(|o| cache.check_output(o, false, false).is_ok())
            {
                return Ok((rec, false));
            }
            g
        }
    };
    node::run_node(cache, dag, job, cancel, true).map(|r| (r, true))
}
