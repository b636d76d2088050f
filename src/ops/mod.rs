//! The op registry. Each op lives in its own file with its name, version,
//! params schema and `run`; adding one is a new file plus one line in
//! [`REGISTRY`].
//!
//! Contract shared by every op: `run` is called in a fresh work directory
//! holding `in/<input name>` (a file, or a directory for directory artifacts
//! and list inputs) and an empty `out/`; the op writes each declared output at
//! `out/<path>`. The executor then hashes and stores the outputs. An op never
//! touches the cache itself, so a failing or cancelled op cannot half-write it.

pub mod data_budget;
pub mod data_jsonl;
pub mod data_mix;
pub mod data_nq_synthetic;
pub mod data_sharegpt;
pub mod eval_humaneval;
pub mod eval_mmlu;
pub mod eval_nq;
pub mod eval_preference;
pub mod eval_qa;
pub mod eval_style;
pub mod eval_toxicity;
pub mod file;
pub mod ingest_lm_eval;
pub mod lm_common;
pub mod lm_finetune;
pub mod lm_finetune_torch;
pub mod lm_generate;
pub mod lm_pretrain;
pub mod mini_teacher;
pub mod mini_world;
pub mod prompts_jsonl;
pub mod prompts_qa;
pub mod published;
pub mod rate_pairwise;
pub mod report_common;
pub mod report_figure;
pub mod report_html;
pub mod report_predictions;
pub mod report_table;
pub mod schema;
pub mod shell;
pub mod teacher_chat;
pub mod tokenizer_train;

use crate::exec::cancel::CancelToken;
pub use schema::{ParamSpec, ParamType};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Every op known to this build. Keep it sorted by name.
pub static REGISTRY: &[&dyn Op] = &[
    &data_budget::DataBudgetOp,
    &data_jsonl::DataChatJsonlOp,
    &data_mix::DataMixOp,
    &data_nq_synthetic::DataNqSyntheticOp,
    &data_jsonl::DataQaJsonlOp,
    &data_sharegpt::DataShareGptOp,
    &eval_humaneval::EvalHumanEvalOp,
    &eval_mmlu::EvalMmluOp,
    &eval_nq::EvalNqOp,
    &eval_preference::EvalPreferenceOp,
    &eval_qa::EvalQaOp,
    &eval_style::EvalStyleOp,
    &eval_toxicity::EvalToxicityOp,
    &file::FileOp,
    &ingest_lm_eval::IngestLmEvalOp,
    &lm_finetune::LmFinetuneOp,
    &lm_generate::LmGenerateOp,
    &lm_pretrain::LmPretrainOp,
    &mini_teacher::MiniTeacherOp,
    &mini_world::MiniWorldOp,
    &prompts_jsonl::PromptsJsonlOp,
    &prompts_qa::PromptsQaOp,
    &rate_pairwise::RatePairwiseOp,
    &published::PublishedOp,
    &report_figure::ReportFigureOp,
    &report_html::ReportHtmlOp,
    &report_predictions::ReportPredictionsOp,
    &report_table::ReportTableOp,
    &shell::ShellOp,
    &teacher_chat::TeacherChatOp,
    &tokenizer_train::TokenizerTrainOp,
];

/// Finds an op by name.
pub fn find(name: &str) -> Option<&'static dyn Op> {
    REGISTRY.iter().copied().find(|op| op.name() == name)
}

/// Names of all ops, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|op| op.name()).collect()
}

/// An output an op promises to write.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputDecl {
    /// Output name (referenced as `node.name`).
    pub name: String,
    /// Path under `out/`.
    pub path: String,
    /// Heavy outputs (checkpoints) go to the blob store outside git.
    pub heavy: bool,
}

impl OutputDecl {
    /// Light outputs (committed with the cache) from `(name, path)` pairs.
    pub fn light(pairs: &[(&str, &str)]) -> Vec<OutputDecl> {
        pairs
            .iter()
            .map(|&(name, path)| OutputDecl {
                name: name.into(),
                path: path.into(),
                heavy: false,
            })
            .collect()
    }
}

/// What an op sees while it runs.
pub struct RunContext<'a> {
    /// Instance id, e.g. `train[size=s]`.
    pub node: &'a str,
    /// The fresh work directory (holds `in/` and `out/`).
    pub work_dir: &'a Path,
    /// Params after interpolation (all of them, semantic or not).
    pub params: &'a Map<String, Value>,
    /// Input name -> its path under `in/`.
    pub inputs: &'a BTreeMap<String, PathBuf>,
    /// Set when the run is interrupted; long ops must poll it.
    pub cancel: &'a CancelToken,
    /// Extra environment for child processes (e.g. `CUDA_VISIBLE_DEVICES`).
    pub env: &'a [(String, String)],
    /// CPU threads the scheduler granted.
    pub threads: usize,
    /// For report ops: per input, what it came from (node, coordinates,
    /// metrics, key, provenance, or `missing`); empty for other ops.
    pub records: &'a Map<String, Value>,
    /// Reports the op's own progress (shown beside the node while it runs;
    /// throttled to a line every 15 s without a terminal).
    pub status: &'a (dyn Fn(&str) + Sync),
}

/// What an op reports besides its output files.
#[derive(Debug, Default)]
pub struct RunResult {
    /// Captured standard output (may be truncated).
    pub stdout: String,
    /// Captured standard error (may be truncated).
    pub stderr: String,
    /// Small numbers stored inline in the record.
    pub metrics: Map<String, Value>,
    /// Peak resident memory of the op's process tree, KiB, when known.
    pub peak_rss_kib: Option<u64>,
    /// What the op knows about where it ran beyond what the executor
    /// records (e.g. the torch engine's Python, torch, transformers and CUDA
    /// versions): the record's `provenance.environment`, never the key.
    pub environment: Map<String, Value>,
}

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

/// One kind of pipeline step.
pub trait Op: Send + Sync {
    /// Name used in `op:`.
    fn name(&self) -> &'static str;
    /// Bumped whenever the op's results could change for the same params and
    /// inputs; part of every key, so a bump re-runs this op's nodes.
    fn version(&self) -> u32;
    /// One paragraph for `repro ops`.
    fn doc(&self) -> &'static str;
    /// The params schema, checked when the pipeline compiles.
    fn params(&self) -> &'static [ParamSpec];
    /// Checks beyond the schema; `Err((param, message))`.
    fn check(&self, _params: &Map<String, Value>) -> Result<(), (String, String)> {
        Ok(())
    }
    /// The outputs this op will write for these params.
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl>;
    /// Inputs implied by params (`name`, `file:` path), e.g. the `file` op's `path`.
    fn implicit_inputs(&self, _params: &Map<String, Value>) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether the op accepts inputs other than its implicit ones.
    fn takes_inputs(&self) -> bool {
        true
    }
    /// Report ops (tables, figures, pages) see their inputs' records (see
    /// `RunContext::records`, which enter their key), may run with missing
    /// inputs under `repro report`, are exported with `export:`, and are
    /// re-rendered and compared by `repro verify`.
    fn is_report(&self) -> bool {
        false
    }
    /// Ops that only read files of the repository and are cheap (`file`,
    /// `ref.published`): `repro report` may run them, as it runs report ops.
    fn is_ingest(&self) -> bool {
        false
    }
    /// Whether a run with these params calls the chat API (`crate::api`),
    /// so it cannot run on a machine where no API is configured: such a
    /// node that is not cached is *blocked*, as one whose `file:` input is
    /// missing (see `crate::exec::needs`).
    fn needs_api(&self, _params: &Map<String, Value>) -> bool {
        false
    }
    /// Whether any params make [`Op::needs_api`] true (checked first, so
    /// that a pipeline without such ops never decodes its nodes' params).
    fn calls_api(&self) -> bool {
        false
    }
    /// Runs the op.
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError>;
}

/// Keeps the last `max` bytes of a text, cut at a character boundary.
pub fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[... {} bytes cut ...]\n{}", start, &s[start..])
}
