//! The byte-level BPE tokenizer of a GGUF file: a tiny vocabulary written
//! as llama.cpp stores SmolLM2's splits like SmolLM2's tokenizer, renders
//! its chat template, and loads through every tokenizer entry point (the
//! fixtures are in tests/common/gguf.rs).

mod common;

use candle_core::quantized::gguf_file::Value;
use common::gguf::*;
use repro::model::gguf::Gguf;
use repro::model::gguf_tokenizer;
use repro::model::tokenizer::Message;

fn tok_id(s: &str) -> u32 {
    tiny_vocab().0.iter().position(|t| t == s).unwrap() as u32
}

#[test]
fn byte_level_tokenizer_splits_like_smollm2() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(dir.path(), |_| {});
    let tok = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    // No prefix space: "Hello" is one token, not "ĠHello" pieces.
    assert_eq!(
        tok.encode("Hello world").unwrap(),
        vec![tok_id("Hello"), tok_id("Ġworld")]
    );
    // Digits are split one by one even though "12" is a merge.
    assert_eq!(tok.encode("12").unwrap(), vec![tok_id("1"), tok_id("2")]);
    // ChatML markers are single tokens; newlines are byte-level `Ċ`.
    let text = "<|im_start|>user\nHello<|im_end|>\n\n";
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids[0], 1);
    assert_eq!(ids[ids.len() - 2..], [2, tok_id("ĊĊ")]);
    // Decoding round-trips text (special tokens dropped), unicode included.
    for s in [
        "Hello world",
        "x = 12 + 3;\n\ttab",
        "naïve 日本 🦀",
        "  two  spaces ",
    ] {
        assert_eq!(tok.decode(&tok.encode(s).unwrap()).unwrap(), s);
    }
    assert_eq!(tok.eos_id(), 2, "eos is <|im_end|>");
    assert_eq!(tok.vocab_size(), tiny_vocab().0.len());

    // The chat template from the metadata renders ChatML with SmolLM2's
    // default system prompt, and assistant turns are the learned tokens.
    let msgs = vec![
        Message {
            role: "user".into(),
            content: "Hello".into(),
        },
        Message {
            role: "assistant".into(),
            content: "world".into(),
        },
    ];
    let text = tok.render_chat(&msgs[..1], true).unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    );
    let (ids, learn) = tok.encode_chat(&msgs).unwrap();
    let learned: Vec<u32> = ids
        .iter()
        .zip(&learn)
        .filter(|(_, l)| **l)
        .map(|(i, _)| *i)
        .collect();
    assert_eq!(tok.decode(&learned).unwrap(), "world\n");
    assert!(learned.contains(&2), "the turn's <|im_end|> is learned");
}

#[test]
fn any_tokenizer_source_loads_a_gguf_file_like_the_model_loader() {
    // `data.budget` and friends take a tokenizer from a GGUF file as well as
    // from a directory; both paths must give the same tokens.
    let tmp = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(tmp.path(), |_| {});
    let direct = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    let any = repro::model::load::load_tokenizer_any(&path).unwrap();
    for text in ["hello world", "The answer is 42.", ""] {
        assert_eq!(
            direct.encode(text).unwrap(),
            any.encode(text).unwrap(),
            "{text:?}"
        );
    }
    let dir = tmp.path().join("saved");
    std::fs::create_dir_all(&dir).unwrap();
    direct.save_dir(&dir).unwrap();
    let back = repro::model::load::load_tokenizer_any(&dir).unwrap();
    assert_eq!(
        back.encode("hello world").unwrap(),
        direct.encode("hello world").unwrap()
    );
    let missing = repro::model::load::load_tokenizer_any(&tmp.path().join("nope"));
    assert!(missing.is_err());
}

#[test]
fn gpt2_pre_tokenizer_keeps_digit_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_tokenizer_file(dir.path(), |m| {
        m.retain(|(k, _)| k != "tokenizer.ggml.pre");
        m.push(("tokenizer.ggml.pre".into(), Value::String("gpt2".into())));
    });
    let tok = gguf_tokenizer::from_gguf(&Gguf::open(&path).unwrap()).unwrap();
    assert_eq!(tok.encode("12").unwrap(), vec![tok_id("12")]);
}
