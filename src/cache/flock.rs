//! OS advisory locks (`flock`). They die with their process, so a crashed or
//! killed run never leaves a lock that has to be deleted by hand.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Shared (many holders) or exclusive (one holder).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// Takes a lock without waiting; `Ok(None)` if another process holds it.
pub fn try_lock(path: &Path, mode: Mode) -> std::io::Result<Option<Lock>> {
    lock(path, mode, false)
}

/// Takes a lock, waiting as long as needed.
pub fn lock_wait(path: &Path, mode: Mode) -> std::io::Result<Lock> {
    lock(path, mode, true).map(|l| l.expect("blocking flock returns a lock"))
}

fn lock(path: &Path, mode: Mode, wait: bool) -> std::io::Result<Option<Lock>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    let mut op = match mode {
        Mode::Shared => libc::LOCK_SH,
        Mode::Exclusive => libc::LOCK_EX,
    };
    if !wait {
        op |= libc::LOCK_NB;
    }
    loop {
        // SAFETY: flock on a file descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) if !wait => return Ok(None),
            _ => return Err(err),
        }
    }
}
