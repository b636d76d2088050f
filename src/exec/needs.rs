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
