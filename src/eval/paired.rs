//! Paired comparisons of two systems on the same items: the exact
//! one-sided McNemar test on 0/1 outcomes, the exact binomial test of one
//! system against a fixed rate, and a paired percentile bootstrap of the
//! difference of means.
//!
//! "Paired" means item `i` of `x` and item `i` of `y` are the same question
//! (or prompt) answered by two models: the test only looks at the items on
//! which they disagree, which is far more powerful than comparing two
//! independent accuracies.

use super::bootstrap::quantile_sorted;
use crate::rng::Rng;

/// `P(X >= k)` for `X ~ Binomial(n, p)`, summed in log space (exact to
/// float rounding for any `n`); 1 for `k == 0`, 0 for `k > n`.
pub fn binomial_upper_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n {
        return 0.0;
    }
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (1.0 - p).ln());
    let mut log_choose = (0..k)
        .map(|i| ((n - i) as f64 / (i + 1) as f64).ln())
        .sum::<f64>();
    let mut total = 0.0;
    for i in k..=n {
        total += (log_choose + i as f64 * lp + (n - i) as f64 * lq).exp();
        log_choose += ((n - i) as f64 / (i + 1) as f64).ln();
    }
    total.min(1.0)
}

/// One-sided exact McNemar test that `x` succeeds more often than `y` on
/// the same items: with `b` items where only `x` succeeds and `c` where
/// only `y` does, `P(B >= b)` for `B ~ Binomial(b + c, 1/2)`. 1 when they
/// never disagree. Panics never; extra items of the longer slice are ignored.
pub fn mcnemar_greater(x: &[bool], y: &[bool]) -> f64 {
    let (mut b, mut c) = (0usize, 0usize);
    for (&xi, &yi) in x.iter().zip(y) {
        match (xi, yi) {
            (true, false) => b += 1,
            (false, true) => c += 1,
            _ => {}
        }
    }
    binomial_upper_tail(b, b + c, 0.5)
}

/// One-sided exact binomial test that `x` succeeds at a rate above `rate`:
/// `P(X >= successes)` for `X ~ Binomial(n, rate)`.
pub fn binomial_greater(x: &[bool], rate: f64) -> f64 {
    let k = x.iter().filter(|&&v| v).count();
    binomial_upper_tail(k, x.len(), rate)
}

/// The sorted bootstrap distribution of `mean(x) - mean(y)` over paired
/// resamples (the same item indices for both), `resamples` of them, drawn
/// from [`Rng::derive`]`(seed, "paired-bootstrap")`. `y` may be a constant
/// (one value), which is then subtracted from every resampled mean of `x`.
/// Empty when `x` is empty or the lengths differ otherwise.
pub fn paired_bootstrap_diffs(x: &[f64], y: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let n = x.len();
    let constant = (y.len() == 1 && n != 1).then(|| y[0]);
    if n == 0 || (constant.is_none() && y.len() != n) {
        return Vec::new();
    }
    let mut rng = Rng::derive(seed, "paired-bootstrap");
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..n {
                let i = rng.below(n);
                sum += x[i] - constant.unwrap_or_else(|| y[i]);
            }
            sum / n as f64
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    diffs
}

/// One-sided bounds at confidence `1 - alpha` from a sorted bootstrap
/// distribution: `(lower, upper)` = its `alpha` and `1 - alpha` quantiles.
pub fn one_sided_bounds(sorted: &[f64], alpha: f64) -> (f64, f64) {
    (
        quantile_sorted(sorted, alpha),
        quantile_sorted(sorted, 1.0 - alpha),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binomial_tail_matches_hand_computed_values() {
        // P(X >= 8 | n=10, p=1/2) = (45 + 10 + 1) / 1024.
        assert!((binomial_upper_tail(8, 10, 0.5) - 56.0 / 1024.0).abs() < 1e-12);
        assert_eq!(binomial_upper_tail(0, 10, 0.3), 1.0);
        assert_eq!(binomial_upper_tail(11, 10, 0.3), 0.0);
        // P(X >= 1 | n=3, p=0.1) = 1 - 0.9^3.
        assert!((binomial_upper_tail(1, 3, 0.1) - (1.0 - 0.729)).abs() < 1e-12);
        // Large n stays finite and monotone.
        let a = binomial_upper_tail(230, 400, 0.5);
        let b = binomial_upper_tail(240, 400, 0.5);
        assert!(a > b && b > 0.0 && a < 0.01, "{a} {b}");
    }

    #[test]
    fn mcnemar_counts_only_discordant_items() {
        let x = [true, true, true, false, true, true];
        let y = [true, false, false, false, false, true];
        // b = 3, c = 0: P(B >= 3 | 3, 1/2) = 1/8.
        assert!((mcnemar_greater(&x, &y) - 0.125).abs() < 1e-12);
        assert!((mcnemar_greater(&y, &x) - 1.0).abs() < 1e-12);
        assert_eq!(mcnemar_greater(&x, &x), 1.0);
    }

    #[test]
    fn bootstrap_of_a_difference_is_centred_and_can_be_negative() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i % 2 == 0)).collect();
        let y: Vec<f64> = (0..200).map(|i| f64::from(i % 4 == 0)).collect();
        let d = paired_bootstrap_diffs(&x, &y, 2000, 1);
        let (lo, hi) = one_sided_bounds(&d, 0.05);
        assert!(
            lo > 0.15 && hi < 0.35 && lo < 0.25 && hi > 0.25,
            "{lo} {hi}"
        );
        let r = paired_bootstrap_diffs(&y, &x, 2000, 1);
        assert!(one_sided_bounds(&r, 0.05).1 < 0.0);
        let c = paired_bootstrap_diffs(&x, &[0.5], 500, 1);
        let (lo, hi) = one_sided_bounds(&c, 0.05);
        assert!(lo < 0.0 && hi > 0.0, "{lo} {hi}");
        assert!(paired_bootstrap_diffs(&x, &y[..10], 10, 1).is_empty());
    }
}
