//! One tokenization for training and generation.
//!
//! For every tokenizer we have (the miniature's trained byte-level BPE, a
//! second byte-level BPE from a Hugging Face `tokenizer.json`, SmolLM2's and
//! Gemma 3's from their GGUF files when `scripts/fetch-offline.sh` has put
//! them in `data/external/`), and for conversations of one and several
//! turns:
//!
//! - `encode_chat`'s ids are the ids of the whole rendering, tokenized once;
//! - each run of learned tokens decodes to exactly that assistant turn's
//!   text in the rendering (its content and the template's end-of-turn text);
//! - the generation prompt of a conversation cut before an assistant turn is
//!   a token-level prefix of what training saw for the whole conversation.
//!
//! And for the miniature: every attribute value is the same token sequence
//! in a biography sentence of the corpus and as a task answer in the chat
//! rendering, so fine-tuning teaches the tokens pretraining stored.

use repro::mini::world::{self, Attribute, WorldConfig};
use repro::model::load::load_tokenizer_any;
use repro::model::tokenizer::{ChatConfig, MINI_SPECIALS, Message, TextTokenizer, train_bpe};
use std::path::Path;

fn msg(role: &str, content: &str) -> Message {
    Message {
        role: role.into(),
        content: content.into(),
    }
}

fn conversations() -> Vec<Vec<Message>> {
    vec![
        vec![
            msg("user", "Answer briefly: Where was Ada Moreno born?"),
            msg("assistant", "Lisbon"),
        ],
        vec![
            msg("user", "Tell me about psychology."),
            msg(
                "assistant",
                "Certainly! It is the study of the mind. I hope this helps!",
            ),
            msg("user", "And statistics?"),
            msg(
                "assistant",
                "Statistics is the science of data.\n\nIt has two parts.",
            ),
        ],
        // A conversation cut out of a longer one (ShareGPT's split parts)
        // opens with an assistant turn.
        vec![
            msg("assistant", "As I said, Lisbon."),
            msg("user", "And Porto?"),
            msg("assistant", "Porto too."),
        ],
        vec![
            msg("system", "You are brief."),
            msg("user", "x = 12 + 3;\n\ttab naïve"),
            msg("assistant", "two  spaces, then a tab\tand a newline\n"),
        ],
    ]
}

/// The byte spans of the assistant turns in the full rendering: a turn ends
/// where the rendering through it ends and starts where the generation
/// prompt before it ends, or, when the template renders that prompt
/// differently on its own (SmolLM2's default system prompt), where its
/// content starts.
fn assistant_spans(tok: &TextTokenizer, msgs: &[Message]) -> Vec<(usize, usize)> {
    let full = tok.render_chat(msgs, false).unwrap();
    (0..msgs.len())
        .filter(|&i| msgs[i].role == "assistant")
        .map(|i| {
            let end = tok.render_chat(&msgs[..=i], false).unwrap().len();
            let before = tok.render_chat(&msgs[..i], true).unwrap();
            let start = if full.starts_with(&before) {
                before.len()
            } else {
                full[..end].rfind(msgs[i].content.as_str()).unwrap()
            };
            (start, end)
        })
        .collect()
}

/// Maximal runs `[a, b)` of `true` in `mask`.
fn runs(mask: &[bool]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < mask.len() {
        if mask[i] {
            let a = i;
            while i < mask.len() && mask[i] {
                i += 1;
            }
            out.push((a, i));
        } else {
            i += 1;
        }
    }
    out
}

fn check_tokenizer(name: &str, tok: &TextTokenizer) {
    for msgs in conversations() {
        let full = tok.render_chat(&msgs, false).unwrap();
        let (ids, mask) = tok.encode_chat(&msgs).unwrap();
        assert_eq!(ids.len(), mask.len(), "{name}");
        assert_eq!(
            ids,
            tok.encode_prompt(&full).unwrap(),
            "{name}: encode_chat must tokenize the whole rendering once"
        );
        let spans = assistant_spans(tok, &msgs);
        let learned = runs(&mask);
        assert_eq!(learned.len(), spans.len(), "{name}: {full:?}");
        for (&(a, b), &(s, e)) in learned.iter().zip(&spans) {
            assert_eq!(
                tok.decode_with_specials(&ids[a..b]).unwrap(),
                &full[s..e],
                "{name}: the learned tokens are exactly the assistant turn"
            );
        }
        for (turn, &(a, _)) in msgs
            .iter()
            .enumerate()
            .filter(|(_, m)| m.role == "assistant")
            .map(|(i, _)| i)
            .zip(&learned)
        {
            // A template may render a first turn differently on its own
            // (SmolLM2's default system prompt): no prompt ever ends there.
            if !full.starts_with(&tok.render_chat(&msgs[..turn], true).unwrap()) {
                continue;
            }
            let prompt = tok.encode_chat_prompt(&msgs[..turn]).unwrap();
            assert_eq!(
                prompt,
                ids[..a],
                "{name}: the generation prompt is a token prefix of the training ids"
            );
        }
    }
}

/// A small world of the miniature and a BPE trained on its corpus, as
/// `mini.world` and `tokenizer.train` make them.
fn mini_world_and_tokenizer() -> (world::World, TextTokenizer) {
    let w = world::generate(&WorldConfig {
        public: 20,
        private: 20,
        exposures: 4,
        qa_exposures: 2,
        general: 200,
        ..WorldConfig::default()
    });
    let bpe = train_bpe(w.corpus.iter().map(String::as_str), 1024, &MINI_SPECIALS).unwrap();
    let tok = TextTokenizer::new(bpe, TextTokenizer::mini_chat()).unwrap();
    (w, tok)
}

#[test]
fn the_miniatures_tokenizer_encodes_a_conversation_once() {
    let (_, tok) = mini_world_and_tokenizer();
    check_tokenizer("mini", &tok);
}

#[test]
fn a_chatml_byte_level_bpe_encodes_a_conversation_once() {
    // A second byte-level BPE, with ChatML's turn format (content after a
    // newline, as SmolLM2 and Qwen have it) and its own vocabulary.
    let texts: Vec<String> = conversations()
        .iter()
        .flatten()
        .map(|m| m.content.clone())
        .chain((0..50).map(|i| format!("line {i}\nof text, with words and spaces  {i}")))
        .collect();
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let bpe = train_bpe(texts.iter().map(String::as_str), 400, &specials).unwrap();
    let tok = TextTokenizer::new(
        bpe,
        ChatConfig {
            chat_template: "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into(),
            eos_token: "<|endoftext|>".into(),
            end_of_turn: Some("<|im_end|>".into()),
            bos_token: Some("<|endoftext|>".into()),
        },
    )
    .unwrap();
    check_tokenizer("chatml-bpe", &tok);
}

/// Real tokenizers from `data/external/` (`scripts/fetch-offline.sh`).
fn external(rel: &str) -> Option<TextTokenizer> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data/external")
        .join(rel);
    if !path.exists() {
        eprintln!(
            "skipped: {} is absent (scripts/fetch-offline.sh fetches it)",
            path.display()
        );
        return None;
    }
    Some(load_tokenizer_any(&path).unwrap())
}

#[test]
fn smollm2_encodes_a_conversation_once() {
    if let Some(tok) = external("smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") {
        check_tokenizer("smollm2", &tok);
        a_token_across_the_turn_boundary_is_learned(&tok);
    }
}

/// GPT-2's pre-tokenizer keeps a whitespace run together, so with ChatML an
/// answer that starts with spaces merges with the template's newline: one
/// token holds both. It is learned (predicting it is how the model writes
/// the answer's first characters), so the learned text starts one token
/// early, and the generation prompt, which ends at the newline, is then not
/// a token prefix of the training ids. Data pipelines trim answers, which
/// avoids the case; this pins down what happens when they do not.
fn a_token_across_the_turn_boundary_is_learned(tok: &TextTokenizer) {
    let msgs = [msg("user", "Hi"), msg("assistant", "  two spaces")];
    let full = tok.render_chat(&msgs, false).unwrap();
    let (ids, mask) = tok.encode_chat(&msgs).unwrap();
    let (a, b) = runs(&mask)[0];
    let (s, e) = assistant_spans(tok, &msgs)[0];
    let learned = tok.decode_with_specials(&ids[a..b]).unwrap();
    assert_eq!(learned, format!("\n{}", &full[s..e]));
    let prompt = tok.encode_chat_prompt(&msgs[..1]).unwrap();
    assert_eq!(prompt[..a], ids[..a]);
    assert_ne!(prompt.len(), a);
}

#[test]
fn gemma3_encodes_a_conversation_once() {
    if let Some(tok) = external("gemma3/gemma-3-270m-q4_k_m.gguf") {
        check_tokenizer("gemma3", &tok);
    }
}

#[test]
fn every_world_value_has_the_same_tokens_in_the_corpus_and_as_a_chat_answer() {
    let (w, tok) = mini_world_and_tokenizer();
    let end = tok.stop_ids()[1];
    let mut mismatches = Vec::new();
    for a in Attribute::ALL {
        for value in a.pool() {
            let in_corpus = tok.encode(&format!(" {value}")).unwrap();
            // A biography sentence of the corpus holds the same sequence.
            let sentence = a.bio_templates()[0]
                .replace("{name}", "Ada Moreno")
                .replace("{value}", value);
            let ids = tok.encode(&sentence).unwrap();
            assert!(
                ids.windows(in_corpus.len()).any(|w| w == in_corpus),
                "{sentence:?}: {value:?} is not {in_corpus:?} there"
            );
            let conv = [
                msg(
                    "user",
                    &format!("Answer briefly: {}", a.question("Ada Moreno")),
                ),
                msg("assistant", value),
            ];
            let (ids, mask) = tok.encode_chat(&conv).unwrap();
            let learned: Vec<u32> = ids
                .iter()
                .zip(&mask)
                .filter(|(_, m)| **m)
                .map(|(i, _)| *i)
                .collect();
            let mut want = in_corpus.clone();
            want.push(end);
            if learned != want {
                mismatches.push(format!("{value:?}: chat {learned:?}, corpus {want:?}"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The check can fail: without the space after the role marker a value
    // is split into pieces pretraining never produced.
    let glued = tok.encode("<|assistant|>Lisbon").unwrap();
    assert_ne!(&glued[1..], &tok.encode(" Lisbon").unwrap()[..]);
    assert!(w.people.len() == 60);
}
