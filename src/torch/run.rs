//! Running a launch script: in its own process group (so cancelling kills
//! every trainer process), its output in `trainer.log`, its progress read
//! from `metrics.jsonl`, its result from `result.json`.

use super::{TorchError, ferr};
use serde_json::Value;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What [`run`] needs.
pub struct Launch<'a> {
    /// The launch script.
    pub script: &'a Path,
    /// The run directory (holds `plan.json`; gets `trainer.log`,
    /// `metrics.jsonl`, `result.json`).
    pub dir: &'a Path,
    /// Extra environment (e.g. `CUDA_VISIBLE_DEVICES`, `OMP_NUM_THREADS`).
    pub env: &'a [(String, String)],
    /// Whether the run was cancelled.
    pub cancelled: &'a (dyn Fn() -> bool + Sync),
    /// Progress lines.
    pub status: &'a (dyn Fn(&str) + Sync),
    /// Steps in the run, for progress.
    pub steps: usize,
}

/// Runs the script to its end and returns `result.json`.
pub fn run(l: &Launch) -> Result<Value, TorchError> {
    let log_path = l.dir.join("trainer.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| ferr(&log_path, e))?;
    let log2 = log.try_clone().map_err(|e| ferr(&log_path, e))?;
    let mut child = Command::new("bash")
        .arg(l.script)
        .current_dir(l.dir)
        .envs(l.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(|e| ferr(l.script, e))?;
    let pid = child.id() as i32;
    let metrics = l.dir.join("metrics.jsonl");
    let mut seen = 0u64;
    let started = Instant::now();
    let status = loop {
        if (l.cancelled)() {
            kill_group(pid);
            let _ = child.wait();
            return Err(TorchError::Cancelled);
        }
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) => {}
            Err(e) => return Err(ferr(l.script, e)),
        }
        if let Some(line) = last_new_line(&metrics, &mut seen) {
            progress(l, &line, started);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        return Err(TorchError::Trainer {
            message: format!(
                "the torch trainer failed ({status}); its log is {}",
                log_path.display()
            ),
            stderr: crate::op::tail(&text, 6000),
        });
    }
    let rp = l.dir.join("result.json");
    let text = std::fs::read_to_string(&rp).map_err(|e| ferr(&rp, e))?;
    serde_json::from_str(&text).map_err(|e| ferr(&rp, e))
}

fn progress(l: &Launch, line: &str, started: Instant) {
    let Ok(v) = serde_json::from_str::<Value>(line) else {
        return;
    };
    let step = v["step"].as_u64().unwrap_or(0) as usize + 1;
    let loss = v["loss"].as_f64().unwrap_or(f64::NAN);
    let tps = v["tokens_per_s"].as_f64().unwrap_or(0.0);
    let secs = started.elapsed().as_secs_f64();
    let eta = secs / step as f64 * l.steps.saturating_sub(step) as f64;
    (l.status)(&format!(
        "torch step {step}/{}  loss {loss:.3}  {tps:.0} tok/s  eta {eta:.0}s",
        l.steps
    ));
}

/// The last complete line added to `path` since byte `seen`.
fn last_new_line(path: &Path, seen: &mut u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    if len <= *seen {
        return None;
    }
    f.seek(SeekFrom::Start(*seen)).ok()?;
    let mut last = None;
    let mut read = 0u64;
    for line in BufReader::new(f).split(b'\n') {
        let line = line.ok()?;
        if *seen + read + line.len() as u64 >= len {
            break; // no newline yet: incomplete
        }
        read += line.len() as u64 + 1;
        last = Some(String::from_utf8_lossy(&line).into_owned());
    }
    *seen += read;
    last
}

fn kill_group(pid: i32) {
    // SAFETY: kill(2) with a negative pid signals the process group we made.
    unsafe {
        libc::kill(-pid, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_secs(2));
    // SAFETY: as above.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_result_and_reports_progress() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("launch.sh");
        std::fs::write(
            &script,
            "echo '{\"step\": 0, \"loss\": 2.5, \"tokens_per_s\": 10}' >> metrics.jsonl\nsleep 0.5\necho '{\"losses\": [2.5]}' > result.json\n",
        )
        .unwrap();
        let lines = std::sync::Mutex::new(Vec::new());
        let r = run(&Launch {
            script: &script,
            dir: dir.path(),
            env: &[],
            cancelled: &|| false,
            status: &|s| lines.lock().unwrap().push(s.to_string()),
            steps: 1,
        })
        .unwrap();
        assert_eq!(r["losses"][0], 2.5);
        let lines = lines.into_inner().unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("torch step 1/1  loss 2.500")),
            "{lines:?}"
        );
    }

    #[test]
    fn a_failing_trainer_shows_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("launch.sh");
        std::fs::write(&script, "echo 'ModuleNotFoundError: torch' >&2\nexit 3\n").unwrap();
        let e = run(&Launch {
            script: &script,
            dir: dir.path(),
            env: &[],
            cancelled: &|| false,
            status: &|_| {},
            steps: 1,
        })
        .unwrap_err();
        match e {
            TorchError::Trainer { stderr, .. } => assert!(stderr.contains("ModuleNotFoundError")),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn cancelling_kills_the_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("launch.sh");
        std::fs::write(&script, "sleep 30 &\nwait\n").unwrap();
        let t0 = Instant::now();
        let e = run(&Launch {
            script: &script,
            dir: dir.path(),
            env: &[],
            cancelled: &|| t0.elapsed() > Duration::from_millis(300),
            status: &|_| {},
            steps: 1,
        })
        .unwrap_err();
        assert!(matches!(e, TorchError::Cancelled));
        assert!(t0.elapsed() < Duration::from_secs(10));
    }
}
