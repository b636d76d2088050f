//! `Pipeline` -> [`Dag`]: instances, resolved references, checked params,
//! and a petgraph graph in topological order.
//!
//! Everything that can be checked without running anything is checked here,
//! with file, line and key: unknown ops, params failing an op's schema,
//! references to nothing (unknown node, no matching instance, unknown output,
//! missing file), ambiguous references, and cycles (printed in full).

pub mod key;
pub mod resources;

use crate::ops::{self, Op, OutputDecl};
use crate::spec::expand::{self, InputDecl, Instance, RefAt};
use crate::spec::refs::Ref;
use crate::spec::{Pipeline, SpecError};
use petgraph::graph::{DiGraph, NodeIndex};
pub use resources::{Resources, Tolerance};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where one input's bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// An output of another instance.
    Node {
        /// Index into [`Dag::nodes`].
        idx: usize,
        /// Output name.
        output: String,
    },
    /// A file or directory in the repository.
    File {
        /// Absolute path.
        path: PathBuf,
        /// As written after `file:`.
        written: String,
    },
}

/// A resolved input.
#[derive(Debug, Clone)]
pub enum Input {
    /// One artifact.
    One(Source),
    /// A list input: entry name -> artifact.
    List(Vec<(String, Source)>),
}

/// One instance, compiled.
#[derive(Clone)]
pub struct DagNode {
    /// The expanded instance (id, coordinates, params, spans).
    pub inst: Instance,
    /// Its op.
    pub op: &'static dyn Op,
    /// The params that enter the key.
    pub key_params: Map<String, Value>,
    /// Declared outputs.
    pub outputs: Vec<OutputDecl>,
    /// Inputs by name, sorted by name.
    pub inputs: Vec<(String, Input)>,
    /// Scheduling resources (never in the key).
    pub resources: Resources,
    /// Per-metric tolerances for `verify --rerun` (never in the key).
    pub tolerance: BTreeMap<String, Tolerance>,
    /// Upstream instances (deduplicated).
    pub upstream: Vec<usize>,
}

impl DagNode {
    /// Instance id.
    pub fn id(&self) -> &str {
        &self.inst.id
    }
}

/// A compiled pipeline.
pub struct Dag {
    /// The pipeline as loaded.
    pub pipeline: Pipeline,
    /// Instances, in expansion order.
    pub nodes: Vec<DagNode>,
    /// Edges upstream -> downstream; node weights index `nodes`.
    pub graph: DiGraph<usize, ()>,
    /// A topological order of `nodes`.
    pub order: Vec<usize>,
    /// Instance id -> index.
    pub by_id: HashMap<String, usize>,
    /// Project root (for `file:` paths).
    pub root: PathBuf,
}

impl Dag {
    /// Instances selected by a node name or an instance id (or a `node[k=v]` selector).
    pub fn select(&self, pattern: &str) -> Vec<usize> {
        if let Some(&i) = self.by_id.get(pattern) {
            return vec![i];
        }
        match crate::spec::refs::parse(pattern) {
            Ok(Ref::Node(r)) => self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    self.pipeline.nodes[n.inst.node].id == r.node
                        && expand::matches(&n.inst.coords, &r.filters)
                })
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// All transitive upstream instances of `targets`, plus the targets.
    pub fn with_upstream(&self, targets: &[usize]) -> Vec<bool> {
        let mut keep = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = targets.to_vec();
        while let Some(i) = stack.pop() {
            if !keep[i] {
                keep[i] = true;
                stack.extend(&self.nodes[i].upstream);
            }
        }
        keep
    }
}

/// Compiles a loaded pipeline.
pub fn compile(root: &Path, p: Pipeline) -> Result<Dag, SpecError> {
    let instances = expand::expand(&p)?;
    let src = &p.sources;
    let mut by_id = HashMap::with_capacity(instances.len());
    let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, inst) in instances.iter().enumerate() {
        by_id.insert(inst.id.clone(), i);
        by_node[inst.node].push(i);
    }
    // Ops and outputs first: references check output names.
    let mut ops_of = Vec::with_capacity(instances.len());
    let mut outputs_of = Vec::with_capacity(instances.len());
    for inst in &instances {
        let spec = &p.nodes[inst.node];
        let at = format!("nodes.{}", spec.id);
        let op = ops::find(&spec.op.0).ok_or_else(|| {
            let names = ops::names();
            let e = src.error(
                spec.op.1,
                &format!("{at}.op"),
                format!("unknown op `{}`", spec.op.0),
            );
            match crate::spec::closest(&spec.op.0, &names) {
                Some(c) => e.with_help(format!(
                    "did you mean `{c}`? (`repro ops` lists: {})",
                    names.join(", ")
                )),
                None => e.with_help(format!("available ops: {}", names.join(", "))),
            }
        })?;
        let check =
            ops::schema::validate(op.params(), &inst.params).and_then(|_| op.check(&inst.params));
        if let Err((param, msg)) = check {
            let span = inst.param_spans.get(&param).copied().unwrap_or(spec.op.1);
            let key = if param.is_empty() {
                format!("{at}.params")
            } else {
                format!("{at}.params.{param}")
            };
            let mut e = src.error(span, &key, msg);
            if inst.id != spec.id {
                e = e.with_help(format!("in instance `{}`", inst.id));
            }
            return Err(e);
        }
        if !op.takes_inputs() {
            if let Some((name, span, _)) = inst.inputs.first() {
                return Err(src.error(
                    *span,
                    &format!("{at}.inputs.{name}"),
                    format!("op `{}` takes no inputs", op.name()),
                ));
            }
        }
        ops_of.push(op);
        outputs_of.push(op.outputs(&inst.params));
    }
    let cx = Resolver {
        root,
        p: &p,
        instances: &instances,
        by_node: &by_node,
        outputs_of: &outputs_of,
        node_index: p
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect(),
    };
    let mut nodes = Vec::with_capacity(instances.len());
    for (i, inst) in instances.iter().enumerate() {
        let spec = &p.nodes[inst.node];
        let at = format!("nodes.{}", spec.id);
        let op = ops_of[i];
        let mut inputs: Vec<(String, Input)> = Vec::new();
        for (name, path) in op.implicit_inputs(&inst.params) {
            let span = inst
                .param_spans
                .values()
                .next()
                .copied()
                .unwrap_or(spec.span);
            let written = RefAt {
                r: Ref::File(path),
                span,
            };
            inputs.push((
                name,
                Input::One(resolve_file(root, &p, &written, &format!("{at}.params"))?),
            ));
        }
        for (name, _, decl) in &inst.inputs {
            let key = format!("{at}.inputs.{name}");
            let input = match decl {
                InputDecl::Single(r) => resolve(&cx, r, &key, false)?,
                InputDecl::List(items) => {
                    let mut entries: Vec<(String, Source)> = Vec::new();
                    let mut names = std::collections::HashSet::new();
                    for r in items {
                        match resolve(&cx, r, &key, true)? {
                            Input::List(more) => {
                                for (n, s) in more {
                                    if !names.insert(n.clone()) {
                                        return Err(src.error(
                                            r.span,
                                            &key,
                                            format!("two list entries are both named `{n}`"),
                                        ));
                                    }
                                    entries.push((n, s));
                                }
                            }
                            Input::One(_) => unreachable!("list items resolve to lists"),
                        }
                    }
                    Input::List(entries)
                }
            };
            inputs.push((name.clone(), input));
        }
        inputs.sort_by(|a, b| a.0.cmp(&b.0));
        let mut upstream: Vec<usize> = inputs
            .iter()
            .flat_map(|(_, inp)| match inp {
                Input::One(s) => vec![s.clone()],
                Input::List(v) => v.iter().map(|(_, s)| s.clone()).collect(),
            })
            .filter_map(|s| match s {
                Source::Node { idx, .. } => Some(idx),
                Source::File { .. } => None,
            })
            .collect();
        upstream.sort_unstable();
        upstream.dedup();
        let resources = resources::parse_resources(
            src,
            inst.resources.as_ref(),
            spec.resources.as_ref(),
            &format!("{at}.resources"),
        )?;
        let tolerance = resources::parse_tolerance(
            src,
            inst.tolerance.as_ref(),
            spec.tolerance.as_ref(),
            &format!("{at}.tolerance"),
        )?;
        nodes.push(DagNode {
            key_params: ops::schema::semantic(op.params(), &inst.params),
            inst: inst.clone(),
            op,
            outputs: outputs_of[i].clone(),
            inputs,
            resources,
            tolerance,
            upstream,
        });
    }
    let mut graph = DiGraph::with_capacity(nodes.len(), nodes.len());
    for i in 0..nodes.len() {
        graph.add_node(i);
    }
    for (i, n) in nodes.iter().enumerate() {
        for &u in &n.upstream {
            graph.add_edge(NodeIndex::new(u), NodeIndex::new(i), ());
        }
    }
    let order = match petgraph::algo::toposort(&graph, None) {
        Ok(o) => o.into_iter().map(|n| n.index()).collect(),
        Err(_) => {
            let cycle = find_cycle(&graph);
            let names: Vec<&str> = cycle.iter().map(|&i| nodes[i].id()).collect();
            let first = &p.nodes[nodes[cycle[0]].inst.node];
            return Err(src
                .error(
                    first.span,
                    &format!("nodes.{}.inputs", first.id),
                    format!("cycle: {}", names.join(" -> ")),
                )
                .with_help("a node cannot depend on its own output, directly or through others"));
        }
    };
    Ok(Dag {
        pipeline: p,
        nodes,
        graph,
        order,
        by_id,
        root: root.to_path_buf(),
    })
}

fn find_cycle(graph: &DiGraph<usize, ()>) -> Vec<usize> {
    for scc in petgraph::algo::tarjan_scc(graph) {
        let self_loop = scc.len() == 1 && graph.contains_edge(scc[0], scc[0]);
        if scc.len() < 2 && !self_loop {
            continue;
        }
        // Walk inside the component until a node repeats.
        let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
        let mut path = vec![scc[0]];
        loop {
            let cur = *path.last().unwrap_or(&scc[0]);
            let next = graph
                .neighbors(cur)
                .find(|n| inside.contains(n))
                .unwrap_or(scc[0]);
            if let Some(pos) = path.iter().position(|&x| x == next) {
                let mut cyc: Vec<usize> = path[pos..].iter().map(|n| n.index()).collect();
                cyc.push(next.index());
                return cyc;
            }
            path.push(next);
        }
    }
    Vec::new()
}

fn resolve_file(root: &Path, p: &Pipeline, r: &RefAt, key: &str) -> Result<Source, SpecError> {
    let Ref::File(written) = &r.r else {
        unreachable!("called for file refs")
    };
    let path = root.join(written);
    if !path.exists() {
        return Err(p
            .sources
            .error(
                r.span,
                key,
                format!(
                    "`file:{written}`: no such file or directory ({})",
                    path.display()
                ),
            )
            .with_help("paths after `file:` are relative to the project root"));
    }
    // Devices and pipes (`/dev/zero`, a FIFO) would never finish hashing.
    if !path.is_file() && !path.is_dir() {
        return Err(p.sources.error(
            r.span,
            key,
            format!("`file:{written}` is neither a regular file nor a directory"),
        ));
    }
    Ok(Source::File {
        path,
        written: written.clone(),
    })
}

/// What reference resolution looks things up in.
struct Resolver<'a> {
    root: &'a Path,
    p: &'a Pipeline,
    instances: &'a [Instance],
    /// Node index -> its instance indices.
    by_node: &'a [Vec<usize>],
    /// Instance index -> declared outputs.
    outputs_of: &'a [Vec<OutputDecl>],
    /// Node id -> node index.
    node_index: HashMap<&'a str, usize>,
}

/// Resolves one reference (`in_list`: it is an item of a YAML list input).
fn resolve(cx: &Resolver, r: &RefAt, key: &str, in_list: bool) -> Result<Input, SpecError> {
    let Resolver {
        root,
        p,
        instances,
        by_node,
        outputs_of,
        node_index,
    } = cx;
    let (root, p, instances, by_node, outputs_of) = (*root, *p, *instances, *by_node, *outputs_of);
    let src = &p.sources;
    let nr = match &r.r {
        Ref::File(_) => {
            let s = resolve_file(root, p, r, key)?;
            return Ok(if in_list {
                let Ref::File(w) = &r.r else { unreachable!() };
                Input::List(vec![(w.replace('/', "_"), s)])
            } else {
                Input::One(s)
            });
        }
        Ref::Node(nr) => nr,
    };
    let Some(&ni) = node_index.get(nr.node.as_str()) else {
        return Err(expand::unknown_node(src, p, r.span, key, &nr.node));
    };
    let matched: Vec<usize> = by_node[ni]
        .iter()
        .copied()
        .filter(|&i| expand::matches(&instances[i].coords, &nr.filters))
        .collect();
    if matched.is_empty() {
        let have: Vec<String> = by_node[ni]
            .iter()
            .take(6)
            .map(|&i| instances[i].id.clone())
            .collect();
        return Err(src
            .error(
                r.span,
                key,
                format!("`{}` selects no instance", describe(nr)),
            )
            .with_help(format!(
                "instances of `{}`: {}{}",
                nr.node,
                have.join(", "),
                if by_node[ni].len() > 6 { ", ..." } else { "" }
            )));
    }
    for &i in &matched {
        if !outputs_of[i].iter().any(|o| o.name == nr.output) {
            let outs: Vec<&str> = outputs_of[i].iter().map(|o| o.name.as_str()).collect();
            return Err(src
                .error(
                    r.span,
                    key,
                    format!("`{}` has no output `{}`", instances[i].id, nr.output),
                )
                .with_help(if outs.is_empty() {
                    "it declares no outputs".to_string()
                } else {
                    format!("its outputs: {}", outs.join(", "))
                }));
        }
    }
    let source = |i: usize| Source::Node {
        idx: i,
        output: nr.output.clone(),
    };
    if nr.all {
        let entries = matched
            .iter()
            .map(|&i| {
                let inst = &instances[i];
                let name = if in_list || inst.coords.is_empty() {
                    inst.id.clone()
                } else {
                    inst.coord_text()
                };
                (name, source(i))
            })
            .collect();
        return Ok(Input::List(entries));
    }
    if matched.len() > 1 {
        return Err(src
            .error(
                r.span,
                key,
                format!(
                    "`{}` matches {} instances; a single input needs exactly one",
                    describe(nr),
                    matched.len()
                ),
            )
            .with_help(format!(
                "pick one with `{}[k=v]`, or take them all as a list with `{}[*]`",
                nr.node, nr.node
            )));
    }
    let i = matched[0];
    Ok(if in_list {
        Input::List(vec![(instances[i].id.clone(), source(i))])
    } else {
        Input::One(source(i))
    })
}

fn describe(nr: &crate::spec::refs::NodeRef) -> String {
    if nr.filters.is_empty() {
        nr.node.clone()
    } else {
        let f: Vec<String> = nr.filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}[{}]", nr.node, f.join(","))
    }
}
