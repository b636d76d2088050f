//! gemm's matrix-vector arithmetic (the module doc of [`super`]) with AVX2
//! and FMA intrinsics: gemm's `V3` kernel, 8 lanes.
//!
//! Written out with intrinsics rather than left to the compiler: the
//! portable order ([`super::dot_portable`]) compiled with these features
//! stays scalar (one `vfmadd213ss` and a stack store per lane), about three
//! times slower than the memory allows. There is no two-row kernel here
//! (see `dot2_kernel` in [`super`]): sixteen accumulators do not fit in
//! AVX2's sixteen registers.

use std::arch::x86_64::*;

/// Lanes per vector.
const L: usize = 8;

/// Inputs per block of eight accumulators.
const BLOCK: usize = 8 * L;

/// [`super::dot`] with AVX2 and FMA.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot(w: &[f32], x: &[f32]) -> f32 {
    let k = w.len().min(x.len());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let (k_blocks, k_lanes) = (k / BLOCK * BLOCK, k / L * L);
    let mut acc = [_mm256_setzero_ps(); 8];
    let mut d = 0;
    while d < k_blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            let i = d + L * j;
            // SAFETY: i + L <= k_blocks <= k, within both slices.
            let (wv, xv) = unsafe { (_mm256_loadu_ps(wp.add(i)), _mm256_loadu_ps(xp.add(i))) };
            *a = _mm256_fmadd_ps(wv, xv, *a);
        }
        d += BLOCK;
    }
    let mut a = sum_tree(acc);
    while d < k_lanes {
        // SAFETY: d + L <= k_lanes <= k, within both slices.
        let (wv, xv) = unsafe { (_mm256_loadu_ps(wp.add(d)), _mm256_loadu_ps(xp.add(d))) };
        a = _mm256_fmadd_ps(wv, xv, a);
        d += L;
    }
    super::sum_lanes_then_tail(&lanes(a), w, x, d, k)
}

/// The eight accumulators summed in pairs,
/// `((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7))`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn sum_tree(a: [__m256; 8]) -> __m256 {
    let a01 = _mm256_add_ps(a[0], a[1]);
    let a23 = _mm256_add_ps(a[2], a[3]);
    let a45 = _mm256_add_ps(a[4], a[5]);
    let a67 = _mm256_add_ps(a[6], a[7]);
    _mm256_add_ps(_mm256_add_ps(a01, a23), _mm256_add_ps(a45, a67))
}

/// The lanes of `a`, lane 0 first.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn lanes(a: __m256) -> [f32; L] {
    let mut out = [0f32; L];
    // SAFETY: `out` holds L floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), a) };
    out
}

/// gemm's horizontal order ([`super::horizontal`]) over one depth block
/// for `R` rows `ws[r]` against one `x` (all as long): per row one
/// accumulator, the last partial load zero-filled, the lanes halved to four
/// and then `(a0 + a2) + (a1 + a3)`. The rows' chains of dependent
/// multiply-adds interleave, so `R` rows cost about what one does.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn horizontal_block<const R: usize>(ws: [&[f32]; R], x: &[f32]) -> [f32; R] {
    let k = ws.iter().fold(x.len(), |k, w| k.min(w.len()));
    let xp = x.as_ptr();
    let mut acc = [_mm256_setzero_ps(); R];
    let mut d = 0;
    while d + L <= k {
        // SAFETY: d + L <= k, within x and every row.
        let xv = unsafe { _mm256_loadu_ps(xp.add(d)) };
        for (a, w) in acc.iter_mut().zip(ws) {
            // SAFETY: as above.
            let wv = unsafe { _mm256_loadu_ps(w.as_ptr().add(d)) };
            *a = _mm256_fmadd_ps(xv, wv, *a);
        }
        d += L;
    }
    if d < k {
        let mut xt = [0f32; L];
        xt[..k - d].copy_from_slice(&x[d..k]);
        // SAFETY: `xt` holds L floats.
        let xv = unsafe { _mm256_loadu_ps(xt.as_ptr()) };
        for (a, w) in acc.iter_mut().zip(ws) {
            let mut wt = [0f32; L];
            wt[..k - d].copy_from_slice(&w[d..k]);
            // SAFETY: `wt` holds L floats.
            let wv = unsafe { _mm256_loadu_ps(wt.as_ptr()) };
            *a = _mm256_fmadd_ps(xv, wv, *a);
        }
    }
    acc.map(|a| {
        let half = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
        let mut h = [0f32; 4];
        // SAFETY: `h` holds 4 floats.
        unsafe { _mm_storeu_ps(h.as_mut_ptr(), half) };
        (h[0] + h[2]) + (h[1] + h[3])
    })
}

/// `o[i] = fma(row[i], p, o[i])` for every entry of `o` (and `row`, as
/// long).
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn multiply_add(row: &[f32], p: f32, o: &mut [f32]) {
    let n = row.len().min(o.len());
    let (rp, op) = (row.as_ptr(), o.as_mut_ptr());
    let pv = _mm256_set1_ps(p);
    let mut i = 0;
    while i + L <= n {
        // SAFETY: i + L <= n, within both slices.
        unsafe {
            let r = _mm256_loadu_ps(rp.add(i));
            let acc = _mm256_loadu_ps(op.add(i));
            _mm256_storeu_ps(op.add(i), _mm256_fmadd_ps(r, pv, acc));
        }
        i += L;
    }
    for j in i..n {
        o[j] = row[j].mul_add(p, o[j]);
    }
}
