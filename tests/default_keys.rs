//! Params in one canonical form: writing a default and omitting it give one
//! key; any other value gives another (compiled by the real binary).

mod common;

use common::Project;

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

#[test]
fn a_written_default_and_an_omitted_one_give_one_key() {
    let p = Project::new();
    p.write("pipelines/t.yaml", PIPELINE);
    p.write("problems.jsonl", "{}\n");
    p.write("completions.jsonl", "{}\n");
    let k = p.keys("t");
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

const GPU_PIPELINE: &str = r#"
pipeline: g
nodes:
  cpu_omitted:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
  cpu_f32:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
    params: {dtype: f32}
  gpu_omitted:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
    resources: {gpus: 1}
  gpu_bf16:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
    params: {dtype: bf16}
    resources: {gpus: 1}
  gpu_f32:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
    params: {dtype: f32}
    resources: {gpus: 1}
  cpu_on_gpu_node:
    op: lm.generate
    inputs: {model: file:model, prompts: file:prompts.jsonl}
    params: {device: cpu, dtype: f32}
    resources: {gpus: 1}
"#;

/// `dtype` defaults to f32 on the CPU and bf16 on a node granted GPUs: the
/// GPU default is written into the node's params when the pipeline
/// compiles, so each default has one key, and an f32 result is one key
/// wherever it was computed (`device` is not in the key).
#[test]
fn the_dtype_default_depends_on_the_node_s_gpus_and_enters_the_key_once() {
    let p = Project::new();
    p.write("pipelines/g.yaml", GPU_PIPELINE);
    p.write("model/config.json", "{}\n");
    p.write("prompts.jsonl", "{\"id\": \"1\", \"text\": \"hi\"}\n");
    let k = p.keys("g");
    assert_eq!(k["cpu_omitted"], k["cpu_f32"]);
    assert_eq!(k["gpu_omitted"], k["gpu_bf16"]);
    assert_ne!(k["cpu_omitted"], k["gpu_omitted"]);
    assert_eq!(k["cpu_omitted"], k["gpu_f32"]);
    assert_eq!(k["cpu_omitted"], k["cpu_on_gpu_node"]);
    let v = p.json(&["explain", "gpu_omitted", "-p", "g", "--json"]);
    assert_eq!(v[0]["params"]["dtype"], "bf16", "{v}");
}
