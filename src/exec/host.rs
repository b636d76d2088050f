//! Facts about the machine a node runs on, for its record's provenance:
//! host name, devices, git revision, clock.

use std::path::Path;

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// `git rev-parse HEAD` in the project root, memoized.
pub fn git_rev(root: &Path) -> Option<String> {
    static REV: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    REV.get_or_init(|| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(root)
            .args(["rev-parse", "HEAD"])
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
    .clone()
}

/// The current time as RFC 3339 UTC (second precision).
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Names the GPU devices `ids` (as in `CUDA_VISIBLE_DEVICES`) for a record's
/// provenance: `cuda:0,cuda:1`, with the GPU model when `nvidia-smi` can
/// tell (`cuda:0 (NVIDIA A100-SXM4-80GB)`); the CPU with the widest vector
/// instructions it has (`cpu (avx512f)`, see [`describe_cpu`]) when there are
/// none.
pub fn describe_devices(ids: &[String]) -> String {
    if ids.is_empty() {
        return describe_cpu();
    }
    let names: Vec<(String, String)> = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=index,name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let (i, n) = l.split_once(',')?;
                    Some((i.trim().to_string(), n.trim().to_string()))
                })
                .collect()
        })
        .unwrap_or_default();
    ids.iter()
        .map(|g| match names.iter().find(|(i, _)| i == g) {
            Some((_, n)) => format!("cuda:{g} ({n})"),
            None => format!("cuda:{g}"),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Names this machine's CPU by the widest vector instruction set it has:
/// `cpu (avx512f)`, `cpu (avx2)`, `cpu (sse2)`, or `cpu` off x86-64. The
/// matrix kernels are chosen by it at run time, and float results (so a
/// greedy decode or a trained checkpoint) can differ in rounding between
/// an AVX-512 and an AVX2 machine: that is why a record names it.
pub fn describe_cpu() -> String {
    crate::model::cpu::describe()
}
