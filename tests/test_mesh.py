"""dmsc.Mesh, MeshConfig and ServiceEndpoint: registration, health, discovery, accounting.

Health checks run against real HTTP servers on loopback whose answer a test can flip.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dmsc
from dmsc import Mesh, MeshConfig, NoHealthyInstanceError, ServiceEndpoint
from dmsc.config import ConfigError, load_config
from dmsc_fast import ManualClock

HOST = "127.0.0.1"


class HealthServer:
    """A real HTTP server on loopback answering GET /health with `status` after `delay` s."""

    def __init__(self) -> None:
        self.status = 200
        self.delay = 0.0
        self.hits = 0
        self.concurrent = 0
        self.most_concurrent = 0
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    owner.hits += 1
                    owner.concurrent += 1
                    owner.most_concurrent = max(owner.most_concurrent, owner.concurrent)
                if owner.delay:
                    time.sleep(owner.delay)
                with lock:
                    owner.concurrent -= 1
                self.send_response(owner.status if self.path == "/health" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128

        self.server = Server((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def endpoint(self, name: str = "users", **fields: Any) -> ServiceEndpoint:
        return ServiceEndpoint(name, HOST, self.port, health_check_url="/health", **fields)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def health() -> Iterator[HealthServer]:
    server = HealthServer()
    yield server
    server.close()


@pytest.fixture
def make_server() -> Iterator[Callable[[], HealthServer]]:
    servers: list[HealthServer] = []

    def make() -> HealthServer:
        servers.append(HealthServer())
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
    return port


def quiet_mesh(**config: Any) -> Mesh:
    """A mesh that takes registrations at their word (no probing)."""
    return Mesh(MeshConfig(**{"initial_health": "healthy", **config}))


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


# --- ServiceEndpoint ---


def test_endpoint_defaults_and_dict_round_trip_through_json() -> None:
    endpoint = ServiceEndpoint("users", HOST, 8080, labels={"tier": "gold"})
    assert (endpoint.version, endpoint.zone, endpoint.weight) == ("", "", 1)
    data = json.loads(json.dumps(endpoint.to_dict()))
    assert data == {
        "name": "users",
        "host": HOST,
        "port": 8080,
        "version": "",
        "health_check_url": "",
        "zone": "",
        "cluster": "",
        "labels": {"tier": "gold"},
        "weight": 1,
    }
    assert ServiceEndpoint.from_dict(data) == endpoint
    assert endpoint.address == "127.0.0.1:8080"


def test_endpoint_is_frozen_hashable_and_copies_its_labels() -> None:
    labels = {"a": "1"}
    endpoint = ServiceEndpoint("users", HOST, 1, labels=labels)
    labels["a"] = "2"
    assert endpoint.labels == {"a": "1"}
    assert hash(endpoint) == hash(ServiceEndpoint("users", HOST, 1, labels={"a": "1"}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        endpoint.port = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"host": HOST, "port": 1}, "name"),
        ({"name": "a", "port": 1}, "host"),
        ({"name": "a", "host": HOST}, "port"),
        ({"name": "a", "host": HOST, "port": "80"}, "port"),
        ({"name": "a", "host": HOST, "port": True}, "port"),
        ({"name": 5, "host": HOST, "port": 1}, "name"),
        ({"name": "a", "host": HOST, "port": 1, "weight": 1.5}, "weight"),
        ({"name": "a", "host": HOST, "port": 1, "labels": ["x"]}, "labels"),
        ({"name": "a", "host": HOST, "port": 1, "labels": {"k": 1}}, "labels"),
        ({"name": "a", "host": HOST, "port": 1, "helth_check_url": "/"}, "helth_check_url"),
    ],
)
def test_from_dict_names_the_bad_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        ServiceEndpoint.from_dict(data)


text = st.text(alphabet="abcdefghij-_.0123456789", max_size=12)


@given(
    name=text,
    port=st.integers(1, 65535),
    version=text,
    labels=st.dictionaries(text, text, max_size=4),
    weight=st.integers(1, 1000),
)
@settings(max_examples=50)
def test_any_endpoint_survives_the_json_round_trip(
    name: str, port: int, version: str, labels: dict[str, str], weight: int
) -> None:
    endpoint = ServiceEndpoint(name, HOST, port, version=version, labels=labels, weight=weight)
    assert ServiceEndpoint.from_dict(json.loads(json.dumps(endpoint.to_dict()))) == endpoint


# --- MeshConfig ---


def test_config_defaults_are_the_cores() -> None:
    assert Mesh().config == MeshConfig()
    assert MeshConfig().initial_health == "check"


def test_config_round_trips_through_the_core() -> None:
    config = MeshConfig(
        enable_mtls=True,
        enable_tracing=False,
        circuit_breaker_failure_rate=0.25,
        circuit_breaker_timeout=2.5,
        circuit_breaker_minimum_calls=3,
        circuit_breaker_window=7,
        load_balancing="maglev",
        health_check_interval=0.25,
        health_check_timeout=0.5,
        healthy_threshold=3,
        unhealthy_threshold=4,
        health_check_jitter=0.5,
        health_check_workers=16,
        health_check_expected_statuses=((200, 300), (418, 419)),
        initial_health="unknown",
        domain="mesh.local",
    )
    assert Mesh(config).config == config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("circuit_breaker_failure_rate", 0.0),
        ("circuit_breaker_failure_rate", 1.5),
        ("circuit_breaker_failure_rate", float("nan")),
        ("circuit_breaker_timeout", 0.0),
        ("circuit_breaker_timeout", -1.0),
        ("circuit_breaker_minimum_calls", 0),
        ("circuit_breaker_minimum_calls", -1),
        ("circuit_breaker_window", 5),
        ("load_balancing", "fastest"),
        ("health_check_interval", 0.0),
        ("health_check_interval", float("inf")),
        ("health_check_timeout", 0.0),
        ("healthy_threshold", 0),
        ("unhealthy_threshold", 0),
        ("health_check_jitter", 1.5),
        ("health_check_jitter", -0.1),
        ("health_check_workers", 0),
        ("health_check_workers", 5000),
        ("initial_health", "maybe"),
        ("domain", "bad domain"),
        ("domain", ""),
        ("enable_mtls", 1),
        ("healthy_threshold", 1.0),
        ("health_check_interval", "5"),
        ("health_check_expected_statuses", ()),
        ("health_check_expected_statuses", ((300, 200),)),
        ("health_check_expected_statuses", ((200, 200),)),
        ("health_check_expected_statuses", ((99, 200),)),
        ("health_check_expected_statuses", ((200, 601),)),
        ("health_check_expected_statuses", ((200, 10**30),)),
        ("health_check_expected_statuses", ((200, 300, 400),)),
        ("health_check_expected_statuses", ((200, True),)),
        ("health_check_expected_statuses", "200-300"),
    ],
)
def test_bad_settings_raise_value_errors_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        MeshConfig(**{field: value})


def test_expected_statuses_accept_lists_as_yaml_gives_them() -> None:
    config = MeshConfig(health_check_expected_statuses=[[200, 300], [418, 419]])  # type: ignore[arg-type]
    assert config.health_check_expected_statuses == ((200, 300), (418, 419))
    assert MeshConfig().health_check_expected_statuses == ((200, 300),)
    assert Mesh(config).config == config


def test_expected_statuses_from_a_controller_yaml_file(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("mesh:\n  health_check_expected_statuses: [[200, 400]]\n")
    assert load_config(good).mesh.health_check_expected_statuses == ((200, 400),)
    bad = tmp_path / "bad.yaml"
    bad.write_text("mesh:\n  domain: dmsc\n  health_check_expected_statuses: [[400, 200]]\n")
    with pytest.raises(ConfigError, match=r":3: mesh\.health_check_expected_statuses: "):
        load_config(bad)


def test_a_bad_reload_changes_nothing() -> None:
    mesh = quiet_mesh()
    with pytest.raises(ValueError, match=r"^health_check_workers: "):
        mesh.reload(dataclasses.replace(mesh.config, health_check_workers=0))
    assert mesh.config.health_check_workers == 4


# --- registration and health ---


def test_registration_probes_over_http_before_returning(make_server: Any) -> None:
    up, down = make_server(), make_server()
    down.status = 503
    mesh = Mesh()
    assert mesh.register(up.endpoint()) == "added"
    assert mesh.register(down.endpoint()) == "added"
    assert (up.hits, down.hits) == (1, 1)
    health = {i.endpoint.port: i.health for i in mesh.instances("users")}
    assert health == {up.port: "healthy", down.port: "unhealthy"}
    assert mesh.discover("users") == up.endpoint()


def test_expected_statuses_decide_http_checks(health: HealthServer) -> None:
    health.status = 418
    teapots = MeshConfig(health_check_expected_statuses=((418, 419),), unhealthy_threshold=1)
    strict, lenient = Mesh(), Mesh(teapots)
    strict.register(health.endpoint())
    lenient.register(health.endpoint())
    assert strict.instances("users")[0].health == "unhealthy"
    assert lenient.instances("users")[0].health == "healthy"
    assert lenient.discover("users") == health.endpoint()
    # Scheduled checks use the same ranges, and a reload changes them.
    health.status = 200
    assert lenient.check_all() == 1
    assert lenient.instances("users")[0].health == "unhealthy"
    lenient.reload(dataclasses.replace(teapots, health_check_expected_statuses=((200, 300),)))
    lenient.check_all()
    assert lenient.instances("users")[0].health == "healthy"


def test_tcp_checks_without_a_url(health: HealthServer) -> None:
    mesh = Mesh()
    mesh.register(ServiceEndpoint("tcp", HOST, health.port))
    mesh.register(ServiceEndpoint("tcp", HOST, closed_port()))
    assert [i.health for i in mesh.instances("tcp")] == ["healthy", "unhealthy"]
    assert health.hits == 0  # a TCP check sends no request


def test_initial_health_choices(health: HealthServer) -> None:
    mesh = Mesh(MeshConfig(initial_health="unknown"))
    mesh.register(health.endpoint())
    assert mesh.instances("users")[0].health == "unknown"
    assert mesh.discover("users") is None
    assert health.hits == 0
    mesh.register(health.endpoint("b"), initial_health="unhealthy")
    mesh.register(health.endpoint("c"), initial_health="check")
    assert [mesh.instances(n)[0].health for n in ("b", "c")] == ["unhealthy", "healthy"]
    assert health.hits == 1


def test_background_checks_follow_the_server(health: HealthServer) -> None:
    config = MeshConfig(health_check_interval=0.05, unhealthy_threshold=1, initial_health="unknown")
    with Mesh(config) as mesh:
        assert mesh.is_running
        mesh.register(health.endpoint())
        assert wait_for(lambda: mesh.healthy_count("users") == 1)
        health.status = 500
        assert wait_for(lambda: mesh.healthy_count("users") == 0)
        assert mesh.discover("users") is None
        health.status = 200
        assert wait_for(lambda: mesh.healthy_count("users") == 1)
        assert mesh.health_checks >= 3
    assert not mesh.is_running
    mesh.stop()  # idempotent


def test_thresholds_need_consecutive_results(health: HealthServer) -> None:
    mesh = Mesh(MeshConfig(healthy_threshold=2, unhealthy_threshold=2))
    mesh.register(health.endpoint())
    health.status = 503
    assert mesh.check_all() == 1
    assert mesh.healthy_count("users") == 1
    mesh.check_all()
    assert mesh.healthy_count("users") == 0
    health.status = 200
    mesh.check_all()
    assert mesh.healthy_count("users") == 0
    mesh.check_all()
    assert mesh.healthy_count("users") == 1
    assert mesh.health_checks == 4


def test_check_all_probes_in_parallel(health: HealthServer) -> None:
    health.delay = 0.2
    mesh = quiet_mesh(health_check_workers=8)
    for n in range(8):
        mesh.register(health.endpoint(f"s{n}"))
    assert mesh.check_all() == 8
    assert health.hits == 8
    assert health.most_concurrent > 1
    assert mesh.healthy_count("s0") == 1


def test_start_twice_is_refused() -> None:
    mesh = Mesh()
    mesh.start()
    try:
        with pytest.raises(RuntimeError):
            mesh.start()
    finally:
        mesh.stop()


def test_updates_keep_state_and_deregistration_reports() -> None:
    mesh = quiet_mesh()
    port = closed_port()
    before = mesh.revision
    assert mesh.register(ServiceEndpoint("users", HOST, port)) == "added"
    with mesh.request("users"):
        assert mesh.register(ServiceEndpoint("users", HOST, port, zone="eu")) == "updated"
        [instance] = mesh.instances("users")
        assert (instance.endpoint.zone, instance.active_requests) == ("eu", 1)
    assert mesh.instances("users")[0].active_requests == 0
    assert mesh.services() == ["users"]
    assert mesh.deregister("users", HOST, port)
    assert not mesh.deregister("users", HOST, port)
    assert mesh.services() == []
    assert mesh.revision >= before + 3


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "bad name"}, "name"),
        ({"name": ""}, "name"),
        ({"host": ""}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"health_check_url": "health"}, "health_check_url"),
        ({"weight": 0}, "weight"),
        ({"weight": -1}, "weight"),
        ({"zone": "x" * 300}, "zone"),
    ],
)
def test_bad_registrations_name_the_field_and_leave_nothing(
    fields: dict[str, Any], field: str
) -> None:
    mesh = quiet_mesh()
    endpoint = dataclasses.replace(ServiceEndpoint("users", HOST, 1), **fields)
    revision = mesh.revision
    with pytest.raises(ValueError, match=f"^{field}: "):
        mesh.register(endpoint)
    assert mesh.services() == []
    assert mesh.revision == revision


def test_async_registration_does_not_block_the_loop(health: HealthServer) -> None:
    health.delay = 0.3
    mesh = Mesh()

    async def main() -> tuple[str, int, bool]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        outcome = await mesh.aregister(health.endpoint())
        task.cancel()
        removed = await mesh.aderegister("users", HOST, health.port)
        return outcome, ticks, removed

    outcome, ticks, removed = asyncio.run(main())
    assert (outcome, removed) == ("added", True)
    assert ticks >= 10


# --- discovery ---


def test_discover_returns_the_registered_object_and_filters_versions() -> None:
    mesh = quiet_mesh()
    v1 = ServiceEndpoint("users", HOST, closed_port(), version="v1")
    v2 = ServiceEndpoint("users", HOST, closed_port(), version="v2")
    mesh.register(v1)
    mesh.register(v2)
    assert {id(mesh.discover("users")) for _ in range(10)} == {id(v1), id(v2)}
    assert all(mesh.discover("users", version="v2") is v2 for _ in range(5))
    assert mesh.discover("users", version="v3") is None
    assert mesh.discover("nobody") is None
    assert mesh.instances("users")[0].active_requests == 0  # discover leaves nothing in flight


@pytest.mark.parametrize("algorithm", ["consistent_hash", "maglev"])
def test_hash_keys_stick_to_an_instance(algorithm: str) -> None:
    mesh = quiet_mesh(load_balancing=algorithm)
    for _ in range(5):
        mesh.register(ServiceEndpoint("users", HOST, closed_port()))
    for key in ("alice", b"bob", "carol"):
        first = mesh.discover("users", key=key)
        assert all(mesh.discover("users", key=key) is first for _ in range(10))
    with pytest.raises(TypeError):
        mesh.discover("users", key=5)  # type: ignore[arg-type]


def test_set_health_takes_instances_out_and_back() -> None:
    mesh = quiet_mesh()
    port = closed_port()
    mesh.register(ServiceEndpoint("users", HOST, port))
    revision = mesh.revision
    assert mesh.set_health("users", HOST, port, False)
    assert mesh.revision > revision
    assert mesh.discover("users") is None
    assert mesh.set_health("users", HOST, port, True)
    assert mesh.discover("users") is not None
    assert not mesh.set_health("users", HOST, port + 1, True)


def test_resolve_lists_every_healthy_instance_shuffled() -> None:
    mesh = quiet_mesh(domain="mesh.local")
    endpoints = [
        ServiceEndpoint("users", HOST, closed_port(), version=f"v{n % 2}") for n in range(8)
    ]
    for endpoint in endpoints:
        mesh.register(endpoint)
    mesh.set_health("users", HOST, endpoints[0].port, False)
    healthy = set(endpoints[1:])
    orders = set()
    for _ in range(20):
        answer = mesh.resolve("users.service.mesh.local.")
        assert answer is not None
        assert set(answer) == healthy and len(answer) == len(healthy)
        orders.add(tuple(e.port for e in answer))
    assert len(orders) > 1
    assert set(mesh.resolve("v1.users.SERVICE.Mesh.Local") or []) == {
        e for e in endpoints[1:] if e.version == "v1"
    }
    assert mesh.resolve("v7.users.service.mesh.local") == []
    assert mesh.resolve("users.service.dmsc") is None
    assert mesh.resolve("nobody.service.mesh.local") is None
    for endpoint in endpoints:
        mesh.set_health("users", HOST, endpoint.port, False)
    assert mesh.resolve("users.service.mesh.local") == []


def test_least_requests_uses_requests_in_flight_and_load_reports() -> None:
    mesh = quiet_mesh(load_balancing="least_requests")
    busy = ServiceEndpoint("users", HOST, closed_port())
    idle = ServiceEndpoint("users", HOST, closed_port())
    mesh.register(busy)
    mesh.register(idle)
    assert mesh.report_load("users", HOST, busy.port, active_requests=50, latency_ewma=0.2)
    # Two draws with replacement: the loaded instance wins only when drawn twice (1 in 4).
    busy_picks = sum(mesh.discover("users") is busy for _ in range(400))
    assert busy_picks < 160
    by_port = {i.endpoint.port: i for i in mesh.instances("users")}
    assert by_port[busy.port].active_requests == 50
    assert by_port[busy.port].latency_ewma == pytest.approx(0.2)
    assert by_port[idle.port].latency_ewma is None
    assert not mesh.report_load("users", HOST, 1, active_requests=1)
    with pytest.raises(ValueError, match=r"^active_requests: "):
        mesh.report_load("users", HOST, busy.port, active_requests=-1)


# --- requests, outcomes, breakers ---


def test_requests_count_in_flight_and_record_outcome_and_latency() -> None:
    clock = ManualClock()
    mesh = Mesh(MeshConfig(initial_health="healthy"), clock=clock)
    mesh.register(ServiceEndpoint("users", HOST, closed_port()))
    request = mesh.request("users")
    with request as endpoint:
        assert request.endpoint is endpoint
        assert mesh.instances("users")[0].active_requests == 1
        clock.advance(0.25)
    [instance] = mesh.instances("users")
    assert instance.active_requests == 0
    assert instance.latency_ewma == pytest.approx(0.25)
    assert (mesh.total_requests, mesh.failed_requests) == (1, 0)
    with pytest.raises(KeyError), mesh.request("users"):
        raise KeyError("boom")
    with mesh.request("users") as endpoint:
        request.fail()  # another request's flag changes nothing here
    failing = mesh.request("users")
    with failing:
        failing.fail()
    assert (mesh.total_requests, mesh.failed_requests) == (4, 2)
    with pytest.raises(NoHealthyInstanceError, match="nobody"):
        mesh.request("nobody").__enter__()


def test_async_with_requests() -> None:
    mesh = quiet_mesh()
    mesh.register(ServiceEndpoint("users", HOST, closed_port()))

    async def main() -> int:
        async with mesh.request("users") as endpoint:
            return mesh.instances(endpoint.name)[0].active_requests

    assert asyncio.run(main()) == 1
    assert mesh.total_requests == 1


def test_record_feeds_counters_and_opens_breakers() -> None:
    clock = ManualClock()
    config = MeshConfig(
        initial_health="healthy",
        circuit_breaker_minimum_calls=4,
        circuit_breaker_window=4,
        circuit_breaker_timeout=10.0,
    )
    mesh = Mesh(config, clock=clock)
    endpoint = ServiceEndpoint("users", HOST, closed_port())
    mesh.register(endpoint)
    for _ in range(4):
        assert mesh.record(endpoint, False, 0.01)
    assert (mesh.total_requests, mesh.failed_requests) == (4, 4)
    assert mesh.healthy_count("users") == 1  # healthy, but its breaker is open
    assert mesh.discover("users") is None
    clock.advance(11.0)
    assert mesh.discover("users") is endpoint  # a half-open trial
    assert mesh.record(endpoint, True, 0.01)
    assert not mesh.record(ServiceEndpoint("users", HOST, 1), True, 0.0)
    with pytest.raises(ValueError, match=r"^latency: "):
        mesh.record(endpoint, True, -1.0)


def test_breakers_off_and_metrics_off() -> None:
    mesh = quiet_mesh(enable_circuit_breaker=False, enable_metrics=False)
    endpoint = ServiceEndpoint("users", HOST, closed_port())
    mesh.register(endpoint)
    for _ in range(200):
        mesh.record(endpoint, False, 0.0)
    assert mesh.discover("users") is endpoint
    assert mesh.total_requests == 0


def test_reload_keeps_registrations_and_changes_behaviour() -> None:
    mesh = quiet_mesh()
    endpoints = [ServiceEndpoint("users", HOST, closed_port()) for _ in range(4)]
    for endpoint in endpoints:
        mesh.register(endpoint)
    revision = mesh.revision
    mesh.reload(dataclasses.replace(mesh.config, load_balancing="maglev", domain="corp"))
    assert mesh.revision > revision
    assert mesh.config.load_balancing == "maglev"
    first = mesh.discover("users", key="k")
    assert all(mesh.discover("users", key="k") is first for _ in range(10))
    assert len(mesh.resolve("users.service.corp") or []) == 4


def test_trace_context() -> None:
    mesh = Mesh()
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    child = mesh.trace_context(parent)
    assert child is not None and child.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert child != parent
    root = mesh.trace_context()
    assert root is not None and len(root) == 55
    with pytest.raises(ValueError, match=r"^incoming: "):
        mesh.trace_context("garbage")
    assert Mesh(MeshConfig(enable_tracing=False)).trace_context() is None


def test_public_names() -> None:
    assert dmsc.Mesh is Mesh and dmsc.MeshConfig is MeshConfig
    assert dmsc.ServiceEndpoint is ServiceEndpoint


# --- concurrency and model checks ---


def test_concurrent_registration_and_discovery() -> None:
    mesh = quiet_mesh(load_balancing="least_requests")
    ports = [closed_port() for _ in range(20)]
    errors: list[BaseException] = []

    def churn(offset: int) -> None:
        try:
            for round_ in range(50):
                port = ports[(offset + round_) % len(ports)]
                mesh.register(ServiceEndpoint("users", HOST, port))
                with mesh.request("users"):
                    pass
                mesh.deregister("users", HOST, ports[(offset + round_ + 7) % len(ports)])
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert mesh.total_requests == 200
    assert all(i.active_requests == 0 for i in mesh.instances("users"))


operation = st.tuples(
    st.sampled_from(["register", "deregister", "down", "up"]),
    st.sampled_from(["a", "b", "c.d"]),
    st.integers(1, 6),
    st.sampled_from(["", "v1", "v2"]),
)


@given(st.lists(operation, max_size=40))
@settings(max_examples=60, deadline=None)
def test_registry_matches_a_model(ops: list[tuple[str, str, int, str]]) -> None:
    mesh = quiet_mesh()
    model: dict[tuple[str, int], tuple[ServiceEndpoint, bool]] = {}
    for op, name, port, version in ops:
        key = (name, port)
        if op == "register":
            endpoint = ServiceEndpoint(name, HOST, port, version=version)
            was_healthy = model[key][1] if key in model else True
            expected = "updated" if key in model else "added"
            assert mesh.register(endpoint, initial_health="unknown" if key in model else None) == (
                expected
            )
            model[key] = (endpoint, was_healthy)
        elif op == "deregister":
            assert mesh.deregister(name, HOST, port) == (key in model)
            model.pop(key, None)
        else:
            assert mesh.set_health(name, HOST, port, op == "up") == (key in model)
            if key in model:
                model[key] = (model[key][0], op == "up")
    names = sorted({name for name, _ in model})
    assert mesh.services() == names
    for name in names:
        mine = {e for (n, _), (e, _) in model.items() if n == name}
        healthy = {e for (n, _), (e, ok) in model.items() if n == name and ok}
        assert {i.endpoint for i in mesh.instances(name)} == mine
        assert mesh.healthy_count(name) == len(healthy)
        assert set(mesh.resolve(f"{name}.service.dmsc") or []) == healthy
        for version in ("v1", "v2"):
            answer = mesh.resolve(f"{version}.{name}.service.dmsc")
            assert set(answer or []) == {e for e in healthy if e.version == version}
        picked = mesh.discover(name)
        assert (picked in healthy) if healthy else picked is None
