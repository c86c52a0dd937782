//! Resilience through a real engine on loopback: retries, timeouts, deadlines,
//! faults, rate limits, bulkheads and fallbacks, against upstreams that fail,
//! stall and recover.

mod server_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::json;
use server_support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// An upstream that reads requests and never answers.
async fn stalled_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let addr = raw_upstream(move |mut stream| {
        let seen = seen.clone();
        async move {
            let mut buf = [0u8; 4096];
            let mut counted = false;
            while let Ok(n) = stream.read(&mut buf).await {
                if n == 0 {
                    return;
                }
                if !counted {
                    seen.fetch_add(1, Ordering::SeqCst);
                    counted = true;
                }
            }
        }
    })
    .await;
    (addr, requests)
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_host() {
    let up = ok_upstream("alive").await;
    let dead = dead_address();
    let (_engine, addr) = start(config(
        &[dead, up.addr],
        json!({ "retry": { "retry_on": ["connect-failure"], "num_retries": 2, "backoff": { "strategy": "fixed", "base_ms": 1, "max_ms": 1 } } }),
        json!({}),
    ));
    for _ in 0..6 {
        let got = get(addr, "/", &[]).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.text(), "alive");
    }
}

#[tokio::test]
async fn connect_failures_everywhere_give_503() {
    let dead = dead_address();
    let (_engine, addr) = start(config(&[dead], json!({}), json!({})));
    let got = get(addr, "/", &[]).await;
    assert_eq!(got.status, 503);
    assert_eq!(
        got.header("x-dmsc-reason").as_deref(),
        Some("upstream-connect-failure")
    );
}

#[tokio::test]
async fn a_503_is_retried_on_the_other_host() {
    let failing = upstream(Arc::new(|_: &Seen| response(503, &[], b"down"))).await;
    let healthy = ok_upstream("up").await;
    let (_engine, addr) = start(config(
        &[failing.addr, healthy.addr],
        json!({ "retry": { "retry_on": ["5xx"], "num_retries": 2, "backoff": { "strategy": "fixed", "base_ms": 1, "max_ms": 1 } } }),
        json!({}),
    ));
    for _ in 0..4 {
        let got = get(addr, "/", &[]).await;
        assert_eq!((got.status, got.text().as_str()), (200, "up"));
    }
    assert!(
        !failing.requests().is_empty(),
        "round robin sent some tries to the failing host"
    );
}

#[tokio::test]
async fn a_non_idempotent_request_is_not_retried_on_5xx() {
    let failing = upstream(Arc::new(|_: &Seen| response(503, &[], b"down"))).await;
    let (_engine, addr) = start(config(
        &[failing.addr],
        json!({ "retry": { "retry_on": ["5xx"], "num_retries": 3 } }),
        json!({}),
    ));
    let mut client = Client::connect(addr).await;
    let got = client
        .request(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 1\r\n\r\nx")
        .await;
    assert_eq!(got.status, 503);
    assert_eq!(got.text(), "down", "the upstream's own answer is relayed");
    assert_eq!(failing.requests().len(), 1);
}

#[tokio::test]
async fn a_stalled_try_times_out_and_the_next_host_answers() {
    let (stalled, stalled_requests) = stalled_upstream().await;
    let healthy = ok_upstream("fast").await;
    let (_engine, addr) = start(config(
        &[stalled, healthy.addr],
        json!({ "retry": { "retry_on": ["5xx", "reset", "connect-failure", "gateway-error"], "num_retries": 1, "per_try_timeout_ms": 200, "backoff": { "strategy": "fixed", "base_ms": 1, "max_ms": 1 } } }),
        json!({}),
    ));
    for _ in 0..2 {
        let got = get(addr, "/", &[]).await;
        assert_eq!((got.status, got.text().as_str()), (200, "fast"));
    }
    assert!(stalled_requests.load(Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn the_route_timeout_answers_504() {
    let (stalled, _) = stalled_upstream().await;
    let (_engine, addr) = start(config(&[stalled], json!({ "timeout_ms": 300 }), json!({})));
    let got = get(addr, "/", &[]).await;
    assert_eq!(got.status, 504);
    assert_eq!(
        got.header("x-dmsc-reason").as_deref(),
        Some("upstream-timeout")
    );
}

#[tokio::test]
async fn the_deadline_header_is_reduced_and_an_expired_one_is_refused() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(&[up.addr], json!({}), json!({})));
    let got = get(addr, "/", &[("x-dmsc-deadline-ms", "5000")]).await;
    assert_eq!(got.status, 200);
    let forwarded: u64 = up.requests()[0]
        .header("x-dmsc-deadline-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(forwarded > 0 && forwarded <= 5000, "forwarded {forwarded}");
    assert_eq!(up.requests()[0].headers("x-dmsc-deadline-ms").len(), 1);

    let expired = get(addr, "/", &[("x-dmsc-deadline-ms", "0")]).await;
    assert_eq!(expired.status, 504);
    assert_eq!(
        expired.header("x-dmsc-reason").as_deref(),
        Some("deadline-exceeded")
    );
    assert_eq!(up.requests().len(), 1, "the upstream was not called");
    // Without the header nothing is added.
    let plain = get(addr, "/", &[]).await;
    assert_eq!(plain.status, 200);
    assert_eq!(up.requests()[1].header("x-dmsc-deadline-ms"), None);
}

#[tokio::test]
async fn a_short_deadline_cuts_a_slow_upstream() {
    let (stalled, _) = stalled_upstream().await;
    let (_engine, addr) = start(config(&[stalled], json!({}), json!({})));
    let got = get(addr, "/", &[("x-dmsc-deadline-ms", "200")]).await;
    assert_eq!(got.status, 504);
}

#[tokio::test]
async fn fault_abort_answers_without_the_upstream() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(
        &[up.addr],
        json!({ "fault": { "abort": { "status": 418, "percent": 100.0 } } }),
        json!({}),
    ));
    let got = get(addr, "/", &[]).await;
    assert_eq!(got.status, 418);
    assert_eq!(got.header("x-dmsc-reason").as_deref(), Some("fault-abort"));
    assert!(up.requests().is_empty());
}

#[tokio::test]
async fn a_rate_limit_answers_429_with_retry_after() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(
        &[up.addr],
        json!({ "rate_limits": [{ "requests": 2, "per_seconds": 60.0, "key": "service" }] }),
        json!({}),
    ));
    let mut client = Client::connect(addr).await;
    let statuses: Vec<u16> = {
        let mut out = Vec::new();
        for _ in 0..3 {
            out.push(
                client
                    .request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                    .await
                    .status,
            );
        }
        out
    };
    assert_eq!(statuses, [200, 200, 429]);
    let limited = client.request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(
        limited.header("x-dmsc-reason").as_deref(),
        Some("rate-limit")
    );
    let after: u64 = limited
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=60).contains(&after), "retry-after {after}");
}

#[tokio::test]
async fn a_header_keyed_rate_limit_counts_each_key() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(
        &[up.addr],
        json!({ "rate_limits": [{ "requests": 1, "per_seconds": 60.0, "key": { "header": "x-api-key" } }] }),
        json!({}),
    ));
    assert_eq!(get(addr, "/", &[("x-api-key", "a")]).await.status, 200);
    assert_eq!(get(addr, "/", &[("x-api-key", "b")]).await.status, 200);
    assert_eq!(get(addr, "/", &[("x-api-key", "a")]).await.status, 429);
}

#[tokio::test]
async fn a_full_bulkhead_answers_503() {
    let release = Arc::new(Notify::new());
    let arrived = Arc::new(Notify::new());
    let (gate, signal) = (release.clone(), arrived.clone());
    let up_addr = raw_upstream(move |mut stream| {
        let (gate, signal) = (gate.clone(), signal.clone());
        async move {
            let mut buf = Vec::new();
            while read_request(&mut stream, &mut buf).await.is_some() {
                signal.notify_one();
                gate.notified().await;
                let reply = response(200, &[], b"late");
                let _ = stream.write_all(&reply).await;
            }
        }
    })
    .await;
    let (_engine, addr) = start(config(
        &[up_addr],
        json!({}),
        json!({ "bulkhead": { "max_concurrent": 1, "max_queue": 0, "queue_timeout_ms": 100 } }),
    ));
    let first = tokio::spawn(async move { get(addr, "/slow", &[]).await });
    // The first request holds the only slot once the upstream has it.
    tokio::time::timeout(HANG, arrived.notified())
        .await
        .expect("first request arrived");
    let refused = get(addr, "/", &[]).await;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("x-dmsc-reason").as_deref(),
        Some("bulkhead-full")
    );
    release.notify_one();
    let first = tokio::time::timeout(HANG, first)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!((first.status, first.text().as_str()), (200, "late"));
}

#[tokio::test]
async fn a_fallback_response_answers_when_no_host_can() {
    let dead = dead_address();
    let (_engine, addr) = start(config(
        &[dead],
        json!({ "fallback": { "response": { "status": 200, "body": "cached" } } }),
        json!({}),
    ));
    let got = get(addr, "/", &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "cached"));
}

#[tokio::test]
async fn a_fallback_cluster_serves_when_the_primary_cannot() {
    let dead = dead_address();
    let backup = ok_upstream("backup").await;
    let mut conf = config(
        &[dead],
        json!({ "fallback": { "cluster": "backup" } }),
        json!({}),
    );
    add_cluster(&mut conf, "backup", backup.addr);
    let (_engine, addr) = start(conf);
    let got = get(addr, "/", &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "backup"));
}

#[tokio::test]
async fn a_replayable_post_body_is_resent_on_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let flaky = upstream(Arc::new(move |seen: &Seen| {
        if counter.fetch_add(1, Ordering::SeqCst) == 0 {
            response(503, &[], b"")
        } else {
            response(200, &[], &seen.body)
        }
    }))
    .await;
    let (_engine, addr) = start(config(
        &[flaky.addr],
        json!({ "retry": { "retry_on": ["5xx"], "num_retries": 1, "retry_non_idempotent": true, "backoff": { "strategy": "fixed", "base_ms": 1, "max_ms": 1 } } }),
        json!({}),
    ));
    let mut client = Client::connect(addr).await;
    let got = client
        .request(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 7\r\n\r\npayload")
        .await;
    assert_eq!((got.status, got.text().as_str()), (200, "payload"));
    assert_eq!(
        flaky
            .requests()
            .iter()
            .map(|s| s.body.clone())
            .collect::<Vec<_>>(),
        [b"payload".to_vec(), b"payload".to_vec()]
    );
}

/// An upstream that answers one request per connection (claiming keep-alive) and
/// then closes it, as a server whose idle timeout races the proxy's reuse would.
async fn one_shot_upstream() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let addr = raw_upstream(move |mut stream| {
        let count = count.clone();
        async move {
            let mut buf = Vec::new();
            if let Some(seen) = read_request(&mut stream, &mut buf).await {
                count.fetch_add(1, Ordering::SeqCst);
                let body = seen.body.len().to_string();
                let reply = response(200, &[], body.as_bytes());
                let _ = stream.write_all(&reply).await;
            }
        }
    })
    .await;
    (addr, served)
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_replaced() {
    let (up, served) = one_shot_upstream().await;
    let (_engine, addr) = start(config(
        &[up],
        json!({ "retry": { "retry_on": [], "num_retries": 0 } }),
        json!({}),
    ));
    let mut client = Client::connect(addr).await;
    for i in 0..5 {
        let got = client.request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
        assert_eq!(got.status, 200, "request {i}");
        // Let the upstream's close reach the pooled connection.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let big = vec![b'z'; 200 * 1024];
    let mut request = format!(
        "PUT / HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        big.len()
    )
    .into_bytes();
    request.extend_from_slice(&big);
    let got = client.request(&request).await;
    assert_eq!((got.status, got.text()), (200, big.len().to_string()));
    assert_eq!(served.load(Ordering::SeqCst), 6);
}

#[tokio::test]
async fn an_open_breaker_answers_503_circuit_open() {
    let failing = upstream(Arc::new(|_: &Seen| response(500, &[], b"boom"))).await;
    let (_engine, addr) = start(config(
        &[failing.addr],
        json!({}),
        json!({ "host_breaker": { "failure_rate": 0.5, "window": 10, "minimum_requests": 4, "open_ms": 60000, "half_open_requests": 1 } }),
    ));
    let mut client = Client::connect(addr).await;
    let mut last = None;
    for _ in 0..10 {
        let got = client.request(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n").await;
        if got.header("x-dmsc-reason").is_some() {
            last = Some(got);
            break;
        }
        assert_eq!(
            got.status, 500,
            "the upstream's answer until the breaker opens"
        );
    }
    let refused = last.expect("the breaker opened");
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.header("x-dmsc-reason").as_deref(),
        Some("circuit-open")
    );
    let calls = failing.requests().len();
    assert!(
        (4..10).contains(&calls),
        "{calls} calls reached the upstream"
    );
}

#[tokio::test]
async fn a_per_instance_rate_limit_is_checked_after_the_pick() {
    let up = ok_upstream("ok").await;
    let (_engine, addr) = start(config(
        &[up.addr],
        json!({ "rate_limits": [{ "requests": 1, "per_seconds": 60.0, "key": "instance" }] }),
        json!({}),
    ));
    assert_eq!(get(addr, "/", &[]).await.status, 200);
    let limited = get(addr, "/", &[]).await;
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(up.requests().len(), 1);
}

#[tokio::test]
async fn when_retries_run_out_the_last_upstream_answer_is_relayed() {
    let failing = upstream(Arc::new(|_: &Seen| response(503, &[], b"still down"))).await;
    let (_engine, addr) = start(config(
        &[failing.addr],
        json!({ "retry": { "retry_on": ["5xx"], "num_retries": 2, "backoff": { "strategy": "fixed", "base_ms": 1, "max_ms": 1 } } }),
        json!({}),
    ));
    let got = get(addr, "/", &[]).await;
    assert_eq!((got.status, got.text().as_str()), (503, "still down"));
    assert_eq!(
        got.header("x-dmsc-reason"),
        None,
        "the upstream's answer, not the proxy's"
    );
    assert_eq!(failing.requests().len(), 3, "one try and two retries");
}
