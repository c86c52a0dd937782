//! Writing heads to forward.
//!
//! Field names keep the case they were received in; every field is written
//! as `name: value` with the value as parsed (OWS trimmed).

use super::syntax::{list_elements, name_is, trim_ows};
use super::write::{push_content_length, push_field, push_u64};
use super::{is_hop_by_hop, BodyFraming, FieldSpan, RequestHead, ResponseHead};

/// Changes made to a head while it is written out.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadEdits<'a> {
    /// Drop fields with these names (ASCII case-insensitive) besides the hop-by-hop ones.
    pub remove: &'a [&'a str],
    /// Append these fields (already validated).
    pub add: &'a [(&'a str, &'a [u8])],
    /// Replace the request target (path rewrite); requests only.
    pub target: Option<&'a str>,
    /// Replace the Host field; requests only.
    pub host: Option<&'a str>,
}

/// Writes `head` as an HTTP/1.1 request to `out`: the request line, every
/// end-to-end field not removed, the added fields, then the framing fields for
/// `framing` (`Content-Length: n` or `Transfer-Encoding: chunked`), and
/// `Connection: upgrade` + the `Upgrade` field when the request upgrades.
/// Hop-by-hop fields and the fields named in Connection are never copied.
///
/// An absolute-form target is written in origin-form with its authority as
/// the Host (RFC 9112 3.2.2), unless `edits` replace them. `edits.host` is
/// written where the Host field was, or first. A head without Host (HTTP/1.0)
/// gets an empty one, as HTTP/1.1 requires.
pub fn encode_request_head(
    head: &RequestHead,
    edits: &HeadEdits<'_>,
    framing: BodyFraming,
    out: &mut Vec<u8>,
) {
    let raw = &head.raw[..];
    out.reserve(raw.len() + 64);
    out.extend_from_slice(&raw[head.method.clone()]);
    out.push(b' ');
    let absolute = head.absolute_authority();
    match (edits.target, absolute) {
        (Some(target), _) => out.extend_from_slice(target.as_bytes()),
        (None, Some(_)) => {
            let pq = head.path_and_query();
            if !pq.starts_with('/') {
                out.push(b'/');
            }
            out.extend_from_slice(pq.as_bytes());
        }
        (None, None) => out.extend_from_slice(&raw[head.target.clone()]),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");

    let host_value = edits.host.map(str::as_bytes).or(absolute);
    let scan = prescan(raw, &head.fields);
    if !scan.has_host {
        push_field(out, b"host", host_value.unwrap_or(b""));
    }
    let upgrade = head.connection.upgrade;
    for f in &head.fields {
        let name = &raw[f.name.clone()];
        if name_is(name, b"host") {
            match host_value {
                Some(h) => push_field(out, b"host", h),
                None => push_span(out, raw, f),
            }
            continue;
        }
        if keep_field(raw, &head.fields, name, edits, &scan, upgrade) {
            push_span(out, raw, f);
        }
    }
    for (name, value) in edits.add {
        push_field(out, name.as_bytes(), value);
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    }
    match framing {
        BodyFraming::ContentLength(n) => push_content_length(out, n),
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::Empty | BodyFraming::CloseDelimited => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// Writes `head` as an HTTP/1.1 response, like [`encode_request_head`];
/// `close` adds `Connection: close` (the proxy will close the client connection).
///
/// A 101 response to an upgrade keeps `Upgrade` and gets `Connection: upgrade`.
/// The Content-Length of a response without a body (to HEAD, or a 304) is
/// kept when `framing` is `Empty`: it describes the representation. Transfer
/// codings other than `chunked` are kept in front of the framing's `chunked`.
pub fn encode_response_head(
    head: &ResponseHead,
    edits: &HeadEdits<'_>,
    framing: BodyFraming,
    close: bool,
    out: &mut Vec<u8>,
) {
    let raw = &head.raw[..];
    out.reserve(raw.len() + 64);
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(head.status));
    out.push(b' ');
    out.extend_from_slice(&raw[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");

    let scan = prescan(raw, &head.fields);
    let upgrade = head.connection.upgrade && head.status == 101;
    let keep_length = framing == BodyFraming::Empty
        && head.framing == BodyFraming::Empty
        && !(100..200).contains(&head.status)
        && head.status != 204;
    for f in &head.fields {
        let name = &raw[f.name.clone()];
        let keep = if name_is(name, b"content-length") {
            keep_length && !is_removed(edits, name)
        } else {
            keep_field(raw, &head.fields, name, edits, &scan, upgrade)
        };
        if keep {
            push_span(out, raw, f);
        }
    }
    for (name, value) in edits.add {
        push_field(out, name.as_bytes(), value);
    }
    match framing {
        BodyFraming::ContentLength(n) => push_content_length(out, n),
        BodyFraming::Chunked => {
            out.extend_from_slice(b"transfer-encoding: ");
            if push_codings(out, raw, &head.fields) {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(b"chunked\r\n");
        }
        BodyFraming::CloseDelimited if scan.extra_codings => {
            out.extend_from_slice(b"transfer-encoding: ");
            push_codings(out, raw, &head.fields);
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Empty | BodyFraming::CloseDelimited => {}
    }
    if upgrade {
        out.extend_from_slice(b"connection: upgrade\r\n");
    } else if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// What one pass over the fields tells the encoder.
struct Prescan {
    has_host: bool,
    /// Connection names fields to drop besides the hop-by-hop ones.
    nominates: bool,
    /// Transfer-Encoding has a coding other than `chunked`.
    extra_codings: bool,
}

fn prescan(raw: &[u8], fields: &[FieldSpan]) -> Prescan {
    let mut s = Prescan {
        has_host: false,
        nominates: false,
        extra_codings: false,
    };
    for f in fields {
        let name = &raw[f.name.clone()];
        match name.len() {
            4 => s.has_host |= name_is(name, b"host"),
            10 if name_is(name, b"connection") => {
                s.nominates |= list_elements(&raw[f.value.clone()]).any(|t| {
                    !(t.eq_ignore_ascii_case(b"close")
                        || t.eq_ignore_ascii_case(b"keep-alive")
                        || t.eq_ignore_ascii_case(b"upgrade"))
                });
            }
            17 if name_is(name, b"transfer-encoding") => {
                s.extra_codings |= list_elements(&raw[f.value.clone()])
                    .any(|c| !coding_name(c).eq_ignore_ascii_case(b"chunked"));
            }
            _ => {}
        }
    }
    s
}

/// True if the field `name` is forwarded (Host is handled by the caller).
fn keep_field(
    raw: &[u8],
    fields: &[FieldSpan],
    name: &[u8],
    edits: &HeadEdits<'_>,
    scan: &Prescan,
    upgrade: bool,
) -> bool {
    if is_hop_by_hop(name) {
        return upgrade && name_is(name, b"upgrade") && !is_removed(edits, name);
    }
    if name_is(name, b"content-length") || is_removed(edits, name) {
        return false;
    }
    !(scan.nominates && is_nominated(raw, fields, name))
}

fn is_removed(edits: &HeadEdits<'_>, name: &[u8]) -> bool {
    edits
        .remove
        .iter()
        .any(|r| r.as_bytes().eq_ignore_ascii_case(name))
}

/// True if a Connection field lists `name`.
fn is_nominated(raw: &[u8], fields: &[FieldSpan], name: &[u8]) -> bool {
    fields
        .iter()
        .filter(|f| name_is(&raw[f.name.clone()], b"connection"))
        .any(|f| list_elements(&raw[f.value.clone()]).any(|t| t.eq_ignore_ascii_case(name)))
}

/// The coding name of a transfer-coding element (parameters dropped).
fn coding_name(element: &[u8]) -> &[u8] {
    trim_ows(element.split(|&b| b == b';').next().unwrap_or(element))
}

/// Writes the source's transfer codings except a final `chunked`, comma
/// separated; true if any was written.
fn push_codings(out: &mut Vec<u8>, raw: &[u8], fields: &[FieldSpan]) -> bool {
    let te_fields = || {
        fields
            .iter()
            .filter(|f| name_is(&raw[f.name.clone()], b"transfer-encoding"))
    };
    let codings = || te_fields().flat_map(|f| list_elements(&raw[f.value.clone()]));
    let total = codings().count();
    let mut written = 0;
    for (i, c) in codings().enumerate() {
        if i + 1 == total && coding_name(c).eq_ignore_ascii_case(b"chunked") {
            break;
        }
        if written > 0 {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(c);
        written += 1;
    }
    written > 0
}

fn push_span(out: &mut Vec<u8>, raw: &[u8], f: &FieldSpan) {
    push_field(out, &raw[f.name.clone()], &raw[f.value.clone()]);
}
