//! The engine: a tokio runtime on its own threads running every listener of
//! the current config snapshot; reloads swap the snapshot atomically (requests
//! in flight finish on the snapshot they started with); drain stops accepting
//! and waits for requests in flight.
//!
//! Listening sockets are bound on the caller's thread before `start` or
//! `reload` returns, so an address in use is a [`ConfigError`] on
//! `listeners[i].listen`, not a log line. The runtime runs on one thread
//! (`workers: 1`, a current-thread runtime) or on `workers` threads.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dmsc_core::clock::Clock;
use parking_lot::{Condvar, Mutex, RwLock};
use serde_json::json;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle as TaskHandle;

use crate::cluster::{Cluster, EndpointSpec};
use crate::config::validate::parse_address;
use crate::config::{Config, DownstreamLimits, Protocol};
use crate::error::ConfigError;
use crate::route::RouteTable;
use crate::stats::{
    render_prometheus, write_cluster_gauge, write_gauge, ClusterStats, ListenerStats,
};

/// Backlog of every listening socket.
const BACKLOG: u32 = 4096;
/// How often the cluster ticker wakes (outlier un-ejection, success-rate intervals).
const TICK: Duration = Duration::from_millis(250);
/// Success-rate interval of clusters without outlier detection (they still get ticked).
const DEFAULT_TICK_INTERVAL: Duration = Duration::from_secs(1);
/// Pause after a failed accept (out of descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(20);
/// Longest wait for a stopped accept loop to let go of its socket.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// One listener of a snapshot.
#[derive(Debug)]
pub struct ListenerRuntime {
    /// Name.
    pub name: Arc<str>,
    /// HTTP: compiled routes. TCP: None.
    pub routes: Option<RouteTable>,
    /// TCP: the cluster.
    pub tcp_cluster: Option<Arc<str>>,
    /// Limits and timeouts.
    pub limits: DownstreamLimits,
    /// Statistics (kept across reloads while the listener keeps its name).
    pub stats: Arc<ListenerStats>,
}

/// An immutable view of the whole config, swapped as one on reload.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases by one on every successful reload.
    pub generation: u64,
    /// The config it was built from.
    pub config: Config,
    /// Add tracing/forwarding headers.
    pub tracing: bool,
    listeners: HashMap<Arc<str>, ListenerRuntime>,
    clusters: HashMap<Arc<str>, Arc<Cluster>>,
}

impl Snapshot {
    /// A listener by name.
    pub fn listener(&self, name: &str) -> Option<&ListenerRuntime> {
        self.listeners.get(name)
    }
    /// A cluster by name.
    pub fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.get(name)
    }

    /// Listeners in config order.
    fn listeners_in_order(&self) -> impl Iterator<Item = &ListenerRuntime> {
        self.config
            .listeners
            .iter()
            .filter_map(|l| self.listeners.get(l.name.as_str()))
    }

    /// Clusters in config order.
    fn clusters_in_order(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.config
            .clusters
            .iter()
            .filter_map(|c| self.clusters.get(c.name.as_str()))
    }

    /// Builds a snapshot of `config` (validated here). Clusters whose config equals
    /// one of `previous` are shared with it (host state, pools and endpoints stay);
    /// rebuilt clusters get `discovered` endpoints; listener statistics carry over by name.
    fn build(
        config: Config,
        generation: u64,
        previous: Option<&Snapshot>,
        discovered: &HashMap<String, Vec<EndpointSpec>>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut clusters = HashMap::with_capacity(config.clusters.len());
        for (i, c) in config.clusters.iter().enumerate() {
            let old = previous.and_then(|p| p.clusters.get(c.name.as_str()));
            let cluster = match old {
                Some(old) if old.config == *c => old.clone(),
                _ => {
                    let cluster = Arc::new(Cluster::new(
                        c,
                        &format!("clusters[{i}]"),
                        Clock::Monotonic,
                    )?);
                    if let Some(endpoints) = discovered.get(&c.name) {
                        cluster.set_endpoints(endpoints);
                    }
                    cluster
                }
            };
            clusters.insert(Arc::<str>::from(c.name.as_str()), cluster);
        }
        let mut listeners = HashMap::with_capacity(config.listeners.len());
        for (i, l) in config.listeners.iter().enumerate() {
            let routes = match l.protocol {
                Protocol::Http => Some(RouteTable::compile(
                    &l.virtual_hosts,
                    &format!("listeners[{i}]"),
                )?),
                Protocol::Tcp => None,
            };
            let name = Arc::<str>::from(l.name.as_str());
            let stats = previous
                .and_then(|p| p.listeners.get(&name))
                .map_or_else(|| Arc::new(ListenerStats::new()), |old| old.stats.clone());
            let runtime = ListenerRuntime {
                name: name.clone(),
                routes,
                tcp_cluster: l.cluster.as_deref().map(Arc::from),
                limits: l.limits.clone(),
                stats,
            };
            listeners.insert(name, runtime);
        }
        Ok(Self {
            generation,
            tracing: config.tracing,
            config,
            listeners,
            clusters,
        })
    }
}

/// State shared by the engine and every connection task.
#[derive(Debug)]
pub struct Shared {
    snapshot: RwLock<Arc<Snapshot>>,
    draining: AtomicBool,
    drain_started: Notify,
    inflight: AtomicUsize,
    /// Paired with `idle`: a drain waits on it until `inflight` reaches zero.
    idle_lock: Mutex<()>,
    idle: Condvar,
}

/// A request in flight; dropping it lets a drain finish.
#[derive(Debug)]
pub struct InflightGuard {
    shared: Arc<Shared>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let before = self.shared.inflight.fetch_sub(1, Ordering::AcqRel);
        if before == 1 && self.shared.is_draining() {
            // Take the lock so the wake-up cannot fall between a waiter's check and its wait.
            let _held = self.shared.idle_lock.lock();
            self.shared.idle.notify_all();
        }
    }
}

impl Shared {
    fn new(snapshot: Snapshot) -> Self {
        Self {
            snapshot: RwLock::new(Arc::new(snapshot)),
            draining: AtomicBool::new(false),
            drain_started: Notify::new(),
            inflight: AtomicUsize::new(0),
            idle_lock: Mutex::new(()),
            idle: Condvar::new(),
        }
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }
    /// True once a drain or shutdown began: finish the current request, then close.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
    /// Resolves when a drain begins (wakes idle keep-alive connections so they close).
    pub async fn draining(&self) {
        let notified = self.drain_started.notified();
        tokio::pin!(notified);
        // Registered before the flag is read, so a drain starting in between still wakes us.
        notified.as_mut().enable();
        if self.is_draining() {
            return;
        }
        notified.await;
    }
    /// Counts a request in flight until the guard drops.
    pub fn request_started(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        InflightGuard {
            shared: self.clone(),
        }
    }
    /// Requests (HTTP) and sessions (TCP) in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }

    fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.drain_started.notify_waiters();
    }

    /// Blocks until nothing is in flight or `deadline` passes; true if nothing is.
    fn wait_idle(&self, deadline: Instant) -> bool {
        let mut held = self.idle_lock.lock();
        loop {
            if self.inflight() == 0 {
                return true;
            }
            if self.idle.wait_until(&mut held, deadline).timed_out() {
                return self.inflight() == 0;
            }
        }
    }
}

/// A bound listening socket and the task accepting on it.
#[derive(Debug)]
struct BoundListener {
    name: Arc<str>,
    /// The `listen` string it was bound from (a reload with the same string keeps it).
    listen: String,
    /// The address `listen` resolved to (port 0 when any port would do).
    requested: SocketAddr,
    /// The address bound.
    address: SocketAddr,
    socket: Arc<TcpListener>,
    /// None until the accept loop starts (sockets bound by a reload that may still fail).
    task: Option<AcceptTask>,
}

impl BoundListener {
    fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.handle.abort();
            // Wait until the runtime has dropped the task, and with it the task's reference
            // to the socket, so the address is free again once the caller lets go of its own.
            let _ = task.ended.recv_timeout(STOP_WAIT);
        }
    }
}

/// A running accept loop.
#[derive(Debug)]
struct AcceptTask {
    handle: TaskHandle<()>,
    /// Disconnected when the loop's future is dropped.
    ended: std::sync::mpsc::Receiver<()>,
}

/// What only the control calls (reload, set_endpoints, drain, shutdown) touch, one at a time.
#[derive(Debug, Default)]
struct Control {
    listeners: Vec<BoundListener>,
    /// Endpoints last given by discovery, per cluster: a rebuilt cluster gets them back.
    discovered: HashMap<String, Vec<EndpointSpec>>,
    /// Set by drain and shutdown: nothing is bound or accepted any more.
    stopped: bool,
}

/// The runtime's thread and the signal that ends it.
#[derive(Debug)]
struct RuntimeThread {
    stop: oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

impl RuntimeThread {
    fn stop(self) {
        let _ = self.stop.send(());
        // A panic on the runtime thread has been reported by the panic hook already.
        let _ = self.thread.join();
    }
}

/// The running data plane.
#[derive(Debug)]
pub struct Engine {
    shared: Arc<Shared>,
    handle: Handle,
    control: Mutex<Control>,
    runtime: Mutex<Option<RuntimeThread>>,
}

/// The address of a `listen` string (`IP:PORT`, as [`Config::validate`] requires).
fn resolve(listen: &str, path: &str) -> Result<SocketAddr, ConfigError> {
    parse_address(listen).map_err(|message| ConfigError::new(path, message))
}

/// Binds a listening socket (SO_REUSEADDR, backlog 4096, nonblocking) on `handle`'s reactor.
fn bind(address: SocketAddr, handle: &Handle) -> io::Result<TcpListener> {
    let _entered = handle.enter();
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// Where a listener of a new config gets its socket.
#[derive(Debug)]
enum Plan {
    /// The running listener at this index (same name and address): its accept loop goes on.
    Keep(usize),
    /// The socket of the running listener at this index (another name, same address).
    TakeOver(usize),
    /// A socket bound now: the socket, the address asked for, the address bound.
    New(Arc<TcpListener>, SocketAddr, SocketAddr),
}

/// Decides, for every listener of `config`, which socket it uses, binding the new
/// ones. Changes nothing in `running`: dropping the plans closes what they bound.
fn plan_listeners(
    config: &Config,
    running: &[BoundListener],
    handle: &Handle,
) -> Result<Vec<Plan>, ConfigError> {
    let mut used = vec![false; running.len()];
    let mut plans = Vec::with_capacity(config.listeners.len());
    for (i, l) in config.listeners.iter().enumerate() {
        let path = format!("listeners[{i}].listen");
        let requested = resolve(&l.listen, &path)?;
        // Port 0 asks for a new free port: only the very same `listen` string keeps one.
        let same_address = |b: &BoundListener| {
            b.listen == l.listen || (requested.port() != 0 && b.requested == requested)
        };
        let free = |at: usize| !used.get(at).copied().unwrap_or(true);
        let keep = running
            .iter()
            .enumerate()
            .position(|(at, b)| free(at) && *b.name == *l.name && same_address(b));
        let plan = if let Some(at) = keep {
            Plan::Keep(at)
        } else if let Some(at) = running
            .iter()
            .enumerate()
            .position(|(at, b)| free(at) && requested.port() != 0 && b.requested == requested)
        {
            Plan::TakeOver(at)
        } else {
            let socket = bind(requested, handle).map_err(|err| {
                ConfigError::new(path.clone(), format!("cannot listen on {requested}: {err}"))
            })?;
            let address = socket.local_addr().map_err(|err| {
                ConfigError::new(path, format!("cannot read the bound address: {err}"))
            })?;
            Plan::New(Arc::new(socket), requested, address)
        };
        if let Plan::Keep(at) | Plan::TakeOver(at) = plan {
            if let Some(slot) = used.get_mut(at) {
                *slot = true;
            }
        }
        plans.push(plan);
    }
    Ok(plans)
}

/// Holds a listener's `cx_active` up while its connection lives.
struct ConnectionGuard(Arc<ListenerStats>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.cx_active.dec();
    }
}

/// What an accept loop owns of its listener. Fields drop in declaration order: the socket
/// closes before `alive` disconnects, so `BoundListener::stop` returns with the address free.
struct AcceptHold {
    socket: Arc<TcpListener>,
    _alive: std::sync::mpsc::Sender<()>,
}

async fn accept_loop(hold: AcceptHold, name: Arc<str>, shared: Arc<Shared>) {
    loop {
        let (stream, peer) = match hold.socket.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // EMFILE/ENFILE/ENOBUFS: the connection waits in the backlog; try again shortly.
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        if shared.is_draining() {
            continue;
        }
        dispatch(stream, peer, &name, &shared);
    }
}

/// Starts serving one accepted connection on its own task.
fn dispatch(stream: TcpStream, peer: SocketAddr, name: &Arc<str>, shared: &Arc<Shared>) {
    let snapshot = shared.snapshot();
    let Some(listener) = snapshot.listener(name) else {
        // Removed by a reload that is about to stop this loop.
        return;
    };
    let stats = listener.stats.clone();
    let max = listener.limits.max_connections;
    if max > 0 && usize::try_from(stats.cx_active.get()).unwrap_or(0) >= max {
        stats.cx_overflow.inc();
        return;
    }
    stats.cx_total.inc();
    stats.cx_active.inc();
    let guard = ConnectionGuard(stats);
    // Small writes must not wait for ACKs (Nagle); failure here only costs latency.
    let _ = stream.set_nodelay(true);
    let http = listener.routes.is_some();
    drop(snapshot);
    let (name, shared) = (name.clone(), shared.clone());
    tokio::spawn(async move {
        let _guard = guard;
        if http {
            crate::server::serve_http(stream, peer, name, shared).await;
        } else {
            crate::tcp::serve_tcp(stream, peer, name, shared).await;
        }
    });
}

/// Runs `Cluster::tick` for every cluster about once per its outlier-detection interval.
async fn ticker(shared: Arc<Shared>) {
    // Keyed by the cluster's address: a reload that rebuilds a cluster starts it afresh.
    let mut last: HashMap<usize, Instant> = HashMap::new();
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let snapshot = shared.snapshot();
        let now = Instant::now();
        let mut seen = Vec::with_capacity(snapshot.clusters.len());
        for cluster in snapshot.clusters.values() {
            let key = Arc::as_ptr(cluster) as usize;
            seen.push(key);
            let every = cluster
                .config
                .outlier_detection
                .as_ref()
                .map_or(DEFAULT_TICK_INTERVAL, |o| {
                    Duration::from_millis(o.interval_ms.max(1))
                });
            let due = last
                .get(&key)
                .is_none_or(|at| now.duration_since(*at) >= every);
            if due {
                last.insert(key, now);
                cluster.tick();
            }
        }
        last.retain(|key, _| seen.contains(key));
    }
}

impl RuntimeThread {
    /// Starts the runtime on its own thread: one thread runs everything when `workers`
    /// is 1 (or 0), else a multi-thread runtime with that many workers.
    fn spawn(workers: usize) -> Result<(Self, Handle), ConfigError> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready, handle) = std::sync::mpsc::channel::<io::Result<Handle>>();
        let thread = std::thread::Builder::new()
            .name("dmsc-proxy".to_owned())
            .spawn(move || {
                let mut builder = if workers <= 1 {
                    tokio::runtime::Builder::new_current_thread()
                } else {
                    let mut builder = tokio::runtime::Builder::new_multi_thread();
                    builder.worker_threads(workers);
                    builder
                };
                match builder
                    .enable_all()
                    .thread_name("dmsc-proxy-worker")
                    .build()
                {
                    Ok(runtime) => {
                        let _ = ready.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                        // Dropping the runtime drops every task: connections, accept loops.
                        drop(runtime);
                    }
                    Err(err) => {
                        let _ = ready.send(Err(err));
                    }
                }
            })
            .map_err(|err| ConfigError::new("workers", format!("cannot start a thread: {err}")))?;
        let this = Self { stop, thread };
        match handle.recv() {
            Ok(Ok(handle)) => Ok((this, handle)),
            Ok(Err(err)) => {
                this.stop();
                Err(ConfigError::new(
                    "workers",
                    format!("cannot start the runtime: {err}"),
                ))
            }
            Err(_) => {
                this.stop();
                Err(ConfigError::new(
                    "workers",
                    "the runtime thread ended while starting",
                ))
            }
        }
    }
}

/// Endpoints from discovery that a reload to `next` keeps: those of clusters that still
/// watch the same service (and version).
fn carried_endpoints(
    discovered: &HashMap<String, Vec<EndpointSpec>>,
    previous: &Config,
    next: &Config,
) -> HashMap<String, Vec<EndpointSpec>> {
    discovered
        .iter()
        .filter(|(name, _)| {
            let before = previous.clusters.iter().find(|c| &c.name == *name);
            let after = next.clusters.iter().find(|c| &c.name == *name);
            matches!((before, after), (Some(b), Some(a))
                if a.service.is_some() && a.service == b.service && a.version == b.version)
        })
        .map(|(name, endpoints)| (name.clone(), endpoints.clone()))
        .collect()
}

impl Engine {
    /// Checks `config` as `start` would (ranges, references, routes, clusters, listen
    /// addresses) without binding or starting anything.
    pub fn validate(config: &Config) -> Result<(), ConfigError> {
        Snapshot::build(config.clone(), 1, None, &HashMap::new()).map(drop)
    }

    /// Validates `config`, binds its listeners and starts serving.
    pub fn start(config: Config) -> Result<Self, ConfigError> {
        let snapshot = Snapshot::build(config, 1, None, &HashMap::new())?;
        let (runtime, handle) = RuntimeThread::spawn(snapshot.config.workers)?;
        let plans = match plan_listeners(&snapshot.config, &[], &handle) {
            Ok(plans) => plans,
            Err(err) => {
                runtime.stop();
                return Err(err);
            }
        };
        let shared = Arc::new(Shared::new(snapshot));
        handle.spawn(ticker(shared.clone()));
        let engine = Self {
            shared,
            handle,
            control: Mutex::new(Control::default()),
            runtime: Mutex::new(Some(runtime)),
        };
        let snapshot = engine.shared.snapshot();
        let mut control = engine.control.lock();
        engine.commit_listeners(&mut control, plans, &snapshot.config);
        drop(control);
        Ok(engine)
    }

    /// Puts `plans` in place of the running listeners: kept ones go on accepting, the
    /// others start, and every running listener no plan uses stops (its socket closes).
    fn commit_listeners(&self, control: &mut Control, plans: Vec<Plan>, config: &Config) {
        let mut running: Vec<Option<BoundListener>> =
            control.listeners.drain(..).map(Some).collect();
        let mut next = Vec::with_capacity(plans.len());
        for (plan, l) in plans.into_iter().zip(&config.listeners) {
            let fresh = |socket, address| BoundListener {
                name: Arc::from(l.name.as_str()),
                listen: l.listen.clone(),
                requested: address,
                address,
                socket,
                task: None,
            };
            let mut listener = match plan {
                Plan::Keep(at) => match running.get_mut(at).and_then(Option::take) {
                    Some(kept) => kept,
                    None => continue,
                },
                Plan::TakeOver(at) => match running.get_mut(at).and_then(Option::take) {
                    Some(mut old) => {
                        old.stop();
                        BoundListener {
                            requested: old.requested,
                            ..fresh(old.socket, old.address)
                        }
                    }
                    None => continue,
                },
                Plan::New(socket, requested, address) => BoundListener {
                    requested,
                    ..fresh(socket, address)
                },
            };
            self.start_accepting(&mut listener);
            next.push(listener);
        }
        for old in running.iter_mut().flatten() {
            old.stop();
        }
        control.listeners = next;
    }

    fn start_accepting(&self, listener: &mut BoundListener) {
        if listener.task.is_none() {
            let (alive, ended) = std::sync::mpsc::channel();
            let hold = AcceptHold {
                socket: listener.socket.clone(),
                _alive: alive,
            };
            let task = accept_loop(hold, listener.name.clone(), self.shared.clone());
            let handle = self.handle.spawn(task);
            listener.task = Some(AcceptTask { handle, ended });
        }
    }

    /// Swaps in a new config: listeners added, removed or moved are bound/closed; clusters
    /// whose config is unchanged keep their state; discovered endpoints carry over.
    /// On error nothing changes.
    pub fn reload(&self, config: Config) -> Result<(), ConfigError> {
        let mut control = self.control.lock();
        if control.stopped {
            return Err(ConfigError::new(
                "",
                "the engine is draining or stopped; reload refused",
            ));
        }
        let old = self.shared.snapshot();
        if config.workers != old.config.workers {
            // The runtime's threads are fixed when it starts.
            return Err(ConfigError::new(
                "workers",
                format!(
                    "cannot change on reload (running with {}); restart to change it",
                    old.config.workers
                ),
            ));
        }
        let discovered = carried_endpoints(&control.discovered, &old.config, &config);
        let snapshot = Snapshot::build(config, old.generation + 1, Some(&old), &discovered)?;
        let plans = plan_listeners(&snapshot.config, &control.listeners, &self.handle)?;
        // Nothing can fail from here on.
        let snapshot = Arc::new(snapshot);
        *self.shared.snapshot.write() = snapshot.clone();
        self.commit_listeners(&mut control, plans, &snapshot.config);
        control.discovered = discovered;
        Ok(())
    }

    /// Replaces the endpoints of a cluster (from discovery).
    pub fn set_endpoints(
        &self,
        cluster: &str,
        endpoints: &[EndpointSpec],
    ) -> Result<(), ConfigError> {
        let mut control = self.control.lock();
        let snapshot = self.shared.snapshot();
        let Some(target) = snapshot.cluster(cluster) else {
            return Err(ConfigError::new(
                "cluster",
                format!("no cluster named {cluster:?}"),
            ));
        };
        for (i, endpoint) in endpoints.iter().enumerate() {
            if endpoint.weight == 0 {
                return Err(ConfigError::new(
                    format!("endpoints[{i}].weight"),
                    "must be at least 1",
                ));
            }
            if endpoint.address.port() == 0 {
                return Err(ConfigError::new(
                    format!("endpoints[{i}].address"),
                    "port 0 is not an endpoint",
                ));
            }
        }
        target.set_endpoints(endpoints);
        control
            .discovered
            .insert(cluster.to_owned(), endpoints.to_vec());
        Ok(())
    }

    /// Bound address of each listener (port 0 resolved).
    pub fn listeners(&self) -> Vec<(String, SocketAddr)> {
        self.control
            .lock()
            .listeners
            .iter()
            .map(|l| (l.name.to_string(), l.address))
            .collect()
    }

    /// The current snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot()
    }

    /// Generation of the current snapshot (1 at start, +1 per successful reload).
    pub fn generation(&self) -> u64 {
        self.shared.snapshot().generation
    }

    /// True once a drain or shutdown began.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Prometheus text of every listener and cluster.
    pub fn prometheus(&self) -> String {
        let snapshot = self.shared.snapshot();
        let listeners: Vec<(&str, &ListenerStats)> = snapshot
            .listeners_in_order()
            .map(|l| (&*l.name, &*l.stats))
            .collect();
        let clusters: Vec<(&str, &ClusterStats)> = snapshot
            .clusters_in_order()
            .map(|c| (&*c.name, &*c.stats))
            .collect();
        let mut out = String::with_capacity(8192 + 4096 * (listeners.len() + clusters.len()));
        render_prometheus(&listeners, &clusters, &mut out);
        let mut hosts = Vec::with_capacity(clusters.len());
        let mut available = Vec::with_capacity(clusters.len());
        for cluster in snapshot.clusters_in_order() {
            let all = cluster.hosts();
            hosts.push((&*cluster.name, all.len()));
            let up = all
                .iter()
                .filter(|h| h.is_healthy() && !h.is_ejected())
                .count();
            available.push((&*cluster.name, up));
        }
        write_cluster_gauge(
            &mut out,
            "dmsc_cluster_hosts",
            "Hosts of the cluster.",
            &hosts,
        );
        write_cluster_gauge(
            &mut out,
            "dmsc_cluster_hosts_available",
            "Hosts healthy and not ejected.",
            &available,
        );
        write_gauge(
            &mut out,
            "dmsc_proxy_config_generation",
            "Generation of the live config (1 at start, +1 per reload).",
            snapshot.generation,
        );
        write_gauge(
            &mut out,
            "dmsc_proxy_inflight",
            "HTTP requests and TCP sessions in flight.",
            u64::try_from(self.shared.inflight()).unwrap_or(u64::MAX),
        );
        write_gauge(
            &mut out,
            "dmsc_proxy_draining",
            "1 while draining or stopped.",
            u64::from(self.is_draining()),
        );
        out
    }

    /// JSON of clusters, hosts and their state.
    pub fn describe(&self) -> serde_json::Value {
        let snapshot = self.shared.snapshot();
        let bound: HashMap<String, SocketAddr> = self.listeners().into_iter().collect();
        let listeners: Vec<serde_json::Value> = snapshot
            .config
            .listeners
            .iter()
            .map(|l| {
                json!({
                    "name": l.name,
                    "listen": l.listen,
                    "address": bound.get(&l.name).map(ToString::to_string),
                    "protocol": l.protocol,
                    "cluster": l.cluster,
                })
            })
            .collect();
        let clusters: Vec<serde_json::Value> = snapshot
            .clusters_in_order()
            .map(|c| {
                json!({
                    "name": &*c.name,
                    "lb": c.config.lb,
                    "service": c.config.service,
                    "version": c.config.version,
                    "hosts": c.describe(),
                })
            })
            .collect();
        json!({
            "generation": snapshot.generation,
            "workers": snapshot.config.workers,
            "draining": self.is_draining(),
            "inflight": self.shared.inflight(),
            "listeners": listeners,
            "clusters": clusters,
        })
    }

    /// Closes every listening socket and marks the engine stopped (no reload after this).
    fn stop_accepting(&self) {
        let mut control = self.control.lock();
        control.stopped = true;
        for listener in &mut control.listeners {
            listener.stop();
        }
        control.listeners.clear();
        drop(control);
        self.shared.begin_drain();
    }

    /// Stops accepting, lets requests in flight finish (up to `timeout`); true if all did.
    ///
    /// Blocks the calling thread: call it outside the engine's own tasks (from an async
    /// test, through `spawn_blocking`).
    pub fn drain(&self, timeout: Duration) -> bool {
        self.stop_accepting();
        let deadline = Instant::now()
            .checked_add(timeout)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(86_400 * 365));
        self.shared.wait_idle(deadline)
    }

    /// Stops everything now (drain first for a graceful stop).
    pub fn shutdown(&self) {
        self.stop_accepting();
        let runtime = self.runtime.lock().take();
        if let Some(runtime) = runtime {
            runtime.stop();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.shutdown();
    }
}
