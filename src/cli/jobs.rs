//! Cluster jobs of a pipeline, as `repro status` and `repro cancel` see them:
//! found from the `job.json` files in the Slurm work directories, so jobs of
//! a `repro run` that is still waiting (or was killed) show up too.

use super::Loaded;
use crate::exec::executor::slurm::{JobFile, sbatch, work_root};
use std::collections::BTreeMap;
use std::path::Path;

/// The `job.json` files of `pipeline` under a Slurm work root.
pub fn submitted_jobs(root: &Path, pipeline: &str) -> Vec<JobFile> {
    let Ok(rd) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut v: Vec<JobFile> = rd
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("slurm-"))
        .filter_map(|e| JobFile::read(&e.path()))
        .filter(|j| j.pipeline == pipeline)
        .collect();
    v.sort_by(|a, b| a.node.cmp(&b.node));
    v
}

/// Key -> (job id, Slurm state) for this pipeline's jobs that are queued or
/// running now (one `squeue` call; empty when there are none or no Slurm).
pub fn live_jobs(l: &Loaded) -> BTreeMap<String, (String, String)> {
    let Ok(config) = crate::config::Config::load(&l.dag.root) else {
        return BTreeMap::new();
    };
    let jobs = submitted_jobs(
        &work_root(&l.cache.state, &config.slurm),
        &l.dag.pipeline.name,
    );
    if jobs.is_empty() {
        return BTreeMap::new();
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    let Ok(rows) = sbatch::squeue(&ids) else {
        return BTreeMap::new();
    };
    rows.into_iter()
        .filter(|(_, s, _)| !sbatch::is_terminal(s))
        .filter_map(|(id, state, _)| {
            let j = jobs.iter().find(|j| j.job_id == id)?;
            Some((j.key.clone(), (id, state)))
        })
        .collect()
}
