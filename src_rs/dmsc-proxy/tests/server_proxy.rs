//! HTTP/1.1 proxying through a real engine on loopback: keep-alive,
//! pipelining, bodies of every framing, 100-continue, upgrades and the headers
//! a proxy adds or removes.

mod server_support;

use std::sync::Arc;

use serde_json::json;
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_get_is_proxied() {
    let up = ok_upstream("hello").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let got = get(addr, "/a/b?c=d", &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello");
    let seen = up.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].request_line(), "GET /a/b?c=d HTTP/1.1");
    assert_eq!(seen[0].header("host").as_deref(), Some("test"));
}

#[tokio::test]
async fn keep_alive_reuses_one_upstream_connection() {
    let up = ok_upstream("x").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    for i in 0..25 {
        let got = client
            .request(format!("GET /{i} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        assert_eq!(got.status, 200);
    }
    assert_eq!(up.requests().len(), 25);
    assert_eq!(up.accepted(), 1, "every request rode the pooled connection");
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let up = upstream(Arc::new(|seen: &Seen| {
        let path = seen
            .request_line()
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_owned();
        response(200, &[], path.as_bytes())
    }))
    .await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    client
        .send(
            b"GET /one HTTP/1.1\r\nhost: t\r\n\r\nPOST /two HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: t\r\n\r\n",
        )
        .await;
    let bodies = [
        client.response("GET").await.expect("first").text(),
        client.response("POST").await.expect("second").text(),
        client.response("GET").await.expect("third").text(),
    ];
    assert_eq!(bodies, ["/one", "/two", "/three"]);
    assert_eq!(up.requests()[1].body, b"abc");
}

#[tokio::test]
async fn chunked_bodies_pass_both_ways() {
    let up = upstream(Arc::new(|seen: &Seen| chunked_response(200, &seen.body, 3))).await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    let got = client
        .request(b"POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=y\r\n world\r\n0\r\n\r\n")
        .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.text(), "hello world");
    assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(up.requests()[0].body, b"hello world");
    assert_eq!(
        up.requests()[0].header("transfer-encoding").as_deref(),
        Some("chunked")
    );
    // The connection carries on after a chunked exchange.
    let again = client.request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    const SIZE: usize = 50 * 1024 * 1024;
    // Counts the upload without keeping it, then sends a download of the same size.
    let up_addr = raw_upstream(|mut stream| async move {
        let mut buf = Vec::new();
        if read_head(&mut stream, &mut buf).await.is_none() {
            return;
        }
        // Only the bytes read past the head are held; the rest is counted and dropped.
        let mut received = buf.len();
        let mut sum = buf.iter().map(|&b| u64::from(b)).sum::<u64>();
        let mut chunk = vec![0u8; 65536];
        while received < SIZE {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            received += n;
            sum += chunk[..n].iter().map(|&b| u64::from(b)).sum::<u64>();
        }
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {SIZE}\r\nx-sum: {sum}\r\n\r\n");
        let _ = stream.write_all(head.as_bytes()).await;
        let block = vec![7u8; 1 << 20];
        for _ in 0..SIZE / block.len() {
            if stream.write_all(&block).await.is_err() {
                return;
            }
        }
    })
    .await;
    let (_engine, addr) = start(config(&[up_addr], json!({ "timeout_ms": 0 }), json!({})));
    let mut client = Client::connect(addr).await;
    client
        .send(format!("PUT /big HTTP/1.1\r\nhost: t\r\ncontent-length: {SIZE}\r\n\r\n").as_bytes())
        .await;
    let upload = vec![3u8; 1 << 20];
    for _ in 0..SIZE / upload.len() {
        client.send(&upload).await;
    }
    let got = client.response("PUT").await.expect("response");
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-sum"), Some((3 * SIZE as u64).to_string()));
    assert_eq!(got.body.len(), SIZE);
    assert!(got.body.iter().all(|&b| b == 7));
}

#[tokio::test]
async fn expect_continue_is_relayed_before_the_body() {
    let up_addr = raw_upstream(|mut stream| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        assert!(header_values(&head, "expect")
            .iter()
            .any(|v| v == "100-continue"));
        // The interim answer goes out before any of the body is read.
        let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
        let Some(body) = read_exact(&mut stream, &mut buf, 5).await else {
            return;
        };
        let _ = stream.write_all(&response(201, &[], &body)).await;
    })
    .await;
    let (_engine, addr) = start(config(&[up_addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    client
        .send(b"POST /u HTTP/1.1\r\nhost: t\r\ncontent-length: 5\r\nexpect: 100-continue\r\n\r\n")
        .await;
    let interim = client.response("POST").await.expect("100 continue");
    assert_eq!(interim.status, 100);
    client.send(b"hello").await;
    let done = client.response("POST").await.expect("final");
    assert_eq!(done.status, 201);
    assert_eq!(done.text(), "hello");
}

#[tokio::test]
async fn an_upgrade_becomes_a_two_way_stream() {
    let up_addr = raw_upstream(|mut stream| async move {
        let mut buf = Vec::new();
        let Some(seen) = read_request(&mut stream, &mut buf).await else {
            return;
        };
        assert_eq!(seen.header("upgrade").as_deref(), Some("websocket"));
        let _ = stream
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
            .await;
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let (_engine, addr) = start(config(&[up_addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    client
        .send(b"GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n")
        .await;
    let switched = client.response("GET").await.expect("101");
    assert_eq!(switched.status, 101);
    assert_eq!(switched.header("upgrade").as_deref(), Some("websocket"));
    for message in [&b"ping"[..], b"a longer frame of bytes", b"\x00\x01\x02"] {
        client.send(message).await;
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(HANG, client.stream.read_exact(&mut echoed))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(echoed, message);
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_not_forwarded() {
    let up = upstream(Arc::new(|_: &Seen| {
        response(
            200,
            &[
                ("connection", "x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("x-kept", "yes"),
            ],
            b"ok",
        )
    }))
    .await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let got = get(
        addr,
        "/",
        &[
            ("connection", "keep-alive, x-private"),
            ("x-private", "p"),
            ("keep-alive", "300"),
            ("te", "trailers"),
            ("proxy-connection", "keep-alive"),
            ("x-end", "e"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-kept").as_deref(), Some("yes"));
    assert_eq!(got.header("x-secret"), None);
    assert_eq!(got.header("keep-alive"), None);
    let seen = &up.requests()[0];
    for name in ["x-private", "keep-alive", "te", "proxy-connection"] {
        assert_eq!(seen.header(name), None, "{name} was forwarded");
    }
    assert_eq!(seen.header("x-end").as_deref(), Some("e"));
}

#[tokio::test]
async fn tracing_headers_are_added() {
    let up = ok_upstream("ok").await;
    let mut conf = config(&[up.addr], json!({}), json!({}));
    conf["tracing"] = json!(true);
    let (_engine, addr) = start(conf);
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let got = get(
        addr,
        "/",
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("traceparent", parent),
            ("x-request-id", "abc-123"),
        ],
    )
    .await;
    assert_eq!(got.status, 200);
    let got2 = get(addr, "/", &[]).await;
    assert_eq!(got2.status, 200);
    let seen = up.requests();
    assert_eq!(
        seen[0].header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen[0].header("via").as_deref(), Some("1.1 dmsc"));
    assert_eq!(seen[0].headers("x-request-id"), ["abc-123"]);
    let child = seen[0].header("traceparent").unwrap_or_default();
    assert_eq!(child.len(), 55);
    assert_eq!(&child[..36], &parent[..36], "same trace");
    assert_ne!(&child[36..52], &parent[36..52], "a new span");
    // Without incoming values: the client address, a fresh id and a new root.
    assert_eq!(
        seen[1].header("x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    let id = seen[1].header("x-request-id").unwrap_or_default();
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(seen[1].header("traceparent").map(|t| t.len()), Some(55));
}

#[tokio::test]
async fn route_header_and_path_rewrites_apply() {
    let up = ok_upstream("ok").await;
    let route = json!({
        "match": { "path": { "prefix": "/api/" } },
        "prefix_rewrite": "/v2/",
        "host_rewrite": "backend.internal",
        "request_headers": { "set": { "x-env": "test" }, "remove": ["x-drop"] },
        "response_headers": { "add": { "x-served-by": "dmsc" } },
    });
    let (_engine, addr) = start(config(&[up.addr], route, json!({})));
    let got = get(
        addr,
        "/api/items?id=1",
        &[("x-drop", "1"), ("x-env", "prod")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(got.header("x-served-by").as_deref(), Some("dmsc"));
    let seen = &up.requests()[0];
    assert_eq!(seen.request_line(), "GET /v2/items?id=1 HTTP/1.1");
    assert_eq!(seen.header("host").as_deref(), Some("backend.internal"));
    assert_eq!(seen.headers("x-env"), ["test"]);
    assert_eq!(seen.header("x-drop"), None);
}

#[tokio::test]
async fn a_case_insensitive_prefix_is_rewritten_whatever_its_case() {
    let up = ok_upstream("ok").await;
    let route = json!({
        "match": { "path": { "prefix": "/api/", "ignore_case": true } },
        "prefix_rewrite": "/v2/",
    });
    let (_engine, addr) = start(config(&[up.addr], route, json!({})));
    for path in ["/api/a", "/API/b", "/Api/c"] {
        assert_eq!(get(addr, path, &[]).await.status, 200, "{path}");
    }
    let lines: Vec<String> = up
        .requests()
        .iter()
        .map(|seen| seen.request_line().to_owned())
        .collect();
    assert_eq!(
        lines,
        [
            "GET /v2/a HTTP/1.1",
            "GET /v2/b HTTP/1.1",
            "GET /v2/c HTTP/1.1"
        ]
    );
}

#[tokio::test]
async fn a_close_delimited_response_is_chunked_for_http11_and_dechunked_for_http10() {
    let up = upstream(Arc::new(|seen| {
        if seen.request_line().starts_with("GET /close") {
            b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end".to_vec()
        } else {
            chunked_response(200, b"chunks for an old client", 4)
        }
    }))
    .await;
    let up_addr = up.addr;
    let (_engine, addr) = start(config(&[up_addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    let got = client
        .request(b"GET /close HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    assert_eq!(got.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(got.text(), "until the end");
    let again = client
        .request(b"GET /close HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    assert_eq!(
        again.text(),
        "until the end",
        "the client connection stayed open"
    );

    let mut old = Client::connect(addr).await;
    let got = old.request(b"GET /chunked HTTP/1.0\r\n\r\n").await;
    assert_eq!(got.header("transfer-encoding"), None);
    assert_eq!(got.text(), "chunks for an old client");
}

#[tokio::test]
async fn http10_keep_alive_is_honoured() {
    let up = ok_upstream("ten").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    for _ in 0..3 {
        let got = client
            .request(b"GET / HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
            .await;
        assert_eq!(got.text(), "ten");
        assert_eq!(got.header("connection").as_deref(), Some("keep-alive"));
    }
    let last = client.request(b"GET / HTTP/1.0\r\n\r\n").await;
    assert_eq!(last.text(), "ten");
    assert!(client.closed().await);
}

#[tokio::test]
async fn head_responses_keep_their_length_and_carry_no_body() {
    let up = upstream(Arc::new(|_: &Seen| {
        b"HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n".to_vec()
    }))
    .await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    let got = client.request(b"HEAD /x HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(got.header("content-length").as_deref(), Some("1234"));
    let next = client.request(b"HEAD /y HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(next.status, 200);
}

#[tokio::test]
async fn unmatched_requests_get_404_and_direct_responses_answer() {
    let conf = json!({
        "listeners": [{
            "name": "web",
            "listen": "127.0.0.1:0",
            "virtual_hosts": [{ "name": "all", "domains": ["*"], "routes": [
                { "match": { "path": { "exact": "/health" } },
                  "direct_response": { "status": 200, "body": "fine", "headers": { "x-direct": "1" } } },
            ]}],
        }],
        "clusters": [],
    });
    let (_engine, addr) = start(conf);
    let mut client = Client::connect(addr).await;
    let got = client
        .request(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    assert_eq!((got.status, got.text().as_str()), (200, "fine"));
    assert_eq!(got.header("x-direct").as_deref(), Some("1"));
    let missing = client
        .request(b"POST /nope HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\n\r\nbody")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("x-dmsc-reason").as_deref(), Some("no-route"));
    // The body of the refused request was skipped: the connection is still in step.
    let again = client
        .request(b"GET /health HTTP/1.1\r\nhost: t\r\n\r\n")
        .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn requests_are_mirrored_to_the_shadow_cluster() {
    let main = ok_upstream("main").await;
    let shadow = ok_upstream("shadow").await;
    let mut conf = config(
        &[main.addr],
        json!({ "mirror": { "cluster": "shadow", "fraction": 1.0 } }),
        json!({}),
    );
    add_cluster(&mut conf, "shadow", shadow.addr);
    let (_engine, addr) = start(conf);
    let mut client = Client::connect(addr).await;
    for _ in 0..3 {
        let got = client
            .request(b"POST /m HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi")
            .await;
        assert_eq!(got.text(), "main");
    }
    for _ in 0..200 {
        if shadow.requests().len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let copies = shadow.requests();
    assert_eq!(copies.len(), 3);
    assert!(copies
        .iter()
        .all(|s| s.body == b"hi" && s.request_line() == "POST /m HTTP/1.1"));
}

#[tokio::test]
async fn a_drain_closes_idle_keep_alive_connections() {
    let up = ok_upstream("ok").await;
    let (engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let mut client = Client::connect(addr).await;
    assert_eq!(
        client
            .request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
            .await
            .status,
        200
    );
    let engine = Arc::new(engine);
    let draining = engine.clone();
    let drained =
        tokio::task::spawn_blocking(move || draining.drain(std::time::Duration::from_secs(10)))
            .await
            .expect("drain task");
    assert!(drained, "nothing was in flight");
    assert!(client.closed().await, "the idle connection was closed");
}

#[tokio::test]
async fn buffered_responses_arrive_whole() {
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let expected = body.clone();
    let up = upstream(Arc::new(move |seen: &Seen| {
        if seen.request_line().contains("/chunked") {
            chunked_response(200, &body, 1000)
        } else {
            response(200, &[], &body)
        }
    }))
    .await;
    let mut conf = config(&[up.addr], json!({}), json!({}));
    conf["listeners"][0]["limits"] = json!({ "response_buffer_bytes": 32768 });
    let (_engine, addr) = start(conf);
    let mut client = Client::connect(addr).await;
    for path in ["/chunked", "/length", "/chunked"] {
        let got = client
            .request(format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes())
            .await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, expected, "{path}");
    }
}
