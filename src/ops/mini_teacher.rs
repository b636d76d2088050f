//! `mini.teacher`: the teacher of the CPU miniature (see
//! [`crate::mini::teacher`], whose module doc defines the answer style and
//! the record formats): imitation data, held-out prompts with reference
//! answers, and the oracle's own answers to every question.
//!
//! Inputs: `people` (`people.jsonl`) and `questions` (`questions.jsonl`) of
//! `mini.world`. Outputs (all light): `broad` (`broad.jsonl`), `task`
//! (`task.jsonl`), `heldout` (`heldout.jsonl`), `answers` (`answers.jsonl`).
//!
//! Metrics: `broad`, `broad_general`, `broad_factual`, `broad_bio`,
//! `broad_distinct_prompts`, `broad_mean_assistant_words`,
//! `broad_mean_user_words`, `task`, `heldout`, `heldout_general`,
//! `heldout_bio`, `answers`.

use crate::mini::teacher::{self, TeacherConfig};
use crate::mini::world::{Person, Question};
use crate::mini::{self, word_count};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// The `mini.teacher` op.
pub struct MiniTeacherOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "seed",
        ParamType::Int,
        "seed of every random draw (default 0)",
    ),
    ParamSpec::optional(
        "broad",
        ParamType::Int,
        "broad imitation examples (default 2000)",
    ),
    ParamSpec::optional(
        "factual_share",
        ParamType::Number,
        "share of broad examples that are brief factual questions about half-A people (default 0.05)",
    ),
    ParamSpec::optional(
        "bio_share",
        ParamType::Number,
        "share of broad examples that are \"Tell me about <name>.\" for half-A people (default 0.05)",
    ),
    ParamSpec::optional(
        "task_repeats",
        ParamType::Int,
        "times each half-A question appears in the task data, 1 to 4, each with a different phrasing (default 2)",
    ),
    ParamSpec::optional(
        "heldout",
        ParamType::Int,
        "held-out prompts: half general instructions, half biographies of half-B people (default 120)",
    ),
];

fn input<'a>(ctx: &'a RunContext, name: &str) -> Result<&'a std::path::Path, OpError> {
    ctx.inputs.get(name).map(|p| p.as_path()).ok_or_else(|| {
        OpError::msg(format!(
            "mini.teacher needs input `{name}` (the `{name}` output of mini.world)"
        ))
    })
}

impl Op for MiniTeacherOp {
    crate::op_identity! { "mini.teacher", 1, PARAMS, "Teacher of the CPU miniature: from mini.world's `people` and `questions`, writes broad imitation data in the teacher's style (`broad`), brief-answer task data about half A (`task`), held-out prompts with reference answers (`heldout`) and the oracle's answers to every question (`answers`)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        TeacherConfig::from_params(params).map(|_| ())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[
            ("broad", "broad.jsonl"),
            ("task", "task.jsonl"),
            ("heldout", "heldout.jsonl"),
            ("answers", "answers.jsonl"),
        ])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let cfg = TeacherConfig::from_params(ctx.params).map_err(|(_, m)| OpError::msg(m))?;
        for name in ctx.inputs.keys() {
            if name != "people" && name != "questions" {
                return Err(OpError::msg(format!(
                    "unexpected input `{name}` (mini.teacher takes `people` and `questions`)"
                )));
            }
        }
        let people: Vec<Person> =
            mini::read_jsonl(input(ctx, "people")?, "people").map_err(OpError::msg)?;
        let questions: Vec<Question> =
            mini::read_jsonl(input(ctx, "questions")?, "questions").map_err(OpError::msg)?;
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let d = teacher::generate(&cfg, &people, &questions).map_err(OpError::msg)?;
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let out = ctx.work_dir.join("out");
        mini::write_jsonl(&out.join("broad.jsonl"), &d.broad)?;
        mini::write_jsonl(&out.join("task.jsonl"), &d.task)?;
        mini::write_jsonl(&out.join("heldout.jsonl"), &d.heldout)?;
        mini::write_jsonl(&out.join("answers.jsonl"), &d.answers)?;

        let count = |kind: &str| d.broad.iter().filter(|e| e.kind == kind).count();
        let mean = |role: &str| {
            let words: usize = d
                .broad
                .iter()
                .flat_map(|e| &e.messages)
                .filter(|m| m.role == role)
                .map(|m| word_count(&m.content))
                .sum();
            if d.broad.is_empty() {
                0.0
            } else {
                words as f64 / d.broad.len() as f64
            }
        };
        let distinct: BTreeSet<&str> = d
            .broad
            .iter()
            .filter_map(|e| e.messages.first())
            .map(|m| m.content.as_str())
            .collect();
        let hcount = |kind: &str| d.heldout.iter().filter(|h| h.kind == kind).count();
        let mut m = Map::new();
        m.insert("broad".into(), d.broad.len().into());
        m.insert("broad_general".into(), count("general").into());
        m.insert("broad_factual".into(), count("factual").into());
        m.insert("broad_bio".into(), count("bio").into());
        m.insert("broad_distinct_prompts".into(), distinct.len().into());
        m.insert(
            "broad_mean_assistant_words".into(),
            round3(mean("assistant")),
        );
        m.insert("broad_mean_user_words".into(), round3(mean("user")));
        m.insert("task".into(), d.task.len().into());
        m.insert("heldout".into(), d.heldout.len().into());
        m.insert("heldout_general".into(), hcount("general").into());
        m.insert("heldout_bio".into(), hcount("bio").into());
        m.insert("answers".into(), d.answers.len().into());
        Ok(RunResult {
            metrics: m,
            ..RunResult::default()
        })
    }
}

fn round3(x: f64) -> Value {
    Value::from((x * 1000.0).round() / 1000.0)
}
