//! `report.table`: renders a minijinja template (Markdown, LaTeX, HTML, ...)
//! from the node's inputs.
//!
//! The template (param `template`, a path relative to the project root, whose
//! content is part of the key) sees:
//! - `inputs.<name>`: a `ref.published` table (`citation`, `rows`, ...), or a
//!   list of results (`node`, `coords`, `metrics`, `key`, `provenance`,
//!   `missing`, and `data` when the output is JSON), or text;
//! - `rows`, `missing`, `gates`, `gated` (a tolerance is declared): the
//!   published-vs-reproduced comparison when
//!   `compare:` is given (see `report::compare`): per published row its
//!   fields plus `published`, `reproduced`, `delta`, `pass`, `missing_node`;
//! - `context`: the `context:` param, free values for the template;
//! - `node`: this node's id.
//!
//! Output `out` is the rendered text (file name `table` plus the template's
//! extension without `.j2`). Metrics: `gates_passed`, `gates_failed`,
//! `missing` (counts); `repro verify` fails when `gates_failed > 0`.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::report::{compare, inputs, template};
use serde_json::{Map, Value, json};

/// The `report.table` op.
pub struct ReportTableOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required(
        "template",
        ParamType::Str,
        "template path (its content, not its path, enters the key)",
    )
    .not_semantic(),
    ParamSpec::optional(
        "compare",
        ParamType::Map,
        "published-vs-reproduced matching: {published, reproduced, match, metric, scale, tolerance}",
    ),
    ParamSpec::optional("context", ParamType::Map, "extra values for the template"),
    ParamSpec::optional(
        "export",
        ParamType::StrOrMap,
        "copy the output to this path (e.g. paper/table1.md)",
    )
    .not_semantic(),
];

/// File name of the rendered output for a template path.
fn out_name(params: &Map<String, Value>) -> String {
    let t = params
        .get("template")
        .and_then(Value::as_str)
        .unwrap_or("table.txt.j2");
    let base = t.rsplit('/').next().unwrap_or(t).trim_end_matches(".j2");
    match base.split_once('.') {
        Some((_, ext)) if !ext.is_empty() => format!("table.{ext}"),
        _ => "table.txt".into(),
    }
}

impl Op for ReportTableOp {
    crate::op_identity! { "report.table", 1, PARAMS, "Renders a minijinja template from published tables and reproduced results, with deltas and tolerance marks." }
    fn is_report(&self) -> bool {
        true
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        compare::parse(params).map_err(|m| ("compare".to_string(), m))?;
        super::report_common::check_export(params, &self.outputs(params))
    }
    fn outputs(&self, params: &Map<String, Value>) -> Vec<OutputDecl> {
        vec![OutputDecl {
            name: "out".into(),
            path: out_name(params),
            heavy: false,
        }]
    }
    fn implicit_inputs(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        params
            .get("template")
            .and_then(Value::as_str)
            .map(|t| vec![("template".to_string(), t.to_string())])
            .unwrap_or_default()
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let tpath = ctx
            .inputs
            .get("template")
            .ok_or_else(|| OpError::msg("no template input"))?;
        let source = std::fs::read_to_string(tpath)?;
        let all = inputs::read_all(ctx).map_err(OpError::msg)?;
        let mut input_map = Map::new();
        for (name, i) in all.iter().filter(|(n, _)| n != "template") {
            input_map.insert(
                name.clone(),
                match i {
                    inputs::ReportInput::Published(v) => v.clone(),
                    inputs::ReportInput::Results(v) => Value::Array(v.clone()),
                    inputs::ReportInput::Text(t) => json!(t),
                },
            );
        }
        let cmp = match compare::parse(ctx.params).map_err(OpError::msg)? {
            Some(c) => compare::build(&c, &all).map_err(OpError::msg)?,
            None => compare::Comparison::default(),
        };
        let context = json!({
            "inputs": input_map,
            "rows": cmp.rows,
            "missing": cmp.missing,
            "gates": {"passed": cmp.passed, "failed": cmp.failed},
            "gated": cmp.gated,
            "context": ctx.params.get("context").cloned().unwrap_or(json!({})),
            "node": ctx.node,
        });
        let tname = ctx
            .params
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or("template.j2");
        let text = template::render(tname, &source, &context)
            .map_err(|m| OpError::msg(format!("{tname}: {m}")))?;
        std::fs::write(ctx.work_dir.join("out").join(out_name(ctx.params)), text)?;
        let mut metrics = Map::new();
        metrics.insert("gates_passed".into(), json!(cmp.passed));
        metrics.insert("gates_failed".into(), json!(cmp.failed));
        metrics.insert("missing".into(), json!(cmp.missing.len()));
        Ok(RunResult {
            metrics,
            ..Default::default()
        })
    }
}
