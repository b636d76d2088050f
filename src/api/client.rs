//! The HTTP client: `POST {base}/chat/completions` with retries.
//!
//! Retry policy: 408, 429 and 5xx responses and transport failures
//! (connection refused or reset, timeouts, DNS, HTTP protocol errors) are
//! retried up to `retries` times; the n-th retry waits `backoff * 2^(n-1)`
//! capped at 60 s, or the server's `Retry-After` seconds when given (same
//! cap). Any other status (400, 401, 403, 404, ...) fails at once with the
//! status and the start of the body. A 2xx body that is not JSON fails at
//! once too. Waits poll the cancel token every 50 ms. Loopback base URLs
//! bypass any proxy configured in the environment.

use super::{ApiConfig, ApiError, Secret};
use crate::op::CancelToken;
use serde_json::Value;
use std::time::Duration;

/// Longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A chat-completions endpoint.
pub struct Client {
    agent: ureq::Agent,
    url: String,
    base_for_record: String,
    key: Option<Secret>,
    retries: u32,
    backoff: Duration,
}

/// One attempt's outcome.
enum Attempt {
    Done(Value),
    Retry(ApiError, Option<Duration>),
    Fatal(ApiError),
}

impl Client {
    /// A client for `base` (e.g. `https://api.openai.com/v1`) with the
    /// retry and timeout settings of `cfg`.
    pub fn new(base: &str, key: Option<Secret>, cfg: &ApiConfig) -> Client {
        let base = base.trim_end_matches('/');
        let mut builder = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false);
        if is_loopback(base) {
            builder = builder.proxy(None);
        }
        Client {
            agent: builder.build().into(),
            url: format!("{base}/chat/completions"),
            base_for_record: sanitize_url(base),
            key,
            retries: cfg.retries,
            backoff: cfg.backoff,
        }
    }

    /// The base URL as stored in exchanges: no credentials, query or
    /// fragment.
    pub fn url_for_record(&self) -> &str {
        &self.base_for_record
    }

    /// Sends `body` and returns the parsed response JSON, retrying as the
    /// module doc says.
    pub fn complete(&self, body: &Value, cancel: &CancelToken) -> Result<Value, ApiError> {
        let bytes = body.to_string();
        let mut attempt = 0u32;
        loop {
            if cancel.is_cancelled() {
                return Err(ApiError::Cancelled);
            }
            match self.once(&bytes) {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fatal(e) => return Err(e),
                Attempt::Retry(e, after) => {
                    if attempt >= self.retries {
                        return Err(e);
                    }
                    attempt += 1;
                    let exp = self.backoff.saturating_mul(1u32 << (attempt - 1).min(16));
                    let wait = after.unwrap_or(exp).min(MAX_BACKOFF);
                    sleep_polling(wait, cancel)?;
                }
            }
        }
    }

    fn once(&self, body: &str) -> Attempt {
        let mut req = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json");
        if let Some(k) = &self.key {
            req = req.header("authorization", format!("Bearer {}", k.expose()));
        }
        let mut resp = match req.send(body) {
            Ok(r) => r,
            Err(e) => {
                let retry = matches!(
                    e,
                    ureq::Error::Timeout(_)
                        | ureq::Error::Io(_)
                        | ureq::Error::ConnectionFailed
                        | ureq::Error::HostNotFound
                        | ureq::Error::Protocol(_)
                );
                let err = ApiError::Transport {
                    url: self.base_for_record.clone() + "/chat/completions",
                    message: self.scrub(&e.to_string()),
                };
                return if retry {
                    Attempt::Retry(err, None)
                } else {
                    Attempt::Fatal(err)
                };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match resp.body_mut().read_to_string() {
            Ok(t) => t,
            Err(e) => {
                return Attempt::Retry(
                    ApiError::Transport {
                        url: self.record_url(),
                        message: format!(
                            "reading the response body: {}",
                            self.scrub(&e.to_string())
                        ),
                    },
                    None,
                );
            }
        };
        if (200..300).contains(&status) {
            return match serde_json::from_str::<Value>(&text) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fatal(ApiError::BadResponse {
                    url: self.record_url(),
                    message: format!(
                        "body is not JSON ({e}): {}",
                        excerpt(&self.scrub(&text), 300)
                    ),
                }),
            };
        }
        let err = ApiError::Http {
            url: self.record_url(),
            status,
            body: excerpt(&self.scrub(&text), 500),
        };
        if status == 408 || status == 429 || status >= 500 {
            Attempt::Retry(err, retry_after)
        } else {
            Attempt::Fatal(err)
        }
    }

    fn record_url(&self) -> String {
        format!("{}/chat/completions", self.base_for_record)
    }

    /// Replaces the key (if any) in server text.
    fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(k) if !k.expose().is_empty() => text.replace(k.expose(), "[redacted]"),
            _ => text.to_string(),
        }
    }
}

/// Sleeps `d`, waking every 50 ms to check `cancel`.
fn sleep_polling(d: Duration, cancel: &CancelToken) -> Result<(), ApiError> {
    let end = std::time::Instant::now() + d;
    loop {
        if cancel.is_cancelled() {
            return Err(ApiError::Cancelled);
        }
        let now = std::time::Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// The first `max` characters of `s` on one line, with `...` when cut.
pub fn excerpt(s: &str, max: usize) -> String {
    let one: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one.chars().count() <= max {
        one
    } else {
        format!("{}...", one.chars().take(max).collect::<String>())
    }
}

/// `scheme://host[:port]/path` of a URL: user info, query and fragment
/// dropped.
pub fn sanitize_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or("");
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{scheme}{host}{path}")
}

/// Whether the URL's host is `localhost` or a loopback address.
fn is_loopback(url: &str) -> bool {
    let s = sanitize_url(url);
    let rest = s.split_once("://").map_or(s.as_str(), |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let host = if let Some(h) = authority.strip_prefix('[') {
        h.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_sanitized() {
        assert_eq!(
            sanitize_url("https://user:pw@api.example.com:8443/v1?key=x#f"),
            "https://api.example.com:8443/v1"
        );
        assert_eq!(
            sanitize_url("http://127.0.0.1:9/v1"),
            "http://127.0.0.1:9/v1"
        );
        assert!(is_loopback("http://127.0.0.1:9/v1"));
        assert!(is_loopback("http://localhost/v1"));
        assert!(is_loopback("http://[::1]:80/v1"));
        assert!(!is_loopback("https://api.openai.com/v1"));
    }

    #[test]
    fn excerpts_are_short_and_single_line() {
        assert_eq!(excerpt("a\n b", 10), "a b");
        assert_eq!(excerpt("abcdef", 3), "abc...");
    }
}
