"""Circuit breaker and bulkhead limits: dmsc against pybreaker and the standard library.

What is compared, operation by operation (every breaker stays CLOSED throughout):

* "breaker state check": dmsc ``CircuitBreaker.allow()`` (the permission check a proxy makes
  before each call) against reading pybreaker's ``current_state``. pybreaker has no separate
  permission check, so its cheapest per-call look at the breaker is the peer; it does less
  work than ``allow()`` (no permit accounting).
* "breaker state read": dmsc ``.state`` against pybreaker ``current_state`` (same work).
* "breaker call": a guarded call of a no-op function. dmsc: a Python function doing
  ``allow()``, the call and ``record(True)``; pybreaker: ``CircuitBreaker.call(noop)``.
  Both include one Python-level call of the no-op; the dmsc side also pays for its wrapper.
* "breaker record": dmsc ``record(True, latency)`` alone (pybreaker has no such API).
* "bulkhead acquire+release": one ``ConcurrencyLimits`` request slot taken and given back,
  against ``threading.BoundedSemaphore`` ``acquire(blocking=False)`` + ``release()`` (pure
  Python in CPython's threading module), both from a small Python function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from operator import attrgetter
from typing import Any

import pybreaker

from dmsc_fast import CircuitBreaker, ConcurrencyLimits

Measure = Callable[..., Any]


def noop() -> None:
    return None


def test_state_check_dmsc(measure: Measure) -> None:
    breaker = CircuitBreaker()
    assert measure("breaker state check", "dmsc", breaker.allow) is True


def test_state_check_pybreaker(measure: Measure) -> None:
    breaker = pybreaker.CircuitBreaker()
    state = measure("breaker state check", "pybreaker", attrgetter("current_state"), breaker)
    assert state == "closed"


def test_state_read_dmsc(measure: Measure) -> None:
    breaker = CircuitBreaker()
    assert measure("breaker state read", "dmsc", attrgetter("state"), breaker) == "closed"


def test_state_read_pybreaker(measure: Measure) -> None:
    breaker = pybreaker.CircuitBreaker()
    state = measure("breaker state read", "pybreaker", attrgetter("current_state"), breaker)
    assert state == "closed"


def test_call_dmsc(measure: Measure) -> None:
    breaker = CircuitBreaker()
    allow, record = breaker.allow, breaker.record

    def guarded_call() -> None:
        if allow():
            noop()
            record(True)

    measure("breaker call", "dmsc", guarded_call)
    assert breaker.state == "closed"
    assert breaker.metrics()["buffered_calls"] == 100


def test_call_pybreaker(measure: Measure) -> None:
    breaker = pybreaker.CircuitBreaker()
    measure("breaker call", "pybreaker", breaker.call, noop)
    assert breaker.current_state == "closed"


def test_record_dmsc(measure: Measure) -> None:
    breaker = CircuitBreaker()
    measure("breaker record", "dmsc", breaker.record, True, 0.001)
    assert breaker.metrics()["buffered_calls"] == 100


def test_bulkhead_dmsc(measure: Measure) -> None:
    limits = ConcurrencyLimits()
    acquire, release = limits.try_acquire_request, limits.release_request

    def acquire_release() -> None:
        if acquire():
            release()

    measure("bulkhead acquire+release", "dmsc", acquire_release)
    assert limits.requests == 0
    assert limits.stats()["rq_overflow"] == 0


def test_bulkhead_bounded_semaphore(measure: Measure) -> None:
    semaphore = threading.BoundedSemaphore(1024)
    acquire, release = semaphore.acquire, semaphore.release

    def acquire_release() -> None:
        if acquire(blocking=False):
            release()

    measure("bulkhead acquire+release", "threading.BoundedSemaphore", acquire_release)
    assert semaphore.acquire(blocking=False)
