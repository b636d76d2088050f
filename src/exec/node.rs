//! Running one node: a fresh work directory, inputs copied in, the op, then
//! outputs stored and the record written last. Any failure or cancellation
//! before the record is written leaves the cache as it was.

use crate::cache::record::{Provenance, Record, Storage};
use crate::cache::{Cache, CacheError, io_at};
pub use crate::exec::error::NodeError;
use crate::exec::executor::{ExecJob, Executor};
pub use crate::exec::host::{git_rev, hostname, now_rfc3339};
use crate::exec::task::{TASK_FILE, TASK_FORMAT, Task};
use crate::graph::{Dag, Input, Source};
use crate::op::CancelToken;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// What to run.
pub struct Job<'a> {
    /// Node index.
    pub idx: usize,
    /// Its key.
    pub key: &'a str,
    /// Its preimage.
    pub preimage: &'a Value,
    /// Keys of upstream nodes (index -> key), to read their records.
    pub upstream_keys: &'a BTreeMap<usize, String>,
    /// Extra environment (device assignment).
    pub env: &'a [(String, String)],
    /// Devices, for provenance.
    pub device: String,
    /// CPU slots granted.
    pub threads: usize,
    /// Shows a running op's own progress (e.g. `step 40/200 loss 2.31`).
    pub status: &'a (dyn Fn(&str) + Sync),
    /// Where the op runs.
    pub executor: &'a dyn Executor,
}

/// Runs a node and records it. With `record = false` (verify --rerun) the
/// outputs are hashed but nothing is stored.
///
/// Three steps: prepare the work directory (inputs placed and checked, the
/// task file written), let the executor run the op, then store the outputs
/// and write the record, always from this process.
pub fn run_node(
    cache: &Cache,
    dag: &Dag,
    job: &Job,
    cancel: &CancelToken,
    record: bool,
) -> Result<Record, NodeError> {
    let n = &dag.nodes[job.idx];
    let exec = job.executor;
    let work = exec.work_dir(job.key);
    let resumed = Task::read(&work).filter(|t| t.key == job.key && exec.can_resume(&work, t));
    let was_resumed = resumed.is_some();
    let task = match resumed {
        Some(t) => t,
        None => prepare(cache, dag, job, &work)?,
    };
    let started = now_rfc3339();
    let t0 = Instant::now();
    let ran = exec.execute(&ExecJob {
        work: &work,
        task: &task,
        resources: &n.resources,
        cancel,
        status: job.status,
        device: &job.device,
        resumed: was_resumed,
    });
    let ran = match ran {
        Ok(r) => r,
        Err(NodeError::Cancelled) => {
            let _ = std::fs::remove_dir_all(&work);
            return Err(NodeError::Cancelled);
        }
        Err(e) => return Err(e),
    };
    if cancel.is_cancelled() {
        let _ = std::fs::remove_dir_all(&work);
        return Err(NodeError::Cancelled);
    }
    let duration = t0.elapsed().as_secs_f64();
    let result = ran.result;
    let fail_keep = |message: String, stderr: String| NodeError::Failed {
        message,
        stderr,
        work_dir: Some(work.clone()),
    };
    let out_dir = work.join("out");
    let mut outputs = BTreeMap::new();
    for o in &n.outputs {
        let p = out_dir.join(&o.path);
        if !p.exists() {
            return Err(fail_keep(
                format!(
                    "declared output `{}` (out/{}) was not written",
                    o.name, o.path
                ),
                result.stderr,
            ));
        }
        let storage = if o.heavy {
            Storage::Heavy
        } else {
            Storage::Light
        };
        let rec = if record {
            cache.store_output(&p, &o.path, storage)?
        } else {
            let a = cache.stat.digest(&p).map_err(io_at(&p))?;
            crate::cache::record::OutputRecord {
                digest: a.digest,
                bytes: a.bytes,
                kind: if a.manifest.is_some() {
                    crate::cache::record::ArtifactKind::Dir
                } else {
                    crate::cache::record::ArtifactKind::File
                },
                storage,
                media: crate::cache::record::media_type(&o.path, a.manifest.is_some()),
                path: o.path.clone(),
            }
        };
        outputs.insert(o.name.clone(), rec);
    }
    let rec = Record {
        format: crate::cache::record::RECORD_FORMAT,
        key: job.key.to_string(),
        node: n.id().to_string(),
        pipeline: dag.pipeline.name.clone(),
        preimage: job.preimage.clone(),
        input_sources: task.sources.clone(),
        outputs,
        metrics: result.metrics,
        stdout: result.stdout,
        stderr: result.stderr,
        provenance: Provenance {
            engine: format!("repro {}", env!("CARGO_PKG_VERSION")),
            git_rev: git_rev(&dag.root),
            host: ran.host.unwrap_or_else(hostname),
            executor: exec.name().to_string(),
            device: result
                .device
                .or(ran.device)
                .unwrap_or_else(|| job.device.clone()),
            started,
            duration_s: (duration * 1000.0).round() / 1000.0,
            peak_rss_kib: result.peak_rss_kib,
            params: Value::Object(n.inst.params.to_map()),
            resources: serde_json::to_value(&n.resources).unwrap_or(Value::Null),
            job_id: ran.job_id,
            environment: result.environment,
        },
    };
    if record {
        cache.write_record(&rec)?;
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(rec)
}

/// Makes a fresh work directory: inputs copied into `in/` and checked
/// against the digests the key was computed from, an empty `out/`, and the
/// task file.
fn prepare(cache: &Cache, dag: &Dag, job: &Job, work: &Path) -> Result<Task, NodeError> {
    let n = &dag.nodes[job.idx];
    if work.exists() {
        std::fs::remove_dir_all(work).map_err(io_at(work))?;
    }
    let in_dir = work.join("in");
    let out_dir = work.join("out");
    std::fs::create_dir_all(&in_dir).map_err(io_at(&in_dir))?;
    std::fs::create_dir_all(&out_dir).map_err(io_at(&out_dir))?;
    let fail_keep = |message: String| NodeError::Failed {
        message,
        stderr: String::new(),
        work_dir: Some(work.to_path_buf()),
    };
    let records = if n.op.is_report() {
        crate::exec::freshness::input_records(cache, dag, job.idx, &|u| {
            job.upstream_keys.get(&u).cloned()
        })
        .map_err(fail_keep)?
    } else {
        serde_json::Map::new()
    };
    let mut inputs = BTreeMap::new();
    let mut sources = BTreeMap::new();
    let expected = job.preimage.get("inputs").cloned().unwrap_or(Value::Null);
    for (name, input) in &n.inputs {
        let rel = Path::new("in").join(name);
        let dest = work.join(&rel);
        match input {
            Input::One(s) => {
                sources.insert(
                    name.clone(),
                    place(cache, dag, job, s, &dest, expected.get(name)).map_err(fail_keep)?,
                );
            }
            Input::List(entries) => {
                std::fs::create_dir_all(&dest).map_err(io_at(&dest))?;
                let mut m = serde_json::Map::new();
                for (entry, s) in entries {
                    let want = expected.get(name).and_then(|v| v.get(entry));
                    m.insert(
                        entry.clone(),
                        place(cache, dag, job, s, &dest.join(entry), want).map_err(fail_keep)?,
                    );
                }
                sources.insert(name.clone(), Value::Object(m));
            }
        }
        inputs.insert(name.clone(), rel);
    }
    // API ops keep every request and response in `<cache>/api` (see `crate::api`).
    let mut env = job.env.to_vec();
    if std::env::var_os(crate::api::STORE_ENV).is_none() {
        let store = cache.dir.join("api").to_string_lossy().into_owned();
        env.push((crate::api::STORE_ENV.into(), store));
    }
    let task = Task {
        format: TASK_FORMAT,
        key: job.key.to_string(),
        node: n.id().to_string(),
        pipeline: dag.pipeline.name.clone(),
        op: n.op.name().to_string(),
        op_version: n.op.version(),
        params: n.inst.params.to_map(),
        inputs,
        sources,
        records,
        env,
        threads: job.threads,
    };
    task.write(work).map_err(io_at(&work.join(TASK_FILE)))?;
    Ok(task)
}

/// Copies one input into the work directory and checks it still has the
/// digest the key was computed from. Returns its source description.
fn place(
    cache: &Cache,
    dag: &Dag,
    job: &Job,
    s: &Source,
    dest: &Path,
    want: Option<&Value>,
) -> Result<Value, String> {
    match s {
        Source::File { path, written } => {
            copy_tree(path, dest).map_err(|e| format!("input file:{written}: {e}"))?;
            let got = cache
                .stat
                .digest(dest)
                .map_err(|e| format!("input file:{written}: {e}"))?;
            if want.and_then(Value::as_str) != Some(got.digest.as_str()) {
                return Err(format!(
                    "input file:{written} changed while the run was starting; run again"
                ));
            }
            make_read_only(dest);
            Ok(json!(format!("file:{written}")))
        }
        Source::Node { idx, output } => {
            let up = &dag.nodes[*idx];
            let Some(key) = job.upstream_keys.get(idx) else {
                // Only report ops get here with an upstream that is not cached
                // (`repro report`): the input is absent and marked missing.
                if dag.nodes[job.idx].op.is_report() {
                    return Ok(json!({ "missing": up.id() }));
                }
                return Err(format!("upstream `{}` has no key", up.id()));
            };
            let rec = cache
                .read_record(key)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("upstream `{}`: record {key} vanished", up.id()))?;
            let out = rec
                .outputs
                .get(output)
                .ok_or_else(|| format!("upstream `{}` has no output `{output}`", up.id()))?;
            cache.materialize(out, dest).map_err(|e| match e {
                CacheError::BlobMissing { .. } => format!(
                    "input from `{}`: {e}; heavy outputs are not committed: run with that blob store (REPRO_BLOBS) or re-run the upstream with `repro run --force '{}'`",
                    up.id(),
                    up.id()
                ),
                e => format!("input from `{}`: {e}", up.id()),
            })?;
            let src = if output == "out" {
                up.id().to_string()
            } else {
                format!("{}.{output}", up.id())
            };
            Ok(json!(src))
        }
    }
}

fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    if std::fs::metadata(src)?.is_dir() {
        std::fs::create_dir_all(dest)?;
        crate::cache::hash::walk(src, src, &mut |rel, abs, _| {
            let d = dest.join(rel);
            if let Some(p) = d.parent() {
                std::fs::create_dir_all(p)?;
            }
            std::fs::copy(abs, d).map(|_| ())
        })
    } else {
        std::fs::copy(src, dest).map(|_| ())
    }
}

fn make_read_only(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if p.is_file() {
        let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o444));
    }
}
