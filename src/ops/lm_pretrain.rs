//! `lm.pretrain`: trains a LLaMA-family or GPT-2 model from scratch on a corpus.
//!
//! Inputs: `corpus` (text, one document per line, or one `{"text"}` per
//! line with `corpus_format: jsonl`) and `tokenizer` (a
//! directory from `tokenizer.train`). Param `model` is the architecture in
//! Hugging Face `config.json` names (`hidden_size`, `intermediate_size`,
//! `num_hidden_layers`, `num_attention_heads`, optional
//! `num_key_value_heads`, `max_position_embeddings`, `rope_theta`,
//! `rms_norm_eps`, `tie_word_embeddings` (default true)), or a GPT-2 with
//! `model_type: gpt2` (`n_embd`, `n_layer`, `n_head`, ...); `vocab_size`
//! comes from the tokenizer. Every document is followed by `<|endoftext|>` and
//! every token is learned. Weights start N(0, 0.02) from `seed` (in f32;
//! with `dtype: bf16` or `f16` the model computes in that type from the
//! rounded weights while the optimizer keeps the f32 ones as masters, which
//! the checkpoint holds). `micro_batch_size` and `recompute` are as in
//! `lm.finetune`. Outputs:
//! `out` the model directory (heavy, HF layout) and `log` (`train.json`: the
//! loss curve and the numbers that also go into the record).

use super::lm_common::{self, TRAIN_PARAMS, input, model_err};
use crate::model::checkpoint::Loaded;
use crate::model::gpt2::{self, Gpt2Config};
use crate::model::tokenizer::TextTokenizer;
use crate::model::train::Example;
use crate::model::{CausalLm, LlamaConfig, init};
use crate::op::param;
use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use candle_core::{DType, Var};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The `lm.pretrain` op.
pub struct LmPretrainOp;

static PARAMS: LazyLock<Vec<ParamSpec>> = LazyLock::new(|| {
    let mut v = vec![ParamSpec::required(
        "model",
        ParamType::Map,
        "architecture in HF config.json names (vocab_size comes from the tokenizer)",
    )];
    v.extend_from_slice(TRAIN_PARAMS);
    v.push(lm_common::CORPUS_FORMAT);
    v
});

/// The architecture `lm.pretrain` builds.
#[derive(Debug, Clone)]
pub enum PretrainModel {
    /// A LLaMA (the default).
    Llama(LlamaConfig),
    /// A GPT-2 (`model_type: gpt2`).
    Gpt2(Gpt2Config),
}

/// The model config from the `model` param and a vocabulary size: a LLaMA
/// unless `model.model_type` is `gpt2` (then GPT-2 `config.json` names:
/// `n_embd`, `n_layer`, `n_head`, optional `n_inner`, `n_positions`,
/// `layer_norm_epsilon`, `activation_function`).
pub fn model_config(params: &Map<String, Value>, vocab: usize) -> Result<PretrainModel, String> {
    let mut m = params
        .get("model")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if m.contains_key("vocab_size") {
        return Err("`model.vocab_size` comes from the tokenizer; remove it".into());
    }
    m.insert("vocab_size".into(), json!(vocab));
    let seq = param::int(lm_common::TRAIN_PARAMS, params, "seq_len");
    if m.get("model_type").and_then(Value::as_str) == Some("gpt2") {
        m.entry("n_positions").or_insert(json!(seq.max(256)));
        let cfg = Gpt2Config::from_json(std::path::Path::new("param `model`"), &m)
            .map_err(|e| e.to_string())?;
        return Ok(PretrainModel::Gpt2(cfg));
    }
    m.entry("tie_word_embeddings").or_insert(json!(true));
    m.entry("max_position_embeddings")
        .or_insert(json!(seq.max(256)));
    let cfg: LlamaConfig =
        serde_json::from_value(Value::Object(m)).map_err(|e| format!("`model`: {e}"))?;
    if cfg.model_type != "llama" {
        return Err(format!(
            "`model.model_type`: `{}` is not supported here (llama or gpt2)",
            cfg.model_type
        ));
    }
    cfg.validate().map_err(|e| format!("`model`: {e}"))?;
    Ok(PretrainModel::Llama(cfg))
}

/// A model and its named trainable weights.
type Fresh = (Box<dyn CausalLm>, Vec<(String, Var)>);

/// A freshly initialised model of `cfg` in `dtype` (from `seed`: the same
/// weights, up to rounding, in every dtype) and its named weights.
fn fresh(
    cfg: &PretrainModel,
    seed: u64,
    device: &candle_core::Device,
    dtype: DType,
) -> candle_core::Result<Fresh> {
    Ok(match cfg {
        PretrainModel::Llama(c) => {
            let (m, v) = init(c, seed, device, dtype)?;
            (Box::new(m), v)
        }
        PretrainModel::Gpt2(c) => {
            let (m, v) = gpt2::init(c, seed, device, dtype)?;
            (Box::new(m), v)
        }
    })
}

impl Op for LmPretrainOp {
    // 2: the training log no longer holds wall-clock fields.
    // 3: LLaMA models on the CPU train with the hand-written step
    //    (`model::manual`) and AVX-512 matrix kernels: same math,
    //    different float rounding, so different checkpoints.
    crate::op_identity! { "lm.pretrain", 3, &PARAMS, "Pretrains a LLaMA-family (or, with `model_type: gpt2`, GPT-2) model from scratch (inputs `corpus`, `tokenizer`; param `model` in HF config names); outputs `out` (model directory, heavy) and `log` (train.json)." }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        let positions = match model_config(params, 1024).map_err(|m| ("model".to_string(), m))? {
            PretrainModel::Llama(c) => c.max_position_embeddings,
            PretrainModel::Gpt2(c) => c.n_positions,
        };
        lm_common::check_seq_len(params, positions, "the `model` param")?;
        lm_common::check_corpus_format(params)?;
        lm_common::check_train(params)
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        lm_common::train_outputs()
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let corpus = lm_common::read_corpus(ctx)?;
        let tokenizer = TextTokenizer::load_dir(input(ctx, "tokenizer")?).map_err(model_err)?;
        let cfg = model_config(ctx.params, tokenizer.vocab_size()).map_err(OpError::msg)?;
        let tcfg = lm_common::train_config(ctx.params);
        let placed = lm_common::place(ctx)?;
        let dtype = lm_common::dtype(ctx)?;
        let metrics = lm_common::on_threads(ctx, || {
            let mut examples = Vec::new();
            for doc in &corpus {
                let mut ids = tokenizer.encode(doc).map_err(model_err)?;
                ids.push(tokenizer.eos_id());
                let learn = vec![true; ids.len()];
                examples.push(Example { ids, learn });
            }
            let device = placed.device.clone();
            let build = |dtype| fresh(&cfg, tcfg.seed, &device, dtype).map_err(model_err);
            let (model, vars) = build(dtype)?;
            let masters = lm_common::masters_for(dtype, &vars, || Ok(build(DType::F32)?.1))?;
            let mut extra = Map::new();
            extra.insert("documents".into(), json!(examples.len()));
            lm_common::train_and_save(
                ctx,
                Loaded {
                    model,
                    tokenizer,
                    vars,
                },
                masters,
                &examples,
                &tcfg,
                extra,
            )
        })?;
        Ok(RunResult {
            device: Some(placed.described),
            metrics,
            ..Default::default()
        })
    }
}
