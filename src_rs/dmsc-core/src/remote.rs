//! Joining a controller: its registry API over HTTP/1.1, and a local mirror of its registry.
//!
//! A mesh that joins a controller sends registrations to it and keeps a copy of the
//! controller's registry in its own [`Registry`], refreshed by a thread long-polling the
//! controller's watch endpoint. Discovery, balancing, breakers and request accounting then
//! stay local (no network call per request), and instances registered by any member of the
//! mesh (native or Python programs, sidecars) are discovered by every other member.
//!
//! The client speaks plain HTTP/1.1 over `std::net` (one connection per request), which is
//! all a controller on the same host or network needs.

use std::collections::{BTreeMap, HashSet};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::registry::{Endpoint, Health, Registry};
use crate::InvalidArgument;

/// Time allowed to connect to the controller.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time allowed for a plain request (a registration may wait for the controller's first
/// health check of the instance).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one watch request waits for a change before the controller answers anyway.
const WATCH_WAIT: Duration = Duration::from_secs(30);
/// Largest answer accepted (a whole registry).
const MAX_RESPONSE_BYTES: u64 = 256 << 20;
/// Retry delays of the watch thread while the controller is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Why a call to the controller failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// The controller refused the request as invalid; its message names the field.
    Rejected(String),
    /// The controller has no such instance.
    NotFound(String),
    /// The controller could not be reached, or the exchange broke off.
    Unreachable(String),
    /// The controller answered something this client does not understand.
    Protocol(String),
    /// The mirror was stopped while the call waited.
    Stopped,
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::Rejected(why) | RemoteError::NotFound(why) => f.write_str(why),
            RemoteError::Unreachable(why) => write!(f, "controller unreachable: {why}"),
            RemoteError::Protocol(why) => write!(f, "unexpected controller answer: {why}"),
            RemoteError::Stopped => f.write_str("stopped"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// The registration body of the controller's API.
#[derive(Serialize)]
struct EndpointBody<'a> {
    name: &'a str,
    host: &'a str,
    port: u16,
    version: &'a str,
    health_check_url: &'a str,
    zone: &'a str,
    cluster: &'a str,
    labels: BTreeMap<&'a str, &'a str>,
    weight: u32,
}

fn one() -> u32 {
    1
}

/// One instance as the watch endpoint lists it.
#[derive(Deserialize)]
struct InstanceView {
    name: String,
    host: String,
    port: u16,
    #[serde(default)]
    version: String,
    #[serde(default)]
    health_check_url: String,
    #[serde(default)]
    zone: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    health: String,
}

#[derive(Deserialize)]
struct ServiceView {
    #[serde(default)]
    instances: Vec<InstanceView>,
}

#[derive(Deserialize)]
struct WatchView {
    revision: u64,
    services: BTreeMap<String, ServiceView>,
}

#[derive(Deserialize)]
struct ErrorView {
    error: String,
}

/// The controller's whole registry at one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The controller's revision; it increases on every change of its registry.
    pub revision: u64,
    /// Every service with its instances and their health as the controller checks it.
    pub services: BTreeMap<String, Vec<(Endpoint, Health)>>,
}

impl Snapshot {
    fn from_view(view: WatchView) -> Self {
        let services = view
            .services
            .into_iter()
            .map(|(name, service)| {
                let instances = service
                    .instances
                    .into_iter()
                    .map(|i| {
                        let health = match i.health.as_str() {
                            "healthy" => Health::Healthy,
                            "unhealthy" => Health::Unhealthy,
                            _ => Health::Unknown,
                        };
                        let endpoint = Endpoint {
                            name: i.name,
                            host: i.host,
                            port: i.port,
                            version: i.version,
                            health_check_url: i.health_check_url,
                            zone: i.zone,
                            cluster: i.cluster,
                            labels: i.labels.into_iter().collect(),
                            weight: i.weight,
                        };
                        (endpoint, health)
                    })
                    .collect();
                (name, instances)
            })
            .collect();
        Self {
            revision: view.revision,
            services,
        }
    }
}

/// A status code and body of one HTTP answer.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    /// The controller's error message (its JSON `error`), or the raw body.
    fn message(&self) -> String {
        serde_json::from_slice::<ErrorView>(&self.body)
            .map(|e| e.error)
            .unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&self.body).trim().to_owned();
                format!("HTTP {}: {text}", self.status)
            })
    }

    fn unexpected(&self) -> RemoteError {
        RemoteError::Protocol(self.message())
    }
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Splits an HTTP answer into status and body.
fn parse_answer(raw: &[u8]) -> Result<Answer, RemoteError> {
    let bad = |why: &str| RemoteError::Protocol(why.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("incomplete HTTP answer"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("HTTP head is not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad("malformed HTTP status line"))?;
    let mut body = &raw[end + 4..];
    for line in lines {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("content-length") {
            let length: usize = value
                .trim()
                .parse()
                .map_err(|_| bad("bad Content-Length"))?;
            body = body
                .get(..length)
                .ok_or_else(|| bad("HTTP body shorter than its Content-Length"))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked answers are not supported"));
        }
    }
    Ok(Answer {
        status,
        body: body.to_vec(),
    })
}

/// Where the controller listens, and its registry API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `host:port` of the controller's HTTP API.
    authority: String,
}

impl Controller {
    /// Parses `http://HOST:PORT[/]` or `HOST:PORT` (IPv6 hosts in brackets).
    pub fn parse(address: &str) -> Result<Self, InvalidArgument> {
        let refuse =
            |why: &str| InvalidArgument::new("controller", format!("{why}, got {address:?}"));
        let rest = if let Some(rest) = address.strip_prefix("http://") {
            rest
        } else if address.contains("://") {
            return Err(refuse("only http:// controller addresses are supported"));
        } else {
            address
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| refuse("expected [http://]HOST:PORT"))?;
        let host_ok = !host.is_empty()
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '?' | '#' | '@'));
        if !host_ok {
            return Err(refuse("expected [http://]HOST:PORT"));
        }
        match port.parse::<u16>() {
            Ok(port) if port > 0 => {}
            _ => return Err(refuse("the port must be between 1 and 65535")),
        }
        Ok(Self {
            authority: authority.to_owned(),
        })
    }

    /// The controller's base URL, `http://host:port/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.authority)
    }

    fn connect(&self) -> Result<TcpStream, RemoteError> {
        let unreachable = |why: String| RemoteError::Unreachable(format!("{}: {why}", self.url()));
        let addresses: Vec<SocketAddr> = self
            .authority
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .collect();
        let mut last = String::from("no address");
        for address in addresses {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = e.to_string(),
            }
        }
        Err(unreachable(last))
    }

    /// One request on a fresh connection. `on_connect` sees the connection before the request
    /// is sent (the mirror keeps a handle to cut a long poll short); it may refuse to go on.
    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: Duration,
        on_connect: impl FnOnce(&TcpStream) -> Result<(), RemoteError>,
    ) -> Result<Answer, RemoteError> {
        let mut stream = self.connect()?;
        on_connect(&stream)?;
        let broken = |e: std::io::Error| RemoteError::Unreachable(format!("{}: {e}", self.url()));
        stream.set_read_timeout(Some(timeout)).map_err(broken)?;
        stream.set_write_timeout(Some(timeout)).map_err(broken)?;
        let body = body.unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.authority,
            body.len()
        );
        stream.write_all(head.as_bytes()).map_err(broken)?;
        stream.write_all(body).map_err(broken)?;
        let mut raw = Vec::new();
        (&mut stream)
            .take(MAX_RESPONSE_BYTES)
            .read_to_end(&mut raw)
            .map_err(broken)?;
        parse_answer(&raw)
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Answer, RemoteError> {
        self.exchange(method, path, body, REQUEST_TIMEOUT, |_| Ok(()))
    }

    /// Registers `endpoint` with the controller (or updates the instance at its address).
    pub fn register(&self, endpoint: &Endpoint) -> Result<(), RemoteError> {
        let body = EndpointBody {
            name: &endpoint.name,
            host: &endpoint.host,
            port: endpoint.port,
            version: &endpoint.version,
            health_check_url: &endpoint.health_check_url,
            zone: &endpoint.zone,
            cluster: &endpoint.cluster,
            labels: endpoint
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            weight: endpoint.weight,
        };
        let json = serde_json::to_vec(&body).map_err(|e| RemoteError::Protocol(e.to_string()))?;
        let answer = self.request("PUT", "/v1/registry/instances", Some(&json))?;
        match answer.status {
            200 | 201 => Ok(()),
            400 => Err(RemoteError::Rejected(answer.message())),
            _ => Err(answer.unexpected()),
        }
    }

    /// Removes the instance of `service` at `host:port` from the controller.
    pub fn deregister(&self, service: &str, host: &str, port: u16) -> Result<(), RemoteError> {
        let path = format!(
            "/v1/registry/instances/{}/{}:{port}",
            encode_segment(service),
            encode_segment(host)
        );
        let answer = self.request("DELETE", &path, None)?;
        match answer.status {
            200 | 204 => Ok(()),
            400 => Err(RemoteError::Rejected(answer.message())),
            404 => Err(RemoteError::NotFound(answer.message())),
            _ => Err(answer.unexpected()),
        }
    }

    /// The controller's registry once its revision passes `index`, or after `wait` anyway.
    pub fn watch(&self, index: u64, wait: Duration) -> Result<Snapshot, RemoteError> {
        self.watch_with(index, wait, |_| Ok(()))
    }

    fn watch_with(
        &self,
        index: u64,
        wait: Duration,
        on_connect: impl FnOnce(&TcpStream) -> Result<(), RemoteError>,
    ) -> Result<Snapshot, RemoteError> {
        let path = format!(
            "/v1/registry/watch?index={index}&wait={:.3}",
            wait.as_secs_f64()
        );
        let answer = self.exchange("GET", &path, None, wait + REQUEST_TIMEOUT, on_connect)?;
        if answer.status != 200 {
            return Err(answer.unexpected());
        }
        let view: WatchView = serde_json::from_slice(&answer.body)
            .map_err(|e| RemoteError::Protocol(format!("watch answer: {e}")))?;
        Ok(Snapshot::from_view(view))
    }
}

/// Whether the watch thread should stop, and the connection it is waiting on.
#[derive(Debug, Default)]
struct Control {
    stopping: bool,
    connection: Option<TcpStream>,
}

#[derive(Debug)]
struct Shared {
    controller: Controller,
    registry: Arc<Registry>,
    /// Revision of the last snapshot applied (`None`: none yet).
    applied: Mutex<Option<u64>>,
    control: Mutex<Control>,
    wake: Condvar,
}

impl Shared {
    /// Brings the registry in line with `snapshot`, unless a newer one was applied already
    /// (`restarted`: the controller's revisions started over, so any snapshot is newer).
    fn apply(&self, snapshot: &Snapshot, restarted: bool) {
        let mut applied = self.applied.lock();
        if !restarted && applied.is_some_and(|seen| snapshot.revision < seen) {
            return;
        }
        for (service, instances) in &snapshot.services {
            // The controller validated what it holds; an entry this build refuses is skipped
            // rather than hiding the rest of the service.
            let valid: Vec<(Endpoint, Health)> = instances
                .iter()
                .filter(|(e, _)| e.validate().is_ok() && e.name == *service)
                .cloned()
                .collect();
            let _ = self.registry.sync_service(service, &valid);
        }
        let listed: HashSet<&str> = snapshot.services.keys().map(String::as_str).collect();
        for service in self.registry.service_names() {
            if !listed.contains(service.as_str()) {
                let _ = self.registry.sync_service(&service, &[]);
            }
        }
        *applied = Some(snapshot.revision);
    }

    fn sync(&self) -> Result<(), RemoteError> {
        let snapshot = self.controller.watch(0, Duration::ZERO)?;
        self.apply(&snapshot, false);
        Ok(())
    }

    /// Long-polls the controller until stopped, applying every new revision.
    fn follow(&self) {
        let mut retry = RETRY_MIN;
        loop {
            let index = self.applied.lock().unwrap_or(0);
            let outcome = self.controller.watch_with(index, WATCH_WAIT, |stream| {
                let mut control = self.control.lock();
                if control.stopping {
                    return Err(RemoteError::Stopped);
                }
                control.connection = stream.try_clone().ok();
                Ok(())
            });
            let mut control = self.control.lock();
            control.connection = None;
            if control.stopping {
                return;
            }
            match outcome {
                Ok(snapshot) => {
                    drop(control);
                    self.apply(&snapshot, snapshot.revision < index);
                    retry = RETRY_MIN;
                }
                Err(_) => {
                    // Unreachable or confused controller: keep the last known registry and
                    // try again, a little later each time.
                    self.wake.wait_for(&mut control, retry);
                    retry = (retry * 2).min(RETRY_MAX);
                    if control.stopping {
                        return;
                    }
                }
            }
        }
    }
}

/// A local copy of a controller's registry, kept in `registry`, with the controller's
/// registry API for writes.
#[derive(Debug)]
pub struct Mirror {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Mirror {
    /// A mirror of `controller`'s registry into `registry` (nothing is fetched until
    /// [`Mirror::sync`] or [`Mirror::start`]).
    pub fn new(controller: Controller, registry: Arc<Registry>) -> Self {
        Self {
            shared: Arc::new(Shared {
                controller,
                registry,
                applied: Mutex::new(None),
                control: Mutex::new(Control::default()),
                wake: Condvar::new(),
            }),
            thread: Mutex::new(None),
        }
    }

    /// The controller mirrored.
    pub fn controller(&self) -> &Controller {
        &self.shared.controller
    }

    /// Fetches the controller's registry now and applies it.
    pub fn sync(&self) -> Result<(), RemoteError> {
        self.shared.sync()
    }

    /// Registers `endpoint` (validated here first) with the controller, then syncs so the
    /// caller's next discovery sees its own write.
    pub fn register(&self, endpoint: &Endpoint) -> Result<(), RemoteError> {
        endpoint
            .validate()
            .map_err(|e| RemoteError::Rejected(e.to_string()))?;
        self.shared.controller.register(endpoint)?;
        self.sync()
    }

    /// Deregisters the instance of `service` at `host:port` from the controller, then syncs.
    pub fn deregister(&self, service: &str, host: &str, port: u16) -> Result<(), RemoteError> {
        self.shared.controller.deregister(service, host, port)?;
        self.sync()
    }

    /// Syncs once (so the registry is the controller's on return), then follows the
    /// controller's changes in a background thread until [`Mirror::stop`]. `Ok(false)` when
    /// it was already running.
    pub fn start(&self) -> Result<bool, RemoteError> {
        let mut thread = self.thread.lock();
        if thread.is_some() {
            return Ok(false);
        }
        self.sync()?;
        self.shared.control.lock().stopping = false;
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("dmsc-watch".into())
            .spawn(move || shared.follow())
            .map_err(|e| RemoteError::Unreachable(format!("cannot start the watcher: {e}")))?;
        *thread = Some(handle);
        Ok(true)
    }

    /// Stops following the controller (cutting a waiting long poll short); the mirrored
    /// registry stays as it was. Idempotent.
    pub fn stop(&self) {
        let Some(handle) = self.thread.lock().take() else {
            return;
        };
        {
            let mut control = self.shared.control.lock();
            control.stopping = true;
            if let Some(connection) = &control.connection {
                // Unblocks the read of the long poll at once.
                let _ = connection.shutdown(Shutdown::Both);
            }
            self.shared.wake.notify_all();
        }
        // The watcher only returns; a panic inside it would already have been reported.
        let _ = handle.join();
    }

    /// Whether the background watcher runs.
    pub fn is_running(&self) -> bool {
        self.thread.lock().is_some()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicU64, Ordering};

    #[test]
    fn controller_addresses_parse_or_name_the_argument() {
        for good in [
            "http://127.0.0.1:8500",
            "http://127.0.0.1:8500/",
            "localhost:8500",
            "[::1]:8500",
        ] {
            assert!(Controller::parse(good).is_ok(), "{good}");
        }
        assert_eq!(
            Controller::parse("http://127.0.0.1:8500/").unwrap().url(),
            "http://127.0.0.1:8500/"
        );
        for bad in [
            "",
            "127.0.0.1",
            "https://127.0.0.1:8500",
            "http://:8500",
            "host:0",
            "host:99999",
            "a b:1",
        ] {
            assert_eq!(
                Controller::parse(bad).unwrap_err().argument,
                "controller",
                "{bad}"
            );
        }
    }

    #[test]
    fn answers_are_parsed_by_content_length() {
        let answer = parse_answer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 28\r\n\r\n{\"error\": \"port: too large\"}\nextra").unwrap();
        assert_eq!(answer.status, 400);
        assert_eq!(answer.message(), "port: too large");
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
    }

    /// A fake controller: every watch answers with the registry `services_json` at the
    /// current `revision`; PUT answers `put_status`.
    fn fake_controller(revision: Arc<AtomicU64>, services_json: &'static str) -> Controller {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                let _ = reader.read_line(&mut line);
                // Read the whole request: closing with unread bytes would send a reset
                // that can overtake the answer.
                let mut length = 0;
                let mut header = String::new();
                while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                    if let Some((name, value)) = header.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                    header.clear();
                }
                let _ = std::io::Read::read_exact(&mut reader, &mut vec![0; length]);
                let body = if line.starts_with("PUT") {
                    "{\"error\": \"name: must be DNS-safe\", \"field\": \"name\"}".to_owned()
                } else {
                    format!(
                        "{{\"revision\": {}, \"services\": {services_json}}}",
                        revision.load(Ordering::SeqCst)
                    )
                };
                let status = if line.starts_with("PUT") {
                    "400 Bad Request"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Controller::parse(&format!("127.0.0.1:{port}")).unwrap()
    }

    const ONE_SERVICE: &str = r#"{"api": {"name": "api", "healthy": 1, "instances": [
        {"name": "api", "host": "127.0.0.1", "port": 9001, "version": "v1",
         "labels": {"team": "x"}, "weight": 2, "id": "api/127.0.0.1:9001",
         "health": "healthy", "active_requests": 0},
        {"name": "api", "host": "127.0.0.1", "port": 9002, "health": "unknown"}]}}"#;

    #[test]
    fn the_mirror_copies_the_controllers_registry() {
        let revision = Arc::new(AtomicU64::new(5));
        let controller = fake_controller(Arc::clone(&revision), ONE_SERVICE);
        let registry = Arc::new(Registry::default());
        registry
            .register(
                Endpoint {
                    name: "gone".into(),
                    host: "127.0.0.1".into(),
                    port: 1,
                    ..Endpoint::default()
                },
                Health::Healthy,
            )
            .unwrap();
        let mirror = Mirror::new(controller, Arc::clone(&registry));
        mirror.sync().unwrap();
        assert_eq!(registry.service_names(), ["api"]);
        assert_eq!(registry.healthy_count("api"), 1);
        let instance = registry.discover("api", Some("v1"), None).unwrap();
        assert_eq!(
            (instance.endpoint.weight, instance.endpoint.label("team")),
            (2, Some("x"))
        );
        let err = mirror
            .register(&Endpoint {
                name: "ok".into(),
                host: "h".into(),
                port: 1,
                ..Endpoint::default()
            })
            .unwrap_err();
        assert_eq!(err, RemoteError::Rejected("name: must be DNS-safe".into()));
        assert!(matches!(
            mirror.register(&Endpoint::default()),
            Err(RemoteError::Rejected(why)) if why.starts_with("name")
        ));
    }

    #[test]
    fn start_and_stop_follow_the_controller_and_stop_promptly() {
        let revision = Arc::new(AtomicU64::new(1));
        let controller = fake_controller(Arc::clone(&revision), ONE_SERVICE);
        let mirror = Mirror::new(controller, Arc::new(Registry::default()));
        assert_eq!(mirror.start(), Ok(true));
        assert_eq!(mirror.start(), Ok(false));
        assert!(mirror.is_running());
        let started = std::time::Instant::now();
        mirror.stop();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!mirror.is_running());
        mirror.stop();
    }

    #[test]
    fn an_unreachable_controller_is_reported() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let controller = Controller::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mirror = Mirror::new(controller, Arc::new(Registry::default()));
        let err = mirror.start().unwrap_err();
        assert!(matches!(err, RemoteError::Unreachable(_)), "{err}");
        assert!(err.to_string().contains(&port.to_string()));
        assert!(!mirror.is_running());
    }
}
