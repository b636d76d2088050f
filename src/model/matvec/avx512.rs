//! gemm's matrix-vector arithmetic (the module doc of [`super`]) with
//! AVX-512F intrinsics: gemm's `V4` kernel, 16 lanes.

use std::arch::x86_64::*;

/// [`dot`] of two rows `w0`, `w1` (each as long as `x`) against one
/// `x`, each with its own accumulators and in its own order. Each line of
/// the rows it reads, it asks for the line `ahead` floats further on (see
/// `dot_rows` in [`super`]); a prefetch never faults, so those lines may
/// lie past the rows.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot2(w0: &[f32], w1: &[f32], x: &[f32], ahead: usize) -> (f32, f32) {
    let k = x.len().min(w0.len()).min(w1.len());
    let (p0, p1, xp) = (w0.as_ptr(), w1.as_ptr(), x.as_ptr());
    let (k_blocks, k_lanes) = (k / 128 * 128, k / 16 * 16);
    let mut acc0 = [_mm512_setzero_ps(); 8];
    let mut acc1 = [_mm512_setzero_ps(); 8];
    let mut d = 0;
    while d < k_blocks {
        for j in 0..8 {
            let i = d + 16 * j;
            // SAFETY: i + 16 <= k_blocks <= k, within all three slices.
            let (xv, v0, v1) = unsafe {
                (
                    _mm512_loadu_ps(xp.add(i)),
                    _mm512_loadu_ps(p0.add(i)),
                    _mm512_loadu_ps(p1.add(i)),
                )
            };
            acc0[j] = _mm512_fmadd_ps(v0, xv, acc0[j]);
            acc1[j] = _mm512_fmadd_ps(v1, xv, acc1[j]);
            prefetch(p0.wrapping_add(i + ahead));
            prefetch(p1.wrapping_add(i + ahead));
        }
        d += 128;
    }
    let (mut a0, mut a1) = (sum_tree(acc0), sum_tree(acc1));
    while d < k_lanes {
        // SAFETY: d + 16 <= k_lanes <= k, within all three slices.
        let (xv, v0, v1) = unsafe {
            (
                _mm512_loadu_ps(xp.add(d)),
                _mm512_loadu_ps(p0.add(d)),
                _mm512_loadu_ps(p1.add(d)),
            )
        };
        a0 = _mm512_fmadd_ps(v0, xv, a0);
        a1 = _mm512_fmadd_ps(v1, xv, a1);
        prefetch(p0.wrapping_add(d + ahead));
        prefetch(p1.wrapping_add(d + ahead));
        d += 16;
    }
    let (mut l0, mut l1) = ([0f32; 16], [0f32; 16]);
    // SAFETY: `l0` and `l1` hold 16 floats each.
    unsafe {
        _mm512_storeu_ps(l0.as_mut_ptr(), a0);
        _mm512_storeu_ps(l1.as_mut_ptr(), a1);
    }
    (
        super::sum_lanes_then_tail(&l0, w0, x, d, k),
        super::sum_lanes_then_tail(&l1, w1, x, d, k),
    )
}

/// Asks for the cache line holding `p`. A hint: it reads nothing into the
/// program and never faults, wherever `p` points.
#[inline(always)]
fn prefetch(p: *const f32) {
    // SAFETY: a prefetch has no architectural effect and cannot fault.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) }
}

/// Step 2 of the module doc with AVX-512F: the eight accumulators summed
/// in pairs, `((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7))`.
#[inline]
#[target_feature(enable = "avx512f")]
fn sum_tree(a: [__m512; 8]) -> __m512 {
    let a01 = _mm512_add_ps(a[0], a[1]);
    let a23 = _mm512_add_ps(a[2], a[3]);
    let a45 = _mm512_add_ps(a[4], a[5]);
    let a67 = _mm512_add_ps(a[6], a[7]);
    _mm512_add_ps(_mm512_add_ps(a01, a23), _mm512_add_ps(a45, a67))
}

/// [`super::dot`] with AVX-512F intrinsics: gemm's `V4` kernel, 16 lanes.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn dot(w: &[f32], x: &[f32]) -> f32 {
    let k = w.len().min(x.len());
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let (k_blocks, k_lanes) = (k / 128 * 128, k / 16 * 16);
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut d = 0;
    while d < k_blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            let i = d + 16 * j;
            // SAFETY: i + 16 <= k_blocks <= k, within both slices.
            let (wv, xv) = unsafe { (_mm512_loadu_ps(wp.add(i)), _mm512_loadu_ps(xp.add(i))) };
            *a = _mm512_fmadd_ps(wv, xv, *a);
        }
        d += 128;
    }
    let mut a = sum_tree(acc);
    while d < k_lanes {
        // SAFETY: d + 16 <= k_lanes <= k, within both slices.
        let (wv, xv) = unsafe { (_mm512_loadu_ps(wp.add(d)), _mm512_loadu_ps(xp.add(d))) };
        a = _mm512_fmadd_ps(wv, xv, a);
        d += 16;
    }
    let mut lanes = [0f32; 16];
    // SAFETY: `lanes` holds 16 floats.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), a) };
    super::sum_lanes_then_tail(&lanes, w, x, d, k)
}

/// gemm's horizontal order ([`super::horizontal`]) over one depth block
/// for `R` rows `ws[r]` against one `x` (all as long), 16 lanes: per row
/// one accumulator, the last partial load zero-filled, the lanes halved to
/// eight, then to four, then `(a0 + a2) + (a1 + a3)`. The rows' chains of
/// dependent multiply-adds interleave, so `R` rows cost about what one
/// does.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub unsafe fn horizontal_block<const R: usize>(ws: [&[f32]; R], x: &[f32]) -> [f32; R] {
    let k = ws.iter().fold(x.len(), |k, w| k.min(w.len()));
    let xp = x.as_ptr();
    let mut acc = [_mm512_setzero_ps(); R];
    let mut d = 0;
    while d + 16 <= k {
        // SAFETY: d + 16 <= k, within x and every row.
        let xv = unsafe { _mm512_loadu_ps(xp.add(d)) };
        for (a, w) in acc.iter_mut().zip(ws) {
            // SAFETY: as above.
            let wv = unsafe { _mm512_loadu_ps(w.as_ptr().add(d)) };
            *a = _mm512_fmadd_ps(xv, wv, *a);
        }
        d += 16;
    }
    if d < k {
        let mask: __mmask16 = (1u16 << (k - d)) - 1;
        // SAFETY: the mask covers only d..k, within x and every row.
        let xv = unsafe { _mm512_maskz_loadu_ps(mask, xp.add(d)) };
        for (a, w) in acc.iter_mut().zip(ws) {
            // SAFETY: as above.
            let wv = unsafe { _mm512_maskz_loadu_ps(mask, w.as_ptr().add(d)) };
            *a = _mm512_fmadd_ps(xv, wv, *a);
        }
    }
    acc.map(|a| {
        let mut l = [0f32; 16];
        // SAFETY: `l` holds 16 floats.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), a) };
        let h8: [f32; 8] = std::array::from_fn(|i| l[i] + l[i + 8]);
        let h4: [f32; 4] = std::array::from_fn(|i| h8[i] + h8[i + 4]);
        (h4[0] + h4[2]) + (h4[1] + h4[3])
    })
}
