//! `repro metrics`, `repro metrics --diff` and `repro diff` on real runs in
//! a temporary git repository with two real commits: tables as text, CSV,
//! Markdown and JSON; selectors, metric columns and sorting; old, new and
//! change per metric against a revision, added and removed instances, the
//! tolerance gate; and the field-by-field key diff.

mod common;
use common::Project;
use serde_json::Value;
use std::process::Command;

/// A matrix of shell nodes that write their metrics, and a summary.
fn pipeline(bias: &str, sizes: &str) -> String {
    format!(
        r#"pipeline: t
params: {{bias: {bias}}}
nodes:
  score:
    op: shell
    matrix: {{size: [{sizes}], lr: [1, 2]}}
    params:
      cmd: |
        : size ${{size}}
        awk 'BEGIN {{ printf "{{\"em\": %.2f, \"n\": 4}}\n", ${{lr}} / 10 + ${{bias}} }}' > out/m.json
      outs: {{out: m.json, metrics: m.json}}
      metrics: metrics
    tolerance: {{em: 0.05}}
  summary:
    op: shell
    inputs: {{runs: "score[*].metrics"}}
    params: {{cmd: "ls in/runs > out/list", outs: list}}
"#
    )
}

fn git(p: &Project, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(p.path())
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A repository whose first commit holds a run of `pipeline("0", "s, m")`.
fn repo() -> Project {
    let p = Project::new();
    git(&p, &["init", "-q", "-b", "main"]);
    p.write(".gitignore", ".repro/\n");
    p.write("pipelines/t.yaml", &pipeline("0", "s, m"));
    p.ok(&["run", "-p", "t"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-qm", "first"]);
    p
}

/// The standard output of a run that must succeed, as printed.
fn stdout(p: &Project, args: &[&str]) -> String {
    String::from_utf8_lossy(&p.cli().args(args).run().raw_stdout).to_string()
}

#[test]
fn metrics_table_has_coordinates_metrics_and_a_row_per_instance() {
    let p = repo();
    p.cli()
        .args(&["metrics", "-p", "t"])
        .stdout(
            "node   size  lr   em  n
score  s     1   0.1  4
score  s     2   0.2  4
score  m     1   0.1  4
score  m     2   0.2  4
",
        )
        .run();
    // A selector, chosen columns, a sort (ties keep pipeline order).
    p.cli()
        .args(&[
            "metrics",
            "-p",
            "t",
            "score[lr=2,*]",
            "-m",
            "em",
            "--sort",
            "size",
        ])
        .stdout("node   size  lr   em\nscore  m     2   0.2\nscore  s     2   0.2\n")
        .run();
    p.cli()
        .args(&["metrics", "-p", "t", "--sort", "em:desc,size", "--csv"])
        .stdout("node,size,lr,em,n\nscore,m,2,0.2,4\nscore,s,2,0.2,4\nscore,m,1,0.1,4\nscore,s,1,0.1,4\n")
        .run();
    p.cli()
        .args(&["metrics", "-p", "t", "score[size=s,lr=1]", "--md"])
        .stdout("| node | size | lr | em | n |\n| --- | --- | --- | ---: | ---: |\n| score | s | 1 | 0.1 | 4 |\n")
        .run();
    let v: Value =
        serde_json::from_str(&stdout(&p, &["metrics", "-p", "t", "--json"])).expect("json");
    assert_eq!(
        v["columns"],
        serde_json::json!(["node", "size", "lr", "em", "n"])
    );
    assert_eq!(v["rows"][3]["instance"], "score[size=m,lr=2]");
    assert_eq!(v["rows"][3]["em"], 0.2);
    // Bad input: exit 2, naming what is wrong.
    let e = p.fails(&["metrics", "-p", "t", "nope"], 2);
    assert!(e.contains("no node matches `nope`"), "{e}");
    let e = p.fails(&["metrics", "-p", "t", "-m", "acc"], 2);
    assert!(
        e.contains("no selected instance has a metric `acc` (they have: em, n)"),
        "{e}"
    );
    let e = p.fails(&["metrics", "-p", "t", "--sort", "acc"], 2);
    assert!(e.contains("--sort acc: no such column"), "{e}");
}

#[test]
fn instances_not_computed_are_dashes_with_why() {
    let p = repo();
    p.write("pipelines/t.yaml", &pipeline("0.5", "s, m"));
    let text = stdout(&p, &["metrics", "-p", "t", "score[size=s,*]"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "node   size  lr  em  n  why");
    assert!(
        lines[1].starts_with("score  s     1    -  -  stale: params.cmd: "),
        "{text}"
    );
}

#[test]
fn diff_against_two_real_commits_with_added_removed_and_gated_metrics() {
    let p = repo();
    // The working tree: bias 0 -> 0.01 (within em's tolerance of 0.05) for
    // size s, size m removed, size l added.
    p.write("pipelines/t.yaml", &pipeline("0.01", "s, l"));
    p.ok(&["run", "-p", "t"]);
    let text = stdout(&p, &["metrics", "-p", "t", "--diff"]);
    let head = git(&p, &["rev-parse", "--short=7", "HEAD"]);
    let head = head.trim();
    assert_eq!(
        text,
        format!(
            "instance            metric  HEAD ({head})  workspace  change   tolerance
score[size=s,lr=1]  em                 0.1       0.11  +0.01    ok (abs 0.05 rel 0)
score[size=s,lr=2]  em                 0.2       0.21  +0.01    ok (abs 0.05 rel 0)
score[size=l,lr=1]  em                   -       0.11  added    -
score[size=l,lr=1]  n                    -          4  added    -
score[size=l,lr=2]  em                   -       0.21  added    -
score[size=l,lr=2]  n                    -          4  added    -
score[size=m,lr=1]  em                 0.1          -  removed  -
score[size=m,lr=1]  n                    4          -  removed  -
score[size=m,lr=2]  em                 0.2          -  removed  -
score[size=m,lr=2]  n                    4          -  removed  -
metrics diff HEAD ({head}) -> workspace: 2 instance(s) changed, 2 added, 2 removed
"
        )
    );
    // Within tolerance: the gate passes.
    p.ok(&["metrics", "-p", "t", "--diff", "--check", "-m", "em"]);
    git(&p, &["add", "-A"]);
    git(&p, &["commit", "-qm", "second"]);
    // The second commit moves em by 0.5, beyond its tolerance.
    p.write("pipelines/t.yaml", &pipeline("0.51", "s, l"));
    p.ok(&["run", "-p", "t"]);
    let v = p
        .cli()
        .args(&[
            "metrics",
            "-p",
            "t",
            "--diff=HEAD",
            "--check",
            "--json",
            "-m",
            "em",
        ])
        .status(1)
        .stderr_has("FAIL score[size=s,lr=1] em: 0.11 -> 0.61 is beyond its tolerance")
        .run()
        .json();
    assert_eq!(v["gated_failures"], 4, "{v}");
    assert_eq!(v["ok"], false);
    let l0 = &v["lines"][0];
    assert_eq!(
        (
            &l0["instance"],
            &l0["old"],
            &l0["new"],
            &l0["within_tolerance"]
        ),
        (
            &Value::from("score[size=s,lr=1]"),
            &Value::from(0.11),
            &Value::from(0.61),
            &Value::from(false)
        ),
        "{v}"
    );
    // Against the first commit, two commits back.
    let text = stdout(
        &p,
        &[
            "metrics",
            "-p",
            "t",
            "--diff=HEAD~1",
            "--all",
            "score[size=s,lr=2]",
        ],
    );
    let first = git(&p, &["rev-parse", "--short=7", "HEAD~1"]);
    let first = first.trim();
    assert_eq!(
        text,
        format!(
            "instance            metric  HEAD~1 ({first})  workspace  change  tolerance
score[size=s,lr=2]  em                   0.2       0.71  +0.51   FAIL (abs 0.05 rel 0)
score[size=s,lr=2]  n                      4          4  0       -
metrics diff HEAD~1 ({first}) -> workspace: 1 instance(s) changed, 0 added, 0 removed; 1 gated metric(s) beyond tolerance
"
        )
    );
}

#[test]
fn diff_reads_old_records_from_git_and_a_missing_record_is_a_dash() {
    let p = repo();
    // The old records are gone from this checkout's cache (another clone's
    // cache, a `repro gc`): they come from git. One was never committed.
    let lock: Value = serde_json::from_str(&p.read("pipelines/t.lock")).expect("lock");
    let key = |id: &str| lock["nodes"][id]["key"].as_str().expect("key").to_string();
    let dropped = key("score[size=m,lr=2]");
    git(
        &p,
        &[
            "rm",
            "-q",
            "--cached",
            &format!("cache/records/{dropped}.json"),
        ],
    );
    git(&p, &["commit", "-qm", "drop one record"]);
    p.write("pipelines/t.yaml", &pipeline("0.01", "s, m"));
    p.ok(&["run", "-p", "t"]);
    for id in [
        "score[size=s,lr=1]",
        "score[size=s,lr=2]",
        "score[size=m,lr=1]",
        "score[size=m,lr=2]",
    ] {
        std::fs::remove_file(p.path().join(format!("cache/records/{}.json", key(id)))).expect("rm");
    }
    let text = stdout(&p, &["metrics", "-p", "t", "--diff", "-m", "em"]);
    assert!(
        text.contains(
            "score[size=s,lr=1]  em                 0.1       0.11  +0.01    ok (abs 0.05 rel 0)\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("score[size=m,lr=2]  em                   -       0.21  changed  -\n"),
        "{text}"
    );
    // Outside git: bad input.
    let q = Project::new();
    q.write("pipelines/t.yaml", &pipeline("0", "s"));
    let e = q.fails(&["metrics", "-p", "t", "--diff"], 2);
    assert!(e.contains("is not in a git repository"), "{e}");
    let e = p.fails(&["metrics", "-p", "t", "--diff=nosuch"], 2);
    assert!(e.contains("`nosuch` is not a git revision"), "{e}");
}

#[test]
fn repro_diff_lists_changed_keys_field_by_field() {
    let p = repo();
    let text = stdout(&p, &["diff", "-p", "t"]);
    assert!(
        text.contains(": 0 changed, 0 added, 0 removed, 5 unchanged"),
        "{text}"
    );
    p.write("pipelines/t.yaml", &pipeline("0.5", "s, l"));
    let text = stdout(&p, &["diff", "-p", "t"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("changed   score[size=s,lr=1]"),
        "{text}"
    );
    assert!(
        lines[1].starts_with("    params.cmd: \"...")
            && lines[1].contains("1 / 10 + 0 }' > out/m.json")
            && lines[1].contains("1 / 10 + 0.5 }' > out/m.json"),
        "{text}"
    );
    assert!(text.contains("added     score[size=l,lr=1]"), "{text}");
    assert!(text.contains("removed   score[size=m,lr=2]"), "{text}");
    // The summary's key is unknown until its upstream runs: its own
    // fields are unchanged, its inputs are not.
    assert!(text.contains("changed   summary"), "{text}");
    assert!(
        text.contains("(new key unknown until upstream runs"),
        "{text}"
    );
    assert!(text.contains("fields changed: params.cmd (2)"), "{text}");
    assert!(
        text.contains(": 3 changed, 2 added, 2 removed, 0 unchanged"),
        "{text}"
    );
    // After the run, the summary's inputs are known digests.
    p.ok(&["run", "-p", "t"]);
    let v: Value = serde_json::from_str(&stdout(&p, &["diff", "-p", "t", "--json"])).expect("json");
    let summary = v["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["node"] == "summary"))
        .expect("summary");
    let fields: Vec<&str> = summary["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["field"].as_str().unwrap_or(""))
        .collect();
    assert!(fields.contains(&"inputs.runs.size=l,lr=1"), "{summary}");
    assert!(fields.contains(&"inputs.runs.size=m,lr=1"), "{summary}");
}
