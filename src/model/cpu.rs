//! CPU tuning applied once per process before model work.
//!
//! candle allocates a fresh buffer for every op. With glibc's defaults, large
//! buffers are mmapped and returned to the OS on free, so every op
//! page-faults; raising the mmap and trim thresholds keeps them in the heap
//! (measured: 690 -> 850 training tokens/s on a 10M model).

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
