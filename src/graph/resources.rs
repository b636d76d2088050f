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
            "time" => r.time = Some(s()?),
            "mem" => r.mem = Some(s()?),
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
                let hint = crate::spec::closest(other, KEYS)
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
