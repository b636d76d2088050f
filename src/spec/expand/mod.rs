//! Expansion: one [`NodeSpec`] becomes named instances.
//!
//! Instances are named by their coordinates, never by position:
//! `train[size=s,lr=2e-5]`. Adding or inserting a matrix value therefore adds
//! instances and leaves existing names (and cache keys) alone. Coordinates come
//! first from `for_each` (the upstream instance's coordinates, plus
//! `from=<node>` when `for_each` lists more than one node; see `for_each.rs`),
//! then from `matrix` keys in the order written, then from keys only an
//! `include:` entry adds (see `matrix.rs`).
//!
//! Each instance's params, inputs, resources and tolerances are then
//! interpolated with its coordinates, the pipeline's `params:` and, under
//! `for_each`, `${each}`.
//!
//! A pipeline expands to at most [`MAX_INSTANCES`] instances, so that a few
//! lines of matrix cannot exhaust memory.

mod for_each;
mod matrix;

use super::interp::{self, Scope, Var};
use super::refs::{self, Ref};
use super::source::Sources;
use super::yaml::{Kind, Yaml};
use super::{NodeSpec, Pipeline, Span, SpecError};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

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
    let base = base_scope(p);
    let mut per_node: Vec<Option<Vec<Instance>>> = vec![None; p.nodes.len()];
    let mut total = 0usize;
    for ni in for_each::order(p)? {
        let node = &p.nodes[ni];
        let combos = combos(p, &per_node, node)?;
        total += combos.len();
        if total > MAX_INSTANCES {
            return Err(p.sources.error(
                node.span,
                &format!("nodes.{}", node.id),
                format!("the pipeline expands to more than {MAX_INSTANCES} instances"),
            ));
        }
        per_node[ni] = Some(instances(&p.sources, &base, node, ni, combos)?);
    }
    Ok(per_node.into_iter().flatten().flatten().collect())
}

/// One instance-to-be: its coordinates and, under `for_each`, the upstream
/// instance it is for (`${each}`).
#[derive(Debug, Clone, Default)]
struct Combo {
    coords: Vec<(String, Coord)>,
    each: Option<String>,
}

/// The pipeline's `params:`, as every instance sees them.
fn base_scope(p: &Pipeline) -> Scope {
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
    base
}

/// A node's combinations: its `for_each` ones (or one without
/// coordinates), times its `matrix` ones.
fn combos(
    p: &Pipeline,
    per_node: &[Option<Vec<Instance>>],
    node: &NodeSpec,
) -> Result<Vec<Combo>, SpecError> {
    let mut combos = vec![Combo::default()];
    if let Some(fe) = &node.for_each {
        combos = for_each::combos(p, per_node, node, fe)?;
    }
    if let Some(m) = &node.matrix {
        let mat = matrix::combos(&p.sources, node, m)?;
        combos = matrix::cross(&p.sources, node, m, &combos, &mat)?;
    }
    Ok(combos)
}

/// A node's instances, one per combination; two may not share a name.
fn instances(
    src: &Sources,
    base: &Scope,
    node: &NodeSpec,
    ni: usize,
    combos: Vec<Combo>,
) -> Result<Vec<Instance>, SpecError> {
    let mut instances = Vec::with_capacity(combos.len());
    let mut seen = HashSet::new();
    for Combo { coords, each } in combos {
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
        let scope = instance_scope(base, &coords, each);
        instances.push(instance(src, node, ni, id, coords, &scope)?);
    }
    Ok(instances)
}

/// What `${}` sees in an instance: the pipeline's params, then its
/// coordinates, then `each`.
fn instance_scope(base: &Scope, coords: &[(String, Coord)], each: Option<String>) -> Scope {
    let mut scope = base.clone();
    for (k, c) in coords {
        scope.insert(
            k.clone(),
            Var {
                value: c.value.clone(),
                text: Some(c.text.clone()),
            },
        );
    }
    if let Some(e) = each {
        scope.insert(
            "each".into(),
            Var {
                value: Value::String(e),
                text: None,
            },
        );
    }
    scope
}

/// One instance: the node's params, inputs, resources and tolerances
/// interpolated in `scope`.
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
    let inputs = (node.inputs.iter())
        .map(|(k, v)| {
            let key = format!("{at}.inputs.{}", k.name);
            Ok((k.name.clone(), k.span, input_decl(src, v, scope, &key)?))
        })
        .collect::<Result<_, SpecError>>()?;
    let optional = |v: &Option<Yaml>, what: &str| -> Result<_, SpecError> {
        v.as_ref()
            .map(|r| Ok((interp_yaml(src, r, scope, &format!("{at}.{what}"))?, r.span)))
            .transpose()
    };
    let resources = optional(&node.resources, "resources")?;
    let tolerance = optional(&node.tolerance, "tolerance")?;
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

/// One declared input: a reference string, or a list of them.
fn input_decl(src: &Sources, v: &Yaml, scope: &Scope, key: &str) -> Result<InputDecl, SpecError> {
    Ok(match &v.kind {
        Kind::Str(_) => InputDecl::Single(ref_at(src, v, scope, key)?),
        Kind::Seq(items) => InputDecl::List(
            items
                .iter()
                .map(|it| ref_at(src, it, scope, key))
                .collect::<Result<_, _>>()?,
        ),
        _ => {
            return Err(src.error(v.span, key, format!(
                "an input is a reference string (`node`, `node[k=v]`, `node[*]`, `file:PATH`) or a list of them; found {}",
                v.type_name()
            )));
        }
    })
}

/// One input reference, after interpolation.
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

/// An interpolation error; for an undefined name, with the names that are
/// defined here.
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

/// True when every `k=v` filter matches a coordinate.
pub fn matches(coords: &[(String, Coord)], filters: &[(String, String)]) -> bool {
    filters
        .iter()
        .all(|(k, v)| coords.iter().any(|(ck, c)| ck == k && &c.text == v))
}
