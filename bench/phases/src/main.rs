//! Times each phase of a no-op `repro status` on a project, by calling the
//! repro library the way `repro status` does (src/cli/mod.rs `load`, then
//! src/cli/status.rs), with a clock around every step:
//!
//!     repro-phases PROJECT_DIR [PIPELINE_NAME] [REPEATS]
//!
//! Two load paths are timed. The full one, as on the first load after a
//! change: read the YAML; yaml-rust2's event parser alone (the floor);
//! spec::yaml::parse alone; load_str (parse + node specs + checks); expand
//! (matrix); compile (expand again + reference resolution + schema + graph);
//! writing the compiled-DAG memo. The memo one, as on a no-op: reading the
//! memo file, its checksum, and `graph::memo::load` as a whole (checksum,
//! pipeline file digests, decode, `file:` checks). Then, as `repro status`
//! does on either: Cache::open (stat-cache JSON load); the lock file;
//! evaluate_all; evaluation step by step (input digests, key, the record
//! index and lookups, the object checks); printing the rows. Each figure is
//! the median of REPEATS (default 5) in one process, so file-system caches
//! are warm, as in a no-op `repro status`.

use repro::cache::Cache;
use repro::cache::lockfile::LockFile;
use repro::exec::eval::{Check, Evaluator, Known, evaluate_all};
use repro::graph::memo;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = PathBuf::from(
        args.get(1)
            .expect("usage: repro-phases PROJECT_DIR [PIPELINE] [REPEATS]"),
    );
    let name = args.get(2).cloned().unwrap_or_else(|| "bench".into());
    let repeats: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    std::env::set_current_dir(&dir).expect("cd");
    let root = std::env::current_dir().unwrap();
    let path = root.join("pipelines").join(format!("{name}.yaml"));
    let req = memo::Request {
        root: &root,
        path: &path,
        overrides: &[],
    };
    let mut all: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut order: Vec<&'static str> = Vec::new();
    let mut nodes = 0;
    for _ in 0..repeats {
        let mut rec = |k: &'static str, d: Duration| {
            if !order.contains(&k) {
                order.push(k);
            }
            all.entry(k).or_default().push(ms(d));
        };
        // The full path (first load after a change).
        let t = Instant::now();
        let text = std::fs::read_to_string(&path).expect("read pipeline");
        rec("F1 read yaml file", t.elapsed());

        // The YAML scanner/parser alone, with a receiver that does nothing: the
        // floor of any loader built on yaml-rust2's event parser.
        let t = Instant::now();
        {
            struct Nop(usize);
            impl yaml_rust2::parser::MarkedEventReceiver for Nop {
                fn on_event(&mut self, _ev: yaml_rust2::Event, _m: yaml_rust2::scanner::Marker) {
                    self.0 += 1;
                }
            }
            let mut nop = Nop(0);
            let mut parser = yaml_rust2::parser::Parser::new_from_str(&text);
            parser.load(&mut nop, true).expect("yaml syntax");
            std::hint::black_box(nop.0);
        }
        rec(
            "F2a yaml-rust2 event parser alone (no tree, no spans)",
            t.elapsed(),
        );

        let t = Instant::now();
        let mut srcs = repro::spec::source::Sources::default();
        let f = srcs.add(&path, text.clone());
        let y = repro::spec::yaml::parse(&srcs, f).expect("yaml");
        rec("F2 yaml::parse alone (incl. duplicate-key check)", t.elapsed());
        drop(y);
        drop(srcs);

        let t = Instant::now();
        let p = repro::spec::load_str(&path, text.clone(), &[]).expect("load");
        rec("F3 spec::load_str (parse + node specs + checks)", t.elapsed());

        let t = Instant::now();
        let inst = repro::spec::expand::expand(&p).expect("expand");
        rec("F4 expand alone (matrix, interpolation)", t.elapsed());
        drop(inst);

        let t = Instant::now();
        let dag = repro::graph::compile(&root, p).expect("compile");
        rec(
            "F5 graph::compile (expand + resolve refs + schema + toposort)",
            t.elapsed(),
        );
        nodes = dag.nodes.len();

        let t = Instant::now();
        memo::store(&req, &[(path.as_path(), text.as_str())], &dag).expect("memo store");
        rec("F6 memo::store (encode + fsync + rename)", t.elapsed());
        std::mem::forget(dag);

        // The memo path (a no-op).
        let t = Instant::now();
        let bytes = std::fs::read(memo::memo_path(&req)).expect("memo");
        rec("M1 read the memo file alone", t.elapsed());
        let t = Instant::now();
        std::hint::black_box(blake3::hash(&bytes));
        rec("M2 its checksum alone", t.elapsed());
        let t = Instant::now();
        std::hint::black_box(blake3::hash(&std::fs::read(&path).expect("read")));
        rec("M3 read + hash the YAML alone", t.elapsed());
        let t = Instant::now();
        let dag = memo::load(&req).expect("memo load");
        rec("M4 memo::load (all of M1-M3 + decode + file: checks)", t.elapsed());

        let t = Instant::now();
        let cache = Cache::open(&root).expect("cache");
        rec("S1 Cache::open (stat cache JSON load)", t.elapsed());

        let t = Instant::now();
        let lock =
            LockFile::read(&root.join("pipelines").join(format!("{name}.lock"))).expect("lock");
        rec("S2 lock file read + parse", t.elapsed());

        // evaluate_all exactly as `repro status` calls it
        let ev = Evaluator {
            dag: &dag,
            cache: &cache,
            lock: &lock,
            check: Check::Quick,
            missing_ok: false,
            snapshot: None,
        };
        let t = Instant::now();
        let evals = evaluate_all(&ev);
        rec("S3 evaluate_all (as status calls it)", t.elapsed());

        // the same evaluation, step by step (Evaluator::eval's hit path)
        let (mut t_in, mut t_key, mut t_has, mut t_chk) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let t = Instant::now();
        let index = cache.record_index().expect("records");
        let t_index = t.elapsed();
        let mut known: Vec<Option<Known>> = vec![None; dag.nodes.len()];
        for &i in &dag.order {
            let n = &dag.nodes[i];
            let t = Instant::now();
            let digests = ev.input_digests(i, &known).expect("inputs");
            t_in += t.elapsed();
            let t = Instant::now();
            let json = repro::graph::key::canonical_json(&serde_json::Value::Object(digests));
            let k = n.key_template.key(json.as_bytes(), None);
            t_key += t.elapsed();
            let t = Instant::now();
            let entry = lock
                .nodes
                .get(n.id())
                .filter(|e| e.key == k && index.contains(&cache, &k))
                .expect("a lock entry and a record (is the project up to date?)");
            t_has += t.elapsed();
            let t = Instant::now();
            assert!(entry.outputs.values().all(|d| cache.quick_light_ok(d)));
            t_chk += t.elapsed();
            known[i] = Some(Known {
                key: k,
                outputs: entry.outputs.clone(),
            });
        }
        rec(
            "S3a  input digests (file: stat + memo; upstream lookups)",
            t_in,
        );
        rec("S3b  key (streamed canonical JSON + blake3)", t_key);
        rec("S3c  record index (one readdir)", t_index);
        rec("S3d  lock entry + record lookup", t_has);
        rec("S3e  output object checks (stat + memo)", t_chk);

        let t = Instant::now();
        cache.stat.save().ok();
        rec("S4 stat cache save (only if changed)", t.elapsed());

        let t = Instant::now();
        let mut out = String::new();
        for &i in &dag.order {
            use std::fmt::Write;
            let _ = writeln!(
                out,
                "{:<8} {:<20} {:<12} {}",
                "cached",
                dag.nodes[i].id(),
                evals[i].key().map(repro::cache::short).unwrap_or("-"),
                ""
            );
        }
        std::hint::black_box(&out);
        rec("S5 format output rows (to a string)", t.elapsed());

        let t = Instant::now();
        drop(evals);
        drop(lock);
        drop(cache);
        drop(dag);
        rec("S6 drop everything (status skips it)", t.elapsed());
    }
    println!(
        "{} ({} nodes), median of {} in-process repeats:",
        path.display(),
        nodes,
        repeats
    );
    for k in order {
        let mut v = all[k].clone();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        println!("  {:>9.1} ms  {}", v[v.len() / 2], k);
    }
}
