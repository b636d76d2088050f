//! The parent side of a run: reading the capped output, enforcing the
//! wall-clock limit (and, where no rlimit can, the process count), killing
//! the process group and reaping the child.

use super::{Limits, Outcome, Verdict};
use std::io::Read;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

pub(super) fn kill_group(pid: libc::pid_t) {
    // SAFETY: plain system calls; `pid` is our child (its session leader).
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// The last `cap` bytes of a stream and its total length.
struct Tail {
    buf: Vec<u8>,
    cap: usize,
    total: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        if self.buf.len() > 2 * self.cap.max(1) {
            let cut = self.buf.len() - self.cap;
            self.buf.drain(..cut);
        }
    }
    fn text(&self) -> String {
        let start = self.buf.len().saturating_sub(self.cap);
        String::from_utf8_lossy(&self.buf[start..]).into_owned()
    }
}

/// Reads both pipes until the child has exited and the pipes are closed,
/// enforcing the wall-clock limit; reaps the child.
pub(super) fn supervise(
    pid: libc::pid_t,
    mut out: std::process::ChildStdout,
    mut err: std::process::ChildStderr,
    limits: &Limits,
    count_limit: Option<u64>,
    start: Instant,
) -> Outcome {
    let mut tails = [
        Tail {
            buf: Vec::new(),
            cap: limits.output_bytes,
            total: 0,
        },
        Tail {
            buf: Vec::new(),
            cap: limits.output_bytes,
            total: 0,
        },
    ];
    let fds = [out.as_raw_fd(), err.as_raw_fd()];
    for fd in fds {
        // SAFETY: valid descriptors owned by `out`/`err`.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    let mut open = [true, true];
    let mut timed_out = false;
    let mut process_limit_hit = false;
    let poll_ms = if count_limit.is_some() { 10 } else { 20 };
    let mut exited_at: Option<Instant> = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let now = Instant::now();
        if exited_at.is_none() {
            if child_exited(pid) {
                // Kill what is left of the group before reaping the leader
                // (the zombie keeps the group id from being reused).
                kill_group(pid);
                exited_at = Some(now);
            } else if now.duration_since(start) >= limits.wall {
                timed_out = true;
                kill_group(pid);
                exited_at = Some(now);
            } else if count_limit.is_some_and(|max| count_session(pid) as u64 > max) {
                process_limit_hit = true;
                kill_group(pid);
                exited_at = Some(now);
            }
        }
        // Done when the program has ended and the pipes are closed;
        // descendants that escaped the group may hold the pipes: give up on
        // them shortly after the program has ended.
        if let Some(t) = exited_at
            && ((!open[0] && !open[1]) || now.duration_since(t) > Duration::from_millis(300))
        {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = (0..2)
            .filter(|&i| open[i])
            .map(|i| libc::pollfd {
                fd: fds[i],
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `pfds` is a valid array of pollfd.
        unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, poll_ms) };
        for (i, stream) in [&mut out as &mut dyn Read, &mut err as &mut dyn Read]
            .into_iter()
            .enumerate()
        {
            while open[i] {
                match stream.read(&mut buf) {
                    Ok(0) => open[i] = false,
                    Ok(n) => tails[i].push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => open[i] = false,
                }
                if tails[i].total > (1 << 20) && open[i] {
                    // Keep polling fair between the two streams.
                    break;
                }
            }
        }
    }
    let (status, rusage) = reap(pid);
    let wall_s = start.elapsed().as_secs_f64();
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu_s = tv(rusage.ru_utime) + tv(rusage.ru_stime);
    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    let verdict = if timed_out {
        Verdict::TimedOut
    } else if exit_code == Some(0) {
        Verdict::Passed
    } else {
        Verdict::Failed
    };
    Outcome {
        verdict,
        exit_code,
        signal,
        timed_out,
        stdout: tails[0].text(),
        stderr: tails[1].text(),
        stdout_bytes: tails[0].total,
        stderr_bytes: tails[1].total,
        wall_s,
        cpu_s,
        network_isolated: false,
        process_limit_hit,
        pid,
    }
}

/// Live processes in session `sid` (read from `/proc/<pid>/stat`).
fn count_session(sid: libc::pid_t) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let sid = sid.to_string();
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .as_encoded_bytes()
                .iter()
                .all(u8::is_ascii_digit)
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // After the command name: state ppid pgrp session ...
            let f: Vec<&str> = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect();
            f.len() > 3 && f[0] != "Z" && f[3] == sid
        })
        .count()
}

/// Whether the child has exited, without reaping it.
fn child_exited(pid: libc::pid_t) -> bool {
    // SAFETY: waitid on our own child with a zeroed siginfo.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let r = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        r == 0 && info.si_pid() == pid
    }
}

/// Waits for the child and returns its status and resource usage.
fn reap(pid: libc::pid_t) -> (libc::c_int, libc::rusage) {
    // SAFETY: wait4 on our own child with valid out-pointers.
    unsafe {
        let mut status = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        loop {
            let r = libc::wait4(pid, &mut status, 0, &mut ru);
            if r == pid {
                return (status, ru);
            }
            if r == -1 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return (status, ru);
            }
        }
    }
}
