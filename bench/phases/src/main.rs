//! Times each phase of a no-op `repro status` on a project, by calling the
//! repro library the way `repro status` does (src/cli/mod.rs `load`, then
//! src/cli/status.rs), with a clock around every step:
//!
//!     repro-phases PROJECT_DIR [PIPELINE_NAME] [REPEATS]
//!
//! Phases: read the YAML; yaml-rust2's event parser alone (the floor); parse it (spec::yaml::parse alone); load_str (parse
//! again + node specs + duplicate-id checks); expand (matrix); compile (expand
//! again + reference resolution + schema + graph); Cache::open (stat-cache
//! JSON load); lock file read; evaluation split into input digests (stat
//! cache lookups of `file:` inputs), key (preimage JSON + blake3), the lock
//! file's fast-path record stat, record read + parse, output object checks
//! (stat + memo); and printing the rows. Each figure is the median of REPEATS
//! (default 5) in one process, so file-system caches are warm, as in a no-op
//! `repro status`.

use repro::cache::Cache;
use repro::cache::lockfile::LockFile;
use repro::exec::eval::{Check, Evaluator, evaluate_all};
use repro::graph::key;
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
        let t_all = Instant::now();
        let t = Instant::now();
        let text = std::fs::read_to_string(&path).expect("read pipeline");
        rec("1 read yaml file", t.elapsed());

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
            "2a yaml-rust2 event parser alone (no tree, no spans)",
            t.elapsed(),
        );

        let t = Instant::now();
        let mut srcs = repro::spec::source::Sources::default();
        let f = srcs.add(&path, text.clone());
        let y = repro::spec::yaml::parse(&srcs, f).expect("yaml");
        rec(
            "2 yaml::parse alone (incl. duplicate-key check)",
            t.elapsed(),
        );
        let t = Instant::now();
        drop(y);
        drop(srcs);
        rec("2b drop parsed yaml", t.elapsed());

        let t = Instant::now();
        let p = repro::spec::load_str(&path, text, &[]).expect("load");
        rec(
            "3 spec::load_str (parse + node specs + dup-id check)",
            t.elapsed(),
        );

        let t = Instant::now();
        let inst = repro::spec::expand::expand(&p).expect("expand");
        rec("4 expand alone (matrix, interpolation)", t.elapsed());
        drop(inst);

        let t = Instant::now();
        let dag = repro::graph::compile(&root, p).expect("compile");
        rec(
            "5 graph::compile (expand + resolve refs + schema + toposort)",
            t.elapsed(),
        );
        nodes = dag.nodes.len();

        let t = Instant::now();
        let cache = Cache::open(&root).expect("cache");
        rec("6 Cache::open (stat cache JSON load)", t.elapsed());

        let t = Instant::now();
        let lock =
            LockFile::read(&root.join("pipelines").join(format!("{name}.lock"))).expect("lock");
        rec("7 lock file read + parse", t.elapsed());

        // evaluate_all exactly as `repro status` calls it
        let ev = Evaluator {
            dag: &dag,
            cache: &cache,
            lock: &lock,
            check: Check::Quick,
        };
        let t = Instant::now();
        let evals = evaluate_all(&ev);
        rec("8 evaluate_all (as status calls it)", t.elapsed());

        // the same evaluation, step by step (Evaluator::eval's hit path)
        let (mut t_in, mut t_key, mut t_has, mut t_read, mut t_chk) = (
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
            Duration::ZERO,
        );
        let mut outputs: Vec<Option<BTreeMap<String, String>>> = vec![None; dag.nodes.len()];
        for &i in &dag.order {
            let n = &dag.nodes[i];
            let t = Instant::now();
            let inputs = ev.inputs(i, &outputs).expect("inputs");
            t_in += t.elapsed();
            let t = Instant::now();
            let pre = key::preimage(n.op.name(), n.op.version(), &n.key_params, inputs.digests);
            let k = key::key_of(&pre);
            t_key += t.elapsed();
            let t = Instant::now();
            let _fast = lock
                .nodes
                .get(n.id())
                .filter(|e| e.key == k && cache.has_record(&k))
                .is_some();
            t_has += t.elapsed();
            let t = Instant::now();
            let r = cache
                .read_record(&k)
                .expect("record")
                .expect("a record (is the project up to date?)");
            t_read += t.elapsed();
            let t = Instant::now();
            for o in r.outputs.values() {
                cache.check_output(o, false, false).expect("object ok");
            }
            t_chk += t.elapsed();
            outputs[i] = Some(
                r.outputs
                    .iter()
                    .map(|(k, o)| (k.clone(), o.digest.clone()))
                    .collect(),
            );
        }
        rec(
            "8a  input digests (file: stat + memo; upstream lookups)",
            t_in,
        );
        rec("8b  key: preimage JSON + canonical + blake3", t_key);
        rec("8c  lock fast path: record stat (has_record)", t_has);
        rec("8d  record read + JSON parse", t_read);
        rec("8e  output object checks (stat + memo)", t_chk);

        let t = Instant::now();
        cache.stat.save().ok();
        rec("9 stat cache save (only if changed)", t.elapsed());

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
        rec("10 format output rows (to a string)", t.elapsed());

        let t = Instant::now();
        drop(evals);
        drop(lock);
        drop(cache);
        drop(dag);
        rec("11 drop everything", t.elapsed());
        rec(
            "total (2, 2b, 4, 8a-8e are extra work, not in repro status)",
            t_all.elapsed(),
        );
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
