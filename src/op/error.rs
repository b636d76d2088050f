//! Why an op failed.

/// Why an op failed.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// The op ran and failed; `stderr` holds the tail of its error output.
    #[error("{message}")]
    Failed {
        /// One-line reason.
        message: String,
        /// Tail of standard error, if any.
        stderr: String,
    },
    /// The run was interrupted.
    #[error("cancelled")]
    Cancelled,
    /// A file-system error around the op.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl OpError {
    /// A failure with no captured output.
    pub fn msg(message: impl Into<String>) -> Self {
        OpError::Failed {
            message: message.into(),
            stderr: String::new(),
        }
    }
}
