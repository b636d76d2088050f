//! Finding the project root and the pipeline file a command means.
//!
//! The project root is the nearest directory, from the current one upwards,
//! that holds `pipelines/` or a `repro.toml`; `cache/`, `.repro/` and lock
//! files live there. `PIPELINE` is a path to a YAML file or a name in
//! `pipelines/` (`example` means `pipelines/example.yaml`). Without one, the
//! default pipeline is used: `pipelines/<DEFAULT_PIPELINE>.yaml`. The binary
//! embeds the default pipeline's files ([`EMBEDDED_FILES`]); `repro init`
//! writes them into a directory that lacks them.

use std::path::{Path, PathBuf};

/// Name of the default pipeline.
pub const DEFAULT_PIPELINE: &str = "mini";

/// The default pipeline (the miniature), its tiny variant, the shell-only
/// example and the templates they use, embedded at build time: (path
/// relative to the project root, content).
pub const EMBEDDED_FILES: &[(&str, &str)] = &[
    (
        "pipelines/mini.yaml",
        include_str!("../pipelines/mini.yaml"),
    ),
    (
        "pipelines/tiny.yaml",
        include_str!("../pipelines/tiny.yaml"),
    ),
    (
        "pipelines/mini/experiment.yaml",
        include_str!("../pipelines/mini/experiment.yaml"),
    ),
    (
        "pipelines/example.yaml",
        include_str!("../pipelines/example.yaml"),
    ),
    (
        "templates/mini_table1.md.j2",
        include_str!("../templates/mini_table1.md.j2"),
    ),
    (
        "pipelines/mini/predictions.yaml",
        include_str!("../pipelines/mini/predictions.yaml"),
    ),
];

/// A pipeline file to load.
#[derive(Debug, Clone)]
pub struct PipelineFile {
    /// Path (for errors, includes and the lock file's directory).
    pub path: PathBuf,
    /// Text, when it comes from the binary rather than the disk.
    pub embedded: Option<&'static str>,
}

/// Finds the project root from `start` upwards.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    let mut dir = Some(start);
    while let Some(d) = dir {
        if d.join("pipelines").is_dir() || d.join("repro.toml").is_file() {
            return Some(d.to_path_buf());
        }
        dir = d.parent();
    }
    None
}

/// Resolves a `PIPELINE` argument.
pub fn resolve(root: &Path, arg: Option<&str>) -> Result<PipelineFile, String> {
    let Some(arg) = arg else {
        let p = root
            .join("pipelines")
            .join(format!("{DEFAULT_PIPELINE}.yaml"));
        if p.is_file() {
            return Ok(PipelineFile {
                path: p,
                embedded: None,
            });
        }
        return Err(format!(
            "{} has no default pipeline pipelines/{DEFAULT_PIPELINE}.yaml; `repro init` writes it (and the files it needs) there",
            root.display()
        ));
    };
    let direct = PathBuf::from(arg);
    if direct.is_file() {
        return Ok(PipelineFile {
            path: direct,
            embedded: None,
        });
    }
    for ext in ["yaml", "yml"] {
        let p = root.join("pipelines").join(format!("{arg}.{ext}"));
        if p.is_file() {
            return Ok(PipelineFile {
                path: p,
                embedded: None,
            });
        }
    }
    let known = list(root);
    Err(format!(
        "no pipeline `{arg}`: not a file, and not a name in {}/pipelines/{}",
        root.display(),
        if known.is_empty() {
            String::new()
        } else {
            format!(" (known: {})", known.join(", "))
        }
    ))
}

/// Names of the pipelines in `pipelines/`.
pub fn list(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join("pipelines"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            let ext = p.extension()?.to_str()?;
            (ext == "yaml" || ext == "yml").then(|| p.file_stem()?.to_str().map(str::to_string))?
        })
        .collect();
    v.sort();
    v
}

/// Writes the embedded files that `dir` lacks; returns the paths written.
/// Existing files are never overwritten.
pub fn init(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, text) in EMBEDDED_FILES {
        let p = dir.join(rel);
        if p.exists() {
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::cache::atomic::write(&p, text.as_bytes())?;
        written.push(p);
    }
    Ok(written)
}
