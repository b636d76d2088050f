//! The instruction-tuned HumanEval protocol: `prompts.jsonl` with a
//! `template` renders each task as one chat turn, and `eval.humaneval`
//! with `format: chat` extracts the code from the reply (first fenced
//! block; whole when it defines the entry point, else the body; no fence:
//! the reply as is). Extraction is checked by hand on fixed replies, then
//! end to end with a real `python3` on the five fixture problems under
//! `tests/data/humaneval/`.

mod common;

use common::OpRun;
use repro::op::{OpError, RunResult};
use repro::ops;
use repro::ops::eval_humaneval::extract::{chat_completion, defines, first_fence};
use repro::ops::eval_humaneval::{Problem, check_program, read_problems};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/humaneval")
        .join(name)
}

fn problems() -> Vec<Problem> {
    read_problems(&fixture("problems.jsonl"), "problems").unwrap()
}

fn problem(id: &str) -> Problem {
    problems().into_iter().find(|p| p.task_id == id).unwrap()
}

/// A chat reply with a fenced full function (imports of the prompt not
/// repeated: `List` comes from the prompt).
const FULL: &str = "Here is the function:\n\n```python\ndef filter_by_substring(strings: List[str], substring: str) -> List[str]:\n    return [s for s in strings if substring in s]\n```\n\nIt keeps the strings that contain the substring.";

/// A reply whose fenced block is only the body.
const BODY: &str = "Sure!\n```\n    return [s for s in strings if substring in s]\n```";

#[test]
fn first_fence_takes_the_first_block() {
    assert_eq!(
        first_fence(FULL),
        Some(
            "def filter_by_substring(strings: List[str], substring: str) -> List[str]:\n    return [s for s in strings if substring in s]\n"
        )
    );
    assert_eq!(
        first_fence(BODY),
        Some("    return [s for s in strings if substring in s]\n")
    );
    // Two fences: the first one.
    let two = "```python\nx = 1\n```\ntext\n```python\ny = 2\n```";
    assert_eq!(first_fence(two), Some("x = 1\n"));
    // Unclosed (cut off by max_new_tokens): to the end.
    assert_eq!(first_fence("```py\nx = 1\ny"), Some("x = 1\ny"));
    // No fence, or nothing after the fence line.
    assert_eq!(first_fence("    return x\n"), None);
    assert_eq!(first_fence("see ```python"), None);
}

#[test]
fn defines_matches_the_entry_point_only() {
    assert!(defines("def add(x, y):\n    return x + y", "add"));
    assert!(defines("import math\n\n    def  add (x):", "add"));
    assert!(!defines("def add_one(x):\n    return x + 1", "add"));
    assert!(!defines("    return add(x, y)", "add"));
    assert!(!defines("# def add(", "add"));
}

#[test]
fn chat_completion_by_hand() {
    let p = problem("HumanEval/7");
    // A fenced full function: a newline, then the block, after the prompt.
    let full = chat_completion(FULL, &p.entry_point);
    assert_eq!(
        full,
        "\ndef filter_by_substring(strings: List[str], substring: str) -> List[str]:\n    return [s for s in strings if substring in s]\n"
    );
    let program = check_program(&p, &full);
    // Imports preserved: the prompt (with `from typing import List`) comes first.
    assert!(
        program.starts_with("from typing import List\n"),
        "{program}"
    );
    assert!(program.contains(&format!("{}\ndef filter_by_substring", p.prompt)));
    // A fenced body: the block continues the prompt.
    assert_eq!(
        chat_completion(BODY, &p.entry_point),
        "    return [s for s in strings if substring in s]\n"
    );
    // No fence: the reply as is.
    let raw = "    return [s for s in strings if substring in s]\n";
    assert_eq!(chat_completion(raw, &p.entry_point), raw);
    // Two fences: only the first is used, even when the second defines the
    // entry point.
    let two = "```python\n    return []\n```\nor\n```python\ndef filter_by_substring(strings, substring):\n    return strings\n```";
    assert_eq!(chat_completion(two, &p.entry_point), "    return []\n");
}

/// Runs `eval.humaneval` in a fresh work dir.
fn run_op(params: Value, completions: &str) -> (Result<RunResult, OpError>, tempfile::TempDir) {
    OpRun::new("eval.humaneval")
        .params(params)
        .input("problems", fixture("problems.jsonl"))
        .input_text("completions", completions)
        .threads(2)
        .run()
        .into_parts()
}

fn results(dir: &tempfile::TempDir) -> Vec<Value> {
    std::fs::read_to_string(dir.path().join("out/results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn op_scores_chat_replies_with_extraction() {
    // HumanEval/0 (imports `List`): a fenced full function relying on the
    // prompt's import; /2: a fenced body; /7: a fenced full function
    // preceded by prose; /16: no fence, a raw body; /53: a wrong first
    // fence and a right second one (the first counts: fails).
    let has_close = "I would write:\n```python\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```";
    let rows = [
        ("HumanEval/0", has_close),
        ("HumanEval/2", "```python\n    return number % 1.0\n```"),
        ("HumanEval/7", FULL),
        ("HumanEval/16", "    return len(set(string.lower()))\n"),
        (
            "HumanEval/53",
            "```python\ndef add(x: int, y: int):\n    return x - y\n```\nOr:\n```python\ndef add(x: int, y: int):\n    return x + y\n```",
        ),
    ];
    let lines: String = rows
        .iter()
        .map(|(t, c)| format!("{}\n", json!({"id": t, "prediction": c})))
        .collect();
    let (res, dir) = run_op(json!({"format": "chat"}), &lines);
    let m = res.unwrap().metrics;
    assert_eq!(m["n_passed"], json!(4), "{m:?}");
    assert_eq!(m["pass@1"], json!(0.8));
    let r = results(&dir);
    let passed: Vec<bool> = r.iter().map(|x| x["passed"].as_bool().unwrap()).collect();
    assert_eq!(passed, [true, true, true, true, false]);
    // The reply is kept as given, the extracted code beside it.
    assert_eq!(r[2]["completion"], json!(FULL));
    assert!(
        r[2]["extracted"]
            .as_str()
            .unwrap()
            .starts_with("\ndef filter_by_substring")
    );

    // The same replies under the default (plain) protocol: only the raw
    // body passes, and no `extracted` field is written.
    let (res, dir) = run_op(json!({}), &lines);
    let m = res.unwrap().metrics;
    assert_eq!(m["n_passed"], json!(1), "{m:?}");
    assert!(results(&dir).iter().all(|x| x.get("extracted").is_none()));
}

#[test]
fn format_param_is_checked() {
    let op = ops::find("eval.humaneval").unwrap();
    let bad: Map<String, Value> = json!({"format": "markdown"}).as_object().cloned().unwrap();
    let (key, msg) = op.check(&bad).unwrap_err();
    assert_eq!(key, "format");
    assert!(msg.contains("plain") && msg.contains("chat"), "{msg}");
}

/// Runs `prompts.jsonl` on the fixture problems.
fn run_prompts(params: Value) -> Result<Vec<Value>, OpError> {
    let run = OpRun::new("prompts.jsonl")
        .params(params)
        .input("data", fixture("problems.jsonl"));
    run.compile().map_err(|(_, m)| OpError::msg(m))?;
    let ran = run.run();
    if ran.result.is_err() {
        return Err(ran.into_parts().0.unwrap_err());
    }
    Ok(ran.jsonl("prompts.jsonl"))
}

#[test]
fn prompts_template_renders_the_chat_turn() {
    let t = "Complete the following Python function. Return the whole function in a ```python code block.\n\n```python\n{text}```";
    let rows = run_prompts(json!({"id": "/task_id", "user": "/prompt", "template": t, "limit": 2}))
        .unwrap();
    assert_eq!(rows.len(), 2);
    let p = &problems()[0];
    assert_eq!(rows[0]["id"], json!(p.task_id));
    assert_eq!(
        rows[0]["prompt"].as_str().unwrap(),
        format!(
            "Complete the following Python function. Return the whole function in a ```python code block.\n\n```python\n{}```",
            p.prompt
        )
    );
    // Without a template: the field as is (unchanged behaviour).
    let rows = run_prompts(json!({"id": "/task_id", "text": "/prompt", "limit": 1})).unwrap();
    assert_eq!(rows[0]["text"], json!(p.prompt));
    // A template without the placeholder is refused.
    let e = run_prompts(json!({"user": "/prompt", "id": "/task_id", "template": "no slot"}))
        .unwrap_err();
    assert!(e.to_string().contains("{text}"), "{e}");
}
