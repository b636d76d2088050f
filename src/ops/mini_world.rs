//! `mini.world`: the synthetic world of the CPU miniature (see
//! [`crate::mini::world`]): a population, its pretraining corpus and one
//! question per person and attribute.
//!
//! Outputs (all light):
//! - `people` (`people.jsonl`): one object per line, sorted by id:
//!   `{"id","name","half","birth_city","university","major","employer"}`,
//!   `half` one of `P` (public), `A`, `B` (the private halves).
//! - `corpus` (`corpus.jsonl`): one `{"text"}` per document, shuffled:
//!   `exposures` biographies per person, `qa_exposures` question-answer
//!   pages per public person and `general` prose documents.
//! - `questions` (`questions.jsonl`): sorted by (person, attribute order
//!   birth_city, university, major, employer):
//!   `{"id":"q<person>-<attribute>","person","name","half","attribute","question","answers":[value]}`.
//!
//! Metrics: `people`, `documents`, `corpus_chars` (bytes of the documents'
//! text), `corpus_words`, `questions`.

use crate::mini::{self, world};
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `mini.world` op.
pub struct MiniWorldOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::optional(
        "seed",
        ParamType::Int,
        "seed of every random draw (default 0)",
    ),
    ParamSpec::optional(
        "public",
        ParamType::Int,
        "public people (biographies and question-answer pages), 0 to 2000 (default 100)",
    ),
    ParamSpec::optional(
        "private",
        ParamType::Int,
        "people in each private half A and B (biographies only), 2 to 2000 (default 100)",
    ),
    ParamSpec::optional(
        "exposures",
        ParamType::Int,
        "biographies per person, each rendered afresh, 1 to 1000 (default 100)",
    ),
    ParamSpec::optional(
        "qa_exposures",
        ParamType::Int,
        "question-answer pages per public person, 0 to 1000 (default 20)",
    ),
    ParamSpec::optional(
        "general",
        ParamType::Int,
        "general prose documents in the corpus (default 2000)",
    ),
];

impl Op for MiniWorldOp {
    // 2: public people with question-answer pages, private halves A
    //    and B, every biography rendered afresh; corpus.jsonl.
    crate::op_identity! { "mini.world", 2, PARAMS, "Synthetic world of the CPU miniature: people with four attributes, public (P) or in the private halves A and B (`people`); a pretraining corpus (`corpus`, JSON lines `{text}`) of freshly rendered full-name biographies, question-answer pages about public people and general prose; one question per person and attribute (`questions`)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        world::WorldConfig::from_params(params).map(|_| ())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[
            ("people", "people.jsonl"),
            ("corpus", "corpus.jsonl"),
            ("questions", "questions.jsonl"),
        ])
    }
    fn takes_inputs(&self) -> bool {
        false
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let cfg = world::WorldConfig::from_params(ctx.params).map_err(|(_, m)| OpError::msg(m))?;
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let w = world::generate(&cfg);
        if ctx.cancel.is_cancelled() {
            return Err(OpError::Cancelled);
        }
        let out = ctx.work_dir.join("out");
        mini::write_jsonl(&out.join("people.jsonl"), &w.people)?;
        let docs: Vec<Value> = w.corpus.iter().map(|d| json!({ "text": d })).collect();
        mini::write_jsonl(&out.join("corpus.jsonl"), &docs)?;
        mini::write_jsonl(&out.join("questions.jsonl"), &w.questions)?;
        let chars: usize = w.corpus.iter().map(String::len).sum();
        let words: usize = w.corpus.iter().map(|d| mini::word_count(d)).sum();
        let mut metrics = Map::new();
        metrics.insert("people".into(), w.people.len().into());
        metrics.insert("documents".into(), w.corpus.len().into());
        metrics.insert("corpus_chars".into(), chars.into());
        metrics.insert("corpus_words".into(), words.into());
        metrics.insert("questions".into(), w.questions.len().into());
        Ok(RunResult {
            metrics,
            ..RunResult::default()
        })
    }
}
