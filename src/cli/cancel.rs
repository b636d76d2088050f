//! `repro cancel`: cancels the Slurm jobs that runs of a pipeline submitted
//! and that are still queued or running.
//!
//! Jobs are found from the `job.json` files in the Slurm work directories
//! (so jobs of a `repro run` that was killed are found too), then checked
//! with one `squeue` call and cancelled with one `scancel`. The `repro run`
//! that is waiting on them, if any, reports them as cancelled; nothing is
//! recorded for them.

use super::jobs::submitted_jobs;
use super::{Failure, Outcome, PipelineArgs, load};
use crate::exec::executor::slurm::{sbatch, work_root};

/// Runs `repro cancel`.
pub fn cancel(p: &PipelineArgs) -> Outcome {
    let l = load(p, None)?;
    let config =
        crate::config::Config::load(&l.dag.root).map_err(|e| Failure::Input(e.to_string()))?;
    let root = work_root(&l.cache.state, &config.slurm);
    let jobs = submitted_jobs(&root, &l.dag.pipeline.name);
    if jobs.is_empty() {
        eprintln!(
            "repro cancel: no Slurm job of pipeline `{}` under {}",
            l.dag.pipeline.name,
            root.display()
        );
        return Ok(());
    }
    let ids: Vec<String> = jobs.iter().map(|j| j.job_id.clone()).collect();
    let rows = sbatch::squeue(&ids).map_err(|e| Failure::Failed(format!("squeue: {e}")))?;
    let live: Vec<&(String, String, String)> = rows
        .iter()
        .filter(|(_, s, _)| !sbatch::is_terminal(s))
        .collect();
    if live.is_empty() {
        eprintln!(
            "repro cancel: none of the {} jobs found is still queued or running",
            ids.len()
        );
        return Ok(());
    }
    let cancel_ids: Vec<String> = live.iter().map(|(i, ..)| i.clone()).collect();
    sbatch::scancel(&cancel_ids);
    for (id, state, _) in &live {
        let node = jobs
            .iter()
            .find(|j| &j.job_id == id)
            .map_or("?", |j| j.node.as_str());
        eprintln!("  cancelled  slurm job {id} ({state})  {node}");
    }
    eprintln!("repro cancel: cancelled {} job(s)", cancel_ids.len());
    Ok(())
}
