//! Relaying a final response to the client: head edits, body framing changes
//! (HTTP/1.0 clients, close-delimited upstreams), response buffering, pooling
//! the upstream connection afterwards, and upgrades.

use std::sync::Arc;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::forward::{fail, Failure};
use super::upstream_head::Edits;
use super::{before, finish_response, with_timeout, BodyLeft, Conn, Next, Request, FLUSH_AT};
use crate::cluster::{Cluster, HostLease, Outcome};
use crate::http1::write;
use crate::http1::{encode_response_head, BodyFraming, Head, HeadEdits, ResponseHead, Version};
use crate::pool::UpstreamConn;

/// The framing a HEAD or 304 response declares (sent on, with no body).
fn declared_framing(response: &ResponseHead) -> BodyFraming {
    if let Some(value) = response.header("content-length") {
        if let Some(n) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return BodyFraming::ContentLength(n);
        }
    }
    if response.header("transfer-encoding").is_some() {
        return BodyFraming::Chunked;
    }
    BodyFraming::Empty
}

/// Relays a final response to the client (head, body or upgraded stream), returns
/// the upstream connection to the pool when it is clean, and ends the lease.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    cluster: &Arc<Cluster>,
    lease: HostLease,
    try_started: Instant,
    response: ResponseHead,
    mut upstream: UpstreamConn,
    body_unsent: bool,
) -> Next {
    let status = response.status;
    // Response header edits (plus, below, keep-alive for HTTP/1.0 clients).
    let route = rq.route;
    let mut edits = Edits::of(&route.response_headers);
    // An upgrade, or a CONNECT tunnel: from here on bytes just flow both ways.
    let tunnel = rq.head.method() == "CONNECT" && (200..300).contains(&status);
    if status == 101 || tunnel {
        if status == 101 && !rq.head.connection.upgrade {
            lease.finish(Outcome::Reset, try_started.elapsed());
            cluster.stats.rq_reset.inc();
            return fail(conn, rq, Failure::BadResponse).await;
        }
        lease.finish(Outcome::Status(status), try_started.elapsed());
        cluster.stats.record_response(status, try_started.elapsed());
        rq.stats.record_status(status);
        return upgrade(conn, response, upstream, &edits.head_edits(None, None)).await;
    }
    let client_10 = rq.head.version == Version::Http10;
    let client_framing = match response.framing {
        BodyFraming::Empty => {
            let declared = if rq.head_only || status == 304 {
                declared_framing(&response)
            } else {
                BodyFraming::Empty
            };
            if client_10 && declared == BodyFraming::Chunked {
                BodyFraming::Empty
            } else {
                declared
            }
        }
        BodyFraming::ContentLength(n) => BodyFraming::ContentLength(n),
        // HTTP/1.0 clients cannot take chunks: their bodies end with the connection.
        BodyFraming::Chunked | BodyFraming::CloseDelimited if client_10 => {
            BodyFraming::CloseDelimited
        }
        BodyFraming::Chunked | BodyFraming::CloseDelimited => BodyFraming::Chunked,
    };
    let mut up_body = BodyLeft::of(response.framing);
    let rechunk = matches!(up_body, BodyLeft::Close) && client_framing == BodyFraming::Chunked;
    let dechunk =
        matches!(up_body, BodyLeft::Chunked(_)) && client_framing == BodyFraming::CloseDelimited;
    let close =
        rq.client_close || client_framing == BodyFraming::CloseDelimited || !rq.body.is_done();
    if client_10 && !close {
        edits.add("connection", b"keep-alive");
    }
    let edits = edits.head_edits(None, None);
    encode_response_head(&response, &edits, client_framing, close, &mut conn.cout);
    rq.stats.record_status(status);
    // The body.
    let buffer_limit = rq.limits.response_buffer_bytes;
    let flush_at = FLUSH_AT.max(buffer_limit);
    let mut complete = false;
    let mut failed = None;
    loop {
        let input = &conn.ubuf[conn.upos..conn.uend];
        let taken = if dechunk {
            // The chunks' data goes to the client as it is found.
            up_body.take_chunk_data(input, |data| conn.cout.extend_from_slice(data))
        } else {
            up_body.take(input)
        };
        let Ok(take) = taken else {
            failed = Some(Outcome::Reset);
            break;
        };
        if take > 0 && !dechunk {
            let data = &conn.ubuf[conn.upos..conn.upos + take];
            if rechunk {
                write::push_hex(&mut conn.cout, take as u64);
                conn.cout.extend_from_slice(b"\r\n");
                conn.cout.extend_from_slice(data);
                conn.cout.extend_from_slice(b"\r\n");
            } else if buffer_limit == 0 && conn.cout.len() + take > flush_at {
                // Large pieces go out directly, without a copy.
                if conn.flush().await.is_err() {
                    failed = Some(Outcome::Status(status));
                    break;
                }
                let data = &conn.ubuf[conn.upos..conn.upos + take];
                match with_timeout(conn.io_timeout, conn.stream.write_all(data)).await {
                    Some(Ok(())) => conn.bytes_out += take as u64,
                    _ => {
                        failed = Some(Outcome::Status(status));
                        break;
                    }
                }
            } else {
                conn.cout.extend_from_slice(data);
            }
        }
        conn.upos += take;
        if up_body.is_done() {
            complete = true;
            break;
        }
        // Wait for more of the body; the client gets what is here first unless
        // the response is being buffered.
        if (buffer_limit == 0 || conn.cout.len() > buffer_limit) && conn.flush().await.is_err() {
            failed = Some(Outcome::Status(status));
            break;
        }
        conn.upos = 0;
        conn.uend = 0;
        match before(rq.deadline, upstream.stream.read(&mut conn.ubuf)).await {
            Some(Ok(0)) => {
                if matches!(up_body, BodyLeft::Close) {
                    complete = true;
                } else {
                    failed = Some(Outcome::Reset);
                }
                break;
            }
            Some(Ok(n)) => conn.uend = n,
            Some(Err(_)) => {
                failed = Some(Outcome::Reset);
                break;
            }
            None => {
                cluster.stats.rq_timeout.inc();
                failed = Some(Outcome::Timeout);
                break;
            }
        }
    }
    let elapsed = try_started.elapsed();
    if complete {
        if rechunk {
            conn.cout.extend_from_slice(b"0\r\n\r\n");
        }
        let reusable = !response.connection.close
            && !body_unsent
            && rq.body.is_done()
            && conn.upos == conn.uend
            && !matches!(up_body, BodyLeft::Close);
        if reusable {
            lease.host.pool.put(upstream);
        }
        cluster.stats.record_response(status, elapsed);
        lease.finish(Outcome::Status(status), elapsed);
        finish_response(conn, close).await
    } else {
        let outcome = failed.unwrap_or(Outcome::Reset);
        if outcome == Outcome::Reset {
            cluster.stats.rq_reset.inc();
        }
        cluster.stats.record_response(status, elapsed);
        lease.finish(outcome, elapsed);
        let _ = conn.flush().await;
        Next::Close
    }
}

/// Relays a `101 Switching Protocols` (or a 2xx to CONNECT) and then bytes both
/// ways until both close.
async fn upgrade(
    conn: &mut Conn,
    response: ResponseHead,
    mut upstream: UpstreamConn,
    edits: &HeadEdits<'_>,
) -> Next {
    encode_response_head(&response, edits, BodyFraming::Empty, false, &mut conn.cout);
    conn.cout
        .extend_from_slice(&conn.ubuf[conn.upos..conn.uend]);
    conn.upos = conn.uend;
    if conn.flush().await.is_err() {
        return Next::Close;
    }
    if conn.pos < conn.end {
        if upstream
            .stream
            .write_all(&conn.buf[conn.pos..conn.end])
            .await
            .is_err()
        {
            return Next::Close;
        }
        conn.pos = conn.end;
    }
    if let Ok((up, down)) =
        tokio::io::copy_bidirectional(&mut conn.stream, &mut upstream.stream).await
    {
        conn.bytes_in += up;
        conn.bytes_out += down;
    }
    Next::Close
}
