//! Envoy's least-request load balancer.

use parking_lot::Mutex;

use super::active::{ActiveRequests, CountsRequests};
use super::edf::FloatEdf;
use super::rng::AtomicRng;
use super::{all_equal, require_hosts, require_weights, start_picks, Pick};
use crate::error::{require_non_negative, InvalidArgument};

/// How the next host is chosen.
#[derive(Debug)]
enum Selection {
    /// Equal weights: the least loaded of `choice_count` random hosts.
    Choices,
    /// Different weights: EDF over `weight / (active + 1)^bias`.
    Weighted {
        weights: Box<[f64]>,
        bias: f64,
        edf: Mutex<FloatEdf>,
    },
}

/// Envoy's least-request balancer over `n` hosts.
///
/// * Equal weights (or none): draw `choice_count` hosts uniformly at random
///   (with replacement) and take the one with the fewest active requests, the
///   first drawn on ties: power of two choices for the default `choice_count`
///   of 2 (Envoy's `N_CHOICES` selection).
/// * Different weights: Envoy's weighted least request, an EDF schedule (see
///   [`edf`](super::edf)) where a picked host is re-inserted with the
///   effective weight `weight / (active + 1)^active_request_bias` it has at
///   that moment. A bias of 0 is plain weighted round robin; 1 (the default)
///   divides the weight by the load. As in Envoy, the schedule starts at a
///   seeded position.
///
/// Active requests are counted by [`start`](CountsRequests::start) and
/// [`finish`](CountsRequests::finish); [`pick`](Pick::pick) does not count, and
/// [`pick_and_start`](CountsRequests::pick_and_start) does both.
#[derive(Debug)]
pub struct LeastRequest {
    active: ActiveRequests,
    rng: AtomicRng,
    choice_count: u32,
    selection: Selection,
}

impl LeastRequest {
    /// A balancer over `n` hosts.
    ///
    /// `weights` (one per host) are optional; `active_request_bias` is used
    /// only when they differ. Refuses `n == 0`, `choice_count == 0`, weights of
    /// the wrong length or with zeros, and a NaN, infinite or negative bias.
    pub fn new(
        n: usize,
        choice_count: u32,
        weights: Option<&[u32]>,
        active_request_bias: f64,
        seed: Option<u64>,
    ) -> Result<Self, InvalidArgument> {
        let n = require_hosts("n", n)?;
        if choice_count == 0 {
            return Err(InvalidArgument::new(
                "choice_count",
                "must be at least 1, got 0",
            ));
        }
        let bias = require_non_negative("active_request_bias", active_request_bias)?;
        let seed = seed.unwrap_or_else(|| fastrand::u64(..));
        let selection = match weights {
            Some(weights) => {
                let weights = require_weights(weights)?;
                if weights.len() != n {
                    return Err(InvalidArgument::new(
                        "weights",
                        format!("must have one weight per host ({n}), got {}", weights.len()),
                    ));
                }
                if all_equal(weights) {
                    Selection::Choices
                } else {
                    Selection::Weighted {
                        weights: weights.iter().map(|&w| f64::from(w)).collect(),
                        bias,
                        edf: Mutex::new(FloatEdf::with_picks(weights, start_picks(seed))),
                    }
                }
            }
            None => Selection::Choices,
        };
        Ok(Self {
            active: ActiveRequests::new(n),
            rng: AtomicRng::new(Some(seed)),
            choice_count,
            selection,
        })
    }

    /// Whether picks follow the weighted EDF schedule (weights differ) rather than random choices.
    pub fn is_weighted(&self) -> bool {
        matches!(self.selection, Selection::Weighted { .. })
    }

    #[inline]
    fn pick_choices(&self) -> usize {
        least_loaded_of_choices(&self.rng, self.active.hosts(), self.choice_count, |h| {
            self.active.load(h)
        })
    }
}

/// The least loaded of `choice_count` hosts drawn uniformly (with replacement) from
/// `0..hosts`, the first drawn on ties: Envoy's `N_CHOICES` selection (power of two choices
/// for 2). `load` reads a host's active requests wherever the caller keeps them.
#[inline]
pub(crate) fn least_loaded_of_choices(
    rng: &AtomicRng,
    hosts: usize,
    choice_count: u32,
    load: impl Fn(usize) -> u64,
) -> usize {
    let mut best = rng.index(hosts);
    let mut best_load = load(best);
    for _ in 1..choice_count {
        let candidate = rng.index(hosts);
        let candidate_load = load(candidate);
        if candidate_load < best_load {
            best = candidate;
            best_load = candidate_load;
        }
    }
    best
}

/// Effective weight of a host with `active` requests: `weight / (active + 1)^bias`.
#[inline]
fn effective_weight(weight: f64, active: u64, bias: f64) -> f64 {
    let load = active.saturating_add(1) as f64;
    if bias == 1.0 {
        weight / load
    } else if bias == 0.0 {
        weight
    } else {
        weight / load.powf(bias)
    }
}

impl Pick for LeastRequest {
    #[inline]
    fn pick(&self) -> usize {
        match &self.selection {
            Selection::Choices => self.pick_choices(),
            Selection::Weighted { weights, bias, edf } => edf
                .lock()
                .pick_and_add(|h| effective_weight(weights[h], self.active.load(h), *bias)),
        }
    }

    fn hosts(&self) -> usize {
        self.active.hosts()
    }
}

impl CountsRequests for LeastRequest {
    #[inline]
    fn active_requests(&self) -> &ActiveRequests {
        &self.active
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_choices_avoid_the_loaded_host() {
        let lr = LeastRequest::new(4, 2, None, 1.0, Some(1)).unwrap();
        (0..10).for_each(|_| {
            lr.start(0).unwrap();
        });
        let mut counts = [0u32; 4];
        (0..40_000).for_each(|_| counts[lr.pick()] += 1);
        // Host 0 wins only when both draws are host 0: 1/16 of the time.
        assert!(counts[0].abs_diff(2_500) < 400, "{counts:?}");
        assert!(counts[1..].iter().all(|&c| c > 11_000), "{counts:?}");
    }

    #[test]
    fn balances_active_requests_when_starting_on_each_pick() {
        let lr = LeastRequest::new(5, 2, None, 1.0, Some(2)).unwrap();
        (0..5000).for_each(|_| {
            lr.pick_and_start();
        });
        let loads: Vec<u64> = (0..5).map(|h| lr.active(h).unwrap()).collect();
        let spread = loads.iter().max().unwrap() - loads.iter().min().unwrap();
        assert!(spread <= 10, "{loads:?}");
    }

    #[test]
    fn weighted_without_load_is_weighted_round_robin() {
        let lr = LeastRequest::new(3, 2, Some(&[1, 2, 5]), 1.0, Some(3)).unwrap();
        assert!(lr.is_weighted());
        let mut counts = [0u32; 3];
        (0..800).for_each(|_| counts[lr.pick()] += 1);
        assert_eq!(counts, [100, 200, 500]);
    }

    #[test]
    fn weighted_divides_weight_by_load() {
        // Host 1 has twice the weight but three times the load: it should get less.
        let lr = LeastRequest::new(2, 2, Some(&[1, 2]), 1.0, Some(4)).unwrap();
        (0..2).for_each(|_| {
            lr.start(1).unwrap();
        });
        let mut counts = [0u32; 2];
        (0..3000).for_each(|_| counts[lr.pick()] += 1);
        // Effective weights 1 and 2/3: shares 60% / 40%.
        assert!(counts[0].abs_diff(1800) < 10, "{counts:?}");
    }

    #[test]
    fn zero_bias_ignores_load() {
        let lr = LeastRequest::new(2, 2, Some(&[1, 3]), 0.0, Some(5)).unwrap();
        (0..50).for_each(|_| {
            lr.start(1).unwrap();
        });
        let mut counts = [0u32; 2];
        (0..400).for_each(|_| counts[lr.pick()] += 1);
        assert_eq!(counts, [100, 300]);
    }

    #[test]
    fn equal_weights_use_choices() {
        let lr = LeastRequest::new(3, 2, Some(&[4, 4, 4]), 1.0, None).unwrap();
        assert!(!lr.is_weighted());
    }

    #[test]
    fn refuses_bad_arguments() {
        let err = |r: Result<LeastRequest, InvalidArgument>| r.unwrap_err().argument;
        assert_eq!(err(LeastRequest::new(0, 2, None, 1.0, None)), "n");
        assert_eq!(
            err(LeastRequest::new(2, 0, None, 1.0, None)),
            "choice_count"
        );
        assert_eq!(
            err(LeastRequest::new(2, 2, Some(&[1]), 1.0, None)),
            "weights"
        );
        assert_eq!(
            err(LeastRequest::new(2, 2, Some(&[1, 0]), 1.0, None)),
            "weights"
        );
        for bias in [f64::NAN, -0.5, f64::INFINITY] {
            assert_eq!(
                err(LeastRequest::new(2, 2, None, bias, None)),
                "active_request_bias"
            );
        }
    }
}
