//! Fused CPU kernels of the hand-written training step, on plain slices.
//!
//! Every kernel is one pass over its rows, split into fixed-size chunks for
//! rayon. Sums inside a row run left to right, and a reduction over rows
//! (the gain gradient of RMSNorm) adds per-chunk partial sums in chunk order,
//! so no result depends on the number of threads. The matrix products go
//! through the `gemm` crate (the one candle's CPU matmul uses) with explicit
//! strides, so transposed operands cost no copies.

pub use super::num::{Real, dot, max, sum};
use rayon::prelude::*;

/// Rows per rayon task in the row-wise kernels (fixed: results must not
/// depend on the thread count).
pub const ROWS: usize = 16;

/// A strided read-only matrix operand: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Mat<'a, T> {
    /// The backing slice.
    pub data: &'a [T],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A row-major matrix with `cols` columns.
    pub fn rows(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: cols,
            cs: 1,
        }
    }
    /// The transpose of a row-major matrix with `cols` columns.
    pub fn t(data: &'a [T], cols: usize) -> Self {
        Mat {
            data,
            rs: 1,
            cs: cols,
        }
    }
}

fn extent(r: usize, c: usize, rs: usize, cs: usize) -> usize {
    if r == 0 || c == 0 {
        0
    } else {
        (r - 1) * rs + (c - 1) * cs + 1
    }
}

/// The gemm parallelism for a product run on the calling thread's pool
/// (`par`) or inside a task that is already parallel.
fn parallelism(par: bool) -> gemm::Parallelism {
    let n = rayon::current_num_threads();
    if par && n > 1 {
        gemm::Parallelism::Rayon(n)
    } else {
        gemm::Parallelism::None
    }
}

/// `dst (m x n, row stride dst_rs) = [dst +] a (m x k) @ b (k x n)`.
///
/// Panics when an operand is shorter than its shape and strides need (a bug
/// in the caller, never a user input).
#[allow(clippy::too_many_arguments)]
pub fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    dst_rs: usize,
    acc: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: bool,
) {
    assert!(
        extent(m, n, dst_rs, 1) <= dst.len(),
        "matmul: dst too short"
    );
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "matmul: lhs too short"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "matmul: rhs too short"
    );
    // SAFETY: the asserts above keep every accessed element inside the three
    // slices; `dst` is borrowed mutably, so it cannot alias `a` or `b`.
    unsafe { matmul_raw(m, n, k, dst.as_mut_ptr(), dst_rs, acc, a, b, par) }
}

/// [`matmul`] into a raw destination, for tasks that write disjoint strided
/// blocks of one buffer.
///
/// # Safety
/// `dst` must be valid for writes at `i * dst_rs + j` for `i < m`, `j < n`,
/// no other thread may access those elements meanwhile, and they must not
/// overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn matmul_raw<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_rs: usize,
    acc: bool,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    par: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        extent(m, k, a.rs, a.cs) <= a.data.len(),
        "matmul: lhs too short"
    );
    assert!(
        extent(k, n, b.rs, b.cs) <= b.data.len(),
        "matmul: rhs too short"
    );
    // SAFETY: operand extents are checked above; the destination contract is
    // the caller's (see the function's safety section).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            acc,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            parallelism(par),
        )
    }
}

/// RMSNorm forward over rows of `d`: `h = x * r * w` with
/// `r = 1 / sqrt(mean(x^2) + eps)` stored per row in `r`.
pub fn rms_fwd<T: Real>(x: &[T], w: &[T], eps: f64, h: &mut [T], r: &mut [T]) {
    let d = w.len();
    let e = T::from(eps).unwrap_or(T::zero());
    let n = T::from(d).unwrap_or(T::one());
    h.par_chunks_mut(d * ROWS)
        .zip(r.par_chunks_mut(ROWS))
        .zip(x.par_chunks(d * ROWS))
        .for_each(|((hc, rc), xc)| {
            for ((hr, rr), xr) in hc.chunks_mut(d).zip(rc.iter_mut()).zip(xc.chunks(d)) {
                let ms: T = dot(xr, xr) / n;
                let inv = T::one() / (ms + e).sqrt();
                *rr = inv;
                for ((h, &x), &w) in hr.iter_mut().zip(xr).zip(w) {
                    *h = x * inv * w;
                }
            }
        });
}

/// RMSNorm backward: `dx (+)= r * (dh * w - xhat * mean(dh * w * xhat))`
/// (added to `dx` when `acc`), and `dw = sum over rows of dh * xhat`.
pub fn rms_bwd<T: Real>(
    x: &[T],
    w: &[T],
    r: &[T],
    dh: &[T],
    dx: &mut [T],
    acc: bool,
    dw: &mut [T],
) {
    let d = w.len();
    let n = T::from(d).unwrap_or(T::one());
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(d * ROWS)
        .zip(x.par_chunks(d * ROWS))
        .zip(dh.par_chunks(d * ROWS))
        .zip(r.par_chunks(ROWS))
        .map(|(((dxc, xc), dhc), rc)| {
            let mut part = vec![T::zero(); d];
            for (((dxr, xr), dhr), &ri) in dxc
                .chunks_mut(d)
                .zip(xc.chunks(d))
                .zip(dhc.chunks(d))
                .zip(rc)
            {
                let mut dot = T::zero();
                for j in 0..d {
                    let xh = xr[j] * ri;
                    dot += dhr[j] * w[j] * xh;
                    part[j] += dhr[j] * xh;
                }
                let dot = dot / n;
                for j in 0..d {
                    let v = ri * (dhr[j] * w[j] - xr[j] * ri * dot);
                    if acc {
                        dxr[j] += v;
                    } else {
                        dxr[j] = v;
                    }
                }
            }
            part
        })
        .collect();
    dw.fill(T::zero());
    for p in partials {
        for (a, b) in dw.iter_mut().zip(p) {
            *a += b;
        }
    }
}

/// RoPE (HF rotate-half layout) in place on rows of `width = heads * hd`;
/// row `i` has position `i % t`; `cos`/`sin` are `(positions, hd / 2)`.
/// `inverse` rotates the other way (the backward pass: the rotation is
/// orthogonal, so its transpose is its inverse).
#[allow(clippy::too_many_arguments)]
pub fn rope<T: Real>(
    x: &mut [T],
    width: usize,
    t: usize,
    hd: usize,
    cos: &[T],
    sin: &[T],
    inverse: bool,
) {
    let half = hd / 2;
    x.par_chunks_mut(width * ROWS)
        .enumerate()
        .for_each(|(c, xc)| {
            for (r, row) in xc.chunks_mut(width).enumerate() {
                let p = (c * ROWS + r) % t;
                let (cs, sn) = (
                    &cos[p * half..(p + 1) * half],
                    &sin[p * half..(p + 1) * half],
                );
                for head in row.chunks_mut(hd) {
                    for i in 0..half {
                        let c = cs[i];
                        let s = if inverse { -sn[i] } else { sn[i] };
                        let (a, b) = (head[i], head[i + half]);
                        head[i] = a * c - b * s;
                        head[i + half] = b * c + a * s;
                    }
                }
            }
        });
}

/// Causal softmax in place on one head's scores `(t, t)`: row `i` becomes
/// `softmax(scale * s[i, 0..=i])` and exact zeros after it.
pub fn causal_softmax<T: Real>(s: &mut [T], t: usize, scale: T) {
    for (i, row) in s.chunks_mut(t).enumerate() {
        let valid = i + 1;
        // scale > 0, so max(v * scale) = max(v) * scale exactly.
        let m = max(&row[..valid]) * scale;
        for v in &mut row[..valid] {
            *v = (*v * scale - m).exp_fast();
        }
        let inv = T::one() / sum(&row[..valid]);
        for v in &mut row[..valid] {
            *v *= inv;
        }
        for v in &mut row[valid..] {
            *v = T::zero();
        }
    }
}

/// Backward of [`causal_softmax`] in place: `da` (the gradient of the
/// probabilities `p`) becomes the gradient of the raw scores,
/// `scale * p * (da - sum(p * da))`.
pub fn causal_softmax_bwd<T: Real>(p: &[T], da: &mut [T], t: usize, scale: T) {
    for (i, (pr, dr)) in p.chunks(t).zip(da.chunks_mut(t)).enumerate() {
        let valid = i + 1;
        let dt = dot(&pr[..valid], &dr[..valid]);
        for (d, &p) in dr[..valid].iter_mut().zip(&pr[..valid]) {
            *d = scale * p * (*d - dt);
        }
        for v in &mut dr[valid..] {
            *v = T::zero();
        }
    }
}

/// SwiGLU forward: `a = silu(g) * u`, elementwise; keeps `sig = sigmoid(g)`
/// for the backward pass.
pub fn swiglu<T: Real>(g: &[T], u: &[T], a: &mut [T], sig: &mut [T]) {
    const CH: usize = 1 << 12;
    a.par_chunks_mut(CH)
        .zip(sig.par_chunks_mut(CH))
        .zip(g.par_chunks(CH))
        .zip(u.par_chunks(CH))
        .for_each(|(((ac, sc), gc), uc)| {
            for (((a, s), &g), &u) in ac.iter_mut().zip(sc.iter_mut()).zip(gc).zip(uc) {
                let sg = T::one() / (T::one() + (-g).exp_fast());
                *s = sg;
                *a = g * sg * u;
            }
        });
}

/// SwiGLU backward in place: on entry `g`, `u` and `sig` hold the forward
/// inputs and sigmoid and `da` the output gradient; on return `g` holds `dg`
/// and `u` holds `du`.
pub fn swiglu_bwd<T: Real>(g: &mut [T], u: &mut [T], sig: &[T], da: &[T]) {
    const CH: usize = 1 << 12;
    g.par_chunks_mut(CH)
        .zip(u.par_chunks_mut(CH))
        .zip(sig.par_chunks(CH))
        .zip(da.par_chunks(CH))
        .for_each(|(((gc, uc), sc), dc)| {
            for (((g, u), &sg), &d) in gc.iter_mut().zip(uc.iter_mut()).zip(sc).zip(dc) {
                let x = *g;
                let du = d * x * sg;
                *g = d * *u * sg * (T::one() + x * (T::one() - sg));
                *u = du;
            }
        });
}

/// `x += y`, elementwise.
pub fn add_assign<T: Real>(x: &mut [T], y: &[T]) {
    const CH: usize = 1 << 14;
    x.par_chunks_mut(CH)
        .zip(y.par_chunks(CH))
        .for_each(|(xc, yc)| {
            for (a, b) in xc.iter_mut().zip(yc) {
                *a += *b;
            }
        });
}

/// Cross-entropy of `logits` `(n, v)` against `targets`: returns the mean
/// loss (row losses added in row order, then divided by `n`) and replaces
/// the logits by the gradient of that mean, `(softmax - onehot) / n`.
pub fn cross_entropy<T: Real>(logits: &mut [T], v: usize, targets: &[u32]) -> T {
    let n = T::from(targets.len().max(1)).unwrap_or(T::one());
    let per: Vec<T> = logits
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .map(|(row, &tg)| {
            let tg = tg as usize;
            let m = max(row);
            let zt = row[tg];
            for z in row.iter_mut() {
                *z = (*z - m).exp_fast();
            }
            let total = sum(row);
            let loss = total.ln() + m - zt;
            let inv = T::one() / (total * n);
            for z in row.iter_mut() {
                *z *= inv;
            }
            row[tg] -= T::one() / n;
            loss
        })
        .collect();
    per.into_iter().fold(T::zero(), |a, b| a + b) / n
}
