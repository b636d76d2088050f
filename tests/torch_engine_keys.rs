//! What `engine: torch` puts into a `lm.finetune` key, and what it leaves
//! alone: compiled by the real binary (`repro run --dry-run --json`), no
//! Python needed.

mod common;

use common::Project;

const PIPELINE: &str = r#"
pipeline: t
nodes:
  plain:
    op: lm.finetune
    inputs: {base: file:base, data: file:data.jsonl}
    params: {seq_len: 64}
  candle:
    op: lm.finetune
    inputs: {base: file:base, data: file:data.jsonl}
    params: {seq_len: 64, engine: candle}
  torch:
    op: lm.finetune
    inputs: {base: file:base, data: file:data.jsonl}
    params: {seq_len: 64, engine: torch}
    resources: {executor: slurm, gpus: 8, nodes: 2}
  torch_tuned:
    op: lm.finetune
    inputs: {base: file:base, data: file:data.jsonl}
    params: {seq_len: 64, engine: torch, micro_batch: 4, checkpoint_every: 10, activation_checkpointing: false}
  torch_f32:
    op: lm.finetune
    inputs: {base: file:base, data: file:data.jsonl}
    params: {seq_len: 64, engine: torch, precision: f32}
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("pipelines/t.yaml", PIPELINE);
    p.write("base/config.json", "{}\n");
    p.write("data.jsonl", "{\"messages\": []}\n");
    p.write("trainer/fsdp_train.py", "print('v1')\n");
    p.write("trainer/requirements.lock", "torch==2.15.0\n");
    p
}

#[test]
fn the_engine_the_trainer_and_the_lock_file_are_in_the_key() {
    let p = project();
    let k = p.keys("t");
    // The engine is in the key: the same data and hyper-parameters do not
    // look alike across engines.
    assert_ne!(k["plain"], k["torch"]);
    assert_ne!(k["candle"], k["torch"]);
    // `engine: candle` is the default: writing it and omitting it give one key.
    assert_eq!(k["plain"], k["candle"]);
    // Precision is semantic; micro-batch, checkpoints and recomputation are not.
    assert_ne!(k["torch"], k["torch_f32"]);
    assert_eq!(k["torch"], k["torch_tuned"]);
    // Resources (GPUs, nodes) never are: `torch` and `torch_tuned` differ only there.

    // The trainer script's digest is in the torch keys only.
    p.write("trainer/fsdp_train.py", "print('v2')\n");
    let k2 = p.keys("t");
    assert_ne!(k["torch"], k2["torch"]);
    assert_eq!(k["plain"], k2["plain"]);
    assert_eq!(k["candle"], k2["candle"]);
    // So is the lock file's.
    p.write("trainer/requirements.lock", "torch==2.16.0\n");
    let k3 = p.keys("t");
    assert_ne!(k2["torch"], k3["torch"]);
    assert_eq!(k["plain"], k3["plain"]);
}

#[test]
fn an_omitted_engine_leaves_the_preimage_as_before() {
    let p = project();
    let v = p.json(&["explain", "plain", "-p", "t", "--json"]);
    let text = v.to_string();
    assert!(!text.contains("engine"), "{text}");
    assert!(!text.contains("python_lock"), "{text}");
    let v = p.json(&["explain", "torch", "-p", "t", "--json"]);
    let text = v.to_string();
    assert!(text.contains("\"engine\""), "{text}");
    assert!(
        text.contains("python_lock") && text.contains("trainer"),
        "{text}"
    );
}

#[test]
fn torch_only_params_need_the_torch_engine() {
    let p = project();
    p.write(
        "pipelines/bad.yaml",
        "pipeline: bad\nnodes:\n  f:\n    op: lm.finetune\n    inputs: {base: file:base, data: file:data.jsonl}\n    params: {precision: f32}\n",
    );
    let err = p.fails(&["run", "-p", "bad", "--dry-run"], 2);
    assert!(
        err.contains("`precision` applies to `engine: torch` only"),
        "{err}"
    );
    p.write(
        "pipelines/bad2.yaml",
        "pipeline: bad2\nnodes:\n  f:\n    op: lm.finetune\n    inputs: {base: file:base, data: file:data.jsonl}\n    params: {engine: jax}\n",
    );
    let err = p.fails(&["run", "-p", "bad2", "--dry-run"], 2);
    assert!(
        err.contains("`engine` must be `candle` or `torch`"),
        "{err}"
    );
}
