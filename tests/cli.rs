//! The verbs as a user sees them: status, explain, dag, cache show, ops, defaults.

mod common;
use common::{Cli, Project};

const TRAIN: &str = r#"
pipeline: t
params: {lr: 2e-5}
nodes:
  data:
    op: shell
    params: {cmd: "echo rows > out/d", outs: d}
  train:
    op: shell
    inputs: {data: data}
    params: {cmd: "echo lr=${lr} $(cat in/data) > out/m", outs: m}
  score:
    op: shell
    inputs: {model: train}
    params: {cmd: "wc -c < in/model > out/s", outs: s}
"#;

#[test]
fn status_lists_cached_stale_missing_with_reasons() {
    let p = Project::new();
    p.write("pipelines/t.yaml", TRAIN);
    let text = p.ok(&["status", "-p", "t"]);
    assert!(
        text.contains("missing  data") && text.contains("never run"),
        "{text}"
    );
    p.ok(&["run", "-p", "t"]);
    assert!(
        p.ok(&["status", "-p", "t"])
            .contains("3 cached, 0 stale, 0 missing")
    );
    p.write("pipelines/t.yaml", &TRAIN.replace("lr: 2e-5", "lr: 1e-5"));
    let v = p.json(&["status", "-p", "t", "--json"]);
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes[0]["status"], "cached");
    assert_eq!(nodes[1]["status"], "stale");
    assert!(
        nodes[1]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("params.cmd"),
        "{v}"
    );
    assert_eq!(nodes[2]["status"], "stale");
    assert!(
        nodes[2]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("upstream `train`"),
        "{v}"
    );
}

#[test]
fn explain_shows_ingredients_and_field_level_changes() {
    let p = Project::new();
    p.write("pipelines/t.yaml", TRAIN);
    p.ok(&["run", "-p", "t"]);
    p.write(
        "pipelines/t.yaml",
        &TRAIN
            .replace("lr: 2e-5", "lr: 1e-5")
            .replace("echo rows", "echo more rows"),
    );
    let text = p.ok(&["explain", "-p", "t", "train"]);
    assert!(text.contains("params.cmd: \"echo lr=2e-5 $(cat in/data) > out/m\" -> \"echo lr=1e-5 $(cat in/data) > out/m\""), "{text}");
    assert!(text.contains("upstream data"), "{text}");
    // After data runs, train's input digest is known and the change names its upstream.
    p.ok(&["run", "-p", "t", "--only", "data"]);
    let text = p.ok(&["explain", "-p", "t", "train"]);
    assert!(
        text.contains("inputs.data: digest changed (upstream data)"),
        "{text}"
    );
    let v = p.json(&["explain", "-p", "t", "train", "--json"]);
    let fields: Vec<&str> = v[0]["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(fields, vec!["inputs.data", "params.cmd"]);
}

#[test]
fn dag_prints_dot_and_mermaid() {
    let p = Project::new();
    p.write("pipelines/t.yaml", TRAIN);
    p.cli()
        .args(&["dag", "-p", "t"])
        .stdout(
            r#"digraph "t" {
  rankdir=LR;
  node [shape=box];
  "data" [label="data\nshell"];
  "train" [label="train\nshell"];
  "score" [label="score\nshell"];
  "data" -> "train" [label="data"];
  "train" -> "score" [label="model"];
}
"#,
        )
        .stderr("")
        .run();
    p.cli()
        .args(&["dag", "-p", "t", "--format", "mermaid"])
        .stdout(
            r#"flowchart LR
  n0["data<br/>shell"]
  n1["train<br/>shell"]
  n2["score<br/>shell"]
  n0 -->|data| n1
  n1 -->|model| n2
"#,
        )
        .stderr("")
        .run();
}

#[test]
fn run_reports_each_node_then_a_summary_and_a_second_run_has_nothing_to_do() {
    let p = Cli::new()
        .pipeline("t", TRAIN)
        .args(&["run", "-p", "t"])
        .stdout("")
        .stderr(
            "  ran      data  [TIME]s
  ran      train  [TIME]s
  ran      score  [TIME]s
repro: 3 ran, 0 cached, 0 failed, 0 not run (3 nodes) in [TIME]s; updated [ROOT]/pipelines/t.lock
",
        )
        .run()
        .project();
    p.cli()
        .args(&["run", "-p", "t"])
        .stdout("")
        .stderr("repro: nothing to do: all 3 nodes are cached ([TIME]s)\n")
        .run();
}

#[test]
fn normalize_replaces_the_root_and_durations() {
    let root = std::path::Path::new("/tmp/.tmpAbC");
    assert_eq!(
        common::cli::normalize(
            "repro: nothing to do: all 3 nodes are cached (0.01s)\n/tmp/.tmpAbC/pipelines/t.yaml took 12.5 s; v1.2 x3.0s 2.0secs 0.375\n",
            root
        ),
        "repro: nothing to do: all 3 nodes are cached ([TIME]s)\n[ROOT]/pipelines/t.yaml took [TIME] s; v1.2 x3.0s 2.0secs 0.375\n"
    );
}

#[test]
fn cache_show_prints_a_record_by_prefix() {
    let p = Project::new();
    p.write("pipelines/t.yaml", TRAIN);
    p.ok(&["run", "-p", "t"]);
    let lock: serde_json::Value = serde_json::from_str(&p.read("pipelines/t.lock")).expect("lock");
    let key = lock["nodes"]["score"]["key"]
        .as_str()
        .expect("key")
        .to_string();
    let v = p.json(&["cache", "show", &key[..10]]);
    assert_eq!(v["node"], "score");
    assert_eq!(v["preimage"]["op"], "shell");
    assert!(v["provenance"]["duration_s"].is_number());
    p.fails(&["cache", "show", "zz"], 2);
}

#[test]
fn ops_lists_schemas() {
    let p = Project::new();
    let text = p.ok(&["ops"]);
    assert!(
        text.contains("shell (version 1)")
            && text.contains("ref.published")
            && text.contains("not in key"),
        "{text}"
    );
}

#[test]
fn bad_input_exits_2_with_location_and_failures_exit_1() {
    let p = Project::new();
    p.write(
        "pipelines/bad.yaml",
        "pipeline: bad\nnodes:\n  a:\n    op: shell\n    params: {cmd: 'x', outz: y}\n",
    );
    let text = p.fails(&["run", "-p", "bad"], 2);
    assert!(
        text.contains("bad.yaml:5:")
            && text.contains("nodes.a.params.outz")
            && text.contains("did you mean `outs`"),
        "{text}"
    );
    p.fails(&["run", "-p", "nosuch"], 2);
    p.fails(&["run", "--bogus-flag"], 2);
    p.write(
        "pipelines/f.yaml",
        "pipeline: f\nnodes:\n  a:\n    op: shell\n    params: {cmd: 'false'}\n",
    );
    p.fails(&["run", "-p", "f"], 1);
}

#[test]
fn outside_a_project_is_a_clear_error() {
    let d = tempfile::tempdir().expect("tmp");
    Cli::at(d.path())
        .args(&["status"])
        .status(2)
        .stderr_has("not inside a repro project")
        .run();
}

#[test]
fn the_embedded_example_is_written_by_init_and_runs() {
    let p = Project::new();
    // `repro init` writes the embedded pipelines; the example needs its corpus.
    p.ok(&["init"]);
    p.write(
        "data/example/corpus.txt",
        "one two three four five six seven\n",
    );
    let text = p.ok(&["run", "-p", "example"]);
    assert!(text.contains("6 ran"), "{text}");
    assert!(p.path().join("pipelines/example.lock").is_file());
    assert!(p.ok(&["run", "-p", "example"]).contains("nothing to do"));
    p.ok(&["verify", "-p", "example"]);
}

#[test]
fn the_shipped_example_runs_from_the_repository() {
    // The README's first command on this repository's own files.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Project::new();
    p.write(
        "pipelines/example.yaml",
        &std::fs::read_to_string(root.join("pipelines/example.yaml")).expect("example"),
    );
    p.write(
        "data/example/corpus.txt",
        &std::fs::read_to_string(root.join("data/example/corpus.txt")).expect("corpus"),
    );
    p.ok(&["run", "-j", "2", "-p", "example"]);
    let lock: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/example.lock")).expect("lock");
    assert_eq!(lock["nodes"].as_object().expect("nodes").len(), 6);
    let rec = p.json(&[
        "cache",
        "show",
        lock["nodes"]["long_words[min_len=5]"]["key"]
            .as_str()
            .expect("k"),
    ]);
    assert!(
        rec["metrics"]["distinct"].as_i64().unwrap_or(0) > 0,
        "{rec}"
    );
}

#[test]
fn inputs_are_copies_so_commands_cannot_corrupt_the_cache() {
    let p = Project::new();
    p.write(
        "pipelines/w.yaml",
        "pipeline: w\nnodes:\n  a:\n    op: shell\n    params: {cmd: 'echo safe > out/x', outs: x}\n  b:\n    op: shell\n    inputs: {x: a}\n    params: {cmd: 'chmod u+w in/x; echo clobbered > in/x; cp in/x out/y', outs: y}\n",
    );
    p.ok(&["run", "-p", "w"]);
    p.ok(&["verify", "-p", "w"]);
}
