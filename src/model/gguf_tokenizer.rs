//! A [`TextTokenizer`] built from a GGUF file's tokenizer metadata.
//!
//! Two `tokenizer.ggml.model` kinds are supported:
//! - `gpt2`: byte-level BPE from `tokenizer.ggml.tokens` and
//!   `tokenizer.ggml.merges`. The pre-tokenizer follows
//!   `tokenizer.ggml.pre` as llama.cpp does: `smollm` (SmolLM/SmolLM2,
//!   StarCoder) splits every digit off, then applies the GPT-2 regex; `gpt2`
//!   applies the GPT-2 regex only. No prefix space is added. (candle's own
//!   GGUF tokenizer builder falls back to `add_prefix_space = true` for
//!   `smollm`, which turns `"Hello"` into `"ĠHello"`.)
//! - `llama`: SentencePiece BPE (Gemma, LLaMA 1/2) from the tokens and
//!   their `tokenizer.ggml.scores`: spaces become `▁`, pieces merge by the
//!   score of the merged piece (llama.cpp's SPM algorithm, as a BPE whose
//!   merge ranks follow the scores), unknown bytes fall back to the
//!   `<0xNN>` tokens.
//!
//! Control tokens (`token_type` 3) and user-defined ones (4) are matched as
//! whole tokens in text. The chat template is `tokenizer.chat_template`,
//! rendered by [`TextTokenizer::render_chat`] (minijinja); a file without
//! one gets the turn format its vocabulary implies (ChatML when it has
//! `<|im_start|>`, Gemma's `<start_of_turn>` turns, else [`super::tokenizer::PLAIN_CHAT_TEMPLATE`]).

use super::gguf_file::{Gguf, GgufError};
use super::tokenizer::{ChatConfig, TextTokenizer};
use candle_core::quantized::gguf_file::Value;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// `tokenizer.ggml.pre` values of `gpt2`-kind tokenizers we reproduce.
pub const SUPPORTED_PRE: [&str; 2] = ["smollm", "gpt2"];

/// ChatML, used when a ChatML vocabulary comes without a template.
pub const CHATML_TEMPLATE: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
/// Gemma's turn format (`<bos>` first, `model` for the assistant), for
/// Gemma base models, whose GGUF files carry no template.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% for m in messages %}<start_of_turn>{% if m.role == 'assistant' %}model{% else %}{{ m.role }}{% endif %}\n{{ m.content }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

fn strings(g: &Gguf, key: &str) -> Result<Vec<String>, GgufError> {
    g.array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            v => Err(g.key_err(key, format!("element {i} is not a string: {v:?}"))),
        })
        .collect()
}

fn numbers(g: &Gguf, key: &str) -> Result<Vec<f64>, GgufError> {
    g.array(key)?
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::F32(x) => Ok(*x as f64),
            Value::F64(x) => Ok(*x),
            Value::I32(x) => Ok(*x as f64),
            Value::U32(x) => Ok(*x as f64),
            Value::I8(x) => Ok(*x as f64),
            Value::U8(x) => Ok(*x as f64),
            Value::I64(x) => Ok(*x as f64),
            Value::U64(x) => Ok(*x as f64),
            v => Err(g.key_err(key, format!("element {i} is not a number: {v:?}"))),
        })
        .collect()
}

/// Builds the tokenizer and chat config of a GGUF file.
pub fn from_gguf(g: &Gguf) -> Result<TextTokenizer, GgufError> {
    let tokens = strings(g, "tokenizer.ggml.tokens")?;
    let n = tokens.len();
    let types: Vec<i64> = match g.get("tokenizer.ggml.token_type") {
        Some(_) => numbers(g, "tokenizer.ggml.token_type")?
            .into_iter()
            .map(|x| x as i64)
            .collect(),
        None => vec![1; n],
    };
    if types.len() != n {
        return Err(g.key_err(
            "tokenizer.ggml.token_type",
            format!("{} entries for {n} tokens", types.len()),
        ));
    }
    let id = |key: &str| -> Result<Option<usize>, GgufError> {
        match g.opt_usize(key)? {
            Some(i) if i >= n => Err(g.key_err(key, format!("id {i} is outside the {n} tokens"))),
            x => Ok(x),
        }
    };
    let eos = id("tokenizer.ggml.eos_token_id")?
        .ok_or_else(|| g.key_err("tokenizer.ggml.eos_token_id", "missing"))?;
    let bos = id("tokenizer.ggml.bos_token_id")?;
    let unk = id("tokenizer.ggml.unknown_token_id")?;
    let kind = g.str("tokenizer.ggml.model")?;
    let mut tok = match kind {
        "gpt2" => gpt2_bpe(g, &tokens)?,
        "llama" => sentencepiece_bpe(g, &tokens, unk)?,
        other => {
            return Err(g.key_err(
                "tokenizer.ggml.model",
                format!("tokenizer kind `{other}` is not supported (supported: gpt2, llama)"),
            ));
        }
    };
    let marked = |ty: i64, special: bool| -> Vec<AddedToken> {
        tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == ty)
            .map(|(s, _)| AddedToken::from(s.clone(), special))
            .collect()
    };
    let added = tok
        .add_special_tokens(marked(CONTROL, true))
        .and_then(|_| tok.add_tokens(marked(USER_DEFINED, false)));
    added.map_err(|e| g.key_err("tokenizer.ggml.token_type", e.to_string()))?;
    let add_bos = g.bool_or("tokenizer.ggml.add_bos_token", kind == "llama")?;
    let has = |s: &str| tokens.iter().any(|t| t == s);
    let template = match g.opt_str("tokenizer.chat_template")? {
        Some(t) => t.to_string(),
        None if has("<|im_start|>") && has("<|im_end|>") => CHATML_TEMPLATE.into(),
        None if has("<start_of_turn>") && has("<end_of_turn>") => GEMMA_TEMPLATE.into(),
        None => super::tokenizer::PLAIN_CHAT_TEMPLATE.into(),
    };
    let end_of_turn = ["<|im_end|>", "<end_of_turn>", "<|eot_id|>"]
        .into_iter()
        .find(|m| template.contains(m) && has(m) && tokens[eos] != *m)
        .map(String::from);
    let chat = ChatConfig {
        chat_template: template,
        eos_token: tokens[eos].clone(),
        end_of_turn,
        bos_token: bos.filter(|_| add_bos).map(|b| tokens[b].clone()),
    };
    TextTokenizer::new(tok, chat).map_err(|e| g.key_err("tokenizer.ggml.tokens", e.to_string()))
}

fn vocab_of(g: &Gguf, tokens: &[String]) -> Result<Vocab, GgufError> {
    let mut vocab = Vocab::default();
    for (i, t) in tokens.iter().enumerate() {
        if vocab.insert(t.clone(), i as u32).is_some() {
            return Err(g.key_err(
                "tokenizer.ggml.tokens",
                format!("token `{t}` appears twice"),
            ));
        }
    }
    Ok(vocab)
}

fn gpt2_bpe(g: &Gguf, tokens: &[String]) -> Result<Tokenizer, GgufError> {
    let key = "tokenizer.ggml.merges";
    let merges: Vec<(String, String)> = strings(g, key)?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| g.key_err(key, format!("merge {i} `{m}` has no space")))
        })
        .collect::<Result<_, _>>()?;
    let bpe = BPE::builder()
        .vocab_and_merges(vocab_of(g, tokens)?, merges)
        .build()
        .map_err(|e| g.key_err(key, e.to_string()))?;
    let pre_key = "tokenizer.ggml.pre";
    let pre = g.opt_str(pre_key)?.unwrap_or("gpt2");
    let byte_level = ByteLevel::new(false, true, true);
    let pre_tok: PreTokenizerWrapper = match pre {
        "smollm" => Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ])
        .into(),
        "gpt2" => byte_level.into(),
        other => {
            return Err(g.key_err(
                pre_key,
                format!(
                    "pre-tokenizer `{other}` is not supported (supported: {})",
                    SUPPORTED_PRE.join(", ")
                ),
            ));
        }
    };
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(pre_tok));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    Ok(tok)
}

/// SentencePiece-BPE as a `tokenizers` BPE: every token that splits into
/// two tokens gives a merge, ranked by the merged token's score (higher
/// first), so BPE's lowest-rank-first merging picks the same pairs as
/// SentencePiece's highest-score-first merging.
fn sentencepiece_bpe(
    g: &Gguf,
    tokens: &[String],
    unk: Option<usize>,
) -> Result<Tokenizer, GgufError> {
    let key = "tokenizer.ggml.scores";
    let scores = numbers(g, key)?;
    if scores.len() != tokens.len() {
        return Err(g.key_err(
            key,
            format!("{} scores for {} tokens", scores.len(), tokens.len()),
        ));
    }
    let vocab = vocab_of(g, tokens)?;
    let mut ranked: Vec<(f64, u32, u32, String, String)> = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        for (cut, _) in t.char_indices().skip(1) {
            let (a, b) = t.split_at(cut);
            if let (Some(&ia), Some(&ib)) = (vocab.get(a), vocab.get(b)) {
                ranked.push((scores[i], ia, ib, a.to_string(), b.to_string()));
            }
        }
    }
    // Highest score first; ties by the ids of the parts, as HF's converter.
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let merges: Vec<(String, String)> = ranked.into_iter().map(|r| (r.3, r.4)).collect();
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(u) = unk {
        builder = builder.unk_token(tokens[u].clone());
    }
    let bpe = builder.build().map_err(|e| g.key_err(key, e.to_string()))?;
    let mut tok = Tokenizer::new(bpe);
    let space: NormalizerWrapper = Replace::new(" ", "▁")
        .map_err(|e| g.key_err(key, e.to_string()))?
        .into();
    tok.with_normalizer(Some(space))
        .map_err(|e| g.key_err(key, e.to_string()))?;
    if g.bool_or("tokenizer.ggml.add_space_prefix", false)? {
        return Err(g.key_err(
            "tokenizer.ggml.add_space_prefix",
            "a prefix space for SentencePiece tokenizers is not supported",
        ));
    }
    let decoder = DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new("▁", " ").map_err(|e| g.key_err(key, e.to_string()))?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ]);
    tok.with_decoder(Some(decoder));
    Ok(tok)
}
