"""The in-process mesh: discovery from Python, health check throughput, registry memory.

What is compared, operation by operation:

* "mesh discover, 1000 instances": ``dmsc.Mesh.discover("users")`` over 1000 healthy
  instances with round robin (the healthy set prebuilt; each pick also asks the instance's
  breaker), against a pure-Python registry doing the least a Python implementation must:
  a dict lookup of the service's healthy snapshot, a round-robin counter, and a breaker
  state check of the chosen instance.
* "mesh request, 1000 instances": ``with mesh.request("users"): pass`` (pick, count in
  flight, record the outcome and latency in the breaker, the EWMA and the counters).

Two figures are not per-call costs and are printed (and written to
``bench-results/mesh.json``) rather than tabulated:

* health checks: 10,000 instances (100 services x 100 ports) checked over HTTP against a
  loopback server in another process; once as one parallel sweep (``Mesh.check_all``) and
  once by the scheduled checker at a 1 s interval: checks per second, and the checker's
  CPU time per check (this process's CPU time; the server's is not counted), so "checks per
  CPU-second" is the throughput one core sustains;
* memory: the resident set size of a registry of 100,000 instances (1000 services x 100),
  in a fresh interpreter, split into the endpoint objects and the registry itself.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dmsc import Mesh, MeshConfig, ServiceEndpoint

Measure = Callable[..., Any]
OUT = Path(__file__).resolve().parent.parent / "bench-results"
HOST = "127.0.0.1"


def _record(name: str, figures: dict[str, Any]) -> None:
    """Adds `figures` under `name` to bench-results/mesh.json and prints them."""
    OUT.mkdir(exist_ok=True)
    path = OUT / "mesh.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\n{name}: {json.dumps(figures)}")


def _thousand(mesh: Mesh) -> None:
    for port in range(20000, 21000):
        mesh.register(ServiceEndpoint("users", HOST, port), initial_health="healthy")


class PurePythonRegistry:
    """The pure-Python peer: a healthy snapshot per service, round robin, breaker check."""

    class Instance:
        __slots__ = ("breaker_state", "endpoint")

        def __init__(self, endpoint: ServiceEndpoint) -> None:
            self.endpoint = endpoint
            self.breaker_state = "closed"

    def __init__(self) -> None:
        self.healthy: dict[str, tuple[PurePythonRegistry.Instance, ...]] = {}
        self.counters: dict[str, Iterator[int]] = {}

    def register(self, endpoint: ServiceEndpoint) -> None:
        current = self.healthy.get(endpoint.name, ())
        self.healthy[endpoint.name] = (*current, self.Instance(endpoint))
        self.counters.setdefault(endpoint.name, itertools.count())

    def discover(self, name: str) -> ServiceEndpoint | None:
        instances = self.healthy.get(name)
        if not instances:
            return None
        first = next(self.counters[name])
        for offset in range(len(instances)):
            instance = instances[(first + offset) % len(instances)]
            if instance.breaker_state != "open":
                return instance.endpoint
        return None


def test_discover_dmsc(measure: Measure) -> None:
    mesh = Mesh()
    _thousand(mesh)
    found = measure("mesh discover, 1000 instances", "dmsc", mesh.discover, "users")
    assert isinstance(found, ServiceEndpoint)


def test_discover_pure_python(measure: Measure) -> None:
    registry = PurePythonRegistry()
    for port in range(20000, 21000):
        registry.register(ServiceEndpoint("users", HOST, port))
    found = measure("mesh discover, 1000 instances", "pure-python", registry.discover, "users")
    assert isinstance(found, ServiceEndpoint)


def test_request_dmsc(measure: Measure) -> None:
    mesh = Mesh()
    _thousand(mesh)

    def one_request() -> None:
        with mesh.request("users"):
            pass

    measure("mesh request, 1000 instances", "dmsc", one_request)
    assert mesh.total_requests > 0
    assert mesh.failed_requests == 0


# --- health check throughput ---

SERVER = textwrap.dedent(
    """
    import selectors, socket, sys
    REPLY = b"HTTP/1.1 200 OK\\r\\nContent-Length: 0\\r\\nConnection: close\\r\\n\\r\\n"
    selector = selectors.DefaultSelector()
    ports = []
    for _ in range(int(sys.argv[1])):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        listener.setblocking(False)
        selector.register(listener, selectors.EVENT_READ)
        ports.append(listener.getsockname()[1])
    print(" ".join(map(str, ports)), flush=True)
    while True:
        for key, _ in selector.select():
            while True:
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    break
                try:
                    conn.settimeout(1.0)
                    conn.recv(4096)
                    conn.sendall(REPLY)
                except OSError:
                    pass
                conn.close()
    """
)

SERVICES = 100
PORTS = 100


@pytest.fixture(scope="module")
def server_ports() -> Iterator[list[int]]:
    """PORTS listening ports of an HTTP health server running in another process."""
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(PORTS)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ports = [int(p) for p in process.stdout.readline().split()]
        assert len(ports) == PORTS
        yield ports
    finally:
        process.kill()
        process.wait()


def _ten_thousand(ports: list[int], **config: Any) -> Mesh:
    mesh = Mesh(MeshConfig(initial_health="healthy", **config))
    for service in range(SERVICES):
        for port in ports:
            mesh.register(ServiceEndpoint(f"svc-{service}", HOST, port, health_check_url="/health"))
    return mesh


def _healthy(mesh: Mesh) -> int:
    return sum(mesh.healthy_count(f"svc-{s}") for s in range(SERVICES))


def test_health_check_sweep_10000(server_ports: list[int]) -> None:
    mesh = _ten_thousand(server_ports, health_check_workers=8)
    cpu, wall = time.process_time(), time.perf_counter()
    checked = mesh.check_all()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert checked == SERVICES * PORTS
    assert _healthy(mesh) == checked
    _record(
        "health checks, one sweep of 10,000 instances (8 workers)",
        {
            "seconds": round(wall, 3),
            "checks_per_second": round(checked / wall),
            "checker_cpu_us_per_check": round(cpu / checked * 1e6, 1),
            "checks_per_cpu_second": round(checked / cpu),
        },
    )


def test_scheduled_health_checks_10000(server_ports: list[int]) -> None:
    mesh = _ten_thousand(
        server_ports, health_check_interval=1.0, health_check_jitter=0.1, health_check_workers=8
    )
    with mesh:
        time.sleep(0.5)
        checks, cpu, wall = mesh.health_checks, time.process_time(), time.perf_counter()
        time.sleep(3.0)
        checks = mesh.health_checks - checks
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert _healthy(mesh) == SERVICES * PORTS
    rate = checks / wall
    assert rate > 0.8 * SERVICES * PORTS  # every instance about once per second
    _record(
        "health checks, 10,000 instances scheduled at 1 s (8 workers)",
        {
            "checks_per_second": round(rate),
            "checker_cpu_share_of_one_core": round(cpu / wall, 3),
            "checker_cpu_us_per_check": round(cpu / checks * 1e6, 1),
            "checks_per_cpu_second": round(checks / cpu),
        },
    )


# --- memory ---

RSS_PROBE = textwrap.dedent(
    """
    import json, time
    from dmsc import Mesh, MeshConfig, ServiceEndpoint

    def rss_mb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024

    N = 100_000
    base = rss_mb()
    endpoints = [
        ServiceEndpoint(
            f"svc-{i // 100}", f"127.1.{(i >> 8) & 255}.{i & 255}", 8000 + i % 100,
            version="v1" if i % 2 else "v2", zone="zone-a", health_check_url="/health",
        )
        for i in range(N)
    ]
    objects = rss_mb()
    mesh = Mesh(MeshConfig(initial_health="healthy"))
    started = time.perf_counter()
    for endpoint in endpoints:
        mesh.register(endpoint)
    registered = time.perf_counter() - started
    for service in range(N // 100):
        assert mesh.discover(f"svc-{service}") is not None
    del endpoints
    total = rss_mb()
    print(json.dumps({
        "instances": N,
        "endpoint_objects_mb": round(objects - base, 1),
        "registry_mb": round(total - objects, 1),
        "total_mb": round(total - base, 1),
        "bytes_per_instance": round((total - base) * 1024 * 1024 / N),
        "register_us_each": round(registered / N * 1e6, 2),
        "process_rss_mb": round(total, 1),
    }))
    """
)


def test_registry_memory_100000() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    out = subprocess.run(
        [sys.executable, "-c", RSS_PROBE], capture_output=True, text=True, check=True, env=env
    )
    figures = json.loads(out.stdout)
    assert figures["instances"] == 100_000
    _record("registry of 100,000 instances (RSS)", figures)
