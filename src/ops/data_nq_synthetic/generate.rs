//! `data.nq_synthetic` with `questions: generate`: the teacher writes new
//! NQ-like question/answer pairs from five random pool examples, as the
//! paper built NQ-synthetic (Appendix A, Table 4).

use super::{PoolItem, record};
use crate::api::{ChatRequest, Message, api_note, op_config, run_all, write_log};
use crate::eval::normalize::normalize_answer;
use crate::op::{OpError, RunContext};
use crate::rng::Rng;
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Few-shot examples per generation request (the paper's five).
pub const SHOTS: usize = 5;

/// The paper's Table 4 prompt around `examples`.
pub fn generation_prompt(examples: &[(&str, &str)]) -> String {
    let mut s = String::from(
        "I want you to generate a series of questions and answers. I want the answers to be \
         concise, just a few words. The questions should be lowercased and centered around \
         Wikipedia-like entities. For example,",
    );
    for (q, a) in examples {
        s.push_str(&format!("\nQ: {q}\nA: {a}"));
    }
    s
}

/// Strips a list marker (`1.`, `2)`, `-`, `*`) from the start of a line.
fn strip_marker(l: &str) -> &str {
    let t = l.trim_start_matches(['-', '*', '•']).trim_start();
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && (t[digits..].starts_with('.') || t[digits..].starts_with(')')) {
        t[digits + 1..].trim_start()
    } else {
        t
    }
}

/// The rest of `l` after a label (`Q`, `Question`, optionally numbered, then
/// `:`), case-insensitively.
fn after_label<'a>(l: &'a str, labels: &[&str]) -> Option<&'a str> {
    let lower = l.to_ascii_lowercase();
    for lab in labels {
        if let Some(rest) = lower.strip_prefix(lab) {
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            if rest[digits..].starts_with(':') {
                return Some(l[lab.len() + digits + 1..].trim_start_matches('*').trim());
            }
        }
    }
    None
}

/// The `Q:` / `A:` pairs of a generation reply, in order. A question line
/// may carry its answer (`Q: ... A: ...`); list markers, numbered labels
/// (`Q3:`) and `Question:` / `Answer:` are accepted; an answer without a
/// pending question and empty parts are skipped.
pub fn parse_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in text.lines() {
        let l = strip_marker(line.trim()).trim_matches('*').trim();
        if let Some(q) = after_label(l, &["question", "q"]) {
            let (q, a) = match q.find(" A: ") {
                Some(i) => (&q[..i], Some(q[i + 4..].trim())),
                None => (q, None),
            };
            match a {
                Some(a) if !q.trim().is_empty() && !a.is_empty() => {
                    out.push((q.trim().to_string(), a.to_string()));
                    pending = None;
                }
                _ => pending = Some(q.trim().to_string()).filter(|q| !q.is_empty()),
            }
        } else if let Some(a) = after_label(l, &["answer", "a"])
            && let Some(q) = pending.take()
            && !a.is_empty()
        {
            out.push((q, a.to_string()));
        }
    }
    out
}

/// The generation request of `round`.
fn round_request(
    pool: &[PoolItem],
    round: u64,
    seed: u64,
    model: &str,
    p: &Map<String, Value>,
) -> ChatRequest {
    let mut rng = Rng::derive(seed, &format!("nq_synthetic/round/{round}"));
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    let k = SHOTS.min(pool.len());
    for i in 0..k {
        let j = i + rng.below(idx.len() - i);
        idx.swap(i, j);
    }
    let examples: Vec<(&str, &str)> = idx[..k]
        .iter()
        .map(|&i| (pool[i].question.as_str(), pool[i].answers[0].as_str()))
        .collect();
    ChatRequest {
        model: model.to_string(),
        messages: vec![Message {
            role: "user".into(),
            content: generation_prompt(&examples),
        }],
        temperature: p.get("temperature").and_then(Value::as_f64).unwrap_or(1.0),
        max_tokens: p.get("max_tokens").and_then(Value::as_u64).unwrap_or(512),
        seed: seed.wrapping_add(round),
    }
}

/// What to generate from.
pub(super) struct Generation<'a> {
    /// The usable pool (few-shot examples; copies of it are dropped).
    pub pool: &'a [PoolItem],
    /// Normalized evaluation questions (dropped).
    pub exclusion: &'a HashSet<String>,
    /// Pairs wanted.
    pub n: usize,
    /// The op's seed.
    pub seed: u64,
}

/// Runs generation rounds until `n` new pairs exist (see the parent doc);
/// `note` gets the API counts line.
pub(super) fn generate_rows(
    ctx: &RunContext,
    g: &Generation,
    metrics: &mut Map<String, Value>,
    note: &mut String,
) -> Result<Vec<Value>, OpError> {
    let Generation {
        pool,
        exclusion,
        n,
        seed,
    } = *g;
    let p = ctx.params;
    let model = p.get("model").and_then(Value::as_str).unwrap_or_default();
    if pool.is_empty() {
        return Err(OpError::msg(
            "input `pool` has no usable question to show as an example",
        ));
    }
    let max_rounds = p
        .get("max_rounds")
        .and_then(Value::as_u64)
        .unwrap_or(4 * n.div_ceil(SHOTS) as u64 + 4);
    let pool_norms: HashSet<String> = pool
        .iter()
        .map(|it| normalize_answer(&it.question))
        .collect();
    let cfg = op_config(ctx);
    let source = format!("teacher:{model}");
    let (mut seen, mut rows, mut log) = (HashSet::new(), Vec::new(), Vec::new());
    let (mut dup, mut copies, mut overlap, mut parsed) = (0usize, 0usize, 0usize, 0usize);
    let (mut from_store, mut requested, mut round) = (0usize, 0usize, 0u64);
    while rows.len() < n && round < max_rounds {
        let need = (n - rows.len()) as u64;
        let batch = need.div_ceil(4).clamp(1, max_rounds - round);
        let reqs: Vec<ChatRequest> = (round..round + batch)
            .map(|r| round_request(pool, r, seed, model, p))
            .collect();
        let outcome = run_all(&cfg, &reqs, ctx.cancel, ctx.status)?;
        from_store += outcome.from_store;
        requested += outcome.requested;
        for (i, ex) in outcome.exchanges.iter().enumerate() {
            let r = round + i as u64;
            for (k, (q, a)) in parse_pairs(&ex.content).into_iter().enumerate() {
                parsed += 1;
                let norm = normalize_answer(&q);
                if exclusion.contains(&norm) {
                    overlap += 1;
                } else if pool_norms.contains(&norm) {
                    copies += 1;
                } else if norm.is_empty() || !seen.insert(norm) {
                    dup += 1;
                } else if rows.len() < n {
                    rows.push(record(format!("nqsyn-gen-{r}-{k}"), &source, &q, &a));
                }
            }
        }
        log.extend(outcome.exchanges);
        round += batch;
    }
    write_log(&ctx.work_dir.join("out/requests.jsonl"), &log)?;
    if rows.len() < n {
        return Err(OpError::msg(format!(
            "generated only {} of n = {n} distinct new pairs in {round} rounds ({parsed} parsed, \
             {dup} duplicates, {copies} pool copies, {overlap} test questions dropped); raise \
             `max_rounds` (the finished requests are kept in the request store)",
            rows.len()
        )));
    }
    metrics.insert("rounds".into(), json!(round));
    metrics.insert("generated_parsed".into(), json!(parsed));
    metrics.insert("generated_duplicates".into(), json!(dup));
    metrics.insert("generated_pool_copies".into(), json!(copies));
    metrics.insert("generated_test_overlap".into(), json!(overlap));
    metrics.insert("api_total".into(), json!(log.len()));
    *note = api_note(log.len(), from_store, requested);
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_from_messy_replies() {
        let text = "Sure! Here are some more:\n\nQ: who wrote the hobbit\nA: J. R. R. Tolkien\n\
                    2. Q: when did the berlin wall fall?\n   A: 1989\n\
                    - **Q3:** what is the capital of peru\n- **A3:** Lima\n\
                    Question: how many moons does mars have\nAnswer: two\n\
                    Q: what river flows through cairo A: the Nile\n\
                    A: orphan answer\nQ: unanswered question\nQ: \nA: x\n";
        let pairs = parse_pairs(text);
        let qs: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(
            qs,
            [
                "who wrote the hobbit",
                "when did the berlin wall fall?",
                "what is the capital of peru",
                "how many moons does mars have",
                "what river flows through cairo"
            ]
        );
        assert_eq!(pairs[2].1, "Lima");
        assert_eq!(pairs[4].1, "the Nile");
        assert!(parse_pairs("no pairs here").is_empty());
    }

    #[test]
    fn prompt_is_table_4() {
        let s = generation_prompt(&[("q1", "a1"), ("q2", "a2")]);
        assert!(s.starts_with("I want you to generate a series of questions and answers."));
        assert!(s.ends_with("For example,\nQ: q1\nA: a1\nQ: q2\nA: a2"));
    }
}
