//! The forward pass: embedding, the decoder layers (stashing what the
//! backward pass needs), the final norm and head on the learned rows only,
//! and the cross-entropy, which leaves the logits' gradient in place.

use super::kernels::{Mat, Real, cross_entropy, matmul, rms_fwd, rope, swiglu};
use super::{Buffers, Dims, TokenBatch, attention};

/// The weights of one layer, in [`crate::model::Llama::param_tensors`] order.
pub(super) struct LayerW<'a, T> {
    pub in_norm: &'a [T],
    pub q: &'a [T],
    pub k: &'a [T],
    pub v: &'a [T],
    pub o: &'a [T],
    pub post_norm: &'a [T],
    pub gate: &'a [T],
    pub up: &'a [T],
    pub down: &'a [T],
}

/// Layer `l`'s weights out of the flat weight list.
pub(super) fn layer<'a, T>(w: &[&'a [T]], l: usize) -> LayerW<'a, T> {
    let b = 1 + 9 * l;
    LayerW {
        in_norm: w[b],
        q: w[b + 1],
        k: w[b + 2],
        v: w[b + 3],
        o: w[b + 4],
        post_norm: w[b + 5],
        gate: w[b + 6],
        up: w[b + 7],
        down: w[b + 8],
    }
}

/// Runs the model on `batch` and returns the mean loss over its learned rows.
pub(super) fn forward<T: Real>(
    dm: &Dims,
    w: &[&[T]],
    cos: &[T],
    sin: &[T],
    batch: &TokenBatch,
    buf: &mut Buffers<T>,
) -> T {
    let (n, d, t, inter) = (dm.n, dm.d, dm.t, dm.inter);
    let (hq, hkv) = (dm.hq(), dm.hkv());
    {
        let x0 = match buf.layers.first_mut() {
            Some(st) => &mut st.x,
            None => &mut buf.xf,
        };
        for (row, &id) in x0.chunks_mut(d).zip(&batch.ids) {
            let id = id as usize;
            row.copy_from_slice(&w[0][id * d..(id + 1) * d]);
        }
    }
    for l in 0..dm.layers {
        let lw = layer(w, l);
        let (cur, rest) = buf.layers.split_at_mut(l + 1);
        let st = &mut cur[l];
        rms_fwd(&st.x, lw.in_norm, dm.eps, &mut st.h1, &mut st.r1);
        let h1 = Mat::rows(&st.h1, d);
        matmul(n, hq, d, &mut st.q, hq, false, h1, Mat::t(lw.q, d), true);
        matmul(n, hkv, d, &mut st.k, hkv, false, h1, Mat::t(lw.k, d), true);
        matmul(n, hkv, d, &mut st.v, hkv, false, h1, Mat::t(lw.v, d), true);
        rope(&mut st.q, hq, t, dm.hd, cos, sin, false);
        rope(&mut st.k, hkv, t, dm.hd, cos, sin, false);
        attention::forward(dm, &st.q, &st.k, &st.v, &mut st.att, &mut st.y);
        st.xmid.copy_from_slice(&st.x);
        let y = Mat::rows(&st.y, hq);
        matmul(n, d, hq, &mut st.xmid, d, true, y, Mat::t(lw.o, hq), true);
        rms_fwd(&st.xmid, lw.post_norm, dm.eps, &mut st.h2, &mut st.r2);
        let h2 = Mat::rows(&st.h2, d);
        matmul(
            n,
            inter,
            d,
            &mut st.g,
            inter,
            false,
            h2,
            Mat::t(lw.gate, d),
            true,
        );
        matmul(
            n,
            inter,
            d,
            &mut st.u,
            inter,
            false,
            h2,
            Mat::t(lw.up, d),
            true,
        );
        swiglu(&st.g, &st.u, &mut st.a, &mut st.sig);
        let next = match rest.first_mut() {
            Some(nx) => &mut nx.x,
            None => &mut buf.xf,
        };
        next.copy_from_slice(&st.xmid);
        let a = Mat::rows(&st.a, inter);
        matmul(n, d, inter, next, d, true, a, Mat::t(lw.down, inter), true);
    }
    for (dst, &r) in buf.xs.chunks_mut(d).zip(&batch.rows) {
        let r = r as usize;
        dst.copy_from_slice(&buf.xf[r * d..(r + 1) * d]);
    }
    rms_fwd(&buf.xs, w[dm.norm_idx()], dm.eps, &mut buf.hs, &mut buf.rs);
    let learned = batch.rows.len();
    let head = Mat::t(w[dm.head_idx()], d);
    matmul(
        learned,
        dm.vocab,
        d,
        &mut buf.logits,
        dm.vocab,
        false,
        Mat::rows(&buf.hs, d),
        head,
        true,
    );
    cross_entropy(&mut buf.logits, dm.vocab, &batch.targets)
}
