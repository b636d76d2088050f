//! Source files of a pipeline and located errors pointing into them.
//!
//! Every YAML value keeps a [`Span`] (file, byte offset, line, column), so any
//! later stage (schema checks, reference resolution, cycle detection) can
//! report `file:line:col: key: message` with the offending line underlined.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

/// Index of a file in a [`Sources`] table.
pub type FileId = u32;

/// A location in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Which file (index into [`Sources`]).
    pub file: FileId,
    /// Byte offset of the start.
    pub offset: usize,
    /// Length in bytes (at least 1 when rendered).
    pub len: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

/// One loaded source file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path as the user named it (relative to the project root when possible).
    pub path: PathBuf,
    /// Full text.
    pub text: Arc<String>,
    line_starts: Vec<usize>,
    /// All bytes ASCII: columns are byte offsets (no per-span scan).
    ascii: bool,
}

/// All source files that make up one pipeline (the root file and its includes).
#[derive(Debug, Clone, Default)]
pub struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    /// Registers a file's text and returns its id.
    pub fn add(&mut self, path: &Path, text: String) -> FileId {
        let mut line_starts = vec![0];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(i + 1);
            }
        }
        // Show paths relative to the current directory when they are under it.
        let shown = std::env::current_dir()
            .ok()
            .and_then(|cwd| path.strip_prefix(&cwd).ok().map(Path::to_path_buf))
            .unwrap_or_else(|| path.to_path_buf());
        self.files.push(SourceFile {
            path: shown,
            ascii: text.is_ascii(),
            text: Arc::new(text),
            line_starts,
        });
        (self.files.len() - 1) as FileId
    }

    /// The file with this id.
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id as usize]
    }

    /// All files, root first.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Converts a parser position (1-based line, 0-based char column) to a span.
    pub fn span_at(&self, file: FileId, line: usize, col0: usize, len_chars: usize) -> Span {
        let f = self.file(file);
        let line_idx = line.saturating_sub(1).min(f.line_starts.len() - 1);
        let start = f.line_starts[line_idx];
        if f.ascii {
            let line_end = f
                .line_starts
                .get(line_idx + 1)
                .copied()
                .unwrap_or(f.text.len());
            let offset = (start + col0).min(line_end.max(start));
            let end = (offset + len_chars).min(f.text.len()).max(offset);
            return Span {
                file,
                offset,
                len: end - offset,
                line: line_idx + 1,
                col: col0 + 1,
            };
        }
        let rest = &f.text[start..];
        let mut offset = start + rest.len();
        let mut end = offset;
        for (n, (i, _)) in rest.char_indices().enumerate() {
            if n == col0 {
                offset = start + i;
            }
            if n == col0 + len_chars {
                end = start + i;
                break;
            }
        }
        if end < offset {
            end = offset;
        }
        Span {
            file,
            offset,
            len: end - offset,
            line: line_idx + 1,
            col: col0 + 1,
        }
    }

    /// Builds a located error.
    pub fn error(&self, span: Span, key: &str, message: impl Into<String>) -> SpecError {
        let f = self.file(span.file);
        let len = span
            .len
            .max(1)
            .min(f.text.len().saturating_sub(span.offset));
        SpecError {
            file: f.path.clone(),
            line: span.line,
            col: span.col,
            key: key.to_string(),
            message: message.into(),
            help: None,
            src: Some(NamedSource::new(
                f.path.display().to_string(),
                f.text.clone(),
            )),
            span: Some(SourceSpan::new(span.offset.into(), len)),
        }
    }
}

/// A problem in a pipeline file, located at file, line, column and key.
#[derive(Debug, Error, Diagnostic)]
#[error("{}:{line}:{col}: {}{message}", file.display(), key_prefix(key))]
#[diagnostic(code(repro::spec))]
pub struct SpecError {
    /// File the error is in.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Dotted key path, e.g. `nodes.train.params.lr` (may be empty).
    pub key: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when known.
    #[help]
    pub help: Option<String>,
    #[source_code]
    src: Option<NamedSource<Arc<String>>>,
    #[label("here")]
    span: Option<SourceSpan>,
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

impl SpecError {
    /// An error about a file as a whole (unreadable, missing).
    pub fn whole_file(path: &Path, message: impl Into<String>) -> Self {
        SpecError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: message.into(),
            help: None,
            src: None,
            span: None,
        }
    }

    /// Adds a hint on how to fix the problem.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}
