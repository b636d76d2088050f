//! How fast decoding one sequence can read its weights: the one-row
//! products of a generated token (`repro::model::matvec`, the kernels the
//! decoder uses) against a plain read of the same bytes, on the CPU threads
//! the decoder would use.
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release --example matvec_bench -- [--tokens N] [--rows T]
//! ```
//!
//! The weights have SmolLM2-135M's shapes (30 blocks of q, k, v, o, gate,
//! up and down, 576 wide, 1536 in the MLP, 3 of 9 heads for K and V, and a
//! 49,152-row head: 538 MB of f32), random values on huge pages (as the
//! decoder's loader puts them), products grouped as the
//! decoder groups them (q, k and v in one fork-join; gate and up in one).
//! Prints one Markdown table: milliseconds per token and GB/s (10^9 bytes)
//! for each, the median of `--tokens` tokens after two warm-up tokens, the
//! two taken in turn.
//!
//! With `--rows T` it times prefill's products instead: the same weights
//! times `T` rows of activations, by `repro::model::matvec::rows` (which
//! does not pack the weights) against candle's matmul (gemm), in turn, and
//! checks that both give the same bits.

use candle_core::{CpuStorage, Device, Storage, Tensor};
use rayon::prelude::*;
use repro::model::matvec::rows::{matmul_rows, matmul_rows_many};
use repro::model::matvec::{matvec, matvec_many};
use std::time::Instant;

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// One block's weights, `(out, in)` each.
struct Block {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

fn weights(out: usize, inputs: usize) -> Result<Tensor, BoxErr> {
    Ok(Tensor::randn(0f32, 0.02, (out, inputs), &Device::Cpu)?)
}

fn block(d: usize, kv: usize, inter: usize) -> Result<Block, BoxErr> {
    Ok(Block {
        q: weights(d, d)?,
        k: weights(kv, d)?,
        v: weights(kv, d)?,
        o: weights(d, d)?,
        gate: weights(inter, d)?,
        up: weights(inter, d)?,
        down: weights(d, inter)?,
    })
}

/// The products of one generated token; errors if a product falls back to
/// candle (this CPU has no kernel of `matvec`).
fn token(blocks: &[Block], head: &Tensor, x: &Tensor, h: &Tensor) -> Result<f32, BoxErr> {
    let none = || "matvec: no kernel for this CPU (it needs AVX2 and FMA or AVX-512)";
    let mut sink = 0f32;
    for b in blocks {
        let qkv = matvec_many(x, &[&b.q, &b.k, &b.v])?.ok_or_else(none)?;
        let o = matvec(x, &b.o)?.ok_or_else(none)?;
        let gu = matvec_many(x, &[&b.gate, &b.up])?.ok_or_else(none)?;
        let down = matvec(h, &b.down)?.ok_or_else(none)?;
        for t in qkv.iter().chain(gu.iter()).chain([&o, &down]) {
            sink += t.get(0)?.get(0)?.to_scalar::<f32>()?;
        }
    }
    let logits = matvec(x, head)?.ok_or_else(none)?;
    Ok(sink + logits.get(0)?.get(0)?.to_scalar::<f32>()?)
}

/// The products of one prefill of `x` (`T` rows, `d` wide) and `h` (`T`
/// rows, `inter` wide), by `rows` ([`matmul_rows`]) or by candle's matmul,
/// each handed to `each` as it is made (a decoder drops each product's
/// output before the next block, so the timed runs do too); errors if the
/// kernel declines a product.
fn prefill(
    blocks: &[Block],
    x: &Tensor,
    h: &Tensor,
    rows: bool,
    each: &mut dyn FnMut(Tensor) -> Result<(), BoxErr>,
) -> Result<(), BoxErr> {
    let product = |a: &Tensor, w: &Tensor| -> Result<Tensor, BoxErr> {
        if rows {
            matmul_rows(a, w)?.ok_or_else(|| "rows: no kernel for this CPU or shape".into())
        } else {
            Ok(a.matmul(&w.t()?)?)
        }
    };
    // As the decoder groups them (`lm::linear_many`): q, k and v in one
    // call, gate and up in one.
    let products = |a: &Tensor, ws: &[&Tensor]| -> Result<Vec<Tensor>, BoxErr> {
        if rows {
            matmul_rows_many(a, ws)?.ok_or_else(|| "rows: no kernel for this CPU or shape".into())
        } else {
            ws.iter().map(|w| product(a, w)).collect()
        }
    };
    for b in blocks {
        products(x, &[&b.q, &b.k, &b.v])?
            .into_iter()
            .try_for_each(&mut *each)?;
        each(product(x, &b.o)?)?;
        products(x, &[&b.gate, &b.up])?
            .into_iter()
            .try_for_each(&mut *each)?;
        each(product(h, &b.down)?)?;
    }
    Ok(())
}

/// `--rows T`: prefill's products by both, in turn, as a Markdown table.
fn prefill_table(blocks: &[Block], t: usize, runs: usize) -> Result<(), BoxErr> {
    let x = Tensor::randn(0f32, 1.0, (t, 576), &Device::Cpu)?;
    let h = Tensor::randn(0f32, 1.0, (t, 1536), &Device::Cpu)?;
    let all = |rows: bool| -> Result<Vec<Tensor>, BoxErr> {
        let mut outs = Vec::new();
        prefill(blocks, &x, &h, rows, &mut |y| {
            outs.push(y);
            Ok(())
        })?;
        Ok(outs)
    };
    let (a, b) = (all(true)?, all(false)?);
    for (ya, yb) in a.iter().zip(&b) {
        let (va, vb) = (
            ya.flatten_all()?.to_vec1::<f32>()?,
            yb.flatten_all()?.to_vec1::<f32>()?,
        );
        if va.iter().zip(&vb).any(|(p, q)| p.to_bits() != q.to_bits()) {
            return Err("rows and candle's matmul differ".into());
        }
    }
    let sum = |rows: bool| -> Result<f32, BoxErr> {
        let mut sink = 0f32;
        prefill(blocks, &x, &h, rows, &mut |y| {
            sink += y.get(0)?.get(0)?.to_scalar::<f32>()?;
            Ok(())
        })?;
        Ok(sink)
    };
    let (rows_ms, gemm_ms) = medians_in_turn(|| sum(true), || sum(false), runs.max(1))?;
    let params: usize = blocks.len() * (576 * (576 * 2 + 192 * 2) + 3 * 576 * 1536);
    let gflops = |ms: f64| 2.0 * (t * params) as f64 / (ms * 1e-3) / 1e9;
    let threads = candle_core::utils::get_num_threads();
    println!("| {threads} threads, {t} rows, 30 blocks | ms | GFLOP/s |");
    println!("| --- | ---: | ---: |");
    println!(
        "| rows (no packing) | {rows_ms:.2} | {:.1} |",
        gflops(rows_ms)
    );
    println!(
        "| candle matmul (gemm) | {gemm_ms:.2} | {:.1} |",
        gflops(gemm_ms)
    );
    println!("same bits: yes (every output of every product)");
    Ok(())
}

/// Sums every weight with eight lanes per thread, reading the weights the
/// products read (on the same huge pages): the read the products cannot
/// beat.
fn plain_read(all: &[&[f32]]) -> f32 {
    all.par_iter()
        .flat_map(|w| w.par_chunks(1 << 16))
        .map(|chunk| {
            let mut lanes = [0f32; 8];
            for c in chunk.chunks_exact(8) {
                for (l, v) in lanes.iter_mut().zip(c) {
                    *l += v;
                }
            }
            lanes.iter().sum::<f32>()
        })
        .sum()
}

/// Median milliseconds of `a` and of `b` over `n` runs each, taken in
/// turn (so a drift of the machine's speed hits both), after two warm-up
/// runs of each.
fn medians_in_turn(
    mut a: impl FnMut() -> Result<f32, BoxErr>,
    mut b: impl FnMut() -> Result<f32, BoxErr>,
    n: usize,
) -> Result<(f64, f64), BoxErr> {
    let (mut ta, mut tb) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut sink = 0f32;
    for i in 0..n + 2 {
        for (run, times) in [
            (&mut a as &mut dyn FnMut() -> _, &mut ta),
            (&mut b, &mut tb),
        ] {
            let t0 = Instant::now();
            sink += run()?;
            if i >= 2 {
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    std::hint::black_box(sink);
    let median = |mut t: Vec<f64>| {
        t.sort_by(f64::total_cmp);
        t[t.len() / 2]
    };
    Ok((median(ta), median(tb)))
}

fn main() -> Result<(), BoxErr> {
    // SAFETY: first thing in main, before any other thread starts.
    unsafe { repro::model::cpu::set_candle_env() };
    let mut tokens = 20;
    let mut rows = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--tokens" => tokens = args.next().ok_or("--tokens needs a value")?.parse()?,
            "--rows" => rows = Some(args.next().ok_or("--rows needs a value")?.parse()?),
            "--help" | "-h" => {
                println!(
                    "usage: matvec_bench [--tokens N] [--rows T]   (threads: RAYON_NUM_THREADS)"
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other} (see --help)").into()),
        }
    }
    let (d, kv, inter, layers, vocab) = (576, 192, 1536, 30, 49152);
    let blocks = (0..layers)
        .map(|_| block(d, kv, inter))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(t) = rows {
        // As the decoder's loader does (`ParamStore::loaded`).
        let all: Vec<Tensor> = blocks
            .iter()
            .flat_map(|b| [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down])
            .cloned()
            .collect();
        repro::model::cpu::back_with_huge_pages(&all);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(candle_core::utils::get_num_threads())
            .build()?;
        return pool.install(|| prefill_table(&blocks, t, tokens));
    }
    let head = weights(vocab, d)?;
    let x = Tensor::randn(0f32, 1.0, (1, d), &Device::Cpu)?;
    let h = Tensor::randn(0f32, 1.0, (1, inter), &Device::Cpu)?;
    let mut all: Vec<Tensor> = blocks
        .iter()
        .flat_map(|b| [&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down])
        .cloned()
        .collect();
    all.push(head.clone());
    // As the decoder's loader does (`ParamStore::loaded`).
    repro::model::cpu::back_with_huge_pages(&all);
    let guards: Vec<_> = all.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards
        .iter()
        .map(|(storage, _)| match &**storage {
            Storage::Cpu(CpuStorage::F32(v)) => Ok(v.as_slice()),
            _ => Err("matvec_bench: weights must be f32 on the CPU"),
        })
        .collect::<Result<Vec<&[f32]>, _>>()?;
    let bytes: usize = slices.iter().map(|s| s.len() * 4).sum();
    let threads = candle_core::utils::get_num_threads();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (products, read) = pool.install(|| {
        medians_in_turn(
            || token(&blocks, &head, &x, &h),
            || Ok(plain_read(&slices)),
            tokens.max(1),
        )
    })?;
    let gbs = |ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
    println!(
        "| {threads} threads, {:.0} MB per token | ms per token | GB/s |",
        bytes as f64 / 1e6
    );
    println!("| --- | ---: | ---: |");
    println!(
        "| one-row products (matvec) | {products:.2} | {:.1} |",
        gbs(products)
    );
    println!(
        "| plain read of the same weights | {read:.2} | {:.1} |",
        gbs(read)
    );
    Ok(())
}
