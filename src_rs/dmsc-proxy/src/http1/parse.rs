//! Head parsing.
//!
//! Parsing is stateless: the caller passes everything received so far and
//! calls again with more bytes on `Ok(None)`. Work is bounded by the limits,
//! so a slow or hostile peer cannot make a partial head cost more than
//! `max_head` bytes of scanning per call.

use std::ops::Range;

use super::syntax::{
    is_token, list_elements, name_is, split_authority, trim_ows, CR, FIELD_VALUE, HTAB, LF, SP,
    TARGET, TCHAR,
};
use super::{
    BodyFraming, ConnectionInfo, FieldSpan, Limits, ParseError, RequestHead, ResponseHead, Version,
};

/// Fields a typical head fits in without the vector growing.
const FIELDS_CAPACITY: usize = 16;

/// Parses a request head from the start of `buf`.
///
/// `Ok(None)`: the head is not complete yet (and within limits); read more.
/// `Ok(Some((head, n)))`: the head took `buf[..n]`; the body (if any) follows.
/// Leading empty lines before a request line are skipped (RFC 9112 2.2); the
/// head's `raw` starts at the request line.
pub fn parse_request(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, ParseError> {
    let Some(start) = skip_empty_lines(buf, limits)? else {
        return Ok(None);
    };
    let Some(line_end) = find_start_line(buf, start, limits)? else {
        return Ok(None);
    };
    let line = &buf[start..line_end];
    let (method_len, target_end, version) = parse_request_line(line)?;
    let method = &line[..method_len];
    let target = &line[method_len + 1..target_end];
    check_target_form(method, target)?;

    let mut fields = Vec::with_capacity(FIELDS_CAPACITY);
    let Some(end) = scan_fields(buf, start, line_end + 2, limits, &mut fields)? else {
        return Ok(None);
    };
    let raw = &buf[start..end];
    let sem = Semantics::collect(raw, &fields);

    if sem.host_count > 1 || (sem.host_count == 0 && version == Version::Http11) {
        return Err(ParseError::BadHost);
    }
    if let Some(v) = sem.host {
        if split_authority(&raw[v]).is_none() {
            return Err(ParseError::BadHost);
        }
    }
    if sem.te_count > 0 && sem.cl_count > 0 {
        return Err(ParseError::ContentLengthAndTransferEncoding);
    }
    let framing = if let Some(te) = sem.te {
        // Only a lone `chunked` is accepted: anything else could be framed
        // differently by the next hop.
        if sem.te_count > 1
            || version == Version::Http10
            || !trim_ows(&raw[te]).eq_ignore_ascii_case(b"chunked")
        {
            return Err(ParseError::BadTransferEncoding);
        }
        BodyFraming::Chunked
    } else if let Some(cl) = sem.cl {
        if sem.cl_count > 1 {
            return Err(ParseError::BadContentLength);
        }
        BodyFraming::ContentLength(parse_content_length(&raw[cl])?)
    } else {
        BodyFraming::Empty
    };
    let connection = ConnectionInfo {
        close: sem.close || (version == Version::Http10 && !sem.keep_alive),
        upgrade: sem.upgrade_token && sem.upgrade_field,
        expect_continue: sem.expect_continue && version == Version::Http11,
    };
    let head = RequestHead {
        raw: raw.to_vec(),
        method: 0..method_len,
        target: method_len + 1..target_end,
        version,
        fields,
        framing,
        connection,
    };
    Ok(Some((head, end)))
}

/// Parses a response head to a request with method `request_method` (a response to
/// HEAD, and 1xx/204/304 responses, have no body; nor has a 2xx response to
/// CONNECT, after which the connection is a tunnel).
pub fn parse_response(
    buf: &[u8],
    limits: &Limits,
    request_method: &str,
) -> Result<Option<(ResponseHead, usize)>, ParseError> {
    let Some(line_end) = find_start_line(buf, 0, limits)? else {
        return Ok(None);
    };
    let (version, status, reason) = parse_status_line(&buf[..line_end])?;

    let mut fields = Vec::with_capacity(FIELDS_CAPACITY);
    let Some(end) = scan_fields(buf, 0, line_end + 2, limits, &mut fields)? else {
        return Ok(None);
    };
    let raw = &buf[..end];
    let sem = Semantics::collect(raw, &fields);

    if sem.te_count > 0 && sem.cl_count > 0 {
        return Err(ParseError::ContentLengthAndTransferEncoding);
    }
    let content_length = match sem.cl {
        Some(_) if sem.cl_count > 1 => return Err(ParseError::BadContentLength),
        Some(cl) => Some(parse_content_length(&raw[cl])?),
        None => None,
    };
    let te = if sem.te_count > 0 {
        if version == Version::Http10 {
            return Err(ParseError::BadTransferEncoding);
        }
        Some(response_transfer_coding(raw, &fields)?)
    } else {
        None
    };
    let no_body = request_method == "HEAD"
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == "CONNECT" && (200..300).contains(&status));
    let framing = if no_body {
        BodyFraming::Empty
    } else if let Some(chunked_last) = te {
        if chunked_last {
            BodyFraming::Chunked
        } else {
            BodyFraming::CloseDelimited
        }
    } else if let Some(n) = content_length {
        BodyFraming::ContentLength(n)
    } else {
        BodyFraming::CloseDelimited
    };
    let connection = ConnectionInfo {
        close: sem.close
            || (version == Version::Http10 && !sem.keep_alive)
            || framing == BodyFraming::CloseDelimited,
        upgrade: sem.upgrade_token && sem.upgrade_field,
        expect_continue: false,
    };
    let head = ResponseHead {
        raw: raw.to_vec(),
        status,
        reason,
        version,
        fields,
        framing,
        connection,
    };
    Ok(Some((head, end)))
}

/// Skips CRLFs before a request line; `Some(index of the first other byte)`.
fn skip_empty_lines(buf: &[u8], limits: &Limits) -> Result<Option<usize>, ParseError> {
    let mut i = 0;
    loop {
        if i > limits.max_head {
            return Err(ParseError::HeadTooLarge);
        }
        match buf.get(i) {
            None => return Ok(None),
            Some(&CR) => match buf.get(i + 1) {
                None => return Ok(None),
                Some(&LF) => i += 2,
                Some(_) => return Err(ParseError::BareCrOrNul),
            },
            Some(&LF) => return Err(ParseError::BadStartLine),
            Some(_) => return Ok(Some(i)),
        }
    }
}

/// Finds the CRLF ending the start line at `start`; `Some(index of its CR)`.
fn find_start_line(buf: &[u8], start: usize, limits: &Limits) -> Result<Option<usize>, ParseError> {
    let window_end = buf.len().min(
        start
            .saturating_add(limits.max_start_line)
            .saturating_add(2),
    );
    match buf[start..window_end].iter().position(|&b| b == LF) {
        Some(off) => {
            let lf = start + off;
            if lf == start || buf[lf - 1] != CR {
                let line = &buf[start..lf];
                return Err(if line.iter().any(|&b| b == 0 || b == CR) {
                    ParseError::BareCrOrNul
                } else {
                    ParseError::BadStartLine
                });
            }
            if lf - 1 - start > limits.max_start_line {
                return Err(ParseError::StartLineTooLong);
            }
            Ok(Some(lf - 1))
        }
        None => {
            let mut pending = buf.len() - start;
            if buf.last() == Some(&CR) {
                pending -= 1;
            }
            if pending > limits.max_start_line {
                return Err(ParseError::StartLineTooLong);
            }
            // A NUL or a CR not at the end can never become valid: say so now
            // rather than when the line ends.
            let partial = &buf[start..start + pending];
            if partial.iter().any(|&b| b == 0 || b == CR) {
                return Err(ParseError::BareCrOrNul);
            }
            Ok(None)
        }
    }
}

/// The error for an unexpected byte in a start line.
fn start_line_error(b: Option<&u8>) -> ParseError {
    match b {
        Some(0) | Some(&CR) => ParseError::BareCrOrNul,
        _ => ParseError::BadStartLine,
    }
}

/// `method SP request-target SP HTTP-version` (without CRLF):
/// `(method length, end of target, version)`.
fn parse_request_line(line: &[u8]) -> Result<(usize, usize, Version), ParseError> {
    let mut i = 0;
    while i < line.len() && TCHAR[line[i] as usize] {
        i += 1;
    }
    if i == 0 || line.get(i) != Some(&SP) {
        return Err(start_line_error(line.get(i)));
    }
    let target_start = i + 1;
    let mut j = target_start;
    while j < line.len() && TARGET[line[j] as usize] {
        j += 1;
    }
    if j == target_start || line.get(j) != Some(&SP) {
        return Err(start_line_error(line.get(j)));
    }
    let version = parse_version(&line[j + 1..])?;
    Ok((i, j, version))
}

/// `HTTP/1.0` or `HTTP/1.1`; other well-formed versions are `BadVersion`.
fn parse_version(v: &[u8]) -> Result<Version, ParseError> {
    match v {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(ParseError::BadVersion)
        }
        _ => Err(if v.iter().any(|&b| b == 0 || b == CR) {
            ParseError::BareCrOrNul
        } else {
            ParseError::BadStartLine
        }),
    }
}

/// Checks the request-target form against the method (RFC 9112 3.2).
fn check_target_form(method: &[u8], target: &[u8]) -> Result<(), ParseError> {
    let ok = if method == b"CONNECT" {
        // authority-form: host and port only.
        matches!(split_authority(target), Some((host, Some(port))) if !host.is_empty() && !port.is_empty())
    } else {
        match target[0] {
            b'/' => true,
            b'*' => target.len() == 1 && method == b"OPTIONS",
            _ => absolute_authority(target).is_some_and(|a| {
                matches!(split_authority(a), Some((host, port)) if !host.is_empty() && port.is_none_or(|p| !p.is_empty()))
            }),
        }
    };
    if ok {
        Ok(())
    } else {
        Err(ParseError::BadStartLine)
    }
}

/// The authority of an `http://` or `https://` absolute-form target.
pub(super) fn absolute_authority(target: &[u8]) -> Option<&[u8]> {
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))?;
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    if s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

/// `HTTP-version SP 3DIGIT SP reason-phrase` (the SP before an empty reason
/// may be missing): `(version, status, reason span)`.
fn parse_status_line(line: &[u8]) -> Result<(Version, u16, Range<usize>), ParseError> {
    if line.len() < 12 || line[8] != SP {
        return Err(if line.iter().any(|&b| b == 0 || b == CR) {
            ParseError::BareCrOrNul
        } else if line.len() >= 8 && parse_version(&line[..8]) == Err(ParseError::BadVersion) {
            ParseError::BadVersion
        } else {
            ParseError::BadStartLine
        });
    }
    let version = parse_version(&line[..8])?;
    let code = &line[9..12];
    if !code.iter().all(u8::is_ascii_digit) {
        return Err(start_line_error(code.iter().find(|b| !b.is_ascii_digit())));
    }
    let status = u16::from(code[0] - b'0') * 100
        + u16::from(code[1] - b'0') * 10
        + u16::from(code[2] - b'0');
    if !(100..=599).contains(&status) {
        return Err(ParseError::BadStartLine);
    }
    let reason = match line.get(12) {
        None => 12..12,
        Some(&SP) => 13..line.len(),
        other => return Err(start_line_error(other)),
    };
    if let Some(&b) = line[reason.clone()]
        .iter()
        .find(|&&b| !FIELD_VALUE[b as usize])
    {
        return Err(start_line_error(Some(&b)));
    }
    Ok((version, status, reason))
}

/// Returns `Ok(None)` for a partial head unless it is already too large.
fn incomplete<T>(len: usize, max_end: usize) -> Result<Option<T>, ParseError> {
    if len > max_end {
        Err(ParseError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

/// Scans the field lines from `pos` through the blank line, pushing spans
/// relative to `base`. `Some(end of head)` once the blank line is seen.
fn scan_fields(
    buf: &[u8],
    base: usize,
    mut p: usize,
    limits: &Limits,
    fields: &mut Vec<FieldSpan>,
) -> Result<Option<usize>, ParseError> {
    let max_end = base.saturating_add(limits.max_head);
    let len = buf.len();
    loop {
        if p > max_end {
            return Err(ParseError::HeadTooLarge);
        }
        let Some(&first) = buf.get(p) else {
            return incomplete(len, max_end);
        };
        if first == CR {
            return match buf.get(p + 1) {
                Some(&LF) if p + 2 > max_end => Err(ParseError::HeadTooLarge),
                Some(&LF) => Ok(Some(p + 2)),
                Some(_) => Err(ParseError::BareCrOrNul),
                None => incomplete(len, max_end),
            };
        }
        let name_start = p;
        while p < len && TCHAR[buf[p] as usize] {
            p += 1;
        }
        let Some(&b) = buf.get(p) else {
            return incomplete(len, max_end);
        };
        if b != b':' || p == name_start {
            // Includes obs-fold (a line starting with SP/HTAB) and whitespace
            // between the name and the colon.
            return Err(match (b, buf.get(p + 1)) {
                (0, _) => ParseError::BareCrOrNul,
                (CR, Some(&n)) if n != LF => ParseError::BareCrOrNul,
                _ => ParseError::BadHeader,
            });
        }
        let name_end = p;
        p += 1;
        while p < len && matches!(buf[p], SP | HTAB) {
            p += 1;
        }
        let value_start = p;
        while p < len && FIELD_VALUE[buf[p] as usize] {
            p += 1;
        }
        let Some(&b) = buf.get(p) else {
            return incomplete(len, max_end);
        };
        match (b, buf.get(p + 1)) {
            (CR, Some(&LF)) => {}
            (CR, None) => return incomplete(len, max_end),
            (CR, Some(_)) | (0, _) => return Err(ParseError::BareCrOrNul),
            _ => return Err(ParseError::BadHeader),
        }
        let mut value_end = p;
        while value_end > value_start && matches!(buf[value_end - 1], SP | HTAB) {
            value_end -= 1;
        }
        if fields.len() >= limits.max_headers {
            return Err(ParseError::HeadTooLarge);
        }
        fields.push(FieldSpan {
            name: name_start - base..name_end - base,
            value: value_start - base..value_end - base,
        });
        p += 2;
    }
}

/// What the framing and connection fields of a head say, gathered in one pass.
#[derive(Default)]
struct Semantics {
    cl_count: u32,
    cl: Option<Range<usize>>,
    te_count: u32,
    te: Option<Range<usize>>,
    host_count: u32,
    host: Option<Range<usize>>,
    close: bool,
    keep_alive: bool,
    upgrade_token: bool,
    upgrade_field: bool,
    expect_continue: bool,
}

impl Semantics {
    fn collect(raw: &[u8], fields: &[FieldSpan]) -> Self {
        let mut s = Self::default();
        for f in fields {
            let name = &raw[f.name.clone()];
            match name.len() {
                4 if name_is(name, b"host") => {
                    s.host_count += 1;
                    s.host.get_or_insert(f.value.clone());
                }
                6 if name_is(name, b"expect") => {
                    s.expect_continue |= raw[f.value.clone()].eq_ignore_ascii_case(b"100-continue");
                }
                7 if name_is(name, b"upgrade") => s.upgrade_field = true,
                10 if name_is(name, b"connection") => {
                    for token in list_elements(&raw[f.value.clone()]) {
                        if token.eq_ignore_ascii_case(b"close") {
                            s.close = true;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            s.keep_alive = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            s.upgrade_token = true;
                        }
                    }
                }
                14 if name_is(name, b"content-length") => {
                    s.cl_count += 1;
                    s.cl.get_or_insert(f.value.clone());
                }
                17 if name_is(name, b"transfer-encoding") => {
                    s.te_count += 1;
                    s.te.get_or_insert(f.value.clone());
                }
                _ => {}
            }
        }
        s
    }
}

/// `1*DIGIT` fitting in a u64; no sign, no spaces, no list.
fn parse_content_length(v: &[u8]) -> Result<u64, ParseError> {
    if v.is_empty() {
        return Err(ParseError::BadContentLength);
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return Err(ParseError::BadContentLength);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::BadContentLength)?;
    }
    Ok(n)
}

/// The transfer codings of a response, over all its Transfer-Encoding fields:
/// `true` if `chunked` is the final coding (RFC 9112 6.3). Chunked applied
/// twice, or a coding that is not a token, is refused.
fn response_transfer_coding(raw: &[u8], fields: &[FieldSpan]) -> Result<bool, ParseError> {
    let mut chunked_seen = false;
    let mut last_is_chunked = false;
    let mut any = false;
    for f in fields
        .iter()
        .filter(|f| name_is(&raw[f.name.clone()], b"transfer-encoding"))
    {
        for coding in list_elements(&raw[f.value.clone()]) {
            let name = trim_ows(coding.split(|&b| b == b';').next().unwrap_or(coding));
            if !is_token(name) {
                return Err(ParseError::BadTransferEncoding);
            }
            any = true;
            last_is_chunked = name.eq_ignore_ascii_case(b"chunked");
            if last_is_chunked {
                if chunked_seen {
                    return Err(ParseError::BadTransferEncoding);
                }
                chunked_seen = true;
            }
        }
    }
    if !any {
        return Err(ParseError::BadTransferEncoding);
    }
    Ok(last_is_chunked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(parse_content_length(b"0"), Ok(0));
        assert_eq!(parse_content_length(b"007"), Ok(7));
        assert_eq!(parse_content_length(b"18446744073709551615"), Ok(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+5",
            b"-5",
            b"5 ",
            b" 5",
            b"0x5",
            b"5,5",
            b"5.0",
        ] {
            assert_eq!(
                parse_content_length(bad),
                Err(ParseError::BadContentLength),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"HTTP/1.1"), Ok(Version::Http11));
        assert_eq!(parse_version(b"HTTP/1.0"), Ok(Version::Http10));
        assert_eq!(parse_version(b"HTTP/2.0"), Err(ParseError::BadVersion));
        assert_eq!(parse_version(b"HTTP/0.9"), Err(ParseError::BadVersion));
        assert_eq!(parse_version(b"http/1.1"), Err(ParseError::BadStartLine));
        assert_eq!(parse_version(b"HTTP/1.10"), Err(ParseError::BadStartLine));
        assert_eq!(parse_version(b"HTTP/1.1\0"), Err(ParseError::BareCrOrNul));
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 OK"),
            Ok((Version::Http11, 200, 13..15))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.0 404"),
            Ok((Version::Http10, 404, 12..12))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 204 "),
            Ok((Version::Http11, 204, 13..13))
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 099 x"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 600 x"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 20 OK"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 2000 OK"),
            Err(ParseError::BadStartLine)
        );
        assert_eq!(
            parse_status_line(b"HTTP/3.0 200 OK"),
            Err(ParseError::BadVersion)
        );
        assert_eq!(
            parse_status_line(b"HTTP/1.1 200 O\x01K"),
            Err(ParseError::BadStartLine)
        );
    }
}
