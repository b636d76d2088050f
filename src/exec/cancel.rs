//! Ctrl-C and SIGTERM handling: the signal sets the run's
//! [`CancelToken`]; the scheduler stops starting nodes, ops kill their
//! process groups, and nothing partial is recorded.

use crate::op::CancelToken;

/// Installs a Ctrl-C / SIGTERM handler that cancels `token` (once per process).
pub fn install(token: &CancelToken) {
    let t = token.clone();
    let _ = ctrlc::set_handler(move || {
        if !t.is_cancelled() {
            eprintln!("\nrepro: interrupted; stopping running nodes (nothing partial is recorded)");
        }
        t.cancel();
    });
}
