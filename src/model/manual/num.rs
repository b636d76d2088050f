//! Float arithmetic the kernels share: the [`Real`] trait (f32 for
//! training, f64 for gradient tests), a vectorizable f32 exponential, and
//! sums, dot products and maxima in eight interleaved lanes combined in a
//! fixed order, so the compiler can vectorize them and every run and thread
//! count gives the same bits.

use num_traits::{Float, NumAssign};

/// The float types the step runs in: f32 for training, f64 for gradient tests.
pub trait Real:
    Float + NumAssign + Send + Sync + 'static + candle_core::WithDType + std::iter::Sum
{
    /// `e^self`: for f32 a branch-free polynomial the compiler vectorizes
    /// (relative error below 3e-7 on the range that does not underflow;
    /// results below `e^-87` flush to about 1e-38), for f64 the libm call.
    fn exp_fast(self) -> Self;
}

impl Real for f32 {
    #[inline(always)]
    fn exp_fast(self) -> f32 {
        // e^x = 2^n * e^r with n = round(x / ln 2), |r| <= ln 2 / 2.
        let x = self.clamp(-87.0, 88.0);
        const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
        let n = (x * std::f32::consts::LOG2_E + SHIFT) - SHIFT;
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
        // Taylor series of e^r to degree 6 (truncation error < 1.3e-7 here).
        let p = 1.0
            + r * (1.0
                + r * (0.5
                    + r * (0.166_666_67
                        + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
        let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
        p * scale
    }
}

impl Real for f64 {
    #[inline(always)]
    fn exp_fast(self) -> f64 {
        self.exp()
    }
}

const LANES: usize = 8;

fn combine<T: Real>(acc: [T; LANES], tail: T) -> T {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// `sum(a[i] * b[i])` in eight interleaved partial sums combined in a fixed
/// order (vectorizable, and the same on every run and thread count).
#[inline]
pub fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let mut tail = T::zero();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += *x * *y;
    }
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    combine(acc, tail)
}

/// `sum(a)` in the order of [`dot`].
#[inline]
pub fn sum<T: Real>(a: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let ca = a.chunks_exact(LANES);
    let mut tail = T::zero();
    for x in ca.remainder() {
        tail += *x;
    }
    for x in ca {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    combine(acc, tail)
}

/// The largest element (`-inf` for an empty slice; NaNs are skipped).
#[inline]
pub fn max<T: Real>(a: &[T]) -> T {
    let mut acc = [T::neg_infinity(); LANES];
    let ca = a.chunks_exact(LANES);
    let mut m = T::neg_infinity();
    for &x in ca.remainder() {
        if x > m {
            m = x;
        }
    }
    for x in ca {
        for i in 0..LANES {
            if x[i] > acc[i] {
                acc[i] = x[i];
            }
        }
    }
    for v in acc {
        if v > m {
            m = v;
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::Real;

    #[test]
    fn fast_exp_is_close_to_libm() {
        let mut worst = 0f64;
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (x.exp_fast() as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(0f32.exp_fast(), 1.0);
        assert!(f32::NEG_INFINITY.exp_fast() < 1e-37);
    }
}
