//! Matrix and `for_each` expansion: one [`NodeSpec`] becomes named instances.
//!
//! Instances are named by their coordinates, never by position:
//! `train[size=s,lr=2e-5]`. Adding or inserting a matrix value therefore adds
//! instances and leaves existing names (and cache keys) alone. Coordinates come
//! first from `for_each` (the upstream instance's coordinates, plus
//! `from=<node>` when `for_each` lists more than one node), then from `matrix`
//! keys in the order written, then from keys only an `include:` entry adds.
//!
//! `matrix` follows GitHub Actions: the cartesian product of the lists, minus
//! every combination matching an `exclude:` entry; then each `include:` entry
//! extends every combination it does not contradict with its extra keys, or,
//! when it extends none, is added as a combination of its own.
//! A mapping as a matrix value is named by its `name:` field, or else by the
//! first 8 hex digits of the blake3 of its canonical JSON.
//!
//! A pipeline expands to at most [`MAX_INSTANCES`] instances, so that a few
//! lines of matrix cannot exhaust memory.

use super::interp::{self, Scope, Var};
use super::refs::{self, Ref};
use super::source::Sources;
use super::yaml::{Key, Kind, Yaml};
use super::{NodeSpec, Pipeline, Span, SpecError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Most instances a pipeline may expand to.
pub const MAX_INSTANCES: usize = 100_000;

/// One coordinate value of an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Coord {
    /// Text in names and selectors (`2e-5`, `s`).
    pub text: String,
    /// Typed value seen by `${}`.
    pub value: Value,
}

/// One input reference as written, after interpolation.
#[derive(Debug, Clone)]
pub struct RefAt {
    /// The parsed reference.
    pub r: Ref,
    /// Where it is written.
    pub span: Span,
}

/// A declared input of an instance.
#[derive(Debug, Clone)]
pub enum InputDecl {
    /// One reference (`node`, `node[k=v]`, `file:PATH`) or a `node[*]` list.
    Single(RefAt),
    /// A YAML list of references (a list input).
    List(Vec<RefAt>),
}

/// One instance of a node, ready for the graph.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Full name, e.g. `train[size=s]`.
    pub id: String,
    /// Index into [`Pipeline::nodes`].
    pub node: usize,
    /// Coordinates in naming order.
    pub coords: Vec<(String, Coord)>,
    /// Params after interpolation (a JSON object).
    pub params: serde_json::Map<String, Value>,
    /// Where each top-level param is written.
    pub param_spans: BTreeMap<String, Span>,
    /// Inputs by name, in file order.
    pub inputs: Vec<(String, Span, InputDecl)>,
    /// Resources after interpolation (validated by the graph).
    pub resources: Option<(Value, Span)>,
    /// Tolerances after interpolation.
    pub tolerance: Option<(Value, Span)>,
}

impl Instance {
    /// Coordinates as `k=v,k=v` (the node id alone has none).
    pub fn coord_text(&self) -> String {
        coord_text(&self.coords)
    }
}

/// `k=v,k=v` for coordinates.
pub fn coord_text(coords: &[(String, Coord)]) -> String {
    coords
        .iter()
        .map(|(k, c)| format!("{k}={}", c.text))
        .collect::<Vec<_>>()
        .join(",")
}

/// Expands every node of the pipeline into instances (grouped by node, in node order).
pub fn expand(p: &Pipeline) -> Result<Vec<Instance>, SpecError> {
    let src = &p.sources;
    let mut base = Scope::new();
    for (k, v) in &p.params {
        base.insert(
            k.clone(),
            Var {
                value: v.to_json(),
                text: match v.kind {
                    Kind::Float(..) => v.scalar_text(),
                    _ => None,
                },
            },
        );
    }
    let order = for_each_order(p)?;
    let mut per_node: Vec<Option<Vec<Instance>>> = vec![None; p.nodes.len()];
    let mut total = 0usize;
    for ni in order {
        let node = &p.nodes[ni];
        let mut combos: Vec<Vec<(String, Coord)>> = vec![Vec::new()];
        let mut each_ids: Vec<Option<String>> = vec![None];
        if let Some(fe) = &node.for_each {
            let (c, e) = for_each_combos(p, &per_node, node, fe)?;
            combos = c;
            each_ids = e;
        }
        if let Some(m) = &node.matrix {
            let mat = matrix_combos(src, node, m)?;
            if combos.len().saturating_mul(mat.len()) > MAX_INSTANCES {
                return Err(src.error(
                    m.span,
                    &format!("nodes.{}.matrix", node.id),
                    format!("`for_each` times `matrix` gives more than {MAX_INSTANCES} instances"),
                ));
            }
            let mut out = Vec::new();
            let mut out_each = Vec::new();
            for (c, e) in combos.iter().zip(&each_ids) {
                for mc in &mat {
                    let mut merged = c.clone();
                    for (k, v) in mc {
                        if merged.iter().any(|(ek, _)| ek == k) {
                            return Err(src.error(
                                m.span,
                                &format!("nodes.{}.matrix.{k}", node.id),
                                format!("matrix key `{k}` is also a coordinate inherited through `for_each`"),
                            ));
                        }
                        merged.push((k.clone(), v.clone()));
                    }
                    out.push(merged);
                    out_each.push(e.clone());
                }
            }
            combos = out;
            each_ids = out_each;
        }
        total += combos.len();
        if total > MAX_INSTANCES {
            return Err(src.error(
                node.span,
                &format!("nodes.{}", node.id),
                format!("the pipeline expands to more than {MAX_INSTANCES} instances"),
            ));
        }
        let mut instances = Vec::with_capacity(combos.len());
        let mut seen = std::collections::HashSet::new();
        for (coords, each) in combos.into_iter().zip(each_ids) {
            let id = if coords.is_empty() {
                node.id.clone()
            } else {
                format!("{}[{}]", node.id, coord_text(&coords))
            };
            if !seen.insert(id.clone()) {
                return Err(src.error(
                    node.span,
                    &format!("nodes.{}", node.id),
                    format!("two instances are both named `{id}`"),
                ));
            }
            let mut scope = base.clone();
            for (k, c) in &coords {
                scope.insert(
                    k.clone(),
                    Var {
                        value: c.value.clone(),
                        text: Some(c.text.clone()),
                    },
                );
            }
            if let Some(e) = &each {
                scope.insert(
                    "each".into(),
                    Var {
                        value: Value::String(e.clone()),
                        text: None,
                    },
                );
            }
            instances.push(instance(src, node, ni, id, coords, &scope)?);
        }
        per_node[ni] = Some(instances);
    }
    Ok(per_node.into_iter().flatten().flatten().collect())
}

fn instance(
    src: &Sources,
    node: &NodeSpec,
    ni: usize,
    id: String,
    coords: Vec<(String, Coord)>,
    scope: &Scope,
) -> Result<Instance, SpecError> {
    let at = format!("nodes.{}", node.id);
    let mut params = serde_json::Map::new();
    let mut param_spans = BTreeMap::new();
    for (k, v) in &node.params {
        params.insert(
            k.name.clone(),
            interp_yaml(src, v, scope, &format!("{at}.params.{}", k.name))?,
        );
        param_spans.insert(k.name.clone(), k.span);
    }
    let mut inputs = Vec::new();
    for (k, v) in &node.inputs {
        let key = format!("{at}.inputs.{}", k.name);
        let decl = match &v.kind {
            Kind::Str(_) => InputDecl::Single(ref_at(src, v, scope, &key)?),
            Kind::Seq(items) => InputDecl::List(
                items
                    .iter()
                    .map(|it| ref_at(src, it, scope, &key))
                    .collect::<Result<_, _>>()?,
            ),
            _ => {
                return Err(src.error(v.span, &key, format!(
                    "an input is a reference string (`node`, `node[k=v]`, `node[*]`, `file:PATH`) or a list of them; found {}",
                    v.type_name()
                )));
            }
        };
        inputs.push((k.name.clone(), k.span, decl));
    }
    let resources = match &node.resources {
        Some(r) => Some((
            interp_yaml(src, r, scope, &format!("{at}.resources"))?,
            r.span,
        )),
        None => None,
    };
    let tolerance = match &node.tolerance {
        Some(r) => Some((
            interp_yaml(src, r, scope, &format!("{at}.tolerance"))?,
            r.span,
        )),
        None => None,
    };
    Ok(Instance {
        id,
        node: ni,
        coords,
        params,
        param_spans,
        inputs,
        resources,
        tolerance,
    })
}

fn ref_at(src: &Sources, v: &Yaml, scope: &Scope, key: &str) -> Result<RefAt, SpecError> {
    let s = v.as_str().ok_or_else(|| {
        src.error(
            v.span,
            key,
            format!("expected a reference string, found {}", v.type_name()),
        )
    })?;
    let text = match interp::interpolate(s, scope) {
        Ok(Value::String(t)) => t,
        Ok(other) => other.to_string(),
        Err(e) => return Err(undefined(src, v.span, key, e, scope)),
    };
    let r = refs::parse(&text).map_err(|m| src.error(v.span, key, m))?;
    Ok(RefAt { r, span: v.span })
}

/// Interpolates every string in a YAML value, producing JSON.
pub fn interp_yaml(src: &Sources, v: &Yaml, scope: &Scope, key: &str) -> Result<Value, SpecError> {
    Ok(match &v.kind {
        Kind::Str(s) => {
            interp::interpolate(s, scope).map_err(|e| undefined(src, v.span, key, e, scope))?
        }
        Kind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, it)| interp_yaml(src, it, scope, &format!("{key}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Kind::Map(m) => Value::Object(
            m.iter()
                .map(|(k, it)| {
                    Ok((
                        k.name.clone(),
                        interp_yaml(src, it, scope, &format!("{key}.{}", k.name))?,
                    ))
                })
                .collect::<Result<_, SpecError>>()?,
        ),
        _ => v.to_json(),
    })
}

fn undefined(
    src: &Sources,
    span: Span,
    key: &str,
    e: interp::InterpError,
    scope: &Scope,
) -> SpecError {
    let err = src.error(span, key, e.to_string());
    match e {
        interp::InterpError::Undefined(_) => {
            let names: Vec<&str> = scope.keys().map(String::as_str).collect();
            err.with_help(if names.is_empty() {
                "no names are defined here: declare pipeline `params:` or a `matrix:`".to_string()
            } else {
                format!("names defined here: {}", names.join(", "))
            })
        }
        _ => err,
    }
}

/// Orders nodes so that every `for_each` target comes before its user.
fn for_each_order(p: &Pipeline) -> Result<Vec<usize>, SpecError> {
    let src = &p.sources;
    let index: BTreeMap<&str, usize> = p
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, n) in p.nodes.iter().enumerate() {
        if let Some(fe) = &n.for_each {
            for (r, span) in for_each_refs(src, n, fe)? {
                let Some(&j) = index.get(r.node.as_str()) else {
                    return Err(unknown_node(
                        src,
                        p,
                        span,
                        &format!("nodes.{}.for_each", n.id),
                        &r.node,
                    ));
                };
                deps[i].push(j);
            }
        }
    }
    let mut state = vec![0u8; p.nodes.len()];
    let mut order = Vec::new();
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        state: &mut [u8],
        order: &mut Vec<usize>,
        stack: &mut Vec<usize>,
    ) -> Result<(), Vec<usize>> {
        if state[i] == 2 {
            return Ok(());
        }
        if state[i] == 1 {
            let start = stack.iter().position(|&s| s == i).unwrap_or(0);
            let mut cyc = stack[start..].to_vec();
            cyc.push(i);
            return Err(cyc);
        }
        state[i] = 1;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, state, order, stack)?;
        }
        stack.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..p.nodes.len() {
        let mut stack = Vec::new();
        if let Err(cyc) = visit(i, &deps, &mut state, &mut order, &mut stack) {
            let names: Vec<&str> = cyc.iter().map(|&c| p.nodes[c].id.as_str()).collect();
            let n = &p.nodes[cyc[0]];
            return Err(src.error(
                n.span,
                &format!("nodes.{}.for_each", n.id),
                format!("for_each cycle: {}", names.join(" -> ")),
            ));
        }
    }
    Ok(order)
}

/// An error for a reference to a node that does not exist.
pub fn unknown_node(src: &Sources, p: &Pipeline, span: Span, key: &str, name: &str) -> SpecError {
    let ids: Vec<&str> = p.nodes.iter().map(|n| n.id.as_str()).collect();
    let e = src.error(
        span,
        key,
        format!("reference to `{name}`, which is not a node of this pipeline"),
    );
    match super::closest(name, &ids) {
        Some(c) => e.with_help(format!("did you mean `{c}`?")),
        None => e,
    }
}

fn for_each_refs(
    src: &Sources,
    n: &NodeSpec,
    fe: &Yaml,
) -> Result<Vec<(refs::NodeRef, Span)>, SpecError> {
    let key = format!("nodes.{}.for_each", n.id);
    let items: Vec<&Yaml> = match &fe.kind {
        Kind::Str(_) => vec![fe],
        Kind::Seq(v) if !v.is_empty() => v.iter().collect(),
        _ => {
            return Err(src.error(
                fe.span,
                &key,
                "expected a node reference or a non-empty list of them",
            ));
        }
    };
    items
        .into_iter()
        .map(|it| {
            let s = super::string(src, it, &key)?;
            if interp::has_interp(s) {
                return Err(src.error(it.span, &key, "`for_each` references cannot use `${}`"));
            }
            match refs::parse(s).map_err(|m| src.error(it.span, &key, m))? {
                Ref::Node(r) => Ok((r, it.span)),
                Ref::File(_) => {
                    Err(src.error(it.span, &key, "`for_each` takes node references, not files"))
                }
            }
        })
        .collect()
}

/// One `exclude:`/`include:` entry: key, value, where the key is written.
type MatrixEntry = Vec<(String, Coord, Span)>;

type Combos = (Vec<Vec<(String, Coord)>>, Vec<Option<String>>);

fn for_each_combos(
    p: &Pipeline,
    per_node: &[Option<Vec<Instance>>],
    n: &NodeSpec,
    fe: &Yaml,
) -> Result<Combos, SpecError> {
    let src = &p.sources;
    let refs = for_each_refs(src, n, fe)?;
    let many = refs.len() > 1;
    let mut combos = Vec::new();
    let mut eaches = Vec::new();
    for (r, span) in refs {
        let Some(ni) = p.nodes.iter().position(|x| x.id == r.node) else {
            continue;
        };
        let ups = per_node[ni].as_deref().unwrap_or(&[]);
        let matched: Vec<&Instance> = ups
            .iter()
            .filter(|u| matches(&u.coords, &r.filters))
            .collect();
        if matched.is_empty() {
            return Err(src.error(
                span,
                &format!("nodes.{}.for_each", n.id),
                format!("`{}` selects no instance", r.node),
            ));
        }
        for u in matched {
            let mut coords = u.coords.clone();
            if many {
                if coords.iter().any(|(k, _)| k == "from") {
                    return Err(src.error(
                        span,
                        &format!("nodes.{}.for_each", n.id),
                        "upstream already has a coordinate named `from`",
                    ));
                }
                coords.insert(
                    0,
                    (
                        "from".into(),
                        Coord {
                            text: r.node.clone(),
                            value: Value::String(r.node.clone()),
                        },
                    ),
                );
            }
            let each = if r.output == refs::DEFAULT_OUTPUT {
                u.id.clone()
            } else {
                format!("{}.{}", u.id, r.output)
            };
            combos.push(coords);
            eaches.push(Some(each));
        }
    }
    Ok((combos, eaches))
}

/// True when every `k=v` filter matches a coordinate.
pub fn matches(coords: &[(String, Coord)], filters: &[(String, String)]) -> bool {
    filters
        .iter()
        .all(|(k, v)| coords.iter().any(|(ck, c)| ck == k && &c.text == v))
}

fn coord_of(src: &Sources, v: &Yaml, key: &str) -> Result<Coord, SpecError> {
    let value = v.to_json();
    let text = match &v.kind {
        Kind::Map(m) => match m
            .iter()
            .find(|(k, _)| k.name == "name")
            .and_then(|(_, n)| n.scalar_text())
        {
            Some(name) => name,
            None => {
                let canon = crate::cache::hash::canonical_json(&value);
                blake3::hash(canon.as_bytes()).to_hex()[..8].to_string()
            }
        },
        Kind::Seq(_) => {
            return Err(src.error(
                v.span,
                key,
                "a matrix value is a scalar or a mapping, not a list",
            ));
        }
        _ => v.scalar_text().unwrap_or_default(),
    };
    if !refs::is_coord_text(&text) {
        return Err(src.error(v.span, key, format!(
            "matrix value `{text}` cannot name an instance: use letters, digits, `_`, `-`, `.`, `+` (or a mapping with a `name:`)"
        )));
    }
    Ok(Coord { text, value })
}

fn matrix_combos(
    src: &Sources,
    n: &NodeSpec,
    m: &Yaml,
) -> Result<Vec<Vec<(String, Coord)>>, SpecError> {
    let at = format!("nodes.{}.matrix", n.id);
    let entries: &[(Key, Yaml)] = super::map(src, m, &at)?;
    let mut axes: Vec<(String, Vec<Coord>)> = Vec::new();
    let mut exclude = None;
    let mut include = None;
    for (k, v) in entries {
        let key = format!("{at}.{}", k.name);
        match k.name.as_str() {
            "exclude" => exclude = Some(v),
            "include" => include = Some(v),
            name => {
                if !refs::is_ident(name) || name == "each" || name == "from" {
                    return Err(src.error(k.span, &key, format!("`{name}` cannot be a matrix key (identifiers only; `each` and `from` are reserved)")));
                }
                let Kind::Seq(items) = &v.kind else {
                    return Err(src.error(
                        v.span,
                        &key,
                        format!("expected a list of values, found {}", v.type_name()),
                    ));
                };
                if items.is_empty() {
                    return Err(src.error(
                        v.span,
                        &key,
                        "empty list: the node would have no instances",
                    ));
                }
                let mut seen_vals = std::collections::HashSet::new();
                let mut vals: Vec<Coord> = Vec::new();
                for it in items {
                    let c = coord_of(src, it, &key)?;
                    if !seen_vals.insert(c.text.clone()) {
                        return Err(src.error(
                            it.span,
                            &key,
                            format!("value `{}` is listed twice", c.text),
                        ));
                    }
                    vals.push(c);
                }
                axes.push((name.to_string(), vals));
            }
        }
    }
    let product = axes
        .iter()
        .try_fold(1usize, |n, (_, vals)| n.checked_mul(vals.len()));
    if product.is_none_or(|n| n > MAX_INSTANCES) {
        return Err(src.error(
            m.span,
            &at,
            format!("the matrix has more than {MAX_INSTANCES} combinations"),
        ));
    }
    let mut combos: Vec<Vec<(String, Coord)>> = vec![Vec::new()];
    if !axes.is_empty() {
        for (k, vals) in &axes {
            let mut next = Vec::with_capacity(combos.len() * vals.len());
            for c in &combos {
                for v in vals {
                    let mut c2 = c.clone();
                    c2.push((k.clone(), v.clone()));
                    next.push(c2);
                }
            }
            combos = next;
        }
    }
    let entries_of = |v: &Yaml, which: &str| -> Result<Vec<MatrixEntry>, SpecError> {
        let key = format!("{at}.{which}");
        let Kind::Seq(items) = &v.kind else {
            return Err(src.error(v.span, &key, "expected a list of mappings"));
        };
        items
            .iter()
            .map(|it| {
                let m = super::map(src, it, &key)?;
                if m.is_empty() {
                    return Err(src.error(it.span, &key, "an empty entry matches everything"));
                }
                m.iter()
                    .map(|(k, v)| {
                        if !refs::is_ident(&k.name) || k.name == "each" || k.name == "from" {
                            return Err(src.error(
                                k.span,
                                &format!("{key}.{}", k.name),
                                format!("`{}` cannot be a matrix key (identifiers only; `each` and `from` are reserved)", k.name),
                            ));
                        }
                        Ok((
                            k.name.clone(),
                            coord_of(src, v, &format!("{key}.{}", k.name))?,
                            k.span,
                        ))
                    })
                    .collect()
            })
            .collect()
    };
    if let Some(ex) = exclude {
        for e in entries_of(ex, "exclude")? {
            for (k, _, span) in &e {
                if !axes.iter().any(|(a, _)| a == k) {
                    return Err(src.error(
                        *span,
                        &format!("{at}.exclude.{k}"),
                        format!("`{k}` is not a matrix key"),
                    ));
                }
            }
            combos.retain(|c| {
                !e.iter()
                    .all(|(k, v, _)| c.iter().any(|(ck, cv)| ck == k && cv.text == v.text))
            });
        }
    }
    if let Some(inc) = include {
        let originals: Vec<String> = axes.iter().map(|(k, _)| k.clone()).collect();
        for e in entries_of(inc, "include")? {
            let mut extended = false;
            if !axes.is_empty() {
                for c in combos.iter_mut() {
                    let fits = e.iter().all(|(k, v, _)| {
                        !originals.contains(k)
                            || c.iter().any(|(ck, cv)| ck == k && cv.text == v.text)
                    });
                    if fits {
                        for (k, v, _) in &e {
                            if !originals.contains(k) {
                                match c.iter_mut().find(|(ck, _)| ck == k) {
                                    Some(slot) => slot.1 = v.clone(),
                                    None => c.push((k.clone(), v.clone())),
                                }
                            }
                        }
                        extended = true;
                    }
                }
            }
            if !extended {
                combos.push(e.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect());
            }
        }
        if axes.is_empty() {
            combos.retain(|c| !c.is_empty());
        }
    }
    if combos.is_empty() {
        return Err(src.error(m.span, &at, "the matrix has no combinations left"));
    }
    Ok(combos)
}
