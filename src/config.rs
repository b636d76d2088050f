//! Machine and cluster settings: `repro.toml` in the project root and
//! `~/.config/repro/config.toml` (or `$XDG_CONFIG_HOME/repro/config.toml`).
//!
//! These say *where and how* nodes run (Slurm partition, account, default
//! time limit, a shared work directory) and where results are pushed. They
//! are never pipeline semantics and never enter a cache key: the same
//! pipeline gives the same keys on a laptop and on any cluster.
//!
//! ```toml
//! remote = "origin"              # the default remote of `repro push` / `repro pull`
//!
//! [slurm]
//! partition = "gpu"
//! account = "nlp"
//! qos = "normal"
//! time = "4h"                    # when a node's `resources:` give none
//! mem = "32G"
//! extra = ["--constraint=a100"]  # passed to sbatch as is
//! work_dir = "/shared/scratch/repro-work"  # must be visible to compute nodes
//! repro_bin = "/shared/bin/repro"          # the binary jobs run (default: this one)
//! poll_ms = 500                  # squeue interval (backs off when many jobs)
//!
//! [python]                     # the torch engine of `lm.finetune` (see `torch::env`)
//! path = "/shared/envs/repro/bin/python"   # default: a venv repro creates from trainer/requirements.lock
//!
//! [remotes.origin]
//! url = "/mnt/lab/repro-remote"  # a directory, `ssh://host/path` or `host:path`
//! ssh_command = "ssh -p 2222"    # optional
//! ```
//!
//! The project file wins over the user file, key by key; a node's own
//! `resources:` win over both.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The project-level settings file name, in the project root.
pub const PROJECT_FILE: &str = "repro.toml";

/// A settings file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[error("{path}:{line}:{col}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub col: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

/// Defaults for Slurm submissions.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SlurmProfile {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// Default `--time` when a node declares none.
    pub time: Option<String>,
    /// Default `--mem` when a node declares none.
    pub mem: Option<String>,
    /// Extra sbatch arguments, before the node's own `extra`.
    pub extra: Option<Vec<String>>,
    /// Where job work directories live (must be on a filesystem the compute
    /// nodes see); default `<state>/work`.
    pub work_dir: Option<PathBuf>,
    /// The `repro` binary jobs run; default the running binary.
    pub repro_bin: Option<PathBuf>,
    /// Milliseconds between `squeue` polls (default 500).
    pub poll_ms: Option<u64>,
}

/// One push/pull remote.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteConfig {
    /// A directory path, `ssh://[user@]host[:port]/path` or `[user@]host:path`.
    pub url: String,
    /// The ssh command for SSH remotes (default `ssh`).
    pub ssh_command: Option<String>,
}

/// The Python interpreter of the torch engine.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PythonConfig {
    /// The interpreter (with torch and transformers as the lock file pins
    /// them); default: a venv repro creates from the lock file.
    pub path: Option<PathBuf>,
}

/// All settings, merged.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The default remote's name.
    pub remote: Option<String>,
    /// Slurm defaults.
    #[serde(default)]
    pub slurm: SlurmProfile,
    /// Named remotes.
    #[serde(default)]
    pub remotes: BTreeMap<String, RemoteConfig>,
    /// The torch engine's Python.
    #[serde(default)]
    pub python: PythonConfig,
}

impl Config {
    /// Loads the user file, then the project file over it. Absent files are fine.
    pub fn load(root: &Path) -> Result<Config, ConfigError> {
        let mut c = match user_file() {
            Some(p) => Self::read(&p)?.unwrap_or_default(),
            None => Config::default(),
        };
        if let Some(p) = Self::read(&root.join(PROJECT_FILE))? {
            c.merge(p);
        }
        Ok(c)
    }

    /// Reads one file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Config>, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ConfigError {
                    path: path.to_path_buf(),
                    line: 0,
                    col: 0,
                    message: e.to_string(),
                });
            }
        };
        Self::parse(&text, path).map(Some)
    }

    /// Parses settings text; errors name the file, line and key.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        toml::from_str::<Config>(text).map_err(|e| {
            let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            ConfigError {
                path: path.to_path_buf(),
                line,
                col,
                message: e.message().trim().to_string(),
            }
        })
    }

    /// Overlays `other` (the more specific file) key by key.
    pub fn merge(&mut self, other: Config) {
        let s = &mut self.slurm;
        let o = other.slurm;
        s.partition = o.partition.or(s.partition.take());
        s.account = o.account.or(s.account.take());
        s.qos = o.qos.or(s.qos.take());
        s.time = o.time.or(s.time.take());
        s.mem = o.mem.or(s.mem.take());
        s.extra = o.extra.or(s.extra.take());
        s.work_dir = o.work_dir.or(s.work_dir.take());
        s.repro_bin = o.repro_bin.or(s.repro_bin.take());
        s.poll_ms = o.poll_ms.or(s.poll_ms.take());
        self.remote = other.remote.or(self.remote.take());
        self.remotes.extend(other.remotes);
        self.python.path = other.python.path.or(self.python.path.take());
    }
}

/// `$XDG_CONFIG_HOME/repro/config.toml`, else `~/.config/repro/config.toml`.
/// `REPRO_CONFIG` names another file (or `none` for no user file).
pub fn user_file() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REPRO_CONFIG") {
        return (p != "none").then(|| PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("repro").join("config.toml"))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_names_line() {
        let e = Config::parse("[slurm]\npartiton = \"gpu\"\n", Path::new("repro.toml"))
            .expect_err("typo must fail");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("partiton"), "{}", e.message);
    }

    #[test]
    fn project_wins_key_by_key() {
        let mut user = Config::parse(
            "[slurm]\npartition = \"a\"\naccount = \"u\"\n[remotes.x]\nurl = \"/x\"\n",
            Path::new("u"),
        )
        .expect("parse");
        let project = Config::parse(
            "remote = \"y\"\n[slurm]\npartition = \"b\"\n[remotes.y]\nurl = \"/y\"\n",
            Path::new("p"),
        )
        .expect("parse");
        user.merge(project);
        assert_eq!(user.slurm.partition.as_deref(), Some("b"));
        assert_eq!(user.slurm.account.as_deref(), Some("u"));
        assert_eq!(user.remotes.len(), 2);
        assert_eq!(user.remote.as_deref(), Some("y"));
    }
}
