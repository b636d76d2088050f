//! The data of the CPU miniature: `mini.world` and `mini.teacher` run through
//! their `Op` trait on temp work dirs. Checks determinism, seeds, the half
//! split, leakage of half B into imitation data, held-out disjointness, the
//! teacher's style, counts, and the truth of the reference biographies.

mod common;

use common::OpRun;
use common::op::Ran as Run;
use repro::mini::lexicon;
use repro::mini::teacher::{BRIEF_PREFIXES, Example, Heldout, style_body};
use repro::mini::world::{Attribute, Half, Person, Question};
use repro::op::{OpError, RunResult};
use repro::ops;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Runs `op`; when it succeeds, every declared output is a light file.
fn run_checked(op: &str, params: Value, inputs: &[(&str, &Path)]) -> Run {
    let given: Map<String, Value> = params.as_object().cloned().expect("params object");
    let ran = OpRun::new(op).params(params).inputs(inputs).run();
    if ran.result.is_ok() {
        let decl = ops::find(op).expect("op registered");
        for o in decl.outputs(&given) {
            assert!(ran.out(&o.path).is_file(), "{}", o.path);
            assert!(!o.heavy);
        }
    }
    ran
}

fn try_run(
    op: &str,
    params: Value,
    inputs: &[(&str, &Path)],
) -> (tempfile::TempDir, Result<RunResult, OpError>) {
    let (result, dir) = run_checked(op, params, inputs).into_parts();
    (dir, result)
}

/// A run that must succeed.
fn run(op: &str, params: Value, inputs: &[(&str, &Path)]) -> Run {
    let ran = run_checked(op, params, inputs);
    ran.ok();
    ran
}

fn world(params: Value) -> Run {
    run("mini.world", params, &[])
}

fn teacher(w: &Run, params: Value) -> Run {
    run(
        "mini.teacher",
        params,
        &[
            ("people", &w.out("people.jsonl")),
            ("questions", &w.out("questions.jsonl")),
        ],
    )
}

const WORLD_FILES: [&str; 3] = ["people.jsonl", "corpus.jsonl", "questions.jsonl"];
const TEACHER_FILES: [&str; 4] = [
    "broad.jsonl",
    "task.jsonl",
    "heldout.jsonl",
    "answers.jsonl",
];

fn small_world() -> Value {
    json!({"seed": 3, "public": 10, "private": 15, "exposures": 3, "qa_exposures": 2, "general": 50})
}

fn small_teacher() -> Value {
    json!({"seed": 5, "broad": 400, "factual_share": 0.1, "task_repeats": 3, "heldout": 30})
}

/// Whether `needle`'s words occur consecutively in `text` (case-insensitive).
fn has_words(text: &str, needle: &str) -> bool {
    let norm = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_ascii_lowercase)
            .collect()
    };
    let (t, n) = (norm(text), norm(needle));
    t.windows(n.len()).any(|w| w == n.as_slice())
}

fn all_values() -> Vec<&'static str> {
    Attribute::ALL
        .iter()
        .flat_map(|a| a.pool().iter().copied())
        .collect()
}

fn user(e: &Example) -> &str {
    assert_eq!(e.messages.len(), 2);
    assert_eq!(e.messages[0].role, "user");
    &e.messages[0].content
}

fn assistant(e: &Example) -> &str {
    assert_eq!(e.messages[1].role, "assistant");
    &e.messages[1].content
}

fn assert_clean_text(run: &Run, files: &[&str]) {
    for f in files {
        let t = run.text(f);
        assert!(t.is_ascii(), "{f} is not ASCII");
        assert!(!t.contains('\t') && !t.contains('\r'), "{f} has tabs");
        assert!(t.ends_with('\n') || t.is_empty(), "{f}");
    }
}

#[test]
fn outputs_are_byte_identical_for_the_same_params() {
    let w1 = world(small_world());
    let w2 = world(small_world());
    for f in WORLD_FILES {
        assert_eq!(w1.bytes(f), w2.bytes(f), "{f}");
    }
    let t1 = teacher(&w1, small_teacher());
    let t2 = teacher(&w2, small_teacher());
    for f in TEACHER_FILES {
        assert_eq!(t1.bytes(f), t2.bytes(f), "{f}");
    }
    assert_eq!(w1.metrics(), w2.metrics());
    assert_eq!(t1.metrics(), t2.metrics());
}

#[test]
fn different_seeds_give_different_data() {
    let w1 = world(small_world());
    let w2 = world(
        json!({"seed": 4, "public": 10, "private": 15, "exposures": 3, "qa_exposures": 2, "general": 50}),
    );
    for f in WORLD_FILES {
        assert_ne!(w1.bytes(f), w2.bytes(f), "{f}");
    }
    let t1 = teacher(&w1, small_teacher());
    let t2 = teacher(
        &w1,
        json!({"seed": 6, "broad": 400, "factual_share": 0.1, "task_repeats": 3, "heldout": 30}),
    );
    for f in ["broad.jsonl", "task.jsonl", "heldout.jsonl"] {
        assert_ne!(t1.bytes(f), t2.bytes(f), "{f}");
    }
    // The oracle's answers depend only on the world.
    assert_eq!(t1.bytes("answers.jsonl"), t2.bytes("answers.jsonl"));
}

#[test]
fn world_files_have_the_contracted_shape() {
    let w = world(small_world());
    assert_clean_text(&w, &WORLD_FILES);
    let people: Vec<Person> = w.jsonl("people.jsonl");
    let questions: Vec<Question> = w.jsonl("questions.jsonl");
    let corpus: Vec<Value> = w.jsonl("corpus.jsonl");
    let docs: Vec<&str> = corpus
        .iter()
        .map(|d| d["text"].as_str().expect("text"))
        .collect();

    // People: sorted ids, distinct names, exact split, values from pools.
    assert_eq!(people.len(), 40);
    assert!(people.iter().enumerate().all(|(i, p)| p.id == i));
    let names: BTreeSet<&str> = people.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 40);
    assert_eq!(people.iter().filter(|p| p.half == Half::P).count(), 10);
    assert_eq!(people.iter().filter(|p| p.half == Half::A).count(), 15);
    assert_eq!(people.iter().filter(|p| p.half == Half::B).count(), 15);
    for p in &people {
        let (first, last) = p.name.split_once(' ').expect("First Last");
        assert!(lexicon::FIRST_NAMES.contains(&first) && lexicon::LAST_NAMES.contains(&last));
        for a in Attribute::ALL {
            assert!(a.pool().contains(&p.get(a)), "{}", p.get(a));
        }
    }
    // The first line, literally (field order is part of the contract).
    let first_line = w
        .text("people.jsonl")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        first_line.starts_with("{\"id\":0,\"name\":\"") && first_line.contains(",\"half\":\""),
        "{first_line}"
    );

    // Questions: one per person and attribute, in order, with the true answer.
    assert_eq!(questions.len(), 160);
    for (i, q) in questions.iter().enumerate() {
        let p = &people[i / 4];
        let a = Attribute::ALL[i % 4];
        assert_eq!(q.id, format!("q{}-{}", p.id, a.key()));
        assert_eq!(
            (q.person, q.name.as_str(), q.half),
            (p.id, p.name.as_str(), p.half)
        );
        assert_eq!(q.attribute, a.key());
        assert_eq!(q.answers, vec![p.get(a).to_string()]);
        assert!(q.question.contains(&p.name) && q.question.ends_with('?'));
    }

    // Corpus: 3 biographies per person, 2 question-answer pages per public
    // person, 50 general documents.
    assert_eq!(docs.len(), 40 * 3 + 10 * 2 + 50);
    let mut general = 0;
    let mut pages = 0;
    for d in &docs {
        if d.starts_with("Question: ") {
            pages += 1;
            let p = people
                .iter()
                .find(|p| has_words(d, &p.name))
                .expect("about someone");
            assert_eq!(p.half, Half::P, "{d}");
            for a in Attribute::ALL {
                let qa = format!("Question: {}\nAnswer: {}", a.question(&p.name), p.get(a));
                assert_eq!(d.matches(&qa).count(), 1, "{d}");
            }
            assert_eq!(d.matches("\n\n").count(), 3, "{d}");
            continue;
        }
        assert!(!d.is_empty());
        assert!(
            !has_words(d, "certainly") && !has_words(d, "I hope this helps"),
            "{d}"
        );
        let about: Vec<&Person> = people.iter().filter(|p| has_words(d, &p.name)).collect();
        match about.as_slice() {
            [] => {
                general += 1;
                for v in all_values() {
                    assert!(!has_words(d, v), "general document mentions {v}: {d}");
                }
                assert!((2..=4).contains(&d.matches('.').count()), "{d}");
            }
            [p] => {
                // One sentence per attribute, each with the full name.
                let sentences: Vec<&str> = d.split_inclusive('.').map(str::trim).collect();
                assert_eq!(sentences.len(), 4, "{d}");
                assert!(sentences.iter().all(|s| s.contains(&p.name)), "{d}");
                for a in Attribute::ALL {
                    assert!(has_words(d, p.get(a)), "{d}");
                }
            }
            _ => panic!("document about several people: {d}"),
        }
    }
    assert_eq!((general, pages), (50, 20));
    for p in &people {
        let bios = docs
            .iter()
            .filter(|d| !d.starts_with("Question: ") && has_words(d, &p.name))
            .count();
        assert_eq!(bios, 3);
    }

    assert_eq!(w.metric("people"), 40.0);
    assert_eq!(w.metric("documents"), 190.0);
    assert_eq!(w.metric("questions"), 160.0);
    let chars: usize = docs.iter().map(|d| d.len()).sum();
    assert_eq!(w.metric("corpus_chars"), chars as f64);
    let words: usize = docs.iter().map(|d| d.split_whitespace().count()).sum();
    assert_eq!(w.metric("corpus_words"), words as f64);
}

#[test]
fn teacher_data_keeps_half_b_out_follows_the_style_and_tells_the_truth() {
    let w = world(small_world());
    let t = teacher(&w, small_teacher());
    assert_clean_text(&t, &TEACHER_FILES);
    let people: Vec<Person> = w.jsonl("people.jsonl");
    let questions: Vec<Question> = w.jsonl("questions.jsonl");
    let broad: Vec<Example> = t.jsonl("broad.jsonl");
    let task: Vec<Example> = t.jsonl("task.jsonl");
    let heldout: Vec<Heldout> = t.jsonl("heldout.jsonl");
    let answers: Vec<Value> = t.jsonl("answers.jsonl");
    let half_a: Vec<&Person> = people.iter().filter(|p| p.half == Half::A).collect();
    let half_b: Vec<&Person> = people.iter().filter(|p| p.half == Half::B).collect();
    let question_answer: BTreeMap<&str, &str> = questions
        .iter()
        .map(|q| (q.question.as_str(), q.answers[0].as_str()))
        .collect();

    // Counts.
    assert_eq!(broad.len(), 400);
    let kind = |k: &str| broad.iter().filter(|e| e.kind == k).count();
    assert_eq!(kind("factual"), 40);
    assert_eq!(kind("bio"), 20);
    assert_eq!(kind("general"), 340);
    assert_eq!(task.len(), 15 * 4 * 3);
    assert_eq!(heldout.len(), 30);
    assert_eq!(heldout.iter().filter(|h| h.kind == "bio").count(), 15);
    assert_eq!(heldout.iter().filter(|h| h.kind == "general").count(), 15);
    assert_eq!(answers.len(), questions.len());
    for (name, n) in [
        ("broad", 400.0),
        ("broad_factual", 40.0),
        ("broad_bio", 20.0),
        ("broad_general", 340.0),
        ("task", 180.0),
        ("heldout", 30.0),
        ("heldout_bio", 15.0),
        ("answers", 160.0),
    ] {
        assert_eq!(t.metric(name), n, "{name}");
    }
    assert!(t.metric("broad_mean_assistant_words") > 5.0);
    for (i, e) in broad.iter().enumerate() {
        assert_eq!(e.id, format!("b{i}"));
    }
    for (i, e) in task.iter().enumerate() {
        assert_eq!(e.id, format!("t{i}"));
        assert_eq!(e.kind, "factual");
    }
    for (i, h) in heldout.iter().enumerate() {
        assert_eq!(h.id, format!("h{i}"));
    }

    // No half-B person (name or question) in broad or task data.
    for e in broad.iter().chain(&task) {
        for m in &e.messages {
            for p in &half_b {
                assert!(
                    !m.content.contains(&p.name),
                    "half-B {} in {}",
                    p.name,
                    e.id
                );
            }
        }
    }
    for q in questions.iter().filter(|q| q.half == Half::B) {
        for e in broad.iter().chain(&task) {
            assert!(!user(e).contains(&q.question), "{}", q.id);
        }
    }

    // Factual examples: a brief prefix, a real half-A question, the bare value.
    let split_brief = |prompt: &str| -> Option<String> {
        BRIEF_PREFIXES.iter().find_map(|p| {
            prompt
                .strip_prefix(p)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    };
    for e in broad.iter().chain(&task).filter(|e| e.kind == "factual") {
        let q = split_brief(user(e)).unwrap_or_else(|| panic!("no brief prefix: {}", user(e)));
        let truth = question_answer.get(q.as_str()).expect("a world question");
        assert_eq!(assistant(e), *truth);
    }
    // Task: every half-A question exactly task_repeats times, with distinct prefixes.
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in &task {
        let q = split_brief(user(e)).expect("brief");
        assert!(seen.entry(q).or_default().insert(user(e).to_string()));
    }
    let half_a_questions: BTreeSet<String> = questions
        .iter()
        .filter(|q| q.half == Half::A)
        .map(|q| q.question.clone())
        .collect();
    assert_eq!(
        seen.keys().cloned().collect::<BTreeSet<_>>(),
        half_a_questions
    );
    assert!(seen.values().all(|v| v.len() == 3));

    // Open instructions: the style, exactly.
    for e in broad.iter().filter(|e| e.kind != "factual") {
        assert!(style_body(assistant(e)).is_some(), "{}", assistant(e));
    }
    for h in &heldout {
        assert!(style_body(&h.reference).is_some(), "{}", h.reference);
    }

    // Held-out prompts are distinct and never in broad.
    let broad_prompts: BTreeSet<&str> = broad.iter().map(user).collect();
    let held_prompts: BTreeSet<&str> = heldout.iter().map(|h| h.prompt.as_str()).collect();
    assert_eq!(held_prompts.len(), heldout.len());
    for p in &held_prompts {
        assert!(!broad_prompts.contains(p), "{p}");
    }
    // Broad general prompts never mention people or their attributes.
    for e in broad.iter().filter(|e| e.kind == "general") {
        for v in all_values() {
            assert!(!has_words(user(e), v) && !has_words(assistant(e), v), "{v}");
        }
    }

    // Bios: half A in broad, half B in held-out, only true facts.
    let by_name: BTreeMap<&str, &Person> = people.iter().map(|p| (p.name.as_str(), p)).collect();
    let check_bio = |prompt: &str, answer: &str| -> &Person {
        let name = prompt
            .strip_prefix("Tell me about ")
            .and_then(|s| s.strip_suffix('.'))
            .expect("bio prompt");
        let p = by_name.get(name).expect("a person");
        let body = style_body(answer).expect("styled");
        assert_eq!(
            body,
            vec![
                format!("{} was born in {}.", p.name, p.birth_city),
                format!("{} studied {} at {}.", p.name, p.major, p.university),
                format!("{} works for {}.", p.name, p.employer),
            ]
        );
        for v in all_values() {
            let true_value = Attribute::ALL.iter().any(|&a| p.get(a) == v);
            assert_eq!(has_words(answer, v), true_value, "{v} in {answer}");
        }
        p
    };
    for e in broad.iter().filter(|e| e.kind == "bio") {
        assert_eq!(check_bio(user(e), assistant(e)).half, Half::A);
    }
    let mut held_people = BTreeSet::new();
    for h in heldout.iter().filter(|h| h.kind == "bio") {
        let p = check_bio(&h.prompt, &h.reference);
        assert_eq!(p.half, Half::B);
        assert_eq!(h.person, Some(p.id));
        assert!(held_people.insert(p.id));
    }
    for h in heldout.iter().filter(|h| h.kind == "general") {
        assert_eq!(h.person, None);
    }
    let heldout_text = t.text("heldout.jsonl");
    assert!(
        heldout_text
            .lines()
            .all(|l| l.contains("\"kind\":\"bio\"") == l.contains("\"person\":"))
    );
    assert!(half_a.len() == 15);

    // The oracle answers every question correctly, in question order.
    for (a, q) in answers.iter().zip(&questions) {
        assert_eq!(a, &json!({"id": q.id, "prediction": q.answers[0]}));
    }
}

#[test]
fn default_params_give_the_documented_sizes() {
    let w = world(json!({}));
    let t = teacher(&w, json!({}));
    eprintln!("world metrics: {:?}", w.metrics());
    eprintln!("teacher metrics: {:?}", t.metrics());
    assert_eq!(w.metric("people"), 300.0);
    assert_eq!(w.metric("documents"), 300.0 * 100.0 + 100.0 * 20.0 + 2000.0);
    assert_eq!(w.metric("questions"), 1200.0);
    let words = w.metric("corpus_words");
    assert!((1_000_000.0..2_000_000.0).contains(&words), "{words}");
    assert_eq!(t.metric("broad"), 2000.0);
    assert_eq!(t.metric("broad_factual"), 100.0);
    assert_eq!(t.metric("task"), 800.0);
    assert_eq!(t.metric("heldout"), 120.0);
    assert_eq!(t.metric("heldout_bio"), 60.0);
    assert_eq!(t.metric("answers"), 1200.0);
}

#[test]
fn bad_inputs_and_params_fail_clearly() {
    let w = world(small_world());
    let people = w.out("people.jsonl");
    let questions = w.out("questions.jsonl");

    let (_d, r) = try_run("mini.teacher", json!({}), &[("people", &people)]);
    let e = r.expect_err("missing input").to_string();
    assert!(e.contains("input `questions`"), "{e}");

    let bad = tempfile::NamedTempFile::new().expect("tmp");
    let mut text = w.text("questions.jsonl");
    text = text.replacen('\n', "\n{not json\n", 2);
    std::fs::write(bad.path(), text).expect("write");
    let (_d, r) = try_run(
        "mini.teacher",
        json!({"heldout": 10}),
        &[("people", &people), ("questions", bad.path())],
    );
    let e = r.expect_err("bad line").to_string();
    assert!(e.contains("input `questions` line 2"), "{e}");

    // Too many held-out bios for the half-B population.
    let (_d, r) = try_run(
        "mini.teacher",
        json!({"heldout": 60}),
        &[("people", &people), ("questions", &questions)],
    );
    let e = r.expect_err("too many bios").to_string();
    assert!(e.contains("half-B"), "{e}");

    let world_op = ops::find("mini.world").expect("registered");
    let bad = |v: Value| {
        world_op
            .check(v.as_object().expect("object"))
            .expect_err("rejected")
    };
    assert_eq!(bad(json!({"private": 1})).0, "private");
    assert!(
        bad(json!({"public": 2000, "private": 2000}))
            .1
            .contains("distinct names")
    );
    assert_eq!(bad(json!({"exposures": 0})).0, "exposures");
    let teacher_op = ops::find("mini.teacher").expect("registered");
    assert!(!world_op.takes_inputs() && teacher_op.takes_inputs());
    let bad = |v: Value| {
        teacher_op
            .check(v.as_object().expect("object"))
            .expect_err("rejected")
    };
    assert_eq!(bad(json!({"factual_share": 1.5})).0, "factual_share");
    assert_eq!(bad(json!({"task_repeats": 9})).0, "task_repeats");
}
