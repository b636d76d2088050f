//! Params in one canonical form: writing a default and omitting it give one
//! key; any other value gives another (compiled by the real binary).

mod common;

use common::Project;
use serde_json::Value;
use std::collections::BTreeMap;

const PIPELINE: &str = r#"
pipeline: t
nodes:
  omitted:
    op: eval.humaneval
    inputs: {problems: file:problems.jsonl, completions: file:completions.jsonl}
  written:
    op: eval.humaneval
    inputs: {problems: file:problems.jsonl, completions: file:completions.jsonl}
    params: {k: [1], timeout_s: 3, memory_mb: 1024}
  other:
    op: eval.humaneval
    inputs: {problems: file:problems.jsonl, completions: file:completions.jsonl}
    params: {k: [1, 10]}
  float_default:
    op: eval.humaneval
    inputs: {problems: file:problems.jsonl, completions: file:completions.jsonl}
    params: {timeout_s: 3.0}
  not_default:
    op: eval.humaneval
    inputs: {problems: file:problems.jsonl, completions: file:completions.jsonl}
    params: {timeout_s: 3.5}
"#;

fn keys(p: &Project) -> BTreeMap<String, String> {
    let v: Value = p.json(&["run", "-p", "t", "--dry-run", "--json"]);
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

#[test]
fn a_written_default_and_an_omitted_one_give_one_key() {
    let p = Project::new();
    p.write("pipelines/t.yaml", PIPELINE);
    p.write("problems.jsonl", "{}\n");
    p.write("completions.jsonl", "{}\n");
    let k = keys(&p);
    assert_eq!(k["omitted"], k["written"]);
    assert_eq!(k["omitted"], k["float_default"]);
    assert_ne!(k["omitted"], k["other"]);
    assert_ne!(k["omitted"], k["not_default"]);
    // The preimage holds no param equal to its default.
    let v = p.json(&["explain", "written", "-p", "t", "--json"]);
    let text = v.to_string();
    assert_eq!(v[0]["params"], serde_json::json!({}), "{text}");
    assert!(v[0]["default_params"]["memory_mb"].is_number(), "{text}");
}
