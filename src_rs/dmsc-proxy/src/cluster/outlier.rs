//! Passive health with Envoy's outlier detection semantics: consecutive 5xx
//! and gateway failures eject at once; success-rate ejection is judged once
//! per interval; ejections last `base * times ejected` (capped), never take
//! more than `max_ejection_percent` of the hosts (at least one may always go)
//! and never the last host that would serve.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use dmsc_core::clock::Nanos;
use parking_lot::Mutex;

use super::Host;
use crate::config::OutlierDetection;

const NANOS_PER_MS: u64 = 1_000_000;

/// Ejection bookkeeping of one host (changed only under the cluster's rebuild lock).
#[derive(Debug, Default)]
struct Ejection {
    /// When the current ejection ends (meaningful while ejected).
    until: Nanos,
    /// Ejections so far, the multiplier of the next ejection time.
    times: u32,
    /// When the host last came back (decay of `times`).
    returned_at: Option<Nanos>,
}

/// Outlier detection state of one host.
#[derive(Debug, Default)]
pub(super) struct HostOutlier {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    interval_success: AtomicU64,
    interval_total: AtomicU64,
    ejected: AtomicBool,
    ejection: Mutex<Ejection>,
}

impl HostOutlier {
    #[inline]
    pub(super) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Acquire)
    }

    pub(super) fn times_ejected(&self) -> u32 {
        self.ejection.lock().times
    }

    /// End of the current ejection, if ejected.
    pub(super) fn ejected_until(&self) -> Option<Nanos> {
        self.is_ejected().then(|| self.ejection.lock().until)
    }

    /// Counts one outcome; true when a consecutive-error threshold was just reached
    /// (the counter restarts, so a host refused ejection is judged again later).
    pub(super) fn record(
        &self,
        detection: &OutlierDetection,
        success: bool,
        gateway_failure: bool,
    ) -> bool {
        self.interval_total.fetch_add(1, Ordering::Relaxed);
        if success {
            self.interval_success.fetch_add(1, Ordering::Relaxed);
            // Plain stores: only a change needs the cache line.
            if self.consecutive_5xx.load(Ordering::Relaxed) != 0 {
                self.consecutive_5xx.store(0, Ordering::Relaxed);
            }
            if self.consecutive_gateway.load(Ordering::Relaxed) != 0 {
                self.consecutive_gateway.store(0, Ordering::Relaxed);
            }
            return false;
        }
        // Without a response Envoy maps the error to a 5xx (503/504), so it counts here too.
        let tripped_5xx = reached(&self.consecutive_5xx, detection.consecutive_5xx);
        let tripped_gateway = if gateway_failure {
            reached(
                &self.consecutive_gateway,
                detection.consecutive_gateway_failure,
            )
        } else {
            self.consecutive_gateway.store(0, Ordering::Relaxed);
            false
        };
        tripped_5xx || tripped_gateway
    }

    /// Ejects now, for `base * times` (capped at the maximum).
    pub(super) fn eject(&self, detection: &OutlierDetection, now: Nanos) {
        let mut ejection = self.ejection.lock();
        ejection.times = ejection.times.saturating_add(1);
        let base = detection.base_ejection_time_ms.saturating_mul(NANOS_PER_MS);
        let max = detection
            .max_ejection_time_ms
            .saturating_mul(NANOS_PER_MS)
            .max(base);
        let duration = base.saturating_mul(u64::from(ejection.times)).min(max);
        ejection.until = now.saturating_add(duration);
        self.ejected.store(true, Ordering::Release);
        self.consecutive_5xx.store(0, Ordering::Relaxed);
        self.consecutive_gateway.store(0, Ordering::Relaxed);
    }

    /// Ends an ejection whose time has come; true if it did.
    pub(super) fn return_if_due(&self, now: Nanos) -> bool {
        if !self.is_ejected() {
            return false;
        }
        let mut ejection = self.ejection.lock();
        if now < ejection.until {
            return false;
        }
        ejection.returned_at = Some(now);
        self.ejected.store(false, Ordering::Release);
        true
    }

    /// Ends the ejection now, whatever time was left.
    pub(super) fn return_now(&self, now: Nanos) {
        let mut ejection = self.ejection.lock();
        ejection.until = ejection.until.min(now);
        ejection.returned_at = Some(now);
        self.ejected.store(false, Ordering::Release);
    }

    /// Closes a success-rate interval; a host back for at least the base ejection
    /// time has its ejection multiplier lowered (Envoy's backoff decay).
    pub(super) fn end_interval(&self, detection: &OutlierDetection, now: Nanos) {
        self.interval_success.store(0, Ordering::Relaxed);
        self.interval_total.store(0, Ordering::Relaxed);
        if self.is_ejected() {
            return;
        }
        let mut ejection = self.ejection.lock();
        let base = detection.base_ejection_time_ms.saturating_mul(NANOS_PER_MS);
        if let Some(returned_at) = ejection.returned_at {
            if ejection.times > 0 && now.saturating_sub(returned_at) >= base {
                ejection.times -= 1;
                ejection.returned_at = Some(now);
            }
        }
    }

    /// `(successes, total)` of the current interval.
    fn interval(&self) -> (u64, u64) {
        (
            self.interval_success.load(Ordering::Relaxed),
            self.interval_total.load(Ordering::Relaxed),
        )
    }
}

/// Adds one to a consecutive counter; true (and restarts it) when it reaches `threshold`.
fn reached(counter: &AtomicU32, threshold: u32) -> bool {
    if threshold == 0 {
        return false;
    }
    let count = counter.fetch_add(1, Ordering::Relaxed).saturating_add(1);
    if count >= threshold {
        counter.store(0, Ordering::Relaxed);
        return true;
    }
    false
}

/// Whether `host` may be ejected now: not already out, within `max_ejection_percent`
/// (one ejection is always allowed, as in Envoy) and not the last host that serves.
pub(super) fn may_eject(all: &[Arc<Host>], host: &Arc<Host>, detection: &OutlierDetection) -> bool {
    if host.is_ejected() {
        return false;
    }
    let total = all.len();
    let ejected = all.iter().filter(|h| h.is_ejected()).count();
    let percent = detection.max_ejection_percent.min(100) as usize;
    if ejected > 0 && (ejected + 1) * 100 > total * percent {
        return false;
    }
    let others = all
        .iter()
        .filter(|h| !Arc::ptr_eq(h, host) && !h.is_ejected());
    let (mut others_up, mut others_available) = (0usize, 0usize);
    for other in others {
        others_up += 1;
        others_available += usize::from(other.is_healthy());
    }
    others_up > 0 && (others_available > 0 || !host.is_healthy())
}

/// Hosts whose success rate this interval is below `mean - stdev * factor / 1000`,
/// judged among hosts with at least `success_rate_request_volume` requests, and only
/// when at least `success_rate_minimum_hosts` of them qualify.
pub(super) fn success_rate_outliers(
    all: &[Arc<Host>],
    detection: &OutlierDetection,
) -> Vec<Arc<Host>> {
    let minimum_hosts = detection.success_rate_minimum_hosts as usize;
    if minimum_hosts == 0 {
        return Vec::new();
    }
    let volume = u64::from(detection.success_rate_request_volume.max(1));
    let rates: Vec<(&Arc<Host>, f64)> = all
        .iter()
        .filter(|h| !h.is_ejected())
        .filter_map(|h| {
            let (success, total) = h.outlier.interval();
            (total >= volume).then(|| (h, 100.0 * success.min(total) as f64 / total as f64))
        })
        .collect();
    if rates.len() < minimum_hosts {
        return Vec::new();
    }
    let n = rates.len() as f64;
    let mean = rates.iter().map(|(_, r)| r).sum::<f64>() / n;
    let variance = rates
        .iter()
        .map(|(_, r)| (r - mean) * (r - mean))
        .sum::<f64>()
        / n;
    let threshold =
        mean - variance.sqrt() * f64::from(detection.success_rate_stdev_factor) / 1000.0;
    rates
        .into_iter()
        .filter(|&(_, rate)| rate < threshold)
        .map(|(h, _)| Arc::clone(h))
        .collect()
}
