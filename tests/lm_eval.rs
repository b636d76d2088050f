//! lm-evaluation-harness interoperability, both ways, on real files:
//! `ingest.lm_eval` reads a results file that lm-eval 0.4.13 wrote
//! (`tests/data/lm_eval/results_dummy_0.4.13.json`, `lm_eval --model dummy`
//! on the two local tasks beside it) into a node a report places beside
//! repro's own numbers; `repro metrics --lm-eval DIR` writes the committed
//! miniature's evaluations as lm-eval results files with the keys lm-eval
//! writes, which `ingest.lm_eval` reads back to the same numbers.

mod common;
use common::{Cli, Project};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REAL: &str = "tests/data/lm_eval/results_dummy_0.4.13.json";

fn with_real_file() -> Project {
    let p = Project::new();
    let text = std::fs::read_to_string(format!("{ROOT}/{REAL}")).expect("fixture");
    p.write("runs/vllm/results_2026-12-04T17-39-02.664975.json", &text);
    p
}

const PIPELINE: &str = r#"pipeline: l
nodes:
  vllm:
    op: ingest.lm_eval
    matrix: {task: [mini_qa, mini_mc]}
    params: {path: runs/vllm/results_2026-12-04T17-39-02.664975.json, task: "${task}"}
  ours:
    op: shell
    params:
      cmd: |
        echo '{"exact_match": 0.5, "n": 8}' > out/m.json
      outs: {out: m.json, metrics: m.json}
      metrics: metrics
  table:
    op: report.table
    inputs: {theirs: "vllm[task=mini_qa]", ours: ours.metrics}
    params:
      template: t.md.j2
      export: side_by_side.md
"#;

#[test]
fn an_lm_eval_results_file_is_a_node_beside_our_own_numbers() {
    let p = with_real_file();
    p.write("pipelines/l.yaml", PIPELINE);
    p.write(
        "t.md.j2",
        "| source | model | exact match |\n|---|---|---:|\n\
         {% set t = inputs.theirs if inputs.theirs is mapping else inputs.theirs[0] %}\
         | lm-eval {{ t.metrics.exact_match }} ± {{ t.metrics.exact_match_stderr|num(3) }} (n={{ t.metrics.n }}) | {{ t.node }} | {{ t.metrics.exact_match }} |\n\
         {% set o = inputs.ours if inputs.ours is mapping else inputs.ours[0] %}\
         | repro | {{ o.node }} | {{ o.metrics.exact_match }} |\n",
    );
    p.ok(&["run", "-p", "l"]);
    p.cli()
        .args(&["metrics", "-p", "l", "vllm"])
        .stdout(
            "node  task        acc  acc_norm  acc_norm_stderr  acc_stderr  exact_match  exact_match_stderr  n  n_shot
vllm  mini_qa       -         -                -           -        0.375               0.183  8       0
vllm  mini_mc  0.1667    0.3333           0.2108      0.1667            -                   -  6       0
",
        )
        .run();
    // One table per node; a sort column only one of them has sorts that one.
    p.cli()
        .args(&["metrics", "-p", "l", "--sort", "acc:desc", "-m", "exact_match,acc"])
        .stdout("node  task     exact_match     acc\nvllm  mini_mc            -  0.1667\nvllm  mini_qa        0.375       -\nours  -                0.5       -\n")
        .run();
    p.cli()
        .args(&["metrics", "-p", "l", "--sort", "acc:desc"])
        .stdout_has("vllm  mini_mc  0.1667")
        .stdout_has("\nnode  exact_match  n\nours          0.5  8\n")
        .run();
    let table = p.read("side_by_side.md");
    assert!(
        table.contains("| lm-eval 0.375 ± 0.183 (n=8) | vllm[task=mini_qa] | 0.375 |"),
        "{table}"
    );
    assert!(table.contains("| repro | ours | 0.5 |"), "{table}");
    // Its provenance is kept: the model, lm-eval's version, the task config.
    let lock: Value = serde_json::from_str(&p.read("pipelines/l.lock")).expect("lock");
    let digest = lock["nodes"]["vllm[task=mini_qa]"]["outputs"]["out"]
        .as_str()
        .expect("digest");
    let out: Value =
        serde_json::from_str(&p.read(&format!("cache/objects/{}/{}", &digest[..2], &digest[2..])))
            .expect("metrics.json");
    assert_eq!(out["filter"], "remove_whitespace");
    assert_eq!(out["provenance"]["lm_eval_version"], "0.4.13");
    assert_eq!(out["provenance"]["model"], "dummy");
    assert_eq!(
        out["provenance"]["task_config"]["output_type"],
        "generate_until"
    );
}

#[test]
fn a_task_or_filter_the_file_lacks_fails_the_node_naming_what_it_has() {
    let p = with_real_file();
    p.write(
        "pipelines/l.yaml",
        "pipeline: l\nnodes:\n  x:\n    op: ingest.lm_eval\n    params: {path: runs/vllm/results_2026-12-04T17-39-02.664975.json, task: nq_open}\n",
    );
    let e = p.fails(&["run", "-p", "l"], 1);
    assert!(
        e.contains("no task `nq_open` in the file (it has: mini_mc, mini_qa)"),
        "{e}"
    );
    p.write(
        "pipelines/l.yaml",
        "pipeline: l\nnodes:\n  x:\n    op: ingest.lm_eval\n    params: {path: runs/vllm/results_2026-12-04T17-39-02.664975.json}\n",
    );
    let e = p.fails(&["run", "-p", "l"], 1);
    assert!(
        e.contains("the file holds 2 tasks; set param `task` to one of: mini_mc, mini_qa"),
        "{e}"
    );
}

#[test]
fn the_miniature_exports_as_lm_eval_results_and_reads_back() {
    let out = tempfile::tempdir().expect("tmp");
    Cli::at(ROOT)
        .args(&["metrics", "-p", "mini", "qa", "style", "--lm-eval"])
        .arg(out.path())
        .run();
    let dir = out.path().join("mini__size_l_data_task_tokens_30000");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .expect("model dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("results_2026-") && files[0].ends_with(".json"));
    let text = std::fs::read_to_string(dir.join(&files[0])).expect("read");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let real: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ROOT}/{REAL}")).expect("fixture"))
            .expect("json");
    // The keys lm-eval writes (its environment report aside).
    for k in real.as_object().expect("object").keys() {
        if [
            "pretty_env_info",
            "transformers_version",
            "lm_eval_version",
            "upper_git_hash",
        ]
        .contains(&k.as_str())
        {
            continue;
        }
        assert!(doc.get(k).is_some(), "exported file lacks `{k}`");
    }
    for k in real["config"].as_object().expect("config").keys() {
        assert!(doc["config"].get(k).is_some(), "config lacks `{k}`");
    }
    let qa = &doc["results"]["qa"];
    assert_eq!(qa["alias"], "qa");
    assert_eq!(qa["em,none"], 0.7375);
    assert_eq!(qa["em_stderr,none"], "N/A");
    assert_eq!(
        doc["n-samples"]["qa"],
        serde_json::json!({"original": 400, "effective": 400})
    );
    assert_eq!(doc["higher_is_better"]["qa"]["em"], true);
    assert_eq!(
        doc["configs"]["qa"]["metadata"]["repro"]["node"],
        "qa[from=imitate,size=l,data=task,tokens=30000]"
    );
    assert!(doc["results"]["style"]["unigram,none"].is_number());
    // Read back through the op.
    let p = Project::new();
    p.write("runs/exported.json", &text);
    p.write(
        "pipelines/b.yaml",
        "pipeline: b\nnodes:\n  back:\n    op: ingest.lm_eval\n    params: {path: runs/exported.json, task: qa}\n",
    );
    p.ok(&["run", "-p", "b"]);
    p.cli()
        .args(&["metrics", "-p", "b", "--csv"])
        .stdout(
            "node,chance_em,contains,em,majority_em,n,n_shot\nback,0.04333333333333339,0.7375,0.7375,0.0425,400,0\n",
        )
        .run();
}
