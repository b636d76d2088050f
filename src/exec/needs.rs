//! What a node needs from the machine besides its inputs: today, the chat
//! API for ops that call it (`teacher.chat`, `data.nq_synthetic` in teacher
//! mode, `eval.preference` with a judge model). Where none is configured, a
//! node that needs one and is not cached is *blocked* (with this reason)
//! in `status`, `verify`, `report` and `metrics` alike, as a node whose
//! `file:` input is missing is; so is everything downstream of it.
//!
//! `repro run` still tries such a node: the request store (`cache/api/`)
//! may hold every request it makes (a clone replaying recorded requests);
//! when it does not, the node fails naming the same variables.
//! `REPRO_API_OFFLINE=1` counts as configured (store only, on purpose).

use crate::api::ApiConfig;
use crate::graph::Dag;
use std::path::Path;

/// The reason a node that calls the chat API cannot run here, or `None`
/// when an API is configured in `lookup` (an environment).
pub fn api_unmet(lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let c = ApiConfig::from_env(lookup, Path::new("."));
    if c.base_url.is_some() || c.forced_offline {
        return None;
    }
    Some(
        "needs a credential: the chat API (set REPRO_API_BASE and REPRO_API_KEY, or \
         OPENAI_BASE_URL and OPENAI_API_KEY)"
            .into(),
    )
}

/// Per node: why it cannot run on this machine for want of a credential,
/// its own or an upstream node's (`None`: nothing is missing).
pub fn unmet(dag: &Dag, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Option<String>> {
    let mut out: Vec<Option<String>> = vec![None; dag.nodes.len()];
    let needs = |n: &crate::graph::DagNode| n.op.calls_api() && n.op.needs_api(&n.inst.params);
    if !dag.nodes.iter().any(needs) {
        return out;
    }
    let Some(api) = api_unmet(lookup) else {
        return out;
    };
    for &i in &dag.order {
        let n = &dag.nodes[i];
        if needs(n) {
            out[i] = Some(api.clone());
        } else if let Some(&u) = n.upstream.iter().find(|&&u| out[u].is_some()) {
            let (up, why) = (dag.nodes[u].id(), out[u].as_deref().unwrap_or(""));
            // Name the node that needs it, once.
            let why = why.split_once(" (upstream ").map_or(why, |(w, _)| w);
            out[i] = Some(format!("{why} (upstream {up})"));
        }
    }
    out
}

/// [`unmet`] in this process's environment.
pub fn unmet_here(dag: &Dag) -> Vec<Option<String>> {
    unmet(dag, &|k| std::env::var(k).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag(yaml: &str) -> Dag {
        let root = tempfile::tempdir().expect("tmp");
        let p = crate::spec::load_str(Path::new("p.yaml"), yaml.to_string(), &[]).expect("spec");
        crate::graph::compile(root.path(), p).expect("compile")
    }

    const YAML: &str = "pipeline: p
nodes:
  prompts:
    op: shell
    params: {cmd: 'echo > out/p', outs: p}
  teacher:
    op: teacher.chat
    inputs: {prompts: prompts}
    params: {model: m}
  after:
    op: shell
    inputs: {r: teacher}
    params: {cmd: 'cp in/r out/r', outs: r}
  surrogate:
    op: data.nq_synthetic
    inputs: {pool: prompts}
    params: {mode: surrogate}
";

    #[test]
    fn api_nodes_and_their_downstream_are_unmet_without_an_api() {
        let d = dag(YAML);
        let none = |_: &str| None;
        let got = unmet(&d, &none);
        let of = |id: &str| got[d.index_of(id).expect("node")].clone();
        assert_eq!(of("prompts"), None);
        assert!(of("teacher").is_some_and(|r| r.starts_with("needs a credential: the chat API")));
        assert!(of("after").is_some_and(|r| r.ends_with("(upstream teacher)")));
        assert_eq!(of("surrogate"), None, "surrogate mode calls no API");
        // A base URL, or store-only replay, is enough.
        let base = |k: &str| (k == "REPRO_API_BASE").then(|| "http://localhost:1".to_string());
        assert!(unmet(&d, &base).iter().all(Option::is_none));
        let offline = |k: &str| (k == "REPRO_API_OFFLINE").then(|| "1".to_string());
        assert!(unmet(&d, &offline).iter().all(Option::is_none));
        // An empty value counts as unset.
        let empty = |_: &str| Some(String::new());
        assert!(unmet(&d, &empty)[d.index_of("teacher").expect("t")].is_some());
    }
}
