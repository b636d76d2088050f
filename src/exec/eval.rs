//! Per-node evaluation: compute the key from input digests, decide hit or
//! miss, and say why. Shared by `run`, `status`, `explain`, `verify` and the
//! dry-run plan, so they can never disagree.

use crate::cache::lockfile::{LockEntry, LockFile};
use crate::cache::{Cache, short};
use crate::graph::key::{self, FieldChange};
use crate::graph::{Dag, Input, Source};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// What is known about one node after evaluation.
#[derive(Debug, Clone)]
pub enum Eval {
    /// A record exists for the current key and its objects check out.
    Hit {
        /// Current key.
        key: String,
        /// Output name -> digest.
        outputs: BTreeMap<String, String>,
    },
    /// The key is known but must be computed.
    Miss {
        /// Current key.
        key: String,
        /// Its preimage.
        preimage: Value,
        /// Why (one line).
        reason: String,
        /// Field-level changes against the lock file's last entry.
        changes: Vec<FieldChange>,
    },
    /// The key depends on an upstream node that is not computed yet.
    Pending {
        /// Why (names the upstream).
        reason: String,
    },
}

impl Eval {
    /// The key, if known.
    pub fn key(&self) -> Option<&str> {
        match self {
            Eval::Hit { key, .. } | Eval::Miss { key, .. } => Some(key),
            Eval::Pending { .. } => None,
        }
    }
}

/// How hard to check objects of hits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// Only that the record file exists.
    Exists,
    /// Objects verified via the stat memo (re-hashed when their stat changed).
    Quick,
}

/// Everything evaluation needs besides the node.
pub struct Evaluator<'a> {
    /// The compiled pipeline.
    pub dag: &'a Dag,
    /// The cache.
    pub cache: &'a Cache,
    /// The lock file as last written.
    pub lock: &'a LockFile,
    /// Object checking level.
    pub check: Check,
}

/// The input part of a preimage plus where each input came from.
pub struct Inputs {
    /// name -> digest or {entry: digest}.
    pub digests: Map<String, Value>,
    /// name -> source description.
    pub sources: BTreeMap<String, Value>,
}

impl Evaluator<'_> {
    /// Digests of a node's inputs, given the outputs of evaluated upstream nodes.
    /// `Err(upstream id)` when an upstream output is not known yet; file errors
    /// come back as `Err` with the message.
    pub fn inputs(
        &self,
        i: usize,
        outputs: &[Option<BTreeMap<String, String>>],
    ) -> Result<Inputs, String> {
        let n = &self.dag.nodes[i];
        let mut digests = Map::new();
        let mut sources = BTreeMap::new();
        let one = |s: &Source| -> Result<(String, Value), String> {
            match s {
                Source::File { path, written } => {
                    let a = self
                        .cache
                        .stat
                        .digest(path)
                        .map_err(|e| format!("file:{written}: {e}"))?;
                    Ok((a.digest, json!(format!("file:{written}"))))
                }
                Source::Node { idx, output } => {
                    let up = self.dag.nodes[*idx].id();
                    let d = outputs[*idx]
                        .as_ref()
                        .and_then(|o| o.get(output))
                        .ok_or_else(|| format!("waits for upstream `{up}`"))?;
                    let src = if output == "out" {
                        up.to_string()
                    } else {
                        format!("{up}.{output}")
                    };
                    Ok((d.clone(), json!(src)))
                }
            }
        };
        for (name, input) in &n.inputs {
            match input {
                Input::One(s) => {
                    let (d, src) = one(s)?;
                    digests.insert(name.clone(), json!(d));
                    sources.insert(name.clone(), src);
                }
                Input::List(entries) => {
                    let mut dm = Map::new();
                    let mut sm = Map::new();
                    for (entry, s) in entries {
                        let (d, src) = one(s)?;
                        dm.insert(entry.clone(), json!(d));
                        sm.insert(entry.clone(), src);
                    }
                    digests.insert(name.clone(), Value::Object(dm));
                    sources.insert(name.clone(), Value::Object(sm));
                }
            }
        }
        Ok(Inputs { digests, sources })
    }

    /// Evaluates node `i`.
    pub fn eval(&self, i: usize, outputs: &[Option<BTreeMap<String, String>>]) -> Eval {
        let n = &self.dag.nodes[i];
        let inputs = match self.inputs(i, outputs) {
            Ok(x) => x,
            Err(reason) => {
                let own = self.own_changes(i);
                let reason = if own.is_empty() {
                    reason
                } else {
                    format!("{}; {reason}", own.join("; "))
                };
                return Eval::Pending { reason };
            }
        };
        let preimage = key::preimage(n.op.name(), n.op.version(), &n.key_params, inputs.digests);
        let key = key::key_of(&preimage);
        let entry = self.lock.nodes.get(n.id());
        // Fast path: the lock file already names this key and its outputs.
        let fast = entry
            .filter(|e| e.key == key && self.cache.has_record(&key))
            .map(|e| e.outputs.clone());
        let outs = match fast {
            Some(o) if self.check == Check::Exists => Some(Ok(o)),
            _ => match self.cache.read_record(&key) {
                Ok(Some(rec)) => {
                    let bad = if self.check == Check::Quick {
                        rec.outputs.iter().find_map(|(name, o)| {
                            self.cache
                                .check_output(o, false, false)
                                .err()
                                .map(|e| format!("output `{name}`: {e}"))
                        })
                    } else {
                        None
                    };
                    Some(match bad {
                        Some(reason) => Err(reason),
                        None => Ok(rec
                            .outputs
                            .iter()
                            .map(|(k, o)| (k.clone(), o.digest.clone()))
                            .collect()),
                    })
                }
                Ok(None) => None,
                Err(e) => Some(Err(format!("unreadable record: {e}"))),
            },
        };
        match outs {
            Some(Ok(outputs)) => Eval::Hit { key, outputs },
            Some(Err(reason)) => Eval::Miss {
                key,
                preimage,
                reason,
                changes: Vec::new(),
            },
            None => {
                let (reason, changes) = self.why_miss(i, &preimage, entry);
                Eval::Miss {
                    key,
                    preimage,
                    reason,
                    changes,
                }
            }
        }
    }

    /// Changes of a node's own op, version and params since the lock file's
    /// last entry (what can be known before upstream keys are).
    pub fn own_changes(&self, i: usize) -> Vec<String> {
        let n = &self.dag.nodes[i];
        let Some(old) = self
            .lock
            .nodes
            .get(n.id())
            .and_then(|e| self.cache.read_record(&e.key).ok().flatten())
        else {
            return Vec::new();
        };
        let mut oldp = old.preimage;
        if let Some(o) = oldp.as_object_mut() {
            o.insert("inputs".into(), json!({}));
        }
        let now = key::preimage(n.op.name(), n.op.version(), &n.key_params, Map::new());
        key::diff(&oldp, &now)
            .iter()
            .map(|c| describe_change(self.dag, i, c))
            .collect()
    }

    /// Explains a miss against the lock file's last entry for the same id.
    pub fn why_miss(
        &self,
        i: usize,
        preimage: &Value,
        entry: Option<&LockEntry>,
    ) -> (String, Vec<FieldChange>) {
        let Some(entry) = entry else {
            return ("never run".into(), Vec::new());
        };
        let old = match self.cache.read_record(&entry.key) {
            Ok(Some(r)) => r,
            _ => {
                return (
                    format!(
                        "no record for key {} (last run's record {} is gone)",
                        short(&key::key_of(preimage)),
                        short(&entry.key)
                    ),
                    Vec::new(),
                );
            }
        };
        let changes = key::diff(&old.preimage, preimage);
        if changes.is_empty() {
            return ("no record for the current key".into(), changes);
        }
        let parts: Vec<String> = changes
            .iter()
            .take(3)
            .map(|c| describe_change(self.dag, i, c))
            .collect();
        let more = if changes.len() > 3 {
            format!(" (+{} more)", changes.len() - 3)
        } else {
            String::new()
        };
        (format!("{}{more}", parts.join("; ")), changes)
    }
}

/// One change as a line: `params.lr: 2e-5 -> 1e-5`, `inputs.data: digest changed (upstream x)`.
pub fn describe_change(dag: &Dag, i: usize, c: &FieldChange) -> String {
    let show = |v: &Option<Value>| match v {
        None => "(none)".to_string(),
        Some(Value::String(s)) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            short(s).to_string()
        }
        Some(v) => {
            let t = v.to_string();
            if t.len() > 60 {
                format!(
                    "{}...",
                    &t[..t.char_indices().nth(57).map(|(i, _)| i).unwrap_or(t.len())]
                )
            } else {
                t
            }
        }
    };
    if c.path == "op_version" {
        return format!("op version {} -> {}", show(&c.old), show(&c.new));
    }
    if c.path == "op" {
        return format!("op {} -> {}", show(&c.old), show(&c.new));
    }
    if let Some(rest) = c.path.strip_prefix("inputs.") {
        let name = rest.split('.').next().unwrap_or(rest);
        let origin = dag.nodes[i]
            .inputs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, inp)| match inp {
                Input::One(Source::Node { idx, .. }) => {
                    format!(" (upstream {})", dag.nodes[*idx].id())
                }
                Input::One(Source::File { written, .. }) => format!(" (file:{written})"),
                Input::List(_) => String::new(),
            })
            .unwrap_or_default();
        return match (&c.old, &c.new) {
            (None, _) => format!("inputs.{rest}: added{origin}"),
            (_, None) => format!("inputs.{rest}: removed"),
            _ => format!("inputs.{rest}: digest changed{origin}"),
        };
    }
    format!("{}: {} -> {}", c.path, show(&c.old), show(&c.new))
}

/// Evaluates every node in topological order, assuming nothing runs.
pub fn evaluate_all(ev: &Evaluator) -> Vec<Eval> {
    let dag = ev.dag;
    let mut outputs: Vec<Option<BTreeMap<String, String>>> = vec![None; dag.nodes.len()];
    let mut evals: Vec<Option<Eval>> = vec![None; dag.nodes.len()];
    for &i in &dag.order {
        let e = ev.eval(i, &outputs);
        if let Eval::Hit { outputs: o, .. } = &e {
            outputs[i] = Some(o.clone());
        }
        evals[i] = Some(e);
    }
    evals
        .into_iter()
        .map(|e| {
            e.unwrap_or(Eval::Pending {
                reason: "not evaluated".into(),
            })
        })
        .collect()
}
