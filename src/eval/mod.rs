//! Metric code shared by the evaluation ops (`eval.qa`, `eval.style`,
//! `rate.pairwise`) and by any later evaluator on real data.
//!
//! Everything here is a plain, deterministic function with unit tests:
//!
//! - [`normalize`]: NQ-open answer normalization, answer extraction, exact
//!   match and whole-word containment;
//! - [`style`]: word tokenization, unigram overlap with a reference and the
//!   teacher's format check;
//! - [`stats`]: mean and Pearson correlation;
//! - [`bootstrap`]: percentile bootstrap confidence intervals, seeded by the
//!   crate's own [`crate::rng::Rng`];
//! - [`rater`]: the two deterministic pairwise raters (surface, factcheck);
//! - [`io`]: reading the JSONL inputs of the miniature (people, questions,
//!   held-out prompts, predictions) with errors that name the input and line.

pub mod bootstrap;
pub mod io;
pub mod normalize;
pub mod rater;
pub mod stats;
pub mod style;
