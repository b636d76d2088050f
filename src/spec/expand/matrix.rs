//! `matrix`, as GitHub Actions has it: the cartesian product of the lists,
//! minus every combination matching an `exclude:` entry; then each
//! `include:` entry extends every combination it does not contradict with
//! its extra keys, or, when it extends none, is added as a combination of
//! its own.
//!
//! A mapping as a matrix value is named by its `name:` field, or else by the
//! first 8 hex digits of the blake3 of its canonical JSON.

use super::{Combo, Coord, MAX_INSTANCES};
use crate::spec::refs;
use crate::spec::source::Sources;
use crate::spec::yaml::{Key, Kind, Yaml};
use crate::spec::{NodeSpec, Span, SpecError};
use std::collections::HashSet;

/// Coordinates of one instance, in naming order.
type Coords = Vec<(String, Coord)>;

/// One `exclude:`/`include:` entry: key, value, where the key is written.
type MatrixEntry = Vec<(String, Coord, Span)>;

/// A matrix as written: its axes (key and values, in the order written),
/// and its `exclude:` and `include:` lists.
struct Parsed<'y> {
    axes: Vec<(String, Vec<Coord>)>,
    exclude: Option<&'y Yaml>,
    include: Option<&'y Yaml>,
}

/// The combinations of node `n`'s matrix `m`, in order: the product of the
/// axes (last axis fastest), less the excluded, then the included.
pub(super) fn combos(src: &Sources, n: &NodeSpec, m: &Yaml) -> Result<Vec<Coords>, SpecError> {
    let at = format!("nodes.{}.matrix", n.id);
    let parsed = parse(src, m, &at)?;
    let product = (parsed.axes.iter()).try_fold(1usize, |n, (_, vals)| n.checked_mul(vals.len()));
    if product.is_none_or(|n| n > MAX_INSTANCES) {
        return Err(src.error(
            m.span,
            &at,
            format!("the matrix has more than {MAX_INSTANCES} combinations"),
        ));
    }
    let mut combos = cartesian(&parsed.axes);
    if let Some(ex) = parsed.exclude {
        exclude(src, &at, &parsed.axes, &mut combos, ex)?;
    }
    if let Some(inc) = parsed.include {
        include(src, &at, &parsed.axes, &mut combos, inc)?;
    }
    if combos.is_empty() {
        return Err(src.error(m.span, &at, "the matrix has no combinations left"));
    }
    Ok(combos)
}

/// Reads a matrix's keys: `exclude`, `include`, and axes.
fn parse<'y>(src: &Sources, m: &'y Yaml, at: &str) -> Result<Parsed<'y>, SpecError> {
    let entries: &[(Key, Yaml)] = crate::spec::map(src, m, at)?;
    let mut parsed = Parsed {
        axes: Vec::new(),
        exclude: None,
        include: None,
    };
    for (k, v) in entries {
        match k.name.as_str() {
            "exclude" => parsed.exclude = Some(v),
            "include" => parsed.include = Some(v),
            name => parsed.axes.push((name.to_string(), axis(src, at, k, v)?)),
        }
    }
    Ok(parsed)
}

/// An axis's values: a non-empty list of values with distinct names.
fn axis(src: &Sources, at: &str, k: &Key, v: &Yaml) -> Result<Vec<Coord>, SpecError> {
    let key = format!("{at}.{}", k.name);
    check_key(src, k, &key)?;
    let Kind::Seq(items) = &v.kind else {
        return Err(src.error(
            v.span,
            &key,
            format!("expected a list of values, found {}", v.type_name()),
        ));
    };
    if items.is_empty() {
        return Err(src.error(v.span, &key, "empty list: the node would have no instances"));
    }
    let mut seen_vals = HashSet::new();
    let mut vals: Vec<Coord> = Vec::new();
    for it in items {
        let c = coord_of(src, it, &key)?;
        if !seen_vals.insert(c.text.clone()) {
            let msg = format!("value `{}` is listed twice", c.text);
            return Err(src.error(it.span, &key, msg));
        }
        vals.push(c);
    }
    Ok(vals)
}

/// A matrix key (an axis, or a key of an `exclude:`/`include:` entry) is an
/// identifier other than `each` and `from`. `key` is where it is written.
fn check_key(src: &Sources, k: &Key, key: &str) -> Result<(), SpecError> {
    if refs::is_ident(&k.name) && k.name != "each" && k.name != "from" {
        return Ok(());
    }
    Err(src.error(
        k.span,
        key,
        format!(
            "`{}` cannot be a matrix key (identifiers only; `each` and `from` are reserved)",
            k.name
        ),
    ))
}

/// A matrix value as a coordinate: a scalar, or a mapping named by its
/// `name:` or by the hash of its canonical JSON.
fn coord_of(src: &Sources, v: &Yaml, key: &str) -> Result<Coord, SpecError> {
    let value = v.to_json();
    let text = match &v.kind {
        Kind::Map(m) => match m
            .iter()
            .find(|(k, _)| k.name == "name")
            .and_then(|(_, n)| n.scalar_text())
        {
            Some(name) => name,
            None => {
                let canon = crate::cache::hash::canonical_json(&value);
                blake3::hash(canon.as_bytes()).to_hex()[..8].to_string()
            }
        },
        Kind::Seq(_) => {
            return Err(src.error(
                v.span,
                key,
                "a matrix value is a scalar or a mapping, not a list",
            ));
        }
        _ => v.scalar_text().unwrap_or_default(),
    };
    if !refs::is_coord_text(&text) {
        return Err(src.error(v.span, key, format!(
            "matrix value `{text}` cannot name an instance: use letters, digits, `_`, `-`, `.`, `+` (or a mapping with a `name:`)"
        )));
    }
    Ok(Coord { text, value })
}

/// The cartesian product of the axes, the last axis varying fastest; one
/// empty combination when there are no axes.
fn cartesian(axes: &[(String, Vec<Coord>)]) -> Vec<Coords> {
    let mut combos: Vec<Coords> = vec![Vec::new()];
    for (k, vals) in axes {
        let mut next = Vec::with_capacity(combos.len() * vals.len());
        for c in &combos {
            for v in vals {
                let mut c2 = c.clone();
                c2.push((k.clone(), v.clone()));
                next.push(c2);
            }
        }
        combos = next;
    }
    combos
}

/// The entries of `exclude:` or `include:` (`which`): a list of non-empty
/// mappings from matrix keys to values.
fn entries(src: &Sources, at: &str, v: &Yaml, which: &str) -> Result<Vec<MatrixEntry>, SpecError> {
    let key = format!("{at}.{which}");
    let Kind::Seq(items) = &v.kind else {
        return Err(src.error(v.span, &key, "expected a list of mappings"));
    };
    items.iter().map(|it| entry(src, &key, it)).collect()
}

/// One `exclude:`/`include:` entry; `key` is where its list is written.
fn entry(src: &Sources, key: &str, it: &Yaml) -> Result<MatrixEntry, SpecError> {
    let m = crate::spec::map(src, it, key)?;
    if m.is_empty() {
        return Err(src.error(it.span, key, "an empty entry matches everything"));
    }
    m.iter()
        .map(|(k, v)| {
            let at = format!("{key}.{}", k.name);
            check_key(src, k, &at)?;
            Ok((k.name.clone(), coord_of(src, v, &at)?, k.span))
        })
        .collect()
}

/// Drops every combination that matches an `exclude:` entry in all its
/// keys; each key must be an axis.
fn exclude(
    src: &Sources,
    at: &str,
    axes: &[(String, Vec<Coord>)],
    combos: &mut Vec<Coords>,
    ex: &Yaml,
) -> Result<(), SpecError> {
    for e in entries(src, at, ex, "exclude")? {
        for (k, _, span) in &e {
            if !axes.iter().any(|(a, _)| a == k) {
                return Err(src.error(
                    *span,
                    &format!("{at}.exclude.{k}"),
                    format!("`{k}` is not a matrix key"),
                ));
            }
        }
        combos.retain(|c| {
            !e.iter()
                .all(|(k, v, _)| c.iter().any(|(ck, cv)| ck == k && cv.text == v.text))
        });
    }
    Ok(())
}

/// Applies the `include:` entries in order: each extends every combination
/// it fits, or else is added as a combination of its own. With no axes,
/// the empty combination is dropped.
fn include(
    src: &Sources,
    at: &str,
    axes: &[(String, Vec<Coord>)],
    combos: &mut Vec<Coords>,
    inc: &Yaml,
) -> Result<(), SpecError> {
    let originals: Vec<String> = axes.iter().map(|(k, _)| k.clone()).collect();
    for e in entries(src, at, inc, "include")? {
        let extended = !axes.is_empty() && extend(combos, &originals, &e);
        if !extended {
            combos.push(e.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect());
        }
    }
    if axes.is_empty() {
        combos.retain(|c| !c.is_empty());
    }
    Ok(())
}

/// Extends every combination that `e` fits (agrees with on every axis it
/// names) with `e`'s other keys, overwriting what an earlier `include:`
/// set. Whether it extended any.
fn extend(combos: &mut [Coords], originals: &[String], e: &MatrixEntry) -> bool {
    let mut extended = false;
    for c in combos.iter_mut() {
        let fits = e.iter().all(|(k, v, _)| {
            !originals.contains(k) || c.iter().any(|(ck, cv)| ck == k && cv.text == v.text)
        });
        if !fits {
            continue;
        }
        for (k, v, _) in e.iter().filter(|(k, ..)| !originals.contains(k)) {
            match c.iter_mut().find(|(ck, _)| ck == k) {
                Some(slot) => slot.1 = v.clone(),
                None => c.push((k.clone(), v.clone())),
            }
        }
        extended = true;
    }
    extended
}

/// `for_each` times `matrix`: every combination of one with every one of
/// the other. A matrix key may not repeat a coordinate inherited through
/// `for_each`.
pub(super) fn cross(
    src: &Sources,
    node: &NodeSpec,
    m: &Yaml,
    combos: &[Combo],
    mat: &[Coords],
) -> Result<Vec<Combo>, SpecError> {
    if combos.len().saturating_mul(mat.len()) > MAX_INSTANCES {
        return Err(src.error(
            m.span,
            &format!("nodes.{}.matrix", node.id),
            format!("`for_each` times `matrix` gives more than {MAX_INSTANCES} instances"),
        ));
    }
    let mut out = Vec::with_capacity(combos.len() * mat.len());
    for c in combos {
        for mc in mat {
            let mut merged = c.coords.clone();
            for (k, v) in mc {
                if merged.iter().any(|(ek, _)| ek == k) {
                    return Err(src.error(
                        m.span,
                        &format!("nodes.{}.matrix.{k}", node.id),
                        format!(
                            "matrix key `{k}` is also a coordinate inherited through `for_each`"
                        ),
                    ));
                }
                merged.push((k.clone(), v.clone()));
            }
            out.push(Combo {
                coords: merged,
                each: c.each.clone(),
            });
        }
    }
    Ok(out)
}
