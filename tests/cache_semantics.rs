//! Keys, early cutoff, matrix identity, lock files, plans: real runs of the binary.

mod common;
use common::{Project, names};

const SWEEP: &str = r#"
pipeline: sweep
params: {scale: 2}
nodes:
  src:
    op: shell
    params: {cmd: "echo base > out/x", outs: x}
  sq:
    op: shell
    matrix: {i: [1, 2, 3]}
    inputs: {base: src}
    params:
      cmd: "cat in/base > out/v; echo $(( ${i} * ${scale} )) >> out/v"
      outs: v
  total:
    op: shell
    inputs: {parts: "sq[*]"}
    params:
      cmd: "ls in/parts > out/names; cat in/parts/*/* 2>/dev/null | sort > out/all || cat in/parts/* | sort > out/all"
      outs: {out: all, names: names}
"#;

#[test]
fn second_run_runs_nothing_and_says_so() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    assert_eq!(p.run_ran("sweep").len(), 5);
    let text = p.ok(&["run", "-p", "sweep"]);
    assert!(
        text.contains("nothing to do: all 5 nodes are cached"),
        "{text}"
    );
    assert!(p.planned("sweep", "miss").is_empty());
}

#[test]
fn list_input_entries_are_named_by_coordinates() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    let lock: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/sweep.lock")).expect("lock");
    let digest = lock["nodes"]["total"]["outputs"]["names"]
        .as_str()
        .expect("digest")
        .to_string();
    let names_file = p
        .path()
        .join("cache/objects")
        .join(&digest[..2])
        .join(&digest[2..]);
    assert_eq!(
        std::fs::read_to_string(names_file).expect("object"),
        "i=1\ni=2\ni=3\n"
    );
}

#[test]
fn changing_a_param_reruns_exactly_the_affected_nodes() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    // A pipeline param used by every sq instance: all three and the report re-run, src does not.
    assert_eq!(
        p.ok(&["run", "-p", "sweep", "-s", "scale=3", "--dry-run"])
            .lines()
            .filter(|l| l.starts_with("miss"))
            .count(),
        3
    );
    // Changing one matrix value re-runs exactly that instance and the report.
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("[1, 2, 3]", "[1, 2, 4]"),
    );
    assert_eq!(p.run_ran("sweep"), names(&["sq[i=4]", "total"]));
    // Renaming an instance (a coordinate added by `include:`) keeps its key: only the
    // list consumer, which sees the entry names, re-runs.
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace(
            "matrix: {i: [1, 2, 3]}",
            "matrix: {i: [1, 2, 4], include: [{i: 2, tag: x}]}",
        ),
    );
    assert_eq!(p.run_ran("sweep"), names(&["total"]));
}

#[test]
fn adding_or_inserting_a_matrix_value_only_adds_instances() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    let before: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/sweep.lock")).expect("lock");
    // Insert 0 at the front and 9 at the end.
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("[1, 2, 3]", "[0, 1, 2, 3, 9]"),
    );
    let ran = p.run_ran("sweep");
    assert_eq!(ran, names(&["sq[i=0]", "sq[i=9]", "total"]));
    let after: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/sweep.lock")).expect("lock");
    for id in ["sq[i=1]", "sq[i=2]", "sq[i=3]", "src"] {
        assert_eq!(
            before["nodes"][id], after["nodes"][id],
            "{id} kept its name and key"
        );
    }
}

#[test]
fn early_cutoff_identical_upstream_bytes_rerun_nothing_downstream() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    // Same output bytes from a different command.
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("echo base > out/x", "printf 'base\\n' > out/x"),
    );
    assert_eq!(p.planned("sweep", "miss"), names(&["src"]));
    assert_eq!(
        p.planned("sweep", "pending").len(),
        4,
        "downstream keys wait for src"
    );
    let ran = p.run_ran("sweep");
    assert_eq!(ran, names(&["src"]), "downstream stayed cached");
}

#[test]
fn changed_upstream_bytes_rerun_descendants() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("echo base", "echo other"),
    );
    assert_eq!(p.run_ran("sweep").len(), 5);
}

#[test]
fn lock_file_is_sorted_stable_and_rewritten() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    let first = p.read("pipelines/sweep.lock");
    let v: serde_json::Value = serde_json::from_str(&first).expect("json");
    let ids: Vec<&String> = v["nodes"].as_object().expect("nodes").keys().collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    assert_eq!(ids.len(), 5);
    std::fs::remove_file(p.path().join("pipelines/sweep.lock")).expect("rm");
    p.ok(&["run", "-p", "sweep"]);
    assert_eq!(
        p.read("pipelines/sweep.lock"),
        first,
        "byte-identical when rebuilt"
    );
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("[1, 2, 3]", "[1, 2]"),
    );
    p.ok(&["run", "-p", "sweep"]);
    assert!(
        !p.read("pipelines/sweep.lock").contains("sq[i=3]"),
        "removed instances leave the lock file"
    );
}

#[test]
fn file_inputs_are_keyed_by_content_not_mtime() {
    let p = Project::new();
    p.write("data/in.txt", "hello\n");
    p.write(
        "pipelines/f.yaml",
        "pipeline: f\nnodes:\n  a:\n    op: shell\n    inputs: {t: file:data/in.txt}\n    params: {cmd: 'wc -c < in/t > out/n', outs: n}\n  b:\n    op: file\n    params: {path: data}\n",
    );
    assert_eq!(p.run_ran("f"), names(&["a", "b"]));
    // Touch without changing content: nothing re-runs.
    let f = std::fs::File::options()
        .append(true)
        .open(p.path().join("data/in.txt"))
        .expect("open");
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .expect("mtime");
    assert!(p.run_ran("f").is_empty());
    p.write("data/in.txt", "hello world\n");
    assert_eq!(p.run_ran("f"), names(&["a", "b"]));
}

#[test]
fn dry_run_plan_is_executed_exactly_and_refuses_when_stale() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep", "--only", "sq[i=1]"]);
    let plan = p.plan("sweep");
    let statuses: Vec<(String, String)> = plan["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("").to_string(),
                n["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(statuses.contains(&("src".into(), "hit".into())));
    assert!(statuses.contains(&("sq[i=2]".into(), "miss".into())));
    assert!(statuses.contains(&("total".into(), "pending".into())));
    // Keep only sq[i=2] in the plan: exactly that node runs.
    let mut only = plan.clone();
    only["nodes"] = serde_json::Value::Array(
        plan["nodes"]
            .as_array()
            .expect("n")
            .iter()
            .filter(|n| n["node"] == "sq[i=2]")
            .cloned()
            .collect(),
    );
    p.write("plan.json", &only.to_string());
    let text = p.ok(&["run", "-p", "sweep", "--plan", "plan.json"]);
    assert!(
        text.contains("ran      sq[i=2]") && !text.contains("sq[i=3]") && !text.contains("total"),
        "{text}"
    );
    // A plan whose keys no longer match is refused with exit 2.
    p.write("plan.json", &plan.to_string());
    p.write(
        "pipelines/sweep.yaml",
        &SWEEP.replace("echo base", "echo changed"),
    );
    let text = p.fails(&["run", "-p", "sweep", "--plan", "plan.json"], 2);
    assert!(text.contains("make a new plan"), "{text}");
}

#[test]
fn overrides_change_keys_and_unknown_overrides_fail() {
    let p = Project::new();
    p.write("pipelines/sweep.yaml", SWEEP);
    p.ok(&["run", "-p", "sweep"]);
    assert_eq!(p.planned("sweep", "hit").len(), 5);
    let o = p.fails(&["run", "-p", "sweep", "-s", "nope=1"], 2);
    assert!(o.contains("no param `nope`"), "{o}");
    let plan = p.json(&[
        "run",
        "-p",
        "sweep",
        "-s",
        "scale=2.5",
        "--dry-run",
        "--json",
    ]);
    assert_eq!(
        plan["nodes"]
            .as_array()
            .expect("n")
            .iter()
            .filter(|n| n["status"] == "miss")
            .count(),
        3
    );
}

#[test]
fn for_each_inherits_coordinates_and_names_each() {
    let p = Project::new();
    p.write(
        "pipelines/fe.yaml",
        r#"
pipeline: fe
nodes:
  train:
    op: shell
    matrix: {size: [s, m]}
    params: {cmd: "echo model-${size} > out/m", outs: m}
  base:
    op: shell
    params: {cmd: "echo base > out/m", outs: m}
  eval:
    op: shell
    for_each: [base, train]
    inputs: {model: "${each}"}
    params: {cmd: "echo ${from} $(cat in/model) > out/score", outs: score}
"#,
    );
    let ran = p.run_ran("fe");
    assert_eq!(
        ran,
        names(&[
            "base",
            "eval[from=base]",
            "eval[from=train,size=m]",
            "eval[from=train,size=s]",
            "train[size=m]",
            "train[size=s]"
        ])
    );
    let text = p.ok(&["explain", "-p", "fe", "eval[from=train,size=m]"]);
    assert!(text.contains("upstream train[size=m]"), "{text}");
}
