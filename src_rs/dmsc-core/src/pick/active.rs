//! Per-host counts of requests in flight.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{check_host, HostOutOfRange, Pick};

/// Requests in flight per host, one atomic counter each.
///
/// A count never goes below zero: [`ActiveRequests::finish`] on a host with
/// nothing in flight leaves it at zero and returns `false`.
#[derive(Debug)]
pub struct ActiveRequests {
    counts: Box<[AtomicU64]>,
}

impl ActiveRequests {
    /// Zero requests in flight on each of `hosts` hosts.
    pub fn new(hosts: usize) -> Self {
        Self {
            counts: (0..hosts).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Number of hosts counted.
    pub fn hosts(&self) -> usize {
        self.counts.len()
    }

    /// Counts one more request on `host`; returns the new count.
    #[inline]
    pub fn start(&self, host: usize) -> Result<u64, HostOutOfRange> {
        let host = check_host(host, self.counts.len())?;
        Ok(self.counts[host].fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// Counts one request less on `host`; `false` (and no change) when none was in flight.
    #[inline]
    pub fn finish(&self, host: usize) -> Result<bool, HostOutOfRange> {
        let host = check_host(host, self.counts.len())?;
        Ok(self.counts[host]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1))
            .is_ok())
    }

    /// Requests in flight on `host`.
    #[inline]
    pub fn get(&self, host: usize) -> Result<u64, HostOutOfRange> {
        let host = check_host(host, self.counts.len())?;
        Ok(self.load(host))
    }

    /// Requests in flight on `host`, which the caller has already range-checked.
    #[inline]
    pub(crate) fn load(&self, host: usize) -> u64 {
        self.counts[host].load(Ordering::Relaxed)
    }

    /// Counts one more request on `host`, which the caller has already range-checked.
    #[inline]
    pub(crate) fn increment(&self, host: usize) {
        self.counts[host].fetch_add(1, Ordering::Relaxed);
    }
}

/// A picker that counts requests in flight per host and weighs them in its picks.
///
/// The accounting is explicit: [`pick`](Pick::pick) never counts a request;
/// call [`start`](Self::start) and [`finish`](Self::finish) around one, or
/// [`pick_and_start`](Self::pick_and_start) then `finish`.
pub trait CountsRequests: Pick {
    /// The per-host counts that picks read.
    fn active_requests(&self) -> &ActiveRequests;

    /// Picks a host and counts a request on it.
    #[inline]
    fn pick_and_start(&self) -> usize {
        let host = self.pick();
        self.active_requests().increment(host);
        host
    }

    /// Counts a request starting on `host`; returns its active count.
    #[inline]
    fn start(&self, host: usize) -> Result<u64, HostOutOfRange> {
        self.active_requests().start(host)
    }

    /// Counts a request on `host` as finished; `false` if none was active (the count stays 0).
    #[inline]
    fn finish(&self, host: usize) -> Result<bool, HostOutOfRange> {
        self.active_requests().finish(host)
    }

    /// Requests active on `host`.
    #[inline]
    fn active(&self, host: usize) -> Result<u64, HostOutOfRange> {
        self.active_requests().get(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_finish_never_goes_negative() {
        let active = ActiveRequests::new(2);
        assert_eq!(active.start(1), Ok(1));
        assert_eq!(active.finish(1), Ok(true));
        assert_eq!(active.finish(1), Ok(false));
        assert_eq!(active.get(1), Ok(0));
        assert_eq!(active.start(2).unwrap_err().host, 2);
    }

    #[test]
    fn counts_are_exact_across_threads() {
        let active = ActiveRequests::new(3);
        std::thread::scope(|s| {
            for t in 0..4 {
                let active = &active;
                s.spawn(move || {
                    for i in 0..10_000 {
                        let host = (i + t) % 3;
                        active.start(host).unwrap();
                        assert!(active.finish(host).unwrap());
                    }
                });
            }
        });
        assert!((0..3).all(|h| active.get(h) == Ok(0)));
    }
}
