//! CPU tuning applied once per process before model work.
//!
//! candle allocates a fresh buffer for every op. With glibc's defaults, large
//! buffers are mmapped and returned to the OS on free, so every op
//! page-faults; raising the mmap and trim thresholds keeps them in the heap
//! (measured: 690 -> 850 training tokens/s on a 10M model).
//!
//! candle runs its large elementwise ops on a pool of its own threads
//! (`candle_core::utils::barrier_pool`, one fewer than the CPU threads),
//! beside the rayon pool its matrix products use. After each such op its
//! workers spin 25,000 times before they park, so on a machine with as many
//! rayon threads as cores they take cores from the products that follow;
//! [`set_candle_env`] shortens that wait.

use std::sync::Once;

static TUNE: Once = Once::new();

/// Sets glibc malloc thresholds (idempotent; a no-op off glibc).
pub fn tune_malloc() {
    TUNE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only changes allocator thresholds; it is called
        // once, before model buffers exist, and has no memory-safety
        // preconditions.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    });
}

/// Spin iterations candle's barrier-pool workers wait for the next op
/// before they park (about 10 µs here; candle's default is 25,000). With
/// it, SmolLM2-135M prefill on the 2-core AVX2 machine went from 373 /
/// 419 / 412 / 414 to 464 / 426 / 456 / 448 tokens/s, runs in turn
/// (`decode_bench --prompts 32 --new-tokens 1 --batch 1`).
pub const BARRIER_POOL_SPIN_LIMIT: u32 = 500;

/// Sets `CANDLE_BARRIER_POOL_SPIN_LIMIT` to [`BARRIER_POOL_SPIN_LIMIT`]
/// unless the environment already sets it (candle reads it when its pool
/// starts, at the first large elementwise op).
///
/// # Safety
/// It sets an environment variable: call it before any other thread
/// starts, first thing in `main`.
pub unsafe fn set_candle_env() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: the caller guarantees no other thread runs yet.
        unsafe { std::env::set_var(VAR, BARRIER_POOL_SPIN_LIMIT.to_string()) };
    }
}

/// The device model nodes use: the first CUDA GPU when the `cuda` feature is
/// built and a GPU is visible, the CPU otherwise.
pub fn device() -> candle_core::Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = candle_core::Device::cuda_if_available(0) {
            return d;
        }
    }
    candle_core::Device::Cpu
}

/// Names this machine's CPU by the widest vector instruction set it has:
/// `cpu (avx512f)`, `cpu (avx2)`, `cpu (sse2)`, or `cpu` off x86-64 (the
/// matrix kernels are chosen by it, so float rounding can differ between
/// two such machines).
pub fn describe() -> String {
    #[cfg(target_arch = "x86_64")]
    {
        let isa = if std::arch::is_x86_feature_detected!("avx512f") {
            "avx512f"
        } else if std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
        {
            "avx2"
        } else {
            "sse2"
        };
        format!("cpu ({isa})")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        "cpu".to_string()
    }
}
