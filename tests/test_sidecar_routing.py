"""Routing through the sidecar: matches, splits, blue-green, mirroring, rewrites, faults."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support import (
    Hammer,
    SidecarProcess,
    binomial_bounds,
    cluster,
    http_listener,
    route,
    sidecar,
    wait_until,
)
from upstreams import Upstream, dead_address, running

NAMES = [
    "api", "wild", "exact", "regex", "method", "header", "cookie", "query",
    "v1", "v2", "shadow", "stall", "default",
]  # fmt: skip


def routes() -> list[dict[str, Any]]:
    return [
        {"match": {"path": {"exact": "/exact"}}, "cluster": "exact"},
        {"match": {"path": {"regex": "/items/[0-9]+"}}, "cluster": "regex"},
        {"match": {"path": {"prefix": "/admin"}, "methods": ["POST", "PUT"]}, "cluster": "method"},
        route("/tenant", "header", match={
            "path": {"prefix": "/tenant"}, "headers": [{"name": "x-tenant", "exact": "gold"}],
        }),
        route("/neg", "header", match={
            "path": {"prefix": "/neg"},
            "headers": [{"name": "x-block", "present": True, "invert": True}],
        }),
        route("/beta", "cookie", match={
            "path": {"prefix": "/beta"}, "cookies": [{"name": "session", "prefix": "beta-"}],
        }),
        route("/search", "query", match={
            "path": {"prefix": "/search"}, "query": [{"name": "q", "exact": "hello world"}],
        }),
        {
            "match": {"path": {"prefix": "/split"}},
            "clusters": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
        },
        route("/ab", "v2", match={
            "path": {"prefix": "/ab"}, "headers": [{"name": "x-variant", "exact": "b"}],
        }),
        route("/ab", "v2", match={
            "path": {"prefix": "/ab"}, "cookies": [{"name": "variant", "exact": "b"}],
        }),
        route("/ab", "v1"),
        route("/mirror-half", "v1", mirror={"cluster": "shadow", "fraction": 0.5}),
        route("/mirror-stall", "v1", mirror={"cluster": "stall", "fraction": 1.0}),
        route("/mirror-dead", "v1", mirror={"cluster": "dead", "fraction": 1.0}),
        route(
            "/rewrite",
            "v1",
            prefix_rewrite="/rewritten",
            host_rewrite="backend.internal",
            request_headers={
                "set": {"x-set": "one"}, "add": {"x-added": "two"}, "remove": ["x-drop"],
            },
            response_headers={
                "set": {"x-resp": "yes"}, "add": {"x-resp-add": "a"}, "remove": ["x-up-name"],
            },
        ),
        route("/fault-abort", "v1", fault={"abort": {"status": 503, "percent": 100}}),
        route("/fault-half", "v1", fault={"abort": {"status": 418, "percent": 50}}),
        route("/fault-delay", "v1", fault={"delay": {"delay_ms": 300, "percent": 100}}),
        {
            "match": {"path": {"prefix": "/direct"}},
            "direct_response": {
                "status": 202, "body": "hello direct", "headers": {"x-direct": "yes"},
            },
        },
        route("/", "default"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, Upstream]]:
    with running({name: Upstream(name) for name in NAMES}) as servers:
        servers["stall"].set("stall")
        yield servers


@pytest.fixture(scope="module")
def proxy(
    ups: dict[str, Upstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SidecarProcess]:
    listener = http_listener(routes=routes())
    listener["virtual_hosts"][:0] = [
        {"name": "api", "domains": ["api.example.com"], "routes": [route("/v1", "api")]},
        {"name": "wild", "domains": ["*.wild.test"], "routes": [route("/", "wild")]},
    ]
    config = {
        "listeners": [listener],
        "clusters": [
            *(cluster(name, server.address) for name, server in ups.items()),
            cluster("dead", dead_address()),
        ],
    }
    with sidecar(config, tmp_path_factory.mktemp("routing")) as process:
        yield process


def who(proxy: SidecarProcess, path: str, host: str = "test.local", **headers: str) -> str | None:
    response = proxy.get(path, {k.replace("_", "-"): v for k, v in headers.items()}, host=host)
    assert response.status == 200, response
    return response.upstream


def test_host_matching(proxy: SidecarProcess) -> None:
    assert who(proxy, "/v1/x", host="api.example.com") == "api"
    assert who(proxy, "/v1/x", host="API.Example.COM:8080") == "api"
    assert who(proxy, "/", host="foo.wild.test") == "wild"
    assert who(proxy, "/v1/x", host="other.test") == "default"


def test_no_route_is_404_with_reason(proxy: SidecarProcess) -> None:
    response = proxy.get("/not-v1", host="api.example.com")
    assert response.status == 404
    assert response.reason == "no-route"


def test_path_exact(proxy: SidecarProcess) -> None:
    assert who(proxy, "/exact") == "exact"
    assert who(proxy, "/exact?x=1") == "exact"
    assert who(proxy, "/exact/") == "default"
    assert who(proxy, "/exactly") == "default"


def test_path_regex_matches_the_whole_path(proxy: SidecarProcess) -> None:
    assert who(proxy, "/items/42") == "regex"
    assert who(proxy, "/items/42/more") == "default"
    assert who(proxy, "/items/abc") == "default"


def test_path_prefix_and_method(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        assert conn.request("POST", "/admin/users", body=b"{}").upstream == "method"
        assert conn.request("PUT", "/admin").upstream == "method"
        assert conn.request("GET", "/admin/users").upstream == "default"


def test_header_match(proxy: SidecarProcess) -> None:
    assert who(proxy, "/tenant", x_tenant="gold") == "header"
    assert who(proxy, "/tenant", x_tenant="silver") == "default"
    assert who(proxy, "/tenant") == "default"
    assert who(proxy, "/neg") == "header"
    assert who(proxy, "/neg", x_block="1") == "default"


def test_cookie_match(proxy: SidecarProcess) -> None:
    assert who(proxy, "/beta", cookie="a=1; session=beta-42; b=2") == "cookie"
    assert who(proxy, "/beta", cookie="session=alpha") == "default"
    assert who(proxy, "/beta") == "default"


def test_query_match_is_percent_decoded(proxy: SidecarProcess) -> None:
    assert who(proxy, "/search?q=hello%20world") == "query"
    assert who(proxy, "/search?page=2&q=hello+world") == "query"
    assert who(proxy, "/search?q=hello") == "default"


def test_weighted_split_90_10(proxy: SidecarProcess) -> None:
    seen: Counter[str | None] = Counter()
    for _ in range(4):
        with proxy.conn() as conn:
            for _ in range(500):
                seen[conn.request("GET", "/split").upstream] += 1
    assert set(seen) == {"v1", "v2"}
    low, high = binomial_bounds(2000, 0.1)
    assert low <= seen["v2"] <= high, seen


def test_ab_by_header_and_cookie(proxy: SidecarProcess) -> None:
    for _ in range(5):
        assert who(proxy, "/ab", x_variant="b") == "v2"
        assert who(proxy, "/ab", cookie="variant=b") == "v2"
        assert who(proxy, "/ab", x_variant="a", cookie="variant=a") == "v1"
        assert who(proxy, "/ab") == "v1"


def test_mirror_copies_a_fraction(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    shadow = ups["shadow"]
    before = shadow.requests
    with proxy.conn() as conn:
        for i in range(200):
            response = conn.request("GET", f"/mirror-half/{i}")
            assert response.upstream == "v1"
    low, high = binomial_bounds(200, 0.5)
    wait_until(lambda: shadow.requests - before >= low, message="too few mirrored requests")
    time.sleep(0.5)
    assert shadow.requests - before <= high
    assert all(p.startswith("/mirror-half/") for p in shadow.paths())


def test_mirror_that_stalls_does_not_affect_responses(
    proxy: SidecarProcess, ups: dict[str, Upstream]
) -> None:
    with proxy.conn(timeout=5) as conn:
        for i in range(20):
            response = conn.request("GET", f"/mirror-stall/{i}")
            assert response.status == 200 and response.upstream == "v1"
    wait_until(lambda: ups["stall"].requests >= 1, message="the shadow got nothing")


def test_mirror_that_fails_does_not_affect_responses(proxy: SidecarProcess) -> None:
    with proxy.conn(timeout=5) as conn:
        for i in range(20):
            response = conn.request("GET", f"/mirror-dead/{i}")
            assert response.status == 200 and response.upstream == "v1"


def test_header_and_path_rewrites(proxy: SidecarProcess) -> None:
    headers = {"X-Set": "zero", "X-Drop": "1", "X-Keep": "k"}
    with proxy.conn() as conn:
        response = conn.request("GET", "/rewrite/abc?q=1", headers)
    assert response.status == 200
    echo = response.json()
    assert (echo["path"], echo["query"]) == ("/rewritten/abc", "q=1")
    assert response.sent("host") == "backend.internal"
    assert response.sent("x-set") == "one"
    assert response.sent("x-added") == "two"
    assert response.sent("x-drop") is None
    assert response.sent("x-keep") == "k"
    assert response.header("x-resp") == "yes"
    assert response.header("x-resp-add") == "a"
    assert response.header("x-up-name") is None


def test_fault_abort_all(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    with proxy.conn() as conn:
        for _ in range(10):
            response = conn.request("GET", "/fault-abort")
            assert response.status == 503
            assert response.reason == "fault-abort"
    assert "/fault-abort" not in ups["v1"].paths()


def test_fault_abort_percentage(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    v1 = ups["v1"]
    before = v1.paths().count("/fault-half")
    statuses: Counter[int] = Counter()
    with proxy.conn() as conn:
        for _ in range(200):
            statuses[conn.request("GET", "/fault-half").status] += 1
    assert set(statuses) == {200, 418}
    low, high = binomial_bounds(200, 0.5)
    assert low <= statuses[418] <= high, statuses
    assert v1.paths().count("/fault-half") - before == statuses[200]


def test_fault_delay(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        for _ in range(3):
            started = time.monotonic()
            response = conn.request("GET", "/fault-delay")
            assert response.status == 200 and response.upstream == "v1"
            assert time.monotonic() - started >= 0.3


def test_direct_response(proxy: SidecarProcess, ups: dict[str, Upstream]) -> None:
    before = sum(server.requests for server in ups.values())
    with proxy.conn() as conn:
        response = conn.request("GET", "/direct")
        again = conn.request("POST", "/direct/x", body=b"ignored body")
    assert (response.status, response.body) == (202, b"hello direct")
    assert response.header("x-direct") == "yes"
    assert again.status == 202
    assert sum(server.requests for server in ups.values()) == before


def blue_green(blue: int, green: int, ports: dict[str, str]) -> dict[str, Any]:
    split = [{"name": "blue", "weight": blue}, {"name": "green", "weight": green}]
    return {
        "listeners": [http_listener(routes=[{"match": {}, "clusters": split}])],
        "clusters": [cluster(name, address) for name, address in ports.items()],
    }


def test_blue_green_switch_and_rollback_lose_no_request(tmp_path: Path) -> None:
    blue, green = Upstream("blue").start(), Upstream("green").start()
    ports = {"blue": blue.address, "green": green.address}
    try:
        with sidecar(blue_green(100, 0, ports), tmp_path) as proxy, Hammer(proxy.addr()) as client:
            client.wait_upstream("blue", 20)
            assert "green" not in client.by_upstream
            proxy.reload(blue_green(0, 100, ports))
            client.wait_upstream("green", 20)
            blue_after_switch = client.by_upstream["blue"]
            client.wait_upstream("green", 50)
            assert client.by_upstream["blue"] == blue_after_switch
            proxy.reload(blue_green(100, 0, ports))
            client.wait_upstream("blue", 20)
            green_after_rollback = client.by_upstream["green"]
            client.wait_upstream("blue", 50)
            assert client.by_upstream["green"] == green_after_rollback
            client.stop()
            assert client.failures == []
    finally:
        blue.stop()
        green.stop()
