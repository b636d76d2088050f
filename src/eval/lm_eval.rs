//! lm-evaluation-harness results files, both ways: reading one task of an
//! lm-eval `results_<date>.json` ([`ingest`], behind the `ingest.lm_eval`
//! op) and writing repro's evaluation metrics in that shape ([`export`],
//! behind `repro metrics --lm-eval DIR`), so leaderboard tooling that reads
//! lm-eval output reads repro's numbers too.
//!
//! The shape comes from lm-eval's own code (EleutherAI/lm-evaluation-harness,
//! v0.4.13, commit 4e7e0d4):
//!
//! - `lm_eval/evaluator_utils.py`, `_process_results` and
//!   `EvalAcc._to_eval_results`: `results[task]` = `{"name", "alias",
//!   "sample_len", "<metric>,<filter>": value, "<metric>_stderr,<filter>":
//!   value or "N/A"}` (`_compute_task_aggregations`), and the top-level
//!   `group_subtasks`, `configs` (the task's `dump_config()`), `versions`,
//!   `n-shot`, `higher_is_better`, `n-samples` (`{"original",
//!   "effective"}`);
//! - `lm_eval/evaluator.py`, `simple_evaluate`: `config` (`model`,
//!   `model_args`, `batch_size`, `batch_sizes`, `device`, `use_cache`,
//!   `limit`, `bootstrap_iters`, `gen_kwargs`, the four seeds), `git_hash`,
//!   `date` (a UNIX timestamp);
//! - `lm_eval/loggers/evaluation_tracker.py`, `save_results_aggregated`:
//!   `task_hashes` plus the `GeneralConfigTracker` fields (`model_source`,
//!   `model_name`, `model_name_sanitized`, `system_instruction`,
//!   `chat_template`, ..., `total_evaluation_time_seconds`), written to
//!   `<output_path>/<model_name_sanitized>/results_<isoformat with - for :>.json`.
//!
//! `tests/data/lm_eval/results_dummy_0.4.13.json` is a file lm-eval 0.4.13
//! wrote (`lm_eval --model dummy` on the two local tasks beside it).

use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// One task of an lm-eval results file, flattened for a repro record.
#[derive(Debug, Clone, PartialEq)]
pub struct Ingested {
    /// The task name.
    pub task: String,
    /// The filter the metrics were read under (`none`, `remove_whitespace`, ...).
    pub filter: String,
    /// `metric` and `metric_stderr` (when lm-eval computed one) -> value,
    /// plus `n` (effective samples) and `n_shot` when the file has them.
    pub metrics: Map<String, Value>,
    /// What the file says about the run: model, lm-eval version, date,
    /// git hash, the run's `config` and the task's config.
    pub provenance: Value,
}

/// Reads one task of an lm-eval results file. `task` may be omitted when the
/// file holds exactly one; `filter` may be omitted when the task has a
/// `none` filter or exactly one filter.
pub fn ingest(doc: &Value, task: Option<&str>, filter: Option<&str>) -> Result<Ingested, String> {
    let results = doc
        .get("results")
        .and_then(Value::as_object)
        .ok_or("not an lm-eval results file: no `results` object")?;
    let names: Vec<&String> = results.keys().collect();
    let task = match task {
        Some(t) => t.to_string(),
        None if names.len() == 1 => names[0].clone(),
        None => {
            return Err(format!(
                "the file holds {} tasks; set param `task` to one of: {}",
                names.len(),
                join(&names)
            ));
        }
    };
    let entry = results
        .get(&task)
        .and_then(Value::as_object)
        .ok_or_else(|| format!("no task `{task}` in the file (it has: {})", join(&names)))?;
    // `metric,filter` keys; the rest (`alias`, `name`, `sample_len`) are not metrics.
    let mut by_filter: BTreeMap<&str, Vec<(&str, &Value)>> = BTreeMap::new();
    for (k, v) in entry {
        if let Some((metric, f)) = k.split_once(',') {
            by_filter.entry(f).or_default().push((metric, v));
        }
    }
    let filters: Vec<&str> = by_filter.keys().copied().collect();
    let filter = match filter {
        Some(f) => f.to_string(),
        None if by_filter.contains_key("none") => "none".into(),
        None if filters.len() == 1 => filters[0].to_string(),
        None => {
            return Err(format!(
                "task `{task}` has metrics under {} filters; set param `filter` to one of: {}",
                filters.len(),
                filters.join(", ")
            ));
        }
    };
    let pairs = by_filter.get(filter.as_str()).ok_or_else(|| {
        format!(
            "task `{task}` has no metrics under filter `{filter}` (filters: {})",
            filters.join(", ")
        )
    })?;
    let mut metrics = Map::new();
    for (metric, v) in pairs {
        // lm-eval writes "N/A" for a stderr it did not compute: no value.
        if v.is_number() {
            metrics.insert(metric.to_string(), (*v).clone());
        }
    }
    if metrics.is_empty() {
        return Err(format!(
            "task `{task}` has no numeric metric under filter `{filter}`"
        ));
    }
    if let Some(n) = doc.pointer(&format!("/n-samples/{}/effective", escape(&task))) {
        metrics.insert("n".into(), n.clone());
    }
    if let Some(n) = doc.get("n-shot").and_then(|s| s.get(&task)) {
        metrics.insert("n_shot".into(), n.clone());
    }
    let config = doc.get("config").cloned().unwrap_or(Value::Null);
    let provenance = json!({
        "source": "lm-evaluation-harness",
        "model": config.get("model").cloned().unwrap_or(Value::Null),
        "model_name": doc.get("model_name").cloned().unwrap_or(Value::Null),
        "model_args": config.get("model_args").cloned().unwrap_or(Value::Null),
        "lm_eval_version": doc.get("lm_eval_version").cloned().unwrap_or(Value::Null),
        "git_hash": doc.get("git_hash").cloned().unwrap_or(Value::Null),
        "date": doc.get("date").cloned().unwrap_or(Value::Null),
        "version": doc.get("versions").and_then(|v| v.get(&task)).cloned().unwrap_or(Value::Null),
        "higher_is_better": doc.get("higher_is_better").and_then(|v| v.get(&task)).cloned().unwrap_or(Value::Null),
        "config": config,
        "task_config": doc.get("configs").and_then(|c| c.get(&task)).cloned().unwrap_or(Value::Null),
    });
    Ok(Ingested {
        task,
        filter,
        metrics,
        provenance,
    })
}

fn join(names: &[&String]) -> String {
    names
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON pointer token (`~` and `/` escaped).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// One evaluation result to export: a task of one model.
#[derive(Debug, Clone)]
pub struct Task {
    /// Task name (repro: the node name, e.g. `qa`).
    pub name: String,
    /// The op that computed it and its version.
    pub op: String,
    /// Op version (lm-eval's task `version`).
    pub version: u32,
    /// Few-shot examples (`shots` param), 0 when none.
    pub n_shot: u64,
    /// The record's metrics.
    pub metrics: Map<String, Value>,
    /// Provenance for the task's `metadata`: node id, key, params, inputs.
    pub metadata: Value,
    /// Where the evaluation data came from (lm-eval's `dataset_path`).
    pub dataset: String,
}

/// One "model" of an export: every task computed for the same coordinates.
#[derive(Debug, Clone)]
pub struct Model {
    /// `model_name` (repro: `<pipeline>/<coordinates>`).
    pub name: String,
    /// `config.model_args` (repro: the coordinates, `size=l,data=task`).
    pub args: String,
    /// The device the records ran on.
    pub device: String,
    /// repro's git revision of the newest record, when known.
    pub git_hash: Option<String>,
    /// UNIX time of the earliest record's start.
    pub date: f64,
    /// Total seconds of the records.
    pub seconds: f64,
    /// The tasks.
    pub tasks: Vec<Task>,
}

/// lm-eval's `model_name_sanitized`: `/` becomes `__`, other characters
/// outside `[A-Za-z0-9._-]` become `_` (file-system safe).
pub fn sanitize(name: &str) -> String {
    name.replace('/', "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a larger value of a repro metric is better, by its name; `None`
/// when the name does not say (lm-eval allows null there).
pub fn higher_is_better(metric: &str) -> Option<bool> {
    const LOWER: &[&str] = &[
        "loss",
        "toxicity",
        "toxic",
        "worse",
        "false_claims",
        "missing",
        "perplexity",
    ];
    const HIGHER: &[&str] = &[
        "em",
        "acc",
        "pass@",
        "contains",
        "better",
        "unigram",
        "format",
        "correct",
        "score",
        "exact_match",
    ];
    if metric.starts_with("chance") || metric.starts_with("length") {
        // Baselines and descriptive statistics have no better direction.
        None
    } else if LOWER.iter().any(|w| metric.contains(w)) {
        Some(false)
    } else if HIGHER.iter().any(|w| metric.contains(w)) {
        Some(true)
    } else {
        None
    }
}

/// The metrics of a task that lm-eval would list: numbers, not stderrs,
/// not counts (`n`, `n_*`, `missing`), not interval bounds (all of them
/// stay in the task's `metadata`).
fn exported_metrics(m: &Map<String, Value>) -> Vec<(&String, &Value)> {
    m.iter()
        .filter(|(k, v)| {
            v.is_number()
                && !k.ends_with("_stderr")
                && !k.ends_with("ci_low")
                && !k.ends_with("ci_high")
                && !k.starts_with("n_")
                && !["n", "missing"].contains(&k.as_str())
        })
        .collect()
}

/// An lm-eval results document for one model.
pub fn export(model: &Model) -> Value {
    let mut results = Map::new();
    let mut configs = Map::new();
    let mut versions = Map::new();
    let mut n_shot = Map::new();
    let mut hib = Map::new();
    let mut n_samples = Map::new();
    let mut subtasks = Map::new();
    for t in &model.tasks {
        let metrics = exported_metrics(&t.metrics);
        let n = t.metrics.get("n").and_then(Value::as_u64);
        let mut r = Map::new();
        r.insert("name".into(), json!(t.name));
        r.insert("alias".into(), json!(t.name));
        r.insert("sample_len".into(), json!(n.unwrap_or(0)));
        for (k, v) in &metrics {
            r.insert(format!("{k},none"), (*v).clone());
            let se = t
                .metrics
                .get(&format!("{k}_stderr"))
                .filter(|v| v.is_number())
                .cloned()
                .unwrap_or_else(|| json!("N/A"));
            r.insert(format!("{k}_stderr,none"), se);
        }
        results.insert(t.name.clone(), Value::Object(r));
        let metric_list: Vec<Value> = metrics
            .iter()
            .map(|(k, _)| json!({"metric": k, "aggregation": "mean", "higher_is_better": higher_is_better(k)}))
            .collect();
        configs.insert(
            t.name.clone(),
            json!({
                "task": t.name,
                "dataset_path": t.dataset,
                "output_type": if t.op == "eval.mmlu" { "multiple_choice" } else { "generate_until" },
                "num_fewshot": t.n_shot,
                "metric_list": metric_list,
                "repeats": 1,
                "should_decontaminate": false,
                "metadata": {"version": t.version, "repro": t.metadata},
            }),
        );
        versions.insert(t.name.clone(), json!(t.version));
        n_shot.insert(t.name.clone(), json!(t.n_shot));
        hib.insert(
            t.name.clone(),
            Value::Object(
                metrics
                    .iter()
                    .map(|(k, _)| ((*k).clone(), json!(higher_is_better(k))))
                    .collect(),
            ),
        );
        if let Some(n) = n {
            n_samples.insert(t.name.clone(), json!({"original": n, "effective": n}));
        }
        subtasks.insert(t.name.clone(), json!([]));
    }
    json!({
        "results": results,
        "group_subtasks": subtasks,
        "configs": configs,
        "versions": versions,
        "n-shot": n_shot,
        "higher_is_better": hib,
        "n-samples": n_samples,
        "config": {
            "model": "repro",
            "model_args": model.args,
            "batch_size": null,
            "batch_sizes": [],
            "device": model.device,
            "use_cache": null,
            "limit": null,
            "bootstrap_iters": 0,
            "gen_kwargs": {},
            "random_seed": null,
            "numpy_seed": null,
            "torch_seed": null,
            "fewshot_seed": null,
        },
        "git_hash": model.git_hash,
        "date": model.date,
        "repro_version": env!("CARGO_PKG_VERSION"),
        "task_hashes": {},
        "model_source": "repro",
        "model_name": model.name,
        "model_name_sanitized": sanitize(&model.name),
        "system_instruction": null,
        "system_instruction_sha": null,
        "fewshot_as_multiturn": null,
        "chat_template": null,
        "chat_template_sha": null,
        "total_evaluation_time_seconds": format!("{}", model.seconds),
    })
}

/// `results_<date>.json` as lm-eval names it: the ISO time with `-` for `:`
/// (from an RFC 3339 start time; `results.json` when there is none).
pub fn file_name(started: &str) -> String {
    let t = started.trim_end_matches('Z');
    if t.is_empty() {
        "results.json".into()
    } else {
        format!("results_{}.json", t.replace(':', "-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn real() -> Value {
        let text = include_str!("../../tests/data/lm_eval/results_dummy_0.4.13.json");
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ingests_a_task_of_a_real_file() {
        let doc = real();
        let qa = ingest(&doc, Some("mini_qa"), None).unwrap();
        assert_eq!(qa.filter, "remove_whitespace");
        assert_eq!(qa.metrics["exact_match"], json!(0.375));
        assert_eq!(qa.metrics["exact_match_stderr"], json!(0.18298126367784995));
        assert_eq!(qa.metrics["n"], json!(8));
        assert_eq!(qa.provenance["lm_eval_version"], json!("0.4.13"));
        let mc = ingest(&doc, Some("mini_mc"), None).unwrap();
        assert_eq!(mc.filter, "none");
        assert_eq!(mc.metrics["acc_norm"], json!(0.3333333333333333));
        let e = ingest(&doc, None, None).unwrap_err();
        assert!(e.contains("mini_mc, mini_qa"), "{e}");
        let e = ingest(&doc, Some("nq"), None).unwrap_err();
        assert!(e.contains("no task `nq`"), "{e}");
        let e = ingest(&doc, Some("mini_qa"), Some("none")).unwrap_err();
        assert!(e.contains("filters: remove_whitespace"), "{e}");
    }

    #[test]
    fn export_has_the_keys_lm_eval_writes_and_reads_back() {
        let model = Model {
            name: "mini/size=l".into(),
            args: "size=l".into(),
            device: "cpu".into(),
            git_hash: None,
            date: 1.0,
            seconds: 2.0,
            tasks: vec![Task {
                name: "qa".into(),
                op: "eval.qa".into(),
                version: 2,
                n_shot: 0,
                metrics: json!({"em": 0.25, "em_ci_low": 0.1, "n": 80, "missing": 0})
                    .as_object()
                    .unwrap()
                    .clone(),
                metadata: json!({}),
                dataset: "world.questions".into(),
            }],
        };
        let doc = export(&model);
        let keys = |v: &Value| -> Vec<String> {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        // Every top-level key of the real file except lm-eval's environment
        // report (torch, transformers, tokenizer), which repro has not got.
        let mut want: Vec<String> = keys(&real())
            .into_iter()
            .filter(|k| {
                ![
                    "pretty_env_info",
                    "transformers_version",
                    "lm_eval_version",
                    "upper_git_hash",
                ]
                .contains(&k.as_str())
            })
            .collect();
        want.push("repro_version".into());
        want.sort();
        assert_eq!(keys(&doc), want);
        assert_eq!(
            keys(&doc["config"]),
            keys(&real()["config"]),
            "config fields as simple_evaluate writes them"
        );
        assert_eq!(doc["results"]["qa"]["em,none"], json!(0.25));
        assert_eq!(doc["results"]["qa"]["em_stderr,none"], json!("N/A"));
        assert_eq!(
            doc["n-samples"]["qa"],
            json!({"original": 80, "effective": 80})
        );
        let back = ingest(&doc, Some("qa"), None).unwrap();
        assert_eq!(back.metrics["em"], json!(0.25));
        assert_eq!(back.metrics["n"], json!(80));
        assert_eq!(sanitize("mini/size=l,data=task"), "mini__size_l_data_task");
        assert_eq!(
            file_name("2026-11-20T10:00:01Z"),
            "results_2026-11-20T10-00-01.json"
        );
    }
}
