"""HTTP/1.1 through the sidecar: connection handling, framing, streaming, forwarding headers."""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from support import (
    RawConn,
    SidecarProcess,
    cluster,
    concurrently,
    encode_request,
    http_listener,
    route,
    sidecar,
)
from upstreams import BLOCK, Upstream, pattern_sha256

BIG = 200 * 1024 * 1024
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream("http") as upstream:
        yield upstream


@pytest.fixture(scope="module")
def proxy(up: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    config = {
        "tracing": True,
        "listeners": [http_listener(routes=[route("/", "app")])],
        "clusters": [cluster("app", up.address)],
    }
    with sidecar(config, tmp_path_factory.mktemp("http")) as process:
        yield process


@pytest.fixture(autouse=True)
def fresh(up: Upstream) -> None:
    up.clear()


class RssSampler:
    """Samples a process's VmRSS every few milliseconds in a thread; keeps the peak."""

    def __init__(self, process: SidecarProcess) -> None:
        self.process = process
        self.peak = process.rss_kb()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        while not self.stopping.wait(0.01):
            self.peak = max(self.peak, self.process.rss_kb())


def test_get_is_forwarded_with_path_query_and_body(proxy: SidecarProcess, up: Upstream) -> None:
    with proxy.conn() as conn:
        response = conn.request("POST", "/a/b?x=1&y=two", {"X-Custom": "v"}, body=b"hello")
    assert response.status == 200
    echo = response.json()
    assert (echo["method"], echo["path"], echo["query"]) == ("POST", "/a/b", "x=1&y=two")
    assert echo["body_len"] == 5
    assert echo["body_sha256"] == hashlib.sha256(b"hello").hexdigest()
    assert response.sent("x-custom") == "v"
    assert up.requests >= 1


def test_keep_alive_reuses_few_upstream_connections(proxy: SidecarProcess, up: Upstream) -> None:
    before = up.connections
    with proxy.conn() as conn:
        responses = [conn.request("GET", f"/ka/{i}") for i in range(50)]
    assert [r.status for r in responses] == [200] * 50
    assert [r.json()["path"] for r in responses] == [f"/ka/{i}" for i in range(50)]
    assert len({r.json()["connection"] for r in responses}) <= 2
    assert up.connections - before <= 2


def test_pipelined_requests_are_answered_in_order(proxy: SidecarProcess) -> None:
    requests = b"".join(
        encode_request("POST", f"/pipe/{i}", body=b"x" * i)
        if i % 3 == 0
        else encode_request("GET", f"/pipe/{i}")
        for i in range(10)
    )
    with proxy.conn() as conn:
        conn.send(requests)
        responses = [conn.response() for _ in range(10)]
        assert conn.request("GET", "/after").json()["path"] == "/after"
    assert [r.json()["path"] for r in responses] == [f"/pipe/{i}" for i in range(10)]
    assert [r.json()["body_len"] for r in responses] == [i if i % 3 == 0 else 0 for i in range(10)]


def test_chunked_request_body_arrives_whole(proxy: SidecarProcess) -> None:
    pieces = [b"first piece;", b"x" * 5000, b"", b"last"]
    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces if p)
    head = b"POST /chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    with proxy.conn() as conn:
        conn.send(head + body[:7])
        conn.send(body[7:] + b"0\r\n\r\n")
        response = conn.response()
        assert response.status == 200
        whole = b"".join(pieces)
        assert response.json()["body_len"] == len(whole)
        assert response.json()["body_sha256"] == hashlib.sha256(whole).hexdigest()
        assert conn.request("GET", "/next").status == 200


def test_chunked_response_is_relayed(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        response = conn.request("GET", "/chunky", {"x-up": "chunked"})
        assert response.status == 200
        assert response.json()["path"] == "/chunky"
        assert conn.request("GET", "/next").json()["path"] == "/next"


def test_head_response_has_no_body_and_keeps_the_connection(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        response = conn.request("HEAD", "/head")
        assert response.status == 200 and response.body == b""
        assert conn.request("GET", "/after-head").json()["path"] == "/after-head"


def test_http10_client_gets_close(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        conn.send(b"GET /old HTTP/1.0\r\n\r\n")
        response = conn.response()
        assert response.status == 200 and response.json()["path"] == "/old"
        assert conn.closed()


def test_large_upload_streams_without_buffering(proxy: SidecarProcess) -> None:
    expected = pattern_sha256(BIG)
    with proxy.conn(timeout=60) as conn, RssSampler(proxy) as rss:
        baseline = rss.peak
        conn.send(encode_request("PUT", "/upload", {"Content-Length": str(BIG)}))
        view = memoryview(BLOCK)
        for _ in range(BIG // len(BLOCK)):
            conn.send(view)
        response = conn.response()
    assert response.status == 200
    assert response.json()["body_len"] == BIG
    assert response.json()["body_sha256"] == expected
    assert rss.peak - baseline < 64 * 1024, f"RSS grew {rss.peak - baseline} kB"


def test_large_download_streams_without_buffering(proxy: SidecarProcess) -> None:
    digest = hashlib.sha256()
    with proxy.conn(timeout=60) as conn, RssSampler(proxy) as rss:
        baseline = rss.peak
        conn.send(encode_request("GET", "/download", {"x-up": f"large={BIG}"}))
        response = conn.interim_or_response(sink=digest.update)
    assert response.status == 200
    assert digest.hexdigest() == pattern_sha256(BIG)
    assert rss.peak - baseline < 64 * 1024, f"RSS grew {rss.peak - baseline} kB"


def test_expect_100_continue(proxy: SidecarProcess) -> None:
    head = b"PUT /expect HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n"
    with proxy.conn() as conn:
        conn.send(head)
        interim = conn.interim_or_response()
        assert interim.status == 100
        conn.send(b"hello world")
        response = conn.response()
    assert response.status == 200
    assert response.json()["body_len"] == 11


def test_upgrade_is_passed_through_and_echoes(proxy: SidecarProcess, up: Upstream) -> None:
    with proxy.conn() as conn:
        conn.send(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        response = conn.response()
        assert response.status == 101
        assert (response.header("upgrade") or "").lower() == "websocket"
        for message in (b"ping", b"\x00\x01binary\xff", b"x" * 100_000):
            conn.send(message)
            assert conn.read_exactly(len(message)) == message
    assert up.last().header("upgrade") == "websocket"


def test_hop_by_hop_request_headers_are_not_forwarded(proxy: SidecarProcess) -> None:
    headers = [
        ("Connection", "keep-alive, X-Secret-Hop"),
        ("X-Secret-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Proxy-Connection", "keep-alive"),
        ("X-End-To-End", "yes"),
    ]
    with proxy.conn() as conn:
        response = conn.request("GET", "/hop", headers)
    assert response.status == 200
    for name in ("x-secret-hop", "keep-alive", "te", "proxy-connection"):
        assert response.sent(name) is None, name
    assert "x-secret-hop" not in (response.sent("connection") or "").lower()
    assert response.sent("x-end-to-end") == "yes"


def test_hop_by_hop_response_headers_are_not_relayed(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        response = conn.request("GET", "/hop-response", {"x-up": "hop"})
    assert response.status == 200
    assert response.header("x-hop-resp") is None
    assert response.header("keep-alive") is None
    assert response.header("x-up-name") == "http"


def test_x_forwarded_for_is_appended(proxy: SidecarProcess) -> None:
    with proxy.conn(source="127.0.0.5") as conn:
        first = conn.request("GET", "/xff")
        second = conn.request("GET", "/xff", {"X-Forwarded-For": "203.0.113.7"})
    assert first.sent("x-forwarded-for") == "127.0.0.5"
    assert re.fullmatch(r"203\.0\.113\.7,\s*127\.0\.0\.5", second.sent("x-forwarded-for") or "")


def test_via_is_added(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        alone = conn.request("GET", "/via")
        chained = conn.request("GET", "/via", {"Via": "1.0 fred"})
    assert "dmsc" in (alone.sent("via") or "")
    via = chained.sent("via") or ""
    assert via.startswith("1.0 fred") and "dmsc" in via


def test_x_request_id_is_generated_or_kept(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        one = conn.request("GET", "/rid").sent("x-request-id")
        two = conn.request("GET", "/rid").sent("x-request-id")
        kept = conn.request("GET", "/rid", {"X-Request-Id": "abc-123"}).sent("x-request-id")
    assert one and two and one != two
    assert len(one) >= 16
    assert kept == "abc-123"


def test_traceparent_child_keeps_trace_and_changes_parent(proxy: SidecarProcess) -> None:
    trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    with proxy.conn() as conn:
        child = conn.request("GET", "/trace", {"traceparent": f"00-{trace}-{parent}-01"})
        root = conn.request("GET", "/trace")
    match = TRACEPARENT.match(child.sent("traceparent") or "")
    assert match, child.sent("traceparent")
    assert match.group(1) == trace
    assert match.group(2) != parent
    assert match.group(3) == "01"
    fresh = TRACEPARENT.match(root.sent("traceparent") or "")
    assert fresh and fresh.group(1) != "0" * 32


def test_many_clients_at_once(proxy: SidecarProcess) -> None:
    def client(n: int) -> None:
        with proxy.conn() as conn:
            for i in range(20):
                response = conn.request("GET", f"/c{n}/{i}")
                assert response.json()["path"] == f"/c{n}/{i}"

    assert concurrently(16, client) == []


def test_client_closing_mid_request_leaves_the_proxy_serving(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        conn.send(b"POST /partial HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\nabc")
        conn.sock.shutdown(socket.SHUT_RDWR)
    with RawConn(proxy.addr()) as conn:
        assert conn.request("GET", "/still-up").status == 200


def test_metrics_parse_and_count(proxy: SidecarProcess) -> None:
    before = proxy.metric("dmsc_listener_requests_total", listener="main")
    with proxy.conn() as conn:
        for _ in range(5):
            assert conn.request("GET", "/counted").status == 200
    assert proxy.metric("dmsc_listener_requests_total", listener="main") - before >= 5
    assert proxy.metric("dmsc_cluster_upstream_requests_total", cluster="app") >= 5


def test_slow_reader_is_backpressured_not_buffered(proxy: SidecarProcess) -> None:
    digest = hashlib.sha256()
    with proxy.conn(timeout=60) as conn, RssSampler(proxy) as rss:
        baseline = rss.peak
        conn.send(encode_request("GET", "/slow-reader", {"x-up": f"large={BIG}"}))
        time.sleep(1.0)  # the upstream could send everything meanwhile; the proxy must not read it
        stalled_peak = rss.peak
        response = conn.interim_or_response(sink=digest.update)
    assert response.status == 200
    assert digest.hexdigest() == pattern_sha256(BIG)
    assert stalled_peak - baseline < 64 * 1024, f"RSS grew {stalled_peak - baseline} kB"


def test_close_delimited_upstream_body_is_framed_for_the_client(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        response = conn.request("GET", "/until-eof", {"x-up": "eof"})
        assert response.status == 200 and response.json()["path"] == "/until-eof"
        if response.header("connection") != "close":
            assert conn.request("GET", "/after-eof").json()["path"] == "/after-eof"


def test_client_connection_close_is_honoured(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        response = conn.request("GET", "/bye", {"Connection": "close"})
        assert response.status == 200 and response.json()["path"] == "/bye"
        assert conn.closed()
