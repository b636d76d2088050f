//! Reading and writing the miniature's JSONL files.
//!
//! Every error names the input (as the op sees it, e.g. `predictions`) and,
//! for content errors, the 1-based line number. Blank lines are skipped;
//! fields a reader does not use are ignored. Ids may be JSON strings or
//! integers (an integer id `7` is read as `"7"`).

use crate::op::OpError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The person attributes of `people.jsonl`, in file order.
pub const ATTRIBUTES: [&str; 4] = ["birth_city", "university", "major", "employer"];

/// One JSON object of a JSONL file with its 1-based line number.
pub type Row = (usize, Map<String, Value>);

use crate::op::io::line_error as err;
pub use crate::op::io::{check_inputs, input as input_path, write_json, write_jsonl};
pub use crate::op::param::check_choice;

/// Reads a JSONL file: one JSON object per non-blank line.
pub fn read_jsonl(path: &Path, input: &str) -> Result<Vec<Row>, OpError> {
    let mut rows = Vec::new();
    for (n, v) in crate::op::io::read_jsonl_numbered::<Value>(path, input)? {
        match v {
            Value::Object(m) => rows.push((n, m)),
            other => {
                return Err(err(
                    input,
                    n,
                    format!(
                        "expected a JSON object, found {}",
                        crate::op::schema::type_of(&other)
                    ),
                ));
            }
        }
    }
    Ok(rows)
}

/// A required string field.
pub fn str_field(
    obj: &Map<String, Value>,
    key: &str,
    input: &str,
    line: usize,
) -> Result<String, OpError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(err(
            input,
            line,
            format!(
                "`{key}` must be a string, found {}",
                crate::op::schema::type_of(other)
            ),
        )),
        None => Err(err(input, line, format!("missing field `{key}`"))),
    }
}

/// An optional string field (absent or null gives `None`).
pub fn opt_str_field(
    obj: &Map<String, Value>,
    key: &str,
    input: &str,
    line: usize,
) -> Result<Option<String>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => str_field(obj, key, input, line).map(Some),
    }
}

/// A required id: a string, or an integer read as its decimal text.
pub fn id_field(
    obj: &Map<String, Value>,
    key: &str,
    input: &str,
    line: usize,
) -> Result<String, OpError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(n.to_string()),
        Some(other) => Err(err(
            input,
            line,
            format!(
                "`{key}` must be a string or an integer, found {}",
                crate::op::schema::type_of(other)
            ),
        )),
        None => Err(err(input, line, format!("missing field `{key}`"))),
    }
}

/// An optional integer field (absent or null gives `None`).
pub fn opt_int_field(
    obj: &Map<String, Value>,
    key: &str,
    input: &str,
    line: usize,
) -> Result<Option<i64>, OpError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.is_i64() => Ok(n.as_i64()),
        Some(other) => Err(err(
            input,
            line,
            format!(
                "`{key}` must be an integer, found {}",
                crate::op::schema::type_of(other)
            ),
        )),
    }
}

/// A required list of strings.
pub fn str_list_field(
    obj: &Map<String, Value>,
    key: &str,
    input: &str,
    line: usize,
) -> Result<Vec<String>, OpError> {
    let bad = || err(input, line, format!("`{key}` must be a list of strings"));
    match obj.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
        None => Err(err(input, line, format!("missing field `{key}`"))),
    }
}

/// One line of `questions.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Question {
    /// 1-based line in its file.
    pub line: usize,
    /// Question id, e.g. `q0-birth_city`.
    pub id: String,
    /// The person asked about, when given.
    pub person: Option<i64>,
    /// `P`, `A` or `B`, when given.
    pub half: Option<String>,
    /// The attribute asked about, when given.
    pub attribute: Option<String>,
    /// The full name of the person asked about, when given.
    pub name: Option<String>,
    /// The question text.
    pub question: String,
    /// Accepted answers.
    pub answers: Vec<String>,
}

/// Reads questions (`id`, `question`, `answers` required; `person`, `half`,
/// `attribute`, `name` optional). Duplicate ids are an error.
pub fn read_questions(path: &Path, input: &str) -> Result<Vec<Question>, OpError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(path, input)? {
        let q = Question {
            line,
            id: id_field(&obj, "id", input, line)?,
            person: opt_int_field(&obj, "person", input, line)?,
            half: opt_str_field(&obj, "half", input, line)?,
            attribute: opt_str_field(&obj, "attribute", input, line)?,
            name: opt_str_field(&obj, "name", input, line)?,
            question: str_field(&obj, "question", input, line)?,
            answers: str_list_field(&obj, "answers", input, line)?,
        };
        if let Some(first) = seen.insert(q.id.clone(), line) {
            return Err(err(
                input,
                line,
                format!("duplicate id `{}` (first on line {first})", q.id),
            ));
        }
        out.push(q);
    }
    Ok(out)
}

/// The questions of `half` (`A`, `B`, or `all` for every question), in file
/// order. A question without `half` is an error unless `half` is `all`.
pub fn select_half(
    questions: Vec<Question>,
    half: &str,
    input: &str,
) -> Result<Vec<Question>, OpError> {
    if half == "all" {
        return Ok(questions);
    }
    let mut out = Vec::new();
    for q in questions {
        match q.half.as_deref() {
            Some(h) if h == half => out.push(q),
            Some(_) => {}
            None => {
                return Err(err(
                    input,
                    q.line,
                    format!("missing field `half` (needed to select half {half})"),
                ));
            }
        }
    }
    Ok(out)
}

/// One line of `people.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    /// Person id.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// `A` or `B`, when given.
    pub half: Option<String>,
    /// Attribute name (one of [`ATTRIBUTES`]) -> value.
    pub attributes: BTreeMap<String, String>,
}

/// Reads people: `id` (integer), `name` and every attribute of
/// [`ATTRIBUTES`] are required. Duplicate ids are an error.
pub fn read_people(path: &Path, input: &str) -> Result<Vec<Person>, OpError> {
    let mut seen: HashMap<i64, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(path, input)? {
        let id = opt_int_field(&obj, "id", input, line)?
            .ok_or_else(|| err(input, line, "missing field `id`"))?;
        let mut attributes = BTreeMap::new();
        for a in ATTRIBUTES {
            attributes.insert(a.to_string(), str_field(&obj, a, input, line)?);
        }
        if let Some(first) = seen.insert(id, line) {
            return Err(err(
                input,
                line,
                format!("duplicate id {id} (first on line {first})"),
            ));
        }
        out.push(Person {
            id,
            name: str_field(&obj, "name", input, line)?,
            half: opt_str_field(&obj, "half", input, line)?,
            attributes,
        });
    }
    Ok(out)
}

/// One line of `heldout.jsonl`.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    /// 1-based line in its file.
    pub line: usize,
    /// Prompt id, e.g. `h0`.
    pub id: String,
    /// `general` or `bio`.
    pub kind: String,
    /// For `bio` prompts, the person the prompt is about.
    pub person: Option<i64>,
    /// The instruction.
    pub prompt: String,
    /// The teacher's answer.
    pub reference: String,
}

/// Reads held-out prompts (`id`, `kind`, `prompt`, `reference` required;
/// `person` required when `kind` is `bio`). Duplicate ids are an error.
pub fn read_heldout(path: &Path, input: &str) -> Result<Vec<HeldOut>, OpError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(path, input)? {
        let h = HeldOut {
            line,
            id: id_field(&obj, "id", input, line)?,
            kind: str_field(&obj, "kind", input, line)?,
            person: opt_int_field(&obj, "person", input, line)?,
            prompt: str_field(&obj, "prompt", input, line)?,
            reference: str_field(&obj, "reference", input, line)?,
        };
        if h.kind == "bio" && h.person.is_none() {
            return Err(err(input, line, "a `bio` prompt needs an integer `person`"));
        }
        if let Some(first) = seen.insert(h.id.clone(), line) {
            return Err(err(
                input,
                line,
                format!("duplicate id `{}` (first on line {first})", h.id),
            ));
        }
        out.push(h);
    }
    Ok(out)
}

/// Reads predictions (`id`, `prediction` required, other fields ignored)
/// into id -> prediction. Duplicate ids are an error.
pub fn read_predictions(path: &Path, input: &str) -> Result<HashMap<String, String>, OpError> {
    let mut lines: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    for (line, obj) in read_jsonl(path, input)? {
        let id = id_field(&obj, "id", input, line)?;
        let p = str_field(&obj, "prediction", input, line)?;
        if let Some(first) = lines.insert(id.clone(), line) {
            return Err(err(
                input,
                line,
                format!("duplicate id `{id}` (first on line {first})"),
            ));
        }
        out.insert(id, p);
    }
    Ok(out)
}

/// A non-negative integer param, `None` when absent.
pub fn uint_param(params: &Map<String, Value>, name: &str) -> Result<Option<u64>, OpError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            OpError::msg(format!(
                "param `{name}` must be a non-negative integer, found {v}"
            ))
        }),
    }
}

/// Checks that an integer param, when given, is non-negative.
pub fn check_uint(params: &Map<String, Value>, name: &str) -> Result<(), (String, String)> {
    match params.get(name) {
        Some(v) if v.as_u64().is_none() => Err((
            name.to_string(),
            format!("`{name}` must be a non-negative integer, found {v}"),
        )),
        _ => Ok(()),
    }
}

/// A finite float as JSON; NaN and infinities become `null`.
pub fn num(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_input_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, "{\"id\": \"a\", \"prediction\": \"x\"}\n\n{oops\n").unwrap();
        let e = read_predictions(&p, "predictions").unwrap_err().to_string();
        assert!(e.contains("input `predictions` line 3"), "{e}");
        std::fs::write(
            &p,
            "{\"id\": 1, \"prediction\": \"x\"}\n{\"id\": \"1\", \"prediction\": \"y\"}\n",
        )
        .unwrap();
        let e = read_predictions(&p, "predictions").unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("duplicate"), "{e}");
        std::fs::write(&p, "[1]\n").unwrap();
        let e = read_predictions(&p, "predictions").unwrap_err().to_string();
        assert!(e.contains("line 1: expected a JSON object"), "{e}");
        std::fs::write(
            &p,
            "{\"id\": \"q\", \"question\": \"?\", \"answers\": [1]}\n",
        )
        .unwrap();
        let e = read_questions(&p, "questions").unwrap_err().to_string();
        assert!(e.contains("`answers` must be a list of strings"), "{e}");
    }
}
