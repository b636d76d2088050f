//! Finding the project root and the pipeline file a command means.
//!
//! The project root is the nearest directory, from the current one upwards,
//! that holds `pipelines/` or a `repro.toml`; `cache/`, `.repro/` and lock
//! files live there. `PIPELINE` is a path to a YAML file or a name in
//! `pipelines/` (`example` means `pipelines/example.yaml`). Without one, the
//! default pipeline is used: `pipelines/<DEFAULT_PIPELINE>.yaml` if the project
//! has it, else the copy embedded in this binary.

use std::path::{Path, PathBuf};

/// Name of the default pipeline.
pub const DEFAULT_PIPELINE: &str = "example";

/// The default pipeline's text, embedded at build time.
pub const EMBEDDED_DEFAULT: &str = include_str!("../pipelines/example.yaml");

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
        return Ok(PipelineFile {
            path: p,
            embedded: Some(EMBEDDED_DEFAULT),
        });
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
