"""Control-plane figures: watch fan-out, registration throughput, discovery from Python.

Usage: python benches/control_plane.py   (run by `make bench`)

Starts a real controller process on loopback (in-memory store) and measures:
- how long a registration takes to reach 100 long-polling watchers (p50/max);
- registrations per second through the HTTP API;
- `dmsc.Mesh.discover` from Python at 1000 instances (ns per call);
- resident memory of a mesh holding 100,000 instances.
"""

from __future__ import annotations

import http.client
import json
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
import timeit
from socket import socket

from dmsc.mesh import Mesh, MeshConfig, ServiceEndpoint

WATCHERS = 100
REGISTRATIONS = 500


def _start_controller() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dmsc.cli",
            "controller",
            "--http",
            "127.0.0.1:0",
            "--dns",
            "off",
            "--store",
            "memory:",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    match = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    assert match, "controller did not start"
    return proc, int(match.group(1))


def _request(port: int, method: str, path: str, body: object = None) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, None if body is None else json.dumps(body))
    response = conn.getresponse()
    payload: dict[str, object] = json.loads(response.read())
    conn.close()
    return payload


def _listener() -> tuple[socket, int]:
    sock = socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock, sock.getsockname()[1]


def watch_fanout(port: int) -> dict[str, float]:
    """Seconds from a registration's acknowledgement to each of WATCHERS watchers."""
    revision = int(str(_request(port, "GET", "/v1/registry/services")["revision"]))
    seen: list[float] = []
    lock = threading.Lock()

    def watch() -> None:
        _request(port, "GET", f"/v1/registry/watch?index={revision}&wait=30")
        with lock:
            seen.append(time.monotonic())

    threads = [threading.Thread(target=watch) for _ in range(WATCHERS)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)  # every watcher is parked
    sock, service_port = _listener()
    started = time.monotonic()
    _request(
        port,
        "PUT",
        "/v1/registry/instances",
        {"name": "fanout", "host": "127.0.0.1", "port": service_port},
    )
    for thread in threads:
        thread.join()
    sock.close()
    delays = sorted(t - started for t in seen)
    return {"watchers": len(delays), "p50_s": statistics.median(delays), "max_s": delays[-1]}


def registration_rate(port: int) -> float:
    sock, service_port = _listener()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    for i in range(REGISTRATIONS):
        body = {"name": f"svc-{i % 50}", "host": f"127.0.0.{1 + i // 50}", "port": service_port}
        conn.request("PUT", "/v1/registry/instances", json.dumps(body))
        conn.getresponse().read()
    elapsed = time.perf_counter() - started
    conn.close()
    sock.close()
    return REGISTRATIONS / elapsed


def discover_ns(instances: int = 1000) -> float:
    mesh = Mesh(MeshConfig(initial_health="healthy"))
    for i in range(instances):
        mesh.register(ServiceEndpoint("bench", f"10.1.{i // 250}.{i % 250 + 1}", 8080))
    timer = timeit.Timer("discover('bench')", globals={"discover": mesh.discover})
    number = 200_000
    return min(timer.repeat(5, number)) / number * 1e9


def registry_rss_mb(instances: int = 100_000) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mesh = Mesh(MeshConfig(initial_health="healthy"))
    for i in range(instances):
        mesh.register(
            ServiceEndpoint(f"svc-{i % 1000}", f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 80)
        )
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert mesh.healthy_count("svc-0") == instances // 1000
    return (after - before) / 1024


def main() -> int:
    proc, port = _start_controller()
    try:
        fanout = watch_fanout(port)
        rate = registration_rate(port)
    finally:
        proc.terminate()
        proc.wait()
    rows = [
        ("registration seen by 100 watchers, p50", f"{fanout['p50_s'] * 1e3:.1f} ms"),
        ("registration seen by 100 watchers, max", f"{fanout['max_s'] * 1e3:.1f} ms"),
        ("registrations through the HTTP API", f"{rate:.0f} /s"),
        ("Mesh.discover from Python, 1000 instances", f"{discover_ns():.0f} ns"),
        ("RSS growth for 100,000 instances", f"{registry_rss_mb():.1f} MB"),
    ]
    print("| control plane | figure |\n|---|---:|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
