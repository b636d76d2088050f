//! `tokenizer.train`: a byte-level BPE tokenizer trained on a corpus.
//!
//! Input `corpus`: documents, one per line (or one `{"text"}` per line
//! with `corpus_format: jsonl`). The tokenizer has
//! `vocab_size` tokens including the miniature's special tokens
//! (`<|endoftext|>`, `<|system|>`, `<|user|>`, `<|assistant|>`, `<|end|>`) and
//! its chat template. Output `tokenizer`: a directory with `tokenizer.json`
//! and `tokenizer_config.json` (Hugging Face layout). Training is
//! deterministic for the same corpus.

use super::lm_common::{self, metrics_of, model_err};
use crate::model::tokenizer::{MINI_SPECIALS, TextTokenizer, train_bpe};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, RunContext, RunResult};
use serde_json::{Map, Value, json};

/// The `tokenizer.train` op.
pub struct TokenizerTrainOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::int(
        "vocab_size",
        1024,
        "tokens in the vocabulary, special tokens included",
    ),
    lm_common::CORPUS_FORMAT,
];

impl Op for TokenizerTrainOp {
    // 2: the chat template puts a space after each role marker, so a
    //    turn's first word is tokenized as in running text.
    crate::op_identity! { "tokenizer.train", 2, PARAMS, "Trains a byte-level BPE tokenizer (input `corpus`: one document per line, or JSON lines `{text}` with `corpus_format: jsonl`) with the miniature's chat template; output `tokenizer` (tokenizer.json + tokenizer_config.json)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        lm_common::check_corpus_format(params)?;
        let v = param::int(PARAMS, params, "vocab_size");
        if !(300..=65536).contains(&v) {
            return Err((
                "vocab_size".into(),
                format!(
                    "`vocab_size` must be in 300..=65536 (256 bytes + specials + merges), found {v}"
                ),
            ));
        }
        Ok(())
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "tokenizer")])
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let docs = lm_common::read_corpus(ctx)?;
        let vocab = param::int(PARAMS, ctx.params, "vocab_size") as usize;
        if docs.is_empty() {
            return Err(OpError::msg("input `corpus` has no documents"));
        }
        let tk =
            train_bpe(docs.iter().map(String::as_str), vocab, &MINI_SPECIALS).map_err(model_err)?;
        let tok = TextTokenizer::new(tk, TextTokenizer::mini_chat()).map_err(model_err)?;
        let dir = ctx.work_dir.join("out").join("tokenizer");
        std::fs::create_dir_all(&dir)?;
        tok.save_dir(&dir).map_err(model_err)?;
        let tokens: usize = docs
            .iter()
            .map(|d| tok.encode(d).map(|v| v.len()))
            .sum::<Result<usize, _>>()
            .map_err(model_err)?;
        let m = json!({
            "vocab_size": tok.vocab_size(),
            "documents": docs.len(),
            "corpus_tokens": tokens,
        });
        Ok(RunResult {
            metrics: metrics_of(&m),
            ..Default::default()
        })
    }
}
