//! Finding the Python interpreter and deciding which isolation this machine
//! allows (probed once per process).

use super::child::{Plan, Rlimits, Unblock};
use super::{Limits, SandboxError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The uid/gid samples run as when the caller is root (`nobody`/`nogroup`).
pub const SANDBOX_UID: u32 = 65534;
/// See [`SANDBOX_UID`].
pub const SANDBOX_GID: u32 = 65534;

/// The interpreter samples run with.
#[derive(Debug, Clone)]
pub struct Python {
    /// `python3` as found on `PATH` (possibly a shim).
    pub found: PathBuf,
    /// The real executable (`sys.executable`, canonical).
    pub exe: PathBuf,
    /// Its installation prefix (`sys.base_prefix`, canonical).
    pub prefix: PathBuf,
    /// `platform.python_version()`.
    pub version: String,
}

/// What isolation samples get on this machine.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Isolation {
    /// Mount, network, PID and IPC namespaces per sample (plus a user
    /// namespace); implies the three flags below.
    pub namespaces: bool,
    /// No network: the sample's network namespace has only a loopback
    /// device, which is down.
    pub network_isolated: bool,
    /// The file system is read-only for the sample except its tmpfs home.
    pub fs_readonly: bool,
    /// The program is PID 1 of its own PID namespace, so every process it
    /// starts dies with it.
    pub pid_namespace: bool,
    /// The caller runs as root.
    pub caller_is_root: bool,
    /// When the caller is root: the uid samples run as.
    pub run_as_uid: Option<u32>,
    /// RLIMIT_NPROC is effective (never for uid 0).
    pub nproc_limited: bool,
    /// Without an effective RLIMIT_NPROC: the parent counts the processes
    /// of the sample's session every 10 ms and kills the group above the
    /// limit (a fork bomb can overshoot between two counts; processes that
    /// call `setsid` are not counted).
    pub nproc_counted: bool,
    /// Why a stronger mode was not used (empty when namespaces work).
    pub note: String,
}

static PYTHON: OnceLock<Result<Python, String>> = OnceLock::new();
static ISOLATION: OnceLock<Result<(Isolation, Option<Unblock>), String>> = OnceLock::new();

/// Finds `python3` on `PATH` and asks it for its real executable and
/// prefix (once per process).
pub fn python() -> Result<&'static Python, SandboxError> {
    PYTHON
        .get_or_init(find_python)
        .as_ref()
        .map_err(|e| SandboxError::Python(e.clone()))
}

fn find_python() -> Result<Python, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|d| d.join("python3"))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
        .ok_or_else(|| {
            "`python3` was not found on PATH (the HumanEval sandbox runs every sample with it)"
                .to_string()
        })?;
    let out = std::process::Command::new(&found)
        .args([
            "-c",
            "import sys, platform; print(sys.executable); print(sys.base_prefix); \
             print(platform.python_version())",
        ])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", found.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    if !out.status.success() || lines.len() < 3 {
        return Err(format!(
            "{} does not work: {}",
            found.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let canon = |s: &str| std::fs::canonicalize(s).unwrap_or_else(|_| PathBuf::from(s));
    Ok(Python {
        exe: canon(lines[0]),
        prefix: canon(lines[1]),
        version: lines[2].to_string(),
        found,
    })
}

/// The first ancestor of `p` (below `/`) that others may not enter.
fn blocker(p: &Path) -> Option<PathBuf> {
    p.ancestors()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .skip(1)
        .find(|a| {
            a.metadata()
                .map(|m| m.permissions().mode() & 0o001 == 0)
                .unwrap_or(true)
        })
        .map(Path::to_path_buf)
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| format!("{} contains NUL", p.display()))
}

/// How to make the interpreter reachable for the sandbox uid, when it lives
/// under a directory others cannot enter. `Err` when that is impossible
/// (the executable lies outside its prefix).
fn unblock_plan(py: &Python) -> Result<Option<Unblock>, String> {
    let Some(b) = blocker(&py.prefix) else {
        return match blocker(&py.exe) {
            None => Ok(None),
            Some(b) => Err(format!(
                "{} is not reachable (blocked at {})",
                py.exe.display(),
                b.display()
            )),
        };
    };
    if !py.exe.starts_with(&py.prefix) {
        return Err(format!(
            "{} lies outside its prefix {}, which is blocked at {}",
            py.exe.display(),
            py.prefix.display(),
            b.display()
        ));
    }
    let mut chain = Vec::new();
    for a in py.prefix.ancestors() {
        if a == b {
            break;
        }
        chain.push(cstr(a)?);
    }
    chain.reverse();
    Ok(Some(Unblock {
        blocker: cstr(&b)?,
        chain,
        prefix: cstr(&py.prefix)?,
    }))
}

/// Builds the child's plan for `home` under the given mode.
pub(super) fn plan(
    limits: &Limits,
    home: &Path,
    iso: &Isolation,
    unblock: Option<Unblock>,
) -> Result<Plan, SandboxError> {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let (owner_uid, owner_gid) = match iso.run_as_uid {
        Some(u) => (u, SANDBOX_GID),
        None => (uid, gid),
    };
    Ok(Plan {
        limits: Rlimits {
            cpu_s: limits.cpu_s.max(1),
            address_space: limits.memory_bytes,
            file_size: limits.file_size_bytes,
            nproc: limits.max_procs.max(2),
            nofile: 256,
        },
        namespaces: iso.namespaces,
        drop_to: iso.run_as_uid.map(|u| (u, SANDBOX_GID)),
        is_root: iso.caller_is_root,
        uid_map: format!("{uid} {uid} 1\n").into_bytes(),
        gid_map: format!("{gid} {gid} 1\n").into_bytes(),
        home: cstr(home).map_err(SandboxError::Setup)?,
        tmpfs_opts: CString::new(format!(
            "size={},mode=0700,uid={owner_uid},gid={owner_gid}",
            limits.scratch_bytes.max(4096)
        ))
        .map_err(|e| SandboxError::Setup(e.to_string()))?,
        unblock: if iso.namespaces { unblock } else { None },
    })
}

/// The isolation this machine allows, probed once per process by running a
/// trivial program under each mode, strongest first: namespaces (as root:
/// plus the drop to [`SANDBOX_UID`]); then, without namespaces, the uid drop
/// alone (root, interpreter reachable); then rlimits and the process group
/// only.
pub fn isolation() -> Result<&'static Isolation, SandboxError> {
    isolation_full().map(|(i, _)| i)
}

pub(super) fn isolation_full() -> Result<&'static (Isolation, Option<Unblock>), SandboxError> {
    python()?;
    ISOLATION
        .get_or_init(probe)
        .as_ref()
        .map_err(|e| SandboxError::Setup(e.clone()))
}

/// The isolation flags of one mode.
fn mode(namespaces: bool, root: bool, run_as_uid: Option<u32>) -> Isolation {
    let kernel_nproc = !root || run_as_uid.is_some();
    Isolation {
        namespaces,
        network_isolated: namespaces,
        fs_readonly: namespaces,
        pid_namespace: namespaces,
        caller_is_root: root,
        run_as_uid,
        nproc_limited: kernel_nproc,
        nproc_counted: !kernel_nproc,
        note: String::new(),
    }
}

fn probe() -> Result<(Isolation, Option<Unblock>), String> {
    let py = python().map_err(|e| e.to_string())?;
    // SAFETY: getuid cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let unblock = if root { unblock_plan(py) } else { Ok(None) };
    let mut notes = Vec::new();
    let mut candidates = Vec::new();
    let run_as = root.then_some(SANDBOX_UID);
    if std::env::var("REPRO_SANDBOX_NAMESPACES").as_deref() == Ok("0") {
        notes.push("namespaces disabled by REPRO_SANDBOX_NAMESPACES=0".to_string());
    } else {
        match &unblock {
            Ok(u) => candidates.push((mode(true, root, run_as), u.clone())),
            Err(e) => notes.push(format!("namespaces not tried: {e}")),
        }
    }
    match &unblock {
        // Without a mount namespace, `nobody` can only run an interpreter
        // that is reachable as it is.
        Ok(None) if root => candidates.push((mode(false, root, run_as), None)),
        Ok(Some(_)) => notes.push(format!(
            "without namespaces samples run as root ({} is not reachable for uid {SANDBOX_UID}); \
             processes are then limited by counting",
            py.prefix.display()
        )),
        _ => {}
    }
    candidates.push((mode(false, root, None), None));
    for (mut iso, u) in candidates {
        match super::probe_run(&iso, u.clone()) {
            Ok(()) => {
                iso.note = notes.join("; ");
                return Ok((iso, u));
            }
            Err(e) => notes.push(format!(
                "mode namespaces={} run_as={:?} failed: {e}",
                iso.namespaces, iso.run_as_uid
            )),
        }
    }
    Err(format!("no sandbox mode works: {}", notes.join("; ")))
}
