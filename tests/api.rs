//! The API ops (`teacher.chat`, `data.nq_synthetic`) against a mock
//! OpenAI-compatible server in this process: records, offline replay from
//! the request store, retries, fatal errors, key hygiene, half-failed runs,
//! and the surrogate mode end to end.

mod common;

use common::api_mock::{KEY, Mock, Reply, assert_no_key, env, fixture, jsonl, read, run};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// Answers "A<n>: <last user message>".
fn echo() -> Mock {
    Mock::start(|i, body| {
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.last())
            .and_then(|m| m["content"].as_str())
            .unwrap_or("");
        Reply::ok(&format!("Certainly! A{i}: {last}"))
    })
}

fn fast(mut params: Value) -> Value {
    params["backoff_ms"] = json!(5);
    if params.get("retries").is_none() {
        params["retries"] = json!(3);
    }
    params
}

#[test]
fn teacher_records_then_offline_replay_with_zero_requests() {
    let store = tempfile::tempdir().unwrap();
    let prompts = fixture("preference/prompts.jsonl")
        + "{\"id\": \"dup\", \"prompt\": \"Take MLK speech \\\"I had a dream\\\" but turn it into a top 100 rap song\"}\n";
    let mock = echo();
    let params = fast(
        json!({"model": "mock-model", "system": "Be brief.", "temperature": 0.5, "max_tokens": 64, "seed": 3}),
    );
    let (res, w1) = run(
        "teacher.chat",
        params.clone(),
        &[("prompts", prompts.clone())],
        &env(Some(&mock.base), store.path()),
    );
    let res = res.unwrap();
    // 7 prompts, one an exact repeat of another: 6 distinct requests.
    assert_eq!(mock.requests(), 6);
    assert!(
        res.stderr
            .contains("api: 7 requests, 0 from the request store, 6 sent"),
        "{}",
        res.stderr
    );
    assert_eq!(res.metrics["api_total"], json!(7));
    assert_eq!(res.metrics["n"], json!(7));
    let rows = jsonl(&read(&w1, "out/responses.jsonl"));
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[0]["id"], "koala_0");
    assert_eq!(rows[0]["source"], "teacher:mock-model");
    let msgs = rows[0]["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "system turn dropped: {msgs:?}");
    assert_eq!(msgs[0]["role"], "user");
    assert_eq!(msgs[1]["role"], "assistant");
    assert!(
        msgs[1]["content"]
            .as_str()
            .unwrap()
            .starts_with("Certainly! A")
    );
    assert_eq!(rows[6]["messages"][1], rows[1]["messages"][1]);
    let got = mock.received();
    assert!(got.iter().all(|r| r.path == "/v1/chat/completions"));
    assert!(
        got.iter()
            .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {KEY}")))
    );
    let b = &got[0].body;
    assert_eq!(b["model"], "mock-model");
    assert_eq!(
        (
            b["temperature"].as_f64(),
            b["max_tokens"].as_u64(),
            b["seed"].as_u64()
        ),
        (Some(0.5), Some(64), Some(3))
    );
    assert_eq!(
        b["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(jsonl(&read(&w1, "out/requests.jsonl")).len(), 7);
    drop(mock);

    // The server is gone and no API is configured: everything comes from the store.
    let (res, w2) = run(
        "teacher.chat",
        params,
        &[("prompts", prompts)],
        &env(None, store.path()),
    );
    let res = res.unwrap();
    assert!(
        res.stderr
            .contains("api: 7 requests, 7 from the request store, 0 sent"),
        "{}",
        res.stderr
    );
    assert_eq!(
        read(&w1, "out/responses.jsonl"),
        read(&w2, "out/responses.jsonl")
    );
    assert_eq!(
        read(&w1, "out/requests.jsonl"),
        read(&w2, "out/requests.jsonl")
    );
    for d in [store.path(), w1.path(), w2.path()] {
        assert_no_key(d);
    }
}

#[test]
fn offline_without_store_says_how_many_are_missing() {
    let store = tempfile::tempdir().unwrap();
    let (res, _w) = run(
        "teacher.chat",
        json!({"model": "m", "limit": 3}),
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(None, store.path()),
    );
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains("3 of 3 API requests are not in the request store"),
        "{e}"
    );
    assert!(
        e.contains("REPRO_API_BASE") && e.contains("OPENAI_BASE_URL"),
        "{e}"
    );
}

#[test]
fn rate_limits_server_errors_and_timeouts_are_retried() {
    let store = tempfile::tempdir().unwrap();
    let mock = Mock::start(|i, _| match i {
        0 => {
            let mut r = Reply::status(429, "{\"error\": {\"message\": \"Rate limit reached\"}}");
            r.headers.push(("Retry-After".into(), "0".into()));
            r
        }
        1 => Reply::status(503, "overloaded"),
        2 => {
            let mut r = Reply::ok("late");
            r.delay = Duration::from_millis(2500);
            r
        }
        _ => Reply::ok("fine"),
    });
    let params = fast(json!({"model": "m", "limit": 1, "concurrency": 1, "timeout_s": 1}));
    let (res, w) = run(
        "teacher.chat",
        params,
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(Some(&mock.base), store.path()),
    );
    res.unwrap();
    assert_eq!(mock.requests(), 4);
    assert_eq!(
        jsonl(&read(&w, "out/responses.jsonl"))[0]["messages"][1]["content"],
        "fine"
    );

    // Retries run out: the last error is reported.
    let mock = Mock::start(|_, _| Reply::status(500, "boom"));
    let params = fast(json!({"model": "m2", "limit": 1, "concurrency": 1, "retries": 2}));
    let (res, _w) = run(
        "teacher.chat",
        params,
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(Some(&mock.base), store.path()),
    );
    let e = res.unwrap_err().to_string();
    assert_eq!(mock.requests(), 3, "{e}");
    assert!(e.contains("HTTP 500: boom"), "{e}");
}

#[test]
fn unauthorized_fails_at_once_with_status_and_scrubbed_body() {
    let store = tempfile::tempdir().unwrap();
    let mock = Mock::start(|_, _| {
        Reply::status(
            401,
            &format!(
                "{{\"error\": {{\"message\": \"Incorrect API key provided: {KEY}\", \"code\": \"invalid_api_key\"}}}}"
            ),
        )
    });
    let params = fast(json!({"model": "m", "concurrency": 1}));
    let (res, w) = run(
        "teacher.chat",
        params,
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(Some(&mock.base), store.path()),
    );
    let e = res.unwrap_err().to_string();
    assert_eq!(mock.requests(), 1, "no retry, no further requests: {e}");
    assert!(
        e.contains("HTTP 401") && e.contains("Incorrect API key provided: [redacted]"),
        "{e}"
    );
    assert!(e.contains("/v1/chat/completions"), "{e}");
    assert!(!e.contains(KEY), "{e}");
    assert!(
        e.contains("6 of 6 API requests failed or were not attempted"),
        "{e}"
    );
    assert_no_key(w.path());
    assert_no_key(store.path());
}

#[test]
fn a_half_failed_run_keeps_its_finished_requests() {
    let store = tempfile::tempdir().unwrap();
    let mock = Mock::start(|i, _| {
        if i < 3 {
            Reply::ok("kept")
        } else {
            Reply::status(500, "down")
        }
    });
    let params = fast(json!({"model": "m", "concurrency": 1, "retries": 1}));
    let (res, _w) = run(
        "teacher.chat",
        params.clone(),
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(Some(&mock.base), store.path()),
    );
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains("3 of 6 API requests failed") && e.contains("3 done"),
        "{e}"
    );
    assert_eq!(repro::api::store::Store::new(store.path()).len(), 3);
    drop(mock);
    let mock = echo();
    let (res, w) = run(
        "teacher.chat",
        params,
        &[("prompts", fixture("preference/prompts.jsonl"))],
        &env(Some(&mock.base), store.path()),
    );
    let res = res.unwrap();
    assert_eq!(mock.requests(), 3);
    assert!(
        res.stderr
            .contains("6 requests, 3 from the request store, 3 sent"),
        "{}",
        res.stderr
    );
    let rows = jsonl(&read(&w, "out/responses.jsonl"));
    assert_eq!(
        rows.iter()
            .filter(|r| r["messages"][1]["content"] == "kept")
            .count(),
        3
    );
}

fn nq_inputs() -> Vec<(&'static str, String)> {
    vec![
        ("pool", fixture("api/nq_pool.jsonl")),
        ("exclude", fixture("api/nq_test.jsonl")),
    ]
}

fn normalized_set(text: &str) -> std::collections::HashSet<String> {
    jsonl(text)
        .iter()
        .map(|v| repro::eval::normalize::normalize_answer(v["question"].as_str().unwrap()))
        .collect()
}

#[test]
fn surrogate_end_to_end_is_labelled_seeded_and_never_a_test_question() {
    let store = tempfile::tempdir().unwrap();
    let e = env(None, store.path());
    let (res, w) = run(
        "data.nq_synthetic",
        json!({"mode": "surrogate", "seed": 1}),
        &nq_inputs(),
        &e,
    );
    let res = res.unwrap();
    let m = &res.metrics;
    assert_eq!(m["surrogate"], json!(true));
    assert_eq!(
        (
            m["pool_total"].clone(),
            m["excluded_test_overlap"].clone(),
            m["pool_duplicates"].clone()
        ),
        (json!(32), json!(1), json!(1))
    );
    assert_eq!(m["n"], json!(30));
    assert!(!w.path().join("out/requests.jsonl").exists());
    let rows = jsonl(&read(&w, "out/nq_synthetic.jsonl"));
    let test = normalized_set(&fixture("api/nq_test.jsonl"));
    let pool: Vec<Value> = jsonl(&fixture("api/nq_pool.jsonl"));
    for r in &rows {
        assert_eq!(r["source"], "surrogate:gold-answer-templates");
        let q = r["messages"][0]["content"].as_str().unwrap();
        let a = r["messages"][1]["content"].as_str().unwrap();
        assert!(
            !test.contains(&repro::eval::normalize::normalize_answer(q)),
            "test question {q}"
        );
        let gold = pool.iter().find(|p| p["question"] == q).unwrap()["answer"][0]
            .as_str()
            .unwrap()
            .to_string();
        assert!(a.contains(&gold), "{a} lacks {gold}");
    }
    assert!(!rows.iter().any(|r| {
        r["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("planet of the apes")
    }));
    let templates: std::collections::HashSet<String> = rows
        .iter()
        .map(|r| {
            r["messages"][1]["content"]
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(templates.len() > 2, "templates vary: {templates:?}");
    // Seeded: the same seed gives the same bytes, another seed another order.
    let (_, w2) = run(
        "data.nq_synthetic",
        json!({"mode": "surrogate", "seed": 1}),
        &nq_inputs(),
        &e,
    );
    assert_eq!(
        read(&w, "out/nq_synthetic.jsonl"),
        read(&w2, "out/nq_synthetic.jsonl")
    );
    let (_, w3) = run(
        "data.nq_synthetic",
        json!({"mode": "surrogate", "seed": 2, "n": 5}),
        &nq_inputs(),
        &e,
    );
    assert_eq!(jsonl(&read(&w3, "out/nq_synthetic.jsonl")).len(), 5);
    let (res, _) = run(
        "data.nq_synthetic",
        json!({"mode": "surrogate", "n": 31}),
        &nq_inputs(),
        &e,
    );
    let err = res.unwrap_err().to_string();
    assert!(
        err.contains("only 30 usable questions") && err.contains("1 excluded"),
        "{err}"
    );
}

#[test]
fn surrogate_on_the_vendored_nq_files() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/nq_open");
    let pool = std::fs::read_to_string(root.join("NQ-open.efficientqa.dev.1.1.jsonl")).unwrap();
    let test = std::fs::read_to_string(root.join("NQ-open.dev.jsonl")).unwrap();
    let store = tempfile::tempdir().unwrap();
    let (res, w) = run(
        "data.nq_synthetic",
        json!({"mode": "surrogate"}),
        &[("pool", pool), ("exclude", test.clone())],
        &env(None, store.path()),
    );
    let m = res.unwrap().metrics;
    // One EfficientQA question equals a test question after normalization
    // ("where was (the) war of (the) planet of the apes filmed"); one repeats.
    assert_eq!(
        (
            m["pool_total"].clone(),
            m["excluded_test_overlap"].clone(),
            m["pool_duplicates"].clone()
        ),
        (json!(1800), json!(1), json!(1))
    );
    assert_eq!(m["n"], json!(1798));
    let test = normalized_set(&test);
    for r in jsonl(&read(&w, "out/nq_synthetic.jsonl")) {
        assert!(!test.contains(&repro::eval::normalize::normalize_answer(
            r["messages"][0]["content"].as_str().unwrap()
        )));
    }
}

#[test]
fn teacher_mode_answers_pool_questions() {
    let store = tempfile::tempdir().unwrap();
    let mock = Mock::start(|_, body| {
        let q = body["messages"][1]["content"].as_str().unwrap_or("");
        Reply::ok(&format!("Great question! The answer to \"{q}\" is 1988."))
    });
    let params = fast(json!({"mode": "teacher", "model": "gpt-mock", "n": 4}));
    let (res, w) = run(
        "data.nq_synthetic",
        params,
        &nq_inputs(),
        &env(Some(&mock.base), store.path()),
    );
    let m = res.unwrap().metrics;
    assert_eq!(mock.requests(), 4);
    assert_eq!(m["surrogate"], json!(false));
    let rows = jsonl(&read(&w, "out/nq_synthetic.jsonl"));
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["source"] == "teacher:gpt-mock"));
    assert_eq!(mock.received()[0].body["messages"][0]["role"], "system");
    assert_eq!(jsonl(&read(&w, "out/requests.jsonl")).len(), 4);
    assert!(m["teacher_contains_gold"].as_f64().unwrap() <= 1.0);
}

#[test]
fn generate_mode_drops_test_questions_pool_copies_and_duplicates() {
    let store = tempfile::tempdir().unwrap();
    let mock = Mock::start(|_, body| {
        let s = body["seed"].as_u64().unwrap_or(0);
        Reply::ok(&format!(
            "Q: where was the war of the planet of the apes filmed\nA: Vancouver\n\
             Q: the last time la dodgers won the world series\nA: 1988\n\
             Q: who painted the ceiling number {s}\nA: Michelangelo\n\
             Q: Who painted the ceiling number {s}?\nA: Michelangelo\n\
             Q: how tall is tower {s}\nA: {s} metres"
        ))
    });
    let params = fast(
        json!({"mode": "teacher", "model": "gpt-mock", "questions": "generate", "n": 5, "seed": 10}),
    );
    let (res, w) = run(
        "data.nq_synthetic",
        params.clone(),
        &nq_inputs(),
        &env(Some(&mock.base), store.path()),
    );
    let m = res.unwrap().metrics;
    let rows = jsonl(&read(&w, "out/nq_synthetic.jsonl"));
    assert_eq!(rows.len(), 5);
    assert_eq!(m["rounds"], json!(3), "{m:?}");
    assert_eq!(
        (
            m["generated_test_overlap"].clone(),
            m["generated_pool_copies"].clone(),
            m["generated_duplicates"].clone()
        ),
        (json!(3), json!(3), json!(3))
    );
    let prompt = mock.received()[0].body["messages"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prompt.starts_with("I want you to generate a series of questions and answers."));
    assert_eq!(prompt.matches("\nQ: ").count(), 5);
    let seeds: Vec<u64> = mock
        .received()
        .iter()
        .map(|r| r.body["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seeds
            .iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        3
    );
    assert_eq!(
        rows[0]["messages"][0]["content"],
        "who painted the ceiling number 10"
    );
    assert_eq!(rows[0]["id"], "nqsyn-gen-0-2");
    // Too few rounds allowed: an error that says so.
    let mut p = params;
    p["max_rounds"] = json!(1);
    let (res, _) = run(
        "data.nq_synthetic",
        p,
        &nq_inputs(),
        &env(Some(&mock.base), store.path()),
    );
    let e = res.unwrap_err().to_string();
    assert!(
        e.contains("generated only 2 of n = 5") && e.contains("max_rounds"),
        "{e}"
    );
}

#[test]
fn through_the_engine_the_store_lives_in_the_cache_and_survives_a_param_change() {
    let p = common::Project::new();
    p.write("data/prompts.jsonl", &fixture("preference/prompts.jsonl"));
    let yaml = |limit: u32| {
        format!(
            "pipeline: t\nnodes:\n  prompts:\n    op: file\n    params: {{path: data/prompts.jsonl}}\n  \
             teacher:\n    op: teacher.chat\n    inputs: {{prompts: prompts}}\n    \
             params: {{model: mock-model, limit: {limit}, backoff_ms: 5}}\n"
        )
    };
    p.write("pipelines/t.yaml", &yaml(6));
    let mock = echo();
    let repro = |base: Option<&str>, args: &[&str]| {
        p.cli()
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("REPRO_API_STORE")
            .env_remove("REPRO_API_OFFLINE")
            .env("REPRO_API_KEY", KEY)
            .env("REPRO_API_BASE", base.unwrap_or(""))
            .args(args)
    };
    let run = |base: Option<&str>| repro(base, &["run", "-p", "t"]);
    run(Some(&mock.base)).run();
    assert_eq!(mock.requests(), 6);
    assert_eq!(
        repro::api::store::Store::new(&p.path().join("cache/api")).len(),
        6
    );
    drop(mock);
    // Re-executing the node without a server replays the store: same
    // outputs and metrics, so `verify --rerun` passes.
    repro(None, &["verify", "-p", "t", "--rerun", "teacher"]).run();
    // A new key for the node (limit 4), no server: served from cache/api.
    p.write("pipelines/t.yaml", &yaml(4));
    run(None).run();
    // A prompt never requested fails offline with the count.
    p.write(
        "data/prompts.jsonl",
        &(fixture("preference/prompts.jsonl") + "{\"id\": \"new\", \"prompt\": \"hello\"}\n"),
    );
    p.write("pipelines/t.yaml", &yaml(7));
    let o = run(None).any_status().output();
    let err = o.stderr.clone() + &o.stdout;
    assert_ne!(o.code, Some(0));
    assert!(
        err.contains("1 of 7 API requests are not in the request store"),
        "{err}"
    );
    assert_no_key(p.path());
}
