//! The op files and their registry. Each op lives in its own file with its
//! name, version, params schema and `run`; adding one is a new file plus one
//! line in [`REGISTRY`]. The contract they implement (`Op`, `RunContext`,
//! `OpError`, params schemas) is the bottom layer, [`crate::op`].

pub mod data_budget;
pub mod data_jsonl;
pub mod data_mix;
pub mod data_nq_synthetic;
pub mod data_sharegpt;
pub mod eval_humaneval;
pub mod eval_mmlu;
pub mod eval_nq;
pub mod eval_preference;
pub mod eval_qa;
pub mod eval_style;
pub mod eval_toxicity;
pub mod file;
pub mod ingest_lm_eval;
pub mod lm_common;
pub mod lm_finetune;
pub mod lm_finetune_torch;
pub mod lm_generate;
pub mod lm_pretrain;
pub mod mini_teacher;
pub mod mini_world;
pub mod prompts_jsonl;
pub mod prompts_qa;
pub mod published;
pub mod rate_pairwise;
pub mod report_common;
pub mod report_figure;
pub mod report_html;
pub mod report_predictions;
pub mod report_table;
pub mod shell;
pub mod teacher_chat;
pub mod tokenizer_train;

use crate::op::Op;

/// Every op known to this build. Keep it sorted by name.
pub static REGISTRY: &[&dyn Op] = &[
    &data_budget::DataBudgetOp,
    &data_jsonl::DataChatJsonlOp,
    &data_mix::DataMixOp,
    &data_nq_synthetic::DataNqSyntheticOp,
    &data_jsonl::DataQaJsonlOp,
    &data_sharegpt::DataShareGptOp,
    &eval_humaneval::EvalHumanEvalOp,
    &eval_mmlu::EvalMmluOp,
    &eval_nq::EvalNqOp,
    &eval_preference::EvalPreferenceOp,
    &eval_qa::EvalQaOp,
    &eval_style::EvalStyleOp,
    &eval_toxicity::EvalToxicityOp,
    &file::FileOp,
    &ingest_lm_eval::IngestLmEvalOp,
    &lm_finetune::LmFinetuneOp,
    &lm_generate::LmGenerateOp,
    &lm_pretrain::LmPretrainOp,
    &mini_teacher::MiniTeacherOp,
    &mini_world::MiniWorldOp,
    &prompts_jsonl::PromptsJsonlOp,
    &prompts_qa::PromptsQaOp,
    &rate_pairwise::RatePairwiseOp,
    &published::PublishedOp,
    &report_figure::ReportFigureOp,
    &report_html::ReportHtmlOp,
    &report_predictions::ReportPredictionsOp,
    &report_table::ReportTableOp,
    &shell::ShellOp,
    &teacher_chat::TeacherChatOp,
    &tokenizer_train::TokenizerTrainOp,
];

/// Finds an op by name.
pub fn find(name: &str) -> Option<&'static dyn Op> {
    REGISTRY.iter().copied().find(|op| op.name() == name)
}

/// Names of all ops, for error messages.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|op| op.name()).collect()
}
