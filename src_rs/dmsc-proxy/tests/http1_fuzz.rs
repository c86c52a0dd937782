//! Random and mutated input never panics the codec, and whatever it accepts
//! is consistent: spans in range, prefixes incomplete, re-encoding parses back.

use dmsc_proxy::http1::{
    encode_request_head, encode_response_head, parse_request, parse_response, BodyFraming, Head,
    HeadEdits, Limits, ParseError, RequestHead, ResponseHead,
};

const SEEDS: &[&[u8]] = &[
    b"GET /a/b?c=d&e=%20 HTTP/1.1\r\nHost: example.com:80\r\nCookie: a=b; c=d\r\nAccept: */*\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close, x-a\r\nX-A: 1\r\n\r\nhello",
    b"PUT /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n0\r\n\r\n",
    b"\r\nGET http://h:8/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: [::1]:9\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
];

const RESPONSE_SEEDS: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a=b\r\n\r\nok",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: keep-alive\r\n\r\n",
    b"HTTP/1.0 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
];

const INTERESTING: &[u8] = b"\r\n\0 \t:;,=\"/?*%+-0159aAfFxX[]@#\x7f\x80\xff";

fn mutate(rng: &mut fastrand::Rng, buf: &mut Vec<u8>) {
    let at = rng.usize(0..=buf.len());
    let byte = if rng.bool() {
        INTERESTING[rng.usize(0..INTERESTING.len())]
    } else {
        rng.u8(..)
    };
    match rng.u8(0..5) {
        0 if at < buf.len() => buf[at] = byte,
        1 if at < buf.len() => {
            buf.remove(at);
        }
        2 if at < buf.len() => {
            // Duplicate a slice (repeats fields and separators).
            let end = (at + rng.usize(1..24)).min(buf.len());
            let piece = buf[at..end].to_vec();
            let to = rng.usize(0..=buf.len());
            buf.splice(to..to, piece);
        }
        3 => {
            let words: [&[u8]; 8] = [
                b"Transfer-Encoding: chunked\r\n",
                b"Content-Length: 3\r\n",
                b"Host: x\r\n",
                b"Connection: upgrade\r\n",
                b" chunked",
                b"\r\n",
                b"HTTP/1.1",
                b"Upgrade: x\r\n",
            ];
            let w = words[rng.usize(0..words.len())];
            buf.splice(at..at, w.iter().copied());
        }
        _ => buf.insert(at, byte),
    }
}

fn limits(rng: &mut fastrand::Rng) -> Limits {
    if rng.u8(0..4) == 0 {
        Limits {
            max_start_line: rng.usize(0..80),
            max_head: rng.usize(0..200),
            max_headers: rng.usize(0..6),
        }
    } else {
        Limits::default()
    }
}

fn check_request(
    buf: &[u8],
    lim: &Limits,
    rng: &mut fastrand::Rng,
    out: &mut Vec<u8>,
) -> Option<ParseError> {
    let (head, n) = match parse_request(buf, lim) {
        Ok(Some(ok)) => ok,
        Ok(None) => return None,
        Err(e) => return Some(e),
    };
    assert!(n <= buf.len() && head.raw.len() <= n);
    assert!(head.raw.len() <= lim.max_head && head.fields.len() <= lim.max_headers);
    exercise_request(&head);
    // Shorter input is still incomplete.
    let cut = rng.usize(0..n);
    assert_eq!(
        parse_request(&buf[..cut], lim),
        Ok(None),
        "prefix {cut} of {:?}",
        String::from_utf8_lossy(buf)
    );
    // What is written parses back with the same framing.
    out.clear();
    encode_request_head(&head, &HeadEdits::default(), head.framing, out);
    let again = parse_request(
        out,
        &Limits {
            max_head: usize::MAX,
            max_start_line: usize::MAX,
            max_headers: usize::MAX,
        },
    );
    let (again, m) = again.expect("re-encoded head is valid").expect("complete");
    assert_eq!(m, out.len());
    assert_eq!(again.framing, head.framing);
    assert_eq!(again.method(), head.method());
    assert_eq!(
        again.host().map(str::to_ascii_lowercase),
        head.host().map(str::to_ascii_lowercase)
    );
    None
}

fn exercise_request(head: &RequestHead) {
    let _ = (
        head.method(),
        head.target(),
        head.path(),
        head.query(),
        head.host(),
        head.is_idempotent(),
    );
    let _ = (
        head.query_param("a"),
        head.query_param("e"),
        head.cookie("a"),
        head.header("host"),
    );
    assert_eq!(head.header_pairs().count(), head.fields.len());
}

fn check_response(buf: &[u8], lim: &Limits, method: &str, out: &mut Vec<u8>) -> Option<ParseError> {
    let (head, n) = match parse_response(buf, lim, method) {
        Ok(Some(ok)) => ok,
        Ok(None) => return None,
        Err(e) => return Some(e),
    };
    assert!(n <= buf.len() && head.raw.len() == n);
    assert!((100..=599).contains(&head.status));
    let _ = (head.reason_phrase(), head.header("content-length"));
    out.clear();
    encode_response_head(
        &head,
        &HeadEdits::default(),
        head.framing,
        head.connection.close,
        out,
    );
    let (again, m): (ResponseHead, usize) = parse_response(out, &Limits::default(), method)
        .expect("re-encoded head is valid")
        .expect("complete");
    assert_eq!(m, out.len());
    assert_eq!(again.status, head.status);
    if head.framing != BodyFraming::CloseDelimited {
        assert_eq!(again.framing, head.framing);
    }
    None
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(1);
    let mut out = Vec::new();
    for _ in 0..50_000 {
        let len = rng.usize(0..64);
        let buf: Vec<u8> = (0..len)
            .map(|_| INTERESTING[rng.usize(0..INTERESTING.len())])
            .collect();
        let lim = limits(&mut rng);
        check_request(&buf, &lim, &mut rng, &mut out);
        check_response(&buf, &lim, "GET", &mut out);
    }
}

#[test]
fn mutated_heads_never_panic() {
    let mut rng = fastrand::Rng::with_seed(2);
    let mut out = Vec::new();
    let mut accepted = 0;
    for i in 0..150_000 {
        let mut buf = SEEDS[i % SEEDS.len()].to_vec();
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut buf);
        }
        let lim = limits(&mut rng);
        if check_request(&buf, &lim, &mut rng, &mut out).is_none() {
            accepted += 1;
        }
    }
    // The mutations are small enough that many heads stay valid.
    assert!(accepted > 10_000, "only {accepted} accepted");
}

#[test]
fn mutated_responses_never_panic() {
    let mut rng = fastrand::Rng::with_seed(3);
    let mut out = Vec::new();
    let methods = ["GET", "HEAD", "CONNECT", "POST"];
    for i in 0..50_000 {
        let mut buf = RESPONSE_SEEDS[i % RESPONSE_SEEDS.len()].to_vec();
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut buf);
        }
        let lim = limits(&mut rng);
        check_response(&buf, &lim, methods[rng.usize(0..methods.len())], &mut out);
    }
}
