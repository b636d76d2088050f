//! One state for "cannot run here": a node that needs the chat API (a
//! credential this machine lacks) is *blocked*, with the reason, in
//! `status`, `verify`, `report` and `metrics`, exactly as a node whose
//! `file:` input is missing is; everything downstream of it too. `run`
//! tries it (the request store may answer) and fails it with the same
//! variables named. Plain `verify` lists it and passes; a node that simply
//! never ran still fails it.

mod common;
use common::Project;
use serde_json::Value;

const PIPELINE: &str = r#"pipeline: b
nodes:
  prompts:
    op: shell
    params:
      cmd: |
        echo '{"id": "1", "prompt": "hi"}' > out/p.jsonl
      outs: p.jsonl
  teacher:
    op: teacher.chat
    inputs: {prompts: prompts}
    params: {model: gpt-4}
  after:
    op: shell
    inputs: {r: teacher}
    params: {cmd: "wc -l < in/r > out/n", outs: n}
  local:
    op: shell
    inputs: {p: prompts}
    params: {cmd: "cp in/p out/p", outs: p}
"#;

const REASON: &str = "needs a credential: the chat API (set REPRO_API_BASE and REPRO_API_KEY, or OPENAI_BASE_URL and OPENAI_API_KEY)";

/// Runs repro with no API configured.
fn bare(p: &Project, args: &[&str]) -> (Option<i32>, String) {
    let o = p
        .cmd()
        .args(args)
        .env_remove("REPRO_API_BASE")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("REPRO_API_KEY")
        .env_remove("OPENAI_API_KEY")
        .env_remove("REPRO_API_OFFLINE")
        .output()
        .expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!text.contains("panicked"), "{text}");
    (o.status.code(), text)
}

#[test]
fn a_node_needing_a_credential_is_blocked_everywhere_with_the_reason() {
    let p = Project::new();
    p.write("pipelines/b.yaml", PIPELINE);
    let (code, status) = bare(&p, &["status", "-p", "b"]);
    assert_eq!(code, Some(0), "{status}");
    let line = |id: &str| {
        status
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line("teacher").starts_with("blocked") && line("teacher").ends_with(REASON),
        "{status}"
    );
    assert!(
        line("after").starts_with("blocked")
            && line("after").ends_with(&format!("{REASON} (upstream teacher)")),
        "{status}"
    );
    assert!(line("local").starts_with("missing"), "{status}");
    // `run` tries it (the request store could answer every request) and
    // fails it naming the same variables; the rest runs with -k.
    let (code, run) = bare(&p, &["run", "-p", "b", "-k"]);
    assert_eq!(code, Some(1), "{run}");
    assert!(
        run.contains("are not in the request store") && run.contains("set REPRO_API_BASE"),
        "{run}"
    );
    assert!(
        run.contains(&format!(
            "note: blocked: teacher {REASON}; trying the request store"
        )),
        "{run}"
    );
    let (_, status) = bare(&p, &["status", "-p", "b"]);
    assert!(
        status.lines().any(|l| l.starts_with("cached   local ")),
        "{status}"
    );
    // Plain verify: the blocked nodes are listed with their reason, not failed.
    let (code, v) = bare(&p, &["verify", "-p", "b", "--json"]);
    assert_eq!(code, Some(0), "{v}");
    let v: Value = serde_json::from_str(&v[..v.rfind('}').map_or(0, |i| i + 1)]).expect("json");
    let node = |id: &str| {
        v["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["node"] == id))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(node("teacher")["status"], "not-run");
    assert_eq!(node("teacher")["reason"], REASON);
    assert_eq!(node("local")["status"], "ok");
    // `metrics` shows it as a dash with the same reason.
    let (_, m) = bare(&p, &["metrics", "-p", "b", "teacher"]);
    assert_eq!(m, format!("node     why\nteacher  blocked: {REASON}\n"));
    // Store-only replay (`REPRO_API_OFFLINE=1`) is not blocked: the node
    // may run from the request store.
    let o = p
        .cmd()
        .args(["status", "-p", "b"])
        .env_remove("REPRO_API_BASE")
        .env_remove("OPENAI_BASE_URL")
        .env("REPRO_API_OFFLINE", "1")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.lines().any(|l| l.starts_with("missing  teacher ")),
        "{text}"
    );
}

#[test]
fn verify_still_fails_a_node_that_never_ran_without_a_reason() {
    let p = Project::new();
    p.write("pipelines/b.yaml", PIPELINE);
    bare(&p, &["run", "-p", "b", "-k"]);
    p.write(
        "pipelines/b.yaml",
        &format!(
            "{PIPELINE}  extra:\n    op: shell\n    params: {{cmd: \"echo x > out/x\", outs: x}}\n"
        ),
    );
    let (code, text) = bare(&p, &["verify", "-p", "b"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("FAIL extra: not cached for its current key"),
        "{text}"
    );
    assert!(!text.contains("FAIL teacher"), "{text}");
}
