//! The figure renderer through its public API: golden structure (from
//! `describe` and the SVG), byte determinism of SVG and PNG, series that
//! appear with new data, filters, log axes, bars, and odd inputs that must
//! not panic.

use repro::report::figure::{FigureError, FigureSpec, Row, describe, render_png, render_svg};
use serde_json::{Value, json};

fn spec(v: Value) -> FigureSpec {
    serde_json::from_value(v).expect("valid spec")
}

fn rows(v: Value) -> Vec<Row> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|r| r.as_object().expect("object").clone())
        .collect()
}

/// Figure 4 (top row), Natural Questions panel, as in the paper.
fn nq_spec() -> FigureSpec {
    spec(json!({
        "width": 520, "height": 420,
        "panels": [{
            "title": "Natural Questions 3-Shot",
            "x": {"field": "tokens", "label": "Amount of Imitation Data (Millions of Tokens)", "ticks": [25, 50, 75, 100, 125, 150]},
            "y": {"field": "acc", "label": "Accuracy (%)"},
            "series": "model",
            "ref_lines": [{"y": 31.1, "label": "ChatGPT"}, {"y": 25.5, "label": "LLaMA-13B"}]
        }]
    }))
}

fn nq_rows() -> Vec<Row> {
    rows(json!([
        {"model": "Imitation Model (13B)", "tokens": 20, "acc": 20.4},
        {"model": "Imitation Model (13B)", "tokens": 80, "acc": 18.8},
        {"model": "Imitation Model (13B)", "tokens": 150, "acc": 13.5},
    ]))
}

fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

/// `<polyline>` elements stroked with `color`.
fn polylines(svg: &str, color: &str) -> usize {
    svg.lines()
        .filter(|l| l.starts_with("<polyline") && l.contains(&format!("stroke=\"{color}\"")))
        .count()
}

fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |o: usize| u32::from_be_bytes([png[o], png[o + 1], png[o + 2], png[o + 3]]);
    (be(16), be(20))
}

#[test]
fn golden_structure_of_the_nq_panel() {
    let (s, r) = (nq_spec(), nq_rows());
    let d = describe(&s, &r).unwrap();
    assert_eq!(d["width"], 520);
    assert_eq!(d["rows"], 1);
    let p = &d["panels"][0];
    assert_eq!(p["title"], "Natural Questions 3-Shot");
    assert_eq!(
        p["x_label"],
        "Amount of Imitation Data (Millions of Tokens)"
    );
    assert_eq!(p["y_label"], "Accuracy (%)");
    assert_eq!(p["x_ticks"], json!(["25", "50", "75", "100", "125", "150"]));
    assert_eq!(p["y_ticks"], json!(["15", "20", "25", "30"]));
    assert_eq!(p["x_range"], json!([13.5, 156.5]));
    assert_eq!(p["y_range"], json!([12.62, 31.98]));
    assert_eq!(
        p["series"],
        json!([{"name": "Imitation Model (13B)", "points": 3, "color": "#4169E1", "dashed": false, "marker": true}])
    );
    assert_eq!(
        p["ref_lines"],
        json!([
            {"label": "ChatGPT", "y": 31.1, "color": "#228B22", "dashed": true},
            {"label": "LLaMA-13B", "y": 25.5, "color": "#000000", "dashed": true}
        ])
    );
    assert_eq!(p["legend"], "best");
    assert_eq!(p["skipped_rows"], 0);
    assert_eq!(p["empty"], false);

    let svg = render_svg(&s, &r).unwrap();
    assert!(svg.starts_with("<svg width=\"520\" height=\"420\""));
    for text in [
        "Natural Questions 3-Shot",
        "Amount of Imitation Data (Millions of Tokens)",
        "Accuracy (%)",
        "ChatGPT",
        "LLaMA-13B",
        "Imitation Model (13B)",
        ">125<",
    ] {
        let t = text.trim_matches(|c| c == '>' || c == '<');
        assert!(svg.contains(t), "SVG lacks {t:?}");
    }
    // One solid line for the one line series, its three markers plus the
    // legend's, and dashed reference lines in the paper's colours.
    assert_eq!(polylines(&svg, "#4169E1"), 1);
    assert_eq!(count(&svg, "<circle"), 4);
    assert!(svg.contains("fill=\"#228B22\""));
    assert!(svg.contains("fill=\"#000000\""));
    assert!(!svg.contains("no data"));
}

#[test]
fn svg_and_png_are_byte_identical_across_renders() {
    let (s, r) = (nq_spec(), nq_rows());
    let a = render_svg(&s, &r).unwrap();
    let b = render_svg(&s, &r).unwrap();
    assert_eq!(a, b);
    let p1 = render_png(&s, &r).unwrap();
    let p2 = render_png(&s, &r).unwrap();
    assert_eq!(p1, p2);
    assert_eq!(png_size(&p1), (520, 420));
    assert!(p1.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]));
    // A spec round-tripped through JSON renders the same bytes.
    let again: FigureSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(render_png(&again, &r).unwrap(), p1);
}

#[test]
fn a_new_series_value_becomes_a_new_series() {
    let s = nq_spec();
    let mut r = nq_rows();
    let before = describe(&s, &r).unwrap();
    assert_eq!(before["panels"][0]["series"].as_array().unwrap().len(), 1);
    r.extend(rows(json!([
        {"model": "Imitation Model (7B)", "tokens": 20, "acc": 11.0},
        {"model": "Imitation Model (7B)", "tokens": 150, "acc": 9.5},
        {"model": "Vicuna", "tokens": 80, "acc": 15.0},
        {"model": "Vicuna", "tokens": 20, "acc": 16.0},
    ])));
    let d = describe(&s, &r).unwrap();
    let series = d["panels"][0]["series"].as_array().unwrap();
    let names: Vec<&str> = series.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Imitation Model (13B)", "Imitation Model (7B)", "Vicuna"]
    );
    assert_eq!(series[1]["points"], 2);
    // The second imitation series keeps the paper look; Vicuna gets a
    // palette colour not used elsewhere in the panel.
    assert_eq!(series[1]["color"], "#4169E1");
    let vicuna = series[2]["color"].as_str().unwrap();
    assert!(!["#4169E1", "#228B22", "#000000"].contains(&vicuna));
    let svg = render_svg(&s, &r).unwrap();
    assert_eq!(polylines(&svg, "#4169E1"), 2);
    assert_eq!(polylines(&svg, vicuna), 1);
    assert!(svg.contains("Vicuna"));
    // The x points of Vicuna arrive out of order; lines are drawn by x.
    assert_ne!(
        render_svg(&s, &r).unwrap(),
        render_svg(&s, &nq_rows()).unwrap()
    );
}

#[test]
fn filters_select_rows_and_numbers_compare_by_value() {
    let s = spec(json!({
        "panels": [
            {"title": "MMLU", "x": {"field": "x"}, "y": {"field": "y"}, "filter": {"bench": "mmlu", "seed": 1}},
            {"title": "NQ", "x": {"field": "x"}, "y": {"field": "y"}, "filter": {"bench": "nq"}}
        ]
    }));
    let r = rows(json!([
        {"bench": "mmlu", "seed": 1.0, "x": 1, "y": 30},
        {"bench": "mmlu", "seed": 1, "x": 2, "y": 31},
        {"bench": "mmlu", "seed": 2, "x": 3, "y": 99},
        {"bench": "nq", "x": 1, "y": 20},
        {"x": 5, "y": 5}
    ]));
    let d = describe(&s, &r).unwrap();
    assert_eq!(d["width"], 1500);
    assert_eq!(d["height"], 450);
    assert_eq!(d["columns"], 2);
    assert_eq!(d["panels"][0]["series"][0]["points"], 2);
    assert_eq!(d["panels"][0]["series"][0]["name"], "y");
    assert_eq!(d["panels"][1]["series"][0]["points"], 1);
    assert!(d["panels"][0]["y_range"][1].as_f64().unwrap() < 40.0);
}

#[test]
fn log_axis_uses_decades_and_skips_non_positive_values() {
    let s = spec(json!({
        "panels": [{"x": {"field": "tokens", "log": true, "label": "Tokens (M)"}, "y": {"field": "loss"}, "series": "run"}]
    }));
    let r = rows(json!([
        {"run": "a", "tokens": 1, "loss": 3.0},
        {"run": "a", "tokens": 10, "loss": 2.0},
        {"run": "a", "tokens": 100, "loss": 1.5},
        {"run": "a", "tokens": 1000, "loss": 1.2},
        {"run": "a", "tokens": 0, "loss": 9.0},
        {"run": "a", "tokens": -5, "loss": 9.0}
    ]));
    let d = describe(&s, &r).unwrap();
    let p = &d["panels"][0];
    assert_eq!(p["x_log"], true);
    assert_eq!(p["x_ticks"], json!(["1", "10", "100", "1000"]));
    assert_eq!(p["skipped_rows"], 2);
    assert_eq!(p["series"][0]["points"], 4);
    let (lo, hi) = (
        p["x_range"][0].as_f64().unwrap(),
        p["x_range"][1].as_f64().unwrap(),
    );
    assert!(
        lo > 0.5 && lo < 1.0 && hi > 1000.0 && hi < 2000.0,
        "{lo} {hi}"
    );
    assert!(p["y_range"][1].as_f64().unwrap() < 9.0);
    render_png(&s, &r).unwrap();
    // A non-positive bound on a log axis is an error naming the field.
    let bad = spec(
        json!({"panels": [{"x": {"field": "tokens", "log": true, "min": 0}, "y": {"field": "loss"}}]}),
    );
    let e = describe(&bad, &r).unwrap_err().to_string();
    assert!(e.contains("panel 1") && e.contains("x.min"), "{e}");
}

#[test]
fn bars_group_and_stack_by_series_over_categories() {
    let r = rows(json!([
        {"model": "GPT-2", "k": "helpful", "v": 12},
        {"model": "LLaMA-7B", "k": "helpful", "v": 30},
        {"model": "GPT-2", "k": "harmless", "v": 20},
        {"model": "LLaMA-7B", "k": "harmless", "v": 25},
        {"model": 13, "k": "harmless", "v": 22}
    ]));
    let grouped = spec(
        json!({"panels": [{"kind": "bar", "x": {"field": "model"}, "y": {"field": "v"}, "series": "k"}]}),
    );
    let d = describe(&grouped, &r).unwrap();
    let p = &d["panels"][0];
    assert_eq!(p["kind"], "bar");
    assert_eq!(p["categories"], json!(["GPT-2", "LLaMA-7B", "13"]));
    assert_eq!(p["x_ticks"], p["categories"]);
    assert_eq!(p["y_range"][0], 0.0);
    let top = p["y_range"][1].as_f64().unwrap();
    assert!((30.0..35.0).contains(&top), "{top}");

    let stacked = spec(
        json!({"panels": [{"kind": "stacked_bar", "x": {"field": "model"}, "y": {"field": "v"}, "series": "k"}]}),
    );
    let d = describe(&stacked, &r).unwrap();
    let top = d["panels"][0]["y_range"][1].as_f64().unwrap();
    assert!(
        (55.0..60.0).contains(&top),
        "stacked total 55 must fit: {top}"
    );
    let svg = render_svg(&stacked, &r).unwrap();
    assert!(svg.contains("helpful") && svg.contains("harmless"));
    // Five bars and two legend patches in the two series colours.
    let blue = count(&svg, "fill=\"#4169E1\"");
    let orange = count(&svg, "fill=\"#FF7F0E\"");
    assert_eq!((blue, orange), (3, 4));
    render_png(&stacked, &r).unwrap();

    let e = describe(&spec(json!({"panels": [{"kind": "bar", "x": {"field": "model", "log": true}, "y": {"field": "v"}}]})), &r)
        .unwrap_err()
        .to_string();
    assert!(e.contains("x.log"), "{e}");
}

#[test]
fn bands_and_styles() {
    let s = spec(json!({
        "panels": [{
            "x": {"field": "x"}, "y": {"field": "y", "min": 0, "max": 50}, "series": "s", "band": "b",
            "styles": {"Ours": {"color": "#123456", "dashed": true, "marker": false}}
        }]
    }));
    let r = rows(json!([
        {"s": "Imitation Model", "x": 1.5, "y": 6.0, "b": 1.1},
        {"s": "Imitation Model", "x": 7, "y": 33.7, "b": 2.3},
        {"s": "Imitation Model", "x": 13, "y": 40.4, "b": 2.5},
        {"s": "Ours", "x": 1.5, "y": 10.0},
        {"s": "Ours", "x": 13, "y": 20.0}
    ]));
    let d = describe(&s, &r).unwrap();
    let p = &d["panels"][0];
    assert_eq!(p["y_range"], json!([0.0, 50.0]));
    assert_eq!(p["y_ticks"], json!(["0", "10", "20", "30", "40", "50"]));
    assert_eq!(
        p["series"][1],
        json!({"name": "Ours", "points": 2, "color": "#123456", "dashed": true, "marker": false})
    );
    let svg = render_svg(&s, &r).unwrap();
    assert_eq!(count(&svg, "<polygon"), 1);
    assert!(svg.contains("opacity=\"0.25\" fill=\"#4169E1\""));
    // A dashed series is drawn as several short polylines.
    assert!(polylines(&svg, "#123456") > 3);
}

#[test]
fn missing_values_are_skipped_never_drawn_as_zero() {
    let s = nq_spec();
    let mut r = nq_rows();
    r.extend(rows(json!([
        {"model": "Imitation Model (13B)", "tokens": 300, "acc": null},
        {"model": "Imitation Model (13B)", "tokens": 400},
        {"model": "Imitation Model (13B)", "acc": 0.0}
    ])));
    let d = describe(&s, &r).unwrap();
    let p = &d["panels"][0];
    assert_eq!(p["series"][0]["points"], 3);
    assert_eq!(p["skipped_rows"], 3);
    assert_eq!(p["y_range"], json!([12.62, 31.98]));
    assert_eq!(
        render_svg(&s, &r).unwrap(),
        render_svg(&s, &nq_rows()).unwrap()
    );
}

#[test]
fn rows_without_the_series_field_go_to_none() {
    let s = spec(json!({"panels": [{"x": {"field": "x"}, "y": {"field": "y"}, "series": "who"}]}));
    let r = rows(
        json!([{"x": 1, "y": 2, "who": "a"}, {"x": 2, "y": 3}, {"x": 3, "y": 1, "who": null}]),
    );
    let d = describe(&s, &r).unwrap();
    let names: Vec<&str> = d["panels"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "(none)"]);
    assert_eq!(d["panels"][0]["series"][1]["points"], 2);
}

#[test]
fn odd_inputs_do_not_panic() {
    let s = nq_spec();
    // No rows at all: empty axes with a note, ref lines still drawn.
    let d = describe(&s, &[]).unwrap();
    assert_eq!(d["panels"][0]["empty"], true);
    let svg = render_svg(&s, &[]).unwrap();
    assert!(svg.contains("no data") && svg.contains("ChatGPT"));
    render_png(&s, &[]).unwrap();

    // No rows and no ref lines: a default range.
    let bare = spec(
        json!({"panels": [{"x": {"field": "a"}, "y": {"field": "b"}}, {"kind": "bar", "x": {"field": "a"}, "y": {"field": "b"}}]}),
    );
    let d = describe(&bare, &[]).unwrap();
    assert_eq!(d["panels"][0]["x_range"], json!([0.0, 1.0]));
    render_svg(&bare, &[]).unwrap();
    render_png(&bare, &[]).unwrap();

    // One point: the range is padded around it.
    let one = rows(json!([{"a": 5, "b": 7}]));
    let d = describe(&bare, &one).unwrap();
    let (lo, hi) = (
        d["panels"][0]["y_range"][0].as_f64().unwrap(),
        d["panels"][0]["y_range"][1].as_f64().unwrap(),
    );
    assert!(lo < 7.0 && hi > 7.0);
    render_png(&bare, &one).unwrap();

    // Identical values, zero, huge and tiny numbers.
    let flat = rows(
        json!([{"a": 0, "b": 0}, {"a": 0, "b": 0}, {"a": 1e300, "b": -1e300}, {"a": 1e-300, "b": 1e-300}]),
    );
    render_svg(&bare, &flat).unwrap();
    render_png(&bare, &flat).unwrap();

    // NaN/inf cannot be JSON row values (serde_json turns them into null),
    // but a spec built in Rust can carry them: such reference lines and
    // ticks are skipped; bounds are rejected.
    let mut weird = nq_spec();
    weird.panels[0].ref_lines[0].y = f64::NAN;
    weird.panels[0].ref_lines[1].y = f64::INFINITY;
    weird.panels[0].x.ticks = Some(vec![f64::NAN, 50.0, f64::NEG_INFINITY, 1e9]);
    let nan_row = rows(json!([{"model": "m", "tokens": f64::NAN, "acc": f64::INFINITY}]));
    let d = describe(&weird, &nan_row).unwrap();
    assert_eq!(d["panels"][0]["x_ticks"], json!([]));
    assert_eq!(d["panels"][0]["ref_lines"], json!([]));
    render_png(&weird, &nan_row).unwrap();
    weird.panels[0].y.max = Some(f64::NAN);
    assert!(
        describe(&weird, &nq_rows())
            .unwrap_err()
            .to_string()
            .contains("y.max")
    );

    // A tiny canvas and a many-panel grid.
    let mut tiny = nq_spec();
    tiny.width = 16;
    tiny.height = 16;
    render_png(&tiny, &nq_rows()).unwrap();
    let mut grid = nq_spec();
    grid.panels = vec![grid.panels[0].clone(); 7];
    grid.columns = Some(3);
    let d = describe(&grid, &nq_rows()).unwrap();
    assert_eq!(
        (d["columns"].as_u64(), d["rows"].as_u64()),
        (Some(3), Some(3))
    );
    render_png(&grid, &nq_rows()).unwrap();
}

#[test]
fn errors_name_the_panel_and_field() {
    let r = nq_rows();
    let err = |v: Value| -> String {
        match serde_json::from_value::<FigureSpec>(v) {
            Ok(s) => describe(&s, &r)
                .map(|_| String::new())
                .unwrap_or_else(|e| e.to_string()),
            Err(e) => e.to_string(),
        }
    };
    let e = err(
        json!({"panels": [{"title": "T", "x": {"field": "tokens"}, "y": {"field": "acc", "min": 5, "max": 5}}]}),
    );
    assert!(
        e.contains("panel 1 (\"T\")") && e.contains("y.min") && e.contains("less than"),
        "{e}"
    );
    let e = err(
        json!({"panels": [{"x": {"field": "tokens"}, "y": {"field": "acc"}, "legend": "top"}]}),
    );
    assert!(e.contains("`legend`") && e.contains("upper_right"), "{e}");
    let e = err(
        json!({"panels": [{"x": {"field": "tokens"}, "y": {"field": "acc"}, "styles": {"a": {"color": "blue"}}}]}),
    );
    assert!(e.contains("styles.a.color"), "{e}");
    let e = err(json!({"panels": [{"x": {"field": "model"}, "y": {"field": "acc"}}]}));
    assert!(
        e.contains("row 0") && e.contains("`model`") && e.contains("must be a number"),
        "{e}"
    );
    let e = err(json!({"panels": [], "width": 100}));
    assert!(e.contains("`panels`"), "{e}");
    let e = err(json!({"columns": 0, "panels": [{"x": {"field": "a"}, "y": {"field": "b"}}]}));
    assert!(e.contains("`columns`"), "{e}");
    let e = err(json!({"width": 100000, "panels": [{"x": {"field": "a"}, "y": {"field": "b"}}]}));
    assert!(e.contains("`width`"), "{e}");
    let e = err(json!({"panels": [{"x": {"field": "a"}, "y": {"field": "b"}, "colour": "x"}]}));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = err(json!({"panels": [{"kind": "pie", "x": {"field": "a"}, "y": {"field": "b"}}]}));
    assert!(e.contains("pie"), "{e}");
    let s = spec(json!({"panels": [{"x": {"field": "a"}, "y": {"field": "b"}}]}));
    let bad = rows(json!([{"a": 1, "b": "high"}]));
    assert!(matches!(
        render_svg(&s, &bad),
        Err(FigureError::Value { row: 0, .. })
    ));
}
