//! A fork-join for the decoder's products that does not put its threads to
//! sleep between them.
//!
//! Decoding one token runs about 120 products (four groups per block), each
//! split over the CPU threads, with a little serial work between them
//! (norms, RoPE, attention: tens of microseconds). Through rayon, the
//! helper thread goes to sleep in that gap, so every product costs a
//! `futex` wake on the calling thread and a wake-up on the helper, while
//! the memory bus, which sets the pace of decoding, idles: on the 2-core
//! AMD EPYC (Zen 5) of 2026-12-07, `perf` put 15% of a SmolLM2 decoding
//! run's samples in `sched_yield` and `futex` system calls.
//!
//! [`run_parts`] hands parts `1..` of a job to helper threads of its own,
//! which spin for `SPIN` after each job, then yield their core between
//! checks until `WAIT`, then park (as llama.cpp's thread pool polls
//! before it sleeps), and runs part 0 itself. One caller at a time has the
//! team; a second caller meanwhile (two model nodes on one process) runs
//! its parts through rayon, as before.
//!
//! Measured on that machine, with the two kinds of fork-join switched
//! prompt by prompt inside one process (64 NQ prompts, 64 new tokens each,
//! batch 1, the same ids): 59.9 and 59.5 tokens/s through rayon, 66.4 and
//! 67.8 through the team. Spinning 50 µs or 20 ms instead of 200 µs gave
//! the same within 1%. Prefill's products ([`super::rows`]) stay on rayon:
//! on the team they went from 859 to 778 prompt tokens/s, since between
//! them candle runs prefill's attention and elementwise ops on threads of
//! its own, which the waiting helper then competes with. Having the
//! helper prefetch the next product's first weights while it waits (the
//! order of products repeats every token) changed nothing measurable
//! (66.6 and 66.3 against 66.4 tokens/s with 1 and 2 MB read ahead).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::time::{Duration, Instant};

/// How long a helper spins for its next job before it yields its core
/// between checks: longer than the serial work between two products of a
/// decoding step (norms, RoPE, one token's attention).
const SPIN: Duration = Duration::from_micros(200);

/// How long a helper waits for its next job, spinning then yielding,
/// before it parks: the yielding lets other threads (candle's own, during
/// prefill's attention and elementwise ops) have the core, and an idle
/// process gives its cores back soon.
const WAIT: Duration = Duration::from_millis(2);

/// One helper's part of a job. The pointers borrow from the frame of
/// [`run_parts`], which does not return before every helper has counted
/// itself out of `left`.
struct Job {
    work: *const (dyn Fn(usize) + Sync),
    part: usize,
    left: *const AtomicUsize,
    panicked: *const AtomicBool,
}

// SAFETY: a Job only moves `run_parts`'s borrows to a helper, and
// `run_parts` waits for the helper to finish with them (see `Job`).
unsafe impl Send for Job {}

/// What a helper's mutex guards.
#[derive(Default)]
struct Mailbox {
    job: Option<Job>,
    parked: bool,
}

/// One helper thread's mailbox.
#[derive(Default)]
struct Slot {
    /// A job waits in the mailbox (read while spinning, without the lock).
    ready: AtomicBool,
    mailbox: Mutex<Mailbox>,
    wake: Condvar,
}

/// The helper threads, and the lock a caller holds while it uses them.
struct Team {
    slots: Vec<Arc<Slot>>,
    in_use: Mutex<()>,
}

/// The team of this process: `threads - 1` helpers, where `threads` is
/// candle's CPU thread count, started on first use.
fn team() -> &'static Team {
    static TEAM: OnceLock<Team> = OnceLock::new();
    TEAM.get_or_init(|| {
        let helpers = candle_core::utils::get_num_threads().saturating_sub(1);
        let slots = (0..helpers)
            .filter_map(|i| {
                let slot = Arc::new(Slot::default());
                let mine = Arc::clone(&slot);
                std::thread::Builder::new()
                    .name(format!("repro-matvec-{}", i + 1))
                    .spawn(move || serve(&mine))
                    .ok()
                    .map(|_| slot)
            })
            .collect();
        Team {
            slots,
            in_use: Mutex::new(()),
        }
    })
}

/// Calls `work(part)` once for every part in `0..parts`, in parallel, and
/// returns when all have returned. A panic in any part is raised here once
/// every part has finished.
pub fn run_parts(parts: usize, work: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 {
        (0..parts).for_each(work);
        return;
    }
    let team = team();
    let guard = match team.in_use.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    };
    match guard {
        Some(_held) if team.slots.len() + 1 >= parts => run_on_team(&team.slots, parts, work),
        _ => {
            use rayon::prelude::*;
            (0..parts).into_par_iter().for_each(work);
        }
    }
}

/// [`run_parts`] on the team: parts `1..` to helpers, part 0 here.
fn run_on_team(slots: &[Arc<Slot>], parts: usize, work: &(dyn Fn(usize) + Sync)) {
    let left = AtomicUsize::new(parts - 1);
    let panicked = AtomicBool::new(false);
    // SAFETY: only the lifetime is erased; this function does not return
    // (nor unwind: part 0 runs under catch_unwind) before `left` is 0,
    // which each helper makes so only after its last use of `work`.
    let erased: *const (dyn Fn(usize) + Sync + 'static) = unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync)>(
            work,
        )
    };
    for (part, slot) in (1..parts).zip(slots) {
        post(
            slot,
            Job {
                work: erased,
                part,
                left: &left,
                panicked: &panicked,
            },
        );
    }
    let mine = catch_unwind(AssertUnwindSafe(|| work(0)));
    wait_until_zero(&left);
    if let Err(payload) = mine {
        resume_unwind(payload);
    }
    if panicked.load(Ordering::Acquire) {
        panic!("matvec: a helper thread's part of a product panicked");
    }
}

/// Puts `job` in `slot`'s mailbox and wakes its helper if it parked.
fn post(slot: &Slot, job: Job) {
    let mut mailbox = slot.mailbox.lock().unwrap_or_else(|e| e.into_inner());
    mailbox.job = Some(job);
    slot.ready.store(true, Ordering::Release);
    if mailbox.parked {
        slot.wake.notify_one();
    }
}

/// Spins until `left` is 0 (a helper that had parked takes a wake-up to
/// start).
fn wait_until_zero(left: &AtomicUsize) {
    wait_until(|| left.load(Ordering::Acquire) == 0, None);
}

/// Waits for `done`: spinning for [`SPIN`], then yielding the core between
/// checks, until `give_up_after` (forever if `None`). Says whether `done`
/// came.
fn wait_until(done: impl Fn() -> bool, give_up_after: Option<Duration>) -> bool {
    let start = Instant::now();
    let mut spins = 0u32;
    let mut yielding = false;
    while !done() {
        if yielding {
            if give_up_after.is_some_and(|limit| start.elapsed() > limit) {
                return false;
            }
            std::thread::yield_now();
            continue;
        }
        spins = spins.wrapping_add(1);
        yielding = spins.is_multiple_of(64) && start.elapsed() > SPIN;
        std::hint::spin_loop();
    }
    true
}

/// A helper's life: wait for a job, run it, count out, forever.
fn serve(slot: &Slot) {
    loop {
        let job = next_job(slot);
        // SAFETY: see `Job`: the borrows live until `left` reaches 0.
        let (work, left, panicked) = unsafe { (&*job.work, &*job.left, &*job.panicked) };
        if catch_unwind(AssertUnwindSafe(|| work(job.part))).is_err() {
            panicked.store(true, Ordering::Release);
        }
        left.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The next job in `slot`: spun then yielded for up to [`WAIT`]
/// ([`wait_until`]), then waited for parked.
fn next_job(slot: &Slot) -> Job {
    wait_until(|| slot.ready.load(Ordering::Acquire), Some(WAIT));
    let mut mailbox = slot.mailbox.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(job) = mailbox.job.take() {
            slot.ready.store(false, Ordering::Relaxed);
            mailbox.parked = false;
            return job;
        }
        mailbox.parked = true;
        mailbox = slot.wake.wait(mailbox).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part runs exactly once, whether the team or rayon runs it.
    #[test]
    fn every_part_runs_once() {
        for parts in [0, 1, 2, 3, 8] {
            let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            for _ in 0..50 {
                run_parts(parts, &|p| {
                    counts[p].fetch_add(1, Ordering::Relaxed);
                });
            }
            for c in &counts {
                assert_eq!(c.load(Ordering::Relaxed), 50, "{parts} parts");
            }
        }
    }

    /// Callers on several threads at once each get all their parts run.
    #[test]
    fn concurrent_callers_each_finish() {
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let sum = AtomicUsize::new(0);
                        run_parts(2, &|p| {
                            sum.fetch_add(p + 1, Ordering::Relaxed);
                        });
                        assert_eq!(sum.load(Ordering::Relaxed), 3);
                    }
                });
            }
        });
    }

    /// A part that panics raises the panic in the caller, and the team
    /// still serves the next job.
    #[test]
    fn a_panicking_part_reaches_the_caller() {
        let caught = catch_unwind(|| run_parts(2, &|p| assert!(p != 1, "part 1 fails")));
        assert!(caught.is_err());
        let sum = AtomicUsize::new(0);
        run_parts(2, &|p| {
            sum.fetch_add(p + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 3);
    }
}
