//! Node records: `cache/records/<key>.json`, one per computed key.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Record layout version.
pub const RECORD_FORMAT: u32 = 1;

/// Whether an output lives in the committed cache or the blob store.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// `cache/objects/` (committed to git).
    Light,
    /// The blob store outside git (`.repro/blobs`, `REPRO_BLOBS`).
    Heavy,
}

/// File or directory.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactKind {
    /// One file.
    File,
    /// A directory (its digest is its manifest's, stored as a light object).
    Dir,
}

/// One output of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutputRecord {
    /// Content digest (for a directory, of its manifest).
    pub digest: String,
    /// Total bytes.
    pub bytes: u64,
    /// File or directory.
    pub kind: ArtifactKind,
    /// Light or heavy.
    pub storage: Storage,
    /// Guessed media type.
    pub media: String,
    /// Path the op wrote it at (under `out/`).
    pub path: String,
}

/// Where and how a node ran (never part of the key).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Provenance {
    /// `repro` version that ran it.
    pub engine: String,
    /// `git rev-parse HEAD` of the project, when available.
    pub git_rev: Option<String>,
    /// Host name.
    pub host: String,
    /// Executor (`local`, `slurm`).
    pub executor: String,
    /// Devices used (e.g. `cpu`, `cuda:0`).
    pub device: String,
    /// Start time, RFC 3339 UTC.
    pub started: String,
    /// Wall seconds.
    pub duration_s: f64,
    /// Peak resident memory of the op's process tree, KiB, when known.
    pub peak_rss_kib: Option<u64>,
    /// All params, including non-semantic ones.
    pub params: Value,
    /// Resources the node declared.
    pub resources: Value,
    /// The cluster job that ran it (`slurm` executor).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// What the op reported about its environment (tool versions, e.g. the
    /// torch engine's Python, torch, transformers and CUDA); absent when
    /// empty.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub environment: Map<String, Value>,
}

/// Everything known about one computed key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Layout version.
    pub format: u32,
    /// The key (blake3 of the canonical preimage).
    pub key: String,
    /// Instance id that computed it.
    pub node: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The key's preimage (see `graph::key`).
    pub preimage: Value,
    /// Where each input came from: `node.output`, `file:PATH`, or entry -> source.
    pub input_sources: BTreeMap<String, Value>,
    /// Outputs by name.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Small numbers reported by the op.
    pub metrics: Map<String, Value>,
    /// Standard output tail.
    pub stdout: String,
    /// Standard error tail.
    pub stderr: String,
    /// Where and how it ran.
    pub provenance: Provenance,
}

/// Guesses a media type from a file name.
pub fn media_type(path: &str, dir: bool) -> String {
    if dir {
        return "inode/directory".into();
    }
    let ext = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "json" => "application/json",
        "jsonl" => "application/jsonl",
        "csv" => "text/csv",
        "md" => "text/markdown",
        "tex" => "text/x-tex",
        "html" => "text/html",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "yaml" | "yml" => "application/yaml",
        "safetensors" => "application/x-safetensors",
        "gguf" => "application/x-gguf",
        "txt" | "log" => "text/plain",
        _ => "application/octet-stream",
    }
    .into()
}
