"""Load-balancing pickers: dmsc against pure-Python implementations, in one run.

No PyPI library offers these pickers as a standalone object, so each peer is
the most direct pure-Python version written here (single-threaded: no lock,
where ours are thread-safe):

* "P2C pick (100 hosts)": ``LeastRequest.pick()`` against two random draws
  over a list of active counts.
* "round robin pick (100 hosts)": ``RoundRobin.pick()`` against a counter
  class, and against ``next()`` on ``itertools.cycle`` (C code, not Python: the
  floor any Python-level call pays).
* "WRR pick (100 hosts)": ``WeightedRoundRobin.pick()`` against Envoy's EDF
  with ``heapq`` (float deadlines), and against ``itertools.cycle`` over one
  precomputed period (C code again).
* "EWMA pick (100 hosts)": ``PeakEwma.pick()`` against peak-EWMA P2C that
  decays both estimates to the current time, as Finagle's ``load()`` does.
* "random pick (100 hosts)": ``RandomPicker.pick()`` against ``random.randrange``.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import time
from collections.abc import Callable
from typing import Any

from dmsc_fast import LeastRequest, PeakEwma, RandomPicker, RoundRobin, WeightedRoundRobin

Measure = Callable[..., Any]

HOSTS = 100
WEIGHTS = [1 + (i * 7) % 10 for i in range(HOSTS)]


class PurePythonP2C:
    """Power of two choices over active request counts."""

    __slots__ = ("active", "n", "rand")

    def __init__(self, n: int) -> None:
        self.n = n
        self.active = [0] * n
        self.rand = random.Random(1).random

    def pick(self) -> int:
        a = int(self.rand() * self.n)
        b = int(self.rand() * self.n)
        return b if self.active[b] < self.active[a] else a


class PurePythonRoundRobin:
    """A counter taken modulo the host count."""

    __slots__ = ("n", "next")

    def __init__(self, n: int) -> None:
        self.n = n
        self.next = 0

    def pick(self) -> int:
        host = self.next % self.n
        self.next += 1
        return host


class PurePythonEdf:
    """Envoy's EdfScheduler: pop the earliest (deadline, order), push it back at +1/weight."""

    __slots__ = ("heap", "order", "weights")

    def __init__(self, weights: list[int]) -> None:
        self.weights = weights
        self.heap = [(1.0 / w, i, i) for i, w in enumerate(weights)]
        heapq.heapify(self.heap)
        self.order = len(weights)

    def pick(self) -> int:
        deadline, _, host = self.heap[0]
        heapq.heapreplace(self.heap, (deadline + 1.0 / self.weights[host], self.order, host))
        self.order += 1
        return host


class PurePythonPeakEwma:
    """Peak-EWMA P2C: cost = estimate decayed to now * (active + 1), two distinct hosts."""

    __slots__ = ("active", "decay_ns", "estimate", "n", "rand", "stamp")

    def __init__(self, n: int, decay: float = 10.0, default_rtt: float = 0.03) -> None:
        self.n = n
        self.decay_ns = decay * 1e9
        now = time.monotonic_ns()
        self.estimate = [default_rtt] * n
        self.stamp = [now] * n
        self.active = [0] * n
        self.rand = random.Random(1).random

    def cost(self, host: int, now: int) -> float:
        decayed = self.estimate[host] * math.exp((self.stamp[host] - now) / self.decay_ns)
        return decayed * (self.active[host] + 1)

    def pick(self) -> int:
        a = int(self.rand() * self.n)
        b = int(self.rand() * (self.n - 1))
        if b >= a:
            b += 1
        now = time.monotonic_ns()
        return a if self.cost(a, now) <= self.cost(b, now) else b


def with_load(picker: LeastRequest | PeakEwma | PurePythonP2C | PurePythonPeakEwma) -> None:
    """Every third host has two requests in flight, so comparisons go both ways."""
    for host in range(0, HOSTS, 3):
        for _ in range(2):
            if isinstance(picker, LeastRequest | PeakEwma):
                picker.start(host)
            else:
                picker.active[host] += 1


def test_p2c_dmsc(measure: Measure) -> None:
    lr = LeastRequest(HOSTS, seed=1)
    with_load(lr)
    assert 0 <= measure("P2C pick (100 hosts)", "dmsc", lr.pick) < HOSTS


def test_p2c_pure_python(measure: Measure) -> None:
    p2c = PurePythonP2C(HOSTS)
    with_load(p2c)
    assert 0 <= measure("P2C pick (100 hosts)", "pure-python", p2c.pick) < HOSTS


def test_round_robin_dmsc(measure: Measure) -> None:
    rr = RoundRobin(HOSTS, seed=0)
    assert 0 <= measure("round robin pick (100 hosts)", "dmsc", rr.pick) < HOSTS


def test_round_robin_pure_python(measure: Measure) -> None:
    rr = PurePythonRoundRobin(HOSTS)
    assert 0 <= measure("round robin pick (100 hosts)", "pure-python", rr.pick) < HOSTS


def test_round_robin_itertools_cycle(measure: Measure) -> None:
    cycle = itertools.cycle(range(HOSTS))
    assert 0 <= measure("round robin pick (100 hosts)", "itertools.cycle", next, cycle) < HOSTS


def test_wrr_dmsc(measure: Measure) -> None:
    wrr = WeightedRoundRobin(WEIGHTS, seed=0)
    assert 0 <= measure("WRR pick (100 hosts)", "dmsc", wrr.pick) < HOSTS


def test_wrr_pure_python_edf(measure: Measure) -> None:
    edf = PurePythonEdf(WEIGHTS)
    assert 0 <= measure("WRR pick (100 hosts)", "pure-python heapq EDF", edf.pick) < HOSTS


def test_wrr_itertools_cycle(measure: Measure) -> None:
    edf = PurePythonEdf(WEIGHTS)
    cycle = itertools.cycle([edf.pick() for _ in range(sum(WEIGHTS))])
    assert 0 <= measure("WRR pick (100 hosts)", "itertools.cycle", next, cycle) < HOSTS


def test_ewma_dmsc(measure: Measure) -> None:
    lb = PeakEwma(HOSTS, seed=1)
    for host in range(HOSTS):
        lb.record(host, 0.001 * (host % 20 + 1))
    with_load(lb)
    assert 0 <= measure("EWMA pick (100 hosts)", "dmsc", lb.pick) < HOSTS


def test_ewma_pure_python(measure: Measure) -> None:
    lb = PurePythonPeakEwma(HOSTS)
    lb.estimate = [0.001 * (host % 20 + 1) for host in range(HOSTS)]
    with_load(lb)
    assert 0 <= measure("EWMA pick (100 hosts)", "pure-python", lb.pick) < HOSTS


def test_random_dmsc(measure: Measure) -> None:
    picker = RandomPicker(HOSTS, seed=1)
    assert 0 <= measure("random pick (100 hosts)", "dmsc", picker.pick) < HOSTS


def test_random_stdlib(measure: Measure) -> None:
    rng = random.Random(1)
    assert 0 <= measure("random pick (100 hosts)", "random.randrange", rng.randrange, HOSTS) < HOSTS
