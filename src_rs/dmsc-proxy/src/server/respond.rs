//! Responses the proxy writes itself, and the byte formatting they need
//! (no `format!` on the request path).

use super::REASON_HEADER;
use crate::http1::write::{push_content_length, push_field, push_u64};
use crate::route::StaticResponse;

/// What a proxy-made response says about the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnHeader {
    /// Nothing (HTTP/1.1 keep-alive is the default).
    None,
    /// `connection: close`: the proxy closes after this response.
    Close,
    /// `connection: keep-alive` (an HTTP/1.0 client asked for it).
    KeepAlive,
}

/// The reason phrase of a status code.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

fn push_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_connection(out: &mut Vec<u8>, conn: ConnHeader) {
    match conn {
        ConnHeader::None => {}
        ConnHeader::Close => out.extend_from_slice(b"connection: close\r\n"),
        ConnHeader::KeepAlive => out.extend_from_slice(b"connection: keep-alive\r\n"),
    }
}

/// Appends a response made by the proxy: `reason` (if not empty) goes in
/// `x-dmsc-reason` and, with a newline, is the text body. `head_only` leaves
/// the body out (a response to HEAD).
pub(crate) fn local(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    extra: &[(&str, &[u8])],
    conn: ConnHeader,
    head_only: bool,
) {
    push_status_line(out, status);
    let body_len = if reason.is_empty() {
        0
    } else {
        reason.len() + 1
    };
    push_content_length(out, body_len as u64);
    out.extend_from_slice(b"content-type: text/plain\r\n");
    if !reason.is_empty() {
        push_field(out, REASON_HEADER.as_bytes(), reason.as_bytes());
    }
    for (name, value) in extra {
        push_field(out, name.as_bytes(), value);
    }
    push_connection(out, conn);
    out.extend_from_slice(b"\r\n");
    if !head_only && !reason.is_empty() {
        out.extend_from_slice(reason.as_bytes());
        out.push(b'\n');
    }
}

/// Appends a configured response (direct response or fallback), with the
/// route's response header additions and `x-dmsc-reason` if `reason` is set.
pub(crate) fn static_response(
    out: &mut Vec<u8>,
    response: &StaticResponse,
    reason: &str,
    extra: &[(Box<str>, Box<[u8]>)],
    conn: ConnHeader,
    head_only: bool,
) {
    push_status_line(out, response.status);
    let bodyless = matches!(response.status, 204 | 304) || response.status < 200;
    if !bodyless {
        push_content_length(out, response.body.len() as u64);
    }
    for (name, value) in response.headers.iter().chain(extra) {
        push_field(out, name.as_bytes(), value);
    }
    if !reason.is_empty() {
        push_field(out, REASON_HEADER.as_bytes(), reason.as_bytes());
    }
    push_connection(out, conn);
    out.extend_from_slice(b"\r\n");
    if !head_only && !bodyless {
        out.extend_from_slice(&response.body);
    }
}

/// Writes the textual form of an IP address (once per connection).
pub(crate) fn ip_text(ip: std::net::IpAddr) -> Box<[u8]> {
    ip.to_string().into_bytes().into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_response_is_well_framed() {
        let mut out = Vec::new();
        local(
            &mut out,
            429,
            "rate-limit",
            &[("retry-after", b"2")],
            ConnHeader::Close,
            false,
        );
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(text.contains("\r\ncontent-length: 11\r\n"));
        assert!(text.contains("\r\nx-dmsc-reason: rate-limit\r\n"));
        assert!(text.contains("\r\nretry-after: 2\r\n"));
        assert!(text.contains("\r\nconnection: close\r\n"));
        assert!(text.ends_with("\r\n\r\nrate-limit\n"));
    }

    #[test]
    fn head_only_keeps_the_length_but_not_the_body() {
        let mut out = Vec::new();
        local(&mut out, 404, "no-route", &[], ConnHeader::None, true);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.contains("content-length: 9\r\n"));
        assert!(text.ends_with("\r\n\r\n"));
    }
}
