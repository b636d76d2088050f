//! Pipeline files: YAML -> typed [`Pipeline`], with includes and `-s` overrides.
//!
//! The language (see the README for a tour):
//!
//! ```yaml
//! pipeline: name            # required in the root file; the lock file is pipelines/<name>.lock
//! description: free text
//! params: {seed: 0}         # defaults, overridable with `repro run -s seed=3`
//! include: [other.yaml]     # paths relative to this file; their nodes are merged
//! nodes:
//!   id:
//!     op: shell             # an op from the registry (`repro ops` lists them)
//!     params: {...}         # checked against the op's schema when the pipeline compiles
//!     inputs: {name: ref}   # ref: node, node[k=v], node[*], node.output, file:PATH, or a list of refs
//!     matrix: {k: [v1, v2], exclude: [...], include: [...]}
//!     for_each: [node, ...] # one instance per upstream instance; `${each}` names it
//!     resources: {cpus: 1, gpus: 0, executor: local}  # scheduling only; never in the key
//!     tolerance: {metric: 0.01}  # for `repro verify --rerun`; never in the key
//!     description: free text
//! ```

pub mod expand;
pub mod interp;
pub mod refs;
pub mod source;
pub mod yaml;

pub use crate::op::suggest::closest;
use source::Sources;
pub use source::{Span, SpecError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use yaml::{Key, Kind, Yaml};

/// A loaded pipeline, before matrix expansion.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// The `pipeline:` name.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// The root file.
    pub path: PathBuf,
    /// Pipeline params after `-s` overrides, in name order.
    pub params: BTreeMap<String, Yaml>,
    /// Nodes in file order (the root file's first, then each include's).
    pub nodes: Vec<NodeSpec>,
    /// The text of every file, for located errors.
    pub sources: Sources,
    /// Every pipeline file read (root first, then includes in load order):
    /// the path as read and its text's id in `sources`.
    pub files: Vec<(PathBuf, source::FileId)>,
}

/// One `nodes:` entry as written.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id.
    pub id: String,
    /// Where the id is written.
    pub span: Span,
    /// The op name and where it is.
    pub op: (String, Span),
    /// `params:` mapping (empty when absent).
    pub params: Vec<(Key, Yaml)>,
    /// `inputs:` mapping.
    pub inputs: Vec<(Key, Yaml)>,
    /// `matrix:` mapping.
    pub matrix: Option<Yaml>,
    /// `for_each:` reference or list of references.
    pub for_each: Option<Yaml>,
    /// `resources:` mapping.
    pub resources: Option<Yaml>,
    /// `tolerance:` mapping.
    pub tolerance: Option<Yaml>,
    /// Free text.
    pub description: Option<String>,
}

const ROOT_KEYS: &[&str] = &["pipeline", "description", "params", "include", "nodes"];
const NODE_KEYS: &[&str] = &[
    "op",
    "params",
    "inputs",
    "matrix",
    "for_each",
    "resources",
    "tolerance",
    "description",
];

/// Loads a pipeline file and its includes, then applies `overrides` (`k=v`).
pub fn load(path: &Path, overrides: &[String]) -> Result<Pipeline, SpecError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| SpecError::whole_file(path, format!("cannot read pipeline: {e}")))?;
    load_str(path, text, overrides)
}

/// Loads a pipeline from text (`path` names it in errors and anchors includes).
pub fn load_str(path: &Path, text: String, overrides: &[String]) -> Result<Pipeline, SpecError> {
    let mut p = Pipeline {
        name: String::new(),
        description: None,
        path: path.to_path_buf(),
        params: BTreeMap::new(),
        nodes: Vec::new(),
        sources: Sources::default(),
        files: Vec::new(),
    };
    let mut chain = Vec::new();
    load_file(&mut p, path, text, true, &mut chain)?;
    apply_overrides(&mut p, overrides)?;
    Ok(p)
}

fn load_file(
    p: &mut Pipeline,
    path: &Path,
    text: String,
    is_root: bool,
    chain: &mut Vec<PathBuf>,
) -> Result<(), SpecError> {
    let file = p.sources.add(path, text);
    p.files.push((path.to_path_buf(), file));
    let root = yaml::parse(&p.sources, file)?;
    let src = p.sources.clone();
    let root_span = root.span;
    let root_type = root.type_name();
    let entries = match root.kind {
        Kind::Map(m) => m,
        Kind::Null => Vec::new(),
        _ => {
            return Err(src.error(
                root_span,
                "",
                format!(
                    "a pipeline file is a mapping with `nodes:`; found {}",
                    root_type
                ),
            ));
        }
    };
    check_keys(&src, &entries, ROOT_KEYS, "")?;
    let get = |k: &str| entries.iter().find(|(key, _)| key.name == k);

    match (get("pipeline"), is_root) {
        (Some((_, v)), true) => {
            let name = v.as_str().filter(|s| refs::is_ident(s)).ok_or_else(|| {
                src.error(
                    v.span,
                    "pipeline",
                    "the pipeline name must be an identifier (letters, digits, `_`, `-`)",
                )
            })?;
            p.name = name.to_string();
        }
        (None, true) => {
            return Err(src.error(
                root.span,
                "pipeline",
                "missing `pipeline:` (the pipeline's name)",
            ));
        }
        (Some((k, _)), false) => {
            return Err(src.error(
                k.span,
                "pipeline",
                "`pipeline:` belongs in the root file only, not in an included file",
            ));
        }
        (None, false) => {}
    }
    if let Some((_, v)) = get("description")
        && is_root
    {
        p.description = Some(string(&src, v, "description")?.to_string());
    }
    if let Some((_, v)) = get("params") {
        for (k, val) in map(&src, v, "params")? {
            if !refs::is_ident(&k.name) {
                return Err(src.error(
                    k.span,
                    &format!("params.{}", k.name),
                    "param names are identifiers (letters, digits, `_`, `-`)",
                ));
            }
            // The root file's params win over included defaults.
            if is_root || !p.params.contains_key(&k.name) {
                p.params.insert(k.name.clone(), val.clone());
            }
        }
    }
    if let Some((_, v)) = get("nodes") {
        let mut ids: std::collections::HashMap<String, usize> = p
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.clone(), i))
            .collect();
        for (k, node) in map(&src, v, "nodes")? {
            if let Some(prev) = ids.get(&k.name).map(|&i| &p.nodes[i]) {
                let first = src.file(prev.span.file).path.display().to_string();
                return Err(src
                    .error(
                        k.span,
                        &format!("nodes.{}", k.name),
                        format!("duplicate node id `{}`", k.name),
                    )
                    .with_help(format!(
                        "first defined at {first}:{}:{}",
                        prev.span.line, prev.span.col
                    )));
            }
            ids.insert(k.name.clone(), p.nodes.len());
            p.nodes.push(node_spec(&src, k, node)?);
        }
    }
    if let Some((_, v)) = get("include") {
        let items: Vec<Yaml> = match &v.kind {
            Kind::Seq(items) => items.clone(),
            Kind::Str(_) => vec![v.clone()],
            _ => return Err(src.error(v.span, "include", "expected a list of file paths")),
        };
        chain.push(path.to_path_buf());
        for item in items {
            let rel = string(&src, &item, "include")?;
            let inc = path.parent().unwrap_or(Path::new(".")).join(rel);
            let canon = inc.canonicalize().unwrap_or(inc.clone());
            if chain
                .iter()
                .any(|c| c.canonicalize().unwrap_or(c.clone()) == canon)
            {
                return Err(src.error(
                    item.span,
                    "include",
                    format!("include cycle: `{rel}` includes itself"),
                ));
            }
            if !inc.exists() {
                return Err(src.error(
                    item.span,
                    "include",
                    format!("included file `{}` does not exist", inc.display()),
                ));
            }
            // Read here so that failures point at the `include:` entry; only
            // regular files (a directory fails, a device may never end).
            if !inc.is_file() {
                return Err(src.error(
                    item.span,
                    "include",
                    format!("included path `{}` is not a file", inc.display()),
                ));
            }
            let text = std::fs::read_to_string(&inc).map_err(|e| {
                src.error(
                    item.span,
                    "include",
                    format!("cannot read included file `{}`: {e}", inc.display()),
                )
            })?;
            load_file(p, &inc, text, false, chain)?;
        }
        chain.pop();
    }
    Ok(())
}

fn node_spec(src: &Sources, key: &Key, node: &Yaml) -> Result<NodeSpec, SpecError> {
    let id = &key.name;
    let at = format!("nodes.{id}");
    if !refs::is_ident(id) {
        return Err(src.error(
            key.span,
            &at,
            "node ids are identifiers (letters, digits, `_`, `-`; not starting with a digit)",
        ));
    }
    let entries = match &node.kind {
        Kind::Map(m) => m,
        _ => {
            return Err(src.error(
                node.span,
                &at,
                format!(
                    "a node is a mapping with at least `op:`; found {}",
                    node.type_name()
                ),
            ));
        }
    };
    check_keys(src, entries, NODE_KEYS, &at)?;
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, _)| key.name == k)
            .map(|(_, v)| v)
    };
    let op = get("op").ok_or_else(|| {
        src.error(key.span, &at, "missing `op:`")
            .with_help("`repro ops` lists the available ops")
    })?;
    let op_name = string(src, op, &format!("{at}.op"))?.to_string();
    let params = match get("params") {
        None => Vec::new(),
        Some(v) => map(src, v, &format!("{at}.params"))?.to_vec(),
    };
    let inputs = match get("inputs") {
        None => Vec::new(),
        Some(v) => map(src, v, &format!("{at}.inputs"))?.to_vec(),
    };
    for (k, _) in &inputs {
        if !refs::is_ident(&k.name) {
            return Err(src.error(
                k.span,
                &format!("{at}.inputs.{}", k.name),
                "input names are identifiers (they become `in/<name>`)",
            ));
        }
    }
    let description = match get("description") {
        Some(v) => Some(string(src, v, &format!("{at}.description"))?.to_string()),
        None => None,
    };
    Ok(NodeSpec {
        id: id.clone(),
        span: key.span,
        op: (op_name, op.span),
        params,
        inputs,
        matrix: get("matrix").cloned(),
        for_each: get("for_each").cloned(),
        resources: get("resources").cloned(),
        tolerance: get("tolerance").cloned(),
        description,
    })
}

/// Fails on a key not in `allowed`, suggesting the closest allowed key.
pub fn check_keys(
    src: &Sources,
    entries: &[(Key, Yaml)],
    allowed: &[&str],
    at: &str,
) -> Result<(), SpecError> {
    for (k, _) in entries {
        if !allowed.contains(&k.name.as_str()) {
            let path = if at.is_empty() {
                k.name.clone()
            } else {
                format!("{at}.{}", k.name)
            };
            let mut e = src.error(k.span, &path, format!("unknown key `{}`", k.name));
            e = match closest(&k.name, allowed) {
                Some(s) => e.with_help(format!(
                    "did you mean `{s}`? (allowed: {})",
                    allowed.join(", ")
                )),
                None => e.with_help(format!("allowed: {}", allowed.join(", "))),
            };
            return Err(e);
        }
    }
    Ok(())
}

/// The value as a mapping, or a located error.
pub fn map<'a>(src: &Sources, v: &'a Yaml, at: &str) -> Result<&'a [(Key, Yaml)], SpecError> {
    match &v.kind {
        Kind::Map(m) => Ok(m),
        Kind::Null => Ok(&[]),
        _ => Err(src.error(
            v.span,
            at,
            format!("expected a mapping, found {}", v.type_name()),
        )),
    }
}

/// The value as a string, or a located error.
pub fn string<'a>(src: &Sources, v: &'a Yaml, at: &str) -> Result<&'a str, SpecError> {
    v.as_str().ok_or_else(|| {
        src.error(
            v.span,
            at,
            format!("expected a string, found {}", v.type_name()),
        )
    })
}

fn apply_overrides(p: &mut Pipeline, overrides: &[String]) -> Result<(), SpecError> {
    for o in overrides {
        let label = PathBuf::from(format!("<-s {o}>"));
        let Some((k, v)) = o.split_once('=') else {
            return Err(SpecError::whole_file(
                &label,
                format!("`-s {o}`: expected `name=value`"),
            ));
        };
        let k = k.trim();
        // `-s bases.llama_7b=file:/x` replaces one field of a mapping param.
        if let Some((top, path)) = k.split_once('.') {
            let file = p.sources.add(&label, v.to_string());
            let value = yaml::parse(&p.sources, file)?;
            let mut at = p.params.get_mut(top);
            for field in path.split('.') {
                at = match at.map(|y| &mut y.kind) {
                    Some(yaml::Kind::Map(entries)) => entries
                        .iter_mut()
                        .find(|(key, _)| key.name == field)
                        .map(|(_, y)| y),
                    _ => None,
                };
            }
            match at {
                Some(slot) => *slot = value,
                None => {
                    let mut e = SpecError::whole_file(
                        &label,
                        format!("`-s {o}`: the pipeline has no param `{k}`"),
                    );
                    e.key = format!("params.{k}");
                    return Err(
                        e.with_help("a dotted name replaces an existing field of a mapping param")
                    );
                }
            }
            continue;
        }
        if !p.params.contains_key(k) {
            let known: Vec<&str> = p.params.keys().map(String::as_str).collect();
            let mut e =
                SpecError::whole_file(&label, format!("`-s {o}`: the pipeline has no param `{k}`"));
            e.key = format!("params.{k}");
            e = e.with_help(if known.is_empty() {
                "the pipeline declares no params".to_string()
            } else {
                format!("declared params: {}", known.join(", "))
            });
            return Err(e);
        }
        let file = p.sources.add(&label, v.to_string());
        let value = yaml::parse(&p.sources, file)?;
        p.params.insert(k.to_string(), value);
    }
    Ok(())
}
