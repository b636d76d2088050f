//! The shared test harness. Each test file that uses it says `mod common;`
//! and compiles all of it (hence `allow(dead_code)`):
//!
//! - [`Project`]: a temporary repro project and helpers to run the real
//!   binary in it;
//! - [`cli::Cli`]: one run of the binary on pipeline text, its stdout,
//!   stderr and status compared with expected text (`just`'s test style);
//! - [`op::OpRun`]: one op run on given params and inputs, as the executor
//!   runs it (compile-time checks, defaults filled, `in/` and `out/`);
//! - [`tensors`]: the largest absolute value or difference of tensors;
//! - fixtures: [`gguf`] (tiny llama.cpp files), [`gemma`] (tiny Gemma 3),
//!   [`api_mock`] (a mock chat API server).
#![allow(dead_code)]

pub mod api_mock;
pub mod cli;
pub mod gemma;
pub mod gguf;
pub mod op;
pub mod tensors;

#[allow(unused_imports)]
pub use cli::Cli;
#[allow(unused_imports)]
pub use op::OpRun;

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A project in a temp directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("pipelines")).expect("mkdir");
        Project { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap_or_default()
    }

    pub fn cmd(&self) -> Command {
        repro_in(self.dir.path())
    }

    /// Runs repro with args; returns the output.
    pub fn repro(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run repro")
    }

    /// Runs repro and asserts success; returns stdout + stderr.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.repro(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "repro {args:?} failed ({:?}):\n{text}",
            o.status.code()
        );
        text
    }

    /// Runs repro expecting exit code `code`; returns stdout + stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let o = self.repro(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(code), "repro {args:?}:\n{text}");
        assert!(!text.contains("panicked"), "panic: {text}");
        text
    }

    /// `repro run --dry-run --json` as JSON.
    pub fn plan(&self, pipeline: &str) -> Value {
        let o = self.repro(&["run", "-p", pipeline, "--dry-run", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("plan json")
    }

    /// Node ids of a plan with the given status.
    pub fn planned(&self, pipeline: &str, status: &str) -> Vec<String> {
        let p = self.plan(pipeline);
        let mut v: Vec<String> = p["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter(|n| n["status"] == status)
            .map(|n| n["node"].as_str().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }

    /// Node ids that `repro run` reported as ran.
    pub fn run_ran(&self, pipeline: &str) -> Vec<String> {
        let text = self.ok(&["run", "-p", pipeline]);
        let mut v: Vec<String> = text
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("ran "))
            .map(|l| l.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        v.sort();
        v
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let o = self.repro(args);
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&o.stderr)))
    }

    /// Node instance id -> key, as `repro run -p PIPELINE --dry-run` plans.
    pub fn keys(&self, pipeline: &str) -> std::collections::BTreeMap<String, String> {
        let v = self.json(&["run", "-p", pipeline, "--dry-run", "--json"]);
        v["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| {
                (
                    n["node"].as_str().expect("node").to_string(),
                    n["key"].as_str().expect("key").to_string(),
                )
            })
            .collect()
    }

    /// All object files under cache/objects.
    pub fn objects(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let root = self.dir.path().join("cache/objects");
        for a in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for b in std::fs::read_dir(a.path()).into_iter().flatten().flatten() {
                if !b.file_name().to_string_lossy().starts_with('.') {
                    out.push(b.path());
                }
            }
        }
        out.sort();
        out
    }
}

/// The `repro` binary to run in `dir`, with its own cache: `REPRO_CACHE`
/// and `REPRO_BLOBS` removed from the environment.
pub fn repro_in(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("repro").expect("binary");
    c.current_dir(dir)
        .env_remove("REPRO_CACHE")
        .env_remove("REPRO_BLOBS");
    c
}

/// Strings in a sorted Vec.
pub fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}
