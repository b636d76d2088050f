//! `retries:` against a real node failure: the test takes the (only) node of
//! the test cluster down while a job runs, so the job ends NODE_FAIL, and
//! repro must resubmit it. Its own test binary, because taking the node down
//! fails every job on it: cargo runs test binaries one after another.
//!
//! Skips (passes with a message) when no Slurm cluster answers.

mod common;

use common::Project;
use std::process::Command;
use std::time::{Duration, Instant};

/// Puts the node back in service whatever happens to the test.
struct Resume(String);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = Command::new("scontrol")
            .args(["update", &format!("nodename={}", self.0), "state=resume"])
            .output();
    }
}

#[test]
fn a_node_failure_is_retried_when_the_node_allows_it() {
    let up = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !up {
        eprintln!("skipping: no Slurm cluster answers `scontrol ping`");
        return;
    }
    let nodes = Command::new("sinfo")
        .args(["-h", "-o", "%N"])
        .output()
        .expect("sinfo");
    let node = String::from_utf8_lossy(&nodes.stdout).trim().to_string();
    if node.is_empty() || node.contains(',') || node.contains('[') {
        eprintln!("skipping: this test takes the cluster's only node down; found `{node}`");
        return;
    }
    let name = format!("nf{}", std::process::id());
    let p = Project::new();
    let marker = p.path().join("first-attempt");
    // `--no-requeue`: Slurm would otherwise requeue the job itself (the job
    // then simply runs again under the same id, which repro also follows).
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!(
            r#"pipeline: {name}
nodes:
  flaky:
    op: shell
    resources: {{retries: 1, extra: [--no-requeue]}}
    params:
      cmd: |
        if [ ! -e {m} ]; then touch {m}; sleep 120; fi
        echo done > out/o
      outs: o
"#,
            m = marker.display(),
            name = name
        ),
    );
    let child = Command::new(assert_cmd::cargo::cargo_bin("repro"))
        .args(["run", "-p", &name, "--executor", "slurm"])
        .current_dir(p.path())
        .env_remove("REPRO_CACHE")
        .env_remove("REPRO_BLOBS")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let t = Instant::now();
    while !marker.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the first attempt never started"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _resume = Resume(node.clone());
    let down = Command::new("scontrol")
        .args([
            "update",
            &format!("nodename={node}"),
            "state=down",
            "reason=repro-node-fail-test",
        ])
        .output()
        .expect("scontrol");
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    drop(_resume);
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 ran"), "{text}");
    let lock = p.read(&format!("pipelines/{name}.lock"));
    assert!(lock.contains("flaky"), "{lock}");
    // Two submissions: the one the node failure ended, and the retry.
    let q = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%T|%j"])
        .output()
        .expect("squeue");
    let states: Vec<String> = String::from_utf8_lossy(&q.stdout)
        .lines()
        .filter(|l| l.contains(&format!("|repro:{name}:")))
        .map(|l| l.split('|').next().unwrap_or("").to_string())
        .collect();
    assert_eq!(states.len(), 2, "{states:?}");
    assert!(states.iter().any(|s| s == "NODE_FAIL"), "{states:?}");
    assert!(states.iter().any(|s| s == "COMPLETED"), "{states:?}");
}
