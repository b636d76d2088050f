//! `repro push`, `repro pull` and `repro remote list`: share the cache
//! through a remote named in `repro.toml` (see [`crate::remote`]).

use super::{Failure, Outcome, PipelineArgs, load, root};
use crate::cache::Cache;
use crate::cache::lockfile::LockFile;
use crate::config::{self, Config, PROJECT_FILE};
use crate::remote::{self, RemoteError, sync};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};

/// Arguments of `repro push` and `repro pull`.
#[derive(Args, Debug)]
pub struct SyncArgs {
    /// A remote named in repro.toml (default: its `remote = "..."`, or the only one).
    #[arg(value_name = "REMOTE")]
    pub remote: Option<String>,
    /// Every record (of the local cache on push, of the remote on pull),
    /// not only those in the pipeline's lock file.
    #[arg(long)]
    pub all: bool,
    /// Heavy blobs too (they are not committed to git).
    #[arg(long)]
    pub blobs: bool,
    #[command(flatten)]
    pub p: PipelineArgs,
}

/// `repro remote ...`
#[derive(Subcommand, Debug)]
pub enum RemoteCommand {
    /// List the configured remotes, their URLs and the files they come from.
    List,
}

/// Direction of a transfer.
#[derive(Clone, Copy, PartialEq)]
pub enum Direction {
    /// Local cache to remote.
    Push,
    /// Remote to local cache.
    Pull,
}

/// Runs `repro push` or `repro pull`.
pub fn sync(a: SyncArgs, dir: Direction) -> Outcome {
    let root = root()?;
    let (name, rc) = pick(&root, a.remote.as_deref())?;
    let (cache, scope) = if a.all {
        (Cache::open(&root)?, sync::Scope::All)
    } else {
        let l = load(&a.p, None)?;
        let lock = LockFile::read(&l.lock_path).map_err(Failure::Failed)?;
        if lock.nodes.is_empty() {
            eprintln!(
                "repro: {} has no entries (run the pipeline first, or use --all); nothing to transfer",
                rel(&root, &l.lock_path)
            );
            return Ok(());
        }
        let mut keys: Vec<String> = lock.nodes.into_values().map(|e| e.key).collect();
        keys.sort();
        keys.dedup();
        (l.cache, sync::Scope::Keys(keys))
    };
    let r = remote::open(&resolve_url(&root, &rc.url), &rc).map_err(fail)?;
    let _guard = crate::exec::shared_cache_lock(&cache, false)
        .map_err(|e| Failure::Failed(e.to_string()))?;
    let (verb, place, report) = match dir {
        Direction::Push => {
            eprintln!("pushing to {name} ({}) ...", rc.url);
            let rep = sync::push(&cache, r.as_ref(), &scope, a.blobs).map_err(fail)?;
            ("pushed", "on the remote", rep)
        }
        Direction::Pull => {
            eprintln!("pulling from {name} ({}) ...", rc.url);
            let rep =
                crate::remote::pull::pull(&cache, r.as_ref(), &scope, a.blobs).map_err(fail)?;
            ("pulled", "in the local cache", rep)
        }
    };
    println!("{}", report.summary(verb, place));
    // Like `dvc push`/`dvc pull`: something asked for and not found at the
    // source is an error, so CI does not take an incomplete copy for a whole one.
    let source = match dir {
        Direction::Push => "the local cache",
        Direction::Pull => "the remote",
    };
    let mut problems = report.failures.clone();
    if report.absent > 0 {
        problems.push(format!(
            "{} record(s) of {} are not in {source} (run the pipeline, or push from where it ran)",
            report.absent,
            lock_name(&a)
        ));
    }
    if report.blobs_missing > 0 {
        problems.push(format!(
            "{} heavy blob(s) asked for with --blobs are not in {source}",
            report.blobs_missing
        ));
    }
    if problems.is_empty() {
        return Ok(());
    }
    for f in &problems {
        eprintln!("error: {f}");
    }
    eprintln!(
        "repro: {} problem{}; what was transferred is complete and verified",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    Err(Failure::Exit(1))
}

/// How the scope's lock file is named in messages.
fn lock_name(a: &SyncArgs) -> String {
    match &a.p.pipeline {
        Some(p) => format!("the lock file of `{p}`"),
        None => "the lock file".to_string(),
    }
}

/// Runs `repro remote list`.
pub fn list() -> Outcome {
    let root = root()?;
    let files = sources(&root)?;
    let cfg = merged(&files);
    if cfg.remotes.is_empty() {
        println!("no remotes configured\n{}", how_to_add(&root));
        return Ok(());
    }
    for (name, rc) in &cfg.remotes {
        let default = if cfg.remote.as_deref() == Some(name) {
            "  (default)"
        } else {
            ""
        };
        let from = origin(&files, name).map_or(String::new(), |p| rel(&root, &p));
        println!("{name}\t{}\t{from}{default}", rc.url);
    }
    Ok(())
}

fn fail(e: RemoteError) -> Failure {
    if e.is_input() {
        Failure::Input(e.to_string())
    } else {
        Failure::Failed(e.to_string())
    }
}

/// The settings files that exist, user file first.
fn sources(root: &Path) -> Result<Vec<(PathBuf, Config)>, Failure> {
    let mut out = Vec::new();
    for p in config::user_file()
        .into_iter()
        .chain([root.join(PROJECT_FILE)])
    {
        if let Some(c) = Config::read(&p).map_err(|e| Failure::Input(e.to_string()))? {
            out.push((p, c));
        }
    }
    Ok(out)
}

fn merged(files: &[(PathBuf, Config)]) -> Config {
    let mut c = Config::default();
    for (_, f) in files {
        c.merge(f.clone());
    }
    c
}

/// The file that defines remote `name` (the last one wins).
fn origin(files: &[(PathBuf, Config)], name: &str) -> Option<PathBuf> {
    files
        .iter()
        .rev()
        .find(|(_, c)| c.remotes.contains_key(name))
        .map(|(p, _)| p.clone())
}

fn how_to_add(root: &Path) -> String {
    format!(
        "add one to {}:\n\n  remote = \"origin\"\n\n  [remotes.origin]\n  url = \"/mnt/shared/repro-remote\"   # or \"ssh://host/path\", \"host:path\"\n",
        root.join(PROJECT_FILE).display()
    )
}

/// The remote to use: named, else the default, else the only one.
fn pick(root: &Path, name: Option<&str>) -> Result<(String, config::RemoteConfig), Failure> {
    let files = sources(root)?;
    let cfg = merged(&files);
    if cfg.remotes.is_empty() {
        return Err(Failure::Input(format!(
            "no remote is configured; {}",
            how_to_add(root)
        )));
    }
    let listing = || {
        cfg.remotes
            .iter()
            .map(|(n, r)| {
                let from = origin(&files, n).map_or(String::new(), |p| rel(root, &p));
                format!("  {n}  {}  ({from})", r.url)
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let (name, why) = match (name, cfg.remote.as_deref()) {
        (Some(n), _) => (n.to_string(), String::new()),
        (None, Some(d)) => {
            let from = files
                .iter()
                .rev()
                .find(|(_, c)| c.remote.is_some())
                .map_or(String::new(), |(p, _)| rel(root, p));
            (d.to_string(), format!(" (the default `remote` in {from})"))
        }
        (None, None) if cfg.remotes.len() == 1 => {
            let n = cfg.remotes.keys().next().cloned().unwrap_or_default();
            (n, String::new())
        }
        (None, None) => {
            return Err(Failure::Input(format!(
                "several remotes are configured; name one, or set `remote = \"NAME\"` in {}:\n{}",
                root.join(PROJECT_FILE).display(),
                listing()
            )));
        }
    };
    match cfg.remotes.get(&name) {
        Some(rc) => Ok((name, rc.clone())),
        None => Err(Failure::Input(format!(
            "unknown remote `{name}`{why}; configured remotes:\n{}",
            listing()
        ))),
    }
}

/// A relative directory URL is relative to the project root, not to the
/// directory `repro` was started in.
fn resolve_url(root: &Path, url: &str) -> String {
    let local = !url.contains("://") && matches!(remote::ssh::SshTarget::parse(url), Ok(None));
    if local && Path::new(url).is_relative() {
        root.join(url).display().to_string()
    } else {
        url.to_string()
    }
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}
