//! The run display: on a terminal, a bar with one spinner per running node;
//! otherwise (CI, pipes) one plain line per event.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

/// Progress output for one `repro run`.
pub struct Progress {
    multi: Option<MultiProgress>,
    bar: Option<ProgressBar>,
    spinners: HashMap<usize, ProgressBar>,
    verbose: bool,
    quiet: bool,
}

impl Progress {
    /// A display for `total` nodes. `verbose` also lists cache hits.
    pub fn new(total: usize, verbose: bool, quiet: bool) -> Self {
        let tty = std::io::stderr().is_terminal() && !quiet;
        let (multi, bar) = if tty {
            let m = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let b = m.add(ProgressBar::new(total as u64));
            b.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} nodes {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            (Some(m), Some(b))
        } else {
            (None, None)
        };
        Progress {
            multi,
            bar,
            spinners: HashMap::new(),
            verbose,
            quiet,
        }
    }

    fn line(&self, text: String) {
        if self.quiet {
            return;
        }
        match &self.multi {
            Some(m) => {
                let _ = m.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Updates the summary message (counts).
    pub fn counts(&self, msg: String) {
        if let Some(b) = &self.bar {
            b.set_message(msg);
        }
    }

    /// A node was found in the cache.
    pub fn hit(&self, id: &str) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        if self.verbose {
            self.line(format!("  cached   {id}"));
        }
    }

    /// A node started running; returns the reporter of its own progress.
    pub fn started(&mut self, idx: usize, id: &str, why: &str) -> OpStatus {
        let status = OpStatus {
            id: id.to_string(),
            spinner: None,
            plain: !self.quiet && self.multi.is_none(),
            last: std::sync::Mutex::new(None),
        };
        match &self.multi {
            Some(m) => {
                let s = m.add(ProgressBar::new_spinner());
                s.set_style(
                    ProgressStyle::with_template("  {spinner} {elapsed:>4} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                s.set_message(id.to_string());
                s.enable_steady_tick(Duration::from_millis(120));
                self.spinners.insert(idx, s.clone());
                OpStatus {
                    spinner: Some(s),
                    ..status
                }
            }
            None if self.verbose => {
                self.line(format!("  running  {id}  ({why})"));
                status
            }
            None => status,
        }
    }

    /// A node finished: `status` is `ran`, `failed`, `skipped` or `cancelled`.
    pub fn finished(&mut self, idx: usize, id: &str, status: &str, secs: f64, detail: &str) {
        if let Some(s) = self.spinners.remove(&idx) {
            s.finish_and_clear();
            if let Some(m) = &self.multi {
                m.remove(&s);
            }
        }
        if let Some(b) = &self.bar {
            b.inc(1);
        }
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!("  {detail}")
        };
        self.line(format!("  {status:<8} {id}  {secs:.2}s{detail}"));
    }

    /// A free-form message line.
    pub fn note(&self, text: &str) {
        self.line(format!("  {text}"));
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Shows one running node's own progress: on a terminal in its spinner line,
/// otherwise as a plain line at most every 15 seconds.
pub struct OpStatus {
    id: String,
    spinner: Option<ProgressBar>,
    plain: bool,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl OpStatus {
    /// Sets the node's progress message.
    pub fn set(&self, msg: &str) {
        if let Some(s) = &self.spinner {
            s.set_message(format!("{}  {msg}", self.id));
        } else if self.plain {
            let Ok(mut last) = self.last.lock() else {
                return;
            };
            let due = last.is_none_or(|t| t.elapsed() >= Duration::from_secs(15));
            if due {
                *last = Some(std::time::Instant::now());
                eprintln!("  ...      {}  {msg}", self.id);
            }
        }
    }
}
