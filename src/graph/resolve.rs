//! Reference resolution: each instance's declared inputs (and the inputs its
//! op implies) become [`Input`]s pointing at other instances or at files, with
//! every problem reported at the reference that causes it.

use super::resources::{self, Resources, Tolerance};
use super::{Input, MissingFile, Source};
use crate::op::{Op, OutputDecl};
use crate::spec::expand::{self, InputDecl, Instance, RefAt};
use crate::spec::refs::{NodeRef, Ref};
use crate::spec::source::Span;
use crate::spec::yaml::{Kind, Yaml};
use crate::spec::{Pipeline, SpecError};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

/// What a `file:` path is on disk, as compilation requires it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// A regular file or a directory (symlinks followed).
    Usable,
    /// Nothing there (or it cannot be looked at).
    Missing,
    /// A device, FIFO or socket: hashing it would never finish.
    Special,
}

/// Looks at a `file:` path the way compilation does.
pub fn check_file(path: &Path) -> FileCheck {
    match std::fs::metadata(path) {
        Err(_) => FileCheck::Missing,
        Ok(m) if m.is_file() || m.is_dir() => FileCheck::Usable,
        Ok(_) => FileCheck::Special,
    }
}

/// What reference resolution looks things up in.
pub(super) struct Resolver<'a> {
    /// Project root (`file:` paths are relative to it).
    pub root: &'a Path,
    /// The pipeline as loaded (for node ids and located errors).
    pub p: &'a Pipeline,
    /// Every instance.
    pub instances: &'a [Instance],
    /// Node index -> its instance indices.
    pub by_node: &'a [Vec<usize>],
    /// Instance index -> declared outputs.
    pub outputs_of: &'a [Vec<OutputDecl>],
    /// Node id -> node index.
    pub node_index: HashMap<&'a str, usize>,
    /// `file:` paths already looked at in this compilation (a fan-out of
    /// 10,000 nodes reading one shared file looks at it once).
    pub files: RefCell<HashMap<String, FileCheck>>,
    /// `file:` paths that do not exist, one entry per path (its first reference).
    pub missing: RefCell<Vec<MissingFile>>,
}

/// An instance's resolved inputs (sorted by name), resources and tolerances.
pub(super) type Resolved = (Vec<(String, Input)>, Resources, BTreeMap<String, Tolerance>);

/// Resolves an instance's inputs and parses its resources and tolerances.
pub(super) fn resolve_instance(
    cx: &Resolver,
    inst: &Instance,
    op: &dyn Op,
) -> Result<Resolved, SpecError> {
    let p = cx.p;
    let src = &p.sources;
    let spec = &p.nodes[inst.node];
    let mut inputs: Vec<(String, Input)> = Vec::with_capacity(inst.inputs.len());
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
        let key = || format!("nodes.{}.params", spec.id);
        inputs.push((name, Input::One(resolve_file(cx, &written, &key)?)));
    }
    for (name, _, decl) in &inst.inputs {
        let key = || format!("nodes.{}.inputs.{name}", spec.id);
        let input = match decl {
            InputDecl::Single(r) => resolve(cx, r, &key, false)?,
            InputDecl::List(items) => {
                let mut entries: Vec<(String, Source)> = Vec::new();
                let mut names = HashSet::new();
                for r in items {
                    match resolve(cx, r, &key, true)? {
                        Input::List(more) => {
                            for (n, s) in more {
                                if !names.insert(n.clone()) {
                                    return Err(src.error(
                                        r.span,
                                        &key(),
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
    check_files(cx, inst, op, &inputs)?;
    let resources = match &inst.resources {
        None => Resources::default(),
        Some(r) => resources::parse_resources(
            src,
            Some(r),
            spec.resources.as_ref(),
            &format!("nodes.{}.resources", spec.id),
        )?,
    };
    let tolerance = match &inst.tolerance {
        None => BTreeMap::new(),
        Some(t) => resources::parse_tolerance(
            src,
            Some(t),
            spec.tolerance.as_ref(),
            &format!("nodes.{}.tolerance", spec.id),
        )?,
    };
    Ok((inputs, resources, tolerance))
}

/// [`Op::check_files`] on the node's single `file:` inputs that exist; an
/// error points at the param it names.
fn check_files(
    cx: &Resolver,
    inst: &Instance,
    op: &dyn Op,
    inputs: &[(String, Input)],
) -> Result<(), SpecError> {
    let files: Vec<(&str, &std::path::Path)> = inputs
        .iter()
        .filter_map(|(name, input)| match input {
            Input::One(Source::File { path, .. }) if path.exists() => {
                Some((name.as_str(), path.as_path()))
            }
            _ => None,
        })
        .collect();
    if files.is_empty() {
        return Ok(());
    }
    let Err((param, msg)) = op.check_files(&inst.params, &files) else {
        return Ok(());
    };
    let spec = &cx.p.nodes[inst.node];
    let span = inst.param_spans.get(&param).copied().unwrap_or(spec.op.1);
    let mut e =
        cx.p.sources
            .error(span, &format!("nodes.{}.params.{param}", spec.id), msg);
    if inst.id != spec.id {
        e = e.with_help(format!("in instance `{}`", inst.id));
    }
    Err(e)
}

fn resolve_file(cx: &Resolver, r: &RefAt, key: &dyn Fn() -> String) -> Result<Source, SpecError> {
    let Ref::File(written) = &r.r else {
        unreachable!("called for file refs")
    };
    let path = cx.root.join(written);
    let mut first = false;
    let check = *cx
        .files
        .borrow_mut()
        .entry(written.clone())
        .or_insert_with(|| {
            first = true;
            check_file(&path)
        });
    match check {
        FileCheck::Usable => Ok(Source::File {
            path,
            written: written.clone(),
        }),
        // Not an error: the nodes that need it cannot run until it exists
        // (`repro status` and `repro run` list it with this location).
        FileCheck::Missing => {
            if first {
                cx.missing.borrow_mut().push(MissingFile {
                    written: written.clone(),
                    path: path.clone(),
                    at: location(cx, r.span),
                    key: key(),
                    param: param_naming(cx, written),
                });
            }
            Ok(Source::File {
                path,
                written: written.clone(),
            })
        }
        // Devices and pipes (`/dev/zero`, a FIFO) would never finish hashing.
        FileCheck::Special => Err(cx.p.sources.error(
            r.span,
            &key(),
            format!("`file:{written}` is neither a regular file nor a directory"),
        )),
    }
}

/// `file:line:col` of a span.
fn location(cx: &Resolver, span: Span) -> String {
    let f = cx.p.sources.file(span.file);
    format!("{}:{}:{}", f.path.display(), span.line, span.col)
}

/// The pipeline param whose value is this path (`file:PATH` or `PATH`),
/// with its location: `params.models.llama_7b (pipelines/paper.yaml:30:5)`.
fn param_naming(cx: &Resolver, written: &str) -> Option<String> {
    fn find(y: &Yaml, path: &str, written: &str) -> Option<(String, Span)> {
        match &y.kind {
            Kind::Str(s) if s.strip_prefix("file:").unwrap_or(s) == written => {
                Some((path.to_string(), y.span))
            }
            Kind::Map(entries) => entries
                .iter()
                .find_map(|(k, v)| find(v, &format!("{path}.{}", k.name), written)),
            Kind::Seq(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, v)| find(v, &format!("{path}[{i}]"), written)),
            _ => None,
        }
    }
    cx.p.params.iter().find_map(|(name, y)| {
        find(y, &format!("params.{name}"), written)
            .map(|(p, span)| format!("{p} ({})", location(cx, span)))
    })
}

/// Resolves one reference (`in_list`: it is an item of a YAML list input).
fn resolve(
    cx: &Resolver,
    r: &RefAt,
    key: &dyn Fn() -> String,
    in_list: bool,
) -> Result<Input, SpecError> {
    let (p, instances, by_node, outputs_of) = (cx.p, cx.instances, cx.by_node, cx.outputs_of);
    let src = &p.sources;
    let nr = match &r.r {
        Ref::File(w) => {
            let s = resolve_file(cx, r, key)?;
            return Ok(if in_list {
                Input::List(vec![(w.replace('/', "_"), s)])
            } else {
                Input::One(s)
            });
        }
        Ref::Node(nr) => nr,
    };
    let Some(&ni) = cx.node_index.get(nr.node.as_str()) else {
        return Err(expand::unknown_node(src, p, r.span, &key(), &nr.node));
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
                &key(),
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
                    &key(),
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
                &key(),
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

fn describe(nr: &NodeRef) -> String {
    if nr.filters.is_empty() {
        nr.node.clone()
    } else {
        let f: Vec<String> = nr.filters.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("{}[{}]", nr.node, f.join(","))
    }
}
