//! Active health checking: HTTP and TCP probes and the threshold state machine.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
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

/// The health a newly registered instance starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InitialHealth {
    /// Probe the instance once before registration returns and start with the result.
    #[default]
    Check,
    /// Not discoverable until the first scheduled check passes (it runs at once). An update
    /// of a registered instance keeps the health that instance already has.
    Unknown,
    /// Discoverable at once; the scheduled checks take it out if it fails them.
    Healthy,
    /// Not discoverable until it passes `healthy_threshold` scheduled checks.
    Unhealthy,
}

impl InitialHealth {
    /// All choices, in declaration order.
    pub const ALL: [InitialHealth; 4] = [
        InitialHealth::Check,
        InitialHealth::Unknown,
        InitialHealth::Healthy,
        InitialHealth::Unhealthy,
    ];

    /// Lower-case name used by configuration files and the Python API.
    pub fn name(self) -> &'static str {
        match self {
            InitialHealth::Check => "check",
            InitialHealth::Unknown => "unknown",
            InitialHealth::Healthy => "healthy",
            InitialHealth::Unhealthy => "unhealthy",
        }
    }

    /// The choice called `name` (as [`InitialHealth::name`] spells it).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// Most threads one health checker may probe with.
pub const MAX_WORKERS: u32 = 1024;

/// A half-open range `[start, end)` of HTTP status codes.
pub type StatusRange = (u16, u16);

/// The statuses an HTTP check passes on unless configured otherwise: 2xx.
pub const DEFAULT_EXPECTED_STATUSES: [StatusRange; 1] = [(200, 300)];

/// How often and how strictly instances are checked.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheckConfig {
    /// Mean time between two checks of the same instance.
    pub interval: Duration,
    /// Time allowed for connect + request + response.
    pub timeout: Duration,
    /// Consecutive passes that make an unhealthy instance healthy.
    pub healthy_threshold: u32,
    /// Consecutive failures that make a healthy instance unhealthy.
    pub unhealthy_threshold: u32,
    /// Fraction in [0, 1] by which each wait between two checks of an instance varies at
    /// random around `interval` (0.1: between 0.9 and 1.1 intervals), so that instances
    /// registered together are not probed in bursts.
    pub jitter: f64,
    /// Threads probing in parallel (probes block on the network, so one core keeps many busy).
    pub workers: u32,
    /// Statuses an HTTP check passes on, as half-open ranges (Envoy's `expected_statuses`);
    /// shared so that copying the configuration per check stays cheap.
    pub expected_statuses: Arc<[StatusRange]>,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 1,
            unhealthy_threshold: 2,
            jitter: 0.1,
            workers: 4,
            expected_statuses: Arc::new(DEFAULT_EXPECTED_STATUSES),
        }
    }
}

impl HealthCheckConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), InvalidArgument> {
        if self.interval.is_zero() {
            return Err(InvalidArgument::new(
                "health_check_interval",
                "must be longer than 0",
            ));
        }
        if self.timeout.is_zero() {
            return Err(InvalidArgument::new(
                "health_check_timeout",
                "must be longer than 0",
            ));
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
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(InvalidArgument::new(
                "health_check_jitter",
                format!("must be a fraction between 0 and 1, got {}", self.jitter),
            ));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(InvalidArgument::new(
                "health_check_workers",
                format!("must be between 1 and {MAX_WORKERS}, got {}", self.workers),
            ));
        }
        validate_expected_statuses(&self.expected_statuses)
    }

    /// The wait before the next check of an instance: `interval` scaled by a random factor in
    /// `[1 - jitter, 1 + jitter]` (`unit` is uniform in [0, 1)), so the mean stays `interval`.
    pub fn next_wait(&self, unit: f64) -> Duration {
        self.interval
            .mul_f64((1.0 + self.jitter * (2.0 * unit - 1.0)).max(0.0))
    }
}

/// Checks that `ranges` is not empty and each range is `100 <= start < end <= 600`.
pub fn validate_expected_statuses(ranges: &[StatusRange]) -> Result<(), InvalidArgument> {
    const ARGUMENT: &str = "health_check_expected_statuses";
    if ranges.is_empty() {
        return Err(InvalidArgument::new(
            ARGUMENT,
            "must hold at least one range",
        ));
    }
    for &(start, end) in ranges {
        if !(100 <= start && start < end && end <= 600) {
            return Err(InvalidArgument::new(
                ARGUMENT,
                format!("[{start}, {end}) is not a range with 100 <= start < end <= 600"),
            ));
        }
    }
    Ok(())
}

/// Whether `status` falls in one of the half-open `ranges`.
pub fn status_expected(status: u16, ranges: &[StatusRange]) -> bool {
    ranges
        .iter()
        .any(|&(start, end)| (start..end).contains(&status))
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

/// Probes `host:port` with `GET path` over HTTP/1.1; passes when the status falls in one of
/// the half-open `expected` ranges (`DEFAULT_EXPECTED_STATUSES`: 2xx).
///
/// An empty `path` makes it a TCP check: a successful connect passes.
pub fn probe(
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
    expected: &[StatusRange],
) -> bool {
    let Ok(stream) = connect(host, port, timeout) else {
        return false;
    };
    if path.is_empty() {
        return true;
    }
    matches!(
        http_status(stream, host, port, path, timeout),
        Ok(Some(status)) if status_expected(status, expected)
    )
}

fn connect(host: &str, port: u16, timeout: Duration) -> std::io::Result<TcpStream> {
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other("no address"))?;
    TcpStream::connect_timeout(&addr, timeout)
}

/// Sends `GET path` and reads the status code (`None` if the answer is not HTTP/1.x).
fn http_status(
    mut stream: TcpStream,
    host: &str,
    port: u16,
    path: &str,
    timeout: Duration,
) -> std::io::Result<Option<u16>> {
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
    Ok(parse_status(&head[..filled]))
}

/// The 3-digit status code of an HTTP/1.x status line.
fn parse_status(status_line: &[u8]) -> Option<u16> {
    if status_line.len() < 12 || !status_line.starts_with(b"HTTP/1.") || status_line[8] != b' ' {
        return None;
    }
    // A status code is exactly three digits, followed by a space or the line's end.
    if status_line.get(12).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    status_line[9..12].iter().try_fold(0u16, |code, &digit| {
        digit
            .is_ascii_digit()
            .then(|| code * 10 + u16::from(digit - b'0'))
    })
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

    fn probe_reply(reply: &'static [u8], expected: &[StatusRange]) -> bool {
        let port = serve_once(reply);
        probe(
            "127.0.0.1",
            port,
            "/health",
            Duration::from_secs(2),
            expected,
        )
    }

    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";
    const MOVED: &[u8] = b"HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\n\r\n";
    const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\r\n";

    #[test]
    fn http_probe_passes_on_2xx_by_default() {
        let default = HealthCheckConfig::default().expected_statuses;
        assert!(probe_reply(NO_CONTENT, &default));
        assert!(!probe_reply(MOVED, &default));
        assert!(!probe_reply(UNAVAILABLE, &default));
        assert!(!probe_reply(b"nonsense", &default));
    }

    #[test]
    fn http_probe_passes_on_the_configured_statuses() {
        let up_to_redirects = [(200, 400)];
        assert!(probe_reply(NO_CONTENT, &up_to_redirects));
        assert!(probe_reply(MOVED, &up_to_redirects));
        assert!(!probe_reply(UNAVAILABLE, &up_to_redirects));
        let only_unavailable = [(503, 504)];
        assert!(probe_reply(UNAVAILABLE, &only_unavailable));
        assert!(!probe_reply(NO_CONTENT, &only_unavailable));
    }

    #[test]
    fn status_lines_parse_to_the_full_code() {
        assert_eq!(parse_status(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(parse_status(b"HTTP/1.0 418"), Some(418));
        assert_eq!(parse_status(b"HTTP/1.1 2000 Too long"), None);
        assert_eq!(parse_status(b"HTTP/1.1 2x0 Bad"), None);
        assert_eq!(parse_status(b"HTTP/2 200 OK"), None);
        assert_eq!(parse_status(b"HTTP/1.1 20"), None);
    }

    #[test]
    fn ranges_are_half_open() {
        let ranges = [(200, 300), (418, 419)];
        assert!(status_expected(200, &ranges));
        assert!(status_expected(299, &ranges));
        assert!(!status_expected(300, &ranges));
        assert!(status_expected(418, &ranges));
        assert!(!status_expected(419, &ranges));
    }

    #[test]
    fn expected_statuses_are_validated() {
        let bad: [&[StatusRange]; 5] = [
            &[],
            &[(99, 200)],
            &[(300, 300)],
            &[(400, 200)],
            &[(200, 601)],
        ];
        for ranges in bad {
            let config = HealthCheckConfig {
                expected_statuses: ranges.into(),
                ..HealthCheckConfig::default()
            };
            assert_eq!(
                config.validate().unwrap_err().argument,
                "health_check_expected_statuses"
            );
        }
        let config = HealthCheckConfig {
            expected_statuses: [(100, 600), (200, 201)].into(),
            ..HealthCheckConfig::default()
        };
        assert!(config.validate().is_ok());
    }

    #[test]
    fn tcp_probe_needs_a_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let t = Duration::from_secs(1);
        assert!(probe("127.0.0.1", port, "", t, &DEFAULT_EXPECTED_STATUSES));
        drop(listener);
        assert!(!probe("127.0.0.1", port, "", t, &DEFAULT_EXPECTED_STATUSES));
    }

    #[test]
    fn jitter_and_workers_are_validated() {
        for jitter in [-0.1, 1.5, f64::NAN] {
            let config = HealthCheckConfig {
                jitter,
                ..HealthCheckConfig::default()
            };
            assert_eq!(
                config.validate().unwrap_err().argument,
                "health_check_jitter"
            );
        }
        for workers in [0, MAX_WORKERS + 1] {
            let config = HealthCheckConfig {
                workers,
                ..HealthCheckConfig::default()
            };
            assert_eq!(
                config.validate().unwrap_err().argument,
                "health_check_workers"
            );
        }
    }

    #[test]
    fn waits_vary_within_the_jitter_around_the_interval() {
        let config = HealthCheckConfig {
            interval: Duration::from_secs(1),
            jitter: 0.2,
            ..HealthCheckConfig::default()
        };
        assert_eq!(config.next_wait(0.0), Duration::from_millis(800));
        assert_eq!(config.next_wait(0.5), Duration::from_secs(1));
        assert!(config.next_wait(0.999_999) <= Duration::from_millis(1200));
        let steady = HealthCheckConfig {
            jitter: 0.0,
            ..config
        };
        assert_eq!(steady.next_wait(0.9), Duration::from_secs(1));
    }

    #[test]
    fn initial_health_names_round_trip() {
        for initial in InitialHealth::ALL {
            assert_eq!(InitialHealth::from_name(initial.name()), Some(initial));
        }
        assert_eq!(InitialHealth::from_name("maybe"), None);
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
