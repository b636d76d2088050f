//! [`Digests`]: a computed node's output names and content digests, as the
//! lock file, evaluation and the scheduler know them.

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Output name -> content digest, sorted by name, names unique.
///
/// Most nodes have one or two outputs, so this is a sorted vector: a
/// `BTreeMap` would allocate a whole B-tree node (over 500 bytes) per node,
/// twice per node in a no-op `status` of a large pipeline. It behaves as a
/// `BTreeMap<String, String>` where it matters: it serializes as the same
/// JSON object, and a name given twice keeps its last digest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Digests(Vec<(String, String)>);

impl Digests {
    /// No outputs.
    pub fn new() -> Self {
        Digests(Vec::new())
    }

    /// The digest of output `name`.
    pub fn get(&self, name: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    /// Whether there is an output `name`.
    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets the digest of output `name`; returns the one it replaces.
    pub fn insert(&mut self, name: String, digest: String) -> Option<String> {
        // Outputs usually arrive sorted: check the end first.
        if self.0.last().is_none_or(|(k, _)| *k < name) {
            self.0.push((name, digest));
            return None;
        }
        match self.0.binary_search_by(|(k, _)| k.cmp(&name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, digest)),
            Err(i) => {
                self.0.insert(i, (name, digest));
                None
            }
        }
    }

    /// Name and digest of every output, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Output names, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Digests, in name order.
    pub fn values(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(_, v)| v)
    }

    /// Number of outputs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no outputs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Digests {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(iter: I) -> Self {
        let mut d = Digests::new();
        for (k, v) in iter {
            d.insert(k, v);
        }
        d
    }
}

impl<'a> IntoIterator for &'a Digests {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl Serialize for Digests {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Digests {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Digests;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of output names to digests")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Digests, A::Error> {
                let mut d = Digests(Vec::with_capacity(a.size_hint().unwrap_or(1).min(64)));
                while let Some((k, v)) = a.next_entry::<String, String>()? {
                    d.insert(k, v);
                }
                Ok(d)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_as_a_btreemap() {
        let pairs = [
            ("out", "a"),
            ("b", "x"),
            ("out", "c"),
            ("metrics", "m"),
            ("b", "y"),
        ];
        let d: Digests = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(d.iter().collect::<Vec<_>>(), m.iter().collect::<Vec<_>>());
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            serde_json::to_string(&m).unwrap()
        );
        assert_eq!(d.get("out").map(String::as_str), Some("c"));
        assert_eq!(d.get("nope"), None);
        let text = r#"{"z": "1", "a": "2", "z": "3"}"#;
        let back: Digests = serde_json::from_str(text).unwrap();
        let want: BTreeMap<String, String> = serde_json::from_str(text).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            want.iter().collect::<Vec<_>>()
        );
        assert!(serde_json::from_str::<Digests>(r#"{"a": 1}"#).is_err());
    }
}
