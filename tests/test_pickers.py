"""Load-balancing pickers: RoundRobin, WeightedRoundRobin, RandomPicker, LeastRequest, PeakEwma.

Deterministic pickers are checked pick for pick (round robin cycles, EDF
windows), randomised ones by their distributions with seeds fixed, and every
picker for range, accounting and thread safety.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc_fast import (
    LeastRequest,
    ManualClock,
    PeakEwma,
    RandomPicker,
    RoundRobin,
    WeightedRoundRobin,
)

PROPERTY = settings(max_examples=60, deadline=None)

Picker = RoundRobin | WeightedRoundRobin | RandomPicker | LeastRequest | PeakEwma


def picks(picker: Picker, count: int) -> list[int]:
    return [picker.pick() for _ in range(count)]


def reference_edf(weights: list[int], count: int) -> list[int]:
    """Envoy's EdfScheduler from empty, in exact fractions: deadline + 1/w, ties by insertion."""
    from fractions import Fraction
    from heapq import heappop, heappush

    heap = [(Fraction(1, w), i, i) for i, w in enumerate(weights)]
    heap.sort()
    order = len(weights)
    out = []
    for _ in range(count):
        deadline, _, host = heappop(heap)
        heappush(heap, (deadline + Fraction(1, weights[host]), order, host))
        order += 1
        out.append(host)
    return out


# --- round robin ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "seed"), [(1, 0), (3, 4), (5, 0), (7, 2**64 + 3)])
def test_round_robin_is_an_exact_cycle_from_the_seeded_start(n: int, seed: int) -> None:
    rr = RoundRobin(n, seed=seed)
    start = seed % 2**64 % n
    assert picks(rr, 3 * n + 1) == [(start + i) % n for i in range(3 * n + 1)]
    assert len(rr) == n


def test_round_robin_without_seed_still_cycles() -> None:
    rr = RoundRobin(4)
    seq = picks(rr, 12)
    assert all(b == (a + 1) % 4 for a, b in itertools.pairwise(seq))


# --- weighted round robin ------------------------------------------------------------------


def test_wrr_matches_envoys_edf_from_empty() -> None:
    weights = [3, 7, 1, 4, 4]
    assert picks(WeightedRoundRobin(weights, seed=0), 95) == reference_edf(weights, 95)


def test_wrr_grpc_proposal_example() -> None:
    # gRPC A31, describing Envoy's EDF: a=2, b=4 gives "bab" repeated.
    assert picks(WeightedRoundRobin([2, 4], seed=0), 6) == [1, 0, 1, 1, 0, 1]


@pytest.mark.parametrize("seed", [0, 1, 17, 2**40 + 5, -3])
def test_wrr_gives_each_host_exactly_its_weight_per_period(seed: int) -> None:
    weights = [5, 1, 3, 3, 8, 2]
    wrr = WeightedRoundRobin(weights, seed=seed)
    for _ in range(3):
        counts = Counter(picks(wrr, sum(weights)))
        assert [counts[h] for h in range(len(weights))] == weights


def test_wrr_seed_shifts_the_same_schedule() -> None:
    weights = [2, 9, 4]
    full = picks(WeightedRoundRobin(weights, seed=0), 60)
    assert picks(WeightedRoundRobin(weights, seed=11), 49) == full[11:]


def test_wrr_large_weights_stay_exact() -> None:
    # A period above 65536 is scheduled with the EDF heap instead of a table.
    weights = [40_000, 30_000, 7]
    counts = Counter(picks(WeightedRoundRobin(weights, seed=5), sum(weights)))
    assert [counts[h] for h in range(3)] == weights


def test_wrr_equal_weights_are_round_robin() -> None:
    assert picks(WeightedRoundRobin([5, 5, 5], seed=4), 5) == [1, 2, 0, 1, 2]


def test_wrr_reports_its_weights() -> None:
    wrr = WeightedRoundRobin((w for w in [1, 2, 3]), seed=0)
    assert wrr.weights == [1, 2, 3]
    assert len(wrr) == 3


@PROPERTY
@given(
    weights=st.lists(st.integers(1, 60), min_size=1, max_size=25),
    seed=st.integers(0, 2**64 - 1),
    skip=st.integers(0, 200),
)
def test_wrr_any_window_of_total_weight_is_exact(weights: list[int], seed: int, skip: int) -> None:
    wrr = WeightedRoundRobin(weights, seed=seed)
    picks(wrr, skip)
    counts = Counter(picks(wrr, sum(weights)))
    assert [counts[h] for h in range(len(weights))] == weights


# --- random --------------------------------------------------------------------------------


def test_random_same_seed_same_picks_and_in_range() -> None:
    a, b = RandomPicker(50, seed=3), RandomPicker(50, seed=3)
    seq = picks(a, 2000)
    assert seq == picks(b, 2000)
    assert set(seq) <= set(range(50))
    assert len(set(seq)) == 50


def test_random_weighted_follows_weights() -> None:
    picker = RandomPicker(3, seed=8, weights=[1, 3, 6])
    counts = Counter(picks(picker, 50_000))
    # Expected 5000 / 15000 / 30000; 800 is over 6 standard deviations.
    for host, expected in enumerate([5_000, 15_000, 30_000]):
        assert abs(counts[host] - expected) < 800, counts


# --- least request -------------------------------------------------------------------------


def test_p2c_favours_less_loaded_hosts() -> None:
    lr = LeastRequest(4, seed=1)
    for _ in range(10):
        lr.start(0)
    counts = Counter(picks(lr, 40_000))
    # Host 0 is chosen only when both draws are host 0: 1/16 of picks.
    assert abs(counts[0] - 2_500) < 400, counts
    assert all(counts[h] > 11_000 for h in (1, 2, 3)), counts
    assert not lr.weighted


def test_more_choices_avoid_load_more() -> None:
    shares = []
    for choices in (1, 2, 4):
        lr = LeastRequest(4, choice_count=choices, seed=2)
        lr.start(0)
        shares.append(Counter(picks(lr, 20_000))[0] / 20_000)
    # 1/4, 1/16, 1/256 in expectation.
    assert shares[0] > 0.22 > shares[1] > 0.04 > shares[2]


def test_pick_and_start_keeps_hosts_balanced() -> None:
    lr = LeastRequest(5, seed=4)
    for _ in range(5_000):
        lr.pick_and_start()
    loads = [lr.active(h) for h in range(5)]
    assert sum(loads) == 5_000
    assert max(loads) - min(loads) <= 10, loads


def test_pick_does_not_count_requests() -> None:
    lr = LeastRequest(3, seed=0)
    picks(lr, 10)
    assert [lr.active(h) for h in range(3)] == [0, 0, 0]


def test_weighted_least_request_without_load_is_weighted_round_robin() -> None:
    lr = LeastRequest(3, weights=[1, 2, 5], seed=3)
    assert lr.weighted
    counts = Counter(picks(lr, 800))
    assert [counts[h] for h in range(3)] == [100, 200, 500]


def test_weighted_least_request_divides_weight_by_load() -> None:
    lr = LeastRequest(2, weights=[1, 2], seed=4)
    lr.start(1)
    lr.start(1)
    # Effective weights 1/1 and 2/3: shares 60% and 40%.
    counts = Counter(picks(lr, 3_000))
    assert abs(counts[0] - 1_800) < 10, counts


def test_weighted_least_request_bias_scales_the_load() -> None:
    shares = {}
    for bias in (0.0, 1.0, 2.0):
        lr = LeastRequest(2, weights=[1, 3], active_request_bias=bias, seed=6)
        lr.start(1)
        shares[bias] = Counter(picks(lr, 4_000))[1] / 4_000
    # Host 1's effective weight: 3, 3/2, 3/4 against host 0's 1.
    assert shares[0.0] == pytest.approx(3 / 4, abs=0.01)
    assert shares[1.0] == pytest.approx(3 / 5, abs=0.01)
    assert shares[2.0] == pytest.approx(3 / 7, abs=0.01)


def test_equal_weights_use_power_of_two_choices() -> None:
    assert not LeastRequest(3, weights=[4, 4, 4]).weighted


@PROPERTY
@given(
    n=st.integers(1, 6),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=80),
)
def test_start_finish_never_goes_negative(n: int, ops: list[tuple[bool, int]]) -> None:
    for picker in (LeastRequest(n, seed=0), PeakEwma(n, seed=0)):
        model = [0] * n
        for is_start, host in ops:
            host %= n
            if is_start:
                model[host] += 1
                assert picker.start(host) == model[host]
            else:
                assert picker.finish(host) == (model[host] > 0)
                model[host] = max(0, model[host] - 1)
            assert picker.active(host) == model[host]
        assert [picker.active(h) for h in range(n)] == model


# --- peak EWMA -----------------------------------------------------------------------------


def run_fast_failure(failure_penalty: float, rounds: int = 3000) -> float:
    """Host 0 fails in 1 ms, host 1 succeeds in 20 ms; host 0's share of the last half."""
    clock = ManualClock()
    lb = PeakEwma(2, failure_penalty=failure_penalty, clock=clock, seed=12)
    to_zero = 0
    for i in range(rounds):
        host = lb.pick_and_start()
        latency = 0.001 if host == 0 else 0.020
        clock.advance(latency)
        lb.finish(host, latency, success=host != 0)
        if i >= rounds // 2 and host == 0:
            to_zero += 1
    return to_zero / (rounds - rounds // 2)


def test_peak_ewma_avoids_a_fast_failing_host() -> None:
    assert run_fast_failure(failure_penalty=2.0) < 0.02


def test_plain_latency_ewma_is_drawn_to_a_fast_failing_host() -> None:
    # failure_penalty=0 records failures like successes, as Linkerd does.
    assert run_fast_failure(failure_penalty=0.0) > 0.9


def test_peak_ewma_peak_replaces_and_idle_estimate_decays() -> None:
    clock = ManualClock()
    lb = PeakEwma(1, decay=10.0, clock=clock)
    assert lb.estimate(0) == pytest.approx(0.03)
    lb.record(0, 0.5)
    assert lb.estimate(0) == pytest.approx(0.5)
    clock.advance(10.0)
    assert lb.estimate(0) == pytest.approx(0.5 / 2.718281828459045)


def test_peak_ewma_lower_sample_pulls_estimate_by_elapsed_time() -> None:
    clock = ManualClock()
    lb = PeakEwma(1, decay=10.0, clock=clock)
    lb.record(0, 0.4)
    clock.advance(10.0)
    current = lb.estimate(0)
    lb.record(0, 0.01)
    weight = 1 / 2.718281828459045
    assert lb.estimate(0) == pytest.approx(current * weight + 0.01 * (1 - weight))


def test_peak_ewma_failure_counts_as_penalised_slowest_success() -> None:
    clock = ManualClock()
    lb = PeakEwma(2, failure_penalty=3.0, clock=clock)
    lb.record(1, 0.2)
    lb.record(0, 0.001, success=False)
    assert lb.estimate(0) == pytest.approx(0.6)


def test_peak_ewma_cost_counts_active_requests() -> None:
    clock = ManualClock()
    lb = PeakEwma(2, clock=clock, seed=1)
    lb.start(0)
    lb.start(0)
    assert lb.cost(0) == pytest.approx(0.09)
    assert set(picks(lb, 200)) == {1}
    assert lb.finish(0) is True
    assert lb.active(0) == 1


def test_peak_ewma_prefers_the_faster_host() -> None:
    clock = ManualClock()
    lb = PeakEwma(3, clock=clock, seed=2)
    for host, latency in enumerate([0.05, 0.01, 0.05]):
        lb.record(host, latency)
    # Host 1 wins every pair it is drawn in: 2 of the 3 possible pairs.
    share = Counter(picks(lb, 6_000))[1] / 6_000
    assert share == pytest.approx(2 / 3, abs=0.03)


def test_peak_ewma_bad_latency_changes_nothing() -> None:
    lb = PeakEwma(2, clock=ManualClock())
    lb.start(0)
    with pytest.raises(ValueError, match=r"^latency"):
        lb.finish(0, float("nan"))
    assert lb.active(0) == 1


# --- every picker --------------------------------------------------------------------------

FACTORIES: list[Callable[[int, int], Picker]] = [
    lambda n, seed: RoundRobin(n, seed=seed),
    lambda n, seed: WeightedRoundRobin([1 + (i * 7 + seed) % 5 for i in range(n)], seed=seed),
    lambda n, seed: RandomPicker(n, seed=seed),
    lambda n, seed: RandomPicker(n, seed=seed, weights=[1 + i % 3 for i in range(n)]),
    lambda n, seed: LeastRequest(n, seed=seed),
    lambda n, seed: LeastRequest(n, weights=[1 + i % 4 for i in range(n)], seed=seed),
    lambda n, seed: PeakEwma(n, seed=seed),
]


@PROPERTY
@given(
    factory=st.sampled_from(FACTORIES),
    n=st.integers(1, 40),
    seed=st.integers(0, 2**32),
    starts=st.lists(st.integers(0, 39), max_size=20),
)
def test_picks_are_always_in_range(
    factory: Callable[[int, int], Picker], n: int, seed: int, starts: list[int]
) -> None:
    picker = factory(n, seed)
    if isinstance(picker, LeastRequest | PeakEwma):
        for host in starts:
            picker.start(host % n)
    assert len(picker) == n
    assert all(0 <= h < n for h in picks(picker, 100))


@contextmanager
def fast_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def run_threads(work: Callable[[int], None], threads: int = 4) -> None:
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    pool = [threading.Thread(target=guarded, args=(i,)) for i in range(threads)]
    with fast_thread_switching():
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert not errors, errors


@pytest.mark.parametrize("make", [lambda: LeastRequest(8, seed=1), lambda: PeakEwma(8, seed=1)])
def test_concurrent_start_finish_accounting_is_consistent(
    make: Callable[[], LeastRequest | PeakEwma],
) -> None:
    picker = make()
    per_thread = 3_000
    picked = [Counter[int]() for _ in range(4)]

    def work(index: int) -> None:
        held: list[int] = []
        for i in range(per_thread):
            host = picker.pick_and_start()
            picked[index][host] += 1
            held.append(host)
            if i % 3 == 2:
                for h in held:
                    assert picker.finish(h)
                held.clear()
        for h in held:
            assert picker.finish(h)

    run_threads(work)
    assert sum(sum(c.values()) for c in picked) == 4 * per_thread
    assert [picker.active(h) for h in range(8)] == [0] * 8


def test_concurrent_round_robin_and_wrr_picks_share_one_schedule() -> None:
    weights = [1, 2, 3, 4]
    pickers: list[RoundRobin | WeightedRoundRobin] = [
        RoundRobin(4, seed=2),
        WeightedRoundRobin(weights, seed=7),
    ]
    for picker in pickers:
        counts = [Counter[int]() for _ in range(4)]

        def work(
            index: int,
            picker: RoundRobin | WeightedRoundRobin = picker,
            counts: list[Counter[int]] = counts,
        ) -> None:
            for _ in range(1_000):
                counts[index][picker.pick()] += 1

        run_threads(work)
        total = sum(counts, Counter[int]())
        # 4000 picks: whole periods of both schedules, each position taken once.
        expected = [1_000] * 4 if isinstance(picker, RoundRobin) else [400, 800, 1_200, 1_600]
        assert [total[h] for h in range(4)] == expected


# --- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "argument"),
    [
        (lambda: RoundRobin(0), "n"),
        (lambda: RoundRobin(-2), "n"),
        (lambda: WeightedRoundRobin([]), "weights"),
        (lambda: WeightedRoundRobin([1, 0]), "weights"),
        (lambda: WeightedRoundRobin([3, -1]), "weights"),
        (lambda: WeightedRoundRobin([2**32]), "weights"),
        (lambda: WeightedRoundRobin([1.5]), "weights"),  # type: ignore[list-item]
        (lambda: RandomPicker(0), "n"),
        (lambda: RandomPicker(2, weights=[1]), "weights"),
        (lambda: RandomPicker(2, weights=[1, 0]), "weights"),
        (lambda: LeastRequest(0), "n"),
        (lambda: LeastRequest(2, choice_count=0), "choice_count"),
        (lambda: LeastRequest(2, choice_count=-1), "choice_count"),
        (lambda: LeastRequest(2, weights=[1, 2, 3]), "weights"),
        (lambda: LeastRequest(2, weights=[0, 2]), "weights"),
        (lambda: LeastRequest(2, active_request_bias=float("nan")), "active_request_bias"),
        (lambda: LeastRequest(2, active_request_bias=-0.5), "active_request_bias"),
        (lambda: PeakEwma(0), "n"),
        (lambda: PeakEwma(2, decay=float("nan")), "decay"),
        (lambda: PeakEwma(2, decay=-1.0), "decay"),
        (lambda: PeakEwma(2, decay=0.0), "decay"),
        (lambda: PeakEwma(2, default_rtt=0.0), "default_rtt"),
        (lambda: PeakEwma(2, failure_penalty=-1.0), "failure_penalty"),
        (lambda: PeakEwma(2, failure_penalty=float("inf")), "failure_penalty"),
        (lambda: PeakEwma(2).record(0, -0.1), "latency"),
        (lambda: PeakEwma(2).record(0, float("inf")), "latency"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(
    make: Callable[[], object], argument: str
) -> None:
    with pytest.raises(ValueError, match=f"^{argument}:"):
        make()


@pytest.mark.parametrize(
    "call",
    [
        lambda: LeastRequest(3).start(3),
        lambda: LeastRequest(3).finish(-1),
        lambda: LeastRequest(3).active(10),
        lambda: PeakEwma(3).start(3),
        lambda: PeakEwma(3).finish(3, 0.1),
        lambda: PeakEwma(3).record(-1, 0.1),
        lambda: PeakEwma(3).estimate(3),
        lambda: PeakEwma(3).cost(3),
        lambda: PeakEwma(3).active(3),
    ],
)
def test_out_of_range_host_raises_index_error(call: Callable[[], object]) -> None:
    with pytest.raises(IndexError, match=r"^host: index"):
        call()
