//! The normalized chat record and the cleaning every chat loader applies.
//!
//! Format: one JSON object per line,
//! `{"id": str, "source": str, "messages": [{"role": "user"|"assistant"|"system", "content": str}]}`
//! (the `messages` shape `lm.finetune` reads).
//!
//! Roles ([`map_role`], case-insensitive): `human`/`user` -> `user`;
//! `gpt`/`chatgpt`/`assistant` -> `assistant`; `system` -> `system`;
//! `bing`/`bard` are other chatbots, not ChatGPT: a conversation holding
//! any such turn is dropped whole (imitation data must come from the
//! imitated model) unless `keep_non_chatgpt` maps them to `assistant`. Any
//! other role is an error naming the record and key.
//!
//! [`Cleaner::push`] applies, in this order, each conversation landing in at
//! most one drop count (so `records_read` = `empty_conversations` +
//! `non_chatgpt_dropped` + `no_assistant_dropped` + `duplicates_dropped` +
//! `kept`):
//!
//! 1. `empty_conversations`: no turn at all in the source;
//! 2. `non_chatgpt_dropped`: a `bing`/`bard` turn (see above);
//! 3. `empty_turns_dropped` (turns, not conversations): content empty after
//!    trimming whitespace; `banner_turns_dropped` (turns): with
//!    `drop_banners`, a `system` turn that is a share tool's banner, not a
//!    prompt (content starting with [`BANNERS`], e.g. ShareGPT's
//!    "*This conversation is shared from [**ChatHub**](...)*": all 41 system
//!    turns of the ShareGPT wheel file are such banners);
//! 4. `turns_merged` (turns): with `merge_consecutive`, a turn with the same
//!    role as the one before it is appended to it (joined by a blank line);
//! 5. `no_assistant_dropped`: no assistant turn left;
//! 6. `duplicates_dropped`: with `dedup`, a conversation whose content hash
//!    equals an earlier kept one's. The hash is blake3 over the sequence of
//!    (role, content with ASCII whitespace runs collapsed to one space and
//!    trimmed):
//!    exact, case-sensitive duplicates up to whitespace. The first occurrence
//!    (input order) is kept.
//!
//! Content is otherwise written unchanged (no trimming, no HTML clean-up).

use crate::model::tokenizer::Message;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};

/// One normalized conversation.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatRecord {
    /// Id from the source (not necessarily unique: see `repeated_ids`).
    pub id: String,
    /// The source's name (e.g. `sharegpt`).
    pub source: String,
    /// The turns.
    pub messages: Vec<Message>,
}

/// What a source role becomes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RoleClass {
    /// One of `user`, `assistant`, `system`.
    Keep(&'static str),
    /// A turn of another chatbot (`bing`, `bard`).
    NonChatGpt,
}

/// Maps a source role name (case-insensitive); `None` for an unknown role.
pub fn map_role(name: &str) -> Option<RoleClass> {
    match name.to_ascii_lowercase().as_str() {
        "human" | "user" => Some(RoleClass::Keep("user")),
        "gpt" | "chatgpt" | "assistant" => Some(RoleClass::Keep("assistant")),
        "system" => Some(RoleClass::Keep("system")),
        "bing" | "bard" => Some(RoleClass::NonChatGpt),
        _ => None,
    }
}

/// The cleaning options.
#[derive(Debug, Clone, Copy)]
pub struct CleanConfig {
    /// Merge consecutive turns of one role.
    pub merge_consecutive: bool,
    /// Drop exact duplicate conversations.
    pub dedup: bool,
    /// Keep `bing`/`bard` turns as `assistant` instead of dropping the conversation.
    pub keep_non_chatgpt: bool,
    /// Drop `system` turns that are share-tool banners ([`BANNERS`]).
    pub drop_banners: bool,
}

/// Starts of the share-tool banners [`CleanConfig::drop_banners`] drops
/// (`system` turns only, after trimming).
pub const BANNERS: &[&str] = &[
    "*This conversation is shared from",
    "*This chat conversation is shared from",
];

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig {
            merge_consecutive: true,
            dedup: true,
            keep_non_chatgpt: false,
            drop_banners: true,
        }
    }
}

/// The counts of every filter (see the module doc).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CleanStats {
    /// Conversations given to the cleaner.
    pub records_read: u64,
    /// Conversations without any turn.
    pub empty_conversations: u64,
    /// Conversations with a bing/bard turn, dropped.
    pub non_chatgpt_dropped: u64,
    /// Turns whose content was empty after trimming, dropped.
    pub empty_turns_dropped: u64,
    /// System turns that were share-tool banners, dropped.
    pub banner_turns_dropped: u64,
    /// Turns appended to the previous turn of the same role.
    pub turns_merged: u64,
    /// Conversations left without an assistant turn, dropped.
    pub no_assistant_dropped: u64,
    /// Exact duplicate conversations, dropped.
    pub duplicates_dropped: u64,
    /// Conversations kept.
    pub kept: u64,
    /// Kept conversations whose id an earlier kept one already had.
    pub repeated_ids: u64,
    /// Turns read, per source role name (lowercased).
    pub source_roles: BTreeMap<String, u64>,
    /// Turns kept, per normalized role.
    pub kept_roles: BTreeMap<String, u64>,
    /// Characters (Unicode scalar values) of kept content.
    pub characters: u64,
    /// Characters of kept assistant content.
    pub assistant_characters: u64,
}

impl CleanStats {
    /// The counts as a flat JSON object (`role_<name>` per source role,
    /// `turns_<role>` per kept role).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        for (k, v) in [
            ("records_read", self.records_read),
            ("empty_conversations", self.empty_conversations),
            ("non_chatgpt_dropped", self.non_chatgpt_dropped),
            ("empty_turns_dropped", self.empty_turns_dropped),
            ("banner_turns_dropped", self.banner_turns_dropped),
            ("turns_merged", self.turns_merged),
            ("no_assistant_dropped", self.no_assistant_dropped),
            ("duplicates_dropped", self.duplicates_dropped),
            ("kept", self.kept),
            ("repeated_ids", self.repeated_ids),
            ("turns", self.kept_roles.values().sum()),
            ("characters", self.characters),
            ("assistant_characters", self.assistant_characters),
        ] {
            m.insert(k.into(), json!(v));
        }
        for (r, n) in &self.source_roles {
            m.insert(format!("role_{r}"), json!(n));
        }
        for (r, n) in &self.kept_roles {
            m.insert(format!("turns_{r}"), json!(n));
        }
        m
    }
}

/// An unknown role at turn `index` of a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct UnknownRole {
    /// 0-based turn index.
    pub index: usize,
    /// The role as written.
    pub role: String,
}

/// The cleaning pipeline with its running counts and duplicate memory.
#[derive(Debug, Default)]
pub struct Cleaner {
    cfg: CleanConfig,
    /// The counts so far.
    pub stats: CleanStats,
    seen: HashSet<[u8; 32]>,
    ids: HashSet<String>,
}

impl Cleaner {
    /// A cleaner with these options.
    pub fn new(cfg: CleanConfig) -> Self {
        Cleaner {
            cfg,
            ..Cleaner::default()
        }
    }

    /// Cleans one conversation given as (source role, content) turns; returns
    /// the record to keep, `None` when a filter dropped it, or the first
    /// unknown role (nothing is counted then).
    pub fn push(
        &mut self,
        id: &str,
        source: &str,
        turns: Vec<(String, String)>,
    ) -> Result<Option<ChatRecord>, UnknownRole> {
        let mut classes = Vec::with_capacity(turns.len());
        for (index, (role, _)) in turns.iter().enumerate() {
            match map_role(role) {
                Some(c) => classes.push(c),
                None => {
                    return Err(UnknownRole {
                        index,
                        role: role.clone(),
                    });
                }
            }
        }
        let st = &mut self.stats;
        st.records_read += 1;
        for (role, _) in &turns {
            *st.source_roles
                .entry(role.to_ascii_lowercase())
                .or_default() += 1;
        }
        if turns.is_empty() {
            st.empty_conversations += 1;
            return Ok(None);
        }
        if !self.cfg.keep_non_chatgpt && classes.contains(&RoleClass::NonChatGpt) {
            st.non_chatgpt_dropped += 1;
            return Ok(None);
        }
        let mut messages: Vec<Message> = Vec::with_capacity(turns.len());
        for ((_, content), class) in turns.into_iter().zip(classes) {
            let role = match class {
                RoleClass::Keep(r) => r,
                RoleClass::NonChatGpt => "assistant",
            };
            if content.trim().is_empty() {
                st.empty_turns_dropped += 1;
                continue;
            }
            if self.cfg.drop_banners
                && role == "system"
                && BANNERS.iter().any(|b| content.trim_start().starts_with(b))
            {
                st.banner_turns_dropped += 1;
                continue;
            }
            match messages.last_mut() {
                Some(last) if self.cfg.merge_consecutive && last.role == role => {
                    last.content.push_str("\n\n");
                    last.content.push_str(&content);
                    st.turns_merged += 1;
                }
                _ => messages.push(Message {
                    role: role.to_string(),
                    content,
                }),
            }
        }
        if !messages.iter().any(|m| m.role == "assistant") {
            st.no_assistant_dropped += 1;
            return Ok(None);
        }
        if self.cfg.dedup && !self.seen.insert(content_hash(&messages)) {
            st.duplicates_dropped += 1;
            return Ok(None);
        }
        st.kept += 1;
        if !self.ids.insert(id.to_string()) {
            st.repeated_ids += 1;
        }
        for m in &messages {
            let n = m.content.chars().count() as u64;
            *st.kept_roles.entry(m.role.clone()).or_default() += 1;
            st.characters += n;
            if m.role == "assistant" {
                st.assistant_characters += n;
            }
        }
        Ok(Some(ChatRecord {
            id: id.to_string(),
            source: source.to_string(),
            messages,
        }))
    }
}

/// The duplicate key of a conversation: blake3 over its (role, content with
/// ASCII whitespace runs collapsed to one space and trimmed) sequence.
pub fn content_hash(messages: &[Message]) -> [u8; 32] {
    let total: usize = messages
        .iter()
        .map(|m| m.role.len() + m.content.len() + 2)
        .sum();
    let mut buf: Vec<u8> = Vec::with_capacity(total);
    for m in messages {
        buf.extend_from_slice(m.role.as_bytes());
        buf.push(0);
        let words = m.content.as_bytes().split(u8::is_ascii_whitespace);
        for (k, w) in words.filter(|w| !w.is_empty()).enumerate() {
            if k > 0 {
                buf.push(b' ');
            }
            buf.extend_from_slice(w);
        }
        buf.push(0x1e);
    }
    *blake3::hash(&buf).as_bytes()
}

/// Checks a normalized record read back (e.g. by `data.mix`): roles in
/// `user`/`assistant`/`system`, at least one assistant turn. `Err(key, message)`.
pub fn validate(messages: &[Message]) -> Result<(), (String, String)> {
    for (i, m) in messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "user" | "assistant" | "system") {
            return Err((
                format!("messages[{i}].role"),
                format!("role must be user, assistant or system, found `{}`", m.role),
            ));
        }
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(("messages".into(), "no assistant turn".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(r: &str, c: &str) -> (String, String) {
        (r.to_string(), c.to_string())
    }

    #[test]
    fn content_hash_ignores_whitespace_runs_only() {
        let m = |r: &str, c: &str| Message {
            role: r.into(),
            content: c.into(),
        };
        let h = |v: &[Message]| content_hash(v);
        assert_eq!(h(&[m("user", " a  b\n")]), h(&[m("user", "a b")]));
        assert_ne!(h(&[m("user", "ab")]), h(&[m("user", "a b")]));
        assert_ne!(h(&[m("user", "a")]), h(&[m("assistant", "a")]));
        assert_ne!(h(&[m("user", "a"), m("user", "b")]), h(&[m("user", "a b")]));
        assert_ne!(h(&[m("user", "A")]), h(&[m("user", "a")]));
    }

    #[test]
    fn every_filter_counts_once() {
        let mut c = Cleaner::new(CleanConfig::default());
        let a = c
            .push(
                "a",
                "s",
                vec![t("human", "hi"), t("gpt", " "), t("gpt", "yo")],
            )
            .unwrap()
            .unwrap();
        assert_eq!(a.messages.len(), 2);
        assert!(c.push("b", "s", vec![]).unwrap().is_none());
        assert!(
            c.push("c", "s", vec![t("human", "q"), t("bing", "x")])
                .unwrap()
                .is_none()
        );
        assert!(
            c.push("d", "s", vec![t("human", "q"), t("gpt", "")])
                .unwrap()
                .is_none()
        );
        // Same content up to whitespace: duplicate.
        let dup = vec![t("user", " hi "), t("assistant", "yo\n")];
        assert!(c.push("e", "s", dup).unwrap().is_none());
        let m = c
            .push(
                "a",
                "s",
                vec![t("gpt", "x"), t("chatgpt", "y"), t("human", "z")],
            )
            .unwrap()
            .unwrap();
        assert_eq!(m.messages[0].content, "x\n\ny");
        let s = &c.stats;
        assert_eq!(s.records_read, 6);
        assert_eq!(
            s.empty_conversations
                + s.non_chatgpt_dropped
                + s.no_assistant_dropped
                + s.duplicates_dropped
                + s.kept,
            s.records_read
        );
        assert_eq!(
            (s.empty_turns_dropped, s.turns_merged, s.repeated_ids),
            (2, 1, 1)
        );
        assert_eq!(s.source_roles["gpt"], 4);
        let err = c
            .push("f", "s", vec![t("human", "q"), t("robot", "x")])
            .unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(c.stats.records_read, 6);
    }
}
