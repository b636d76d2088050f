//! The torch engine of `lm.finetune` against the candle engine, on the CPU.
//!
//! Ignored by default: they need a Python with the packages of
//! `trainer/requirements.lock`, named by `REPRO_PYTHON`.
//! `bash scripts/check-torch-engine.sh` makes that venv and runs them:
//!
//! 1. parity: a tiny LLaMA in f32, one process, torch against candle on the
//!    same windows: the losses of 20 steps agree within 1e-4;
//! 2. sharding: 2 processes (FSDP2 on gloo) against 1, same windows;
//! 3. round trip: the exported directory loads in repro and its greedy
//!    generations equal those of `transformers`;
//! 4. resume: a run killed after a checkpoint and resumed equals an
//!    uninterrupted run.
//!
//! Each prints its measurements on lines starting `torch-check:`.

mod common;

use candle_core::Device;
use common::OpRun;
use repro::model::generate::{GenConfig, generate};
use repro::model::tokenizer::{MINI_SPECIALS, Message, TextTokenizer, train_bpe};
use repro::model::train::{self, TrainConfig};
use repro::model::{LlamaConfig, checkpoint, init};
use repro::torch::launch::{self, Topology};
use repro::torch::windows::{self, PlanSettings};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const STEPS: usize = 20;
const BATCH: usize = 4;
const SEQ: usize = 32;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("REPRO_PYTHON")?;
    Some(PathBuf::from(p))
}

macro_rules! need_python {
    () => {
        match python() {
            Some(p) => p,
            None => {
                eprintln!("REPRO_PYTHON is not set: run scripts/check-torch-engine.sh");
                return;
            }
        }
    };
}

/// Chat records: short exchanges with varied wording.
fn conversations() -> Vec<Vec<Message>> {
    let m = |role: &str, content: String| Message {
        role: role.into(),
        content,
    };
    let names = ["Ada", "Bob", "Cleo", "Dan", "Eve", "Finn", "Gus", "Hana"];
    let things = ["apples", "rivers", "stars", "trains", "songs", "maps"];
    let mut out = Vec::new();
    for i in 0..24 {
        let n = names[i % names.len()];
        let t = things[i % things.len()];
        out.push(vec![
            m("user", format!("Tell me about {n} and the {t}.")),
            m(
                "assistant",
                format!("Certainly! {n} likes {t} very much. I hope this helps!"),
            ),
            m("user", format!("Why {t}?")),
            m("assistant", format!("Because {t} make {n} happy.")),
        ]);
    }
    out
}

/// A tiny random LLaMA (GQA, untied head) and its BPE tokenizer, as a
/// Hugging Face directory.
fn tiny_base(dir: &Path) -> TextTokenizer {
    let mut texts: Vec<String> = Vec::new();
    for c in conversations() {
        for m in c {
            texts.push(m.content);
        }
    }
    let tk = train_bpe(texts.iter().map(String::as_str), 300, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let cfg: LlamaConfig = serde_json::from_value(json!({
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": tok.vocab_size(), "max_position_embeddings": 256,
        "tie_word_embeddings": false
    }))
    .unwrap();
    let (_, vars) = init(&cfg, 11, &Device::Cpu, candle_core::DType::F32).unwrap();
    let weights: Vec<_> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    checkpoint::save(dir, &cfg, &weights, &tok).unwrap();
    TextTokenizer::load_dir(dir).unwrap()
}

fn write_data(path: &Path) {
    let text: String = conversations()
        .into_iter()
        .map(|c| json!({ "messages": c }).to_string() + "\n")
        .collect();
    std::fs::write(path, text).unwrap();
}

fn records(path: &Path) -> Vec<Value> {
    repro::ops::lm_common::read_jsonl(path, "data").unwrap()
}

/// Params giving exactly [`STEPS`] steps for `windows` windows.
fn params(windows: usize) -> Map<String, Value> {
    let per_epoch = windows.div_ceil(BATCH);
    let epochs = (STEPS as f64 - 0.5) / per_epoch as f64;
    json!({
        "seq_len": SEQ, "batch_size": BATCH, "epochs": epochs, "lr": 3e-3,
        "warmup": 0.1, "min_lr_ratio": 0.1, "weight_decay": 0.1, "clip": 1.0, "seed": 5
    })
    .as_object()
    .cloned()
    .unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    data: PathBuf,
    tok: TextTokenizer,
    cfg: TrainConfig,
    params: Map<String, Value>,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let tok = tiny_base(&base);
    let data = tmp.path().join("data.jsonl");
    write_data(&data);
    let (ex, _) = repro::ops::lm_common::examples(&tok, &records(&data), None).unwrap();
    let n = train::pack(&ex, SEQ).len();
    let params = params(n);
    let cfg = repro::ops::lm_common::train_config(&params);
    assert_eq!(train::total_steps(&cfg, n), STEPS);
    Fixture {
        _tmp: tmp,
        base,
        data,
        tok,
        cfg,
        params,
    }
}

/// The candle engine's loss per step, at full precision.
fn candle_losses(f: &Fixture) -> Vec<f64> {
    let loaded = repro::model::load::load(&f.base, true, &Device::Cpu).unwrap();
    let (ex, _) =
        repro::ops::lm_common::examples(&loaded.tokenizer, &records(&f.data), None).unwrap();
    let windows = train::pack(&ex, f.cfg.seq_len);
    let vars: Vec<_> = loaded.vars.iter().map(|(_, v)| v.clone()).collect();
    let r = train::train(loaded.model.as_ref(), &vars, &windows, &f.cfg, |_, _, _| {
        true
    })
    .unwrap();
    r.losses
}

/// Runs `lm.finetune` with `extra` params in a fresh work directory (its
/// implicit inputs, the trainer's files, from this repository).
fn run_op(f: &Fixture, extra: Value) -> (tempfile::TempDir, repro::op::RunResult) {
    let ran = OpRun::new("lm.finetune")
        .params(Value::Object(f.params.clone()))
        .params(extra)
        .input("base", &f.base)
        .input("data", &f.data)
        .threads(2)
        .show_status()
        .run();
    ran.ok();
    let (r, work) = ran.into_parts();
    (work, r.unwrap())
}

fn result_losses(run_dir: &Path) -> Vec<f64> {
    let text = std::fs::read_to_string(run_dir.join("result.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "different step counts");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

fn settings(checkpoint_every: usize) -> PlanSettings {
    PlanSettings {
        precision: "f32".into(),
        micro_batch: 1,
        checkpoint_every,
        activation_checkpointing: true,
        threads: 1,
    }
}

/// Prepares a run directory and runs the trainer directly with `nproc`
/// processes; returns whether it succeeded.
fn run_trainer(f: &Fixture, dir: &Path, nproc: usize, every: usize, extra: &[String]) -> bool {
    let py = python().unwrap();
    let (ex, _) = repro::ops::lm_common::examples(&f.tok, &records(&f.data), None).unwrap();
    let p = windows::prepare(
        dir,
        &f.base,
        &dir.join("model"),
        &ex,
        &f.cfg,
        &settings(every),
    )
    .unwrap();
    let script = launch::script(
        &py,
        &root().join("trainer/fsdp_train.py"),
        &p.plan,
        Topology::Single { nproc },
        extra,
    );
    let s = dir.join("launch.sh");
    std::fs::write(&s, script).unwrap();
    let r = repro::torch::run::run(&repro::torch::run::Launch {
        script: &s,
        dir,
        env: &[("OMP_NUM_THREADS".into(), "1".into())],
        cancelled: &|| false,
        status: &|_| {},
        steps: p.steps,
    });
    if let Err(e) = &r
        && extra.is_empty()
    {
        eprintln!("trainer: {e}");
        if let repro::torch::TorchError::Trainer { stderr, .. } = e {
            eprintln!("{stderr}");
        }
    }
    r.is_ok()
}

fn weights(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(k, v)| {
            let d = v
                .data()
                .chunks(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (k, d)
        })
        .collect()
}

fn weight_diff(a: &Path, b: &Path) -> f64 {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.keys().collect::<Vec<_>>(), wb.keys().collect::<Vec<_>>());
    let mut worst = 0f64;
    for (k, x) in &wa {
        for (p, q) in x.iter().zip(&wb[k]) {
            worst = worst.max((p - q).abs() as f64);
        }
    }
    worst
}

#[test]
#[ignore = "needs REPRO_PYTHON (scripts/check-torch-engine.sh)"]
fn parity_torch_matches_candle_over_20_steps() {
    let _py = need_python!();
    let f = fixture();
    let want = candle_losses(&f);
    let (work, r) = run_op(&f, json!({"engine": "torch", "precision": "f32"}));
    let got = result_losses(&work.path().join("torch"));
    let d = max_diff(&want, &got);
    println!(
        "torch-check: parity steps={} max_abs_loss_diff={d:.3e}",
        got.len()
    );
    println!(
        "torch-check: parity first_loss candle={:.6} torch={:.6} last_loss candle={:.6} torch={:.6}",
        want[0],
        got[0],
        want[STEPS - 1],
        got[STEPS - 1]
    );
    for k in ["torch", "transformers", "python", "cuda", "device"] {
        println!(
            "torch-check: provenance.environment {k}={}",
            r.environment[k]
        );
    }
    assert_eq!(got.len(), STEPS);
    assert!(
        want[STEPS - 1] < want[0] - 0.1,
        "the run must learn: {want:?}"
    );
    assert!(
        d < 1e-4,
        "loss curves differ by {d}: candle {want:?} torch {got:?}"
    );
    // The op's log and metrics have the candle engine's shape.
    let log: Value =
        serde_json::from_str(&std::fs::read_to_string(work.path().join("out/train.json")).unwrap())
            .unwrap();
    assert_eq!(log["engine"], "torch");
    assert_eq!(log["steps"], STEPS);
    assert_eq!(log["loss_curve"].as_array().unwrap().len(), STEPS);
    assert_eq!(r.metrics["world_size"], 1);
}

#[test]
#[ignore = "needs REPRO_PYTHON (scripts/check-torch-engine.sh)"]
fn sharding_two_processes_match_one() {
    let _py = need_python!();
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    assert!(run_trainer(&f, &one, 1, 0, &[]));
    assert!(run_trainer(&f, &two, 2, 0, &[]));
    let d = max_diff(&result_losses(&one), &result_losses(&two));
    let w = weight_diff(&one.join("model"), &two.join("model"));
    println!(
        "torch-check: sharding fsdp2-gloo 2 vs 1 process max_abs_loss_diff={d:.3e} max_abs_weight_diff={w:.3e}"
    );
    assert!(d < 1e-5, "2 processes differ from 1 by {d}");
    assert!(w < 1e-4, "weights differ by {w}");
}

#[test]
#[ignore = "needs REPRO_PYTHON (scripts/check-torch-engine.sh)"]
fn round_trip_export_loads_in_repro_and_generates_like_transformers() {
    let py = need_python!();
    let f = fixture();
    // Trained harder than the parity run (3x the steps, a higher rate), so
    // that the continuations depend on the prompt.
    let epochs = f.params["epochs"].as_f64().unwrap() * 3.0;
    let (work, _) = run_op(
        &f,
        json!({"engine": "torch", "precision": "f32", "lr": 0.02, "epochs": epochs}),
    );
    let out = work.path().join("out/model");
    let loaded = repro::model::load::load(&out, false, &Device::Cpu).unwrap();
    let prompts: Vec<Vec<u32>> = [
        "Tell me about Ada and the stars.",
        "Why maps?",
        "Finn",
        "What do trains and rivers have in common?",
    ]
    .iter()
    .map(|q| {
        let msgs = vec![Message {
            role: "user".into(),
            content: q.to_string(),
        }];
        let text = loaded.tokenizer.render_chat(&msgs, true).unwrap();
        loaded.tokenizer.encode_prompt(&text).unwrap()
    })
    .collect();
    let stops = loaded.tokenizer.stop_ids();
    let cfg = GenConfig {
        max_new_tokens: 16,
        temperature: 0.0,
        batch_size: 1,
        seed: 0,
        ..Default::default()
    };
    let ours: Vec<Vec<u32>> = generate(loaded.model.as_ref(), &prompts, &stops, &cfg, |_| false)
        .unwrap()
        .into_iter()
        .map(|g| g.ids)
        .collect();
    let script = r#"
import json, sys, torch
from transformers import AutoModelForCausalLM
d, prompts, stops, n = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
out = []
for p in prompts:
    ids = torch.tensor([p])
    with torch.no_grad():
        g = m.generate(ids, max_new_tokens=n, do_sample=False, eos_token_id=stops, pad_token_id=stops[0])
    new = g[0, len(p):].tolist()
    cut = [i for i, t in enumerate(new) if t in stops]
    out.append(new[: cut[0]] if cut else new)
last = []
for p in prompts:
    with torch.no_grad():
        last.append(m(torch.tensor([p])).logits[0, -1].tolist())
print(json.dumps({"gen": out, "logits": last}))
"#;
    let o = std::process::Command::new(&py)
        .args(["-c", script])
        .arg(&out)
        .arg(serde_json::to_string(&prompts).unwrap())
        .arg(serde_json::to_string(&stops).unwrap())
        .arg("16")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let theirs: Vec<Vec<u32>> = serde_json::from_value(v["gen"].clone()).unwrap();
    // The next-token logits of each prompt, repro against transformers.
    let mut worst = 0f64;
    for (p, want) in prompts.iter().zip(v["logits"].as_array().unwrap()) {
        let ids = candle_core::Tensor::from_vec(p.clone(), (1, p.len()), &Device::Cpu).unwrap();
        let got: Vec<f32> = loaded
            .model
            .forward(&ids, None, None, true)
            .unwrap()
            .get(0)
            .unwrap()
            .get(p.len() - 1)
            .unwrap()
            .to_vec1()
            .unwrap();
        for (g, w) in got.iter().zip(want.as_array().unwrap()) {
            worst = worst.max((*g as f64 - w.as_f64().unwrap()).abs());
        }
    }
    println!("torch-check: round-trip max_abs_next_token_logit_diff={worst:.3e}");
    assert!(worst < 1e-4, "logits differ by {worst}");
    let same = ours.iter().zip(&theirs).filter(|(a, b)| a == b).count();
    let tokens: usize = ours.iter().map(Vec::len).sum();
    println!(
        "torch-check: round-trip {same}/{} greedy generations identical ({tokens} tokens from repro)",
        prompts.len()
    );
    for (a, b) in ours.iter().zip(&theirs) {
        println!(
            "torch-check:   repro {:?} | transformers {:?}",
            loaded.tokenizer.decode(a).unwrap(),
            loaded.tokenizer.decode(b).unwrap()
        );
    }
    assert_eq!(ours, theirs);
    assert!(tokens > 0);
}

#[test]
#[ignore = "needs REPRO_PYTHON (scripts/check-torch-engine.sh)"]
fn resume_after_a_kill_equals_an_uninterrupted_run() {
    let _py = need_python!();
    let f = fixture();
    let tmp = tempfile::tempdir().unwrap();
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    assert!(run_trainer(&f, &whole, 1, 5, &[]));
    // Killed after step 12: the last checkpoint is after step 10.
    assert!(!run_trainer(
        &f,
        &cut,
        1,
        5,
        &["--fail-after-step".into(), "12".into()]
    ));
    assert!(cut.join("ckpt/step-00000010").is_dir());
    assert!(!cut.join("result.json").exists());
    assert!(run_trainer(&f, &cut, 1, 5, &[]));
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(cut.join("result.json")).unwrap()).unwrap();
    assert_eq!(r["resumed_from"], 10);
    let d = max_diff(&result_losses(&whole), &result_losses(&cut));
    let w = weight_diff(&whole.join("model"), &cut.join("model"));
    println!(
        "torch-check: resume killed after step 12, resumed from 10: max_abs_loss_diff={d:.3e} max_abs_weight_diff={w:.3e}"
    );
    assert_eq!(d, 0.0, "resumed losses differ by {d}");
    assert_eq!(w, 0.0, "resumed weights differ by {w}");
}
