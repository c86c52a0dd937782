//! HTTP/1.1 codec hot paths, per request.
//!
//! * `http1/parse_request_8_headers`: a typical browser-like request head;
//! * `http1/parse_response_5_headers`: a typical response head;
//! * `http1/encode_request`: writing the parsed request back out with edits;
//! * `http1/encode_response`: writing the parsed response back out;
//! * `http1/chunked_scan_16k`: validating a 16 KiB chunked body in 1 KiB chunks.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dmsc_proxy::http1::{
    encode_request_head, encode_response_head, parse_request, parse_response, ChunkedScanner,
    HeadEdits, Limits,
};

const REQUEST: &[u8] = b"GET /api/v1/items?id=42&name=widget HTTP/1.1\r\n\
Host: catalog.service.internal:8080\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=0f8e7d6c5b4a39281706; theme=dark\r\n\
Connection: keep-alive\r\n\
X-Request-Id: 5f2b9c1e-8a47-4d3b-b6e0-2c9a7f13d845\r\n\r\n";

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Content-Type: application/json\r\n\
Content-Length: 1024\r\n\
Date: Tue, 14 Apr 2026 10:00:00 GMT\r\n\
Cache-Control: no-store\r\n\
Server: catalog\r\n\r\n";

fn bench_http1(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("http1");

    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_request_8_headers", |b| {
        b.iter(|| black_box(parse_request(black_box(REQUEST), &limits)))
    });
    group.bench_function("parse_response_5_headers", |b| {
        b.iter(|| black_box(parse_response(black_box(RESPONSE), &limits, "GET")))
    });

    let (request, _) = parse_request(REQUEST, &limits)
        .ok()
        .flatten()
        .expect("valid request");
    let add: [(&str, &[u8]); 2] = [
        ("x-forwarded-for", b"10.1.2.3"),
        (
            "traceparent",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let edits = HeadEdits {
        add: &add,
        host: Some("10.0.0.7:8080"),
        ..HeadEdits::default()
    };
    let mut out = Vec::with_capacity(1024);
    group.bench_function("encode_request", |b| {
        b.iter(|| {
            out.clear();
            encode_request_head(black_box(&request), &edits, request.framing, &mut out);
            black_box(out.len())
        })
    });

    let (response, _) = parse_response(RESPONSE, &limits, "GET")
        .ok()
        .flatten()
        .expect("valid response");
    group.bench_function("encode_response", |b| {
        b.iter(|| {
            out.clear();
            encode_response_head(
                black_box(&response),
                &HeadEdits::default(),
                response.framing,
                false,
                &mut out,
            );
            black_box(out.len())
        })
    });

    let mut body = Vec::new();
    for _ in 0..16 {
        body.extend_from_slice(b"400\r\n");
        body.extend(std::iter::repeat_n(b'x', 1024));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("chunked_scan_16k", |b| {
        b.iter(|| {
            let mut scanner = ChunkedScanner::new(4096);
            black_box(scanner.scan(black_box(&body)).ok())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_http1);
criterion_main!(benches);
