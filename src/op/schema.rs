//! Params schemas: what an op accepts, checked at compile time.

use serde_json::{Map, Value};

/// The JSON type a param must have.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamType {
    /// A string.
    Str,
    /// An integer.
    Int,
    /// Any number.
    Number,
    /// `true` / `false`.
    Bool,
    /// A list.
    List,
    /// A mapping.
    Map,
    /// A string or a mapping.
    StrOrMap,
    /// Anything.
    Any,
}

impl ParamType {
    fn accepts(self, v: &Value) -> bool {
        match self {
            ParamType::Str => v.is_string(),
            ParamType::Int => v.is_i64() || v.is_u64(),
            ParamType::Number => v.is_number(),
            ParamType::Bool => v.is_boolean(),
            ParamType::List => v.is_array(),
            ParamType::Map => v.is_object(),
            ParamType::StrOrMap => v.is_string() || v.is_object(),
            ParamType::Any => true,
        }
    }

    /// A human name for error messages.
    pub fn describe(self) -> &'static str {
        match self {
            ParamType::Str => "a string",
            ParamType::Int => "an integer",
            ParamType::Number => "a number",
            ParamType::Bool => "a boolean",
            ParamType::List => "a list",
            ParamType::Map => "a mapping",
            ParamType::StrOrMap => "a string or a mapping",
            ParamType::Any => "any value",
        }
    }
}

/// A param's default, as written in its schema (a `const`, so schemas stay
/// `static`). A param with a default may be omitted; the executor hands the
/// op its params with every default filled in ([`with_defaults`]), so an op
/// never repeats a default in its code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamDefault {
    /// The param must be given.
    Required,
    /// The param may be omitted and has no value then (its absence means
    /// something the doc explains, e.g. "all", or depends on other params).
    Absent,
    /// An integer.
    Int(i64),
    /// A number.
    Num(f64),
    /// A string.
    Str(&'static str),
    /// A boolean.
    Bool(bool),
    /// A list or mapping, as JSON text (e.g. `"[1]"`).
    Json(&'static str),
}

impl ParamDefault {
    /// The default as a JSON value; `None` for `Required` and `Absent`.
    pub fn value(self) -> Option<Value> {
        match self {
            ParamDefault::Required | ParamDefault::Absent => None,
            ParamDefault::Int(n) => Some(Value::from(n)),
            ParamDefault::Num(x) => Some(Value::from(x)),
            ParamDefault::Str(s) => Some(Value::from(s)),
            ParamDefault::Bool(b) => Some(Value::from(b)),
            ParamDefault::Json(text) => serde_json::from_str(text).ok(),
        }
    }
}

/// One param an op accepts: the single source of its type, default, doc and
/// whether it enters the cache key.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Name under `params:`.
    pub name: &'static str,
    /// Required type.
    pub ty: ParamType,
    /// Required, absent when omitted, or its default value.
    pub default: ParamDefault,
    /// Part of the cache key. Non-semantic params (threads, progress, timeouts)
    /// cannot change results and stay out of the key.
    pub semantic: bool,
    /// One line for `repro ops`.
    pub doc: &'static str,
    /// The value a node granted GPUs gets when it omits the param, in place
    /// of [`ParamSpec::default`] (e.g. `dtype`: `f32` on the CPU, `bf16` on
    /// GPUs). The pipeline compiler writes it into such a node's params
    /// ([`with_device_defaults`]), so it enters the key like a written value.
    pub gpu_default: Option<&'static str>,
}

impl ParamSpec {
    const fn new(
        name: &'static str,
        ty: ParamType,
        default: ParamDefault,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            default,
            semantic: true,
            doc,
            gpu_default: None,
        }
    }
    /// A param that must be given.
    pub const fn required(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        Self::new(name, ty, ParamDefault::Required, doc)
    }
    /// A param that may be omitted and then has no value.
    pub const fn optional(name: &'static str, ty: ParamType, doc: &'static str) -> Self {
        Self::new(name, ty, ParamDefault::Absent, doc)
    }
    /// An integer param with a default.
    pub const fn int(name: &'static str, default: i64, doc: &'static str) -> Self {
        Self::new(name, ParamType::Int, ParamDefault::Int(default), doc)
    }
    /// A number param with a default.
    pub const fn num(name: &'static str, default: f64, doc: &'static str) -> Self {
        Self::new(name, ParamType::Number, ParamDefault::Num(default), doc)
    }
    /// A string param with a default.
    pub const fn str(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self::new(name, ParamType::Str, ParamDefault::Str(default), doc)
    }
    /// A boolean param with a default.
    pub const fn bool(name: &'static str, default: bool, doc: &'static str) -> Self {
        Self::new(name, ParamType::Bool, ParamDefault::Bool(default), doc)
    }
    /// A list or mapping param with a default written as JSON.
    pub const fn json(
        name: &'static str,
        ty: ParamType,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        Self::new(name, ty, ParamDefault::Json(default), doc)
    }
    /// The same param, kept out of the cache key (it cannot change results).
    pub const fn not_semantic(self) -> Self {
        ParamSpec {
            semantic: false,
            ..self
        }
    }
    /// The same param with `value` as its default on a node granted GPUs.
    pub const fn on_gpu(self, value: &'static str) -> Self {
        ParamSpec {
            gpu_default: Some(value),
            ..self
        }
    }
    /// Whether the param must be given.
    pub fn required_param(&self) -> bool {
        matches!(self.default, ParamDefault::Required)
    }
}

/// Describes a JSON value's type for messages.
pub fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Checks params against a schema; `Err((param, message))`.
pub fn validate(specs: &[ParamSpec], params: &Map<String, Value>) -> Result<(), (String, String)> {
    for (k, v) in params {
        let Some(spec) = specs.iter().find(|s| s.name == k) else {
            let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
            let hint = match super::suggest::closest(k, &names) {
                Some(c) => format!(" (did you mean `{c}`?)"),
                None => String::new(),
            };
            return Err((
                k.clone(),
                format!(
                    "unknown param `{k}`{hint}; this op takes: {}",
                    names.join(", ")
                ),
            ));
        };
        if !spec.ty.accepts(v) {
            return Err((
                k.clone(),
                format!("`{k}` must be {}, found {}", spec.ty.describe(), type_of(v)),
            ));
        }
    }
    for s in specs {
        if s.required_param() && !params.contains_key(s.name) {
            return Err((
                String::new(),
                format!("missing required param `{}` ({})", s.name, s.doc),
            ));
        }
    }
    Ok(())
}

/// The params that enter the cache key, in their canonical form: the
/// semantic ones, less those equal to their default (see [`is_default`]).
/// So writing a default and omitting it give one key, and a new optional
/// param leaves existing keys alone; changing a default changes results
/// under an unchanged key, so it needs an op-version bump (the schema
/// snapshot test in `tests/op_schemas.rs` catches a forgotten one).
pub fn semantic(specs: &[ParamSpec], params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, v)| {
            specs
                .iter()
                .any(|s| s.name == k.as_str() && s.semantic && !is_default(s, v))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Whether `value` equals the param's default. Numbers compare by value
/// for `Number` params (`1` and `1.0` are one default); everything else
/// compares as JSON.
pub fn is_default(spec: &ParamSpec, value: &Value) -> bool {
    let Some(default) = spec.default.value() else {
        return false;
    };
    match (spec.ty, value.as_f64(), default.as_f64()) {
        (ParamType::Number, Some(a), Some(b)) => a == b,
        _ => *value == default,
    }
}

/// The params with every omitted default filled in: what an op's `run`
/// sees in [`crate::op::RunContext::params`].
pub fn with_defaults(specs: &[ParamSpec], params: &Map<String, Value>) -> Map<String, Value> {
    let mut full = params.clone();
    for spec in specs {
        if !full.contains_key(spec.name)
            && let Some(v) = spec.default.value()
        {
            full.insert(spec.name.to_string(), v);
        }
    }
    full
}

/// Writes into the params of a node granted `gpus` GPUs every omitted
/// param's GPU default ([`ParamSpec::gpu_default`]); a CPU node's params are
/// left alone. Run when the pipeline compiles, before the key is computed.
pub fn with_device_defaults(specs: &[ParamSpec], params: &mut Map<String, Value>, gpus: usize) {
    if gpus == 0 {
        return;
    }
    for s in specs {
        if let Some(v) = s.gpu_default
            && !params.contains_key(s.name)
        {
            params.insert(s.name.to_string(), Value::String(v.to_string()));
        }
    }
}
