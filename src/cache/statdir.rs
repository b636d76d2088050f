//! A directory opened once for many `stat`s of files under it by relative
//! path: each one skips the kernel's walk from `/` down to the directory,
//! which at 10,000 objects per no-op `status` is a large part of its time.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// An open directory.
#[derive(Debug)]
pub struct StatDir {
    dir: std::fs::File,
    /// The directory's path and a `/`, as bytes.
    prefix: Vec<u8>,
}

/// What `stat` says of a file: size, mtime in nanoseconds, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub ino: u64,
}

impl StatDir {
    /// Opens `dir`.
    pub fn open(dir: &Path) -> std::io::Result<StatDir> {
        let mut prefix = dir.as_os_str().as_bytes().to_vec();
        prefix.push(b'/');
        Ok(StatDir {
            dir: std::fs::File::open(dir)?,
            prefix,
        })
    }

    /// The full path of `rel`: the directory's path, `/`, `rel` (what
    /// [`Path::join`] makes of a relative `rel` without `.` or `..`).
    pub fn path(&self, rel: &str) -> PathBuf {
        let mut p = self.prefix.clone();
        p.extend_from_slice(rel.as_bytes());
        PathBuf::from(OsStr::from_bytes(&p))
    }

    /// Calls `f` with the full path of `rel` as bytes, without allocating
    /// for short paths.
    pub fn with_path<T>(&self, rel: &str, f: impl FnOnce(&OsStr) -> T) -> T {
        let mut buf = [0u8; 512];
        let n = self.prefix.len() + rel.len();
        if n <= buf.len() {
            buf[..self.prefix.len()].copy_from_slice(&self.prefix);
            buf[self.prefix.len()..n].copy_from_slice(rel.as_bytes());
            f(OsStr::from_bytes(&buf[..n]))
        } else {
            f(self.path(rel).as_os_str())
        }
    }

    /// `stat` of `rel` under the directory, following symlinks, as
    /// `std::fs::metadata` of its full path would say.
    pub fn stat(&self, rel: &str) -> std::io::Result<FileStat> {
        let mut name = [0u8; 256];
        if rel.len() >= name.len() {
            return stat_path(&self.path(rel));
        }
        let slot = &mut name[..rel.len()];
        if rel.as_bytes().contains(&0) {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        slot.copy_from_slice(rel.as_bytes());
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: `name` holds `rel` followed by at least one NUL (it is one
        // byte longer than any `rel` copied into it and zeroed), the
        // descriptor stays open while `self` lives, and `st` is only read
        // after the call succeeded, which fills it.
        let r = unsafe {
            libc::fstatat(
                self.dir.as_raw_fd(),
                name.as_ptr().cast(),
                st.as_mut_ptr(),
                0,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fstatat returned 0, so it wrote the whole struct.
        let st = unsafe { st.assume_init() };
        Ok(FileStat {
            size: st.st_size as u64,
            mtime_ns: st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128,
            ino: st.st_ino,
        })
    }
}

fn stat_path(path: &Path) -> std::io::Result<FileStat> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok(FileStat {
        size: m.len(),
        mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        ino: m.ino(),
    })
}
