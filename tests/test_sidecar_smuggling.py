"""Malformed and hostile traffic: every request-smuggling shape is refused with 400 and a closed
connection and never reaches the upstream; bad upstreams give 502; slow clients time out.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator

import pytest
from support import SidecarProcess, cluster, http_listener, route, sidecar
from upstreams import Upstream

HEAD = b"POST / HTTP/1.1\r\nHost: t\r\n"
CHUNKED = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"

# Refused on the request head alone: the upstream must not even see a head.
HEAD_SHAPES = {
    "cl-and-te": HEAD + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    "te-and-cl": HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
    "duplicate-cl": HEAD + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "duplicate-cl-equal": HEAD + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "cl-list": HEAD + b"Content-Length: 5, 6\r\n\r\nhello!",
    "cl-plus-sign": HEAD + b"Content-Length: +5\r\n\r\nhello",
    "cl-negative": HEAD + b"Content-Length: -1\r\n\r\n",
    "cl-hex": HEAD + b"Content-Length: 0x5\r\n\r\nhello",
    "cl-overflow": HEAD + b"Content-Length: 99999999999999999999999\r\n\r\n",
    "te-xchunked": HEAD + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "te-chunked-identity": HEAD + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "te-duplicate": HEAD
    + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-space-before-colon": HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te-in-http10": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
    "obs-fold-te": HEAD + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "bare-cr-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\rb\r\n\r\n",
    "bare-cr-line-end": b"GET / HTTP/1.1\rHost: t\r\n\r\n",
    "bare-lf": b"GET / HTTP/1.1\nHost: t\n\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
    "nul-in-target": b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n",
    "double-space": b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n",
    "no-host": b"GET / HTTP/1.1\r\n\r\n",
    "two-hosts": b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "space-in-name": b"GET / HTTP/1.1\r\nHost: t\r\nX A: b\r\n\r\n",
    "long-request-line": b"GET /" + b"a" * 2000 + b" HTTP/1.1\r\nHost: t\r\n\r\n",
    "long-headers": b"GET / HTTP/1.1\r\nHost: t\r\n"
    + b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 90) for i in range(60))
    + b"\r\n",
}

# The head is valid; the chunked body is not. Nothing may reach the upstream whole.
BODY_SHAPES = {
    "chunk-size-0x": CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-not-hex": CHUNKED + b"zz\r\nhello\r\n0\r\n\r\n",
    "chunk-size-space": CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n",
    "chunk-size-negative": CHUNKED + b"-5\r\nhello\r\n0\r\n\r\n",
    "chunk-size-overflow": CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n",
    "chunk-data-too-long": CHUNKED + b"5\r\nhelloXX\r\n0\r\n\r\n",
    "chunk-bare-lf": CHUNKED + b"5\nhello\n0\n\n",
}


@pytest.fixture(scope="module")
def up() -> Iterator[Upstream]:
    with Upstream("smuggling") as upstream:
        yield upstream


@pytest.fixture(scope="module")
def proxy(up: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarProcess]:
    limits: dict[str, int] = {
        "max_request_line_bytes": 1024,
        "max_header_bytes": 4096,
        "header_timeout_ms": 500,
        "idle_timeout_ms": 800,
    }
    config = {
        "listeners": [http_listener("main", [route("/", "app")], **limits)],
        "clusters": [cluster("app", up.address)],
    }
    with sidecar(config, tmp_path_factory.mktemp("smuggling")) as process:
        yield process


def refused(proxy: SidecarProcess, raw: bytes) -> None:
    with proxy.conn() as conn:
        conn.send(raw)
        response = conn.response()
        assert response.status == 400, response
        assert conn.closed(), "connection left open after a malformed request"


@pytest.mark.parametrize("shape", sorted(HEAD_SHAPES))
def test_malformed_head_is_400_closed_and_never_forwarded(
    proxy: SidecarProcess, up: Upstream, shape: str
) -> None:
    heads, requests = up.heads, up.requests
    refused(proxy, HEAD_SHAPES[shape])
    assert (up.heads, up.requests) == (heads, requests)


@pytest.mark.parametrize("shape", sorted(BODY_SHAPES))
def test_malformed_chunked_body_is_400_closed_and_never_forwarded(
    proxy: SidecarProcess, up: Upstream, shape: str
) -> None:
    requests = up.requests
    refused(proxy, BODY_SHAPES[shape])
    assert up.requests == requests


def test_smuggled_request_after_refusal_is_not_served(proxy: SidecarProcess, up: Upstream) -> None:
    smuggled = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
    raw = HEAD + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled
    refused(proxy, raw)
    assert "/smuggled" not in up.paths()


def test_well_formed_requests_still_pass(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        assert conn.request("GET", "/fine").status == 200
        conn.send(CHUNKED + b"5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n")
        response = conn.response()
        assert response.status == 200 and response.json()["body_len"] == 5


def test_garbage_from_upstream_is_502(proxy: SidecarProcess) -> None:
    response = proxy.get("/garbage", {"x-up": "garbage"})
    assert response.status == 502
    assert response.reason == "bad-upstream-response"


@pytest.mark.parametrize("mode", ["close", "reset"])
def test_upstream_hanging_up_without_answer_is_502(proxy: SidecarProcess, mode: str) -> None:
    response = proxy.get(f"/{mode}", {"x-up": mode})
    assert response.status == 502, response
    assert response.reason == "upstream-reset"


def test_slowloris_is_cut_by_the_header_timeout(proxy: SidecarProcess, up: Upstream) -> None:
    heads = up.heads
    with proxy.conn() as conn:
        conn.send(b"GET /slow HTTP/1.1\r\nHost: t\r\n")
        closed = False
        for i in range(50):  # one header line every 0.1 s for at most 5 s; the limit is 0.5 s
            try:
                conn.send(b"X-Drip-%d: x\r\n" % i)
            except OSError:
                closed = True
                break
            readable, _, _ = select.select([conn.sock], [], [], 0.1)
            if readable:
                closed = conn.closed()
                break
        assert closed, "a request head trickling in for 5 s was not cut off"
        answered = bytes(conn.buf)
    assert answered == b"" or answered.startswith(b"HTTP/1.1 408"), answered
    assert up.heads == heads


def test_idle_keep_alive_connection_is_closed(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        assert conn.request("GET", "/idle").status == 200
        assert conn.closed(wait=5.0)


def test_active_connection_outlives_the_idle_timeout(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        started = time.monotonic()
        while time.monotonic() - started < 1.6:  # twice the idle timeout, in short gaps
            assert conn.request("GET", "/busy").status == 200
            time.sleep(0.1)


def test_client_half_close_after_request_still_gets_the_response(proxy: SidecarProcess) -> None:
    with proxy.conn() as conn:
        conn.send(b"GET /half HTTP/1.1\r\nHost: t\r\n\r\n")
        conn.sock.shutdown(socket.SHUT_WR)
        response = conn.response()
        assert response.status == 200 and response.json()["path"] == "/half"
