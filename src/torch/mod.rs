//! Driving PyTorch for what outgrows one device: `lm.finetune` with
//! `engine: torch` trains with FSDP2 under `torchrun` (the trainer script
//! `trainer/fsdp_train.py`), while repro keeps the data, the keys, the cache
//! and Slurm.
//!
//! The hand-off is two files in the run directory: `windows.safetensors`
//! (the packed token windows with their learn flags, the window indices of
//! every step in the seeded order, and the learning rate of every step) and
//! `plan.json` (optimizer settings, precision, paths). The trainer writes
//! `metrics.jsonl`, `result.json` and the model directory back.
//!
//! - [`windows`]: the window file and the plan, from repro's own packing.
//! - [`mod@env`]: finding (or creating) the Python environment, its versions.
//! - [`launch`]: the launch script (`torchrun` on one node, `srun` +
//!   `torchrun` rendezvous on several).
//! - [`run`]: running the launch script, following its progress, reading
//!   its result.

pub mod env;
pub mod launch;
pub mod run;
pub mod windows;

/// Why the torch engine could not run.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// No usable Python environment; the message says what to install.
    #[error("{0}")]
    Env(String),
    /// A file of the hand-off could not be written or read.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The trainer failed; `stderr` holds the tail of its output.
    #[error("{message}")]
    Trainer {
        /// One line.
        message: String,
        /// The tail of the trainer's standard error.
        stderr: String,
    },
    /// The run was cancelled.
    #[error("cancelled")]
    Cancelled,
}

pub(crate) fn ferr(path: &std::path::Path, e: impl std::fmt::Display) -> TorchError {
    TorchError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
