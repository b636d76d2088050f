//! The compiled-DAG memo never changes behaviour: a DAG read back from the
//! memo equals the compiled one node for node (ids, params, key templates,
//! inputs, edges, order), its keys equal the keys of the full preimage, and
//! anything a compile depends on invalidates it. A corrupt or truncated memo
//! is ignored, never trusted.

mod common;

use common::Project;
use repro::cache::Cache;
use repro::cache::lockfile::LockFile;
use repro::exec::freshness::{self, Check, Eval, Evaluator, Known};
use repro::graph::codec::{Reader, Writer};
use repro::graph::key::{self, canonical_json};
use repro::graph::memo::{self, Miss, Request};
use repro::graph::serial::{self, ParamsFrom};
use repro::graph::{Dag, Input, Source};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Loads and compiles `text` as the file at `path`; `None` if it does not compile.
fn compile(root: &Path, path: &Path, text: &str, overrides: &[String]) -> Option<Dag> {
    let p = repro::spec::load_str(path, text.to_string(), overrides).ok()?;
    repro::graph::compile(root, p).ok()
}

/// The pipeline files a compile read (path as read, text), as the CLI stores them.
fn files_of(path: &Path, text: &str, overrides: &[String]) -> Vec<(PathBuf, Arc<String>)> {
    let p = repro::spec::load_str(path, text.to_string(), overrides).expect("loads");
    p.files
        .iter()
        .map(|(path, id)| (path.clone(), p.sources.file(*id).text.clone()))
        .collect()
}

/// The DAG written with the memo's serializer and read back, lazily (as the
/// memo does) or decoded at once.
fn round_trip(dag: &Dag, root: &Path, lazy: bool) -> Dag {
    let mut w = Writer::default();
    serial::write_dag(&mut w, dag);
    let bytes = Arc::new(w.buf);
    let mut r = Reader::new(&bytes);
    let from = if lazy {
        ParamsFrom::Lazy(&bytes, 0)
    } else {
        ParamsFrom::Decode
    };
    let back = serial::read_dag(&mut r, root, from).expect("reads back");
    assert!(r.at_end(), "trailing bytes");
    back
}

/// A fake content digest for an input source.
fn fake_digest(s: &Source) -> String {
    let text = match s {
        Source::Node { idx, output } => format!("node {idx} {output}"),
        Source::File { written, .. } => format!("file {written}"),
    };
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Each node's key from the full JSON preimage (the uncached, original
/// path: `key_of(preimage(op, version, semantic params, inputs))`), with
/// fake input digests.
fn preimage_keys(dag: &Dag) -> Vec<String> {
    dag.nodes
        .iter()
        .map(|n| {
            let mut inputs = Map::new();
            for (name, input) in &n.inputs {
                let v = match input {
                    Input::One(s) => Value::String(fake_digest(s)),
                    Input::List(entries) => Value::Object(
                        entries
                            .iter()
                            .map(|(e, s)| (e.clone(), Value::String(fake_digest(s))))
                            .collect(),
                    ),
                };
                inputs.insert(name.clone(), v);
            }
            let params = repro::op::schema::semantic(n.op.params(), &n.inst.params);
            key::key_of(&key::preimage(n.op.name(), n.op.version(), &params, inputs))
        })
        .collect()
}

/// Each node's key from its key template, with the same fake digests.
fn template_keys(dag: &Dag) -> Vec<String> {
    dag.nodes
        .iter()
        .map(|n| {
            let mut inputs = Map::new();
            for (name, input) in &n.inputs {
                let v = match input {
                    Input::One(s) => Value::String(fake_digest(s)),
                    Input::List(entries) => Value::Object(
                        entries
                            .iter()
                            .map(|(e, s)| (e.clone(), Value::String(fake_digest(s))))
                            .collect(),
                    ),
                };
                inputs.insert(name.clone(), v);
            }
            let json = canonical_json(&Value::Object(inputs));
            n.key_template.key(json.as_bytes(), None)
        })
        .collect()
}

/// Every edge of a DAG: (upstream, downstream) pairs.
fn edges(dag: &Dag) -> Vec<(usize, usize)> {
    let mut e: Vec<(usize, usize)> = dag
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.upstream.iter().map(move |&u| (u, i)))
        .collect();
    e.sort_unstable();
    e
}

/// Asserts that `back` is `dag` in every respect a key or a verb can see.
fn assert_same(dag: &Dag, back: &Dag, what: &str) {
    assert_eq!(dag.pipeline, back.pipeline, "{what}: pipeline info");
    assert_eq!(dag.nodes.len(), back.nodes.len(), "{what}: node count");
    for (a, b) in dag.nodes.iter().zip(&back.nodes) {
        assert_eq!(a, b, "{what}: node {}", a.id());
        assert_eq!(
            a.key_params(),
            b.key_params(),
            "{what}: key params of {}",
            a.id()
        );
    }
    assert_eq!(dag.order, back.order, "{what}: order");
    assert_eq!(edges(dag), edges(back), "{what}: edges");
    assert_eq!(dag.root, back.root, "{what}: root");
    let want = preimage_keys(dag);
    assert_eq!(want, template_keys(dag), "{what}: compiled template keys");
    assert_eq!(want, template_keys(back), "{what}: memo template keys");
    assert_eq!(want, preimage_keys(back), "{what}: memo preimage keys");
    for n in &back.nodes {
        assert_eq!(
            back.index_of(n.id()),
            dag.index_of(n.id()),
            "{what}: {}",
            n.id()
        );
    }
}

/// Keys and outcomes of every node, evaluated against `cache` as if every
/// upstream output were known (fake digests): no node waits on another.
fn eval_all_known(dag: &Dag, cache: &Cache) -> Vec<String> {
    let lock = LockFile::default();
    let ev = Evaluator {
        dag,
        cache,
        lock: &lock,
        check: Check::Exists,
        missing_ok: false,
        snapshot: None,
    };
    let known: Vec<Option<Known>> = dag
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            Some(Known {
                key: format!("{i:064x}"),
                outputs: n
                    .outputs
                    .iter()
                    .map(|o| {
                        let s = Source::Node {
                            idx: i,
                            output: o.name.clone(),
                        };
                        (o.name.clone(), fake_digest(&s))
                    })
                    .collect(),
            })
        })
        .collect();
    (0..dag.nodes.len())
        .map(|i| match ev.eval(i, &known) {
            Eval::Miss { key, preimage, .. } => {
                // The streamed key is the key of the full JSON preimage.
                assert_eq!(key::key_of(&preimage), key, "node {}", dag.nodes[i].id());
                format!("miss {key}")
            }
            Eval::Hit { key, .. } => format!("hit {key}"),
            Eval::Pending { reason } => format!("pending {reason}"),
        })
        .collect()
}

/// Pipeline files of the repository and the malformed corpus.
fn corpus() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["pipelines", "tests/malformed", "tests/malformed/inc"] {
        for e in std::fs::read_dir(root().join(dir)).expect("dir").flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// The benchmark's shapes (bench/gen_repro.py), small.
fn bench_shapes(n: usize) -> Vec<(&'static str, String)> {
    let mut chain = String::from("pipeline: bench\nnodes:\n");
    for i in 0..n {
        let prev = if i == 0 {
            "file:pipelines/example.yaml".to_string()
        } else {
            format!("s{}", i - 1)
        };
        chain += &format!(
            "  s{i}:\n    op: shell\n    inputs: {{prev: '{prev}'}}\n    params: {{cmd: 'head -c 16 in/prev > out/s{i}.txt && echo {i} >> out/s{i}.txt', outs: s{i}.txt}}\n"
        );
    }
    let mut lit = String::from("pipeline: bench\nnodes:\n");
    for i in 0..n {
        lit += &format!(
            "  f{i}:\n    op: shell\n    inputs: {{shared: 'file:pipelines/example.yaml'}}\n    params: {{cmd: 'cat in/shared > out/f{i}.txt && echo {i} >> out/f{i}.txt', outs: f{i}.txt}}\n"
        );
    }
    let list: Vec<String> = (0..n).map(|i| format!("f{i}")).collect();
    lit += &format!(
        "  report:\n    op: shell\n    inputs: {{runs: [{}]}}\n    params: {{cmd: 'cat in/runs/* > out/report.txt', outs: report.txt}}\n",
        list.join(", ")
    );
    let values: Vec<String> = (0..n).map(|i| i.to_string()).collect();
    let tmpl = format!(
        "pipeline: bench\nnodes:\n  f:\n    op: shell\n    matrix: {{i: [{}]}}\n    inputs: {{shared: 'file:pipelines/example.yaml'}}\n    params: {{cmd: 'cat in/shared > out/f${{i}}.txt && echo ${{i}} >> out/f${{i}}.txt', outs: 'f${{i}}.txt'}}\n  report:\n    op: shell\n    inputs: {{runs: 'f[*]'}}\n    params: {{cmd: 'cat in/runs/* > out/report.txt', outs: report.txt}}\n",
        values.join(", ")
    );
    vec![
        ("chain", chain),
        ("fanout-literal", lit),
        ("fanout-template", tmpl),
    ]
}

#[test]
fn every_pipeline_reads_back_identically() {
    let root = root();
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("cache");
    let mut compiled = 0;
    let mut cases: Vec<(String, PathBuf, String, Vec<String>)> = Vec::new();
    for f in corpus() {
        let text = std::fs::read_to_string(&f).expect("read");
        cases.push((f.display().to_string(), f.clone(), text.clone(), Vec::new()));
        cases.push((
            format!("{} -s seed=7", f.display()),
            f,
            text,
            vec!["seed=7".into()],
        ));
    }
    for (name, text) in bench_shapes(40) {
        cases.push((
            name.into(),
            root.join("pipelines/bench.yaml"),
            text,
            Vec::new(),
        ));
    }
    for (what, path, text, overrides) in &cases {
        let Some(dag) = compile(root, path, text, overrides) else {
            continue;
        };
        compiled += 1;
        for lazy in [true, false] {
            let back = round_trip(&dag, root, lazy);
            assert_same(&dag, &back, what);
            assert_eq!(
                eval_all_known(&dag, &cache),
                eval_all_known(&back, &cache),
                "{what}: evaluation"
            );
        }
    }
    assert!(compiled >= 10, "only {compiled} pipelines compiled");
}

/// Small random edits of the corpus (numbers, lines, values): whatever
/// compiles reads back identically.
#[test]
fn mutated_pipelines_read_back_identically() {
    let root = root();
    // The files that compile, plus the benchmark's shapes.
    let mut seeds: Vec<(PathBuf, String)> = corpus()
        .into_iter()
        .map(|f| {
            let t = std::fs::read_to_string(&f).expect("read");
            (f, t)
        })
        .filter(|(f, t)| compile(root, f, t, &[]).is_some())
        .collect();
    for (_, text) in bench_shapes(5) {
        seeds.push((root.join("pipelines/bench.yaml"), text));
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n.max(1) as u64) as usize
    };
    let words = [
        "1", "2.5", "1e-5", "-3", "true", "null", "x", "\"a b\"", "[1, 2]", "{k: v}", "${seed}",
    ];
    let mut compiled = 0;
    for _ in 0..2000 {
        let (path, text) = &seeds[next(seeds.len())];
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.is_empty() {
            continue;
        }
        for _ in 0..1 + next(3) {
            let at = next(lines.len());
            match next(4) {
                0 => {
                    let l = lines[at].clone();
                    lines.insert(at, l);
                }
                1 if lines.len() > 1 => {
                    lines.remove(at);
                }
                2 => {
                    // Replace the value after the last `: ` on the line.
                    if let Some(pos) = lines[at].rfind(": ") {
                        let w = words[next(words.len())];
                        lines[at] = format!("{}: {w}", &lines[at][..pos]);
                    }
                }
                _ => {
                    let digits: Vec<usize> = lines[at]
                        .char_indices()
                        .filter(|(_, c)| c.is_ascii_digit())
                        .map(|(i, _)| i)
                        .collect();
                    if !digits.is_empty() {
                        let i = digits[next(digits.len())];
                        let d = char::from(b'0' + next(10) as u8);
                        lines[at].replace_range(i..i + 1, &d.to_string());
                    }
                }
            }
        }
        let text = lines.join("\n") + "\n";
        if let Some(dag) = compile(root, path, &text, &[]) {
            compiled += 1;
            assert_same(&dag, &round_trip(&dag, root, true), &text);
        }
    }
    assert!(compiled > 300, "only {compiled} mutants compiled");
}

/// The committed pipelines evaluated against the committed cache (report
/// nodes as `repro report` renders them): every key from a memo-read DAG
/// equals the compiled one, every node the committed lock file names is a hit
/// with the lock's key (computed by earlier builds), and the nodes it does not
/// name (the paper's compute nodes, which need weights absent here) are not.
#[test]
fn committed_keys_are_unchanged() {
    let root = root();
    let cache = Cache::open(root).expect("cache");
    for name in ["example", "paper", "mini"] {
        let path = root.join(format!("pipelines/{name}.yaml"));
        let text = std::fs::read_to_string(&path).expect("read");
        let dag = compile(root, &path, &text, &[]).expect("compiles");
        let back = round_trip(&dag, root, true);
        let lock = LockFile::read(&root.join(format!("pipelines/{name}.lock"))).expect("lock");
        let keys = |d: &Dag| -> Vec<(String, Option<String>)> {
            let ev = Evaluator {
                dag: d,
                cache: &cache,
                lock: &lock,
                check: Check::Exists,
                missing_ok: true,
                snapshot: None,
            };
            freshness::evaluate_all(&ev)
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let id = d.nodes[i].id();
                    assert_eq!(
                        matches!(e, Eval::Hit { .. }),
                        lock.nodes.contains_key(id),
                        "{name}: {id} {e:?}"
                    );
                    (id.to_string(), e.key().map(str::to_string))
                })
                .collect()
        };
        let a = keys(&dag);
        assert_eq!(a, keys(&back), "{name}");
        let hits: Vec<&(String, Option<String>)> = a
            .iter()
            .filter(|(id, _)| lock.nodes.contains_key(id))
            .collect();
        assert_eq!(hits.len(), lock.nodes.len(), "{name}");
        if name != "paper" {
            assert_eq!(
                a.len(),
                lock.nodes.len(),
                "{name}: every node is in the lock"
            );
        }
        for (id, k) in hits {
            assert_eq!(
                k.as_deref(),
                Some(lock.nodes[id].key.as_str()),
                "{name}: {id}"
            );
        }
    }
}

const PIPE: &str = "pipeline: p
include: [inc.yaml]
params: {n: 2}
nodes:
  src:
    op: file
    params: {path: data/in.txt}
  a:
    op: shell
    matrix: {k: [1, 2]}
    inputs: {x: src, y: 'file:data/dir'}
    params: {cmd: 'cat in/x > out/o.txt; echo ${k} ${n} >> out/o.txt', outs: o.txt}
";

const INC: &str = "params: {m: 1}
nodes:
  b:
    op: shell
    inputs: {runs: 'a[*]'}
    params: {cmd: 'cat in/runs/* > out/b.txt; echo ${m}', outs: b.txt}
";

fn project() -> Project {
    let p = Project::new();
    p.write("pipelines/p.yaml", PIPE);
    p.write("pipelines/inc.yaml", INC);
    p.write("data/in.txt", "hello\n");
    p.write("data/dir/f.txt", "f\n");
    p
}

/// Compiles the project's pipeline and stores its memo, as `repro` does.
fn store(p: &Project, overrides: &[String]) -> Dag {
    let root = p.path();
    let path = root.join("pipelines/p.yaml");
    let text = std::fs::read_to_string(&path).expect("read");
    let dag = compile(root, &path, &text, overrides).expect("compiles");
    let files = files_of(&path, &text, overrides);
    let files: Vec<(&Path, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_path(), t.as_str()))
        .collect();
    let req = Request {
        root,
        path: &path,
        overrides,
    };
    memo::store(&req, &files, &dag).expect("stores");
    dag
}

fn load(p: &Project, overrides: &[String]) -> Result<Dag, Miss> {
    let path = p.path().join("pipelines/p.yaml");
    memo::load(&Request {
        root: p.path(),
        path: &path,
        overrides,
    })
}

fn memo_file(p: &Project) -> PathBuf {
    let path = p.path().join("pipelines/p.yaml");
    memo::memo_path(&Request {
        root: p.path(),
        path: &path,
        overrides: &[],
    })
}

#[test]
fn memo_is_used_when_nothing_changed() {
    let p = project();
    assert!(matches!(load(&p, &[]), Err(Miss::Absent)));
    let dag = store(&p, &[]);
    let back = load(&p, &[]).expect("memo hit");
    assert_same(&dag, &back, "memo");
    // Content of `file:` inputs is not part of the memo: their digests are
    // taken at evaluation (through the stat memo), so changing them keeps
    // the memo valid.
    p.write("data/in.txt", "changed\n");
    p.write("data/dir/f.txt", "changed\n");
    assert!(load(&p, &[]).is_ok());
}

#[test]
fn memo_is_invalidated_by_what_a_compile_depends_on() {
    let stale = |r: Result<Dag, Miss>, what: &str| {
        assert!(matches!(r, Err(Miss::Stale(_))), "{what}: {:?}", r.err());
    };
    // A param in the root file.
    let p = project();
    store(&p, &[]);
    p.write("pipelines/p.yaml", &PIPE.replace("n: 2", "n: 3"));
    stale(load(&p, &[]), "root file");
    // An included file, changed or removed.
    let p = project();
    store(&p, &[]);
    p.write("pipelines/inc.yaml", &INC.replace("m: 1", "m: 2"));
    stale(load(&p, &[]), "include");
    let p = project();
    store(&p, &[]);
    std::fs::remove_file(p.path().join("pipelines/inc.yaml")).expect("rm");
    stale(load(&p, &[]), "include removed");
    // A whitespace-only change is a change too (spans move).
    let p = project();
    store(&p, &[]);
    p.write("pipelines/p.yaml", &format!("{PIPE}\n"));
    stale(load(&p, &[]), "whitespace");
    // `-s` overrides.
    let p = project();
    store(&p, &[]);
    stale(load(&p, &["n=5".into()]), "override added");
    store(&p, &["n=5".into()]);
    stale(load(&p, &["n=6".into()]), "override changed");
    stale(load(&p, &[]), "override removed");
    assert!(load(&p, &["n=5".into()]).is_ok());
    // A `file:` input that disappears (or stops being a file or directory)
    // must be reported by the full compile.
    let p = project();
    store(&p, &[]);
    std::fs::remove_dir_all(p.path().join("data/dir")).expect("rm");
    stale(load(&p, &[]), "file: input removed");
    // The project root: the same files seen from another root.
    let p = project();
    store(&p, &[]);
    let moved = tempfile::tempdir().expect("tempdir");
    let to = moved.path().join("proj");
    std::fs::rename(p.path(), &to).expect("mv");
    let path = to.join("pipelines/p.yaml");
    let r = memo::load(&Request {
        root: &to,
        path: &path,
        overrides: &[],
    });
    assert!(r.is_err(), "moved project");
    std::fs::rename(&to, p.path()).expect("mv back");
}

/// Rewrites the memo's build identity (the digest after the magic and the
/// format), with a valid checksum: a memo from another binary.
#[test]
fn memo_from_another_build_is_not_used() {
    let p = project();
    store(&p, &[]);
    let path = memo_file(&p);
    let mut bytes = std::fs::read(&path).expect("read");
    // magic: length byte + 16 bytes; format: 1 byte; context: length byte + 32 bytes.
    assert_eq!(bytes[18], 32, "layout changed: update this test");
    bytes[19] ^= 1;
    let body = bytes.len() - 32;
    let sum = blake3::hash(&bytes[..body]);
    bytes[body..].copy_from_slice(sum.as_bytes());
    std::fs::write(&path, &bytes).expect("write");
    assert!(matches!(load(&p, &[]), Err(Miss::Stale(_))));
}

#[test]
fn corrupt_or_truncated_memo_is_never_trusted() {
    let p = project();
    store(&p, &[]);
    let path = memo_file(&p);
    let good = std::fs::read(&path).expect("read");
    let step = (good.len() / 200).max(1);
    for cut in (0..good.len()).step_by(step) {
        std::fs::write(&path, &good[..cut]).expect("write");
        assert!(load(&p, &[]).is_err(), "truncated to {cut} bytes");
    }
    for at in (0..good.len()).step_by(step) {
        let mut bad = good.clone();
        bad[at] ^= 0x40;
        std::fs::write(&path, &bad).expect("write");
        assert!(load(&p, &[]).is_err(), "byte {at} flipped");
    }
    std::fs::write(&path, b"").expect("write");
    assert!(load(&p, &[]).is_err());
    std::fs::write(&path, &good).expect("write");
    assert!(load(&p, &[]).is_ok());
}

#[test]
fn memo_write_is_atomic() {
    let p = project();
    store(&p, &[]);
    let dir = memo_file(&p).parent().expect("dir").to_path_buf();
    // Nothing but finished memo files is left behind.
    for e in std::fs::read_dir(&dir).expect("dir").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        assert!(name.ends_with(".memo") && !name.starts_with('.'), "{name}");
    }
}

/// The CLI: status with and without a memo prints the same thing; changes
/// the memo cannot see (`file:` contents, records) still show; a corrupt
/// memo is replaced.
#[test]
fn cli_status_is_the_same_with_and_without_the_memo() {
    let p = project();
    p.ok(&["run", "-p", "p", "-q"]);
    let memo = memo_file(&p);
    assert!(memo.is_file(), "run writes the memo");
    let with = p.ok(&["status", "-p", "p", "--json"]);
    std::fs::remove_dir_all(memo.parent().expect("dir")).expect("rm");
    let without = p.ok(&["status", "-p", "p", "--json"]);
    assert_eq!(with, without);
    assert!(memo.is_file(), "status writes the memo");
    let again = p.ok(&["status", "-p", "p", "--json"]);
    assert_eq!(with, again);
    assert!(again.contains("\"cached\": 4"), "{again}");

    // A `file:` input's content changes: the memo stays valid, the key does not.
    p.write("data/dir/f.txt", "other\n");
    let after = p.ok(&["status", "-p", "p"]);
    assert!(after.contains("1 cached, 3 stale"), "{after}");
    std::fs::remove_file(&memo).expect("rm");
    assert_eq!(after, p.ok(&["status", "-p", "p"]));
    p.write("data/dir/f.txt", "f\n");

    // An override changes keys exactly as without a memo.
    let a = p.ok(&["status", "-p", "p", "-s", "n=9", "--json"]);
    let b = p.ok(&["status", "-p", "p", "-s", "n=9", "--json"]);
    std::fs::remove_dir_all(memo.parent().expect("dir")).expect("rm");
    let c = p.ok(&["status", "-p", "p", "-s", "n=9", "--json"]);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_ne!(a, with);

    // A corrupt memo is ignored and rewritten.
    p.ok(&["status", "-p", "p"]);
    std::fs::write(&memo, b"garbage").expect("write");
    assert_eq!(with, p.ok(&["status", "-p", "p", "--json"]));
    assert_ne!(std::fs::read(&memo).expect("read"), b"garbage");

    // An edited pipeline is recompiled, errors included.
    p.write(
        "pipelines/p.yaml",
        &PIPE.replace("inputs: {x: src,", "inputs: {x: nope,"),
    );
    p.cli()
        .args(&["status", "-p", "p"])
        .status(2)
        .stderr_has("nope")
        .run();
}
