//! The engine with an HTTP listener: requests in flight hold a drain, reloads
//! swap routes, statistics follow.

mod engine_util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use engine_util::*;
use serde_json::{json, Value};

fn http_document(upstream: SocketAddr) -> Value {
    json!({
        "listeners": [{
            "name": "web",
            "listen": "127.0.0.1:0",
            "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [{"cluster": "app"}]}]
        }],
        "clusters": [{"name": "app", "endpoints": [upstream.to_string()]}]
    })
}

/// Reads one request head (requests here have no body).
fn read_head(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// An upstream that tells `arrived` when a request came, then answers `200 ok` only
/// once `release` says so.
fn gated_upstream() -> (SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let arrived_tx = Mutex::new(arrived_tx);
    let release_rx = Mutex::new(release_rx);
    let address = serve(move |mut stream| {
        while read_head(&mut stream).is_some() {
            let _ = arrived_tx.lock().unwrap().send(());
            if release_rx.lock().unwrap().recv().is_err() {
                return;
            }
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(answer).is_err() {
                return;
            }
        }
    });
    (address, arrived, release)
}

/// Reads one response with a Content-Length body; returns (head, body).
fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let head = String::from_utf8(read_head(stream).expect("a response head")).unwrap();
    let length: usize = header_values(&head, "content-length")
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    (head, body)
}

#[test]
fn drain_waits_for_a_slow_request_in_flight() {
    let (upstream, arrived, release) = gated_upstream();
    let engine = Arc::new(start(&http_document(upstream)));
    let mut client = connect(address_of(&engine, "web"));
    client
        .write_all(b"GET /slow HTTP/1.1\r\nhost: example\r\n\r\n")
        .unwrap();
    arrived
        .recv_timeout(Duration::from_secs(30))
        .expect("request reached the upstream");
    assert_eq!(inflight(&engine), 1);

    let draining = {
        let engine = engine.clone();
        thread::spawn(move || engine.drain(Duration::from_secs(60)))
    };
    assert!(eventually(|| engine.is_draining()));
    assert!(
        !draining.is_finished(),
        "drain returned with a request in flight"
    );
    release.send(()).unwrap();
    let (head, body) = read_response(&mut client);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    assert!(draining.join().unwrap());
    assert_eq!(inflight(&engine), 0);
}

#[test]
fn a_reload_reroutes_new_requests_and_keeps_listener_counts() {
    let (first, first_arrived, first_release) = gated_upstream();
    let (second, second_arrived, second_release) = gated_upstream();
    let engine = start(&http_document(first));
    let address = address_of(&engine, "web");
    let mut client = connect(address);
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: example\r\n\r\n")
        .unwrap();
    first_arrived.recv_timeout(Duration::from_secs(30)).unwrap();
    first_release.send(()).unwrap();
    assert!(read_response(&mut client).0.starts_with("HTTP/1.1 200"));

    engine.reload(config(&http_document(second))).unwrap();
    assert_eq!(address_of(&engine, "web"), address);
    let mut client = connect(address);
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: example\r\n\r\n")
        .unwrap();
    second_arrived
        .recv_timeout(Duration::from_secs(30))
        .unwrap();
    second_release.send(()).unwrap();
    assert!(read_response(&mut client).0.starts_with("HTTP/1.1 200"));
    drop(client);
    assert!(eventually(|| inflight(&engine) == 0));

    let text = engine.prometheus();
    assert_eq!(
        sample(&text, "dmsc_listener_requests_total{listener=\"web\"}"),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            "dmsc_listener_responses_total{listener=\"web\",code_class=\"2xx\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "dmsc_listener_connections_total{listener=\"web\"}"),
        Some(2.0)
    );
    assert_eq!(sample(&text, "dmsc_proxy_config_generation"), Some(2.0));
}
