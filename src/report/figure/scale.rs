//! Axis scales: data ranges with padding, tick positions and tick labels.
//!
//! Everything here is plain `f64` arithmetic with fixed formatting, so the
//! ticks `describe` reports are exactly the ticks the renderer draws.

/// One axis after layout: its range, whether it is logarithmic, and its
/// ticks (positions in data units, with their labels).
#[derive(Clone, Debug)]
pub(super) struct Scale {
    /// Lower end of the axis (data units).
    pub lo: f64,
    /// Upper end of the axis (data units).
    pub hi: f64,
    /// Logarithmic (base 10) axis.
    pub log: bool,
    /// Tick positions, ascending, all within `lo..=hi`.
    pub ticks: Vec<f64>,
    /// One label per tick.
    pub labels: Vec<String>,
}

impl Scale {
    /// Where `v` sits along the axis: 0 at `lo`, 1 at `hi`.
    pub fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }
}

/// The data range `lo..=hi` widened by 5% of its span on each side (in log
/// space for a log axis); a single value gets a fixed margin instead.
pub(super) fn padded(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    if log {
        let (a, b) = (lo.log10(), hi.log10());
        let pad = if b > a { 0.05 * (b - a) } else { 0.3 };
        (10f64.powf(a - pad), 10f64.powf(b + pad))
    } else if hi > lo {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    } else {
        let pad = if lo == 0.0 { 1.0 } else { 0.1 * lo.abs() };
        (lo - pad, hi + pad)
    }
}

/// The default width of an axis that has one bound fixed and no data beyond
/// it, or no data at all.
pub(super) fn extend_from(bound: f64, up: bool, log: bool) -> f64 {
    match (log, up) {
        (true, true) => bound * 10.0,
        (true, false) => bound / 10.0,
        (false, up) => {
            let d = if bound == 0.0 { 1.0 } else { 0.1 * bound.abs() };
            if up { bound + d } else { bound - d }
        }
    }
}

/// Automatic ticks: "nice" steps (1, 2, 2.5, 5 times a power of ten) on a
/// linear axis, decades (or 1-2-5 within a decade) on a log axis.
pub(super) fn auto_ticks(lo: f64, hi: f64, log: bool, target: usize) -> (Vec<f64>, Vec<String>) {
    if log && let Some(t) = log_ticks(lo, hi, target) {
        return t;
    }
    linear_ticks(lo, hi, target)
}

fn linear_ticks(lo: f64, hi: f64, target: usize) -> (Vec<f64>, Vec<String>) {
    let span = hi - lo;
    if !(span.is_finite() && span > 0.0) {
        return (vec![lo], vec![fmt_num(lo)]);
    }
    let raw = span / target.max(1) as f64;
    let e0 = raw.log10().floor() as i32;
    // Among 1, 2, 2.5 and 5 times a power of ten near the raw step, the step
    // whose tick count is closest to the target (2.5 only when clearly
    // better; ties go to the larger step).
    let mut best: Option<(f64, f64, usize, i64, i64)> = None; // (score, step, decimals, first, last)
    for e in (e0 - 1)..=(e0 + 1) {
        let mag = pow10(e);
        for (m, extra) in [(1.0, 0), (2.0, 0), (2.5, 1), (5.0, 0)] {
            let step = m * mag;
            let first = (lo / step - 1e-9).ceil() as i64;
            let last = (hi / step + 1e-9).floor() as i64;
            let count = last - first + 1;
            if !(2..=1000).contains(&count) {
                continue;
            }
            // 2.5 steps are less readable, more so when they need a decimal.
            let penalty = match (extra, e) {
                (1, e) if e >= 1 => 0.5,
                (1, _) => 1.25,
                _ => 0.0,
            };
            let score = (count as f64 - target as f64).abs() + penalty;
            let decimals = (extra - e).max(0) as usize;
            if best.is_none_or(|b| score <= b.0) {
                best = Some((score, step, decimals, first, last));
            }
        }
    }
    let Some((_, step, decimals, first, last)) = best else {
        return (vec![lo], vec![fmt_num(lo)]);
    };
    let ticks: Vec<f64> = (first..=last).map(|k| k as f64 * step).collect();
    let labels = ticks.iter().map(|&t| fmt_fixed(t, decimals)).collect();
    (ticks, labels)
}

fn log_ticks(lo: f64, hi: f64, target: usize) -> Option<(Vec<f64>, Vec<String>)> {
    if !(lo > 0.0 && hi > lo) {
        return None;
    }
    let a = (lo.log10() - 1e-9).ceil() as i32;
    let b = (hi.log10() + 1e-9).floor() as i32;
    let decades: Vec<f64> = (a..=b).map(pow10).collect();
    let ticks = if decades.len() >= 2 {
        let stride = decades.len().div_ceil(target.max(2));
        decades.into_iter().step_by(stride.max(1)).collect()
    } else {
        let mut t = Vec::new();
        for k in (a - 1)..=(b + 1) {
            for m in [1.0, 2.0, 5.0] {
                let v = m * pow10(k);
                if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                    t.push(v);
                }
            }
        }
        if t.len() < 2 {
            return None;
        }
        t
    };
    let labels = ticks.iter().map(|&t| fmt_num(t)).collect();
    Some((ticks, labels))
}

/// Ticks given in the spec: the finite ones within the axis range (positive
/// ones on a log axis), ascending, labelled with a common number of
/// decimals.
pub(super) fn custom_ticks(given: &[f64], lo: f64, hi: f64, log: bool) -> (Vec<f64>, Vec<String>) {
    let eps = 1e-9 * (hi - lo).abs().max(f64::MIN_POSITIVE);
    let mut t: Vec<f64> = given
        .iter()
        .copied()
        .filter(|v| v.is_finite() && *v >= lo - eps && *v <= hi + eps && (!log || *v > 0.0))
        .collect();
    t.sort_by(f64::total_cmp);
    t.dedup();
    let labels = common_labels(&t);
    (t, labels)
}

/// Labels for a set of numbers with a common number of decimals (the most
/// any of them needs), like matplotlib's fixed formatter.
fn common_labels(values: &[f64]) -> Vec<String> {
    let plain: Vec<String> = values.iter().map(|&v| fmt_num(v)).collect();
    if plain.iter().any(|s| s.contains('e')) {
        return plain;
    }
    let decimals = plain
        .iter()
        .map(|s| s.split_once('.').map_or(0, |(_, d)| d.len()))
        .max()
        .unwrap_or(0);
    values.iter().map(|&v| fmt_fixed(v, decimals)).collect()
}

/// `10^k`, exactly as the decimal literal `1ek` parses.
fn pow10(k: i32) -> f64 {
    format!("1e{k}").parse().unwrap_or_else(|_| 10f64.powi(k))
}

/// Fixed-point formatting that never prints "-0".
pub(super) fn fmt_fixed(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
        s[1..].to_string()
    } else {
        s
    }
}

/// A number as a short label: up to 6 significant digits, trailing zeros
/// trimmed, scientific notation outside `1e-4..1e7`.
pub(super) fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v == 0.0 {
        return "0".to_string();
    }
    let a = v.abs();
    if !(1e-4..1e7).contains(&a) {
        let s = format!("{v:.5e}");
        return match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim_zeros(m)),
            None => s,
        };
    }
    let mag = a.log10().floor() as i32;
    let decimals = (5 - mag).clamp(0, 10) as usize;
    trim_zeros(&fmt_fixed(v, decimals)).to_string()
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A value rounded to 6 significant digits (for `describe`, so float noise
/// never shows up in golden files).
pub(super) fn round6(v: f64) -> f64 {
    fmt_num(v).parse().unwrap_or(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_linear() {
        let (t, l) = linear_ticks(12.62, 31.98, 6);
        assert_eq!(l, vec!["15", "20", "25", "30"]);
        assert_eq!(t.len(), 4);
        let (_, l) = linear_ticks(0.834, 0.921, 5);
        assert_eq!(l, vec!["0.84", "0.86", "0.88", "0.90", "0.92"]);
        let (_, l) = linear_ticks(-7.0, 157.0, 6);
        assert_eq!(l, vec!["0", "25", "50", "75", "100", "125", "150"]);
        let (_, l) = linear_ticks(-1.0, 1.0, 5);
        assert_eq!(l, vec!["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
        let (_, l) = linear_ticks(0.0, 1.0, 6);
        assert_eq!(l, vec!["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }

    #[test]
    fn log_and_format() {
        let (_, l) = auto_ticks(18.1, 165.9, true, 5);
        assert_eq!(l, vec!["20", "50", "100"]);
        let (_, l) = auto_ticks(0.5, 20000.0, true, 6);
        assert_eq!(l, vec!["1", "10", "100", "1000", "10000"]);
        assert_eq!(fmt_num(1.5e7), "1.5e7");
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(fmt_num(-0.0), "0");
        assert_eq!(fmt_fixed(-0.0001, 2), "0.00");
        assert_eq!(common_labels(&[0.84, 0.9]), vec!["0.84", "0.90"]);
    }
}
