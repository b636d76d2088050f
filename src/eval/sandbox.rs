//! A sandbox for untrusted Python programs (model-generated code): one
//! `python3` child per program, in a fresh temporary directory, with limits.
//!
//! What every run gets, on any Linux machine:
//!
//! - its own session and process group (`setsid`); the whole group is
//!   killed with `SIGKILL` when the wall-clock limit passes and again when
//!   the program has exited (background children do not outlive it);
//! - rlimits: CPU seconds (`RLIMIT_CPU`, SIGXCPU then SIGKILL one second
//!   later), address space (`RLIMIT_AS`: a huge allocation raises
//!   `MemoryError` instead of exhausting the host), file size
//!   (`RLIMIT_FSIZE`), processes (`RLIMIT_NPROC`, see below), open files, no
//!   core dumps;
//! - standard output and error read continuously and capped (only the last
//!   [`Limits::output_bytes`] of each are kept; infinite output costs CPU
//!   until the time limit, never memory or disk); standard input is
//!   `/dev/null`;
//! - a cleared environment: `PATH`, `HOME` and `TMPDIR` (both the sample's
//!   home), `LANG=C.UTF-8`, `PYTHONHASHSEED=0` (set iteration order is then
//!   the same on every run), `PYTHONDONTWRITEBYTECODE=1`,
//!   `PYTHONIOENCODING=utf-8`; the working directory is the home;
//! - the temporary directory removed afterwards.
//!
//! Where the machine allows it (probed once, see [`isolation`]), each run
//! also gets mount, network, PID and IPC namespaces (inside a user namespace
//! when the caller is not root): no network (only a loopback device, down);
//! the whole file system read-only and nosuid, except a size-limited tmpfs
//! home ([`Limits::scratch_bytes`]; files written there vanish with the
//! run); the program is PID 1 of its PID namespace, so every process it
//! started dies with it, even one that left the process group with
//! `setsid`. After `exec` the program holds no capability, so it cannot undo
//! any of this (mounts copied into a nested namespace stay locked read-only).
//!
//! `RLIMIT_NPROC` never applies to uid 0. When the caller is root, samples
//! therefore run as `nobody` (uid/gid 65534), and with namespaces inside a
//! user namespace of their own, which makes the kernel count processes per
//! sample rather than per uid across concurrent samples. An interpreter
//! under a directory `nobody` cannot enter (pyenv under `/root`, mode 0700)
//! is made reachable in the sample's mount namespace by a tmpfs over that
//! directory holding only a bind mount of the interpreter's prefix. When the
//! caller is not root, the limit counts the caller's own processes in the
//! sample's user namespace (per sample) or, without namespaces, all of the
//! caller's processes. Without namespaces and as root with an unreachable
//! interpreter, no rlimit can limit the process count: the parent then
//! counts the processes of the sample's session every 10 ms and kills the
//! group above the limit ([`Isolation::nproc_counted`]; a fork bomb can
//! overshoot between two counts).
//!
//! Without namespaces there is no network isolation, no file-system
//! protection beyond the uid's permissions (a root caller's samples then run
//! as `nobody` when the interpreter is reachable, otherwise as root and can
//! write anywhere root can), and a process that calls `setsid` can escape the
//! group kill. The result says which mode ran
//! ([`Outcome::network_isolated`], [`isolation`]). Setting
//! `REPRO_SANDBOX_NAMESPACES=0` skips the namespace mode (to test the
//! fallbacks on a machine that has namespaces).

mod child;
mod python;
mod supervise;

pub use python::{Isolation, Python, SANDBOX_GID, SANDBOX_UID, isolation, python};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use supervise::{kill_group, supervise};

/// Resource limits of one run.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit from spawn (interpreter start-up included).
    pub wall: Duration,
    /// CPU seconds of the program (`RLIMIT_CPU`, per process).
    pub cpu_s: u64,
    /// Address space per process, bytes (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// Processes (`RLIMIT_NPROC`), counting the sandbox's own waiting
    /// process when namespaces are used.
    pub max_procs: u64,
    /// Largest file the program may write, bytes (`RLIMIT_FSIZE`).
    pub file_size_bytes: u64,
    /// Size of the tmpfs home (namespaces only).
    pub scratch_bytes: u64,
    /// Bytes kept of each of stdout and stderr (the tail).
    pub output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            wall: Duration::from_secs(3),
            cpu_s: 4,
            memory_bytes: 1 << 30,
            max_procs: 8,
            file_size_bytes: 16 << 20,
            scratch_bytes: 64 << 20,
            output_bytes: 16 << 10,
        }
    }
}

/// Why the sandbox could not run a program (the program's own failures are
/// an [`Outcome`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No working `python3`.
    #[error("{0}")]
    Python(String),
    /// Preparing or starting the child failed.
    #[error("sandbox: {0}")]
    Setup(String),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exit status 0.
    Passed,
    /// A non-zero status or a signal (CPU limit included).
    Failed,
    /// Killed at the wall-clock limit.
    TimedOut,
}

/// The result of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Outcome {
    /// Passed, failed or timed out.
    pub verdict: Verdict,
    /// Exit status when the program exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Killed at the wall-clock limit.
    pub timed_out: bool,
    /// Last bytes of standard output (lossy UTF-8).
    pub stdout: String,
    /// Last bytes of standard error (lossy UTF-8).
    pub stderr: String,
    /// Total bytes written to standard output.
    pub stdout_bytes: u64,
    /// Total bytes written to standard error.
    pub stderr_bytes: u64,
    /// Wall-clock seconds from spawn to exit.
    pub wall_s: f64,
    /// CPU seconds (user + system) of the program and the children it
    /// waited for.
    pub cpu_s: f64,
    /// The run had no network.
    pub network_isolated: bool,
    /// Killed for exceeding the process limit by counting (only when
    /// RLIMIT_NPROC cannot work, see [`Isolation::nproc_counted`]).
    pub process_limit_hit: bool,
    /// Process id of the child (also its session and process group id).
    pub pid: i32,
}

/// One program to run: files written into the sample's directory (read-only
/// for the program), the one to run, and its arguments. The program's
/// working directory is `home/` below that directory.
#[derive(Debug, Clone)]
pub struct Job<'a> {
    /// `(file name, contents)`; names are plain file names.
    pub files: &'a [(&'a str, &'a [u8])],
    /// The file to run with `python3`.
    pub script: &'a str,
    /// Arguments after the script.
    pub args: &'a [&'a str],
    /// Limits.
    pub limits: &'a Limits,
}

/// Runs `job` under the strongest isolation this machine allows.
pub fn run(job: &Job) -> Result<Outcome, SandboxError> {
    let (iso, unblock) = python::isolation_full()?;
    run_with(job, iso, unblock.clone())
}

/// Runs a trivial program under one mode (for [`isolation`]).
fn probe_run(iso: &Isolation, unblock: Option<child::Unblock>) -> Result<(), String> {
    let limits = Limits {
        wall: Duration::from_secs(20),
        ..Limits::default()
    };
    let job = Job {
        files: &[("probe.py", b"import sys, json\nprint('ok')\n")],
        script: "probe.py",
        args: &[],
        limits: &limits,
    };
    let out = run_with(&job, iso, unblock).map_err(|e| e.to_string())?;
    if out.verdict == Verdict::Passed && out.stdout.trim() == "ok" {
        Ok(())
    } else {
        Err(format!(
            "probe program: {:?}, status {:?}, signal {:?}: {}",
            out.verdict,
            out.exit_code,
            out.signal,
            out.stderr.trim()
        ))
    }
}

fn setup_err(what: &str, e: impl std::fmt::Display) -> SandboxError {
    SandboxError::Setup(format!("{what}: {e}"))
}

fn run_with(
    job: &Job,
    iso: &Isolation,
    unblock: Option<child::Unblock>,
) -> Result<Outcome, SandboxError> {
    let py = python()?;
    let dir = tempfile::Builder::new()
        .prefix("repro-sandbox-")
        .tempdir()
        .map_err(|e| setup_err("temporary directory", e))?;
    let root = dir.path();
    let perm = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
            .map_err(|e| setup_err(&p.display().to_string(), e))
    };
    perm(root, 0o755)?;
    for (name, data) in job.files {
        if name.contains('/') || name.is_empty() || *name == "home" {
            return Err(SandboxError::Setup(format!("bad file name `{name}`")));
        }
        let p = root.join(name);
        std::fs::write(&p, data).map_err(|e| setup_err(&p.display().to_string(), e))?;
        perm(&p, 0o644)?;
    }
    let home = root.join("home");
    std::fs::create_dir(&home).map_err(|e| setup_err("home", e))?;
    if let Some(uid) = iso.run_as_uid {
        std::os::unix::fs::chown(&home, Some(uid), Some(SANDBOX_GID))
            .map_err(|e| setup_err("chown home", e))?;
    }
    let plan = python::plan(job.limits, &home, iso, unblock)?;

    let mut cmd = Command::new(&py.exe);
    cmd.arg("-s")
        .arg(root.join(job.script))
        .args(job.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("TMPDIR", &home)
        .env("LANG", "C.UTF-8")
        .env("PYTHONHASHSEED", "0")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONIOENCODING", "utf-8")
        .current_dir(&home)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: `child::setup` only makes raw system calls on the prepared
    // plan (no allocation, no locks), as `pre_exec` requires.
    unsafe {
        cmd.pre_exec(move || child::setup(&plan));
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| setup_err(&format!("starting {}", py.exe.display()), e))?;
    let pid = child.id() as libc::pid_t;
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        kill_group(pid);
        return Err(SandboxError::Setup("no pipes".into()));
    };
    let count = iso.nproc_counted.then_some(job.limits.max_procs.max(1));
    let mut res = supervise(pid, out, err, job.limits, count, start);
    res.network_isolated = iso.network_isolated;
    drop(child);
    remove_dir(dir);
    Ok(res)
}

/// Removes the sample's directory; when the program made parts of it
/// unremovable (a directory without write permission), restores
/// permissions first.
fn remove_dir(dir: tempfile::TempDir) {
    let path = dir.path().to_path_buf();
    if dir.close().is_err() {
        fn open_up(p: &Path) {
            if let Ok(meta) = std::fs::symlink_metadata(p)
                && meta.is_dir()
            {
                let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700));
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        open_up(&e.path());
                    }
                }
            }
        }
        open_up(&path);
        let _ = std::fs::remove_dir_all(&path);
    }
}
