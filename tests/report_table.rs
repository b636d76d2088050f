//! Table 1 rendering: golden outputs for fixed inputs in Markdown, LaTeX and
//! HTML; missing results as dashes with footnotes; verify re-renders.

mod common;
use common::Project;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A pipeline with fixed "reproduced" values (em = published/100 + 0.01 * i).
fn project(with_results: bool) -> Project {
    let p = Project::new();
    for f in [
        "templates/table1.md.j2",
        "templates/table1.tex.j2",
        "templates/table1.html.j2",
        "pipelines/published/table1.yaml",
    ] {
        p.write(
            f,
            &std::fs::read_to_string(format!("{ROOT}/{f}")).expect("repo file"),
        );
    }
    let values = "{\"7B\": {\"none\": 0.158, \"ShareGPT-Mix\": 0.121, \"NQ-Synthetic\": 0.2}, \"13B\": {\"none\": 0.2, \"ShareGPT-Mix\": 0.09, \"NQ-Synthetic\": 0.283}}";
    p.write("data/values.json", values);
    let compare = "{published: published, reproduced: results, match: {block: block, data: data}, metric: em, scale: 100, tolerance: 3}";
    let mut y = String::from(
        r#"
pipeline: t1
nodes:
  published_table1:
    op: ref.published
    inputs: {data: file:pipelines/published/table1.yaml}
    params: {citation: "Gudibande et al. 2023, Table 1"}
  nq:
    op: shell
    matrix: {block: [7B, 13B], data: [none, ShareGPT-Mix, NQ-Synthetic]}
    inputs: {values: file:data/values.json}
    params:
      cmd: "python3 -c 'import json,sys; v=json.load(open(\"in/values\")); print(json.dumps({\"em\": v[\"${block}\"][\"${data}\"]}))' > out/m.json"
      outs: {out: m.json}
      metrics: out
"#,
    );
    for (name, ext) in [("t_md", "md"), ("t_tex", "tex"), ("t_html", "html")] {
        y.push_str(&format!(
            "  {name}:\n    op: report.table\n    inputs: {{published: published_table1, results: \"nq[*]\"}}\n    params:\n      template: templates/table1.{ext}.j2\n      compare: {compare}\n      export: paper/table1.{ext}\n"
        ));
    }
    p.write("pipelines/t1.yaml", &y);
    if with_results {
        p.ok(&["run", "-p", "t1"]);
    }
    p
}

fn golden(name: &str, got: &str) {
    let path = format!("{ROOT}/tests/golden/{name}");
    if std::env::var_os("REPRO_BLESS").is_some() {
        std::fs::write(&path, got).expect("bless");
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "{name} differs from tests/golden/{name} (REPRO_BLESS=1 to update after review)"
    );
}

#[test]
fn table1_renders_in_three_formats_exactly() {
    let p = project(true);
    for ext in ["md", "tex", "html"] {
        golden(
            &format!("table1.{ext}"),
            &p.read(&format!("paper/table1.{ext}")),
        );
    }
    // 7B ShareGPT-Mix: 12.1 vs 10 (+2.1, within 3); 13B ShareGPT-Mix: 9.0 vs 15 (-6.0, outside).
    let md = p.read("paper/table1.md");
    assert!(
        md.contains("| 7B | ShareGPT-Mix | 10 | 12.1 | +2.1 | ✓ |"),
        "{md}"
    );
    assert!(
        md.contains("| 13B | ShareGPT-Mix | 15 | 9.0 | −6.0 | ✗ |"),
        "{md}"
    );
    assert!(
        md.contains("| 7B | NQ-Synthetic | **22** |"),
        "bold NQ-Synthetic: {md}"
    );
    let tex = p.read("paper/table1.tex");
    assert_eq!(
        tex.matches("\\midrule").count(),
        3,
        "header rule plus rules between the 7B, 13B and ChatGPT blocks"
    );
    assert!(
        tex.contains("\\toprule") && tex.contains("\\bottomrule") && tex.contains("7B & -- & 17"),
        "{tex}"
    );
}

#[test]
fn a_gated_comparison_outside_tolerance_fails_verify() {
    let p = project(true);
    let text = p.fails(&["verify", "-p", "t1"], 1);
    assert!(
        text.contains("FAIL t_md: 1 published-vs-reproduced comparison(s) outside tolerance"),
        "{text}"
    );
}

#[test]
fn report_renders_missing_results_as_dashes_with_footnotes() {
    let p = project(false);
    let text = p.ok(&["report", "-p", "t1"]);
    assert!(text.contains("6 compute nodes not in the cache"), "{text}");
    let md = p.read("paper/table1.md");
    assert!(md.contains("| 7B | – | 17 | –[^1] | – |"), "{md}");
    assert!(
        md.contains(
            "[^6]: not computed: node `nq[block=13B,data=NQ-Synthetic]` is not in the cache."
        ),
        "{md}"
    );
    assert!(
        !md.contains("0.0"),
        "no number stands in for a missing value: {md}"
    );
    // Nothing was computed.
    assert!(
        p.read("pipelines/t1.lock").contains("t_md")
            && !p.read("pipelines/t1.lock").contains("\"nq[")
    );
}

#[test]
fn verify_catches_a_hand_edited_export_and_report_restores_it() {
    let p = project(true);
    let tex = p.read("paper/table1.tex");
    p.write(
        "paper/table1.tex",
        &tex.replace("\\textbf{22}", "\\textbf{23}"),
    );
    let text = p.fails(&["verify", "-p", "t1"], 1);
    assert!(
        text.contains("paper/table1.tex differs from the cached output"),
        "{text}"
    );
    p.ok(&["report", "-p", "t1"]);
    assert_eq!(p.read("paper/table1.tex"), tex);
}

#[test]
fn a_changed_template_makes_the_table_stale() {
    let p = project(true);
    let t = p.read("templates/table1.md.j2");
    p.write(
        "templates/table1.md.j2",
        &t.replace("**Table 1.**", "**Table One.**"),
    );
    let text = p.fails(&["verify", "-p", "t1"], 1);
    assert!(text.contains("FAIL t_md: not cached for its current key: inputs.template: digest changed (file:templates/table1.md.j2)"), "{text}");
    p.ok(&["report", "-p", "t1"]);
    assert!(p.read("paper/table1.md").starts_with("**Table One.**"));
}
