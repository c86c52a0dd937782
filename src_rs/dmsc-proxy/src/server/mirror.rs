//! Request mirroring: a copy of a request goes to a shadow cluster from a
//! detached task; its answer is read and dropped, and nothing about it reaches
//! the client or delays the real response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::forward::connect;
use super::upstream_head::{encode_upstream, TraceIds};
use super::{Conn, Request, MAX_TRAILER};
use crate::cluster::{Cluster, Outcome};
use crate::http1::{self, BodyFraming, ChunkedScanner};

/// Longest a shadow request may take when the route sets no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Copies the request (whose body is whole in `conn.body`) to the route's shadow
/// cluster, for the configured fraction of requests.
pub(crate) fn maybe_mirror(conn: &mut Conn, rq: &Request<'_>, trace: Option<&TraceIds>) {
    let Some(policy) = &rq.route.mirror else {
        return;
    };
    if policy.fraction <= 0.0 || fastrand::f64() >= policy.fraction {
        return;
    }
    let Some(cluster) = rq.snap.cluster(&policy.cluster) else {
        return;
    };
    cluster.stats.mirror_total.inc();
    let mut bytes = Vec::with_capacity(rq.head.raw.len() + 256 + conn.body.len());
    let mut scratch = Vec::new();
    let mut target = String::new();
    encode_upstream(
        &rq.head,
        rq.route,
        trace,
        &conn.peer_text,
        None,
        &mut scratch,
        &mut target,
        &mut bytes,
    );
    bytes.extend_from_slice(&conn.body);
    let cluster = cluster.clone();
    let hash = cluster.hash_key(&rq.head, conn.peer.ip());
    let method: Box<str> = rq.head.method().into();
    let limits = http1::Limits {
        max_start_line: rq.limits.max_request_line_bytes,
        max_head: rq.limits.max_header_bytes,
        max_headers: rq.limits.max_headers,
    };
    let timeout = rq.route.timeout.unwrap_or(MIRROR_TIMEOUT);
    tokio::spawn(async move {
        let deadline = Instant::now() + timeout;
        let _ = tokio::time::timeout(
            timeout,
            shadow(cluster, hash, bytes, method, limits, deadline),
        )
        .await;
    });
}

/// Sends `request` to a host of `cluster` and reads the response to its end.
async fn shadow(
    cluster: Arc<Cluster>,
    hash: Option<u64>,
    request: Vec<u8>,
    method: Box<str>,
    limits: http1::Limits,
    deadline: Instant,
) {
    let avoid: [SocketAddr; 0] = [];
    let Ok(lease) = cluster.pick(hash, &avoid) else {
        return;
    };
    let started = Instant::now();
    let mut upstream = match lease.host.pool.take() {
        Some(pooled) => pooled,
        None => match connect(&cluster, lease.host.address, Some(deadline)).await {
            Ok(fresh) => fresh,
            Err(_) => {
                lease.finish(Outcome::ConnectFailure, started.elapsed());
                return;
            }
        },
    };
    upstream.requests += 1;
    if upstream.stream.write_all(&request).await.is_err() {
        lease.finish(Outcome::Reset, started.elapsed());
        return;
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut end = 0;
    let (response, start) = loop {
        match http1::parse_response(&buf[..end], &limits, &method) {
            Ok(Some((response, n))) if response.status >= 200 || response.status == 101 => {
                break (response, n)
            }
            Ok(Some((_, n))) => {
                buf.copy_within(n..end, 0);
                end -= n;
                continue;
            }
            Ok(None) => {}
            Err(_) => {
                lease.finish(Outcome::Reset, started.elapsed());
                return;
            }
        }
        if end == buf.len() {
            if buf.len() >= limits.max_head.saturating_add(limits.max_start_line) {
                lease.finish(Outcome::Reset, started.elapsed());
                return;
            }
            buf.resize(buf.len() * 2, 0);
        }
        match upstream.stream.read(&mut buf[end..]).await {
            Ok(0) | Err(_) => {
                lease.finish(Outcome::Reset, started.elapsed());
                return;
            }
            Ok(n) => end += n,
        }
    };
    let status = response.status;
    if status == 101 {
        lease.finish(Outcome::Status(status), started.elapsed());
        return;
    }
    // Read the body to its end and throw it away.
    let mut pos = start;
    let mut left = match response.framing {
        BodyFraming::ContentLength(n) => Some(n),
        BodyFraming::Empty => Some(0),
        _ => None,
    };
    let mut scanner =
        (response.framing == BodyFraming::Chunked).then(|| ChunkedScanner::new(MAX_TRAILER));
    let mut clean = true;
    loop {
        let avail = end - pos;
        let done = if let Some(n) = &mut left {
            let take = (*n).min(avail as u64);
            *n -= take;
            pos += take as usize;
            *n == 0
        } else if let Some(scanner) = &mut scanner {
            match scanner.scan(&buf[pos..end]) {
                Ok(scan) => {
                    pos += scan.consumed;
                    scan.complete
                }
                Err(_) => {
                    clean = false;
                    break;
                }
            }
        } else {
            pos = end;
            false
        };
        if done {
            break;
        }
        match upstream.stream.read(&mut buf).await {
            Ok(0) => {
                clean = left.is_none() && scanner.is_none();
                break;
            }
            Ok(n) => {
                pos = 0;
                end = n;
            }
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    if clean
        && pos == end
        && !response.connection.close
        && response.framing != BodyFraming::CloseDelimited
    {
        lease.host.pool.put(upstream);
    }
    cluster.stats.record_response(status, elapsed);
    lease.finish(
        if clean {
            Outcome::Status(status)
        } else {
            Outcome::Reset
        },
        elapsed,
    );
}
