//! The error every model loader and writer returns.

use std::path::Path;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file is missing or unreadable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The weights do not fit the config.
    #[error("{0}")]
    Model(String),
}

/// A file error: `path` and what went wrong with it.
pub(crate) fn ferr(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}
