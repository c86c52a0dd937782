//! Forwarding one request to a cluster: limits, host picks, pooled
//! connections, tries with retries, and relaying the response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsc_core::breaker::Limit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::relay::relay;
use super::upstream_head::{encode_upstream, TraceIds};
use super::{
    addr_key, before, earliest, head_limits, mirror, reply, retry_after_secs, static_reply,
    BodyError, BodyLeft, Conn, Next, Request, READ_BUF,
};
use crate::cluster::{Cluster, HostLease, Outcome, PickError};
use crate::config::RateLimitKey;
use crate::http1::{self, encode_response_head, BodyFraming, HeadEdits, ResponseHead, Version};
use crate::policy::{AttemptOutcome, BulkheadRejected, RetryToken};
use crate::pool::{connect, ConnectError, UpstreamConn};
use crate::route::FallbackPolicy;

/// Request bodies up to this size are copied behind the head into one write.
const COALESCE: usize = 16 * 1024;
/// How long to wait for `100 Continue` before sending the body anyway (as curl does).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// Fresh connections tried after a pooled one turned out to be closed.
const STALE_REDIALS: u32 = 2;

/// Why the cluster could not serve; nothing final was written to the client.
#[derive(Debug)]
pub(crate) enum Failure {
    /// No host could be picked (`circuit`: only breakers stood in the way).
    NoHost { circuit: bool },
    /// Cluster thresholds refused the request.
    Overflow,
    /// The bulkhead refused the request.
    Bulkhead(BulkheadRejected),
    /// Every try failed to connect.
    Connect,
    /// The last try was reset before a response.
    Reset,
    /// The last try timed out.
    Timeout,
    /// The route timeout or the propagated deadline passed.
    RouteTimeout,
    /// The upstream answered garbage.
    BadResponse,
    /// A per-instance rate limit refused.
    RateLimited(Duration),
    /// The client side failed while its body was read.
    Client(BodyError),
}

impl Failure {
    /// The cluster could not serve: a fallback may answer instead.
    fn takes_fallback(&self) -> bool {
        matches!(
            self,
            Self::NoHost { .. }
                | Self::Overflow
                | Self::Bulkhead(_)
                | Self::Connect
                | Self::Reset
                | Self::Timeout
        )
    }

    fn status_reason(&self) -> (u16, &'static str) {
        match self {
            Self::NoHost { circuit: true } => (503, "circuit-open"),
            Self::NoHost { circuit: false } => (503, "no-healthy-host"),
            Self::Overflow => (503, "overflow"),
            Self::Bulkhead(BulkheadRejected::QueueFull) => (503, "bulkhead-full"),
            Self::Bulkhead(BulkheadRejected::QueueTimeout) => (503, "bulkhead-timeout"),
            Self::Connect => (503, "upstream-connect-failure"),
            Self::Reset => (502, "upstream-reset"),
            Self::Timeout | Self::RouteTimeout => (504, "upstream-timeout"),
            Self::BadResponse => (502, "bad-upstream-response"),
            Self::RateLimited(_) => (429, "rate-limit"),
            Self::Client(BodyError::Malformed(e)) => (400, e.reason()),
            Self::Client(BodyError::Client) => (400, "client-body"),
        }
    }
}

/// How the request body goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// No body.
    Empty,
    /// The whole body is in `conn.body` (replayable).
    Full,
    /// `conn.body` holds a prefix; the rest is streamed from the client.
    Stream,
}

/// The addresses tried for this request (the last few).
struct Tried {
    addrs: [SocketAddr; 8],
    len: usize,
}

impl Tried {
    fn new() -> Self {
        Self {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); 8],
            len: 0,
        }
    }
    fn push(&mut self, addr: SocketAddr) {
        if self.len == self.addrs.len() {
            self.addrs.rotate_left(1);
            self.len -= 1;
        }
        self.addrs[self.len] = addr;
        self.len += 1;
    }
    fn as_slice(&self) -> &[SocketAddr] {
        &self.addrs[..self.len]
    }
}

/// Gives a unit back to a dmsc-core limit when dropped.
struct Held<'a>(&'a Limit);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// Counts a request in the cluster (active gauge, retry budget base) while alive.
struct ClusterActive<'a>(&'a Cluster);

impl<'a> ClusterActive<'a> {
    fn new(cluster: &'a Cluster) -> Self {
        cluster.stats.rq_active.inc();
        cluster.retry_budget.request_started();
        Self(cluster)
    }
}

impl Drop for ClusterActive<'_> {
    fn drop(&mut self) {
        self.0.stats.rq_active.dec();
        self.0.retry_budget.request_finished();
    }
}

/// True when no host could be picked only because breakers are open.
fn circuit_open(cluster: &Cluster, error: PickError) -> bool {
    error == PickError::NoHealthyHost
        && cluster
            .hosts()
            .iter()
            .any(|h| h.is_healthy() && !h.is_ejected())
}

/// Serves the request from cluster `name` (or the route's fallback).
pub(crate) async fn forward(conn: &mut Conn, rq: &mut Request<'_>, name: &Arc<str>) -> Next {
    let Some(cluster) = rq.snap.cluster(name) else {
        return reply(conn, rq, 503, "no-healthy-host", &[]).await;
    };
    let plan = match prepare_body(conn, rq).await {
        Ok(plan) => plan,
        Err(e) => return fail(conn, rq, Failure::Client(e)).await,
    };
    let trace = rq.snap.tracing.then(|| TraceIds::of(&rq.head));
    if plan != Plan::Stream {
        mirror::maybe_mirror(conn, rq, trace.as_ref());
    }
    let mut streamed = false;
    let failure = match forward_to(conn, rq, cluster, plan, trace.as_ref(), &mut streamed).await {
        Ok(next) => return next,
        Err(failure) => failure,
    };
    let Some(fallback) = rq
        .route
        .fallback
        .as_ref()
        .filter(|_| failure.takes_fallback())
    else {
        return fail(conn, rq, failure).await;
    };
    cluster.stats.fallback.inc();
    match fallback {
        FallbackPolicy::Respond(response) => {
            static_reply(conn, rq, response, failure.status_reason().1).await
        }
        FallbackPolicy::Cluster(other) => {
            let Some(other) = rq.snap.cluster(other) else {
                return fail(conn, rq, failure).await;
            };
            if streamed {
                return fail(conn, rq, failure).await;
            }
            match forward_to(conn, rq, other, plan, trace.as_ref(), &mut streamed).await {
                Ok(next) => next,
                Err(failure) => fail(conn, rq, failure).await,
            }
        }
    }
}

/// Answers a failure with a proxy-made response.
pub(crate) async fn fail(conn: &mut Conn, rq: &mut Request<'_>, failure: Failure) -> Next {
    if matches!(failure, Failure::Client(BodyError::Client)) {
        return Next::Close;
    }
    if let Failure::Client(BodyError::Malformed(_)) = failure {
        rq.stats.rq_malformed.inc();
        rq.client_close = true;
    }
    let (status, reason) = failure.status_reason();
    if let Failure::RateLimited(wait) = failure {
        rq.stats.rate_limited.inc();
        let (digits, start) = http1::write::u64_digits(retry_after_secs(wait));
        return reply(
            conn,
            rq,
            status,
            reason,
            &[("retry-after", &digits[start..])],
        )
        .await;
    }
    reply(conn, rq, status, reason, &[]).await
}

/// Reads a small request body whole (so tries can replay it); large ones stream.
async fn prepare_body(conn: &mut Conn, rq: &mut Request<'_>) -> Result<Plan, BodyError> {
    conn.body.clear();
    if rq.body.is_done() {
        return Ok(Plan::Empty);
    }
    if rq.head.connection.expect_continue {
        return Ok(Plan::Stream);
    }
    if conn
        .buffer_body(&mut rq.body, rq.limits.retry_buffer_bytes)
        .await?
    {
        Ok(Plan::Full)
    } else {
        Ok(Plan::Stream)
    }
}

/// How one try ended.
enum Attempt {
    /// A final response head (1xx relayed already); `body_unsent`: the upstream
    /// answered before `100 Continue`, so the request body was not sent.
    Head {
        response: ResponseHead,
        upstream: UpstreamConn,
        body_unsent: bool,
    },
    /// No response.
    Fail(TryFail),
    /// The client failed while its body was forwarded.
    Client(BodyError),
    /// The cluster's connection threshold is reached.
    Overflow,
}

/// Why a try got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryFail {
    Connect,
    Reset,
    Timeout,
    Bad,
}

impl TryFail {
    fn outcome(self) -> (AttemptOutcome, Outcome) {
        match self {
            Self::Connect => (AttemptOutcome::ConnectFailure, Outcome::ConnectFailure),
            Self::Reset | Self::Bad => (AttemptOutcome::Reset, Outcome::Reset),
            Self::Timeout => (AttemptOutcome::Timeout, Outcome::Timeout),
        }
    }
    fn failure(self) -> Failure {
        match self {
            Self::Connect => Failure::Connect,
            Self::Reset => Failure::Reset,
            Self::Timeout => Failure::Timeout,
            Self::Bad => Failure::BadResponse,
        }
    }
}

async fn forward_to(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    cluster: &Arc<Cluster>,
    plan: Plan,
    trace: Option<&TraceIds>,
    streamed: &mut bool,
) -> Result<Next, Failure> {
    let route = rq.route;
    let _permit = match &cluster.bulkhead {
        None => None,
        Some(bulkhead) => match bulkhead.acquire().await {
            Ok(permit) => Some(permit),
            Err(rejected) => {
                cluster.stats.bulkhead_rejected.inc();
                return Err(Failure::Bulkhead(rejected));
            }
        },
    };
    let requests = cluster.limits.requests();
    if !requests.try_acquire() {
        cluster.stats.rq_pending_overflow.inc();
        return Err(Failure::Overflow);
    }
    let _request_slot = Held(requests);
    let _active = ClusterActive::new(cluster);
    let hash = cluster.hash_key(&rq.head, conn.peer.ip());
    let idempotent = rq.head.is_idempotent();
    let mut tried = Tried::new();
    let mut retries = 0u32;
    let mut _retry_token = None;
    let mut _retry_slot: Option<Held<'_>> = None;
    let mut last: Option<Failure> = None;
    loop {
        let lease = match cluster.pick(hash, tried.as_slice()) {
            Ok(lease) => lease,
            Err(error) => {
                if let Some(last) = last {
                    return Err(last);
                }
                cluster.stats.no_healthy_host.inc();
                return Err(Failure::NoHost {
                    circuit: circuit_open(cluster, error),
                });
            }
        };
        let address = lease.host.address;
        tried.push(address);
        for limiter in &route.rate_limits {
            if limiter.key == RateLimitKey::Instance {
                let (key, len) = addr_key(address);
                if let Err(limited) = limiter.check(&key[..len]) {
                    return Err(Failure::RateLimited(limited.retry_after));
                }
            }
        }
        let try_started = Instant::now();
        let try_deadline = earliest(
            rq.deadline,
            route.retry.per_try_timeout.map(|t| try_started + t),
        );
        cluster.stats.rq_total.inc();
        let attempt = attempt(
            conn,
            rq,
            cluster,
            &lease,
            plan,
            trace,
            streamed,
            try_deadline,
        )
        .await;
        // The previous retry (if any) is over: give back its budget and threshold units.
        (_retry_token, _retry_slot) = (None, None);
        match attempt {
            Attempt::Head {
                response,
                upstream,
                body_unsent,
            } => {
                let status = response.status;
                let outcome = AttemptOutcome::Status(status);
                // The policy decides which statuses retry (5xx, gateway errors, or the
                // configured retriable codes, which may be below 500).
                let admitted = if may_retry(rq, outcome, idempotent, retries, *streamed) {
                    admit_retry(cluster)
                } else {
                    None
                };
                let Some(admitted) = admitted else {
                    // Not retried: the upstream's own answer goes to the client.
                    return Ok(relay(
                        conn,
                        rq,
                        cluster,
                        lease,
                        try_started,
                        response,
                        upstream,
                        body_unsent,
                    )
                    .await);
                };
                (_retry_token, _retry_slot) = (Some(admitted.0), Some(admitted.1));
                cluster.stats.record_response(status, try_started.elapsed());
                lease.finish(Outcome::Status(status), try_started.elapsed());
                last = Some(Failure::Reset);
            }
            Attempt::Client(error) => {
                drop(lease);
                return Err(Failure::Client(error));
            }
            Attempt::Overflow => {
                drop(lease);
                cluster.stats.rq_pending_overflow.inc();
                return Err(Failure::Overflow);
            }
            Attempt::Fail(fail) => {
                let (attempt_outcome, outcome) = fail.outcome();
                lease.finish(outcome, try_started.elapsed());
                match fail {
                    TryFail::Timeout => cluster.stats.rq_timeout.inc(),
                    TryFail::Reset | TryFail::Bad => cluster.stats.rq_reset.inc(),
                    TryFail::Connect => {}
                }
                if rq.deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(Failure::RouteTimeout);
                }
                if !may_retry(rq, attempt_outcome, idempotent, retries, *streamed) {
                    return Err(fail.failure());
                }
                let Some(admitted) = admit_retry(cluster) else {
                    return Err(fail.failure());
                };
                (_retry_token, _retry_slot) = (Some(admitted.0), Some(admitted.1));
                last = Some(fail.failure());
            }
        }
        retries += 1;
        cluster.stats.rq_retry.inc();
        let delay = route.retry.backoff.delay(retries, fastrand::u64(..));
        if !delay.is_zero() {
            if rq.deadline.is_some_and(|d| Instant::now() + delay >= d) {
                return Err(Failure::RouteTimeout);
            }
            tokio::time::sleep(delay).await;
        }
    }
}

/// A retry the policy allows must also fit the retry budget and the cluster's
/// retry threshold; refusals are counted.
fn admit_retry(cluster: &Cluster) -> Option<(RetryToken<'_>, Held<'_>)> {
    let Some(token) = cluster.retry_budget.try_retry() else {
        cluster.stats.rq_retry_overflow.inc();
        return None;
    };
    let retries = cluster.limits.retries();
    if !retries.try_acquire() {
        cluster.stats.rq_retry_overflow.inc();
        return None;
    }
    Some((token, Held(retries)))
}

/// The route's policy allows another try of a request after `outcome`.
fn may_retry(
    rq: &Request<'_>,
    outcome: AttemptOutcome,
    idempotent: bool,
    retries: u32,
    streamed: bool,
) -> bool {
    let policy = &rq.route.retry;
    retries < policy.num_retries
        && !streamed
        && policy.retriable(outcome, idempotent)
        && rq.deadline.is_none_or(|d| Instant::now() < d)
}

/// Sends the request on a connection to the leased host and reads the final
/// response head.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    cluster: &Arc<Cluster>,
    lease: &HostLease,
    plan: Plan,
    trace: Option<&TraceIds>,
    streamed: &mut bool,
    deadline: Option<Instant>,
) -> Attempt {
    let address = lease.host.address;
    let mut redials = 0;
    loop {
        // A streamed body cannot be replayed on a fresh connection: check first.
        let pooled = lease
            .host
            .pool
            .take()
            .filter(|c| plan != Plan::Stream || is_open(c));
        let reused = pooled.is_some();
        let mut upstream = match pooled {
            Some(pooled) => {
                cluster.stats.cx_reused.inc();
                pooled
            }
            None => match connect(cluster, address, deadline).await {
                Ok(fresh) => fresh,
                Err(ConnectError::Overflow) => return Attempt::Overflow,
                Err(ConnectError::Failed) => {
                    let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
                    return Attempt::Fail(if timed_out {
                        TryFail::Timeout
                    } else {
                        TryFail::Connect
                    });
                }
            },
        };
        upstream.requests += 1;
        let result = exchange(conn, rq, &mut upstream, plan, trace, streamed, deadline).await;
        match result {
            Exchange::Head {
                response,
                body_unsent,
            } => {
                return Attempt::Head {
                    response,
                    upstream,
                    body_unsent,
                };
            }
            // A pooled connection the upstream closed meanwhile: take a fresh one.
            Exchange::Fail {
                fail: TryFail::Reset,
                nothing_received: true,
            } if reused && !*streamed && redials < STALE_REDIALS => {
                redials += 1;
            }
            Exchange::Fail { fail, .. } => return Attempt::Fail(fail),
            Exchange::Client(e) => return Attempt::Client(e),
        }
    }
}

/// Whether an idle pooled connection still looks open (no EOF or stray bytes).
fn is_open(upstream: &UpstreamConn) -> bool {
    let mut probe = [0u8; 1];
    matches!(upstream.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

enum Exchange {
    Head {
        response: ResponseHead,
        body_unsent: bool,
    },
    Fail {
        fail: TryFail,
        nothing_received: bool,
    },
    Client(BodyError),
}

/// Writes the request (head, body) and reads up to the final response head.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    conn: &mut Conn,
    rq: &mut Request<'_>,
    upstream: &mut UpstreamConn,
    plan: Plan,
    trace: Option<&TraceIds>,
    streamed: &mut bool,
    deadline: Option<Instant>,
) -> Exchange {
    let reset = Exchange::Fail {
        fail: TryFail::Reset,
        nothing_received: true,
    };
    let deadline_ms = if rq.propagate_deadline {
        let left = rq.deadline.map_or(0, |d| {
            d.saturating_duration_since(Instant::now()).as_millis()
        });
        if left == 0 {
            return Exchange::Fail {
                fail: TryFail::Timeout,
                nothing_received: true,
            };
        }
        Some(u64::try_from(left).unwrap_or(u64::MAX))
    } else {
        None
    };
    conn.uout.clear();
    encode_upstream(
        &rq.head,
        rq.route,
        trace,
        &conn.peer_text,
        deadline_ms,
        &mut conn.scratch,
        &mut conn.target,
        &mut conn.uout,
    );
    let expect_wait =
        plan == Plan::Stream && rq.head.connection.expect_continue && !rq.body.is_done();
    let stream = &mut upstream.stream;
    // Head and small bodies leave in one write.
    let body_now = plan == Plan::Full || (plan == Plan::Stream && !expect_wait);
    let coalesce = body_now && conn.body.len() <= COALESCE;
    if coalesce {
        conn.uout.extend_from_slice(&conn.body);
    }
    if !matches!(
        before(deadline, stream.write_all(&conn.uout)).await,
        Some(Ok(()))
    ) {
        return reset;
    }
    if body_now
        && !coalesce
        && !matches!(
            before(deadline, stream.write_all(&conn.body)).await,
            Some(Ok(()))
        )
    {
        return reset;
    }
    let mut body_pending = expect_wait;
    if plan == Plan::Stream && !expect_wait {
        if let Err(e) = stream_body(conn, &mut rq.body, stream, streamed, deadline).await {
            return e;
        }
    }
    // The response head.
    if conn.ubuf.is_empty() {
        conn.ubuf = vec![0; READ_BUF];
    }
    conn.upos = 0;
    conn.uend = 0;
    let limits = head_limits(rq.limits);
    let continue_at = Instant::now() + CONTINUE_WAIT;
    let method = rq.head.method();
    loop {
        if conn.upos < conn.uend {
            match http1::parse_response(&conn.ubuf[conn.upos..conn.uend], &limits, method) {
                Ok(Some((response, n))) => {
                    conn.upos += n;
                    if response.status >= 200 || response.status == 101 {
                        return Exchange::Head {
                            response,
                            body_unsent: body_pending,
                        };
                    }
                    if response.status == 100 {
                        if body_pending {
                            conn.cout
                                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                            if conn.flush().await.is_err() {
                                return Exchange::Client(BodyError::Client);
                            }
                            body_pending = false;
                            if let Err(e) =
                                stream_body(conn, &mut rq.body, stream, streamed, deadline).await
                            {
                                return e;
                            }
                        }
                    } else if rq.head.version == Version::Http11 {
                        encode_response_head(
                            &response,
                            &HeadEdits::default(),
                            BodyFraming::Empty,
                            false,
                            &mut conn.cout,
                        );
                        if conn.flush().await.is_err() {
                            return Exchange::Client(BodyError::Client);
                        }
                    }
                    continue;
                }
                Ok(None) => {}
                Err(_) => {
                    return Exchange::Fail {
                        fail: TryFail::Bad,
                        nothing_received: false,
                    }
                }
            }
        }
        if conn.upos > 0 {
            conn.ubuf.copy_within(conn.upos..conn.uend, 0);
            conn.uend -= conn.upos;
            conn.upos = 0;
        }
        if conn.uend == conn.ubuf.len() {
            let max = limits.max_head.saturating_add(limits.max_start_line);
            if conn.ubuf.len() >= max {
                return Exchange::Fail {
                    fail: TryFail::Bad,
                    nothing_received: false,
                };
            }
            let size = (conn.ubuf.len() * 2).min(max);
            conn.ubuf.resize(size, 0);
        }
        let wait = if body_pending {
            earliest(deadline, Some(continue_at))
        } else {
            deadline
        };
        let nothing_received = conn.uend == 0;
        match before(wait, stream.read(&mut conn.ubuf[conn.uend..])).await {
            Some(Ok(0)) | Some(Err(_)) => {
                return Exchange::Fail {
                    fail: TryFail::Reset,
                    nothing_received,
                }
            }
            Some(Ok(n)) => conn.uend += n,
            None => {
                let now = Instant::now();
                if body_pending && now >= continue_at && deadline.is_none_or(|d| now < d) {
                    // No 100 Continue in time: send the body anyway.
                    body_pending = false;
                    if let Err(e) =
                        stream_body(conn, &mut rq.body, stream, streamed, deadline).await
                    {
                        return e;
                    }
                } else {
                    return Exchange::Fail {
                        fail: TryFail::Timeout,
                        nothing_received,
                    };
                }
            }
        }
    }
}

/// Forwards the rest of the request body from the client as it arrives.
async fn stream_body(
    conn: &mut Conn,
    body: &mut BodyLeft,
    stream: &mut TcpStream,
    streamed: &mut bool,
    deadline: Option<Instant>,
) -> Result<(), Exchange> {
    let reset = || Exchange::Fail {
        fail: TryFail::Reset,
        nothing_received: true,
    };
    loop {
        let (start, end) = conn
            .take_body(body)
            .map_err(|e| Exchange::Client(BodyError::Malformed(e)))?;
        if end > start {
            *streamed = true;
            match before(deadline, stream.write_all(&conn.buf[start..end])).await {
                Some(Ok(())) => {}
                _ => return Err(reset()),
            }
        }
        if body.is_done() {
            return Ok(());
        }
        match conn.fill(conn.io_timeout).await {
            Ok(n) if n > 0 => {}
            Ok(_) => return Err(Exchange::Client(BodyError::Client)),
            Err(e) => return Err(Exchange::Client(e)),
        }
    }
}
