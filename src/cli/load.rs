//! Loading a pipeline for a verb: the compiled DAG (from the compiled-DAG
//! memo when nothing changed, else parsed and compiled), the cache, and the
//! lock file's path.

use super::{Failure, PipelineArgs, root};
use crate::cache::Cache;
use crate::cache::lockfile::LockFile;
use crate::exec::freshness::{self, Check, Eval, Evaluator};
use crate::graph::{Dag, memo};
use crate::project;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A compiled pipeline with its cache and lock file path.
pub struct Loaded {
    /// The graph. Never dropped: freeing a large DAG just before the
    /// process exits costs tens of milliseconds at 10,000 nodes.
    pub dag: std::mem::ManuallyDrop<Dag>,
    /// The cache.
    pub cache: Cache,
    /// `pipelines/<name>.lock`.
    pub lock_path: PathBuf,
}

impl Loaded {
    /// The lock file as last written.
    pub fn lock(&self) -> Result<LockFile, Failure> {
        LockFile::read(&self.lock_path).map_err(Failure::Failed)
    }

    /// An evaluator over this pipeline (outside `repro report` mode).
    pub fn evaluator<'a>(&'a self, lock: &'a LockFile, check: Check) -> Evaluator<'a> {
        Evaluator {
            dag: &self.dag,
            cache: &self.cache,
            lock,
            check,
            missing_ok: false,
            snapshot: None,
        }
    }

    /// Evaluates every node (keys, hit/miss/pending and why) and saves the stat memo.
    pub fn evaluate_all(&self, lock: &LockFile, check: Check) -> Vec<Eval> {
        let evals = freshness::evaluate_all(&self.evaluator(lock, check));
        self.cache.stat.save().ok();
        evals
    }
}

/// Loads, compiles and opens the cache for a pipeline argument. A pipeline
/// whose files, overrides and binary are unchanged since its last successful
/// compile comes from the compiled-DAG memo ([`crate::graph::memo`]).
pub fn load(p: &PipelineArgs, positional: Option<&str>) -> Result<Loaded, Failure> {
    let root = root()?;
    let arg = positional.or(p.pipeline.as_deref());
    let file = project::resolve(&root, arg).map_err(Failure::Input)?;
    let req = memo::Request {
        root: &root,
        path: &file.path,
        overrides: &p.set,
    };
    let (dag, memo_files) = match file.embedded {
        Some(text) => {
            let rel = file
                .path
                .strip_prefix(&root)
                .map(PathBuf::from)
                .unwrap_or(file.path.clone());
            let pipeline = crate::spec::load_str(&rel, text.to_string(), &p.set)?;
            (crate::graph::compile(&root, pipeline)?, None)
        }
        // A stale `file:` path (or any other surprise) falls through to the
        // full compile, which reports what is wrong exactly as without the memo.
        None => match memo::load(&req) {
            Ok(dag) => (dag, None),
            Err(_) => {
                let text = std::fs::read_to_string(&file.path)
                    .map_err(|e| Failure::Input(format!("{}: {e}", file.path.display())))?;
                // Includes resolve against the real path; errors name the short one.
                let pipeline = crate::spec::load_str(&file.path, text, &p.set)?;
                let files: Vec<(PathBuf, Arc<String>)> = pipeline
                    .files
                    .iter()
                    .map(|(path, id)| (path.clone(), pipeline.sources.file(*id).text.clone()))
                    .collect();
                (crate::graph::compile(&root, pipeline)?, Some(files))
            }
        },
    };
    let dir = file
        .path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("pipelines"));
    let lock_path = dir.join(format!("{}.lock", dag.pipeline.name));
    let cache = Cache::open(&root)?;
    if let Some(files) = memo_files {
        let files: Vec<(&Path, &str)> = files
            .iter()
            .map(|(p, t)| (p.as_path(), t.as_str()))
            .collect();
        // A memo that cannot be written only costs the next load a compile.
        let _ = memo::store(&req, &files, &dag);
    }
    Ok(Loaded {
        dag: std::mem::ManuallyDrop::new(dag),
        cache,
        lock_path,
    })
}
