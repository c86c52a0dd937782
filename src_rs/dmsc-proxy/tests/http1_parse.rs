//! Request and response head parsing: accepted forms, refused forms, limits.

use dmsc_proxy::http1::{
    parse_request, parse_response, BodyFraming, ConnectionInfo, Head, Limits, ParseError,
    RequestHead, Version,
};

fn req(text: &[u8]) -> Result<Option<(RequestHead, usize)>, ParseError> {
    parse_request(text, &Limits::default())
}

fn ok_req(text: &[u8]) -> RequestHead {
    match req(text) {
        Ok(Some((head, n))) => {
            assert_eq!(n, text.len(), "whole input is the head");
            head
        }
        other => panic!(
            "expected a head for {:?}, got {other:?}",
            String::from_utf8_lossy(text)
        ),
    }
}

fn err_req(text: &[u8]) -> ParseError {
    match req(text) {
        Err(e) => e,
        other => panic!(
            "expected an error for {:?}, got {other:?}",
            String::from_utf8_lossy(text)
        ),
    }
}

/// A request with `fields` (CRLF-terminated lines) after a standard request line.
fn with_fields(fields: &str) -> Vec<u8> {
    format!("POST /submit HTTP/1.1\r\nHost: example.com\r\n{fields}\r\n").into_bytes()
}

const TYPICAL: &[u8] = b"GET /api/v1/items?id=42&name=a%20b HTTP/1.1\r\n\
Host: example.com:8080\r\n\
User-Agent: curl/8.5.0\r\n\
Accept: */*\r\n\
Accept-Encoding: gzip, deflate\r\n\
Cookie: session=abc123; theme=\"dark\"\r\n\
X-Request-Id: 7f9c1e2a\r\n\
Connection: keep-alive\r\n\
Cache-Control: no-cache\r\n\r\n";

#[test]
fn typical_request_spans() {
    let head = ok_req(TYPICAL);
    assert_eq!(head.method(), "GET");
    assert_eq!(head.target(), "/api/v1/items?id=42&name=a%20b");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.fields.len(), 8);
    assert_eq!(head.header("user-agent"), Some(&b"curl/8.5.0"[..]));
    assert_eq!(head.header("ACCEPT-ENCODING"), Some(&b"gzip, deflate"[..]));
    assert_eq!(head.framing, BodyFraming::Empty);
    assert_eq!(head.connection, ConnectionInfo::default());
    let names: Vec<&[u8]> = head.header_pairs().map(|(n, _)| n).collect();
    assert_eq!(names[0], b"Host");
    assert_eq!(names[7], b"Cache-Control");
}

#[test]
fn leading_empty_lines_are_skipped() {
    let mut text = b"\r\n\r\n".to_vec();
    text.extend_from_slice(TYPICAL);
    let (head, n) = req(&text).expect("valid").expect("complete");
    assert_eq!(n, text.len());
    assert_eq!(head.raw, TYPICAL);
    assert_eq!(head.method(), "GET");
    assert_eq!(req(b"\r\n\r\n"), Ok(None));
    assert_eq!(
        err_req(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ParseError::BadStartLine
    );
    assert_eq!(
        err_req(b"\r\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
        ParseError::BareCrOrNul
    );
}

#[test]
fn endless_empty_lines_hit_the_head_limit() {
    let limits = Limits {
        max_head: 100,
        ..Limits::default()
    };
    let text = b"\r\n".repeat(60);
    assert_eq!(
        parse_request(&text, &limits).unwrap_err(),
        ParseError::HeadTooLarge
    );
}

#[test]
fn every_prefix_of_a_valid_head_is_incomplete() {
    let mut texts = vec![TYPICAL.to_vec(), with_fields("Content-Length: 5\r\n")];
    texts.push(b"\r\nOPTIONS * HTTP/1.0\r\n\r\n".to_vec());
    for text in &texts {
        for len in 0..text.len() {
            assert_eq!(
                req(&text[..len]),
                Ok(None),
                "prefix {len} of {:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(req(text).expect("valid").is_some());
    }
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nServer: x\r\n\r\n";
    for len in 0..resp.len() {
        assert!(parse_response(&resp[..len], &Limits::default(), "GET")
            .expect("prefix")
            .is_none());
    }
}

#[test]
fn pipelined_requests_in_one_buffer() {
    let mut buf = Vec::new();
    buf.extend_from_slice(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello");
    buf.extend_from_slice(
        b"POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    buf.extend_from_slice(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    let (first, n1) = req(&buf).expect("valid").expect("complete");
    assert_eq!(first.target(), "/a");
    assert_eq!(first.framing, BodyFraming::ContentLength(5));
    assert_eq!(&buf[n1..n1 + 5], b"hello");
    let rest = &buf[n1 + 5..];
    let (second, n2) = req(rest).expect("valid").expect("complete");
    assert_eq!(second.target(), "/b");
    assert_eq!(second.framing, BodyFraming::Chunked);
    let rest = &rest[n2 + 5..];
    let (third, n3) = req(rest).expect("valid").expect("complete");
    assert_eq!(third.target(), "/c");
    assert_eq!(n3, rest.len());
}

#[test]
fn request_line_forms() {
    assert_eq!(
        ok_req(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").target(),
        "*"
    );
    assert_eq!(
        ok_req(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").target(),
        "example.com:443"
    );
    assert_eq!(
        ok_req(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n").host(),
        Some("[::1]")
    );
    let abs = ok_req(b"GET http://example.org:81/p?q=1 HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(abs.path(), "/p");
    assert_eq!(abs.query(), Some("q=1"));
    assert_eq!(abs.host(), Some("example.org"));
    let bare = ok_req(b"GET HTTPS://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n");
    assert_eq!(bare.path(), "/");
    assert_eq!(bare.query(), None);
    assert_eq!(
        ok_req(b"GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n").path(),
        "/"
    );
    // Extension methods are tokens.
    assert_eq!(
        ok_req(b"PROPFIND /dav HTTP/1.1\r\nHost: a\r\n\r\n").method(),
        "PROPFIND"
    );
}

#[test]
fn request_line_rejects() {
    let bad_start = [
        &b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"GET /  HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / http/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1.1\r\nHost: a\r\n\r\n",
        b"GET /\r\nHost: a\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\r\n\r\n",
        // asterisk-form is for OPTIONS only; authority-form for CONNECT only.
        b"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT /path HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT http://example.com:80/ HTTP/1.1\r\nHost: a\r\n\r\n",
        // absolute-form: http(s) with a host, no userinfo.
        b"GET ftp://example.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http:///path HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://user@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://h:/ HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for text in bad_start {
        assert_eq!(
            err_req(text),
            ParseError::BadStartLine,
            "{:?}",
            String::from_utf8_lossy(text)
        );
    }
    for v in ["HTTP/2.0", "HTTP/0.9", "HTTP/1.2", "HTTP/3.0"] {
        let text = format!("GET / {v}\r\nHost: a\r\n\r\n");
        assert_eq!(err_req(text.as_bytes()), ParseError::BadVersion, "{v}");
    }
    assert_eq!(
        err_req(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"),
        ParseError::BareCrOrNul
    );
    assert_eq!(
        err_req(b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"),
        ParseError::BareCrOrNul
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\rHost: a\r\n\r\n"),
        ParseError::BareCrOrNul
    );
    // Refused before the line ends.
    assert_eq!(err_req(b"GET /\0"), ParseError::BareCrOrNul);
    assert_eq!(err_req(b"GET /\rx"), ParseError::BareCrOrNul);
    assert_eq!(req(b"GET / HTTP/1.1\r"), Ok(None));
}

#[test]
fn start_line_limit_applies_to_partial_lines() {
    let limits = Limits {
        max_start_line: 32,
        ..Limits::default()
    };
    let exact = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(32 - 14));
    assert!(parse_request(exact.as_bytes(), &limits)
        .expect("fits")
        .is_some());
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(32 - 13));
    assert_eq!(
        parse_request(long.as_bytes(), &limits).unwrap_err(),
        ParseError::StartLineTooLong
    );
    // No line end yet, but already over the limit: refuse instead of waiting.
    let partial = format!("GET /{}", "a".repeat(40));
    assert_eq!(
        parse_request(partial.as_bytes(), &limits).unwrap_err(),
        ParseError::StartLineTooLong
    );
    assert_eq!(parse_request(&b"GET /aaaa"[..], &limits), Ok(None));
    let resp = format!("HTTP/1.1 200 {}", "x".repeat(40));
    assert_eq!(
        parse_response(resp.as_bytes(), &limits, "GET").unwrap_err(),
        ParseError::StartLineTooLong
    );
}

#[test]
fn head_limits() {
    let limits = Limits {
        max_head: 64,
        max_headers: 3,
        ..Limits::default()
    };
    let small = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(parse_request(small, &limits).expect("fits").is_some());
    let many = b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(
        parse_request(many, &limits).unwrap_err(),
        ParseError::HeadTooLarge
    );
    // Too many fields is refused before the head is complete.
    assert_eq!(
        parse_request(&many[..many.len() - 2], &limits).unwrap_err(),
        ParseError::HeadTooLarge
    );
    let big = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "v".repeat(40));
    assert_eq!(
        parse_request(big.as_bytes(), &limits).unwrap_err(),
        ParseError::HeadTooLarge
    );
    let partial = format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}", "v".repeat(60));
    assert_eq!(
        parse_request(partial.as_bytes(), &limits).unwrap_err(),
        ParseError::HeadTooLarge
    );
    // Exactly at the limit is fine.
    let pad = 64 - b"GET / HTTP/1.1\r\nHost: a\r\nX: \r\n\r\n".len();
    let exact = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "v".repeat(pad)
    );
    assert_eq!(exact.len(), 64);
    assert!(parse_request(exact.as_bytes(), &limits)
        .expect("fits")
        .is_some());
}

#[test]
fn field_syntax() {
    let head = ok_req(&with_fields(
        "X-A:value\r\nX-B: \t padded \t \r\nX-Empty:\r\nX-Obs: caf\u{e9}\r\n",
    ));
    assert_eq!(head.header("x-a"), Some(&b"value"[..]));
    assert_eq!(head.header("x-b"), Some(&b"padded"[..]));
    assert_eq!(head.header("x-empty"), Some(&b""[..]));
    assert_eq!(head.header("x-obs"), Some("caf\u{e9}".as_bytes()));
    assert_eq!(
        ok_req(&with_fields("X-In: a \t b\r\n")).header("x-in"),
        Some(&b"a \t b"[..])
    );

    let bad_header = [
        "X-A : v\r\n",
        "X-A\t: v\r\n",
        "X-A v\r\n",
        ": v\r\n",
        "X A: v\r\n",
        "X(A): v\r\n",
        "X-A: v\r\n folded\r\n",
        "X-A: v\r\n\tfolded\r\n",
        "X-A: a\x01b\r\n",
        "X-A: a\x7fb\r\n",
        "X-A: a\nX-B: b\r\n",
        "X-A: a\n",
        "NoColon\r\n",
    ];
    for f in bad_header {
        assert_eq!(err_req(&with_fields(f)), ParseError::BadHeader, "{f:?}");
    }
    for f in [
        "X-A: a\rb\r\n",
        "X-A: a\0b\r\n",
        "X\0A: b\r\n",
        "X-A: a\r\r\n",
    ] {
        assert_eq!(err_req(&with_fields(f)), ParseError::BareCrOrNul, "{f:?}");
    }
    // Whitespace between the request line and the first field.
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"),
        ParseError::BadHeader
    );
    // The head must end with CRLF CRLF.
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a\r\n\n"),
        ParseError::BadHeader
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a\r\n\rX"),
        ParseError::BareCrOrNul
    );
}

#[test]
fn content_length_rules() {
    assert_eq!(
        ok_req(&with_fields("Content-Length: 42\r\n")).framing,
        BodyFraming::ContentLength(42)
    );
    assert_eq!(
        ok_req(&with_fields("content-length:0\r\n")).framing,
        BodyFraming::ContentLength(0)
    );
    assert_eq!(
        ok_req(&with_fields("Content-Length:  7  \r\n")).framing,
        BodyFraming::ContentLength(7)
    );
    assert_eq!(
        ok_req(&with_fields("Content-Length: 18446744073709551615\r\n")).framing,
        BodyFraming::ContentLength(u64::MAX)
    );
    for f in [
        "Content-Length: +5\r\n",
        "Content-Length: -5\r\n",
        "Content-Length: 0x5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 5,5\r\n",
        "Content-Length: 5, 5\r\n",
        "Content-Length: 5.0\r\n",
        "Content-Length:\r\n",
        "Content-Length: 18446744073709551616\r\n",
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
        "Content-Length: \u{662}\r\n",
    ] {
        assert_eq!(
            err_req(&with_fields(f)),
            ParseError::BadContentLength,
            "{f:?}"
        );
    }
}

#[test]
fn transfer_encoding_rules() {
    assert_eq!(
        ok_req(&with_fields("Transfer-Encoding: chunked\r\n")).framing,
        BodyFraming::Chunked
    );
    assert_eq!(
        ok_req(&with_fields("transfer-encoding:CHUNKED \r\n")).framing,
        BodyFraming::Chunked
    );
    for f in [
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: identity, chunked\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer-Encoding:\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
    ] {
        assert_eq!(
            err_req(&with_fields(f)),
            ParseError::BadTransferEncoding,
            "{f:?}"
        );
    }
    let http10 = b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err_req(http10), ParseError::BadTransferEncoding);
}

#[test]
fn request_smuggling_shapes_are_refused() {
    // CL.TE and TE.CL: both framings present, in either order.
    for f in [
        "Content-Length: 13\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 4\r\nContent-Length: 5\r\n",
    ] {
        assert_eq!(
            err_req(&with_fields(f)),
            ParseError::ContentLengthAndTransferEncoding,
            "{f:?}"
        );
    }
    // TE.TE obfuscations.
    for f in [
        "Transfer-Encoding : chunked\r\n",
        "Transfer-Encoding\t: chunked\r\n",
        " Transfer-Encoding: chunked\r\n",
        "X: y\r\n Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding:\x0bchunked\r\n",
        "Transfer-Encoding: chunked\r\n\tidentity\r\n",
        "Transfer-Encoding\r\n : chunked\r\n",
    ] {
        assert_eq!(err_req(&with_fields(f)), ParseError::BadHeader, "{f:?}");
    }
    for f in [
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-encoding: x\r\n",
        "Transfer-Encoding: x\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunk\r\n",
        "Transfer-Encoding: chunked-false\r\n",
        "Transfer-Encoding: cow\r\n",
    ] {
        assert_eq!(
            err_req(&with_fields(f)),
            ParseError::BadTransferEncoding,
            "{f:?}"
        );
    }
    // Content-Length obfuscations.
    for f in [
        "Content-Length: +5\r\n",
        "Content-Length: 5 \r\nContent-Length: 5\r\n",
        "Content-Length: 0x5\r\n",
    ] {
        assert_eq!(
            err_req(&with_fields(f)),
            ParseError::BadContentLength,
            "{f:?}"
        );
    }
    assert_eq!(
        err_req(&with_fields("Content-Length : 5\r\n")),
        ParseError::BadHeader
    );
    assert_eq!(
        err_req(&with_fields("Content-Length: 5\r\rX: y\r\n")),
        ParseError::BareCrOrNul
    );
    assert_eq!(
        err_req(&with_fields("Content-Length: 5\0\r\n")),
        ParseError::BareCrOrNul
    );
}

#[test]
fn host_rules() {
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"),
        ParseError::BadHost
    );
    assert_eq!(
        err_req(b"GET / HTTP/1.1\r\nHost: a:x\r\n\r\n"),
        ParseError::BadHost
    );
    let http10 = ok_req(b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(http10.host(), None);
    assert_eq!(ok_req(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host(), None);
    assert_eq!(
        ok_req(b"GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n").host(),
        Some("Example.COM")
    );
    assert_eq!(
        ok_req(b"GET / HTTP/1.1\r\nHost: a.b:8080\r\n\r\n").host(),
        Some("a.b")
    );
    assert_eq!(
        ok_req(b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:8443\r\n\r\n").host(),
        Some("[2001:db8::1]")
    );
    assert_eq!(
        ok_req(b"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n").host(),
        Some("10.0.0.1")
    );
}

#[test]
fn connection_info() {
    let info = |text: &[u8]| ok_req(text).connection;
    assert!(!info(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").close);
    assert!(info(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").close);
    assert!(info(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo, CLOSE\r\n\r\n").close);
    assert!(info(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nConnection: close\r\n\r\n").close);
    assert!(info(b"GET / HTTP/1.0\r\n\r\n").close);
    assert!(!info(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").close);
    assert!(info(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").close);

    let up =
        info(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert!(up.upgrade);
    assert!(!up.close);
    assert!(!info(b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n").upgrade);
    assert!(!info(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").upgrade);

    assert!(
        info(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    assert!(
        !info(b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
    // HTTP/1.0 clients do not wait for 100 Continue (RFC 9110 10.1.1).
    assert!(
        !info(b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
            .expect_continue
    );
}

#[test]
fn accessors() {
    let head = ok_req(TYPICAL);
    assert_eq!(head.path(), "/api/v1/items");
    assert_eq!(head.query(), Some("id=42&name=a%20b"));
    assert_eq!(head.query_param("id").as_deref(), Some("42"));
    assert_eq!(head.query_param("name").as_deref(), Some("a b"));
    assert_eq!(head.query_param("missing"), None);
    assert_eq!(head.host(), Some("example.com"));
    assert_eq!(head.cookie("session"), Some("abc123"));
    assert_eq!(head.cookie("theme"), Some("dark"));
    assert_eq!(head.cookie("Session"), None);
    assert!(head.is_idempotent());

    let q = ok_req(b"GET /s?a=1&b=x+y%2Bz&c&d=%zz%4&e%3D=v&a=2&=empty HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(q.query_param("a").as_deref(), Some("1"));
    assert_eq!(q.query_param("b").as_deref(), Some("x y+z"));
    assert_eq!(q.query_param("c").as_deref(), Some(""));
    assert_eq!(q.query_param("d").as_deref(), Some("%zz%4"));
    assert_eq!(q.query_param("e=").as_deref(), Some("v"));
    assert_eq!(q.query_param("").as_deref(), Some("empty"));
    let utf = ok_req(b"GET /s?n=caf%C3%A9&bad=%FF HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(utf.query_param("n").as_deref(), Some("caf\u{e9}"));
    assert_eq!(utf.query_param("bad").as_deref(), Some("\u{fffd}"));

    let empty_q = ok_req(b"GET /p? HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(empty_q.path(), "/p");
    assert_eq!(empty_q.query(), Some(""));
    assert_eq!(ok_req(b"GET /p HTTP/1.1\r\nHost: h\r\n\r\n").query(), None);

    let cookies = ok_req(
        b"GET / HTTP/1.1\r\nHost: h\r\nCookie: a=1;b=2\r\nX: y\r\nCookie: c = 3 ; flag; d=\r\n\r\n",
    );
    assert_eq!(cookies.cookie("a"), Some("1"));
    assert_eq!(cookies.cookie("b"), Some("2"));
    assert_eq!(cookies.cookie("c"), Some("3"));
    assert_eq!(cookies.cookie("d"), Some(""));
    assert_eq!(cookies.cookie("flag"), None);

    for (method, idem) in [
        ("GET", true),
        ("HEAD", true),
        ("OPTIONS", true),
        ("TRACE", true),
        ("PUT", true),
        ("DELETE", true),
        ("POST", false),
        ("PATCH", false),
        ("get", false),
    ] {
        let text = format!("{method} / HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(ok_req(text.as_bytes()).is_idempotent(), idem, "{method}");
    }

    let connect = ok_req(b"CONNECT db.internal:5432 HTTP/1.1\r\nHost: db.internal:5432\r\n\r\n");
    assert_eq!(connect.path(), "");
    assert_eq!(connect.query(), None);
    assert_eq!(connect.host(), Some("db.internal"));
    let star = ok_req(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(star.path(), "*");
}

#[test]
fn response_framing() {
    let limits = Limits::default();
    let framing = |text: &[u8], method: &str| {
        let (head, n) = parse_response(text, &limits, method)
            .expect("valid")
            .expect("complete");
        assert_eq!(n, text.len());
        head.framing
    };
    let cl = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
    assert_eq!(framing(cl, "GET"), BodyFraming::ContentLength(12));
    assert_eq!(framing(cl, "HEAD"), BodyFraming::Empty);
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(framing(chunked, "GET"), BodyFraming::Chunked);
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "GET"
        ),
        BodyFraming::Chunked
    );
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET"
        ),
        BodyFraming::Chunked
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"),
        BodyFraming::CloseDelimited
    );
    assert_eq!(
        framing(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "GET"
        ),
        BodyFraming::CloseDelimited
    );
    assert_eq!(
        framing(b"HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", "GET"),
        BodyFraming::CloseDelimited
    );
    for status in [
        "100 Continue",
        "101 Switching Protocols",
        "204 No Content",
        "304 Not Modified",
    ] {
        let text = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
        assert_eq!(
            framing(text.as_bytes(), "GET"),
            BodyFraming::Empty,
            "{status}"
        );
    }
    assert_eq!(
        framing(b"HTTP/1.1 200 Connection established\r\n\r\n", "CONNECT"),
        BodyFraming::Empty
    );
    assert_eq!(
        framing(b"HTTP/1.1 407 Auth\r\nContent-Length: 2\r\n\r\n", "CONNECT"),
        BodyFraming::ContentLength(2)
    );
}

#[test]
fn response_rejects() {
    let limits = Limits::default();
    let err = |text: &[u8]| parse_response(text, &limits, "GET").expect_err("must be refused");
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ParseError::ContentLengthAndTransferEncoding
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"),
        ParseError::BadContentLength
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 1\r\n\r\n"),
        ParseError::BadContentLength
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        ParseError::BadTransferEncoding
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ,\r\n\r\n"),
        ParseError::BadTransferEncoding
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \"x\"\r\n\r\n"),
        ParseError::BadTransferEncoding
    );
    assert_eq!(
        err(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ParseError::BadTransferEncoding
    );
    assert_eq!(err(b"HTTP/2.0 200 OK\r\n\r\n"), ParseError::BadVersion);
    assert_eq!(err(b"HTTP/1.1 99 OK\r\n\r\n"), ParseError::BadStartLine);
    assert_eq!(err(b"HTTP/1.1 600 OK\r\n\r\n"), ParseError::BadStartLine);
    assert_eq!(err(b"HTTP/1.1 2OO OK\r\n\r\n"), ParseError::BadStartLine);
    assert_eq!(err(b"HTTP/1.1  200 OK\r\n\r\n"), ParseError::BadStartLine);
    assert_eq!(err(b"HTTP/1.1 200OK\r\n\r\n"), ParseError::BadStartLine);
    assert_eq!(err(b"HTTP/1.1 200 O\rK\r\n\r\n"), ParseError::BareCrOrNul);
    assert_eq!(
        err(b"HTTP/1.1 200 OK\nServer: x\r\n\r\n"),
        ParseError::BadStartLine
    );
    assert_eq!(
        err(b"\r\nHTTP/1.1 200 OK\r\n\r\n"),
        ParseError::BadStartLine
    );
    assert_eq!(
        err(b"HTTP/1.1 200 OK\r\nServer : x\r\n\r\n"),
        ParseError::BadHeader
    );
}

#[test]
fn response_fields_and_connection() {
    let limits = Limits::default();
    let text =
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found";
    let (head, n) = parse_response(text, &limits, "GET")
        .expect("valid")
        .expect("complete");
    assert_eq!(n, text.len() - 9);
    assert_eq!(head.status, 404);
    assert_eq!(head.reason_phrase(), b"Not Found");
    assert_eq!(head.header("content-type"), Some(&b"text/plain"[..]));
    assert!(!head.connection.close);

    let conn = |text: &[u8]| {
        parse_response(text, &limits, "GET")
            .expect("valid")
            .expect("complete")
            .0
            .connection
    };
    assert!(conn(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").close);
    assert!(conn(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").close);
    assert!(!conn(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").close);
    // A close-delimited body ends with the connection.
    assert!(conn(b"HTTP/1.1 200 OK\r\n\r\n").close);
    let up = conn(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert!(up.upgrade && !up.close);
    let (empty_reason, _) = parse_response(b"HTTP/1.1 200\r\n\r\n", &limits, "HEAD")
        .expect("valid")
        .expect("complete");
    assert_eq!(empty_reason.reason_phrase(), b"");
}
