//! One poller for all of a run's Slurm jobs: a single
//! `squeue -h -t all -j ID,ID,...` per interval, never one call per job.
//!
//! The interval is `poll_ms` (500 ms by default) plus 2 ms per outstanding
//! job, so 200 jobs are polled about every 0.9 s. A failing `squeue` (a busy
//! controller) is retried with a doubling delay up to 10 s and reported to
//! the waiting nodes, never fatal.

use super::sbatch::{is_terminal, squeue};
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the poller last saw of one job.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// Slurm state (`PENDING`, `RUNNING`, `TIMEOUT`, ...); empty before the first sighting.
    pub state: String,
    /// Slurm's reason (`Resources`, `TimeLimit`, ...).
    pub reason: String,
    /// Listed by `squeue` once, then no more; or never listed for 30 s.
    pub gone: bool,
    /// The last `squeue` error, while polling fails.
    pub poll_error: Option<String>,
}

#[derive(Default)]
struct State {
    jobs: BTreeMap<String, (Instant, Seen)>,
    poll_error: Option<String>,
    stop: bool,
}

/// The shared poller.
pub struct Tracker {
    shared: Arc<(Mutex<State>, Condvar)>,
    started: std::sync::Once,
    base: Duration,
}

impl Tracker {
    /// A poller with base interval `base` (started on the first watch).
    pub fn new(base: Duration) -> Tracker {
        Tracker {
            shared: Arc::new((Mutex::new(State::default()), Condvar::new())),
            started: std::sync::Once::new(),
            base,
        }
    }

    /// Starts tracking a job.
    pub fn watch(&self, id: &str) {
        self.started.call_once(|| {
            let shared = Arc::clone(&self.shared);
            let base = self.base;
            std::thread::spawn(move || poll_loop(&shared, base));
        });
        let (m, cv) = &*self.shared;
        if let Ok(mut s) = m.lock() {
            s.jobs
                .entry(id.to_string())
                .or_insert_with(|| (Instant::now(), Seen::default()));
        }
        cv.notify_all();
    }

    /// Stops tracking a job.
    pub fn forget(&self, id: &str) {
        if let Ok(mut s) = self.shared.0.lock() {
            s.jobs.remove(id);
        }
    }

    /// Waits for the next poll (at most `max`), then returns what is known of `id`.
    pub fn wait(&self, id: &str, max: Duration) -> Seen {
        let (m, cv) = &*self.shared;
        let Ok(g) = m.lock() else {
            return Seen::default();
        };
        let g = match cv.wait_timeout(g, max) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
        let mut seen = g.jobs.get(id).map(|(_, s)| s.clone()).unwrap_or_default();
        seen.poll_error = g.poll_error.clone();
        seen
    }

    /// Every job being tracked.
    pub fn ids(&self) -> Vec<String> {
        self.shared
            .0
            .lock()
            .map(|s| s.jobs.keys().cloned().collect())
            .unwrap_or_default()
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Ok(mut s) = self.shared.0.lock() {
            s.stop = true;
        }
        self.shared.1.notify_all();
    }
}

fn poll_loop(shared: &(Mutex<State>, Condvar), base: Duration) {
    let (m, cv) = shared;
    let mut backoff = Duration::ZERO;
    loop {
        let ids: Vec<String> = {
            let Ok(mut s) = m.lock() else { return };
            while s.jobs.is_empty() && !s.stop {
                s = match cv.wait(s) {
                    Ok(s) => s,
                    Err(_) => return,
                };
            }
            if s.stop {
                return;
            }
            s.jobs
                .iter()
                .filter(|(_, (_, seen))| !seen.gone && !is_terminal(&seen.state))
                .map(|(id, _)| id.clone())
                .collect()
        };
        let n = ids.len();
        let result = squeue(&ids);
        {
            let Ok(mut s) = m.lock() else { return };
            match result {
                Ok(rows) => {
                    backoff = Duration::ZERO;
                    s.poll_error = None;
                    let rows: BTreeMap<String, (String, String)> =
                        rows.into_iter().map(|(i, st, r)| (i, (st, r))).collect();
                    for id in &ids {
                        let Some((since, seen)) = s.jobs.get_mut(id) else {
                            continue;
                        };
                        match rows.get(id) {
                            Some((st, r)) => {
                                seen.state = st.clone();
                                seen.reason = r.clone();
                            }
                            None => {
                                if !seen.state.is_empty()
                                    || since.elapsed() > Duration::from_secs(30)
                                {
                                    seen.gone = true;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(Duration::from_secs(1), Duration::from_secs(10));
                    s.poll_error = Some(e);
                }
            }
        }
        cv.notify_all();
        std::thread::sleep(base + Duration::from_millis(2 * n as u64) + backoff);
    }
}
