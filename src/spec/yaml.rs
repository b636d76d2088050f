//! A YAML loader that keeps the location of every value.
//!
//! Built on `yaml-rust2`'s event parser. Plain scalars are resolved with the
//! YAML 1.2 core schema (null, bool, int, float, else string); quoted scalars
//! are always strings. Duplicate mapping keys are an error (most YAML loaders
//! silently keep the last one, which hides typos in pipelines). Anchors and
//! aliases are supported by copying the anchored value.

use super::source::{FileId, Sources, Span, SpecError};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML value with its location.
#[derive(Debug, Clone)]
pub struct Yaml {
    /// The value.
    pub kind: Kind,
    /// Where it is.
    pub span: Span,
}

/// The shape of a [`Yaml`] value.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `null`, `~` or empty.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float; `text` is the literal as written (used to name matrix instances).
    Float(f64, String),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Yaml>),
    /// A mapping with string keys, in file order.
    Map(Vec<(Key, Yaml)>),
}

/// A mapping key with its location.
#[derive(Debug, Clone)]
pub struct Key {
    /// Key text.
    pub name: String,
    /// Where it is.
    pub span: Span,
}

impl Yaml {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(..) => "a number",
            Kind::Str(_) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The entries, if this is a mapping.
    pub fn as_map(&self) -> Option<&[(Key, Yaml)]> {
        match &self.kind {
            Kind::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Converts to JSON (floats that JSON cannot hold become strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f, text) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(text.clone())),
            Kind::Str(s) => Value::String(s.clone()),
            Kind::Seq(v) => Value::Array(v.iter().map(Yaml::to_json).collect()),
            Kind::Map(m) => Value::Object(
                m.iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The scalar as text (as written for floats), or `None` for collections.
    pub fn scalar_text(&self) -> Option<String> {
        Some(match &self.kind {
            Kind::Null => "null".into(),
            Kind::Bool(b) => b.to_string(),
            Kind::Int(i) => i.to_string(),
            Kind::Float(_, t) => t.clone(),
            Kind::Str(s) => s.clone(),
            Kind::Seq(_) | Kind::Map(_) => return None,
        })
    }
}

/// Parses one YAML document. An empty file is `Null`.
pub fn parse(sources: &Sources, file: FileId) -> Result<Yaml, SpecError> {
    let text = sources.file(file).text.clone();
    let mut builder = Builder {
        sources,
        file,
        stack: Vec::new(),
        anchors: Vec::new(),
        aliased: 0,
        root: None,
        error: None,
        docs: 0,
    };
    let mut parser = Parser::new_from_str(&text);
    if let Err(e) = parser.load(&mut builder, true) {
        let m = e.marker();
        let msg = e.to_string();
        let msg = msg.split(" at byte ").next().unwrap_or(&msg).to_string();
        return Err(sources.error(
            sources.span_at(file, m.line(), m.col(), 1),
            "",
            format!("YAML syntax error: {msg}"),
        ));
    }
    if let Some(e) = builder.error {
        return Err(e);
    }
    Ok(builder.root.unwrap_or(Yaml {
        kind: Kind::Null,
        span: sources.span_at(file, 1, 0, 0),
    }))
}

/// Most values that aliases may copy into one file: a guard against
/// exponential expansion ("billion laughs").
const MAX_ALIASED: usize = 100_000;

/// Number of values in `v`, counting itself.
fn size(v: &Yaml) -> usize {
    match &v.kind {
        Kind::Seq(items) => 1 + items.iter().map(size).sum::<usize>(),
        Kind::Map(m) => 1 + m.iter().map(|(_, x)| 1 + size(x)).sum::<usize>(),
        _ => 1,
    }
}

enum Frame {
    Seq(Span, usize, Vec<Yaml>),
    /// Start, anchor, entries, the key waiting for its value, and the key
    /// names seen (for the duplicate check without a quadratic scan).
    Map(
        Span,
        usize,
        Vec<(Key, Yaml)>,
        Option<Key>,
        std::collections::HashSet<String>,
    ),
}

struct Builder<'a> {
    sources: &'a Sources,
    file: FileId,
    stack: Vec<Frame>,
    /// Anchored values with their size in values.
    anchors: Vec<(usize, Yaml, usize)>,
    /// Values copied by aliases so far.
    aliased: usize,
    root: Option<Yaml>,
    error: Option<SpecError>,
    docs: usize,
}

impl Builder<'_> {
    fn push_value(&mut self, v: Yaml, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, v.clone(), size(&v)));
        }
        match self.stack.last_mut() {
            None => self.root = Some(v),
            Some(Frame::Seq(_, _, items)) => items.push(v),
            Some(Frame::Map(start, _, entries, pending, seen)) => match pending.take() {
                None => {
                    // The parser marks a block mapping at its first `:`; a
                    // mapping starts no later than its first key.
                    if entries.is_empty() && v.span.offset < start.offset {
                        *start = v.span;
                    }
                    let name = match &v.kind {
                        Kind::Str(s) => s.clone(),
                        _ => match v.scalar_text() {
                            Some(t) => t,
                            None => {
                                self.fail(v.span, "mapping keys must be plain strings");
                                return;
                            }
                        },
                    };
                    if !seen.insert(name.clone()) {
                        let span = v.span;
                        self.fail(span, &format!("duplicate key `{name}`"));
                        return;
                    }
                    *pending = Some(Key { name, span: v.span });
                }
                Some(k) => entries.push((k, v)),
            },
        }
    }

    fn fail(&mut self, span: Span, msg: &str) {
        if self.error.is_none() {
            self.error = Some(self.sources.error(span, "", msg));
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let span = |len| {
            self.sources
                .span_at(self.file, mark.line(), mark.col(), len)
        };
        match ev {
            Event::DocumentStart => {
                self.docs += 1;
                if self.docs > 1 {
                    let s = span(3);
                    self.fail(
                        s,
                        "a pipeline file holds one YAML document; found a second `---`",
                    );
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                let len = text.chars().count().max(1);
                let s = span(len);
                let forced_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let kind = if style != TScalarStyle::Plain || forced_str {
                    Kind::Str(text)
                } else {
                    resolve_plain(text)
                };
                self.push_value(Yaml { kind, span: s }, anchor);
            }
            Event::SequenceStart(anchor, _) => {
                let s = span(1);
                self.stack.push(Frame::Seq(s, anchor, Vec::new()));
            }
            Event::MappingStart(anchor, _) => {
                let s = span(1);
                self.stack
                    .push(Frame::Map(s, anchor, Vec::new(), None, Default::default()));
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq(s, anchor, items)) = self.stack.pop() {
                    self.push_value(
                        Yaml {
                            kind: Kind::Seq(items),
                            span: s,
                        },
                        anchor,
                    );
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map(s, anchor, entries, _, _)) = self.stack.pop() {
                    self.push_value(
                        Yaml {
                            kind: Kind::Map(entries),
                            span: s,
                        },
                        anchor,
                    );
                }
            }
            Event::Alias(id) => {
                let found = self.anchors.iter().rev().find(|(a, _, _)| *a == id);
                match found.map(|(_, v, n)| (v, *n)) {
                    Some((_, n)) if self.aliased + n > MAX_ALIASED => {
                        let s = span(1);
                        self.fail(
                            s,
                            &format!("aliases expand to more than {MAX_ALIASED} values"),
                        );
                    }
                    Some((v, n)) => {
                        let v = v.clone();
                        self.aliased += n;
                        self.push_value(v, 0);
                    }
                    None => {
                        let s = span(1);
                        self.fail(s, "alias to an unknown anchor");
                    }
                }
            }
            _ => {}
        }
    }
}

/// Resolves a plain scalar with the YAML 1.2 core schema.
fn resolve_plain(text: String) -> Kind {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    let body = text.strip_prefix(['-', '+']).unwrap_or(&text);
    if !body.is_empty()
        && body.bytes().all(|b| b.is_ascii_digit())
        && let Ok(i) = text.parse::<i64>()
    {
        return Kind::Int(i);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Kind::Int(i);
    }
    if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Kind::Int(i);
    }
    if is_float_literal(body)
        && let Ok(f) = text.parse::<f64>()
    {
        return Kind::Float(f, text);
    }
    Kind::Str(text)
}

fn is_float_literal(s: &str) -> bool {
    // [0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?  with at least one digit in the mantissa
    let b = s.as_bytes();
    let mut i = 0;
    let mut digits = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
        digits += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
            digits += 1;
        }
    }
    if digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn load(text: &str) -> Result<Yaml, SpecError> {
        let mut s = Sources::default();
        let id = s.add(Path::new("t.yaml"), text.to_string());
        parse(&s, id)
    }

    #[test]
    fn resolves_scalars_and_spans() {
        let y = load("a: 1\nb: 2e-5\nc: '3'\nd: yes\ne: ~\n").unwrap();
        let m = y.as_map().unwrap();
        assert!(matches!(m[0].1.kind, Kind::Int(1)));
        assert!(matches!(&m[1].1.kind, Kind::Float(f, t) if *f == 2e-5 && t == "2e-5"));
        assert!(matches!(&m[2].1.kind, Kind::Str(s) if s == "3"));
        assert!(matches!(&m[3].1.kind, Kind::Str(s) if s == "yes"));
        assert!(matches!(m[4].1.kind, Kind::Null));
        assert_eq!((m[1].1.span.line, m[1].1.span.col), (2, 4));
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = load("a: 1\na: 2\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("duplicate key `a`"));
    }

    #[test]
    fn syntax_errors_are_located() {
        let e = load("a: [1\n").unwrap_err();
        assert!(e.message.contains("YAML syntax error"), "{}", e.message);
        assert_eq!(e.line, 2);
    }

    #[test]
    fn alias_expansion_is_bounded() {
        let ok = load("a: &a [1, 2]\nb: [*a, *a]\n").unwrap();
        assert_eq!(
            ok.as_map().unwrap()[1].1.to_json(),
            serde_json::json!([[1, 2], [1, 2]])
        );
        let mut bomb = String::from("x0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n");
        for i in 1..12 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("x{i}: &a{i} [{refs}]\n"));
        }
        let e = load(&bomb).unwrap_err();
        assert!(
            e.message.contains("aliases expand to more than"),
            "{}",
            e.message
        );
    }
}
