//! Our model against `candle_transformers`' own llama on the same weights
//! (last-position logits; the reference returns nothing else). Built only
//! with `--features reference`, since candle-transformers takes about a
//! minute and a half to compile: `cargo test --release --features reference
//! --test reference_llama`.
#![cfg(feature = "reference")]

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_transformers::models::llama as reference;
use repro::model::{LlamaConfig, init};
use std::collections::HashMap;

#[test]
fn last_position_logits_equal_candle_transformers_llama() {
    for (tie, kv) in [(true, 2), (false, 4)] {
        let cfg: LlamaConfig = serde_json::from_value(serde_json::json!({
            "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": kv, "vocab_size": 50,
            "max_position_embeddings": 64, "tie_word_embeddings": tie
        }))
        .unwrap();
        let dev = Device::Cpu;
        let (model, vars) = init(&cfg, 11, &dev, DType::F32).unwrap();
        let mut map: HashMap<String, Tensor> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        if tie {
            map.insert(
                "lm_head.weight".into(),
                map["model.embed_tokens.weight"].clone(),
            );
        }
        let rcfg: reference::LlamaConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        let rcfg = rcfg.into_config(false);
        let vb = candle_nn::VarBuilder::from_tensors(map, DType::F32, &dev);
        let theirs = reference::Llama::load(vb, &rcfg).unwrap();
        let ids = Tensor::new(&[[3u32, 14, 15, 9, 26, 5]], &dev).unwrap();
        let mut cache = reference::Cache::new(false, DType::F32, &rcfg, &dev).unwrap();
        let want = theirs.forward(&ids, 0, &mut cache).unwrap();
        for fast in [true, false] {
            let ours = model
                .forward(&ids, None, None, fast)
                .unwrap()
                .i((.., 5))
                .unwrap();
            let diff = (&ours - &want).unwrap().abs().unwrap().max_all().unwrap();
            let diff = diff.to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "tie={tie} fast={fast}: max diff {diff}");
        }
    }
}
