//! The binary encoding of the compiled-DAG memo ([`super::memo`]): a
//! [`Writer`] and a [`Reader`] for its primitives (the DAG's layout is in
//! [`super::serial`]).
//!
//! Integers as LEB128 varints (floats as their 8 bits, little-endian),
//! length-prefixed UTF-8 strings, JSON values as a tagged tree (numbers keep their exact serde_json form: unsigned, negative
//! or float). Decoding checks every length and index against what is there
//! and fails with [`Corrupt`] instead of panicking; the memo adds a checksum
//! on top, so a flipped bit is caught before decoding starts.

use serde_json::{Map, Number, Value};
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// Deepest JSON nesting the decoder follows (YAML params are far shallower).
const MAX_DEPTH: usize = 256;

/// Bytes that do not decode to a DAG.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corrupt compiled-DAG memo: {0}")]
pub struct Corrupt(pub &'static str);

/// Appends values to a byte buffer.
#[derive(Debug, Default)]
pub struct Writer {
    /// What was written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    /// An unsigned integer as a LEB128 varint (also every length).
    pub fn u64(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// A length or an index.
    pub fn len(&mut self, v: usize) {
        self.u64(v as u64);
    }
    /// A float, bit for bit.
    pub fn f64(&mut self, v: f64) {
        self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    /// A boolean.
    pub fn bool(&mut self, v: bool) {
        self.u8(u8::from(v));
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self, v: &[u8]) {
        self.len(v.len());
        self.buf.extend_from_slice(v);
    }
    /// A string.
    pub fn str(&mut self, v: &str) {
        self.bytes(v.as_bytes());
    }
    /// An optional string.
    pub fn opt_str(&mut self, v: Option<&str>) {
        match v {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
        }
    }
    /// A path (its raw bytes).
    pub fn path(&mut self, v: &Path) {
        self.bytes(v.as_os_str().as_bytes());
    }
    /// A JSON value.
    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.u8(0),
            Value::Bool(false) => self.u8(1),
            Value::Bool(true) => self.u8(2),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    self.u8(3);
                    self.u64(u);
                } else if let Some(i) = n.as_i64() {
                    self.u8(4);
                    self.u64(i as u64);
                } else {
                    self.u8(5);
                    self.f64(n.as_f64().unwrap_or(f64::NAN));
                }
            }
            Value::String(s) => {
                self.u8(6);
                self.str(s);
            }
            Value::Array(items) => {
                self.u8(7);
                self.len(items.len());
                items.iter().for_each(|x| self.value(x));
            }
            Value::Object(m) => {
                self.u8(8);
                self.map(m);
            }
        }
    }
    /// A JSON object.
    pub fn map(&mut self, m: &Map<String, Value>) {
        self.len(m.len());
        for (k, v) in m {
            self.str(k);
            self.value(v);
        }
    }
}

/// Reads values back, checking every length against what is left.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }
    /// How many bytes were read.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Whether everything was read.
    pub fn at_end(&self) -> bool {
        self.pos == self.buf.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Corrupt> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(Corrupt("truncated"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Corrupt> {
        let b = *self.buf.get(self.pos).ok_or(Corrupt("truncated"))?;
        self.pos += 1;
        Ok(b)
    }
    /// A LEB128 varint.
    pub fn u64(&mut self) -> Result<u64, Corrupt> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(Corrupt("varint too long"))
    }
    /// A count of items that take at least one byte each (so it is bounded
    /// by what is left: a corrupt length cannot make a huge allocation).
    pub fn count(&mut self) -> Result<usize, Corrupt> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= self.buf.len() - self.pos)
            .ok_or(Corrupt("length past the end"))
    }
    /// An index below `bound`.
    pub fn index(&mut self, bound: usize) -> Result<usize, Corrupt> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n < bound)
            .ok_or(Corrupt("index out of range"))
    }
    /// A float.
    pub fn f64(&mut self) -> Result<f64, Corrupt> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_bits(u64::from_le_bytes(a)))
    }
    /// A boolean.
    pub fn bool(&mut self) -> Result<bool, Corrupt> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Corrupt("bad boolean")),
        }
    }
    /// Length-prefixed bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], Corrupt> {
        let n = self.count()?;
        self.take(n)
    }
    /// A string, borrowed from the buffer.
    pub fn str_ref(&mut self) -> Result<&'a str, Corrupt> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Corrupt("bad UTF-8"))
    }
    /// A string.
    pub fn str(&mut self) -> Result<String, Corrupt> {
        self.str_ref().map(str::to_string)
    }
    /// An optional string.
    pub fn opt_str(&mut self) -> Result<Option<String>, Corrupt> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(Corrupt("bad option")),
        }
    }
    /// A path.
    pub fn path(&mut self) -> Result<PathBuf, Corrupt> {
        Ok(PathBuf::from(OsString::from_vec(self.bytes()?.to_vec())))
    }
    /// A JSON value.
    pub fn value(&mut self) -> Result<Value, Corrupt> {
        self.value_at(0)
    }
    fn value_at(&mut self, depth: usize) -> Result<Value, Corrupt> {
        if depth > MAX_DEPTH {
            return Err(Corrupt("nested too deep"));
        }
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(false),
            2 => Value::Bool(true),
            3 => Value::Number(self.u64()?.into()),
            4 => {
                let i = self.u64()? as i64;
                if i >= 0 {
                    return Err(Corrupt("negative integer tag on a non-negative"));
                }
                Value::Number(i.into())
            }
            5 => {
                Value::Number(Number::from_f64(self.f64()?).ok_or(Corrupt("not a finite number"))?)
            }
            6 => Value::String(self.str()?),
            7 => {
                let n = self.count()?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(depth + 1)?);
                }
                Value::Array(items)
            }
            8 => Value::Object(self.map_at(depth + 1)?),
            _ => return Err(Corrupt("bad value tag")),
        })
    }
    /// A JSON object.
    pub fn map(&mut self) -> Result<Map<String, Value>, Corrupt> {
        self.map_at(0)
    }
    fn map_at(&mut self, depth: usize) -> Result<Map<String, Value>, Corrupt> {
        let n = self.count()?;
        let mut m = Map::new();
        for _ in 0..n {
            let k = self.str()?;
            let v = self.value_at(depth)?;
            m.insert(k, v);
        }
        Ok(m)
    }
}
