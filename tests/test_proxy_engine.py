"""The compiled proxy engine as Python sees it: `dmsc_fast.ProxyEngine` and `ConfigError`.

Everything runs on real loopback sockets: a small echo upstream written here, the engine's
TCP (L4) listeners in front of it.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import importlib.util
import json
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import serving, wait_for
from upstreams import TcpServer

import dmsc_fast
from dmsc_fast import ConfigError, ProxyEngine


@pytest.fixture
def echo() -> Iterator[TcpServer]:
    with TcpServer("echo") as server:
        yield server


def document(*endpoints: str, **extra: Any) -> dict[str, Any]:
    """One TCP listener `l4` on a free port in front of cluster `echo`."""
    return {
        "listeners": [
            {"name": "l4", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}
        ],
        "clusters": [{"name": "echo", "lb": "round_robin", "endpoints": list(endpoints)}],
        **extra,
    }


@contextlib.contextmanager
def running(doc: dict[str, Any]) -> Iterator[ProxyEngine]:
    engine = ProxyEngine(json.dumps(doc))
    try:
        yield engine
    finally:
        engine.shutdown()


def connect(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def round_trip(sock: socket.socket, message: bytes) -> bytes:
    sock.sendall(message)
    back = b""
    while len(back) < len(message):
        chunk = sock.recv(len(message) - len(back))
        if not chunk:
            break
        back += chunk
    return back


def split_error(err: ConfigError) -> tuple[str, str]:
    path, _, message = str(err).partition(": ")
    return path, message


def test_the_engine_is_compiled_code() -> None:
    assert ProxyEngine.__module__ == "dmsc_fast._native"
    assert ConfigError.__module__ == "dmsc_fast._native"
    spec = importlib.util.find_spec("dmsc_fast._native")
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith(".so")
    assert dmsc_fast.build_info()["rust"] is True
    assert issubclass(ConfigError, ValueError)


def test_validate_names_the_field_at_fault(echo: TcpServer) -> None:
    ProxyEngine.validate(json.dumps(document(echo.address)))
    cases = [
        ({**document(echo.address), "workers": 0}, "workers"),
        ({**document(echo.address), "surprise": 1}, ""),
        (document("not-an-address"), "clusters[0].endpoints[0]"),
    ]
    for doc, path in cases:
        with pytest.raises(ConfigError) as caught:
            ProxyEngine.validate(json.dumps(doc))
        if path:
            got_path, message = split_error(caught.value)
            assert got_path.startswith(path), str(caught.value)
            assert message, str(caught.value)
        else:
            # An error about the document as a whole has no path in front.
            assert "surprise" in str(caught.value)
    bad_reference = document(echo.address)
    bad_reference["listeners"][0]["cluster"] = "missing"
    with pytest.raises(ConfigError, match=r"^listeners\[0\]\.cluster: "):
        ProxyEngine.validate(json.dumps(bad_reference))
    with pytest.raises(ValueError):
        ProxyEngine.validate("{not json")


def test_a_busy_port_fails_the_constructor(echo: TcpServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as busy:
        doc = document(echo.address)
        doc["listeners"][0]["listen"] = f"127.0.0.1:{busy.getsockname()[1]}"
        # Validation binds nothing, so it passes; starting does bind, so it fails.
        ProxyEngine.validate(json.dumps(doc))
        with pytest.raises(ConfigError) as caught:
            ProxyEngine(json.dumps(doc))
        assert split_error(caught.value)[0] == "listeners[0].listen"


def test_serves_and_reports_its_listeners(echo: TcpServer) -> None:
    with running(document(echo.address)) as engine:
        listeners = engine.listeners()
        assert list(listeners) == ["l4"]
        assert listeners["l4"].startswith("127.0.0.1:")
        assert not listeners["l4"].endswith(":0")
        with connect(listeners["l4"]) as client:
            assert round_trip(client, b"hello") == b"hello"
        assert engine.generation == 1
        assert not engine.draining
        live = json.loads(engine.config_json())
        assert live["listeners"][0]["name"] == "l4"
        assert live["clusters"][0]["endpoints"] == [echo.address]
        assert "generation=1" in repr(engine)


def test_reload_swaps_the_config_and_a_bad_one_changes_nothing(echo: TcpServer) -> None:
    doc = document(echo.address)
    with running(doc) as engine:
        first = engine.listeners()["l4"]
        doc["listeners"].append(
            {"name": "second", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "echo"}
        )
        engine.reload(json.dumps(doc))
        assert engine.generation == 2
        listeners = engine.listeners()
        assert listeners["l4"] == first
        with connect(listeners["second"]) as client:
            assert round_trip(client, b"second") == b"second"

        live = engine.config_json()
        broken = json.loads(live)
        broken["clusters"][0]["lb"] = "no_such_lb"
        with pytest.raises(ConfigError, match=r"^clusters\[0\]\.lb: "):
            engine.reload(json.dumps(broken))
        assert engine.generation == 2
        assert engine.config_json() == live
        assert engine.listeners() == listeners


def test_set_endpoints_feeds_a_discovered_cluster(echo: TcpServer) -> None:
    doc = {
        "listeners": [{"name": "l4", "listen": "127.0.0.1:0", "protocol": "tcp", "cluster": "svc"}],
        "clusters": [{"name": "svc", "service": "echo"}],
    }
    with running(doc) as engine:
        engine.set_endpoints("svc", [(echo.address, 1, True)])
        hosts = json.loads(engine.describe())["clusters"][0]["hosts"]
        assert echo.address in json.dumps(hosts)
        with connect(engine.listeners()["l4"]) as client:
            assert round_trip(client, b"found") == b"found"
        bad: list[tuple[str, list[tuple[str, int, bool]], str]] = [
            ("nope", [(echo.address, 1, True)], "cluster"),
            ("svc", [("localhost:80", 1, True)], "endpoints[0].address"),
            ("svc", [(echo.address, 1, True), (echo.address, 0, True)], "endpoints[1].weight"),
            ("svc", [(echo.address, -1, True)], "endpoints[0].weight"),
        ]
        for cluster, endpoints, path in bad:
            with pytest.raises(ConfigError) as caught:
                engine.set_endpoints(cluster, endpoints)
            assert split_error(caught.value)[0] == path
        # The refused calls left the cluster as it was.
        with connect(engine.listeners()["l4"]) as client:
            assert round_trip(client, b"still") == b"still"


def test_prometheus_text_parses_and_counts_the_session(echo: TcpServer) -> None:
    with running(document(echo.address)) as engine:
        with connect(engine.listeners()["l4"]) as client:
            assert round_trip(client, b"abc") == b"abc"
        families = {f.name: f for f in text_string_to_metric_families(engine.prometheus())}
        for name, kind in [
            ("dmsc_listener_connections", "counter"),
            ("dmsc_listener_responses", "counter"),
            ("dmsc_listener_request_duration_seconds", "histogram"),
            ("dmsc_cluster_upstream_requests", "counter"),
            ("dmsc_cluster_upstream_retries", "counter"),
            ("dmsc_cluster_upstream_request_duration_seconds", "histogram"),
            ("dmsc_proxy_config_generation", "gauge"),
        ]:
            assert families[name].type == kind, name
        accepted = [
            s for s in families["dmsc_listener_connections"].samples if s.name.endswith("_total")
        ]
        assert [(s.labels, s.value) for s in accepted] == [({"listener": "l4"}, 1.0)]
        buckets = [
            s
            for s in families["dmsc_cluster_upstream_request_duration_seconds"].samples
            if s.name.endswith("_bucket")
        ]
        assert buckets[-1].labels == {"cluster": "echo", "le": "+Inf"}


def test_drain_waits_for_the_session_in_flight_without_holding_the_gil(
    echo: TcpServer,
) -> None:
    with running(document(echo.address)) as engine:
        address = engine.listeners()["l4"]
        client = connect(address)
        assert round_trip(client, b"one") == b"one"
        result: list[bool] = []
        drainer = threading.Thread(target=lambda: result.append(engine.drain(60.0)))
        drainer.start()
        assert wait_for(lambda: engine.draining, 30)
        # The echo upstream is a Python thread: this round trip needs the GIL, so it
        # completes only because drain() released it while waiting.
        assert round_trip(client, b"two") == b"two"
        assert engine.draining
        assert drainer.is_alive()
        client.close()
        drainer.join(60)
        assert result == [True]
        assert engine.listeners() == {}
        with pytest.raises(OSError):
            connect(address).close()
        with pytest.raises(ConfigError):
            engine.reload(json.dumps(document(echo.address)))


def test_drain_gives_up_at_its_timeout_and_shutdown_is_idempotent(echo: TcpServer) -> None:
    engine = ProxyEngine(json.dumps(document(echo.address)))
    with connect(engine.listeners()["l4"]) as client:
        assert round_trip(client, b"x") == b"x"
        assert engine.drain(0.05) is False
        with pytest.raises(ValueError):
            engine.drain(-1.0)
        engine.shutdown()
        engine.shutdown()
        # The engine closed the session on shutdown: end of stream or a reset.
        try:
            rest = client.recv(10)
        except ConnectionResetError:
            rest = b""
        assert rest == b""


class _Hello(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"hello {self.path}".encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads what matters from the responses."""


def test_an_http_listener_routes_to_its_cluster() -> None:
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)) as upstream:
        doc = {
            "listeners": [
                {
                    "name": "web",
                    "listen": "127.0.0.1:0",
                    "virtual_hosts": [
                        {"name": "all", "domains": ["*"], "routes": [{"cluster": "app"}]}
                    ],
                }
            ],
            "clusters": [{"name": "app", "endpoints": [f"127.0.0.1:{upstream.server_port}"]}],
        }
        with running(doc) as engine:
            host, port = engine.listeners()["web"].rsplit(":", 1)
            client = http.client.HTTPConnection(host, int(port), timeout=30)
            for path in ("/a", "/b"):
                client.request("GET", path)
                response = client.getresponse()
                assert (response.status, response.read()) == (200, f"hello {path}".encode())
            client.close()
            families = {f.name: f for f in text_string_to_metric_families(engine.prometheus())}
            answered = {
                s.labels["code_class"]: s.value
                for s in families["dmsc_listener_responses"].samples
                if s.name.endswith("_total")
            }
            assert answered["2xx"] == 2.0
