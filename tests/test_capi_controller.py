"""A native program joins a real controller: its instances reach Python and DNS, and back."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import MEMCHECK, ControllerProcess, health_server

import dmsc.capi

C_SOURCE = Path(__file__).parent / "c" / "controller_join.c"
STRICT_C = ["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror"]


@pytest.fixture
def health_port() -> Iterator[int]:
    with health_server() as server:
        yield server.server_address[1]


@pytest.fixture
def controller() -> Iterator[ControllerProcess]:
    running = ControllerProcess("--store", "memory:").start()
    yield running
    running.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Program:
    """The C program, stepped through its stdin/stdout protocol."""

    def __init__(self, cmd: list[str]) -> None:
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": os.environ["PATH"]},
        )
        self.lines: list[str] = []

    def expect(self, prefix: str, timeout: float = 60.0) -> str:
        """The next output line, which must start with `prefix`."""
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.proc.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.proc.kill()
                pytest.fail(f"no {prefix!r} line in {timeout} s: {self.finish()}")
        line = self.proc.stdout.readline().rstrip("\n")
        self.lines.append(line)
        if not line.startswith(prefix):
            pytest.fail(f"expected {prefix!r}, got {line!r}: {self.finish()}")
        return line

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def finish(self, timeout: float = 120.0) -> str:
        """Waits for the exit; returns the rest of stdout and stderr."""
        out, err = self.proc.communicate(timeout=timeout)
        self.lines.extend(out.splitlines())
        return out + err


def build(tmp_path: Path, *extra: str) -> Path:
    exe = tmp_path / "controller_join"
    flags = f"{dmsc.capi.cflags()} {dmsc.capi.libs()}".split()
    subprocess.run([*STRICT_C, str(C_SOURCE), "-o", str(exe), *extra, *flags], check=True)
    return exe


def wait_for_status(
    controller: ControllerProcess, path: str, status: int, timeout: float = 10
) -> None:
    deadline = time.monotonic() + timeout
    while controller.call("GET", path)[0] != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}"
        time.sleep(0.05)


@pytest.mark.parametrize("memcheck", [False, True], ids=["native", "memcheck"])
def test_native_program_shares_the_controllers_registry(
    tmp_path: Path, controller: ControllerProcess, health_port: int, memcheck: bool
) -> None:
    exe = build(tmp_path, "-g")
    unreachable = closed_port()
    cmd = [str(exe), controller.url, str(health_port), str(unreachable)]
    program = Program([*MEMCHECK, *cmd] if memcheck else cmd)

    # The native registration is the controller's: its API, its health check, its DNS.
    program.expect("registered")
    status, view = controller.call("GET", "/v1/registry/services/native-svc")
    assert status == 200
    [instance] = view["instances"]
    assert (instance["port"], instance["version"]) == (health_port, "v1")
    assert instance["zone"] == "zone-a"
    assert instance["labels"] == {"lang": "c"}
    assert instance["health"] == "healthy"
    assert controller.dig("native-svc.service.dmsc", "A") == ["127.0.0.1"]
    [srv] = controller.dig("v1.native-svc.service.dmsc", "SRV")
    priority, weight, port, _target = srv.split()
    assert (priority, weight, port) == ("1", "1", str(health_port))

    # The reverse: a registration made through the API reaches the native program.
    py_endpoint = {
        "name": "py-svc",
        "host": "127.0.0.1",
        "port": health_port,
        "version": "v7",
        "health_check_url": "/health",
    }
    assert controller.call("PUT", "/v1/registry/instances", py_endpoint)[0] == 201
    program.go()
    line = program.expect("discovered py-svc")
    assert line == f"discovered py-svc at 127.0.0.1:{health_port} version v7"

    # ... and so does its removal.
    py_id = f"py-svc/127.0.0.1:{health_port}"
    assert controller.call("DELETE", f"/v1/registry/instances/{py_id}")[0] == 200
    program.go()
    program.expect("py-svc gone")

    # Deregistration from C removes the instance everywhere.
    program.go()
    program.expect("deregistered")
    wait_for_status(controller, "/v1/registry/services/native-svc", 404)
    assert controller.dig("native-svc.service.dmsc", "A") == []

    output = program.finish()
    assert program.proc.returncode == 0, output[-4000:]
    assert "controller join ok" in program.lines
    # An unreachable controller is an I/O error with a message naming it.
    start_line = next(line for line in program.lines if line.startswith("unreachable start:"))
    assert "controller unreachable" in start_line and str(unreachable) in start_line
    register_line = "unreachable register: controller unreachable"
    assert any(line.startswith(register_line) for line in program.lines)
    if memcheck:
        assert "ERROR SUMMARY: 0 errors" in output
