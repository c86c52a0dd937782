//! L4 proxying: bytes moved both ways with splice(2) through a pipe, never
//! copied into user space.
//!
//! Each direction owns one pipe. A turn splices what the source socket holds
//! into the pipe, then splices the pipe into the destination socket until it
//! is empty, so the pipe is always empty when the source is read: an EAGAIN
//! from the source then always means "no data" and never "pipe full", which
//! keeps tokio's readiness tracking exact. End of stream on one side is passed
//! on as a half-close (shutdown of writing) on the other; an error on either
//! direction closes both connections.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dmsc_core::hash::xxhash64;
use dmsc_core::metrics::Counter;
use rustix::io::Errno;
use rustix::pipe::{
    fcntl_getpipe_size, fcntl_setpipe_size, pipe_with, splice, PipeFlags, SpliceFlags,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::cluster::{Cluster, HostLease, Outcome};
use crate::config::LbPolicy;
use crate::engine::Shared;
use crate::pool::{self, ConnectError, UpstreamConn};
use crate::stats::ListenerStats;

/// Hosts tried for one session before giving up.
const CONNECT_TRIES: usize = 3;
/// Connect timeout of clusters that set none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Pipe capacity asked for (the kernel's default pipe-max-size); 64 KiB if refused.
const PIPE_SIZE: usize = 1 << 20;
/// Buffer of the copy fallback.
const COPY_BUFFER: usize = 64 * 1024;

/// Serves one downstream TCP connection on listener `listener`: picks a host of the
/// listener's cluster (trying other hosts on connect failure) and moves bytes both
/// ways until both directions are closed; half-closes are passed on.
pub async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
) {
    let _inflight = shared.request_started();
    let snapshot = shared.snapshot();
    let Some(runtime) = snapshot.listener(&listener) else {
        return;
    };
    let stats = runtime.stats.clone();
    let Some(cluster) = runtime
        .tcp_cluster
        .as_deref()
        .and_then(|name| snapshot.cluster(name))
        .cloned()
    else {
        return;
    };
    // The session holds its cluster, not the whole snapshot: a reload frees the rest.
    drop(snapshot);
    let Some((upstream, lease, connect_time)) = connect(&cluster, peer).await else {
        return;
    };
    // The connection's accounting (cx_active, its max_connections slot) ends with the session.
    let UpstreamConn {
        stream: upstream,
        accounting,
        ..
    } = upstream;
    cluster.stats.rq_total.inc();
    cluster.stats.rq_active.inc();
    let outcome = match relay(stream, upstream, &stats).await {
        // A client that resets says nothing about the host: only upstream errors count.
        Ok(()) | Err(Side::Client) => Outcome::Status(200),
        Err(Side::Upstream) => {
            cluster.stats.rq_reset.inc();
            Outcome::Reset
        }
    };
    cluster.stats.rq_active.dec();
    // Latency fed to EWMA and outlier detection is the connect time: a session's
    // length says nothing about the host.
    lease.finish(outcome, connect_time);
    drop(accounting);
}

/// The consistent-hash key of a session: its source address, when the cluster hashes.
fn session_hash(cluster: &Cluster, peer: SocketAddr) -> Option<u64> {
    match cluster.config.lb {
        LbPolicy::RingHash | LbPolicy::Maglev => Some(match peer.ip() {
            std::net::IpAddr::V4(ip) => xxhash64(&ip.octets(), 0),
            std::net::IpAddr::V6(ip) => xxhash64(&ip.octets(), 0),
        }),
        _ => None,
    }
}

/// Connects to a host of `cluster`, moving to another host on failure (up to
/// [`CONNECT_TRIES`] hosts): the connection, its host lease and the connect time.
async fn connect(
    cluster: &Arc<Cluster>,
    peer: SocketAddr,
) -> Option<(UpstreamConn, HostLease, Duration)> {
    let hash = session_hash(cluster, peer);
    let mut tried = [peer; CONNECT_TRIES];
    for n in 0..CONNECT_TRIES {
        let Ok(lease) = cluster.pick(hash, &tried[..n]) else {
            cluster.stats.no_healthy_host.inc();
            return None;
        };
        let address = lease.host.address;
        let started = Instant::now();
        // Clusters that set no connect timeout still get one here.
        let deadline =
            (cluster.config.connect_timeout_ms == 0).then(|| started + DEFAULT_CONNECT_TIMEOUT);
        match pool::connect(cluster, address, deadline).await {
            Ok(upstream) => return Some((upstream, lease, started.elapsed())),
            Err(ConnectError::Overflow) => {
                cluster.stats.rq_pending_overflow.inc();
                return None;
            }
            Err(ConnectError::Failed) => {
                lease.finish(Outcome::ConnectFailure, started.elapsed());
            }
        }
        tried[n] = address;
    }
    None
}

/// The connection whose error ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Upstream,
}

/// The socket of one direction that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Source,
    Destination,
}

/// Moves bytes both ways until both directions ended; an error in either ends both
/// and names the connection it came from.
async fn relay(client: TcpStream, upstream: TcpStream, stats: &ListenerStats) -> Result<(), Side> {
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let copied = AtomicBool::new(false);
    let up = pump(client_read, upstream_write, &stats.bytes_in, &copied);
    let down = pump(upstream_read, client_write, &stats.bytes_out, &copied);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let result = loop {
        if up_done && down_done {
            break Ok(());
        }
        let finished = tokio::select! {
            result = &mut up, if !up_done => {
                up_done = true;
                result.map_err(|end| if end == End::Source { Side::Client } else { Side::Upstream })
            }
            result = &mut down, if !down_done => {
                down_done = true;
                result.map_err(|end| if end == End::Source { Side::Upstream } else { Side::Client })
            }
        };
        if let Err(side) = finished {
            // Returning drops both halves of both sockets: both connections close.
            break Err(side);
        }
    };
    if copied.load(Ordering::Relaxed) {
        stats.tcp_copy_sessions.inc();
    } else {
        stats.tcp_splice_sessions.inc();
    }
    result
}

/// One direction: bytes from `from` to `to` until end of stream, then a half-close of `to`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    counter: &Counter,
    copied: &AtomicBool,
) -> Result<(), End> {
    let spliced = match Pipe::new() {
        Ok(pipe) => splice_loop(from.as_ref(), to.as_ref(), &pipe, counter).await,
        Err(err) => Err(err),
    };
    match spliced {
        Ok(()) => {}
        // The kernel refused splice for these descriptors (or gave no pipe): copy instead.
        Err(Fallback::Unsupported) => {
            copied.store(true, Ordering::Relaxed);
            copy_loop(&mut from, &mut to, counter).await?;
        }
        Err(Fallback::Failed(end)) => return Err(end),
    }
    to.shutdown().await.map_err(|_| End::Destination)
}

/// Why splicing stopped short.
#[derive(Debug)]
enum Fallback {
    /// Splice cannot be used here; nothing was moved yet.
    Unsupported,
    /// An I/O error on this socket: the session ends.
    Failed(End),
}

/// A pipe between the two sockets of one direction.
#[derive(Debug)]
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    capacity: usize,
}

impl Pipe {
    fn new() -> Result<Self, Fallback> {
        let (read, write) = pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)
            .map_err(|_| Fallback::Unsupported)?;
        // A larger pipe moves more per system call; the default (64 KiB) still works.
        let _ = fcntl_setpipe_size(&write, PIPE_SIZE);
        let capacity = fcntl_getpipe_size(&write).unwrap_or(64 * 1024);
        Ok(Self {
            read,
            write,
            capacity,
        })
    }
}

const SPLICE: SpliceFlags = SpliceFlags::MOVE.union(SpliceFlags::NONBLOCK);

/// Splices `from` -> pipe -> `to` until `from` ends. The pipe is emptied before
/// `from` is read again (see the module docs for why).
async fn splice_loop(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    counter: &Counter,
) -> Result<(), Fallback> {
    let mut moved_any = false;
    loop {
        let read = from
            .async_io(Interest::READABLE, || {
                splice(from, None, &pipe.write, None, pipe.capacity, SPLICE)
                    .map_err(io::Error::from)
            })
            .await;
        let n = match read {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(err) if !moved_any && err.raw_os_error() == Some(Errno::INVAL.raw_os_error()) => {
                return Err(Fallback::Unsupported)
            }
            Err(_) => return Err(Fallback::Failed(End::Source)),
        };
        moved_any = true;
        counter.inc_by(n as u64);
        let mut left = n;
        while left > 0 {
            let written = to
                .async_io(Interest::WRITABLE, || {
                    splice(&pipe.read, None, to, None, left, SPLICE).map_err(io::Error::from)
                })
                .await
                .map_err(|_| Fallback::Failed(End::Destination))?;
            if written == 0 {
                return Err(Fallback::Failed(End::Destination));
            }
            left -= written;
        }
    }
}

/// The user-space copy used when splice is not available.
async fn copy_loop(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    counter: &Counter,
) -> Result<(), End> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    loop {
        let n = from.read(&mut buffer).await.map_err(|_| End::Source)?;
        if n == 0 {
            return Ok(());
        }
        counter.inc_by(n as u64);
        to.write_all(&buffer[..n])
            .await
            .map_err(|_| End::Destination)?;
    }
}
