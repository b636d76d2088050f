//! An SSH remote: `ssh://[user@]host[:port]/path` or `[user@]host:path`
//! (scp syntax: a `:` before any `/`; a relative path is under the login
//! directory, `~/x` too).
//!
//! Nothing is installed on the other side: each operation runs the ssh
//! command (`REPRO_SSH`, else the remote's `ssh_command`, else `ssh`; run
//! through `sh -c` like git's `GIT_SSH_COMMAND`, so it may carry options)
//! with a POSIX shell script: `find` to list, `test -f` for existence,
//! `cat` for one object, and `tar` both ways for batches, so a push of 1000
//! objects is one ssh session, not 1000. Every path is single-quoted on the
//! remote; keys are checked by [`super::valid_key`] before use.
//!
//! A batch put extracts into `<root>/.tmp-push-<id>/`, runs `sync`, then
//! renames each object into place (same filesystem, so each appears whole)
//! and removes the temporary directory; a crash leaves only that `.tmp-*`
//! directory, which listing never reports.

use super::tarstream::{LIST, pack, unpack};
use super::{Remote, RemoteError, local_at, valid_key};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where an SSH remote lives.
#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    /// `host` or `user@host`.
    pub host: String,
    /// `-p PORT`, when given.
    pub port: Option<u16>,
    /// The path on the host (absolute, `~/...`, or relative to the login directory).
    pub path: String,
}

impl SshTarget {
    /// Parses an SSH URL; `Ok(None)` when `url` is not one (a local path).
    pub fn parse(url: &str) -> Result<Option<SshTarget>, RemoteError> {
        let bad = |message: &str| RemoteError::BadUrl {
            url: url.into(),
            message: message.into(),
        };
        if let Some(rest) = url.strip_prefix("ssh://") {
            let (auth, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => return Err(bad("no path after the host (ssh://host/path)")),
            };
            let (user, hostport) = match auth.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, auth),
            };
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("unclosed `[` in the host"))?;
                (h, after.strip_prefix(':'))
            } else {
                match hostport.split_once(':') {
                    Some((h, p)) => (h, Some(p)),
                    None => (hostport, None),
                }
            };
            let port = match port {
                Some(p) => Some(
                    p.parse::<u16>()
                        .map_err(|_| bad(&format!("port `{p}` is not a number")))?,
                ),
                None => None,
            };
            if host.is_empty() {
                return Err(bad("no host"));
            }
            // `ssh://host/~/x` means `~/x`, as in git.
            let path = path
                .strip_prefix('/')
                .filter(|p| p.starts_with('~'))
                .unwrap_or(path);
            return Ok(Some(SshTarget {
                host: join_user(user, host),
                port,
                path: path.into(),
            }));
        }
        if url.contains("://") {
            return Ok(None);
        }
        let Some(colon) = url.find(':') else {
            return Ok(None);
        };
        if colon == 0 || url[..colon].contains('/') {
            return Ok(None);
        }
        let (auth, path) = (&url[..colon], &url[colon + 1..]);
        let (user, host) = match auth.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, auth),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Some(SshTarget {
            host: join_user(user, host),
            port: None,
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
        }))
    }

    /// The remote root as one shell word (`~/` expands, the rest is quoted).
    fn root_word(&self) -> String {
        if self.path == "~" {
            "\"$HOME\"".into()
        } else if let Some(rest) = self.path.strip_prefix("~/") {
            format!("\"$HOME\"/{}", quote(rest))
        } else {
            quote(&self.path)
        }
    }
}

fn join_user(user: Option<&str>, host: &str) -> String {
    match user {
        Some(u) if !u.is_empty() => format!("{u}@{host}"),
        _ => host.into(),
    }
}

/// Single-quotes a string for a POSIX shell.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Exit status a script uses for "no such key".
const ABSENT: i32 = 3;

/// An SSH remote.
pub struct SshRemote {
    url: String,
    target: SshTarget,
    command: String,
}

impl SshRemote {
    /// A remote reached with the ssh command `command` (a shell snippet).
    pub fn new(url: &str, target: SshTarget, command: String) -> SshRemote {
        SshRemote {
            url: url.into(),
            target,
            command,
        }
    }

    fn err(&self, message: String) -> RemoteError {
        RemoteError::Transfer {
            remote: self.url.clone(),
            message,
        }
    }

    /// `sh -c '<ssh command> "$@"' ssh [-p PORT] HOST "sh -c '<script>'"`.
    fn command(&self, script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!("{} \"$@\"", self.command))
            .arg("repro-ssh");
        if let Some(p) = self.target.port {
            c.arg("-p").arg(p.to_string());
        }
        // The login shell may be anything: give it one `sh -c '...'`.
        c.arg(&self.target.host)
            .arg(format!("sh -c {}", quote(script)));
        c
    }

    /// `cd` into the remote root (`create`: make it first).
    fn cd(&self, create: bool) -> String {
        let root = self.target.root_word();
        if create {
            format!("mkdir -p {root} && cd {root} || exit 1")
        } else {
            format!("cd {root} 2>/dev/null || exit {ABSENT}")
        }
    }

    /// Runs a script with no stdin; returns (exit code, stdout, stderr).
    fn run(&self, script: &str) -> Result<(Option<i32>, Vec<u8>, String), RemoteError> {
        let out = self
            .command(script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.err(format!("cannot run `{}`: {e}", self.command)))?;
        Ok((
            out.status.code(),
            out.stdout,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    /// Every key under `prefixes`, in one session.
    fn list_all(&self, prefixes: &[&str]) -> Result<Vec<String>, RemoteError> {
        let mut script = self.cd(false);
        for prefix in prefixes {
            let p = prefix.trim_end_matches('/');
            if !valid_key(p) {
                return Err(self.err(format!("`{prefix}` is not a valid prefix")));
            }
            script.push_str(&format!(
                "; if [ -d {q} ]; then find {q} -type f ! -name '.tmp-*' -print || exit 1; fi",
                q = quote(p)
            ));
        }
        match self.run(&script)? {
            (Some(0), out, _) => Ok(String::from_utf8_lossy(&out)
                .lines()
                .filter(|l| valid_key(l))
                .map(str::to_string)
                .collect()),
            (Some(ABSENT), _, _) => Ok(Vec::new()),
            (code, _, err) => {
                Err(self.failed(&format!("listing {}", prefixes.join(" ")), code, &err))
            }
        }
    }

    fn failed(&self, what: &str, code: Option<i32>, stderr: &str) -> RemoteError {
        let code = code.map_or("a signal".to_string(), |c| format!("exit code {c}"));
        let hint = if stderr.is_empty() {
            String::new()
        } else {
            format!(": {stderr}")
        };
        self.err(format!(
            "{what} over `{}` failed ({code}){hint}",
            self.command
        ))
    }
}

impl Remote for SshRemote {
    fn url(&self) -> &str {
        &self.url
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, RemoteError> {
        self.list_all(&[prefix])
    }

    fn has_many(&self, keys: &[String]) -> Result<Vec<bool>, RemoteError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut prefixes: Vec<&str> = keys.iter().map(|k| super::top_prefix(k)).collect();
        prefixes.sort_unstable();
        prefixes.dedup();
        let have: HashSet<String> = self.list_all(&prefixes)?.into_iter().collect();
        Ok(keys.iter().map(|k| have.contains(k)).collect())
    }

    fn exists(&self, key: &str) -> Result<bool, RemoteError> {
        if !valid_key(key) {
            return Err(self.err(format!("`{key}` is not a valid key")));
        }
        let script = format!(
            "{}; test -f {} || exit {ABSENT}",
            self.cd(false),
            quote(key)
        );
        match self.run(&script)? {
            (Some(0), _, _) => Ok(true),
            (Some(ABSENT), _, _) => Ok(false),
            (code, _, err) => Err(self.failed(&format!("checking {key}"), code, &err)),
        }
    }

    fn get(&self, key: &str, dest: &Path) -> Result<bool, RemoteError> {
        if !valid_key(key) {
            return Err(self.err(format!("`{key}` is not a valid key")));
        }
        let file = std::fs::File::create(dest).map_err(local_at(dest))?;
        let script = format!(
            "{}; test -f {q} || exit {ABSENT}; exec cat {q}",
            self.cd(false),
            q = quote(key)
        );
        let out = self
            .command(&script)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| self.err(format!("cannot run `{}`: {e}", self.command)))?;
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        match out.status.code() {
            Some(0) => Ok(true),
            Some(ABSENT) => Ok(false),
            code => Err(self.failed(&format!("reading {key}"), code, &err)),
        }
    }

    fn put(&self, src: &Path, key: &str) -> Result<(), RemoteError> {
        self.put_many(&[(src.to_path_buf(), key.to_string())])
    }

    fn get_many(&self, keys: &[String], dir: &Path) -> Result<Vec<String>, RemoteError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(k) = keys.iter().find(|k| !valid_key(k)) {
            return Err(self.err(format!("`{k}` is not a valid key")));
        }
        // Names arrive on stdin; only those that exist go into the archive.
        let script = format!(
            "{}; while IFS= read -r f; do if [ -f \"$f\" ]; then printf '%s\\n' \"$f\"; fi; done | tar cf - -T -",
            self.cd(false)
        );
        let mut child = self
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.err(format!("cannot run `{}`: {e}", self.command)))?;
        let names: String = keys.iter().map(|k| format!("{k}\n")).collect();
        let stdin = child.stdin.take();
        let writer = std::thread::spawn(move || {
            if let Some(mut s) = stdin {
                let _ = s.write_all(names.as_bytes());
            }
        });
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || read_all(stderr));
        let wanted: HashSet<&str> = keys.iter().map(String::as_str).collect();
        let mut got = Vec::new();
        let unpacked = match child.stdout.take() {
            Some(out) => unpack(out, dir, &wanted, &mut got),
            None => Err("no stdout".into()),
        };
        let status = child.wait();
        let _ = writer.join();
        let err = err_reader.join().unwrap_or_default();
        let code = status.ok().and_then(|s| s.code());
        match (code, unpacked) {
            (Some(0), Ok(())) => Ok(got),
            (Some(ABSENT), _) => Ok(Vec::new()),
            (Some(0), Err(e)) => Err(self.err(format!("reading the tar stream: {e}"))),
            (code, _) => Err(self.failed("downloading a batch", code, &err)),
        }
    }

    fn put_many(&self, items: &[(PathBuf, String)]) -> Result<(), RemoteError> {
        for batch in items.chunks(PUT_BATCH) {
            self.put_batch(batch)?;
        }
        Ok(())
    }
}

/// Files per put session: one directory's names must fit on one `mv`
/// command line (about 80 bytes each).
const PUT_BATCH: usize = 2000;

impl SshRemote {
    /// One put session: a tar stream in, renames into place.
    fn put_batch(&self, items: &[(PathBuf, String)]) -> Result<(), RemoteError> {
        if items.is_empty() {
            return Ok(());
        }
        if let Some((_, k)) = items
            .iter()
            .find(|(_, k)| !valid_key(k) || !k.contains('/'))
        {
            return Err(self.err(format!(
                "`{k}` is not a valid key (keys live under a prefix such as objects/)"
            )));
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let tmp = format!(".tmp-push-{}-{nanos}", std::process::id());
        // Keys are checked, so directory and file names need no quoting
        // beyond "" and never start with a dot. One `mv` per directory, not
        // per file (forks dominate otherwise); each file is still renamed on
        // its own, atomically. Batches stay far below ARG_MAX.
        let script = format!(
            "{cd}; t={tmp}; mkdir \"$t\" || exit 1; trap 'rm -rf \"$t\"' EXIT; \
             tar xf - -C \"$t\" || exit 1; sync 2>/dev/null; \
             xargs mkdir -p < \"$t/{LIST}\" || exit 1; \
             while IFS= read -r d; do mv -f \"$t/$d\"/* \"$d\"/ || exit 1; done < \"$t/{LIST}\"",
            cd = self.cd(true),
        );
        let mut child = self
            .command(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.err(format!("cannot run `{}`: {e}", self.command)))?;
        let stderr = child.stderr.take();
        let err_reader = std::thread::spawn(move || read_all(stderr));
        let packed = match child.stdin.take() {
            Some(stdin) => pack(stdin, items),
            None => Err(RemoteError::Transfer {
                remote: self.url.clone(),
                message: "no stdin".into(),
            }),
        };
        let status = child.wait();
        let err = err_reader.join().unwrap_or_default();
        let code = status.ok().and_then(|s| s.code());
        match (code, packed) {
            (Some(0), Ok(())) => Ok(()),
            (Some(0), Err(e)) | (_, Err(e @ RemoteError::Local { .. })) => Err(e),
            (code, _) => Err(self.failed(
                &format!("uploading a batch of {} files", items.len()),
                code,
                &err,
            )),
        }
    }
}

fn read_all(r: Option<impl Read>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        let _ = r.read_to_string(&mut s);
    }
    s.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> SshTarget {
        SshTarget::parse(url).ok().flatten().expect(url)
    }

    #[test]
    fn urls_parse() {
        let a = t("ssh://alice@host:2222/srv/remote");
        assert_eq!(
            (a.host.as_str(), a.port, a.path.as_str()),
            ("alice@host", Some(2222), "/srv/remote")
        );
        let b = t("host:data/remote");
        assert_eq!(
            (b.host.as_str(), b.port, b.path.as_str()),
            ("host", None, "data/remote")
        );
        assert_eq!(t("bob@h:/abs").host, "bob@h");
        assert_eq!(t("ssh://h/~/r").path, "~/r");
        assert_eq!(t("ssh://[::1]:22/r").host, "::1");
        for local in ["/mnt/remote", "./a:b", "relative/dir", "file:///x"] {
            assert!(matches!(SshTarget::parse(local), Ok(None)), "{local}");
        }
        assert!(SshTarget::parse("ssh://host").is_err());
        assert!(SshTarget::parse("ssh://host:x/p").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(t("h:~/x y").root_word(), "\"$HOME\"/'x y'");
    }
}
