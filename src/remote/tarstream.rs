//! The tar streams of the SSH remote: a batch put is one archive written to
//! the remote `tar xf -`; a batch get reads the remote `tar cf -`.

use super::{RemoteError, local_at};
use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Name, inside a pushed archive, of the list of directories whose files
/// move into place. It comes last: a cut-off stream moves nothing.
pub const LIST: &str = ".repro-dirs";

/// Writes `items` as a tar stream (plus the directory list) to `to`: mode 0644,
/// the current time, no owner (the remote user owns what it extracts).
pub fn pack(to: impl Write, items: &[(PathBuf, String)]) -> Result<(), RemoteError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = |size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(now);
        h.set_entry_type(tar::EntryType::Regular);
        h
    };
    let mut b = tar::Builder::new(to);
    let broken = |e: std::io::Error| RemoteError::Transfer {
        remote: "ssh".into(),
        message: format!("writing the tar stream: {e}"),
    };
    let mut sorted: Vec<&(PathBuf, String)> = items.iter().collect();
    sorted.sort_by(|a, b| a.1.cmp(&b.1));
    for (src, key) in &sorted {
        let f = std::fs::File::open(src).map_err(local_at(src))?;
        let len = f.metadata().map_err(local_at(src))?.len();
        // `take`: a file that grows meanwhile cannot overrun its header.
        b.append_data(&mut header(len), key, std::io::Read::take(f, len))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::BrokenPipe => broken(e),
                _ => RemoteError::Local {
                    path: src.clone(),
                    source: e,
                },
            })?;
    }
    let dirs: std::collections::BTreeSet<&str> = sorted
        .iter()
        .filter_map(|(_, k)| k.rsplit_once('/').map(|(d, _)| d))
        .collect();
    let list: String = dirs.iter().map(|d| format!("{d}\n")).collect();
    b.append_data(&mut header(list.len() as u64), LIST, list.as_bytes())
        .map_err(broken)?;
    b.into_inner().and_then(|mut w| w.flush()).map_err(broken)
}

/// Reads a tar stream, writing each wanted regular file to `dir/<key>`.
pub fn unpack(
    from: impl Read,
    dir: &Path,
    wanted: &HashSet<&str>,
    got: &mut Vec<String>,
) -> Result<(), String> {
    let mut a = tar::Archive::new(from);
    for e in a.entries().map_err(|e| e.to_string())? {
        let mut e = e.map_err(|e| e.to_string())?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e.path().map_err(|e| e.to_string())?;
        let key = name.to_string_lossy().trim_start_matches("./").to_string();
        if !wanted.contains(key.as_str()) {
            continue;
        }
        let dest = dir.join(&key);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut f = std::fs::File::create(&dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        std::io::copy(&mut e, &mut f).map_err(|e| format!("{}: {e}", dest.display()))?;
        got.push(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_then_unpack_round_trips_wanted_keys() {
        let t = tempfile::tempdir().expect("tempdir");
        let a = t.path().join("a");
        std::fs::write(&a, b"alpha").expect("write");
        let items = vec![
            (a.clone(), "objects/ab/cd".to_string()),
            (a, "records/k.json".to_string()),
        ];
        let mut buf = Vec::new();
        pack(&mut buf, &items).expect("pack");
        let wanted: HashSet<&str> = ["objects/ab/cd", LIST].into_iter().collect();
        let mut got = Vec::new();
        unpack(&buf[..], &t.path().join("out"), &wanted, &mut got).expect("unpack");
        assert_eq!(got, vec!["objects/ab/cd".to_string(), LIST.to_string()]);
        let dirs = std::fs::read_to_string(t.path().join("out").join(LIST)).expect("list");
        assert_eq!(dirs, "objects/ab\nrecords\n");
        // A cut-off stream is an error, not a short success.
        let mut got = Vec::new();
        assert!(unpack(&buf[..700], &t.path().join("cut"), &wanted, &mut got).is_err());
    }
}
