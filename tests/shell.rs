//! The shell: completion scripts and man pages generated from the same clap
//! definitions as the parser, so they list every verb and flag there is.

mod common;
use common::Project;

#[test]
fn completion_scripts_load_in_their_shells_and_know_the_verbs() {
    let p = Project::new();
    let bash = p.ok(&["completions", "bash"]);
    assert!(
        bash.contains("_repro()") && bash.contains("metrics"),
        "{bash}"
    );
    // bash really loads it and completes a verb and a flag.
    let script = p.write("repro.bash", &bash);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {}; complete -p repro; COMP_WORDS=(repro met); COMP_CWORD=1; _repro repro met repro; echo \"${{COMPREPLY[@]}}\"; COMP_WORDS=(repro metrics --di); COMP_CWORD=2; _repro repro --di metrics; echo \"${{COMPREPLY[@]}}\"",
            script.display()
        ))
        .output()
        .expect("bash");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("-F _repro repro"), "{text} {out:?}");
    assert!(text.lines().any(|l| l.trim() == "metrics"), "{text}");
    assert!(text.contains("--diff"), "{text}");
    let zsh = p.ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef repro"), "{zsh}");
    let fish = p.ok(&["completions", "fish"]);
    assert!(
        fish.contains("complete -c repro") && fish.contains("-l lm-eval"),
        "{fish}"
    );
    let e = p.fails(&["completions", "tcsh"], 2);
    assert!(e.contains("invalid value 'tcsh'"), "{e}");
}

#[test]
fn man_pages_come_from_the_same_definitions() {
    let p = Project::new();
    let page = p.ok(&["man"]);
    assert!(page.contains(".TH repro 1"), "{page}");
    assert!(
        page.contains("metrics") && page.contains("completions"),
        "{page}"
    );
    p.ok(&["man", "--dir", "man"]);
    let metrics = p.read("man/repro-metrics.1");
    assert!(metrics.contains(".TH repro-metrics 1"), "{metrics}");
    assert!(metrics.contains("\\-\\-diff"), "{metrics}");
    assert!(!p.read("man/repro-diff.1").is_empty());
}
