//! Attention of one new position over its cached keys and values on the
//! CPU, head by head, with every number bit for bit what candle's batched
//! matmuls give on the same inputs.
//!
//! A LLaMA block decoding one token multiplies, per head, the query `(1,
//! hd)` by the keys' transpose `(hd, len)` and the probabilities `(1, len)`
//! by the values `(len, hd)`. Through candle that means copying each
//! grouped KV head once per query head (`repeat_kv`) and one gemm call per
//! head and product. Here each query head reads its KV head in place:
//!
//! - **Scores.** gemm sends `q @ K^T` (one row, `len` outputs, depth `hd`)
//!   to the kernel a linear layer's one-row product with `len` outputs goes
//!   to, so each score is [`super::dot`] of a key row with the query (more
//!   than 256 positions) or [`super::horizontal::hdot`] (256 or fewer).
//! - **Weighted values.** gemm sends `p @ V` (one row, rows of `V`
//!   contiguous) to its column-major matrix-vector kernel, which walks the
//!   positions in order: `o = V[0] * p[0]`, then `o = fma(V[j], p[j], o)`
//!   for each later `j`, lane-wise over the head dimension (and with a
//!   scalar fused multiply-add on the last `hd mod lanes` entries).
//!
//! The softmax in between stays candle's (the caller passes it in).
//!
//! [`attend_rows`] does the same for several query positions at once (a
//! prefill): gemm gives each head's `q @ K^T` and `p @ V` to the matrix
//! kernel that [`super::rows`] repeats (tested bit for bit against
//! candle's batched matmuls), so each head's two products go there, `V`
//! transposed once per KV head, with the heads and halves of their rows
//! spread over the threads in one fork-join per product.

use super::rows::product_here;
use super::{Kernel, gemm_lanes, product_rows};
use candle_core::{DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Fewest multiply-adds per call worth a fork-join over the heads. A
/// SmolLM2 step (9 heads of 64 over 150 positions: 86,400) takes about 15
/// µs on one thread with its cache read from memory; splitting it cost up
/// to 120 µs where the other thread had gone to sleep, so only steps over
/// about a million multiply-adds (some 1,800 positions there) are split.
const MIN_WORK_TO_SPLIT: usize = 1 << 20;

/// One query position attending over `len` cached positions: `q` `(b, h,
/// 1, hd)` contiguous, `k` and `v` `(b, kv_heads, len, hd)` with rows of
/// `hd` contiguous and positions adjacent (a narrowed KV cache buffer), `h`
/// a multiple of `kv_heads`; `probs` turns the scores `(b, h, 1, len)` into
/// attention probabilities of the same shape. Returns the heads' outputs
/// `(b, h, 1, hd)`, or `None` where the inputs are not f32 on a CPU whose
/// gemm kernels this module repeats, and the caller uses candle's matmuls.
pub fn attend_one_position(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    let Some(lanes) = gemm_lanes() else {
        return Ok(None);
    };
    let Some(shape) = Shape::of(q, k, v)? else {
        return Ok(None);
    };
    let scores = in_place(q, k, &shape, |qs, keys| {
        let mut scores = vec![0f32; shape.b * shape.h * shape.len];
        let kernel = Kernel::for_outputs(shape.len);
        for_each_head(&shape, &mut scores, shape.len, |bh, out| {
            let q_head = &qs[bh * shape.hd..(bh + 1) * shape.hd];
            product_rows(kernel, lanes, keys.head(&shape, bh), q_head, out);
        });
        scores
    })?;
    let Some(scores) = scores else {
        return Ok(None);
    };
    let scores = Tensor::from_vec(scores, (shape.b, shape.h, 1, shape.len), q.device())?;
    let p = probs(&scores)?.contiguous()?;
    let out = in_place(&p, v, &shape, |ps, values| {
        let mut out = vec![0f32; shape.b * shape.h * shape.hd];
        for_each_head(&shape, &mut out, shape.hd, |bh, o| {
            let p_head = &ps[bh * shape.len..(bh + 1) * shape.len];
            weighted_sum(values.head(&shape, bh), p_head, o);
        });
        out
    })?;
    out.map(|out| Tensor::from_vec(out, (shape.b, shape.h, 1, shape.hd), q.device()))
        .transpose()
}

/// `f(a, grouped)` with `a`'s f32 data (from its first element) and `kv`
/// read in place as [`Grouped`] keys or values; `None` where either is not
/// f32 on the CPU or `kv`'s layout is not one [`Grouped`] reads.
fn in_place<R>(
    a: &Tensor,
    kv: &Tensor,
    shape: &Shape,
    f: impl FnOnce(&[f32], Grouped) -> R,
) -> Result<Option<R>> {
    let (a_storage, a_layout) = a.storage_and_layout();
    let (kv_storage, kv_layout) = kv.storage_and_layout();
    let Some(data) = f32_from(&a_storage, a_layout.start_offset()) else {
        return Ok(None);
    };
    let Some(grouped) = Grouped::new(&kv_storage, kv_layout, shape)? else {
        return Ok(None);
    };
    Ok(Some(f(data, grouped)))
}

/// Several query positions attending over `len` positions: `q` `(b, h, t,
/// hd)` contiguous with `t >= 2`, `k` and `v` `(b, kv_heads, len, hd)`
/// with rows of `hd` contiguous and positions adjacent, `h` a multiple of
/// `kv_heads`; `probs` turns the scores `(b, h, t, len)` into attention
/// probabilities of the same shape. Returns `(b, h, t, hd)` bit for bit
/// what candle's batched matmuls give, or `None` where gemm would not run
/// both products through the kernel [`super::rows`] repeats, and the
/// caller uses candle's matmuls.
pub fn attend_rows(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Option<Tensor>> {
    let Some((shape, t)) = Shape::of_rows(q, k, v)? else {
        return Ok(None);
    };
    let (len, hd) = (shape.len, shape.hd);
    let scores = in_place(q, k, &shape, |qs, keys| {
        let mut scores = vec![0f32; shape.b * shape.h * t * len];
        for_each_row_block(&shape, t, &mut scores, len, |bh, rows, out| {
            let q_rows = &qs[(bh * t + rows.start) * hd..(bh * t + rows.end) * hd];
            product_here(q_rows, hd, keys.head(&shape, bh), t, out)
        })
        .map(|()| scores)
    })?;
    let Some(scores) = scores.flatten() else {
        return Ok(None);
    };
    let scores = Tensor::from_vec(scores, (shape.b, shape.h, t, len), q.device())?;
    let p = probs(&scores)?.contiguous()?;
    let out = in_place(&p, v, &shape, |ps, values| {
        weighted_rows(&shape, t, ps, values)
    })?;
    out.flatten()
        .map(|out| Tensor::from_vec(out, (shape.b, shape.h, t, hd), q.device()))
        .transpose()
}

/// Each head's probabilities `ps` `(b, h, t, len)` times its values, `(b,
/// h, t, hd)`, through the rows kernel: each KV head's values transposed
/// once as the product's weight rows. `None` where the kernel declines.
fn weighted_rows(shape: &Shape, t: usize, ps: &[f32], values: Grouped) -> Option<Vec<f32>> {
    let (len, hd) = (shape.len, shape.hd);
    // Each KV head's values transposed, `(hd, len)`, as the weight rows of
    // `p @ V`.
    let mut transposed = vec![0f32; shape.b * shape.kv_heads * hd * len];
    let per_group = shape.h / shape.kv_heads;
    for (g, vt) in transposed.chunks_exact_mut(hd * len).enumerate() {
        let (row, group) = (g / shape.kv_heads, g % shape.kv_heads);
        let src = values.head(shape, row * shape.h + group * per_group);
        // SAFETY: `src` is len × hd, `vt` hd × len, borrowed mutably.
        unsafe { super::transpose::transpose(src.as_ptr(), hd, len, hd, vt.as_mut_ptr(), len) };
    }
    let mut out = vec![0f32; shape.b * shape.h * t * hd];
    let done = for_each_row_block(shape, t, &mut out, hd, |bh, rows, o| {
        let g = (bh / shape.h) * shape.kv_heads + (bh % shape.h) / per_group;
        let p_rows = &ps[(bh * t + rows.start) * len..(bh * t + rows.end) * len];
        product_here(
            p_rows,
            len,
            &transposed[g * hd * len..(g + 1) * hd * len],
            t,
            o,
        )
    });
    done.map(|()| out)
}

/// Fewest query rows in a block of [`for_each_row_block`].
const MIN_BLOCK_ROWS: usize = 16;

/// Runs `f(bh, rows, chunk)` for blocks of query rows of each head `bh`,
/// `chunk` the block's `per_row` outputs a row, over the threads: each
/// head split into as many blocks as give every thread about four (nine
/// heads on two threads would leave one thread a head behind), of at least
/// [`MIN_BLOCK_ROWS`] rows. `None` if any call of `f` gave `None`.
fn for_each_row_block(
    shape: &Shape,
    t: usize,
    out: &mut [f32],
    per_row: usize,
    f: impl Fn(usize, std::ops::Range<usize>, &mut [f32]) -> Option<()> + Sync,
) -> Option<()> {
    let heads = shape.b * shape.h;
    let threads = candle_core::utils::get_num_threads();
    let per_head = (4 * threads).div_ceil(heads).min(t / MIN_BLOCK_ROWS).max(1);
    let block = t.div_ceil(per_head);
    let mut blocks = Vec::with_capacity(heads * per_head);
    for (bh, head) in out.chunks_exact_mut(t * per_row).enumerate() {
        for (i, chunk) in head.chunks_mut(block * per_row).enumerate() {
            let first = i * block;
            blocks.push((bh, first..first + chunk.len() / per_row, chunk));
        }
    }
    if threads < 2 {
        return blocks
            .into_iter()
            .try_for_each(|(bh, rows, o)| f(bh, rows, o));
    }
    blocks
        .into_par_iter()
        .map(|(bh, rows, o)| f(bh, rows, o))
        .collect::<Option<Vec<()>>>()
        .map(|_| ())
}

/// The sizes of one call.
struct Shape {
    b: usize,
    h: usize,
    kv_heads: usize,
    len: usize,
    hd: usize,
}

impl Shape {
    /// The sizes of an [`attend_rows`] call and its query rows, or `None`
    /// where the shapes or types are not the ones it handles.
    fn of_rows(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<(Shape, usize)>> {
        Ok(Shape::with_rows(q, k, v)?.filter(|&(_, t)| t >= 2))
    }

    /// The sizes of an [`attend_one_position`] call, or `None` where the
    /// shapes or types are not the ones it handles.
    fn of(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Shape>> {
        // gemm gives products of depth 2 or less (`hd` for the scores,
        // `len` for the weighted values) to another kernel.
        Ok(Shape::with_rows(q, k, v)?
            .filter(|(s, t)| *t == 1 && s.hd > 2 && s.len > 2)
            .map(|(s, _)| s))
    }

    /// The sizes of `q` `(b, h, t, hd)` (f32, contiguous) against `k` and
    /// `v` `(b, kv_heads, len, hd)` (f32), and `t`, or `None` where they do
    /// not fit together.
    fn with_rows(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<(Shape, usize)>> {
        let all_f32_cpu = [q, k, v]
            .iter()
            .all(|t| t.dtype() == DType::F32 && t.device().is_cpu() && t.dims().len() == 4);
        if !all_f32_cpu || !q.is_contiguous() || k.dims() != v.dims() {
            return Ok(None);
        }
        let (b, h, t, hd) = q.dims4()?;
        let (kb, kv_heads, len, khd) = k.dims4()?;
        let fits = kb == b && khd == hd && kv_heads > 0 && h % kv_heads == 0;
        if !fits || b == 0 || h == 0 || len == 0 || t == 0 {
            return Ok(None);
        }
        let shape = Shape {
            b,
            h,
            kv_heads,
            len,
            hd,
        };
        Ok(Some((shape, t)))
    }
}

/// Keys or values read in place: `(b, kv_heads, len, hd)` with rows of
/// `hd` contiguous and the positions of one head adjacent.
struct Grouped<'a> {
    data: &'a [f32],
    batch_stride: usize,
    head_stride: usize,
}

impl<'a> Grouped<'a> {
    fn new(s: &'a Storage, l: &Layout, shape: &Shape) -> Result<Option<Grouped<'a>>> {
        let stride = l.stride();
        if stride.len() != 4 || stride[3] != 1 || stride[2] != shape.hd {
            return Ok(None);
        }
        let Some(data) = f32_from(s, l.start_offset()) else {
            return Ok(None);
        };
        let (batch_stride, head_stride) = (stride[0], stride[1]);
        let last = (shape.b - 1) * batch_stride + (shape.kv_heads - 1) * head_stride;
        if last + shape.len * shape.hd > data.len() {
            return Ok(None);
        }
        Ok(Some(Grouped {
            data,
            batch_stride,
            head_stride,
        }))
    }

    /// The `(len, hd)` rows the query head `bh` (batch row times heads plus
    /// head) reads: its batch row's KV head `head / (h / kv_heads)`.
    fn head(&self, shape: &Shape, bh: usize) -> &'a [f32] {
        let (row, head) = (bh / shape.h, bh % shape.h);
        let group = head / (shape.h / shape.kv_heads);
        let start = row * self.batch_stride + group * self.head_stride;
        &self.data[start..start + shape.len * shape.hd]
    }
}

/// The f32 data of a CPU storage from element `start` on, or `None` for
/// another dtype or device.
fn f32_from(s: &Storage, start: usize) -> Option<&[f32]> {
    let Storage::Cpu(cpu) = s else {
        return None;
    };
    cpu.as_slice::<f32>()
        .ok()
        .and_then(|data| data.get(start..))
}

/// Runs `f(bh, chunk)` for each query head `bh` and its `per_head` outputs,
/// over the threads when the work is worth a fork-join.
fn for_each_head(
    shape: &Shape,
    out: &mut [f32],
    per_head: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let work = shape.b * shape.h * shape.len * shape.hd;
    if work < MIN_WORK_TO_SPLIT || candle_core::utils::get_num_threads() < 2 {
        out.chunks_exact_mut(per_head)
            .enumerate()
            .for_each(|(bh, o)| f(bh, o));
    } else {
        out.par_chunks_exact_mut(per_head)
            .enumerate()
            .for_each(|(bh, o)| f(bh, o));
    }
}

/// `o = sum_j p[j] * rows[j]` in gemm's column-major matrix-vector order
/// (see the module doc): the first product plain, then one fused
/// multiply-add per position and entry.
fn weighted_sum(rows: &[f32], p: &[f32], o: &mut [f32]) {
    let hd = o.len();
    for (j, (row, &pj)) in rows.chunks_exact(hd).zip(p).enumerate() {
        if j == 0 {
            for (oe, &r) in o.iter_mut().zip(row) {
                *oe = r * pj;
            }
        } else {
            multiply_add(row, pj, o);
        }
    }
}

/// `o[i] = fma(row[i], p, o[i])` for every entry: with FMA instructions
/// where the CPU has them (every CPU [`gemm_lanes`] accepts), else with
/// `f32::mul_add`, which rounds the same.
fn multiply_add(row: &[f32], p: f32, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA (checked just above).
        return unsafe { super::avx2::multiply_add(row, p, o) };
    }
    for (oe, &r) in o.iter_mut().zip(row) {
        *oe = r.mul_add(p, *oe);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        super::super::test_data::tensor(shape, seed, 4.0)
    }

    /// Candle's path, as LLaMA's attention ran it: each KV head copied per
    /// query head, then two batched matmuls around the softmax.
    fn through_candle(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Tensor {
        let (b, kvh, len, hd) = k.dims4().unwrap();
        let rep = q.dim(1).unwrap() / kvh;
        let repeat = |x: &Tensor| {
            x.unsqueeze(2)
                .unwrap()
                .broadcast_as((b, kvh, rep, len, hd))
                .unwrap()
                .reshape((b, kvh * rep, len, hd))
                .unwrap()
        };
        let scores = q.matmul(&repeat(k).t().unwrap()).unwrap();
        let p = softmax(&scores, scale).unwrap();
        p.matmul(&repeat(v)).unwrap()
    }

    fn softmax(scores: &Tensor, scale: f64) -> Result<Tensor> {
        candle_nn::ops::softmax_last_dim(&(scores * scale)?)
    }

    /// Keys and values as a KV cache holds them: a `(b, kv_heads, capacity,
    /// hd)` buffer narrowed to the first `len` positions.
    fn cached(b: usize, kvh: usize, len: usize, hd: usize, seed: u64) -> Tensor {
        random(&[b, kvh, len + 5, hd], seed)
            .narrow(2, 0, len)
            .unwrap()
    }

    /// A call of one of this module's functions on `q`, `k`, `v` with a
    /// softmax.
    type Attend =
        fn(&Tensor, &Tensor, &Tensor, &dyn Fn(&Tensor) -> Result<Tensor>) -> Result<Option<Tensor>>;

    /// `attend` on random `q` `(b, h, t, hd)` and cached keys and values of
    /// `len` positions gives candle's bits (or, on a CPU without the
    /// kernels, declines).
    fn assert_candles_bits(
        attend: Attend,
        (b, h, kvh, hd): (usize, usize, usize, usize),
        t: usize,
        len: usize,
    ) {
        let what = format!("b={b} h={h} kv={kvh} hd={hd} t={t} len={len}");
        let q = random(&[b, h, t, hd], len as u64);
        let k = cached(b, kvh, len, hd, 7 + len as u64);
        let v = cached(b, kvh, len, hd, 11 + len as u64);
        let scale = 1.0 / (hd as f64).sqrt();
        let want = through_candle(&q, &k, &v, scale);
        let Some(got) = attend(&q, &k, &v, &|s| softmax(s, scale)).unwrap() else {
            assert!(gemm_lanes().is_none(), "{what}: should run in place");
            return;
        };
        assert_eq!(got.dims(), want.dims(), "{what}");
        let bits = |t: &Tensor| -> Vec<u32> {
            let flat = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            flat.iter().map(|x| x.to_bits()).collect()
        };
        assert_eq!(bits(&got), bits(&want), "{what}");
    }

    /// Bit for bit candle's result over short and long caches (both score
    /// kernels, the 256-position edge), grouped and plain heads, two batch
    /// rows, and head sizes with and without a tail past the lanes.
    #[test]
    fn equals_candle_bit_for_bit() {
        for &heads in &[(1, 9, 3, 64), (2, 4, 4, 64), (2, 6, 2, 37), (1, 2, 1, 3)] {
            for &len in &[3, 100, 256, 257, 700] {
                assert_candles_bits(|q, k, v, p| attend_one_position(q, k, v, p), heads, 1, len);
            }
        }
    }

    /// Several query rows: bit for bit candle's result for a prefill (`len
    /// = t`), a prefill after earlier positions (`len > t`), rows that
    /// split into blocks unevenly, depth blocks past 512 positions with
    /// more than 64 rows (where gemm's depth block depends on all the
    /// rows), grouped and plain heads and two batch rows.
    #[test]
    fn rows_equal_candle_bit_for_bit() {
        for &heads in &[(1, 9, 3, 64), (2, 4, 2, 32)] {
            for &(t, len) in &[
                (9, 200),
                (17, 17),
                (88, 88),
                (70, 140),
                (100, 600),
                (33, 700),
            ] {
                assert_candles_bits(|q, k, v, p| attend_rows(q, k, v, p), heads, t, len);
            }
        }
    }

    /// Shapes it does not repeat gemm for go back to the caller.
    #[test]
    fn declines_what_it_does_not_handle() {
        let id = |s: &Tensor| Ok(s.clone());
        // Two rows of 64: 128 outputs of `p @ V`, gemm's horizontal kernel.
        let (q2, kv2) = (random(&[1, 4, 2, 64], 6), cached(1, 2, 200, 64, 7));
        assert!(attend_rows(&q2, &kv2, &kv2, id).unwrap().is_none());
        let one_row = random(&[1, 4, 1, 64], 8);
        assert!(attend_rows(&one_row, &kv2, &kv2, id).unwrap().is_none());
        let q = random(&[1, 4, 1, 8], 1);
        let short = cached(1, 2, 2, 8, 2);
        assert!(
            attend_one_position(&q, &short, &short, id)
                .unwrap()
                .is_none()
        );
        let two_queries = random(&[1, 4, 2, 8], 3);
        let kv = cached(1, 2, 10, 8, 4);
        assert!(
            attend_one_position(&two_queries, &kv, &kv, id)
                .unwrap()
                .is_none()
        );
        let bf16 = q.to_dtype(DType::BF16).unwrap();
        let kv16 = kv.to_dtype(DType::BF16).unwrap();
        assert!(
            attend_one_position(&bf16, &kv16, &kv16, id)
                .unwrap()
                .is_none()
        );
        let uneven = cached(1, 3, 10, 8, 5);
        assert!(
            attend_one_position(&q, &uneven, &uneven, id)
                .unwrap()
                .is_none()
        );
    }
}
