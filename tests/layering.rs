//! The crate's layering, checked from its source text.
//!
//! Every top-level module (`src/<name>/` or `src/<name>.rs`) has a layer;
//! a module may import (`crate::<other>`) only modules of a lower layer, or
//! of its own layer when the table below says the two are peers. This keeps
//! the import graph among top-level modules free of cycles, so a newcomer
//! can read the crate bottom-up. The same scan also checks that no
//! submodule directory imports itself in a circle through its files.
//!
//! Run `cargo test --test layering -- --nocapture` to print the graph.

use petgraph::algo::tarjan_scc;
use petgraph::graphmap::DiGraphMap;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Top-level modules from the bottom up. A module may use any module of a
/// lower layer, never one of a higher layer nor one of its own layer. So
/// `eval`, `data`, `api`, `report`, `model` and `mini` may use the op
/// contract (`op`) but never `ops`, `exec`, `graph`, `spec` or `cli`.
const LAYERS: &[&[&str]] = &[
    // Leaf utilities and the op contract: import nothing else of the crate.
    &["rng"],
    &["op"],
    // Libraries an op calls into; they see the contract, never the engine.
    &["cache", "config", "model"],
    &["eval", "mini", "project"],
    &["api", "data", "torch"],
    &["report"],
    // The pipeline language, then the op files and their registry.
    &["spec"],
    &["ops"],
    // The engine: the DAG and its keys, the scheduler, remote caches, the CLI.
    &["graph"],
    &["exec"],
    &["remote"],
    &["cli"],
];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn top_module(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src_dir()).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The names that follow `crate::` in a text, outside line comments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let path: Vec<String> = tail
                .split("::")
                .map(|seg| {
                    seg.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|seg| !seg.is_empty())
                .collect();
            paths.push(path);
            rest = tail;
        }
    }
    paths
}

fn top_level_graph() -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else {
            continue;
        };
        let text = fs::read_to_string(&file).expect("read source");
        for path in crate_paths(&text) {
            let Some(to) = path.first() else { continue };
            if *to != from && is_module(to) {
                let rel = file.strip_prefix(src_dir()).unwrap().display().to_string();
                let users = edges.entry((from.clone(), to.clone())).or_default();
                if !users.contains(&rel) {
                    users.push(rel);
                }
            }
        }
    }
    edges
}

fn is_module(name: &str) -> bool {
    LAYERS.iter().any(|layer| layer.contains(&name))
}

fn layer_of(name: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&name))
        .unwrap_or_else(|| panic!("top-level module `{name}` has no layer in tests/layering.rs"))
}

#[test]
fn every_top_level_module_has_a_layer() {
    let mut files = Vec::new();
    rust_files(&src_dir(), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    for module in &modules {
        layer_of(module);
    }
}

#[test]
fn top_level_modules_import_only_lower_layers() {
    let edges = top_level_graph();
    let mut wrong = Vec::new();
    for ((from, to), users) in &edges {
        if layer_of(to) >= layer_of(from) {
            wrong.push(format!("{from} -> {to} (in {})", users.join(", ")));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering (tests/layering.rs LAYERS):\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn no_import_cycle_among_top_level_modules() {
    let edges = top_level_graph();
    let mut graph = DiGraphMap::<&str, ()>::new();
    for (from, to) in edges.keys() {
        graph.add_edge(from.as_str(), to.as_str(), ());
    }
    let cycles: Vec<Vec<&str>> = tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .collect();
    for ((from, to), users) in &edges {
        println!("{from} -> {to}: {}", users.len());
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}

/// Files of one directory module (`src/<dir>/*.rs`) that import each other in
/// a circle, by `super::` or `crate::<dir>::` paths.
fn file_cycles(dir: &str) -> Vec<Vec<String>> {
    let root = src_dir().join(dir);
    if !root.is_dir() {
        return Vec::new();
    }
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let stem = |p: &Path| {
        let name = p.strip_prefix(&root).unwrap().with_extension("");
        let name = name.display().to_string();
        name.strip_suffix("/mod").map(String::from).unwrap_or(name)
    };
    let names: BTreeSet<String> = files.iter().map(|f| stem(f)).collect();
    let mut graph = DiGraphMap::<&str, ()>::new();
    let mut owned = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("read source");
        let from = stem(file);
        let nested = from.contains('/');
        for to in sibling_uses(&text, dir, nested) {
            if to != from && names.contains(&to) && !from.starts_with(&format!("{to}/")) {
                owned.push((from.clone(), to));
            }
        }
    }
    for (from, to) in &owned {
        graph.add_edge(from.as_str(), to.as_str(), ());
    }
    tarjan_scc(&graph)
        .into_iter()
        .filter(|scc| scc.len() > 1)
        .map(|scc| scc.into_iter().map(String::from).collect())
        .collect()
}

/// Sibling modules a file names through `super::x` or `crate::<dir>::x`.
/// `super::` counts only in files directly under the directory.
fn sibling_uses(text: &str, dir: &str, nested: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut prefixes = vec![format!("crate::{dir}::")];
    if !nested {
        prefixes.push("super::".to_string());
    }
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        for prefix in &prefixes {
            let mut rest = code;
            while let Some(at) = rest.find(prefix.as_str()) {
                let tail = &rest[at + prefix.len()..];
                out.extend(first_names(tail));
                rest = tail;
            }
        }
    }
    out
}

/// The module names at the start of a path tail: `x::...` gives `x`,
/// `{x, y::z}` gives `x` and `y`.
fn first_names(tail: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    match tail.strip_prefix('{') {
        Some(group) => group
            .split('}')
            .next()
            .unwrap_or("")
            .split(',')
            .map(ident)
            .filter(|n| !n.is_empty() && n != "self")
            .collect(),
        None => vec![ident(tail)]
            .into_iter()
            .filter(|n| !n.is_empty())
            .collect(),
    }
}

#[test]
fn no_import_cycle_among_the_files_of_a_directory_module() {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(src_dir()).expect("src/") {
        let path = entry.expect("src/ entry").path();
        let Some(dir) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        let cycles = file_cycles(dir);
        if !cycles.is_empty() {
            found.push(format!("src/{dir}: {cycles:?}"));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles among files:\n{}",
        found.join("\n")
    );
}
