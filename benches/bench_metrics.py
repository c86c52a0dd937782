"""Metrics: dmsc against prometheus_client, operation by operation, in one run.

* "counter inc": ``Counter.inc()``.
* "counter labels().inc": ``family.labels("GET", "200").inc()`` on an existing
  child (both sides through the same small Python function).
* "histogram observe": ``Histogram.observe(0.042)``; prometheus_client with
  its default 15 buckets (0.042 lands mid-way), dmsc with its default 4,059
  log-linear buckets (0.39% relative error on percentiles).
* "histogram observe (lognormal values)": the same, cycling through 1,024
  latency-like values; the ``next()`` on the cycle and the lambda are part of
  both measurements.
* "gauge set": ``Gauge.set(x)``.

prometheus_client metrics are made with ``registry=None`` so nothing global
is touched; both sides are thread-safe (prometheus_client takes a lock).
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import cycle
from typing import Any

import numpy as np
import prometheus_client

from dmsc_fast import Counter, CounterFamily, Gauge, Histogram

Measure = Callable[..., Any]


LATENCIES = np.random.default_rng(0).lognormal(mean=-4.0, sigma=1.0, size=1024).tolist()


def test_counter_inc_dmsc(measure: Measure) -> None:
    counter = Counter("requests_total", "Requests.")
    measure("counter inc", "dmsc", counter.inc)
    assert counter.value > 0


def test_counter_inc_prometheus_client(measure: Measure) -> None:
    counter = prometheus_client.Counter("requests", "Requests.", registry=None)
    measure("counter inc", "prometheus_client", counter.inc)
    assert counter._value.get() > 0


def test_counter_labels_inc_dmsc(measure: Measure) -> None:
    family = CounterFamily("responses", "Responses.", ["method", "code"])

    def labels_inc() -> None:
        family.labels("GET", "200").inc()

    measure("counter labels().inc", "dmsc", labels_inc)
    assert family.labels("GET", "200").value > 0


def test_counter_labels_inc_prometheus_client(measure: Measure) -> None:
    family = prometheus_client.Counter("responses", "Responses.", ["method", "code"], registry=None)

    def labels_inc() -> None:
        family.labels("GET", "200").inc()

    measure("counter labels().inc", "prometheus_client", labels_inc)
    assert family.labels("GET", "200")._value.get() > 0


def test_histogram_observe_dmsc(measure: Measure) -> None:
    histogram = Histogram()
    measure("histogram observe", "dmsc", histogram.observe, 0.042)
    assert histogram.count > 0


def test_histogram_observe_prometheus_client(measure: Measure) -> None:
    histogram = prometheus_client.Histogram("latency_seconds", "Latency.", registry=None)
    measure("histogram observe", "prometheus_client", histogram.observe, 0.042)
    assert histogram._sum.get() > 0


def test_histogram_observe_lognormal_dmsc(measure: Measure) -> None:
    histogram = Histogram()
    values = cycle(LATENCIES)
    operation = "histogram observe (lognormal values)"
    measure(operation, "dmsc", lambda: histogram.observe(next(values)))
    assert histogram.count > 0


def test_histogram_observe_lognormal_prometheus_client(measure: Measure) -> None:
    histogram = prometheus_client.Histogram("latency_seconds", "Latency.", registry=None)
    values = cycle(LATENCIES)
    operation = "histogram observe (lognormal values)"
    measure(operation, "prometheus_client", lambda: histogram.observe(next(values)))
    assert histogram._sum.get() > 0


def test_gauge_set_dmsc(measure: Measure) -> None:
    gauge = Gauge("in_flight", "In flight.")
    measure("gauge set", "dmsc", gauge.set, 3.5)
    assert gauge.value == 3.5


def test_gauge_set_prometheus_client(measure: Measure) -> None:
    gauge = prometheus_client.Gauge("in_flight", "In flight.", registry=None)
    measure("gauge set", "prometheus_client", gauge.set, 3.5)
    assert gauge._value.get() == 3.5
