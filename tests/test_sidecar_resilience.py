"""Upstream policies through the sidecar: load balancing, passive health, retries, timeouts,
deadlines, breakers, bulkheads, rate limits, reloads under load, and an upstream killed under load.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    Hammer,
    Response,
    SidecarProcess,
    binomial_bounds,
    cluster,
    http_listener,
    route,
    sidecar,
    wait_until,
)
from upstreams import Upstream, dead_address, running

HERE = Path(__file__).parent
FAST_BACKOFF = {"strategy": "fixed", "base_ms": 1, "max_ms": 1}
NAMES = [
    "r1", "r2", "r3", "w1", "w2", "d1", "d2", "d3", "l1", "l2", "e1", "e2", "h1", "h2", "h3",
    "o1", "o2", "o3", "k1", "k2", "p1", "p2", "t1", "c1", "b1", "x1", "x2", "x3", "bk", "q1",
    "rl1", "dl1", "f1", "f2", "xr", "pl1", "rc1", "cap1",
]  # fmt: skip


def eject(consecutive: int, panic: float = 0.0) -> dict[str, Any]:
    return {
        "lb": "round_robin",
        "healthy_panic_threshold": panic,
        "outlier_detection": {
            "consecutive_5xx": consecutive,
            "max_ejection_percent": 100,
            "base_ejection_time_ms": 60_000,
        },
    }


def retry(*retry_on: str, retries: int = 1, **options: Any) -> dict[str, Any]:
    return {"retry_on": list(retry_on), "num_retries": retries, "backoff": FAST_BACKOFF, **options}


def breaker() -> dict[str, Any]:
    return {
        "failure_rate": 0.5,
        "window": 10,
        "minimum_requests": 4,
        "open_ms": 60_000,
        "half_open_requests": 1,
    }


def config(ups: dict[str, Upstream]) -> dict[str, Any]:
    def at(*names: str) -> list[str]:
        return [ups[name].address for name in names]

    hosts = at("h1", "h2", "h3")
    clusters = [
        cluster("rr", *at("r1", "r2", "r3"), lb="round_robin"),
        cluster(
            "wrr",
            {"address": ups["w1"].address, "weight": 3},
            {"address": ups["w2"].address, "weight": 1},
            lb="weighted_round_robin",
        ),
        cluster("random", *at("d1", "d2", "d3"), lb="random"),
        cluster("least", *at("l1", "l2"), lb="least_request"),
        cluster("ewma", *at("e1", "e2"), lb="peak_ewma"),
        cluster("ring", *hosts, lb="ring_hash", hash_policy=[{"header": "x-user"}]),
        cluster("ring_cookie", *hosts, lb="ring_hash", hash_policy=[{"cookie": "sid"}]),
        cluster("maglev", *hosts, lb="maglev", hash_policy=[{"source_ip": True}]),
        cluster("outlier", *at("o1", "o2", "o3"), **eject(3)),
        cluster("last", *at("k1", "k2"), **eject(2)),
        cluster("panic", *at("p1", "p2"), **eject(2, panic=60.0)),
        cluster("t", *at("t1"), pool={"max_requests_per_connection": 1}),
        cluster("cf", dead_address(), *at("c1"), lb="round_robin"),
        cluster(
            "budget",
            *at("b1"),
            retry_budget={"budget_percent": 1.0, "min_retry_concurrency": 1},
            circuit_breakers={"max_retries": 100},
        ),
        cluster("brk", *at("x1"), host_breaker=breaker()),
        cluster("brk2", *at("x2"), host_breaker=breaker()),
        cluster("brk3", *at("x3"), host_breaker=breaker()),
        cluster("backup", *at("bk")),
        cluster(
            "bulk",
            *at("q1"),
            bulkhead={"max_concurrent": 1, "max_queue": 0, "queue_timeout_ms": 100},
        ),
        cluster(
            "recover",
            *at("f1", "f2"),
            lb="round_robin",
            healthy_panic_threshold=0.0,
            outlier_detection={
                "consecutive_5xx": 2,
                "max_ejection_percent": 100,
                "base_ejection_time_ms": 300,
            },
        ),
        cluster("brk_recover", *at("xr"), host_breaker={**breaker(), "open_ms": 300}),
        cluster("pool", *at("pl1"), pool={"max_idle_per_host": 1, "idle_timeout_ms": 300}),
        cluster("recycle", *at("rc1"), pool={"max_requests_per_connection": 3}),
        cluster("cap", *at("cap1"), circuit_breakers={"max_requests": 1}),
        cluster("rl", *at("rl1")),
        cluster("dl", *at("dl1")),
    ]
    exp_backoff = {"strategy": "exponential", "base_ms": 50, "max_ms": 10_000}
    fixed_backoff = {"strategy": "fixed", "base_ms": 20, "max_ms": 20}
    routes = [
        route("/lb/rr", "rr"),
        route("/lb/wrr", "wrr"),
        route("/lb/random", "random"),
        route("/lb/least", "least"),
        route("/lb/ewma", "ewma"),
        route("/hash/header", "ring"),
        route("/hash/cookie", "ring_cookie"),
        route("/hash/ip", "maglev"),
        route("/outlier", "outlier"),
        route("/last", "last"),
        route("/panic", "panic"),
        route("/retry-5xx", "t", retry=retry("5xx", retries=2)),
        route("/retry-gw", "t", retry=retry("gateway-error", retries=2)),
        route("/retry-connect", "cf", retry=retry("connect-failure", retries=2)),
        route("/retry-reset", "t", retry=retry("reset")),
        route(
            "/no-retry-reset",
            "t",
            retry=retry("retriable-status-codes", retriable_status_codes=[418]),
        ),
        route(
            "/retry-status",
            "t",
            retry=retry("retriable-status-codes", retriable_status_codes=[418]),
        ),
        route("/per-try", "t", retry=retry("5xx", per_try_timeout_ms=300)),
        route("/timeout", "t", timeout_ms=300, retry=retry("connect-failure", retries=0)),
        route(
            "/backoff-fixed",
            "t",
            timeout_ms=1000,
            retry=retry("5xx", retries=40, backoff=fixed_backoff),
        ),
        route(
            "/backoff-exp",
            "t",
            timeout_ms=1000,
            retry=retry("5xx", retries=40, backoff=exp_backoff),
        ),
        route(
            "/budget",
            "budget",
            timeout_ms=5000,
            retry=retry("5xx", retries=3, per_try_timeout_ms=300),
        ),
        route("/breaker/plain", "brk"),
        route(
            "/breaker/response",
            "brk2",
            fallback={"response": {"status": 200, "body": "fallback", "headers": {"x-fb": "1"}}},
        ),
        route("/breaker/cluster", "brk3", fallback={"cluster": "backup"}),
        route("/breaker/recover", "brk_recover"),
        route("/recover", "recover"),
        route("/bulkhead", "bulk"),
        route("/pool", "pool"),
        route("/recycle", "recycle"),
        route("/cap", "cap"),
        route(
            "/rl/bucket",
            "rl",
            rate_limits=[{"algorithm": "token_bucket", "requests": 5, "per_seconds": 60}],
        ),
        route(
            "/rl/window",
            "rl",
            rate_limits=[
                {
                    "algorithm": "sliding_window",
                    "requests": 3,
                    "per_seconds": 60,
                    "key": {"header": "x-api-key"},
                }
            ],
        ),
        route(
            "/rl/ip",
            "rl",
            rate_limits=[{"requests": 2, "per_seconds": 60, "key": "client_ip"}],
        ),
        route("/deadline/delayed", "dl", fault={"delay": {"delay_ms": 100, "percent": 100}}),
        route("/deadline", "dl"),
    ]
    return {"listeners": [http_listener(routes=routes)], "clusters": clusters}


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, Upstream]]:
    with running({name: Upstream(name) for name in NAMES}) as servers:
        for name in ("o1", "k1", "k2", "p1", "x1", "x2", "x3", "f1", "xr"):
            servers[name].set("status", 500)
        servers["e1"].set("slow", 0.05)
        servers["b1"].set("stall")
        yield servers


@pytest.fixture(scope="module")
def proxy(
    ups: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    with sidecar(config(ups), tmp_path_factory.mktemp("resilience")) as process:
        yield process


def spread(proxy: SidecarProcess, path: str, count: int, **headers: str) -> Counter[str | None]:
    seen: Counter[str | None] = Counter()
    with proxy.conn() as conn:
        for _ in range(count):
            seen[conn.request("GET", path, headers).upstream] += 1
    return seen


def test_round_robin_cycles_evenly(proxy: SidecarProcess) -> None:
    assert spread(proxy, "/lb/rr", 30) == {"r1": 10, "r2": 10, "r3": 10}


def test_weighted_round_robin_follows_weights(proxy: SidecarProcess) -> None:
    seen = spread(proxy, "/lb/wrr", 40)
    assert abs(seen["w1"] - 30) <= 1 and seen["w1"] + seen["w2"] == 40, seen


def test_random_spreads_uniformly(proxy: SidecarProcess) -> None:
    seen = spread(proxy, "/lb/random", 600)
    low, high = binomial_bounds(600, 1 / 3)
    assert set(seen) == {"d1", "d2", "d3"}
    assert all(low <= n <= high for n in seen.values()), seen


def test_least_request_avoids_the_busy_host(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    slow = threading.Thread(target=proxy.get, args=("/lb/least/slow", {"x-up": "slow=2"}))
    slow.start()
    try:
        wait_until(lambda: any("/lb/least/slow" in ups[n].paths() for n in ("l1", "l2")))
        busy = "l1" if "/lb/least/slow" in ups["l1"].paths() else "l2"
        seen = spread(proxy, "/lb/least/quick", 10)
    finally:
        slow.join()
    assert busy not in seen and sum(seen.values()) == 10, seen


def test_peak_ewma_prefers_the_fast_host(proxy: SidecarProcess) -> None:
    seen = spread(proxy, "/lb/ewma", 40)
    assert seen["e2"] >= 30, seen


def sticky(results: dict[str, set[str | None]]) -> None:
    assert all(len(hosts) == 1 for hosts in results.values()), results
    assert len(set().union(*results.values())) >= 2, results


def sticks_by_header(proxy: SidecarProcess, path: str, values: list[str], header: str) -> None:
    """Three requests for each of `values` in `header`: each value sticks to one host."""
    results: dict[str, set[str | None]] = {}
    with proxy.conn() as conn:
        for value in values:
            for _ in range(3):
                response = conn.request("GET", path, {header: value})
                results.setdefault(value, set()).add(response.upstream)
    sticky(results)


def test_hash_on_header_sticks(proxy: SidecarProcess) -> None:
    sticks_by_header(proxy, "/hash/header", [f"user-{user}" for user in range(20)], "x-user")


def test_hash_on_cookie_sticks(proxy: SidecarProcess) -> None:
    sticks_by_header(proxy, "/hash/cookie", [f"a=b; sid=s{sid}" for sid in range(20)], "cookie")


def test_hash_on_source_ip_sticks(proxy: SidecarProcess) -> None:
    results: dict[str, set[str | None]] = {}
    for last in range(10, 30):
        source = f"127.0.0.{last}"
        for _ in range(3):
            with proxy.conn(source=source) as conn:
                results.setdefault(source, set()).add(conn.request("GET", "/hash/ip").upstream)
    sticky(results)


def test_outlier_detection_ejects_a_failing_host(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    with proxy.conn() as conn:
        statuses = Counter(conn.request("GET", "/outlier").status for _ in range(30))
    assert statuses == {200: 27, 500: 3}
    assert ups["o1"].requests == 3


def test_outlier_detection_never_ejects_the_last_host(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    with proxy.conn() as conn:
        responses = [conn.request("GET", "/last") for _ in range(20)]
    assert all(r.status == 500 and r.reason is None for r in responses), responses[-1]
    counts = sorted([ups["k1"].requests, ups["k2"].requests])
    assert sum(counts) == 20 and counts[0] == 2, counts


def test_panic_threshold_balances_over_all_hosts(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    with proxy.conn() as conn:
        statuses = Counter(conn.request("GET", "/panic").status for _ in range(40))
    assert ups["p1"].requests >= 10, (ups["p1"].requests, statuses)
    assert statuses[200] + statuses[500] == 40


def tries(upstream: Upstream, path: str) -> int:
    return upstream.paths().count(path)


@pytest.fixture
def t1(ups: dict[str, Upstream]) -> Iterator[Upstream]:
    ups["t1"].clear()
    yield ups["t1"]
    ups["t1"].clear()


def test_retry_on_5xx(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("status", 503, times=2)
    assert proxy.get("/retry-5xx").status == 200
    assert tries(t1, "/retry-5xx") == 3
    t1.set("status", 503, times=3)
    assert proxy.get("/retry-5xx").status == 503
    assert tries(t1, "/retry-5xx") == 6


def test_no_retry_of_non_idempotent_request_on_5xx(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("status", 503, times=1)
    with proxy.conn() as conn:
        assert conn.request("POST", "/retry-5xx", body=b"order").status == 503
    assert tries(t1, "/retry-5xx") == 1


def test_retry_on_gateway_error(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("status", 502, times=1)
    assert proxy.get("/retry-gw").status == 200
    assert tries(t1, "/retry-gw") == 2
    t1.set("status", 500, times=1)
    assert proxy.get("/retry-gw").status == 500
    assert tries(t1, "/retry-gw") == 3


def test_retry_on_connect_failure(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    seen = spread(proxy, "/retry-connect", 20)
    assert seen == {"c1": 20}


def test_retry_on_reset(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("reset", times=1)
    assert proxy.get("/retry-reset").status == 200
    assert tries(t1, "/retry-reset") == 2


def test_reset_without_retry_is_502(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("reset", times=1)
    response = proxy.get("/no-retry-reset")
    assert response.status == 502
    assert response.reason == "upstream-reset"
    assert tries(t1, "/no-retry-reset") == 1


def test_retriable_status_codes(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("status", 418, times=1)
    assert proxy.get("/retry-status").status == 200
    assert tries(t1, "/retry-status") == 2
    t1.set("status", 409, times=1)
    assert proxy.get("/retry-status").status == 409
    assert tries(t1, "/retry-status") == 3


def test_per_try_timeout_retries(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("stall", times=1)
    assert proxy.get("/per-try").status == 200
    assert tries(t1, "/per-try") == 2


def test_route_timeout_is_504(proxy: SidecarProcess, t1: Upstream) -> None:
    t1.set("stall", times=1)
    response = proxy.get("/timeout")
    assert response.status == 504
    assert response.reason == "upstream-timeout"
    assert tries(t1, "/timeout") == 1


def test_exponential_backoff_makes_fewer_tries_than_fixed(
    proxy: SidecarProcess, t1: Upstream
) -> None:
    t1.set("status", 503)
    assert proxy.get("/backoff-fixed").status in (503, 504)
    assert proxy.get("/backoff-exp").status in (503, 504)
    fixed, exponential = tries(t1, "/backoff-fixed"), tries(t1, "/backoff-exp")
    # Within the 1 s route timeout: exponential waits 50+100+200+400 ms, so at most 5 tries.
    assert 2 <= exponential <= 5, exponential
    assert fixed >= 10, fixed


def test_retry_budget_caps_retries(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    b1 = ups["b1"]
    before = b1.requests
    start = threading.Barrier(10)
    statuses: list[int] = []

    def client() -> None:
        start.wait()
        statuses.append(proxy.get("/budget").status)

    threads = [threading.Thread(target=client) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 10 and all(s >= 500 for s in statuses), statuses
    sent = b1.requests - before
    # Unbudgeted this would be 10 x (1 + 3) = 40 tries; one retry in flight at a time allows
    # the ten first tries plus one chain of three retries.
    assert 11 <= sent <= 16, sent


def test_deadline_is_propagated_reduced(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    response = proxy.get("/deadline/delayed", {"x-dmsc-deadline-ms": "5000"})
    assert response.status == 200
    remaining = int(response.sent("x-dmsc-deadline-ms") or "-1")
    assert 0 < remaining <= 4900
    assert proxy.get("/deadline/plain").sent("x-dmsc-deadline-ms") is None


def test_spent_deadline_is_504_without_calling_upstream(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    before = ups["dl1"].heads
    response = proxy.get("/deadline/plain", {"x-dmsc-deadline-ms": "0"})
    assert response.status == 504
    assert response.reason == "deadline-exceeded"
    assert ups["dl1"].heads == before


def test_deadline_bounds_the_wait_for_upstream(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    response = proxy.get("/deadline/plain", {"x-dmsc-deadline-ms": "200", "x-up": "stall"})
    assert response.status == 504
    assert response.reason in ("deadline-exceeded", "upstream-timeout")


def until_proxy_answers(proxy: SidecarProcess, path: str, count: int = 12) -> list[Response]:
    with proxy.conn() as conn:
        return [conn.request("GET", path) for _ in range(count)]


def test_host_breaker_opens(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    responses = until_proxy_answers(proxy, "/breaker/plain")
    assert ups["x1"].requests <= 5
    assert [r.status for r in responses[: ups["x1"].requests]] == [500] * ups["x1"].requests
    last = responses[-1]
    assert last.status == 503
    assert last.reason in ("circuit-open", "no-healthy-host"), last


def test_open_breaker_answers_the_fallback_response(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    responses = until_proxy_answers(proxy, "/breaker/response")
    assert ups["x2"].requests <= 5
    last = responses[-1]
    assert (last.status, last.body, last.header("x-fb")) == (200, b"fallback", "1")


def test_open_breaker_falls_back_to_another_cluster(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    responses = until_proxy_answers(proxy, "/breaker/cluster")
    assert ups["x3"].requests <= 5
    assert responses[-1].status == 200 and responses[-1].upstream == "bk"


def test_ejected_host_gets_traffic_again_once_it_recovers(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    f1 = ups["f1"]
    with proxy.conn() as conn:
        statuses = Counter(conn.request("GET", "/recover").status for _ in range(10))
        assert statuses == {200: 8, 500: 2} and f1.requests == 2
        f1.set("ok")

        def back() -> bool:
            return conn.request("GET", "/recover").upstream == "f1"

        wait_until(back, message="the recovered host got no traffic again")


def test_open_breaker_closes_once_the_host_recovers(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    with proxy.conn() as conn:
        last = [conn.request("GET", "/breaker/recover") for _ in range(8)][-1]
        assert last.status == 503 and last.reason is not None
        ups["xr"].set("ok")
        wait_until(lambda: conn.request("GET", "/breaker/recover").status == 200)
        assert [conn.request("GET", "/breaker/recover").status for _ in range(10)] == [200] * 10


def test_bulkhead_overflow_is_503(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    q1 = ups["q1"]
    slow = threading.Thread(target=proxy.get, args=("/bulkhead/slow", {"x-up": "slow=1.5"}))
    slow.start()
    try:
        wait_until(lambda: "/bulkhead/slow" in q1.paths())
        refused = proxy.get("/bulkhead/more")
    finally:
        slow.join()
    assert refused.status == 503
    assert (refused.reason or "").startswith("bulkhead"), refused
    assert "/bulkhead/more" not in q1.paths()
    assert proxy.get("/bulkhead/after").status == 200


def test_cluster_max_requests_overflow_is_503(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    cap1 = ups["cap1"]
    slow = threading.Thread(target=proxy.get, args=("/cap/slow", {"x-up": "slow=1"}))
    slow.start()
    try:
        wait_until(lambda: "/cap/slow" in cap1.paths())
        refused = proxy.get("/cap/more")
    finally:
        slow.join()
    assert refused.status == 503
    assert refused.reason == "overflow", refused
    assert "/cap/more" not in cap1.paths()
    assert proxy.get("/cap/after").status == 200


def test_pool_keeps_at_most_max_idle_and_closes_idle_connections(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    pl1 = ups["pl1"]
    threads = [
        threading.Thread(target=proxy.get, args=(f"/pool/{i}", {"x-up": "slow=0.3"}))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    wait_until(lambda: pl1.open_connections == 4, message="requests did not overlap")
    for thread in threads:
        thread.join()
    wait_until(lambda: pl1.open_connections <= 1, message="more idle connections than allowed")
    wait_until(lambda: pl1.open_connections == 0, message="idle connection never closed")


def test_connection_retired_after_max_requests(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    rc1 = ups["rc1"]
    before = rc1.connections
    with proxy.conn() as conn:
        for i in range(9):
            assert conn.request("GET", f"/recycle/{i}").status == 200
    assert rc1.connections - before == 3


def assert_limited(response: Response) -> None:
    assert response.status == 429, response
    assert response.reason == "rate-limit"
    assert int(response.header("retry-after") or "0") >= 1


def test_token_bucket_per_service(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    with proxy.conn() as conn:
        assert [conn.request("GET", "/rl/bucket").status for _ in range(5)] == [200] * 5
        assert_limited(conn.request("GET", "/rl/bucket"))
    with proxy.conn() as conn:
        assert_limited(conn.request("GET", "/rl/bucket", {"x-api-key": "other"}))
    assert ups["rl1"].paths().count("/rl/bucket") == 5


def test_sliding_window_per_client_key(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        for _ in range(3):
            assert conn.request("GET", "/rl/window", {"x-api-key": "a"}).status == 200
        assert_limited(conn.request("GET", "/rl/window", {"x-api-key": "a"}))
        for _ in range(3):
            assert conn.request("GET", "/rl/window", {"x-api-key": "b"}).status == 200
        assert_limited(conn.request("GET", "/rl/window", {"x-api-key": "b"}))
        assert_limited(conn.request("GET", "/rl/window", {"x-api-key": "a"}))


def test_rate_limit_per_client_ip(proxy: SidecarProcess) -> None:
    with proxy.conn(source="127.0.0.40") as conn:
        assert [conn.request("GET", "/rl/ip").status for _ in range(2)] == [200, 200]
        assert_limited(conn.request("GET", "/rl/ip"))
    with proxy.conn(source="127.0.0.41") as conn:
        assert conn.request("GET", "/rl/ip").status == 200


def generation_config(address: str, generation: int) -> dict[str, Any]:
    rewrite = {"set": {"x-generation": str(generation)}}
    return {
        "listeners": [http_listener(routes=[route("/", "app", request_headers=rewrite)])],
        "clusters": [cluster("app", address, lb=["round_robin", "random"][generation % 2])],
    }


def test_reloads_under_load_lose_no_request(tmp_path: Path) -> None:
    upstream = Upstream("app").start()
    try:
        with (
            sidecar(generation_config(upstream.address, 0), tmp_path) as proxy,
            Hammer(proxy.addr(), threads=3) as client,
        ):
            client.wait_for(50)
            for generation in range(1, 21):
                proxy.reload(generation_config(upstream.address, generation), generation % 2 == 0)
                client.wait_for(10)
            client.stop()
            assert client.failures == []
            seen = {r.header("x-generation") for r in upstream.received}
            assert {"0", "20"} <= seen and len(seen) >= 10, seen
    finally:
        upstream.stop()


def start_upstream_process(name: str, port: int = 0) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "upstreams.py"), name, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("port "), line
    return proc, f"127.0.0.1:{int(line.split()[1])}"


def test_upstream_killed_under_load_fails_no_idempotent_request_and_comes_back(
    tmp_path: Path,
) -> None:
    procs = [start_upstream_process(f"u{i}") for i in range(3)]
    kill_config = {
        "listeners": [
            http_listener(
                routes=[
                    route("/", "app", retry=retry("connect-failure", "reset", "5xx", retries=3))
                ]
            )
        ],
        "clusters": [
            cluster(
                "app",
                *(address for _, address in procs),
                lb="round_robin",
                retry_budget={"budget_percent": 100.0, "min_retry_concurrency": 20},
                circuit_breakers={"max_retries": 100},
                outlier_detection={
                    "consecutive_gateway_failure": 2,
                    "consecutive_5xx": 0,
                    "max_ejection_percent": 50,
                    "base_ejection_time_ms": 500,
                },
            )
        ],
    }
    try:
        with sidecar(kill_config, tmp_path) as proxy, Hammer(proxy.addr(), threads=4) as client:
            client.wait_upstream("u1", 50)
            procs[1][0].send_signal(signal.SIGKILL)
            procs[1][0].wait()
            killed_at = client.by_upstream["u1"]
            client.wait_for(600)
            assert client.failures == []
            assert client.by_upstream["u1"] <= killed_at + 4  # responses read before the kill
            assert client.by_upstream["u0"] > 50 and client.by_upstream["u2"] > 50
            procs[1] = start_upstream_process("u1", int(procs[1][1].rsplit(":", 1)[1]))
            client.wait_upstream("u1", 50)
            client.stop()
            assert client.failures == []
    finally:
        for proc, _ in procs:
            proc.kill()
            proc.wait()
