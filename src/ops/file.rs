//! `file`: ingests a file or directory of the repository as an artifact.
//!
//! `path` is relative to the project root (or absolute). The node's key holds
//! the content digest of the file (a directory: the digest of its sorted
//! manifest of relative path + content digest), not the path, so moving the
//! file re-runs nothing and editing it re-runs everything downstream. The
//! output `out` is a copy of the content.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value};

/// The `file` op.
pub struct FileOp;

const PARAMS: &[ParamSpec] = &[ParamSpec::required(
    "path",
    ParamType::Str,
    "file or directory to ingest (its content, not its name, enters the key)",
)
.not_semantic()];

impl Op for FileOp {
    crate::op_identity! { "file", 1, PARAMS, "Ingests a file or directory as an artifact (output `out`), keyed by its content." }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "data")])
    }
    fn implicit_inputs(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        match params.get("path").and_then(Value::as_str) {
            Some(p) => vec![("src".into(), p.to_string())],
            None => Vec::new(),
        }
    }
    fn is_ingest(&self) -> bool {
        true
    }
    fn takes_inputs(&self) -> bool {
        false
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let src = ctx
            .inputs
            .get("src")
            .ok_or_else(|| OpError::msg("no `src` input"))?;
        std::fs::rename(src, ctx.work_dir.join("out").join("data"))?;
        Ok(RunResult::default())
    }
}
