//! `lm.finetune`: supervised fine-tuning of a model on chat data (the
//! paper's imitation step).
//!
//! Inputs: `base` (a model directory) and `data` (JSON lines, each with
//! `messages: [{role, content}]`). Each conversation is rendered with the
//! model's chat template and only the assistant turns are learned (the
//! paper: "standard LM losses on only the model outputs"). Param `tokens`
//! caps the imitation data: the leading conversations, in file order, whose
//! rendered tokens add up to at most `tokens`, so smaller budgets are
//! prefixes of larger ones (nested subsets, as a scaling sweep needs).
//! Outputs: `out` the model directory (heavy) and `log` (`train.json`).
//!
//! Param `engine` picks the trainer: `candle` (the default; repro's own,
//! one device) or `torch` (PyTorch FSDP2 under `torchrun`, for models that
//! need many GPUs; see [`super::lm_finetune_torch`]). With `torch` the
//! trainer script and the Python lock file are implicit inputs, so their
//! digests, and the engine, are in the key.
//!
//! With `candle`, `dtype` (f32, bf16 or f16; bf16 on a node granted GPUs)
//! is the compute type: a half-precision run loads the base twice, in the
//! dtype for the model and in f32 for the optimizer's master weights, and
//! saves the f32 masters. `micro_batch_size` accumulates gradients over
//! micro-batches and `recompute` recomputes each block's activations in
//! the backward pass (see [`crate::model::train::TrainPlan`]). The torch
//! engine has its own `precision`, `micro_batch` and
//! `activation_checkpointing` and rejects these three.

use super::lm_common::{self, TRAIN_PARAMS, input, model_err, read_jsonl};
use super::lm_finetune_torch as torch_engine;
use crate::model::load::load_as;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use candle_core::DType::F32;
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The `lm.finetune` op.
pub struct LmFinetuneOp;

static PARAMS: LazyLock<Vec<ParamSpec>> = LazyLock::new(|| {
    let mut v = vec![ParamSpec::optional(
        "tokens",
        ParamType::Int,
        "imitation-data budget in tokens: the leading conversations that fit (default: all)",
    )];
    v.extend_from_slice(TRAIN_PARAMS);
    v.extend_from_slice(torch_engine::PARAMS);
    v
});

impl Op for LmFinetuneOp {
    // 2: the training log no longer holds wall-clock fields.
    // 3: LLaMA models on the CPU train with the hand-written step
    //    (`model::manual`) and AVX-512 matrix kernels: same math,
    //    different float rounding, so different checkpoints.
    // 4: each conversation is tokenized once as a whole and the learn
    //    mask comes from the assistant turns' byte spans (it was
    //    tokenized turn by turn, which split words at turn boundaries).
    crate::op_identity! { "lm.finetune", 4, &PARAMS, "Fine-tunes a model on chat data, learning only assistant turns (inputs `base` model directory, `data` JSON lines with `messages`; param `tokens` caps the data; `engine: torch` trains with PyTorch FSDP2 under torchrun instead of repro's own trainer); outputs `out` (model, heavy) and `log`." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        lm_common::check_train(params)?;
        torch_engine::check(params)
    }
    fn check_files(
        &self,
        params: &Map<String, Value>,
        files: &[(&str, &std::path::Path)],
    ) -> Result<(), (String, String)> {
        let Some((_, base)) = files.iter().find(|(name, _)| *name == "base") else {
            return Ok(());
        };
        // A config that cannot be read is reported when the node runs.
        match crate::model::load::max_positions(base) {
            Ok(n) => lm_common::check_seq_len(params, n, "the base model"),
            Err(_) => Ok(()),
        }
    }
    fn gpu_defaults_apply(&self, params: &Map<String, Value>) -> bool {
        // The torch engine's compute type is `precision`; `dtype: bf16`
        // written into a torch node would only change its key.
        !torch_engine::selected(params)
    }
    fn implicit_inputs(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        torch_engine::implicit_inputs(params)
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        lm_common::train_outputs()
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let base = input(ctx, "base")?.clone();
        let records = read_jsonl(input(ctx, "data")?, "data")?;
        let budget = ctx.params.get("tokens").and_then(Value::as_u64);
        let tcfg = lm_common::train_config(ctx.params);
        // Again at run time: a base made by another node was not seen at
        // compile time.
        let positions = crate::model::load::max_positions(&base).map_err(model_err)?;
        lm_common::check_seq_len(ctx.params, positions, "the base model")
            .map_err(|(_, m)| OpError::msg(m))?;
        if torch_engine::selected(ctx.params) {
            return torch_engine::run(ctx, &base, &records, budget, &tcfg);
        }
        let placed = lm_common::place(ctx)?;
        let dtype = lm_common::dtype(ctx)?;
        let metrics = lm_common::on_threads(ctx, || {
            let device = placed.device.clone();
            let load = |dtype| load_as(&base, true, &device, dtype).map_err(model_err);
            let loaded = load(dtype)?;
            let masters = lm_common::masters_for(dtype, &loaded.vars, || Ok(load(F32)?.vars))?;
            let (examples, used_tokens) = lm_common::examples(&loaded.tokenizer, &records, budget)?;
            let mut extra = Map::new();
            extra.insert("examples".into(), json!(examples.len()));
            extra.insert("data_tokens".into(), json!(used_tokens));
            extra.insert("available_examples".into(), json!(records.len()));
            lm_common::train_and_save(ctx, loaded, masters, &examples, &tcfg, extra)
        })?;
        Ok(RunResult {
            device: Some(placed.described),
            metrics,
            ..Default::default()
        })
    }
}
