//! Per-node evaluation: compute the key from input digests, decide hit or
//! miss, and say why. Shared by `run`, `status`, `explain`, `verify` and the
//! dry-run plan, so they can never disagree.

use crate::cache::fasthash::FastMap;
use crate::cache::lockfile::{LockEntry, LockFile};
use crate::cache::statdir::StatDir;
use crate::cache::{Cache, short};
use crate::cache::{Digests, RecordIndex};
use crate::graph::key::{self, FieldChange};
use crate::graph::{Dag, Input, Source};
use serde_json::{Map, Value, json};
use std::borrow::Cow;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Mutex;

/// What is known about one node after evaluation.
#[derive(Debug, Clone)]
pub enum Eval {
    /// A record exists for the current key and its objects check out.
    Hit {
        /// Current key.
        key: String,
        /// Output name -> digest.
        outputs: Digests,
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
    pub outputs: Digests,
}

/// An input's digest or, for a list input, its entries' digests.
enum Digest<'k> {
    One(Option<Cow<'k, str>>),
    List(Vec<(&'k str, Option<Cow<'k, str>>)>),
}

/// The `inputs` object of a preimage (a later input of the same name
/// replaces an earlier one, as inserting into the map does).
fn digests_map(digests: Vec<(&str, Digest)>) -> Map<String, Value> {
    let value = |d: Option<Cow<str>>| d.map_or(Value::Null, |d| Value::String(d.into_owned()));
    digests
        .into_iter()
        .map(|(name, d)| {
            let v = match d {
                Digest::One(d) => value(d),
                Digest::List(list) => Value::Object(
                    list.into_iter()
                        .map(|(e, d)| (e.to_string(), value(d)))
                        .collect(),
                ),
            };
            (name.to_string(), v)
        })
        .collect()
}

/// Writes [`digests_map`] of `digests` as `serde_json` would (canonical
/// JSON), without building the map: a hit needs only its key.
fn write_digests(out: &mut Vec<u8>, digests: &[(&str, Digest)]) {
    write_object(out, digests, |out, d| match d {
        Digest::One(d) => write_digest(out, d),
        Digest::List(list) => write_object(out, list, write_digest),
    });
}

/// Writes a JSON object as `serde_json` writes a map built by inserting
/// `entries` in order: keys sorted, the last of equal keys kept.
fn write_object<T>(out: &mut Vec<u8>, entries: &[(&str, T)], value: impl Fn(&mut Vec<u8>, &T)) {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].0.cmp(entries[b].0)); // stable
    out.push(b'{');
    let mut first = true;
    for (n, &at) in order.iter().enumerate() {
        let (k, v) = &entries[at];
        if order.get(n + 1).is_some_and(|&next| entries[next].0 == *k) {
            continue; // a later entry of the same name replaces this one
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, k);
        out.push(b':');
        value(out, v);
    }
    out.push(b'}');
}

fn write_digest(out: &mut Vec<u8>, d: &Option<Cow<str>>) {
    match d {
        Some(d) => write_str(out, d),
        None => out.extend_from_slice(b"null"),
    }
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
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
    /// A one-pass view of the file system for [`evaluate_all`], which looks
    /// at every node once and runs nothing; `None` (while running) looks at
    /// the disk every time.
    pub snapshot: Option<&'a Snapshot>,
}

/// What one evaluation pass looked at already: the digest of each `file:`
/// input (a fan-out of 10,000 nodes over one shared file stats it once) and,
/// for pipelines of [`SNAPSHOT_MIN_NODES`] nodes or more, the listing of the
/// record directory (one `readdir` instead of a `stat` per node; it only ever
/// answers "yes", see `Evaluator::has_record`) and the light object
/// directory, opened once (see [`StatDir`]; every object is still stat'ed
/// when it is checked).
///
/// A run calls [`Snapshot::forget_files`] before it starts its first node:
/// from then on a node could, in principle, have written a project file, so
/// `file:` inputs are looked at every time, as without a snapshot.
#[derive(Default)]
pub struct Snapshot {
    files: Mutex<Option<FastMap<OsString, Result<String, String>>>>,
    records: Option<RecordIndex>,
    objects: Option<StatDir>,
}

/// Pipelines with at least this many nodes list the record directory once.
pub const SNAPSHOT_MIN_NODES: usize = 256;

impl Snapshot {
    /// A snapshot for a pass of `ev` over its whole pipeline.
    pub fn new(ev: &Evaluator) -> Self {
        let large = ev.dag.nodes.len() >= SNAPSHOT_MIN_NODES;
        Snapshot {
            files: Mutex::new(Some(FastMap::default())),
            records: large.then(|| ev.cache.record_index().ok()).flatten(),
            objects: large.then(|| ev.cache.objects_dir().ok()).flatten(),
        }
    }

    /// Stops remembering `file:` digests (and forgets those remembered).
    pub fn forget_files(&self) {
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl Evaluator<'_> {
    /// Digests of a node's inputs (the `inputs` of its preimage), given the
    /// outputs of evaluated upstream nodes. `Err` says why they are not
    /// known: an upstream output not known yet, or a file error.
    pub fn input_digests(
        &self,
        i: usize,
        known: &[Option<Known>],
    ) -> Result<Map<String, Value>, String> {
        Ok(digests_map(self.digests(i, known)?))
    }

    /// Each input's digest (or its entries' digests), in input order.
    fn digests<'s>(
        &'s self,
        i: usize,
        known: &'s [Option<Known>],
    ) -> Result<Vec<(&'s str, Digest<'s>)>, String> {
        let mut inputs = Vec::with_capacity(self.dag.nodes[i].inputs.len());
        for (name, input) in &self.dag.nodes[i].inputs {
            let d = match input {
                Input::One(s) => Digest::One(self.source_digest(i, (name, None), s, known)?),
                Input::List(entries) => {
                    let mut list = Vec::with_capacity(entries.len());
                    for (entry, s) in entries {
                        let at = (name.as_str(), Some(entry.as_str()));
                        list.push((entry.as_str(), self.source_digest(i, at, s, known)?));
                    }
                    Digest::List(list)
                }
            };
            inputs.push((name.as_str(), d));
        }
        Ok(inputs)
    }

    /// The digest one input source contributes to node `i`'s key: `None`
    /// (JSON null) for an upstream that is missing in `repro report` mode.
    ///
    /// A `file:` input that does not exist here takes the digest it had in
    /// the node's last run, when the lock file names that run and its record
    /// is in the cache: the result computed from the file is, though the file
    /// is not (a clone without model weights still verifies the results
    /// computed from them; "builds without the bytes" for inputs). Otherwise
    /// the node cannot be evaluated: `missing input: file:PATH (does not exist)`.
    fn source_digest<'k>(
        &self,
        i: usize,
        at: (&str, Option<&str>),
        s: &Source,
        known: &'k [Option<Known>],
    ) -> Result<Option<Cow<'k, str>>, String> {
        match s {
            Source::File { path, written } => match self.file_digest(path) {
                Ok(d) => Ok(Some(Cow::Owned(d))),
                Err(e) if std::fs::symlink_metadata(path).is_ok() => {
                    Err(format!("file:{written}: {e}"))
                }
                Err(_) => match self.last_run_digest(i, at) {
                    Some(d) => Ok(Some(Cow::Owned(d))),
                    None => Err(format!("missing input: file:{written} (does not exist)")),
                },
            },
            Source::Node { idx, output } => {
                match known[*idx].as_ref().and_then(|k| k.outputs.get(output)) {
                    Some(d) => Ok(Some(Cow::Borrowed(d))),
                    None if self.missing_ok && self.dag.nodes[i].op.is_report() => Ok(None),
                    None => Err(format!(
                        "waits for upstream `{}`",
                        self.dag.nodes[*idx].id()
                    )),
                }
            }
        }
    }

    /// The digest input `at` (name, list entry) of node `i` had in the run
    /// the lock file names, if its record is in the cache.
    fn last_run_digest(&self, i: usize, at: (&str, Option<&str>)) -> Option<String> {
        let entry = self.lock.nodes.get(self.dag.nodes[i].id())?;
        let rec = self.cache.read_record(&entry.key).ok()??;
        let v = rec.preimage.get("inputs")?.get(at.0)?;
        let v = match at.1 {
            Some(e) => v.get(e)?,
            None => v,
        };
        v.as_str().map(str::to_string)
    }

    /// The digest of a `file:` input (through the snapshot, when there is one).
    fn file_digest(&self, path: &Path) -> Result<String, String> {
        let look = || {
            self.cache
                .stat
                .digest(path)
                .map(|a| a.digest)
                .map_err(|e| e.to_string())
        };
        let Some(snap) = self.snapshot else {
            return look();
        };
        let mut files = snap.files.lock().unwrap_or_else(|e| e.into_inner());
        match files.as_mut() {
            Some(files) => files
                .entry(path.as_os_str().to_owned())
                .or_insert_with(look)
                .clone(),
            None => look(),
        }
    }

    /// Whether the cache holds a record for `key` (through the snapshot's
    /// listing, when there is one).
    ///
    /// The listing only answers "yes": a key it does not hold is looked up
    /// on disk, so a record written after the listing (by this run or
    /// another process) is found as without a snapshot.
    fn has_record(&self, key: &str) -> bool {
        self.snapshot
            .and_then(|s| s.records.as_ref())
            .is_some_and(|index| index.contains(self.cache, key))
            || self.cache.has_record(key)
    }

    /// Evaluates node `i`.
    pub fn eval(&self, i: usize, known: &[Option<Known>]) -> Eval {
        let n = &self.dag.nodes[i];
        let digests = match self.digests(i, known) {
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
        // Reports show their inputs' coordinates, metrics and provenance:
        // what they see is part of their key.
        let records = if n.op.is_report() {
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
            Some(digests)
        } else {
            None
        };
        let mut inputs_json = Vec::with_capacity(128);
        write_digests(&mut inputs_json, &digests);
        let key = n.key_template.key(&inputs_json, records.as_ref());
        // The preimage as JSON: only misses need it (and keep it).
        let preimage = move |key: &str| {
            let digests = digests_map(digests);
            let mut p = key::preimage(n.op.name(), n.op.version(), &n.key_params(), digests);
            if let (Some(r), Some(o)) = (records, p.as_object_mut()) {
                o.insert("records".into(), Value::Object(r));
            }
            debug_assert_eq!(key::key_of(&p), key, "key template and preimage disagree");
            p
        };
        let entry = self.lock.nodes.get(n.id());
        // Fast path: the lock file already names this key and its outputs.
        let fast = entry.filter(|e| e.key == key && self.has_record(&key));
        let outs = match fast {
            Some(e) if self.check == Check::Exists => Some(Ok(e.outputs.clone())),
            Some(e)
                if self.check == Check::Quick
                    && e.outputs.values().all(|d| {
                        let objects = self.snapshot.and_then(|s| s.objects.as_ref());
                        self.cache.quick_light_ok_in(objects, d)
                    }) =>
            {
                Some(Ok(e.outputs.clone()))
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
                preimage: preimage(&key),
                key,
                reason,
                changes: Vec::new(),
            },
            None => {
                let preimage = preimage(&key);
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
        let now = key::preimage(n.op.name(), n.op.version(), &n.key_params(), Map::new());
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

/// Evaluates every node in topological order, assuming nothing runs (through
/// a [`Snapshot`] unless `ev` has one).
pub fn evaluate_all(ev: &Evaluator) -> Vec<Eval> {
    let snapshot;
    let ev = &Evaluator {
        snapshot: match ev.snapshot {
            Some(s) => Some(s),
            None => {
                snapshot = Snapshot::new(ev);
                Some(&snapshot)
            }
        },
        ..*ev
    };
    let dag = ev.dag;
    let mut known: Vec<Option<Known>> = vec![None; dag.nodes.len()];
    let mut evals: Vec<Option<Eval>> = vec![None; dag.nodes.len()];
    for &i in &dag.order {
        match ev.eval(i, &known) {
            // A hit's key and outputs live in `known` until the pass ends.
            Eval::Hit { key, outputs } => known[i] = Some(Known { key, outputs }),
            e => evals[i] = Some(e),
        }
    }
    evals
        .into_iter()
        .zip(known)
        .map(|(e, k)| match (e, k) {
            (Some(e), _) => e,
            (None, Some(Known { key, outputs })) => Eval::Hit { key, outputs },
            (None, None) => Eval::Pending {
                reason: "not evaluated".into(),
            },
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
