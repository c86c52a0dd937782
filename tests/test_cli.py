"""`dmsc up` starts the controller, serves the dashboard and stops cleanly on Ctrl-C."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import DMSC, wait_for


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    proc = subprocess.Popen(
        [
            *DMSC,
            "up",
            "--http",
            "127.0.0.1:0",
            "--dns",
            "127.0.0.1:0",
            "--state-dir",
            str(tmp_path),
            "--sidecar",
            "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    port = 0
    for line in proc.stdout:
        if "dashboard:" in line:
            port = int(line.rsplit(":", 1)[1].strip(" /\n"))
            break
    assert port, "no dashboard URL printed"
    yield proc, port
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


def test_up_serves_dashboard_and_build_info(mesh: tuple[subprocess.Popen[str], int]) -> None:
    _, port = mesh
    status, body = get(port, "/")
    assert status == 200 and b"dmsc controller" in body
    assert b"greeter" in body and b"catalog" in body
    status, body = get(port, "/v1/build")
    assert status == 200
    assert json.loads(body)["rust"] is True
    assert get(port, "/healthz") == (200, b"ok\n")
    assert get(port, "/nope")[0] == 404


def test_up_registers_sample_services_in_two_versions(
    mesh: tuple[subprocess.Popen[str], int],
) -> None:
    _, port = mesh
    status, body = get(port, "/v1/registry/services")
    assert status == 200
    services = {s["name"]: s for s in json.loads(body)["services"]}
    assert set(services) == {"greeter", "catalog"}
    versions = {i["version"] for i in services["greeter"]["instances"]}
    assert versions == {"v1", "v2"}
    assert services["greeter"]["healthy"] == 3


def sidecar_port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "sidecar:" in line and "/greeter" in line:
            return int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
    raise AssertionError("no sidecar URL printed")


def test_up_routes_through_the_sidecar(mesh: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = mesh
    port = sidecar_port(proc)
    versions = []
    for _ in range(40):
        status, body = get(port, "/greeter")
        assert status == 200
        versions.append(json.loads(body)["version"])
    assert "v1" in versions  # 90% of requests go to v1
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/greeter", headers={"x-version": "v2"})
    assert json.loads(conn.getresponse().read())["version"] == "v2"
    status, body = get(port, "/catalog")
    assert status == 200 and json.loads(body)["service"] == "catalog"


def test_up_refuses_malformed_requests(mesh: tuple[subprocess.Popen[str], int]) -> None:
    _, port = mesh
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n")
        reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 400 ")
        assert sock.recv(4096) == b""  # connection closed


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # the listener is closing right now: ask again
    return False


def test_ctrl_c_stops_cleanly(mesh: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = mesh
    port = sidecar_port(proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "dmsc stopped." in out
    assert refuses_connections(port)  # the sidecar went with it


def test_the_sidecar_goes_even_when_up_is_killed(mesh: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = mesh
    port = sidecar_port(proc)
    proc.kill()
    proc.wait()
    assert wait_for(lambda: refuses_connections(port), 20)


def test_bad_address_is_refused_with_a_clear_message() -> None:
    result = subprocess.run([*DMSC, "up", "--http", "nowhere"], capture_output=True, text=True)
    assert result.returncode == 2
    assert "expected HOST:PORT" in result.stderr
