//! Answering a batch of requests: the store first, then the API with a
//! bounded number of requests in flight.

use super::store::{Exchange, Store};
use super::{ApiConfig, ApiError, ChatRequest, client};
use crate::op::CancelToken;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// What [`run_all`] returns: one exchange per request, in request order.
#[derive(Debug)]
pub struct Outcome {
    /// The exchanges, aligned with the requests.
    pub exchanges: Vec<Exchange>,
    /// How many came from the store.
    pub from_store: usize,
    /// How many were sent to the API.
    pub requested: usize,
}

/// Answers every request: from the store when it holds the key, else from
/// the API (each answer stored atomically as soon as it arrives, so a batch
/// that fails half-way keeps its finished requests). Identical requests in
/// one batch are sent once.
pub fn run_all(
    cfg: &ApiConfig,
    requests: &[ChatRequest],
    cancel: &CancelToken,
    status: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, ApiError> {
    let store = Store::new(&cfg.store_dir);
    let keys: Vec<String> = requests.iter().map(|r| r.key(&cfg.provider)).collect();
    let mut slots: Vec<Option<Exchange>> = Vec::with_capacity(requests.len());
    for k in &keys {
        slots.push(store.get(k)?);
    }
    let from_store = slots.iter().filter(|s| s.is_some()).count();
    // Distinct missing keys, first occurrence each.
    let mut todo: Vec<usize> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, s) in slots.iter().enumerate() {
        if s.is_none() && seen.insert(keys[i].as_str()) {
            todo.push(i);
        }
    }
    let store_name = cfg.store_dir.display().to_string();
    if !todo.is_empty() {
        let Some(base) = &cfg.base_url else {
            return Err(ApiError::Offline {
                missing: todo.len(),
                total: requests.len(),
                store: store_name,
                forced: if cfg.forced_offline {
                    " (REPRO_API_OFFLINE is set: unset it)".into()
                } else {
                    String::new()
                },
            });
        };
        let client = client::Client::new(base, cfg.key.clone(), cfg);
        let fetched = fetch(&client, &store, cfg, requests, &keys, &todo, cancel, status);
        let mut first: Option<ApiError> = None;
        for (i, r) in todo.iter().zip(fetched) {
            match r {
                Some(Ok(ex)) => slots[*i] = Some(ex),
                Some(Err(e)) => {
                    first.get_or_insert(e);
                }
                None => {}
            }
        }
        if cancel.is_cancelled() {
            return Err(ApiError::Cancelled);
        }
        // Fill duplicates of fetched keys.
        let by_key: std::collections::HashMap<String, Exchange> = slots
            .iter()
            .flatten()
            .map(|e| (e.key.clone(), e.clone()))
            .collect();
        for (i, s) in slots.iter_mut().enumerate() {
            if s.is_none() {
                *s = by_key.get(&keys[i]).cloned();
            }
        }
        let failed = slots.iter().filter(|s| s.is_none()).count();
        if failed > 0 {
            return Err(ApiError::Partial {
                failed,
                done: requests.len() - failed,
                total: requests.len(),
                store: store_name,
                first: Box::new(first.unwrap_or(ApiError::Cancelled)),
            });
        }
    }
    let requested = todo.len();
    Ok(Outcome {
        exchanges: slots.into_iter().flatten().collect(),
        from_store,
        requested,
    })
}

/// Sends the `todo` requests with `cfg.concurrency` workers. The first
/// failure stops the workers from starting new requests (requests in flight
/// finish and are stored). `None` = not attempted.
#[allow(clippy::too_many_arguments)]
fn fetch(
    client: &client::Client,
    store: &Store,
    cfg: &ApiConfig,
    requests: &[ChatRequest],
    keys: &[String],
    todo: &[usize],
    cancel: &CancelToken,
    status: &(dyn Fn(&str) + Sync),
) -> Vec<Option<Result<Exchange, ApiError>>> {
    let results: Mutex<Vec<Option<Result<Exchange, ApiError>>>> =
        Mutex::new((0..todo.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let workers = cfg.concurrency.clamp(1, todo.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    if abort.load(Ordering::SeqCst) || cancel.is_cancelled() {
                        return;
                    }
                    let j = next.fetch_add(1, Ordering::SeqCst);
                    if j >= todo.len() {
                        return;
                    }
                    let i = todo[j];
                    let r = client
                        .complete(&requests[i].body(), cancel)
                        .and_then(|resp| {
                            let ex = Exchange::new(
                                &keys[i],
                                &cfg.provider,
                                requests[i].body(),
                                client.url_for_record(),
                                resp,
                            )?;
                            store.put(&ex)?;
                            Ok(ex)
                        });
                    if r.is_err() {
                        abort.store(true, Ordering::SeqCst);
                    }
                    let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                    status(&format!("api {n}/{} requested", todo.len()));
                    if let Ok(mut g) = results.lock() {
                        g[j] = Some(r);
                    }
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}
