//! The op contract: what every pipeline step implements and what it sees
//! while it runs. This is the crate's bottom layer (beside `rng`): it
//! imports nothing else of the crate, and the libraries an op calls into
//! (`eval`, `data`, `api`, `report`, `model`, `mini`, `torch`) depend on it,
//! never on `ops` (the op files and their registry), `exec`, `graph`, `spec`
//! or `cli`. `tests/layering.rs` enforces the layering.
//!
//! Contract shared by every op: `run` is called in a fresh work directory
//! holding `in/<input name>` (a file, or a directory for directory artifacts
//! and list inputs) and an empty `out/`; the op writes each declared output at
//! `out/<path>`. The executor then hashes and stores the outputs. An op never
//! touches the cache itself, so a failing or cancelled op cannot half-write it.

pub mod cancel;
pub mod error;
pub mod io;
pub mod param;
pub mod schema;
pub mod suggest;

pub use cancel::CancelToken;
pub use error::OpError;
pub use schema::{ParamSpec, ParamType};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// Params after interpolation (all of them, semantic or not), with every
    /// omitted default of the op's schema filled in.
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
    /// The device the op actually computed on (`cpu (avx2)`, `cuda:0`), for
    /// the record's `provenance.device`; `None`: what the executor granted.
    pub device: Option<String>,
    /// What the op knows about where it ran beyond what the executor
    /// records (e.g. the torch engine's Python, torch, transformers and CUDA
    /// versions): the record's `provenance.environment`, never the key.
    pub environment: Map<String, Value>,
}

/// Writes an op's identity, the four methods every op has ([`Op::name`],
/// [`Op::version`], [`Op::params`], [`Op::doc`]), in one line of its
/// `impl Op` block:
///
/// ```ignore
/// impl Op for EvalNqOp {
///     crate::op_identity! { "eval.nq", 1, PARAMS, "Natural Questions exact match." }
///     // outputs, run, ...
/// }
/// ```
#[macro_export]
macro_rules! op_identity {
    ($name:expr, $version:expr, $params:expr, $doc:expr $(,)?) => {
        fn name(&self) -> &'static str {
            $name
        }
        fn version(&self) -> u32 {
            $version
        }
        fn params(&self) -> &'static [$crate::op::ParamSpec] {
            $params
        }
        fn doc(&self) -> &'static str {
            $doc
        }
    };
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
    /// Checks of params against the node's `file:` inputs that exist when
    /// the pipeline compiles (`(input name, path)`), e.g. a `seq_len`
    /// above a base model's positions; `Err((param, message))`. Inputs that
    /// other nodes produce are not seen here: the op checks them again
    /// when it runs.
    fn check_files(
        &self,
        _params: &Map<String, Value>,
        _files: &[(&str, &std::path::Path)],
    ) -> Result<(), (String, String)> {
        Ok(())
    }
    /// The outputs this op will write for these params.
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl>;
    /// Inputs implied by params (`name`, `file:` path), e.g. the `file` op's `path`.
    fn implicit_inputs(&self, _params: &Map<String, Value>) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Whether a node with these params granted GPUs gets its params' GPU
    /// defaults ([`ParamSpec::on_gpu`]) written in when the pipeline
    /// compiles (yes unless the op says otherwise, e.g. for an engine that
    /// does not read those params, so that its keys stay free of them).
    fn gpu_defaults_apply(&self, _params: &Map<String, Value>) -> bool {
        true
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
