//! Writing request and response heads to forward.

use dmsc_proxy::http1::{
    encode_request_head, encode_response_head, is_hop_by_hop, parse_request, parse_response,
    BodyFraming, Head, HeadEdits, Limits, RequestHead, ResponseHead,
};

fn request(text: &str) -> RequestHead {
    parse_request(text.as_bytes(), &Limits::default())
        .expect("valid")
        .expect("complete")
        .0
}

fn response(text: &str, method: &str) -> ResponseHead {
    parse_response(text.as_bytes(), &Limits::default(), method)
        .expect("valid")
        .expect("complete")
        .0
}

fn encode_req(head: &RequestHead, edits: &HeadEdits<'_>, framing: BodyFraming) -> String {
    let mut out = Vec::new();
    encode_request_head(head, edits, framing, &mut out);
    String::from_utf8(out).expect("ascii")
}

fn encode_resp(
    head: &ResponseHead,
    edits: &HeadEdits<'_>,
    framing: BodyFraming,
    close: bool,
) -> String {
    let mut out = Vec::new();
    encode_response_head(head, edits, framing, close, &mut out);
    String::from_utf8(out).expect("ascii")
}

#[test]
fn hop_by_hop_names() {
    for name in [
        "Connection",
        "keep-alive",
        "PROXY-CONNECTION",
        "te",
        "Trailer",
        "transfer-encoding",
        "Upgrade",
    ] {
        assert!(is_hop_by_hop(name.as_bytes()), "{name}");
    }
    for name in [
        "content-length",
        "host",
        "tee",
        "trailers",
        "proxy-authenticate",
        "upgrade-insecure-requests",
        "",
    ] {
        assert!(!is_hop_by_hop(name.as_bytes()), "{name}");
    }
}

#[test]
fn request_passes_end_to_end_fields_and_drops_hop_by_hop() {
    let head = request(
        "POST /upload HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\nConnection: keep-alive, X-Secret\r\n\
         Keep-Alive: timeout=5\r\nTE: trailers\r\nX-Secret: s\r\nTrailer: X-Sum\r\n\
         Proxy-Connection: keep-alive\r\nContent-Length:  5\r\nAccept:*/*\r\n\r\n",
    );
    let out = encode_req(&head, &HeadEdits::default(), head.framing);
    assert_eq!(
        out,
        "POST /upload HTTP/1.1\r\nHost: svc\r\nUser-Agent: t\r\nAccept: */*\r\ncontent-length: 5\r\n\r\n"
    );
    // The output parses back to the same request.
    let again = request(&out);
    assert_eq!(again.framing, BodyFraming::ContentLength(5));
    assert_eq!(again.header("accept"), Some(&b"*/*"[..]));
}

#[test]
fn request_framing_argument_replaces_the_source_framing() {
    let head = request("POST /a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(
        encode_req(&head, &HeadEdits::default(), BodyFraming::Chunked),
        "POST /a HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    assert_eq!(
        encode_req(
            &head,
            &HeadEdits::default(),
            BodyFraming::ContentLength(1234567890)
        ),
        "POST /a HTTP/1.1\r\nHost: h\r\ncontent-length: 1234567890\r\n\r\n"
    );
    assert_eq!(
        encode_req(&head, &HeadEdits::default(), BodyFraming::Empty),
        "POST /a HTTP/1.1\r\nHost: h\r\n\r\n"
    );
    let zero = request("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        encode_req(&zero, &HeadEdits::default(), zero.framing),
        "POST /a HTTP/1.1\r\nHost: h\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn request_edits() {
    let head = request("GET /old?x=1 HTTP/1.0\r\nUser-Agent: t\r\nHost: public.example\r\nX-Drop: 1\r\nx-drop: 2\r\n\r\n");
    let edits = HeadEdits {
        remove: &["X-DROP"],
        add: &[("x-forwarded-for", b"10.0.0.1"), ("x-request-id", b"abc")],
        target: Some("/new?x=1"),
        host: Some("backend:8080"),
    };
    assert_eq!(
        encode_req(&head, &edits, BodyFraming::Empty),
        "GET /new?x=1 HTTP/1.1\r\nUser-Agent: t\r\nhost: backend:8080\r\n\
         x-forwarded-for: 10.0.0.1\r\nx-request-id: abc\r\n\r\n"
    );
    // Without a Host field, the replacement goes first.
    let no_host = request("GET / HTTP/1.0\r\nAccept: */*\r\n\r\n");
    let edits = HeadEdits {
        host: Some("h"),
        ..HeadEdits::default()
    };
    assert_eq!(
        encode_req(&no_host, &edits, BodyFraming::Empty),
        "GET / HTTP/1.1\r\nhost: h\r\nAccept: */*\r\n\r\n"
    );
    // HTTP/1.1 requires a Host field: an empty one when nothing is known.
    assert_eq!(
        encode_req(&no_host, &HeadEdits::default(), BodyFraming::Empty),
        "GET / HTTP/1.1\r\nhost: \r\nAccept: */*\r\n\r\n"
    );
}

#[test]
fn absolute_form_becomes_origin_form() {
    let head =
        request("GET http://Example.org:81/p?q=1 HTTP/1.1\r\nHost: other\r\nAccept: */*\r\n\r\n");
    assert_eq!(
        encode_req(&head, &HeadEdits::default(), BodyFraming::Empty),
        "GET /p?q=1 HTTP/1.1\r\nhost: Example.org:81\r\nAccept: */*\r\n\r\n"
    );
    let bare = request("GET http://h?q HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        encode_req(&bare, &HeadEdits::default(), BodyFraming::Empty),
        "GET /?q HTTP/1.1\r\nhost: h\r\n\r\n"
    );
    let edits = HeadEdits {
        target: Some("/x"),
        host: Some("b"),
        ..HeadEdits::default()
    };
    assert_eq!(
        encode_req(&head, &edits, BodyFraming::Empty),
        "GET /x HTTP/1.1\r\nhost: b\r\nAccept: */*\r\n\r\n"
    );
}

#[test]
fn upgrade_requests_keep_upgrade() {
    let head = request(
        "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: k\r\nSec-WebSocket-Version: 13\r\n\r\n",
    );
    assert_eq!(
        encode_req(&head, &HeadEdits::default(), head.framing),
        "GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nSec-WebSocket-Key: k\r\n\
         Sec-WebSocket-Version: 13\r\nconnection: upgrade\r\n\r\n"
    );
    // Upgrade without Connection: upgrade is hop-by-hop and dropped.
    let stray = request("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: h2c\r\n\r\n");
    assert_eq!(
        encode_req(&stray, &HeadEdits::default(), stray.framing),
        "GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    );
}

#[test]
fn connection_cannot_strip_host() {
    let head =
        request("GET / HTTP/1.1\r\nHost: h\r\nConnection: host, x-a\r\nX-A: 1\r\nX-B: 2\r\n\r\n");
    assert_eq!(
        encode_req(&head, &HeadEdits::default(), head.framing),
        "GET / HTTP/1.1\r\nHost: h\r\nX-B: 2\r\n\r\n"
    );
}

#[test]
fn response_fields_and_framing() {
    let head = response(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
         Content-Length: 12\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(&head, &HeadEdits::default(), head.framing, false),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\ncontent-length: 12\r\n\r\n"
    );
    let edits = HeadEdits {
        remove: &["set-cookie"],
        add: &[("x-served-by", b"dmsc")],
        ..HeadEdits::default()
    };
    assert_eq!(
        encode_resp(&head, &edits, BodyFraming::Chunked, true),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nx-served-by: dmsc\r\n\
         transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn response_version_is_always_http11() {
    let head = response("HTTP/1.0 404 Not Found\r\nContent-Length: 3\r\n\r\n", "GET");
    assert_eq!(
        encode_resp(&head, &HeadEdits::default(), head.framing, true),
        "HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\nconnection: close\r\n\r\n"
    );
    let no_reason = response("HTTP/1.1 503\r\n\r\n", "GET");
    assert_eq!(
        encode_resp(&no_reason, &HeadEdits::default(), BodyFraming::Empty, false),
        "HTTP/1.1 503 \r\n\r\n"
    );
}

#[test]
fn bodiless_responses_keep_their_content_length() {
    let head_resp = response(
        "HTTP/1.1 200 OK\r\nContent-Length: 512\r\nETag: \"x\"\r\n\r\n",
        "HEAD",
    );
    assert_eq!(head_resp.framing, BodyFraming::Empty);
    assert_eq!(
        encode_resp(&head_resp, &HeadEdits::default(), head_resp.framing, false),
        "HTTP/1.1 200 OK\r\nContent-Length: 512\r\nETag: \"x\"\r\n\r\n"
    );
    let not_modified = response(
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 512\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(
            &not_modified,
            &HeadEdits::default(),
            BodyFraming::Empty,
            false
        ),
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 512\r\n\r\n"
    );
    let no_content = response(
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(
            &no_content,
            &HeadEdits::default(),
            BodyFraming::Empty,
            false
        ),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn response_transfer_codings_are_kept() {
    let gz = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        "GET",
    );
    assert_eq!(gz.framing, BodyFraming::Chunked);
    assert_eq!(
        encode_resp(&gz, &HeadEdits::default(), gz.framing, false),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"
    );
    let close = response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET");
    assert_eq!(close.framing, BodyFraming::CloseDelimited);
    assert_eq!(
        encode_resp(&close, &HeadEdits::default(), close.framing, true),
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\nconnection: close\r\n\r\n"
    );
    let plain = response(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(
            &plain,
            &HeadEdits::default(),
            BodyFraming::CloseDelimited,
            true
        ),
        "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n"
    );
}

#[test]
fn switching_protocols_keeps_upgrade() {
    let head = response(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: s\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(&head, &HeadEdits::default(), head.framing, false),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: s\r\n\
         connection: upgrade\r\n\r\n"
    );
    // Not a 101: Upgrade is hop-by-hop (e.g. an h2c advertisement).
    let ok = response(
        "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n",
        "GET",
    );
    assert_eq!(
        encode_resp(&ok, &HeadEdits::default(), ok.framing, false),
        "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn encoded_requests_round_trip() {
    let mut rng = fastrand::Rng::with_seed(7);
    let names = [
        "Accept",
        "X-Trace",
        "Cookie",
        "Connection",
        "TE",
        "Authorization",
        "Via",
        "Keep-Alive",
    ];
    for _ in 0..500 {
        let mut text = String::from("PUT /r HTTP/1.1\r\nHost: h\r\n");
        for _ in 0..rng.usize(0..10) {
            let name = names[rng.usize(0..names.len())];
            let value = if name == "Connection" {
                "close, x-trace"
            } else {
                "v a l"
            };
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        let chunked = rng.bool();
        text.push_str(if chunked {
            "Transfer-Encoding: chunked\r\n\r\n"
        } else {
            "Content-Length: 3\r\n\r\n"
        });
        let head = request(&text);
        let out = encode_req(&head, &HeadEdits::default(), head.framing);
        let again = request(&out);
        assert_eq!(again.framing, head.framing);
        let nominated = head.header("connection").is_some();
        for (name, value) in head.header_pairs() {
            let forwarded = again.header_pairs().any(|(n, v)| n == name && v == value);
            let hop = is_hop_by_hop(name)
                || name.eq_ignore_ascii_case(b"content-length")
                || (nominated && name.eq_ignore_ascii_case(b"x-trace"));
            assert_eq!(forwarded, !hop, "{}", String::from_utf8_lossy(name));
        }
    }
}
