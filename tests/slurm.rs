//! The Slurm executor end to end, against a real Slurm cluster.
//!
//! `.ci/run` starts a one-machine cluster with two fake GPUs
//! (`.ci/slurm/local-slurm-up.sh`, run as root). Without a cluster
//! (`scontrol ping` fails) every test here prints why and passes, so
//! `cargo test` still works elsewhere.
//!
//! Each test uses its own pipeline name, so the jobs it submitted can be
//! counted by job name (`repro:<pipeline>:<node>:<key>`); finished jobs stay
//! visible to `squeue -t all` for `MinJobAge`.

mod common;

use common::Project;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn slurm_up() -> bool {
    let ok = Command::new("scontrol")
        .arg("ping")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"));
    if !ok {
        eprintln!(
            "skipping: no Slurm cluster answers `scontrol ping` (.ci/run starts one with .ci/slurm/local-slurm-up.sh)"
        );
    }
    ok
}

/// A pipeline name no earlier run of the tests used.
fn unique(stem: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{stem}{}x{}", std::process::id(), t % 1_000_000_000)
}

/// (id, state, name) of every job whose name starts with `repro:<pipeline>:`.
fn jobs_of(pipeline: &str) -> Vec<(String, String, String)> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-o", "%i|%T|%j"])
        .output()
        .expect("squeue");
    let prefix = format!("repro:{pipeline}:");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, '|');
            let (i, s, n) = (p.next()?, p.next()?, p.next()?);
            n.starts_with(&prefix)
                .then(|| (i.to_string(), s.to_string(), n.to_string()))
        })
        .collect()
}

fn live(pipeline: &str) -> usize {
    jobs_of(pipeline)
        .iter()
        .filter(|(_, s, _)| {
            matches!(
                s.as_str(),
                "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"
            )
        })
        .count()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn spawn_run(p: &Project, pipeline: &str) -> std::process::Child {
    Command::new(assert_cmd::cargo::cargo_bin("repro"))
        .args(["run", "-p", pipeline, "--executor", "slurm"])
        .current_dir(p.path())
        .env_remove("REPRO_CACHE")
        .env_remove("REPRO_BLOBS")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn repro")
}

fn records(p: &Project) -> usize {
    std::fs::read_dir(p.path().join("cache/records")).map_or(0, |d| d.count())
}

#[test]
fn cpu_and_gpu_nodes_run_on_slurm_and_a_second_run_submits_nothing() {
    if !slurm_up() {
        return;
    }
    let name = unique("ok");
    let p = Project::new();
    let barrier = p.path().join("barrier");
    std::fs::create_dir_all(&barrier).expect("mkdir");
    // The two GPU nodes wait (up to 20 s) for each other, so that on a
    // cluster with room for both they hold GPUs at the same time; each
    // records when it ran. Slurm guarantees different devices only to jobs
    // that run at the same time: a small cluster may run them one after
    // the other, both on device 0, and that is correct.
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!(
            r#"pipeline: {name}
nodes:
  words:
    op: shell
    params: {{cmd: "printf 'a b c\n' > out/w.txt", outs: w.txt}}
  gpu:
    op: shell
    matrix: {{i: [1, 2]}}
    inputs: {{w: words}}
    resources: {{executor: slurm, gpus: 1, time: 10m, mem: 100M}}
    params:
      cmd: |
        start=$(date +%s.%N)
        touch {b}/${{i}}
        for k in $(seq 200); do [ "$(ls {b} | wc -l)" -ge 2 ] && break; sleep 0.1; done
        echo "$CUDA_VISIBLE_DEVICES" > out/dev
        cat in/w >> out/dev
        echo "$start $(date +%s.%N)" > {b}/../span-${{i}}
      outs: dev
  join:
    op: shell
    inputs: {{d: "gpu[*]"}}
    params: {{cmd: "cat in/d/* > out/all", outs: all}}
"#,
            b = barrier.display()
        ),
    );
    let out = p.ok(&["run", "-p", &name, "--executor", "slurm"]);
    assert!(out.contains("4 ran"), "{out}");
    assert_eq!(
        jobs_of(&name).len(),
        4,
        "one job per node: {:?}",
        jobs_of(&name)
    );
    let all = p.read(&format!("pipelines/{name}.lock"));
    assert!(all.contains("join"), "{all}");
    // Each GPU node saw one device, and not the same one.
    let devs: Vec<String> = (1..=2)
        .map(|i| {
            let o = p.ok(&[
                "cache",
                "show",
                &key_of(&p, &name, &format!("gpu[i={i}]")),
                "-p",
                &name,
            ]);
            let v: serde_json::Value = serde_json::from_str(&o).expect("record json");
            v["provenance"]["device"].as_str().unwrap_or("").to_string()
        })
        .collect();
    assert!(devs.iter().all(|d| d.starts_with("cuda:")), "{devs:?}");
    // Distinct devices only where the jobs overlapped in time.
    let span = |i: usize| -> (f64, f64) {
        let t = p.read(&format!("span-{i}"));
        let v: Vec<f64> = t
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(v.len(), 2, "span-{i}: {t:?}");
        (v[0], v[1])
    };
    let ((s1, e1), (s2, e2)) = (span(1), span(2));
    if s1 < e2 && s2 < e1 {
        assert_ne!(
            devs[0], devs[1],
            "two GPU jobs ran at the same time on one device: {devs:?}"
        );
    } else {
        eprintln!(
            "note: the two GPU jobs ran one after the other ({s1:.1}-{e1:.1}, {s2:.1}-{e2:.1}); device distinctness not checked"
        );
    }
    let again = p.ok(&["run", "-p", &name, "--executor", "slurm"]);
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(jobs_of(&name).len(), 4, "the second run submitted jobs");
}

fn key_of(p: &Project, pipeline: &str, node: &str) -> String {
    let lock: serde_json::Value =
        serde_json::from_str(&p.read(&format!("pipelines/{pipeline}.lock"))).expect("lock json");
    lock["nodes"][node]["key"]
        .as_str()
        .expect("key")
        .to_string()
}

#[test]
fn failing_node_shows_stderr_and_job_id_and_impossible_requests_fail_at_submission() {
    if !slurm_up() {
        return;
    }
    let name = unique("bad");
    let p = Project::new();
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!(
            r#"pipeline: {name}
nodes:
  boom:
    op: shell
    params: {{cmd: "echo the-op-said-boom >&2; exit 3", outs: o}}
  huge:
    op: shell
    resources: {{gpus: 3}}
    params: {{cmd: "true", outs: o}}
  fine:
    op: shell
    params: {{cmd: "echo ok > out/o", outs: o}}
"#
        ),
    );
    let out = p.fails(&["run", "-p", &name, "--executor", "slurm", "-k"], 1);
    assert!(out.contains("the-op-said-boom"), "{out}");
    assert!(out.contains("exited with status 3 (slurm job "), "{out}");
    assert!(out.contains("sbatch refused the job"), "{out}");
    assert!(
        out.contains("Requested node configuration is not available")
            || out.contains("Invalid generic resource"),
        "{out}"
    );
    assert!(
        out.contains("1 ran"),
        "the independent node still ran: {out}"
    );
    // Nothing half-written: only `fine` has a record.
    assert_eq!(records(&p), 1);
}

#[test]
fn a_node_over_its_time_limit_ends_as_timeout() {
    if !slurm_up() {
        return;
    }
    let name = unique("slow");
    let p = Project::new();
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!(
            "pipeline: {name}\nnodes:\n  slow:\n    op: shell\n    resources: {{time: 1m}}\n    params: {{cmd: 'sleep 600', outs: o}}\n"
        ),
    );
    // Slurm checks limits about every 30 s: the job ends 60-100 s in.
    let out = p.fails(&["run", "-p", &name, "--executor", "slurm"], 1);
    assert!(out.contains("ended TIMEOUT"), "{out}");
    assert!(out.contains("raise `resources.time`"), "{out}");
    assert_eq!(records(&p), 0);
}

fn four_sleepers(p: &Project, name: &str) {
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!(
            r#"pipeline: {name}
nodes:
  a:
    op: shell
    matrix: {{i: [1, 2, 3, 4]}}
    params: {{cmd: "sleep 6; echo ${{i}} > out/o", outs: o}}
  b:
    op: shell
    inputs: {{x: "a[*]"}}
    params: {{cmd: "cat in/x/* > out/o", outs: o}}
"#
        ),
    );
}

#[test]
fn ctrl_c_cancels_every_job_and_records_nothing() {
    if !slurm_up() {
        return;
    }
    let name = unique("int");
    let p = Project::new();
    four_sleepers(&p, &name);
    let child = spawn_run(&p, &name);
    wait_for("four submitted jobs", 60, || jobs_of(&name).len() == 4);
    // `repro status` shows the jobs of the run in progress.
    let status = p.ok(&["status", "-p", &name]);
    assert!(status.contains("slurm job "), "{status}");
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{text}");
    assert!(text.contains("nothing partial was recorded"), "{text}");
    wait_for("no queued or running job", 20, || live(&name) == 0);
    assert_eq!(records(&p), 0, "{text}");
}

#[test]
fn a_killed_run_is_resumed_without_submitting_twice() {
    if !slurm_up() {
        return;
    }
    let name = unique("kill");
    let p = Project::new();
    four_sleepers(&p, &name);
    let mut child = spawn_run(&p, &name);
    wait_for("four submitted jobs", 60, || jobs_of(&name).len() == 4);
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(live(&name) > 0, "the jobs outlive the killed submitter");
    let out = p.ok(&["run", "-p", &name, "--executor", "slurm"]);
    assert!(out.contains("5 ran"), "{out}");
    let jobs = jobs_of(&name);
    assert_eq!(jobs.len(), 5, "a[1..4] once each, then b: {jobs:?}");
}

#[test]
fn a_busy_controller_is_retried() {
    if !slurm_up() {
        return;
    }
    let name = unique("busy");
    let p = Project::new();
    let shim = p.path().join("shim");
    std::fs::create_dir_all(&shim).expect("mkdir");
    let real = Command::new("sh")
        .args(["-c", "command -v sbatch"])
        .output()
        .expect("sh");
    let real = String::from_utf8_lossy(&real.stdout).trim().to_string();
    // Fails twice the way a busy slurmctld does, then hands over.
    let script = format!(
        "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0)\nif [ \"$n\" -lt 2 ]; then echo $((n+1)) > {c}; echo 'sbatch: error: Batch job submission failed: Socket timed out on send/recv operation' >&2; exit 1; fi\nexec {real} \"$@\"\n",
        c = shim.join("count").display()
    );
    std::fs::write(shim.join("sbatch"), script).expect("write");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(shim.join("sbatch"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    p.write(
        &format!("pipelines/{name}.yaml"),
        &format!("pipeline: {name}\nnodes:\n  one:\n    op: shell\n    params: {{cmd: 'echo 1 > out/o', outs: o}}\n"),
    );
    let path = format!(
        "{}:{}",
        shim.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = p
        .cmd()
        .args(["run", "-p", &name, "--executor", "slurm"])
        .env("PATH", path)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert_eq!(p.read("shim/count").trim(), "2");
    assert_eq!(jobs_of(&name).len(), 1);
}

#[test]
fn cancel_command_cancels_a_runs_jobs() {
    if !slurm_up() {
        return;
    }
    let name = unique("cancel");
    let p = Project::new();
    four_sleepers(&p, &name);
    let child = spawn_run(&p, &name);
    wait_for("four submitted jobs", 60, || jobs_of(&name).len() == 4);
    let out = p.ok(&["cancel", "-p", &name]);
    assert!(out.contains("cancelled"), "{out}");
    let run = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{text}");
    assert!(text.contains("CANCELLED"), "{text}");
    wait_for("no queued or running job", 20, || live(&name) == 0);
    assert_eq!(records(&p), 0);
}

#[test]
fn two_runs_on_one_cache_never_submit_the_same_key_twice() {
    if !slurm_up() {
        return;
    }
    let name = unique("twice");
    let p = Project::new();
    four_sleepers(&p, &name);
    // Two users (or two shells) start the same pipeline on one cache: the
    // second waits on each key's lock and takes the first one's records.
    let a = spawn_run(&p, &name);
    let b = spawn_run(&p, &name);
    let (a, b) = (
        a.wait_with_output().expect("wait a"),
        b.wait_with_output().expect("wait b"),
    );
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let jobs = jobs_of(&name);
    assert_eq!(jobs.len(), 5, "each key submitted once: {jobs:?}");
    let both = format!(
        "{}{}",
        String::from_utf8_lossy(&a.stderr),
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(both.contains("computed by another process"), "{both}");
}

#[test]
fn without_slurm_the_executor_says_why() {
    // Runs everywhere: PATH without sbatch/squeue.
    let p = Project::new();
    let empty = p.path().join("empty-path");
    std::fs::create_dir_all(&empty).expect("mkdir");
    p.write(
        "pipelines/n.yaml",
        "pipeline: n\nnodes:\n  one:\n    op: shell\n    resources: {executor: slurm}\n    params: {cmd: 'echo 1 > out/o', outs: o}\n",
    );
    let out = p
        .cmd()
        .args(["run", "-p", "n"])
        .env("PATH", &empty)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("`sbatch`/`squeue` are not on PATH"), "{text}");
    assert!(!text.contains("panicked"), "{text}");
}
