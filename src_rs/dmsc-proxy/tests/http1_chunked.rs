//! Chunked body framing: accepted bodies, refused bodies, incremental scanning.

use dmsc_proxy::http1::{ChunkScan, ChunkedScanner, ParseError};

const MAX_TRAILER: usize = 256;

/// Scans `body` in one call.
fn scan(body: &[u8]) -> Result<ChunkScan, ParseError> {
    ChunkedScanner::new(MAX_TRAILER).scan(body)
}

/// Scans `body` split at `cuts` (sorted offsets); the total consumed and
/// whether the body completed, or the error.
fn scan_split(body: &[u8], cuts: &[usize]) -> Result<(usize, bool), ParseError> {
    let mut scanner = ChunkedScanner::new(MAX_TRAILER);
    let mut consumed = 0;
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&body.len())) {
        let r = scanner.scan(&body[start..end])?;
        consumed += r.consumed;
        if r.complete {
            assert!(scanner.is_complete());
            return Ok((consumed, true));
        }
        assert_eq!(
            r.consumed,
            end - start,
            "an incomplete body takes all its input"
        );
        start = end;
    }
    Ok((consumed, false))
}

const VALID: &[&[u8]] = &[
    b"0\r\n\r\n",
    b"5\r\nhello\r\n0\r\n\r\n",
    b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    b"A\r\n0123456789\r\n0\r\n\r\n",
    b"000a\r\n0123456789\r\n0000\r\n\r\n",
    b"1;ext\r\nx\r\n0\r\n\r\n",
    b"1;a=b;c=\"d e\"\r\nx\r\n0;last\r\n\r\n",
    b"1 ; a = b ; c\r\nx\r\n0\r\n\r\n",
    b"1;a=\"q\\\"uoted\\\\\"\r\nx\r\n0\r\n\r\n",
    b"1;a=\"\"\r\nx\r\n0\r\n\r\n",
    b"3\r\n\r\n\r\r\n0\r\n\r\n",
    b"5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum:  abc \r\n\r\n",
    b"0\r\nX-Empty:\r\n\r\n",
];

#[test]
fn valid_bodies_complete_exactly() {
    for body in VALID {
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            scan(&input),
            Ok(ChunkScan {
                consumed: body.len(),
                complete: true
            }),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn partial_bodies_wait_for_more() {
    for body in VALID {
        for len in 0..body.len() {
            assert_eq!(
                scan(&body[..len]),
                Ok(ChunkScan {
                    consumed: len,
                    complete: false
                })
            );
        }
    }
}

#[test]
fn large_chunk_sizes() {
    let mut s = ChunkedScanner::new(0);
    assert_eq!(
        s.scan(b"ffffffffffffffff\r\n"),
        Ok(ChunkScan {
            consumed: 18,
            complete: false
        })
    );
    let data = vec![0u8; 1 << 16];
    assert_eq!(
        s.scan(&data),
        Ok(ChunkScan {
            consumed: data.len(),
            complete: false
        })
    );
    assert_eq!(scan(b"10000000000000000\r\n"), Err(ParseError::BadChunk));
    assert_eq!(
        scan(b"00000000000000001\r\nx\r\n0\r\n\r\n"),
        Err(ParseError::BadChunk)
    );
}

#[test]
fn malformed_chunks_are_refused() {
    let bad: &[&[u8]] = &[
        b"\r\n",
        b"x\r\n",
        b"-1\r\n",
        b"+1\r\nx\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\t\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\rhello\r\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhello\r0\r\n\r\n",
        b"5\r\nhello0\r\n\r\n",
        b"3\r\nhello\r\n0\r\n\r\n",
        b"1;\r\nx\r\n0\r\n\r\n",
        b"1; \r\nx\r\n0\r\n\r\n",
        b"1;=v\r\nx\r\n0\r\n\r\n",
        b"1;a=\r\nx\r\n0\r\n\r\n",
        b"1;a=b c\r\nx\r\n0\r\n\r\n",
        b"1;a \r\nx\r\n0\r\n\r\n",
        b"1;a=b \r\nx\r\n0\r\n\r\n",
        b"1;a=\"unterminated\r\nx\r\n0\r\n\r\n",
        b"1;a=\"x\"y\r\nx\r\n0\r\n\r\n",
        b"1;a=\"\x01\"\r\nx\r\n0\r\n\r\n",
        b"1;a\x00\r\nx\r\n0\r\n\r\n",
        b"1,2\r\nx\r\n0\r\n\r\n",
        b"1 2\r\nx\r\n0\r\n\r\n",
        b"0\r\n\r",
    ];
    for body in bad {
        let err = scan(body).err();
        let err = err.or_else(|| scan(&[*body, b"\r\n\r\n".as_slice()].concat()).err());
        assert!(
            matches!(err, Some(ParseError::BadChunk | ParseError::BadTrailer)),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(scan(b"1;\r\nx\r\n0\r\n\r\n"), Err(ParseError::BadChunk));
    assert_eq!(scan(b"0\r\n\r\x00"), Err(ParseError::BadTrailer));
}

#[test]
fn long_extensions_are_refused() {
    let mut body = b"1;a=".to_vec();
    body.extend(std::iter::repeat_n(b'x', 5000));
    assert_eq!(scan(&body), Err(ParseError::BadChunk));
}

#[test]
fn trailers_are_validated_and_limited() {
    for body in [
        &b"0\r\nX : v\r\n\r\n"[..],
        b"0\r\n X: v\r\n\r\n",
        b"0\r\nX: v\r\n folded\r\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
        b"0\r\nX: a\0b\r\n\r\n",
        b"0\r\nX: a\nY: b\r\n\r\n",
        b"0\r\nNoColon\r\n\r\n",
        b"0\r\n: v\r\n\r\n",
        b"0\r\nX: v\r\n\n",
        b"0\r\n\n",
    ] {
        assert_eq!(
            scan(body),
            Err(ParseError::BadTrailer),
            "{:?}",
            String::from_utf8_lossy(body)
        );
    }
    let field = format!("X-Long: {}\r\n", "v".repeat(40));
    let fits = format!("0\r\n{field}\r\n");
    let mut s = ChunkedScanner::new(field.len());
    assert_eq!(
        s.scan(fits.as_bytes()),
        Ok(ChunkScan {
            consumed: fits.len(),
            complete: true
        })
    );
    let mut s = ChunkedScanner::new(field.len() - 1);
    assert_eq!(s.scan(fits.as_bytes()), Err(ParseError::BadTrailer));
    // No trailer at all fits a zero limit.
    assert!(
        ChunkedScanner::new(0)
            .scan(b"0\r\n\r\n")
            .expect("valid")
            .complete
    );
}

#[test]
fn smuggling_shapes() {
    // A chunk size with an empty extension, a size the front end might read
    // as 0 (TE.CL), and a data block longer than announced.
    assert_eq!(scan(b"1;\r\nZ\r\n0\r\n\r\n"), Err(ParseError::BadChunk));
    assert_eq!(
        scan(b"0000000000000000000000000000042\r\n"),
        Err(ParseError::BadChunk)
    );
    assert_eq!(
        scan(b"5\r\nhello world\r\n0\r\n\r\n"),
        Err(ParseError::BadChunk)
    );
    // Stops exactly at the end: what follows is the next request, not body.
    let input = b"3\r\nabc\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(
        scan(input),
        Ok(ChunkScan {
            consumed: 13,
            complete: true
        })
    );
}

#[test]
fn any_split_gives_the_same_result() {
    let mut rng = fastrand::Rng::with_seed(0x5eed_c0de);
    let mut bodies: Vec<Vec<u8>> = VALID.iter().map(|b| b.to_vec()).collect();
    for _ in 0..200 {
        bodies.push(random_body(&mut rng));
    }
    for body in &bodies {
        let whole = scan_split(body, &[]);
        assert_eq!(whole, Ok((body.len(), true)));
        for _ in 0..20 {
            let mut cuts: Vec<usize> = (0..rng.usize(0..6))
                .map(|_| rng.usize(0..=body.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(scan_split(body, &cuts), whole, "cuts {cuts:?}");
        }
        // Byte by byte.
        let every: Vec<usize> = (1..body.len()).collect();
        assert_eq!(scan_split(body, &every), whole);
    }
}

#[test]
fn mutations_never_panic_and_splits_agree() {
    let mut rng = fastrand::Rng::with_seed(42);
    for _ in 0..3000 {
        let mut body = random_body(&mut rng);
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut body);
        }
        let whole = scan_split(&body, &[]);
        let cut = rng.usize(0..=body.len());
        let split = scan_split(&body, &[cut]);
        assert_eq!(
            whole,
            split,
            "{:?} cut at {cut}",
            String::from_utf8_lossy(&body)
        );
        if let Ok((consumed, complete)) = whole {
            assert!(consumed <= body.len());
            assert!(complete || consumed == body.len());
        }
    }
}

fn random_body(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut body = Vec::new();
    for _ in 0..rng.usize(0..5) {
        let len = rng.usize(1..40);
        let upper = rng.bool();
        let size = if upper {
            format!("{len:X}")
        } else {
            format!("{len:x}")
        };
        body.extend_from_slice(size.as_bytes());
        match rng.u8(0..4) {
            0 => body.extend_from_slice(b";name=value"),
            1 => body.extend_from_slice(b" ; q=\"a \\\" b\""),
            _ => {}
        }
        body.extend_from_slice(b"\r\n");
        body.extend((0..len).map(|_| rng.u8(..)));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n");
    if rng.bool() {
        body.extend_from_slice(b"X-Checksum: 1234\r\n");
    }
    body.extend_from_slice(b"\r\n");
    body
}

fn mutate(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    const INTERESTING: &[u8] = b"\r\n;= \t\"\\0xX:-+";
    let at = rng.usize(0..=body.len());
    match rng.u8(0..4) {
        0 if at < body.len() => body[at] = INTERESTING[rng.usize(0..INTERESTING.len())],
        1 if at < body.len() => {
            body.remove(at);
        }
        2 => body.insert(at, INTERESTING[rng.usize(0..INTERESTING.len())]),
        _ => body.insert(at, rng.u8(..)),
    }
}
