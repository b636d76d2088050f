//! Gemma 3 model directories in the Hugging Face layout: a tiny random
//! Gemma 3 written as `config.json` (HF `Gemma3TextConfig` keys) +
//! `model.safetensors` + a tokenizer loads through
//! `repro::model::load::load` with logits identical to the model built
//! directly from the same weights; the multimodal `gemma3` layout loads its
//! text model; a checkpoint saved as `lm.finetune` saves it
//! (`CausalLm::config_json` + `checkpoint::save_text`) loads back with
//! identical logits; `lm.finetune` on a Gemma 3 base writes a model that
//! loads; and malformed configs are errors naming the file and the key.

mod common;

use candle_core::{DType, Device, Tensor};
use common::OpRun;
use common::gemma::{gemma_model, gemma_weights};
use repro::model::CausalLm;
use repro::model::checkpoint;
use repro::model::gemma3::Gemma3Config;
use repro::model::load::load;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Rows of the tiny vocabulary (the WordLevel tokenizer of
/// `tests/data/llama_hf`).
const VOCAB: usize = 64;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/llama_hf")
        .join(name)
}

/// A tiny Gemma 3 over the tiny vocabulary.
fn gemma_config(layers: usize, window: usize) -> Gemma3Config {
    common::gemma::gemma_config(layers, window, VOCAB)
}

/// The `config.json` transformers writes for `cfg` (`Gemma3TextConfig`
/// keys, `layer_types` instead of the pattern, null soft-capping and RoPE
/// scaling).
fn hf_config(cfg: &Gemma3Config) -> Map<String, Value> {
    let layer_types: Vec<&str> = (0..cfg.num_hidden_layers)
        .map(|i| {
            if cfg.is_sliding(i) {
                "sliding_attention"
            } else {
                "full_attention"
            }
        })
        .collect();
    json!({
        "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
        "attention_bias": false, "attention_dropout": 0.0,
        "attn_logit_softcapping": null, "final_logit_softcapping": null,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
        "head_dim": cfg.head_dim, "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": cfg.hidden_size, "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size, "layer_types": layer_types,
        "max_position_embeddings": cfg.max_position_embeddings,
        "num_attention_heads": cfg.num_attention_heads,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "query_pre_attn_scalar": cfg.query_pre_attn_scalar,
        "rms_norm_eps": cfg.rms_norm_eps, "rope_local_base_freq": cfg.rope_local_base_freq,
        "rope_scaling": null, "rope_theta": cfg.rope_theta,
        "sliding_window": cfg.sliding_window, "torch_dtype": "float32",
        "transformers_version": "4.56.0", "use_cache": true, "vocab_size": cfg.vocab_size
    })
    .as_object()
    .cloned()
    .unwrap()
}

/// Writes an HF model directory: `config`, the weights (named by
/// `rename`), the fixture tokenizer and a tokenizer config.
fn write_dir(
    dir: &Path,
    config: &Map<String, Value>,
    weights: &[(String, Tensor)],
    rename: impl Fn(&str) -> String,
) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(config).unwrap(),
    )
    .unwrap();
    let named: BTreeMap<String, &Tensor> = weights.iter().map(|(n, t)| (rename(n), t)).collect();
    safetensors::tensor::serialize_to_file(named, None, &dir.join("model.safetensors")).unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    std::fs::write(
        dir.join("tokenizer_config.json"),
        r#"{"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"}"#,
    )
    .unwrap();
}

fn ids() -> Tensor {
    // 12 positions: longer than the window of 4, so the sliding layers
    // and the global layer (layer 5 of 7) see different keys.
    let ids: Vec<u32> = vec![3, 17, 42, 5, 9, 63, 1, 28, 28, 11, 50, 7];
    Tensor::from_vec(ids, (1, 12), &Device::Cpu).unwrap()
}

fn logits(m: &dyn CausalLm) -> Vec<f32> {
    m.forward(&ids(), None, None, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn hf_directory_loads_with_identical_logits() {
    let cfg = gemma_config(7, 4);
    let weights = gemma_weights(&cfg, 11);
    let want = logits(&gemma_model(&cfg, &weights));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gemma");
    write_dir(&dir, &hf_config(&cfg), &weights, str::to_string);
    let loaded = load(&dir, false, &Device::Cpu).unwrap();
    assert_eq!(loaded.model.arch(), "gemma3_text");
    assert_eq!(loaded.model.param_count(), cfg.param_count());
    assert_eq!(max_diff(&logits(loaded.model.as_ref()), &want), 0.0);
    assert_eq!(loaded.tokenizer.eos_id(), 0);

    // The same weights with the global layer elsewhere (pattern 3: layers
    // 2 and 5 global) give other logits: the check above can fail.
    let mut other = hf_config(&cfg);
    other.remove("layer_types");
    other.insert("sliding_window_pattern".into(), json!(3));
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&other).unwrap(),
    )
    .unwrap();
    let moved = load(&dir, false, &Device::Cpu).unwrap();
    assert!(max_diff(&logits(moved.model.as_ref()), &want) > 1e-3);
    // ... and equal the model built with that pattern.
    let cfg3 = Gemma3Config {
        sliding_window_pattern: 3,
        ..cfg.clone()
    };
    assert_eq!(
        max_diff(
            &logits(moved.model.as_ref()),
            &logits(&gemma_model(&cfg3, &weights))
        ),
        0.0
    );
}

#[test]
fn multimodal_gemma3_loads_its_text_model() {
    let cfg = gemma_config(7, 4);
    let weights = gemma_weights(&cfg, 12);
    let want = logits(&gemma_model(&cfg, &weights));
    let tmp = tempfile::tempdir().unwrap();
    // transformers >= 4.52 (`model.language_model.`) and earlier
    // (`language_model.model.`); vision weights are not read.
    for prefix in ["model.language_model.", "language_model.model."] {
        let dir = tmp.path().join(prefix.replace('.', "_"));
        let config = json!({
            "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
            "eos_token_id": 0, "text_config": hf_config(&cfg), "vision_config": {}
        });
        let mut with_vision = weights.clone();
        with_vision.push((
            "VISION".into(),
            Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap(),
        ));
        write_dir(
            &dir,
            config.as_object().unwrap(),
            &with_vision,
            |n: &str| match n {
                "VISION" if prefix.starts_with("model.") => {
                    "model.vision_tower.patch.weight".into()
                }
                "VISION" => "vision_tower.patch.weight".into(),
                n => format!("{prefix}{}", n.strip_prefix("model.").unwrap()),
            },
        );
        let loaded = load(&dir, false, &Device::Cpu).unwrap();
        assert_eq!(
            max_diff(&logits(loaded.model.as_ref()), &want),
            0.0,
            "{prefix}"
        );
    }
}

#[test]
fn finetune_checkpoint_round_trips() {
    // As `lm.finetune` saves: the model loaded trainable, its variables and
    // `config_json`, through `checkpoint::save_text`.
    let cfg = gemma_config(7, 4);
    let weights = gemma_weights(&cfg, 13);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_dir(&base, &hf_config(&cfg), &weights, str::to_string);
    let loaded = load(&base, true, &Device::Cpu).unwrap();
    assert_eq!(loaded.vars.len(), weights.len());
    // Change one norm so the saved model is not the base.
    let (name, var) = loaded
        .vars
        .iter()
        .find(|(n, _)| n == "model.layers.5.pre_feedforward_layernorm.weight")
        .unwrap();
    var.set(&(var.as_tensor() + 0.25).unwrap()).unwrap();
    assert!(name.ends_with("weight"));
    let want = logits(loaded.model.as_ref());
    let saved: Vec<(String, Tensor)> = loaded
        .vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let out = tmp.path().join("model");
    let cfg_text = loaded.model.config_json().unwrap();
    checkpoint::save_text(&out, &cfg_text, &saved, &loaded.tokenizer).unwrap();
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], json!("gemma3_text"));
    let back = load(&out, false, &Device::Cpu).unwrap();
    assert_eq!(max_diff(&logits(back.model.as_ref()), &want), 0.0);
    let base_logits = logits(load(&base, false, &Device::Cpu).unwrap().model.as_ref());
    assert!(max_diff(&want, &base_logits) > 1e-4);
    // The config survives a second round trip unchanged.
    assert_eq!(back.model.config_json().unwrap(), cfg_text);
}

#[test]
fn finetune_op_on_a_gemma3_base_writes_a_loadable_model() {
    let cfg = gemma_config(2, 4);
    let weights = gemma_weights(&cfg, 14);
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    write_dir(&base, &hf_config(&cfg), &weights, str::to_string);
    let data = tmp.path().join("data.jsonl");
    let rows: String = (0..6)
        .map(|i| {
            format!(
                "{}\n",
                json!({"messages": [
                    {"role": "user", "content": format!("w{} w{}", i + 1, i + 2)},
                    {"role": "assistant", "content": format!("w{} w{} w{}", i + 3, i + 4, i + 5)}
                ]})
            )
        })
        .collect();
    std::fs::write(&data, rows).unwrap();
    let ran = OpRun::new("lm.finetune")
        .params(json!({"lr": 1e-2, "epochs": 1, "seq_len": 16, "batch_size": 2, "seed": 0}))
        .input("base", &base)
        .input("data", &data)
        .run();
    ran.ok();
    let model = ran.out("model");
    let back = load(&model, false, &Device::Cpu).unwrap();
    assert_eq!(back.model.arch(), "gemma3_text");
    let tuned = logits(back.model.as_ref());
    assert!(tuned.iter().all(|x| x.is_finite()));
    let before = logits(load(&base, false, &Device::Cpu).unwrap().model.as_ref());
    assert!(max_diff(&tuned, &before) > 1e-4, "training changed nothing");
}

/// A change to a config.
type Edit = Box<dyn Fn(&mut Map<String, Value>)>;

/// Loads `dir` after `edit` changes its config; the error text.
fn load_err(
    dir: &Path,
    config: &Map<String, Value>,
    edit: impl Fn(&mut Map<String, Value>),
) -> String {
    let mut c = config.clone();
    edit(&mut c);
    std::fs::write(dir.join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
    match load(dir, false, &Device::Cpu) {
        Ok(_) => panic!("loaded a malformed config: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malformed_configs_name_the_file_and_key() {
    let cfg = gemma_config(7, 4);
    let weights = gemma_weights(&cfg, 15);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("gemma");
    let good = hf_config(&cfg);
    write_dir(&dir, &good, &weights, str::to_string);
    let file = dir.join("config.json").display().to_string();
    let set = |k: &'static str, v: Value| {
        move |c: &mut Map<String, Value>| {
            c.insert(k.into(), v.clone());
        }
    };
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(set("hidden_size", json!("32"))),
            "key `hidden_size`",
        ),
        (
            Box::new(|c: &mut Map<String, Value>| {
                c.remove("num_hidden_layers");
            }),
            "key `num_hidden_layers`",
        ),
        (
            Box::new(set(
                "rope_scaling",
                json!({"rope_type": "linear", "factor": 8.0}),
            )),
            "key `rope_scaling`",
        ),
        (
            Box::new(set(
                "rope_parameters",
                json!({"full_attention": {"rope_type": "yarn", "rope_theta": 1e6}}),
            )),
            "key `rope_parameters.full_attention`",
        ),
        (
            Box::new(set("final_logit_softcapping", json!(30.0))),
            "key `final_logit_softcapping`",
        ),
        (
            Box::new(set("hidden_activation", json!("relu"))),
            "key `hidden_activation`",
        ),
        (
            Box::new(set("layer_types", json!(["full_attention"]))),
            "key `layer_types`",
        ),
        (
            Box::new(set(
                "layer_types",
                json!([
                    "sliding_attention",
                    "full_attention",
                    "sliding_attention",
                    "sliding_attention",
                    "sliding_attention",
                    "full_attention",
                    "sliding_attention"
                ]),
            )),
            "key `layer_types`",
        ),
        (
            Box::new(set("num_key_value_heads", json!(3))),
            "key `num_key_value_heads`",
        ),
        (Box::new(set("head_dim", json!(31))), "key `head_dim`"),
        (
            Box::new(set("model_type", json!("gemma7"))),
            "key `model_type`",
        ),
    ];
    for (edit, key) in cases {
        let e = load_err(&dir, &good, edit);
        assert!(e.contains(&file) && e.contains(key), "{key}: {e}");
    }
    // The multimodal layout names the nested key.
    let mm = json!({"model_type": "gemma3"})
        .as_object()
        .cloned()
        .unwrap();
    let e = load_err(&dir, &mm, |_| {});
    assert!(e.contains(&file) && e.contains("key `text_config`"), "{e}");
    let mut text = good.clone();
    text.remove("vocab_size");
    let mm = json!({"model_type": "gemma3", "text_config": text})
        .as_object()
        .cloned()
        .unwrap();
    let e = load_err(&dir, &mm, |_| {});
    assert!(
        e.contains(&file) && e.contains("key `text_config.vocab_size`"),
        "{e}"
    );
    // A weight the config does not use is named.
    let e = load_err(&dir, &good, |c| {
        c.insert("num_hidden_layers".into(), json!(6));
        c.insert(
            "layer_types".into(),
            json!([
                "sliding_attention",
                "sliding_attention",
                "sliding_attention",
                "sliding_attention",
                "sliding_attention",
                "full_attention"
            ]),
        );
    });
    assert!(e.contains("model.layers.6."), "{e}");
}
