//! Shared pieces of the proxy tests: an engine on a loopback port, tiny upstream
//! servers written with tokio, and a raw HTTP/1.1 client that sees every byte.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dmsc_proxy::Engine;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "../engine_util/mod.rs"]
mod engine_util;

// Not every test binary uses both.
#[allow(unused_imports)]
pub use engine_util::{dead_address, header_values};

/// Guard against a hung test: generous, never a speed assertion.
pub const HANG: Duration = Duration::from_secs(20);

/// Starts an engine from a JSON config and returns it with its first listener's address.
pub fn start(config: Value) -> (Engine, SocketAddr) {
    let engine = engine_util::start(&config);
    let addr = engine.listeners()[0].1;
    (engine, addr)
}

/// A config with one HTTP listener whose single route (`route`, merged over a
/// catch-all match) goes to cluster `up` at `upstreams`; `cluster` is merged over
/// the cluster defaults used here.
pub fn config(upstreams: &[SocketAddr], route: Value, cluster: Value) -> Value {
    let endpoints: Vec<String> = upstreams.iter().map(ToString::to_string).collect();
    let mut route_obj = json!({ "match": { "path": { "prefix": "/" } }, "cluster": "up" });
    merge(&mut route_obj, route);
    let mut cluster_obj = json!({
        "name": "up",
        "endpoints": endpoints,
        "lb": "round_robin",
        "connect_timeout_ms": 1000,
    });
    merge(&mut cluster_obj, cluster);
    json!({
        "listeners": [{
            "name": "web",
            "listen": "127.0.0.1:0",
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [route_obj] }],
        }],
        "clusters": [cluster_obj],
    })
}

/// Adds cluster `name` with one endpoint to a config.
pub fn add_cluster(config: &mut Value, name: &str, addr: SocketAddr) {
    if let Some(clusters) = config["clusters"].as_array_mut() {
        clusters.push(
            json!({ "name": name, "endpoints": [addr.to_string()], "connect_timeout_ms": 1000 }),
        );
    }
}

/// Shallow merge of object `extra` into `base`.
pub fn merge(base: &mut Value, extra: Value) {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            base.insert(k, v);
        }
    }
}

/// A request as an upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The head, as text.
    pub head: String,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Seen {
    /// Every value of header `name`.
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_values(&self.head, name)
    }
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }
    /// The request line.
    pub fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }
}

/// What an upstream answers to a request.
pub type Handler = Arc<dyn Fn(&Seen) -> Vec<u8> + Send + Sync>;

/// A running test upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests seen, in order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
}

impl Upstream {
    /// Requests seen so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// A loopback upstream that hands every accepted connection to `serve`, each on
/// its own task, for as long as the test runs; returns where it listens.
pub async fn raw_upstream<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// A keep-alive HTTP/1.1 upstream answering every request with `handler`.
pub async fn upstream(handler: Handler) -> Upstream {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let connections = Arc::new(AtomicUsize::new(0));
    let (s, c) = (seen.clone(), connections.clone());
    let addr = raw_upstream(move |mut stream| {
        // Counted on accept, before the connection's task runs.
        c.fetch_add(1, Ordering::SeqCst);
        let (seen, handler) = (s.clone(), handler.clone());
        async move {
            let mut buf = Vec::new();
            while let Some(request) = read_request(&mut stream, &mut buf).await {
                seen.lock().push(request.clone());
                let response = handler(&request);
                if stream.write_all(&response).await.is_err() {
                    break;
                }
                if header_values(&String::from_utf8_lossy(&response), "connection")
                    .iter()
                    .any(|v| v.eq_ignore_ascii_case("close"))
                {
                    break;
                }
            }
        }
    })
    .await;
    Upstream {
        addr,
        seen,
        connections,
    }
}

/// An upstream answering 200 with `body` to everything.
pub async fn ok_upstream(body: &'static str) -> Upstream {
    upstream(Arc::new(move |_| response(200, &[], body.as_bytes()))).await
}

/// A whole response with a Content-Length.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len()).into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// A whole chunked response with the body in chunks of `chunk` bytes.
pub fn chunked_response(status: u16, body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\n\r\n").into_bytes();
    for piece in body.chunks(chunk.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 65536];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// Reads a head through its blank line, removed from `buf`; None at EOF.
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let end = loop {
        if let Some(end) = find_head_end(buf) {
            break end;
        }
        if !fill(stream, buf).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end);
    Some(head)
}

/// Reads `length` bytes, removed from `buf`; None at EOF.
pub async fn read_exact(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    length: usize,
) -> Option<Vec<u8>> {
    while buf.len() < length {
        if !fill(stream, buf).await {
            return None;
        }
    }
    Some(buf.drain(..length).collect())
}

/// Reads one request (head and Content-Length or chunked body); None at EOF.
pub async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Seen> {
    let head = read_head(stream, buf).await?;
    let chunked = header_values(&head, "transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"));
    let length: usize = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let body = if chunked {
        read_chunked(stream, buf).await?
    } else {
        read_exact(stream, buf, length).await?
    };
    Some(Seen { head, body })
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(p) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..p]).into_owned();
            buf.drain(..p + 2);
            return Some(line);
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

/// Decodes a chunked body (and skips trailers).
pub async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            while !read_line(stream, buf).await?.is_empty() {}
            return Some(body);
        }
        let data = read_exact(stream, buf, size + 2).await?;
        body.extend_from_slice(&data[..size]);
    }
}

/// A response as the client got it.
#[derive(Debug, Clone)]
pub struct Got {
    /// Status code.
    pub status: u16,
    /// The head, as text.
    pub head: String,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Got {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        header_values(&self.head, name).into_iter().next()
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response to a request with method `method` (HEAD: no body).
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, method: &str) -> Option<Got> {
    let head = read_head(stream, buf).await?;
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let no_body = method == "HEAD" || status < 200 || status == 204 || status == 304;
    let chunked = header_values(&head, "transfer-encoding")
        .iter()
        .any(|v| v.contains("chunked"));
    let length = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse::<usize>().ok());
    let body = if no_body {
        Vec::new()
    } else if chunked {
        read_chunked(stream, buf).await?
    } else if let Some(length) = length {
        read_exact(stream, buf, length).await?
    } else {
        while fill(stream, buf).await {}
        std::mem::take(buf)
    };
    Some(Got { status, head, body })
}

/// A client connection to the proxy.
pub struct Client {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read past the last response.
    pub buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Self {
        Self {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }
    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }
    /// Reads one response (None: the connection closed first).
    pub async fn response(&mut self, method: &str) -> Option<Got> {
        tokio::time::timeout(HANG, read_response(&mut self.stream, &mut self.buf, method))
            .await
            .expect("response in time")
    }
    /// Sends a request and reads its response.
    pub async fn request(&mut self, bytes: &[u8]) -> Got {
        self.send(bytes).await;
        let method = std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| t.split(' ').next())
            .unwrap_or("GET");
        let method = method.to_owned();
        self.response(&method).await.expect("a response")
    }
    /// True when the proxy closed the connection (EOF with nothing more to read).
    pub async fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(HANG, self.stream.read(&mut byte))
                .await
                .expect("close in time"),
            Ok(0) | Err(_)
        )
    }
}

/// One GET on a fresh connection.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Got {
    let mut client = Client::connect(addr).await;
    let mut request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n");
    for (n, v) in headers {
        request.push_str(&format!("{n}: {v}\r\n"));
    }
    request.push_str("\r\n");
    client.request(request.as_bytes()).await
}
