//! Why a node did not produce a record.

use crate::cache::CacheError;
use std::path::PathBuf;

/// Why a node did not produce a record.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The op failed.
    #[error("{message}")]
    Failed {
        /// One line.
        message: String,
        /// Tail of stderr.
        stderr: String,
        /// Work directory kept for inspection.
        work_dir: Option<PathBuf>,
    },
    /// Interrupted.
    #[error("cancelled")]
    Cancelled,
    /// Cache trouble.
    #[error(transparent)]
    Cache(#[from] CacheError),
}
