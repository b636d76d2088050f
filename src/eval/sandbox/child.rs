//! The child side of the sandbox: what runs between `fork` and `exec`
//! (`CommandExt::pre_exec`).
//!
//! Everything here runs in the forked child of a possibly multi-threaded
//! parent, so it only makes raw system calls on data prepared beforehand in
//! [`Plan`] (no allocation, no locks). Order of the steps:
//!
//! 1. `setsid`: a new session and process group, so the parent can kill the
//!    whole group with `kill(-pgid, SIGKILL)`;
//! 2. resource limits: CPU seconds, address space, file size, core dumps
//!    (off), open files;
//! 3. with namespaces: new mount, network, PID and IPC namespaces (as root
//!    directly; otherwise inside a new user namespace that maps only the
//!    caller's own uid/gid, to a non-zero id so that `exec` drops every
//!    capability); the mount tree is made private, the interpreter is made
//!    reachable when it lives under a directory others cannot enter (root
//!    only, see [`Unblock`]), the whole tree is made read-only and nosuid,
//!    and a size-limited tmpfs is mounted on the sample's home, which becomes
//!    the working directory;
//! 4. `PR_SET_NO_NEW_PRIVS`;
//! 5. as root: drop to the sandbox uid/gid (RLIMIT_NPROC never applies to
//!    uid 0), then with namespaces a new user namespace so that the process
//!    count is per sample (the kernel counts RLIMIT_NPROC per user namespace
//!    level);
//! 6. RLIMIT_NPROC;
//! 7. with namespaces: `fork` so that the program is PID 1 of the new PID
//!    namespace (when it dies, the kernel kills every process left in the
//!    namespace, including ones that left the process group with `setsid`);
//!    the intermediate process waits for it and exits with its status.

use std::ffi::CString;
use std::io;

/// Limits applied with `setrlimit` (values in the kernel's units).
#[derive(Debug, Clone, Copy)]
pub(super) struct Rlimits {
    /// RLIMIT_CPU soft limit, seconds (hard = soft + 1).
    pub cpu_s: u64,
    /// RLIMIT_AS, bytes.
    pub address_space: u64,
    /// RLIMIT_FSIZE, bytes.
    pub file_size: u64,
    /// RLIMIT_NPROC.
    pub nproc: u64,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
}

/// Making an interpreter reachable that lives below a directory the sandbox
/// user may not enter (e.g. pyenv under `/root`, mode 0700): a tmpfs is
/// mounted on the `blocker` directory, `chain` (the directories from below
/// the blocker down to `prefix`) is created in it, and the real `prefix` is
/// bind-mounted back at the same path. Everything else under the blocker is
/// hidden from the sample.
#[derive(Debug, Clone)]
pub(super) struct Unblock {
    /// The first ancestor of the prefix without the others-execute bit.
    pub blocker: CString,
    /// Directories to create inside the tmpfs, outermost first.
    pub chain: Vec<CString>,
    /// The interpreter's installation prefix.
    pub prefix: CString,
}

/// Everything the child needs, prepared by the parent.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    /// Resource limits.
    pub limits: Rlimits,
    /// Use namespaces (mount, network, PID, IPC; user when not root).
    pub namespaces: bool,
    /// When started as root: the uid/gid the sample runs as.
    pub drop_to: Option<(u32, u32)>,
    /// The caller is root (namespaces are then created without a user
    /// namespace, before dropping privileges).
    pub is_root: bool,
    /// Contents of `uid_map` / `gid_map` when not root.
    pub uid_map: Vec<u8>,
    /// See `uid_map`.
    pub gid_map: Vec<u8>,
    /// The sample's home (cwd, HOME, TMPDIR).
    pub home: CString,
    /// Options of the tmpfs mounted on `home`.
    pub tmpfs_opts: CString,
    /// Root only: make the interpreter reachable.
    pub unblock: Option<Unblock>,
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn set_limit(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: a plain system call on a stack value.
    check(unsafe { libc::setrlimit(resource, &lim) })
}

/// Writes `data` to an existing file (`/proc/self/uid_map` and friends).
fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: raw system calls on valid, NUL-terminated buffers.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        check(fd)?;
        let n = libc::write(fd, data.as_ptr().cast(), data.len());
        let err = io::Error::last_os_error();
        libc::close(fd);
        if n != data.len() as isize {
            return Err(err);
        }
    }
    Ok(())
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;

/// Makes every mount read-only and nosuid (`mount_setattr` with
/// `AT_RECURSIVE`; on kernels without it, only the root mount).
fn read_only_tree() -> io::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: raw system calls with valid pointers.
    unsafe {
        let r = libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c"/".as_ptr(),
            libc::AT_RECURSIVE as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        );
        if r == 0 {
            return Ok(());
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
            return Err(io::Error::last_os_error());
        }
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | libc::MS_NOSUID,
            std::ptr::null(),
        ))
    }
}

/// Formats `/proc/self/fd/<fd>` into `buf` (NUL-terminated) without
/// allocating.
fn fd_path(fd: libc::c_int, buf: &mut [u8; 40]) -> *const libc::c_char {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let mut n = fd.max(0) as u32;
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
    buf.as_ptr().cast()
}

fn unblock_interpreter(u: &Unblock) -> io::Result<()> {
    // SAFETY: raw system calls on prepared, NUL-terminated strings.
    unsafe {
        let fd = libc::open(
            u.prefix.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        );
        check(fd)?;
        check(libc::mount(
            c"tmpfs".as_ptr(),
            u.blocker.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=0755,size=1m".as_ptr().cast(),
        ))?;
        for dir in &u.chain {
            check(libc::mkdir(dir.as_ptr(), 0o755))?;
        }
        let mut buf = [0u8; 40];
        let src = fd_path(fd, &mut buf);
        check(libc::mount(
            src,
            u.prefix.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        ))?;
        libc::close(fd);
    }
    Ok(())
}

/// Steps 3 (mount part): private tree, interpreter, read-only, tmpfs home.
fn mounts(plan: &Plan) -> io::Result<()> {
    // SAFETY: raw system calls on prepared, NUL-terminated strings.
    unsafe {
        check(libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ))?;
        if let Some(u) = &plan.unblock {
            unblock_interpreter(u)?;
        }
        read_only_tree()?;
        check(libc::mount(
            c"tmpfs".as_ptr(),
            plan.home.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            plan.tmpfs_opts.as_ptr().cast(),
        ))?;
        check(libc::chdir(plan.home.as_ptr()))
    }
}

/// The intermediate process of step 7: waits for the namespace's PID 1 and
/// exits the way it did. Never returns.
fn mirror_child(pid: libc::pid_t) -> ! {
    // SAFETY: raw system calls; this process only waits and exits.
    unsafe {
        // Drop every descriptor (the pipes and std's exec-status pipe), so
        // the parent sees end-of-file as soon as PID 1 has exec'd/exited.
        if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
            for fd in 0..1024 {
                libc::close(fd);
            }
        }
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid, &mut status, 0);
            if r == pid {
                break;
            }
            if r == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                libc::_exit(127);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
}

/// The `pre_exec` body.
pub(super) fn setup(plan: &Plan) -> io::Result<()> {
    let l = plan.limits;
    // SAFETY: raw system calls on prepared data; see the module comment.
    unsafe {
        check(libc::setsid())?;
        set_limit(libc::RLIMIT_CPU, l.cpu_s, l.cpu_s + 1)?;
        set_limit(libc::RLIMIT_AS, l.address_space, l.address_space)?;
        set_limit(libc::RLIMIT_FSIZE, l.file_size, l.file_size)?;
        set_limit(libc::RLIMIT_CORE, 0, 0)?;
        set_limit(libc::RLIMIT_NOFILE, l.nofile, l.nofile)?;
        let ns = libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWPID | libc::CLONE_NEWIPC;
        if plan.namespaces {
            if plan.is_root {
                check(libc::unshare(ns))?;
            } else {
                check(libc::unshare(libc::CLONE_NEWUSER | ns))?;
                write_file(c"/proc/self/setgroups", b"deny")?;
                write_file(c"/proc/self/uid_map", &plan.uid_map)?;
                write_file(c"/proc/self/gid_map", &plan.gid_map)?;
            }
            mounts(plan)?;
        }
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        if let Some((uid, gid)) = plan.drop_to {
            check(libc::setgroups(0, std::ptr::null()))?;
            check(libc::setresgid(gid, gid, gid))?;
            check(libc::setresuid(uid, uid, uid))?;
            if plan.namespaces {
                // A user namespace of its own: the RLIMIT_NPROC count is then
                // per sample, not per uid across concurrent samples.
                check(libc::unshare(libc::CLONE_NEWUSER))?;
            }
        }
        set_limit(libc::RLIMIT_NPROC, l.nproc, l.nproc)?;
        if plan.namespaces {
            let pid = libc::fork();
            check(pid)?;
            if pid > 0 {
                mirror_child(pid);
            }
            // PID 1 of the new namespace: die with the intermediate.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        }
    }
    Ok(())
}
