//! A deterministic "mini fuzz" of the pipeline language that runs in `cargo
//! test` on stable: it mutates the malformed corpus and the project's
//! pipelines with a seeded RNG and checks that loading, compiling and
//! rendering the error never panics. (The coverage-guided fuzzer is
//! `fuzz/fuzz_targets/spec.rs`, run with `cargo +nightly fuzz run spec`.)
//!
//! `REPRO_FUZZ_ITERS` and `REPRO_FUZZ_SEED` override the defaults for a
//! longer or different run.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Fragments of the language (and of YAML) worth inserting.
const TOKENS: &[&str] = &[
    "pipeline: p\n",
    "nodes:\n",
    "params: ",
    "include: ",
    "inputs: ",
    "matrix: ",
    "exclude: ",
    "for_each: ",
    "resources: ",
    "tolerance: ",
    "description: ",
    "op: shell",
    "op: file",
    "op: ref.published",
    "cmd: ",
    "outs: ",
    "metrics: ",
    "timeout: ",
    "env: ",
    "path: ",
    "citation: c",
    "rows: ",
    "cpus: ",
    "gpus: ",
    "executor: slurm",
    "extra: ",
    "${",
    "$${",
    "${each}",
    "${seed}",
    "[*]",
    "[k=1]",
    "[k=",
    ".out",
    "file:",
    "file:data",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ": ",
    ", ",
    "\n",
    "\n  ",
    "\n    ",
    "\t",
    "---\n",
    "&a ",
    "*a",
    "!!str ",
    "? ",
    "'",
    "\"",
    "#",
    "|\n",
    "~",
    "null",
    "-1",
    "0",
    "1e400",
    "9223372036854775808",
    "0x",
    "é",
    "\u{1F600}",
    "..",
    "/",
];

/// Byte offsets of every char boundary in `s` (including `s.len()`).
fn boundaries(s: &str) -> Vec<usize> {
    s.char_indices().map(|(i, _)| i).chain([s.len()]).collect()
}

/// Applies one random mutation to `text`.
fn mutate(rng: &mut Rng, text: &str, seeds: &[String]) -> String {
    let b = boundaries(text);
    let at = *rng.pick(&b);
    let to = b[b.iter().position(|&x| x == at).unwrap_or(0)..]
        .get(rng.below(16))
        .copied()
        .unwrap_or(text.len());
    match rng.below(8) {
        // Delete a short range.
        0 => format!("{}{}", &text[..at], &text[to..]),
        // Duplicate a short range.
        1 => format!("{}{}", &text[..to], &text[at..]),
        // Insert a token.
        2 | 3 => format!("{}{}{}", &text[..at], rng.pick(TOKENS), &text[at..]),
        // Replace a range with a token.
        4 => format!("{}{}{}", &text[..at], rng.pick(TOKENS), &text[to..]),
        // Swap two lines.
        5 => {
            let mut lines: Vec<&str> = text.lines().collect();
            if lines.len() > 1 {
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(i, j);
            }
            lines.join("\n")
        }
        // Re-indent a line.
        6 => {
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            if !lines.is_empty() {
                let i = rng.below(lines.len());
                let line = &lines[i];
                lines[i] = match rng.below(3) {
                    0 => format!(" {line}"),
                    1 => format!("  {line}"),
                    _ => line.strip_prefix(' ').unwrap_or(line).to_string(),
                };
            }
            lines.join("\n")
        }
        // Splice in a line from another seed.
        _ => {
            let other: Vec<&str> = rng.pick(seeds).lines().collect();
            if other.is_empty() {
                return text.to_string();
            }
            format!("{}{}\n{}", &text[..at], rng.pick(&other), &text[at..])
        }
    }
}

/// Loads and compiles `text` as if it were the file at `path`, then renders the
/// error as `repro` does. Returns the panic message, if any.
fn check(root: &Path, path: &Path, text: &str, overrides: &[String]) -> Option<String> {
    let run = || {
        let error = match repro::spec::load_str(path, text.to_string(), overrides) {
            Ok(p) => repro::graph::compile(root, p).err(),
            Err(e) => Some(e),
        };
        if let Some(e) = error {
            let _ = format!("{:?}", miette::Report::new(e));
        }
    };
    catch_unwind(AssertUnwindSafe(run)).err().map(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "non-string panic".to_string())
    })
}

/// The seed files: the malformed corpus, its includes and the project's pipelines.
fn seed_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["tests/malformed", "tests/malformed/inc", "pipelines"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn mutated_pipelines_never_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = seed_files(root);
    assert!(files.len() > 10, "too few seed files: {files:?}");
    let seeds: Vec<String> = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let iters = env("REPRO_FUZZ_ITERS").unwrap_or(30_000);
    let mut rng = Rng(env("REPRO_FUZZ_SEED").unwrap_or(0x5eed_1234_abcd_ef01) | 1);

    let mut failures = Vec::new();
    for i in 0..iters {
        let k = rng.below(files.len());
        let mut text = seeds[k].clone();
        for _ in 0..1 + rng.below(4) {
            text = mutate(&mut rng, &text, &seeds);
        }
        let overrides = match rng.below(8) {
            0 => vec![mutate(&mut rng, "seed=3", &seeds)],
            _ => Vec::new(),
        };
        if let Some(msg) = check(root, &files[k], &text, &overrides) {
            failures.push(format!(
                "iteration {i}, from {}: {msg}\noverrides: {overrides:?}\n--- input ---\n{text}\n---",
                files[k].display()
            ));
            if failures.len() >= 5 {
                break;
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} inputs panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Inputs that once panicked or hung (kept as regressions).
#[test]
fn known_tricky_inputs_do_not_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let path = root.join("pipelines/fuzz.yaml");
    let cases = [
        "",
        "~",
        "---",
        "--- a\n--- b\n",
        "pipeline: p\nnodes: {x: {op: shell, params: {cmd: é}, resources: {cpus: é}}}\n",
        "pipeline: p\nnodes:\n  x:\n    op: shell\n    params: {cmd: \"${\u{1F600}\"}\n",
        "pipeline: p\nnodes:\n  x: {op: shell, params: {cmd: a}, inputs: {i: \"x[\u{1F600}=1]\"}}\n",
        "pipeline: p\ninclude: [.]\n",
        "pipeline: p\ninclude: [/dev/null]\n",
        "pipeline: p\nnodes:\n  x: {op: shell, params: {cmd: a}, inputs: {i: file:/dev/null}}\n",
        "pipeline: p\nnodes:\n  x: {op: shell, matrix: {include: [{}]}, params: {cmd: a}}\n",
        "pipeline: p\nnodes:\n  x: {op: shell, matrix: {k: [{a: 1}, {a: 1}]}, params: {cmd: a}}\n",
        "pipeline: p\nnodes:\n  x: {op: shell, for_each: [x, x], params: {cmd: a}}\n",
        "a: &a [*a]\n",
        "\u{feff}pipeline: p\n",
        "pipeline: p\n\t",
        "pipeline: p\nnodes:\n  x:\n    op: shell\n    params: {cmd: a}\n    tolerance: {m: 1e400}\n",
        "pipeline: p\nnodes:\n  x: {op: shell, params: {cmd: a}, resources: {cpus: 18446744073709551616}}\n",
    ];
    // Exponential growth must end in an error, not in exhausted memory.
    let mut bomb = String::from("pipeline: p\na0: &a0 [1, 1, 1, 1, 1, 1, 1, 1]\n");
    for i in 1..16 {
        bomb.push_str(&format!(
            "a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 8].join(", ")
        ));
    }
    let axis = format!(
        "[{}]",
        (0..40)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut matrix = String::from(
        "pipeline: p\nnodes:\n  x:\n    op: shell\n    params: {cmd: a}\n    matrix:\n",
    );
    for k in ["a", "b", "c", "d", "e", "f", "g", "h"] {
        matrix.push_str(&format!("      {k}: {axis}\n"));
    }
    let generated = [bomb, matrix];
    for text in cases
        .iter()
        .copied()
        .chain(generated.iter().map(String::as_str))
    {
        if let Some(msg) = check(root, &path, text, &[]) {
            panic!("{text:?} panicked: {msg}");
        }
    }
    for o in ["", "=", "seed", "seed=", "seed=[", "seed={a: *b}", "é=1"] {
        let text = "pipeline: p\nparams: {seed: 0}\nnodes: {}\n";
        if let Some(msg) = check(root, &path, text, &[o.to_string()]) {
            panic!("-s {o:?} panicked: {msg}");
        }
    }
}
