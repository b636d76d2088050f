//! Reading `eval.humaneval`'s `completions` input: one sample per line,
//! grouped by problem.

use super::Problem;
use crate::eval::io::{read_jsonl, str_field};
use crate::op::OpError;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// One sample: its problem index, index within the task, line, code.
pub(super) struct Sample {
    /// Index of the problem in `problems`.
    pub problem: usize,
    /// Index of the sample within its task.
    pub index: usize,
    /// Line in `completions`.
    pub line: usize,
    /// The code as given.
    pub completion: String,
}

/// Reads completions and groups them by problem (file order within a task).
pub(super) fn read_completions(
    path: &std::path::Path,
    input: &str,
    problems: &[Problem],
    known: &[String],
) -> Result<Vec<Sample>, OpError> {
    let index: HashMap<&str, usize> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| (p.task_id.as_str(), i))
        .collect();
    let mut per_task = vec![0usize; problems.len()];
    let mut out = Vec::new();
    let pick = |obj: &Map<String, Value>, a: &str, b: &str, line: usize| {
        let key = if obj.contains_key(a) { a } else { b };
        str_field(obj, key, input, line).map_err(|_| {
            OpError::msg(format!(
                "input `{input}` ({}) line {line}: needs a string `{a}` (or `{b}`)",
                path.display()
            ))
        })
    };
    for (line, obj) in read_jsonl(path, input)? {
        let task = pick(&obj, "task_id", "id", line)?;
        let completion = pick(&obj, "completion", "prediction", line)?;
        let Some(&problem) = index.get(task.as_str()) else {
            if known.contains(&task) {
                // A problem past `limit`: not scored.
                continue;
            }
            return Err(OpError::msg(format!(
                "input `{input}` ({}) line {line}: unknown task_id `{task}` (not in input `problems`)",
                path.display()
            )));
        };
        out.push(Sample {
            problem,
            index: per_task[problem],
            line,
            completion,
        });
        per_task[problem] += 1;
    }
    out.sort_by_key(|s| (s.problem, s.index));
    Ok(out)
}
