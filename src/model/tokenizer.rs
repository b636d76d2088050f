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

/// A plain chat template for base models whose tokenizer has none (GPT-2,
/// base LLaMA): `User: ...` / `Assistant: ...` turns, each assistant turn
/// closed by the end-of-document token, which generation stops at.
pub const PLAIN_CHAT_TEMPLATE: &str = "{% for m in messages %}{% if m.role == 'system' %}{{ m.content }}\n\n{% elif m.role == 'user' %}User: {{ m.content }}\n{% else %}Assistant: {{ m.content }}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}";

/// End of a pretraining document.
pub const EOS: &str = "<|endoftext|>";
/// The miniature's chat template (ChatML-like, with our own markers). A
/// space separates a role marker from the content, so the first word of a
/// turn is tokenized as in running text (` Lisbon`, as pretraining saw it,
/// not `L` `isbon`); the generation prompt ends at the marker, so the
/// model's first generated token carries that space, as in training.
pub const MINI_CHAT_TEMPLATE: &str = "{% for m in messages %}<|{{ m.role }}|> {{ m.content }}<|end|>{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
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
        if let Some(id) = self.missing_bos(text) {
            ids.insert(0, id);
        }
        Ok(ids)
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokError> {
        self.inner.decode(ids, true).map_err(terr)
    }

    /// Text of `ids` with special tokens kept (`<|end|>` stays in the text).
    pub fn decode_with_specials(&self, ids: &[u32]) -> Result<String, TokError> {
        self.inner.decode(ids, false).map_err(terr)
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
    /// tokens supervised fine-tuning learns.
    ///
    /// The conversation is rendered once and the whole rendering is
    /// tokenized once, so every token is the one the model sees in context
    /// (a byte-level BPE or SentencePiece merges across a turn boundary
    /// differently when a turn is tokenized on its own). Each assistant
    /// turn's byte span is found by rendering the conversation up to it
    /// (with the generation prompt) and through it, so any chat template
    /// works; a token is learned when its byte offsets overlap such a span
    /// (a token that straddles the start of a turn, such as GPT-2's `\n `
    /// before an answer that starts with a space, is learned: predicting it
    /// is how the model writes the answer's first characters).
    /// The model's beginning-of-sequence token is put first exactly as
    /// [`TextTokenizer::encode_prompt`] does, so the prompt of
    /// [`TextTokenizer::encode_chat_prompt`] is a token-level prefix of what
    /// training saw for the same conversation.
    pub fn encode_chat(&self, messages: &[Message]) -> Result<(Vec<u32>, Vec<bool>), TokError> {
        let full = self.render_chat(messages, false)?;
        let spans = self.assistant_spans(messages, &full)?;
        let enc = self.inner.encode(full.as_str(), false).map_err(terr)?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        let mut mask = Vec::with_capacity(ids.capacity());
        if let Some(bos) = self.missing_bos(&full) {
            ids.push(bos);
            mask.push(false);
        }
        for (&id, &(a, b)) in enc.get_ids().iter().zip(enc.get_offsets()) {
            ids.push(id);
            mask.push(spans.iter().any(|&(s, e)| a < e && b > s));
        }
        Ok((ids, mask))
    }

    /// Token ids of the generation prompt of a conversation: the rendering
    /// with the template's generation prompt, tokenized once, with the
    /// beginning-of-sequence token as in [`TextTokenizer::encode_prompt`].
    pub fn encode_chat_prompt(&self, messages: &[Message]) -> Result<Vec<u32>, TokError> {
        self.encode_prompt(&self.render_chat(messages, true)?)
    }

    /// The id of the beginning-of-sequence token when the model uses one and
    /// `text` does not already start with it.
    fn missing_bos(&self, text: &str) -> Option<u32> {
        let bos = self.chat.bos_token.as_deref()?;
        if text.starts_with(bos) {
            return None;
        }
        self.inner.token_to_id(bos)
    }

    /// Byte spans `[start, end)` of the assistant turns in `full`, the
    /// rendering of `messages`. A turn starts where the rendering up to it
    /// with the generation prompt ends; templates that render the first turn
    /// differently when it is alone (SmolLM2 adds its default system prompt
    /// only when there is a first message that is not a system message, so
    /// a conversation that opens with an assistant turn has none before it)
    /// are handled by finding the generation prompt in `full` after the
    /// previous turn. An error when neither works.
    fn assistant_spans(
        &self,
        messages: &[Message],
        full: &str,
    ) -> Result<Vec<(usize, usize)>, TokError> {
        let mut spans = Vec::new();
        let mut done = 0usize;
        for (i, m) in messages.iter().enumerate() {
            if m.role != "assistant" {
                continue;
            }
            let through = self.render_chat(&messages[..=i], false)?;
            let start = self.turn_start(&messages[..i], full, done)?;
            let end = through.len();
            if !full.starts_with(through.as_str()) || end < start {
                return Err(TokError(format!(
                    "the chat template does not render turns as prefixes of the conversation \
                     (assistant turn {} of {})",
                    i + 1,
                    messages.len()
                )));
            }
            spans.push((start, end));
            done = end;
        }
        Ok(spans)
    }

    /// Where the assistant turn after `history` starts in `full`, searching
    /// from byte `from` when the rendering of `history` with the generation
    /// prompt is not a prefix of `full`.
    fn turn_start(&self, history: &[Message], full: &str, from: usize) -> Result<usize, TokError> {
        let before = self.render_chat(history, true)?;
        if full.starts_with(before.as_str()) {
            return Ok(before.len());
        }
        let plain = self.render_chat(history, false)?;
        let prompt = before.strip_prefix(plain.as_str()).unwrap_or(&before);
        match full.get(from..).and_then(|rest| rest.find(prompt)) {
            Some(at) if !prompt.is_empty() => Ok(from + at + prompt.len()),
            _ => Err(TokError(
                "the chat template does not render turns as prefixes of the conversation".into(),
            )),
        }
    }
}
