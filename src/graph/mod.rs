//! `Pipeline` -> [`Dag`]: instances, resolved references, checked params,
//! and a petgraph graph in topological order.
//!
//! Everything that can be checked without running anything is checked here,
//! with file, line and key: unknown ops, params failing an op's schema,
//! references to nothing (unknown node, no matching instance, unknown output),
//! ambiguous references, and cycles (printed in full). A `file:` path that
//! does not exist is not an error: it is recorded in [`Dag::missing`] with
//! where it is asked for, and the nodes that need it cannot run until it
//! exists (see [`Dag::missing_inputs`]).

pub mod codec;
pub mod key;
pub mod memo;
pub mod params;
pub mod resolve;
pub mod resources;
pub mod serial;

use crate::op::{Op, OutputDecl};
use crate::ops;
use crate::spec::expand::{self, Coord};
use crate::spec::refs::Ref;
use crate::spec::{Pipeline, SpecError};
use key::KeyTemplate;
pub use params::Params;
use petgraph::graph::{DiGraph, NodeIndex};
use resolve::{Resolver, resolve_instance};
pub use resources::{Resources, Tolerance};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// One artifact.
    One(Source),
    /// A list input: entry name -> artifact.
    List(Vec<(String, Source)>),
}

/// What a compiled node keeps of its expanded instance.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInstance {
    /// Full name, e.g. `train[size=s]`.
    pub id: String,
    /// Index of the node as written (into [`PipelineInfo::node_ids`]).
    pub node: usize,
    /// Coordinates in naming order.
    pub coords: Vec<(String, Coord)>,
    /// Params after interpolation (all of them, semantic or not).
    pub params: Params,
}

/// One instance, compiled. Two nodes are equal when everything but their
/// op's identity is equal and their ops have the same name and version.
#[derive(Clone)]
pub struct DagNode {
    /// The instance: id, coordinates, params.
    pub inst: NodeInstance,
    /// Its op.
    pub op: &'static dyn Op,
    /// The key preimage without the input digests, serialized once (see [`key`]).
    pub key_template: KeyTemplate,
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

impl PartialEq for DagNode {
    fn eq(&self, o: &Self) -> bool {
        self.inst == o.inst
            && (self.op.name(), self.op.version()) == (o.op.name(), o.op.version())
            && self.key_template == o.key_template
            && self.outputs == o.outputs
            && self.inputs == o.inputs
            && self.resources == o.resources
            && self.tolerance == o.tolerance
            && self.upstream == o.upstream
    }
}

impl std::fmt::Debug for DagNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DagNode")
            .field("inst", &self.inst)
            .field("op", &(self.op.name(), self.op.version()))
            .field("key_template", &self.key_template)
            .field("outputs", &self.outputs)
            .field("inputs", &self.inputs)
            .field("resources", &self.resources)
            .field("tolerance", &self.tolerance)
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl DagNode {
    /// Instance id.
    pub fn id(&self) -> &str {
        &self.inst.id
    }

    /// The params that enter the key (the op's schema marks them semantic).
    pub fn key_params(&self) -> Map<String, Value> {
        crate::op::schema::semantic(self.op.params(), &self.inst.params)
    }
}

/// What a compiled pipeline keeps of the pipeline as written.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineInfo {
    /// The `pipeline:` name.
    pub name: String,
    /// Free-text description.
    pub description: Option<String>,
    /// The root file.
    pub path: PathBuf,
    /// Node ids as written, in file order (instances point into this list).
    pub node_ids: Vec<String>,
}

/// A `file:` input that does not exist. Compilation succeeds without it:
/// the nodes that read it (and everything downstream of them) cannot run
/// until it appears, and `repro status` / `repro run` say so, naming the
/// path and where the pipeline asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingFile {
    /// As written after `file:`.
    pub written: String,
    /// Absolute path looked at.
    pub path: PathBuf,
    /// Where the first reference to it is written, `file:line:col`.
    pub at: String,
    /// The dotted key of that reference, e.g. `nodes.imitate.inputs.base`.
    pub key: String,
    /// The pipeline param whose value names the path, with its location
    /// (`params.models.llama_7b (pipelines/paper.yaml:30:5)`), when one does.
    pub param: Option<String>,
}

impl MissingFile {
    /// `file:PATH (does not exist)`, the phrase every verb uses.
    pub fn phrase(&self) -> String {
        format!("file:{} (does not exist)", self.written)
    }

    /// Where the pipeline asks for it: the param (if any), then the reference.
    pub fn origin(&self) -> String {
        match &self.param {
            Some(p) => format!("{p}; used at {} {}", self.at, self.key),
            None => format!("{} {}", self.at, self.key),
        }
    }
}

/// A compiled pipeline.
pub struct Dag {
    /// The pipeline's name, root file and node ids.
    pub pipeline: PipelineInfo,
    /// Instances, in expansion order.
    pub nodes: Vec<DagNode>,
    /// A topological order of `nodes`.
    pub order: Vec<usize>,
    /// Project root (for `file:` paths).
    pub root: PathBuf,
    /// `file:` inputs that did not exist at compile time, sorted by path.
    pub missing: Vec<MissingFile>,
    /// Instance id -> index, built on first use (a no-op `status` never
    /// looks an instance up by id).
    by_id: OnceLock<HashMap<String, usize>>,
}

impl Dag {
    /// The index of the instance with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id
            .get_or_init(|| {
                self.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (n.inst.id.clone(), i))
                    .collect()
            })
            .get(id)
            .copied()
    }

    /// Instances selected by a node name or an instance id (or a `node[k=v]` selector).
    pub fn select(&self, pattern: &str) -> Vec<usize> {
        if let Some(i) = self.index_of(pattern) {
            return vec![i];
        }
        match crate::spec::refs::parse(pattern) {
            Ok(Ref::Node(r)) => self
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| {
                    self.pipeline.node_ids[n.inst.node] == r.node
                        && expand::matches(&n.inst.coords, &r.filters)
                })
                .map(|(i, _)| i)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Per instance, the indices (into [`Dag::missing`]) of the missing
    /// `file:` inputs it needs, directly or through its upstream, sorted;
    /// `None` when no input is missing (nothing to compute).
    pub fn missing_inputs(&self) -> Option<Vec<Vec<usize>>> {
        if self.missing.is_empty() {
            return None;
        }
        let mut of: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for &i in &self.order {
            let n = &self.nodes[i];
            let mut m: Vec<usize> = n.upstream.iter().flat_map(|&u| of[u].clone()).collect();
            let mut direct = |s: &Source| {
                if let Source::File { written, .. } = s
                    && let Ok(at) = self.missing.binary_search_by(|f| f.written.cmp(written))
                {
                    m.push(at);
                }
            };
            for (_, input) in &n.inputs {
                match input {
                    Input::One(s) => direct(s),
                    Input::List(entries) => entries.iter().for_each(|(_, s)| direct(s)),
                }
            }
            m.sort_unstable();
            m.dedup();
            of[i] = m;
        }
        Some(of)
    }

    /// `missing input: file:A (does not exist), file:B (does not exist)`
    /// for a list of indices into [`Dag::missing`] (the first two, then
    /// `(+N more)`).
    pub fn missing_reason(&self, which: &[usize]) -> String {
        let parts: Vec<String> = which
            .iter()
            .take(2)
            .map(|&m| self.missing[m].phrase())
            .collect();
        let more = match which.len() {
            0..=2 => String::new(),
            n => format!(" (+{} more)", n - 2),
        };
        format!("missing input: {}{more}", parts.join(", "))
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

    /// Assembles a DAG from compiled nodes, ordering them topologically.
    pub fn assemble(
        pipeline: PipelineInfo,
        nodes: Vec<DagNode>,
        root: &Path,
    ) -> Result<Dag, Cycle> {
        let mut graph = DiGraph::<usize, ()>::with_capacity(nodes.len(), nodes.len());
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
                return Err(Cycle {
                    ids: cycle.iter().map(|&i| nodes[i].inst.id.clone()).collect(),
                    node: cycle.first().map_or(0, |&i| nodes[i].inst.node),
                });
            }
        };
        Ok(Dag {
            pipeline,
            nodes,
            order,
            root: root.to_path_buf(),
            missing: Vec::new(),
            by_id: OnceLock::new(),
        })
    }

    /// A DAG from compiled nodes and an order computed before (by
    /// [`Dag::assemble`]); `None` unless `order` is a topological order of
    /// `nodes`.
    pub fn with_order(
        pipeline: PipelineInfo,
        nodes: Vec<DagNode>,
        order: Vec<usize>,
        root: &Path,
    ) -> Option<Dag> {
        let mut position = vec![usize::MAX; nodes.len()];
        for (at, &i) in order.iter().enumerate() {
            if *position.get(i)? != usize::MAX {
                return None;
            }
            position[i] = at;
        }
        let topological = order.len() == nodes.len()
            && nodes.iter().enumerate().all(|(i, n)| {
                n.upstream
                    .iter()
                    .all(|&u| position.get(u).is_some_and(|&p| p < position[i]))
            });
        topological.then(|| Dag {
            pipeline,
            nodes,
            order,
            root: root.to_path_buf(),
            missing: Vec::new(),
            by_id: OnceLock::new(),
        })
    }
}

/// A dependency cycle found while assembling a DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct Cycle {
    /// Instance ids along the cycle (the first is repeated at the end).
    pub ids: Vec<String>,
    /// The node (as written) of the cycle's first instance.
    pub node: usize,
}

/// Upstream instances of a node's inputs, sorted and deduplicated.
pub fn upstream_of(inputs: &[(String, Input)]) -> Vec<usize> {
    let mut upstream = Vec::new();
    let mut add = |s: &Source| {
        if let Source::Node { idx, .. } = s {
            upstream.push(*idx);
        }
    };
    for (_, input) in inputs {
        match input {
            Input::One(s) => add(s),
            Input::List(entries) => entries.iter().for_each(|(_, s)| add(s)),
        }
    }
    upstream.sort_unstable();
    upstream.dedup();
    upstream
}

/// Compiles a loaded pipeline.
pub fn compile(root: &Path, p: Pipeline) -> Result<Dag, SpecError> {
    let instances = expand::expand(&p)?;
    let src = &p.sources;
    let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); p.nodes.len()];
    for (i, inst) in instances.iter().enumerate() {
        by_node[inst.node].push(i);
    }
    // Ops and outputs first: references check output names.
    let mut ops_of = Vec::with_capacity(instances.len());
    let mut outputs_of = Vec::with_capacity(instances.len());
    for inst in &instances {
        let spec = &p.nodes[inst.node];
        let op = ops::find(&spec.op.0).ok_or_else(|| {
            let names = ops::names();
            let e = src.error(
                spec.op.1,
                &format!("nodes.{}.op", spec.id),
                format!("unknown op `{}`", spec.op.0),
            );
            match crate::op::suggest::closest(&spec.op.0, &names) {
                Some(c) => e.with_help(format!(
                    "did you mean `{c}`? (`repro ops` lists: {})",
                    names.join(", ")
                )),
                None => e.with_help(format!("available ops: {}", names.join(", "))),
            }
        })?;
        let check = crate::op::schema::validate(op.params(), &inst.params)
            .and_then(|_| op.check(&inst.params));
        if let Err((param, msg)) = check {
            let span = inst.param_spans.get(&param).copied().unwrap_or(spec.op.1);
            let key = if param.is_empty() {
                format!("nodes.{}.params", spec.id)
            } else {
                format!("nodes.{}.params.{param}", spec.id)
            };
            let mut e = src.error(span, &key, msg);
            if inst.id != spec.id {
                e = e.with_help(format!("in instance `{}`", inst.id));
            }
            return Err(e);
        }
        if !op.takes_inputs()
            && let Some((name, span, _)) = inst.inputs.first()
        {
            return Err(src.error(
                *span,
                &format!("nodes.{}.inputs.{name}", spec.id),
                format!("op `{}` takes no inputs", op.name()),
            ));
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
        files: Default::default(),
        missing: Default::default(),
    };
    let mut resolved = Vec::with_capacity(instances.len());
    for (i, inst) in instances.iter().enumerate() {
        resolved.push(resolve_instance(&cx, inst, ops_of[i])?);
    }
    let mut missing = std::mem::take(&mut *cx.missing.borrow_mut());
    drop(cx);
    missing.sort_by(|a, b| a.written.cmp(&b.written));
    let mut nodes = Vec::with_capacity(instances.len());
    let parts = instances
        .into_iter()
        .zip(resolved)
        .zip(ops_of)
        .zip(outputs_of);
    for (((mut inst, (inputs, resources, tolerance)), op), outputs) in parts {
        if op.gpu_defaults_apply(&inst.params) {
            crate::op::schema::with_device_defaults(op.params(), &mut inst.params, resources.gpus);
        }
        let key_params = crate::op::schema::semantic(op.params(), &inst.params);
        nodes.push(DagNode {
            key_template: KeyTemplate::new(op.name(), op.version(), &key_params),
            upstream: upstream_of(&inputs),
            inst: NodeInstance {
                id: inst.id,
                node: inst.node,
                coords: inst.coords,
                params: Params::new(inst.params),
            },
            op,
            outputs,
            inputs,
            resources,
            tolerance,
        });
    }
    let info = PipelineInfo {
        name: p.name.clone(),
        description: p.description.clone(),
        path: p.path.clone(),
        node_ids: p.nodes.iter().map(|n| n.id.clone()).collect(),
    };
    let mut dag = Dag::assemble(info, nodes, root).map_err(|cycle| {
        let first = &p.nodes[cycle.node];
        src.error(
            first.span,
            &format!("nodes.{}.inputs", first.id),
            format!("cycle: {}", cycle.ids.join(" -> ")),
        )
        .with_help("a node cannot depend on its own output, directly or through others")
    })?;
    dag.missing = missing;
    Ok(dag)
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
