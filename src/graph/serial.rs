//! A compiled [`Dag`] as bytes (with [`super::codec`]'s primitives), for the
//! compiled-DAG memo.
//!
//! Layout: the pipeline (name, description, root file, node ids), the table
//! of ops the nodes use (by name), then each node: id, node index,
//! coordinates, params (a length-prefixed object, so that a reader can leave
//! it encoded), op index, key template, outputs, inputs, resources and
//! tolerances; then the topological order, then the missing `file:` inputs. A `file:` source under the
//! project root is stored as written and re-joined to the root on reading.
//! Each node's upstream list is derived from its inputs.

use super::codec::{Corrupt, Reader, Writer};
use super::key::KeyTemplate;
use super::resources::{Resources, Tolerance};
use super::{
    Dag, DagNode, Input, MissingFile, NodeInstance, Params, PipelineInfo, Source, upstream_of,
};
use crate::op::{Op, OutputDecl};
use crate::ops;
use crate::spec::expand::Coord;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Writes a DAG.
pub fn write_dag(w: &mut Writer, dag: &Dag) {
    let p = &dag.pipeline;
    w.str(&p.name);
    w.opt_str(p.description.as_deref());
    w.path(&p.path);
    w.len(p.node_ids.len());
    p.node_ids.iter().for_each(|id| w.str(id));
    let mut ops: Vec<&str> = dag.nodes.iter().map(|n| n.op.name()).collect();
    ops.sort_unstable();
    ops.dedup();
    w.len(ops.len());
    ops.iter().for_each(|op| w.str(op));
    w.len(dag.nodes.len());
    for n in &dag.nodes {
        let op = ops.binary_search(&n.op.name()).unwrap_or_default();
        write_node(w, n, op, &dag.root);
    }
    dag.order.iter().for_each(|&i| w.len(i));
    w.len(dag.missing.len());
    for m in &dag.missing {
        w.str(&m.written);
        w.path(&m.path);
        w.str(&m.at);
        w.str(&m.key);
        w.opt_str(m.param.as_deref());
    }
}

fn write_node(w: &mut Writer, n: &DagNode, op: usize, root: &Path) {
    w.str(&n.inst.id);
    w.len(n.inst.node);
    w.len(n.inst.coords.len());
    for (k, c) in &n.inst.coords {
        w.str(k);
        w.str(&c.text);
        w.value(&c.value);
    }
    let mut params = Writer::default();
    params.map(&n.inst.params);
    w.bytes(&params.buf);
    w.len(op);
    w.str(n.key_template.as_str());
    w.len(n.outputs.len());
    for o in &n.outputs {
        w.str(&o.name);
        w.str(&o.path);
        w.bool(o.heavy);
    }
    w.len(n.inputs.len());
    for (name, input) in &n.inputs {
        w.str(name);
        match input {
            Input::One(s) => {
                w.u8(0);
                write_source(w, s, root);
            }
            Input::List(entries) => {
                w.u8(1);
                w.len(entries.len());
                for (e, s) in entries {
                    w.str(e);
                    write_source(w, s, root);
                }
            }
        }
    }
    let r = &n.resources;
    w.len(r.cpus);
    w.len(r.gpus);
    w.str(&r.executor);
    for o in [&r.time, &r.mem, &r.partition, &r.account, &r.qos] {
        w.opt_str(o.as_deref());
    }
    w.len(r.extra.len());
    r.extra.iter().for_each(|x| w.str(x));
    w.len(r.retries as usize);
    w.len(r.nodes);
    w.len(n.tolerance.len());
    for (k, t) in &n.tolerance {
        w.str(k);
        w.f64(t.abs);
        w.f64(t.rel);
    }
}

fn write_source(w: &mut Writer, s: &Source, root: &Path) {
    match s {
        Source::Node { idx, output } => {
            w.u8(0);
            w.len(*idx);
            w.str(output);
        }
        // Compilation makes every `file:` path the root joined with what is
        // written; anything else is stored in full.
        Source::File { path, written } if *path == root.join(written) => {
            w.u8(1);
            w.str(written);
        }
        Source::File { path, written } => {
            w.u8(2);
            w.path(path);
            w.str(written);
        }
    }
}

/// How [`read_dag`] gets each node's params.
#[derive(Debug, Clone, Copy)]
pub enum ParamsFrom<'a> {
    /// Decode them now.
    Decode,
    /// Leave them encoded in this buffer, where the reader's input starts at
    /// the given offset, until first use ([`Params::encoded`]).
    Lazy(&'a Arc<Vec<u8>>, usize),
}

/// What reading a node needs besides the bytes.
struct Cx<'a> {
    n_nodes: usize,
    n_ids: usize,
    ops: Vec<&'static dyn Op>,
    root: &'a Path,
    params: ParamsFrom<'a>,
}

/// Reads a DAG written by [`write_dag`] for the project at `root`.
pub fn read_dag(r: &mut Reader, root: &Path, params: ParamsFrom) -> Result<Dag, Corrupt> {
    let name = r.str()?;
    let description = r.opt_str()?;
    let path = r.path()?;
    let n_ids = r.count()?;
    let mut node_ids = Vec::with_capacity(n_ids);
    for _ in 0..n_ids {
        node_ids.push(r.str()?);
    }
    let n_ops = r.count()?;
    let mut ops = Vec::with_capacity(n_ops);
    for _ in 0..n_ops {
        ops.push(ops::find(r.str_ref()?).ok_or(Corrupt("unknown op"))?);
    }
    let n_nodes = r.count()?;
    let cx = Cx {
        n_nodes,
        n_ids,
        ops,
        root,
        params,
    };
    let mut nodes = Vec::with_capacity(n_nodes);
    for _ in 0..n_nodes {
        nodes.push(read_node(r, &cx)?);
    }
    let mut order = Vec::with_capacity(n_nodes);
    for _ in 0..n_nodes {
        order.push(r.index(n_nodes)?);
    }
    let n_missing = r.count()?;
    let mut missing = Vec::with_capacity(n_missing);
    for _ in 0..n_missing {
        missing.push(MissingFile {
            written: r.str()?,
            path: r.path()?,
            at: r.str()?,
            key: r.str()?,
            param: r.opt_str()?,
        });
    }
    let info = PipelineInfo {
        name,
        description,
        path,
        node_ids,
    };
    let mut dag =
        Dag::with_order(info, nodes, order, root).ok_or(Corrupt("not in topological order"))?;
    dag.missing = missing;
    Ok(dag)
}

fn read_node(r: &mut Reader, cx: &Cx) -> Result<DagNode, Corrupt> {
    let id = r.str()?;
    let node = r.index(cx.n_ids)?;
    let n_coords = r.count()?;
    let mut coords = Vec::with_capacity(n_coords);
    for _ in 0..n_coords {
        let k = r.str()?;
        let text = r.str()?;
        let value = r.value()?;
        coords.push((k, Coord { text, value }));
    }
    let encoded = r.bytes()?;
    let params = match cx.params {
        ParamsFrom::Decode => Params::new(Params::check(encoded)?),
        ParamsFrom::Lazy(bytes, offset) => {
            let end = offset + r.position();
            Params::encoded(bytes.clone(), end - encoded.len()..end)
        }
    };
    let op = cx.ops[r.index(cx.ops.len())?];
    let key_template = KeyTemplate::from_serialized(r.str()?);
    let n_out = r.count()?;
    let mut outputs = Vec::with_capacity(n_out);
    for _ in 0..n_out {
        outputs.push(OutputDecl {
            name: r.str()?,
            path: r.str()?,
            heavy: r.bool()?,
        });
    }
    let n_in = r.count()?;
    let mut inputs = Vec::with_capacity(n_in);
    for _ in 0..n_in {
        let name = r.str()?;
        let input = match r.u8()? {
            0 => Input::One(read_source(r, cx)?),
            1 => {
                let k = r.count()?;
                let mut entries = Vec::with_capacity(k);
                for _ in 0..k {
                    let e = r.str()?;
                    entries.push((e, read_source(r, cx)?));
                }
                Input::List(entries)
            }
            _ => return Err(Corrupt("bad input tag")),
        };
        inputs.push((name, input));
    }
    let resources = Resources {
        cpus: r.u64()? as usize,
        gpus: r.u64()? as usize,
        executor: r.str()?,
        time: r.opt_str()?,
        mem: r.opt_str()?,
        partition: r.opt_str()?,
        account: r.opt_str()?,
        qos: r.opt_str()?,
        extra: {
            let k = r.count()?;
            let mut v = Vec::with_capacity(k);
            for _ in 0..k {
                v.push(r.str()?);
            }
            v
        },
        retries: r.u64()? as u32,
        nodes: r.u64()? as usize,
    };
    let n_tol = r.count()?;
    let mut tolerance = BTreeMap::new();
    for _ in 0..n_tol {
        let k = r.str()?;
        let t = Tolerance {
            abs: r.f64()?,
            rel: r.f64()?,
        };
        tolerance.insert(k, t);
    }
    Ok(DagNode {
        upstream: upstream_of(&inputs),
        inst: NodeInstance {
            id,
            node,
            coords,
            params,
        },
        op,
        key_template,
        outputs,
        inputs,
        resources,
        tolerance,
    })
}

fn read_source(r: &mut Reader, cx: &Cx) -> Result<Source, Corrupt> {
    match r.u8()? {
        0 => Ok(Source::Node {
            idx: r.index(cx.n_nodes)?,
            output: r.str()?,
        }),
        1 => {
            let written = r.str()?;
            Ok(Source::File {
                path: cx.root.join(&written),
                written,
            })
        }
        2 => Ok(Source::File {
            path: r.path()?,
            written: r.str()?,
        }),
        _ => Err(Corrupt("bad source tag")),
    }
}
