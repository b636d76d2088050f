//! The pieces every API op shares: its environment and config, its params
//! schema, its record metric and stderr note, and its request log output.

use super::store::Exchange;
use super::{ApiConfig, Outcome};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::time::Duration;

/// The environment an op sees: `ctx_env` (the executor's extra
/// environment) overriding the process environment.
pub fn op_env(ctx_env: &[(String, String)], name: &str) -> Option<String> {
    ctx_env
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .or_else(|| std::env::var(name).ok())
}

/// Builds an op's [`ApiConfig`]: environment via [`op_env`], the fallback
/// store under the work directory, and the params `provider`, `concurrency`,
/// `retries`, `backoff_ms`, `timeout_s` (see [`crate::with_api_params`]).
pub fn op_config(ctx: &crate::op::RunContext) -> ApiConfig {
    let env = ctx.env;
    let mut cfg = ApiConfig::from_env(&|k| op_env(env, k), &ctx.work_dir.join("api-store"));
    let p = ctx.params;
    let int = |k: &str| p.get(k).and_then(Value::as_u64);
    if let Some(s) = p.get("provider").and_then(Value::as_str) {
        cfg.provider = s.to_string();
    }
    if let Some(c) = int("concurrency") {
        cfg.concurrency = c.max(1) as usize;
    }
    if let Some(r) = int("retries") {
        cfg.retries = r.min(100) as u32;
    }
    if let Some(b) = int("backoff_ms") {
        cfg.backoff = Duration::from_millis(b);
    }
    if let Some(t) = int("timeout_s") {
        cfg.timeout = Duration::from_secs(t.max(1));
    }
    cfg
}

/// A params schema: the op's own [`crate::op::ParamSpec`]s followed by
/// the params every API op takes: `provider` (semantic: enters the store
/// key) and the non-semantic transport settings `concurrency`, `retries`,
/// `backoff_ms`, `timeout_s` (read by [`op_config`]).
#[macro_export]
macro_rules! with_api_params {
    ($($p:expr),* $(,)?) => {
        &[
            $($p,)*
            $crate::op::ParamSpec::optional("provider", $crate::op::ParamType::Str, "label entering every API request's store key, to tell apart endpoints \
                      serving different models under one name (default empty)"),
            $crate::op::ParamSpec::optional("concurrency", $crate::op::ParamType::Int, "API requests in flight at once (default 4)").not_semantic(),
            $crate::op::ParamSpec::optional("retries", $crate::op::ParamType::Int, "API retries on 408, 429, 5xx and network errors (default 5)").not_semantic(),
            $crate::op::ParamSpec::optional("backoff_ms", $crate::op::ParamType::Int, "first API retry delay in ms, doubling, capped at 60 s (default 1000)").not_semantic(),
            $crate::op::ParamSpec::optional("timeout_s", $crate::op::ParamType::Int, "whole-request API timeout in seconds (default 120)").not_semantic(),
        ]
    };
}

/// The deterministic record metric of an API batch: `api_total` (requests
/// made by the op, from the store or not). How many were sent versus served
/// from the store depends on the run, so it is not a metric (`repro verify
/// --rerun` compares metrics exactly): it goes to the record's stderr via
/// [`api_note`].
pub fn outcome_metrics(o: &Outcome, m: &mut Map<String, Value>) {
    m.insert("api_total".into(), json!(o.exchanges.len()));
}

/// The line an API op adds to its stderr: `api: <total> requests, <n> from
/// the request store, <m> sent`.
pub fn api_note(total: usize, from_store: usize, sent: usize) -> String {
    format!("api: {total} requests, {from_store} from the request store, {sent} sent\n")
}

/// The request/response log an API op writes as an output (one
/// [`Exchange`] per line, in request order), so the committed cache holds
/// every answer the op used.
pub fn write_log(path: &Path, exchanges: &[Exchange]) -> Result<(), crate::op::OpError> {
    let rows: Vec<Value> = exchanges
        .iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect();
    crate::eval::io::write_jsonl(path, &rows)
}
