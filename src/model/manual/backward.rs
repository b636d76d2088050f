//! The backward pass: from the logits' gradient (left by the forward pass)
//! back through the head, the final norm, every layer in reverse and the
//! embedding, writing each weight's gradient once (the tied embedding gets
//! the head's gradient plus the embedding rows').

use super::forward::layer;
use super::kernels::{Mat, Real, matmul, rms_bwd, rope, swiglu_bwd};
use super::{Buffers, Dims, TokenBatch, attention};

/// Writes the gradients of the weights `w` into `grads` (same order).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<T: Real>(
    dm: &Dims,
    w: &[&[T]],
    cos: &[T],
    sin: &[T],
    batch: &TokenBatch,
    buf: &mut Buffers<T>,
    grads: &mut [Vec<T>],
) {
    let (n, d, t, inter, vocab) = (dm.n, dm.d, dm.t, dm.inter, dm.vocab);
    let (hq, hkv) = (dm.hq(), dm.hkv());
    let learned = batch.rows.len();
    // Head: logits = hs head^T.
    let dlog = Mat::rows(&buf.logits, vocab);
    let dlog_t = Mat::t(&buf.logits, vocab);
    let hs = Mat::rows(&buf.hs, d);
    matmul(
        vocab,
        d,
        learned,
        &mut grads[dm.head_idx()],
        d,
        false,
        dlog_t,
        hs,
        true,
    );
    let head = Mat::rows(w[dm.head_idx()], d);
    matmul(learned, d, vocab, &mut buf.dhs, d, false, dlog, head, true);
    let norm = w[dm.norm_idx()];
    rms_bwd(
        &buf.xs,
        norm,
        &buf.rs,
        &buf.dhs,
        &mut buf.dxs,
        false,
        &mut grads[dm.norm_idx()],
    );
    buf.dres.fill(T::zero());
    for (src, &r) in buf.dxs.chunks(d).zip(&batch.rows) {
        let r = r as usize;
        buf.dres[r * d..(r + 1) * d].copy_from_slice(src);
    }
    for l in (0..dm.layers).rev() {
        let lw = layer(w, l);
        let gi = 1 + 9 * l;
        let st = &mut buf.layers[l];
        // MLP: x_next = xmid + a down^T, a = silu(g) * u.
        let dres_t = Mat::t(&buf.dres, d);
        let dres = Mat::rows(&buf.dres, d);
        matmul(
            d,
            inter,
            n,
            &mut grads[gi + 8],
            inter,
            false,
            dres_t,
            Mat::rows(&st.a, inter),
            true,
        );
        matmul(
            n,
            inter,
            d,
            &mut buf.da,
            inter,
            false,
            dres,
            Mat::rows(lw.down, inter),
            true,
        );
        swiglu_bwd(&mut st.g, &mut st.u, &st.sig, &buf.da);
        let (dg, du) = (&st.g, &st.u);
        let h2 = Mat::rows(&st.h2, d);
        matmul(
            inter,
            d,
            n,
            &mut grads[gi + 6],
            d,
            false,
            Mat::t(dg, inter),
            h2,
            true,
        );
        matmul(
            inter,
            d,
            n,
            &mut grads[gi + 7],
            d,
            false,
            Mat::t(du, inter),
            h2,
            true,
        );
        let (dgm, dum) = (Mat::rows(dg, inter), Mat::rows(du, inter));
        matmul(
            n,
            d,
            inter,
            &mut buf.dh,
            d,
            false,
            dgm,
            Mat::rows(lw.gate, d),
            true,
        );
        matmul(
            n,
            d,
            inter,
            &mut buf.dh,
            d,
            true,
            dum,
            Mat::rows(lw.up, d),
            true,
        );
        let (x, pn, r2) = (&st.xmid, lw.post_norm, &st.r2);
        rms_bwd(x, pn, r2, &buf.dh, &mut buf.dres, true, &mut grads[gi + 5]);
        // Attention: xmid = x + y o^T.
        let dres_t = Mat::t(&buf.dres, d);
        let dres = Mat::rows(&buf.dres, d);
        matmul(
            d,
            hq,
            n,
            &mut grads[gi + 4],
            hq,
            false,
            dres_t,
            Mat::rows(&st.y, hq),
            true,
        );
        matmul(
            n,
            hq,
            d,
            &mut buf.dy,
            hq,
            false,
            dres,
            Mat::rows(lw.o, hq),
            true,
        );
        let saved = attention::Saved {
            q: &st.q,
            k: &st.k,
            v: &st.v,
            att: &st.att,
        };
        attention::backward(
            dm,
            saved,
            &buf.dy,
            &mut buf.dq,
            &mut buf.dk,
            &mut buf.dv,
            &mut buf.datt,
        );
        rope(&mut buf.dq, hq, t, dm.hd, cos, sin, true);
        rope(&mut buf.dk, hkv, t, dm.hd, cos, sin, true);
        let h1 = Mat::rows(&st.h1, d);
        matmul(
            hq,
            d,
            n,
            &mut grads[gi + 1],
            d,
            false,
            Mat::t(&buf.dq, hq),
            h1,
            true,
        );
        matmul(
            hkv,
            d,
            n,
            &mut grads[gi + 2],
            d,
            false,
            Mat::t(&buf.dk, hkv),
            h1,
            true,
        );
        matmul(
            hkv,
            d,
            n,
            &mut grads[gi + 3],
            d,
            false,
            Mat::t(&buf.dv, hkv),
            h1,
            true,
        );
        matmul(
            n,
            d,
            hq,
            &mut buf.dh,
            d,
            false,
            Mat::rows(&buf.dq, hq),
            Mat::rows(lw.q, d),
            true,
        );
        matmul(
            n,
            d,
            hkv,
            &mut buf.dh,
            d,
            true,
            Mat::rows(&buf.dk, hkv),
            Mat::rows(lw.k, d),
            true,
        );
        matmul(
            n,
            d,
            hkv,
            &mut buf.dh,
            d,
            true,
            Mat::rows(&buf.dv, hkv),
            Mat::rows(lw.v, d),
            true,
        );
        rms_bwd(
            &st.x,
            lw.in_norm,
            &st.r1,
            &buf.dh,
            &mut buf.dres,
            true,
            &mut grads[gi],
        );
    }
    // Embedding rows (added to the head's gradient when tied).
    let de = &mut grads[0];
    if !dm.tied {
        de.fill(T::zero());
    }
    for (src, &id) in buf.dres.chunks(d).zip(&batch.ids) {
        let id = id as usize;
        for (a, b) in de[id * d..(id + 1) * d].iter_mut().zip(src) {
            *a += *b;
        }
    }
}
