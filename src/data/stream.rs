//! Streams the elements of a top-level JSON array (`[ {...}, {...}, ... ]`)
//! one at a time from a reader, without holding the file in memory.
//!
//! The scanner finds element boundaries itself (bracket depth, strings and
//! escapes respected) and hands each complete element's bytes to the caller
//! with the line and byte offset where it starts, so the caller's parse
//! errors can be located in the file. Elements must be objects or arrays.
//!
//! A file cut off inside an element (as the ShareGPT wheel's is) is not an
//! error: iteration ends, and [`ArrayStream::end`] describes the partial
//! element that was dropped ([`Partial`]: its line, offset, size and first
//! bytes). A file that ends between elements, or after `[`, reports
//! `closed: false` with no partial element. Bytes that cannot appear in a
//! JSON array (outside elements) are errors naming the line.

use super::DataError;
use std::io::BufRead;

/// One complete element.
#[derive(Debug, Clone)]
pub struct Element {
    /// Its bytes, from the opening `{`/`[` to the matching closer.
    pub bytes: Vec<u8>,
    /// 1-based line of its first byte.
    pub line: usize,
    /// Byte offset of its first byte.
    pub offset: u64,
}

/// The element a truncated file ends inside.
#[derive(Debug, Clone, PartialEq)]
pub struct Partial {
    /// 1-based line where it starts.
    pub line: usize,
    /// Byte offset where it starts.
    pub offset: u64,
    /// Bytes of it present in the file.
    pub bytes: u64,
    /// Its first bytes (at most [`HEAD`]), to recover an id for reports.
    pub head: Vec<u8>,
}

/// How many leading bytes of a partial element are kept in [`Partial::head`].
pub const HEAD: usize = 4096;

/// How the array ended.
#[derive(Debug, Clone, PartialEq)]
pub struct End {
    /// The closing `]` was seen (only whitespace may follow it).
    pub closed: bool,
    /// The element the file was cut inside, if any.
    pub partial: Option<Partial>,
    /// Bytes read in total.
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before `[`.
    Start,
    /// After `[`: an element or `]`.
    First,
    /// After `,`: an element.
    Expect,
    /// Inside an element.
    In,
    /// After an element: `,` or `]`.
    After,
    /// After `]`.
    Closed,
}

/// The streaming scanner; iterate it for elements, then call [`ArrayStream::end`].
pub struct ArrayStream<R> {
    reader: R,
    sc: Scanner,
}

/// The scanner's state (apart from the reader, so both can be borrowed).
struct Scanner {
    file: String,
    state: State,
    depth: usize,
    in_str: bool,
    esc: bool,
    line: usize,
    offset: u64,
    cur: Vec<u8>,
    cur_line: usize,
    cur_offset: u64,
    end: Option<End>,
    failed: bool,
}

impl<R: BufRead> ArrayStream<R> {
    /// A scanner over `reader`; `file` names it in errors.
    pub fn new(reader: R, file: &str) -> Self {
        ArrayStream {
            reader,
            sc: Scanner::new(file),
        }
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.sc.offset
    }

    /// How the array ended; `None` until iteration has returned `None`.
    pub fn end(&self) -> Option<&End> {
        self.sc.end.as_ref()
    }
}

impl Scanner {
    fn new(file: &str) -> Self {
        Scanner {
            file: file.to_string(),
            state: State::Start,
            depth: 0,
            in_str: false,
            esc: false,
            line: 1,
            offset: 0,
            cur: Vec::new(),
            cur_line: 0,
            cur_offset: 0,
            end: None,
            failed: false,
        }
    }

    fn unexpected(&self, b: u8, i: usize, want: &str) -> DataError {
        DataError::at(
            &self.file,
            self.line,
            format!(
                "expected {want}, found `{}` at byte {}",
                (b as char).escape_default(),
                self.offset + i as u64
            ),
        )
    }

    fn finish(&mut self) -> Option<Result<Element, DataError>> {
        let partial = match self.state {
            State::Start => {
                self.failed = true;
                return Some(Err(DataError::file(
                    &self.file,
                    "not a JSON array: the file is empty or holds only whitespace",
                )));
            }
            State::In => Some(Partial {
                line: self.cur_line,
                offset: self.cur_offset,
                bytes: self.cur.len() as u64,
                head: self.cur[..self.cur.len().min(HEAD)].to_vec(),
            }),
            _ => None,
        };
        self.cur = Vec::new();
        self.end = Some(End {
            closed: self.state == State::Closed,
            partial,
            bytes_read: self.offset,
        });
        None
    }

    /// Scans `buf` from the state; returns (bytes consumed, element done).
    fn scan(&mut self, buf: &[u8]) -> Result<(usize, bool), DataError> {
        let mut i = 0;
        while i < buf.len() {
            if self.state == State::In {
                let start = i;
                while i < buf.len() {
                    if self.in_str {
                        if self.esc {
                            self.esc = false;
                            i += 1;
                            continue;
                        }
                        match memchr::memchr3(b'"', b'\\', b'\n', &buf[i..]) {
                            None => i = buf.len(),
                            Some(k) => {
                                i += k;
                                match buf[i] {
                                    b'"' => self.in_str = false,
                                    b'\\' => self.esc = true,
                                    _ => self.line += 1,
                                }
                                i += 1;
                            }
                        }
                        continue;
                    }
                    let b = buf[i];
                    i += 1;
                    match b {
                        b'"' => self.in_str = true,
                        b'{' | b'[' => self.depth += 1,
                        b'}' | b']' => {
                            self.depth -= 1;
                            if self.depth == 0 {
                                self.cur.extend_from_slice(&buf[start..i]);
                                self.state = State::After;
                                return Ok((i, true));
                            }
                        }
                        b'\n' => self.line += 1,
                        _ => {}
                    }
                }
                self.cur.extend_from_slice(&buf[start..i]);
                return Ok((i, false));
            }
            let b = buf[i];
            match (self.state, b) {
                (_, b' ' | b'\t' | b'\r') => {}
                (_, b'\n') => self.line += 1,
                (State::Start, b'[') => self.state = State::First,
                (State::Start, _) => return Err(self.unexpected(b, i, "`[` (a JSON array)")),
                (State::First | State::Expect, b'{' | b'[') => {
                    self.state = State::In;
                    self.depth = 1;
                    self.cur.clear();
                    self.cur.push(b);
                    self.cur_line = self.line;
                    self.cur_offset = self.offset + i as u64;
                    i += 1;
                    continue;
                }
                (State::First | State::After, b']') => self.state = State::Closed,
                (State::First | State::Expect, _) => {
                    return Err(self.unexpected(b, i, "an object or array element"));
                }
                (State::After, b',') => self.state = State::Expect,
                (State::After, _) => return Err(self.unexpected(b, i, "`,` or `]`")),
                (State::Closed, _) => return Err(self.unexpected(b, i, "nothing after `]`")),
                (State::In, _) => unreachable!("handled above"),
            }
            i += 1;
        }
        Ok((i, false))
    }
}

impl<R: BufRead> Iterator for ArrayStream<R> {
    type Item = Result<Element, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let sc = &mut self.sc;
        if sc.failed || sc.end.is_some() {
            return None;
        }
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    sc.failed = true;
                    return Some(Err(DataError::file(&sc.file, format!("read error: {e}"))));
                }
            };
            if buf.is_empty() {
                return sc.finish();
            }
            match sc.scan(buf) {
                Ok((used, done)) => {
                    self.reader.consume(used);
                    sc.offset += used as u64;
                    if done {
                        return Some(Ok(Element {
                            bytes: std::mem::take(&mut sc.cur),
                            line: sc.cur_line,
                            offset: sc.cur_offset,
                        }));
                    }
                }
                Err(e) => {
                    sc.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Run = (Vec<(String, usize, u64)>, Option<End>, Option<DataError>);

    fn run(text: &str, cap: usize) -> Run {
        let r = std::io::BufReader::with_capacity(cap, text.as_bytes());
        let mut s = ArrayStream::new(r, "t.json");
        let mut els = Vec::new();
        let mut err = None;
        for e in s.by_ref() {
            match e {
                Ok(e) => els.push((String::from_utf8(e.bytes).unwrap(), e.line, e.offset)),
                Err(e) => err = Some(e),
            }
        }
        (els, s.end().cloned(), err)
    }

    #[test]
    fn elements_with_tricky_strings_at_any_chunk_size() {
        let text = "[\n {\"a\": \"x}]\\\"{\"},\n  {\"b\": [1, {\"c\": \"\\\\\"}]}\n]\n";
        for cap in [1, 2, 3, 7, 64] {
            let (els, end, err) = run(text, cap);
            assert!(err.is_none(), "{err:?}");
            assert_eq!(els.len(), 2);
            assert_eq!(els[0].0, "{\"a\": \"x}]\\\"{\"}");
            assert_eq!((els[0].1, els[0].2), (2, 3));
            assert_eq!(els[1].0, "{\"b\": [1, {\"c\": \"\\\\\"}]}");
            assert_eq!(els[1].1, 3);
            let end = end.unwrap();
            assert!(end.closed && end.partial.is_none());
        }
    }

    #[test]
    fn truncation_inside_an_element_is_reported() {
        let text = "[{\"id\": 1},\n{\"id\": \"cut";
        let (els, end, err) = run(text, 4);
        assert!(err.is_none());
        assert_eq!(els.len(), 1);
        let end = end.unwrap();
        assert!(!end.closed);
        let p = end.partial.unwrap();
        assert_eq!((p.line, p.offset, p.bytes), (2, 12, 11));
        assert_eq!(p.head, b"{\"id\": \"cut");
    }

    #[test]
    fn garbage_is_located() {
        let (_, _, err) = run("[{}\n x]", 8);
        let e = err.unwrap();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("`,` or `]`"), "{e}");
        let (_, _, err) = run("  ", 8);
        assert!(err.unwrap().message.contains("not a JSON array"));
        let (_, _, err) = run("[1]", 8);
        assert!(err.unwrap().message.contains("object or array"));
        let (els, end, err) = run("[{},", 8);
        assert!(err.is_none() && els.len() == 1);
        let end = end.unwrap();
        assert!(!end.closed && end.partial.is_none());
    }
}
