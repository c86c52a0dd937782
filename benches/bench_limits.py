"""Rate limiters: dmsc against limits, aiolimiter and a pure-Python GCRA, in one run.

What is compared, operation by operation (all on the real monotonic clock,
all configured so that the measured calls are admitted unless noted):

* "token bucket acquire": ``TokenBucket.try_acquire()`` against aiolimiter's
  ``AsyncLimiter.has_capacity()``. limits has no token bucket; aiolimiter is a
  leaky bucket whose only synchronous method checks capacity without taking
  it, so the peer does strictly less work per call.
* "gcra acquire": ``Gcra.try_acquire()`` against a minimal pure-Python GCRA
  (same arithmetic, no lock, so not thread-safe as ours is).
* "sliding window hit": ``SlidingWindowLimiter.try_acquire()`` against limits'
  ``SlidingWindowCounterRateLimiter`` (the same algorithm) and
  ``FixedWindowRateLimiter``, both on ``MemoryStorage``.
* "sliding log hit": the exact ``SlidingLogLimiter`` against limits'
  ``MovingWindowRateLimiter`` (also an exact log), at 1000 per second: after
  the first thousand calls of each second both refuse, so this measures the
  steady state of an overloaded limiter.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiolimiter import AsyncLimiter
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)

from dmsc_fast import Gcra, SlidingLogLimiter, SlidingWindowLimiter, TokenBucket

Measure = Callable[..., Any]

# Large enough that no benchmark run reaches them: the admitting path is measured.
HUGE_RATE = 1e9
HUGE_LIMIT = 10_000_000


class PurePythonGcra:
    """The smallest honest GCRA in Python: one theoretical arrival time in integer nanoseconds."""

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = math.ceil(1e9 / rate)
        self.tolerance = burst * self.interval
        self.tat = 0

    def try_acquire(self, n: int = 1) -> bool:
        now = time.monotonic_ns()
        tat = max(self.tat, now) + n * self.interval
        if tat - now > self.tolerance:
            return False
        self.tat = tat
        return True


@pytest.fixture
def aiolimiter_bucket() -> Iterator[AsyncLimiter]:
    limiter = AsyncLimiter(HUGE_RATE, 1.0)
    loop = asyncio.new_event_loop()
    # has_capacity() asks for the running loop's clock; give it one without running it.
    limiter._event_loop = loop
    yield limiter
    loop.close()


def test_token_bucket_dmsc(measure: Measure) -> None:
    bucket = TokenBucket(HUGE_RATE, HUGE_RATE)
    assert measure("token bucket acquire", "dmsc", bucket.try_acquire) is True


def test_token_bucket_aiolimiter(measure: Measure, aiolimiter_bucket: AsyncLimiter) -> None:
    assert measure("token bucket acquire", "aiolimiter", aiolimiter_bucket.has_capacity) is True


def test_gcra_dmsc(measure: Measure) -> None:
    gcra = Gcra(HUGE_RATE, HUGE_LIMIT)
    assert measure("gcra acquire", "dmsc", gcra.try_acquire) is True


def test_gcra_pure_python(measure: Measure) -> None:
    gcra = PurePythonGcra(HUGE_RATE, HUGE_LIMIT)
    assert measure("gcra acquire", "pure-python", gcra.try_acquire) is True


def test_sliding_window_dmsc(measure: Measure) -> None:
    limiter = SlidingWindowLimiter(HUGE_LIMIT, 1.0)
    assert measure("sliding window hit", "dmsc", limiter.try_acquire) is True


@pytest.mark.parametrize(
    ("impl", "strategy"),
    [
        ("limits", SlidingWindowCounterRateLimiter),
        ("limits-fixed-window", FixedWindowRateLimiter),
    ],
)
def test_sliding_window_limits(measure: Measure, impl: str, strategy: type[Any]) -> None:
    limiter = strategy(MemoryStorage())
    item = RateLimitItemPerSecond(HUGE_LIMIT)
    assert measure("sliding window hit", impl, limiter.hit, item) is True


def test_sliding_log_dmsc(measure: Measure) -> None:
    limiter = SlidingLogLimiter(1000, 1.0)
    measure("sliding log hit", "dmsc", limiter.try_acquire)
    assert limiter.count() == 1000


def test_sliding_log_limits(measure: Measure) -> None:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item = RateLimitItemPerSecond(1000)
    measure("sliding log hit", "limits", limiter.hit, item)
    assert limiter.get_window_stats(item).remaining == 0
