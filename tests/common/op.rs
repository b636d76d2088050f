//! Running one op the way the executor does, without a pipeline:
//!
//! ```ignore
//! let ran = OpRun::new("eval.qa")
//!     .param("half", json!("all"))
//!     .input("predictions", &answers)          // a file or directory, copied
//!     .input_text("questions", "{\"id\": 1}\n") // written as in/questions
//!     .run();
//! assert_eq!(ran.metrics()["em"], json!(1.0));
//! let rows = ran.jsonl("scores.jsonl");
//! ```
//!
//! The contract is the real one: the params must pass the checks
//! `repro` makes when a pipeline compiles (the op's schema, then its own
//! `check`) or `run` panics ([`OpRun::compile`] returns them instead); the
//! op runs in a fresh work directory holding `in/<name>` for each input
//! and an empty `out/`; its `RunContext::params` have every omitted default
//! of its schema filled in (`repro::op::schema::with_defaults`, as
//! `exec::task::run_task` does); and a run that succeeds without writing a
//! declared output is a failure, as the executor makes it.

use repro::op::{CancelToken, Op, OpError, RunContext, RunResult, schema};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where an input's content comes from.
enum Source {
    /// A file or directory, copied into the work directory.
    Path(PathBuf),
    /// Bytes written as the input file.
    Bytes(Vec<u8>),
    /// A list input: a directory of entries (`in/<name>/<entry>`).
    List(Vec<(String, PathBuf)>),
}

/// One op run to set up; see the module doc.
pub struct OpRun {
    op: &'static dyn Op,
    params: Map<String, Value>,
    inputs: Vec<(String, Source)>,
    threads: usize,
    env: Vec<(String, String)>,
    records: Map<String, Value>,
    work_in: Option<PathBuf>,
    show_status: bool,
}

impl OpRun {
    /// A run of the registered op `name` with no params and no inputs.
    pub fn new(name: &str) -> Self {
        let op = repro::ops::find(name).unwrap_or_else(|| panic!("op {name} is not registered"));
        OpRun {
            op,
            params: Map::new(),
            inputs: Vec::new(),
            threads: 1,
            env: Vec::new(),
            records: Map::new(),
            work_in: None,
            show_status: false,
        }
    }

    /// Sets one param.
    pub fn param(mut self, name: &str, value: Value) -> Self {
        self.params.insert(name.to_string(), value);
        self
    }

    /// Sets every param of a JSON object (`json!({...})`).
    pub fn params(mut self, params: Value) -> Self {
        match params {
            Value::Object(m) => self.params.extend(m),
            other => panic!("params must be a JSON object, got {other}"),
        }
        self
    }

    /// An input from a file or directory (copied to `in/<name>`).
    pub fn input(mut self, name: &str, path: impl AsRef<Path>) -> Self {
        self.inputs
            .push((name.to_string(), Source::Path(path.as_ref().to_path_buf())));
        self
    }

    /// Inputs from `(name, path)` pairs.
    pub fn inputs<P: AsRef<Path>>(mut self, inputs: &[(&str, P)]) -> Self {
        for (name, path) in inputs {
            self = self.input(name, path);
        }
        self
    }

    /// An input file with the given content.
    pub fn input_text(mut self, name: &str, content: impl AsRef<[u8]>) -> Self {
        self.inputs
            .push((name.to_string(), Source::Bytes(content.as_ref().to_vec())));
        self
    }

    /// A list input: `in/<name>/<entry>` for each `(entry, path)`.
    pub fn input_list<P: AsRef<Path>>(mut self, name: &str, entries: &[(&str, P)]) -> Self {
        let entries = entries
            .iter()
            .map(|(e, p)| (e.to_string(), p.as_ref().to_path_buf()))
            .collect();
        self.inputs.push((name.to_string(), Source::List(entries)));
        self
    }

    /// CPU threads the scheduler grants (1 unless set).
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Extra environment for the op's child processes.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// The input records a report op sees (`RunContext::records`).
    pub fn records(mut self, records: Map<String, Value>) -> Self {
        self.records = records;
        self
    }

    /// Makes the work directory inside `dir` (a fresh temp dir otherwise).
    pub fn work_in(mut self, dir: impl AsRef<Path>) -> Self {
        self.work_in = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Prints the op's progress lines on stderr.
    pub fn show_status(mut self) -> Self {
        self.show_status = true;
        self
    }

    /// The checks a pipeline's compilation makes of the params: the op's
    /// schema, then its own `check`; `Err((param, message))`.
    pub fn compile(&self) -> Result<(), (String, String)> {
        schema::validate(self.op.params(), &self.params)?;
        self.op.check(&self.params)
    }

    /// Runs the op; panics if the params do not compile.
    pub fn run(self) -> Ran {
        if let Err((param, msg)) = self.compile() {
            panic!(
                "{}: params {} rejected at compile time: `{param}`: {msg}",
                self.op.name(),
                Value::Object(self.params.clone())
            );
        }
        let work = match &self.work_in {
            Some(dir) => tempfile::tempdir_in(dir),
            None => tempfile::tempdir(),
        }
        .expect("work dir");
        let in_dir = work.path().join("in");
        std::fs::create_dir_all(&in_dir).expect("mkdir in");
        std::fs::create_dir_all(work.path().join("out")).expect("mkdir out");
        let mut inputs = BTreeMap::new();
        let mut place = |name: &str, source: &Source| {
            let dest = in_dir.join(name);
            match source {
                Source::Path(p) => copy_tree(p, &dest),
                Source::Bytes(b) => std::fs::write(&dest, b).expect("write input"),
                Source::List(entries) => {
                    std::fs::create_dir_all(&dest).expect("mkdir list input");
                    for (entry, p) in entries {
                        copy_tree(p, &dest.join(entry));
                    }
                }
            }
            inputs.insert(name.to_string(), dest);
        };
        for (name, source) in &self.inputs {
            place(name, source);
        }
        // Implicit inputs (`file:` paths named by params) resolve against
        // the repository, unless the test gave them.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (name, rel) in self.op.implicit_inputs(&self.params) {
            if !self.inputs.iter().any(|(n, _)| *n == name) {
                place(&name, &Source::Path(root.join(rel)));
            }
        }
        let full = schema::with_defaults(self.op.params(), &self.params);
        let cancel = CancelToken::default();
        let quiet = |_: &str| {};
        let loud = |s: &str| eprintln!("  {s}");
        let status: &(dyn Fn(&str) + Sync) = if self.show_status { &loud } else { &quiet };
        let ctx = RunContext {
            node: "test",
            work_dir: work.path(),
            params: &full,
            inputs: &inputs,
            cancel: &cancel,
            env: &self.env,
            threads: self.threads,
            records: &self.records,
            status,
        };
        let mut result = self.op.run(&ctx);
        if result.is_ok() {
            // As the executor: every declared output must exist.
            for o in self.op.outputs(&self.params) {
                if !work.path().join("out").join(&o.path).exists() {
                    result = Err(OpError::msg(format!(
                        "declared output `{}` (out/{}) was not written",
                        o.name, o.path
                    )));
                    break;
                }
            }
        }
        Ran {
            op: self.op.name(),
            work,
            result,
        }
    }
}

/// Copies a file or a directory tree.
fn copy_tree(src: &Path, dest: &Path) {
    if src.is_dir() {
        std::fs::create_dir_all(dest).expect("mkdir");
        for e in std::fs::read_dir(src).unwrap_or_else(|e| panic!("{}: {e}", src.display())) {
            let e = e.expect("dir entry");
            copy_tree(&e.path(), &dest.join(e.file_name()));
        }
    } else {
        std::fs::copy(src, dest).unwrap_or_else(|e| panic!("input {}: {e}", src.display()));
    }
}

/// A finished run: its work directory (removed when dropped) and result.
pub struct Ran {
    op: &'static str,
    /// The work directory (`in/`, `out/`).
    pub work: tempfile::TempDir,
    /// What the op returned (or the executor's failure for a missing output).
    pub result: Result<RunResult, OpError>,
}

impl Ran {
    /// The path of an output file, `out/<rel>`.
    pub fn out(&self, rel: &str) -> PathBuf {
        self.work.path().join("out").join(rel)
    }

    /// The result of a run that must have succeeded.
    pub fn ok(&self) -> &RunResult {
        match &self.result {
            Ok(r) => r,
            Err(e) => panic!("{} failed: {e}\n{e:?}", self.op),
        }
    }

    /// The metrics of a run that must have succeeded.
    pub fn metrics(&self) -> &Map<String, Value> {
        &self.ok().metrics
    }

    /// A metric as a number.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics()
            .get(name)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("no number metric {name}: {:?}", self.metrics()))
    }

    /// The error text of a run that must have failed.
    pub fn err(&self) -> String {
        match &self.result {
            Ok(_) => panic!("{} should have failed", self.op),
            Err(e) => e.to_string(),
        }
    }

    /// An output's bytes.
    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.out(rel)).unwrap_or_else(|e| panic!("out/{rel}: {e}"))
    }

    /// An output's text.
    pub fn text(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out(rel)).unwrap_or_else(|e| panic!("out/{rel}: {e}"))
    }

    /// An output as JSON.
    pub fn json(&self, rel: &str) -> Value {
        serde_json::from_str(&self.text(rel)).unwrap_or_else(|e| panic!("out/{rel}: {e}"))
    }

    /// An output's JSON lines.
    pub fn jsonl<T: serde::de::DeserializeOwned>(&self, rel: &str) -> Vec<T> {
        self.text(rel)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("out/{rel}: {e}: {l}")))
            .collect()
    }

    /// The result and the work directory, as a pair.
    pub fn into_parts(self) -> (Result<RunResult, OpError>, tempfile::TempDir) {
        (self.result, self.work)
    }

    /// The result and `out/`, keeping the work directory on disk (for runs
    /// made `work_in` a directory the test removes).
    pub fn keep(self) -> (Result<RunResult, OpError>, PathBuf) {
        let out = self.work.keep().join("out");
        (self.result, out)
    }
}
