//! `report.html`: one self-contained HTML page (no external assets) with the
//! tables, the figures (SVG inlined), the published values, and the
//! provenance of every number (node, key, when, where and on what it ran).
//!
//! `sections:` lists the page in order: `{input, title, caption}` per entry.
//! An input that is an HTML fragment (a `report.table` rendered with an
//! `.html` template) is embedded as is; SVG is inlined; a `ref.published`
//! table is shown as a table with its citation; a list of results as a table
//! of coordinates and metrics; other text in a `<pre>`. The provenance table
//! lists every record view among the inputs (so pass the result lists whose
//! numbers the tables show, as extra inputs). The template (default
//! `templates/report.html.j2`) is an input: its content is in the key.

use crate::op::{Op, OpError, OutputDecl, ParamSpec, ParamType, RunContext, RunResult};
use crate::report::{inputs, template};
use serde_json::{Map, Value, json};

/// The `report.html` op.
pub struct ReportHtmlOp;

const PARAMS: &[ParamSpec] = &[
    ParamSpec::required("title", ParamType::Str, "page title"),
    ParamSpec::required(
        "sections",
        ParamType::List,
        "page sections in order: {input, title, caption}",
    ),
    ParamSpec::optional(
        "template",
        ParamType::Str,
        "page template (default templates/report.html.j2)",
    )
    .not_semantic(),
    ParamSpec::optional("context", ParamType::Map, "extra values for the template"),
    ParamSpec::optional(
        "export",
        ParamType::StrOrMap,
        "copy the page to this path (e.g. paper/report.html)",
    )
    .not_semantic(),
];

const DEFAULT_TEMPLATE: &str = "templates/report.html.j2";

impl Op for ReportHtmlOp {
    crate::op_identity! { "report.html", 1, PARAMS, "One self-contained HTML page: tables, inline SVG figures, published values and the provenance of every number." }
    fn is_report(&self) -> bool {
        true
    }
    fn check(&self, params: &Map<String, Value>) -> Result<(), (String, String)> {
        for (i, s) in params
            .get("sections")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let ok = s.as_object().is_some_and(|o| {
                o.get("input").is_some_and(Value::is_string)
                    && o.keys()
                        .all(|k| ["input", "title", "caption"].contains(&k.as_str()))
            });
            if !ok {
                return Err((
                    "sections".into(),
                    format!(
                        "sections[{i}] must be {{input, title, caption}} with `input` naming an input"
                    ),
                ));
            }
        }
        super::report_common::check_export(params, &self.outputs(params))
    }
    fn outputs(&self, _params: &Map<String, Value>) -> Vec<OutputDecl> {
        OutputDecl::light(&[("out", "report.html")])
    }
    fn implicit_inputs(&self, params: &Map<String, Value>) -> Vec<(String, String)> {
        let t = params
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_TEMPLATE);
        vec![("template".into(), t.to_string())]
    }
    fn run(&self, ctx: &RunContext) -> Result<RunResult, OpError> {
        let tpath = ctx
            .inputs
            .get("template")
            .ok_or_else(|| OpError::msg("no template input"))?;
        let source = std::fs::read_to_string(tpath)?;
        let all = inputs::read_all(ctx).map_err(OpError::msg)?;
        let mut sections = Vec::new();
        for s in ctx
            .params
            .get("sections")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = s.get("input").and_then(Value::as_str).unwrap_or_default();
            let input = all
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, i)| i)
                .ok_or_else(|| OpError::msg(format!("sections: no input named `{name}`")))?;
            let (kind, body) = match input {
                inputs::ReportInput::Published(v) => ("published", v.clone()),
                inputs::ReportInput::Results(v) => (
                    "results",
                    json!(v.iter().map(inputs::result_row).collect::<Vec<_>>()),
                ),
                inputs::ReportInput::Text(t)
                    if t.trim_start().starts_with("<svg")
                        || t.trim_start().starts_with("<?xml") =>
                {
                    ("svg", json!(strip_xml_decl(t)))
                }
                inputs::ReportInput::Text(t) if t.trim_start().starts_with('<') => {
                    ("html", json!(t))
                }
                inputs::ReportInput::Text(t) => ("text", json!(t)),
            };
            sections.push(json!({"input": name, "title": s.get("title"), "caption": s.get("caption"), "kind": kind, "body": body}));
        }
        // Provenance of every record among the inputs, deduplicated by node.
        let mut prov: Vec<Value> = Vec::new();
        for (name, v) in ctx.records {
            let views: Vec<&Value> = match v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for view in views {
                if view.get("node").is_none()
                    || prov.iter().any(|p| p.get("node") == view.get("node"))
                {
                    continue;
                }
                let mut row = view.as_object().cloned().unwrap_or_default();
                row.insert("input".into(), json!(name));
                row.remove("entry");
                prov.push(Value::Object(row));
            }
        }
        let context = json!({
            "title": ctx.params.get("title"),
            "sections": sections,
            "provenance": prov,
            "context": ctx.params.get("context").cloned().unwrap_or(json!({})),
            "node": ctx.node,
        });
        let tname = ctx
            .params
            .get("template")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_TEMPLATE);
        let html = template::render(tname, &source, &context)
            .map_err(|m| OpError::msg(format!("{tname}: {m}")))?;
        std::fs::write(ctx.work_dir.join("out/report.html"), html)?;
        let mut metrics = Map::new();
        metrics.insert(
            "missing".into(),
            json!(
                prov.iter()
                    .filter(|p| p.get("missing") == Some(&json!(true)))
                    .count()
            ),
        );
        Ok(RunResult {
            metrics,
            ..Default::default()
        })
    }
}

fn strip_xml_decl(t: &str) -> String {
    let t = t.trim_start();
    match t.strip_prefix("<?xml") {
        Some(rest) => rest
            .split_once("?>")
            .map(|(_, r)| r.trim_start().to_string())
            .unwrap_or_default(),
        None => t.to_string(),
    }
}
