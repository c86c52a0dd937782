//! Earliest-deadline-first schedules, the weighted round robin of Envoy.
//!
//! Envoy's `EdfScheduler` gives each host a deadline of `current time +
//! 1/weight`, always picks the earliest deadline (ties go to the entry
//! inserted first) and re-inserts the picked host with its next deadline.
//! Started empty, host `i`'s `k`-th pick therefore has deadline `k / w_i`, and
//! a tie between two hosts is always won by the one whose previous pick came
//! first: the host with the lower weight, then (equal weights) the lower index.
//! So the whole schedule is the order of the keys `(k / w_i, w_i, i)`.
//!
//! [`IntegerEdf`] orders exactly those keys, comparing `k_a / w_a` with
//! `k_b / w_b` by cross-multiplying in `u128`: no floating point, so the
//! schedule is periodic with period `W = sum(weights)` and every window of `W`
//! consecutive picks holds exactly `w_i` picks of host `i`. (Envoy sums
//! doubles; where its rounding separates two deadlines that are equal in exact
//! arithmetic it may order that tie differently.)
//!
//! Envoy also starts each scheduler at a random position, by emulating a seeded
//! number of picks (`EdfScheduler::createWithPicks`).
//! [`IntegerEdf::with_picks`] does the same in `O(n log n)`: every key with
//! deadline at most `P / W` is among the first `P` picks, which leaves fewer
//! than `n` picks to make one by one.
//!
//! [`FloatEdf`] is Envoy's scheduler itself, with `f64` deadlines, for weights
//! that change at every pick (weighted least request).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A host's next slot in the integer schedule: its `next`-th pick, at deadline `next / weight`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    next: u64,
    weight: u32,
    host: u32,
}

impl Slot {
    /// Schedule order: earlier deadline, then lower weight, then lower index.
    fn schedule_cmp(&self, other: &Self) -> Ordering {
        let lhs = u128::from(self.next) * u128::from(other.weight);
        let rhs = u128::from(other.next) * u128::from(self.weight);
        lhs.cmp(&rhs)
            .then(self.weight.cmp(&other.weight))
            .then(self.host.cmp(&other.host))
    }
}

impl Ord for Slot {
    // `BinaryHeap` is a max-heap: reverse so the first slot in schedule order is on top.
    fn cmp(&self, other: &Self) -> Ordering {
        other.schedule_cmp(self)
    }
}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Envoy's EDF schedule for fixed integer weights, in exact arithmetic.
#[derive(Debug, Clone)]
pub struct IntegerEdf {
    heap: BinaryHeap<Slot>,
}

impl IntegerEdf {
    /// The schedule after `picks` picks from an empty one.
    ///
    /// `weights` must be non-empty, all at least 1, at most `u32::MAX` long
    /// (callers validate with [`require_weights`](super::require_weights)).
    pub fn with_picks(weights: &[u32], picks: u64) -> Self {
        let total: u128 = weights.iter().map(|&w| u128::from(w)).sum();
        let mut done: u64 = 0;
        let slots: Vec<Slot> = weights
            .iter()
            .enumerate()
            .map(|(host, &weight)| {
                // Host's picks with deadline <= picks / total: all of them come first.
                let before = (u128::from(picks) * u128::from(weight) / total) as u64;
                done += before;
                Slot {
                    next: before + 1,
                    weight,
                    host: host as u32,
                }
            })
            .collect();
        let mut edf = Self {
            heap: BinaryHeap::from(slots),
        };
        for _ in done..picks {
            edf.pick();
        }
        edf
    }

    /// The host with the earliest deadline; moves it to its next deadline.
    #[inline]
    pub fn pick(&mut self) -> usize {
        let mut top = self.heap.peek_mut().expect("a schedule has hosts");
        top.next += 1;
        // Dropping `top` sifts the slot down to its new place.
        top.host as usize
    }

    /// Each host's next deadline as `(host, pick number, weight)`, in schedule order.
    pub fn upcoming(&self) -> Vec<(usize, u64, u32)> {
        let mut slots = self.heap.clone().into_vec();
        slots.sort_by(Slot::schedule_cmp);
        slots
            .iter()
            .map(|s| (s.host as usize, s.next, s.weight))
            .collect()
    }
}

/// A host's entry in the floating-point schedule.
#[derive(Debug, Clone, Copy)]
struct Entry {
    deadline: f64,
    order: u64,
    host: u32,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl Ord for Entry {
    // Min-heap on (deadline, insertion order), as Envoy's `EdfEntry::operator<`.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .deadline
            .total_cmp(&self.deadline)
            .then(other.order.cmp(&self.order))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Envoy's `EdfScheduler` with `f64` deadlines and weights given at each pick.
#[derive(Debug, Clone)]
pub struct FloatEdf {
    heap: BinaryHeap<Entry>,
    now: f64,
    next_order: u64,
}

impl FloatEdf {
    /// The schedule of `weights` after `picks` picks, as [`IntegerEdf::with_picks`].
    pub fn with_picks(weights: &[u32], picks: u64) -> Self {
        let upcoming = IntegerEdf::with_picks(weights, picks).upcoming();
        // Current time is the deadline of the latest pick made so far.
        let now = upcoming
            .iter()
            .map(|&(_, next, weight)| (next - 1) as f64 / f64::from(weight))
            .fold(0.0, f64::max);
        let heap = upcoming
            .iter()
            .enumerate()
            .map(|(order, &(host, next, weight))| Entry {
                deadline: next as f64 / f64::from(weight),
                order: order as u64,
                host: host as u32,
            })
            .collect();
        Self {
            heap,
            now,
            next_order: upcoming.len() as u64,
        }
    }

    /// Picks the earliest deadline and re-inserts that host with deadline
    /// `now + 1 / weight_of(host)` (Envoy's `pickAndAdd`).
    ///
    /// A weight of zero or one that underflows puts the host at an infinite
    /// deadline, behind every host with a positive weight.
    #[inline]
    pub fn pick_and_add(&mut self, weight_of: impl FnOnce(usize) -> f64) -> usize {
        let mut top = self.heap.peek_mut().expect("a schedule has hosts");
        let host = top.host as usize;
        self.now = top.deadline;
        top.deadline = self.now + 1.0 / weight_of(host);
        top.order = self.next_order;
        self.next_order += 1;
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Envoy's scheduler as written (insertion order breaks ties), with
    /// deadlines as exact fractions `num / den`.
    fn envoy_reference(weights: &[u32], picks: usize) -> Vec<usize> {
        // (deadline numerator, denominator, order, host)
        let mut queue: Vec<(u128, u128, u64, usize)> = weights
            .iter()
            .enumerate()
            .map(|(h, &w)| (1, u128::from(w), h as u64, h))
            .collect();
        let mut out = Vec::with_capacity(picks);
        for order in (weights.len() as u64..).take(picks) {
            let best = (0..queue.len())
                .min_by(|&a, &b| {
                    let (na, da, oa, _) = queue[a];
                    let (nb, db, ob, _) = queue[b];
                    (na * db).cmp(&(nb * da)).then(oa.cmp(&ob))
                })
                .unwrap();
            let (num, den, _, host) = queue[best];
            let w = u128::from(weights[host]);
            // deadline + 1/w = (num * w + den) / (den * w), reduced by gcd.
            let (mut n2, mut d2) = (num * w + den, den * w);
            let g = gcd(n2, d2);
            n2 /= g;
            d2 /= g;
            queue[best] = (n2, d2, order, host);
            out.push(host);
        }
        out
    }

    fn gcd(mut a: u128, mut b: u128) -> u128 {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    }

    fn picks(weights: &[u32], start: u64, count: usize) -> Vec<usize> {
        let mut edf = IntegerEdf::with_picks(weights, start);
        (0..count).map(|_| edf.pick()).collect()
    }

    #[test]
    fn matches_envoys_scheduler_from_empty() {
        let cases: &[&[u32]] = &[
            &[1, 1, 1],
            &[1, 2],
            &[2, 4],
            &[3, 7, 1],
            &[5, 10, 15, 2],
            &[6, 4, 9, 4, 1],
        ];
        for weights in cases {
            let total: u32 = weights.iter().sum();
            let n = total as usize * 3;
            assert_eq!(
                picks(weights, 0, n),
                envoy_reference(weights, n),
                "{weights:?}"
            );
        }
    }

    #[test]
    fn grpc_proposal_example() {
        // gRPC A31 (Envoy's EDF): weights a=2, b=4 give "bab" repeated.
        assert_eq!(picks(&[2, 4], 0, 6), vec![1, 0, 1, 1, 0, 1]);
    }

    #[test]
    fn starting_later_is_the_same_schedule_shifted() {
        let weights = [3, 7, 1, 4, 4];
        let full = picks(&weights, 0, 200);
        for start in [1, 5, 19, 20, 37, 101] {
            let shifted = picks(&weights, start, 200 - start as usize);
            assert_eq!(shifted[..], full[start as usize..], "start {start}");
        }
    }

    #[test]
    fn every_window_of_total_weight_is_exact() {
        let weights = [3, 7, 1, 4, 4, 9];
        let total: u32 = weights.iter().sum();
        let seq = picks(&weights, 12_345, total as usize * 4);
        for window in seq.windows(total as usize) {
            let mut counts = vec![0u32; weights.len()];
            window.iter().for_each(|&h| counts[h] += 1);
            assert_eq!(counts, weights);
        }
    }

    #[test]
    fn float_schedule_follows_integer_one_where_doubles_are_exact() {
        // Power-of-two weights: every deadline is exact in binary floating point.
        let weights = [2, 8, 1, 4];
        let mut exact = IntegerEdf::with_picks(&weights, 17);
        let mut float = FloatEdf::with_picks(&weights, 17);
        for _ in 0..150 {
            let host = float.pick_and_add(|h| f64::from(weights[h]));
            assert_eq!(host, exact.pick());
        }
    }

    #[test]
    fn float_schedule_keeps_proportions_under_rounding() {
        let weights = [2, 5, 3];
        let mut float = FloatEdf::with_picks(&weights, 17);
        let mut counts = [0i64; 3];
        (0..1000).for_each(|_| counts[float.pick_and_add(|h| f64::from(weights[h]))] += 1);
        for (count, weight) in counts.iter().zip(weights) {
            assert!((count - 100 * i64::from(weight)).abs() <= 1, "{counts:?}");
        }
    }

    #[test]
    fn zero_weight_is_pushed_behind_the_others() {
        let mut edf = FloatEdf::with_picks(&[1, 1], 0);
        assert_eq!(edf.pick_and_add(|_| 0.0), 0);
        for _ in 0..10 {
            assert_eq!(edf.pick_and_add(|_| 1.0), 1);
        }
    }
}
