//! Crash safety, corruption, concurrency, cancellation, blobs and gc.

mod common;
use common::{Project, names};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

const CHAIN: &str = r#"
pipeline: chain
nodes:
  a:
    op: shell
    params: {cmd: "seq 1 1000 > out/a", outs: a}
  b:
    op: shell
    inputs: {x: a}
    params: {cmd: "sort -r in/x > out/b; mkdir -p out/d/e; echo 1 > out/d/one; echo 2 > out/d/e/two", outs: {out: b, dir: d}}
  c:
    op: shell
    inputs: {x: b, d: b.dir}
    params: {cmd: "head -3 in/x > out/c; cat in/d/e/two >> out/c", outs: c}
"#;

fn flip_byte(path: &std::path::Path) {
    let mut perm = std::fs::metadata(path).expect("meta").permissions();
    perm.set_mode(0o644);
    std::fs::set_permissions(path, perm).expect("chmod");
    let mut bytes = std::fs::read(path).expect("read");
    bytes[0] ^= 0x01;
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_flipped_byte_is_detected_by_verify_and_recomputed_by_run() {
    let p = Project::new();
    p.write("pipelines/chain.yaml", CHAIN);
    p.ok(&["run", "-p", "chain"]);
    p.ok(&["verify", "-p", "chain"]);
    let objects = p.objects();
    assert!(objects.len() >= 6);
    for obj in objects {
        let p2 = Project::new();
        p2.write("pipelines/chain.yaml", CHAIN);
        p2.ok(&["run", "-p", "chain"]);
        let twin = p2.path().join(obj.strip_prefix(p.path()).expect("prefix"));
        flip_byte(&twin);
        let text = p2.fails(&["verify", "-p", "chain"], 1);
        assert!(text.contains("corrupt"), "{text}");
        let ran = p2.run_ran("chain");
        assert!(
            !ran.is_empty(),
            "a corrupt object must be recomputed ({})",
            twin.display()
        );
        p2.ok(&["verify", "-p", "chain"]);
    }
}

#[test]
fn an_edited_record_or_stale_lock_fails_verify() {
    let p = Project::new();
    p.write("pipelines/chain.yaml", CHAIN);
    p.ok(&["run", "-p", "chain"]);
    // A changed pipeline: verify names the node and the reason, exit 1.
    p.write(
        "pipelines/chain.yaml",
        &CHAIN.replace("seq 1 1000", "seq 1 999"),
    );
    let text = p.fails(&["verify", "-p", "chain"], 1);
    assert!(
        text.contains("FAIL a: not cached for its current key: params.cmd"),
        "{text}"
    );
    assert!(text.contains("FAIL c: not cached"), "{text}");
    let v = p.json(&["verify", "-p", "chain", "--json"]);
    assert_eq!(v["ok"], false);
    p.write("pipelines/chain.yaml", CHAIN);
    p.ok(&["verify", "-p", "chain"]);
    // Hand-edit a record's preimage.
    let lock: serde_json::Value =
        serde_json::from_str(&p.read("pipelines/chain.lock")).expect("lock");
    let key = lock["nodes"]["c"]["key"].as_str().expect("key");
    let rec_path = format!("cache/records/{key}.json");
    p.write(&rec_path, &p.read(&rec_path).replace("head -3", "head -4"));
    let text = p.fails(&["verify", "-p", "chain"], 1);
    assert!(text.contains("was edited"), "{text}");
}

#[test]
fn sigkill_at_any_moment_leaves_a_cache_that_verifies_and_a_run_that_completes() {
    let pipeline = r#"
pipeline: slow
nodes:
  n:
    op: shell
    matrix: {i: [1, 2, 3, 4, 5, 6, 7, 8]}
    params: {cmd: "for k in $(seq 1 200); do echo ${i}-$k; done > out/v; sleep 0.05", outs: v}
  all:
    op: shell
    inputs: {v: "n[*]"}
    params: {cmd: "cat in/v/*/* 2>/dev/null > out/all || cat in/v/* > out/all", outs: all}
"#;
    for delay_ms in [5u64, 40, 90, 150, 250, 400] {
        let p = Project::new();
        p.write("pipelines/slow.yaml", pipeline);
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"))
            .args(["run", "-p", "slow", "-j", "2"])
            .current_dir(p.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever was recorded is intact: verify reports only "not cached", never corruption.
        let v = p.json(&["verify", "-p", "slow", "--json"]);
        for n in v["nodes"].as_array().expect("nodes") {
            if n["ok"] == false {
                let r = n["reason"].as_str().unwrap_or("");
                assert!(
                    r.starts_with("not cached") || r.contains("missing from"),
                    "after kill at {delay_ms}ms: {r}"
                );
            }
        }
        p.ok(&["run", "-p", "slow"]);
        p.ok(&["verify", "-p", "slow"]);
    }
}

#[test]
fn two_concurrent_runs_compute_each_key_once_and_never_corrupt() {
    let p = Project::new();
    let counter = p.path().join("counter");
    p.write(
        "pipelines/par.yaml",
        &format!(
            r#"
pipeline: par
nodes:
  n:
    op: shell
    matrix: {{i: [1, 2, 3, 4]}}
    params: {{cmd: "echo ${{i}} >> {c}; sleep 0.3; echo ${{i}} > out/v", outs: v}}
"#,
            c = counter.display()
        ),
    );
    let spawn = || {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"))
            .args(["run", "-p", "par", "-j", "2", "-q"])
            .current_dir(p.path())
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(spawn);
        std::thread::sleep(Duration::from_millis(50));
        let b = s.spawn(spawn);
        (
            a.join().expect("a").expect("a"),
            b.join().expect("b").expect("b"),
        )
    });
    assert!(a.status.success() && b.status.success(), "{:?} {:?}", a, b);
    let mut lines: Vec<String> = std::fs::read_to_string(&counter)
        .expect("counter")
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        names(&["1", "2", "3", "4"]),
        "each key computed exactly once"
    );
    p.ok(&["verify", "-p", "par"]);
}

#[test]
fn ctrl_c_kills_running_commands_and_records_nothing_partial() {
    let p = Project::new();
    let marker = p.path().join("finished-marker");
    p.write(
        "pipelines/int.yaml",
        &format!(
            "pipeline: int\nnodes:\n  quick:\n    op: shell\n    params: {{cmd: 'echo q > out/q', outs: q}}\n  slow:\n    op: shell\n    inputs: {{q: quick}}\n    params: {{cmd: 'echo partial > out/s; sleep 3; touch {m}; echo done >> out/s', outs: s}}\n",
            m = marker.display()
        ),
    );
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("repro"))
        .args(["run", "-p", "int"])
        .current_dir(p.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: sending SIGINT to our own child.
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let t0 = Instant::now();
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "stopped promptly");
    std::thread::sleep(Duration::from_millis(3000));
    assert!(!marker.exists(), "the running command was killed");
    let status = p.json(&["status", "-p", "int", "--json"]);
    let st: Vec<(String, String)> = status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap_or("").into(),
                n["status"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        st,
        vec![
            ("quick".to_string(), "cached".to_string()),
            ("slow".to_string(), "missing".to_string())
        ]
    );
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn failing_commands_and_missing_outputs_fail_the_node_and_store_nothing() {
    let p = Project::new();
    p.write(
        "pipelines/bad.yaml",
        "pipeline: bad\nnodes:\n  ok1:\n    op: shell\n    params: {cmd: 'echo 1 > out/x', outs: x}\n  boom:\n    op: shell\n    params: {cmd: 'echo some detail >&2; exit 3', outs: x}\n  after:\n    op: shell\n    inputs: {b: boom}\n    params: {cmd: 'cp in/b out/x', outs: x}\n  nout:\n    op: shell\n    params: {cmd: 'echo hi > out/other', outs: x}\n",
    );
    let text = p.fails(&["run", "-p", "bad", "-k"], 1);
    assert!(text.contains("command exited with status 3"), "{text}");
    assert!(text.contains("some detail"), "stderr tail shown: {text}");
    assert!(
        text.contains("declared output `out` (out/x) was not written"),
        "{text}"
    );
    let records = std::fs::read_dir(p.path().join("cache/records"))
        .expect("records")
        .count();
    assert_eq!(records, 1, "only ok1 recorded");
    let st = p.json(&["status", "-p", "bad", "--json"]);
    assert_eq!(st["cached"], 1);
}

#[test]
fn heavy_outputs_live_outside_git_and_verify_works_without_them() {
    let p = Project::new();
    p.write(
        "pipelines/h.yaml",
        "pipeline: h\nnodes:\n  ckpt:\n    op: shell\n    params:\n      cmd: 'head -c 100000 /dev/urandom > out/w.bin; echo 0.5 > out/loss'\n      outs: {out: {path: w.bin, heavy: true}, loss: loss}\n  eval:\n    op: shell\n    inputs: {l: ckpt.loss}\n    params: {cmd: 'cp in/l out/score', outs: score}\n",
    );
    let blobs = tempfile::tempdir().expect("blobs");
    let o = p
        .cmd()
        .env("REPRO_BLOBS", blobs.path())
        .args(["run", "-p", "h"])
        .output()
        .expect("run");
    assert!(o.status.success());
    assert_eq!(
        walk_count(blobs.path()),
        1,
        "the checkpoint went to the blob store"
    );
    // A reviewer's clone: no blobs at all. Verify passes and nothing re-runs.
    let empty = tempfile::tempdir().expect("empty");
    let o = p
        .cmd()
        .env("REPRO_BLOBS", empty.path())
        .args(["verify", "-p", "h"])
        .output()
        .expect("verify");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let o = p
        .cmd()
        .env("REPRO_BLOBS", empty.path())
        .args(["run", "-p", "h"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nothing to do"));
}

fn walk_count(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            n += walk_count(&e.path());
        } else {
            n += 1;
        }
    }
    n
}

#[test]
fn gc_removes_only_what_no_lock_file_references() {
    let p = Project::new();
    p.write("pipelines/chain.yaml", CHAIN);
    p.ok(&["run", "-p", "chain"]);
    p.write("pipelines/chain.yaml", &CHAIN.replace("head -3", "head -5"));
    p.ok(&["run", "-p", "chain"]);
    let before = std::fs::read_dir(p.path().join("cache/records"))
        .expect("r")
        .count();
    assert_eq!(before, 4);
    let text = p.ok(&["gc"]);
    assert!(text.contains("would remove"), "{text}");
    assert_eq!(
        std::fs::read_dir(p.path().join("cache/records"))
            .expect("r")
            .count(),
        4,
        "dry run by default"
    );
    p.ok(&["gc", "--force"]);
    assert_eq!(
        std::fs::read_dir(p.path().join("cache/records"))
            .expect("r")
            .count(),
        3
    );
    p.ok(&["verify", "-p", "chain"]);
    assert!(p.run_ran("chain").is_empty());
}

#[test]
fn verify_rerun_compares_metrics_within_tolerance() {
    let p = Project::new();
    p.write(
        "pipelines/m.yaml",
        r#"
pipeline: m
nodes:
  stable:
    op: shell
    params: {cmd: "echo '{\"acc\": 0.5}' > out/m.json", outs: {metrics: m.json}, metrics: metrics}
  noisy:
    op: shell
    params: {cmd: "echo \"{\\\"acc\\\": 0.$RANDOM$RANDOM}\" > out/m.json", outs: {metrics: m.json}, metrics: metrics}
    tolerance: {acc: 0.0000001}
  loose:
    op: shell
    params: {cmd: "echo \"{\\\"acc\\\": 0.5$RANDOM}\" > out/m.json", outs: {metrics: m.json}, metrics: metrics}
    tolerance: {acc: 0.1}
"#,
    );
    p.ok(&["run", "-p", "m"]);
    let text = p.ok(&["verify", "-p", "m", "--rerun", "stable"]);
    assert!(text.contains("PASS acc"), "{text}");
    p.ok(&["verify", "-p", "m", "--rerun", "loose"]);
    let text = p.fails(&["verify", "-p", "m", "--rerun", "noisy"], 1);
    assert!(text.contains("FAIL acc"), "{text}");
    // The cache was not touched by re-runs.
    p.ok(&["verify", "-p", "m"]);
}

#[test]
fn gpu_nodes_get_distinct_devices_and_missing_gpus_are_reported() {
    let p = Project::new();
    p.write(
        "pipelines/g.yaml",
        "pipeline: g\nnodes:\n  t:\n    op: shell\n    matrix: {i: [1, 2]}\n    resources: {gpus: 1}\n    params: {cmd: 'echo $CUDA_VISIBLE_DEVICES > out/dev; sleep 0.3 # ${i}', outs: dev}\n",
    );
    let text = p.fails(&["run", "-p", "g", "-k"], 1);
    assert!(text.contains("needs 1 GPU(s) but this run has 0"), "{text}");
    p.ok(&["run", "-p", "g", "--gpus", "0,1", "-j", "2"]);
    let lock: serde_json::Value = serde_json::from_str(&p.read("pipelines/g.lock")).expect("lock");
    let mut devs = Vec::new();
    for id in ["t[i=1]", "t[i=2]"] {
        let d = lock["nodes"][id]["outputs"]["out"]
            .as_str()
            .expect("digest");
        devs.push(
            std::fs::read_to_string(p.path().join("cache/objects").join(&d[..2]).join(&d[2..]))
                .expect("obj"),
        );
    }
    devs.sort();
    assert_eq!(
        devs,
        vec!["0\n".to_string(), "1\n".to_string()],
        "two nodes never share a device"
    );
}
