//! Pre-registered predictions and their verdicts.
//!
//! A prediction is a claim of the paper written as data before the run
//! that judges it: two series of per-item 0/1 outcomes on the same items
//! (or one series against a fixed rate), a direction, a minimum effect, and
//! the cases it covers (for example one per base size). This module parses
//! that data ([`Registration::parse`]) and turns measured series into a
//! verdict ([`judge`]); the `report.predictions` op feeds it.
//!
//! # The rule (fixed here, before any run)
//!
//! For each case, with `d = mean(x) - mean(y)`, `p` the one-sided exact
//! test that x exceeds y (McNemar on paired items, binomial against a fixed
//! rate; [`crate::eval::paired`]) and `[lo, hi]` the one-sided `1 - alpha`
//! bounds of `d` from a paired percentile bootstrap:
//!
//! | test | holds | contradicted | otherwise |
//! | --- | --- | --- | --- |
//! | `greater` (x exceeds y by at least `min_effect`) | `p < alpha` and `d >= min_effect` | `hi < min_effect` | inconclusive |
//! | `not_greater` (x does not exceed y by `min_effect` or more) | `hi < min_effect` | `p < alpha` and `d >= min_effect` | inconclusive |
//!
//! A prediction holds when every case holds, is contradicted when any case
//! is contradicted, and is inconclusive otherwise. No correction is made for
//! the several cases of one prediction: each case must pass on its own,
//! which is stricter for "holds" than a corrected joint test.

use crate::eval::paired::{
    binomial_greater, mcnemar_greater, one_sided_bounds, paired_bootstrap_diffs,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Which way a prediction points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    /// x exceeds y by at least `min_effect`.
    Greater,
    /// x does not exceed y by `min_effect` or more.
    NotGreater,
}

/// Where a series comes from: one instance of a report input, and either a
/// per-item field of its output rows or a metric of its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The report input (a list of upstream instances).
    pub input: String,
    /// Coordinates the instance must have (`null`: the coordinate is absent).
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, Value>,
    /// Per-item outcome: the field of each output row (`id` pairs the rows).
    #[serde(default)]
    pub field: Option<String>,
    /// With `field`: the values that count as success (default: `true`).
    #[serde(default)]
    pub equals: Option<Vec<Value>>,
    /// A fixed rate instead: this metric of the instance's record.
    #[serde(default)]
    pub metric: Option<String>,
}

/// One pre-registered prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// Short id, unique in the file.
    pub id: String,
    /// The claim in words.
    pub claim: String,
    /// Where the paper makes it.
    #[serde(default)]
    pub paper: Option<String>,
    /// The direction.
    pub test: Test,
    /// The smallest difference of means (0-1 scale) that counts.
    pub min_effect: f64,
    /// The first series.
    pub x: Source,
    /// The series or rate it is compared with.
    pub y: Source,
    /// Cases: each coordinate value is added to both `where`s in turn
    /// (`{size: [s, m, l]}` gives three cases); none means one case.
    #[serde(default, rename = "for")]
    pub cases: BTreeMap<String, Vec<Value>>,
}

/// The whole registration: test settings and the predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// One-sided significance level (and `1 - alpha` bootstrap bounds).
    pub alpha: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed.
    pub seed: u64,
    /// The predictions, in report order.
    pub predictions: Vec<Prediction>,
}

/// A verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The data support the claim.
    Holds,
    /// The data support the opposite.
    Contradicted,
    /// The data decide neither way.
    Inconclusive,
}

impl Verdict {
    /// The verdict as a word.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Holds => "holds",
            Verdict::Contradicted => "contradicted",
            Verdict::Inconclusive => "inconclusive",
        }
    }
}

/// The measured numbers of one case and its verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseResult {
    /// The case's coordinates (empty for a single case).
    pub case: BTreeMap<String, Value>,
    /// Items compared.
    pub n: usize,
    /// Mean of x.
    pub x: f64,
    /// Mean of y (or the fixed rate).
    pub y: f64,
    /// `x - y`.
    pub diff: f64,
    /// One-sided lower bound of the difference.
    pub lo: f64,
    /// One-sided upper bound of the difference.
    pub hi: f64,
    /// One-sided p-value that x exceeds y.
    pub p: f64,
    /// This case's verdict.
    pub verdict: Verdict,
}

/// The series of one case: x's outcomes, and y's paired outcomes or rate.
#[derive(Debug, Clone, PartialEq)]
pub enum Series {
    /// Paired 0/1 outcomes, item by item.
    Paired(Vec<bool>, Vec<bool>),
    /// x's outcomes against a fixed rate.
    Rate(Vec<bool>, f64),
}

impl Registration {
    /// Reads and checks a registration (the `report.predictions` params);
    /// `Err((key, message))` names the key at fault.
    pub fn parse(params: &Map<String, Value>) -> Result<Self, (String, String)> {
        let mut m = Map::new();
        for k in ["alpha", "resamples", "seed", "predictions"] {
            if let Some(v) = params.get(k) {
                m.insert(k.into(), v.clone());
            }
        }
        m.entry("resamples").or_insert(2000.into());
        m.entry("seed").or_insert(0.into());
        m.entry("alpha").or_insert(0.05.into());
        let reg: Registration = serde_json::from_value(Value::Object(m))
            .map_err(|e| ("predictions".to_string(), e.to_string()))?;
        reg.check()?;
        Ok(reg)
    }

    fn check(&self) -> Result<(), (String, String)> {
        if !(self.alpha > 0.0 && self.alpha < 0.5) {
            return Err((
                "alpha".into(),
                format!("`alpha` must be in (0, 0.5), found {}", self.alpha),
            ));
        }
        if !(100..=100_000).contains(&self.resamples) {
            return Err((
                "resamples".into(),
                format!(
                    "`resamples` must be in 100..=100000, found {}",
                    self.resamples
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, p) in self.predictions.iter().enumerate() {
            let at = |m: String| {
                Err((
                    format!("predictions[{i}]"),
                    format!("prediction `{}`: {m}", p.id),
                ))
            };
            if !seen.insert(p.id.as_str()) {
                return at("duplicate id".into());
            }
            if !(0.0..=1.0).contains(&p.min_effect) {
                return at(format!(
                    "`min_effect` must be in [0, 1], found {}",
                    p.min_effect
                ));
            }
            for (name, s) in [("x", &p.x), ("y", &p.y)] {
                match (&s.field, &s.metric) {
                    (Some(_), None) => {}
                    (None, Some(_)) if name == "y" => {}
                    (None, Some(_)) => return at("`x` needs a per-item `field`".into()),
                    _ => {
                        return at(format!(
                            "`{name}` needs exactly one of `field` and `metric`"
                        ));
                    }
                }
            }
            for (k, values) in &p.cases {
                if values.is_empty() {
                    return at(format!("`for.{k}` lists no values"));
                }
            }
        }
        Ok(())
    }
}

impl Prediction {
    /// The cases: each a map of coordinate -> value (one empty map when
    /// `for` is absent); several keys give their cross product.
    pub fn case_list(&self) -> Vec<BTreeMap<String, Value>> {
        let mut out = vec![BTreeMap::new()];
        for (k, values) in &self.cases {
            out = out
                .into_iter()
                .flat_map(|c| {
                    values.iter().map(move |v| {
                        let mut c = c.clone();
                        c.insert(k.clone(), v.clone());
                        c
                    })
                })
                .collect();
        }
        out
    }
}

/// Judges one case from its series (see the module doc for the rule).
pub fn judge_case(
    reg: &Registration,
    pred: &Prediction,
    case: BTreeMap<String, Value>,
    series: &Series,
) -> CaseResult {
    let as_f64 = |v: &[bool]| {
        v.iter()
            .map(|&b| f64::from(u8::from(b)))
            .collect::<Vec<f64>>()
    };
    let mean = |v: &[bool]| v.iter().filter(|&&b| b).count() as f64 / v.len().max(1) as f64;
    let (n, x, y, p, diffs) = match series {
        Series::Paired(xs, ys) => (
            xs.len(),
            mean(xs),
            mean(ys),
            mcnemar_greater(xs, ys),
            paired_bootstrap_diffs(&as_f64(xs), &as_f64(ys), reg.resamples, reg.seed),
        ),
        Series::Rate(xs, rate) => (
            xs.len(),
            mean(xs),
            *rate,
            binomial_greater(xs, *rate),
            paired_bootstrap_diffs(&as_f64(xs), &[*rate], reg.resamples, reg.seed),
        ),
    };
    let diff = x - y;
    let (lo, hi) = one_sided_bounds(&diffs, reg.alpha);
    let significant = p < reg.alpha && diff >= pred.min_effect;
    let ruled_out = hi < pred.min_effect;
    let verdict = match (pred.test, significant, ruled_out) {
        _ if n == 0 => Verdict::Inconclusive,
        (Test::Greater, true, _) => Verdict::Holds,
        (Test::Greater, false, true) => Verdict::Contradicted,
        (Test::NotGreater, _, true) => Verdict::Holds,
        (Test::NotGreater, true, false) => Verdict::Contradicted,
        _ => Verdict::Inconclusive,
    };
    CaseResult {
        case,
        n,
        x,
        y,
        diff,
        lo,
        hi,
        p,
        verdict,
    }
}

/// A prediction's overall verdict from its cases.
pub fn judge(cases: &[CaseResult]) -> Verdict {
    if cases.iter().any(|c| c.verdict == Verdict::Contradicted) {
        Verdict::Contradicted
    } else if !cases.is_empty() && cases.iter().all(|c| c.verdict == Verdict::Holds) {
        Verdict::Holds
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn registration() -> Registration {
        let params = json!({
            "alpha": 0.05,
            "resamples": 1000,
            "predictions": [{
                "id": "up",
                "claim": "x beats y",
                "test": "greater",
                "min_effect": 0.05,
                "x": {"input": "qa", "where": {"from": "imitate"}, "field": "correct"},
                "y": {"input": "qa", "where": {"from": "base"}, "field": "correct"},
                "for": {"size": ["s", "l"], "data": ["task"]}
            }, {
                "id": "flat",
                "claim": "x does not beat y",
                "test": "not_greater",
                "min_effect": 0.05,
                "x": {"input": "qa", "field": "correct"},
                "y": {"input": "qa", "metric": "majority_em"}
            }]
        });
        Registration::parse(params.as_object().unwrap()).unwrap()
    }

    /// `n` paired items where x succeeds on the first `kx` and y on the
    /// first `ky`.
    fn paired(n: usize, kx: usize, ky: usize) -> Series {
        Series::Paired(
            (0..n).map(|i| i < kx).collect(),
            (0..n).map(|i| i < ky).collect(),
        )
    }

    #[test]
    fn greater_holds_is_contradicted_or_is_inconclusive() {
        let reg = registration();
        let p = &reg.predictions[0];
        let v = |s: &Series| judge_case(&reg, p, BTreeMap::new(), s).verdict;
        assert_eq!(v(&paired(400, 200, 100)), Verdict::Holds);
        assert_eq!(v(&paired(400, 100, 100)), Verdict::Contradicted);
        assert_eq!(v(&paired(400, 100, 200)), Verdict::Contradicted);
        // A real but small gain on few items decides nothing.
        assert_eq!(v(&paired(40, 12, 10)), Verdict::Inconclusive);
        // Significant but below the minimum effect: not "holds".
        let small = judge_case(&reg, p, BTreeMap::new(), &paired(4000, 1120, 1000));
        assert!(small.p < 0.05 && small.diff < 0.05);
        assert_ne!(small.verdict, Verdict::Holds);
    }

    #[test]
    fn not_greater_against_a_rate() {
        let reg = registration();
        let p = &reg.predictions[1];
        let v = |xs: Vec<bool>, r: f64| {
            judge_case(&reg, p, BTreeMap::new(), &Series::Rate(xs, r)).verdict
        };
        let at = |n: usize, k: usize| (0..n).map(|i| i < k).collect::<Vec<bool>>();
        assert_eq!(v(at(400, 20), 0.05), Verdict::Holds);
        assert_eq!(v(at(400, 120), 0.05), Verdict::Contradicted);
        assert_eq!(v(at(20, 2), 0.05), Verdict::Inconclusive);
        assert_eq!(v(Vec::new(), 0.05), Verdict::Inconclusive);
    }

    #[test]
    fn cases_are_the_cross_product_and_the_overall_verdict_is_strict() {
        let reg = registration();
        let cases = reg.predictions[0].case_list();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[1]["size"], json!("l"));
        assert_eq!(cases[1]["data"], json!("task"));
        assert_eq!(reg.predictions[1].case_list(), vec![BTreeMap::new()]);
        let p = &reg.predictions[0];
        let r = |s| judge_case(&reg, p, BTreeMap::new(), &s);
        let hold = r(paired(400, 200, 100));
        let flat = r(paired(40, 12, 10));
        let down = r(paired(400, 100, 200));
        assert_eq!(judge(&[hold.clone(), hold.clone()]), Verdict::Holds);
        assert_eq!(judge(&[hold.clone(), flat.clone()]), Verdict::Inconclusive);
        assert_eq!(judge(&[hold, flat, down]), Verdict::Contradicted);
        assert_eq!(judge(&[]), Verdict::Inconclusive);
    }

    #[test]
    fn bad_registrations_name_the_key() {
        let bad = |v: Value| Registration::parse(v.as_object().unwrap()).unwrap_err();
        let one = |extra: Value| {
            let mut p = json!({"id": "a", "claim": "c", "test": "greater", "min_effect": 0.1,
                "x": {"input": "qa", "field": "correct"}, "y": {"input": "qa", "field": "correct"}});
            for (k, v) in extra.as_object().unwrap() {
                p[k] = v.clone();
            }
            json!({"predictions": [p]})
        };
        assert_eq!(bad(json!({"alpha": 0.7, "predictions": []})).0, "alpha");
        assert!(bad(one(json!({"test": "bigger"}))).1.contains("bigger"));
        assert!(
            bad(one(json!({"x": {"input": "qa", "metric": "em"}})))
                .1
                .contains("per-item")
        );
        assert!(
            bad(one(json!({"y": {"input": "qa"}})))
                .1
                .contains("exactly one")
        );
        assert!(
            bad(one(json!({"min_effect": 2.0})))
                .1
                .contains("min_effect")
        );
        assert!(
            bad(one(
                json!({"x": {"input": "qa", "field": "c", "colour": 1}})
            ))
            .1
            .contains("colour")
        );
        let mut twice = one(json!({}));
        let p = twice["predictions"][0].clone();
        twice["predictions"].as_array_mut().unwrap().push(p);
        assert!(bad(twice).1.contains("duplicate"));
    }
}
