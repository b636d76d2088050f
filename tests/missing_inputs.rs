//! A `file:` input that does not exist is a per-node state, not a compile
//! error: `repro status` lists the nodes that need it (and everything
//! downstream), naming the path and where the pipeline asks for it; `repro
//! run` stops up front (Snakemake's MissingInputException) or, with `-k`,
//! runs everything else; creating the file flips the state (through the
//! compiled-DAG memo); and the paper pipeline lists exactly its missing
//! weights and data.

mod common;
use common::{Cli, Project};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const PIPELINE: &str = r#"pipeline: m
params:
  weights: {big: file:models/big.bin}
nodes:
  ok:
    op: shell
    inputs: {text: file:data/here.txt}
    params: {cmd: "wc -l < in/text > out/n", outs: n}
  train:
    op: shell
    inputs: {w: "${weights.big}"}
    params: {cmd: "cp in/w out/m", outs: m}
  eval:
    op: shell
    inputs: {m: train, n: ok}
    params: {cmd: "cat in/m in/n > out/r", outs: r}
"#;

fn project() -> Project {
    let p = Project::new();
    p.write("pipelines/m.yaml", PIPELINE);
    p.write("data/here.txt", "a\nb\n");
    p
}

fn node<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["node"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {status}"))
}

#[test]
fn status_names_the_missing_file_its_param_and_line_and_the_nodes_downstream() {
    let p = project();
    let text = p.ok(&["status", "-p", "m"]);
    let reason = "missing input: file:models/big.bin (does not exist)";
    assert!(
        text.lines()
            .any(|l| l.starts_with("blocked") && l.contains(" train ") && l.ends_with(reason)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("blocked") && l.contains(" eval ") && l.ends_with(reason)),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("missing") && l.contains(" ok ") && l.contains("never run")),
        "{text}"
    );
    // Where it comes from: the param (file:line:col) and the reference.
    assert!(
        text.contains("params.weights.big (pipelines/m.yaml:3:18); used at pipelines/m.yaml:11:17 nodes.train.inputs.w"),
        "{text}"
    );
    assert!(text.contains("2 blocked by missing inputs"), "{text}");

    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(v["blocked"], 2);
    assert_eq!(node(&v, "train")["status"], "blocked");
    assert_eq!(node(&v, "train")["reason"], reason);
    assert_eq!(node(&v, "eval")["missing_inputs"][0], "models/big.bin");
    assert_eq!(node(&v, "ok")["status"], "missing");
    let m = &v["missing_inputs"][0];
    assert_eq!(m["file"], "models/big.bin");
    assert_eq!(m["key"], "nodes.train.inputs.w");
    assert_eq!(m["at"], "pipelines/m.yaml:11:17");
    assert_eq!(m["nodes"], 2);
    assert_eq!(v["missing_inputs"].as_array().map(Vec::len), Some(1));
}

#[test]
fn run_stops_up_front_and_keep_going_runs_the_rest() {
    let p = project();
    let text = p.fails(&["run", "-p", "m"], 1);
    assert!(
        text.contains("missing inputs: 1 file(s) do not exist, and 2 node(s) of this run need them; nothing was run"),
        "{text}"
    );
    assert!(
        text.contains("file:models/big.bin (does not exist)"),
        "{text}"
    );
    assert!(text.contains("needed by train, eval"), "{text}");
    assert!(!p.path().join("pipelines/m.lock").exists(), "nothing ran");
    // A selection that does not need the file runs.
    p.ok(&["run", "-p", "m", "--only", "ok"]);
    // -k: everything else runs; the blocked nodes fail with the same message.
    let text = p.fails(&["run", "-p", "m", "-k"], 1);
    assert!(
        text.contains(
            "cannot compute the key: missing input: file:models/big.bin (does not exist)"
        ),
        "{text}"
    );
    assert!(text.contains("failed: train"), "{text}");
    // The dry run marks them too.
    let plan = p.ok(&["run", "-p", "m", "--dry-run"]);
    assert!(
        plan.lines()
            .any(|l| l.starts_with("blocked") && l.contains("train")),
        "{plan}"
    );
}

#[test]
fn creating_the_file_flips_the_state_through_the_dag_memo() {
    let p = project();
    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(node(&v, "train")["status"], "blocked");
    // A second status comes from the memo and still says so.
    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(node(&v, "train")["status"], "blocked");
    p.write("models/big.bin", "weights");
    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(node(&v, "train")["status"], "missing");
    assert_eq!(node(&v, "train")["reason"], "never run");
    assert_eq!(v["blocked"], 0);
    assert_eq!(v["missing_inputs"].as_array().map(Vec::len), Some(0));
    p.ok(&["run", "-p", "m"]);
    p.ok(&["verify", "-p", "m"]);
    // Removing it again (a clone without the weights): the lock file names
    // the run computed from it, so the node is cached from that run, and
    // verify, run and report work without the file.
    std::fs::remove_file(p.path().join("models/big.bin")).expect("rm");
    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(node(&v, "train")["status"], "cached");
    assert_eq!(
        node(&v, "train")["reason"],
        "from the last run; absent here: file:models/big.bin"
    );
    assert_eq!(node(&v, "eval")["status"], "cached");
    p.ok(&["verify", "-p", "m"]);
    let text = p.ok(&["run", "-p", "m"]);
    assert!(text.contains("nothing to do"), "{text}");
    // A change to the node itself needs the file again.
    p.write(
        "pipelines/m.yaml",
        &PIPELINE.replace("cp in/w out/m", "cat in/w > out/m"),
    );
    let v = p.json(&["status", "-p", "m", "--json"]);
    assert_eq!(node(&v, "train")["status"], "blocked");
    let text = p.fails(&["verify", "-p", "m"], 1);
    assert!(
        text.contains(
            "FAIL train: not cached for its current key: missing input: file:models/big.bin"
        ),
        "{text}"
    );
    p.fails(&["run", "-p", "m"], 1);
}

#[test]
fn a_dotted_override_points_a_mapping_param_at_another_file() {
    let p = project();
    p.write("elsewhere/big.bin", "w");
    let v = p.json(&[
        "status",
        "-p",
        "m",
        "--json",
        "-s",
        "weights.big=file:elsewhere/big.bin",
    ]);
    assert_eq!(v["blocked"], 0, "{v}");
    let text = p.fails(&["status", "-p", "m", "-s", "weights.small=x"], 2);
    assert!(text.contains("no param `weights.small`"), "{text}");
}

#[test]
fn verify_lists_never_run_nodes_without_failing() {
    let p = project();
    p.ok(&["run", "-p", "m", "--only", "ok"]);
    let text = p.ok(&["verify", "-p", "m"]);
    assert!(
        text.contains("verify m: 3 nodes checked, 1 ok, 2 not run, 0 failing"),
        "{text}"
    );
    let v = p.json(&["verify", "-p", "m", "--json"]);
    assert_eq!(v["ok"], true);
    assert_eq!(node(&v, "train")["status"], "not-run");
    assert_eq!(v["missing_inputs"][0]["file"], "models/big.bin");
}

/// The paper pipeline on this checkout (no weights, no ShareGPT-Mix): it
/// compiles, and `status` lists exactly the weights and data it lacks.
#[test]
fn paper_status_lists_exactly_the_missing_weights_and_data() {
    let v = Cli::at(ROOT)
        .args(&["status", "-p", "paper", "--json"])
        .run()
        .json();
    let mut files: Vec<&str> = v["missing_inputs"]
        .as_array()
        .expect("list")
        .iter()
        .map(|m| m["file"].as_str().expect("file"))
        .collect();
    files.sort_unstable();
    let here = |f: &str| std::path::Path::new(ROOT).join(f).exists();
    let expected: Vec<&str> = [
        "data/paper/HC3/all.jsonl",
        "data/paper/ShareGPT_V3_unfiltered_cleaned_split.json",
        "data/paper/discord_chatgpt.jsonl",
        "models/gpt2-xl",
        "models/llama-13b",
        "models/llama-7b",
    ]
    .into_iter()
    .filter(|f| !here(f))
    .collect();
    assert_eq!(files, expected);
    let param = |f: &str| {
        v["missing_inputs"]
            .as_array()
            .and_then(|l| l.iter().find(|m| m["file"] == f))
            .map(|m| m["param"].as_str().unwrap_or("").to_string())
    };
    if !here("models/llama-7b") {
        assert!(
            param("models/llama-7b").is_some_and(|p| p.starts_with("params.bases.llama_7b (")),
            "{v}"
        );
        // Every LLaMA-7B model and its evaluations wait for it; the report does not.
        assert_eq!(
            node(
                &v,
                "imitate[base=llama_7b,data=ShareGPT-Mix,tokens=150000000,size=7B]"
            )["status"],
            "blocked"
        );
        assert_eq!(node(&v, "table1[format=md]")["status"], "cached");
    }
}

/// `report.figure`'s `fields` put reproduced metrics on the published axes
/// (x in M tokens, % values, a mapped size), and a missing upstream is left
/// out (counted), never drawn.
#[test]
fn figure_fields_place_reproduced_rows_on_the_published_axes() {
    let p = Project::new();
    p.write(
        "pub.yaml",
        "citation: test\ncolumns: [figure, x, value, series]\nrows:\n  - {figure: f, x: 20, value: 30, series: Published model}\n  - {figure: f, x: 150, value: 20, series: Published model}\n",
    );
    p.write("models/here.txt", "w");
    p.write(
        "pipelines/f.yaml",
        r#"pipeline: f
nodes:
  pub:
    op: ref.published
    inputs: {data: file:pub.yaml}
    params: {citation: test}
  ev:
    op: shell
    matrix: {tokens: [20000000, 150000000]}
    inputs: {m: file:models/here.txt}
    params:
      cmd: 'echo "{\"em\": $(( ${tokens} / 1000000 ))e-2}" > out/m.json'
      outs: {out: m.json, metrics: m.json}
      metrics: metrics
  gone:
    op: shell
    matrix: {tokens: [80000000]}
    inputs: {m: file:models/absent.txt}
    params: {cmd: "echo '{\"em\": 0.5}' > out/m.json", outs: {out: m.json, metrics: m.json}, metrics: metrics}
  fig:
    op: report.figure
    inputs: {published: pub, rep: "ev[*].metrics", lost: "gone[*].metrics"}
    params:
      labels:
        rep: {figure: f, series: "Model, reproduced"}
        lost: {figure: f, series: "Lost, reproduced"}
      fields:
        rep: {x: {from: tokens, scale: 0.000001}, value: {from: em, scale: 100}}
        lost: {x: {from: tokens, scale: 0.000001}, value: {from: em, scale: 100}}
      panels:
        - title: "T"
          kind: line
          filter: {figure: f}
          x: {field: x, label: "M tokens", min: 0, max: 160}
          y: {field: value, label: "%", min: 0, max: 100}
          series: series
"#,
    );
    p.ok(&["run", "-p", "f", "--only", "ev"]);
    let text = p.ok(&["report", "-p", "f"]);
    assert!(text.contains("1 compute nodes not in the cache"), "{text}");
    let rec = p.json(&["status", "-p", "f", "--json"]);
    assert_eq!(node(&rec, "fig")["status"], "cached", "{rec}");
    let lock: Value = serde_json::from_str(&p.read("pipelines/f.lock")).expect("lock");
    let key = lock["nodes"]["fig"]["key"].as_str().expect("key");
    let r: Value =
        serde_json::from_str(&p.read(&format!("cache/records/{key}.json"))).expect("record");
    // 2 published + 2 reproduced rows; the node that cannot run is missing.
    assert_eq!(r["metrics"]["rows"], 4, "{r}");
    assert_eq!(r["metrics"]["missing"], 1, "{r}");
    let svg = std::fs::read_dir(p.path().join("cache/objects"))
        .expect("objects")
        .flat_map(|d| std::fs::read_dir(d.expect("dir").path()).expect("sub"))
        .map(|f| std::fs::read(f.expect("f").path()).unwrap_or_default())
        .filter_map(|b| String::from_utf8(b).ok())
        .find(|t| t.starts_with("<svg") || t.contains("<svg "))
        .expect("an svg object");
    assert!(
        svg.contains("Model, reproduced"),
        "legend names the reproduced series"
    );
    assert!(
        !svg.contains("Lost, reproduced"),
        "a missing node is not drawn"
    );
}

/// `pipelines/smol.yaml`'s committed results verify on a checkout without its
/// downloads (data/external/): each node whose input file is absent is taken
/// at the lock file's last run.
#[test]
fn committed_smol_results_verify_without_the_downloaded_files() {
    let v = Cli::at(ROOT)
        .args(&["verify", "-p", "smol", "--json"])
        .any_status()
        .run()
        .json();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["not_run"], 0, "{v}");
}
