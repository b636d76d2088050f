//! Fused CPU kernels with hand-written backward passes for the training path.
//!
//! candle's composite versions of these (`rms_norm_slow`, `ops::softmax`
//! after a mask add, `rope_slow`, `log_softmax` + gather) are differentiable
//! but run many whole-tensor passes, and their backward passes are 10-100x
//! slower than their forward ones on CPU. Each kernel here is one pass forward
//! and one pass backward, parallel over rows with rayon, for f32 and f64
//! (f64 serves the finite-difference gradient test). Every reduction runs in
//! a fixed order, so results do not depend on the thread count. On other
//! devices callers use the composite ops (`cpu_only`).

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;

trait Fl:
    Float + num_traits::NumAssign + Send + Sync + candle_core::WithDType + std::iter::Sum
{
}
impl Fl for f32 {}
impl Fl for f64 {}

fn slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [T]> {
    let data = s.as_slice::<T>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused kernel: input must be contiguous"),
    }
}

macro_rules! dispatch {
    ($s:expr, $f:ident, $($arg:expr),*) => {
        match $s {
            CpuStorage::F32(_) => $f::<f32>($($arg),*),
            CpuStorage::F64(_) => $f::<f64>($($arg),*),
            _ => candle_core::bail!("fused kernel: f32 or f64 only"),
        }
    };
}

fn wrap<T: candle_core::WithDType>(v: Vec<T>, shape: Shape) -> Result<(CpuStorage, Shape)> {
    Ok((T::to_cpu_storage_owned(v), shape))
}

const ROWS_PER_TASK: usize = 16;

// ---------------------------------------------------------------- softmax

/// Causal softmax of attention scores `(.., t, total)` times `scale`: row
/// `i` of the `t` new positions sees columns `0..=total - t + i`; masked
/// entries are exactly 0.
struct CausalSoftmax {
    scale: f64,
}

fn causal_fwd<T: Fl>(s: &CpuStorage, l: &Layout, scale: f64) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s, l)?;
    let dims = l.dims();
    let (t, total) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let past = total - t;
    let sc = T::from(scale).unwrap_or(T::one());
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(total * ROWS_PER_TASK)
        .zip(x.par_chunks(total * ROWS_PER_TASK))
        .enumerate()
        .for_each(|(c, (yc, xc))| {
            for (r, (yr, xr)) in yc.chunks_mut(total).zip(xc.chunks(total)).enumerate() {
                let i = (c * ROWS_PER_TASK + r) % t;
                let valid = past + i + 1;
                let mut m = T::neg_infinity();
                for &v in &xr[..valid] {
                    m = Float::max(m, v * sc);
                }
                let mut sum = T::zero();
                for j in 0..valid {
                    let e = (xr[j] * sc - m).exp();
                    yr[j] = e;
                    sum += e;
                }
                let inv = T::one() / sum;
                for v in &mut yr[..valid] {
                    *v *= inv;
                }
            }
        });
    wrap(y, l.shape().clone())
}

struct CausalSoftmaxBwd {
    scale: f64,
}

fn softmax_bwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    scale: f64,
) -> Result<(CpuStorage, Shape)> {
    let y = slice::<T>(s1, l1)?;
    let dy = slice::<T>(s2, l2)?;
    let total = *l1.dims().last().unwrap_or(&1);
    let sc = T::from(scale).unwrap_or(T::one());
    let mut dx = vec![T::zero(); y.len()];
    dx.par_chunks_mut(total * ROWS_PER_TASK)
        .zip(y.par_chunks(total * ROWS_PER_TASK))
        .zip(dy.par_chunks(total * ROWS_PER_TASK))
        .for_each(|((dxc, yc), dyc)| {
            for ((dxr, yr), dyr) in dxc
                .chunks_mut(total)
                .zip(yc.chunks(total))
                .zip(dyc.chunks(total))
            {
                let dot: T = yr.iter().zip(dyr).map(|(a, b)| *a * *b).sum();
                for j in 0..total {
                    dxr[j] = sc * yr[j] * (dyr[j] - dot);
                }
            }
        });
    wrap(dx, l1.shape().clone())
}

impl CustomOp2 for CausalSoftmaxBwd {
    fn name(&self) -> &'static str {
        "causal-softmax-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, softmax_bwd, s1, l1, s2, l2, self.scale)
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        dispatch!(s, causal_fwd, s, l, self.scale)
    }
    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let g =
            res.apply_op2_no_bwd(&grad.contiguous()?, &CausalSoftmaxBwd { scale: self.scale })?;
        Ok(Some(g))
    }
}

/// `softmax(scale * scores)` under a causal mask, one fused pass each way.
pub fn causal_softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
    scores.contiguous()?.apply_op1(CausalSoftmax { scale })
}

// ---------------------------------------------------------------- RMSNorm

struct RmsNorm {
    eps: f64,
}

fn rms_fwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    eps: f64,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1)?;
    let w = slice::<T>(s2, l2)?;
    let d = w.len();
    let e = T::from(eps).unwrap_or(T::zero());
    let n = T::from(d).unwrap_or(T::one());
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .for_each(|(yc, xc)| {
            for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
                let ms: T = xr.iter().map(|v| *v * *v).sum::<T>() / n;
                let r = T::one() / (ms + e).sqrt();
                for j in 0..d {
                    yr[j] = xr[j] * r * w[j];
                }
            }
        });
    wrap(y, l1.shape().clone())
}

/// Backward of RMSNorm: returns `(rows + 1, d)`: `dx` rows, then `dw`.
struct RmsNormBwd {
    eps: f64,
}

fn rms_bwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
    eps: f64,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1)?;
    let w = slice::<T>(s2, l2)?;
    let dy = slice::<T>(s3, l3)?;
    let d = w.len();
    let rows = x.len() / d.max(1);
    let e = T::from(eps).unwrap_or(T::zero());
    let n = T::from(d).unwrap_or(T::one());
    let mut out = vec![T::zero(); (rows + 1) * d];
    let (dx, dw_out) = out.split_at_mut(rows * d);
    // dx per row in parallel; dw as per-task partial sums added in order.
    let partials: Vec<Vec<T>> = dx
        .par_chunks_mut(d * ROWS_PER_TASK)
        .zip(x.par_chunks(d * ROWS_PER_TASK))
        .zip(dy.par_chunks(d * ROWS_PER_TASK))
        .map(|((dxc, xc), dyc)| {
            let mut dw = vec![T::zero(); d];
            for ((dxr, xr), dyr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(dyc.chunks(d)) {
                let ms: T = xr.iter().map(|v| *v * *v).sum::<T>() / n;
                let r = T::one() / (ms + e).sqrt();
                let mut dot = T::zero();
                for j in 0..d {
                    let xh = xr[j] * r;
                    dot += dyr[j] * w[j] * xh;
                    dw[j] += dyr[j] * xh;
                }
                let dot = dot / n;
                for j in 0..d {
                    let xh = xr[j] * r;
                    dxr[j] = r * (dyr[j] * w[j] - xh * dot);
                }
            }
            dw
        })
        .collect();
    for p in partials {
        for j in 0..d {
            dw_out[j] += p[j];
        }
    }
    wrap(out, Shape::from((rows + 1, d)))
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "rms-norm-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, rms_bwd, s1, l1, s2, l2, s3, l3, self.eps)
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-fused"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, rms_fwd, s1, l1, s2, l2, self.eps)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.dim(0)?;
        let rows = x.elem_count() / d;
        let out = x.apply_op3_no_bwd(w, &grad.contiguous()?, &RmsNormBwd { eps: self.eps })?;
        let dx = out.narrow(0, 0, rows)?.reshape(x.shape())?;
        let dw = out.narrow(0, rows, 1)?.reshape(d)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// RMSNorm over the last dimension, one fused pass each way.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(&w.contiguous()?, RmsNorm { eps })
}

// ---------------------------------------------------------------- RoPE

/// RoPE in the HF rotate-half layout on `(b, h, t, hd)` with tables
/// `(t, hd / 2)`. It is linear and orthogonal, so its backward is the same
/// rotation with `sin` negated.
struct Rope {
    sign: f64,
}

fn rope_fwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
    s3: &CpuStorage,
    l3: &Layout,
    sign: f64,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1)?;
    let cos = slice::<T>(s2, l2)?;
    let sin = slice::<T>(s3, l3)?;
    let dims = l1.dims();
    let (t, hd) = (dims[dims.len() - 2], dims[dims.len() - 1]);
    let half = hd / 2;
    if cos.len() != t * half || sin.len() != t * half {
        candle_core::bail!("rope: tables must be ({t}, {half})");
    }
    let sg = T::from(sign).unwrap_or(T::one());
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(hd * t)
        .zip(x.par_chunks(hd * t))
        .for_each(|(yc, xc)| {
            for (p, (yr, xr)) in yc.chunks_mut(hd).zip(xc.chunks(hd)).enumerate() {
                for i in 0..half {
                    let c = cos[p * half + i];
                    let s = sin[p * half + i] * sg;
                    let (a, b) = (xr[i], xr[i + half]);
                    yr[i] = a * c - b * s;
                    yr[i + half] = b * c + a * s;
                }
            }
        });
    wrap(y, l1.shape().clone())
}

impl CustomOp3 for Rope {
    fn name(&self) -> &'static str {
        "rope-fused"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, rope_fwd, s1, l1, s2, l2, s3, l3, self.sign)
    }
    fn bwd(
        &self,
        _x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = grad
            .contiguous()?
            .apply_op3(cos, sin, Rope { sign: -self.sign })?;
        Ok((Some(g), None, None))
    }
}

/// Rotary embedding of `(b, h, t, hd)` with `(t, hd / 2)` tables.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&cos.contiguous()?, &sin.contiguous()?, Rope { sign: 1.0 })
}

// ---------------------------------------------------------------- cross-entropy

/// Mean negative log-likelihood of `targets` (u32, `(n,)`) under `logits`
/// `(n, vocab)`; backward `(softmax - onehot) / n`.
struct CrossEntropy;

fn targets_of(s: &CpuStorage, l: &Layout) -> Result<Vec<usize>> {
    Ok(slice::<u32>(s, l)?.iter().map(|&t| t as usize).collect())
}

fn ce_fwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1)?;
    let tg = targets_of(s2, l2)?;
    let v = *l1.dims().last().unwrap_or(&1);
    if tg.iter().any(|&t| t >= v) || tg.len() * v != x.len() {
        candle_core::bail!("cross-entropy: targets must be < {v}, one per row");
    }
    let per: Vec<T> = x
        .par_chunks(v)
        .zip(tg.par_iter())
        .map(|(r, &t)| {
            let m = r.iter().fold(T::neg_infinity(), |a, b| Float::max(a, *b));
            let lse = r.iter().map(|z| (*z - m).exp()).sum::<T>().ln() + m;
            lse - r[t]
        })
        .collect();
    let n = T::from(per.len().max(1)).unwrap_or(T::one());
    let loss = per.into_iter().fold(T::zero(), |a, b| a + b) / n;
    wrap(vec![loss], Shape::from(()))
}

struct CrossEntropyBwd;

fn ce_bwd<T: Fl>(
    s1: &CpuStorage,
    l1: &Layout,
    s2: &CpuStorage,
    l2: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let x = slice::<T>(s1, l1)?;
    let tg = targets_of(s2, l2)?;
    let v = *l1.dims().last().unwrap_or(&1);
    let n = T::from(tg.len().max(1)).unwrap_or(T::one());
    let mut g = vec![T::zero(); x.len()];
    g.par_chunks_mut(v)
        .zip(x.par_chunks(v))
        .zip(tg.par_iter())
        .for_each(|((gr, r), &t)| {
            let m = r.iter().fold(T::neg_infinity(), |a, b| Float::max(a, *b));
            let mut sum = T::zero();
            for j in 0..v {
                let e = (r[j] - m).exp();
                gr[j] = e;
                sum += e;
            }
            let inv = T::one() / (sum * n);
            for e in gr.iter_mut() {
                *e *= inv;
            }
            gr[t] -= T::one() / n;
        });
    wrap(g, l1.shape().clone())
}

impl CustomOp2 for CrossEntropyBwd {
    fn name(&self) -> &'static str {
        "cross-entropy-bwd"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, ce_bwd, s1, l1, s2, l2)
    }
}

impl CustomOp2 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy-fused"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        dispatch!(s1, ce_fwd, s1, l1, s2, l2)
    }
    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = logits.apply_op2_no_bwd(targets, &CrossEntropyBwd)?;
        Ok((Some(g.broadcast_mul(grad)?), None))
    }
}

/// Mean cross-entropy of `(n, vocab)` logits against u32 targets `(n,)`.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if !logits.device().is_cpu() {
        return candle_nn::loss::cross_entropy(logits, targets);
    }
    logits
        .contiguous()?
        .apply_op2(&targets.contiguous()?, CrossEntropy)
}
