//! `for_each`: one instance per instance of the upstream nodes it names.
//!
//! An instance made this way inherits the upstream instance's coordinates
//! (plus `from=<node>` when `for_each` lists more than one node), and sees
//! the upstream instance's id, or `id.output`, as `${each}`. So nodes are
//! expanded in an order where every `for_each` target comes first
//! ([`order`]).

use super::{Combo, Coord, Instance, matches, unknown_node};
use crate::spec::interp;
use crate::spec::refs::{self, Ref};
use crate::spec::source::Sources;
use crate::spec::yaml::{Kind, Yaml};
use crate::spec::{NodeSpec, Pipeline, Span, SpecError};
use serde_json::Value;
use std::collections::BTreeMap;

/// Orders nodes so that every `for_each` target comes before its user.
pub(super) fn order(p: &Pipeline) -> Result<Vec<usize>, SpecError> {
    let deps = deps(p)?;
    let mut state = vec![Mark::New; p.nodes.len()];
    let mut order = Vec::new();
    for i in 0..p.nodes.len() {
        let mut stack = Vec::new();
        if let Err(cyc) = visit(i, &deps, &mut state, &mut order, &mut stack) {
            return Err(cycle_error(p, &cyc));
        }
    }
    Ok(order)
}

/// Per node, the nodes its `for_each` names.
fn deps(p: &Pipeline) -> Result<Vec<Vec<usize>>, SpecError> {
    let src = &p.sources;
    let index: BTreeMap<&str, usize> = (p.nodes.iter().enumerate())
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    let mut deps: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, n) in p.nodes.iter().enumerate() {
        let Some(fe) = &n.for_each else { continue };
        for (r, span) in for_each_refs(src, n, fe)? {
            let Some(&j) = index.get(r.node.as_str()) else {
                let key = format!("nodes.{}.for_each", n.id);
                return Err(unknown_node(src, p, span, &key, &r.node));
            };
            deps[i].push(j);
        }
    }
    Ok(deps)
}

/// Where the depth-first walk of [`order`] stands with a node.
#[derive(Clone, Copy, PartialEq)]
enum Mark {
    New,
    /// On the walk's stack: meeting it again closes a cycle.
    Visiting,
    Done,
}

/// Puts `i` into `order` after everything it depends on; on a cycle, gives
/// the nodes around it (the first one repeated at the end).
fn visit(
    i: usize,
    deps: &[Vec<usize>],
    state: &mut [Mark],
    order: &mut Vec<usize>,
    stack: &mut Vec<usize>,
) -> Result<(), Vec<usize>> {
    match state[i] {
        Mark::Done => return Ok(()),
        Mark::Visiting => {
            let start = stack.iter().position(|&s| s == i).unwrap_or(0);
            let mut cyc = stack[start..].to_vec();
            cyc.push(i);
            return Err(cyc);
        }
        Mark::New => {}
    }
    state[i] = Mark::Visiting;
    stack.push(i);
    for &d in &deps[i] {
        visit(d, deps, state, order, stack)?;
    }
    stack.pop();
    state[i] = Mark::Done;
    order.push(i);
    Ok(())
}

/// The error for a `for_each` cycle, at its first node.
fn cycle_error(p: &Pipeline, cyc: &[usize]) -> SpecError {
    let names: Vec<&str> = cyc.iter().map(|&c| p.nodes[c].id.as_str()).collect();
    let n = &p.nodes[cyc[0]];
    p.sources.error(
        n.span,
        &format!("nodes.{}.for_each", n.id),
        format!("for_each cycle: {}", names.join(" -> ")),
    )
}

/// The node references a `for_each` lists (one, or a non-empty list).
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
        .map(|it| for_each_ref(src, it, &key))
        .collect()
}

/// One `for_each` entry: a node reference without `${}`.
fn for_each_ref(src: &Sources, it: &Yaml, key: &str) -> Result<(refs::NodeRef, Span), SpecError> {
    let s = crate::spec::string(src, it, key)?;
    if interp::has_interp(s) {
        return Err(src.error(it.span, key, "`for_each` references cannot use `${}`"));
    }
    match refs::parse(s).map_err(|m| src.error(it.span, key, m))? {
        Ref::Node(r) => Ok((r, it.span)),
        Ref::File(_) => Err(src.error(it.span, key, "`for_each` takes node references, not files")),
    }
}

/// One combination per upstream instance the `for_each` of `n` selects.
/// `per_node` holds the instances of the nodes expanded so far.
pub(super) fn combos(
    p: &Pipeline,
    per_node: &[Option<Vec<Instance>>],
    n: &NodeSpec,
    fe: &Yaml,
) -> Result<Vec<Combo>, SpecError> {
    let src = &p.sources;
    let refs = for_each_refs(src, n, fe)?;
    let many = refs.len() > 1;
    let mut combos = Vec::new();
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
            combos.push(combo(src, n, &r, span, u, many)?);
        }
    }
    Ok(combos)
}

/// The combination for upstream instance `u`, reached through reference
/// `r`: its coordinates (after `from=<node>` when `many` nodes are listed)
/// and its `${each}`.
fn combo(
    src: &Sources,
    n: &NodeSpec,
    r: &refs::NodeRef,
    span: Span,
    u: &Instance,
    many: bool,
) -> Result<Combo, SpecError> {
    let mut coords = u.coords.clone();
    if many {
        if coords.iter().any(|(k, _)| k == "from") {
            return Err(src.error(
                span,
                &format!("nodes.{}.for_each", n.id),
                "upstream already has a coordinate named `from`",
            ));
        }
        let from = Coord {
            text: r.node.clone(),
            value: Value::String(r.node.clone()),
        };
        coords.insert(0, ("from".into(), from));
    }
    let each = if r.output == refs::DEFAULT_OUTPUT {
        u.id.clone()
    } else {
        format!("{}.{}", u.id, r.output)
    };
    Ok(Combo {
        coords,
        each: Some(each),
    })
}
