//! Reading the prompt and response files of the API ops.
//!
//! **Prompts** (`teacher.chat`'s and `eval.preference`'s `prompts` input),
//! one JSON object per line: `id` (string or integer) and either a text in
//! `prompt`, `instruction` or `question` (first present wins; one user
//! turn), or `messages` (`[{role, content}]` with roles `system`, `user`,
//! `assistant`, ending with a `user` turn). The Koala test set
//! (`{"id", "prompt"}`) and the chat records of the data ops both qualify.
//!
//! **Responses** (`eval.preference`'s `model` and `teacher` inputs): `id`
//! (or `prompt_id`) and the response text in the first present of
//! `response`, `prediction`, `output`, `completion`, `answer` (strings), or
//! `messages` (the content of its last `assistant` turn: the output of
//! `teacher.chat` and `data.nq_synthetic`). Other fields are ignored.
//!
//! Duplicate ids are an error; every error names the input, line and key.

use super::Message;
use crate::eval::io::{id_field, read_jsonl};
use crate::op::OpError;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::path::Path;

/// One prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// 1-based line.
    pub line: usize,
    /// Prompt id.
    pub id: String,
    /// The conversation to answer (ends with a user turn).
    pub messages: Vec<Message>,
}

impl Prompt {
    /// The last user turn's text (the instruction a judge sees).
    pub fn instruction(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "user")
            .map_or("", |m| m.content.as_str())
    }
}

fn err(input: &str, line: usize, msg: impl std::fmt::Display) -> OpError {
    OpError::msg(format!("input `{input}` line {line}: {msg}"))
}

/// The `messages` list of a record, checked: each a `{role, content}` object
/// with a known role and string content.
fn messages_of(v: &Value, input: &str, line: usize) -> Result<Vec<Message>, OpError> {
    let Some(items) = v.as_array() else {
        return Err(err(
            input,
            line,
            "`messages` must be a list of {role, content}",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let content = m.get("content").and_then(Value::as_str);
        match (role, content) {
            (Some(r @ ("system" | "user" | "assistant")), Some(c)) => out.push(Message {
                role: r.to_string(),
                content: c.to_string(),
            }),
            (Some(r), Some(_)) => {
                return Err(err(
                    input,
                    line,
                    format!("`messages[{i}].role` is `{r}`; expected system, user or assistant"),
                ));
            }
            _ => {
                return Err(err(
                    input,
                    line,
                    format!("`messages[{i}]` must be an object with string `role` and `content`"),
                ));
            }
        }
    }
    Ok(out)
}

fn text_of(
    obj: &Map<String, Value>,
    keys: &[&str],
    input: &str,
    line: usize,
) -> Result<Option<String>, OpError> {
    for k in keys {
        match obj.get(*k) {
            None | Some(Value::Null) => continue,
            Some(Value::String(s)) => return Ok(Some(s.clone())),
            Some(other) => {
                return Err(err(
                    input,
                    line,
                    format!(
                        "`{k}` must be a string, found {}",
                        crate::op::schema::type_of(other)
                    ),
                ));
            }
        }
    }
    Ok(None)
}

/// Reads prompts (see the module doc).
pub fn read_prompts(path: &Path, input: &str) -> Result<Vec<Prompt>, OpError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::new();
    for (line, obj) in read_jsonl(path, input)? {
        let id = id_field(&obj, "id", input, line)?;
        let messages =
            if let Some(t) = text_of(&obj, &["prompt", "instruction", "question"], input, line)? {
                vec![Message {
                    role: "user".into(),
                    content: t,
                }]
            } else if let Some(m) = obj.get("messages") {
                let m = messages_of(m, input, line)?;
                if m.last().is_none_or(|l| l.role != "user") {
                    return Err(err(input, line, "`messages` must end with a `user` turn"));
                }
                m
            } else {
                return Err(err(
                    input,
                    line,
                    "no prompt: expected `prompt`, `instruction`, `question` or `messages`",
                ));
            };
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(err(
                input,
                line,
                format!("duplicate id `{id}` (first on line {first})"),
            ));
        }
        out.push(Prompt { line, id, messages });
    }
    Ok(out)
}

/// Reads responses into id -> text (see the module doc).
pub fn read_responses(path: &Path, input: &str) -> Result<HashMap<String, String>, OpError> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = HashMap::new();
    for (line, obj) in read_jsonl(path, input)? {
        let key = if obj.contains_key("id") {
            "id"
        } else {
            "prompt_id"
        };
        let id = id_field(&obj, key, input, line)?;
        let text = match text_of(
            &obj,
            &["response", "prediction", "output", "completion", "answer"],
            input,
            line,
        )? {
            Some(t) => t,
            None => match obj.get("messages") {
                Some(m) => messages_of(m, input, line)?
                    .into_iter()
                    .rev()
                    .find(|m| m.role == "assistant")
                    .map(|m| m.content)
                    .ok_or_else(|| err(input, line, "`messages` has no `assistant` turn"))?,
                None => {
                    return Err(err(
                        input,
                        line,
                        "no response: expected `response`, `prediction`, `output`, `completion`, \
                         `answer` or `messages`",
                    ));
                }
            },
        };
        if let Some(first) = seen.insert(id.clone(), line) {
            return Err(err(
                input,
                line,
                format!("duplicate id `{id}` (first on line {first})"),
            ));
        }
        out.insert(id, text);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_and_responses_in_every_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(
            &p,
            "{\"id\": \"koala_0\", \"prompt\": \"Hi\"}\n\n{\"id\": 7, \"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"Q\"}]}\n",
        )
        .unwrap();
        let ps = read_prompts(&p, "prompts").unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].instruction(), "Hi");
        assert_eq!(
            (ps[1].id.as_str(), ps[1].line, ps[1].messages.len()),
            ("7", 3, 2)
        );
        std::fs::write(&p, "{\"id\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", \"content\": \"A\"}]}\n").unwrap();
        let e = read_prompts(&p, "prompts").unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("end with a `user`"),
            "{e}"
        );
        let rs = read_responses(&p, "model").unwrap();
        assert_eq!(rs["1"], "A");
        std::fs::write(
            &p,
            "{\"prompt_id\": \"a\", \"output\": \"x\"}\n{\"id\": \"a\", \"response\": \"y\"}\n",
        )
        .unwrap();
        let e = read_responses(&p, "model").unwrap_err().to_string();
        assert!(
            e.contains("line 2") && e.contains("duplicate id `a`"),
            "{e}"
        );
        std::fs::write(&p, "{\"id\": \"a\", \"response\": 3}\n").unwrap();
        let e = read_responses(&p, "model").unwrap_err().to_string();
        assert!(e.contains("`response` must be a string"), "{e}");
        std::fs::write(
            &p,
            "{\"id\": \"a\", \"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n",
        )
        .unwrap();
        let e = read_responses(&p, "model").unwrap_err().to_string();
        assert!(e.contains("messages[0].role"), "{e}");
    }
}
