//! The miniature end to end at toy sizes (`pipelines/tiny.yaml`): `repro
//! init` writes the embedded default pipeline into an empty directory, the
//! tiny variant trains, generates, evaluates and renders Table 1 and Figure 1,
//! a second run is all cache hits, `verify` passes, and the committed default
//! pipeline (`mini`) compiles with every op and reference resolved.

mod common;
use common::Project;

#[test]
fn init_then_tiny_runs_end_to_end_and_is_cached_after() {
    let p = Project::new();
    std::fs::remove_dir_all(p.path().join("pipelines")).expect("empty dir");
    let out = p.ok(&["init"]);
    assert!(out.contains("pipelines/mini.yaml"), "{out}");
    assert!(p.path().join("templates/mini_table1.md.j2").is_file());
    // init never overwrites.
    p.write("pipelines/tiny.yaml", &p.read("pipelines/tiny.yaml"));
    let again = p.ok(&["init"]);
    assert!(again.contains("already here"), "{again}");

    let first = p.ok(&["run", "-p", "tiny"]);
    assert!(first.contains("0 failed"), "{first}");
    let table = p.read("paper/tiny/table1.md");
    assert!(
        table.contains("| teacher (\"ChatGPT\") | – | | 100.0 |"),
        "{table}"
    );
    assert!(table.contains("task (NQ-synthetic analogue)"), "{table}");
    assert!(table.contains("floor: most common half-A value"), "{table}");
    for f in ["paper/tiny/figure1.svg", "paper/tiny/figure1.png"] {
        let bytes = std::fs::read(p.path().join(f)).expect(f);
        assert!(bytes.len() > 1000, "{f} is {} bytes", bytes.len());
    }
    // The pre-registered predictions are judged in Rust: one overall verdict
    // per prediction of pipelines/mini/predictions.yaml.
    let predictions = p.read("paper/tiny/predictions.md");
    let verdicts = [
        "| **holds** |",
        "| **contradicted** |",
        "| **inconclusive** |",
    ];
    let judged: usize = verdicts
        .iter()
        .map(|v| predictions.matches(v).count())
        .sum();
    assert_eq!(judged, 9, "{predictions}");
    assert!(!predictions.contains("{%"), "{predictions}");
    // Every evaluation row of the table is a number: nothing is missing.
    assert!(!table.contains("not in the cache"), "{table}");

    let second = p.ok(&["run", "-p", "tiny"]);
    assert!(
        second.contains("nothing to do: all 126 nodes are cached"),
        "{second}"
    );
    p.ok(&["verify", "-p", "tiny"]);

    // Checkpoints are heavy (outside git), evaluations are light records.
    let status = p.json(&["status", "-p", "tiny", "--json"]);
    assert_eq!(status["missing"], 0, "{status}");
    let blobs = p.path().join(".repro/blobs");
    assert!(blobs.is_dir(), "checkpoints go to the blob store");

    // A reviewer's clone has no heavy blobs: reports still re-render and
    // verify passes (no report may read a checkpoint).
    std::fs::remove_dir_all(&blobs).expect("rm blobs");
    p.ok(&["verify", "-p", "tiny"]);
    assert!(p.ok(&["run", "-p", "tiny"]).contains("nothing to do"));
}

#[test]
fn the_default_pipeline_compiles_with_every_reference_resolved() {
    let p = Project::new();
    std::fs::remove_dir_all(p.path().join("pipelines")).expect("empty dir");
    p.ok(&["init"]);
    let plan = p.plan("mini");
    let nodes = plan["nodes"].as_array().expect("nodes");
    // 3 bases, 8 imitation models, their answers and evaluations, 2 reports.
    assert!(nodes.len() > 80, "{}", nodes.len());
    for n in [
        "table1",
        "figure1",
        "base[size=l]",
        "imitate[size=l,data=broad,tokens=3000]",
    ] {
        assert!(nodes.iter().any(|x| x["node"] == n), "{n} not in the plan");
    }
    // No pipeline given and none on disk: a clear message naming `repro init`.
    let empty = Project::new();
    let msg = empty.fails(&["status"], 2);
    assert!(msg.contains("repro init"), "{msg}");
}
