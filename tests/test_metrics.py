"""Counters, gauges, histograms, labelled families and the Prometheus exposition."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from dmsc_fast import (
    DEFAULT_BUCKETS,
    Counter,
    CounterFamily,
    Gauge,
    GaugeFamily,
    Histogram,
    HistogramFamily,
    Registry,
)

PERCENTILES = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 100.0]


def run_threads(count: int, work: Callable[[], None]) -> None:
    """Runs ``work`` on ``count`` threads that all start together."""
    barrier = threading.Barrier(count)

    def body() -> None:
        barrier.wait()
        work()

    threads = [threading.Thread(target=body) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def exact_percentile(values: np.ndarray, p: float) -> float:
    """The rank definition the histogram implements (documented in Histogram)."""
    return float(np.percentile(values, p, method="inverted_cdf"))


def assert_within(estimate: float, exact: float, bound: float) -> None:
    assert abs(estimate - exact) <= bound * exact, (estimate, exact, bound)


def parse(text: str) -> dict[str, list[Sample]]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


# --- Counter -------------------------------------------------------------------------------


def test_counter_counts_increments() -> None:
    counter = Counter("requests_total", "Requests served.")
    assert counter.value == 0
    counter.inc()
    counter.inc(41)
    counter.inc(0)
    assert counter.value == 42
    assert (counter.name, counter.help) == ("requests_total", "Requests served.")


def test_counter_refuses_to_go_down_and_bad_names() -> None:
    counter = Counter()
    with pytest.raises(ValueError, match=r"^n: "):
        counter.inc(-1)
    assert counter.value == 0
    with pytest.raises(ValueError, match=r"^name: "):
        Counter("not a name")


def test_concurrent_increments_from_python_threads_sum_exactly() -> None:
    counter = Counter()
    # More threads than the core's thread-owned cells, so the shared cell is used too.
    threads, per_thread = 12, 5_000

    def work() -> None:
        for _ in range(per_thread):
            counter.inc()
        counter.inc(3)

    run_threads(threads, work)
    assert counter.value == threads * (per_thread + 3)


# --- Gauge ---------------------------------------------------------------------------------


def test_gauge_arithmetic() -> None:
    gauge = Gauge("in_flight")
    gauge.inc()
    gauge.inc(2.5)
    gauge.dec()
    gauge.dec(0.25)
    assert gauge.value == 2.25
    gauge.set(-7.0)
    assert gauge.value == -7.0
    gauge.set(math.inf)
    assert gauge.value == math.inf


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["set", "inc", "dec"]),
            st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
        ),
        max_size=30,
    )
)
def test_gauge_matches_float_arithmetic(ops: list[tuple[str, float]]) -> None:
    gauge = Gauge()
    expected = 0.0
    for op, x in ops:
        getattr(gauge, op)(x)
        expected = x if op == "set" else expected + x if op == "inc" else expected - x
    assert gauge.value == expected


def test_gauge_refuses_nan_and_keeps_its_value() -> None:
    gauge = Gauge()
    gauge.set(1.5)
    for method in (gauge.set, gauge.inc, gauge.dec):
        with pytest.raises(ValueError, match=r"^x: "):
            method(math.nan)
    assert gauge.value == 1.5


def test_concurrent_gauge_updates_are_not_lost() -> None:
    gauge = Gauge()

    def work() -> None:
        for _ in range(2_000):
            gauge.inc(2.0)
            gauge.dec()

    run_threads(8, work)
    assert gauge.value == 8 * 2_000


# --- Histogram -----------------------------------------------------------------------------


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-6, max_value=3600.0), min_size=1, max_size=300),
    st.lists(st.floats(min_value=0.0, max_value=100.0), min_size=1, max_size=5),
)
def test_percentiles_are_within_one_percent_of_numpy(values: list[float], ps: list[float]) -> None:
    histogram = Histogram()
    for value in values:
        histogram.observe(value)
    data = np.array(values)
    for p in ps:
        exact = exact_percentile(data, p)
        estimate = histogram.percentile(p)
        assert_within(estimate, exact, 0.01)
        assert_within(estimate, exact, histogram.relative_error)
    assert list(histogram.percentiles(ps)) == [histogram.percentile(p) for p in ps]


def test_lognormal_percentiles_of_100k_samples_are_within_one_percent() -> None:
    data = np.random.default_rng(2).lognormal(mean=-4.0, sigma=1.5, size=100_000)
    histogram = Histogram()
    histogram.observe_many(data)
    estimates = histogram.percentiles(np.array(PERCENTILES))
    assert estimates.dtype == np.float64
    for p, estimate in zip(PERCENTILES, estimates, strict=True):
        assert_within(float(estimate), exact_percentile(data, p), 0.01)
    assert histogram.count == 100_000
    assert histogram.sum == pytest.approx(data.sum(), rel=1e-9)


def test_observe_one_by_one_equals_observe_many() -> None:
    data = np.random.default_rng(3).lognormal(mean=0.0, sigma=2.0, size=2_000)
    one, many = Histogram(), Histogram()
    for value in data:
        one.observe(float(value))
    many.observe_many(data.tolist())
    np.testing.assert_array_equal(one.snapshot()[1], many.snapshot()[1])
    assert one.sum == pytest.approx(many.sum, rel=1e-12)


def test_relative_error_is_what_was_asked_or_better() -> None:
    for asked in (0.1, 0.02, 0.005, 0.001):
        assert 0 < Histogram(1e-3, 10.0, asked).relative_error <= asked
    assert Histogram().relative_error == pytest.approx(1 / 257)


def test_snapshot_is_numpy_bucket_bounds_and_counts() -> None:
    histogram = Histogram(1e-3, 10.0, 0.01)
    data = np.random.default_rng(4).uniform(0.0, 12.0, size=5_000)
    histogram.observe_many(data)
    upper, counts = histogram.snapshot()
    assert upper.dtype == np.float64 and counts.dtype == np.uint64
    assert upper.shape == counts.shape
    assert np.all(np.diff(upper) > 0) and upper[-1] == math.inf
    assert int(counts.sum()) == histogram.count == 5_000
    # Buckets are (lower, upper]: each value counts in the first bucket whose bound is >= it.
    expected = np.bincount(np.searchsorted(upper, data, side="left"), minlength=len(upper))
    np.testing.assert_array_equal(counts, expected)


def test_out_of_range_values_are_clamped_and_counted() -> None:
    histogram = Histogram(1e-3, 10.0)
    histogram.observe(0.0)
    histogram.observe(1e-9)
    histogram.observe(1e6)
    assert histogram.count == 3
    _, counts = histogram.snapshot()
    assert counts[0] == 2 and counts[-1] == 1
    assert histogram.percentile(100.0) == 10.0
    assert_within(histogram.percentile(0.0), 1e-3, histogram.relative_error)


def test_empty_histogram_has_nan_percentiles() -> None:
    histogram = Histogram()
    assert math.isnan(histogram.percentile(50.0))
    assert np.isnan(histogram.percentiles([50.0, 99.0])).all()
    assert (histogram.count, histogram.sum) == (0, 0.0)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"min_value": 0.0}, "min_value"),
        ({"min_value": -1.0}, "min_value"),
        ({"min_value": math.nan}, "min_value"),
        ({"max_value": 1e-6}, "max_value"),
        ({"max_value": 1e-7}, "max_value"),
        ({"max_value": math.inf}, "max_value"),
        ({"relative_error": 0.0}, "relative_error"),
        ({"relative_error": 0.2}, "relative_error"),
        ({"relative_error": math.nan}, "relative_error"),
        ({"buckets": [1.0, 0.5]}, "buckets"),
        ({"buckets": [1e9]}, "buckets"),
        ({"name": "bad name"}, "name"),
    ],
)
def test_bad_histogram_arguments_raise_value_error_naming_them(
    kwargs: dict[str, object], argument: str
) -> None:
    with pytest.raises(ValueError, match=rf"^{argument}: "):
        Histogram(**kwargs)  # type: ignore[arg-type]


def test_bad_observations_and_percentiles_raise_value_error() -> None:
    histogram = Histogram()
    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match=r"^x: "):
            histogram.observe(bad)
    with pytest.raises(ValueError, match=r"^values: "):
        histogram.observe_many([1.0, math.nan])
    assert histogram.count == 0
    for p in (-0.5, 100.01, math.nan):
        with pytest.raises(ValueError, match=r"^p: "):
            histogram.percentile(p)
        with pytest.raises(ValueError, match=r"^ps: "):
            histogram.percentiles([50.0, p])


def test_concurrent_observations_are_all_counted() -> None:
    histogram = Histogram()

    def work() -> None:
        for i in range(2_000):
            histogram.observe(0.001 * (i % 7 + 1))

    run_threads(10, work)
    assert histogram.count == 20_000
    per_thread = sum(0.001 * (i % 7 + 1) for i in range(2_000))
    assert histogram.sum == pytest.approx(10 * per_thread, rel=1e-9)


# --- Families ------------------------------------------------------------------------------


def test_labels_return_the_same_child_for_the_same_values() -> None:
    family = CounterFamily("responses", "By method and code.", ["method", "code"])
    ok = family.labels("GET", "200")
    assert family.labels("GET", "200") is ok
    assert family.labels("GET", "500") is not ok
    ok.inc(2)
    family.labels("GET", "200").inc()
    assert ok.value == 3 and family.labels("GET", "500").value == 0
    assert family.label_names == ["method", "code"]


def test_label_value_boundaries_and_order_are_part_of_the_key() -> None:
    family = CounterFamily("pairs", "", ("a", "b"))
    assert family.labels("ab", "c") is not family.labels("a", "bc")
    assert family.labels("x", "y") is not family.labels("y", "x")


def test_many_labels_and_many_children() -> None:
    names = [f"l{i}" for i in range(11)]
    family = GaugeFamily("wide", "", names)
    children = {}
    for k in range(300):
        values = [f"{k}-{i}" for i in range(11)]
        children[k] = family.labels(*values)
        children[k].set(float(k))
    for k in (0, 17, 299):
        child = family.labels(*[f"{k}-{i}" for i in range(11)])
        assert child is children[k] and child.value == k


def test_label_count_mismatches_raise_value_error() -> None:
    family = CounterFamily("responses", "", ["method", "code"])
    with pytest.raises(ValueError, match=r"^values: "):
        family.labels("GET")
    with pytest.raises(ValueError, match=r"^values: "):
        family.labels("GET", "200", "x")
    with pytest.raises(TypeError):
        family.labels(method="GET", code="200")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        family.labels("GET", 200)  # type: ignore[arg-type]


@pytest.mark.parametrize("label_names", [["1bad"], ["__x"], ["a", "a"], ["a-b"]])
def test_bad_label_names_raise_value_error(label_names: list[str]) -> None:
    with pytest.raises(ValueError, match=r"^label_names: "):
        CounterFamily("m", "", label_names)
    with pytest.raises(ValueError, match=r"^label_names: "):
        GaugeFamily("m", "", label_names)


def test_histogram_families_reserve_le_and_share_the_layout() -> None:
    with pytest.raises(ValueError, match=r"^label_names: "):
        HistogramFamily("h", "", ["le"])
    with pytest.raises(TypeError, match="label_names"):
        CounterFamily("h", "", "route")
    family = HistogramFamily("h", "", ["route"], min_value=1e-3, max_value=10.0, buckets=[0.5])
    child = family.labels("/a")
    assert family.labels("/a") is child
    child.observe(0.25)
    assert (child.count, child.min_value, child.max_value) == (1, 1e-3, 10.0)
    assert child.buckets == [0.5]


def test_concurrent_labelled_increments_sum_exactly() -> None:
    family = CounterFamily("hits", "", ["worker"])

    def work() -> None:
        for i in range(3_000):
            family.labels(str(i % 3)).inc()

    run_threads(8, work)
    assert [family.labels(str(k)).value for k in range(3)] == [8_000, 8_000, 8_000]


# --- Exposition ----------------------------------------------------------------------------


def test_exposition_parses_and_round_trips_values() -> None:
    registry = Registry()
    requests = registry.counter("requests_total", "Requests served.")
    requests.inc(7)
    in_flight = registry.gauge("in_flight", "Requests in flight.")
    in_flight.set(3.25)
    latency = registry.histogram("latency_seconds", "Request latency.")
    data = np.random.default_rng(5).lognormal(mean=-3.0, sigma=1.5, size=10_000)
    latency.observe_many(data)
    codes = registry.counter_family("responses", "Responses.", ["method", "code"])
    codes.labels("GET", "200").inc(5)
    codes.labels("POST", "503").inc()
    queues = registry.gauge_family("queue_depth", "Queue depth.", ["queue"])
    queues.labels("a").set(-1.5)
    routes = registry.histogram_family("route_seconds", "By route.", ["route"], buckets=[0.1, 1.0])
    routes.labels("/x").observe_many([0.05, 0.5, 5.0])

    families = parse(registry.exposition())
    assert families["requests"] == [Sample("requests_total", {}, 7.0)]
    assert families["in_flight"] == [Sample("in_flight", {}, 3.25)]
    assert families["queue_depth"] == [Sample("queue_depth", {"queue": "a"}, -1.5)]
    assert {(s.labels["method"], s.labels["code"], s.value) for s in families["responses"]} == {
        ("GET", "200", 5.0),
        ("POST", "503", 1.0),
    }

    samples = families["latency_seconds"]
    buckets = [s for s in samples if s.name == "latency_seconds_bucket"]
    les = [float(s.labels["le"]) for s in buckets]
    assert les[-1] == math.inf and les == sorted(les)
    assert len(les) == len(DEFAULT_BUCKETS) + 1
    assert les[:-1] == latency.buckets
    for asked, le in zip(DEFAULT_BUCKETS, les, strict=False):
        # Each le is the requested bound moved up to a fine-bucket boundary.
        assert asked <= le <= asked * (1 + 2 * latency.relative_error)
    for s in buckets:
        assert s.value == np.count_nonzero(data <= float(s.labels["le"]))
    by_name = {s.name: s.value for s in samples if s.name != "latency_seconds_bucket"}
    assert by_name["latency_seconds_count"] == 10_000
    assert by_name["latency_seconds_sum"] == pytest.approx(data.sum(), rel=1e-9)

    route = {(s.name, s.labels.get("le")): s.value for s in families["route_seconds"]}
    assert all(s.labels["route"] == "/x" for s in families["route_seconds"])
    le_values = sorted(le for name, le in route if le is not None and le != "+Inf")
    assert [route[("route_seconds_bucket", le)] for le in le_values] == [1.0, 2.0]
    assert route[("route_seconds_bucket", "+Inf")] == 3.0
    assert route[("route_seconds_count", None)] == 3.0
    assert route[("route_seconds_sum", None)] == pytest.approx(5.55)


@settings(max_examples=40, deadline=None)
@given(
    st.text(max_size=20),
    st.lists(st.text(max_size=12), min_size=1, max_size=4, unique=True),
)
def test_escaped_help_and_label_values_round_trip(help_text: str, values: list[str]) -> None:
    registry = Registry()
    family = registry.counter_family("escapes_total", help_text, ["v"])
    for i, value in enumerate(values):
        family.labels(value).inc(i + 1)
    (parsed,) = text_string_to_metric_families(registry.exposition())
    # The parser drops whitespace around the HELP text; everything else survives.
    assert parsed.documentation.strip() == help_text.strip()
    assert {s.labels["v"]: s.value for s in parsed.samples} == {
        value: i + 1.0 for i, value in enumerate(values)
    }


def test_registry_registers_metrics_made_elsewhere_and_refuses_duplicates() -> None:
    registry = Registry()
    counter = Counter("made_elsewhere_total", "x")
    registry.register(counter)
    counter.inc(4)
    family = HistogramFamily("fam_seconds", "", ["k"], buckets=[1.0])
    registry.register(family)
    family.labels("v").observe(0.5)
    families = parse(registry.exposition())
    assert families["made_elsewhere"] == [Sample("made_elsewhere_total", {}, 4.0)]
    assert ("fam_seconds_count", 1.0) in [(s.name, s.value) for s in families["fam_seconds"]]
    with pytest.raises(ValueError, match=r"^name: "):
        registry.register(counter)
    with pytest.raises(ValueError, match=r"^name: "):
        registry.gauge("made_elsewhere_total")
    with pytest.raises(ValueError, match=r"^name: "):
        registry.register(Gauge())
    with pytest.raises(TypeError, match="metric"):
        registry.register(object())  # type: ignore[arg-type]


def test_empty_registry_exposes_nothing() -> None:
    assert Registry().exposition() == ""
