//! Causal multi-head attention with grouped key/value heads, forward and
//! backward, on rows `(b * t, heads * hd)` without transposing anything.
//!
//! Forward runs one task per (sequence, query head): scores `q k^T` into the
//! stashed `(t, t)` probability block, causal softmax in place, then
//! `p v` into the head's columns of `y`. Backward runs one task per
//! (sequence, key/value head) and walks that group's query heads in order,
//! so the key and value gradients a group shares are summed in a fixed order.

use super::Dims;
use super::kernels::{Mat, Real, causal_softmax, causal_softmax_bwd, matmul, matmul_raw};
use rayon::prelude::*;

/// A raw pointer that tasks writing disjoint blocks of one buffer share.
#[derive(Clone, Copy)]
struct SyncPtr<T>(*mut T);
// SAFETY: only used to hand tasks disjoint regions (see the call sites).
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}
impl<T> SyncPtr<T> {
    fn at(self, off: usize) -> *mut T {
        self.0.wrapping_add(off)
    }
}

/// Query rows per block: a block of rows multiplies only the keys up to its
/// last row, which skips most of the masked upper triangle.
const BLOCK: usize = 32;

fn scale<T: Real>(dm: &Dims) -> T {
    T::one() / T::from(dm.hd).unwrap_or(T::one()).sqrt()
}

/// Forward: fills `att` `(b, h, t, t)` with probabilities and `y` with the
/// attention output `(b * t, h * hd)`.
pub(super) fn forward<T: Real>(dm: &Dims, q: &[T], k: &[T], v: &[T], att: &mut [T], y: &mut [T]) {
    let (t, hd, h) = (dm.t, dm.hd, dm.h);
    let (hq, hkv, group) = (dm.hq(), dm.hkv(), dm.h / dm.kv);
    let sc = scale::<T>(dm);
    assert!(y.len() >= dm.n * hq);
    let yp = SyncPtr(y.as_mut_ptr());
    att.par_chunks_mut(t * t).enumerate().for_each(|(task, s)| {
        let (b, head) = (task / h, task % h);
        let kvh = head / group;
        let q_off = b * t * hq + head * hd;
        let kv_off = b * t * hkv + kvh * hd;
        // Row block [r0, r0 + rb) sees keys [0, r0 + rb) only.
        for r0 in (0..t).step_by(BLOCK) {
            let (rb, cols) = (BLOCK.min(t - r0), r0 + BLOCK.min(t - r0));
            let qm = Mat {
                data: &q[q_off + r0 * hq..],
                rs: hq,
                cs: 1,
            };
            let kt = Mat {
                data: &k[kv_off..],
                rs: 1,
                cs: hkv,
            };
            matmul(rb, cols, hd, &mut s[r0 * t..], t, false, qm, kt, false);
        }
        causal_softmax(s, t, sc);
        for r0 in (0..t).step_by(BLOCK) {
            let (rb, cols) = (BLOCK.min(t - r0), r0 + BLOCK.min(t - r0));
            let vm = Mat {
                data: &v[kv_off..],
                rs: hkv,
                cs: 1,
            };
            // SAFETY: task (b, head) writes rows b*t..(b+1)*t, columns
            // head*hd..(head+1)*hd of `y` (inside it by the assert above);
            // no two tasks share a (sequence, head) pair, and `y` is
            // borrowed mutably here, so nothing else reads it.
            unsafe {
                matmul_raw(
                    rb,
                    hd,
                    cols,
                    yp.at(q_off + r0 * hq),
                    hq,
                    false,
                    Mat::rows(&s[r0 * t..], t),
                    vm,
                    false,
                )
            }
        }
    });
}

/// The inputs of the attention backward pass.
pub(super) struct Saved<'a, T> {
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub att: &'a [T],
}

/// Backward: from `dy` `(b * t, h * hd)` writes `dq`, `dk`, `dv` (the
/// gradients of the rotated queries and keys and of the values), using
/// `datt` `(b * kv, t, t)` as scratch.
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    dm: &Dims,
    s: Saved<'_, T>,
    dy: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    datt: &mut [T],
) {
    let (t, hd, h, kv) = (dm.t, dm.hd, dm.h, dm.kv);
    let (hq, hkv, group) = (dm.hq(), dm.hkv(), dm.h / dm.kv);
    let sc = scale::<T>(dm);
    assert!(dq.len() >= dm.n * hq && dk.len() >= dm.n * hkv && dv.len() >= dm.n * hkv);
    let (dqp, dkp, dvp) = (
        SyncPtr(dq.as_mut_ptr()),
        SyncPtr(dk.as_mut_ptr()),
        SyncPtr(dv.as_mut_ptr()),
    );
    datt.par_chunks_mut(t * t)
        .enumerate()
        .for_each(|(task, ds)| {
            let (b, kvh) = (task / kv, task % kv);
            let kv_off = b * t * hkv + kvh * hd;
            let km = Mat {
                data: &s.k[kv_off..],
                rs: hkv,
                cs: 1,
            };
            let vt = Mat {
                data: &s.v[kv_off..],
                rs: 1,
                cs: hkv,
            };
            for gi in 0..group {
                let head = kvh * group + gi;
                let q_off = b * t * hq + head * hd;
                let p = &s.att[(b * h + head) * t * t..][..t * t];
                // SAFETY (every raw product below): task (b, kvh) alone
                // writes rows b*t..(b+1)*t of `dk`/`dv` in columns
                // kvh*hd..(kvh+1)*hd, and of `dq` in the columns of its
                // group's heads; the asserts above keep them in bounds and
                // the buffers are borrowed mutably by this function.
                // Key block [c0, c0 + cb) gets gradient from query rows
                // [c0, t) only; query block [r0, r0 + rb) from keys [0, r0 + rb).
                for c0 in (0..t).step_by(BLOCK) {
                    let cb = BLOCK.min(t - c0);
                    let pt = Mat {
                        data: &p[c0 * t + c0..],
                        rs: 1,
                        cs: t,
                    };
                    let dyc = Mat {
                        data: &dy[q_off + c0 * hq..],
                        rs: hq,
                        cs: 1,
                    };
                    // dv (+)= p^T dy
                    unsafe {
                        let dst = dvp.at(kv_off + c0 * hkv);
                        matmul_raw(cb, hd, t - c0, dst, hkv, gi > 0, pt, dyc, false);
                    }
                }
                // dp = dy v^T, then the softmax backward in place.
                for r0 in (0..t).step_by(BLOCK) {
                    let (rb, cols) = (BLOCK.min(t - r0), r0 + BLOCK.min(t - r0));
                    let dyr = Mat {
                        data: &dy[q_off + r0 * hq..],
                        rs: hq,
                        cs: 1,
                    };
                    matmul(rb, cols, hd, &mut ds[r0 * t..], t, false, dyr, vt, false);
                }
                causal_softmax_bwd(p, ds, t, sc);
                for r0 in (0..t).step_by(BLOCK) {
                    let (rb, cols) = (BLOCK.min(t - r0), r0 + BLOCK.min(t - r0));
                    let dsr = Mat::rows(&ds[r0 * t..], t);
                    // dq = ds k
                    unsafe {
                        let dst = dqp.at(q_off + r0 * hq);
                        matmul_raw(rb, hd, cols, dst, hq, false, dsr, km, false);
                    }
                }
                for c0 in (0..t).step_by(BLOCK) {
                    let cb = BLOCK.min(t - c0);
                    let dst_t = Mat {
                        data: &ds[c0 * t + c0..],
                        rs: 1,
                        cs: t,
                    };
                    let qc = Mat {
                        data: &s.q[q_off + c0 * hq..],
                        rs: hq,
                        cs: 1,
                    };
                    // dk (+)= ds^T q
                    unsafe {
                        let dst = dkp.at(kv_off + c0 * hkv);
                        matmul_raw(cb, hd, t - c0, dst, hkv, gi > 0, dst_t, qc, false);
                    }
                }
            }
        });
}
