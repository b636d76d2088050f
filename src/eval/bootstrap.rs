//! Percentile bootstrap confidence intervals for a mean.
//!
//! Each resample draws `n` items with replacement from the `n` outcomes
//! (indices from [`Rng::derive`]`(seed, "bootstrap")`, drawn with
//! [`Rng::below`] in order) and takes their mean. The interval at level `L`
//! is the `(1 - L) / 2` and `(1 + L) / 2` quantiles of the resampled means,
//! with linear interpolation between order statistics (numpy's default:
//! position `q * (B - 1)` in the sorted means). Outcomes may be 0/1
//! (accuracy, preference) or any numbers.

use crate::rng::Rng;

/// The resample count the evaluation ops use.
pub const RESAMPLES: usize = 1000;

/// The quantile `q` in `[0, 1]` of sorted values, linearly interpolated;
/// NaN for an empty slice.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// The percentile bootstrap interval of the mean of `values` at `level`
/// (e.g. 0.95), from `resamples` resamples seeded by `seed`. Returns
/// `(NaN, NaN)` for no values or no resamples.
pub fn bootstrap_ci_level(values: &[f64], resamples: usize, level: f64, seed: u64) -> (f64, f64) {
    let n = values.len();
    if n == 0 || resamples == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mut rng = Rng::derive(seed, "bootstrap");
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..n {
                sum += values[rng.below(n)];
            }
            sum / n as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let alpha = (1.0 - level).clamp(0.0, 1.0);
    (
        quantile_sorted(&means, alpha / 2.0),
        quantile_sorted(&means, 1.0 - alpha / 2.0),
    )
}

/// The 95% percentile bootstrap interval of the mean of `values`.
pub fn bootstrap_ci(values: &[f64], resamples: usize, seed: u64) -> (f64, f64) {
    bootstrap_ci_level(values, resamples, 0.95, seed)
}

/// 0/1 outcomes as numbers, for [`bootstrap_ci`].
pub fn outcomes(flags: &[bool]) -> Vec<f64> {
    flags.iter().map(|&b| if b { 1.0 } else { 0.0 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let s = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile_sorted(&s, 0.0), 0.0);
        assert_eq!(quantile_sorted(&s, 1.0), 4.0);
        assert_eq!(quantile_sorted(&s, 0.5), 2.0);
        assert_eq!(quantile_sorted(&s, 0.125), 0.5);
        assert!(quantile_sorted(&[], 0.5).is_nan());
    }

    #[test]
    fn deterministic_and_contains_the_mean() {
        let flags: Vec<bool> = (0..200).map(|i| i % 3 == 0).collect();
        let v = outcomes(&flags);
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let a = bootstrap_ci(&v, RESAMPLES, 0);
        let b = bootstrap_ci(&v, RESAMPLES, 0);
        assert_eq!(a, b);
        assert!(a.0 < m && m < a.1, "{a:?} vs {m}");
        // Roughly +-1.96 standard errors: sqrt(m(1-m)/n) ~ 0.033.
        assert!(a.1 - a.0 > 0.08 && a.1 - a.0 < 0.18, "{a:?}");
        let c = bootstrap_ci(&v, RESAMPLES, 1);
        assert_ne!(a, c);
        assert!(c.0 < m && m < c.1);
        let wide = bootstrap_ci_level(&v, RESAMPLES, 0.99, 0);
        assert!(wide.0 <= a.0 && wide.1 >= a.1);
    }

    #[test]
    fn degenerate_inputs() {
        assert_eq!(bootstrap_ci(&[1.0; 10], 100, 0), (1.0, 1.0));
        let (lo, hi) = bootstrap_ci(&[], 100, 0);
        assert!(lo.is_nan() && hi.is_nan());
        let (lo, hi) = bootstrap_ci(&[0.5], 0, 0);
        assert!(lo.is_nan() && hi.is_nan());
    }
}
