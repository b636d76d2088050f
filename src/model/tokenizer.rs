//! Tokenizers through the `tokenizers` crate, and chat formatting.
//!
//! A [`TextTokenizer`] is a `tokenizer.json` (Hugging Face format) plus the
//! chat template and special tokens of `tokenizer_config.json`. The miniature
//! trains its own byte-level BPE ([`train_bpe`]) on the pretraining corpus;
//! real checkpoints bring theirs. Chat templates are minijinja renderings of
//! the HF Jinja templates, so the same code formats both.

use serde::{Deserialize, Serialize};
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer, TokenizerImpl};

/// End of a pretraining document.
pub const EOS: &str = "<|endoftext|>";
/// The miniature's chat template (ChatML-like, with our own markers).
pub const MINI_CHAT_TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
/// Special tokens of the miniature's tokenizer.
pub const MINI_SPECIALS: [&str; 5] = [EOS, "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"];

/// A tokenizer error (wrapped into op errors by callers).
#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokError(pub String);

fn terr(e: impl std::fmt::Display) -> TokError {
    TokError(e.to_string())
}

/// The chat part of `tokenizer_config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChatConfig {
    /// Jinja chat template (`messages`, `add_generation_prompt`, `bos_token`, `eos_token`).
    pub chat_template: String,
    /// Token that ends a pretraining document.
    pub eos_token: String,
    /// Token that ends an assistant turn (generation stops there).
    #[serde(default)]
    pub end_of_turn: Option<String>,
    /// Token put before every sequence, if the model uses one.
    #[serde(default)]
    pub bos_token: Option<String>,
}

/// One chat message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A tokenizer with its chat template.
pub struct TextTokenizer {
    inner: Tokenizer,
    chat: ChatConfig,
    eos_id: u32,
    end_id: Option<u32>,
}

/// Trains a byte-level BPE of `vocab_size` tokens (specials included) on
/// `texts`. Deterministic for the same texts.
pub fn train_bpe<'a>(
    texts: impl Iterator<Item = &'a str> + Send,
    vocab_size: usize,
    specials: &[&str],
) -> Result<Tokenizer, TokError> {
    let mut tk: TokenizerImpl<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerImpl::new(BPE::default());
    tk.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tk.with_decoder(Some(ByteLevel::default()));
    let special: Vec<AddedToken> = specials
        .iter()
        .map(|s| AddedToken::from(s.to_string(), true))
        .collect();
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(special.clone())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    tk.train(&mut trainer, texts).map_err(terr)?;
    let mut tok = Tokenizer::from(tk);
    tok.add_special_tokens(special).map_err(terr)?;
    Ok(tok)
}

impl TextTokenizer {
    /// Wraps a tokenizer and its chat config; fails if the special tokens
    /// are not in the vocabulary.
    pub fn new(inner: Tokenizer, chat: ChatConfig) -> Result<Self, TokError> {
        let eos_id = inner.token_to_id(&chat.eos_token).ok_or_else(|| {
            TokError(format!(
                "eos token `{}` is not in the vocabulary",
                chat.eos_token
            ))
        })?;
        let end_id = match &chat.end_of_turn {
            Some(t) => Some(inner.token_to_id(t).ok_or_else(|| {
                TokError(format!("end-of-turn token `{t}` is not in the vocabulary"))
            })?),
            None => None,
        };
        Ok(TextTokenizer {
            inner,
            chat,
            eos_id,
            end_id,
        })
    }

    /// The miniature's chat config.
    pub fn mini_chat() -> ChatConfig {
        ChatConfig {
            chat_template: MINI_CHAT_TEMPLATE.into(),
            eos_token: EOS.into(),
            end_of_turn: Some("<|end|>".into()),
            bos_token: None,
        }
    }

    /// Loads `tokenizer.json` and `tokenizer_config.json` from a directory.
    pub fn load_dir(dir: &Path) -> Result<Self, TokError> {
        let inner = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| TokError(format!("{}: {e}", dir.join("tokenizer.json").display())))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| TokError(format!("{}: {e}", cfg_path.display())))?;
        let chat: ChatConfig = serde_json::from_str(&text)
            .map_err(|e| TokError(format!("{}: {e}", cfg_path.display())))?;
        Self::new(inner, chat)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir`.
    pub fn save_dir(&self, dir: &Path) -> Result<(), TokError> {
        self.inner
            .save(dir.join("tokenizer.json"), false)
            .map_err(terr)?;
        let text = serde_json::to_string_pretty(&self.chat).map_err(terr)?;
        std::fs::write(dir.join("tokenizer_config.json"), text + "\n").map_err(terr)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of the end-of-document token.
    pub fn eos_id(&self) -> u32 {
        self.eos_id
    }

    /// Ids at which generation stops (end of turn and end of document).
    pub fn stop_ids(&self) -> Vec<u32> {
        let mut v = vec![self.eos_id];
        v.extend(self.end_id);
        v
    }

    /// Token ids of `text` (special tokens in the text are recognised).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokError> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(terr)?
            .get_ids()
            .to_vec())
    }

    /// Token ids of a raw prompt: [`TextTokenizer::encode`] with the
    /// model's beginning-of-sequence token put first when it uses one
    /// (`bos_token` set, e.g. LLaMA and Gemma) and the text does not already
    /// start with it (a rendered chat template usually does).
    pub fn encode_prompt(&self, text: &str) -> Result<Vec<u32>, TokError> {
        let mut ids = self.encode(text)?;
        if let Some(bos) = &self.chat.bos_token
            && !text.starts_with(bos.as_str())
            && let Some(id) = self.inner.token_to_id(bos)
        {
            ids.insert(0, id);
        }
        Ok(ids)
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokError> {
        self.inner.decode(ids, true).map_err(terr)
    }

    /// Renders `messages` with the chat template.
    pub fn render_chat(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TokError> {
        let mut env = minijinja::Environment::new();
        env.add_template("chat", &self.chat.chat_template)
            .map_err(|e| TokError(format!("chat template: {e}")))?;
        let tmpl = env.get_template("chat").map_err(terr)?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.chat.bos_token.clone().unwrap_or_default(),
            eos_token => self.chat.eos_token.clone(),
        })
        .map_err(|e| TokError(format!("chat template: {e}")))
    }

    /// Token ids of a conversation with a learn mask: `true` on the tokens
    /// of assistant turns (content and the template's end-of-turn text), the
    /// tokens supervised fine-tuning learns. Each assistant turn's span is
    /// found by rendering the conversation up to it (with the generation
    /// prompt) and through it, so any chat template works.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<(Vec<u32>, Vec<bool>), TokError> {
        let mut ids = Vec::new();
        let mut mask = Vec::new();
        let mut done = 0usize; // bytes of the full rendering already encoded
        let full = self.render_chat(messages, false)?;
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let start = self.render_chat(&messages[..i], true)?.len();
            let end = self.render_chat(&messages[..=i], false)?.len();
            if start < done
                || end < start
                || end > full.len()
                || !full.is_char_boundary(start)
                || !full.is_char_boundary(end)
            {
                return Err(TokError(
                    "the chat template does not render turns as prefixes of the conversation"
                        .into(),
                ));
            }
            let before = self.encode(&full[done..start])?;
            mask.extend(std::iter::repeat_n(false, before.len()));
            ids.extend(before);
            let turn = self.encode(&full[start..end])?;
            mask.extend(std::iter::repeat_n(true, turn.len()));
            ids.extend(turn);
            done = end;
        }
        let rest = self.encode(&full[done..])?;
        mask.extend(std::iter::repeat_n(false, rest.len()));
        ids.extend(rest);
        Ok((ids, mask))
    }
}
