//! `resources:` and `tolerance:` of a node: scheduling and verification
//! settings that never enter the key.

use crate::spec::source::Sources;
use crate::spec::yaml::Yaml;
use crate::spec::{Span, SpecError};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// What a node needs to run. Defaults: 1 CPU slot, no GPU, the local executor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resources {
    /// CPU slots (threads) taken from `-j`.
    pub cpus: usize,
    /// GPUs; the local executor hands out concrete device ids.
    pub gpus: usize,
    /// `local` (default) or `slurm`.
    pub executor: String,
    /// Wall-time limit for cluster executors (e.g. `2h`).
    pub time: Option<String>,
    /// Memory for cluster executors (e.g. `64G`).
    pub mem: Option<String>,
    /// Slurm partition.
    pub partition: Option<String>,
    /// Slurm account.
    pub account: Option<String>,
    /// Slurm QOS.
    pub qos: Option<String>,
    /// Extra arguments passed to the cluster submitter.
    pub extra: Vec<String>,
    /// Times a cluster job is resubmitted after preemption or a node failure.
    #[serde(skip_serializing_if = "is_zero")]
    pub retries: u32,
    /// Cluster nodes of one job (`sbatch --nodes`; `gpus` is per node). Only
    /// the torch engine of `lm.finetune` spreads over several (see
    /// `torch::launch`); the local executor runs everything on this machine.
    #[serde(skip_serializing_if = "is_one")]
    pub nodes: usize,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1,
            gpus: 0,
            executor: "local".into(),
            time: None,
            mem: None,
            partition: None,
            account: None,
            qos: None,
            extra: Vec::new(),
            retries: 0,
            nodes: 1,
        }
    }
}

/// Executors this build knows by name.
pub const EXECUTORS: &[&str] = &["local", "slurm"];
const KEYS: &[&str] = &[
    "cpus",
    "gpus",
    "executor",
    "time",
    "mem",
    "partition",
    "account",
    "qos",
    "extra",
    "retries",
    "nodes",
];

/// Parses `resources:` (already interpolated).
///
/// `raw` is the mapping as written, used to point errors at the offending key.
pub fn parse_resources(
    src: &Sources,
    v: Option<&(Value, Span)>,
    raw: Option<&Yaml>,
    at: &str,
) -> Result<Resources, SpecError> {
    let mut r = Resources::default();
    let Some((v, span)) = v else { return Ok(r) };
    let err = |k: &str, m: String| src.error(key_span(raw, k, *span), &format!("{at}.{k}"), m);
    let Value::Object(m) = v else {
        return Err(src.error(*span, at, "expected a mapping such as {cpus: 2, gpus: 1}"));
    };
    for (k, val) in m {
        let s = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| err(k, format!("`{k}` must be a string")))
        };
        match k.as_str() {
            "cpus" | "gpus" => {
                let n = val
                    .as_u64()
                    .filter(|n| *n <= 4096)
                    .ok_or_else(|| err(k, format!("`{k}` must be a whole number")))?
                    as usize;
                if k == "cpus" {
                    if n == 0 {
                        return Err(err(k, "`cpus` must be at least 1".into()));
                    }
                    r.cpus = n;
                } else {
                    r.gpus = n;
                }
            }
            "executor" => {
                let e = s()?;
                if !EXECUTORS.contains(&e.as_str()) {
                    return Err(err(
                        k,
                        format!("unknown executor `{e}` (known: {})", EXECUTORS.join(", ")),
                    ));
                }
                r.executor = e;
            }
            "time" => {
                let t = match val {
                    Value::Number(n) => n.to_string(),
                    _ => s()?,
                };
                slurm_time(&t).map_err(|m| err(k, m))?;
                r.time = Some(t);
            }
            "mem" => {
                let m = match val {
                    Value::Number(n) => n.to_string(),
                    _ => s()?,
                };
                slurm_mem(&m).map_err(|e| err(k, e))?;
                r.mem = Some(m);
            }
            "retries" => {
                r.retries =
                    val.as_u64().filter(|n| *n <= 100).ok_or_else(|| {
                        err(k, "`retries` must be a whole number up to 100".into())
                    })? as u32;
            }
            "nodes" => {
                r.nodes = val
                    .as_u64()
                    .filter(|n| (1..=4096).contains(n))
                    .ok_or_else(|| err(k, "`nodes` must be a whole number from 1".into()))?
                    as usize;
            }
            "partition" => r.partition = Some(s()?),
            "account" => r.account = Some(s()?),
            "qos" => r.qos = Some(s()?),
            "extra" => {
                r.extra = match val {
                    Value::Array(items) => items
                        .iter()
                        .map(|x| {
                            x.as_str()
                                .map(str::to_string)
                                .ok_or_else(|| err(k, "`extra` must be a list of strings".into()))
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(err(k, "`extra` must be a list of strings".into())),
                }
            }
            other => {
                let hint = crate::op::suggest::closest(other, KEYS)
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return Err(err(
                    other,
                    format!(
                        "unknown resource `{other}`{hint}; allowed: {}",
                        KEYS.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(r)
}

/// Converts a time limit to Slurm's `D-HH:MM:SS`.
///
/// Accepts units (`90s`, `30m`, `2h`, `1d`, `1h30m`), plain minutes (`120`,
/// Slurm's own reading of a bare number) and Slurm's forms (`MM:SS`,
/// `H:MM:SS`, `D-H`, `D-H:MM`, `D-H:MM:SS`). Zero is refused.
pub fn slurm_time(t: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "`{t}` is not a time limit (examples: 90s, 30m, 2h, 1d, 1h30m, 2:00:00, 1-12:00:00)"
        )
    };
    let t = t.trim();
    let num = |x: &str| -> Result<u64, String> {
        if x.is_empty() || !x.bytes().all(|b| b.is_ascii_digit()) || x.len() > 9 {
            return Err(bad());
        }
        x.parse().map_err(|_| bad())
    };
    let secs: u64 = if t.bytes().any(|b| b.is_ascii_alphabetic()) {
        let mut total = 0u64;
        let mut digits = String::new();
        for c in t.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            total += num(&digits)? * unit;
            digits.clear();
        }
        if !digits.is_empty() {
            return Err(bad());
        }
        total
    } else {
        let (days, rest) = match t.split_once('-') {
            Some((d, r)) => (num(d)?, r),
            None => (0, t),
        };
        let parts: Vec<&str> = rest.split(':').collect();
        let p = |i: usize| num(parts[i]);
        let hms = match (t.contains('-'), parts.len()) {
            (false, 1) => p(0)? * 60,
            (false, 2) => p(0)? * 60 + p(1)?,
            (false, 3) => p(0)? * 3600 + p(1)? * 60 + p(2)?,
            (true, 1) => p(0)? * 3600,
            (true, 2) => p(0)? * 3600 + p(1)? * 60,
            (true, 3) => p(0)? * 3600 + p(1)? * 60 + p(2)?,
            _ => return Err(bad()),
        };
        days * 86_400 + hms
    };
    if secs == 0 {
        return Err(format!("`{t}` is a zero time limit"));
    }
    Ok(format!(
        "{}-{:02}:{:02}:{:02}",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    ))
}

/// Checks a memory amount for Slurm's `--mem` (`64G`, `512M`, `1T`, or
/// megabytes as a bare number) and returns it as sbatch takes it.
pub fn slurm_mem(m: &str) -> Result<String, String> {
    let m = m.trim();
    let (digits, unit) = match m.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => m.split_at(i),
        None => (m, ""),
    };
    let unit = unit.trim_end_matches(['B', 'b']);
    let ok_unit = matches!(unit, "" | "K" | "M" | "G" | "T" | "k" | "m" | "g" | "t");
    if digits.is_empty() || digits.len() > 12 || !ok_unit || digits.bytes().all(|b| b == b'0') {
        return Err(format!(
            "`{m}` is not a memory amount (examples: 512M, 64G, 1T)"
        ));
    }
    Ok(format!("{digits}{}", unit.to_ascii_uppercase()))
}

/// How far a re-run metric may move from the cached one and still pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tolerance {
    /// Absolute difference allowed.
    pub abs: f64,
    /// Difference allowed relative to the cached value's magnitude.
    pub rel: f64,
}

impl Tolerance {
    /// Exact equality.
    pub const EXACT: Tolerance = Tolerance { abs: 0.0, rel: 0.0 };

    /// Whether `new` is within tolerance of `old`.
    pub fn accepts(&self, old: f64, new: f64) -> bool {
        let d = (old - new).abs();
        d <= self.abs || d <= self.rel * old.abs() || old == new
    }
}

/// Parses `tolerance:` (`metric: 0.01` for absolute, or `metric: {abs, rel}`;
/// `default:` applies to metrics not listed).
///
/// `raw` is the mapping as written, used to point errors at the offending key.
pub fn parse_tolerance(
    src: &Sources,
    v: Option<&(Value, Span)>,
    raw: Option<&Yaml>,
    at: &str,
) -> Result<BTreeMap<String, Tolerance>, SpecError> {
    let mut out = BTreeMap::new();
    let Some((v, span)) = v else { return Ok(out) };
    let Value::Object(m) = v else {
        return Err(src.error(*span, at, "expected a mapping of metric -> tolerance"));
    };
    for (k, val) in m {
        let bad = || {
            src.error(
                key_span(raw, k, *span),
                &format!("{at}.{k}"),
                "a tolerance is a non-negative number (absolute) or {abs: x, rel: y}",
            )
        };
        let t = match val {
            Value::Number(n) => Tolerance {
                abs: n.as_f64().ok_or_else(bad)?,
                rel: 0.0,
            },
            Value::Object(o) => {
                if o.keys().any(|x| x != "abs" && x != "rel") {
                    return Err(bad());
                }
                let get = |x: &str| -> Result<f64, SpecError> {
                    match o.get(x) {
                        None => Ok(0.0),
                        Some(v) => v.as_f64().ok_or_else(bad),
                    }
                };
                Tolerance {
                    abs: get("abs")?,
                    rel: get("rel")?,
                }
            }
            _ => return Err(bad()),
        };
        if t.abs < 0.0 || t.rel < 0.0 || !t.abs.is_finite() || !t.rel.is_finite() {
            return Err(bad());
        }
        out.insert(k.clone(), t);
    }
    Ok(out)
}

/// Where `key` is written in the mapping `raw`, or `whole` when it is not there.
fn key_span(raw: Option<&Yaml>, key: &str, whole: Span) -> Span {
    raw.and_then(Yaml::as_map)
        .and_then(|m| m.iter().find(|(k, _)| k.name == key))
        .map_or(whole, |(k, _)| k.span)
}

#[cfg(test)]
mod tests {
    use super::{slurm_mem, slurm_time};

    #[test]
    fn time_limits() {
        let ok = |t: &str| slurm_time(t).expect(t);
        assert_eq!(ok("2h"), "0-02:00:00");
        assert_eq!(ok("1h30m"), "0-01:30:00");
        assert_eq!(ok("90s"), "0-00:01:30");
        assert_eq!(ok("120"), "0-02:00:00");
        assert_eq!(ok("1:30"), "0-00:01:30");
        assert_eq!(ok("2:00:00"), "0-02:00:00");
        assert_eq!(ok("1-12"), "1-12:00:00");
        assert_eq!(ok("3d"), "3-00:00:00");
        for bad in ["", "0", "2x", "h", "1:2:3:4", "-1", "1.5h", "99999999999h"] {
            assert!(slurm_time(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn memory() {
        assert_eq!(slurm_mem("64G").as_deref(), Ok("64G"));
        assert_eq!(slurm_mem("512mb").as_deref(), Ok("512M"));
        assert_eq!(slurm_mem("4096").as_deref(), Ok("4096"));
        for bad in ["", "G", "0G", "64X", "1.5G"] {
            assert!(slurm_mem(bad).is_err(), "{bad} accepted");
        }
    }
}
