"""Rate limiters: TokenBucket, Gcra, SlidingWindowLimiter and SlidingLogLimiter.

Time is driven by a ManualClock in whole nanoseconds, so each limiter can be
compared decision for decision with a small pure-Python reference.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc_fast import Gcra, ManualClock, SlidingLogLimiter, SlidingWindowLimiter, TokenBucket

SECOND = 1_000_000_000
PROPERTY = settings(max_examples=60, deadline=None)

Limiter = TokenBucket | Gcra | SlidingWindowLimiter | SlidingLogLimiter


def advance_ns(clock: ManualClock, nanos: int) -> None:
    # Whole nanoseconds survive the trip through float seconds exactly at these magnitudes.
    clock.advance(nanos / 1e9)


def wait_ns(seconds: float) -> int:
    return round(seconds * 1e9)


def assert_same_wait(seconds: float, ref_nanos: float) -> None:
    if math.isinf(ref_nanos):
        assert seconds == math.inf
    else:
        assert wait_ns(seconds) == ref_nanos


# --- pure-Python references -------------------------------------------------------------------


class RefGcra:
    """GCRA by virtual scheduling, as documented: admit iff max(tat, now) + n*T - now <= burst*T."""

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = math.ceil(1e9 / rate)
        self.burst = burst
        self.tolerance = burst * self.interval
        self.tat = 0

    def try_acquire(self, now: int, n: int) -> bool:
        if n > self.burst:
            return False
        tat = max(self.tat, now) + n * self.interval
        if tat - now > self.tolerance:
            return False
        self.tat = tat
        return True

    def retry_after(self, now: int, n: int) -> float:
        if n > self.burst:
            return math.inf
        return max(0, max(self.tat, now) + n * self.interval - now - self.tolerance)


class RefSlidingWindow:
    """Sliding window counter: previous fixed window weighted by overlap plus the current one."""

    def __init__(self, limit: int, window: int, origin: int) -> None:
        self.limit, self.window, self.origin = limit, window, origin
        self.index, self.previous, self.current = 0, 0, 0

    def counts(self, now: int) -> tuple[int, int, int]:
        index, elapsed = divmod(now - self.origin, self.window)
        if index == self.index:
            return self.previous, self.current, elapsed
        if index == self.index + 1:
            return self.current, 0, elapsed
        return 0, 0, elapsed

    def fits(self, now: int, n: int) -> bool:
        previous, current, elapsed = self.counts(now)
        weighted = previous * (self.window - elapsed) + (current + n) * self.window
        return n <= self.limit and weighted <= self.limit * self.window

    def try_acquire(self, now: int, n: int) -> bool:
        if not self.fits(now, n):
            return False
        previous, current, _ = self.counts(now)
        self.index = (now - self.origin) // self.window
        self.previous, self.current = previous, current + n
        return True

    def retry_after(self, now: int, n: int) -> float:
        """Least wait after which `fits` holds, by bisection (admission only loosens with time)."""
        if n > self.limit:
            return math.inf
        low, high = 0, 2 * self.window
        while low < high:
            mid = (low + high) // 2
            if self.fits(now + mid, n):
                high = mid
            else:
                low = mid + 1
        return low


class RefSlidingLog:
    """Exact sliding log: admissions at t count until t + window."""

    def __init__(self, limit: int, window: int) -> None:
        self.limit, self.window = limit, window
        self.log: list[tuple[int, int]] = []

    def in_window(self, now: int) -> int:
        return sum(n for t, n in self.log if t + self.window > now)

    def try_acquire(self, now: int, n: int) -> bool:
        if self.in_window(now) + n > self.limit:
            return False
        self.log.append((now, n))
        return True


# --- TokenBucket -------------------------------------------------------------------------------


def test_token_bucket_starts_full_drains_and_refills() -> None:
    clock = ManualClock()
    bucket = TokenBucket(10, 4, clock=clock)
    assert bucket.available() == 10.0
    assert bucket.try_acquire(3)
    assert bucket.available() == 7.0
    assert bucket.try_acquire(6.5)
    assert not bucket.try_acquire(1)
    assert bucket.available() == pytest.approx(0.5)
    assert bucket.time_until_available(1) == pytest.approx(0.125)
    clock.advance(0.125)
    assert bucket.try_acquire()
    clock.advance(3600)
    assert bucket.available() == 10.0
    assert bucket.time_until_available(10) == 0.0


def test_token_bucket_initial_level_and_attributes() -> None:
    clock = ManualClock(50.0)
    bucket = TokenBucket(5, 2, initial=0, clock=clock)
    assert (bucket.capacity, bucket.refill_per_second) == (5.0, 2.0)
    assert repr(bucket) == "TokenBucket(capacity=5.0, refill_per_second=2.0)"
    assert bucket.available() == 0.0
    assert not bucket.try_acquire()
    assert bucket.time_until_available() == 0.5
    assert TokenBucket(5, 2, initial=2.5, clock=clock).available() == 2.5


def test_token_bucket_never_grants_more_than_capacity() -> None:
    clock = ManualClock()
    bucket = TokenBucket(3, 1, clock=clock)
    clock.advance(1000)
    assert not bucket.try_acquire(3.5)
    assert bucket.time_until_available(3.5) == math.inf
    assert bucket.available() == 3.0
    assert bucket.try_acquire(3)


def test_token_bucket_on_the_monotonic_clock() -> None:
    slow = TokenBucket(1, 1)
    assert slow.try_acquire()
    assert not slow.try_acquire()
    assert 0.0 < slow.time_until_available() <= 1.0
    fast = TokenBucket(1, 1000, initial=0)
    time.sleep(0.01)
    assert fast.try_acquire()


@PROPERTY
@given(
    capacity=st.floats(0.5, 50),
    rate=st.floats(0.1, 100),
    steps=st.lists(
        st.tuples(st.integers(0, 2 * SECOND), st.floats(0.01, 1.2)), min_size=1, max_size=60
    ),
)
def test_token_bucket_admits_at_most_capacity_plus_rate_times_any_window(
    capacity: float, rate: float, steps: list[tuple[int, float]]
) -> None:
    clock = ManualClock()
    bucket = TokenBucket(capacity, rate, clock=clock)
    now, times, granted = 0, [], []
    for dt, fraction in steps:
        advance_ns(clock, dt)
        now += dt
        n = fraction * capacity
        if bucket.try_acquire(n):
            times.append(now)
            granted.append(n)
    total = [0.0, *accumulate(granted)]
    for i in range(len(times)):
        for j in range(i, len(times)):
            admitted = total[j + 1] - total[i]
            bound = capacity + rate * (times[j] - times[i]) / 1e9
            assert admitted <= bound * (1 + 1e-9) + 1e-9, (i, j, admitted, bound)


@PROPERTY
@given(
    capacity=st.floats(1, 50),
    rate=st.floats(0.1, 100),
    drain=st.floats(0, 1),
    n_fraction=st.floats(0.01, 1),
)
def test_token_bucket_time_until_available_is_exact(
    capacity: float, rate: float, drain: float, n_fraction: float
) -> None:
    clock = ManualClock()
    bucket = TokenBucket(capacity, rate, initial=capacity * (1 - drain), clock=clock)
    n = capacity * n_fraction
    wait = wait_ns(bucket.time_until_available(n))
    if wait > 0:
        advance_ns(clock, wait - 1)
        assert not bucket.try_acquire(n)
        advance_ns(clock, 1)
    assert bucket.try_acquire(n)


# --- Gcra --------------------------------------------------------------------------------------


def test_gcra_admits_a_burst_then_one_per_interval() -> None:
    clock = ManualClock()
    gcra = Gcra(100, 3, clock=clock)
    assert (gcra.rate, gcra.burst, gcra.emission_interval) == (100.0, 3, 0.01)
    assert repr(gcra) == "Gcra(rate=100.0, burst=3)"
    assert [gcra.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert gcra.retry_after() == 0.01
    clock.advance(0.01)
    assert gcra.try_acquire()
    assert not gcra.try_acquire()
    assert not gcra.try_acquire(4)
    assert gcra.retry_after(4) == math.inf


@PROPERTY
@given(
    rate=st.floats(0.5, 1000),
    burst=st.integers(1, 20),
    steps=st.lists(st.tuples(st.integers(0, SECOND), st.integers(1, 22)), min_size=1, max_size=80),
)
def test_gcra_decides_exactly_as_the_reference(
    rate: float, burst: int, steps: list[tuple[int, int]]
) -> None:
    clock = ManualClock()
    gcra, ref = Gcra(rate, burst, clock=clock), RefGcra(rate, burst)
    now, times, granted = 0, [], []
    for dt, n in steps:
        advance_ns(clock, dt)
        now += dt
        assert_same_wait(gcra.retry_after(n), ref.retry_after(now, n))
        decision = gcra.try_acquire(n)
        assert decision == ref.try_acquire(now, n)
        if decision:
            times.append(now)
            granted.append(n)
    total = [0, *accumulate(granted)]
    for i in range(len(times)):
        for j in range(i, len(times)):
            assert total[j + 1] - total[i] <= burst + rate * (times[j] - times[i]) / 1e9 + 1e-9


# --- SlidingWindowLimiter ----------------------------------------------------------------------


def test_sliding_window_weights_the_previous_window_by_its_overlap() -> None:
    clock = ManualClock(3.0)
    limiter = SlidingWindowLimiter(10, 1.0, clock=clock)
    assert (limiter.limit, limiter.window) == (10, 1.0)
    assert repr(limiter) == "SlidingWindowLimiter(limit=10, window=1.0)"
    assert sum(limiter.try_acquire() for _ in range(15)) == 10
    assert limiter.retry_after() == pytest.approx(1.1)
    clock.advance(1.25)
    assert limiter.estimated_count() == 7.5
    assert sum(limiter.try_acquire() for _ in range(5)) == 2
    assert limiter.retry_after() == pytest.approx(0.05)
    assert limiter.retry_after(11) == math.inf
    clock.advance(2.0)
    assert limiter.estimated_count() == 0.0


@PROPERTY
@given(
    limit=st.integers(1, 30),
    window=st.integers(1, 2 * SECOND),
    steps=st.lists(st.tuples(st.integers(0, SECOND), st.integers(1, 8)), min_size=1, max_size=80),
)
def test_sliding_window_decides_exactly_as_the_reference(
    limit: int, window: int, steps: list[tuple[int, int]]
) -> None:
    clock = ManualClock()
    limiter = SlidingWindowLimiter(limit, window / 1e9, clock=clock)
    ref = RefSlidingWindow(limit, window, origin=0)
    now, admitted = 0, []
    for dt, n in steps:
        advance_ns(clock, dt)
        now += dt
        assert_same_wait(limiter.retry_after(n), ref.retry_after(now, n))
        decision = limiter.try_acquire(n)
        assert decision == ref.try_acquire(now, n)
        admitted += [now] * n * decision
    for start in admitted:
        fixed = (start // window) * window
        assert sum(fixed <= t < fixed + window for t in admitted) <= limit
        assert sum(start <= t < start + window for t in admitted) < 2 * limit


# --- SlidingLogLimiter -------------------------------------------------------------------------


def test_sliding_log_expires_each_admission_one_window_later() -> None:
    clock = ManualClock()
    limiter = SlidingLogLimiter(3, 0.1, clock=clock)
    assert repr(limiter) == "SlidingLogLimiter(limit=3, window=0.1)"
    assert limiter.try_acquire(2)
    clock.advance(0.04)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    assert limiter.count() == 3
    assert limiter.retry_after() == pytest.approx(0.06)
    clock.advance(0.06)
    assert limiter.count() == 1
    assert limiter.try_acquire(2)
    assert limiter.retry_after(4) == math.inf


@PROPERTY
@given(
    limit=st.integers(1, 20),
    window=st.integers(1, 2 * SECOND),
    steps=st.lists(
        st.tuples(st.integers(0, SECOND // 2), st.integers(1, 5)), min_size=1, max_size=60
    ),
)
def test_sliding_log_is_exact(limit: int, window: int, steps: list[tuple[int, int]]) -> None:
    clock = ManualClock()
    limiter, ref = SlidingLogLimiter(limit, window / 1e9, clock=clock), RefSlidingLog(limit, window)
    now, admitted = 0, []
    for dt, n in steps:
        advance_ns(clock, dt)
        now += dt
        wait = limiter.retry_after(n)
        decision = limiter.try_acquire(n)
        assert decision == ref.try_acquire(now, n)
        assert decision == (wait == 0.0)
        admitted += [now] * n * decision
    for start in admitted:
        assert sum(start <= t < start + window for t in admitted) <= limit


# --- shared behaviour --------------------------------------------------------------------------

FACTORIES: dict[str, Callable[[ManualClock], Limiter]] = {
    "TokenBucket": lambda clock: TokenBucket(5000, 1, clock=clock),
    "Gcra": lambda clock: Gcra(1, 5000, clock=clock),
    "SlidingWindowLimiter": lambda clock: SlidingWindowLimiter(5000, 1, clock=clock),
    "SlidingLogLimiter": lambda clock: SlidingLogLimiter(5000, 1, clock=clock),
}


@pytest.mark.parametrize("kind", FACTORIES)
def test_threads_hammering_a_frozen_clock_get_exactly_the_capacity(kind: str) -> None:
    limiter = FACTORIES[kind](ManualClock(1.0))
    start = threading.Barrier(4)
    counts = [0] * 4

    def hammer(slot: int) -> None:
        start.wait()
        counts[slot] = sum(limiter.try_acquire() for _ in range(3000))

    threads = [threading.Thread(target=hammer, args=(slot,)) for slot in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 5000
    assert not limiter.try_acquire()


BAD_NUMBERS = [math.nan, math.inf, -math.inf, 0, -1]


@pytest.mark.parametrize("bad", BAD_NUMBERS)
@pytest.mark.parametrize(
    ("argument", "build"),
    [
        ("capacity", lambda bad: TokenBucket(bad, 1)),
        ("refill_per_second", lambda bad: TokenBucket(1, bad)),
        ("rate", lambda bad: Gcra(bad, 1)),
        ("window", lambda bad: SlidingWindowLimiter(1, bad)),
        ("window", lambda bad: SlidingLogLimiter(1, bad)),
    ],
)
def test_bad_float_arguments_raise_value_error_naming_them(
    argument: str, build: Callable[[float], object], bad: float
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        build(bad)


@pytest.mark.parametrize("bad", [0, -1, -(2**40)])
@pytest.mark.parametrize(
    ("argument", "build"),
    [
        ("burst", lambda bad: Gcra(1, bad)),
        ("limit", lambda bad: SlidingWindowLimiter(bad, 1)),
        ("limit", lambda bad: SlidingLogLimiter(bad, 1)),
    ],
)
def test_bad_counts_raise_value_error_naming_them(
    argument: str, build: Callable[[int], object], bad: int
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        build(bad)


@pytest.mark.parametrize(
    ("argument", "build"),
    [
        ("initial", lambda: TokenBucket(1, 1, initial=2)),
        ("initial", lambda: TokenBucket(1, 1, initial=-0.5)),
        ("initial", lambda: TokenBucket(1, 1, initial=math.nan)),
        ("refill_per_second", lambda: TokenBucket(1, 2e9)),
        ("rate", lambda: Gcra(2e9, 1)),
        ("capacity", lambda: TokenBucket(1e12, 1e-3)),
        ("burst", lambda: Gcra(1e-6, 2**40)),
        ("limit", lambda: SlidingWindowLimiter(2**24, 1)),
        ("window", lambda: SlidingWindowLimiter(1, 1e-12)),
    ],
)
def test_out_of_range_arguments_raise_value_error_naming_them(
    argument: str, build: Callable[[], object]
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        build()


@pytest.mark.parametrize("kind", FACTORIES)
@pytest.mark.parametrize("bad", [0, -1])
def test_bad_request_sizes_raise_value_error_naming_n(kind: str, bad: int) -> None:
    limiter = FACTORIES[kind](ManualClock())
    with pytest.raises(ValueError, match=r"^n: "):
        limiter.try_acquire(bad)
    wait = limiter.time_until_available if isinstance(limiter, TokenBucket) else limiter.retry_after
    with pytest.raises(ValueError, match=r"^n: "):
        wait(bad)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_token_bucket_refuses_non_finite_n(bad: float) -> None:
    with pytest.raises(ValueError, match=r"^n: "):
        TokenBucket(1, 1).try_acquire(bad)
