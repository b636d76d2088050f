//! Every op's schema and version, against a committed snapshot
//! (`tests/golden/op_schemas.txt`), and the registry's order.
//!
//! A key holds params less those equal to their default (`graph/key.rs`),
//! so a default changed in code without an op-version bump would leave
//! stale results cached under the old keys. This test fails when a
//! param's default, type or semantic flag changed while the op's version
//! stayed the same, naming the op to bump; once bumped, refresh the
//! snapshot with `REPRO_UPDATE_SNAPSHOT=1 cargo test --test op_schemas`.

use repro::op::Op;
use repro::ops::REGISTRY;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn snapshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/op_schemas.txt")
}

/// One line per param: `op version param type default semantic`.
fn schema_lines(op: &dyn Op) -> Vec<String> {
    op.params()
        .iter()
        .map(|p| {
            let default = match p.default.value() {
                Some(v) => v.to_string(),
                None if p.required_param() => "required".to_string(),
                None => "absent".to_string(),
            };
            let key = if p.semantic { "key" } else { "not-key" };
            let gpu = p
                .gpu_default
                .map(|g| format!(" gpu:{g}"))
                .unwrap_or_default();
            format!(
                "{} {} {} {:?} {default} {key}{gpu}",
                op.name(),
                op.version(),
                p.name,
                p.ty
            )
        })
        .collect()
}

fn current() -> String {
    let mut out = String::new();
    for op in REGISTRY {
        for line in schema_lines(*op) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// Op name -> (version, its lines without the version).
fn by_op(text: &str) -> BTreeMap<String, (String, Vec<String>)> {
    let mut m: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        let (Some(op), Some(version), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let entry = m.entry(op.to_string()).or_default();
        entry.0 = version.to_string();
        entry.1.push(rest.to_string());
    }
    m
}

#[test]
fn a_schema_change_comes_with_a_version_bump() {
    let now = current();
    if std::env::var_os("REPRO_UPDATE_SNAPSHOT").is_some() {
        std::fs::write(snapshot_path(), &now).expect("write snapshot");
        return;
    }
    let committed = std::fs::read_to_string(snapshot_path()).expect("read snapshot");
    let (old, new) = (by_op(&committed), by_op(&now));
    let mut problems = Vec::new();
    for (op, (version, lines)) in &new {
        match old.get(op) {
            Some((v, l)) if v == version && l != lines => problems.push(format!(
                "`{op}`: a param's default, type or key flag changed but its version is still {version}: bump `Op::version`"
            )),
            Some((v, l)) if v != version || l != lines => problems.push(format!(
                "`{op}`: version or schema changed; refresh the snapshot"
            )),
            Some(_) => {}
            None => problems.push(format!("`{op}`: new op; refresh the snapshot")),
        }
    }
    assert!(
        problems.is_empty(),
        "{}\n(refresh: REPRO_UPDATE_SNAPSHOT=1 cargo test --test op_schemas)",
        problems.join("\n")
    );
}

#[test]
fn the_registry_is_sorted_by_name_without_repeats() {
    let names: Vec<&str> = REGISTRY.iter().map(|op| op.name()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(
        names, sorted,
        "REGISTRY must be sorted by op name, each once"
    );
}

#[test]
fn every_declared_default_has_its_params_type() {
    for op in REGISTRY {
        for p in op.params() {
            if let Some(v) = p.default.value() {
                let errors = repro::op::schema::validate(
                    std::slice::from_ref(p),
                    &[(p.name.to_string(), v)].into_iter().collect(),
                );
                assert!(errors.is_ok(), "{}.{}: {errors:?}", op.name(), p.name);
            }
        }
    }
}
