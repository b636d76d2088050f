//! Attention probabilities from raw scores on the CPU, `softmax(scores *
//! scale + mask)` over the last dimension, with every number bit for bit
//! what candle's ops give (`Tensor * f64`, `broadcast_add`,
//! `softmax_last_dim`), in one pass over the scores and without a tensor per
//! step.
//!
//! Through candle that is three ops, each allocating a tensor, and the
//! softmax splits its rows over the thread pool whatever their number: a
//! decoding step's nine rows of a hundred scores cost a fork-join. Here the
//! rows run on the calling thread unless there are enough of them
//! (`MIN_ELEMENTS_TO_SPLIT`). Each row repeats candle's arithmetic:
//!
//! 1. `s * scale + 0.0` in f32 (candle's `affine`, which `Tensor * f64` is);
//! 2. `+ m`, the mask entry broadcast to that score;
//! 3. the maximum taken left to right with `f32::max`, `exp(s - max)` per
//!    entry, their sum by candle's own `vec_reduce_sum` (its AVX order where
//!    the CPU has AVX), then each entry divided by the sum.

use candle_core::cpu::kernels::VecOps;
use candle_core::{DType, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Fewest scores worth splitting the rows over the threads.
const MIN_ELEMENTS_TO_SPLIT: usize = 1 << 16;

/// `softmax_last_dim(scores * scale + mask)` for f32 `scores` on the CPU
/// and an f32 `mask` broadcastable to them; `None` for other dtypes,
/// devices or shapes, and the caller keeps candle's ops.
pub fn scaled_masked_softmax(scores: &Tensor, scale: f64, mask: &Tensor) -> Result<Option<Tensor>> {
    let on_cpu_f32 = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32;
    if !on_cpu_f32(scores) || !on_cpu_f32(mask) || scores.rank() == 0 {
        return Ok(None);
    }
    let scores = scores.contiguous()?;
    // A mask that does not broadcast to the scores' shape (say one with
    // more batch rows) is left to candle, which broadcasts both ways.
    let Ok(mask) = mask.broadcast_as(scores.shape()) else {
        return Ok(None);
    };
    let len = scores.dim(candle_core::D::Minus1)?;
    if len == 0 {
        return Ok(None);
    }
    let (s_storage, s_layout) = scores.storage_and_layout();
    let (m_storage, m_layout) = mask.storage_and_layout();
    let (Some(src), Some(mask_data)) = (f32s(&s_storage), f32s(&m_storage)) else {
        return Ok(None);
    };
    let src = &src[s_layout.start_offset()..s_layout.start_offset() + scores.elem_count()];
    let rows = MaskRows::new(m_layout);
    let mut out = vec![0f32; src.len()];
    let scale = scale as f32;
    let row = |(r, (s, o)): (usize, (&[f32], &mut [f32]))| {
        let (start, stride) = (rows.start_of(r), rows.last_stride);
        softmax_row(s, |j| mask_data[start + j * stride], scale, o)
    };
    if src.len() < MIN_ELEMENTS_TO_SPLIT {
        src.chunks_exact(len)
            .zip(out.chunks_exact_mut(len))
            .enumerate()
            .for_each(row);
    } else {
        src.par_chunks_exact(len)
            .zip(out.par_chunks_exact_mut(len))
            .enumerate()
            .for_each(row);
    }
    drop((s_storage, m_storage));
    Tensor::from_vec(out, scores.shape(), scores.device()).map(Some)
}

/// One row of scores `s` to probabilities in `o` (see the module doc).
fn softmax_row(s: &[f32], mask: impl Fn(usize) -> f32, scale: f32, o: &mut [f32]) {
    let add = 0f32;
    for (j, (oe, &se)) in o.iter_mut().zip(s).enumerate() {
        *oe = (se * scale + add) + mask(j);
    }
    let mut max = f32::NEG_INFINITY;
    // SAFETY: `o` is non-empty (len > 0) and `max` a valid f32.
    unsafe { f32::vec_reduce_max(o.as_ptr(), &mut max, o.len()) };
    for oe in o.iter_mut() {
        *oe -= max;
    }
    super::expf::exp_in_place(o);
    let mut sum = 0f32;
    // SAFETY: as above, for `o.len()` entries.
    unsafe { f32::vec_reduce_sum(o.as_ptr(), &mut sum, o.len()) };
    for oe in o.iter_mut() {
        *oe /= sum;
    }
}

/// Where the mask entry of each score lies: the mask broadcast to the
/// scores' shape, read through its strides (zero along broadcast dims).
struct MaskRows {
    start: usize,
    /// Sizes and strides of the leading (row) dimensions, last first.
    row_dims: Vec<(usize, usize)>,
    /// Stride along the last dimension.
    last_stride: usize,
}

impl MaskRows {
    fn new(layout: &Layout) -> MaskRows {
        let dims = layout.dims();
        let stride = layout.stride();
        let n = dims.len();
        MaskRows {
            start: layout.start_offset(),
            row_dims: (0..n - 1).rev().map(|i| (dims[i], stride[i])).collect(),
            last_stride: stride[n - 1],
        }
    }

    /// The index into the mask's data of row `r`'s first entry.
    fn start_of(&self, r: usize) -> usize {
        let mut rest = r;
        let mut offset = self.start;
        for &(size, stride) in &self.row_dims {
            offset += (rest % size) * stride;
            rest /= size;
        }
        offset
    }
}

/// The f32 data of a CPU storage, or `None` for another dtype or device.
fn f32s(s: &Storage) -> Option<&[f32]> {
    match s {
        Storage::Cpu(cpu) => cpu.as_slice::<f32>().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lm::MASKED;
    use candle_core::Device;

    fn random(shape: &[usize], seed: u64) -> Tensor {
        super::super::test_data::tensor(shape, seed, 20.0)
    }

    /// A mask of `shape` blocking (MASKED) about one entry in three.
    fn mask(shape: &[usize], seed: u64) -> Tensor {
        let mut r = crate::rng::Rng::new(seed);
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| if r.f64() < 0.33 { MASKED } else { 0.0 })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu).unwrap()
    }

    fn through_candle(scores: &Tensor, scale: f64, mask: &Tensor) -> Tensor {
        let att = (scores * scale).unwrap().broadcast_add(mask).unwrap();
        candle_nn::ops::softmax_last_dim(&att).unwrap()
    }

    fn bits(t: &Tensor) -> Vec<u32> {
        let flat = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        flat.iter().map(|x| x.to_bits()).collect()
    }

    /// Decoding masks (one query, a narrowed `(b, 1, 1, capacity)` buffer),
    /// prefill masks `(b, 1, t, t)`, a causal `(1, 1, t, past + t)` one,
    /// rows of one score, rows around candle's 8-lane sum and rows long
    /// enough to split over threads: all bit for bit candle's.
    #[test]
    fn equals_candle_bit_for_bit() {
        let scale = 0.125;
        let cases: Vec<(Vec<usize>, Tensor)> = vec![
            (
                vec![1, 9, 1, 1],
                mask(&[1, 1, 1, 8], 1).narrow(3, 0, 1).unwrap(),
            ),
            (
                vec![1, 9, 1, 7],
                mask(&[1, 1, 1, 40], 2).narrow(3, 0, 7).unwrap(),
            ),
            (
                vec![2, 4, 1, 33],
                mask(&[2, 1, 1, 64], 3).narrow(3, 0, 33).unwrap(),
            ),
            (vec![2, 3, 5, 5], mask(&[2, 1, 5, 5], 4)),
            (vec![1, 2, 3, 19], mask(&[1, 1, 3, 19], 5)),
            (vec![1, 16, 64, 130], mask(&[1, 1, 64, 130], 6)),
            (vec![3, 2, 1, 300], mask(&[3, 2, 1, 300], 7)),
        ];
        for (shape, m) in cases {
            let s = random(&shape, shape.iter().sum::<usize>() as u64);
            let want = through_candle(&s, scale, &m);
            let got = scaled_masked_softmax(&s, scale, &m).unwrap().unwrap();
            assert_eq!(got.dims(), want.dims(), "{shape:?}");
            assert_eq!(bits(&got), bits(&want), "{shape:?}");
        }
    }

    /// A row that sees only masked entries stays finite, as candle's does.
    #[test]
    fn fully_masked_rows_stay_finite() {
        let s = random(&[1, 2, 1, 6], 9);
        let m = Tensor::full(MASKED, (1, 1, 1, 6), &Device::Cpu).unwrap();
        let got = scaled_masked_softmax(&s, 0.5, &m).unwrap().unwrap();
        assert_eq!(bits(&got), bits(&through_candle(&s, 0.5, &m)));
        let row = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(row.iter().all(|p| p.is_finite()), "{row:?}");
    }

    /// Other dtypes, and masks that broadcast only together with the
    /// scores, go back to the caller.
    #[test]
    fn declines_what_it_does_not_handle() {
        let s = random(&[1, 2, 1, 6], 10).to_dtype(DType::BF16).unwrap();
        let m = mask(&[1, 1, 1, 6], 11).to_dtype(DType::BF16).unwrap();
        assert!(scaled_masked_softmax(&s, 0.5, &m).unwrap().is_none());
        let s = random(&[1, 2, 1, 6], 12);
        let wider = mask(&[3, 1, 1, 6], 13);
        assert!(scaled_masked_softmax(&s, 0.5, &wider).unwrap().is_none());
    }
}
