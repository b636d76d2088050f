//! Node keys: what decides whether a cached result can be reused.
//!
//! This is the contract between the YAML, the code and the cache, documented
//! the way cargo documents its fingerprints.
//!
//! # What a key holds
//!
//! `key = blake3(canonical_json(preimage))`, as 64 lowercase hex digits, where
//! the preimage is exactly:
//!
//! ```json
//! {
//!   "repro_key": 1,                  // KEY_FORMAT; bumped if this layout changes
//!   "op": "shell",                   // op name
//!   "op_version": 1,                 // the op's version (bumped when its results change)
//!   "params": {...},                 // the op's *semantic* params after `${}` interpolation,
//!                                    // less those equal to their declared default
//!   "inputs": {                      // every input, by input name:
//!     "text": "<digest>",            //   one artifact: its content digest
//!     "runs": {"i=1": "<digest>"}    //   a list input: entry name -> digest
//!   }
//! }
//! ```
//!
//! A content digest is the blake3 of a file's bytes; for a directory it is the
//! blake3 of its manifest (canonical JSON of the sorted list of
//! `{path, digest, bytes, exec}` entries), so two directories with the same
//! files have the same digest wherever they live.
//!
//! # What a key does not hold
//!
//! - The node id or its coordinates: renaming a node, or reordering matrix
//!   values, re-runs nothing. (Coordinates that an op sees, such as the entry
//!   names of a list input, are in `inputs`.)
//! - Upstream keys: only upstream *output digests*. An upstream node that
//!   re-runs and produces the same bytes leaves everything downstream cached
//!   (early cutoff).
//! - File paths and mtimes: only content.
//! - A param written with its default value: the schema
//!   (`crate::op::ParamSpec::default`) is the single source of defaults, and
//!   `crate::op::schema::semantic` drops every param equal to its default, so
//!   writing `k: [1]` and omitting `k` give one key. Numbers compare by value
//!   for `Number` params (`lr: 1` and `lr: 1.0` are one default). Two rules
//!   follow: a new optional param leaves existing keys alone as long as its
//!   default reproduces the old behaviour, and changing a default changes
//!   results under an unchanged key, so it needs an op-version bump (the
//!   snapshot of every op's schema and version in `tests/op_schemas.rs`
//!   fails until the snapshot is updated, which is where to bump). A param
//!   without a declared default (`ParamDefault::Absent`: its absence means
//!   "all", or a default that depends on other params) enters the key
//!   whenever it is written.
//! - Non-semantic params (the op's schema marks them: timeouts, metrics
//!   extraction, thread counts), `resources:` (cpus, gpus, executor, partition,
//!   time, memory), `tolerance:`, `description:`; these go into the record as
//!   provenance, not into the key.
//! - The environment, the host, the tools on `PATH`: an op that depends on one
//!   must take it as a param (e.g. `shell`'s `env:`), or bump its version.
//!
//! # Canonical JSON
//!
//! Object keys sorted bytewise, no whitespace, strings with serde_json's
//! escaping, integers as integers and floats in their shortest round-trip
//! form, as serde_json writes them (so `1e-5` and `0.00001` are the same
//! value; `1` and `1.0` are not).

use serde_json::{Map, Value, json};

/// Version of the preimage layout above.
pub const KEY_FORMAT: u64 = 1;

pub use crate::cache::hash::canonical_json;

/// Builds the preimage of a key.
pub fn preimage(
    op: &str,
    op_version: u32,
    params: &Map<String, Value>,
    inputs: Map<String, Value>,
) -> Value {
    json!({
        "repro_key": KEY_FORMAT,
        "op": op,
        "op_version": op_version,
        "params": params,
        "inputs": inputs,
    })
}

/// The key of a preimage.
pub fn key_of(preimage: &Value) -> String {
    blake3::hash(canonical_json(preimage).as_bytes())
        .to_hex()
        .to_string()
}

/// The part of a node's preimage that does not depend on its inputs, in
/// canonical JSON, so that a key is one streamed hash instead of a JSON tree
/// built and serialized per node.
///
/// The canonical preimage is `{"inputs":…,"op":…,"op_version":…,"params":…}`
/// then `,"records":…` (report ops only) and `,"repro_key":1}`, keys being
/// sorted. The template holds `,"op":…,"op_version":…,"params":…`;
/// [`KeyTemplate::key`] equals [`key_of`] of the full [`preimage`] (a test
/// checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    middle: String,
}

impl KeyTemplate {
    /// The template of a node with this op, version and semantic params.
    pub fn new(op: &str, op_version: u32, params: &Map<String, Value>) -> Self {
        let mut middle = String::from(",\"op\":");
        middle.push_str(&canonical_json(&Value::from(op)));
        middle.push_str(",\"op_version\":");
        middle.push_str(&op_version.to_string());
        middle.push_str(",\"params\":");
        middle.push_str(&canonical_json(&Value::Object(params.clone())));
        KeyTemplate { middle }
    }

    /// A template from its serialized form ([`KeyTemplate::as_str`]).
    pub fn from_serialized(middle: String) -> Self {
        KeyTemplate { middle }
    }

    /// The serialized form.
    pub fn as_str(&self) -> &str {
        &self.middle
    }

    /// The key for these input digests (`inputs`: the canonical JSON of the
    /// preimage's `inputs` object) and, for report ops, record views: the
    /// same as [`key_of`] of the full preimage.
    pub fn key(&self, inputs: &[u8], records: Option<&Map<String, Value>>) -> String {
        let mut buf = Vec::with_capacity(inputs.len() + self.middle.len() + 32);
        buf.extend_from_slice(b"{\"inputs\":");
        buf.extend_from_slice(inputs);
        buf.extend_from_slice(self.middle.as_bytes());
        if let Some(r) = records {
            buf.extend_from_slice(b",\"records\":");
            // Writing into a Vec cannot fail, and JSON maps have string keys.
            let _ = serde_json::to_writer(&mut buf, r);
        }
        buf.extend_from_slice(b",\"repro_key\":");
        buf.extend_from_slice(KEY_FORMAT.to_string().as_bytes());
        buf.push(b'}');
        blake3::hash(&buf).to_hex().to_string()
    }
}

/// A field-level difference between two preimages.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FieldChange {
    /// Dotted path, e.g. `params.lr` or `inputs.data`.
    pub path: String,
    /// Old value (JSON), absent when added.
    pub old: Option<Value>,
    /// New value (JSON), absent when removed.
    pub new: Option<Value>,
}

/// Lists every leaf that differs between two preimages.
pub fn diff(old: &Value, new: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &Value, new: &Value, out: &mut Vec<FieldChange>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(&p, x, y, out),
                    (x, y) => out.push(FieldChange {
                        path: p,
                        old: x.cloned(),
                        new: y.cloned(),
                    }),
                }
            }
        }
        _ if old == new => {}
        _ => out.push(FieldChange {
            path: path.to_string(),
            old: Some(old.clone()),
            new: Some(new.clone()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_is_sorted_and_compact() {
        let v: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"d": [1, 2], "c": 0.00001}}"#).unwrap();
        let w: Value = serde_json::from_str(r#"{"a": {"c": 1e-5, "d": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_json(&v), r#"{"a":{"c":0.00001,"d":[1,2]},"b":1}"#);
        assert_eq!(
            canonical_json(&v),
            canonical_json(&w),
            "1e-5 and 0.00001 are one value"
        );
    }

    #[test]
    fn key_depends_on_every_ingredient() {
        let p: Map<String, Value> = serde_json::from_str(r#"{"lr": 1e-5}"#).unwrap();
        let base = key_of(&preimage("t", 1, &p, Map::new()));
        assert_ne!(base, key_of(&preimage("t", 2, &p, Map::new())));
        assert_ne!(base, key_of(&preimage("u", 1, &p, Map::new())));
        let mut inputs = Map::new();
        inputs.insert("x".into(), json!("ab"));
        assert_ne!(base, key_of(&preimage("t", 1, &p, inputs)));
        assert_eq!(base, key_of(&preimage("t", 1, &p, Map::new())));
    }

    #[test]
    fn template_key_is_the_preimage_key() {
        let params: Map<String, Value> = serde_json::from_str(
            r#"{"z": 1e-5, "a": "tab\t \"q\" é \u0001", "n": -3, "big": 18446744073709551615,
                "nested": {"b": [1.5, null, true], "a": {}}, "f": 2.0}"#,
        )
        .unwrap();
        let inputs: Map<String, Value> =
            serde_json::from_str(r#"{"x": "ab", "list": {"i=10": "d1", "i=2": "d2"}, "y": null}"#)
                .unwrap();
        let records: Map<String, Value> =
            serde_json::from_str(r#"{"runs": "r", "a": "b"}"#).unwrap();
        let inputs_json = canonical_json(&Value::Object(inputs.clone()));
        for op in ["shell", "we\"ird\\op"] {
            let t = KeyTemplate::new(op, 7, &params);
            let mut full = preimage(op, 7, &params, inputs.clone());
            assert_eq!(t.key(inputs_json.as_bytes(), None), key_of(&full));
            full.as_object_mut()
                .unwrap()
                .insert("records".into(), Value::Object(records.clone()));
            assert_eq!(t.key(inputs_json.as_bytes(), Some(&records)), key_of(&full));
            let empty = Map::new();
            assert_eq!(
                KeyTemplate::new(op, 1, &empty).key(b"{}", None),
                key_of(&preimage(op, 1, &empty, Map::new()))
            );
        }
    }

    #[test]
    fn diff_is_field_level() {
        let a = json!({"params": {"lr": 2e-5, "bs": 8}, "op_version": 3});
        let b = json!({"params": {"lr": 1e-5, "bs": 8}, "op_version": 4});
        let d = diff(&a, &b);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].path, "op_version");
        assert_eq!(d[1].path, "params.lr");
    }
}
