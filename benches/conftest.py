"""Conventions shared by the micro-benchmarks.

Each benchmark is one operation done by one implementation. ``measure`` tags
it so that ``benches/run.py`` can put dmsc and its pure-Python peer side by
side: the group is the operation, ``impl`` is ``"dmsc"`` or the peer's name.

Both sides are timed the way ``timeit`` times a statement: a compiled loop of
direct calls, in batches long enough that the timer's own cost vanishes, so
the figure is the cost of the call itself (what a Python caller pays), not of
the harness around it. pytest-benchmark keeps the per-batch samples; the
per-operation time goes in ``extra_info["ns_per_op"]``.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable
from typing import Any

import pytest

ROUNDS = 25
BATCH_SECONDS = 0.002


def _batch_size(timer: timeit.Timer) -> int:
    """Calls per batch so that one batch lasts about BATCH_SECONDS (at least one call)."""
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= BATCH_SECONDS / 10 or number >= 1 << 24:
            return max(1, int(number * BATCH_SECONDS / max(elapsed, 1e-9)))
        number *= 10


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., Any]:
    """``measure(operation, impl, fn, *args, items=1)`` times ``fn(*args)``.

    ``items`` divides the time for batch forms (``get_many`` over 1000 keys reports the
    time per key). Returns what ``fn(*args)`` returns, for the test to check.
    """

    def run(operation: str, impl: str, fn: Callable[..., Any], *args: Any, items: int = 1) -> Any:
        benchmark.group = operation
        benchmark.extra_info["impl"] = impl
        names = [f"arg{i}" for i in range(len(args))]
        timer = timeit.Timer(
            f"fn({', '.join(names)})", globals={"fn": fn, **dict(zip(names, args, strict=True))}
        )
        result = fn(*args)
        number = _batch_size(timer)
        benchmark.pedantic(timer.timeit, kwargs={"number": number}, rounds=ROUNDS, iterations=1)
        median = benchmark.stats.stats.median
        benchmark.extra_info["calls_per_round"] = number
        benchmark.extra_info["ns_per_op"] = median / number / items * 1e9
        return result

    return run
