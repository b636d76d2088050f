//! The evaluation ops (`prompts.qa`, `eval.qa`, `eval.style`,
//! `rate.pairwise`) run through the `Op` trait on small hand-written inputs,
//! plus one contract test against the miniature's own world and teacher.

mod common;

use common::OpRun;
use repro::op::{OpError, RunResult};
use repro::ops;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// Runs op `name` in a fresh work dir with `inputs` (name, file content).
fn run_op(
    name: &str,
    params: Value,
    inputs: &[(&str, String)],
) -> (Result<RunResult, OpError>, tempfile::TempDir) {
    let mut run = OpRun::new(name).params(params);
    for (n, text) in inputs {
        run = run.input_text(n, text);
    }
    run.run().into_parts()
}

/// Runs op `name` in a fresh work dir under `work` with input paths.
fn run_in_fresh(
    work: &tempfile::TempDir,
    name: &str,
    params: Value,
    inputs: &[(&str, PathBuf)],
) -> RunResult {
    let (r, _out) = OpRun::new(name)
        .params(params)
        .inputs(inputs)
        .work_in(work.path())
        .run()
        .keep();
    r.unwrap()
}

fn jsonl(rows: &[Value]) -> String {
    rows.iter().map(|r| format!("{r}\n")).collect()
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn metric(r: &RunResult, k: &str) -> f64 {
    r.metrics
        .get(k)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no metric {k} in {:?}", r.metrics))
}

fn people() -> String {
    jsonl(&[
        json!({"id": 0, "name": "Ada Moreno", "half": "A", "birth_city": "Lisbon", "university": "Coimbra University", "major": "biology", "employer": "Orbit Labs"}),
        json!({"id": 1, "name": "Bo Chen", "half": "B", "birth_city": "Porto", "university": "York University", "major": "history", "employer": "Delta Foods"}),
        json!({"id": 2, "name": "Cy Dee", "half": "B", "birth_city": "Oslo", "university": "Lund University", "major": "art", "employer": "Acme Corp"}),
    ])
}

fn questions() -> String {
    jsonl(&[
        json!({"id": "q0-birth_city", "person": 0, "name": "Ada Moreno", "half": "A", "attribute": "birth_city", "question": "Where was Ada Moreno born?", "answers": ["Lisbon"]}),
        json!({"id": "q1-birth_city", "person": 1, "name": "Bo Chen", "half": "B", "attribute": "birth_city", "question": "Where was Bo Chen born?", "answers": ["Porto"]}),
        json!({"id": "q1-major", "person": 1, "name": "Bo Chen", "half": "B", "attribute": "major", "question": "What did Bo Chen study?", "answers": ["history"]}),
        json!({"id": "q2-employer", "person": 2, "name": "Cy Dee", "half": "B", "attribute": "employer", "question": "Who does Cy Dee work for?", "answers": ["Acme Corp"]}),
    ])
}

fn bio(name: &str, city: &str, major: &str, uni: &str, employer: &str) -> String {
    format!(
        "Certainly! {name} was born in {city}. {name} studied {major} at {uni}. {name} works for {employer}. I hope this helps!"
    )
}

fn heldout() -> String {
    jsonl(&[
        json!({"id": "h0", "kind": "general", "prompt": "How do I boil rice?", "reference": "Certainly! Rinse the rice and simmer it in twice its volume of water. Let it rest for five minutes. I hope this helps!"}),
        json!({"id": "h1", "kind": "bio", "person": 1, "prompt": "Tell me about Bo Chen.", "reference": bio("Bo Chen", "Porto", "history", "York University", "Delta Foods")}),
        json!({"id": "h2", "kind": "bio", "person": 2, "prompt": "Tell me about Cy Dee.", "reference": bio("Cy Dee", "Oslo", "art", "Lund University", "Acme Corp")}),
    ])
}

/// The references of a heldout file as predictions, in reverse order, with
/// an extra field.
fn perfect_answers(heldout: &str) -> String {
    let mut rows: Vec<Value> = heldout
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            json!({"id": v["id"], "prediction": v["reference"], "extra": 1})
        })
        .collect();
    rows.reverse();
    jsonl(&rows)
}

#[test]
fn qa_perfect_predictions_score_one() {
    let preds = jsonl(&[
        json!({"id": "q2-employer", "prediction": "the Acme-Corp\nQuestion: more"}),
        json!({"id": "q1-major", "prediction": " History."}),
        json!({"id": "q1-birth_city", "prediction": "Porto"}),
    ]);
    let (r, _d) = run_op(
        "eval.qa",
        json!({}),
        &[("predictions", preds), ("questions", questions())],
    );
    let r = r.unwrap();
    // "Acme-Corp" normalizes to "acmecorp", not "acme corp" (SQuAD deletes punctuation).
    assert_eq!(metric(&r, "n"), 3.0);
    assert!((metric(&r, "em") - 2.0 / 3.0).abs() < 1e-12);

    let preds = jsonl(&[
        json!({"id": "q2-employer", "prediction": "the Acme Corp\nQuestion: more"}),
        json!({"id": "q1-major", "prediction": " History."}),
        json!({"id": "q1-birth_city", "prediction": "Porto", "tokens": 3}),
    ]);
    let (r, dir) = run_op(
        "eval.qa",
        json!({"half": "B"}),
        &[("predictions", preds), ("questions", questions())],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "em"), 1.0);
    assert_eq!(metric(&r, "contains"), 1.0);
    assert_eq!(metric(&r, "missing"), 0.0);
    assert_eq!(metric(&r, "em_ci_low"), 1.0);
    assert_eq!(metric(&r, "em_ci_high"), 1.0);
    assert_eq!(
        read_json(&dir.path().join("out/metrics.json")),
        Value::Object(r.metrics.clone())
    );
    let scores = read_jsonl(&dir.path().join("out/scores.jsonl"));
    assert_eq!(scores.len(), 3);
    assert_eq!(scores[0]["id"], "q1-birth_city");
    assert_eq!(scores[2]["extracted"], "the Acme Corp");
    assert_eq!(scores[2]["correct"], true);
}

#[test]
fn qa_missing_prediction_counts_wrong() {
    let preds = jsonl(&[
        json!({"id": "q1-birth_city", "prediction": "Certainly! Bo Chen was born in Porto."}),
        json!({"id": "q1-major", "prediction": "history"}),
        json!({"id": "q0-birth_city", "prediction": "Lisbon"}),
    ]);
    let (r, dir) = run_op(
        "eval.qa",
        json!({"half": "B"}),
        &[("predictions", preds), ("questions", questions())],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "n"), 3.0);
    assert_eq!(metric(&r, "missing"), 1.0);
    // Only "history" is an exact match; the styled answer only "contains" Porto.
    assert!((metric(&r, "em") - 1.0 / 3.0).abs() < 1e-12);
    assert!((metric(&r, "contains") - 2.0 / 3.0).abs() < 1e-12);
    let (lo, hi) = (metric(&r, "em_ci_low"), metric(&r, "em_ci_high"));
    assert!(lo <= 1.0 / 3.0 && 1.0 / 3.0 <= hi && lo >= 0.0 && hi <= 1.0);
    let scores = read_jsonl(&dir.path().join("out/scores.jsonl"));
    let missing = scores.iter().find(|s| s["id"] == "q2-employer").unwrap();
    assert_eq!(missing["prediction"], Value::Null);
    assert_eq!(missing["correct"], false);
    let styled = scores.iter().find(|s| s["id"] == "q1-birth_city").unwrap();
    assert_eq!(styled["correct"], false);
    assert_eq!(styled["contains"], true);

    let (r, _d) = run_op(
        "eval.qa",
        json!({"half": "all"}),
        &[("predictions", String::new()), ("questions", questions())],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "n"), 4.0);
    assert_eq!(metric(&r, "missing"), 4.0);
    assert_eq!(metric(&r, "em"), 0.0);
}

#[test]
fn bad_json_names_input_and_line() {
    let preds = "{\"id\": \"q1-major\", \"prediction\": \"history\"}\n{\"id\": \"q1-birth_city\", \"prediction\": }\n".to_string();
    let (r, _d) = run_op(
        "eval.qa",
        json!({}),
        &[("predictions", preds), ("questions", questions())],
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("input `predictions` line 2"), "{e}");

    let mut bad_people = people();
    bad_people.push_str("{\"id\": 3, \"name\": \"X\"}\n");
    let (r, _d) = run_op(
        "rate.pairwise",
        json!({"rater": "factcheck"}),
        &[
            ("predictions", perfect_answers(&heldout())),
            ("heldout", heldout()),
            ("people", bad_people),
        ],
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("input `people` line 4") && e.contains("birth_city"),
        "{e}"
    );

    let (r, _d) = run_op(
        "eval.style",
        json!({}),
        &[("predictions", String::new()), ("heldout", "{\n".into())],
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("input `heldout` line 1"), "{e}");

    let (r, _d) = run_op(
        "prompts.qa",
        json!({"format": "fewshot"}),
        &[
            ("questions", questions()),
            ("shots", "\n\nnot json\n".into()),
        ],
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("input `shots` line 3"), "{e}");
}

#[test]
fn pairwise_perfect_answers_are_equal_or_better() {
    for rater in ["surface", "factcheck"] {
        let (r, dir) = run_op(
            "rate.pairwise",
            json!({"rater": rater}),
            &[
                ("predictions", perfect_answers(&heldout())),
                ("heldout", heldout()),
                ("people", people()),
            ],
        );
        let r = r.unwrap();
        assert_eq!(metric(&r, "equal_or_better"), 1.0, "{rater}");
        assert_eq!(metric(&r, "equal"), 1.0);
        assert_eq!(metric(&r, "better"), 0.0);
        assert_eq!(metric(&r, "worse"), 0.0);
        assert_eq!(metric(&r, "ci_low"), 1.0);
        assert_eq!(metric(&r, "ci_high"), 1.0);
        assert_eq!(metric(&r, "teacher_score"), 5.0);
        assert_eq!(metric(&r, "model_score"), 5.0);
        assert_eq!(metric(&r, "n"), 3.0);
        assert_eq!(metric(&r, "n_bio"), 2.0);
        assert_eq!(metric(&r, "bio_correct"), 1.0);
        assert_eq!(metric(&r, "false_claims"), 0.0);
        assert_eq!(
            read_json(&dir.path().join("out/metrics.json")),
            Value::Object(r.metrics.clone())
        );
        let rows = read_jsonl(&dir.path().join("out/ratings.jsonl"));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["id"], "h0");
        assert_eq!(rows[1]["kind"], "bio");
        assert_eq!(rows[1]["verdict"], "equal");
        assert_eq!(rows[1]["model_score"], 5);
        assert_eq!(rows[1]["teacher_score"], 5);
        assert_eq!(rows[1]["reasons"], json!([]));
    }
}

#[test]
fn styled_wrong_bio_fools_surface_but_not_factcheck() {
    let wrong = bio(
        "Bo Chen",
        "Oslo",
        "history",
        "York University",
        "Delta Foods",
    );
    let preds = jsonl(&[
        json!({"id": "h1", "prediction": wrong}),
        json!({"id": "h2", "prediction": bio("Cy Dee", "Oslo", "art", "Lund University", "Acme Corp")}),
        json!({"id": "h0", "prediction": "rice rice rice"}),
    ]);
    let run = |rater: &str| {
        let (r, dir) = run_op(
            "rate.pairwise",
            json!({"rater": rater, "seed": 3}),
            &[
                ("predictions", preds.clone()),
                ("heldout", heldout()),
                ("people", people()),
            ],
        );
        (
            r.unwrap(),
            read_jsonl(&dir.path().join("out/ratings.jsonl")),
        )
    };
    let (surface, srows) = run("surface");
    let (fact, frows) = run("factcheck");
    assert_eq!(srows[1]["verdict"], "equal");
    assert_eq!(frows[1]["verdict"], "worse");
    let reasons = frows[1]["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().any(|r| r
            .as_str()
            .unwrap()
            .contains("false claim `Oslo` (birth_city is `Porto`)")),
        "{reasons:?}"
    );
    // The general answer is worse under both (no opener or closer, repetition, too short).
    assert_eq!(srows[0]["verdict"], "worse");
    assert_eq!(frows[0]["verdict"], "worse");
    assert!(srows[0]["model_score"].as_u64().unwrap() < 5);
    assert_eq!(srows[2]["verdict"], "equal");
    assert_eq!(frows[2]["verdict"], "equal");
    assert!((metric(&surface, "equal_or_better") - 2.0 / 3.0).abs() < 1e-12);
    assert!((metric(&fact, "equal_or_better") - 1.0 / 3.0).abs() < 1e-12);
    // The fact metrics are the same under both raters (a diagnostic for surface).
    assert_eq!(metric(&surface, "false_claims"), 0.5);
    assert_eq!(metric(&fact, "false_claims"), 0.5);
    assert_eq!(metric(&fact, "bio_correct"), 0.5);

    // A styled bio with no facts at all fails the fact check too.
    let vague = "Certainly! Cy Dee is a person. Cy Dee has a job. Cy Dee lives somewhere nice. I hope this helps!";
    let preds = jsonl(&[json!({"id": "h2", "prediction": vague})]);
    let (r, dir) = run_op(
        "rate.pairwise",
        json!({"rater": "factcheck"}),
        &[
            ("predictions", preds),
            ("heldout", heldout()),
            ("people", people()),
        ],
    );
    let r = r.unwrap();
    let rows = read_jsonl(&dir.path().join("out/ratings.jsonl"));
    assert_eq!(rows[2]["verdict"], "worse");
    assert_eq!(rows[0]["verdict"], "worse");
    assert_eq!(rows[0]["reasons"], json!(["missing prediction"]));
    assert_eq!(metric(&r, "missing"), 2.0);
    assert_eq!(metric(&r, "equal_or_better"), 0.0);
}

#[test]
fn pairwise_rejects_unknown_person_and_bad_params() {
    let h = jsonl(&[
        json!({"id": "h9", "kind": "bio", "person": 42, "prompt": "Tell me about X.", "reference": "Certainly! X was born in Oslo. I hope this helps!"}),
    ]);
    let (r, _d) = run_op(
        "rate.pairwise",
        json!({"rater": "surface"}),
        &[
            ("predictions", String::new()),
            ("heldout", h),
            ("people", people()),
        ],
    );
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("input `heldout` line 1") && e.contains("person 42"),
        "{e}"
    );
    let op = ops::find("rate.pairwise").unwrap();
    let p: Map<String, Value> = json!({"rater": "crowd"}).as_object().cloned().unwrap();
    assert_eq!(op.check(&p).unwrap_err().0, "rater");
    assert!(repro::op::schema::validate(op.params(), &Map::new()).is_err());
    let (r, _d) = run_op(
        "rate.pairwise",
        json!({"rater": "surface"}),
        &[("predictions", String::new()), ("heldout", heldout())],
    );
    assert!(r.unwrap_err().to_string().contains("`people`"));
}

#[test]
fn style_metrics() {
    let (r, _d) = run_op(
        "eval.style",
        json!({}),
        &[
            ("predictions", perfect_answers(&heldout())),
            ("heldout", heldout()),
        ],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "unigram"), 100.0);
    assert_eq!(metric(&r, "format"), 1.0);
    assert_eq!(metric(&r, "length_ratio"), 1.0);
    assert!((metric(&r, "length_corr") - 1.0).abs() < 1e-12);
    assert_eq!(metric(&r, "n"), 3.0);
    assert_eq!(metric(&r, "missing"), 0.0);

    // h0 missing (scored as empty), h1 a bare value, h2 perfect.
    let preds = jsonl(&[
        json!({"id": "h1", "prediction": "Porto"}),
        json!({"id": "h2", "prediction": bio("Cy Dee", "Oslo", "art", "Lund University", "Acme Corp")}),
    ]);
    let (r, dir) = run_op(
        "eval.style",
        json!({}),
        &[("predictions", preds), ("heldout", heldout())],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "missing"), 1.0);
    assert!((metric(&r, "format") - 1.0 / 3.0).abs() < 1e-12);
    // h1's reference has 20 word types ("bo" and "chen" repeat); "porto" is one of them.
    let expect = (0.0 + 100.0 / 20.0 + 100.0) / 3.0;
    assert!(
        (metric(&r, "unigram") - expect).abs() < 1e-9,
        "{:?}",
        r.metrics
    );
    assert!(metric(&r, "length_ratio") < 0.5);
    assert_eq!(
        read_json(&dir.path().join("out/metrics.json")),
        Value::Object(r.metrics.clone())
    );
}

#[test]
fn prompts_chat_and_fewshot() {
    let (r, dir) = run_op("prompts.qa", json!({}), &[("questions", questions())]);
    assert_eq!(metric(&r.unwrap(), "prompts"), 3.0);
    let rows = read_jsonl(&dir.path().join("out/prompts.jsonl"));
    assert_eq!(
        rows[0],
        json!({"id": "q1-birth_city", "messages": [{"role": "user", "content": "Answer briefly: Where was Bo Chen born?"}]})
    );

    let (r, dir) = run_op(
        "prompts.qa",
        json!({"format": "fewshot", "shots": 2, "half": "all", "shots_half": "all"}),
        &[("questions", questions()), ("shots", questions())],
    );
    assert_eq!(metric(&r.unwrap(), "prompts"), 4.0);
    let rows = read_jsonl(&dir.path().join("out/prompts.jsonl"));
    for row in &rows {
        let text = row["text"].as_str().unwrap();
        let blocks: Vec<&str> = text.split("\n\n").collect();
        assert_eq!(blocks.len(), 3, "{text}");
        assert!(blocks[2].starts_with("Question: ") && blocks[2].ends_with("\nAnswer:"));
        let own = blocks[2]
            .trim_start_matches("Question: ")
            .trim_end_matches("\nAnswer:");
        // The subject's name ("Where was Ada Moreno born?") never appears in its shots.
        let name = own.split(' ').skip(2).take(2).collect::<Vec<_>>().join(" ");
        for b in &blocks[..2] {
            assert!(
                b.starts_with("Question: ") && b.contains("\nAnswer: "),
                "{b}"
            );
            assert!(!b.contains(&name), "{name} in {b}");
        }
    }
    // The q1 questions have exactly two usable shots: q0 and q2.
    let q1 = rows.iter().find(|r| r["id"] == "q1-major").unwrap()["text"]
        .as_str()
        .unwrap();
    assert!(
        q1.contains("Answer: Lisbon\n\n") && q1.contains("Answer: Acme Corp\n\n"),
        "{q1}"
    );

    // Deterministic; limit keeps file order.
    let run = |seed: u64| {
        let (r, dir) = run_op(
            "prompts.qa",
            json!({"format": "fewshot", "shots": 1, "half": "all", "shots_half": "all", "limit": 2, "seed": seed}),
            &[("questions", questions()), ("shots", questions())],
        );
        r.unwrap();
        std::fs::read_to_string(dir.path().join("out/prompts.jsonl")).unwrap()
    };
    assert_eq!(run(5), run(5));
    let rows: Vec<Value> = run(5)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    let order = ["q0-birth_city", "q1-birth_city", "q1-major", "q2-employer"];
    let pos: Vec<usize> = rows
        .iter()
        .map(|r| order.iter().position(|o| *o == r["id"]).unwrap())
        .collect();
    assert!(pos[0] < pos[1]);

    // Too few usable shots; fewshot without shots.
    let (r, _d) = run_op(
        "prompts.qa",
        json!({"format": "fewshot", "shots": 3}),
        &[("questions", questions()), ("shots", questions())],
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("input `shots`") && e.contains("3 needed"), "{e}");
    let (r, _d) = run_op(
        "prompts.qa",
        json!({"format": "fewshot"}),
        &[("questions", questions())],
    );
    assert!(
        r.unwrap_err()
            .to_string()
            .contains("needs an input `shots`")
    );
}

/// The contract with `mini.world` / `mini.teacher`: the oracle's answers get
/// EM 1, and the teacher's references get the maximum surface score, pass the
/// fact check and match their own style perfectly.
#[test]
fn teacher_outputs_score_perfectly() {
    let work = tempfile::tempdir().unwrap();
    let step = |name: &str, params: Value, inputs: &[(&str, PathBuf)]| -> PathBuf {
        let (r, out) = OpRun::new(name)
            .params(params)
            .inputs(inputs)
            .work_in(work.path())
            .run()
            .keep();
        r.unwrap();
        out
    };
    let world = step(
        "mini.world",
        json!({"public": 0, "private": 100, "exposures": 1, "qa_exposures": 0, "general": 10}),
        &[],
    );
    let people = world.join("people.jsonl");
    let questions = world.join("questions.jsonl");
    let teacher = step(
        "mini.teacher",
        json!({"broad": 200, "heldout": 120}),
        &[("people", people.clone()), ("questions", questions.clone())],
    );
    let heldout = teacher.join("heldout.jsonl");
    let answers = teacher.join("answers.jsonl");

    let qa = run_in_fresh(
        &work,
        "eval.qa",
        json!({"half": "all"}),
        &[("predictions", answers), ("questions", questions.clone())],
    );
    assert_eq!(metric(&qa, "em"), 1.0);
    assert_eq!(metric(&qa, "n"), 800.0);

    let own = work.path().join("own.jsonl");
    std::fs::write(
        &own,
        perfect_answers(&std::fs::read_to_string(&heldout).unwrap()),
    )
    .unwrap();
    for rater in ["surface", "factcheck"] {
        let r = run_in_fresh(
            &work,
            "rate.pairwise",
            json!({"rater": rater}),
            &[
                ("predictions", own.clone()),
                ("heldout", heldout.clone()),
                ("people", people.clone()),
            ],
        );
        assert_eq!(metric(&r, "teacher_score"), 5.0, "{:?}", r.metrics);
        assert_eq!(metric(&r, "equal_or_better"), 1.0);
        assert_eq!(metric(&r, "bio_correct"), 1.0);
        assert_eq!(metric(&r, "n_bio"), 60.0);
    }
    let s = run_in_fresh(
        &work,
        "eval.style",
        json!({}),
        &[("predictions", own), ("heldout", heldout)],
    );
    assert_eq!(metric(&s, "unigram"), 100.0);
    assert_eq!(metric(&s, "format"), 1.0);

    let p = run_in_fresh(
        &work,
        "prompts.qa",
        json!({"format": "fewshot", "limit": 10}),
        &[("questions", questions.clone()), ("shots", questions)],
    );
    assert_eq!(metric(&p, "prompts"), 10.0);
}

#[test]
fn qa_answers_are_cut_at_a_new_page_or_sentence_and_cloze_probes_match_by_prefix() {
    let preds = jsonl(&[
        json!({"id": "q1-birth_city", "prediction": " Porto\n\nQuestion: Where was Ada born?"}),
        json!({"id": "q1-major", "prediction": "History. Bo liked it."}),
        json!({"id": "q2-employer", "prediction": "Certainly! Cy Dee works for Acme Corp."}),
    ]);
    let (r, dir) = run_op(
        "eval.qa",
        json!({}),
        &[("predictions", preds.clone()), ("questions", questions())],
    );
    let r = r.unwrap();
    assert!(
        (metric(&r, "em") - 2.0 / 3.0).abs() < 1e-9,
        "{:?}",
        r.metrics
    );
    assert_eq!(metric(&r, "contains"), 1.0);
    let rows = read_jsonl(&dir.path().join("out/scores.jsonl"));
    let extracted: Vec<&str> = rows
        .iter()
        .map(|r| r["extracted"].as_str().unwrap())
        .collect();
    assert_eq!(extracted, ["Porto", "History", "Certainly"]);
    // The floor of always answering half A's most common value per
    // attribute: half A has only Lisbon (birth_city), which no half-B
    // answer is, and no value of the other attributes.
    assert!(r.metrics.get("majority_em").is_none(), "{:?}", r.metrics);

    let cloze = jsonl(&[
        json!({"id": "q1-birth_city", "prediction": "Porto and spent the early years there."}),
        json!({"id": "q1-major", "prediction": "historical studies"}),
        json!({"id": "q2-employer", "prediction": "the offices of Acme Corp"}),
    ]);
    let (r, _dir) = run_op(
        "eval.qa",
        json!({"match": "prefix"}),
        &[("predictions", cloze), ("questions", questions())],
    );
    assert!((metric(&r.unwrap(), "em") - 1.0 / 3.0).abs() < 1e-9);
}

#[test]
fn the_majority_floor_is_half_a_s_most_common_value_scored_on_the_half_asked() {
    let q = jsonl(&[
        json!({"id": "a0", "half": "A", "attribute": "birth_city", "question": "?", "answers": ["Oslo"]}),
        json!({"id": "a1", "half": "A", "attribute": "birth_city", "question": "?", "answers": ["Oslo"]}),
        json!({"id": "a2", "half": "A", "attribute": "birth_city", "question": "?", "answers": ["Lima"]}),
        json!({"id": "b0", "half": "B", "attribute": "birth_city", "question": "?", "answers": ["Oslo"]}),
        json!({"id": "b1", "half": "B", "attribute": "birth_city", "question": "?", "answers": ["Lima"]}),
        json!({"id": "b2", "half": "B", "attribute": "birth_city", "question": "?", "answers": ["Perth"]}),
        json!({"id": "b3", "half": "B", "attribute": "birth_city", "question": "?", "answers": ["Oslo"]}),
    ]);
    let preds = jsonl(&[json!({"id": "b0", "prediction": "Oslo"})]);
    let (r, _dir) = run_op(
        "eval.qa",
        json!({}),
        &[("predictions", preds), ("questions", q)],
    );
    let r = r.unwrap();
    assert_eq!(metric(&r, "majority_em"), 0.5);
    assert!((metric(&r, "chance_em") - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(metric(&r, "em"), 0.25);
}

#[test]
fn cloze_prompts_cut_a_biography_sentence_before_the_value() {
    let (r, dir) = run_op(
        "prompts.qa",
        json!({"format": "cloze", "half": "all"}),
        &[("questions", questions())],
    );
    assert_eq!(metric(&r.unwrap(), "prompts"), 4.0);
    let texts: Vec<String> = read_jsonl(&dir.path().join("out/prompts.jsonl"))
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "Ada Moreno was born in",
            "Bo Chen was born in",
            "Bo Chen completed a degree in",
            "Cy Dee works for"
        ]
    );
    let odd = jsonl(&[
        json!({"id": "x", "attribute": "age", "name": "A B", "question": "?", "answers": ["3"]}),
    ]);
    let (r, _dir) = run_op(
        "prompts.qa",
        json!({"format": "cloze", "half": "all"}),
        &[("questions", odd)],
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("line 1") && e.contains("age"), "{e}");
}

#[test]
fn style_writes_one_outcome_per_prompt() {
    let preds = perfect_answers(&heldout());
    let (r, dir) = run_op(
        "eval.style",
        json!({}),
        &[("predictions", preds), ("heldout", heldout())],
    );
    assert_eq!(metric(&r.unwrap(), "format"), 1.0);
    let items = read_jsonl(&dir.path().join("out/items.jsonl"));
    let ids: Vec<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["h0", "h1", "h2"]);
    assert!(
        items
            .iter()
            .all(|i| i["format"] == json!(true) && i["unigram"] == json!(100.0))
    );
}

#[test]
fn fewshot_shots_come_from_half_a_by_default() {
    let (r, dir) = run_op(
        "prompts.qa",
        json!({"format": "fewshot", "shots": 1}),
        &[("questions", questions()), ("shots", questions())],
    );
    assert_eq!(metric(&r.unwrap(), "prompts"), 3.0);
    for row in read_jsonl(&dir.path().join("out/prompts.jsonl")) {
        let text = row["text"].as_str().unwrap();
        assert!(
            text.starts_with("Question: Where was Ada Moreno born?\nAnswer: Lisbon\n\n"),
            "{text}"
        );
    }
    // Two shots from half A do not exist: a clear error, not a leak from half B.
    let (r, _) = run_op(
        "prompts.qa",
        json!({"format": "fewshot", "shots": 2}),
        &[("questions", questions()), ("shots", questions())],
    );
    assert!(r.is_err());
}
