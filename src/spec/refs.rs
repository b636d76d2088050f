//! Reference syntax: `node`, `node[k=v,...]`, `node[*]`, `node[k=v,*]`,
//! an optional `.output` suffix, and `file:PATH`.

/// A parsed reference to upstream data.
#[derive(Debug, Clone, PartialEq)]
pub enum Ref {
    /// `file:PATH`, relative to the project root (or absolute).
    File(String),
    /// A node output.
    Node(NodeRef),
}

/// A reference to one or more instances of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRef {
    /// Node id.
    pub node: String,
    /// `k=v` filters on coordinates (all must match).
    pub filters: Vec<(String, String)>,
    /// `*` present: all matching instances, as a list.
    pub all: bool,
    /// Explicit `[...]` present (a bare `node` with several instances is an error).
    pub selector: bool,
    /// Output name (`out` when not given).
    pub output: String,
}

/// The default output name.
pub const DEFAULT_OUTPUT: &str = "out";

/// True for a valid node id, matrix key, param or output name.
pub fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// True for text allowed as a coordinate value (it names directories and instances).
pub fn is_coord_text(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
}

/// Parses a reference string.
pub fn parse(s: &str) -> Result<Ref, String> {
    let s = s.trim();
    if let Some(path) = s.strip_prefix("file:") {
        if path.is_empty() {
            return Err("`file:` needs a path".into());
        }
        return Ok(Ref::File(path.to_string()));
    }
    let (head, selector, tail) = match s.find('[') {
        Some(open) => {
            let close = s
                .rfind(']')
                .filter(|c| *c > open)
                .ok_or_else(|| format!("`{s}`: `[` without a closing `]`"))?;
            (&s[..open], Some(&s[open + 1..close]), &s[close + 1..])
        }
        None => match s.find('.') {
            Some(dot) => (&s[..dot], None, &s[dot..]),
            None => (s, None, ""),
        },
    };
    if !is_ident(head) {
        return Err(format!(
            "`{s}` is not a reference: expected `node`, `node[k=v]`, `node[*]`, `node.output` or `file:PATH`"
        ));
    }
    let output = if tail.is_empty() {
        DEFAULT_OUTPUT.to_string()
    } else {
        let out = tail
            .strip_prefix('.')
            .ok_or_else(|| format!("`{s}`: unexpected `{tail}` after the selector"))?;
        if !is_ident(out) {
            return Err(format!("`{s}`: `{out}` is not a valid output name"));
        }
        out.to_string()
    };
    let mut filters = Vec::new();
    let mut all = false;
    if let Some(sel) = selector {
        for part in sel.split(',').map(str::trim) {
            if part == "*" {
                all = true;
            } else if let Some((k, v)) = part.split_once('=') {
                let (k, v) = (k.trim(), v.trim());
                if !is_ident(k) || v.is_empty() {
                    return Err(format!("`{s}`: bad selector `{part}`"));
                }
                filters.push((k.to_string(), v.to_string()));
            } else {
                return Err(format!(
                    "`{s}`: bad selector `{part}` (expected `key=value` or `*`)"
                ));
            }
        }
    }
    Ok(Ref::Node(NodeRef {
        node: head.to_string(),
        filters,
        all,
        selector: selector.is_some(),
        output,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        assert_eq!(
            parse("file:data/x.txt").unwrap(),
            Ref::File("data/x.txt".into())
        );
        let Ref::Node(r) = parse("base[size=s, lr=2e-5].ckpt").unwrap() else {
            panic!()
        };
        assert_eq!(r.node, "base");
        assert_eq!(
            r.filters,
            vec![("size".into(), "s".into()), ("lr".into(), "2e-5".into())]
        );
        assert_eq!(r.output, "ckpt");
        let Ref::Node(r) = parse("nq[*]").unwrap() else {
            panic!()
        };
        assert!(r.all && r.selector && r.output == "out");
        let Ref::Node(r) = parse("words.count").unwrap() else {
            panic!()
        };
        assert_eq!((r.node.as_str(), r.output.as_str()), ("words", "count"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "", "1abc", "a[", "a[k]", "a[=v]", "a].x", "a[k=v]x", "file:", "a.b.c",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
