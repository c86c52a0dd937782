//! A strict HTTP/1.1 codec for a proxy (RFC 9112), with no I/O.
//!
//! Heads are parsed in place: a head keeps its raw bytes and spans into them,
//! so parsing allocates two vectors and no strings. Anything a front end and
//! a back end could read two ways (CL+TE, repeated Content-Length, bad chunk
//! sizes, obs-fold, bare CR, NUL, whitespace before a colon) is an error, so
//! the proxy answers 400 and closes instead of forwarding it.

mod chunked;
mod encode;
mod parse;
mod syntax;
pub(crate) mod write;

pub use chunked::{ChunkScan, ChunkedScanner};
pub use encode::{encode_request_head, encode_response_head, HeadEdits};
pub use parse::{parse_request, parse_response};

use std::ops::Range;

/// Size limits of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (or status line).
    pub max_start_line: usize,
    /// Most bytes of the whole head, through the blank line.
    pub max_head: usize,
    /// Most header fields.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_start_line: 8192,
            max_head: 65536,
            max_headers: 100,
        }
    }
}

/// Why a head or body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// The request or status line is longer than the limit.
    StartLineTooLong,
    /// The head is larger than the limit, or has too many fields.
    HeadTooLarge,
    /// Malformed request/status line (method, target, version, status code).
    BadStartLine,
    /// Unsupported HTTP version (only 1.0 and 1.1).
    BadVersion,
    /// Malformed header field (bad name, space before colon, obs-fold, bad byte).
    BadHeader,
    /// A CR not followed by LF, or a NUL byte.
    BareCrOrNul,
    /// Content-Length not a decimal number that fits a u64, or repeated (even with equal values).
    BadContentLength,
    /// Both Content-Length and Transfer-Encoding.
    ContentLengthAndTransferEncoding,
    /// Transfer-Encoding other than a final `chunked` (requests), or unknown codings.
    BadTransferEncoding,
    /// Malformed chunk size line, extension, or chunk terminator.
    BadChunk,
    /// Malformed trailer section.
    BadTrailer,
    /// HTTP/1.1 request without Host, or several Host fields.
    BadHost,
}

impl ParseError {
    /// Short reason for logs and the `x-dmsc-reason` header.
    pub fn reason(self) -> &'static str {
        match self {
            Self::StartLineTooLong => "request line too long",
            Self::HeadTooLarge => "headers too large",
            Self::BadStartLine => "malformed start line",
            Self::BadVersion => "unsupported HTTP version",
            Self::BadHeader => "malformed header field",
            Self::BareCrOrNul => "bare CR or NUL",
            Self::BadContentLength => "invalid Content-Length",
            Self::ContentLengthAndTransferEncoding => "both Content-Length and Transfer-Encoding",
            Self::BadTransferEncoding => "invalid Transfer-Encoding",
            Self::BadChunk => "invalid chunk",
            Self::BadTrailer => "invalid trailer",
            Self::BadHost => "missing or repeated Host",
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ParseError {}

/// HTTP version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0
    Http10,
    /// HTTP/1.1
    Http11,
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    ContentLength(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the connection closes (responses only).
    CloseDelimited,
}

/// What the Connection, Upgrade and Expect fields of a head say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionInfo {
    /// The sender will close after this message (`close`, or HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// `Connection: upgrade` with an `Upgrade` field.
    pub upgrade: bool,
    /// `Expect: 100-continue` (requests).
    pub expect_continue: bool,
}

/// One header field: spans of name and value (value trimmed of OWS) in the raw head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpan {
    /// Name bytes.
    pub name: Range<usize>,
    /// Value bytes.
    pub value: Range<usize>,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The head as received, through the blank line.
    pub raw: Vec<u8>,
    /// Method span.
    pub method: Range<usize>,
    /// Request-target span (origin-form `/path?query`, absolute-form, `*` for OPTIONS,
    /// or authority-form `host:port` for CONNECT).
    pub target: Range<usize>,
    /// Version.
    pub version: Version,
    /// Fields in order.
    pub fields: Vec<FieldSpan>,
    /// Body framing (requests: Empty, ContentLength or Chunked; `Content-Length: 0`
    /// stays `ContentLength(0)` so it is forwarded as sent).
    pub framing: BodyFraming,
    /// Connection semantics.
    pub connection: ConnectionInfo,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The head as received, through the blank line.
    pub raw: Vec<u8>,
    /// Status code.
    pub status: u16,
    /// Reason phrase span.
    pub reason: Range<usize>,
    /// Version.
    pub version: Version,
    /// Fields in order.
    pub fields: Vec<FieldSpan>,
    /// Body framing, given the request method (HEAD, 1xx, 204, 304: Empty).
    pub framing: BodyFraming,
    /// Connection semantics.
    pub connection: ConnectionInfo,
}

/// Read access shared by request and response heads.
pub trait Head {
    /// The raw bytes.
    fn raw(&self) -> &[u8];
    /// The field spans.
    fn fields(&self) -> &[FieldSpan];

    /// Value of the first field named `name` (ASCII case-insensitive).
    fn header(&self, name: &str) -> Option<&[u8]> {
        let raw = self.raw();
        self.fields()
            .iter()
            .find(|f| raw[f.name.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|f| &raw[f.value.clone()])
    }

    /// Every `(name, value)` in order.
    fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let raw = self.raw();
        self.fields()
            .iter()
            .map(move |f| (&raw[f.name.clone()], &raw[f.value.clone()]))
    }
}

impl Head for RequestHead {
    fn raw(&self) -> &[u8] {
        &self.raw
    }
    fn fields(&self) -> &[FieldSpan] {
        &self.fields
    }
}

impl Head for ResponseHead {
    fn raw(&self) -> &[u8] {
        &self.raw
    }
    fn fields(&self) -> &[FieldSpan] {
        &self.fields
    }
}

impl RequestHead {
    /// The method (validated as a token, so valid UTF-8).
    pub fn method(&self) -> &str {
        span_str(&self.raw, self.method.clone())
    }

    /// The request target as sent (validated as visible ASCII).
    pub fn target(&self) -> &str {
        span_str(&self.raw, self.target.clone())
    }

    /// The authority of an absolute-form target (`http://authority/...`).
    fn absolute_authority(&self) -> Option<&[u8]> {
        let target = &self.raw[self.target.clone()];
        if matches!(target.first(), Some(b'/' | b'*')) || self.method() == "CONNECT" {
            return None;
        }
        parse::absolute_authority(target)
    }

    /// The target from the path on: `path?query` (the origin-form of an
    /// absolute-form target, which may lack the leading `/`).
    fn path_and_query(&self) -> &str {
        let target = self.target();
        if matches!(target.as_bytes().first(), Some(b'/' | b'*')) || self.method() == "CONNECT" {
            return target;
        }
        // http(s)://authority then the rest
        let after_scheme = target.find("://").map_or(target.len(), |i| i + 3);
        let rest = &target[after_scheme..];
        let start = rest.find(['/', '?']).unwrap_or(rest.len());
        &rest[start..]
    }

    /// The path part of the target (no query), `/` for an empty absolute-form path,
    /// `*` for an asterisk-form target and empty for CONNECT's authority-form.
    pub fn path(&self) -> &str {
        if self.method() == "CONNECT" {
            return "";
        }
        let pq = self.path_and_query();
        let path = pq.split_once('?').map_or(pq, |(p, _)| p);
        if path.is_empty() {
            "/"
        } else {
            path
        }
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        if self.method() == "CONNECT" {
            return None;
        }
        self.path_and_query().split_once('?').map(|(_, q)| q)
    }

    /// First value of query parameter `name`, percent-decoded (`+` is a space;
    /// a malformed escape is kept as it is). A parameter without `=` has an
    /// empty value.
    pub fn query_param(&self, name: &str) -> Option<String> {
        let query = self.query()?;
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let matches = if key.bytes().any(|b| b == b'%' || b == b'+') {
                percent_decode(key) == name
            } else {
                key == name
            };
            if matches {
                return Some(percent_decode(value));
            }
        }
        None
    }

    /// Host without port from the absolute-form target's authority, else from
    /// the Host field (RFC 9112 3.2.2); an IPv6 literal keeps its brackets
    /// (`[::1]`), as in a URI. Returned as sent: compare it ASCII
    /// case-insensitively.
    pub fn host(&self) -> Option<&str> {
        let authority = match self.absolute_authority() {
            Some(a) => a,
            None => self.header("host")?,
        };
        let (host, _) = syntax::split_authority(authority)?;
        if host.is_empty() {
            return None;
        }
        // An IP literal is `[` host `]` at the start of the authority.
        let len = if authority.first() == Some(&b'[') {
            host.len() + 2
        } else {
            host.len()
        };
        std::str::from_utf8(&authority[..len]).ok()
    }

    /// Value of cookie `name` from the Cookie field(s) (RFC 6265 `a=b; c=d`;
    /// surrounding double quotes removed).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        let raw = &self.raw;
        for f in &self.fields {
            if !syntax::name_is(&raw[f.name.clone()], b"cookie") {
                continue;
            }
            for pair in raw[f.value.clone()].split(|&b| b == b';') {
                let pair = syntax::trim_ows(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                if syntax::trim_ows(&pair[..eq]) != name.as_bytes() {
                    continue;
                }
                let value = syntax::trim_ows(&pair[eq + 1..]);
                let value = match value {
                    [b'"', inner @ .., b'"'] => inner,
                    v => v,
                };
                return std::str::from_utf8(value).ok();
            }
        }
        None
    }

    /// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 9.2.2).
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self.method(),
            "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE"
        )
    }
}

/// Decodes `%XX` escapes and `+` (as a space); a malformed escape stays as it is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return s.to_owned();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b.get(i + 1..i + 3).and_then(|h| {
                    let hi = (h[0] as char).to_digit(16)?;
                    let lo = (h[1] as char).to_digit(16)?;
                    u8::try_from(hi * 16 + lo).ok()
                });
                if let Some(byte) = hex {
                    out.push(byte);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

impl ResponseHead {
    /// The reason phrase.
    pub fn reason_phrase(&self) -> &[u8] {
        &self.raw[self.reason.clone()]
    }
}

/// True for fields a proxy must not forward (RFC 9110 7.6.1): exactly Connection,
/// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding and Upgrade
/// (ASCII case-insensitive).
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    use syntax::name_is;
    match name.len() {
        2 => name_is(name, b"te"),
        7 => name_is(name, b"trailer") || name_is(name, b"upgrade"),
        10 => name_is(name, b"connection") || name_is(name, b"keep-alive"),
        16 => name_is(name, b"proxy-connection"),
        17 => name_is(name, b"transfer-encoding"),
        _ => false,
    }
}

/// The text of a span of `raw` (empty if out of range or not UTF-8), for callers
/// building their own views of a head.
pub fn span_str(raw: &[u8], span: Range<usize>) -> &str {
    raw.get(span)
        .and_then(|s| std::str::from_utf8(s).ok())
        .unwrap_or("")
}
