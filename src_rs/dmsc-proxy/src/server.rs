//! Per-connection HTTP/1.1 proxying: keep-alive, pipelining, streaming bodies,
//! 100-continue, upgrades, retries, mirroring, faults, deadlines, limits.
//!
//! One task per downstream connection, no task per request: the connection
//! keeps its read and write buffers for its whole life, so a request costs the
//! parsed head and nothing else on the heap. Bytes read past one message are
//! the start of the next (pipelining); responses to pipelined requests are
//! written together.

mod forward;
mod mirror;
mod relay;
mod respond;
mod upstream_head;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{DownstreamLimits, RateLimitKey};
use crate::engine::{Shared, Snapshot};
use crate::http1::{self, BodyFraming, ChunkedScanner, Head, ParseError, RequestHead, Version};
use crate::route::{Route, RouteAction, StaticResponse};
use crate::stats::ListenerStats;

use respond::ConnHeader;

/// Request header carrying the caller's remaining time budget in milliseconds; the
/// proxy forwards it reduced by the time spent, and answers 504 once it is spent.
pub const DEADLINE_HEADER: &str = "x-dmsc-deadline-ms";

/// Response header naming why the proxy itself answered (rate-limit, bulkhead-full,
/// circuit-open, no-healthy-host, no-route, deadline-exceeded, fault-abort,
/// upstream-timeout, upstream-reset, upstream-connect-failure, bad-upstream-response).
pub const REASON_HEADER: &str = "x-dmsc-reason";

/// First size of the per-connection read buffers; the downstream one grows up to
/// the listener's head limit when a head needs it.
const READ_BUF: usize = 16 * 1024;
/// Bytes queued for the client before they are written even mid-response.
const FLUSH_AT: usize = 64 * 1024;
/// Largest trailer section accepted in a chunked body.
const MAX_TRAILER: usize = 16 * 1024;
/// Most request body bytes read and thrown away to keep a connection usable
/// after the proxy answered without forwarding the body.
const MAX_DISCARD: u64 = 256 * 1024;

/// Serves one downstream HTTP connection accepted on listener `listener`.
pub async fn serve_http(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
) {
    // The accept loop set TCP_NODELAY and counts the connection (cx_total, cx_active).
    let mut conn = Conn::new(stream, peer);
    let mut snap = shared.snapshot();
    let Some(runtime) = snap.listener(&listener) else {
        return;
    };
    let stats = runtime.stats.clone();
    // Limits for reading the next head: those of the snapshot of the last request.
    let mut limits = runtime.limits.clone();
    loop {
        let head = match conn.read_head(&limits, &stats, &shared).await {
            HeadRead::Head(head) => head,
            HeadRead::Closed => break,
            HeadRead::Malformed(e) => {
                stats.rq_malformed.inc();
                stats.record_status(400);
                conn.cout.clear();
                respond::local(
                    &mut conn.cout,
                    400,
                    e.reason(),
                    &[],
                    ConnHeader::Close,
                    false,
                );
                let _ = conn.flush().await;
                break;
            }
            HeadRead::HeaderTimeout { partial } => {
                stats.header_timeouts.inc();
                if partial {
                    stats.record_status(408);
                    respond::local(
                        &mut conn.cout,
                        408,
                        "header-timeout",
                        &[],
                        ConnHeader::Close,
                        false,
                    );
                    let _ = conn.flush().await;
                }
                break;
            }
            HeadRead::IdleTimeout => {
                stats.idle_timeouts.inc();
                break;
            }
        };
        // The snapshot current when the request arrived serves it to its end.
        snap = shared.snapshot();
        let Some(runtime) = snap.listener(&listener) else {
            break;
        };
        let _inflight = shared.request_started();
        let draining = shared.is_draining();
        let next = handle(
            &mut conn,
            head,
            &snap,
            runtime.routes.as_ref(),
            &runtime.limits,
            &stats,
            draining,
        )
        .await;
        stats.bytes_in.inc_by(std::mem::take(&mut conn.bytes_in));
        stats.bytes_out.inc_by(std::mem::take(&mut conn.bytes_out));
        if next == Next::Close || shared.is_draining() {
            break;
        }
        limits = runtime.limits.clone();
    }
    let _ = conn.flush().await;
    let _ = conn.stream.shutdown().await;
    stats.bytes_in.inc_by(std::mem::take(&mut conn.bytes_in));
    stats.bytes_out.inc_by(std::mem::take(&mut conn.bytes_out));
}

/// Whether the client connection carries on after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close the connection.
    Close,
}

/// How reading a request head ended.
enum HeadRead {
    Head(RequestHead),
    Closed,
    Malformed(ParseError),
    HeaderTimeout { partial: bool },
    IdleTimeout,
}

/// What is left of a message body (a request's from the client, or a response's
/// from the upstream), as its framing delimits it.
#[derive(Debug, Clone)]
pub(crate) enum BodyLeft {
    /// Nothing (left).
    Done,
    /// This many bytes.
    Length(u64),
    /// A chunked body being validated.
    Chunked(ChunkedScanner),
    /// Everything until the peer closes (responses only).
    Close,
}

impl BodyLeft {
    pub(crate) fn of(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::Empty | BodyFraming::ContentLength(0) => Self::Done,
            BodyFraming::ContentLength(n) => Self::Length(n),
            BodyFraming::Chunked => Self::Chunked(ChunkedScanner::new(MAX_TRAILER)),
            BodyFraming::CloseDelimited => Self::Close,
        }
    }

    pub(crate) fn is_done(&self) -> bool {
        matches!(self, Self::Done)
    }

    /// Takes the body bytes at the start of `input`: how many belong to this body
    /// (what follows is the next message). Becomes `Done` when the body ends.
    pub(crate) fn take(&mut self, input: &[u8]) -> Result<usize, ParseError> {
        self.take_chunk_data(input, |_| {})
    }

    /// Like [`BodyLeft::take`]; a chunked body also hands the data of its chunks
    /// (without the framing) to `on_data`.
    pub(crate) fn take_chunk_data(
        &mut self,
        input: &[u8],
        on_data: impl FnMut(&[u8]),
    ) -> Result<usize, ParseError> {
        match self {
            Self::Done => Ok(0),
            Self::Length(left) => {
                let n = (*left).min(input.len() as u64);
                *left -= n;
                if *left == 0 {
                    *self = Self::Done;
                }
                // `n <= input.len()`.
                Ok(n as usize)
            }
            Self::Chunked(scanner) => {
                let scan = scanner.scan_data(input, on_data)?;
                if scan.complete {
                    *self = Self::Done;
                }
                Ok(scan.consumed)
            }
            Self::Close => Ok(input.len()),
        }
    }
}

/// A failure reading the request body from the client.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// The client closed, reset or stalled.
    Client,
    /// Bad chunked framing.
    Malformed(ParseError),
}

/// One downstream connection and its reusable buffers.
pub(crate) struct Conn {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    /// The client's address as text (X-Forwarded-For).
    pub(crate) peer_text: Box<[u8]>,
    /// Bytes read from the client: `buf[pos..end]` are not consumed yet.
    pub(crate) buf: Vec<u8>,
    pub(crate) pos: usize,
    pub(crate) end: usize,
    /// Bytes queued for the client.
    pub(crate) cout: Vec<u8>,
    /// Bytes queued for the upstream.
    pub(crate) uout: Vec<u8>,
    /// Bytes read from the upstream: `ubuf[upos..uend]` are not consumed yet.
    pub(crate) ubuf: Vec<u8>,
    pub(crate) upos: usize,
    pub(crate) uend: usize,
    /// The request body kept for replay (retries, mirrors).
    pub(crate) body: Vec<u8>,
    /// Scratch space for composed header values.
    pub(crate) scratch: Vec<u8>,
    /// Rewritten request target.
    pub(crate) target: String,
    /// Idle timeout of the listener (client reads and writes mid-request).
    pub(crate) io_timeout: Option<Duration>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Conn {
    fn new(stream: TcpStream, peer: SocketAddr) -> Self {
        Self {
            stream,
            peer,
            peer_text: respond::ip_text(peer.ip()),
            buf: vec![0; READ_BUF],
            pos: 0,
            end: 0,
            cout: Vec::with_capacity(4096),
            uout: Vec::with_capacity(4096),
            ubuf: Vec::new(),
            upos: 0,
            uend: 0,
            body: Vec::new(),
            scratch: Vec::new(),
            target: String::new(),
            io_timeout: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Writes out everything queued for the client.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if self.cout.is_empty() {
            return Ok(());
        }
        let r = with_timeout(self.io_timeout, self.stream.write_all(&self.cout)).await;
        self.bytes_out += self.cout.len() as u64;
        self.cout.clear();
        match r {
            Some(r) => r,
            None => Err(io::ErrorKind::TimedOut.into()),
        }
    }

    /// Makes room at the end of the read buffer: moves unconsumed bytes to the
    /// front, and grows the buffer when it is full of them (up to `max`).
    fn make_room(&mut self, max: usize) {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.end < self.buf.len() {
            return;
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        } else if self.buf.len() < max {
            let size = (self.buf.len() * 2).min(max.max(READ_BUF));
            self.buf.resize(size, 0);
        }
    }

    /// Reads more client bytes; 0 means the client closed (or the buffer is full).
    async fn fill(&mut self, timeout: Option<Duration>) -> Result<usize, BodyError> {
        self.flush().await.map_err(|_| BodyError::Client)?;
        self.make_room(READ_BUF);
        if self.end == self.buf.len() {
            return Ok(0);
        }
        let read = self.stream.read(&mut self.buf[self.end..]);
        match with_timeout(timeout, read).await {
            Some(Ok(n)) => {
                self.end += n;
                self.bytes_in += n as u64;
                Ok(n)
            }
            _ => Err(BodyError::Client),
        }
    }

    async fn read_head(
        &mut self,
        limits: &DownstreamLimits,
        stats: &ListenerStats,
        shared: &Shared,
    ) -> HeadRead {
        let parse_limits = head_limits(limits);
        self.io_timeout = ms(limits.idle_timeout_ms);
        let header_timeout = ms(limits.header_timeout_ms);
        let mut head_deadline: Option<Instant> = None;
        loop {
            if self.pos < self.end {
                match http1::parse_request(&self.buf[self.pos..self.end], &parse_limits) {
                    Ok(Some((head, n))) => {
                        self.pos += n;
                        stats.rq_total.inc();
                        return HeadRead::Head(head);
                    }
                    Ok(None) => {}
                    Err(e) => return HeadRead::Malformed(e),
                }
                if head_deadline.is_none() {
                    head_deadline = header_timeout.map(|t| Instant::now() + t);
                }
            }
            if self.flush().await.is_err() {
                return HeadRead::Closed;
            }
            self.make_room(
                parse_limits
                    .max_head
                    .saturating_add(parse_limits.max_start_line),
            );
            if self.end == self.buf.len() {
                // Cannot happen within the limits (the parser refuses first); be safe.
                return HeadRead::Malformed(ParseError::HeadTooLarge);
            }
            let idle = self.pos == self.end;
            let read = self.stream.read(&mut self.buf[self.end..]);
            let result = if idle {
                tokio::select! {
                    biased;
                    r = with_timeout(self.io_timeout, read) => match r {
                        Some(r) => r,
                        None => return HeadRead::IdleTimeout,
                    },
                    () = shared.draining() => return HeadRead::Closed,
                }
            } else {
                match head_deadline {
                    Some(deadline) => match tokio::time::timeout_at(deadline.into(), read).await {
                        Ok(r) => r,
                        Err(_) => return HeadRead::HeaderTimeout { partial: true },
                    },
                    None => read.await,
                }
            };
            match result {
                Ok(0) | Err(_) => return HeadRead::Closed,
                Ok(n) => {
                    self.end += n;
                    self.bytes_in += n as u64;
                    if idle {
                        head_deadline = header_timeout.map(|t| Instant::now() + t);
                    }
                }
            }
        }
    }

    /// Consumes the request body bytes already buffered: `(start, end)` of them in
    /// `buf` (valid until the next read).
    pub(crate) fn take_body(&mut self, body: &mut BodyLeft) -> Result<(usize, usize), ParseError> {
        let start = self.pos;
        let n = body.take(&self.buf[self.pos..self.end])?;
        self.pos += n;
        Ok((start, start + n))
    }

    /// Reads the whole body into `self.body` if it is at most `limit` bytes; stops
    /// early (returning false) once it is known to be larger.
    pub(crate) async fn buffer_body(
        &mut self,
        body: &mut BodyLeft,
        limit: usize,
    ) -> Result<bool, BodyError> {
        self.body.clear();
        if let BodyLeft::Length(n) = body {
            if *n > limit as u64 {
                return Ok(false);
            }
        }
        loop {
            let (s, e) = self.take_body(body).map_err(BodyError::Malformed)?;
            self.body.extend_from_slice(&self.buf[s..e]);
            if body.is_done() {
                return Ok(true);
            }
            if self.body.len() > limit {
                return Ok(false);
            }
            if self.fill(self.io_timeout).await? == 0 {
                return Err(BodyError::Client);
            }
        }
    }

    /// Reads and drops the rest of the request body, if small enough: true when the
    /// connection is still in step with the client.
    async fn discard_body(&mut self, body: &mut BodyLeft) -> bool {
        let mut dropped = 0u64;
        loop {
            let Ok((s, e)) = self.take_body(body) else {
                return false;
            };
            dropped += (e - s) as u64;
            if body.is_done() {
                return true;
            }
            if dropped > MAX_DISCARD || matches!(body, BodyLeft::Length(n) if *n > MAX_DISCARD) {
                return false;
            }
            if !matches!(self.fill(self.io_timeout).await, Ok(n) if n > 0) {
                return false;
            }
        }
    }
}

/// `fut` within `timeout` (None: no timer at all). None when it timed out.
pub(crate) async fn with_timeout<F: std::future::Future>(
    timeout: Option<Duration>,
    fut: F,
) -> Option<F::Output> {
    match timeout {
        None => Some(fut.await),
        Some(t) => tokio::time::timeout(t, fut).await.ok(),
    }
}

/// `fut` before `deadline` (None: no timer). None when the deadline passed.
pub(crate) async fn before<F: std::future::Future>(
    deadline: Option<Instant>,
    fut: F,
) -> Option<F::Output> {
    match deadline {
        None => Some(fut.await),
        Some(d) => tokio::time::timeout_at(d.into(), fut).await.ok(),
    }
}

/// The head size limits of a listener, for its requests and the responses to them.
pub(crate) fn head_limits(limits: &DownstreamLimits) -> http1::Limits {
    http1::Limits {
        max_start_line: limits.max_request_line_bytes,
        max_head: limits.max_header_bytes,
        max_headers: limits.max_headers,
    }
}

/// A millisecond setting where 0 means "none".
pub(crate) fn ms(value: u64) -> Option<Duration> {
    (value > 0).then(|| Duration::from_millis(value))
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// Everything known about the request being served.
pub(crate) struct Request<'s> {
    pub(crate) head: RequestHead,
    pub(crate) body: BodyLeft,
    pub(crate) route: &'s Route,
    pub(crate) snap: &'s Snapshot,
    pub(crate) limits: &'s DownstreamLimits,
    pub(crate) stats: &'s ListenerStats,
    pub(crate) started: Instant,
    /// Route timeout and propagated deadline, whichever ends first.
    pub(crate) deadline: Option<Instant>,
    /// The client sent a deadline: forward what is left of it.
    pub(crate) propagate_deadline: bool,
    /// The response is to a HEAD request.
    pub(crate) head_only: bool,
    /// The client wants the connection closed after the response.
    pub(crate) client_close: bool,
}

/// What a response says about the client connection, given `close`.
fn conn_header(version: Version, close: bool) -> ConnHeader {
    if close {
        ConnHeader::Close
    } else if version == Version::Http10 {
        ConnHeader::KeepAlive
    } else {
        ConnHeader::None
    }
}

async fn handle(
    conn: &mut Conn,
    head: RequestHead,
    snap: &Snapshot,
    routes: Option<&crate::route::RouteTable>,
    limits: &DownstreamLimits,
    stats: &ListenerStats,
    draining: bool,
) -> Next {
    let started = Instant::now();
    stats.rq_active.inc();
    // A drain closes connections after their current request.
    let client_close = head.connection.close || draining;
    let head_only = head.method() == "HEAD";
    let route = routes.and_then(|r| r.select(&head));
    let next = match route {
        None => {
            stats.no_route.inc();
            let mut body = BodyLeft::of(head.framing);
            local_reply(
                conn,
                &head,
                &mut body,
                stats,
                404,
                "no-route",
                &[],
                client_close,
            )
            .await
        }
        Some(route) => {
            let mut request = Request {
                body: BodyLeft::of(head.framing),
                head,
                route,
                snap,
                limits,
                stats,
                started,
                deadline: route.timeout.map(|t| started + t),
                propagate_deadline: false,
                head_only,
                client_close,
            };
            serve_route(conn, &mut request).await
        }
    };
    stats.rq_active.dec();
    let _ = stats.rq_time.observe(started.elapsed().as_secs_f64());
    next
}

/// Answers a request without forwarding it; keeps the connection when its body
/// could be skipped.
#[allow(clippy::too_many_arguments)]
async fn local_reply(
    conn: &mut Conn,
    head: &RequestHead,
    body: &mut BodyLeft,
    stats: &ListenerStats,
    status: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
    close: bool,
) -> Next {
    let close = close || !skip_body(conn, head, body).await;
    let conn_header = conn_header(head.version, close);
    respond::local(
        &mut conn.cout,
        status,
        reason,
        extra,
        conn_header,
        head.method() == "HEAD",
    );
    stats.record_status(status);
    finish_response(conn, close).await
}

/// Answers with a configured response (a direct response, or a fallback with
/// `reason` in `x-dmsc-reason`) and the route's response header additions.
pub(crate) async fn static_reply(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    response: &StaticResponse,
    reason: &str,
) -> Next {
    let close = rq.client_close || !skip_body(conn, &rq.head, &mut rq.body).await;
    respond::static_response(
        &mut conn.cout,
        response,
        reason,
        &rq.route.response_headers.add,
        conn_header(rq.head.version, close),
        rq.head_only,
    );
    rq.stats.record_status(response.status);
    finish_response(conn, close).await
}

/// Skips the rest of a request body the proxy answers without forwarding (if
/// small, and not waiting for `100 Continue`): true when the connection is still
/// in step with the client.
async fn skip_body(conn: &mut Conn, head: &RequestHead, body: &mut BodyLeft) -> bool {
    body.is_done() || (!head.connection.expect_continue && conn.discard_body(body).await)
}

/// Ends a response: writes it now unless more pipelined requests are waiting
/// (their responses go out together).
pub(crate) async fn finish_response(conn: &mut Conn, close: bool) -> Next {
    if close {
        let _ = conn.flush().await;
        return Next::Close;
    }
    if (conn.pos == conn.end || conn.cout.len() >= FLUSH_AT) && conn.flush().await.is_err() {
        return Next::Close;
    }
    Next::KeepAlive
}

/// Parses a deadline header value: whole milliseconds.
fn parse_deadline(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 15 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// The key bytes of a rate limit for a request, or None for per-instance limits
/// (checked once the host is known).
fn rate_key<'a>(key: &RateLimitKey, head: &'a RequestHead, ip: &'a [u8]) -> Option<&'a [u8]> {
    match key {
        RateLimitKey::Service => Some(b""),
        RateLimitKey::ClientIp => Some(ip),
        RateLimitKey::Header(name) => Some(head.header(name).unwrap_or(b"")),
        RateLimitKey::Instance => None,
    }
}

/// Raw bytes of an IP address, as a rate-limit key: `(bytes, length)`.
fn ip_key(ip: IpAddr) -> ([u8; 16], usize) {
    let mut key = [0u8; 16];
    match ip {
        IpAddr::V4(ip) => {
            key[..4].copy_from_slice(&ip.octets());
            (key, 4)
        }
        IpAddr::V6(ip) => {
            key.copy_from_slice(&ip.octets());
            (key, 16)
        }
    }
}

/// Raw bytes of an address (IP, then port), as a rate-limit key: `(bytes, length)`.
pub(crate) fn addr_key(addr: SocketAddr) -> ([u8; 18], usize) {
    let (ip, len) = ip_key(addr.ip());
    let mut key = [0u8; 18];
    key[..len].copy_from_slice(&ip[..len]);
    key[len..len + 2].copy_from_slice(&addr.port().to_be_bytes());
    (key, len + 2)
}

/// `Retry-After` seconds for a wait, rounded up, at least 1.
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

async fn serve_route(conn: &mut Conn, rq: &mut Request<'_>) -> Next {
    let route = rq.route;
    // Deadline propagation.
    if let Some(value) = rq.head.header(DEADLINE_HEADER) {
        if let Some(d) = parse_deadline(value) {
            if d == 0 {
                rq.stats.deadline_exceeded.inc();
                return reply(conn, rq, 504, "deadline-exceeded", &[]).await;
            }
            rq.deadline = earliest(rq.deadline, Some(rq.started + Duration::from_millis(d)));
            rq.propagate_deadline = true;
        }
    }
    // Fault injection.
    if let Some(fault) = &route.fault {
        let decision = fault.decide(fastrand::u64(..), fastrand::u64(..));
        if let Some(delay) = decision.delay {
            rq.stats.fault_delays.inc();
            tokio::time::sleep(delay).await;
        }
        if let Some(status) = decision.abort {
            rq.stats.fault_aborts.inc();
            return reply(conn, rq, status, "fault-abort", &[]).await;
        }
    }
    // Rate limits keyed by the request.
    if !route.rate_limits.is_empty() {
        let (ip_bytes, ip_len) = ip_key(conn.peer.ip());
        let ip = &ip_bytes[..ip_len];
        for limiter in &route.rate_limits {
            let Some(key) = rate_key(&limiter.key, &rq.head, ip) else {
                continue;
            };
            if let Err(limited) = limiter.check(key) {
                let failure = forward::Failure::RateLimited(limited.retry_after);
                return forward::fail(conn, rq, failure).await;
            }
        }
    }
    match &route.action {
        RouteAction::Respond(response) => static_reply(conn, rq, response, "").await,
        RouteAction::Forward(clusters) => {
            let name = clusters.pick(fastrand::u64(..));
            forward::forward(conn, rq, name).await
        }
    }
}

/// A proxy-made answer to the current request.
pub(crate) async fn reply(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    status: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
) -> Next {
    local_reply(
        conn,
        &rq.head,
        &mut rq.body,
        rq.stats,
        status,
        reason,
        extra,
        rq.client_close,
    )
    .await
}
