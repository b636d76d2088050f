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

/// One param an op accepts.
#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    /// Name under `params:`.
    pub name: &'static str,
    /// Required type.
    pub ty: ParamType,
    /// Must be given.
    pub required: bool,
    /// Part of the cache key. Non-semantic params (threads, progress, timeouts)
    /// cannot change results and stay out of the key.
    pub semantic: bool,
    /// One line for `repro ops`.
    pub doc: &'static str,
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
        if s.required && !params.contains_key(s.name) {
            return Err((
                String::new(),
                format!("missing required param `{}` ({})", s.name, s.doc),
            ));
        }
    }
    Ok(())
}

/// The params that enter the cache key (semantic ones), as a JSON object.
pub fn semantic(specs: &[ParamSpec], params: &Map<String, Value>) -> Map<String, Value> {
    params
        .iter()
        .filter(|(k, _)| specs.iter().any(|s| s.name == k.as_str() && s.semantic))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
