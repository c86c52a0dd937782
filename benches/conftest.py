"""Conventions shared by the micro-benchmarks.

Each benchmark is one operation done by one implementation. ``measure`` tags
it so that ``benches/run.py`` can put dmsc and its pure-Python peer side by
side: the group is the operation, ``impl`` is ``"dmsc"`` or the peer's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def measure(benchmark: Any) -> Callable[..., Any]:
    """``measure(operation, impl, fn, *args)`` benchmarks ``fn(*args)`` under those tags."""

    def run(operation: str, impl: str, fn: Callable[..., Any], *args: Any) -> Any:
        benchmark.group = operation
        benchmark.extra_info["impl"] = impl
        return benchmark(fn, *args)

    return run
