//! `eval.nq` and `eval.mmlu` end to end on tiny random models and committed
//! samples of the real data (tests/data/eval/), checked against an
//! independent computation: the op's predictions equal a direct greedy
//! decode / a direct forward pass, and its scores follow from them.

mod common;

use candle_core::{DType, Device, IndexOp, Tensor};
use common::OpRun;
use repro::eval::{mmlu, nq};
use repro::model::generate::{GenConfig, generate};
use repro::model::tokenizer::{MINI_SPECIALS, TextTokenizer, train_bpe};
use repro::model::{LlamaConfig, checkpoint, init};
use repro::op::{OpError, RunResult};
use repro::ops;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/eval")
}

/// A tiny random LLaMA with a BPE tokenizer trained on the fixtures' text;
/// `flat` zeroes the final norm so every logit is 0.
fn tiny_model(dir: &Path, flat: bool) {
    let mut texts = Vec::new();
    for f in ["nq_test.jsonl", "nq_pool.jsonl"] {
        texts.push(std::fs::read_to_string(fixtures().join(f)).unwrap());
    }
    for split in ["dev", "test"] {
        for e in std::fs::read_dir(fixtures().join("mmlu").join(split)).unwrap() {
            texts.push(std::fs::read_to_string(e.unwrap().path()).unwrap());
        }
    }
    // Enough `Answer: X` that each ` X` becomes one token.
    texts.push("Answer these questions:\nQ: A:\n".into());
    for _ in 0..50 {
        texts.push("Answer: A\nAnswer: B\nAnswer: C\nAnswer: D\n".into());
    }
    let tk = train_bpe(texts.iter().map(String::as_str), 400, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let cfg: LlamaConfig = serde_json::from_value(json!({
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": tok.vocab_size(), "max_position_embeddings": 4096,
        "tie_word_embeddings": false
    }))
    .unwrap();
    let (_, vars) = init(&cfg, 3, &Device::Cpu, DType::F32).unwrap();
    let weights: Vec<_> = vars
        .iter()
        .map(|(n, v)| {
            let t = v.as_tensor().clone();
            if flat && n == "model.norm.weight" {
                (n.clone(), t.zeros_like().unwrap())
            } else {
                (n.clone(), t)
            }
        })
        .collect();
    checkpoint::save(dir, &cfg, &weights, &tok).unwrap();
}

fn run(
    name: &str,
    params: Value,
    inputs: &[(&str, PathBuf)],
) -> (Result<RunResult, OpError>, tempfile::TempDir) {
    OpRun::new(name)
        .params(params)
        .inputs(inputs)
        .run()
        .into_parts()
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn nq_predictions_equal_direct_greedy_decoding_and_em_follows_from_them() {
    let model = tempfile::tempdir().unwrap();
    tiny_model(model.path(), false);
    let questions = fixtures().join("nq_test.jsonl");
    let pool = fixtures().join("nq_pool.jsonl");
    let params = json!({"shots": 2, "max_new_tokens": 6, "batch_size": 3});
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("questions", questions.clone()),
        ("pool", pool.clone()),
    ];
    let (res, work) = run("eval.nq", params.clone(), &inputs);
    let res = res.unwrap();
    let preds = lines(&work.path().join("out/predictions.jsonl"));
    let qs = nq::read_questions(&questions).unwrap();
    let pool_qs = nq::read_questions(&pool).unwrap();
    assert_eq!(preds.len(), qs.len());
    // Independent decode, one prompt at a time.
    let loaded = repro::model::load::load(model.path(), false, &Device::Cpu).unwrap();
    let tok = &loaded.tokenizer;
    let cfg = GenConfig {
        max_new_tokens: 6,
        temperature: 0.0,
        batch_size: 1,
        seed: 0,
        ..Default::default()
    };
    for (i, q) in qs.iter().enumerate() {
        let shots = nq::shots_for(&pool_qs, q, i, 2, 0);
        let ids = tok.encode_prompt(&nq::plain_prompt(&shots, q)).unwrap();
        let g = generate(
            loaded.model.as_ref(),
            &[ids],
            &tok.stop_ids(),
            &cfg,
            |row| tok.decode(row).unwrap().contains('\n'),
        )
        .unwrap();
        let text = tok.decode(&g[0].ids).unwrap();
        assert_eq!(preds[i]["continuation"], json!(text), "question {i}");
        assert_eq!(preds[i]["prediction"], json!(nq::extract(&text)));
    }
    assert_eq!(res.metrics["n"], json!(qs.len()));
    // Rig the references: every other question's reference becomes the
    // model's own answer. The op's count must equal the count recomputed
    // here from its predictions with the reference rule.
    let rigged = tempfile::tempdir().unwrap();
    let path = rigged.path().join("q.jsonl");
    let mut text = String::new();
    let mut expected = 0;
    for (i, (q, p)) in qs.iter().zip(&preds).enumerate() {
        let pred = p["prediction"].as_str().unwrap().to_string();
        let answers = if i % 2 == 0 {
            vec![pred.clone()]
        } else {
            q.answers.clone()
        };
        if nq::is_correct(&pred, &answers) {
            expected += 1;
        }
        text.push_str(&json!({"question": q.question, "answer": answers}).to_string());
        text.push('\n');
    }
    assert!(expected >= qs.len() / 2);
    std::fs::write(&path, text).unwrap();
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("questions", path),
        ("pool", pool),
    ];
    let (res, _w) = run("eval.nq", params, &inputs);
    let res = res.unwrap();
    assert_eq!(res.metrics["correct"], json!(expected));
    let em = res.metrics["em"].as_f64().unwrap();
    assert!((em - expected as f64 / qs.len() as f64).abs() < 1e-9);
    let (lo, hi) = (
        res.metrics["em_ci_low"].as_f64().unwrap(),
        res.metrics["em_ci_high"].as_f64().unwrap(),
    );
    assert!(lo <= em && em <= hi);
}

#[test]
fn nq_rejects_more_shots_than_the_pool_and_bad_lines() {
    let model = tempfile::tempdir().unwrap();
    tiny_model(model.path(), false);
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("questions", fixtures().join("nq_test.jsonl")),
        ("pool", fixtures().join("nq_pool.jsonl")),
    ];
    let (res, _w) = run("eval.nq", json!({"shots": 50}), &inputs);
    assert!(res.unwrap_err().to_string().contains("only 6"));
    let bad = tempfile::tempdir().unwrap();
    let p = bad.path().join("q.jsonl");
    std::fs::write(&p, "{\"question\": \"x\", \"answer\": [\"y\"]}\nnot json\n").unwrap();
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("questions", p),
        ("pool", fixtures().join("nq_pool.jsonl")),
    ];
    let (res, _w) = run("eval.nq", json!({}), &inputs);
    let e = res.unwrap_err().to_string();
    // The op reads its input where the executor puts it, `in/<name>`.
    assert!(e.contains("in/questions:2"), "{e}");
}

#[test]
fn mmlu_predictions_equal_direct_forward_argmax() {
    let model = tempfile::tempdir().unwrap();
    tiny_model(model.path(), false);
    let data = fixtures().join("mmlu");
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("data", data.clone()),
    ];
    let (res, work) = run("eval.mmlu", json!({"shots": 2, "batch_size": 3}), &inputs);
    let res = res.unwrap();
    let preds = lines(&work.path().join("out/predictions.jsonl"));
    assert_eq!(preds.len(), 12);
    let loaded = repro::model::load::load(model.path(), false, &Device::Cpu).unwrap();
    let tok = &loaded.tokenizer;
    let ids = mmlu::letter_ids(|t| tok.encode_prompt(t).map_err(|e| e.to_string())).unwrap();
    let mut correct = 0;
    for p in &preds {
        let subject = p["subject"].as_str().unwrap();
        let index = p["index"].as_u64().unwrap() as usize;
        let dev = mmlu::read_items(&data.join(format!("dev/{subject}_dev.csv"))).unwrap();
        let test = mmlu::read_items(&data.join(format!("test/{subject}_test.csv"))).unwrap();
        let enc = tok
            .encode_prompt(&mmlu::prompt(subject, &dev[..2], &test[index]))
            .unwrap();
        let n = enc.len();
        let input = Tensor::from_vec(enc, (1, n), &Device::Cpu).unwrap();
        let logits = loaded.model.forward(&input, None, None, true).unwrap();
        let last: Vec<f32> = logits.i((0, n - 1)).unwrap().to_vec1().unwrap();
        let best = mmlu::predict(&last, &ids);
        assert_eq!(
            p["prediction"],
            json!(mmlu::LETTERS[best]),
            "{subject} {index}"
        );
        assert_eq!(p["answer"], json!(mmlu::LETTERS[test[index].answer]));
        if best == test[index].answer {
            correct += 1;
        }
    }
    let micro = res.metrics["acc_micro"].as_f64().unwrap();
    assert!((micro - correct as f64 / 12.0).abs() < 1e-9);
}

#[test]
fn mmlu_flat_model_answers_a_and_scores_the_share_of_a() {
    // All logits equal: ties go to A, so accuracy is the share of A answers
    // (1 of 6 in each fixture subject).
    let model = tempfile::tempdir().unwrap();
    tiny_model(model.path(), true);
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("data", fixtures().join("mmlu")),
    ];
    let (res, work) = run("eval.mmlu", json!({"shots": 1}), &inputs);
    let res = res.unwrap();
    for p in lines(&work.path().join("out/predictions.jsonl")) {
        assert_eq!(p["prediction"], json!("A"));
    }
    for k in [
        "acc_astronomy",
        "acc_college_physics",
        "acc_macro",
        "acc_micro",
    ] {
        let v = res.metrics[k].as_f64().unwrap();
        assert!((v - 1.0 / 6.0).abs() < 1e-9, "{k} = {v}");
    }
    // A subject that does not exist is an error naming it.
    let inputs = [
        ("model", model.path().to_path_buf()),
        ("data", fixtures().join("mmlu")),
    ];
    let (res, _w) = run("eval.mmlu", json!({"subjects": ["virology"]}), &inputs);
    assert!(res.unwrap_err().to_string().contains("virology"));
}

#[test]
fn prompts_jsonl_selects_by_pointer_and_locates_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d.jsonl");
    std::fs::write(
        &data,
        "{\"n\": 1, \"challenging\": true, \"prompt\": {\"text\": \"one\"}}\n\
         {\"n\": 2, \"challenging\": false, \"prompt\": {\"text\": \"two\"}}\n\
         {\"n\": 3, \"challenging\": true, \"prompt\": {\"text\": \"three\"}}\n",
    )
    .unwrap();
    let params = json!({"id": "/n", "text": "/prompt/text", "where": "/challenging"});
    let (res, work) = run("prompts.jsonl", params, &[("data", data.clone())]);
    assert_eq!(res.unwrap().metrics["skipped"], json!(1));
    assert_eq!(
        lines(&work.path().join("out/prompts.jsonl")),
        vec![
            json!({"id": "1", "text": "one"}),
            json!({"id": "3", "text": "three"})
        ]
    );
    let (res, work) = run(
        "prompts.jsonl",
        json!({"id": "/n", "user": "/prompt/text", "limit": 1}),
        &[("data", data.clone())],
    );
    res.unwrap();
    assert_eq!(
        lines(&work.path().join("out/prompts.jsonl")),
        vec![json!({"id": "1", "prompt": "one"})]
    );
    let (res, _w) = run(
        "prompts.jsonl",
        json!({"id": "/n", "text": "/prompt/missing"}),
        &[("data", data)],
    );
    let e = res.unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("/prompt/missing"), "{e}");
    let op = ops::find("prompts.jsonl").unwrap();
    let both: Map<String, Value> = json!({"text": "/a", "user": "/b"})
        .as_object()
        .cloned()
        .unwrap();
    assert!(op.check(&both).is_err());
    let bad: Map<String, Value> = json!({"text": "a"}).as_object().cloned().unwrap();
    assert!(op.check(&bad).is_err());
}

/// A model op computes where its node is granted: a GPU granted to a binary
/// built without CUDA is an error that says how to go on (never a silent CPU
/// run recorded as `cuda:0`); `device: cpu` runs on the CPU and says so; a
/// node granted nothing runs on the CPU.
#[cfg(not(feature = "cuda"))]
#[test]
fn model_ops_run_where_they_are_granted_and_say_where() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path(), false);
    let prompts = "{\"id\": \"1\", \"text\": \"Question: who?\\nAnswer:\"}\n";
    let run = |params: Value, gpus: Option<&str>| {
        let mut r = OpRun::new("lm.generate")
            .params(params)
            .input("model", dir.path())
            .input_text("prompts", prompts);
        if let Some(g) = gpus {
            r = r.env("CUDA_VISIBLE_DEVICES", g);
        }
        r.run()
    };
    let err = run(json!({"max_new_tokens": 2}), Some("1")).err();
    assert!(err.contains("granted GPU 1"), "{err}");
    assert!(err.contains("built without CUDA"), "{err}");
    assert!(err.contains("`device: cpu`"), "{err}");
    let cpu = repro::model::cpu::describe();
    let forced = run(json!({"max_new_tokens": 2, "device": "cpu"}), Some("1"));
    assert_eq!(forced.ok().device.as_deref(), Some(cpu.as_str()));
    let plain = run(json!({"max_new_tokens": 2}), None);
    assert_eq!(plain.ok().device.as_deref(), Some(cpu.as_str()));
    assert_eq!(
        forced.text("predictions.jsonl"),
        plain.text("predictions.jsonl")
    );
}

/// `dtype: bf16` runs (the weights load in bf16) and is refused when
/// misspelt, when the pipeline compiles.
#[test]
fn lm_generate_takes_a_dtype() {
    let dir = tempfile::tempdir().unwrap();
    tiny_model(dir.path(), false);
    let prompts = "{\"id\": \"1\", \"text\": \"Question: who?\\nAnswer:\"}\n";
    let ran = OpRun::new("lm.generate")
        .params(json!({"max_new_tokens": 2, "dtype": "bf16"}))
        .input("model", dir.path())
        .input_text("prompts", prompts)
        .run();
    assert_eq!(ran.jsonl::<Value>("predictions.jsonl").len(), 1);
    let bad = OpRun::new("lm.generate").params(json!({"dtype": "fp8"}));
    let (param, message) = bad.compile().unwrap_err();
    assert_eq!(param, "dtype");
    assert!(message.contains("f32, bf16, f16"), "{message}");
}
