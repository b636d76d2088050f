//! Every file in `tests/malformed/` is a pipeline with one mistake. Each must
//! make `repro status` exit with code 2 and a located error, never a panic.
//!
//! A corpus file starts with YAML comments that say what to expect:
//!
//! ```yaml
//! # expect: undefined name `${seed}`   (a substring of the error message)
//! # line: 9                            (the line the error points at)
//! # file: common.yaml                  (optional: the error is in this included file)
//! ```
//!
//! Files under `tests/malformed/inc/` are included by corpus files; they are
//! copied next to the pipeline as `pipelines/inc/`.

mod common;

use common::Cli;
use std::path::{Path, PathBuf};

/// The corpus directory.
fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/malformed")
}

/// The corpus files, sorted by name.
fn corpus() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/malformed exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// What a corpus file expects.
struct Expect {
    substring: String,
    line: usize,
    file: String,
}

fn header(path: &Path, text: &str) -> Expect {
    let field = |name: &str| {
        text.lines()
            .take_while(|l| l.starts_with('#'))
            .find_map(|l| l.strip_prefix(&format!("# {name}:")))
            .map(|v| v.trim().to_string())
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    Expect {
        substring: field("expect").unwrap_or_else(|| panic!("{name}: no `# expect:` line")),
        line: field("line")
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no `# line: N` line")),
        file: field("file").unwrap_or_else(|| name.to_string()),
    }
}

/// Adds a directory tree (the include files) to a run under `rel`.
fn with_dir(mut cli: Cli, from: &Path, rel: &str) -> Cli {
    for e in std::fs::read_dir(from).expect("read_dir") {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type().expect("file type").is_dir() {
            cli = with_dir(cli, &e.path(), &format!("{rel}/{name}"));
        } else {
            let text = std::fs::read_to_string(e.path()).expect("read");
            cli = cli.file(&format!("{rel}/{name}"), &text);
        }
    }
    cli
}

/// Undoes miette's line wrapping: drops the gutter and joins the lines.
fn unwrap_report(stderr: &str) -> String {
    stderr
        .lines()
        .map(|l| l.trim_start().trim_start_matches(['│', '×', '·']).trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `repro status` on `pipelines/<name>` in a fresh project holding `files`.
fn status(files: &[(&str, &str)], name: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut cli = Cli::new();
    for (rel, text) in files {
        cli = cli.file(&format!("pipelines/{rel}"), text);
    }
    let inc = corpus_dir().join("inc");
    if inc.is_dir() {
        cli = with_dir(cli, &inc, "pipelines/inc");
    }
    let out = cli
        .args(&["status", "-p", &format!("pipelines/{name}")])
        .args(extra)
        .output();
    (
        out.code,
        String::from_utf8_lossy(&out.raw_stderr).into_owned(),
    )
}

#[test]
fn corpus_is_large_enough() {
    let n = corpus().len();
    assert!(n >= 45, "only {n} malformed pipelines in tests/malformed/");
}

#[test]
fn every_malformed_pipeline_exits_2_with_a_located_error() {
    let mut failures = Vec::new();
    for path in corpus() {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("utf-8 name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("read corpus file");
        let want = header(&path, &text);
        let (code, stderr) = status(&[(&name, &text)], &name, &[]);
        let report = unwrap_report(&stderr);
        let location = format!("{}:{}:", want.file, want.line);
        let mut problems = Vec::new();
        if code != Some(2) {
            problems.push(format!("exit code {code:?}, expected 2"));
        }
        if report.contains("panicked") {
            problems.push("panicked".to_string());
        }
        if !report.contains(&location) {
            problems.push(format!("no `{location}` in the error"));
        }
        if !report.contains(&want.substring) {
            problems.push(format!("no `{}` in the error", want.substring));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{name}: {}\n--- stderr ---\n{stderr}",
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus files failed:\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

const WITH_PARAM: &str = "pipeline: ok
params: {seed: 0}
nodes:
  x:
    op: shell
    params: {cmd: 'echo ${seed} > out/x', outs: x}
";

#[test]
fn override_of_a_declared_param_is_accepted() {
    let (code, stderr) = status(&[("ok.yaml", WITH_PARAM)], "ok.yaml", &["-s", "seed=3"]);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn override_of_an_unknown_param_exits_2() {
    let (code, stderr) = status(&[("ok.yaml", WITH_PARAM)], "ok.yaml", &["-s", "nope=1"]);
    let report = unwrap_report(&stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(report.contains("has no param `nope`"), "{stderr}");
    assert!(report.contains("declared params: seed"), "{stderr}");
    assert!(!report.contains("panicked"), "{stderr}");
}

#[test]
fn override_without_a_value_exits_2() {
    let (code, stderr) = status(&[("ok.yaml", WITH_PARAM)], "ok.yaml", &["-s", "novalue"]);
    let report = unwrap_report(&stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        report.contains("`-s novalue`: expected `name=value`"),
        "{stderr}"
    );
    assert!(!report.contains("panicked"), "{stderr}");
}

#[test]
fn override_with_bad_yaml_exits_2() {
    let (code, stderr) = status(&[("ok.yaml", WITH_PARAM)], "ok.yaml", &["-s", "seed=[1"]);
    let report = unwrap_report(&stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(report.contains("YAML syntax error"), "{stderr}");
    assert!(!report.contains("panicked"), "{stderr}");
}

/// A `seq_len` above the base model's positions fails when the pipeline
/// compiles, pointing at the param, before anything runs.
#[test]
fn finetune_seq_len_above_the_base_positions_is_a_compile_error() {
    let gpt2 = r#"{"model_type": "gpt2", "vocab_size": 50, "n_embd": 32, "n_layer": 1, "n_head": 2, "n_positions": 1024}"#;
    let pipeline = "pipeline: m\nnodes:\n  ft:\n    op: lm.finetune\n    inputs: {base: file:models/gpt2, data: file:chat.jsonl}\n    params: {seq_len: 2048, batch_size: 32}\n";
    let (code, stderr) = status(
        &[
            ("m.yaml", pipeline),
            ("../models/gpt2/config.json", gpt2),
            ("../chat.jsonl", ""),
        ],
        "m.yaml",
        &[],
    );
    let report = unwrap_report(&stderr);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        report.contains("nodes.ft.params.seq_len"),
        "names the key: {stderr}"
    );
    assert!(
        report.contains(
            "`seq_len` is 2048 but the base model has 1024 positions; set `seq_len` to at most 1024"
        ),
        "{stderr}"
    );
    assert!(report.contains(":6:"), "points at line 6: {stderr}");
}
