//! Bad input on either side: request-smuggling shapes are refused with 400 and
//! a closed connection and never reach the upstream; garbage from an upstream
//! is a 502; slow clients meet the header and idle timeouts.

mod server_support;

use std::sync::Arc;

use serde_json::json;
use server_support::*;
use tokio::io::AsyncWriteExt;

const SMUGGLING: &[(&str, &[u8])] = &[
    ("cl-te", b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("te-cl", b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\ncontent-length: 6\r\n\r\n0\r\n\r\nX"),
    ("duplicate-cl", b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd"),
    ("te-xchunked", b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: xchunked\r\n\r\n0\r\n\r\n"),
    ("te-identity", b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
    ("cl-plus", b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: +5\r\n\r\nhello"),
    ("cl-hex", b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 0x5\r\n\r\nhello"),
    ("obs-fold", b"GET / HTTP/1.1\r\nhost: t\r\nx-a: 1\r\n  folded\r\n\r\n"),
    ("space-before-colon", b"GET / HTTP/1.1\r\nhost: t\r\ntransfer-encoding : chunked\r\n\r\n"),
    ("bare-cr", b"GET / HTTP/1.1\r\nhost: t\rx-a: 1\r\n\r\n"),
    ("nul", b"GET / HTTP/1.1\r\nhost: t\r\nx-a: a\x00b\r\n\r\n"),
    ("no-host", b"GET / HTTP/1.1\r\n\r\n"),
    ("two-hosts", b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"),
    ("bad-version", b"GET / HTTP/2.0\r\nhost: t\r\n\r\n"),
    ("bad-request-line", b"GET  / HTTP/1.1\r\nhost: t\r\n\r\n"),
];

#[tokio::test]
async fn smuggling_shapes_get_400_and_a_closed_connection() {
    let up = ok_upstream("never").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    for (name, request) in SMUGGLING {
        let mut client = Client::connect(addr).await;
        client.send(request).await;
        let got = client
            .response("GET")
            .await
            .unwrap_or_else(|| panic!("{name}: no response"));
        assert_eq!(got.status, 400, "{name}");
        assert_eq!(got.header("connection").as_deref(), Some("close"), "{name}");
        assert!(got.header("x-dmsc-reason").is_some(), "{name}");
        assert!(client.closed().await, "{name}: connection left open");
    }
    assert!(up.requests().is_empty(), "something reached the upstream");
}

#[tokio::test]
async fn a_bad_chunk_size_in_a_forwarded_body_is_refused() {
    let up = ok_upstream("never").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    for body in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"-1\r\n\r\n",
    ] {
        let mut client = Client::connect(addr).await;
        let mut request =
            b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        client.send(&request).await;
        let got = client.response("POST").await.expect("a response");
        assert_eq!(got.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(client.closed().await);
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn an_oversized_head_is_refused() {
    let up = ok_upstream("never").await;
    let mut conf = config(&[up.addr], json!({}), json!({}));
    conf["listeners"][0]["limits"] =
        json!({ "max_header_bytes": 1024, "max_request_line_bytes": 256 });
    let (_engine, addr) = start(conf);
    let long_line = format!("GET /{} HTTP/1.1\r\nhost: t\r\n\r\n", "a".repeat(400));
    let big_head = format!(
        "GET / HTTP/1.1\r\nhost: t\r\nx-big: {}\r\n\r\n",
        "b".repeat(2000)
    );
    for request in [long_line, big_head] {
        let mut client = Client::connect(addr).await;
        client.send(request.as_bytes()).await;
        let got = client.response("GET").await.expect("a response");
        assert_eq!(got.status, 400);
        assert!(client.closed().await);
    }
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn garbage_from_the_upstream_gives_502() {
    let up = upstream(Arc::new(|_| {
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nxx".to_vec()
    }))
    .await;
    let up_addr = up.addr;
    let (_engine, addr) = start(config(&[up_addr], json!({}), json!({})));
    let got = get(addr, "/", &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(
        got.header("x-dmsc-reason").as_deref(),
        Some("bad-upstream-response")
    );
}

#[tokio::test]
async fn an_upstream_reset_gives_502() {
    let up_addr = raw_upstream(|mut stream| async move {
        let mut buf = Vec::new();
        let _ = read_request(&mut stream, &mut buf).await;
        drop(stream);
    })
    .await;
    let (_engine, addr) = start(config(&[up_addr], json!({}), json!({})));
    let got = get(addr, "/", &[]).await;
    assert_eq!(got.status, 502);
    assert_eq!(
        got.header("x-dmsc-reason").as_deref(),
        Some("upstream-reset")
    );
}

#[tokio::test]
async fn a_slow_head_meets_the_header_timeout() {
    let up = ok_upstream("never").await;
    let mut conf = config(&[up.addr], json!({}), json!({}));
    conf["listeners"][0]["limits"] = json!({ "header_timeout_ms": 200 });
    let (_engine, addr) = start(conf);
    let mut client = Client::connect(addr).await;
    client.send(b"GET / HTTP/1.1\r\nhost: t\r\n").await;
    let got = client.response("GET").await.expect("a 408");
    assert_eq!(got.status, 408);
    assert!(client.closed().await);
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let up = ok_upstream("ok").await;
    let mut conf = config(&[up.addr], json!({}), json!({}));
    conf["listeners"][0]["limits"] = json!({ "idle_timeout_ms": 200 });
    let (_engine, addr) = start(conf);
    let mut client = Client::connect(addr).await;
    let got = client.request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(got.status, 200);
    assert!(client.closed().await);
}

#[tokio::test]
async fn random_bytes_never_reach_the_upstream_unframed() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut rng = fastrand::Rng::with_seed(5);
    let valid = b"GET / HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n";
    for _ in 0..40 {
        let mut request = valid.to_vec();
        for _ in 0..rng.usize(1..4) {
            let i = rng.usize(..request.len());
            request[i] = rng.u8(..);
        }
        let mut client = Client::connect(addr).await;
        client.send(&request).await;
        let _ = client.stream.shutdown().await;
        // Either a well-formed response or a close; never a hang.
        if let Some(got) = client.response("GET").await {
            assert!(
                got.status == 200 || got.status == 400 || got.status == 404,
                "{}",
                got.status
            );
        }
    }
    // Whatever was forwarded is a well-framed request with its Host.
    for seen in up.requests() {
        assert!(seen.head.ends_with("\r\n\r\n"), "{}", seen.head);
        assert!(seen.header("host").is_some(), "{}", seen.head);
        assert!(seen.body.is_empty());
    }
}
