//! Building and running `sbatch`, `squeue` and `scancel` command lines.

use crate::config::SlurmProfile;
use crate::graph::resources::{Resources, slurm_mem, slurm_time};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Slurm states after which a job runs no more.
pub const TERMINAL: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
    "REVOKED",
];

/// Terminal states worth a resubmission when the node allows `retries`.
pub const RETRYABLE: &[&str] = &["PREEMPTED", "NODE_FAIL", "BOOT_FAIL"];

/// Terminal states in which Slurm, not the job, ended the job: Slurm's
/// account wins over whatever the job reported as its child died.
pub const STOPPED_BY_SLURM: &[&str] = &[
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
];

/// Whether a state is terminal.
pub fn is_terminal(state: &str) -> bool {
    TERMINAL.contains(&state)
}

/// A job name Slurm and `squeue -n` accept: pipeline, node id and key prefix.
pub fn job_name(pipeline: &str, node: &str, key: &str) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != ',' && c != '\'' && c != '"' {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    format!(
        "repro:{}:{}:{}",
        clean(pipeline, 40),
        clean(node, 120),
        &key[..12.min(key.len())]
    )
}

/// The sbatch arguments for a node: its own `resources:` first, then the
/// profile's defaults; the script path last.
pub fn sbatch_args(
    r: &Resources,
    profile: &SlurmProfile,
    name: &str,
    work: &Path,
    script: &Path,
) -> Result<Vec<String>, String> {
    let mut a = vec![
        "--parsable".to_string(),
        format!("--job-name={name}"),
        format!("--output={}", work.join("slurm.out").display()),
        format!("--error={}", work.join("slurm.err").display()),
        format!("--chdir={}", work.display()),
        format!("--cpus-per-task={}", r.cpus),
    ];
    if let Some(t) = r.time.as_ref().or(profile.time.as_ref()) {
        a.push(format!(
            "--time={}",
            slurm_time(t).map_err(|e| format!("time: {e}"))?
        ));
    }
    if let Some(m) = r.mem.as_ref().or(profile.mem.as_ref()) {
        a.push(format!(
            "--mem={}",
            slurm_mem(m).map_err(|e| format!("mem: {e}"))?
        ));
    }
    if r.nodes > 1 {
        // One batch task on the first node; the torch engine starts one
        // `torchrun` per node with `srun` (see `torch::launch`).
        a.push(format!("--nodes={}", r.nodes));
        a.push("--ntasks-per-node=1".to_string());
    }
    if r.gpus > 0 {
        a.push(format!("--gres=gpu:{}", r.gpus));
    }
    let pick = |own: &Option<String>, default: &Option<String>| own.clone().or(default.clone());
    if let Some(p) = pick(&r.partition, &profile.partition) {
        a.push(format!("--partition={p}"));
    }
    if let Some(p) = pick(&r.account, &profile.account) {
        a.push(format!("--account={p}"));
    }
    if let Some(p) = pick(&r.qos, &profile.qos) {
        a.push(format!("--qos={p}"));
    }
    a.extend(profile.extra.iter().flatten().cloned());
    a.extend(r.extra.iter().cloned());
    a.push(script.display().to_string());
    Ok(a)
}

/// Whether a Slurm client error means "busy or unreachable, try again".
pub fn is_transient(stderr: &str) -> bool {
    const SIGNS: &[&str] = &[
        "Socket timed out",
        "Unable to contact slurm controller",
        "temporarily unable",
        "Resource temporarily unavailable",
        "Connection refused",
        "Transport endpoint",
        "try again",
        "Zero Bytes were transmitted",
        "Slurm backup controller in standby mode",
    ];
    SIGNS.iter().any(|s| stderr.contains(s))
}

/// Runs a Slurm client command, retrying transient failures with backoff
/// (1, 2, 4, 8, 16, 30 s). Returns stdout, or stderr's text on failure.
pub fn run_retrying(
    program: &str,
    args: &[String],
    give_up: &dyn Fn() -> bool,
) -> Result<String, String> {
    let mut delay = Duration::from_secs(1);
    let mut tries = 0;
    loop {
        let out = Command::new(program)
            .args(args)
            .output()
            .map_err(|e| format!("cannot run `{program}`: {e}"))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        tries += 1;
        if !is_transient(&err) || tries > 6 || give_up() {
            return Err(if err.is_empty() {
                format!("`{program}` exited with {}", out.status)
            } else {
                err
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Parses `sbatch --parsable` output: `JOBID` or `JOBID;CLUSTER`.
pub fn parse_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit() || b == b'_')).then(|| id.to_string())
}

/// One `squeue -h -t all -j ID,... -o '%i|%T|%r'` call: id -> (state, reason).
/// IDs Slurm does not know are absent from the map.
pub fn squeue(ids: &[String]) -> Result<Vec<(String, String, String)>, String> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-j", &ids.join(","), "-o", "%i|%T|%r"])
        .output()
        .map_err(|e| format!("cannot run `squeue`: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // Alone, an unknown id is an error; in a list it is silently left out.
        if stderr.contains("Invalid job id") {
            return Ok(Vec::new());
        }
        return Err(stderr.trim().to_string());
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&out.stdout)))
}

/// Parses `%i|%T|%r` lines.
pub fn parse_squeue(text: &str) -> Vec<(String, String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut p = l.trim().splitn(3, '|');
            let id = p.next()?.trim().to_string();
            let state = p.next()?.trim().to_string();
            let reason = p.next().unwrap_or("").trim().to_string();
            (!id.is_empty()).then_some((id, state, reason))
        })
        .collect()
}

/// Jobs named `name` (any state): (id, state), newest last.
pub fn jobs_named(name: &str) -> Result<Vec<(String, String)>, String> {
    let out = Command::new("squeue")
        .args(["-h", "-t", "all", "-n", name, "-o", "%i|%T|%r"])
        .output()
        .map_err(|e| format!("cannot run `squeue`: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    let mut v: Vec<(String, String)> = parse_squeue(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .map(|(i, s, _)| (i, s))
        .collect();
    v.sort_by_key(|(i, _)| i.parse::<u64>().unwrap_or(0));
    Ok(v)
}

/// `scancel ID...` (errors ignored: the job may have ended meanwhile).
pub fn scancel(ids: &[String]) {
    if ids.is_empty() {
        return;
    }
    let _ = Command::new("scancel")
        .args(ids)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_from_resources_and_profile() {
        let r = Resources {
            cpus: 4,
            gpus: 1,
            time: Some("2h".into()),
            partition: Some("gpu".into()),
            extra: vec!["--exclusive".into()],
            ..Resources::default()
        };
        let p = SlurmProfile {
            partition: Some("cpu".into()),
            account: Some("lab".into()),
            mem: Some("8G".into()),
            extra: Some(vec!["--constraint=a100".into()]),
            ..SlurmProfile::default()
        };
        let a = sbatch_args(&r, &p, "n", Path::new("/w"), Path::new("/w/job.sh")).expect("args");
        for want in [
            "--cpus-per-task=4",
            "--time=0-02:00:00",
            "--mem=8G",
            "--gres=gpu:1",
            "--partition=gpu",
            "--account=lab",
            "--constraint=a100",
            "--exclusive",
            "--chdir=/w",
        ] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        assert_eq!(a.last().map(String::as_str), Some("/w/job.sh"));
    }

    #[test]
    fn several_nodes_get_one_task_each() {
        let r = Resources {
            gpus: 8,
            nodes: 2,
            ..Resources::default()
        };
        let p = SlurmProfile::default();
        let a = sbatch_args(&r, &p, "n", Path::new("/w"), Path::new("/w/job.sh")).expect("args");
        for want in ["--nodes=2", "--ntasks-per-node=1", "--gres=gpu:8"] {
            assert!(a.iter().any(|x| x == want), "{want} missing from {a:?}");
        }
        let one = sbatch_args(
            &Resources::default(),
            &p,
            "n",
            Path::new("/w"),
            Path::new("/w/job.sh"),
        )
        .expect("args");
        assert!(!one.iter().any(|x| x.starts_with("--nodes")), "{one:?}");
    }

    #[test]
    fn parsing() {
        assert_eq!(parse_job_id("123;cluster\n").as_deref(), Some("123"));
        assert_eq!(parse_job_id("oops"), None);
        let v = parse_squeue("12|RUNNING|None\n13|PENDING|Resources\n");
        assert_eq!(v[1], ("13".into(), "PENDING".into(), "Resources".into()));
        assert!(is_transient(
            "sbatch: error: Batch job submission failed: Socket timed out on send/recv operation"
        ));
        assert!(!is_transient(
            "sbatch: error: Batch job submission failed: Requested node configuration is not available"
        ));
        let n = job_name("mini", "train[size=s, seed=1]", "abcdef0123456789");
        assert_eq!(n, "repro:mini:train[size=s__seed=1]:abcdef012345");
    }
}
