//! The launch script of a torch-engine run (`launch.sh` in the run
//! directory, kept there for inspection).
//!
//! - One machine (`gpus: N`, or the CPU): `torchrun --standalone
//!   --nproc_per_node N` (run as `python -m torch.distributed.run`, the same
//!   program, so that no `torchrun` needs to be on `PATH`).
//! - Several Slurm nodes (`resources: {nodes: K, gpus: N}`, `sbatch
//!   --nodes=K --gres=gpu:N`): the job's batch step runs on the first node
//!   and starts one `torchrun` per node with `srun --ntasks-per-node=1`; the
//!   `torchrun`s meet at a c10d rendezvous on the first node's host
//!   (`scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1`), port
//!   [`RDZV_PORT`], rendezvous id the Slurm job id.

use std::path::Path;

/// The rendezvous port on the first node of a multi-node run.
pub const RDZV_PORT: u16 = 29_400;

/// How many processes run where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// One machine with `nproc` processes (one per GPU, or one on the CPU).
    Single {
        /// Processes.
        nproc: usize,
    },
    /// `nodes` Slurm nodes with `nproc` processes each.
    Slurm {
        /// Nodes of the allocation.
        nodes: usize,
        /// Processes per node.
        nproc: usize,
    },
}

impl Topology {
    /// Processes in all.
    pub fn world_size(&self) -> usize {
        match *self {
            Topology::Single { nproc } => nproc,
            Topology::Slurm { nodes, nproc } => nodes * nproc,
        }
    }

    /// The topology from the environment a node runs in: the GPUs of
    /// `CUDA_VISIBLE_DEVICES` (one process each; one process without GPUs)
    /// and `SLURM_JOB_NUM_NODES`. `get` reads a variable.
    pub fn detect(get: &dyn Fn(&str) -> Option<String>) -> Topology {
        let gpus = get("CUDA_VISIBLE_DEVICES")
            .map(|v| {
                v.split(',')
                    .filter(|d| !d.trim().is_empty() && d.trim() != "-1")
                    .count()
            })
            .unwrap_or(0);
        let nproc = gpus.max(1);
        let nodes = get("SLURM_JOB_NUM_NODES")
            .or_else(|| get("SLURM_NNODES"))
            .and_then(|n| n.trim().parse::<usize>().ok())
            .unwrap_or(1);
        if nodes > 1 {
            Topology::Slurm { nodes, nproc }
        } else {
            Topology::Single { nproc }
        }
    }
}

/// Single-quotes a string for `sh`.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The launch script: runs `trainer --plan plan` under `torchrun` for
/// `topo` with `python`; extra trainer arguments follow.
pub fn script(
    python: &Path,
    trainer: &Path,
    plan: &Path,
    topo: Topology,
    extra: &[String],
) -> String {
    let py = q(&python.display().to_string());
    let mut tail = format!(
        "{} --plan {}",
        q(&trainer.display().to_string()),
        q(&plan.display().to_string())
    );
    for a in extra {
        tail.push(' ');
        tail.push_str(&q(a));
    }
    let mut s = String::from(
        "#!/usr/bin/env bash\n# Written by repro (lm.finetune, engine: torch).\nset -euo pipefail\n",
    );
    match topo {
        Topology::Single { nproc } => {
            s.push_str(&format!(
                "exec {py} -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node={nproc} {tail}\n"
            ));
        }
        Topology::Slurm { nodes, nproc } => {
            s.push_str("head=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n");
            s.push_str(&format!(
                "exec srun --nodes={nodes} --ntasks={nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 \\\n  {py} -m torch.distributed.run --nnodes={nodes} --nproc_per_node={nproc} \\\n  --rdzv_id=\"$SLURM_JOB_ID\" --rdzv_backend=c10d --rdzv_endpoint=\"$head:{RDZV_PORT}\" \\\n  {tail}\n"
            ));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn topology_follows_gpus_and_slurm_nodes() {
        assert_eq!(Topology::detect(&env(&[])), Topology::Single { nproc: 1 });
        assert_eq!(
            Topology::detect(&env(&[("CUDA_VISIBLE_DEVICES", "0,1,2,3,4,5,6,7")])),
            Topology::Single { nproc: 8 }
        );
        assert_eq!(
            Topology::detect(&env(&[("CUDA_VISIBLE_DEVICES", "")])),
            Topology::Single { nproc: 1 }
        );
        let t = Topology::detect(&env(&[
            ("CUDA_VISIBLE_DEVICES", "0,1,2,3"),
            ("SLURM_JOB_NUM_NODES", "2"),
        ]));
        assert_eq!(t, Topology::Slurm { nodes: 2, nproc: 4 });
        assert_eq!(t.world_size(), 8);
        assert_eq!(
            Topology::detect(&env(&[("SLURM_JOB_NUM_NODES", "1")])),
            Topology::Single { nproc: 1 }
        );
    }

    #[test]
    fn one_node_runs_torchrun_standalone() {
        let s = script(
            Path::new("/env/bin/python"),
            Path::new("/w/in/trainer"),
            Path::new("/w/torch/plan.json"),
            Topology::Single { nproc: 8 },
            &[],
        );
        assert_eq!(
            s,
            "#!/usr/bin/env bash\n# Written by repro (lm.finetune, engine: torch).\nset -euo pipefail\n\
             exec '/env/bin/python' -m torch.distributed.run --standalone --nnodes=1 --nproc_per_node=8 '/w/in/trainer' --plan '/w/torch/plan.json'\n"
        );
    }

    #[test]
    fn several_nodes_run_srun_with_a_rendezvous_on_the_first() {
        let s = script(
            Path::new("/env/bin/python"),
            Path::new("/w/in/trainer"),
            Path::new("/w/it's/plan.json"),
            Topology::Slurm { nodes: 2, nproc: 8 },
            &["--fail-after-step".into(), "3".into()],
        );
        assert!(
            s.contains("head=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n")
        );
        assert!(
            s.contains("exec srun --nodes=2 --ntasks=2 --ntasks-per-node=1 --kill-on-bad-exit=1")
        );
        assert!(s.contains("-m torch.distributed.run --nnodes=2 --nproc_per_node=8"));
        assert!(s.contains(
            "--rdzv_id=\"$SLURM_JOB_ID\" --rdzv_backend=c10d --rdzv_endpoint=\"$head:29400\""
        ));
        assert!(s.contains("--plan '/w/it'\\''s/plan.json' '--fail-after-step' '3'\n"));
        assert!(!s.contains("--standalone"));
        // The script is valid shell.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("launch.sh");
        std::fs::write(&p, &s).unwrap();
        let ok = std::process::Command::new("bash")
            .arg("-n")
            .arg(&p)
            .status()
            .unwrap();
        assert!(ok.success());
    }
}
