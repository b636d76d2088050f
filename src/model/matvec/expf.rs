//! `f32::exp` over a slice, four lanes at a time, with every result bit for
//! bit what the C library's `expf` returns on this machine.
//!
//! candle computes SiLU (`v / (1 + exp(-v))`) and the softmax's
//! exponentials with `f32::exp`, which calls glibc's `expf` one number at a
//! time: in a SmolLM2 prefill the SiLU's calls alone took about 7% of the
//! products' time on the 2-core AMD EPYC (Zen 5) of 2026-12-07. On a CPU
//! with AVX2 and FMA, glibc (2.28 and later) runs its `__expf_fma`
//! variant, whose arithmetic is fixed and short (Szabolcs Nagy's
//! algorithm, `sysdeps/ieee754/flt-32/e_expf.c`), in double precision:
//!
//! 1. `kd = fma(N / ln 2, x, SHIFT)`, whose low bits are `k`, the nearest
//!    integer to `x N / ln 2` (`N = 32`); `kd -= SHIFT`;
//! 2. `r = fma(N / ln 2, x, -kd)`;
//! 3. `s = 2^(k / N)`, from a table of 32 entries and `k`'s bits shifted
//!    into the exponent;
//! 4. `y = fma(fma(r, C0, C1), r * r, fma(r, C2, 1)) * s`, rounded to f32.
//!
//! [`exp_in_place`] does the same steps with AVX2 on four doubles (the
//! compiled FMAs and their operand order read off the library's machine
//! code), and sends the lanes glibc treats apart (`|x| >= 88`: overflow,
//! underflow, infinities and NaN) to `f32::exp` one by one, except those
//! below -104, which `expf` takes to +0.0 through a slow path that sets
//! `errno`. Another C library could compute `expf` differently, so the
//! first call checks the lanes against `f32::exp` on 20,000 numbers across
//! its range and falls back to `f32::exp` for good if any bit differs. The
//! tests compare the two on every 7th f32 bit pattern.

use std::sync::OnceLock;

/// Below this, `expf`'s true value is under half the least subnormal and
/// it returns +0.0 (`ln 2^-150` is -103.97...), through a path that sets
/// `errno`.
pub const EXP_IS_ZERO_BELOW: f32 = -104.0;

/// `x.exp()` with the same bits, skipping libm below
/// [`EXP_IS_ZERO_BELOW`]. (`black_box` keeps the call inside its branch:
/// LLVM treats `exp` as free of side effects and would otherwise compute it
/// for every entry and select.)
#[inline]
pub fn exp_or_zero(x: f32) -> f32 {
    if x < EXP_IS_ZERO_BELOW {
        0.0
    } else {
        std::hint::black_box(x).exp()
    }
}

/// `x = x.exp()` for every entry, bit for bit (see the module doc).
pub fn exp_in_place(xs: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if lanes_match_libm() {
        // SAFETY: lanes_match_libm is true only where the CPU has AVX2
        // and FMA.
        unsafe { avx2::exp_in_place(xs) };
        return;
    }
    for x in xs {
        *x = exp_or_zero(*x);
    }
}

/// Whether this CPU runs the four-lane `expf` and it gives the C
/// library's bits on a spread of inputs (checked once).
#[cfg(target_arch = "x86_64")]
fn lanes_match_libm() -> bool {
    static MATCH: OnceLock<bool> = OnceLock::new();
    *MATCH.get_or_init(|| {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            return false;
        }
        // 20,000 numbers from -110 to 90, and the edges glibc treats apart.
        let mut probe: Vec<f32> = (0..20_000).map(|i| -110.0 + i as f32 * 0.01).collect();
        probe.extend([
            0.0,
            -0.0,
            1e-30,
            -1e-30,
            88.0,
            -88.0,
            88.72,
            -103.5,
            f32::MIN_POSITIVE,
        ]);
        let mut lanes = probe.clone();
        // SAFETY: the CPU has AVX2 and FMA (checked above).
        unsafe { avx2::exp_in_place(&mut lanes) };
        lanes
            .iter()
            .zip(&probe)
            .all(|(got, x)| got.to_bits() == x.exp().to_bits())
    })
}

/// glibc's constants for `expf` (`__exp2f_data`, `EXP2F_TABLE_BITS` = 5):
/// `N / ln 2`, the rounding shift, the polynomial and the table of `2^(i /
/// N)` with `i << 47` taken out of each entry's bits.
#[cfg(target_arch = "x86_64")]
mod glibc {
    pub const INV_LN2_N: u64 = 0x40471547652b82fe;
    pub const SHIFT: u64 = 0x4338000000000000;
    pub const C0: u64 = 0x3ebc6af84b912394;
    pub const C1: u64 = 0x3f2ebfce50fac4f3;
    pub const C2: u64 = 0x3f962e42ff0c52d6;
    pub const TABLE: [u64; 32] = [
        0x3ff0000000000000,
        0x3fefd9b0d3158574,
        0x3fefb5586cf9890f,
        0x3fef9301d0125b51,
        0x3fef72b83c7d517b,
        0x3fef54873168b9aa,
        0x3fef387a6e756238,
        0x3fef1e9df51fdee1,
        0x3fef06fe0a31b715,
        0x3feef1a7373aa9cb,
        0x3feedea64c123422,
        0x3feece086061892d,
        0x3feebfdad5362a27,
        0x3feeb42b569d4f82,
        0x3feeab07dd485429,
        0x3feea47eb03a5585,
        0x3feea09e667f3bcd,
        0x3fee9f75e8ec5f74,
        0x3feea11473eb0187,
        0x3feea589994cce13,
        0x3feeace5422aa0db,
        0x3feeb737b0cdc5e5,
        0x3feec49182a3f090,
        0x3feed503b23e255d,
        0x3feee89f995ad3ad,
        0x3feeff76f2fb5e47,
        0x3fef199bdd85529c,
        0x3fef3720dcef9069,
        0x3fef5818dcfba487,
        0x3fef7c97337b9b5f,
        0x3fefa4afa2a490da,
        0x3fefd0765b6e4540,
    ];
    /// `|x|` from which glibc leaves the main path (the top 12 bits of
    /// 88.0's representation).
    pub const SPECIAL_TOP12: u32 = 0x42b;
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::glibc::*;
    use std::arch::x86_64::*;

    /// [`super::exp_in_place`]'s four-lane body.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn exp_in_place(xs: &mut [f32]) {
        let mut chunks = xs.chunks_exact_mut(4);
        for c in &mut chunks {
            // SAFETY: `c` holds four floats; the CPU has the features.
            unsafe { four(c) };
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let mut padded = [0f32; 4];
            padded[..rest.len()].copy_from_slice(rest);
            // SAFETY: as above.
            unsafe { four(&mut padded) };
            rest.copy_from_slice(&padded[..rest.len()]);
        }
    }

    /// Four lanes of the double whose bits are `bits`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn splat(bits: u64) -> __m256d {
        _mm256_set1_pd(f64::from_bits(bits))
    }

    /// Four lanes of glibc's `__expf_fma`, the lanes it treats apart
    /// redone one by one.
    ///
    /// # Safety
    /// `c` must hold four floats; the CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn four(c: &mut [f32]) {
        let special = c
            .iter()
            .any(|x| (x.to_bits() >> 20) & 0x7ff >= SPECIAL_TOP12);
        // SAFETY: `c` holds four floats (the caller's promise); the table
        // index is masked to 0..32.
        unsafe {
            let x = _mm256_cvtps_pd(_mm_loadu_ps(c.as_ptr()));
            let kd = _mm256_fmadd_pd(splat(INV_LN2_N), x, splat(SHIFT));
            let ki = _mm256_castpd_si256(kd);
            let kd = _mm256_sub_pd(kd, splat(SHIFT));
            let r = _mm256_fmsub_pd(splat(INV_LN2_N), x, kd);
            let index = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
            let entry = _mm256_i64gather_epi64::<8>(TABLE.as_ptr().cast(), index);
            let s = _mm256_castsi256_pd(_mm256_add_epi64(entry, _mm256_slli_epi64::<47>(ki)));
            let z = _mm256_fmadd_pd(r, splat(C0), splat(C1));
            let r2 = _mm256_mul_pd(r, r);
            let y = _mm256_fmadd_pd(r, splat(C2), _mm256_set1_pd(1.0));
            let y = _mm256_fmadd_pd(z, r2, y);
            let y = _mm256_mul_pd(y, s);
            let original = [c[0], c[1], c[2], c[3]];
            _mm_storeu_ps(c.as_mut_ptr(), _mm256_cvtpd_ps(y));
            if special {
                for (o, x) in c.iter_mut().zip(original) {
                    if (x.to_bits() >> 20) & 0x7ff >= SPECIAL_TOP12 {
                        *o = super::exp_or_zero(x);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 7th f32 bit pattern (614 million numbers, every exponent and
    /// both signs, NaNs and infinities among them) gives `f32::exp`'s
    /// bits, in runs of odd lengths so that the tail path runs too.
    #[test]
    fn exp_in_place_is_libm_bit_for_bit() {
        let mut batch = Vec::with_capacity(1 << 16);
        let mut bits: u64 = 0;
        while bits <= u64::from(u32::MAX) {
            batch.clear();
            while batch.len() < (1 << 16) - 3 && bits <= u64::from(u32::MAX) {
                batch.push(f32::from_bits(bits as u32));
                bits += 7;
            }
            let mut got = batch.clone();
            exp_in_place(&mut got);
            for (x, g) in batch.iter().zip(&got) {
                let want = x.exp();
                let same = want.to_bits() == g.to_bits() || (want.is_nan() && g.is_nan());
                assert!(same, "exp({x:e}) = {want:e}, lanes gave {g:e}");
            }
        }
    }

    /// Skipping libm below the threshold changes no bit: every f32 from
    /// just above it down to -inf gives what `exp` gives.
    #[test]
    fn exp_or_zero_is_exp_bit_for_bit() {
        let mut d = -103.0f32;
        while d > -1e12 {
            assert_eq!(exp_or_zero(d).to_bits(), d.exp().to_bits(), "d = {d}");
            d = if d > -110.0 {
                f32::from_bits(d.to_bits() + 1)
            } else {
                d * 1.5
            };
        }
        for d in [f32::NEG_INFINITY, -1e9, f32::MIN, f32::NAN, 0.0, -87.0] {
            assert_eq!(exp_or_zero(d).to_bits(), d.exp().to_bits(), "d = {d}");
        }
    }
}
