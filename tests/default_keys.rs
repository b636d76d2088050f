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

const TRAIN_PIPELINE: &str = r#"
pipeline: tr
nodes:
  cpu_omitted:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
  cpu_written:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {dtype: f32, recompute: false}
  gpu_omitted:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    resources: {gpus: 1}
  gpu_bf16:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {dtype: bf16}
  micro:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {micro_batch_size: 4}
  recompute:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {recompute: true}
  torch_cpu:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {engine: torch}
  torch_gpu:
    op: lm.finetune
    inputs: {base: file:model, data: file:data.jsonl}
    params: {engine: torch}
    resources: {gpus: 8}
"#;

/// The training params added for single-device training (`dtype`,
/// `micro_batch_size`, `recompute`) leave a default node's key as it was;
/// a candle node granted GPUs trains in bf16 (in its key); a torch node
/// never gets `dtype` (its `precision` governs), so its key does not
/// depend on its GPUs.
#[test]
fn training_params_keep_default_keys_and_bf16_is_the_gpu_default() {
    let p = Project::new();
    p.write("pipelines/tr.yaml", TRAIN_PIPELINE);
    p.write("model/config.json", "{}\n");
    p.write("data.jsonl", "{\"messages\": []}\n");
    p.write("trainer/fsdp_train.py", "print('v1')\n");
    p.write("trainer/requirements.lock", "torch==2.15.0\n");
    let k = p.keys("tr");
    assert_eq!(k["cpu_omitted"], k["cpu_written"]);
    assert_eq!(k["gpu_omitted"], k["gpu_bf16"]);
    assert_ne!(k["cpu_omitted"], k["gpu_omitted"]);
    assert_ne!(k["cpu_omitted"], k["micro"]);
    assert_ne!(k["cpu_omitted"], k["recompute"]);
    assert_eq!(k["torch_cpu"], k["torch_gpu"]);
    let v = p.json(&["explain", "cpu_omitted", "-p", "tr", "--json"]);
    assert_eq!(v[0]["params"], serde_json::json!({}), "{v}");
    let v = p.json(&["explain", "torch_gpu", "-p", "tr", "--json"]);
    assert!(v[0]["params"].get("dtype").is_none(), "{v}");
}
