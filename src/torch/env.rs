//! The Python environment of the torch engine.
//!
//! Where the interpreter comes from, first match wins:
//!
//! 1. `REPRO_PYTHON` (an interpreter path; for tests and one-off runs);
//! 2. `[python] path = ...` in `repro.toml` (the project root found from the
//!    work directory upwards) or the user's `~/.config/repro/config.toml`;
//! 3. a venv repro creates on first use, from the lock file
//!    (`trainer/requirements.lock`), at `<work root>/python-<lock digest>/`
//!    (by default `.repro/work/python-.../`; with a Slurm profile's
//!    `work_dir`, beside the job directories, where compute nodes see it).
//!
//! The interpreter must import torch, transformers and safetensors at the
//! versions the lock file pins (a local suffix such as `+cu128` aside);
//! anything else is an error that names what to install.

use super::TorchError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The packages whose versions must match the lock file.
pub const CHECKED: &[&str] = &["torch", "transformers", "safetensors"];

/// A usable interpreter and what it runs.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    /// The interpreter.
    pub python: PathBuf,
    /// Where it came from (`REPRO_PYTHON`, a config file, or `venv`).
    pub source: String,
    /// `python`, `torch`, `transformers`, `safetensors`, `cuda` (or `none`)
    /// versions, and `gpus` (devices torch sees).
    pub versions: BTreeMap<String, String>,
}

/// The `name==version` pins of a lock file (names lower-cased, `_` as `-`).
pub fn pins(lock_text: &str) -> BTreeMap<String, String> {
    lock_text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter_map(|l| l.split_once("=="))
        .map(|(n, v)| {
            let n = n.split('[').next().unwrap_or(n);
            (
                n.trim().to_ascii_lowercase().replace('_', "-"),
                v.split(';').next().unwrap_or(v).trim().to_string(),
            )
        })
        .collect()
}

/// Checks the versions an interpreter reported against the lock's pins;
/// the error names each mismatch and the command that fixes it.
pub fn check_versions(
    python: &Path,
    versions: &BTreeMap<String, String>,
    pins: &BTreeMap<String, String>,
    lock_name: &str,
) -> Result<(), TorchError> {
    let mut wrong = Vec::new();
    for &name in CHECKED {
        let Some(want) = pins.get(name) else { continue };
        let have = versions.get(name).map(String::as_str).unwrap_or("missing");
        let base = have.split('+').next().unwrap_or(have);
        if base != want.split('+').next().unwrap_or(want) {
            wrong.push(format!("{name} {have} (the lock pins {want})"));
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    Err(TorchError::Env(format!(
        "the Python environment {} does not match {lock_name}: {}; install it with `{} -m pip install -r {lock_name}`, or unset `[python] path` / REPRO_PYTHON to let repro create a venv",
        python.display(),
        wrong.join(", "),
        python.display()
    )))
}

const PROBE: &str = r#"
import json, platform, sys
out = {"python": platform.python_version()}
missing = []
for name in ("torch", "transformers", "safetensors"):
    try:
        m = __import__(name)
        out[name] = m.__version__
    except Exception as e:
        missing.append(f"{name} ({type(e).__name__}: {e})")
if "torch" in out:
    import torch
    out["cuda"] = torch.version.cuda or "none"
    out["gpus"] = str(torch.cuda.device_count())
    try:
        from torch.distributed.fsdp import fully_shard
    except Exception:
        missing.append("torch.distributed.fsdp.fully_shard (torch >= 2.6)")
out["missing"] = "; ".join(missing)
print(json.dumps(out))
"#;

/// Runs the probe in `python`: its versions, or what is missing.
pub fn probe(python: &Path) -> Result<BTreeMap<String, String>, TorchError> {
    let out = Command::new(python)
        .args(["-c", PROBE])
        .output()
        .map_err(|e| {
            TorchError::Env(format!(
                "cannot run the Python interpreter {}: {e}",
                python.display()
            ))
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(text.trim()).map_err(|_| {
        TorchError::Env(format!(
            "the Python interpreter {} failed: {}",
            python.display(),
            crate::op::tail(&String::from_utf8_lossy(&out.stderr), 2000)
        ))
    })?;
    let mut m: BTreeMap<String, String> = v
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let missing = m.remove("missing").unwrap_or_default();
    if !missing.is_empty() {
        return Err(TorchError::Env(format!(
            "the Python interpreter {} lacks {missing}",
            python.display()
        )));
    }
    Ok(m)
}

/// Where the interpreter comes from, before any check: `REPRO_PYTHON`, then
/// `[python] path` of the settings found from `work_dir` upwards.
pub fn configured(work_dir: &Path) -> Result<Option<(PathBuf, String)>, TorchError> {
    if let Some(p) = std::env::var_os("REPRO_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(Some((PathBuf::from(p), "REPRO_PYTHON".into())));
    }
    let root = crate::project::find_root(work_dir);
    let cfg = match &root {
        Some(r) => crate::config::Config::load(r),
        None => crate::config::user_file()
            .map(|p| crate::config::Config::read(&p).map(Option::unwrap_or_default))
            .unwrap_or_else(|| Ok(Default::default())),
    }
    .map_err(|e| TorchError::Env(e.to_string()))?;
    Ok(cfg
        .python
        .path
        .map(|p| (p, "[python] path in the settings".to_string())))
}

/// The venv directory for a lock file's text under `work_root`.
pub fn venv_dir(work_root: &Path, lock_text: &str) -> PathBuf {
    let d = blake3::hash(lock_text.as_bytes()).to_hex();
    work_root.join(format!("python-{}", &d[..12]))
}

/// Creates the venv at `dir` from `lock` unless it is there: `python3 -m
/// venv`, then `pip install -r lock`, into a temporary directory renamed
/// when complete (so a half-made venv is never used). `status` shows
/// progress.
pub fn create_venv(dir: &Path, lock: &Path, status: &dyn Fn(&str)) -> Result<PathBuf, TorchError> {
    let python = dir.join("bin").join("python");
    if python.exists() {
        return Ok(python);
    }
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| super::ferr(parent, e))?;
    let lock_path = dir.with_extension("lock");
    let _guard = crate::cache::flock::lock_wait(&lock_path, crate::cache::flock::Mode::Exclusive)
        .map_err(|e| super::ferr(&lock_path, e))?;
    if python.exists() {
        return Ok(python);
    }
    let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    status(&format!(
        "creating the torch engine's Python environment in {} (pip install -r {}; several GB, once)",
        dir.display(),
        lock.display()
    ));
    let host = std::env::var("REPRO_VENV_PYTHON").unwrap_or_else(|_| "python3".into());
    run(
        Command::new(&host).args(["-m", "venv"]).arg(&tmp),
        &format!(
            "`{host} -m venv` failed: install Python 3 with the venv module (Debian: apt-get install python3-venv), or set `[python] path` in repro.toml"
        ),
    )?;
    let pip = tmp.join("bin").join("pip");
    run(
        Command::new(&pip)
            .args(["install", "--disable-pip-version-check", "-q", "-r"])
            .arg(lock),
        &format!(
            "`pip install -r {}` failed (no network to the package index?); install the packages it pins into a Python of your own and set `[python] path` in repro.toml",
            lock.display()
        ),
    )?;
    std::fs::rename(&tmp, dir).map_err(|e| super::ferr(dir, e))?;
    status("Python environment ready");
    Ok(python)
}

fn run(cmd: &mut Command, what: &str) -> Result<(), TorchError> {
    let out = cmd
        .output()
        .map_err(|e| TorchError::Env(format!("{what}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    Err(TorchError::Env(format!(
        "{what}:\n{}",
        crate::op::tail(&String::from_utf8_lossy(&out.stderr), 3000)
    )))
}

/// Finds or creates the interpreter (see the module doc) and checks it
/// against `lock` (the lock file; `lock_name` names it in messages).
pub fn find(
    work_dir: &Path,
    lock: &Path,
    lock_name: &str,
    status: &dyn Fn(&str),
) -> Result<PythonEnv, TorchError> {
    let lock_text = std::fs::read_to_string(lock).map_err(|e| super::ferr(lock, e))?;
    let (python, source) = match configured(work_dir)? {
        Some(found) => found,
        None => {
            let root = work_dir.parent().unwrap_or(work_dir);
            let dir = venv_dir(root, &lock_text);
            (create_venv(&dir, lock, status)?, "venv".to_string())
        }
    };
    let versions = probe(&python).map_err(|e| match e {
        TorchError::Env(m) => TorchError::Env(format!(
            "{m}; install the torch engine's packages with `{} -m pip install -r {lock_name}`",
            python.display()
        )),
        other => other,
    })?;
    check_versions(&python, &versions, &pins(&lock_text), lock_name)?;
    Ok(PythonEnv {
        python,
        source,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_read_name_equals_version_lines() {
        let p = pins(
            "# header\ntorch==2.15.0\nTransformers==5.23.0 ; python_version >= '3.10'\nsafetensors == 0.8.0\nfoo>=1\n",
        );
        assert_eq!(p["torch"], "2.15.0");
        assert_eq!(p["transformers"], "5.23.0");
        assert_eq!(p["safetensors"], "0.8.0");
        assert!(!p.contains_key("foo"));
    }

    #[test]
    fn a_wrong_version_names_the_package_and_the_fix() {
        let pins = pins("torch==2.15.0\ntransformers==5.23.0\n");
        let mut v = BTreeMap::new();
        v.insert("torch".to_string(), "2.15.0+cu132".to_string());
        v.insert("transformers".to_string(), "5.23.0".to_string());
        check_versions(Path::new("/py"), &v, &pins, "trainer/requirements.lock").unwrap();
        v.insert("transformers".to_string(), "4.57.6".to_string());
        let e = check_versions(Path::new("/py"), &v, &pins, "trainer/requirements.lock")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("transformers 4.57.6 (the lock pins 5.23.0)"),
            "{e}"
        );
        assert!(
            e.contains("/py -m pip install -r trainer/requirements.lock"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_interpreter_is_a_clear_error() {
        let e = probe(Path::new("/nonexistent/python3"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot run the Python interpreter /nonexistent/python3"),
            "{e}"
        );
    }

    #[test]
    fn the_venv_directory_follows_the_lock_file() {
        let a = venv_dir(Path::new("/w"), "torch==1\n");
        let b = venv_dir(Path::new("/w"), "torch==2\n");
        assert_ne!(a, b);
        assert!(
            a.starts_with("/w")
                && a.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("python-")
        );
    }
}
