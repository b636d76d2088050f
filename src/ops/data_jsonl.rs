//! `data.chat_jsonl` and `data.qa_jsonl`: generic JSONL loaders for chat and
//! QA data a user brings (HC3, Alpaca-style sets, NQ-open-style question
//! files). Input `data` is a JSONL file or a directory of them (read in
//! sorted path order). Shapes, key renaming and filters:
//! [`crate::data::jsonl`]; chat cleaning: [`crate::data::chat`].
//!
//! `data.chat_jsonl` params: `format` (`auto` (default), `messages`,
//! `sharegpt`, `alpaca`, `hc3`), `fields` (a mapping renaming keys, e.g.
//! `{answers: chatgpt_answers, id: id}`), `source` (default `jsonl`), and the
//! cleaning params of `data.sharegpt` (`merge_consecutive`, `dedup`,
//! `keep_non_chatgpt`, `drop_banners`). Outputs `out` (chats.jsonl) and `metrics`
//! (metrics.json: the cleaning counts, `lines_read`, `shape_<name>`).
//!
//! `data.qa_jsonl`: optional input `exclude` (a QA JSONL file or directory
//! whose questions must never appear, e.g. the 3,610 NQ-open test
//! questions); params `fields` (`question`, `answers`, `id`), `source`
//! (default `qa`; ids are `<source>-<line>` when the id key is absent),
//! `dedup` (default true). Outputs `out` (qa.jsonl: `{"id", "question",
//! "answers"}`, input order) and `metrics` (`lines_read`, `excluded`,
//! `duplicates_dropped`, `empty_dropped`, `without_answers`, `kept`,
//! `exclusion_set`).

use super::data_sharegpt::{chat_outputs, clean_config};
use crate::data::io::{JsonlWriter, check_choice, numeric, write_json};
use crate::data::jsonl::{ChatFields, Shape, files_of, load_chat};
use crate::data::qa::{QaFields, load_qa, read_exclusions};
use crate::eval::io::{check_inputs, input_path};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The `data.chat_jsonl` op.
pub struct DataChatJsonlOp;

/// The `data.qa_jsonl` op.
pub struct DataQaJsonlOp;

const FORMATS: &[&str] = &["auto", "messages", "sharegpt", "alpaca", "hc3"];

const CHAT_PARAMS: &[ParamSpec] = &[
    ParamSpec::str(
        "format",
        "auto",
        "auto (per line, by key), messages, sharegpt, alpaca or hc3",
    ),
    ParamSpec::optional(
        "fields",
        ParamType::Map,
        "key renames: messages, role, content, conversations, from, value, instruction, input, output, question, answers, id",
    ),
    ParamSpec::str(
        "source",
        "jsonl",
        "the `source` written into each record and the id prefix when ids are absent",
    ),
    ParamSpec::bool(
        "merge_consecutive",
        true,
        "merge consecutive turns of one role",
    ),
    ParamSpec::bool("dedup", true, "drop exact duplicate conversations"),
    ParamSpec::bool(
        "keep_non_chatgpt",
        false,
        "keep bing/bard turns as assistant turns (default false: drop those conversations)",
    ),
    ParamSpec::bool(
        "drop_banners",
        true,
        "drop system turns that are share-tool banners",
    ),
];

const QA_PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "fields",
        ParamType::Map,
        "key renames: question (default question), answers (default answer), id (default id)",
    ),
    ParamSpec::str(
        "source",
        "qa",
        "id prefix when ids are absent: <source>-<line>",
    ),
    ParamSpec::bool(
        "dedup",
        true,
        "drop repeats of an earlier question (normalized text)",
    ),
];

fn qa_fields(params: &Map<String, Value>) -> Result<QaFields, String> {
    let mut f = QaFields::default();
    if let Some(m) = params.get("fields").and_then(Value::as_object) {
        for (k, v) in m {
            let v = v
                .as_str()
                .ok_or_else(|| format!("`fields.{k}` must be a string"))?;
            match k.as_str() {
                "question" => f.question = v.into(),
                "answers" => f.answers = v.into(),
                "id" => f.id = v.into(),
                _ => {
                    return Err(format!(
                        "unknown field `{k}` (known: question, answers, id)"
                    ));
                }
            }
        }
    }
    Ok(f)
}

impl Op for DataChatJsonlOp {
    crate::op_identity! { "data.chat_jsonl", 1, CHAT_PARAMS, "Loads chat JSONL (input `data`, a file or directory) in the shapes messages ({messages:[{role,content}]}), sharegpt ({conversations:[{from,value}]}), alpaca ({instruction,input,output}) or hc3 ({question,chatgpt_answers}), keys renamable with `fields`; cleans like data.sharegpt; outputs `out` (chats.jsonl) and `metrics`." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        check_choice(params, "format", FORMATS)?;
        ChatFields::from_map(params.get("fields").and_then(Value::as_object))
            .map(|_| ())
            .map_err(|m| ("fields".into(), m))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        chat_outputs()
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["data"], &[])?;
        let fields = ChatFields::from_map(ctx.params.get("fields").and_then(Value::as_object))
            .map_err(OpError::msg)?;
        let shape = Shape::parse(param::str(CHAT_PARAMS, ctx.params, "format"))
            .ok_or_else(|| OpError::msg("bad `format`"))?;
        let files = files_of(input_path(ctx, "data")?, "data")?;
        let mut w = JsonlWriter::create(&ctx.work_dir.join("out/chats.jsonl"))?;
        let mut write_err = None;
        let sum = load_chat(
            &files,
            shape,
            &fields,
            param::str(CHAT_PARAMS, ctx.params, "source"),
            clean_config(ctx.params),
            |rec| {
                w.write(&rec).map_err(|e| {
                    write_err = Some(e);
                    crate::data::DataError::file("output `out`", "write failed")
                })
            },
        );
        if let Some(e) = write_err {
            return Err(e);
        }
        let sum = sum?;
        w.finish()?;
        let m = sum.to_json();
        write_json(&ctx.work_dir.join("out/metrics.json"), &m)?;
        Ok(RunResult {
            metrics: numeric(&m),
            ..RunResult::default()
        })
    }
}

impl Op for DataQaJsonlOp {
    crate::op_identity! { "data.qa_jsonl", 1, QA_PARAMS, "Loads QA JSONL ({question, answer: str|[str]}, NQ-open's shape; input `data`, a file or directory; keys renamable with `fields`), dropping questions in the optional input `exclude` (by normalized text: NFD, lowercase, no punctuation or articles, collapsed whitespace), empty ones and repeats; outputs `out` (qa.jsonl: id, question, answers) and `metrics`." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        qa_fields(params)
            .map(|_| ())
            .map_err(|m| ("fields".into(), m))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "qa.jsonl"), ("metrics", "metrics.json")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["data"], &["exclude"])?;
        let fields = qa_fields(ctx.params).map_err(OpError::msg)?;
        let files = files_of(input_path(ctx, "data")?, "data")?;
        let exclude = match ctx.inputs.get("exclude") {
            Some(p) => read_exclusions(&files_of(p, "exclude")?, &fields.question)?,
            None => HashSet::new(),
        };
        let mut w = JsonlWriter::create(&ctx.work_dir.join("out/qa.jsonl"))?;
        let mut write_err = None;
        let st = load_qa(
            &files,
            &fields,
            param::str(QA_PARAMS, ctx.params, "source"),
            &exclude,
            param::bool(QA_PARAMS, ctx.params, "dedup"),
            |rec| {
                w.write(&rec).map_err(|e| {
                    write_err = Some(e);
                    crate::data::DataError::file("output `out`", "write failed")
                })
            },
        );
        if let Some(e) = write_err {
            return Err(e);
        }
        let st = st?;
        w.finish()?;
        let m = match serde_json::to_value(&st) {
            Ok(Value::Object(m)) => m,
            _ => return Err(OpError::msg("metrics did not serialize to an object")),
        };
        write_json(&ctx.work_dir.join("out/metrics.json"), &m)?;
        Ok(RunResult {
            metrics: numeric(&m),
            ..RunResult::default()
        })
    }
}
