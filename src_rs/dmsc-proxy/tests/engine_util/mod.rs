//! Shared pieces of the engine and TCP tests: configs, loopback upstreams, waits.
//! The proxy tests' `server_support` builds on the config, address and header helpers.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use dmsc_proxy::{Config, Engine};
use serde_json::{json, Value};

/// Parses a config document given as JSON.
pub fn config(document: &Value) -> Config {
    Config::from_json(&document.to_string()).expect("test config is valid")
}

/// Starts an engine from a JSON document.
pub fn start(document: &Value) -> Engine {
    Engine::start(config(document)).expect("engine starts")
}

/// A TCP listener `l4` on a free port forwarding to cluster `echo` with these endpoints.
pub fn tcp_document(endpoints: &[SocketAddr]) -> Value {
    let endpoints: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    json!({
        "listeners": [
            {"name": "l4", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}
        ],
        "clusters": [
            {"name": "echo", "lb": "round_robin", "endpoints": endpoints}
        ]
    })
}

/// The bound address of listener `name`.
pub fn address_of(engine: &Engine, name: &str) -> SocketAddr {
    engine
        .listeners()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
        .expect("listener is bound")
}

/// A loopback upstream on a free port that serves every connection with `handler` on
/// its own thread; returns where it listens.
pub fn serve<F>(handler: F) -> SocketAddr
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("bound");
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            thread::spawn(move || handler(stream));
        }
    });
    address
}

/// An upstream that echoes every byte and half-closes when the client does.
pub fn echo_upstream() -> SocketAddr {
    serve(echo)
}

fn echo(mut stream: TcpStream) {
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stream.write_all(&buffer[..n]).is_err() {
                    return;
                }
            }
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

/// An address nothing listens on (bound, then closed).
pub fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound")
}

/// Connects to `address` with read/write timeouts so a broken proxy fails the test
/// instead of hanging it.
pub fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
        .set_write_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Sends `message` and reads back as many bytes.
pub fn round_trip(stream: &mut TcpStream, message: &[u8]) -> io::Result<Vec<u8>> {
    stream.write_all(message)?;
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back)?;
    Ok(back)
}

/// Waits (up to 30 s) until `done` holds; false if it never did.
pub fn eventually(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if done() {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    done()
}

/// Values of a header in a head's text.
pub fn header_values(head: &str, name: &str) -> Vec<String> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_owned())
        .collect()
}

/// The value of the sample line starting with `series` (`name{labels}`) in `text`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.parse().ok())
}

/// Requests and sessions in flight, from `describe()`.
pub fn inflight(engine: &Engine) -> u64 {
    engine.describe()["inflight"].as_u64().unwrap_or(u64::MAX)
}
