//! Running the `repro` binary on pipeline text and comparing what it
//! prints, in the style of `just`'s test builder:
//!
//! ```ignore
//! Cli::new()
//!     .pipeline("t", "pipeline: t\nnodes: ...")   // pipelines/t.yaml
//!     .file("data/corpus.txt", "one two\n")
//!     .args(&["run", "-p", "t"])
//!     .stderr_has("3 ran")
//!     .status(0)
//!     .run();
//! ```
//!
//! Each `Cli::new()` is a fresh project in a temp directory, with its own
//! cache (`REPRO_CACHE` and `REPRO_BLOBS` are removed from the
//! environment); `Project::cli` runs in an existing project and
//! `Cli::at` in any directory (the repository, for its committed
//! pipelines). Expected text is compared after [`normalize`]: the project's
//! path reads `[ROOT]` and durations such as `0.42s` read `[TIME]s`.
//! Whatever is expected, the status must match (0 unless set) and the
//! output must not show a panic; a mismatch panics with both streams.

use super::Project;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where the binary runs.
enum Dir {
    /// A project this builder made (and hands on in its output).
    Own(Project),
    /// A directory someone else owns.
    At(PathBuf),
}

/// One run of `repro` to set up and check; see the module doc.
pub struct Cli {
    dir: Dir,
    args: Vec<String>,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    stdin: Option<String>,
    status: Option<i32>,
    stdout: Option<String>,
    stderr: Option<String>,
    stdout_has: Vec<String>,
    stderr_has: Vec<String>,
    output_has: Vec<String>,
    output_lacks: Vec<String>,
}

impl Default for Cli {
    fn default() -> Self {
        Self::new()
    }
}

impl Cli {
    fn with(dir: Dir) -> Self {
        Cli {
            dir,
            args: Vec::new(),
            env: Vec::new(),
            env_remove: Vec::new(),
            stdin: None,
            status: Some(0),
            stdout: None,
            stderr: None,
            stdout_has: Vec::new(),
            stderr_has: Vec::new(),
            output_has: Vec::new(),
            output_lacks: Vec::new(),
        }
    }

    /// A run in a fresh project (a temp directory with `pipelines/`).
    pub fn new() -> Self {
        Self::with(Dir::Own(Project::new()))
    }

    /// A run in `dir` (e.g. the repository root, `env!("CARGO_MANIFEST_DIR")`).
    pub fn at(dir: impl AsRef<Path>) -> Self {
        Self::with(Dir::At(dir.as_ref().to_path_buf()))
    }

    fn root(&self) -> &Path {
        match &self.dir {
            Dir::Own(p) => p.path(),
            Dir::At(d) => d,
        }
    }

    /// Writes `pipelines/<name>.yaml`.
    pub fn pipeline(self, name: &str, yaml: &str) -> Self {
        self.file(&format!("pipelines/{name}.yaml"), yaml)
    }

    /// Writes a file at `rel` (parents made).
    pub fn file(self, rel: &str, text: &str) -> Self {
        let p = self.root().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, text).expect("write");
        self
    }

    /// The command line after `repro`.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// One more argument (a path, say).
    pub fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Self {
        self.args.push(arg.as_ref().to_string_lossy().into_owned());
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Removes an environment variable.
    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.into());
        self
    }

    /// Text on standard input.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.into());
        self
    }

    /// The expected exit status (0 unless set).
    pub fn status(mut self, code: i32) -> Self {
        self.status = Some(code);
        self
    }

    /// Any exit status (for a caller that checks it itself).
    pub fn any_status(mut self) -> Self {
        self.status = None;
        self
    }

    /// The whole expected standard output (normalized).
    pub fn stdout(mut self, text: &str) -> Self {
        self.stdout = Some(text.into());
        self
    }

    /// The whole expected standard error (normalized).
    pub fn stderr(mut self, text: &str) -> Self {
        self.stderr = Some(text.into());
        self
    }

    /// Standard output must contain `text` (normalized).
    pub fn stdout_has(mut self, text: &str) -> Self {
        self.stdout_has.push(text.into());
        self
    }

    /// Standard error must contain `text` (normalized).
    pub fn stderr_has(mut self, text: &str) -> Self {
        self.stderr_has.push(text.into());
        self
    }

    /// Standard output followed by standard error must contain `text`.
    pub fn output_has(mut self, text: &str) -> Self {
        self.output_has.push(text.into());
        self
    }

    /// Neither stream may contain `text`.
    pub fn output_lacks(mut self, text: &str) -> Self {
        self.output_lacks.push(text.into());
        self
    }

    /// Runs the binary and returns what it printed, checking nothing.
    pub fn output(self) -> CliOutput {
        let mut c = super::repro_in(self.root());
        c.args(&self.args);
        for k in &self.env_remove {
            c.env_remove(k);
        }
        for (k, v) in &self.env {
            c.env(k, v);
        }
        if let Some(s) = &self.stdin {
            c.write_stdin(s.as_bytes());
        }
        let o = c.output().expect("run repro");
        let root = self.root().to_path_buf();
        CliOutput {
            stdout: normalize(&String::from_utf8_lossy(&o.stdout), &root),
            stderr: normalize(&String::from_utf8_lossy(&o.stderr), &root),
            raw_stdout: o.stdout,
            raw_stderr: o.stderr,
            code: o.status.code(),
            args: self.args,
            project: match self.dir {
                Dir::Own(p) => Some(p),
                Dir::At(_) => None,
            },
            root,
        }
    }

    /// Runs the binary and checks every expectation; returns the output.
    pub fn run(self) -> CliOutput {
        let status = self.status;
        let stdout = self.stdout.clone();
        let stderr = self.stderr.clone();
        let stdout_has = self.stdout_has.clone();
        let stderr_has = self.stderr_has.clone();
        let output_has = self.output_has.clone();
        let output_lacks = self.output_lacks.clone();
        let out = self.output();
        let mut problems = Vec::new();
        if status.is_some() && out.code != status {
            problems.push(format!("exit status {:?}, expected {status:?}", out.code));
        }
        let both = out.text();
        if both.contains("panicked") {
            problems.push("it panicked".into());
        }
        if let Some(want) = &stdout
            && out.stdout != *want
        {
            problems.push(format!("stdout differs; expected:\n{want}"));
        }
        if let Some(want) = &stderr
            && out.stderr != *want
        {
            problems.push(format!("stderr differs; expected:\n{want}"));
        }
        for (name, text, wants) in [
            ("stdout", &out.stdout, &stdout_has),
            ("stderr", &out.stderr, &stderr_has),
            ("the output", &both, &output_has),
        ] {
            for w in wants {
                if !text.contains(w.as_str()) {
                    problems.push(format!("{name} lacks {w:?}"));
                }
            }
        }
        for w in &output_lacks {
            if both.contains(w.as_str()) {
                problems.push(format!("the output contains {w:?}"));
            }
        }
        assert!(
            problems.is_empty(),
            "repro {:?} in {}:\n- {}\n--- stdout ---\n{}--- stderr ---\n{}",
            out.args,
            out.root.display(),
            problems.join("\n- "),
            out.stdout,
            out.stderr
        );
        out
    }
}

/// What one run printed.
pub struct CliOutput {
    /// Standard output, normalized.
    pub stdout: String,
    /// Standard error, normalized.
    pub stderr: String,
    /// Standard output as printed (for JSON).
    pub raw_stdout: Vec<u8>,
    /// Standard error as printed.
    pub raw_stderr: Vec<u8>,
    /// The exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    args: Vec<String>,
    project: Option<Project>,
    root: PathBuf,
}

impl CliOutput {
    /// Standard output followed by standard error.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Standard output as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.raw_stdout).unwrap_or_else(|e| {
            panic!(
                "repro {:?}: stdout is not JSON: {e}\n{}{}",
                self.args, self.stdout, self.stderr
            )
        })
    }

    /// The project a `Cli::new()` made, to run more commands in.
    pub fn project(self) -> Project {
        self.project.expect("a project made by Cli::new()")
    }
}

/// Makes output comparable: the project's path (as given and canonical)
/// reads `[ROOT]`, and a duration (digits, a point, digits, then `s` or
/// ` s`) reads `[TIME]` before its unit.
pub fn normalize(text: &str, root: &Path) -> String {
    let mut t = text.to_string();
    let mut roots = vec![root.to_path_buf()];
    if let Ok(c) = root.canonicalize() {
        roots.push(c);
    }
    // Longest first, so a canonical path that extends the given one wins.
    roots.sort_by_key(|r| std::cmp::Reverse(r.as_os_str().len()));
    for r in roots {
        let r = r.to_string_lossy().into_owned();
        if !r.is_empty() {
            t = t.replace(&r, "[ROOT]");
        }
    }
    durations(&t)
}

/// Replaces `12.34s` / `12.34 s` by `[TIME]s` / `[TIME] s`.
fn durations(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() && (i == 0 || !is_word(b[i - 1]));
        if starts {
            let mut j = i;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j + 1 < b.len() && b[j] == b'.' && b[j + 1].is_ascii_digit() {
                let mut k = j + 1;
                while k < b.len() && b[k].is_ascii_digit() {
                    k += 1;
                }
                let unit = if b.get(k) == Some(&b's') {
                    Some(k)
                } else if b.get(k) == Some(&b' ') && b.get(k + 1) == Some(&b's') {
                    Some(k + 1)
                } else {
                    None
                };
                if let Some(u) = unit
                    && b.get(u + 1).is_none_or(|c| !is_word(*c))
                {
                    out.push_str(&text[copied..i]);
                    out.push_str("[TIME]");
                    copied = k;
                    i = k;
                    continue;
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    out.push_str(&text[copied..]);
    out
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'.'
}

impl Project {
    /// A `Cli` run in this project.
    pub fn cli(&self) -> Cli {
        Cli::at(self.path())
    }
}
