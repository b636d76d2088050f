//! Several rows of activations times a weight matrix on the CPU (`x (t,
//! in) @ w^T` for `w` `(out, in)`, `t >= 2`: prefill's products), every
//! output bit for bit what candle's matmul gives, without packing the
//! weights.
//!
//! candle sends such a product to gemm, which computes it transposed
//! (`y^T = w x^T`, so that its destination is column-major), copies `w`
//! into panels of 16 rows (AVX2) or 64 (AVX-512) with strided loads (every
//! weight, every call: a fifth of a prefill's time on the AVX2 machine)
//! and runs its microkernel over the panels. Per output, its arithmetic is:
//!
//! 1. a chain of FMAs over the inputs in order, starting from zero, with
//!    no split into lanes: `c = fma(w[i], x[i], c)`;
//! 2. restarted at every depth block of `kc` inputs, where `kc` is
//!    `min(in, 512)` when `out` and `t` are both at most 64, else what
//!    `gemm_common::cache::kernel_params` gives for the tile of the gemm
//!    kernel this CPU runs (16 or 64 rows by 6 columns);
//! 3. the blocks' chains added in order: `y = (c0 + c1) + c2 ...`.
//!
//! Here `x` is transposed instead (a copy of `t × in` values, far fewer
//! than `out × in` weights), into panels of up to four vectors of rows of
//! `x`, one row per lane; each weight is broadcast from its row of `w` in
//! place. A step multiplies two weight rows (AVX2, 8 lanes) or six
//! (AVX-512, 16 lanes) by a panel, one accumulator per row and vector.
//! Each lane runs step 1's chain for its own output, so every output is
//! gemm's bit for bit (the tests compare both kernels with candle over many
//! shapes), and the outputs split over the CPU threads by weight rows. Each
//! thread keeps its outputs transposed (whole vectors stored and added per
//! depth block) in a buffer it keeps between calls, and writes them into
//! its own columns of `y` before the join. [`matmul_rows_many`] does
//! several products of one `x` (q, k and v; gate and up) over one copy of
//! the panels in one fork-join; both transpositions go through
//! `super::transpose`'s 8 × 8 register blocks.
//!
//! On the 2-core AMD EPYC (Zen 5) of 2026-12-07, a SmolLM2-135M prefill's
//! products for 88 rows (`matvec_bench --rows 88`) took 70 ms with the
//! panels and the outputs moved element by element (the panels alone 57
//! µs a call) and 60 ms with the register transposes.
//!
//! Where gemm would take another path (its horizontal kernel for `out × t
//! <= 256`; its outer-product path for `in <= 2`; a one-row product; a CPU
//! without AVX2 and FMA), and where an operand is tracked for autograd (a
//! training step: the product here has no backward pass), [`matmul_rows`]
//! returns `None` and the caller keeps candle's matmul.

use candle_core::{Result, Tensor};
use std::cell::Cell;
use std::ops::Range;
use std::thread::LocalKey;

/// gemm's f32 tile: rows of `x` per microkernel call (its `NR`), with
/// AVX2 (`V3`) and with AVX-512 (`V4`).
const GEMM_TILE_COLS: usize = 6;

/// gemm's f32 tile: rows of `w` per microkernel call (its `MR`) for its
/// kernel of `lanes` lanes: two vectors with AVX2, four with AVX-512.
fn gemm_tile_rows(lanes: usize) -> Option<usize> {
    match lanes {
        8 => Some(16),
        16 => Some(64),
        _ => None,
    }
}

/// At most this many outputs (`out × t`) gemm gives to its horizontal
/// kernel instead.
const GEMM_HORIZONTAL_MAX: usize = 256;

/// Vectors of `x` rows per panel: 32 rows with AVX2, 64 with AVX-512.
const PANEL_VECTORS: usize = 4;

/// Panels per group: the `kc × 128` (AVX2) or `kc × 256` (AVX-512) block
/// of transposed `x` that a thread walks for each run of weight rows stays
/// in its L2 cache.
const GROUP_PANELS: usize = 4;

/// Inputs ahead of the current one whose slice of the panel a kernel asks
/// the CPU to bring into L1 (the panel's depth block is larger than L1):
/// 115 against 108 ms for a SmolLM2 prefill's products on the AVX-512
/// machine (`matvec_bench --rows 88`; 24 ahead was no better).
const PREFETCH_AHEAD: usize = 12;

/// Fewest multiply-adds per thread worth a fork-join.
const MIN_WORK_PER_THREAD: usize = 1 << 18;

/// `x (t, in) @ w^T` for `w` `(out, in)`, both f32 on the CPU and `t >=
/// 2`, as `(t, out)`; `None` where this module would not give candle's bits
/// (see the module doc), so the caller uses candle's matmul.
pub fn matmul_rows(x: &Tensor, w: &Tensor) -> Result<Option<Tensor>> {
    Ok(matmul_rows_many(x, &[w])?.and_then(|mut ys| ys.pop()))
}

/// [`matmul_rows`] of one `x` with each of `ws` (all `(out_i, in)`) in one
/// fork-join over one transposed copy of `x`: the weight rows of all the
/// products are split over the threads together, and each output is still
/// the one its own product gives. `None` unless the kernel applies to
/// every product.
pub fn matmul_rows_many(x: &Tensor, ws: &[&Tensor]) -> Result<Option<Vec<Tensor>>> {
    let outs: Vec<usize> = ws
        .iter()
        .map(|w| w.dims().first().copied().unwrap_or(0))
        .collect();
    run_products(x, ws, Combine::Each, &outs)
}

/// `silu(x @ gate^T) * (x @ up^T)` for `gate` and `up` `(out, in)`, the
/// gated input of a LLaMA-style MLP, bit for bit what candle's two matmuls,
/// `silu` and product give, in one fork-join; `None` where
/// [`matmul_rows_many`] would decline either product or their shapes
/// differ.
pub fn matmul_rows_silu_gated(x: &Tensor, gate: &Tensor, up: &Tensor) -> Result<Option<Tensor>> {
    if gate.dims() != up.dims() {
        return Ok(None);
    }
    let out = gate.dims().first().copied().unwrap_or(0);
    Ok(run_products(x, &[gate, up], Combine::SiluGate, &[out])?.and_then(|mut ys| ys.pop()))
}

/// The products of `x` with `ws` made into outputs `outs` wide by
/// `combine`, as `(t, out)` tensors; `None` where the kernel does not
/// apply to every product (see the module doc).
fn run_products(
    x: &Tensor,
    ws: &[&Tensor],
    combine: Combine,
    outs: &[usize],
) -> Result<Option<Vec<Tensor>>> {
    let Some(lanes) = super::gemm_lanes() else {
        return Ok(None);
    };
    let (Some(tile_rows), Some(run)) = (gemm_tile_rows(lanes), kernel_for(lanes)) else {
        return Ok(None);
    };
    if ws.is_empty() || !several_rows(x)? || super::tracked(&[x]) || super::tracked(ws) {
        return Ok(None);
    }
    let (t, k) = x.dims2()?;
    let applies = |w: &&Tensor| {
        super::fits(w, k) && w.dims()[0] >= 2 && w.dims()[0] * t > GEMM_HORIZONTAL_MAX
    };
    if !ws.iter().all(applies) {
        return Ok(None);
    }
    let (x_storage, x_layout) = x.storage_and_layout();
    let xv = super::cpu_f32(&x_storage, x_layout)?;
    let weights: Vec<_> = ws.iter().map(|w| w.storage_and_layout()).collect();
    let wv = weights
        .iter()
        .map(|(s, l)| super::cpu_f32(s, l))
        .collect::<Result<Vec<_>>>()?;
    let mut ys: Vec<Vec<f32>> = outs.iter().map(|&out| vec![0f32; t * out]).collect();
    run(Rows { t, k, tile_rows }, xv, &wv, combine, &mut ys);
    ys.into_iter()
        .zip(outs)
        .map(|(y, &out)| Tensor::from_vec(y, (t, out), x.device()))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// [`multiply`] with one kernel.
type Multiply = fn(Rows, &[f32], &[&[f32]], Combine, &mut [Vec<f32>]);

/// The kernel for a CPU whose gemm runs `lanes` lanes: AVX-512's with 16,
/// AVX2 and FMA's with 8 (each lane is one output either way, so both give
/// gemm's bits; only `kc` depends on gemm's kernel).
///
/// The AVX-512 kernel also asks for AVX-512VL: with AVX-512F alone LLVM
/// allocated only `zmm0` to `zmm19` and spilled four of the 6 × 3
/// accumulators on every step (122 against 154 ms for a SmolLM2 prefill's
/// products, `matvec_bench --rows 88`).
fn kernel_for(lanes: usize) -> Option<Multiply> {
    kernels_for(lanes).map(|(multiply, _)| multiply)
}

/// [`product_here`] with one kernel.
type Here = fn(Shape, usize, &[f32], &[f32], &mut [f32]);

/// Both entry points of the kernel [`kernel_for`] picks.
fn kernels_for(lanes: usize) -> Option<(Multiply, Here)> {
    #[cfg(target_arch = "x86_64")]
    {
        if lanes == 16
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return Some((multiply::<avx512::Kernel>, here::<avx512::Kernel>));
        }
        if lanes == 8
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            return Some((multiply::<avx2::Kernel>, here::<avx2::Kernel>));
        }
    }
    let _ = lanes;
    None
}

/// `y (rows, out) = x (rows, k) @ w^T` for `w` `(out, k)` on the calling
/// thread, bit for bit what candle's matmul gives where these rows are
/// some of the `gemm_t` rows of the product candle computes (its depth
/// blocks and kernel depend on `gemm_t`): for products inside another
/// fork-join, such as attention's per head. `None`, with nothing written,
/// where that product would not go to this module's kernel.
pub(crate) fn product_here(
    x: &[f32],
    k: usize,
    w: &[f32],
    gemm_t: usize,
    y: &mut [f32],
) -> Option<()> {
    let lanes = super::gemm_lanes()?;
    let tile_rows = gemm_tile_rows(lanes)?;
    let (_, run) = kernels_for(lanes)?;
    if k < super::MIN_INPUTS || !x.len().is_multiple_of(k) || !w.len().is_multiple_of(k) {
        return None;
    }
    let (rows, out) = (x.len() / k, w.len() / k);
    let applies = gemm_t >= 2 && rows >= 1 && out >= 2 && out * gemm_t > GEMM_HORIZONTAL_MAX;
    if !applies || y.len() != rows * out {
        return None;
    }
    let gemm_shape = Shape {
        t: gemm_t,
        k,
        out,
        tile_rows,
    };
    let shape = Shape {
        t: rows,
        ..gemm_shape
    };
    run(shape, depth_block(gemm_shape), x, w, y);
    Some(())
}

/// [`product_here`] with kernel `K`, in depth blocks of `kc`.
fn here<K: RowKernel>(s: Shape, kc: usize, x: &[f32], w: &[f32], y: &mut [f32]) {
    let rows = Rows {
        t: s.t,
        k: s.k,
        tile_rows: s.tile_rows,
    };
    let panels = Panels::new(x, rows, K::LANES);
    let padded_t = panels.padded_rows();
    with_buffer(&OUT_BUFFER, s.out * padded_t, |buf| {
        // SAFETY: kernels_for checked K's features.
        unsafe { weight_rows::<K>(s, kc, w, &panels, 0..s.out, buf) };
        assert!(y.len() >= s.t * s.out, "the output holds rows × out");
        // SAFETY: the source is out × t within `buf` (padded_t >= t), the
        // destination t × out within `y` (asserted), borrowed mutably.
        unsafe {
            super::transpose::transpose(buf.as_ptr(), padded_t, s.out, s.t, y.as_mut_ptr(), s.out)
        };
    });
}

/// Whether `x` is a contiguous f32 matrix on the CPU with at least two
/// rows and more than two inputs.
fn several_rows(x: &Tensor) -> Result<bool> {
    Ok(x.device().is_cpu()
        && x.dtype() == candle_core::DType::F32
        && x.dims().len() == 2
        && x.dim(0)? >= 2
        && x.dim(1)? >= super::MIN_INPUTS
        && x.is_contiguous())
}

/// The rows of `x` every product of a call shares: `t` rows of `k`
/// inputs, and gemm's tile height on this CPU.
#[derive(Clone, Copy)]
struct Rows {
    t: usize,
    k: usize,
    tile_rows: usize,
}

impl Rows {
    /// The sizes of this call's product with `out` weight rows.
    fn shape(self, out: usize) -> Shape {
        Shape {
            t: self.t,
            k: self.k,
            out,
            tile_rows: self.tile_rows,
        }
    }
}

/// The sizes of one product: `t` rows of `k` inputs, `out` weight rows,
/// and gemm's tile height on this CPU.
#[derive(Clone, Copy)]
struct Shape {
    t: usize,
    k: usize,
    out: usize,
    tile_rows: usize,
}

/// Step 2 of the module doc: the inputs per depth block gemm uses for
/// this product, which it computes transposed (`out` rows, `t` columns).
fn depth_block(s: Shape) -> usize {
    if s.out <= 64 && s.t <= 64 {
        return s.k.min(512);
    }
    gemm_common::cache::kernel_params(s.out, s.t, s.k, s.tile_rows, GEMM_TILE_COLS, 4).kc
}

thread_local! {
    /// The calling thread's buffer for [`Panels`], kept between calls.
    static PANEL_BUFFER: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    /// Each thread's buffer for its outputs, transposed ([`ThreadOut`]),
    /// kept between calls.
    static OUT_BUFFER: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// `f` of the first `n` floats of this thread's `buffer`, grown where it
/// is shorter (its contents are whatever an earlier call left: `f` must
/// write before it reads).
fn with_buffer<R>(
    buffer: &'static LocalKey<Cell<Vec<f32>>>,
    n: usize,
    f: impl FnOnce(&mut [f32]) -> R,
) -> R {
    let mut data = buffer.take();
    if data.len() < n {
        data.resize(n, 0.0);
    }
    let r = f(&mut data[..n]);
    buffer.set(data);
    r
}

/// `x` transposed into panels: panel `p` holds rows `first_row ..` of
/// `x` as `k` runs of its width (a multiple of the kernel's lanes, the rows
/// past `t` zero), one after another. The floats live in the calling
/// thread's buffer, given back on drop.
struct Panels {
    data: Vec<f32>,
    panels: Vec<Panel>,
}

/// One panel of [`Panels`]: its first row, width and offset in `data`.
#[derive(Clone, Copy)]
struct Panel {
    first_row: usize,
    width: usize,
    offset: usize,
}

impl Panels {
    /// The panels of `x` for a kernel of `lanes` lanes, [`PANEL_VECTORS`]
    /// vectors wide.
    fn new(x: &[f32], s: Rows, lanes: usize) -> Panels {
        // As few panels as fit, of even widths: 88 rows make two panels 48
        // wide (AVX-512), not 64 and 32, so that no block runs a short
        // chain of accumulators.
        let count = s.t.div_ceil(PANEL_VECTORS * lanes);
        let even = s.t.div_ceil(count).next_multiple_of(lanes);
        let mut panels = Vec::with_capacity(count);
        let mut offset = 0;
        for first_row in (0..s.t).step_by(even) {
            let width = (s.t - first_row).min(even).next_multiple_of(lanes);
            panels.push(Panel {
                first_row,
                width,
                offset,
            });
            offset += width * s.k;
        }
        let mut data = PANEL_BUFFER.take();
        data.resize(offset, 0.0);
        for p in &panels {
            let rows = (s.t - p.first_row).min(p.width);
            let src = &x[p.first_row * s.k..(p.first_row + rows) * s.k];
            let dst = &mut data[p.offset..p.offset + p.width * s.k];
            transpose_panel(src, s.k, dst, p.width);
        }
        Panels { data, panels }
    }

    /// The rows of `x` with each panel's padding: the panels' widths added.
    fn padded_rows(&self) -> usize {
        self.panels.last().map_or(0, |p| p.first_row + p.width)
    }
}

impl Drop for Panels {
    fn drop(&mut self) {
        PANEL_BUFFER.set(std::mem::take(&mut self.data));
    }
}

/// `dst[d * width + i] = src[i * k + d]` for the rows `i` of `src` (`k`
/// wide), zero for `i` from there to `width`.
fn transpose_panel(src: &[f32], k: usize, dst: &mut [f32], width: usize) {
    let rows = src.len() / k;
    assert!(
        rows <= width && dst.len() >= k * width,
        "the panel holds the rows"
    );
    // SAFETY: the source is rows × k, the destination k × width with rows
    // <= width (asserted), and `dst` is borrowed mutably.
    unsafe { super::transpose::transpose(src.as_ptr(), k, rows, k, dst.as_mut_ptr(), width) };
    for run in dst.chunks_exact_mut(width) {
        run[rows..].fill(0.0);
    }
}

/// One call of a kernel's block: weight rows `j..j + rows` over the inputs
/// `k0..k0 + depth` against one panel, stored in the thread's outputs when
/// `first`, else added to them.
#[derive(Clone, Copy)]
struct Step {
    k0: usize,
    depth: usize,
    j: usize,
    rows: usize,
    first: bool,
}

/// One thread's outputs, transposed: row `j - first` holds weight row
/// `j`'s outputs for every row of `x` (padded as the panels are), so a
/// kernel stores or adds whole vectors.
struct ThreadOut<'a> {
    data: &'a mut [f32],
    first: usize,
    padded_t: usize,
}

impl ThreadOut<'_> {
    /// The outputs of weight row `j` for the padded rows `at..at + n` of
    /// `x`.
    fn lanes(&mut self, j: usize, at: usize, n: usize) -> &mut [f32] {
        &mut self.data[(j - self.first) * self.padded_t + at..][..n]
    }
}

/// A kernel of this module for one instruction set.
trait RowKernel {
    /// Lanes per vector.
    const LANES: usize;
    /// Most weight rows per block.
    const ROWS: usize;

    /// One [`Step`]: `w` is all of `w`, `x` the panel's block of inputs
    /// `k0..k0 + depth`.
    ///
    /// # Safety
    /// The CPU must have the kernel's features.
    unsafe fn step(s: Shape, w: &[f32], x: &[f32], p: Panel, st: Step, out: &mut ThreadOut);
}

/// The weight rows `rows` of product `product`: one thread's share of a
/// call, or part of it.
struct Segment {
    product: usize,
    rows: Range<usize>,
}

/// The weight rows of products with `outs` rows split over `threads`
/// threads: about as many rows each (all products of a call have the same
/// inputs), each run of one product a multiple of `align` rows but its
/// last. Threads left without rows are dropped.
fn split_rows(outs: &[usize], threads: usize, align: usize) -> Vec<Vec<Segment>> {
    let share = outs.iter().sum::<usize>().div_ceil(threads);
    let mut parts: Vec<Vec<Segment>> = (0..threads).map(|_| Vec::new()).collect();
    let (mut thread, mut filled) = (0, 0);
    for (product, &out) in outs.iter().enumerate() {
        let mut j = 0;
        while j < out {
            if filled >= share && thread + 1 < threads {
                (thread, filled) = (thread + 1, 0);
            }
            let n = if thread + 1 == threads {
                out - j
            } else {
                (share - filled).next_multiple_of(align).min(out - j)
            };
            parts[thread].push(Segment {
                product,
                rows: j..j + n,
            });
            j += n;
            filled += n;
        }
    }
    parts.retain(|p| !p.is_empty());
    parts
}

/// The outputs of a call's products, `(t, out)` each, written by several
/// threads at once: each thread writes only the columns of its own
/// segments ([`split_rows`] gives every weight row to one thread).
struct Outputs {
    ys: Vec<(*mut f32, usize)>,
    t: usize,
}

// SAFETY: threads write disjoint columns through `Outputs` (see
// `Outputs::write_columns`), and the call that owns the outputs waits for
// them all.
unsafe impl Sync for Outputs {}

impl Outputs {
    fn new(ys: &mut [Vec<f32>], t: usize) -> Outputs {
        let ys = ys
            .iter_mut()
            .map(|y| (y.as_mut_ptr(), y.len() / t))
            .collect();
        Outputs { ys, t }
    }

    /// Columns `seg.rows` of product `seg.product`'s output from `from`,
    /// which holds them transposed (row `j - seg.rows.start` holds column
    /// `j`, `padded_t >= t` wide).
    ///
    /// # Safety
    /// No other thread may write or read these columns meanwhile, and the
    /// outputs must outlive the call.
    unsafe fn write_columns(&self, seg: &Segment, from: &[f32], padded_t: usize) {
        let (y, out) = self.ys[seg.product];
        assert!(seg.rows.end <= out && padded_t >= self.t);
        assert!(from.len() >= seg.rows.len() * padded_t);
        // SAFETY: the source is seg.rows.len() × t within `from`
        // (asserted); the destination is columns seg.rows of the t × out
        // output, which this thread alone writes (as the caller promised).
        unsafe {
            super::transpose::transpose(
                from.as_ptr(),
                padded_t,
                seg.rows.len(),
                self.t,
                y.add(seg.rows.start),
                out,
            )
        };
    }
}

/// `ys[i] = x @ ws[i]^T` with kernel `K`: `x` transposed once into
/// panels, the weight rows of all the products split into one share per
/// thread ([`split_rows`]), each thread computing its rows' outputs
/// transposed ([`weight_rows`]) and writing them into its columns of
/// `ys`, all in one fork-join.
///
/// With [`Combine::SiluGate`], `ws` is `[gate, up]` and `ys` holds one
/// output, `silu(x @ gate^T) * (x @ up^T)`: each thread computes the same
/// columns of both products and combines them before it writes them.
fn multiply<K: RowKernel>(
    s: Rows,
    x: &[f32],
    ws: &[&[f32]],
    combine: Combine,
    ys: &mut [Vec<f32>],
) {
    use rayon::prelude::*;
    let panels = Panels::new(x, s, K::LANES);
    let padded_t = panels.padded_rows();
    let outs: Vec<usize> = ys.iter().map(|y| y.len() / s.t).collect();
    let total = outs.iter().sum::<usize>() * ws.len() / outs.len();
    let threads = candle_core::utils::get_num_threads()
        .min(s.t * total * s.k / MIN_WORK_PER_THREAD)
        .max(1);
    let parts = split_rows(&outs, threads, K::ROWS);
    let outputs = Outputs::new(ys, s.t);
    let run = |part: &Vec<Segment>| {
        for seg in part {
            let shape = s.shape(outs[seg.product]);
            let kc = depth_block(shape);
            let len = seg.rows.len() * padded_t;
            let rows = || seg.rows.clone();
            // SAFETY (both arms): the caller checked K's features; this
            // thread alone has `seg`'s columns, and `ys` outlives the
            // fork-join.
            match combine {
                Combine::Each => with_buffer(&OUT_BUFFER, len, |buf| unsafe {
                    weight_rows::<K>(shape, kc, ws[seg.product], &panels, rows(), buf);
                    outputs.write_columns(seg, buf, padded_t);
                }),
                Combine::SiluGate => with_buffer(&OUT_BUFFER, 2 * len, |buf| unsafe {
                    let (gate, up) = buf.split_at_mut(len);
                    weight_rows::<K>(shape, kc, ws[0], &panels, rows(), gate);
                    weight_rows::<K>(shape, kc, ws[1], &panels, rows(), up);
                    silu_gate(gate, up, padded_t, s.t);
                    outputs.write_columns(seg, gate, padded_t);
                }),
            }
        }
    };
    if parts.len() == 1 {
        parts.iter().for_each(run);
    } else {
        parts.par_iter().for_each(run);
    }
}

/// What a call of [`multiply`] makes of its products.
#[derive(Clone, Copy)]
enum Combine {
    /// Each product is an output.
    Each,
    /// Two products, gate and up, make one output: `silu(gate) * up`.
    SiluGate,
}

/// `gate = silu(gate) * up` over the first `t` of every `width` floats,
/// each as candle computes it for f32: `silu(g) = g / (1 + exp(-g))`
/// rounded to f32, then the product rounded.
fn silu_gate(gate: &mut [f32], up: &[f32], width: usize, t: usize) {
    for (g_row, u_row) in gate.chunks_exact_mut(width).zip(up.chunks_exact(width)) {
        super::silu_gate_in_place(&mut g_row[..t], &u_row[..t]);
    }
}

/// The outputs of the weight rows `rows`, transposed into `data` (see
/// [`ThreadOut`]), in depth blocks of `kc` inputs: for each group of
/// panels, each depth block, each `K::ROWS` weight rows and each panel in
/// turn.
///
/// # Safety
/// As for [`RowKernel::step`].
unsafe fn weight_rows<K: RowKernel>(
    s: Shape,
    kc: usize,
    w: &[f32],
    panels: &Panels,
    rows: Range<usize>,
    data: &mut [f32],
) {
    let mut out = ThreadOut {
        data,
        first: rows.start,
        padded_t: panels.padded_rows(),
    };
    for group in panels.panels.chunks(GROUP_PANELS) {
        for (b, k0) in (0..s.k).step_by(kc).enumerate() {
            let depth = kc.min(s.k - k0);
            let mut j = rows.start;
            while j < rows.end {
                let n = (rows.end - j).min(K::ROWS);
                for p in group {
                    let x = &panels.data[p.offset + k0 * p.width..][..depth * p.width];
                    let st = Step {
                        k0,
                        depth,
                        j,
                        rows: n,
                        first: b == 0,
                    };
                    // SAFETY: as for this function.
                    unsafe { K::step(s, w, x, *p, st, &mut out) };
                }
                j += n;
            }
        }
    }
}

/// Weight row `r` of a step's rows, from its input `k0` on.
fn step_row(s: Shape, w: &[f32], st: Step, r: usize) -> &[f32] {
    let row = st.j + r;
    &w[row * s.k + st.k0..(row + 1) * s.k]
}

/// The kernel's block body for one instruction set: `R` weight rows
/// against `V` vectors of a panel, each lane one output's FMA chain.
macro_rules! row_kernel {
    ($name:ident, $feature:literal, $lanes:literal, $rows:literal, $vec:ty,
     $zero:ident, $load:ident, $bcast:path, $fma:ident, $add:ident, $store:ident,
     [$(($r:literal, $v:literal)),*]) => {
        #[cfg(target_arch = "x86_64")]
        mod $name {
            use super::{PREFETCH_AHEAD, Panel, RowKernel, Shape, Step, ThreadOut, step_row};
            use std::arch::x86_64::*;

            /// This instruction set's kernel.
            pub struct Kernel;

            impl RowKernel for Kernel {
                const LANES: usize = $lanes;
                const ROWS: usize = $rows;

                unsafe fn step(s: Shape, w: &[f32], x: &[f32], p: Panel, st: Step, out: &mut ThreadOut) {
                    // SAFETY: as for RowKernel::step.
                    unsafe {
                        match (st.rows.min($rows), p.width / $lanes) {
                            $(($r, $v) => block::<$r, $v>(s, w, x, p, st, out),)*
                            _ => unreachable!("a panel is 1 to 4 vectors wide"),
                        }
                    }
                }
            }

            /// `R` weight rows against the `V` vectors of one panel over one
            /// depth block, then stored or added to `y`.
            ///
            /// # Safety
            /// As for [`RowKernel::step`].
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn block<const R: usize, const V: usize>(
                s: Shape,
                w: &[f32],
                x: &[f32],
                p: Panel,
                st: Step,
                out: &mut ThreadOut,
            ) {
                let width = V * $lanes;
                // No closures below: a closure is not compiled with this
                // function's features, and one per load is not inlined.
                let mut wp = [std::ptr::null::<f32>(); R];
                for (r, p) in wp.iter_mut().enumerate() {
                    let row = step_row(s, w, st, r);
                    assert!(row.len() >= st.depth, "weight row covers the depth block");
                    *p = row.as_ptr();
                }
                assert!(x.len() >= st.depth * width, "panel covers the depth block");
                let xp = x.as_ptr();
                let mut acc: [[$vec; V]; R] = [[$zero(); V]; R];
                // Index loops over the constant R and V unroll fully, so
                // every accumulator stays in a register.
                #[allow(clippy::needless_range_loop)]
                for d in 0..st.depth {
                    let mut xs: [$vec; V] = [$zero(); V];
                    for v in 0..V {
                        // SAFETY: d < depth: within `x` (asserted).
                        xs[v] = unsafe { $load(xp.add(d * width + v * $lanes)) };
                        _mm_prefetch::<_MM_HINT_T0>(xp.wrapping_add((d + PREFETCH_AHEAD) * width + v * $lanes) as *const i8);
                    }
                    for r in 0..R {
                        // SAFETY: d < depth: within each row (asserted).
                        let b = unsafe { $bcast(wp[r].add(d)) };
                        for v in 0..V {
                            acc[r][v] = $fma(b, xs[v], acc[r][v]);
                        }
                    }
                }
                for (r, acc_r) in acc.iter().enumerate() {
                    let o = out.lanes(st.j + r, p.first_row, width);
                    for (v, a) in acc_r.iter().enumerate() {
                        // SAFETY: `o` holds V vectors (`width` floats).
                        unsafe {
                            let at = o.as_mut_ptr().add(v * $lanes);
                            let sum = if st.first { *a } else { $add($load(at), *a) };
                            $store(at, sum);
                        }
                    }
                }
            }
        }
    };
}

/// Broadcasts `*p` to 8 lanes.
///
/// # Safety
/// `p` must be valid to read; the CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn broadcast_8(p: *const f32) -> std::arch::x86_64::__m256 {
    // SAFETY: as for this function.
    unsafe { std::arch::x86_64::_mm256_broadcast_ss(&*p) }
}

/// Broadcasts `*p` to 16 lanes.
///
/// # Safety
/// `p` must be valid to read; the CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn broadcast_16(p: *const f32) -> std::arch::x86_64::__m512 {
    // SAFETY: as for this function.
    unsafe { std::arch::x86_64::_mm512_set1_ps(*p) }
}

// One monomorphization per (weight rows, panel vectors) a step can have.
#[rustfmt::skip]
row_kernel!(avx2, "avx2,fma", 8, 2, __m256, _mm256_setzero_ps, _mm256_loadu_ps,
    super::broadcast_8, _mm256_fmadd_ps, _mm256_add_ps, _mm256_storeu_ps,
    [(2, 4), (2, 3), (2, 2), (2, 1), (1, 4), (1, 3), (1, 2), (1, 1)]);

#[rustfmt::skip]
row_kernel!(avx512, "avx512f,avx512vl", 16, 6, __m512, _mm512_setzero_ps, _mm512_loadu_ps,
    super::broadcast_16, _mm512_fmadd_ps, _mm512_add_ps, _mm512_storeu_ps,
    [(6, 4), (6, 3), (6, 2), (6, 1), (5, 4), (5, 3), (5, 2), (5, 1),
     (4, 4), (4, 3), (4, 2), (4, 1), (3, 4), (3, 3), (3, 2), (3, 1),
     (2, 4), (2, 3), (2, 2), (2, 1), (1, 4), (1, 3), (1, 2), (1, 1)]);

#[cfg(test)]
mod tests {
    use super::super::test_data::tensor;
    use super::*;

    /// Every kernel this CPU runs (AVX-512 and AVX2 both, where it has
    /// both), each with the `kc` of the gemm kernel it really runs.
    fn kernels() -> Vec<(&'static str, Multiply)> {
        let mut all = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if kernel_for(16).is_some() {
                all.push(("avx512", multiply::<avx512::Kernel> as Multiply));
            }
            if kernel_for(8).is_some() {
                all.push(("avx2", multiply::<avx2::Kernel> as Multiply));
            }
        }
        all
    }

    /// `matmul_rows` of a random product, and each of [`kernels`] on it,
    /// checked bit for bit against candle's matmul; whether `matmul_rows`
    /// ran a kernel.
    fn check(t: usize, out: usize, k: usize) -> bool {
        let x = tensor(&[t, k], 11, 2.0);
        let w = tensor(&[out, k], 12, 2.0);
        let want = x.matmul(&w.t().unwrap()).unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let same = |got: &[f32], what: &str| {
            for (i, (a, b)) in want.iter().zip(got).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "({t}, {out}, {k}) {what} output {i}: candle {a}, kernel {b}"
                );
            }
        };
        let tile_rows = super::super::gemm_lanes().and_then(gemm_tile_rows);
        if let Some(tile_rows) = tile_rows.filter(|_| out * t > GEMM_HORIZONTAL_MAX && k > 2) {
            let (xv, wv) = (
                x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                w.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            for (name, run) in kernels() {
                let mut ys = vec![vec![f32::NAN; t * out]];
                run(
                    Rows { t, k, tile_rows },
                    &xv,
                    &[&wv],
                    Combine::Each,
                    &mut ys,
                );
                same(&ys[0], name);
            }
        }
        let Some(got) = matmul_rows(&x, &w).unwrap() else {
            return false;
        };
        same(
            &got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "matmul_rows",
        );
        true
    }

    /// Every output equals candle's matmul bit for bit, on shapes with one
    /// depth block and several, both of gemm's ways to pick it (`out` and
    /// `t` at most 64 or not), odd row counts, odd weight-row counts and
    /// every panel width.
    #[test]
    fn matmul_rows_equals_candle_bit_for_bit() {
        let mut ran = 0;
        for &(t, out, k) in &[
            (2, 129, 3),
            (3, 100, 17),
            (7, 64, 600),
            (9, 63, 1100),
            (64, 64, 513),
            (65, 33, 576),
            (88, 576, 576),
            (88, 192, 576),
            (88, 1536, 576),
            (88, 576, 1536),
            (33, 1001, 1537),
            (300, 130, 290),
            (13, 1000, 64),
            (130, 7, 100),
        ] {
            ran += usize::from(check(t, out, k));
        }
        if super::super::gemm_lanes().is_some() {
            assert_eq!(ran, 14, "the kernel should run every shape");
        }
    }

    /// Products done together give each product's own bits, on shapes
    /// like SmolLM2's (q, k, v; gate, up) and odd ones whose shares split
    /// a product between the threads.
    #[test]
    fn products_done_together_equal_each_alone() {
        for &(t, k, ref outs) in &[
            (88, 576, vec![576, 192, 192]),
            (88, 576, vec![1536, 1536]),
            (37, 100, vec![7, 301, 33]),
            (5, 64, vec![200, 70]),
        ] {
            let x = tensor(&[t, k], 21, 2.0);
            let ws: Vec<Tensor> = outs
                .iter()
                .zip(22..)
                .map(|(&out, seed)| tensor(&[out, k], seed, 2.0))
                .collect();
            let refs: Vec<&Tensor> = ws.iter().collect();
            let Some(together) = matmul_rows_many(&x, &refs).unwrap() else {
                assert!(
                    super::super::gemm_lanes().is_none(),
                    "({t}, {k}, {outs:?}) declined"
                );
                continue;
            };
            for (w, got) in ws.iter().zip(&together) {
                let alone = x.matmul(&w.t().unwrap()).unwrap();
                let (a, b) = (
                    alone.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    got.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                );
                assert_eq!(a.len(), b.len());
                for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                    assert_eq!(p.to_bits(), q.to_bits(), "({t}, {k}, {outs:?}) output {i}");
                }
            }
        }
    }

    /// Every weight row goes to exactly one thread, in runs that are
    /// multiples of the kernel's rows but at a product's end, and the
    /// shares are about even.
    #[test]
    fn split_rows_gives_every_row_to_one_thread() {
        for (outs, threads) in [
            (vec![576, 192, 192], 2),
            (vec![1536, 1536], 2),
            (vec![7], 3),
            (vec![100, 3, 50], 4),
            (vec![576], 1),
        ] {
            let parts = split_rows(&outs, threads, 6);
            assert!(parts.len() <= threads);
            let mut seen: Vec<Vec<bool>> = outs.iter().map(|&o| vec![false; o]).collect();
            for part in &parts {
                for seg in part {
                    let at_end = seg.rows.end == outs[seg.product];
                    assert!(
                        at_end || seg.rows.len() % 6 == 0,
                        "{outs:?}: {:?}",
                        seg.rows
                    );
                    for j in seg.rows.clone() {
                        assert!(!seen[seg.product][j], "{outs:?}: row {j} twice");
                        seen[seg.product][j] = true;
                    }
                }
            }
            assert!(
                seen.iter().flatten().all(|&s| s),
                "{outs:?}: a row left out"
            );
            let total: usize = outs.iter().sum();
            for part in &parts {
                let rows: usize = part.iter().map(|s| s.rows.len()).sum();
                assert!(rows <= total.div_ceil(threads) + 6, "{outs:?}: {rows} rows");
            }
        }
    }

    /// Where gemm takes another path the kernel declines.
    #[test]
    fn matmul_rows_declines_other_gemm_paths() {
        let decline = |t: usize, out: usize, k: usize| {
            let x = tensor(&[t, k], 1, 1.0);
            let w = tensor(&[out, k], 2, 1.0);
            matmul_rows(&x, &w).unwrap().is_none()
        };
        assert!(decline(1, 600, 64), "one row: the matrix-vector kernels");
        assert!(decline(16, 16, 64), "256 outputs: the horizontal kernel");
        assert!(decline(8, 600, 2), "two inputs: the outer-product path");
        assert!(decline(8, 1, 64), "one weight row");
    }
}
