//! The L4 listener: bytes both ways through splice(2), half-closes, host failover.

mod engine_util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::Duration;

use engine_util::*;

/// Upstream resets counted against the hosts of the listener's cluster.
const RESETS: &str = "dmsc_cluster_upstream_resets_total{cluster=\"echo\"}";

#[test]
fn echoes_through_the_listener() {
    let engine = start(&tcp_document(&[echo_upstream()]));
    let mut client = connect(address_of(&engine, "l4"));
    for size in [1, 100, 4096, 65_537, 1 << 20] {
        let message: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            round_trip(&mut client, &message).unwrap(),
            message,
            "{size} bytes"
        );
    }
}

/// A deterministic stream of bytes that is cheap to regenerate and compare.
fn pattern(offset: u64, out: &mut [u8]) {
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let word = (offset / 8 + i as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

#[test]
fn a_hundred_megabytes_cross_both_ways_intact() {
    const TOTAL: u64 = 100 << 20;
    const CHUNK: usize = 1 << 20;
    let engine = start(&tcp_document(&[echo_upstream()]));
    let client = connect(address_of(&engine, "l4"));
    let mut writer = client.try_clone().unwrap();
    let sending = thread::spawn(move || {
        let mut chunk = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < TOTAL {
            pattern(sent, &mut chunk);
            writer.write_all(&chunk).unwrap();
            sent += CHUNK as u64;
        }
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut reader = client;
    let mut got = vec![0u8; CHUNK];
    let mut expected = vec![0u8; CHUNK];
    let mut received = 0u64;
    loop {
        let n = reader.read(&mut got).unwrap();
        if n == 0 {
            break;
        }
        // Compare against the pattern at this offset (offsets stay 8-aligned per chunk start).
        let start = received % 8;
        let mut window = vec![0u8; n + start as usize];
        pattern(received - start, &mut window);
        expected[..n].copy_from_slice(&window[start as usize..]);
        assert_eq!(&got[..n], &expected[..n], "bytes at {received}");
        received += n as u64;
    }
    sending.join().unwrap();
    assert_eq!(received, TOTAL);
    assert!(eventually(|| inflight(&engine) == 0));
    let text = engine.prometheus();
    assert_eq!(
        sample(&text, "dmsc_listener_received_bytes_total{listener=\"l4\"}"),
        Some(TOTAL as f64)
    );
    assert_eq!(
        sample(&text, "dmsc_listener_sent_bytes_total{listener=\"l4\"}"),
        Some(TOTAL as f64)
    );
    assert_eq!(
        sample(
            &text,
            "dmsc_listener_tcp_sessions_total{listener=\"l4\",mode=\"splice\"}"
        ),
        Some(1.0)
    );
}

/// Reads the whole request (to the client's half-close), then answers its length and closes.
fn count_then_answer(mut stream: TcpStream) {
    let mut request = Vec::new();
    if stream.read_to_end(&mut request).is_ok() {
        let _ = stream.write_all(format!("got {} bytes", request.len()).as_bytes());
    }
}

#[test]
fn a_client_half_close_reaches_the_upstream() {
    let upstream = serve(count_then_answer);
    let engine = start(&tcp_document(&[upstream]));
    let mut client = connect(address_of(&engine, "l4"));
    client.write_all(b"request").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 7 bytes");
}

#[test]
fn an_upstream_half_close_leaves_the_other_direction_open() {
    let (heard, hear) = mpsc::channel::<Vec<u8>>();
    let heard = Mutex::new(heard);
    // Says hello and half-closes at once, then takes what comes until the client ends.
    let upstream = serve(move |mut stream| {
        if stream.write_all(b"hello").is_err() || stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        let _ = heard.lock().unwrap().send(rest);
    });
    let engine = start(&tcp_document(&[upstream]));
    let mut client = connect(address_of(&engine, "l4"));
    let mut greeting = Vec::new();
    client.read_to_end(&mut greeting).unwrap();
    assert_eq!(greeting, b"hello");
    // The client can still send after the upstream finished sending.
    client.write_all(b"more").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(hear.recv_timeout(Duration::from_secs(30)).unwrap(), b"more");
    assert!(
        eventually(|| inflight(&engine) == 0),
        "session ended cleanly"
    );
    let text = engine.prometheus();
    assert_eq!(
        sample(&text, "dmsc_listener_received_bytes_total{listener=\"l4\"}"),
        Some(4.0)
    );
    assert_eq!(sample(&text, RESETS), Some(0.0));
}

#[test]
fn a_dead_host_is_skipped_for_the_next_one() {
    let (dead, live) = (dead_address(), echo_upstream());
    let engine = start(&tcp_document(&[dead, live]));
    let address = address_of(&engine, "l4");
    for i in 0..4 {
        let mut client = connect(address);
        let message = format!("session {i}");
        assert_eq!(
            round_trip(&mut client, message.as_bytes()).unwrap(),
            message.as_bytes()
        );
    }
    let text = engine.prometheus();
    let failures = sample(
        &text,
        "dmsc_cluster_upstream_connect_failures_total{cluster=\"echo\"}",
    );
    assert!(failures.is_some_and(|f| f >= 1.0), "{text}");
}

#[test]
fn no_reachable_host_closes_the_client() {
    let engine = start(&tcp_document(&[dead_address(), dead_address()]));
    let mut client = connect(address_of(&engine, "l4"));
    let mut rest = Vec::new();
    // Closed without a byte (EOF or reset, depending on timing).
    let read = client.read_to_end(&mut rest);
    assert!(read.is_err() || rest.is_empty());
    assert!(eventually(|| inflight(&engine) == 0));
}

#[test]
fn an_upstream_reset_ends_the_session_and_counts_against_the_host() {
    // Closing with unread bytes makes the kernel send a reset instead of a FIN.
    let upstream = serve(|stream| {
        let mut byte = [0u8; 1];
        let _ = stream.peek(&mut byte);
        drop(stream);
    });
    let engine = start(&tcp_document(&[upstream]));
    let mut client = connect(address_of(&engine, "l4"));
    client.write_all(b"unread").unwrap();
    let mut rest = Vec::new();
    let read = client.read_to_end(&mut rest);
    assert!(read.is_err() || rest.is_empty());
    assert!(eventually(|| inflight(&engine) == 0));
    let text = engine.prometheus();
    assert_eq!(sample(&text, RESETS), Some(1.0));
}

#[test]
fn a_client_reset_does_not_count_against_the_host() {
    let (said, hello_sent) = mpsc::channel::<()>();
    let said = Mutex::new(said);
    let upstream = serve(move |mut stream| {
        let _ = stream.write_all(b"hello");
        let _ = said.lock().unwrap().send(());
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let engine = start(&tcp_document(&[upstream]));
    let client = connect(address_of(&engine, "l4"));
    hello_sent.recv_timeout(Duration::from_secs(30)).unwrap();
    // Wait until the greeting sits unread in the client's buffer, then close: a reset.
    let mut byte = [0u8; 1];
    assert_eq!(client.peek(&mut byte).unwrap(), 1);
    drop(client);
    assert!(eventually(|| inflight(&engine) == 0));
    let text = engine.prometheus();
    assert_eq!(sample(&text, RESETS), Some(0.0));
    assert_eq!(
        sample(
            &text,
            "dmsc_cluster_upstream_requests_total{cluster=\"echo\"}"
        ),
        Some(1.0)
    );
}
