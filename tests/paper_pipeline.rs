//! The paper pipeline: published Table 1 exactly as printed, the figures'
//! structure, and a reviewer's `repro report` + `repro verify` on a copy.

mod common;
use common::{Cli, Project};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn copy_project() -> Project {
    let p = Project::new();
    for f in [
        "pipelines/paper.yaml",
        "pipelines/published/table1.yaml",
        "pipelines/published/figures.yaml",
        "templates/table1.md.j2",
        "templates/table1.tex.j2",
        "templates/table1.html.j2",
        "templates/report.html.j2",
    ] {
        p.write(
            f,
            &std::fs::read_to_string(format!("{ROOT}/{f}")).expect("repo file"),
        );
    }
    // The evaluation data the compute nodes read (committed, a few MB).
    std::os::unix::fs::symlink(format!("{ROOT}/data"), p.path().join("data")).expect("symlink");
    p
}

#[test]
fn table1_is_rendered_exactly_as_published() {
    let p = copy_project();
    let text = p.ok(&["report", "-p", "paper"]);
    // No weights here: every reproduced cell is a dash, labelled not computed.
    assert!(
        text.contains("compute nodes not in the cache (their cells show as missing)"),
        "{text}"
    );
    let tex = p.read("paper/table1.tex");
    let body: Vec<&str> = tex
        .lines()
        .filter(|l| l.ends_with("\\\\") || l.contains("rule"))
        .collect();
    assert_eq!(
        body,
        vec![
            "\\toprule",
            "Model & Imitation Data & NQ & NQ (reproduced) & $\\Delta$ \\\\",
            "\\midrule",
            "7B & -- & 17 & --\\footnotemark[1] & -- \\\\",
            "7B & ShareGPT-Mix & 10 & --\\footnotemark[2] & -- \\\\",
            "7B & NQ-Synthetic & \\textbf{22} & --\\footnotemark[3] & -- \\\\",
            "\\midrule",
            "13B & -- & 20 & --\\footnotemark[4] & -- \\\\",
            "13B & ShareGPT-Mix & 15 & --\\footnotemark[5] & -- \\\\",
            "13B & NQ-Synthetic & \\textbf{27} & --\\footnotemark[6] & -- \\\\",
            "\\midrule",
            "ChatGPT & -- & 31 & -- & -- \\\\",
            "\\bottomrule",
        ]
    );
    let md = p.read("paper/table1.md");
    for (n, node) in [
        (1, "nq_base[base=llama_7b,data=none,shots=0,size=7B]"),
        (
            5,
            "nq[from=imitate,base=llama_13b,data=ShareGPT-Mix,tokens=150000000,size=13B,shots=0]",
        ),
        (
            6,
            "nq[from=imitate_nq,base=llama_13b,data=NQ-Synthetic,size=13B,shots=0]",
        ),
    ] {
        assert!(
            md.contains(&format!(
                "[^{n}]: not computed: node `{node}` is not in the cache."
            )),
            "{md}"
        );
    }
    // The ChatGPT row has no reproduced counterpart: a dash, no footnote.
    assert!(md.contains("| ChatGPT | – | 31 | – | – |"), "{md}");
}

#[test]
fn figures_have_the_papers_panels_series_and_labels() {
    let p = copy_project();
    p.ok(&["report", "-p", "paper"]);
    let svg = p.read("paper/figure1.svg");
    for label in [
        "Preference vs. imitation data",
        "Natural Questions 3-Shot",
        "Preference vs. base model size",
        "Amount of Imitation Data (M tokens)",
        "Number of Model Parameters (B)",
        "Crowdworkers, about 70% [text]",
        "Imitation Model (13B), GPT-4 rating [Fig. 3]",
        "ChatGPT",
        "LLaMA-13B",
    ] {
        assert!(svg.contains(label), "figure1.svg lacks {label:?}");
    }
    let fig4 = p.read("paper/figure4.svg");
    assert_eq!(
        fig4.matches("MMLU 5-Shot").count(),
        2,
        "top and bottom rows"
    );
    assert!(fig4.contains("Pass@1 (%)"));
    let png = std::fs::read(p.path().join("paper/figure1.png")).expect("png");
    assert_eq!(&png[1..4], b"PNG");
    // The figure digests are the same as in this repository's committed cache:
    // byte-identical rendering on another machine and in another directory.
    let here: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/paper.lock")).expect("lock");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{ROOT}/pipelines/paper.lock")).expect("lock"),
    )
    .expect("json");
    for node in [
        "figure1",
        "figure3",
        "figure4",
        "figure5",
        "table1[format=tex]",
    ] {
        assert_eq!(
            here["nodes"][node]["outputs"], committed["nodes"][node]["outputs"],
            "{node} renders to the committed bytes"
        );
    }
}

#[test]
fn a_reviewer_regenerates_and_verifies() {
    let p = copy_project();
    p.ok(&["report", "-p", "paper"]);
    // Plain `verify` on this copy (no committed cache): the nodes that need
    // weights and the two that need the teacher API (no API configured)
    // are blocked, each with its reason, not failed; the three prompt nodes
    // that could run here but never did still fail it.
    let v = p
        .cli()
        .args(&["verify", "-p", "paper", "--json"])
        .env_remove("REPRO_API_BASE")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("REPRO_API_OFFLINE")
        .status(1)
        .run()
        .json();
    let with = |status: &str| -> Vec<String> {
        v["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["status"] == status)
            .map(|n| {
                format!(
                    "{} {}",
                    n["node"].as_str().unwrap_or(""),
                    n["reason"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    assert_eq!(
        with("fail"),
        [
            "chat_prompts not cached for its current key: never run",
            "rtp_prompts not cached for its current key: never run",
            "code_prompts not cached for its current key: never run",
        ]
    );
    let api: Vec<String> = with("not-run")
        .into_iter()
        .filter(|r| r.contains("needs a credential: the chat API"))
        .collect();
    assert_eq!(api.len(), 2, "{api:?}");
    let text = p.ok(&["verify", "-p", "paper", "--allow-not-run"]);
    assert!(text.contains(" not run, 0 failing"), "{text}");
    let html = p.read("paper/report.html");
    assert!(
        html.contains("<svg") && html.contains("Provenance") && html.contains("published"),
        "self-contained page"
    );
    assert!(!html.contains("src=\"http"), "no external assets");
    // Editing the published data re-renders what depends on it, nothing else.
    let t = p.read("pipelines/published/table1.yaml");
    p.write(
        "pipelines/published/table1.yaml",
        &t.replace("value: 31,", "value: 32,"),
    );
    let text = p.fails(&["verify", "-p", "paper", "--allow-not-run"], 1);
    assert!(
        text.contains("FAIL published_table1") && !text.contains("FAIL figure1"),
        "{text}"
    );
}

/// A fresh clone (this checkout: the committed cache and lock file) passes
/// plain `verify -p paper`: every never-run node is blocked with a reason.
#[test]
fn plain_verify_passes_on_this_checkout() {
    Cli::at(ROOT)
        .args(&["verify", "-p", "paper"])
        .env_remove("REPRO_API_BASE")
        .env_remove("OPENAI_BASE_URL")
        .env_remove("REPRO_API_OFFLINE")
        .stdout_has(" not run, 0 failing")
        .stdout_has("note: 2 of them need a credential this machine lacks: the chat API")
        .run();
}
