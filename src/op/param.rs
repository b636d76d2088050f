//! Reading params through their schema: the value given in the pipeline,
//! else the default its [`ParamSpec`] declares, so a default is written once,
//! in the schema. The executor also fills defaults into
//! [`crate::op::RunContext::params`] ([`super::schema::with_defaults`]);
//! these readers give the same answer on a map without them (a `check` at
//! compile time, a test that builds its own context).
//!
//! Types were checked when the pipeline compiled, so a reader only falls
//! back when a param is neither given nor has a default; asking for a
//! name the schema does not declare is a bug (`debug_assert`).

use super::schema::ParamSpec;
use serde_json::{Map, Value};

fn spec<'s>(specs: &'s [ParamSpec], name: &str) -> Option<&'s ParamSpec> {
    let found = specs.iter().find(|s| s.name == name);
    debug_assert!(found.is_some(), "param `{name}` is not in the schema");
    found
}

/// The given value of `name`, else its declared default.
pub fn value(specs: &[ParamSpec], params: &Map<String, Value>, name: &str) -> Option<Value> {
    match params.get(name) {
        Some(v) => Some(v.clone()),
        None => spec(specs, name).and_then(|s| s.default.value()),
    }
}

/// An integer param (0 when neither given nor defaulted).
pub fn int(specs: &[ParamSpec], params: &Map<String, Value>, name: &str) -> u64 {
    value(specs, params, name)
        .and_then(|v| v.as_u64())
        .unwrap_or(0)
}

/// A number param (0 when neither given nor defaulted).
pub fn num(specs: &[ParamSpec], params: &Map<String, Value>, name: &str) -> f64 {
    value(specs, params, name)
        .and_then(|v| v.as_f64())
        .unwrap_or(0.0)
}

/// A boolean param (false when neither given nor defaulted).
pub fn bool(specs: &[ParamSpec], params: &Map<String, Value>, name: &str) -> bool {
    value(specs, params, name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
}

/// A string param ("" when neither given nor defaulted).
pub fn str<'a>(specs: &'a [ParamSpec], params: &'a Map<String, Value>, name: &str) -> &'a str {
    if let Some(s) = params.get(name).and_then(Value::as_str) {
        return s;
    }
    match spec(specs, name).map(|s| s.default) {
        Some(super::schema::ParamDefault::Str(s)) => s,
        _ => "",
    }
}

/// Checks that each named integer param is positive (a missing param with
/// no default counts as 0); the error names the first that is not.
pub fn check_positive(
    specs: &[ParamSpec],
    params: &Map<String, Value>,
    names: &[&str],
) -> Result<(), (String, String)> {
    match names.iter().find(|n| int(specs, params, n) == 0) {
        Some(n) => Err((n.to_string(), format!("`{n}` must be positive"))),
        None => Ok(()),
    }
}

/// Checks that string param `name`, when given, is one of `allowed`.
pub fn check_choice(
    params: &Map<String, Value>,
    name: &str,
    allowed: &[&str],
) -> Result<(), (String, String)> {
    match params.get(name) {
        Some(Value::String(s)) if !allowed.contains(&s.as_str()) => Err((
            name.to_string(),
            format!(
                "`{name}` must be one of {}, found `{s}`",
                allowed.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::ParamType;
    use serde_json::json;

    const SPECS: &[ParamSpec] = &[
        ParamSpec::int("n", 7, "a count"),
        ParamSpec::str("mode", "fast", "a mode"),
        ParamSpec::optional("limit", ParamType::Int, "a limit"),
    ];

    #[test]
    fn given_values_win_and_defaults_fill_in() {
        let given = json!({"n": 3}).as_object().cloned().unwrap_or_default();
        assert_eq!(int(SPECS, &given, "n"), 3);
        assert_eq!(str(SPECS, &given, "mode"), "fast");
        assert_eq!(value(SPECS, &given, "limit"), None);
        let empty = Map::new();
        assert_eq!(int(SPECS, &empty, "n"), 7);
    }
}
