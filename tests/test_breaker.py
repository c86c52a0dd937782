"""CircuitBreaker (resilience4j semantics) and ConcurrencyLimits (Envoy semantics).

The breaker is checked transition by transition, then against a small pure-Python reference
model of the specification for arbitrary sequences of calls, outcomes and clock moves.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmsc_fast import CircuitBreaker, ConcurrencyLimits, ManualClock

SECOND = 1_000_000_000
EVENT_LOG_CAPACITY = 64


def small_breaker(clock: ManualClock, **overrides: Any) -> CircuitBreaker:
    config: dict[str, Any] = {
        "window_size": 4,
        "minimum_number_of_calls": 4,
        "permitted_calls_in_half_open_state": 2,
        "wait_duration_in_open_state": 10.0,
        "slow_call_duration_threshold": 1.0,
    }
    config.update(overrides)
    return CircuitBreaker(clock=clock, **config)


def calls(breaker: CircuitBreaker, outcomes: str, latency: float = 0.0) -> None:
    """Runs one allowed call per character: "s" succeeds, "f" fails."""
    for outcome in outcomes:
        assert breaker.allow()
        breaker.record(outcome == "s", latency)


def open_breaker(clock: ManualClock, **overrides: Any) -> CircuitBreaker:
    breaker = small_breaker(clock, **overrides)
    calls(breaker, "ffff")
    assert breaker.state == "open"
    return breaker


# --- transitions, one by one ---


def test_starts_closed_with_rates_unknown() -> None:
    breaker = CircuitBreaker()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.failure_rate == -1.0
    assert breaker.slow_call_rate == -1.0
    assert breaker.transitions == 0
    assert breaker.events() == []


def test_closed_stays_closed_below_the_minimum_number_of_calls() -> None:
    breaker = small_breaker(ManualClock())
    calls(breaker, "fff")
    assert breaker.state == "closed"
    assert breaker.metrics()["failed_calls"] == 3
    assert breaker.failure_rate == -1.0


def test_closed_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    breaker = small_breaker(ManualClock())
    calls(breaker, "sffs")
    assert breaker.state == "open"
    assert breaker.failure_rate == 0.5
    assert breaker.events() == [("closed", "open")]


def test_closed_stays_closed_below_the_threshold_and_the_window_slides() -> None:
    breaker = small_breaker(ManualClock())
    calls(breaker, "fsss")
    assert breaker.state == "closed"
    assert breaker.failure_rate == 0.25
    calls(breaker, "s")
    assert breaker.failure_rate == 0.0
    assert breaker.metrics()["buffered_calls"] == 4


def test_minimum_calls_are_capped_at_a_count_window() -> None:
    breaker = small_breaker(ManualClock(), window_size=2, minimum_number_of_calls=50)
    calls(breaker, "ff")
    assert breaker.state == "open"


def test_slow_calls_open_the_breaker() -> None:
    breaker = small_breaker(ManualClock(), slow_call_rate_threshold=0.75)
    # A latency equal to the threshold is not slow.
    for latency in (2.0, 1.0, 1.5):
        breaker.record(True, latency)
    assert breaker.state == "closed"
    breaker.record(True, 3.0)
    assert breaker.state == "open"
    metrics = breaker.metrics()
    assert metrics["slow_calls"] == 3
    assert metrics["slow_call_rate"] == 0.75
    assert metrics["failure_rate"] == 0.0


def test_open_refuses_until_the_wait_has_elapsed() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(9.5)
    assert not breaker.allow()
    assert not breaker.allow()
    assert breaker.metrics()["not_permitted_calls"] == 2
    clock.advance(0.5)
    # Lazy: nothing happens until the next allow().
    assert breaker.state == "open"
    assert breaker.allow()
    assert breaker.state == "half_open"
    assert breaker.events() == [("closed", "open"), ("open", "half_open")]


def test_half_open_admits_only_the_permitted_calls() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(10.0)
    assert [breaker.allow() for _ in range(4)] == [True, True, False, False]
    assert breaker.metrics()["not_permitted_calls"] == 2
    breaker.release()
    assert breaker.allow()
    assert not breaker.allow()
    # Releasing more than was taken never raises the permits above the configured number.
    for _ in range(5):
        breaker.release()
    assert [breaker.allow() for _ in range(3)] == [True, True, False]


def test_half_open_closes_when_the_trial_calls_succeed() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(10.0)
    calls(breaker, "s")
    assert breaker.state == "half_open"
    calls(breaker, "s")
    assert breaker.state == "closed"
    # CLOSED starts with a fresh window.
    assert breaker.metrics()["buffered_calls"] == 0
    assert breaker.transitions == 3


def test_half_open_reopens_when_the_trial_calls_fail() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock)
    clock.advance(10.0)
    calls(breaker, "sf")
    assert breaker.state == "open"
    # The wait starts again from the moment it reopened.
    clock.advance(9.0)
    assert not breaker.allow()
    clock.advance(1.0)
    assert breaker.allow()
    assert breaker.events()[-2:] == [("half_open", "open"), ("open", "half_open")]


def test_half_open_decides_after_the_minimum_number_of_calls() -> None:
    clock = ManualClock()
    breaker = small_breaker(clock, minimum_number_of_calls=1, permitted_calls_in_half_open_state=3)
    breaker.transition_to_open()
    clock.advance(10.0)
    calls(breaker, "s")
    assert breaker.state == "closed"


def test_half_open_returns_to_open_after_its_maximum_wait() -> None:
    clock = ManualClock()
    breaker = open_breaker(clock, max_wait_in_half_open_state=5.0)
    clock.advance(10.0)
    assert breaker.allow()
    clock.advance(4.5)
    assert breaker.state == "half_open"
    clock.advance(2.0)
    assert breaker.state == "open"
    # OPEN began at the deadline (1.5 s ago), not when it was noticed.
    clock.advance(8.0)
    assert not breaker.allow()
    clock.advance(0.5)
    assert breaker.allow()
    assert breaker.state == "half_open"


def test_manual_transitions() -> None:
    breaker = small_breaker(ManualClock())
    breaker.transition_to_open()
    assert breaker.state == "open"
    assert not breaker.allow()
    breaker.transition_to_half_open()
    assert breaker.state == "half_open"
    breaker.transition_to_closed()
    assert breaker.state == "closed"
    assert breaker.transitions == 3
    # Re-entering the current state restarts it but is not a transition.
    breaker.transition_to_closed()
    assert breaker.transitions == 3


def test_forced_open_and_disabled_ignore_outcomes() -> None:
    breaker = small_breaker(ManualClock())
    breaker.transition_to_forced_open()
    assert not breaker.allow()
    breaker.record(False)
    assert breaker.metrics()["buffered_calls"] == 0
    assert breaker.metrics()["not_permitted_calls"] == 1
    breaker.transition_to_disabled()
    calls(breaker, "ffffffff")
    assert breaker.state == "disabled"
    assert breaker.metrics()["buffered_calls"] == 0


def test_reset_returns_to_a_fresh_closed_state() -> None:
    breaker = open_breaker(ManualClock())
    breaker.reset()
    assert breaker.state == "closed"
    assert breaker.allow()
    assert breaker.metrics()["buffered_calls"] == 0
    assert breaker.events()[-1] == ("open", "closed")


def test_event_log_keeps_the_latest_transitions() -> None:
    breaker = small_breaker(ManualClock())
    for _ in range(EVENT_LOG_CAPACITY):
        breaker.transition_to_open()
        breaker.transition_to_closed()
    events = breaker.events()
    assert len(events) == EVENT_LOG_CAPACITY
    assert events[-1] == ("open", "closed")
    assert breaker.transitions == 2 * EVENT_LOG_CAPACITY


def test_metrics_snapshot() -> None:
    breaker = small_breaker(ManualClock(), minimum_number_of_calls=2, failure_rate_threshold=0.75)
    breaker.record(False, 2.0)
    breaker.record(True, 0.1)
    breaker.record(True, 0.1)
    assert breaker.metrics() == {
        "state": "closed",
        "failure_rate": 1 / 3,
        "slow_call_rate": 1 / 3,
        "buffered_calls": 3,
        "failed_calls": 1,
        "slow_calls": 1,
        "slow_failed_calls": 1,
        "not_permitted_calls": 0,
        "transitions": 0,
    }


# --- time-based window ---


def test_time_window_expires_whole_seconds() -> None:
    clock = ManualClock()
    breaker = small_breaker(clock, window_type="time", window_size=3, minimum_number_of_calls=3)
    breaker.record(False)
    clock.advance(1.0)
    breaker.record(False)
    clock.advance(2.0)
    # The failure of second 0 left the 3 s window (seconds 1..3) as second 3 began.
    breaker.record(True)
    assert breaker.state == "closed"
    assert breaker.metrics()["buffered_calls"] == 2
    breaker.record(False)
    assert breaker.state == "open"
    assert breaker.failure_rate == 2 / 3


def test_time_window_forgets_everything_after_a_long_pause() -> None:
    clock = ManualClock()
    breaker = small_breaker(clock, window_type="time", window_size=5, minimum_number_of_calls=2)
    breaker.record(True)
    breaker.record(True)
    assert breaker.failure_rate == 0.0
    clock.advance(5.0)
    assert breaker.metrics()["buffered_calls"] == 0
    assert breaker.failure_rate == -1.0


def test_time_window_minimum_calls_are_not_capped_by_its_size() -> None:
    clock = ManualClock()
    breaker = small_breaker(clock, window_type="time", window_size=1, minimum_number_of_calls=3)
    calls(breaker, "ff")
    assert breaker.state == "closed"
    calls(breaker, "f")
    assert breaker.state == "open"


# --- bad input ---


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("failure_rate_threshold", float("nan")),
        ("failure_rate_threshold", 0.0),
        ("failure_rate_threshold", 1.5),
        ("failure_rate_threshold", -0.1),
        ("slow_call_rate_threshold", float("nan")),
        ("slow_call_rate_threshold", 2.0),
        ("slow_call_duration_threshold", -1.0),
        ("slow_call_duration_threshold", float("nan")),
        ("window_size", 0),
        ("window_size", -3),
        ("window_size", 1 << 30),
        ("minimum_number_of_calls", 0),
        ("wait_duration_in_open_state", -0.5),
        ("wait_duration_in_open_state", float("inf")),
        ("permitted_calls_in_half_open_state", 0),
        ("max_wait_in_half_open_state", -1.0),
        ("window_type", "sliding"),
    ],
)
def test_bad_configuration_names_the_argument(argument: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        CircuitBreaker(**{argument: value})


@pytest.mark.parametrize("latency", [-0.001, float("nan"), float("inf")])
def test_bad_latency_is_refused(latency: float) -> None:
    breaker = CircuitBreaker()
    with pytest.raises(ValueError, match=r"^latency"):
        breaker.record(True, latency)
    assert breaker.metrics()["buffered_calls"] == 0


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        CircuitBreaker(0.5)  # type: ignore[call-arg]


# --- the specification as a reference model ---


@dataclass
class Config:
    failure_rate_threshold: float
    slow_call_rate_threshold: float
    slow_call_duration_threshold: float
    window_type: str
    window_size: int
    minimum_number_of_calls: int
    wait_duration_in_open_state: float
    permitted_calls_in_half_open_state: int
    max_wait_in_half_open_state: float


def nanos(seconds: float) -> int:
    return round(seconds * SECOND)


@dataclass
class ReferenceBreaker:
    """The resilience4j state machine, written for clarity rather than speed.

    Windows are plain lists of (time, failed, slow) recomputed on every read.
    """

    config: Config
    now: int = 0
    state: str = "closed"
    events: list[tuple[str, str]] = field(default_factory=list)
    window: list[tuple[int, bool, bool]] = field(default_factory=list)
    window_is_half_open: bool = False
    not_permitted: int = 0
    opened_at: int = 0
    half_open_since: int = 0
    permits: int = 0

    def enter(self, to: str, at: int) -> None:
        if to == "open":
            self.opened_at = at
        else:
            self.window = []
            self.not_permitted = 0
            self.window_is_half_open = to == "half_open"
            if to == "half_open":
                self.half_open_since = at
                self.permits = self.config.permitted_calls_in_half_open_state
        if to != self.state:
            self.events.append((self.state, to))
        self.state = to

    def expire_half_open(self) -> None:
        max_wait = nanos(self.config.max_wait_in_half_open_state)
        if self.state == "half_open" and max_wait > 0:
            deadline = self.half_open_since + max_wait
            if self.now >= deadline:
                self.enter("open", deadline)

    def counted(self) -> tuple[list[tuple[int, bool, bool]], int]:
        c = self.config
        if self.window_is_half_open:
            size = c.permitted_calls_in_half_open_state
            return self.window[-size:], min(c.minimum_number_of_calls, size)
        if c.window_type == "count":
            size = c.window_size
            return self.window[-size:], min(c.minimum_number_of_calls, size)
        second = self.now // SECOND
        recent = [e for e in self.window if e[0] // SECOND > second - c.window_size]
        return recent, c.minimum_number_of_calls

    def rates(self) -> tuple[int, float, float, int]:
        entries, minimum = self.counted()
        total = len(entries)
        failed = sum(1 for e in entries if e[1])
        slow = sum(1 for e in entries if e[2])
        if total == 0 or total < minimum:
            return total, -1.0, -1.0, failed
        return total, failed / total, slow / total, failed

    def allow(self) -> bool:
        self.expire_half_open()
        if self.state in ("closed", "disabled"):
            return True
        if self.state == "open" and self.now - self.opened_at >= nanos(
            self.config.wait_duration_in_open_state
        ):
            self.enter("half_open", self.now)
        if self.state == "half_open" and self.permits > 0:
            self.permits -= 1
            return True
        self.not_permitted += 1
        return False

    def release(self) -> None:
        if self.state == "half_open":
            self.permits = min(self.permits + 1, self.config.permitted_calls_in_half_open_state)

    def record(self, success: bool, latency: float) -> None:
        self.expire_half_open()
        if self.state in ("disabled", "forced_open"):
            return
        slow = nanos(latency) > nanos(self.config.slow_call_duration_threshold)
        self.window.append((self.now, not success, slow))
        _, failure_rate, slow_rate, _ = self.rates()
        if failure_rate < 0:
            return
        exceeded = (
            failure_rate >= self.config.failure_rate_threshold
            or slow_rate >= self.config.slow_call_rate_threshold
        )
        if self.state in ("closed", "half_open") and exceeded:
            self.enter("open", self.now)
        elif self.state == "half_open":
            self.enter("closed", self.now)

    def read_state(self) -> str:
        self.expire_half_open()
        return self.state


configs = st.builds(
    Config,
    failure_rate_threshold=st.sampled_from([0.25, 0.5, 0.75, 1.0]),
    slow_call_rate_threshold=st.sampled_from([0.5, 1.0]),
    slow_call_duration_threshold=st.just(1.0),
    window_type=st.sampled_from(["count", "time"]),
    window_size=st.integers(1, 5),
    minimum_number_of_calls=st.integers(1, 6),
    wait_duration_in_open_state=st.sampled_from([0.0, 1.0, 2.5, 5.0]),
    permitted_calls_in_half_open_state=st.integers(1, 4),
    max_wait_in_half_open_state=st.sampled_from([0.0, 2.0]),
)
allow_op = st.tuples(st.just("allow"))
record_op = st.tuples(st.just("record"), st.booleans(), st.sampled_from([0.0, 0.5, 1.0, 2.5]))
advance_op = st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 3.0, 6.0]))
rare_op = st.tuples(
    st.sampled_from(["release", "transition_to_open", "transition_to_closed", "reset"])
)
# Calls and clock moves dominate, as in real traffic; manual operations stay rare.
operations = st.lists(
    st.one_of(allow_op, allow_op, record_op, record_op, record_op, advance_op, advance_op, rare_op),
    min_size=20,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(config=configs, ops=operations)
def test_transitions_follow_the_specification_for_any_sequence(
    config: Config, ops: list[tuple[Any, ...]]
) -> None:
    clock = ManualClock()
    breaker = CircuitBreaker(clock=clock, **vars(config))
    model = ReferenceBreaker(config)
    for op in ops:
        name = op[0]
        if name == "allow":
            assert breaker.allow() == model.allow(), op
        elif name == "record":
            breaker.record(op[1], op[2])
            model.record(op[1], op[2])
        elif name == "advance":
            clock.advance(op[1])
            model.now += nanos(op[1])
        elif name == "release":
            breaker.release()
            model.release()
        else:
            getattr(breaker, name)()
            model.enter(
                "closed" if name == "reset" else name.removeprefix("transition_to_"), model.now
            )
        assert breaker.state == model.read_state(), op
        total, failure_rate, slow_rate, failed = model.rates()
        metrics = breaker.metrics()
        assert metrics["buffered_calls"] == total
        assert metrics["failed_calls"] == failed
        assert metrics["failure_rate"] == failure_rate
        assert metrics["slow_call_rate"] == slow_rate
        assert metrics["not_permitted_calls"] == model.not_permitted
    assert breaker.events() == model.events[-EVENT_LOG_CAPACITY:]
    assert breaker.transitions == len(model.events)


# --- concurrency limits ---


def test_limits_default_to_envoys() -> None:
    limits = ConcurrencyLimits()
    assert (
        limits.max_connections,
        limits.max_pending_requests,
        limits.max_requests,
        limits.max_retries,
    ) == (1024, 1024, 1024, 3)


def test_each_resource_stops_at_its_maximum() -> None:
    limits = ConcurrencyLimits(
        max_connections=2, max_pending_requests=1, max_requests=3, max_retries=1
    )
    assert [limits.try_acquire_connection() for _ in range(3)] == [True, True, False]
    assert [limits.try_acquire_pending() for _ in range(2)] == [True, False]
    assert [limits.try_acquire_request() for _ in range(4)] == [True, True, True, False]
    assert [limits.try_acquire_retry() for _ in range(3)] == [True, False, False]
    assert (limits.connections, limits.pending_requests, limits.requests, limits.retries) == (
        2,
        1,
        3,
        1,
    )
    limits.release_request()
    assert limits.requests == 2
    assert limits.try_acquire_request()


def test_stats_use_envoys_names() -> None:
    limits = ConcurrencyLimits(
        max_connections=1, max_pending_requests=0, max_requests=1, max_retries=0
    )
    assert limits.try_acquire_connection()
    assert not limits.try_acquire_connection()
    assert not limits.try_acquire_pending()
    assert limits.try_acquire_request()
    assert not limits.try_acquire_request()
    assert not limits.try_acquire_retry()
    stats = limits.stats()
    assert stats["upstream_cx_overflow"] == 1
    # Envoy counts both pending and request overflows as upstream_rq_pending_overflow.
    assert stats["upstream_rq_pending_overflow"] == 2
    assert (stats["pending_overflow"], stats["rq_overflow"]) == (1, 1)
    assert stats["upstream_rq_retry_overflow"] == 1
    assert (stats["cx_active"], stats["remaining_cx"], stats["cx_open"]) == (1, 0, 1)
    assert (stats["rq_active"], stats["remaining_rq"], stats["rq_open"]) == (1, 0, 1)
    assert stats["remaining_pending"] == 0


@pytest.mark.parametrize("resource", ["connection", "pending", "request", "retry"])
def test_release_without_acquire_raises_and_never_goes_negative(resource: str) -> None:
    limits = ConcurrencyLimits()
    release = getattr(limits, f"release_{resource}")
    with pytest.raises(RuntimeError, match="not held"):
        release()
    assert getattr(limits, f"try_acquire_{resource}")()
    release()
    with pytest.raises(RuntimeError):
        release()
    assert limits.stats()["cx_active"] == 0
    assert (limits.connections, limits.pending_requests, limits.requests, limits.retries) == (
        0,
        0,
        0,
        0,
    )


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_connections", 0),
        ("max_requests", 0),
        ("max_connections", -1),
        ("max_pending_requests", -1),
        ("max_retries", -2),
    ],
)
def test_bad_limits_name_the_argument(argument: str, value: int) -> None:
    with pytest.raises(ValueError, match=f"^{argument}"):
        ConcurrencyLimits(**{argument: value})


def test_zero_pending_and_retries_mean_none_allowed() -> None:
    limits = ConcurrencyLimits(max_pending_requests=0, max_retries=0)
    assert not limits.try_acquire_pending()
    assert not limits.try_acquire_retry()


def test_concurrent_acquires_never_exceed_the_maximum() -> None:
    limits = ConcurrencyLimits(max_requests=3)
    attempts_per_thread = 5_000
    threads_count = 6
    peak = 0
    admitted = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal peak, admitted
        local_peak = local_admitted = 0
        for _ in range(attempts_per_thread):
            if limits.try_acquire_request():
                local_admitted += 1
                local_peak = max(local_peak, limits.requests)
                limits.release_request()
        with guard:
            peak = max(peak, local_peak)
            admitted += local_admitted

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= peak <= 3
    assert limits.requests == 0
    assert admitted + limits.stats()["rq_overflow"] == attempts_per_thread * threads_count


def test_concurrent_releases_never_go_negative() -> None:
    limits = ConcurrencyLimits(max_retries=5)
    for _ in range(5):
        assert limits.try_acquire_retry()
    released = 0
    guard = threading.Lock()

    def worker() -> None:
        nonlocal released
        mine = 0
        for _ in range(100):
            try:
                limits.release_retry()
                mine += 1
            except RuntimeError:
                pass
        with guard:
            released += mine

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert released == 5
    assert limits.retries == 0
