//! Reading files of the project as they were at a git revision, for
//! `repro metrics --diff REV` and `repro diff REV`: the lock file and the
//! records it names come from git itself (`git cat-file`), so the
//! comparison works on any clone, whatever the local cache holds.

use super::Failure;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// A revision of the git repository that holds the project.
pub struct GitRev {
    /// The revision as given (`HEAD`, `main~1`).
    pub name: String,
    /// Its commit id.
    pub commit: String,
    /// The project root's path inside the repository (`""` or `sub/dir/`).
    prefix: String,
    /// Where to run git.
    root: std::path::PathBuf,
}

fn git(root: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

impl GitRev {
    /// Resolves `rev` in the repository holding `root`; a directory outside
    /// git or an unknown revision is bad input (exit 2).
    pub fn open(root: &Path, rev: &str) -> Result<GitRev, Failure> {
        let prefix = git(root, &["rev-parse", "--show-prefix"]).map_err(|e| {
            Failure::Input(format!(
                "{} is not in a git repository, so there is no revision `{rev}` to compare with ({e})",
                root.display()
            ))
        })?;
        let commit = git(
            root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .ok()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            Failure::Input(format!("`{rev}` is not a git revision of this repository"))
        })?;
        Ok(GitRev {
            name: rev.to_string(),
            commit,
            prefix,
            root: root.to_path_buf(),
        })
    }

    /// The short commit id.
    pub fn short(&self) -> &str {
        &self.commit[..self.commit.len().min(7)]
    }

    /// The bytes of each project-relative path at this revision (`None`
    /// where the path does not exist there), read through one
    /// `git cat-file --batch`.
    pub fn read_many(&self, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, Failure> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let fail = |e: String| Failure::Failed(format!("git cat-file: {e}"));
        let mut child = Command::new("git")
            .arg("-C")
            .arg(&self.root)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| fail(e.to_string()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| fail("no stdin".into()))?;
        let names: String = paths
            .iter()
            .map(|p| format!("{}:{}{}\n", self.commit, self.prefix, p))
            .collect();
        // Write from a thread: git answers while it reads, and a pipe is finite.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(names.as_bytes());
        });
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| fail("no stdout".into()))?;
        let mut r = BufReader::new(stdout);
        let mut out = Vec::with_capacity(paths.len());
        for _ in paths {
            let mut header = String::new();
            r.read_line(&mut header).map_err(|e| fail(e.to_string()))?;
            let fields: Vec<&str> = header.split_whitespace().collect();
            match fields.as_slice() {
                [_, "blob", size] => {
                    let size: usize = size.parse().map_err(|_| fail(header.clone()))?;
                    let mut buf = vec![0; size + 1]; // content and its newline
                    r.read_exact(&mut buf).map_err(|e| fail(e.to_string()))?;
                    buf.truncate(size);
                    out.push(Some(buf));
                }
                [_, kind, size] => {
                    // A tree or another object where a file was expected.
                    let size: usize = size.parse().map_err(|_| fail(header.clone()))?;
                    let mut buf = vec![0; size + 1];
                    r.read_exact(&mut buf).map_err(|e| fail(e.to_string()))?;
                    let _ = kind;
                    out.push(None);
                }
                _ => out.push(None), // "<name> missing"
            }
        }
        let _ = writer.join();
        let _ = child.wait();
        Ok(out)
    }

    /// One project-relative file at this revision.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, Failure> {
        Ok(self.read_many(&[path.to_string()])?.pop().flatten())
    }
}
