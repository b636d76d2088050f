//! `eval.preference` end to end: the LLM judge against a mock API (both
//! orders, position-bias control, unparseable replies, missing responses,
//! offline replay) and the human-ratings CSV importer (majority, splits,
//! A/B positions, located errors).

mod common;

use common::api_mock::{Mock, Reply, assert_no_key, env, fixture, jsonl, read, run};
use serde_json::{Value, json};

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let i = s.find(start).map_or(0, |i| i + start.len());
    let j = s[i..].find(end).map_or(s.len(), |j| i + j);
    &s[i..j]
}

/// A judge with known habits: scores GOOD 9, BAD 4, anything else 6; always
/// prefers Assistant 1 when a BIAS answer is shown; 7 7 for two SAME
/// answers; no scores when Assistant 1's answer is GARBLE.
fn judge() -> Mock {
    Mock::start(|_, body| {
        let user = body["messages"][1]["content"].as_str().unwrap_or("");
        let a1 = between(
            user,
            "[The Start of Assistant 1's Answer]\n",
            "\n\n[The End of Assistant 1's Answer]",
        );
        let a2 = between(
            user,
            "[The Start of Assistant 2's Answer]\n",
            "\n\n[The End of Assistant 2's Answer]",
        );
        let score = |a: &str| {
            if a.contains("GOOD") {
                9
            } else if a.contains("BAD") {
                4
            } else {
                6
            }
        };
        let reply = if a1.contains("GARBLE") {
            "I cannot decide which is better.".to_string()
        } else if a1.contains("BIAS") || a2.contains("BIAS") {
            "9 3\nAssistant 1 is better.".to_string()
        } else if a1.contains("SAME") && a2.contains("SAME") {
            "Assistant 1: 7/10, Assistant 2: 7/10\nEqually good.".to_string()
        } else {
            format!("{} {}\nExplanation.", score(a1), score(a2))
        };
        Reply::ok(&reply)
    })
}

fn inputs(human: Option<String>) -> Vec<(&'static str, String)> {
    let mut v = vec![
        ("prompts", fixture("preference/prompts.jsonl")),
        ("model", fixture("preference/model.jsonl")),
        ("teacher", fixture("preference/teacher.jsonl")),
    ];
    if let Some(h) = human {
        v.push(("human", h));
    }
    v
}

fn f(m: &serde_json::Map<String, Value>, k: &str) -> f64 {
    m[k].as_f64()
        .unwrap_or_else(|| panic!("{k}: {:?}", m.get(k)))
}

#[test]
fn judge_in_both_orders_with_position_bias_control_then_offline() {
    let store = tempfile::tempdir().unwrap();
    let mock = judge();
    let params = json!({"judge_model": "gpt-4-mock", "backoff_ms": 5, "seed": 0});
    let (res, w) = run(
        "eval.preference",
        params.clone(),
        &inputs(None),
        &env(Some(&mock.base), store.path()),
    );
    let res = res.unwrap();
    assert!(
        res.stderr
            .contains("api: 10 requests, 0 from the request store, 10 sent"),
        "{}",
        res.stderr
    );
    let m = res.metrics;
    // koala_0..4 have a model response: 2 requests each.
    assert_eq!(mock.requests(), 10);
    let rows = jsonl(&read(&w, "out/judgments.jsonl"));
    let verdicts: Vec<&str> = rows
        .iter()
        .map(|r| r["judge"]["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(
        verdicts,
        ["better", "worse", "equal", "equal", "unparsed", "missing"]
    );
    // koala_2: the judge always prefers Assistant 1, so the orders disagree.
    assert_eq!(rows[2]["judge"]["model_first"]["verdict"], "better");
    assert_eq!(rows[2]["judge"]["teacher_first"]["verdict"], "worse");
    assert_eq!(
        rows[0]["judge"]["teacher_first"]["scores"],
        json!([9.0, 6.0]),
        "stored as [model, teacher]"
    );
    assert_eq!(rows[3]["judge"]["model_first"]["scores"], json!([7.0, 7.0]));
    assert!(rows[0]["human"].is_null());
    // n = 5 (koala_4 unparsed is left out; koala_5 missing counts as worse).
    assert_eq!(m["judge_n"], json!(5));
    assert_eq!(
        (
            f(&m, "judge_better"),
            f(&m, "judge_equal"),
            f(&m, "judge_worse")
        ),
        (0.2, 0.4, 0.4)
    );
    assert_eq!(f(&m, "judge_equal_or_better"), 0.6);
    assert!(
        f(&m, "judge_equal_or_better_ci_low") <= 0.6
            && f(&m, "judge_equal_or_better_ci_high") >= 0.6
    );
    assert!(f(&m, "judge_better_ci_low") >= 0.0 && f(&m, "judge_better_ci_high") <= 1.0);
    assert_eq!(
        (m["judge_unparsed"].clone(), m["judge_missing"].clone()),
        (json!(1), json!(1))
    );
    assert_eq!(f(&m, "judge_inconsistent"), 0.25);
    assert!((f(&m, "judge_first_preferred") - 4.0 / 6.0).abs() < 1e-12);
    assert_eq!(m["api_total"], json!(10));
    let metrics_file: Value = serde_json::from_str(&read(&w, "out/metrics.json")).unwrap();
    assert_eq!(metrics_file["judge_model"], "gpt-4-mock");
    assert!(
        metrics_file.get("api_total").is_none(),
        "api_total is in the record only"
    );
    // The judge saw the FastChat prompt, both orders of koala_0 among them
    // (requests arrive in any order: 4 are in flight at once).
    let got = mock.received();
    assert!(
        got.iter()
            .all(|r| r.body["messages"][0]["content"] == repro::eval::preference::JUDGE_SYSTEM)
    );
    let koala0: Vec<&str> = got
        .iter()
        .filter_map(|r| r.body["messages"][1]["content"].as_str())
        .filter(|c| c.starts_with("[Question]\nCan you list the top 20 films"))
        .collect();
    assert_eq!(koala0.len(), 2);
    assert!(
        koala0
            .iter()
            .any(|c| c.contains("Assistant 1's Answer]\nGOOD"))
    );
    assert!(
        koala0
            .iter()
            .any(|c| c.contains("Assistant 1's Answer]\nHere are some films."))
    );
    drop(mock);

    let (res, w2) = run(
        "eval.preference",
        params,
        &inputs(None),
        &env(None, store.path()),
    );
    let res = res.unwrap();
    assert!(
        res.stderr.contains("10 from the request store, 0 sent"),
        "{}",
        res.stderr
    );
    for f in [
        "out/judgments.jsonl",
        "out/metrics.json",
        "out/requests.jsonl",
    ] {
        assert_eq!(read(&w, f), read(&w2, f), "{f}");
    }
    assert_no_key(store.path());
    assert_no_key(w.path());
}

#[test]
fn human_ratings_majority_with_positions_and_splits() {
    let store = tempfile::tempdir().unwrap();
    let (res, w) = run(
        "eval.preference",
        json!({"seed": 3}),
        &inputs(Some(fixture("preference/human.csv"))),
        &env(None, store.path()),
    );
    let m = res.unwrap().metrics;
    assert_eq!(m["human_n"], json!(5));
    assert_eq!(
        (
            f(&m, "human_better"),
            f(&m, "human_equal"),
            f(&m, "human_worse")
        ),
        (0.2, 0.4, 0.4)
    );
    assert_eq!(f(&m, "human_equal_or_better"), 0.6);
    assert_eq!(
        (
            m["human_ratings"].clone(),
            m["human_raters"].clone(),
            m["human_split"].clone(),
            m["human_unrated"].clone()
        ),
        (json!(12), json!(3), json!(1), json!(1))
    );
    assert!(m.get("judge_n").is_none());
    let rows = jsonl(&read(&w, "out/judgments.jsonl"));
    assert_eq!(
        rows[0]["human"],
        json!({"better": 2, "equal": 0, "worse": 1, "verdict": "better", "split": false})
    );
    assert_eq!(rows[1]["human"]["verdict"], "worse");
    assert_eq!(
        rows[2]["human"],
        json!({"better": 1, "equal": 1, "worse": 1, "verdict": "equal", "split": true})
    );
    assert!(rows[4]["human"].is_null());
    assert!(rows[0]["judge"].is_null());
    assert!(!w.path().join("out/requests.jsonl").exists());
}

#[test]
fn both_sources_side_by_side() {
    let store = tempfile::tempdir().unwrap();
    let mock = judge();
    let (res, _w) = run(
        "eval.preference",
        json!({"judge_model": "j", "backoff_ms": 5}),
        &inputs(Some(fixture("preference/human.csv"))),
        &env(Some(&mock.base), store.path()),
    );
    let m = res.unwrap().metrics;
    assert_eq!(
        (m["judge_n"].clone(), m["human_n"].clone()),
        (json!(5), json!(5))
    );
}

fn human_error(csv: &str, params: Value) -> String {
    let store = tempfile::tempdir().unwrap();
    let (res, _w) = run(
        "eval.preference",
        params,
        &inputs(Some(csv.to_string())),
        &env(None, store.path()),
    );
    res.unwrap_err().to_string()
}

#[test]
fn csv_errors_name_input_line_and_column() {
    let e = human_error("prompt_id,rater,score\nkoala_0,r1,better\n", json!({}));
    assert!(
        e.contains("input `human` line 1") && e.contains("no `preference`"),
        "{e}"
    );
    let e = human_error(
        "prompt_id,rater,preference\nkoala_0,r1,better\nkoala_1,r1,great\n",
        json!({}),
    );
    assert!(
        e.contains("input `human` line 3: column 3 (`preference`): `great` is not a preference"),
        "{e}"
    );
    let e = human_error("prompt_id,preference\nkoala_0,A\n", json!({}));
    assert!(
        e.contains("line 2: column 2 (`preference`)") && e.contains("model_position"),
        "{e}"
    );
    let e = human_error(
        "prompt_id,preference,model_position\nkoala_0,A,C\n",
        json!({}),
    );
    assert!(
        e.contains("line 2: column 3 (`model_position`): `C` must be A or B"),
        "{e}"
    );
    let e = human_error(
        "prompt_id,rater,preference\n\"koala_0\nx\",r1\nkoala_1,r1,better\n",
        json!({}),
    );
    assert!(e.contains("line 2: 2 fields, but the header has 3"), "{e}");
    let e = human_error(
        "prompt_id,rater,preference\nkoala_0,r1,better\n\nkoala_0,r1,worse\n",
        json!({}),
    );
    assert!(
        e.contains("line 4: rater `r1` already rated prompt `koala_0` on line 2"),
        "{e}"
    );
    let e = human_error("prompt_id,rater,preference\nnope,r1,better\n", json!({}));
    assert!(
        e.contains("input `human` line 2: prompt id `nope` is not in input `prompts`"),
        "{e}"
    );
    let e = human_error(
        "prompt_id,rater,preference\nkoala_0,r1,\"better\n",
        json!({}),
    );
    assert!(e.contains("line 2: unterminated quoted field"), "{e}");
    let e = human_error("prompt_id,rater,preference\nkoala_0,,better\n", json!({}));
    assert!(e.contains("line 2: column 2 (`rater`): empty rater"), "{e}");
}

#[test]
fn positions_from_the_param_and_anonymous_raters() {
    let store = tempfile::tempdir().unwrap();
    let csv = "ID,Preference\nkoala_0,A\nkoala_0,b\nkoala_0,B\n";
    let (res, w) = run(
        "eval.preference",
        json!({"human_model_position": "B"}),
        &inputs(Some(csv.into())),
        &env(None, store.path()),
    );
    let m = res.unwrap().metrics;
    assert_eq!(
        (m["human_n"].clone(), m["human_raters"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(
        jsonl(&read(&w, "out/judgments.jsonl"))[0]["human"]["verdict"],
        "better"
    );
}

#[test]
fn input_problems_are_clear() {
    let store = tempfile::tempdir().unwrap();
    let e = env(None, store.path());
    let (res, _) = run("eval.preference", json!({}), &inputs(None), &e);
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("needs the param `judge_model` or an input `human`")
    );
    let mut ins = inputs(None);
    ins[2].1 = fixture("preference/teacher.jsonl")
        .lines()
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    let (res, _) = run("eval.preference", json!({"judge_model": "j"}), &ins, &e);
    let msg = res.unwrap_err().to_string();
    assert!(
        msg.contains("input `teacher` has no response for prompt `koala_5` (prompts line 6)"),
        "{msg}"
    );
    let mut ins = inputs(None);
    ins[1]
        .1
        .push_str("{\"id\": \"koala_9\", \"response\": \"x\"}\n");
    let (res, _) = run("eval.preference", json!({"judge_model": "j"}), &ins, &e);
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("`koala_9`, which is not in input `prompts`")
    );
    // Offline with an empty store: how many judge requests are missing.
    let (res, _) = run(
        "eval.preference",
        json!({"judge_model": "j"}),
        &inputs(None),
        &e,
    );
    assert!(
        res.unwrap_err()
            .to_string()
            .contains("10 of 10 API requests are not in the request store")
    );
}
