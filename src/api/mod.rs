//! An OpenAI-compatible chat API behind a persistent request store.
//!
//! Ops that talk to a teacher or judge model (`teacher.chat`,
//! `data.nq_synthetic` in teacher mode, `eval.preference` with a judge) build
//! a list of [`ChatRequest`]s and hand them to [`run_all`], which serves
//! every request it can from the [`store::Store`] and sends only the rest to
//! `POST {base}/chat/completions` ([`client::Client`]).
//!
//! **Environment** (an op's environment is the process environment overlaid
//! with the executor's extra environment, [`crate::op::RunContext::env`]):
//!
//! - base URL: `REPRO_API_BASE`, else `OPENAI_BASE_URL` (e.g.
//!   `https://api.openai.com/v1`; a trailing `/` is ignored). Unset or empty
//!   means offline.
//! - key: `REPRO_API_KEY`, else `OPENAI_API_KEY`; optional (local servers
//!   need none). Sent only as `Authorization: Bearer`; it never enters a
//!   store key, a stored exchange, an output, a metric or an error message
//!   (server error bodies are scrubbed of it).
//! - `REPRO_API_OFFLINE=1`: offline even when a base URL is set.
//! - `REPRO_API_STORE`: the store directory. The executor sets it to
//!   `<cache dir>/api` (see [`STORE_ENV`]); without it an op falls back to
//!   `<work dir>/api-store`, which does not survive the run.
//!
//! **Store key** ([`ChatRequest::key`]): blake3 of the canonical JSON (keys
//! sorted, no spaces) of `{"v": 1, "provider": <param or "">, "request":
//! {model, messages, temperature, max_tokens, seed}}`. The base URL is *not*
//! part of the key, so a store filled online replays offline (where there is
//! no base URL) and through any proxy or mirror; it is kept in every stored
//! exchange for provenance. Two endpoints that serve different models under
//! the same name are told apart with the ops' `provider` param.
//!
//! **Offline**: a request found in the store is served from it; if any is
//! missing the op fails before sending anything, saying how many are missing
//! and how to provide the API.

pub mod batch;
pub mod client;
pub mod op;
pub mod records;
pub mod store;

use crate::cache::hash::canonical_json;
pub use crate::model::tokenizer::Message;
pub use batch::{Outcome, run_all};
pub use op::{api_note, op_config, op_env, outcome_metrics, write_log};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable naming the request store directory.
pub const STORE_ENV: &str = "REPRO_API_STORE";

/// Version of the store key layout (part of every key).
pub const KEY_VERSION: u32 = 1;

/// One chat-completion request: exactly the fields sent and keyed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    /// Model name as the API knows it.
    pub model: String,
    /// The conversation (`system`, `user`, `assistant` turns).
    pub messages: Vec<Message>,
    /// Sampling temperature.
    pub temperature: f64,
    /// Completion length limit.
    pub max_tokens: u64,
    /// Sampling seed (OpenAI's best-effort `seed`).
    pub seed: u64,
}

impl ChatRequest {
    /// The JSON body sent to `/chat/completions`.
    pub fn body(&self) -> Value {
        json!({
            "model": self.model,
            "messages": self.messages,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        })
    }

    /// The store key: blake3 (hex) of the canonical JSON of the key version,
    /// the `provider` label and [`ChatRequest::body`].
    pub fn key(&self, provider: &str) -> String {
        let v = json!({"v": KEY_VERSION, "provider": provider, "request": self.body()});
        blake3::hash(canonical_json(&v).as_bytes())
            .to_hex()
            .to_string()
    }
}

/// Why a batch of API requests did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No API configured and some requests are not in the store.
    #[error(
        "{missing} of {total} API requests are not in the request store {store} and no API is \
         configured: set REPRO_API_BASE (or OPENAI_BASE_URL) to an OpenAI-compatible base URL \
         such as https://api.openai.com/v1, and REPRO_API_KEY (or OPENAI_API_KEY) if it needs a \
         key{forced}"
    )]
    Offline {
        /// Requests not in the store.
        missing: usize,
        /// Requests in the batch.
        total: usize,
        /// The store directory.
        store: String,
        /// A note when `REPRO_API_OFFLINE` forced offline mode.
        forced: String,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Http {
        /// Endpoint URL (no credentials).
        url: String,
        /// HTTP status.
        status: u16,
        /// Start of the response body, scrubbed of the key.
        body: String,
    },
    /// The request did not get a response (connection, timeout, TLS).
    #[error("{url}: {message}")]
    Transport {
        /// Endpoint URL.
        url: String,
        /// What failed.
        message: String,
    },
    /// A 2xx response that is not a chat completion.
    #[error("{url}: unexpected response: {message}")]
    BadResponse {
        /// Endpoint URL.
        url: String,
        /// What is wrong, with a body excerpt.
        message: String,
    },
    /// The request store could not be read or written.
    #[error("request store {path}: {message}")]
    Store {
        /// File or directory.
        path: String,
        /// What failed.
        message: String,
    },
    /// Some requests failed; the finished ones are in the store.
    #[error(
        "{failed} of {total} API requests failed or were not attempted ({done} done and kept in \
         the request store {store}; a re-run sends only the rest); first error: {first}"
    )]
    Partial {
        /// Requests not completed.
        failed: usize,
        /// Requests completed (from the store or the API).
        done: usize,
        /// Requests in the batch.
        total: usize,
        /// The store directory.
        store: String,
        /// The first failure.
        first: Box<ApiError>,
    },
    /// The run was interrupted.
    #[error("cancelled")]
    Cancelled,
}

impl From<ApiError> for crate::op::OpError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Cancelled => crate::op::OpError::Cancelled,
            other => crate::op::OpError::msg(other.to_string()),
        }
    }
}

/// An API key; its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a key.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The key itself, for the `Authorization` header and scrubbing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// Where and how requests are sent.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Base URL without a trailing `/`; `None` = offline.
    pub base_url: Option<String>,
    /// API key, if any.
    pub key: Option<Secret>,
    /// Whether `REPRO_API_OFFLINE` forced offline mode.
    pub forced_offline: bool,
    /// The request store directory.
    pub store_dir: PathBuf,
    /// Label entering every store key (the ops' `provider` param).
    pub provider: String,
    /// Retries after the first attempt on 429, 5xx and transport errors.
    pub retries: u32,
    /// First backoff; doubles each retry, capped at 60 s (a server's
    /// `Retry-After` in seconds is honoured up to the same cap).
    pub backoff: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
}

impl ApiConfig {
    /// Reads the base URL, key, offline switch and store directory from
    /// `lookup` (an environment; empty values count as unset), with
    /// `fallback_store` when [`STORE_ENV`] is unset, and default retry
    /// settings (5 retries, 1 s backoff, 120 s timeout, 4 in flight).
    pub fn from_env(lookup: &dyn Fn(&str) -> Option<String>, fallback_store: &Path) -> Self {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let forced_offline = get("REPRO_API_OFFLINE").is_some_and(|v| v != "0");
        let base_url = if forced_offline {
            None
        } else {
            get("REPRO_API_BASE")
                .or_else(|| get("OPENAI_BASE_URL"))
                .map(|b| b.trim().trim_end_matches('/').to_string())
        };
        ApiConfig {
            base_url,
            key: get("REPRO_API_KEY")
                .or_else(|| get("OPENAI_API_KEY"))
                .map(|k| Secret::new(k.trim())),
            forced_offline,
            store_dir: get(STORE_ENV)
                .map(PathBuf::from)
                .unwrap_or_else(|| fallback_store.to_path_buf()),
            provider: String::new(),
            retries: 5,
            backoff: Duration::from_millis(1000),
            timeout: Duration::from_secs(120),
            concurrency: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(content: &str) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message {
                role: "user".into(),
                content: content.into(),
            }],
            temperature: 0.0,
            max_tokens: 16,
            seed: 0,
        }
    }

    #[test]
    fn key_depends_on_every_field_and_provider() {
        let base = req("hi");
        let k = base.key("");
        assert_eq!(k.len(), 64);
        assert_eq!(k, req("hi").key(""));
        assert_ne!(k, req("ho").key(""));
        assert_ne!(k, base.key("other"));
        let mut r = base.clone();
        r.seed = 1;
        assert_ne!(k, r.key(""));
        let mut r = base.clone();
        r.temperature = 1.0;
        assert_ne!(k, r.key(""));
        let mut r = base.clone();
        r.max_tokens = 17;
        assert_ne!(k, r.key(""));
        let mut r = base;
        r.model = "n".into();
        assert_ne!(k, r.key(""));
    }

    #[test]
    fn env_precedence_and_debug_hides_key() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|p| p.0 == k).map(|p| p.1.to_string())
        };
        let fb = Path::new("/tmp/fb");
        let c = ApiConfig::from_env(
            &env(&[
                ("REPRO_API_BASE", "http://a/v1/"),
                ("OPENAI_BASE_URL", "http://b/v1"),
                ("REPRO_API_KEY", "sk-repro"),
                ("OPENAI_API_KEY", "sk-openai"),
            ]),
            fb,
        );
        assert_eq!(c.base_url.as_deref(), Some("http://a/v1"));
        assert_eq!(c.key.as_ref().map(Secret::expose), Some("sk-repro"));
        assert!(!format!("{c:?}").contains("sk-repro"));
        assert_eq!(c.store_dir, fb);
        let c = ApiConfig::from_env(
            &env(&[
                ("REPRO_API_BASE", ""),
                ("OPENAI_BASE_URL", "http://b/v1"),
                ("OPENAI_API_KEY", "k"),
            ]),
            fb,
        );
        assert_eq!(c.base_url.as_deref(), Some("http://b/v1"));
        assert_eq!(c.key.as_ref().map(Secret::expose), Some("k"));
        let c = ApiConfig::from_env(
            &env(&[
                ("OPENAI_BASE_URL", "http://b/v1"),
                ("REPRO_API_OFFLINE", "1"),
                (STORE_ENV, "/s"),
            ]),
            fb,
        );
        assert!(c.base_url.is_none() && c.forced_offline);
        assert_eq!(c.store_dir, Path::new("/s"));
    }
}
