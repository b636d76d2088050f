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

/// Size of an x86-64 transparent huge page.
const HUGE_PAGE: usize = 2 << 20;

/// Asks Linux to back the CPU memory holding `tensors` with 2 MiB pages
/// (`madvise` `MADV_HUGEPAGE`, then `MADV_COLLAPSE` to move what is already
/// there), where transparent huge pages are enabled at all (`madvise` or
/// `always`); a no-op elsewhere, and errors are ignored: it changes how
/// memory is mapped, never what it holds.
///
/// Decoding reads every weight once per token. With 4 KiB pages that is
/// 131,000 page translations per token for SmolLM2-135M's 538 MB; a plain
/// 2-thread read of 512 MiB on the AVX-512 machine went from 31.6 / 31.8 /
/// 31.1 to 35.0 / 33.1 / 32.6 GB/s with huge pages, runs in turn
/// (`scripts/read_bandwidth.c` with `madvise` before the first touch).
///
/// Only whole huge pages inside runs of tensors that lie together (gaps
/// under 2 MiB) are advised, so no unrelated mapping far from the weights
/// is touched.
pub fn back_with_huge_pages<'a>(tensors: impl IntoIterator<Item = &'a candle_core::Tensor>) {
    let ranges: Vec<(usize, usize)> = tensors.into_iter().filter_map(cpu_byte_range).collect();
    for (start, len) in huge_page_runs(ranges) {
        advise_huge(start, len);
    }
}

/// The whole huge pages inside runs of `ranges` (`(start, end)` byte
/// addresses) that lie within [`HUGE_PAGE`] of each other, as `(start,
/// len)`.
fn huge_page_runs(mut ranges: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    ranges.sort_unstable();
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (start, end) in ranges {
        match runs.last_mut() {
            Some(run) if start <= run.1 + HUGE_PAGE => run.1 = run.1.max(end),
            _ => runs.push((start, end)),
        }
    }
    runs.into_iter()
        .filter_map(|(start, end)| {
            let (a, b) = (
                start.next_multiple_of(HUGE_PAGE),
                end / HUGE_PAGE * HUGE_PAGE,
            );
            // `then`, not `then_some`: `b - a` must wait for `a < b`.
            (a < b).then(|| (a, b - a))
        })
        .collect()
}

/// The bytes a CPU tensor's storage spans, as addresses.
fn cpu_byte_range(t: &candle_core::Tensor) -> Option<(usize, usize)> {
    let (storage, _) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else {
        return None;
    };
    let (ptr, len) = match cpu {
        candle_core::CpuStorage::F32(v) => (v.as_ptr() as usize, v.len() * 4),
        candle_core::CpuStorage::BF16(v) => (v.as_ptr() as usize, v.len() * 2),
        candle_core::CpuStorage::F16(v) => (v.as_ptr() as usize, v.len() * 2),
        _ => return None,
    };
    Some((ptr, ptr + len))
}

/// `madvise(addr, len, MADV_HUGEPAGE)`, then `MADV_COLLAPSE`.
fn advise_huge(addr: usize, len: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: both advices change only which pages back the range (its
    // contents stay), and the range lies inside live tensor storage.
    unsafe {
        let p = addr as *mut libc::c_void;
        if libc::madvise(p, len, libc::MADV_HUGEPAGE) == 0 {
            libc::madvise(p, len, libc::MADV_COLLAPSE);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = (addr, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    /// Nearby tensors make one run, aligned inward to whole huge pages; a
    /// far one makes its own; a run with no whole huge page is left alone.
    #[test]
    fn huge_page_runs_cover_whole_pages_near_the_tensors() {
        let runs = huge_page_runs(vec![
            (300 * MB + 8, 300 * MB + 64),
            (100 * MB + 1, 103 * MB),
            (103 * MB + 5, 109 * MB),
            (500 * MB, 501 * MB),
            (900 * MB + 3, 905 * MB),
        ]);
        assert_eq!(runs, vec![(102 * MB, 6 * MB), (902 * MB, 2 * MB)]);
    }

    /// Advising a live tensor's memory leaves its contents as they were.
    #[test]
    fn advising_huge_pages_keeps_the_values() {
        let n = 3 * HUGE_PAGE / 4;
        let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let t = candle_core::Tensor::from_vec(values.clone(), n, &candle_core::Device::Cpu)
            .expect("a tensor");
        back_with_huge_pages([&t]);
        assert_eq!(t.to_vec1::<f32>().expect("f32 values"), values);
    }
}
