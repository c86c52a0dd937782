//! Load-balancing pickers over `n` hosts identified by index `0..n`.
//!
//! Every picker is thread-safe (`Send + Sync`, state in atomics or behind a
//! `parking_lot` mutex) and answers [`Pick::pick`] with a host index:
//!
//! * [`RoundRobin`]: one atomic counter, first host chosen by a seed (as
//!   Envoy's round robin starts at a random index).
//! * [`WeightedRoundRobin`]: Envoy's earliest-deadline-first schedule,
//!   computed in exact integer arithmetic (see [`edf`]).
//! * [`RandomPicker`]: uniform, or proportional to integer weights.
//! * [`LeastRequest`]: Envoy's least-request balancer: power of `choice_count`
//!   choices over active requests when weights are equal, EDF over
//!   `weight / (active + 1)^active_request_bias` when they differ.
//! * [`PeakEwma`]: Finagle/Linkerd peak-EWMA latency cost with power-of-two
//!   choices, where failures are recorded as penalised latencies so that a host
//!   that fails fast does not attract traffic.
//!
//! Request accounting ([`ActiveRequests`], shared through [`CountsRequests`])
//! is explicit: `pick` never counts a request by itself; `pick_and_start` does both.

mod active;
pub mod edf;
mod least_request;
mod peak_ewma;
mod random;
mod rng;
mod round_robin;
mod weighted_round_robin;

use std::fmt;

use crate::error::InvalidArgument;

pub use active::{ActiveRequests, CountsRequests};
pub(crate) use least_request::least_loaded_of_choices;
pub use least_request::LeastRequest;
pub use peak_ewma::{PeakEwma, RecordError};
pub use random::RandomPicker;
pub(crate) use rng::AtomicRng;
pub use round_robin::RoundRobin;
pub use weighted_round_robin::WeightedRoundRobin;

/// The most hosts a picker accepts (host indexes are stored as `u32`).
pub const MAX_HOSTS: usize = u32::MAX as usize;

/// A load balancer choosing among hosts `0..hosts()`.
pub trait Pick: Send + Sync {
    /// Index of the host for the next request, always in `0..self.hosts()`.
    fn pick(&self) -> usize;

    /// Number of hosts this picker balances over.
    fn hosts(&self) -> usize;
}

/// A host index outside `0..hosts` was passed to a picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostOutOfRange {
    /// The index given.
    pub host: usize,
    /// How many hosts the picker has.
    pub hosts: usize,
}

impl fmt::Display for HostOutOfRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host: index {} is out of range for {} hosts",
            self.host, self.hosts
        )
    }
}

impl std::error::Error for HostOutOfRange {}

/// Checks a host count: at least 1 and at most [`MAX_HOSTS`].
pub fn require_hosts(argument: &'static str, n: usize) -> Result<usize, InvalidArgument> {
    if n == 0 {
        Err(InvalidArgument::new(
            argument,
            "must be at least 1 host, got 0",
        ))
    } else if n > MAX_HOSTS {
        Err(InvalidArgument::new(
            argument,
            format!("must be at most {MAX_HOSTS} hosts, got {n}"),
        ))
    } else {
        Ok(n)
    }
}

/// Checks a weight list: not empty, every weight in `1..=u32::MAX`, at most [`MAX_HOSTS`] long.
pub fn require_weights(weights: &[u32]) -> Result<&[u32], InvalidArgument> {
    require_hosts("weights", weights.len())?;
    if let Some(index) = weights.iter().position(|&w| w == 0) {
        return Err(InvalidArgument::new(
            "weights",
            format!("must all be at least 1, got 0 at index {index}"),
        ));
    }
    Ok(weights)
}

/// Converts one weight given as a signed integer, refusing values outside `1..=u32::MAX`.
pub fn weight_from_i64(index: usize, weight: i64) -> Result<u32, InvalidArgument> {
    match u32::try_from(weight) {
        Ok(w) if w > 0 => Ok(w),
        _ => Err(InvalidArgument::new(
            "weights",
            format!(
                "must be integers from 1 to {}, got {weight} at index {index}",
                u32::MAX
            ),
        )),
    }
}

/// Checks that `host` indexes one of `hosts` hosts.
#[inline]
pub(crate) fn check_host(host: usize, hosts: usize) -> Result<usize, HostOutOfRange> {
    if host < hosts {
        Ok(host)
    } else {
        Err(HostOutOfRange { host, hosts })
    }
}

/// Whether all weights are the same (Envoy then skips the EDF schedule).
pub(crate) fn all_equal(weights: &[u32]) -> bool {
    weights.windows(2).all(|pair| pair[0] == pair[1])
}

/// Envoy's number of schedule positions to skip at start: its `createWithPicks`
/// takes the seed as a `uint32` and reduces it modulo `UINT32_MAX / 10`.
pub(crate) fn start_picks(seed: u64) -> u64 {
    const ENVOY_MAX_PICKS: u64 = 429_496_729;
    u64::from(seed as u32) % ENVOY_MAX_PICKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_no_hosts_and_zero_weights() {
        assert_eq!(require_hosts("n", 0).unwrap_err().argument, "n");
        assert_eq!(require_hosts("n", 3), Ok(3));
        assert_eq!(require_weights(&[]).unwrap_err().argument, "weights");
        let err = require_weights(&[1, 0, 2]).unwrap_err();
        assert!(err.reason.contains("index 1"), "{err}");
        assert!(require_weights(&[1, 2]).is_ok());
    }

    #[test]
    fn weights_from_signed_integers() {
        assert_eq!(weight_from_i64(0, 5), Ok(5));
        for bad in [0, -1, i64::from(u32::MAX) + 1] {
            assert_eq!(weight_from_i64(2, bad).unwrap_err().argument, "weights");
        }
    }

    #[test]
    fn host_out_of_range_names_the_argument() {
        let err = check_host(3, 3).unwrap_err();
        assert_eq!(err.to_string(), "host: index 3 is out of range for 3 hosts");
        assert_eq!(check_host(2, 3), Ok(2));
    }
}
