//! A mock OpenAI-compatible chat server for the API tests: a std
//! `TcpListener` on 127.0.0.1:0 and one thread per connection speaking just
//! enough HTTP/1.1 (Content-Length bodies, keep-alive). A responder closure
//! decides each answer from the request number and body; every request is
//! counted and kept.

use repro::op::{OpError, RunResult};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One answer: status, body, extra headers, delay before answering.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    pub delay: Duration,
}

impl Reply {
    /// A 200 chat completion whose content is `content`.
    pub fn ok(content: &str) -> Reply {
        Reply::status(200, &completion(content))
    }
    /// Any status with a body.
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_string(),
            headers: Vec::new(),
            delay: Duration::ZERO,
        }
    }
}

/// A chat-completion response body.
pub fn completion(content: &str) -> String {
    json!({
        "id": "chatcmpl-mock", "object": "chat.completion", "model": "mock",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    })
    .to_string()
}

/// A received request.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

type Responder = dyn Fn(usize, &Value) -> Reply + Send + Sync;

/// A running mock server; dropping it stops it.
pub struct Mock {
    pub base: String,
    count: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    /// Starts a server answering with `responder(request_index, body)`.
    pub fn start(responder: impl Fn(usize, &Value) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let count = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let responder: Arc<Responder> = Arc::new(responder);
        let (c, r, s) = (count.clone(), received.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (c, r, s, resp) = (c.clone(), r.clone(), s.clone(), responder.clone());
                std::thread::spawn(move || serve(conn, &c, &r, &s, &*resp));
            }
        });
        Mock {
            base: format!("http://{addr}/v1"),
            count,
            received,
            stop,
            addr,
            handle: Some(handle),
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(
    conn: TcpStream,
    count: &AtomicUsize,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    responder: &Responder,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut writer = match conn.try_clone() {
        Ok(w) => w,
        Err(_) => return,
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 || stop.load(Ordering::SeqCst) {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let (mut len, mut auth) = (0usize, None);
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = Some(v.trim().to_string()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let i = count.fetch_add(1, Ordering::SeqCst);
        received.lock().expect("lock").push(Received {
            path,
            authorization: auth,
            body: body.clone(),
        });
        let reply = responder(i, &body);
        std::thread::sleep(reply.delay);
        let mut head = format!(
            "HTTP/1.1 {} Mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            reply.status,
            reply.body.len()
        );
        for (k, v) in &reply.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        if writer.write_all(head.as_bytes()).is_err()
            || writer.write_all(reply.body.as_bytes()).is_err()
        {
            return;
        }
        let _ = writer.flush();
    }
}

// ---- Running ops in a work directory ----

/// The fake API key of the tests (it must never appear in a file).
pub const KEY: &str = "sk-test-SECRET-4f9c2a";

pub fn fixture(rel: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The op environment: the mock (or no API), the key, and the store.
pub fn env(base: Option<&str>, store: &Path) -> Vec<(String, String)> {
    [
        ("REPRO_API_BASE", base.unwrap_or("")),
        ("OPENAI_BASE_URL", ""),
        ("REPRO_API_KEY", KEY),
        ("OPENAI_API_KEY", ""),
        ("REPRO_API_OFFLINE", ""),
        (repro::api::STORE_ENV, store.to_str().unwrap()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Runs op `name` in a fresh work dir with `inputs` (name, content).
pub fn run(
    name: &str,
    params: Value,
    inputs: &[(&str, String)],
    env: &[(String, String)],
) -> (Result<RunResult, OpError>, tempfile::TempDir) {
    let mut run = super::OpRun::new(name).params(params);
    for (n, text) in inputs {
        run = run.input_text(n, text);
    }
    for (k, v) in env {
        run = run.env(k, v);
    }
    run.run().into_parts()
}

pub fn read(dir: &tempfile::TempDir, rel: &str) -> String {
    std::fs::read_to_string(dir.path().join(rel)).unwrap()
}

pub fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

pub fn assert_no_key(dir: &Path) {
    for f in files(dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(KEY),
            "the API key is in {}",
            f.display()
        );
    }
}
