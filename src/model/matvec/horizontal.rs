//! gemm's horizontal kernel for one row: the products with 256 outputs or
//! fewer (`m * n <= 16 * 16`), such as a GQA model's K and V projections,
//! which `gemm-common` 0.19 sends to its horizontal microkernels instead of
//! its matrix-vector kernel.
//!
//! For one output, over the depth in blocks of [`DEPTH_BLOCK`] inputs:
//!
//! 1. one `L`-lane accumulator, an FMA per `L` inputs, the last partial
//!    `L` inputs loaded with the missing lanes set to zero;
//! 2. the lanes halved down to four (`a[i] + a[i + L/2]`, ...), then
//!    `(a0 + a2) + (a1 + a3)`;
//! 3. the block's sum added to the sum of the blocks before it.
//!
//! [`hdot`] repeats that with `L` = 16 (AVX-512F) or 8 (AVX2 and FMA), so an
//! output is bit for bit what candle's matmul gives.

/// The depth block of gemm's horizontal path (its `kc`).
pub const DEPTH_BLOCK: usize = 1024;

/// `sum w[i] * x[i]` in gemm's horizontal order with `lanes` lanes (16 or
/// 8; what [`super::matvec`] found this CPU runs).
pub fn hdot(lanes: usize, w: &[f32], x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if lanes == 16 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return unsafe { hdot_avx512(w, x) };
        }
        if lanes == 8
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { hdot_avx2(w, x) };
        }
    }
    if lanes == 16 {
        hdot_portable::<16>(w, x)
    } else {
        hdot_portable::<8>(w, x)
    }
}

/// The horizontal order with 16 lanes, each depth block summed by
/// AVX-512F intrinsics ([`hdot_portable`]'s closure is not compiled with
/// the caller's features: it called `fmaf` from libm per lane).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn hdot_avx512(w: &[f32], x: &[f32]) -> f32 {
    // SAFETY: this function runs only where AVX-512F is present.
    let [sum] = over_depth_blocks([w], x, |ws, x| unsafe {
        super::avx512::horizontal_block(ws, x)
    });
    sum
}

/// The horizontal order with 8 lanes, each depth block summed by AVX2 and
/// FMA intrinsics (the compiler leaves [`hdot_portable`]'s 8 lanes scalar).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hdot_avx2(w: &[f32], x: &[f32]) -> f32 {
    // SAFETY: this function runs only where AVX2 and FMA are present.
    let [sum] = over_depth_blocks([w], x, |ws, x| unsafe {
        super::avx2::horizontal_block(ws, x)
    });
    sum
}

/// Four rows' depth-block sums at once, by an intrinsics kernel.
type Block4 = fn([&[f32]; 4], &[f32]) -> [f32; 4];

/// The four-row kernel for `lanes` lanes where this CPU runs one.
fn block4_kernel(lanes: usize) -> Option<Block4> {
    #[cfg(target_arch = "x86_64")]
    {
        if lanes == 16 && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked just above).
            return Some(|ws, x| unsafe { super::avx512::horizontal_block(ws, x) });
        }
        if lanes == 8
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return Some(|ws, x| unsafe { super::avx2::horizontal_block(ws, x) });
        }
    }
    let _ = lanes;
    None
}

/// `ys[r] = hdot(lanes, row r of ws, x)` for the rows of `ws` (`x.len()`
/// wide); with AVX-512F (16 lanes) or AVX2 and FMA (8), four rows at a
/// time.
pub fn hdot_rows(lanes: usize, ws: &[f32], x: &[f32], ys: &mut [f32]) {
    let k = x.len();
    if let Some(block4) = block4_kernel(lanes) {
        let mut quads = ws.chunks_exact(4 * k);
        let mut outs = ys.chunks_exact_mut(4);
        for (w4, y4) in (&mut quads).zip(&mut outs) {
            let rows: [&[f32]; 4] = std::array::from_fn(|r| &w4[r * k..(r + 1) * k]);
            y4.copy_from_slice(&over_depth_blocks(rows, x, block4));
        }
        let rest = quads.remainder().chunks_exact(k);
        for (yo, wr) in outs.into_remainder().iter_mut().zip(rest) {
            *yo = hdot(lanes, wr, x);
        }
        return;
    }
    for (yo, wr) in ys.iter_mut().zip(ws.chunks_exact(k)) {
        *yo = hdot(lanes, wr, x);
    }
}

/// The horizontal order (see the module doc) in plain Rust, `L` lanes.
#[inline(always)]
pub fn hdot_portable<const L: usize>(w: &[f32], x: &[f32]) -> f32 {
    let [sum] = over_depth_blocks([w], x, |[w], x| [block_sum::<L>(w, x)]);
    sum
}

/// Step 3 of the module doc for `R` rows at once: `block_sums` of each
/// depth block, added up per row.
#[inline(always)]
fn over_depth_blocks<const R: usize>(
    ws: [&[f32]; R],
    x: &[f32],
    block_sums: impl Fn([&[f32]; R], &[f32]) -> [f32; R],
) -> [f32; R] {
    let k = ws.iter().fold(x.len(), |k, w| k.min(w.len()));
    let mut total = [0f32; R];
    for (block, start) in (0..k).step_by(DEPTH_BLOCK).enumerate() {
        let end = (start + DEPTH_BLOCK).min(k);
        let sums = block_sums(ws.map(|w| &w[start..end]), &x[start..end]);
        for (t, s) in total.iter_mut().zip(sums) {
            // gemm writes the first block and adds each later one to it.
            *t = if block == 0 { s } else { s + *t };
        }
    }
    total
}

/// Steps 1 and 2 of the module doc over one depth block.
#[inline(always)]
fn block_sum<const L: usize>(w: &[f32], x: &[f32]) -> f32 {
    let k = w.len();
    let mut acc = [0f32; L];
    let mut d = 0;
    while d + L <= k {
        for l in 0..L {
            acc[l] = x[d + l].mul_add(w[d + l], acc[l]);
        }
        d += L;
    }
    if d < k {
        for l in 0..L {
            let (a, b) = if d + l < k {
                (x[d + l], w[d + l])
            } else {
                (0.0, 0.0)
            };
            acc[l] = a.mul_add(b, acc[l]);
        }
    }
    halve_to_one(acc)
}

/// The lanes added in halves down to four, then `(a0 + a2) + (a1 + a3)`:
/// gemm's `reduce_sum`.
#[inline(always)]
fn halve_to_one<const L: usize>(mut a: [f32; L]) -> f32 {
    let mut n = L;
    while n > 4 {
        n /= 2;
        for i in 0..n {
            a[i] += a[i + n];
        }
    }
    (a[0] + a[2]) + (a[1] + a[3])
}
