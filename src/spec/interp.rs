//! `${name}` interpolation.
//!
//! Names come from the pipeline's `params`, the instance's matrix coordinates,
//! and `each` (the upstream instance of a `for_each` node). `${a.b}` reads
//! field `b` of a mapping value. `$${` writes a literal `${` (so shell
//! variables in braces are written `$${VAR}`; plain `$VAR` needs no escape).
//! A string that is exactly one `${name}` takes the value's type (so
//! `seed: "${seed}"` stays a number); inside a longer string the value is
//! written as text.

use serde_json::Value;
use std::collections::BTreeMap;

/// A value visible to `${}`: its JSON value and the text used inside strings.
#[derive(Debug, Clone)]
pub struct Var {
    /// Typed value.
    pub value: Value,
    /// Text form (as written in YAML for numbers).
    pub text: Option<String>,
}

/// The names visible to `${}` for one node instance.
pub type Scope = BTreeMap<String, Var>;

/// Why interpolation failed.
#[derive(Debug)]
pub enum InterpError {
    /// `${name}` names nothing.
    Undefined(String),
    /// `${` without a closing `}`.
    Unclosed,
    /// A list or mapping placed inside a longer string.
    NotText(String),
}

impl std::fmt::Display for InterpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterpError::Undefined(n) => write!(f, "undefined name `${{{n}}}`"),
            InterpError::Unclosed => write!(
                f,
                "`${{` without a closing `}}` (write `$${{` for a literal `${{`)"
            ),
            InterpError::NotText(n) => write!(
                f,
                "`${{{n}}}` is a list or mapping and cannot be placed inside a string"
            ),
        }
    }
}

/// True if `s` contains `${` (or `$${`) and so needs interpolation.
pub fn has_interp(s: &str) -> bool {
    s.contains("${")
}

/// Interpolates one string.
pub fn interpolate(s: &str, scope: &Scope) -> Result<Value, InterpError> {
    if !has_interp(s) {
        return Ok(Value::String(s.to_string()));
    }
    // Whole-string reference keeps the type.
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !inner.contains('}')
        && !inner.contains("${")
    {
        return lookup(inner.trim(), scope).map(|v| v.value);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(t) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = t;
        } else if let Some(t) = tail.strip_prefix("${") {
            let end = t.find('}').ok_or(InterpError::Unclosed)?;
            let name = t[..end].trim();
            let var = lookup(name, scope)?;
            out.push_str(&text_of(name, &var)?);
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(Value::String(out))
}

fn lookup(name: &str, scope: &Scope) -> Result<Var, InterpError> {
    if name.contains('[') {
        return lookup(&resolve_brackets(name, scope)?, scope);
    }
    let mut parts = name.split('.');
    let head = parts.next().unwrap_or_default();
    let mut var = scope
        .get(head)
        .cloned()
        .ok_or_else(|| InterpError::Undefined(name.to_string()))?;
    for field in parts {
        let next = var
            .value
            .get(field)
            .cloned()
            .ok_or_else(|| InterpError::Undefined(name.to_string()))?;
        var = Var {
            value: next,
            text: None,
        };
    }
    Ok(var)
}

/// Rewrites `a[k].b` as `a.<text of k>.b`.
fn resolve_brackets(name: &str, scope: &Scope) -> Result<String, InterpError> {
    let mut out = String::new();
    let mut rest = name;
    while let Some(open) = rest.find('[') {
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| InterpError::Undefined(name.to_string()))?;
        let key = rest[open + 1..close].trim();
        if key.is_empty() || key.contains('[') {
            return Err(InterpError::Undefined(name.to_string()));
        }
        let var = lookup(key, scope)?;
        let text = text_of(key, &var)?;
        if text.contains('.') || text.contains('[') {
            return Err(InterpError::Undefined(name.to_string()));
        }
        out.push_str(&rest[..open]);
        out.push('.');
        out.push_str(&text);
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn text_of(name: &str, var: &Var) -> Result<String, InterpError> {
    if let Some(t) = &var.text {
        return Ok(t.clone());
    }
    match &var.value {
        Value::String(s) => Ok(s.clone()),
        Value::Null => Ok("null".into()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(InterpError::NotText(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        let mut s = Scope::new();
        s.insert(
            "seed".into(),
            Var {
                value: json!(3),
                text: None,
            },
        );
        s.insert(
            "lr".into(),
            Var {
                value: json!(2e-5),
                text: Some("2e-5".into()),
            },
        );
        s.insert(
            "cfg".into(),
            Var {
                value: json!({"bs": 8}),
                text: None,
            },
        );
        s
    }

    #[test]
    fn whole_string_keeps_type() {
        assert_eq!(interpolate("${seed}", &scope()).unwrap(), json!(3));
        assert_eq!(interpolate("${cfg.bs}", &scope()).unwrap(), json!(8));
    }

    #[test]
    fn bracket_lookup_uses_another_name_as_the_key() {
        let mut s = scope();
        s.insert(
            "which".into(),
            Var {
                value: json!("bs"),
                text: None,
            },
        );
        assert_eq!(interpolate("${cfg[which]}", &s).unwrap(), json!(8));
        assert_eq!(interpolate("n=${cfg[which]}", &s).unwrap(), json!("n=8"));
        assert!(matches!(
            interpolate("${cfg[nope]}", &s),
            Err(InterpError::Undefined(_))
        ));
        assert!(interpolate("${cfg[which}", &s).is_err());
    }

    #[test]
    fn embedded_uses_text_and_escapes() {
        let v = interpolate("lr=${lr} $${HOME} $PATH ${ seed }", &scope()).unwrap();
        assert_eq!(v, json!("lr=2e-5 ${HOME} $PATH 3"));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            interpolate("${nope}", &scope()),
            Err(InterpError::Undefined(_))
        ));
        assert!(matches!(
            interpolate("a ${seed", &scope()),
            Err(InterpError::Unclosed)
        ));
        assert!(matches!(
            interpolate("a ${cfg}", &scope()),
            Err(InterpError::NotText(_))
        ));
    }
}
