//! One row of activations times a weight matrix on the CPU (`x (1, in) @
//! w^T` for `w` `(out, in)`), split over the CPU threads, with every output
//! bit for bit what candle's matmul gives.
//!
//! Decoding one sequence is almost only such products, about seven per
//! block and token. candle runs each through the `gemm` crate, which sends a
//! one-row product with more than 256 outputs to its matrix-vector kernel
//! (`gemm-common`'s `mixed_gemv_rowmajor`) on one thread. On x86-64 that
//! kernel is 16 lanes wide with AVX-512F (this crate turns on gemm's
//! `x86-v4` feature) and 8 lanes wide with AVX2 and FMA. [`dot`] repeats
//! its arithmetic for one output, in its order, with `L` lanes:
//!
//! 1. eight `L`-lane FMA accumulators over the blocks of `8 L` inputs;
//! 2. summed in pairs: `((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7))`;
//! 3. `L`-lane FMA steps over what is left in multiples of `L`;
//! 4. the `L` lanes added in order, lane 0 first;
//! 5. scalar FMAs over the last inputs.
//!
//! A product with 256 outputs or fewer (a GQA model's K and V projections)
//! goes to gemm's horizontal kernel instead, which [`horizontal`] repeats.
//!
//! So splitting the outputs over threads changes no bit (the tests compare
//! with candle on many shapes), and the product needs no tensor per block,
//! no concatenation and one fork-join; [`matvec_many`] does several
//! products of one row (q, k and v; gate and up) in one fork-join. Where the
//! kernels would differ (another CPU, another dtype, or 2 inputs or fewer),
//! [`matvec`] says so by returning `None` and the caller keeps candle's
//! matmul; so it does where an operand is tracked for autograd (the
//! kernels here have no backward pass).
//!
//! The intrinsics live in `avx2` (gemm's `V3` kernels) and `avx512` (its
//! `V4` ones); [`rows`] repeats gemm's matrix kernel for products of
//! several rows (prefill) without packing the weights, moving data with
//! `transpose`'s register blocks; [`attention`] uses the same kernels for
//! attention over the KV cache, read in place (a decoding step's one row,
//! and a prefill's rows through [`rows`]), and [`softmax`] repeats
//! candle's scaled, masked softmax between its two products. [`expf`]
//! computes libm's `expf` four lanes at a time, bit for bit, for the
//! softmax and the SiLU gate ([`matvec_silu_gated`],
//! [`rows::matmul_rows_silu_gated`]). The one-row products fork and join
//! on [`team`], whose helper threads wait for the next product spinning
//! rather than asleep.

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod expf;
pub mod horizontal;
pub mod rows;
pub mod softmax;
pub mod team;
mod transpose;

use candle_core::{DType, Layout, Result, Storage, Tensor};
use std::sync::Mutex;

/// Fewest outputs gemm multiplies with its matrix-vector kernel; with 256
/// or fewer it uses its horizontal kernel ([`horizontal`]).
const MIN_OUTPUTS: usize = 257;

/// Fewest inputs gemm multiplies with its matrix-vector kernel (with 2 or
/// fewer it takes an outer-product path).
const MIN_INPUTS: usize = 3;

/// Fewest multiply-adds per thread worth a fork-join (about 10 µs of work).
const MIN_WORK_PER_THREAD: usize = 1 << 16;

/// How many weight rows ahead the two-row kernel prefetches (see
/// [`dot_rows`]): the next pair.
const PREFETCH_ROWS: usize = 2;

/// `x (1, in) @ w^T` for `w` `(out, in)`, both f32 on the CPU, as `(1,
/// out)`; `None` where this module would not give candle's bits (see the
/// module doc), so the caller uses candle's matmul.
pub fn matvec(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    Ok(matvec_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}

/// [`matvec`] of one `x` with each of `ws` (all `(out_i, in)`) in one
/// fork-join: the outputs of all the products are split over the threads
/// together, and each output is still the one its own product gives. `None`
/// unless the kernel applies to every product.
pub fn matvec_many(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Vec<Tensor>>> {
    let Some(ys) = one_row_products(x, ws)? else {
        return Ok(None);
    };
    ys.into_iter()
        .map(|y| {
            let n = y.len();
            Tensor::from_vec(y, (1, n), x.device())
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// `silu(x @ gate^T) * (x @ up^T)` for one row `x` (`(1, in)`), the gated
/// input of a LLaMA-style MLP, as `(1, out)`: both products in one
/// fork-join ([`matvec_many`]'s), then combined on the calling thread, bit
/// for bit what candle's `silu` and product give; `None` where
/// [`matvec_many`] declines or the shapes differ.
pub fn matvec_silu_gated(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    if gate.dims() != up.dims() {
        return Ok(None);
    }
    let Some(ys) = one_row_products(x, &[gate, up])? else {
        return Ok(None);
    };
    let [mut h, u] = <[Vec<f32>; 2]>::try_from(ys).map_err(|_| {
        candle_core::Error::Msg("matvec_silu_gated: two products, two outputs".into())
    })?;
    silu_gate_in_place(&mut h, &u);
    let out = h.len();
    Tensor::from_vec(h, (1, out), x.device()).map(Some)
}

/// The outputs of [`matvec_many`] as plain vectors, or `None` where the
/// kernels do not apply (see the module doc).
fn one_row_products(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Vec<Vec<f32>>>> {
    let Some(lanes) = gemm_lanes() else {
        return Ok(None);
    };
    if !one_row(x)? || !ws.iter().all(|w| fits(w, x.dim(1).unwrap_or(0))) {
        return Ok(None);
    }
    if tracked(&[x]) || tracked(ws) {
        return Ok(None);
    }
    let (x_storage, x_layout) = x.storage_and_layout();
    let xv = cpu_f32(&x_storage, x_layout)?;
    let weights: Vec<_> = ws.iter().map(|w| w.storage_and_layout()).collect();
    let wv = weights
        .iter()
        .map(|(s, l)| cpu_f32(s, l))
        .collect::<Result<Vec<_>>>()?;
    let mut ys: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; w.dims()[0]]).collect();
    multiply(lanes, xv, &wv, &mut ys);
    Ok(Some(ys))
}

/// `g = silu(g) * u` entry by entry, bit for bit candle's f32 `silu`
/// (`candle_core::op::Silu`: `g / (1 + exp(-g))`, each step rounded to
/// f32) then the product, with the exponentials four lanes at a time
/// ([`expf::exp_in_place`]).
fn silu_gate_in_place(g: &mut [f32], u: &[f32]) {
    const CHUNK: usize = 64;
    let mut e = [0f32; CHUNK];
    for (gc, uc) in g.chunks_mut(CHUNK).zip(u.chunks(CHUNK)) {
        let e = &mut e[..gc.len()];
        for (e, &g) in e.iter_mut().zip(gc.iter()) {
            *e = -g;
        }
        expf::exp_in_place(e);
        for ((g, &e), &u) in gc.iter_mut().zip(e.iter()).zip(uc) {
            *g = *g / (1.0 + e) * u;
        }
    }
}

/// Whether any of `ts` is tracked by candle's autograd (a variable, or
/// computed from one): the kernels here build plain tensors with no
/// backward pass, so a training step must keep candle's ops.
fn tracked(ts: &[&Tensor]) -> bool {
    ts.iter().any(|t| t.track_op())
}

/// Whether `x` is one contiguous f32 row on the CPU, at least
/// [`MIN_INPUTS`] wide.
fn one_row(x: &Tensor) -> Result<bool> {
    Ok(x.device().is_cpu()
        && x.dtype() == DType::F32
        && x.dims().len() == 2
        && x.dim(0)? == 1
        && x.dim(1)? >= MIN_INPUTS
        && x.is_contiguous())
}

/// Whether `w` is a contiguous f32 `(out, k)` matrix on the CPU.
fn fits(w: &Tensor, k: usize) -> bool {
    w.device().is_cpu()
        && w.dtype() == DType::F32
        && w.dims().len() == 2
        && w.dims()[1] == k
        && w.dims()[0] > 0
        && w.is_contiguous()
}

/// The lane count of the gemm kernels this CPU runs: 16 (AVX-512F: gemm
/// is built with `x86-v4`, see Cargo.toml), 8 (AVX2 and FMA), or `None`
/// where this module does not repeat gemm's kernels.
fn gemm_lanes() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Some(16);
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return Some(8);
        }
    }
    None
}

/// The f32 slice a contiguous CPU tensor covers.
fn cpu_f32<'a>(s: &'a Storage, l: &Layout) -> Result<&'a [f32]> {
    let Storage::Cpu(cpu) = s else {
        candle_core::bail!("matvec: tensor must be on the CPU");
    };
    let data = cpu.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("matvec: tensor must be contiguous"),
    }
}

/// Which of gemm's kernels a one-row product goes to, by its output count.
#[derive(Clone, Copy)]
enum Kernel {
    /// `mixed_gemv_rowmajor`: [`dot`].
    MatVec,
    /// The horizontal microkernels: [`horizontal::hdot`].
    Horizontal,
}

impl Kernel {
    fn for_outputs(out: usize) -> Kernel {
        if out >= MIN_OUTPUTS {
            Kernel::MatVec
        } else {
            Kernel::Horizontal
        }
    }
}

/// A run of one product's rows given to one thread.
struct Segment<'a> {
    kernel: Kernel,
    w: &'a [f32],
    y: &'a mut [f32],
}

/// `ys[i] = x @ ws[i]^T` for every product, the outputs of all of them
/// split into one contiguous run per thread.
fn multiply(lanes: usize, x: &[f32], ws: &[&[f32]], ys: &mut [Vec<f32>]) {
    let k = x.len();
    let total: usize = ys.iter().map(Vec::len).sum();
    let threads = candle_core::utils::get_num_threads()
        .min(total * k / MIN_WORK_PER_THREAD)
        .max(1);
    let block = total.div_ceil(threads);
    let mut parts: Vec<Vec<Segment>> = (0..threads).map(|_| Vec::new()).collect();
    let mut row = 0;
    for (w, y) in ws.iter().zip(ys.iter_mut()) {
        let kernel = Kernel::for_outputs(y.len());
        let (mut rest_w, mut rest_y): (&[f32], &mut [f32]) = (w, y);
        while !rest_y.is_empty() {
            let thread = row / block;
            let n = ((thread + 1) * block - row).min(rest_y.len());
            let (y_head, y_tail) = std::mem::take(&mut rest_y).split_at_mut(n);
            let (w_head, w_tail) = rest_w.split_at(n * k);
            parts[thread].push(Segment {
                kernel,
                w: w_head,
                y: y_head,
            });
            (rest_w, rest_y) = (w_tail, y_tail);
            row += n;
        }
    }
    let run = |segments: Vec<Segment>| {
        for s in segments {
            product_rows(s.kernel, lanes, s.w, x, s.y);
        }
    };
    if threads == 1 {
        parts.into_iter().for_each(run);
    } else {
        let parts: Vec<Mutex<Vec<Segment>>> = parts.into_iter().map(Mutex::new).collect();
        team::run_parts(parts.len(), &|i| {
            let mine = std::mem::take(&mut *parts[i].lock().unwrap_or_else(|e| e.into_inner()));
            run(mine);
        });
    }
}

/// `ys[r] = ` row `r` of `ws` times `x` with `kernel` (`lanes` wide), for
/// the rows of `ws` (`x.len()` wide).
fn product_rows(kernel: Kernel, lanes: usize, ws: &[f32], x: &[f32], ys: &mut [f32]) {
    match kernel {
        Kernel::MatVec => dot_rows(ws, x, ys),
        Kernel::Horizontal => horizontal::hdot_rows(lanes, ws, x, ys),
    }
}

/// `sum w[i] * x[i]` in gemm's matrix-vector order (see the module doc).
pub fn dot(w: &[f32], x: &[f32]) -> f32 {
    // SAFETY: dot_kernel returns a kernel only for the features gemm_lanes
    // found on this CPU.
    unsafe { dot_kernel()(w, x) }
}

/// [`dot`] of one row, as this CPU's kernel computes it.
type Dot = unsafe fn(&[f32], &[f32]) -> f32;

/// The one-row kernel of this CPU's lane count: intrinsics where gemm's
/// kernel is one this module repeats, else the portable order. Looked up
/// once per run of rows, not per row.
fn dot_kernel() -> Dot {
    #[cfg(target_arch = "x86_64")]
    match gemm_lanes() {
        Some(16) => return avx512::dot as Dot,
        Some(8) => return avx2::dot as Dot,
        _ => {}
    }
    dot_portable::<8> as Dot
}

/// [`dot`] of two rows against one `x`, where an intrinsics kernel does
/// both at once.
type Dot2 = unsafe fn(&[f32], &[f32], &[f32], usize) -> (f32, f32);

/// The two-row kernel of this CPU's lane count, where two rows at once pay.
///
/// With AVX-512 (32 vector registers) the two rows' sixteen accumulators
/// stay in registers. AVX2 has sixteen: two rows spill accumulators to the
/// stack on every block, and one row at a time ([`avx2::dot`], eight
/// accumulators) reads the weights faster (36 against 28 GB/s over a
/// SmolLM2-135M token's products on two threads of the AVX2 machine, ids
/// unchanged), so AVX2 takes no two-row kernel.
fn dot2_kernel() -> Option<Dot2> {
    #[cfg(target_arch = "x86_64")]
    if gemm_lanes() == Some(16) {
        return Some(avx512::dot2 as Dot2);
    }
    None
}

/// `ys[r] = dot(row r of ws, x)` for the rows of `ws` (`k = x.len()` wide).
/// With a two-row kernel ([`dot2_kernel`]) two rows go at once: each load
/// of `x` serves both and the two dependent lane sums overlap; every output
/// is still [`dot`]'s.
///
/// The two-row kernel asks for the next pair's lines as it reads each
/// pair's ([`PREFETCH_ROWS`] rows ahead). On the 2-core AMD EPYC (Zen 5)
/// of 2026-12-07, whose processes read memory either at about 45 or at
/// about 64 GB/s (a plain 2-thread read, fixed for the life of a process),
/// the products of a SmolLM2-135M token (`matvec_bench`, products against
/// a plain read in one process) ran at 0.71 and 0.76 of the plain read in
/// fast processes without it and at 0.93 and 0.98 with it, and about the
/// same (0.91 to 0.95) either way in slow ones; 1 row ahead gave 0.87 and
/// 0.89, 3 rows 0.92 and 0.94, 4 and 8 rows less.
fn dot_rows(ws: &[f32], x: &[f32], ys: &mut [f32]) {
    let k = x.len();
    let dot1 = dot_kernel();
    let Some(dot2) = dot2_kernel() else {
        for (yo, wr) in ys.iter_mut().zip(ws.chunks_exact(k)) {
            // SAFETY: dot_kernel returns a kernel only for the features
            // gemm_lanes found on this CPU.
            *yo = unsafe { dot1(wr, x) };
        }
        return;
    };
    let mut pairs = ws.chunks_exact(2 * k);
    let mut outs = ys.chunks_exact_mut(2);
    for (w2, y2) in (&mut pairs).zip(&mut outs) {
        let (w0, w1) = w2.split_at(k);
        // SAFETY: as for dot1, from dot2_kernel.
        let (a, b) = unsafe { dot2(w0, w1, x, PREFETCH_ROWS * k) };
        y2[0] = a;
        y2[1] = b;
    }
    for (yo, wr) in outs
        .into_remainder()
        .iter_mut()
        .zip(pairs.remainder().chunks_exact(k))
    {
        // SAFETY: as above.
        *yo = unsafe { dot1(wr, x) };
    }
}

/// Steps 4 and 5 of the module doc: the lanes added in order, then scalar
/// FMAs over `w[d..k]`, `x[d..k]`.
fn sum_lanes_then_tail(lanes: &[f32], w: &[f32], x: &[f32], d: usize, k: usize) -> f32 {
    let mut s = lanes[0];
    for l in &lanes[1..] {
        s += l;
    }
    for i in d..k {
        s = w[i].mul_add(x[i], s);
    }
    s
}

/// [`dot`] in plain Rust for `L` lanes, the same arithmetic lane by lane;
/// the tests check the intrinsics kernels against it.
#[inline(always)]
pub fn dot_portable<const L: usize>(w: &[f32], x: &[f32]) -> f32 {
    let k = w.len().min(x.len());
    let (k_blocks, k_lanes) = (k / (8 * L) * (8 * L), k / L * L);
    let fma = |a: &mut [f32; L], d: usize| {
        for l in 0..L {
            a[l] = w[d + l].mul_add(x[d + l], a[l]);
        }
    };
    let add = |a: [f32; L], b: [f32; L]| std::array::from_fn::<f32, L, _>(|l| a[l] + b[l]);
    let mut acc = [[0f32; L]; 8];
    let mut d = 0;
    while d < k_blocks {
        for (j, a) in acc.iter_mut().enumerate() {
            fma(a, d + L * j);
        }
        d += 8 * L;
    }
    let a01 = add(acc[0], acc[1]);
    let a23 = add(acc[2], acc[3]);
    let a45 = add(acc[4], acc[5]);
    let a67 = add(acc[6], acc[7]);
    let mut a = add(add(a01, a23), add(a45, a67));
    while d < k_lanes {
        fma(&mut a, d);
        d += L;
    }
    sum_lanes_then_tail(&a, w, x, d, k)
}

/// Random inputs for the tests of this module and its submodules.
#[cfg(test)]
mod test_data {
    use candle_core::{Device, Tensor};

    /// `n` values uniform in `[-spread / 2, spread / 2)` from `seed`.
    pub fn values(n: usize, seed: u64, spread: f32) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
        (0..n).map(|_| (r.f64() as f32 - 0.5) * spread).collect()
    }

    /// A CPU tensor of `shape` holding [`values`].
    pub fn tensor(shape: &[usize], seed: u64, spread: f32) -> Tensor {
        let data = values(shape.iter().product(), seed, spread);
        Tensor::from_vec(data, shape, &Device::Cpu).expect("shape matches data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn random(n: usize, seed: u64) -> Vec<f32> {
        test_data::values(n, seed, 2.0)
    }

    /// `matvec` of a random `(out, k)` product, checked bit for bit against
    /// candle's matmul; `(x, w, output)`, or `None` where this CPU runs
    /// neither of gemm's kernels repeated here.
    fn checked_against_candle(out: usize, k: usize) -> Option<(Tensor, Tensor, Tensor)> {
        let dev = Device::Cpu;
        let x = Tensor::from_vec(random(k, 1), (1, k), &dev).unwrap();
        let w = Tensor::from_vec(random(out * k, 2), (out, k), &dev).unwrap();
        let want = x.matmul(&w.t().unwrap()).unwrap();
        let Some(got) = matvec(&x, &w).unwrap() else {
            assert!(gemm_lanes().is_none(), "({out}, {k}) should run the kernel");
            return None;
        };
        assert_same_bits(&want, &got, &format!("({out}, {k})"));
        Some((x, w, got))
    }

    /// Every output equals candle's matmul bit for bit, on shapes that hit
    /// every stage of the kernel (64-blocks, 8-steps, scalar tail).
    #[test]
    fn matvec_equals_candle_bit_for_bit() {
        for &(out, k) in &[
            (257, 3),
            (300, 7),
            (576, 576),
            (1536, 576),
            (576, 1536),
            (1000, 100),
            (4099, 131),
            (49152, 64),
        ] {
            let Some((x, w, got)) = checked_against_candle(out, k) else {
                continue;
            };
            let xs = x.to_vec2::<f32>().unwrap();
            let portable: Vec<f32> = w
                .to_vec2::<f32>()
                .unwrap()
                .iter()
                .map(|r| match gemm_lanes() {
                    Some(16) => dot_portable::<16>(r, &xs[0]),
                    _ => dot_portable::<8>(r, &xs[0]),
                })
                .collect();
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(portable, got, "({out}, {k}): portable order differs");
        }
    }

    /// Each intrinsics kernel this CPU can run does the portable order's
    /// arithmetic (the AVX2 one is also gemm's on CPUs without AVX-512), and
    /// AVX-512's two-row kernel gives each row what the one-row kernel does.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn intrinsics_kernels_follow_the_portable_order() {
        for k in [3, 8, 63, 64, 65, 127, 128, 129, 576, 1536, 1000] {
            let (w, x) = (random(k, 3), random(k, 4));
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // SAFETY: AVX2 and FMA detected just above.
                let got = unsafe { avx2::dot(&w, &x) };
                assert_eq!(got.to_bits(), dot_portable::<8>(&w, &x).to_bits(), "k={k}");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F detected just above.
                let got = unsafe { avx512::dot(&w, &x) };
                assert_eq!(got.to_bits(), dot_portable::<16>(&w, &x).to_bits(), "k={k}");
                // SAFETY: as above.
                let (a, b) = unsafe { avx512::dot2(&w, &x, &x, 0) };
                assert_eq!(a.to_bits(), got.to_bits(), "k={k}, first of two rows");
                assert_eq!(
                    b.to_bits(),
                    dot_portable::<16>(&x, &x).to_bits(),
                    "k={k}, second"
                );
            }
        }
    }

    /// The products gemm gives to its horizontal kernel (256 outputs or
    /// fewer) equal candle's bit for bit, with depths that hit full lanes,
    /// a partial last load and more than one depth block.
    #[test]
    fn small_products_equal_candle_bit_for_bit() {
        for &(out, k) in &[
            (1, 3),
            (7, 17),
            (64, 64),
            (192, 576),
            (256, 576),
            (192, 1024),
            (100, 1025),
            (96, 1536),
            (33, 2100),
        ] {
            checked_against_candle(out, k);
        }
    }

    /// Several products in one fork-join give each product's own outputs,
    /// whichever kernel each needs and wherever the threads' runs split them.
    #[test]
    fn products_done_together_equal_each_alone() {
        let dev = Device::Cpu;
        let k = 576;
        let x = Tensor::from_vec(random(k, 7), (1, k), &dev).unwrap();
        for outs in [&[576, 192, 192][..], &[1536, 1536], &[100, 3000, 5]] {
            let ws: Vec<Tensor> = outs
                .iter()
                .enumerate()
                .map(|(i, &o)| Tensor::from_vec(random(o * k, 8 + i as u64), (o, k), &dev))
                .collect::<Result<_>>()
                .unwrap();
            let refs: Vec<&Tensor> = ws.iter().collect();
            let Some(got) = matvec_many(&x, &refs).unwrap() else {
                assert!(gemm_lanes().is_none());
                continue;
            };
            assert_eq!(got.len(), ws.len());
            for (w, y) in ws.iter().zip(&got) {
                let want = x.matmul(&w.t().unwrap()).unwrap();
                assert_same_bits(&want, y, &format!("{outs:?}"));
            }
        }
    }

    /// The gated MLP input made in one fork-join equals candle's two
    /// matmuls, `silu` and product bit for bit, for one row and several.
    #[test]
    fn silu_gated_equals_candle_bit_for_bit() {
        use super::test_data::tensor;
        let (gate, up) = (tensor(&[1536, 576], 32, 2.0), tensor(&[1536, 576], 33, 2.0));
        for t in [1, 2, 5, 88] {
            let x = tensor(&[t, 576], 31, 2.0);
            let product = |w: &Tensor| x.matmul(&w.t().unwrap()).unwrap();
            let want = (product(&gate).silu().unwrap() * product(&up)).unwrap();
            let got = if t == 1 {
                matvec_silu_gated(&x, &gate, &up).unwrap()
            } else {
                rows::matmul_rows_silu_gated(&x, &gate, &up).unwrap()
            };
            match got {
                Some(got) => assert_same_bits(&want, &got, &format!("{t} rows")),
                None => assert!(gemm_lanes().is_none(), "{t} rows declined"),
            }
        }
    }

    /// candle's `silu` for f32 (`candle_core::op::Silu`), one number at a
    /// time: `v / (1 + exp(-v))`, rounded as candle rounds it.
    fn silu(v: f32) -> f32 {
        v / (1.0 + (-v).exp())
    }

    /// [`silu`] is candle's, bit for bit, on ordinary and extreme values,
    /// and so is [`silu_gate_in_place`] with an `up` of ones.
    #[test]
    fn silu_is_candles() {
        let mut vs: Vec<f32> = (-2000..2000).map(|i| i as f32 * 0.0625).collect();
        vs.extend([
            0.0, -0.0, 1e-40, -1e-40, 88.8, -88.8, 104.0, -104.0, 1e30, -1e30,
        ]);
        vs.extend([f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN]);
        let want = Tensor::new(vs.as_slice(), &Device::Cpu)
            .unwrap()
            .silu()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let mut lanes = vs.clone();
        silu_gate_in_place(&mut lanes, &vec![1.0; vs.len()]);
        for ((v, w), l) in vs.iter().zip(want).zip(lanes) {
            assert_eq!(silu(*v).to_bits(), w.to_bits(), "silu({v})");
            assert_eq!(l.to_bits(), w.to_bits(), "silu({v}) * 1 in lanes");
        }
    }

    /// Each horizontal kernel this CPU can run does the portable order's
    /// arithmetic.
    #[test]
    fn horizontal_kernels_follow_the_portable_order() {
        for k in [3, 8, 15, 16, 17, 576, 1024, 1025, 2100] {
            let (w, x) = (random(7 * k, 9), random(k, 10));
            for lanes in [8, 16] {
                let want: Vec<u32> = w
                    .chunks_exact(k)
                    .map(|r| match lanes {
                        16 => horizontal::hdot_portable::<16>(r, &x).to_bits(),
                        _ => horizontal::hdot_portable::<8>(r, &x).to_bits(),
                    })
                    .collect();
                let one = horizontal::hdot(lanes, &w[..k], &x);
                assert_eq!(one.to_bits(), want[0], "k={k}, {lanes} lanes");
                // Seven rows: one group of four and three left over.
                let mut rows = vec![0f32; 7];
                horizontal::hdot_rows(lanes, &w, &x, &mut rows);
                let rows: Vec<u32> = rows.iter().map(|y| y.to_bits()).collect();
                assert_eq!(rows, want, "k={k}, {lanes} lanes, rows");
            }
        }
    }

    fn assert_same_bits(want: &Tensor, got: &Tensor, what: &str) {
        let (a, b) = (
            want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let same = a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits());
        assert!(same, "{what}: outputs differ from candle's");
    }

    /// Shapes gemm gives to other kernels are left to candle.
    #[test]
    fn other_shapes_are_left_to_candle() {
        let dev = Device::Cpu;
        let two = Tensor::zeros((2, 64), DType::F32, &dev).unwrap();
        let w = Tensor::zeros((512, 64), DType::F32, &dev).unwrap();
        assert!(matvec(&two, &w).unwrap().is_none());
        let narrow = Tensor::zeros((1, 2), DType::F32, &dev).unwrap();
        let w2 = Tensor::zeros((512, 2), DType::F32, &dev).unwrap();
        assert!(matvec(&narrow, &w2).unwrap().is_none());
        let f64x = Tensor::zeros((1, 64), DType::F64, &dev).unwrap();
        let f64w = Tensor::zeros((512, 64), DType::F64, &dev).unwrap();
        assert!(matvec(&f64x, &f64w).unwrap().is_none());
    }

    /// A weight tracked by autograd (a training step) keeps candle's
    /// matmul, which has a backward pass.
    #[test]
    fn tracked_operands_are_left_to_candle() {
        let x = test_data::tensor(&[1, 64], 1, 1.0);
        let w = test_data::tensor(&[512, 64], 2, 1.0);
        let var = candle_core::Var::from_tensor(&w).unwrap();
        assert!(matvec(&x, var.as_tensor()).unwrap().is_none());
        let xs = test_data::tensor(&[8, 64], 3, 1.0);
        assert!(rows::matmul_rows(&xs, var.as_tensor()).unwrap().is_none());
        if gemm_lanes().is_some() {
            assert!(
                matvec(&x, &w).unwrap().is_some(),
                "the same weight untracked"
            );
        }
    }
}
