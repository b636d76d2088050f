//! Checks shared by the report ops.

use crate::op::OutputDecl;
use serde_json::{Map, Value};

/// Validates the `export:` param against the op's outputs at compile time.
pub fn check_export(
    params: &Map<String, Value>,
    outputs: &[OutputDecl],
) -> Result<(), (String, String)> {
    let bad = |m: String| Err(("export".to_string(), m));
    let list: Vec<(String, String)> = match params.get("export") {
        None => return Ok(()),
        Some(Value::String(p)) => vec![("out".into(), p.clone())],
        Some(Value::Object(m)) => {
            let mut v = Vec::new();
            for (k, p) in m {
                match p.as_str() {
                    Some(p) => v.push((k.clone(), p.to_string())),
                    None => return bad(format!("export.{k} must be a path")),
                }
            }
            v
        }
        Some(_) => return bad("export must be a path or a mapping of output -> path".into()),
    };
    for (out, p) in list {
        if !outputs.iter().any(|o| o.name == out) {
            let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
            return bad(format!(
                "export.{out}: no such output (outputs: {})",
                names.join(", ")
            ));
        }
        let path = std::path::Path::new(&p);
        if p.is_empty()
            || path.is_absolute()
            || path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return bad(format!(
                "export `{p}` must be a relative path inside the project"
            ));
        }
    }
    Ok(())
}
