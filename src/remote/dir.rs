//! A plain directory remote (a local path or a shared filesystem), laid out
//! as the cache: `records/`, `objects/`, `blobs/` under the root.
//!
//! A put copies into a `.tmp-*` file in the target directory, fsyncs it,
//! renames it into place and fsyncs the directory, so a reader (another
//! machine on the shared filesystem) never sees half an object.

use super::{Remote, RemoteError, local_at, valid_key};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A directory remote.
pub struct DirRemote {
    url: String,
    root: PathBuf,
}

impl DirRemote {
    /// A remote rooted at `root` (created on the first put).
    pub fn new(url: &str, root: PathBuf) -> DirRemote {
        DirRemote {
            url: url.into(),
            root,
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf, RemoteError> {
        if !valid_key(key) {
            return Err(self.err(format!("`{key}` is not a valid key")));
        }
        Ok(self.root.join(key))
    }

    fn err(&self, message: String) -> RemoteError {
        RemoteError::Transfer {
            remote: self.url.clone(),
            message,
        }
    }

    fn io(&self, path: &Path, e: std::io::Error) -> RemoteError {
        self.err(format!("{}: {e}", path.display()))
    }
}

impl Remote for DirRemote {
    fn url(&self) -> &str {
        &self.url
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        let start = self.root.join(prefix.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(self.io(&dir, e)),
            };
            for e in entries {
                let e = e.map_err(|e| self.io(&dir, e))?;
                let name = e.file_name();
                if name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let ft = e.file_type().map_err(|err| self.io(&e.path(), err))?;
                if ft.is_dir() {
                    stack.push(e.path());
                } else if ft.is_file() {
                    let p = e.path();
                    if let Ok(rel) = p.strip_prefix(&self.root) {
                        let key: Vec<String> = rel
                            .components()
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .collect();
                        out.push(key.join("/"));
                    }
                }
            }
        }
        Ok(out)
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        Ok(self.path(key)?.is_file())
    }

    fn has_many(&self, keys: &[String]) -> Result<Vec<bool>, RemoteError> {
        // One stat per key is cheaper here than listing a large remote.
        keys.iter().map(|k| self.exists(k)).collect()
    }

    fn get(&self, key: &str, dest: &Path) -> Result<bool, RemoteError> {
        let src = self.path(key)?;
        let mut from = match std::fs::File::open(&src) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(self.io(&src, e)),
        };
        let mut to = std::fs::File::create(dest).map_err(local_at(dest))?;
        std::io::copy(&mut from, &mut to).map_err(|e| self.io(&src, e))?;
        to.flush().map_err(local_at(dest))?;
        Ok(true)
    }

    fn put(&self, src: &Path, key: &str) -> Result<(), RemoteError> {
        let dest = self.path(key)?;
        let dir = dest.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(|e| self.io(dir, e))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(dir)
            .map_err(|e| self.io(dir, e))?;
        let mut from = std::fs::File::open(src).map_err(local_at(src))?;
        std::io::copy(&mut from, tmp.as_file_mut()).map_err(|e| self.io(tmp.path(), e))?;
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| self.io(tmp.path(), e))?;
        tmp.as_file()
            .sync_all()
            .map_err(|e| self.io(tmp.path(), e))?;
        tmp.persist(&dest).map_err(|e| self.io(&dest, e.error))?;
        crate::cache::atomic::sync_dir(dir).map_err(|e| self.io(dir, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_list_get_round_trip() {
        let t = tempfile::tempdir().expect("tempdir");
        let r = DirRemote::new("x", t.path().join("remote"));
        assert!(r.list("objects/").expect("list").is_empty());
        let src = t.path().join("src");
        std::fs::write(&src, b"hello").expect("write");
        r.put(&src, "objects/ab/cdef").expect("put");
        assert_eq!(r.list("objects/").expect("list"), vec!["objects/ab/cdef"]);
        assert!(r.exists("objects/ab/cdef").expect("exists"));
        let dest = t.path().join("got");
        assert!(r.get("objects/ab/cdef", &dest).expect("get"));
        assert_eq!(std::fs::read(&dest).expect("read"), b"hello");
        assert!(!r.get("objects/ab/zz", &dest).expect("get"));
        assert!(r.put(&src, "../escape").is_err());
    }
}
