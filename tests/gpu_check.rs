//! examples/gpu_check.rs (the Rust half of scripts/gpu-check.sh) on the
//! CPU with tiny shapes: every mode parses its command line, runs, and
//! reports what the GPU run will report; the logits check reproduces
//! tests/dtype.rs's bf16 figures for its tiny models and holds their bounds.

#[allow(dead_code)]
#[path = "../examples/gpu_check.rs"]
mod gpu_check;

use candle_core::{DType, Device, Tensor};
use clap::Parser;
use serde_json::{Value, json};
use std::path::Path;

/// Runs `gpu_check ARGS...`, returning its result and its records.
fn run(args: &[&str]) -> (Result<bool, String>, Vec<Value>) {
    let cli =
        gpu_check::Cli::try_parse_from(std::iter::once("gpu_check").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let mut out = Vec::new();
    let r = gpu_check::run(cli, &mut |v| out.push(v.clone())).map_err(|e| e.to_string());
    (r, out)
}

fn tiny_config() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 120,
        "max_position_embeddings": 64, "tie_word_embeddings": true
    })
}

/// A tiny LLaMA model directory (as our checkpoints write one).
fn model_dir(dir: &Path) {
    use repro::model::tokenizer::{MINI_SPECIALS, TextTokenizer, train_bpe};
    let texts = ["a small corpus of words", "more words for the tokenizer"];
    let tk = train_bpe(texts.iter().copied(), 120, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let mut cfg: repro::model::LlamaConfig = serde_json::from_value(tiny_config()).unwrap();
    cfg.vocab_size = tok.vocab_size();
    let (_, vars) = repro::model::init(&cfg, 1, &Device::Cpu, DType::F32).unwrap();
    let weights: Vec<(String, Tensor)> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    repro::model::checkpoint::save(dir, &cfg, &weights, &tok).unwrap();
}

#[test]
fn logits_of_the_builtin_models_match_tests_dtype() {
    for (which, want) in [("tiny-llama", 0.015), ("tiny-gpt2", 0.010)] {
        let (r, out) = run(&[
            "logits",
            "--builtin",
            which,
            "--device",
            "cpu",
            "--tolerance",
            "0.05",
        ]);
        assert_eq!(r, Ok(true), "{which}: {out:?}");
        let rec = &out[0];
        assert_eq!(rec["part"], "logits");
        assert_eq!(rec["ok"], true);
        assert_eq!(rec["dtype"], "bf16");
        let d = rec["max_rel_diff"].as_f64().unwrap();
        assert!(
            (d - want).abs() < 0.001,
            "{which}: {d} (tests/dtype.rs measures {want})"
        );
        assert_eq!(rec["first_token_equal"], 6);
        assert!(rec["agreement"].as_f64().unwrap() >= 0.9);
        assert_eq!(rec["cpu_max_rel_diff"], rec["max_rel_diff"]);
    }
    // A bound that cannot hold fails the check (exit 1), with the record.
    let (r, out) = run(&[
        "logits",
        "--builtin",
        "tiny-llama",
        "--device",
        "cpu",
        "--tolerance",
        "0.001",
    ]);
    assert_eq!(r, Ok(false));
    assert_eq!(out[0]["ok"], false);
}

#[test]
fn generate_and_train_report_their_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    model_dir(&model);
    let prompts = tmp.path().join("prompts.jsonl");
    std::fs::write(&prompts, "[5, 6, 7]\n[8, 9, 10]\n[11, 12, 13]\n").unwrap();
    let (m, p) = (model.to_str().unwrap(), prompts.to_str().unwrap());
    let (r, out) = run(&[
        "logits",
        "--model",
        m,
        "--device",
        "cpu",
        "--new-tokens",
        "3",
    ]);
    assert_eq!(r, Ok(true), "{out:?}");
    assert_eq!(out[0]["ok"], Value::Null, "no --tolerance: reported only");
    let (r, out) = run(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        p,
        "--device",
        "cpu",
        "--batch",
        "1",
        "--batch",
        "3",
        "--new-tokens",
        "4",
        "--repeats",
        "2",
    ]);
    assert_eq!(r, Ok(true), "{out:?}");
    assert_eq!(out.len(), 2);
    for (rec, batch) in out.iter().zip([1, 3]) {
        assert_eq!(rec["batch"], batch);
        assert_eq!(
            rec["generated_tokens"],
            batch * 4,
            "every row decodes exactly N tokens"
        );
        assert_eq!(rec["dtype"], "f32", "the CPU's default");
        assert!(rec["gen_tok_s"].as_f64().unwrap() > 0.0);
    }
    let (r, _) = run(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        p,
        "--device",
        "cpu",
        "--batch",
        "4",
    ]);
    assert!(r.unwrap_err().contains("has 3 prompts"));

    let config = tmp.path().join("config.json");
    std::fs::write(&config, tiny_config().to_string()).unwrap();
    let (r, out) = run(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
        "--seq",
        "16",
        "--micro-batch",
        "2",
        "--warmup-steps",
        "1",
        "--steps",
        "3",
    ]);
    assert_eq!(r, Ok(true), "{out:?}");
    let rec = &out[0];
    assert_eq!(rec["part"], "train");
    assert_eq!(rec["timed_steps"], 3);
    assert_eq!(rec["tokens_per_step"], 32);
    assert_eq!(rec["step_s_all"].as_array().unwrap().len(), 4);
    assert!(rec["max_weight_change"].as_f64().unwrap() > 0.0);
    assert!(rec["tokens_per_s"].as_f64().unwrap() > 0.0);
    let (r, _) = run(&[
        "train",
        "--config",
        config.to_str().unwrap(),
        "--device",
        "cpu",
        "--seq",
        "65",
    ]);
    assert!(r.unwrap_err().contains("max_position_embeddings 64"));
}

#[test]
fn devices_open_or_say_why_not() {
    let (r, out) = run(&["device", "--device", "cpu"]);
    assert_eq!(r, Ok(true));
    assert_eq!(out[0]["matmul_ok"], true);
    let (r, _) = run(&["device", "--device", "gpu"]);
    assert!(r.unwrap_err().contains("expected cpu, cuda or cuda:N"));
    if !cfg!(feature = "cuda") {
        let (r, _) = run(&["device", "--device", "cuda:0"]);
        assert!(r.unwrap_err().contains("cannot open CUDA device 0"));
    }
}
