//! Metric code of the evaluation ops: the miniature's (`eval.qa`,
//! `eval.style`, `rate.pairwise`) and the paper's real-data suite
//! (`eval.nq`, `eval.mmlu`, `eval.humaneval`, `eval.toxicity`,
//! `eval.preference`).
//!
//! Everything here but the sandbox is a plain, deterministic function with
//! unit tests:
//!
//! - [`normalize`]: NQ-open answer normalization, answer extraction, exact
//!   match and whole-word containment;
//! - [`style`]: word tokenization, unigram overlap with a reference and the
//!   teacher's format check;
//! - [`stats`]: mean and Pearson correlation;
//! - [`bootstrap`]: percentile bootstrap confidence intervals, seeded by the
//!   crate's own [`crate::rng::Rng`];
//! - [`rater`]: the two deterministic pairwise raters (surface, factcheck);
//! - [`nq`]: NQ-open questions, few-shot prompts, answer extraction, EM;
//! - [`csv`]: RFC 4180 records with their line numbers;
//! - [`mmlu`]: MMLU CSVs, the 5-shot prompt, answer-letter scoring;
//! - [`passk`]: HumanEval's unbiased pass@k estimator;
//! - [`sandbox`]: runs generated Python in namespaces with resource limits;
//! - [`toxicity`]: the offline alt-profanity-check scorer (TF-IDF + calibrated
//!   linear SVMs), equal to the Python package's scores;
//! - [`preference`]: pairwise judge verdicts and human ratings aggregated
//!   into better / equal / worse shares with bootstrap intervals;
//! - [`io`]: reading the JSONL inputs of the miniature (people, questions,
//!   held-out prompts, predictions) with errors that name the input and line.

pub mod bootstrap;
pub mod csv;
pub mod io;
pub mod lm_eval;
pub mod mmlu;
pub mod normalize;
pub mod nq;
pub mod paired;
pub mod passk;
pub mod preference;
pub mod rater;
pub mod sandbox;
pub mod stats;
pub mod style;
pub mod toxicity;
