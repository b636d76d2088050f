//! `mini.world`: the synthetic world of the CPU miniature (see
//! [`crate::mini::world`]): a population, its pretraining corpus and one
//! question per person and attribute.
//!
//! Outputs (all light):
//! - `people` (`people.jsonl`): one object per line, sorted by id:
//!   `{"id","name","half","birth_city","university","major","employer"}`.
//! - `corpus` (`corpus.txt`): one ASCII document per line, shuffled:
//!   `phrasings` biographies per person and `general` prose documents.
//! - `questions` (`questions.jsonl`): sorted by (person, attribute order
//!   birth_city, university, major, employer):
//!   `{"id":"q<person>-<attribute>","person","name","half","attribute","question","answers":[value]}`.
//!
//! Metrics: `people`, `documents`, `corpus_chars` (bytes of `corpus.txt`,
//! newlines included), `corpus_words`, `questions`.

use super::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::mini::{self, world};
use serde_json::{Map, Value};

/// The `mini.world` op.
pub struct MiniWorldOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec {
        name: "seed",
        ty: ParamType::Int,
        required: false,
        semantic: true,
        doc: "seed of every random draw (default 0)",
    },
    ParamSpec {
        name: "people",
        ty: ParamType::Int,
        required: false,
        semantic: true,
        doc: "population size, even, 4 to 5000 (default 200)",
    },
    ParamSpec {
        name: "phrasings",
        ty: ParamType::Int,
        required: false,
        semantic: true,
        doc: "biographies per person in the corpus, 1 to 100 (default 5)",
    },
    ParamSpec {
        name: "general",
        ty: ParamType::Int,
        required: false,
        semantic: true,
        doc: "general prose documents in the corpus (default 600)",
    },
];

impl Op for MiniWorldOp {
    fn name(&self) -> &'static str {
        "mini.world"
    }
    fn version(&self) -> u32 {
        1
    }
    fn doc(&self) -> &'static str {
        "Synthetic world of the CPU miniature: people with four attributes split into halves A and B (`people`), a pretraining corpus of permuted full-name biographies and general prose (`corpus`), and one question per person and attribute (`questions`)."
    }
    fn params(&self) -> &'static [ParamSpec] {
        PARAMS
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        world::WorldConfig::from_params(params).map(|_| ())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        [
            ("people", "people.jsonl"),
            ("corpus", "corpus.txt"),
            ("questions", "questions.jsonl"),
        ]
        .into_iter()
        .map(|(name, path)| OutputDecl {
            name: name.into(),
            path: path.into(),
            heavy: false,
        })
        .collect()
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
        mini::write_lines(&out.join("corpus.txt"), &w.corpus)?;
        mini::write_jsonl(&out.join("questions.jsonl"), &w.questions)?;
        let chars: usize = w.corpus.iter().map(|d| d.len() + 1).sum();
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
