//! The minijinja environment shared by report templates.
//!
//! Filters (all deterministic):
//! - `num(digits=0)`: a number with fixed decimals; null/missing renders as
//!   an en-dash `–`.
//! - `signed(digits=1)`: a delta with an explicit sign (`+2.0`, `−1.5`), or `–`.
//! - `tex`: escapes LaTeX specials (`% & _ # $ { } ~ ^ \`).
//! - `mark`: `✓` for true, `✗` for false, empty for null (pass/fail marks).
//!
//! Templates whose name ends in `.html.j2` / `.html` are auto-escaped for HTML.

use minijinja::value::Value as MjValue;
use minijinja::{AutoEscape, Environment, Error, ErrorKind};

/// The en-dash used for "no value".
pub const DASH: &str = "–";

fn as_f64(v: &MjValue) -> Option<f64> {
    if v.is_none() || v.is_undefined() {
        return None;
    }
    f64::try_from(v.clone()).ok()
}

fn num(v: MjValue, digits: Option<u32>) -> String {
    match as_f64(&v) {
        Some(x) if x.is_finite() => format!("{:.*}", digits.unwrap_or(0) as usize, x),
        _ => DASH.into(),
    }
}

fn signed(v: MjValue, digits: Option<u32>) -> String {
    match as_f64(&v) {
        Some(x) if x.is_finite() => {
            let s = format!("{:.*}", digits.unwrap_or(1) as usize, x.abs());
            if s.chars().all(|c| c == '0' || c == '.') {
                s
            } else if x < 0.0 {
                format!("−{s}")
            } else {
                format!("+{s}")
            }
        }
        _ => DASH.into(),
    }
}

fn tex(v: String) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '%' | '&' | '_' | '#' | '$' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            c => out.push(c),
        }
    }
    out
}

fn mark(v: MjValue) -> String {
    if v.is_none() || v.is_undefined() {
        String::new()
    } else if v.is_true() {
        "✓".into()
    } else {
        "✗".into()
    }
}

/// Renders `source` (named `name`, which decides auto-escaping) with `ctx`.
pub fn render(name: &str, source: &str, ctx: &serde_json::Value) -> Result<String, String> {
    let mut env = Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|n| {
        if n.ends_with(".html.j2") || n.ends_with(".html") {
            AutoEscape::Html
        } else {
            AutoEscape::None
        }
    });
    env.set_keep_trailing_newline(true);
    env.add_filter("num", num);
    env.add_filter("signed", signed);
    env.add_filter("tex", tex);
    env.add_filter("mark", mark);
    env.add_template(name, source).map_err(describe)?;
    let tmpl = env.get_template(name).map_err(describe)?;
    tmpl.render(MjValue::from_serialize(ctx)).map_err(describe)
}

fn describe(e: Error) -> String {
    let mut msg = match e.kind() {
        ErrorKind::UndefinedError => format!("template uses an undefined value: {e}"),
        _ => e.to_string(),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters() {
        let out = render(
            "t.md.j2",
            "{{ a|num }} {{ b|num(1) }} {{ n|num }} {{ d|signed }} {{ e|signed }} {{ s|tex }} {{ p|mark }}{{ q|mark }}{{ n|mark }}",
            &json!({"a": 17, "b": 2.25, "n": null, "d": -1.25, "e": 2, "s": "50%_x", "p": true, "q": false}),
        )
        .unwrap();
        assert_eq!(out, "17 2.2 – −1.2 +2.0 50\\%\\_x ✓✗");
    }

    #[test]
    fn html_is_escaped_and_undefined_is_an_error() {
        assert_eq!(
            render("t.html.j2", "{{ s }}", &json!({"s": "<b>"})).unwrap(),
            "&lt;b&gt;"
        );
        assert!(
            render("t.md.j2", "{{ nope }}", &json!({}))
                .unwrap_err()
                .contains("undefined")
        );
    }
}
