//! Active health checking of every instance, in parallel and spread over time.
//!
//! Each instance carries the monotonic time of its next check. A scheduler thread scans the
//! instances a few times per interval, hands the due ones to a pool of worker threads (probes
//! block on the network, so one core keeps many workers busy), and each worker schedules the
//! instance it checked one jittered interval later. Instances registered together therefore
//! drift apart instead of being probed in bursts, and a slow or hanging probe holds up only
//! its own worker. The scheduler reads real time even when the registry has a manual clock:
//! probes happen on the real network.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::health::probe;
use super::instance::Instance;
use super::Registry;
use crate::clock::{Clock, Nanos};

/// Shortest pause between two scans.
const MIN_TICK: Duration = Duration::from_millis(1);
/// Longest pause between two scans when checks are due soon.
const MAX_TICK: Duration = Duration::from_millis(50);
/// Longest pause between two scans at all.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The monotonic time the checker schedules by.
pub(crate) fn now() -> Nanos {
    Clock::Monotonic.now()
}

fn nanos(duration: Duration) -> Nanos {
    u64::try_from(duration.as_nanos()).unwrap_or(Nanos::MAX)
}

/// Wakes a sleeping scheduler: to stop, or because instances were added.
#[derive(Debug, Default)]
pub struct Wake {
    state: Mutex<WakeState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct WakeState {
    stop: bool,
    poked: bool,
}

impl Wake {
    /// Makes the scheduler scan at once (new instances may be due now).
    pub(crate) fn poke(&self) {
        self.state.lock().poked = true;
        self.changed.notify_all();
    }

    /// Asks the scheduler to stop.
    pub(crate) fn request_stop(&self) {
        self.state.lock().stop = true;
        self.changed.notify_all();
    }

    /// Clears a previous stop request before a new scheduler starts.
    pub(crate) fn reset(&self) {
        *self.state.lock() = WakeState::default();
    }

    /// Waits `timeout` unless stopped (pokes do not end it); returns whether to stop.
    fn pause(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.state.lock();
        while !state.stop && !self.changed.wait_until(&mut state, deadline).timed_out() {}
        state.stop
    }

    /// Sleeps up to `timeout` unless poked or stopped; returns whether to stop.
    fn sleep(&self, timeout: Duration) -> bool {
        let mut state = self.state.lock();
        if !state.stop && !state.poked {
            self.changed.wait_for(&mut state, timeout);
        }
        state.poked = false;
        state.stop
    }
}

/// Instances waiting for a worker.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Arc<Instance>>,
    closed: bool,
}

impl Queue {
    fn push_all(&self, batch: Vec<Arc<Instance>>) {
        if batch.is_empty() {
            return;
        }
        self.state.lock().items.extend(batch);
        self.ready.notify_all();
    }

    /// The next instance to check; blocks while the queue is empty, `None` once closed.
    fn pop(&self) -> Option<Arc<Instance>> {
        let mut state = self.state.lock();
        loop {
            if state.closed {
                return None;
            }
            if let Some(instance) = state.items.pop_front() {
                return Some(instance);
            }
            self.ready.wait(&mut state);
        }
    }

    fn try_pop(&self) -> Option<Arc<Instance>> {
        self.state.lock().items.pop_front()
    }

    /// Closes the queue and hands back what was never checked.
    fn close(&self) -> VecDeque<Arc<Instance>> {
        let mut state = self.state.lock();
        state.closed = true;
        self.ready.notify_all();
        std::mem::take(&mut state.items)
    }
}

/// Probes `instance` once, records the outcome and schedules its next check.
fn check_one(registry: &Registry, instance: &Instance) {
    let config = registry.health_config();
    let e = &instance.endpoint;
    let passed = probe(
        &e.host,
        e.port,
        &e.health_check_url,
        config.timeout,
        &config.expected_statuses,
    );
    registry.record_check(instance, passed);
    instance.schedule_at(now().saturating_add(nanos(config.next_wait(fastrand::f64()))));
}

/// Probes every registered instance now, `workers` at a time; returns how many were probed.
pub(crate) fn sweep(registry: &Registry) -> usize {
    let instances = registry.all_instances();
    let workers = (registry.health_config().workers as usize).min(instances.len());
    let next = AtomicUsize::new(0);
    let work = || loop {
        let at = next.fetch_add(1, Ordering::Relaxed);
        let Some(instance) = instances.get(at) else {
            break;
        };
        check_one(registry, instance);
    };
    thread::scope(|scope| {
        for i in 1..workers {
            // A helper that cannot start leaves its share to the others.
            let _ = thread::Builder::new()
                .name(format!("dmsc-sweep-{i}"))
                .spawn_scoped(scope, work);
        }
        // The calling thread is a worker too, so the sweep finishes even if no helper starts.
        work();
    });
    instances.len()
}

/// Why the scheduler returned.
#[derive(Debug, PartialEq, Eq)]
enum Exit {
    Stop,
    Resize,
}

/// Runs scheduled health checks until [`Wake::request_stop`]; restarts its worker pool when
/// the configured number of workers changes.
pub(crate) fn run(registry: &Registry) {
    loop {
        let workers = registry.health_config().workers;
        let queue = Queue::default();
        let exit = thread::scope(|scope| {
            let started = (0..workers)
                .filter(|i| {
                    thread::Builder::new()
                        .name(format!("dmsc-health-{i}"))
                        .spawn_scoped(scope, || {
                            while let Some(instance) = queue.pop() {
                                check_one(registry, &instance);
                            }
                        })
                        .is_ok()
                })
                .count();
            let exit = schedule(registry, &queue, workers, started == 0);
            // Unchecked instances become due again for the next scheduler.
            for instance in queue.close() {
                instance.schedule_at(0);
            }
            exit
        });
        if exit == Exit::Stop {
            return;
        }
    }
}

fn schedule(registry: &Registry, queue: &Queue, workers: u32, inline: bool) -> Exit {
    let mut snapshot: Vec<Arc<Instance>> = Vec::new();
    let mut generation = None;
    let mut last_scan: Option<Instant> = None;
    loop {
        let config = registry.health_config();
        if config.workers != workers {
            return Exit::Resize;
        }
        let tick = (config.interval / 100).clamp(MIN_TICK, MAX_TICK);
        // Registrations wake the scheduler so new instances are checked promptly; during a
        // burst of them, scan (and re-collect the instances) at most once per tick.
        if let Some(wait) = last_scan.map(|at| tick.saturating_sub(at.elapsed())) {
            if !wait.is_zero() && registry.wake.pause(wait) {
                return Exit::Stop;
            }
        }
        last_scan = Some(Instant::now());
        let membership = registry.membership();
        if generation != Some(membership) {
            snapshot = registry.all_instances();
            generation = Some(membership);
        }
        let now = now();
        let mut earliest = Nanos::MAX;
        let mut due = Vec::new();
        for instance in &snapshot {
            let at = instance.next_check();
            if at <= now {
                if instance.claim(at) {
                    due.push(Arc::clone(instance));
                }
            } else {
                earliest = earliest.min(at);
            }
        }
        queue.push_all(due);
        if inline {
            // No worker thread could be started: probe here rather than not at all.
            while let Some(instance) = queue.try_pop() {
                check_one(registry, &instance);
            }
        }
        // Workers schedule their instances after this scan, so never sleep past a fraction of
        // the interval: a check they schedule is then at most that late.
        let longest = (config.interval / 4).clamp(tick, MAX_SLEEP);
        let pause = Duration::from_nanos(earliest.saturating_sub(now)).clamp(tick, longest);
        if registry.wake.sleep(pause) {
            return Exit::Stop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoint, Health, HealthCheckConfig, RegistryConfig};
    use std::net::TcpListener;

    fn registry(interval: Duration, workers: u32) -> Registry {
        let config = RegistryConfig {
            health: HealthCheckConfig {
                interval,
                workers,
                ..HealthCheckConfig::default()
            },
            ..RegistryConfig::default()
        };
        Registry::new(config, Clock::Monotonic).unwrap()
    }

    fn register(registry: &Registry, port: u16, health: Option<Health>) {
        let endpoint = Endpoint {
            name: "svc".into(),
            host: "127.0.0.1".into(),
            port,
            ..Endpoint::default()
        };
        registry.register_attached(endpoint, health, None).unwrap();
    }

    #[test]
    fn a_sweep_probes_every_instance_in_parallel() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = listener.local_addr().unwrap().port();
        let down = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let registry = registry(Duration::from_secs(60), 3);
        register(&registry, up, None);
        register(&registry, down, None);
        assert_eq!(sweep(&registry), 2);
        assert_eq!(registry.health_checks(), 2);
        let health: Vec<_> = registry
            .instances("svc")
            .iter()
            .map(|i| i.health())
            .collect();
        assert_eq!(health, [Health::Healthy, Health::Unhealthy]);
        // Each checked instance is scheduled about one interval later.
        let soonest = now() + nanos(Duration::from_secs(50));
        assert!(registry
            .instances("svc")
            .iter()
            .all(|i| i.next_check() > soonest));
        drop(listener);
    }

    #[test]
    fn the_scheduler_checks_new_instances_at_once_and_then_every_interval() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let registry = registry(Duration::from_millis(20), 2);
        register(&registry, port, None);
        thread::scope(|scope| {
            scope.spawn(|| run(&registry));
            for _ in 0..200 {
                if registry.health_checks() >= 5 {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            registry.wake.request_stop();
        });
        assert!(registry.health_checks() >= 5);
        assert_eq!(registry.healthy_count("svc"), 1);
        // Nothing is left queued once the scheduler is gone.
        assert!(registry.instances("svc")[0].next_check() < Nanos::MAX);
    }
}
