//! Active health checking: HTTP and TCP probes and the threshold state machine.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::InvalidArgument;

/// Health of an instance as the registry sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Health {
    /// Not checked yet; treated as not healthy for discovery.
    Unknown = 0,
    /// Passing its checks: discoverable.
    Healthy = 1,
    /// Failing its checks: removed from rotation until it recovers.
    Unhealthy = 2,
}

impl Health {
    /// Decodes the `repr(u8)` value stored in atomics.
    pub fn from_u8(value: u8) -> Self {
        match value {
            1 => Health::Healthy,
            2 => Health::Unhealthy,
            _ => Health::Unknown,
        }
    }

    /// Lower-case name, as the APIs print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Healthy => "healthy",
            Health::Unhealthy => "unhealthy",
        }
    }
}

/// How often and how strictly instances are checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthCheckConfig {
    /// Time between two checks of the same instance.
    pub interval: Duration,
    /// Time allowed for connect + request + response.
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy instance healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy instance unhealthy.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
        }
    }
}

impl HealthCheckConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        if self.interval.is_zero() {
            return Err(InvalidArgument::new("health_check_interval", "must be > 0"));
        }
        if self.timeout.is_zero() {
            return Err(InvalidArgument::new("health_check_timeout", "must be > 0"));
        }
        if self.healthy_threshold == 0 {
            return Err(InvalidArgument::new(
                "healthy_threshold",
                "must be at least 1",
            ));
        }
        if self.unhealthy_threshold == 0 {
            return Err(InvalidArgument::new(
                "unhealthy_threshold",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// Consecutive-outcome counter deciding when health flips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streak {
    passes: u32,
    failures: u32,
}

impl Streak {
    /// Records one check outcome and returns the health it leads to from `current`.
    pub fn record(&mut self, passed: bool, current: Health, config: &HealthCheckConfig) -> Health {
        if passed {
            self.passes = self.passes.saturating_add(1);
            self.failures = 0;
            // A first result decides at once: waiting thresholds on an unknown
            // instance would only delay its first traffic.
            if current == Health::Unknown || self.passes >= config.healthy_threshold {
                return Health::Healthy;
            }
        } else {
            self.failures = self.failures.saturating_add(1);
            self.passes = 0;
            if current == Health::Unknown || self.failures >= config.unhealthy_threshold {
                return Health::Unhealthy;
            }
        }
        current
    }
}

/// Probes `host:port` with `GET path` over HTTP/1.1; passes on a 2xx status.
///
/// An empty `path` makes it a TCP check: a successful connect passes.
pub fn probe(host: &str, port: u16, path: &str, timeout: Duration) -> bool {
    probe_inner(host, port, path, timeout).unwrap_or(false)
}

fn probe_inner(host: &str, port: u16, path: &str, timeout: Duration) -> std::io::Result<bool> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    if path.is_empty() {
        return Ok(true);
    }
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: dmsc-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    // The status line fits in the first read of any real server; 12 bytes is "HTTP/1.1 200".
    let mut head = [0u8; 64];
    let mut filled = 0;
    while filled < 12 {
        let n = stream.read(&mut head[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(is_2xx(&head[..filled]))
}

fn is_2xx(status_line: &[u8]) -> bool {
    status_line.len() >= 12
        && status_line.starts_with(b"HTTP/1.")
        && status_line[8] == b' '
        && status_line[9] == b'2'
        && status_line[10].is_ascii_digit()
        && status_line[11].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    fn serve_once(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        thread::spawn(move || {
            if let Ok((mut conn, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(reply);
            }
        });
        port
    }

    #[test]
    fn http_probe_passes_on_2xx_only() {
        let t = Duration::from_secs(2);
        let ok = serve_once(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert!(probe("127.0.0.1", ok, "/health", t));
        let bad = serve_once(b"HTTP/1.1 503 Unavailable\r\n\r\n");
        assert!(!probe("127.0.0.1", bad, "/health", t));
        let garbage = serve_once(b"nonsense");
        assert!(!probe("127.0.0.1", garbage, "/health", t));
    }

    #[test]
    fn tcp_probe_needs_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(probe("127.0.0.1", port, "", Duration::from_secs(1)));
        drop(listener);
        assert!(!probe("127.0.0.1", port, "", Duration::from_secs(1)));
    }

    #[test]
    fn thresholds_decide_flips() {
        let config = HealthCheckConfig {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..HealthCheckConfig::default()
        };
        let mut streak = Streak::default();
        assert_eq!(
            streak.record(true, Health::Unknown, &config),
            Health::Healthy
        );
        let mut health = Health::Healthy;
        for expected in [Health::Healthy, Health::Healthy, Health::Unhealthy] {
            health = streak.record(false, health, &config);
            assert_eq!(health, expected);
        }
        health = streak.record(true, health, &config);
        assert_eq!(health, Health::Unhealthy);
        health = streak.record(true, health, &config);
        assert_eq!(health, Health::Healthy);
    }
}
