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

/// What is known about an upstream node that is computed: its key and output digests.
#[derive(Debug, Clone, PartialEq)]
pub struct Known {
    /// The node's key.
    pub key: String,
    /// Output name -> digest.
    pub outputs: BTreeMap<String, String>,
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
    /// `repro report` mode: report ops run with whatever upstream is cached,
    /// and an upstream that is not is a "missing" input (rendered as a dash).
    pub missing_ok: bool,
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
    pub fn inputs(&self, i: usize, known: &[Option<Known>]) -> Result<Inputs, String> {
        let n = &self.dag.nodes[i];
        let missing_ok = self.missing_ok && n.op.is_report();
        let mut digests = Map::new();
        let mut sources = BTreeMap::new();
        let one = |s: &Source| -> Result<(Value, Value), String> {
            match s {
                Source::File { path, written } => {
                    let a = self
                        .cache
                        .stat
                        .digest(path)
                        .map_err(|e| format!("file:{written}: {e}"))?;
                    Ok((json!(a.digest), json!(format!("file:{written}"))))
                }
                Source::Node { idx, output } => {
                    let up = self.dag.nodes[*idx].id();
                    let Some(d) = known[*idx].as_ref().and_then(|k| k.outputs.get(output)) else {
                        if missing_ok {
                            return Ok((Value::Null, json!({ "missing": up })));
                        }
                        return Err(format!("waits for upstream `{up}`"));
                    };
                    let src = if output == "out" {
                        up.to_string()
                    } else {
                        format!("{up}.{output}")
                    };
                    Ok((json!(d), json!(src)))
                }
            }
        };
        for (name, input) in &n.inputs {
            match input {
                Input::One(s) => {
                    let (d, src) = one(s)?;
                    digests.insert(name.clone(), d);
                    sources.insert(name.clone(), src);
                }
                Input::List(entries) => {
                    let mut dm = Map::new();
                    let mut sm = Map::new();
                    for (entry, s) in entries {
                        let (d, src) = one(s)?;
                        dm.insert(entry.clone(), d);
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
    pub fn eval(&self, i: usize, known: &[Option<Known>]) -> Eval {
        let n = &self.dag.nodes[i];
        let inputs = match self.inputs(i, known) {
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
        let mut preimage =
            key::preimage(n.op.name(), n.op.version(), &n.key_params, inputs.digests);
        if n.op.is_report() {
            // Reports show their inputs' coordinates, metrics and provenance:
            // what they see is part of their key.
            let views = match input_records(self.cache, self.dag, i, &|u| {
                known[u].as_ref().map(|k| k.key.clone())
            }) {
                Ok(v) => v,
                Err(reason) => return Eval::Pending { reason },
            };
            let digests: Map<String, Value> = views
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!(
                            blake3::hash(key::canonical_json(v).as_bytes())
                                .to_hex()
                                .to_string()
                        ),
                    )
                })
                .collect();
            if let Some(o) = preimage.as_object_mut() {
                o.insert("records".into(), Value::Object(digests));
            }
        }
        let key = key::key_of(&preimage);
        let entry = self.lock.nodes.get(n.id());
        // Fast path: the lock file already names this key and its outputs.
        let fast = entry
            .filter(|e| e.key == key && self.cache.has_record(&key))
            .map(|e| e.outputs.clone());
        let outs = match fast {
            Some(o) if self.check == Check::Exists => Some(Ok(o)),
            Some(o)
                if self.check == Check::Quick
                    && o.values().all(|d| self.cache.quick_light_ok(d)) =>
            {
                Some(Ok(o))
            }
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
            o.remove("records");
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
    let mut known: Vec<Option<Known>> = vec![None; dag.nodes.len()];
    let mut evals: Vec<Option<Eval>> = vec![None; dag.nodes.len()];
    for &i in &dag.order {
        let e = ev.eval(i, &known);
        if let Eval::Hit { key, outputs } = &e {
            known[i] = Some(Known {
                key: key.clone(),
                outputs: outputs.clone(),
            });
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

/// What a report op sees of each input: per input name, one view (or a list
/// of views for list inputs) with the upstream node id, coordinates, metrics,
/// key and provenance, or `missing: true` when the upstream is not cached.
/// `key_of(node index)` gives the key of a computed upstream.
pub fn input_records(
    cache: &Cache,
    dag: &Dag,
    i: usize,
    key_of: &dyn Fn(usize) -> Option<String>,
) -> Result<Map<String, Value>, String> {
    let n = &dag.nodes[i];
    let view = |entry: Option<&str>, s: &Source| -> Result<Value, String> {
        let mut v = Map::new();
        if let Some(e) = entry {
            v.insert("entry".into(), json!(e));
        }
        match s {
            Source::File { written, .. } => {
                v.insert("file".into(), json!(written));
                v.insert("missing".into(), json!(false));
            }
            Source::Node { idx, output } => {
                let up = &dag.nodes[*idx];
                v.insert("node".into(), json!(up.id()));
                v.insert("output".into(), json!(output));
                let coords: Map<String, Value> = up
                    .inst
                    .coords
                    .iter()
                    .map(|(k, c)| (k.clone(), c.value.clone()))
                    .collect();
                v.insert("coords".into(), Value::Object(coords));
                match key_of(*idx) {
                    None => {
                        v.insert("missing".into(), json!(true));
                    }
                    Some(k) => {
                        let rec = cache
                            .read_record(&k)
                            .map_err(|e| e.to_string())?
                            .ok_or_else(|| {
                                format!("record {} of `{}` vanished", short(&k), up.id())
                            })?;
                        let p = &rec.provenance;
                        v.insert("missing".into(), json!(false));
                        v.insert("key".into(), json!(k));
                        v.insert("metrics".into(), Value::Object(rec.metrics.clone()));
                        v.insert(
                            "provenance".into(),
                            json!({"host": p.host, "started": p.started, "duration_s": p.duration_s, "git_rev": p.git_rev, "device": p.device, "executor": p.executor, "engine": p.engine}),
                        );
                    }
                }
            }
        }
        Ok(Value::Object(v))
    };
    let mut out = Map::new();
    for (name, input) in &n.inputs {
        let v = match input {
            Input::One(s) => view(None, s)?,
            Input::List(entries) => Value::Array(
                entries
                    .iter()
                    .map(|(e, s)| view(Some(e), s))
                    .collect::<Result<_, _>>()?,
            ),
        };
        out.insert(name.clone(), v);
    }
    Ok(out)
}
