//! A matrix transposed into another's place: prefill's rows of
//! activations into the panels its kernel reads ([`super::rows`]), and
//! each thread's transposed outputs back into the rows of the result.
//!
//! Both run once per product on data far smaller than the weights, but
//! element by element, with a bounds check per index, they took a tenth
//! of a SmolLM2 prefill's products on the 2-core AMD EPYC (Zen 5). Here
//! blocks of 8 × 8 go through AVX registers (eight loads, 24 shuffles,
//! eight stores), and only the edges that do not fill a block go element
//! by element. Moving floats changes no bit.

/// Rows and columns of a block moved through registers.
const BLOCK: usize = 8;

/// `dst[c * dst_stride + r] = src[r * src_stride + c]` for `r < rows`, `c
/// < cols`.
///
/// # Safety
/// `src` must be valid to read at every such `r * src_stride + c`, and
/// `dst` valid to write at every `c * dst_stride + r`, with no other
/// thread reading or writing those places meanwhile; the two must not
/// overlap.
pub unsafe fn transpose(
    src: *const f32,
    src_stride: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    dst_stride: usize,
) {
    let m = Matrices {
        src,
        src_stride,
        dst,
        dst_stride,
    };
    let (full_rows, full_cols) = (rows - rows % BLOCK, cols - cols % BLOCK);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        for r in (0..full_rows).step_by(BLOCK) {
            for c in (0..full_cols).step_by(BLOCK) {
                // SAFETY: the block lies within rows × cols (as the
                // caller promised); the CPU has AVX.
                unsafe { avx_block(m, r, c) };
            }
        }
        // SAFETY: as for this function, on its edges.
        unsafe { edges(m, rows, cols, full_rows, full_cols) };
        return;
    }
    // SAFETY: as for this function; `0, 0` leaves every place to `edges`.
    unsafe { edges(m, rows, cols, 0, 0) };
}

/// The two matrices of a [`transpose`].
#[derive(Clone, Copy)]
struct Matrices {
    src: *const f32,
    src_stride: usize,
    dst: *mut f32,
    dst_stride: usize,
}

impl Matrices {
    /// One float moved.
    ///
    /// # Safety
    /// As for [`transpose`], at `r`, `c`.
    #[inline]
    unsafe fn one(self, r: usize, c: usize) {
        // SAFETY: as for this function.
        unsafe { *self.dst.add(c * self.dst_stride + r) = *self.src.add(r * self.src_stride + c) };
    }
}

/// The places outside the first `full_rows × full_cols`, one by one.
///
/// # Safety
/// As for [`transpose`].
unsafe fn edges(m: Matrices, rows: usize, cols: usize, full_rows: usize, full_cols: usize) {
    for r in 0..rows {
        let first = if r < full_rows { full_cols } else { 0 };
        for c in first..cols {
            // SAFETY: r < rows, c < cols.
            unsafe { m.one(r, c) };
        }
    }
}

/// The 8 × 8 block at row `r`, column `c` of the source.
///
/// # Safety
/// As for [`transpose`], for the whole block; the CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn avx_block(m: Matrices, r: usize, c: usize) {
    use std::arch::x86_64::*;
    // SAFETY: rows r..r + 8, columns c..c + 8 are within the source and
    // their transposes within the destination (as the caller promised).
    unsafe {
        // No closure: it would not be compiled with this function's
        // features.
        let mut rs = [_mm256_setzero_ps(); BLOCK];
        for (i, v) in rs.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(m.src.add((r + i) * m.src_stride + c));
        }
        let [r0, r1, r2, r3, r4, r5, r6, r7] = rs;
        let (t0, t1) = (_mm256_unpacklo_ps(r0, r1), _mm256_unpackhi_ps(r0, r1));
        let (t2, t3) = (_mm256_unpacklo_ps(r2, r3), _mm256_unpackhi_ps(r2, r3));
        let (t4, t5) = (_mm256_unpacklo_ps(r4, r5), _mm256_unpackhi_ps(r4, r5));
        let (t6, t7) = (_mm256_unpacklo_ps(r6, r7), _mm256_unpackhi_ps(r6, r7));
        let (u0, u1) = (
            _mm256_shuffle_ps::<0x44>(t0, t2),
            _mm256_shuffle_ps::<0xEE>(t0, t2),
        );
        let (u2, u3) = (
            _mm256_shuffle_ps::<0x44>(t1, t3),
            _mm256_shuffle_ps::<0xEE>(t1, t3),
        );
        let (u4, u5) = (
            _mm256_shuffle_ps::<0x44>(t4, t6),
            _mm256_shuffle_ps::<0xEE>(t4, t6),
        );
        let (u6, u7) = (
            _mm256_shuffle_ps::<0x44>(t5, t7),
            _mm256_shuffle_ps::<0xEE>(t5, t7),
        );
        let cols = [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ];
        for (i, v) in cols.into_iter().enumerate() {
            _mm256_storeu_ps(m.dst.add((c + i) * m.dst_stride + r), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape from 1 × 1 to 19 × 19, strides wider than the matrix:
    /// each float lands where a plain loop puts it, and nothing else is
    /// written.
    #[test]
    fn transpose_moves_every_float_to_its_place() {
        for rows in 1..20 {
            for cols in 1..20 {
                let (ss, ds) = (cols + 3, rows + 5);
                let src: Vec<f32> = (0..rows * ss).map(|i| i as f32).collect();
                let mut dst = vec![-1f32; cols * ds];
                // SAFETY: both buffers cover the strides' places.
                unsafe { transpose(src.as_ptr(), ss, rows, cols, dst.as_mut_ptr(), ds) };
                for c in 0..cols {
                    for r in 0..ds {
                        let want = if r < rows { src[r * ss + c] } else { -1.0 };
                        assert_eq!(
                            dst[c * ds + r],
                            want,
                            "{rows} x {cols}: row {r}, column {c}"
                        );
                    }
                }
            }
        }
    }
}
