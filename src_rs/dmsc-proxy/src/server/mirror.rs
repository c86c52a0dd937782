//! Request mirroring: a copy of a request goes to a shadow cluster from a
//! detached task; its answer is read and dropped, and nothing about it reaches
//! the client or delays the real response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::upstream_head::{encode_upstream, TraceIds};
use super::{head_limits, BodyLeft, Conn, Request};
use crate::cluster::{Cluster, Outcome};
use crate::http1::{self, BodyFraming};
use crate::pool::connect;

/// Longest a shadow request may take when the route sets no timeout.
const MIRROR_TIMEOUT: Duration = Duration::from_secs(15);

/// Copies the request (whose body is whole in `conn.body`) to the route's shadow
/// cluster, for the configured fraction of requests.
pub(crate) fn maybe_mirror(conn: &mut Conn, rq: &Request<'_>, trace: Option<&TraceIds>) {
    let Some(policy) = &rq.route.mirror else {
        return;
    };
    if !policy.sample(fastrand::u64(..)) {
        return;
    }
    let Some(cluster) = rq.snap.cluster(&policy.cluster) else {
        return;
    };
    cluster.stats.mirror_total.inc();
    let mut bytes = Vec::with_capacity(rq.head.raw.len() + 256 + conn.body.len());
    encode_upstream(
        &rq.head,
        rq.route,
        trace,
        &conn.peer_text,
        None,
        &mut conn.scratch,
        &mut conn.target,
        &mut bytes,
    );
    bytes.extend_from_slice(&conn.body);
    let cluster = cluster.clone();
    let hash = cluster.hash_key(&rq.head, conn.peer.ip());
    let method: Box<str> = rq.head.method().into();
    let limits = head_limits(rq.limits);
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
    let mut body = BodyLeft::of(response.framing);
    let mut clean = true;
    loop {
        let Ok(n) = body.take(&buf[pos..end]) else {
            clean = false;
            break;
        };
        pos += n;
        if body.is_done() {
            break;
        }
        match upstream.stream.read(&mut buf).await {
            Ok(0) => {
                clean = matches!(body, BodyLeft::Close);
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
