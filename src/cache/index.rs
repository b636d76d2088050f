//! A listing of the record directory, read once: for a pass over a large
//! pipeline, one `readdir` instead of a `stat` per node.

use super::Cache;
use super::fasthash::FastSet;
use std::collections::HashSet;

/// The records in `records/` at the moment they were listed.
#[derive(Debug, Default)]
pub struct RecordIndex {
    /// Regular files named `<64 lowercase hex digits>.json`, by those digits.
    files: FastSet<[u8; 32]>,
    /// Any other entry that may be a record (other names, symlinks, entries
    /// of unknown type), by file name without `.json`: looked up for real.
    other: HashSet<String>,
}

impl RecordIndex {
    /// Lists the record directory of `cache`.
    pub fn read(cache: &Cache) -> std::io::Result<RecordIndex> {
        let mut index = RecordIndex::default();
        let entries = match std::fs::read_dir(cache.dir.join("records")) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(index),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue; // not `<key>.json`
            };
            match (entry.file_type(), hex32(stem)) {
                (Ok(t), _) if t.is_dir() => {}
                (Ok(t), Some(bytes)) if t.is_file() => {
                    index.files.insert(bytes);
                }
                _ => {
                    index.other.insert(stem.to_string());
                }
            }
        }
        Ok(index)
    }

    /// Whether a record for `key` was there when listed (what
    /// [`Cache::has_record`] would have said then).
    pub fn contains(&self, cache: &Cache, key: &str) -> bool {
        hex32(key).is_some_and(|k| self.files.contains(&k))
            || (!self.other.is_empty() && self.other.contains(key) && cache.has_record(key))
    }
}

/// The 32 bytes that 64 lowercase hex digits spell.
fn hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (NIBBLE[pair[0] as usize], NIBBLE[pair[1] as usize]);
        bad |= (hi | lo) & 0x10;
        *o = hi << 4 | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// The value of each lowercase hex digit; 0x10 marks any other byte.
const NIBBLE: [u8; 256] = {
    let mut t = [0x10u8; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};
