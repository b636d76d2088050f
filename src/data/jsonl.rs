//! Generic JSONL loaders for chat data a user brings (normalized into
//! [`super::chat::ChatRecord`]s; QA data: [`super::qa`]), and the reader of
//! normalized chat files.
//!
//! Chat shapes, one JSON object per line (key names are the defaults of
//! [`ChatFields`]; each can be renamed):
//!
//! - `messages`: `{"messages": [{"role", "content"}, ...]}`;
//! - `sharegpt`: `{"conversations": [{"from", "value"}, ...]}` (ShareGPT as JSONL);
//! - `alpaca`: `{"instruction", "input"?, "output"}`: one user turn
//!   (instruction, then a blank line and the input when it is non-empty) and
//!   one assistant turn (output);
//! - `hc3`: `{"question", "chatgpt_answers": [..]}`: one conversation per
//!   answer (user question, assistant answer); ids get `_<k>` (0-based)
//!   when a line has several answers; `human_answers` are ignored (not
//!   ChatGPT). A line with no answer counts as an empty conversation.
//!
//! `auto` picks per line: `messages`, else `conversations`, else
//! `instruction`, else the question key; a line with none of them is an
//! error. Ids: the `id` key (string or integer) when present, else
//! `<source>-<line>`. Roles and cleaning as in [`super::chat`].

use super::DataError;
use super::chat::{ChatRecord, CleanConfig, CleanStats, Cleaner};
use serde_json::{Map, Value, json};
use std::io::BufRead;
use std::path::{Path, PathBuf};

/// Key names of the chat shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatFields {
    /// `messages` shape: the list key.
    pub messages: String,
    /// `messages` shape: the role key.
    pub role: String,
    /// `messages` shape: the content key.
    pub content: String,
    /// `sharegpt` shape: the list key.
    pub conversations: String,
    /// `sharegpt` shape: the role key.
    pub from: String,
    /// `sharegpt` shape: the text key.
    pub value: String,
    /// `alpaca` shape: the instruction key.
    pub instruction: String,
    /// `alpaca` shape: the optional input key.
    pub input: String,
    /// `alpaca` shape: the output key.
    pub output: String,
    /// `hc3` shape: the question key.
    pub question: String,
    /// `hc3` shape: the answers key.
    pub answers: String,
    /// The id key (all shapes).
    pub id: String,
}

impl Default for ChatFields {
    fn default() -> Self {
        let s = |x: &str| x.to_string();
        ChatFields {
            messages: s("messages"),
            role: s("role"),
            content: s("content"),
            conversations: s("conversations"),
            from: s("from"),
            value: s("value"),
            instruction: s("instruction"),
            input: s("input"),
            output: s("output"),
            question: s("question"),
            answers: s("chatgpt_answers"),
            id: s("id"),
        }
    }
}

impl ChatFields {
    /// Defaults overridden by a `{name: key}` mapping; unknown names and
    /// non-string keys are `Err(message)`.
    pub fn from_map(m: Option<&Map<String, Value>>) -> Result<Self, String> {
        let mut f = ChatFields::default();
        for (k, v) in m.into_iter().flatten() {
            let v = v
                .as_str()
                .ok_or_else(|| format!("`fields.{k}` must be a string"))?;
            let slot = match k.as_str() {
                "messages" => &mut f.messages,
                "role" => &mut f.role,
                "content" => &mut f.content,
                "conversations" => &mut f.conversations,
                "from" => &mut f.from,
                "value" => &mut f.value,
                "instruction" => &mut f.instruction,
                "input" => &mut f.input,
                "output" => &mut f.output,
                "question" => &mut f.question,
                "answers" => &mut f.answers,
                "id" => &mut f.id,
                _ => {
                    return Err(format!(
                        "unknown field `{k}` (known: messages, role, content, conversations, from, value, instruction, input, output, question, answers, id)"
                    ));
                }
            };
            *slot = v.to_string();
        }
        Ok(f)
    }
}

/// The chat shapes; `Auto` decides per line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Per line, by the keys present.
    Auto,
    /// `messages` list.
    Messages,
    /// `conversations` list of `from`/`value`.
    ShareGpt,
    /// `instruction`/`input`/`output`.
    Alpaca,
    /// `question`/`chatgpt_answers`.
    Hc3,
}

impl Shape {
    /// Parses a shape name (`auto`, `messages`, `sharegpt`, `alpaca`, `hc3`).
    pub fn parse(s: &str) -> Option<Shape> {
        Some(match s {
            "auto" => Shape::Auto,
            "messages" => Shape::Messages,
            "sharegpt" => Shape::ShareGpt,
            "alpaca" => Shape::Alpaca,
            "hc3" => Shape::Hc3,
            _ => return None,
        })
    }
}

/// The files of an input: the file itself, or a directory's regular files
/// sorted by relative path, each with a label for errors.
pub fn files_of(path: &Path, input: &str) -> Result<Vec<(String, PathBuf)>, DataError> {
    let label = format!("input `{input}`");
    let meta = std::fs::metadata(path).map_err(|e| DataError::file(&label, e.to_string()))?;
    if !meta.is_dir() {
        return Ok(vec![(label, path.to_path_buf())]);
    }
    let mut out = Vec::new();
    crate::cache::hash::walk(path, path, &mut |rel, abs, _| {
        out.push((format!("{label} file `{rel}`"), abs.to_path_buf()));
        Ok(())
    })
    .map_err(|e| DataError::file(&label, e.to_string()))?;
    out.sort();
    if out.is_empty() {
        return Err(DataError::file(&label, "the directory holds no file"));
    }
    Ok(out)
}

/// Calls `f(line_number, object)` for each non-blank line of a JSONL file.
pub fn each_object(
    file: &str,
    path: &Path,
    mut f: impl FnMut(usize, &Map<String, Value>) -> Result<(), DataError>,
) -> Result<usize, DataError> {
    let fh = std::fs::File::open(path).map_err(|e| DataError::file(file, e.to_string()))?;
    let mut r = std::io::BufReader::new(fh);
    let mut buf = String::new();
    let mut line = 0usize;
    let mut objects = 0usize;
    loop {
        buf.clear();
        line += 1;
        let n = r
            .read_line(&mut buf)
            .map_err(|e| DataError::at(file, line, e.to_string()))?;
        if n == 0 {
            return Ok(objects);
        }
        if buf.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&buf)
            .map_err(|e| DataError::at(file, line, format!("not valid JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| DataError::at(file, line, "not a JSON object"))?;
        objects += 1;
        f(line, obj)?;
    }
}

/// A string field; errors name the key.
pub(crate) fn str_of(
    obj: &Map<String, Value>,
    key: &str,
    file: &str,
    line: usize,
) -> Result<String, DataError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(DataError::key(file, line, key, "must be a string")),
        None => Err(DataError::key(file, line, key, "missing")),
    }
}

/// An id field (string or integer), or `<source>-<line>` when absent.
pub(crate) fn id_of(
    obj: &Map<String, Value>,
    key: &str,
    file: &str,
    line: usize,
    source: &str,
) -> Result<String, DataError> {
    match obj.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Some(_) => Err(DataError::key(
            file,
            line,
            key,
            "must be a string or integer",
        )),
        None => Ok(format!("{source}-{line}")),
    }
}

/// Turns of a list of `{role_key, content_key}` objects under `list_key`.
fn turns_of(
    obj: &Map<String, Value>,
    (list_key, role_key, content_key): (&str, &str, &str),
    file: &str,
    line: usize,
) -> Result<Vec<(String, String)>, DataError> {
    let list = match obj.get(list_key) {
        Some(Value::Array(a)) => a,
        _ => return Err(DataError::key(file, line, list_key, "must be a list")),
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let t = t.as_object().ok_or_else(|| {
            DataError::key(file, line, format!("{list_key}[{i}]"), "must be an object")
        })?;
        let get = |k: &str| match t.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(DataError::key(
                file,
                line,
                format!("{list_key}[{i}].{k}"),
                "must be a string",
            )),
        };
        out.push((get(role_key)?, get(content_key)?));
    }
    Ok(out)
}

/// One conversation of a line: id, (role, content) turns, and the role key
/// (for error messages; empty for shapes with fixed roles).
type Conv = (String, Vec<(String, String)>, String);

/// What a chat load read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChatSummary {
    /// Cleaning counts.
    pub stats: CleanStats,
    /// Non-blank lines read.
    pub lines_read: u64,
    /// Lines per shape (`messages`, `sharegpt`, `alpaca`, `hc3`).
    pub shapes: [u64; 4],
}

impl ChatSummary {
    /// Flat metrics: cleaning counts, `lines_read`, `shape_<name>`.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = self.stats.to_json();
        m.insert("lines_read".into(), json!(self.lines_read));
        for (name, n) in ["messages", "sharegpt", "alpaca", "hc3"]
            .iter()
            .zip(self.shapes)
        {
            m.insert(format!("shape_{name}"), json!(n));
        }
        m
    }
}

/// Loads chat JSONL `files` (from [`files_of`]), giving each kept record to
/// `sink` in input order.
pub fn load_chat(
    files: &[(String, PathBuf)],
    shape: Shape,
    fields: &ChatFields,
    source: &str,
    cfg: CleanConfig,
    mut sink: impl FnMut(ChatRecord) -> Result<(), DataError>,
) -> Result<ChatSummary, DataError> {
    let mut cleaner = Cleaner::new(cfg);
    let mut sum = ChatSummary::default();
    let f = fields;
    for (file, path) in files {
        each_object(file, path, |line, obj| {
            sum.lines_read += 1;
            let shape = match shape {
                Shape::Auto if obj.contains_key(&f.messages) => Shape::Messages,
                Shape::Auto if obj.contains_key(&f.conversations) => Shape::ShareGpt,
                Shape::Auto if obj.contains_key(&f.instruction) => Shape::Alpaca,
                Shape::Auto if obj.contains_key(&f.question) => Shape::Hc3,
                Shape::Auto => {
                    return Err(DataError::at(
                        file,
                        line,
                        format!(
                            "no key of a known chat shape (`{}`, `{}`, `{}` or `{}`)",
                            f.messages, f.conversations, f.instruction, f.question
                        ),
                    ));
                }
                s => s,
            };
            let id = id_of(obj, &f.id, file, line, source)?;
            let convs: Vec<Conv> = match shape {
                Shape::Messages => {
                    sum.shapes[0] += 1;
                    let t = turns_of(obj, (&f.messages, &f.role, &f.content), file, line)?;
                    vec![(id, t, f.role.clone())]
                }
                Shape::ShareGpt => {
                    sum.shapes[1] += 1;
                    let t = turns_of(obj, (&f.conversations, &f.from, &f.value), file, line)?;
                    vec![(id, t, f.from.clone())]
                }
                Shape::Alpaca => {
                    sum.shapes[2] += 1;
                    let mut user = str_of(obj, &f.instruction, file, line)?;
                    if let Some(inp) = obj.get(&f.input) {
                        let inp = inp.as_str().ok_or_else(|| {
                            DataError::key(file, line, &f.input, "must be a string")
                        })?;
                        if !inp.trim().is_empty() {
                            user.push_str("\n\n");
                            user.push_str(inp);
                        }
                    }
                    let out = str_of(obj, &f.output, file, line)?;
                    vec![(
                        id,
                        vec![("user".into(), user), ("assistant".into(), out)],
                        String::new(),
                    )]
                }
                Shape::Hc3 | Shape::Auto => {
                    sum.shapes[3] += 1;
                    let q = str_of(obj, &f.question, file, line)?;
                    let answers = match obj.get(&f.answers) {
                        Some(Value::Array(a)) => a
                            .iter()
                            .enumerate()
                            .map(|(i, x)| {
                                x.as_str().map(str::to_string).ok_or_else(|| {
                                    DataError::key(
                                        file,
                                        line,
                                        format!("{}[{i}]", f.answers),
                                        "must be a string",
                                    )
                                })
                            })
                            .collect::<Result<Vec<_>, _>>()?,
                        _ => {
                            return Err(DataError::key(
                                file,
                                line,
                                &f.answers,
                                "must be a list of strings",
                            ));
                        }
                    };
                    if answers.is_empty() {
                        vec![(id, Vec::new(), String::new())]
                    } else {
                        let many = answers.len() > 1;
                        answers
                            .into_iter()
                            .enumerate()
                            .map(|(k, a)| {
                                let cid = if many {
                                    format!("{id}_{k}")
                                } else {
                                    id.clone()
                                };
                                (
                                    cid,
                                    vec![("user".into(), q.clone()), ("assistant".into(), a)],
                                    String::new(),
                                )
                            })
                            .collect()
                    }
                }
            };
            for (cid, turns, role_key) in convs {
                match cleaner.push(&cid, source, turns) {
                    Ok(Some(r)) => sink(r)?,
                    Ok(None) => {}
                    Err(u) => {
                        let list = if role_key == f.role {
                            &f.messages
                        } else {
                            &f.conversations
                        };
                        return Err(DataError::key(
                            file,
                            line,
                            format!("{list}[{}].{role_key}", u.index),
                            format!(
                                "unknown role `{}` (known: human, user, gpt, chatgpt, assistant, system, bing, bard)",
                                u.role
                            ),
                        ));
                    }
                }
            }
            Ok(())
        })?;
    }
    sum.stats = cleaner.stats;
    Ok(sum)
}

/// One line of a normalized chat file (as written by the chat loaders).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatLine {
    /// 1-based line number.
    pub line: usize,
    /// The whole object, other fields included (written back unchanged).
    pub object: Map<String, Value>,
    /// Its `messages`, checked ([`super::chat::validate`]).
    pub messages: Vec<crate::model::tokenizer::Message>,
}

/// Reads a normalized chat JSONL file: every line needs a `messages` list
/// of `{role, content}` with roles user/assistant/system and an assistant turn.
pub fn read_normalized(file: &str, path: &Path) -> Result<Vec<ChatLine>, DataError> {
    let mut out = Vec::new();
    each_object(file, path, |line, obj| {
        let msgs = obj
            .get("messages")
            .ok_or_else(|| DataError::key(file, line, "messages", "missing"))?;
        let messages: Vec<crate::model::tokenizer::Message> = serde_json::from_value(msgs.clone())
            .map_err(|e| {
                DataError::key(
                    file,
                    line,
                    "messages",
                    format!("must be a list of {{role, content}}: {e}"),
                )
            })?;
        super::chat::validate(&messages).map_err(|(k, m)| DataError::key(file, line, k, m))?;
        out.push(ChatLine {
            line,
            object: obj.clone(),
            messages,
        });
        Ok(())
    })?;
    Ok(out)
}
