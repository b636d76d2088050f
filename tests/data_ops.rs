//! The data ops (`data.sharegpt`, `data.chat_jsonl`, `data.qa_jsonl`,
//! `data.mix`, `data.budget`) run through the `Op` trait on the committed
//! fixtures in `tests/data/sharegpt/` and on small hand-written inputs, with
//! exact counts. The full ShareGPT file test is `#[ignore]`d: fetch the file
//! with `scripts/fetch-offline.sh sharegpt`, then
//! `cargo test --release --test data_ops -- --ignored --nocapture`.

mod common;

use common::OpRun;
use repro::model::tokenizer::{MINI_SPECIALS, Message, TextTokenizer, train_bpe};
use repro::op::{OpError, RunResult};
use repro::ops;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/sharegpt");

/// Runs op `name` in a fresh work dir under `tmp` with input paths.
fn run(
    tmp: &Path,
    name: &str,
    params: Value,
    inputs: &[(&str, PathBuf)],
) -> (Result<RunResult, OpError>, PathBuf) {
    OpRun::new(name)
        .params(params)
        .inputs(inputs)
        .threads(2)
        .work_in(tmp)
        .run()
        .keep()
}

fn ok(tmp: &Path, name: &str, params: Value, inputs: &[(&str, PathBuf)]) -> (RunResult, PathBuf) {
    let (r, out) = run(tmp, name, params, inputs);
    (r.unwrap_or_else(|e| panic!("{name} failed: {e}")), out)
}

fn err(tmp: &Path, name: &str, params: Value, inputs: &[(&str, PathBuf)]) -> String {
    match run(tmp, name, params, inputs).0 {
        Ok(_) => panic!("{name} should fail"),
        Err(e) => e.to_string(),
    }
}

fn lines(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn metrics(out: &Path) -> Map<String, Value> {
    serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap()
}

fn write(tmp: &Path, name: &str, text: &str) -> PathBuf {
    let p = tmp.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn assert_counts(m: &Map<String, Value>, want: &[(&str, Value)]) {
    for (k, v) in want {
        assert_eq!(m.get(*k), Some(v), "metric `{k}` in {m:#?}");
    }
}

#[test]
fn sharegpt_head_of_the_real_file_drops_the_cut_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (res, out) = ok(
        tmp.path(),
        "data.sharegpt",
        json!({}),
        &[("data", format!("{FIXTURES}/head.json").into())],
    );
    let m = metrics(&out);
    assert_counts(
        &m,
        &[
            ("records_read", json!(5)),
            ("truncated_dropped", json!(1)),
            ("truncated_at_line", json!(167)),
            ("truncated_at_byte", json!(35768)),
            ("truncated_bytes", json!(40960 - 35768)),
            ("truncated_id", json!("hRPPgZT_17")),
            ("array_closed", json!(false)),
            ("bytes_read", json!(40960)),
            ("role_human", json!(17)),
            ("role_gpt", json!(18)),
            ("kept", json!(5)),
            ("turns", json!(35)),
            ("empty_conversations", json!(0)),
            ("duplicates_dropped", json!(0)),
        ],
    );
    assert_eq!(res.metrics.get("truncated_dropped"), Some(&json!(1)));
    let recs = lines(&out.join("chats.jsonl"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "QWJhYvA_0",
            "i6IyJda_0",
            "A5AbcES_0",
            "hRPPgZT_0",
            "hRPPgZT_11"
        ]
    );
    assert_eq!(recs[0]["source"], "sharegpt");
    assert_eq!(recs[0]["messages"][0]["role"], "user");
    assert_eq!(recs[0]["messages"][1]["role"], "assistant");
    assert!(
        recs[0]["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarize the main ideas of Jeff Walker")
    );
}

#[test]
fn sharegpt_handmade_records_hit_every_filter_once() {
    let tmp = tempfile::tempdir().unwrap();
    let data = PathBuf::from(format!("{FIXTURES}/handmade.json"));
    let (_, out) = ok(
        tmp.path(),
        "data.sharegpt",
        json!({"source": "sg"}),
        &[("data", data.clone())],
    );
    let m = metrics(&out);
    assert_counts(
        &m,
        &[
            ("records_read", json!(11)),
            ("truncated_dropped", json!(0)),
            ("array_closed", json!(true)),
            ("empty_conversations", json!(1)),
            ("non_chatgpt_dropped", json!(2)),
            ("empty_turns_dropped", json!(2)),
            ("turns_merged", json!(1)),
            ("no_assistant_dropped", json!(1)),
            ("duplicates_dropped", json!(1)),
            ("kept", json!(6)),
            ("repeated_ids", json!(1)),
            ("banner_turns_dropped", json!(1)),
            ("role_human", json!(10)),
            ("role_gpt", json!(8)),
            ("role_bing", json!(1)),
            ("role_bard", json!(1)),
            ("role_system", json!(2)),
            ("role_user", json!(1)),
            ("role_chatgpt", json!(2)),
            ("turns", json!(12)),
            ("turns_user", json!(5)),
            ("turns_assistant", json!(6)),
            ("turns_system", json!(1)),
        ],
    );
    let recs = lines(&out.join("chats.jsonl"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["h1", "h5", "h8", "h1", "h10", "h11"]);
    assert_eq!(recs[2]["messages"][2]["content"], "Blue.\n\nOr red.");
    assert_eq!(recs[2]["messages"][0]["role"], "system");
    assert_eq!(
        recs[4]["messages"][0]["content"],
        "Quote: \"}]\" and a backslash \\ and café / café"
    );
    assert_eq!(recs[4]["source"], "sg");
    let chars: usize = recs
        .iter()
        .flat_map(|r| r["messages"].as_array().unwrap().iter())
        .map(|m| m["content"].as_str().unwrap().chars().count())
        .sum();
    assert_eq!(m["characters"], json!(chars));

    // The options switch their filters off; output is byte-identical on a re-run.
    let (_, out2) = ok(
        tmp.path(),
        "data.sharegpt",
        json!({"source": "sg", "keep_non_chatgpt": true, "dedup": false, "merge_consecutive": false}),
        &[("data", data.clone())],
    );
    let m2 = metrics(&out2);
    assert_counts(
        &m2,
        &[
            ("kept", json!(9)),
            ("non_chatgpt_dropped", json!(0)),
            ("turns_merged", json!(0)),
        ],
    );
    let h8 = lines(&out2.join("chats.jsonl"))
        .into_iter()
        .find(|r| r["id"] == "h8")
        .unwrap();
    assert_eq!(h8["messages"].as_array().unwrap().len(), 4);
    let (_, out3) = ok(
        tmp.path(),
        "data.sharegpt",
        json!({"source": "sg"}),
        &[("data", data)],
    );
    assert_eq!(
        std::fs::read(out.join("chats.jsonl")).unwrap(),
        std::fs::read(out3.join("chats.jsonl")).unwrap()
    );
}

#[test]
fn sharegpt_malformed_records_are_located() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let bad_role = write(
        t,
        "r.json",
        "[\n{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": \"x\"}]},\n{\"id\": \"b\", \"conversations\": [{\"from\": \"human\", \"value\": \"x\"}, {\"from\": \"robot\", \"value\": \"y\"}]}\n]",
    );
    let e = err(t, "data.sharegpt", json!({}), &[("data", bad_role)]);
    assert!(
        e.contains("input `data` line 3 key `conversations[1].from`") && e.contains("robot"),
        "{e}"
    );
    let bad_value = write(
        t,
        "v.json",
        "[\n\n{\"id\": \"a\", \"conversations\": [{\"from\": \"human\", \"value\": 3}]}]",
    );
    let e = err(t, "data.sharegpt", json!({}), &[("data", bad_value)]);
    assert!(e.contains("line 3 key `conversations[0].value`"), "{e}");
    let no_id = write(t, "i.json", "[{\"conversations\": []}]");
    assert!(err(t, "data.sharegpt", json!({}), &[("data", no_id)]).contains("key `id`: missing"));
    let garbage = write(
        t,
        "g.json",
        "[{\"id\": \"a\", \"conversations\": []}\n\n x]",
    );
    let e = err(t, "data.sharegpt", json!({}), &[("data", garbage)]);
    assert!(e.contains("line 3") && e.contains("`,` or `]`"), "{e}");
    let not_json = write(t, "n.json", "[{\"id\": \"a\",\n \"conversations\": [tru]}]");
    let e = err(t, "data.sharegpt", json!({}), &[("data", not_json)]);
    assert!(e.contains("line 2") && e.contains("not valid JSON"), "{e}");
}

#[test]
fn chat_jsonl_reads_every_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let rows = [
        json!({"id": "m1", "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
        json!({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}),
        json!({"instruction": "Add.", "input": "1 and 2", "output": "3"}),
        json!({"instruction": "Say hi.", "input": "", "output": "hi"}),
        json!({"id": 7, "question": "Why?", "human_answers": ["no"], "chatgpt_answers": ["Because.", "Since."]}),
        json!({"id": 8, "question": "How?", "chatgpt_answers": []}),
        json!({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello "}]}),
    ];
    let text: String = rows.iter().map(|r| format!("{r}\n\n")).collect();
    let data = write(t, "c.jsonl", &text);
    let (_, out) = ok(
        t,
        "data.chat_jsonl",
        json!({"source": "mine"}),
        &[("data", data)],
    );
    let m = metrics(&out);
    assert_counts(
        &m,
        &[
            ("lines_read", json!(7)),
            ("shape_messages", json!(2)),
            ("shape_sharegpt", json!(1)),
            ("shape_alpaca", json!(2)),
            ("shape_hc3", json!(2)),
            ("records_read", json!(8)),
            ("empty_conversations", json!(1)),
            ("duplicates_dropped", json!(1)),
            ("kept", json!(6)),
        ],
    );
    let recs = lines(&out.join("chats.jsonl"));
    let ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    // Line numbers count blank lines: rows sit on lines 1, 3, 5, ...
    assert_eq!(ids, ["m1", "mine-3", "mine-5", "mine-7", "7_0", "7_1"]);
    assert_eq!(recs[2]["messages"][0]["content"], "Add.\n\n1 and 2");
    assert_eq!(recs[3]["messages"][0]["content"], "Say hi.");
    assert_eq!(recs[5]["messages"][1]["content"], "Since.");

    // Renamed keys, and errors naming file, line and key.
    let renamed = write(
        t,
        "r.jsonl",
        "{\"q\": \"Why?\", \"gpt\": [\"Because.\"], \"key\": \"x\"}\n",
    );
    let (_, out) = ok(
        t,
        "data.chat_jsonl",
        json!({"format": "hc3", "fields": {"question": "q", "answers": "gpt", "id": "key"}}),
        &[("data", renamed)],
    );
    assert_eq!(lines(&out.join("chats.jsonl"))[0]["id"], "x");
    let bad = write(
        t,
        "b.jsonl",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n{\"messages\": [{\"role\": \"user\", \"content\": 5}]}\n",
    );
    let e = err(t, "data.chat_jsonl", json!({}), &[("data", bad)]);
    assert!(
        e.contains("input `data` line 2 key `messages[0].content`"),
        "{e}"
    );
    let unknown = write(t, "u.jsonl", "{\"text\": \"x\"}\n");
    assert!(
        err(t, "data.chat_jsonl", json!({}), &[("data", unknown)])
            .contains("line 1: no key of a known chat shape")
    );
    let role = write(
        t,
        "o.jsonl",
        "{\"conversations\": [{\"from\": \"bot\", \"value\": \"x\"}]}\n",
    );
    let e = err(t, "data.chat_jsonl", json!({}), &[("data", role)]);
    assert!(
        e.contains("key `conversations[0].from`") && e.contains("`bot`"),
        "{e}"
    );

    // A directory of files is read in sorted path order.
    let dir = t.join("dir");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("b.jsonl"), format!("{}\n", rows[0])).unwrap();
    std::fs::write(dir.join("a.jsonl"), format!("{}\n", rows[1])).unwrap();
    let (_, out) = ok(t, "data.chat_jsonl", json!({}), &[("data", dir)]);
    let ids: Vec<String> = lines(&out.join("chats.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["jsonl-1", "m1"]);
}

#[test]
fn qa_jsonl_excludes_test_questions() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let data = write(
        t,
        "q.jsonl",
        "{\"question\": \"who wrote hamlet\", \"answer\": [\"Shakespeare\"]}\n\
         {\"question\": \"Who wrote Hamlet?\", \"answer\": \"W. Shakespeare\"}\n\
         {\"question\": \"when was the last time anyone was on the moon\", \"answer\": [\"1972\"]}\n\
         {\"question\": \"  \", \"answer\": [\"x\"]}\n\
         {\"question\": \"what is the capital of france\"}\n",
    );
    let nq = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/nq_open/NQ-open.dev.jsonl"
    ));
    let (_, out) = ok(
        t,
        "data.qa_jsonl",
        json!({"source": "pool"}),
        &[("data", data), ("exclude", nq.clone())],
    );
    assert_counts(
        &metrics(&out),
        &[
            ("lines_read", json!(5)),
            ("excluded", json!(1)),
            ("duplicates_dropped", json!(1)),
            ("empty_dropped", json!(1)),
            ("without_answers", json!(1)),
            ("kept", json!(2)),
        ],
    );
    let recs = lines(&out.join("qa.jsonl"));
    assert_eq!(
        recs[0],
        json!({"id": "pool-1", "question": "who wrote hamlet", "answers": ["Shakespeare"]})
    );
    assert_eq!(recs[1]["answers"], json!([]));
    // The NQ-open test file against itself: every question excluded.
    let (_, out) = ok(
        t,
        "data.qa_jsonl",
        json!({}),
        &[("data", nq.clone()), ("exclude", nq)],
    );
    let m = metrics(&out);
    assert_eq!(m["lines_read"], json!(3610));
    assert_eq!(m["kept"], json!(0));
    assert_eq!(
        m["excluded"].as_u64().unwrap() + m["duplicates_dropped"].as_u64().unwrap(),
        3610
    );
    let bad = write(t, "b.jsonl", "{\"question\": \"q\", \"answer\": [1]}\n");
    assert!(
        err(t, "data.qa_jsonl", json!({}), &[("data", bad)]).contains("line 1 key `answer[0]`")
    );
}

/// A small tokenizer directory trained on the fixture texts.
fn tokenizer_dir(tmp: &Path) -> PathBuf {
    let text = std::fs::read_to_string(format!("{FIXTURES}/head.json")).unwrap();
    let docs: Vec<&str> = text.lines().collect();
    let tk = train_bpe(docs.iter().copied(), 400, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).unwrap();
    let dir = tmp.join("tok");
    std::fs::create_dir_all(&dir).unwrap();
    tok.save_dir(&dir).unwrap();
    dir
}

fn chat_file(tmp: &Path, name: &str, n: usize) -> PathBuf {
    let text: String = (0..n)
        .map(|i| {
            let body = "word ".repeat(1 + (i * 7) % 13);
            format!("{}\n", json!({"id": format!("{name}{i}"), "messages": [{"role": "user", "content": format!("q{i}")}, {"role": "assistant", "content": body}]}))
        })
        .collect();
    write(tmp, &format!("{name}.jsonl"), &text)
}

#[test]
fn mix_is_weighted_seeded_and_reports_shortfalls() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let dir = t.join("sources");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(chat_file(t, "a", 50), dir.join("a")).unwrap();
    std::fs::copy(chat_file(t, "b", 4), dir.join("b")).unwrap();
    let params = json!({"size": 20, "weights": {"a": 3, "b": 1}, "seed": 5});
    let (_, out) = ok(t, "data.mix", params.clone(), &[("sources", dir.clone())]);
    assert_counts(
        &metrics(&out),
        &[
            ("examples", json!(19)),
            ("a.target", json!(15)),
            ("a.examples", json!(15)),
            ("b.target", json!(5)),
            ("b.examples", json!(4)),
            ("b.short", json!(1)),
        ],
    );
    let first = std::fs::read(out.join("mix.jsonl")).unwrap();
    let (_, again) = ok(t, "data.mix", params, &[("sources", dir.clone())]);
    assert_eq!(first, std::fs::read(again.join("mix.jsonl")).unwrap());
    let (_, other) = ok(
        t,
        "data.mix",
        json!({"size": 20, "weights": {"a": 3, "b": 1}, "seed": 6}),
        &[("sources", dir.clone())],
    );
    assert_ne!(first, std::fs::read(other.join("mix.jsonl")).unwrap());
    let recs = lines(&out.join("mix.jsonl"));
    assert_eq!(
        recs.iter().filter(|r| r["source"] == "b").count(),
        4,
        "source filled from the entry name"
    );
    let mut ids: Vec<&str> = recs.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 19, "no repeats without upsampling");

    let (_, up) = ok(
        t,
        "data.mix",
        json!({"size": 20, "weights": {"a": 3, "b": 1}, "upsample": true, "shuffle": false}),
        &[("sources", dir.clone())],
    );
    assert_counts(
        &metrics(&up),
        &[
            ("examples", json!(20)),
            ("b.examples", json!(5)),
            ("b.passes", json!(2)),
        ],
    );
    let recs = lines(&up.join("mix.jsonl"));
    assert!(
        recs[..15].iter().all(|r| r["source"] == "a"),
        "grouped by source without shuffle"
    );

    let tok = tokenizer_dir(t);
    let (_, tk) = ok(
        t,
        "data.mix",
        json!({"size": 400, "unit": "tokens"}),
        &[("sources", dir.clone()), ("tokenizer", tok)],
    );
    let m = metrics(&tk);
    assert_eq!(m["a.target"], json!(200));
    assert!(
        m["a.size"].as_u64().unwrap() <= 200 && m["a.size"].as_u64().unwrap() > 150,
        "{m:?}"
    );

    let e = err(
        t,
        "data.mix",
        json!({"size": 5, "weights": {"a": 1, "c": 1}}),
        &[("sources", dir.clone())],
    );
    assert!(e.contains("`c`, which is not a source"), "{e}");
    assert!(
        err(
            t,
            "data.mix",
            json!({"size": 5, "unit": "tokens"}),
            &[("sources", dir)]
        )
        .contains("needs an input `tokenizer`")
    );
}

#[test]
fn budget_subsets_are_nested_prefixes_within_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let tok_dir = tokenizer_dir(t);
    let data = chat_file(t, "c", 60);
    let params = json!({"budgets": [100, 400, 1000000], "seed": 3});
    let (res, out) = ok(
        t,
        "data.budget",
        params,
        &[("data", data.clone()), ("tokenizer", tok_dir.clone())],
    );
    let m = metrics(&out);
    let tok = TextTokenizer::load_dir(&tok_dir).unwrap();
    let count = |r: &Value| {
        let msgs: Vec<Message> = serde_json::from_value(r["messages"].clone()).unwrap();
        tok.encode_chat(&msgs).unwrap().0.len() as u64
    };
    let all = lines(&out.join("all.jsonl"));
    assert_eq!(all.len(), 60);
    assert_eq!(m["tokens"], json!(all.iter().map(count).sum::<u64>()));
    let mut prev: Vec<Value> = Vec::new();
    for b in [100u64, 400, 1000000] {
        let sub = lines(&out.join(format!("tokens_{b}.jsonl")));
        let got: u64 = sub.iter().map(count).sum();
        assert_eq!(m[&format!("tokens_{b}.tokens")], json!(got));
        assert_eq!(m[&format!("tokens_{b}.examples")], json!(sub.len()));
        assert!(got <= b);
        assert_eq!(&all[..sub.len()], &sub[..], "a prefix of the one order");
        if sub.len() < all.len() {
            assert!(
                got + count(&all[sub.len()]) > b,
                "stops only when the next does not fit"
            );
        }
        assert!(sub.starts_with(&prev), "nested");
        prev = sub;
    }
    assert_eq!(m["tokens_1000000.clamped"], json!(true));
    assert_eq!(m["tokens_400.clamped"], json!(false));
    assert_eq!(res.metrics["tokens_1000000.clamped"], json!(1));

    // Unshuffled, the subset is what lm.finetune's `tokens` keeps: the
    // leading conversations of the file that fit.
    let (_, plain) = ok(
        t,
        "data.budget",
        json!({"budgets": [400], "shuffle": false}),
        &[("data", data.clone()), ("tokenizer", tok_dir.clone())],
    );
    let sub = lines(&plain.join("tokens_400.jsonl"));
    let src = lines(&data);
    let mut used = 0;
    let mut n = 0;
    for r in &src {
        if used + count(r) > 400 {
            break;
        }
        used += count(r);
        n += 1;
    }
    assert_eq!(sub, src[..n].to_vec());
    // Assistant-only counting admits more conversations.
    let (_, asst) = ok(
        t,
        "data.budget",
        json!({"budgets": [400], "shuffle": false, "count": "assistant"}),
        &[("data", data), ("tokenizer", tok_dir)],
    );
    assert!(lines(&asst.join("tokens_400.jsonl")).len() > n);
}

#[test]
fn budget_and_mix_params_are_checked() {
    let op = ops::find("data.budget").unwrap();
    let p = |v: Value| v.as_object().cloned().unwrap();
    assert!(op.check(&p(json!({"budgets": []}))).is_err());
    assert!(op.check(&p(json!({"budgets": [5, 5]}))).is_err());
    assert!(op.check(&p(json!({"budgets": [0]}))).is_err());
    let outs: Vec<String> = op
        .outputs(&p(json!({"budgets": [300000, 1000000]})))
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(outs, ["tokens_300000", "tokens_1000000", "out", "metrics"]);
    let mix = ops::find("data.mix").unwrap();
    assert!(
        mix.check(&p(json!({"size": 3, "weights": {"a": -1}})))
            .is_err()
    );
    assert!(
        mix.check(&p(json!({"size": 3, "weights": {"a": 0}})))
            .is_err()
    );
    assert!(mix.check(&p(json!({"size": 3, "unit": "bytes"}))).is_err());
}

#[test]
#[ignore = "needs data/external/sharegpt (scripts/fetch-offline.sh sharegpt)"]
fn sharegpt_full_file_keeps_17671_records() {
    let path = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/data/external/sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json"
    ));
    assert!(
        path.is_file(),
        "run scripts/fetch-offline.sh sharegpt first"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (res, out) = ok(tmp.path(), "data.sharegpt", json!({}), &[("data", path)]);
    let m = metrics(&out);
    println!("{}", serde_json::to_string_pretty(&m).unwrap());
    println!(
        "seconds {} MB/s {}",
        res.metrics["seconds"], res.metrics["mb_per_s"]
    );
    assert_counts(
        &m,
        &[
            ("records_read", json!(17671)),
            ("truncated_dropped", json!(1)),
            ("bytes_read", json!(125509632)),
            ("empty_conversations", json!(126)),
            ("role_gpt", json!(67594)),
            ("role_human", json!(61420)),
            ("role_system", json!(41)),
            ("role_chatgpt", json!(8)),
            ("role_bing", json!(4)),
            ("role_bard", json!(2)),
            ("role_user", json!(2)),
            ("non_chatgpt_dropped", json!(5)),
        ],
    );
    let kept = lines(&out.join("chats.jsonl"));
    assert_eq!(m["kept"], json!(kept.len()));
    assert_eq!(kept[0]["id"], "QWJhYvA_0");
}
