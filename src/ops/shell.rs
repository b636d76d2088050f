//! `shell`: runs a bash command that reads `in/` and writes `out/`.
//!
//! Contract (pipelines written outside this project rely on it):
//! - `cmd` runs as `bash -c 'set -euo pipefail; <cmd>'` in a fresh, empty work
//!   directory. Each input is at `in/<input name>`: a file, or a directory for
//!   directory artifacts; a list input (`node[*]` or a YAML list) is a
//!   directory `in/<name>/` with one entry per instance, named by its
//!   coordinates (`i=3`, `size=m,data=broad`) or, for explicit lists, by
//!   instance id. Inputs are copies: writing to them cannot touch the cache.
//! - The command writes its outputs under `out/`. `outs` maps output names to
//!   paths under `out/` (`{out: words.txt}`); a plain string means
//!   `{out: PATH}`; `{ckpt: {path: model.bin, heavy: true}}` sends an output
//!   to the blob store instead of the committed cache.
//! - A non-zero exit or a declared output that is missing fails the node; its
//!   stderr tail is shown and nothing enters the cache.
//! - stdout and stderr are captured into the record (last 64 KiB each).
//! - `cmd`, `outs` and `env` are semantic (in the key); `metrics` (the name of a
//!   JSON output whose numbers are copied into the record) and `timeout`
//!   (seconds) are not.
//! - The environment is inherited, plus `REPRO_NODE` (instance id),
//!   `REPRO_THREADS` (granted CPU slots) and, for GPU nodes,
//!   `CUDA_VISIBLE_DEVICES`.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `shell` op.
pub struct ShellOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "cmd",
        ParamType::Str,
        "bash command; runs with set -euo pipefail in the work directory",
    ),
    ParamSpec::optional(
        "outs",
        ParamType::StrOrMap,
        "output name -> path under out/ ({path, heavy} for blobs); a string means {out: PATH}",
    ),
    ParamSpec::optional(
        "env",
        ParamType::Map,
        "extra environment variables (strings)",
    ),
    ParamSpec::optional(
        "metrics",
        ParamType::Str,
        "name of a JSON output whose numbers are stored in the record",
    )
    .not_semantic(),
    ParamSpec::optional(
        "timeout",
        ParamType::Number,
        "seconds before the command is killed",
    )
    .not_semantic(),
];

/// Bytes of stdout/stderr kept in the record.
pub const LOG_TAIL: usize = 64 * 1024;

impl Op for ShellOp {
    crate::op_identity! { "shell", 1, PARAMS, "Runs `cmd` under bash in a fresh directory with inputs at in/<name>; declared `outs` under out/ become the node's outputs." }

    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        parse_outs(params)?;
        if let Some(Value::Object(env)) = params.get("env") {
            for (k, v) in env {
                if !v.is_string() && !v.is_number() && !v.is_boolean() {
                    return Err(("env".into(), format!("env.{k} must be a string")));
                }
            }
        }
        if let Some(Value::String(m)) = params.get("metrics")
            && !parse_outs(params)?.iter().any(|o| &o.name == m)
        {
            return Err((
                "metrics".into(),
                format!("`metrics: {m}` names no declared output"),
            ));
        }
        if let Some(t) = params.get("timeout").and_then(Value::as_f64)
            && t <= 0.0
        {
            return Err(("timeout".into(), "timeout must be positive".into()));
        }
        Ok(())
    }

    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl> {
        parse_outs(params).unwrap_or_default()
    }

    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let cmd = ctx
            .params
            .get("cmd")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let stdout_path = ctx.work_dir.join(".stdout");
        let stderr_path = ctx.work_dir.join(".stderr");
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(format!("set -euo pipefail\n{cmd}"))
            .current_dir(ctx.work_dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path)?)
            .stderr(std::fs::File::create(&stderr_path)?)
            .env("REPRO_NODE", ctx.node)
            .env("REPRO_THREADS", ctx.threads.to_string())
            .process_group(0);
        for (k, v) in ctx.env {
            command.env(k, v);
        }
        if let Some(Value::Object(env)) = ctx.params.get("env") {
            for (k, v) in env {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                command.env(k, v);
            }
        }
        let timeout = ctx
            .params
            .get("timeout")
            .and_then(Value::as_f64)
            .map(Duration::from_secs_f64);
        let (status, rss) = run_child(command, ctx, timeout)?;
        let stdout = read_tail(&stdout_path);
        let stderr = read_tail(&stderr_path);
        match status {
            ChildEnd::Exited(0) => {}
            ChildEnd::Exited(code) => {
                return Err(OpError::Failed {
                    message: format!("command exited with status {code}"),
                    stderr,
                });
            }
            ChildEnd::Signal(sig) => {
                return Err(OpError::Failed {
                    message: format!("command killed by signal {sig}"),
                    stderr,
                });
            }
            ChildEnd::TimedOut(t) => {
                return Err(OpError::Failed {
                    message: format!("command timed out after {:.1}s", t.as_secs_f64()),
                    stderr,
                });
            }
        }
        let outs = parse_outs(ctx.params).unwrap_or_default();
        for o in &outs {
            if !ctx.work_dir.join("out").join(&o.path).exists() {
                return Err(OpError::Failed {
                    message: format!(
                        "declared output `{}` (out/{}) was not written",
                        o.name, o.path
                    ),
                    stderr,
                });
            }
        }
        let mut metrics = Map::new();
        if let Some(m) = ctx.params.get("metrics").and_then(Value::as_str)
            && let Some(o) = outs.iter().find(|o| o.name == m)
        {
            let path = ctx.work_dir.join("out").join(&o.path);
            let text = std::fs::read_to_string(&path)?;
            let v: Value = serde_json::from_str(&text).map_err(|e| {
                OpError::msg(format!(
                    "metrics output `{m}` (out/{}) is not JSON: {e}",
                    o.path
                ))
            })?;
            flatten_numbers("", &v, &mut metrics);
        }
        Ok(RunResult {
            stdout,
            stderr,
            metrics,
            peak_rss_kib: Some(rss),
            ..RunResult::default()
        })
    }
}

/// Copies every number (and boolean) of a JSON value into `out` under a dotted path.
pub fn flatten_numbers(prefix: &str, v: &Value, out: &mut Map<String, Value>) {
    match v {
        Value::Number(_) | Value::Bool(_) => {
            out.insert(
                if prefix.is_empty() {
                    "value".into()
                } else {
                    prefix.to_string()
                },
                v.clone(),
            );
        }
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_numbers(&p, x, out);
            }
        }
        _ => {}
    }
}

fn read_tail(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    crate::op::tail(&String::from_utf8_lossy(&bytes), LOG_TAIL)
}

fn parse_outs(params: &Map<String, Value>) -> Result<Vec<OutputDecl>, (String, String)> {
    let bad = |m: String| ("outs".to_string(), m);
    let mut outs = Vec::new();
    match params.get("outs") {
        None => {}
        Some(Value::String(p)) => outs.push(OutputDecl {
            name: "out".into(),
            path: p.clone(),
            heavy: false,
        }),
        Some(Value::Object(m)) => {
            for (name, v) in m {
                if !crate::spec::refs::is_ident(name) {
                    return Err(bad(format!("output name `{name}` is not an identifier")));
                }
                let (path, heavy) = match v {
                    Value::String(p) => (p.clone(), false),
                    Value::Object(o) => {
                        for k in o.keys() {
                            if k != "path" && k != "heavy" {
                                return Err(bad(format!(
                                    "outs.{name}: unknown key `{k}` (allowed: path, heavy)"
                                )));
                            }
                        }
                        let p = o
                            .get("path")
                            .and_then(Value::as_str)
                            .ok_or_else(|| bad(format!("outs.{name}.path must be a string")))?;
                        let h = match o.get("heavy") {
                            None => false,
                            Some(Value::Bool(b)) => *b,
                            Some(_) => {
                                return Err(bad(format!(
                                    "outs.{name}.heavy must be true or false"
                                )));
                            }
                        };
                        (p.to_string(), h)
                    }
                    _ => {
                        return Err(bad(format!(
                            "outs.{name} must be a path or {{path, heavy}}"
                        )));
                    }
                };
                outs.push(OutputDecl {
                    name: name.clone(),
                    path,
                    heavy,
                });
            }
        }
        Some(_) => return Err(bad("outs must be a path or a mapping".into())),
    }
    for o in &outs {
        let p = std::path::Path::new(&o.path);
        if o.path.is_empty()
            || p.is_absolute()
            || p.components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(bad(format!(
                "outs.{}: `{}` must be a relative path under out/ without `..`",
                o.name, o.path
            )));
        }
    }
    Ok(outs)
}

enum ChildEnd {
    Exited(i32),
    Signal(i32),
    TimedOut(Duration),
}

/// Waits for a child with `wait4`, returning its status and peak RSS (KiB).
fn wait_child(pid: i32) -> std::io::Result<(i32, u64)> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it for our own child.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            return Ok((status, usage.ru_maxrss.max(0) as u64));
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Runs a child in its own process group; kills the whole group on cancel or timeout.
fn run_child(
    mut command: Command,
    ctx: &RunContext,
    timeout: Option<Duration>,
) -> Result<(ChildEnd, u64), OpError> {
    let child = command
        .spawn()
        .map_err(|e| OpError::msg(format!("cannot start bash: {e}")))?;
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(wait_child(pid));
        drop(child);
    });
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(res) => {
                let (status, rss) = res?;
                // Reap anything the command left running in its group.
                kill_group(pid, libc::SIGKILL);
                let end = if libc::WIFEXITED(status) {
                    ChildEnd::Exited(libc::WEXITSTATUS(status))
                } else if libc::WIFSIGNALED(status) {
                    ChildEnd::Signal(libc::WTERMSIG(status))
                } else {
                    ChildEnd::Exited(-1)
                };
                return Ok((end, rss));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(OpError::msg("lost track of the child process"));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let timed_out = timeout.is_some_and(|t| start.elapsed() > t);
                if ctx.cancel.is_cancelled() || timed_out {
                    kill_group(pid, libc::SIGTERM);
                    if rx.recv_timeout(Duration::from_secs(2)).is_err() {
                        kill_group(pid, libc::SIGKILL);
                        let _ = rx.recv_timeout(Duration::from_secs(5));
                    }
                    kill_group(pid, libc::SIGKILL);
                    if timed_out && !ctx.cancel.is_cancelled() {
                        return Ok((ChildEnd::TimedOut(start.elapsed()), 0));
                    }
                    return Err(OpError::Cancelled);
                }
            }
        }
    }
}

fn kill_group(pgid: i32, sig: i32) {
    // SAFETY: killpg only sends a signal; a stale group id yields ESRCH.
    unsafe {
        libc::killpg(pgid, sig);
    }
}
