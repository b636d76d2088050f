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
use crate::data::io::{JsonlWriter, bool_param, check_choice, numeric, str_param, write_json};
use crate::data::jsonl::{ChatFields, Shape, files_of, load_chat};
use crate::data::qa::{QaFields, load_qa, read_exclusions};
use crate::eval::io::{check_inputs, input_path};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// The `data.chat_jsonl` op.
pub struct DataChatJsonlOp;

/// The `data.qa_jsonl` op.
pub struct DataQaJsonlOp;

const FORMATS: &[&str] = &["auto", "messages", "sharegpt", "alpaca", "hc3"];

const CHAT_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "format",
        ty: ParamType::Str,
        required: false,
        semantic: true,
        doc: "auto (per line, by key), messages, sharegpt, alpaca or hc3 (default auto)",
    },
    ParamSpec {
        name: "fields",
        ty: ParamType::Map,
        required: false,
        semantic: true,
        doc: "key renames: messages, role, content, conversations, from, value, instruction, input, output, question, answers, id",
    },
    ParamSpec {
        name: "source",
        ty: ParamType::Str,
        required: false,
        semantic: true,
        doc: "the `source` written into each record and the id prefix when ids are absent (default jsonl)",
    },
    ParamSpec {
        name: "merge_consecutive",
        ty: ParamType::Bool,
        required: false,
        semantic: true,
        doc: "merge consecutive turns of one role (default true)",
    },
    ParamSpec {
        name: "dedup",
        ty: ParamType::Bool,
        required: false,
        semantic: true,
        doc: "drop exact duplicate conversations (default true)",
    },
    ParamSpec {
        name: "keep_non_chatgpt",
        ty: ParamType::Bool,
        required: false,
        semantic: true,
        doc: "keep bing/bard turns as assistant turns (default false: drop those conversations)",
    },
    ParamSpec {
        name: "drop_banners",
        ty: ParamType::Bool,
        required: false,
        semantic: true,
        doc: "drop system turns that are share-tool banners (default true)",
    },
];

const QA_PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "fields",
        ty: ParamType::Map,
        required: false,
        semantic: true,
        doc: "key renames: question (default question), answers (default answer), id (default id)",
    },
    ParamSpec {
        name: "source",
        ty: ParamType::Str,
        required: false,
        semantic: true,
        doc: "id prefix when ids are absent: <source>-<line> (default qa)",
    },
    ParamSpec {
        name: "dedup",
        ty: ParamType::Bool,
        required: false,
        semantic: true,
        doc: "drop repeats of an earlier question (normalized text; default true)",
    },
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
    fn name(&self) -> &'static str {
        "data.chat_jsonl"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Loads chat JSONL (input `data`, a file or directory) in the shapes messages \
         ({messages:[{role,content}]}), sharegpt ({conversations:[{from,value}]}), alpaca \
         ({instruction,input,output}) or hc3 ({question,chatgpt_answers}), keys renamable with \
         `fields`; cleans like data.sharegpt; outputs `out` (chats.jsonl) and `metrics`."
    }
    fn params(&self) -> &'static [ParamSpec] {
        CHAT_PARAMS
    }
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
        if let Err((_, m)) = self.check(ctx.params) {
            return Err(OpError::msg(m));
        }
        let fields = ChatFields::from_map(ctx.params.get("fields").and_then(Value::as_object))
            .map_err(OpError::msg)?;
        let shape = Shape::parse(str_param(ctx.params, "format", "auto"))
            .ok_or_else(|| OpError::msg("bad `format`"))?;
        let files = files_of(input_path(ctx, "data")?, "data")?;
        let mut w = JsonlWriter::create(&ctx.work_dir.join("out/chats.jsonl"))?;
        let mut write_err = None;
        let sum = load_chat(
            &files,
            shape,
            &fields,
            str_param(ctx.params, "source", "jsonl"),
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
    fn name(&self) -> &'static str {
        "data.qa_jsonl"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Loads QA JSONL ({question, answer: str|[str]}, NQ-open's shape; input `data`, a file or \
         directory; keys renamable with `fields`), dropping questions in the optional input \
         `exclude` (by normalized text: NFD, lowercase, no punctuation or articles, collapsed \
         whitespace), empty ones and repeats; outputs `out` (qa.jsonl: id, question, answers) and \
         `metrics`."
    }
    fn params(&self) -> &'static [ParamSpec] {
        QA_PARAMS
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        qa_fields(params)
            .map(|_| ())
            .map_err(|m| ("fields".into(), m))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        vec![
            OutputDecl {
                name: "out".into(),
                path: "qa.jsonl".into(),
                heavy: false,
            },
            OutputDecl {
                name: "metrics".into(),
                path: "metrics.json".into(),
                heavy: false,
            },
        ]
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
            str_param(ctx.params, "source", "qa"),
            &exclude,
            bool_param(ctx.params, "dedup", true),
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
