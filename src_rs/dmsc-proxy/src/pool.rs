//! Upstream connections: opening them with the cluster's accounting, and the
//! idle ones of one host, reused across requests (keep-alive).

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::net::TcpStream;

use crate::cluster::Cluster;
use crate::config;
use crate::server::{before, earliest, ms};
use crate::stats::ClusterStats;

/// Gives back what an open upstream connection holds in its cluster (the
/// `cx_active` gauge and a `max_connections` slot) when the connection closes.
#[derive(Debug, Default)]
pub struct ConnAccounting {
    stats: Option<Arc<ClusterStats>>,
    cluster: Option<Weak<Cluster>>,
}

impl ConnAccounting {
    /// Accounting for a connection just opened: `cx_active` was raised and one
    /// `max_connections` slot of `cluster` was taken. A weak reference, so idle
    /// connections never keep a removed cluster alive.
    pub fn opened(cluster: &Arc<Cluster>) -> Self {
        Self {
            stats: Some(cluster.stats.clone()),
            cluster: Some(Arc::downgrade(cluster)),
        }
    }
}

impl Drop for ConnAccounting {
    fn drop(&mut self) {
        if let Some(stats) = self.stats.take() {
            stats.cx_active.dec();
        }
        if let Some(cluster) = self.cluster.take().and_then(|c| c.upgrade()) {
            let _ = cluster.limits.connections().release();
        }
    }
}

/// An upstream connection and how much it has served.
#[derive(Debug)]
pub struct UpstreamConn {
    /// The socket.
    pub stream: TcpStream,
    /// Requests sent on it so far.
    pub requests: u64,
    /// Released when the connection is dropped.
    pub accounting: ConnAccounting,
}

impl UpstreamConn {
    /// A connection without cluster accounting.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            requests: 0,
            accounting: ConnAccounting::default(),
        }
    }
}

/// Why an upstream connection could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectError {
    /// The cluster's connection threshold is reached.
    Overflow,
    /// Refused, unreachable or timed out.
    Failed,
}

/// Opens a connection to `addr` for `cluster`: takes a `max_connections` slot,
/// connects within the cluster's connect timeout and `deadline` (whichever ends
/// first), sets TCP_NODELAY and counts it (`cx_total`, `cx_active`, `cx_connect_fail`).
pub async fn connect(
    cluster: &Arc<Cluster>,
    addr: SocketAddr,
    deadline: Option<Instant>,
) -> Result<UpstreamConn, ConnectError> {
    let limit = cluster.limits.connections();
    if !limit.try_acquire() {
        return Err(ConnectError::Overflow);
    }
    let timeout = ms(cluster.config.connect_timeout_ms).map(|t| Instant::now() + t);
    let connected = before(earliest(deadline, timeout), TcpStream::connect(addr)).await;
    match connected {
        Some(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            cluster.stats.cx_total.inc();
            cluster.stats.cx_active.inc();
            Ok(UpstreamConn {
                stream,
                requests: 0,
                accounting: ConnAccounting::opened(cluster),
            })
        }
        _ => {
            let _ = limit.release();
            cluster.stats.cx_connect_fail.inc();
            Err(ConnectError::Failed)
        }
    }
}

/// The idle connections of one host (newest reused first; expired ones closed).
#[derive(Debug)]
pub struct Pool {
    idle: Mutex<Vec<(UpstreamConn, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
    max_requests: u64,
}

impl Pool {
    /// An empty pool.
    pub fn new(config: &config::PoolConfig) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle: config.max_idle_per_host,
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            max_requests: config.max_requests_per_connection,
        }
    }

    /// An idle connection, if one is fresh.
    pub fn take(&self) -> Option<UpstreamConn> {
        let mut idle = self.idle.lock();
        let (conn, since) = idle.pop()?;
        if self.idle_timeout.is_zero() || since.elapsed() < self.idle_timeout {
            return Some(conn);
        }
        // The newest one expired, so every older one did too. Close them outside the lock.
        let expired = std::mem::take(&mut *idle);
        drop(idle);
        drop(expired);
        None
    }

    /// Returns a connection that finished a response cleanly.
    pub fn put(&self, conn: UpstreamConn) {
        if self.max_idle == 0 || (self.max_requests > 0 && conn.requests >= self.max_requests) {
            return;
        }
        let mut idle = self.idle.lock();
        if idle.len() >= self.max_idle {
            // Keep the newest: the oldest is the most likely to be closed by the peer.
            let oldest = idle.remove(0);
            idle.push((conn, Instant::now()));
            drop(idle);
            drop(oldest);
            return;
        }
        idle.push((conn, Instant::now()));
    }

    /// Closes idle connections older than the idle timeout (called periodically, so
    /// sockets do not linger on a host that gets no new requests).
    pub fn evict_expired(&self) {
        if self.idle_timeout.is_zero() {
            return;
        }
        let mut idle = self.idle.lock();
        // Oldest first: the expired ones are a prefix.
        let fresh_from = idle.partition_point(|(_, since)| since.elapsed() >= self.idle_timeout);
        let expired: Vec<_> = idle.drain(..fresh_from).collect();
        drop(idle);
        drop(expired);
    }

    /// Idle connections held.
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }

    /// Closes every idle connection (host removed, drain).
    pub fn clear(&self) {
        let all = std::mem::take(&mut *self.idle.lock());
        drop(all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn conns(n: usize) -> (TcpListener, Vec<UpstreamConn>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(UpstreamConn::new(
                TcpStream::connect(addr).await.expect("connect"),
            ));
        }
        (listener, out)
    }

    fn config(max_idle: usize, idle_ms: u64, max_requests: u64) -> config::PoolConfig {
        config::PoolConfig {
            max_idle_per_host: max_idle,
            idle_timeout_ms: idle_ms,
            max_requests_per_connection: max_requests,
        }
    }

    fn port(conn: &UpstreamConn) -> u16 {
        conn.stream.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    #[tokio::test]
    async fn newest_is_reused_first() {
        let (_l, mut all) = conns(3).await;
        let pool = Pool::new(&config(8, 60_000, 0));
        let ports: Vec<u16> = all.iter().map(port).collect();
        for conn in all.drain(..) {
            pool.put(conn);
        }
        assert_eq!(pool.idle(), 3);
        let taken: Vec<u16> = (0..3)
            .filter_map(|_| pool.take())
            .map(|c| port(&c))
            .collect();
        assert_eq!(taken, [ports[2], ports[1], ports[0]]);
        assert!(pool.take().is_none());
    }

    #[tokio::test]
    async fn the_idle_cap_keeps_the_newest() {
        let (_l, mut all) = conns(3).await;
        let pool = Pool::new(&config(2, 60_000, 0));
        let ports: Vec<u16> = all.iter().map(port).collect();
        for conn in all.drain(..) {
            pool.put(conn);
        }
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.take().map(|c| port(&c)), Some(ports[2]));
        assert_eq!(pool.take().map(|c| port(&c)), Some(ports[1]));
    }

    #[tokio::test]
    async fn expired_connections_are_closed_on_take() {
        let (_l, mut all) = conns(2).await;
        let pool = Pool::new(&config(8, 1, 0));
        for conn in all.drain(..) {
            pool.put(conn);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.take().is_none());
        assert_eq!(pool.idle(), 0);
    }

    #[tokio::test]
    async fn retired_connections_are_not_kept() {
        let (_l, mut all) = conns(2).await;
        let pool = Pool::new(&config(8, 60_000, 3));
        let mut worn = all.remove(0);
        worn.requests = 3;
        pool.put(worn);
        let mut fresh = all.remove(0);
        fresh.requests = 2;
        pool.put(fresh);
        assert_eq!(pool.idle(), 1);
        pool.clear();
        assert_eq!(pool.idle(), 0);
    }
}
