//! An instance's params, decoded on first use when they come from the
//! compiled-DAG memo: a no-op `repro status` never looks at them (keys come
//! from each node's [`KeyTemplate`](super::key::KeyTemplate)), and decoding
//! 10,000 JSON objects it does not need would be most of its work.

use super::codec::{Corrupt, Reader};
use serde_json::{Map, Value};
use std::ops::{Deref, Range};
use std::sync::{Arc, OnceLock};

/// Params after interpolation (all of them, semantic or not): a JSON object,
/// which this dereferences to.
pub struct Params {
    decoded: OnceLock<Map<String, Value>>,
    /// Where the object is encoded, until it is decoded.
    encoded: Option<(Arc<Vec<u8>>, Range<usize>)>,
}

impl Params {
    /// Params that are already decoded.
    pub fn new(map: Map<String, Value>) -> Self {
        Params {
            decoded: OnceLock::from(map),
            encoded: None,
        }
    }

    /// Params encoded (by [`super::codec::Writer::map`]) at `range` of
    /// `bytes`, decoded on first use. The compiled-DAG memo checks, when it
    /// writes them, that they decode to what was compiled, and its checksum
    /// keeps them that way.
    pub fn encoded(bytes: Arc<Vec<u8>>, range: Range<usize>) -> Self {
        Params {
            decoded: OnceLock::new(),
            encoded: Some((bytes, range)),
        }
    }

    /// Decodes an encoded object (what [`Params::encoded`] will do on first use).
    pub fn check(bytes: &[u8]) -> Result<Map<String, Value>, Corrupt> {
        let mut r = Reader::new(bytes);
        let map = r.map()?;
        if !r.at_end() {
            return Err(Corrupt("trailing bytes after params"));
        }
        Ok(map)
    }

    /// The params as an owned JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        (**self).clone()
    }
}

impl Deref for Params {
    type Target = Map<String, Value>;

    fn deref(&self) -> &Map<String, Value> {
        self.decoded.get_or_init(|| match &self.encoded {
            Some((bytes, range)) => bytes
                .get(range.clone())
                .ok_or(Corrupt("params out of range"))
                .and_then(Params::check)
                // The memo writer verified that these bytes decode, and its
                // checksum matched on load: failing here is a bug, not a
                // corrupt file.
                .unwrap_or_else(|e| panic!("compiled-DAG memo: params do not decode: {e}")),
            None => Map::new(),
        })
    }
}

impl Clone for Params {
    fn clone(&self) -> Self {
        match (self.decoded.get(), &self.encoded) {
            (None, Some((bytes, range))) => Params::encoded(bytes.clone(), range.clone()),
            _ => Params::new(self.to_map()),
        }
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl From<Map<String, Value>> for Params {
    fn from(map: Map<String, Value>) -> Self {
        Params::new(map)
    }
}
