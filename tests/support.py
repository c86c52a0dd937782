"""Helpers shared by the tests: loopback health servers and controller processes."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DMSC = [sys.executable, "-m", "dmsc.cli"]
# valgrind memcheck: definite and indirect leaks fail; "still reachable" statics do not.
MEMCHECK = [
    "valgrind",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-leak-kinds=definite,indirect",
]
BANNER = re.compile(
    r"dmsc controller on http://127\.0\.0\.1:(\d+)/ \(DNS (?:127\.0\.0\.1:(\d+)|off)"
)


class HealthHandler(BaseHTTPRequestHandler):
    """Answers GET /health with 200 while `healthy` (a class attribute) is true, else 503."""

    healthy = True

    def do_GET(self) -> None:
        ok = type(self).healthy and self.path == "/health"
        self.send_response(200 if ok else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def health_server() -> Iterator[ThreadingHTTPServer]:
    """A real HTTP server on loopback; flip `server.RequestHandlerClass.healthy` to fail it."""
    handler = type("Health", (HealthHandler,), {"healthy": True})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class ControllerProcess:
    """A `dmsc controller` process on loopback with ports it picks itself."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.dns_port = 0

    def start(self) -> ControllerProcess:
        self.proc = subprocess.Popen(
            [*DMSC, "controller", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0", *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = BANNER.search(line)
        assert match, f"no banner: {line!r} {self.proc.stderr.read() if self.proc.stderr else ''}"
        self.port = int(match.group(1))
        self.dns_port = int(match.group(2) or 0)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, path: str, body: object = None) -> tuple[int, Any]:
        """One JSON request: (status, decoded body)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def dig(self, *query: str) -> list[str]:
        """`dig +short` against the controller's DNS interface, one line per record."""
        out = subprocess.run(
            [
                "dig",
                "@127.0.0.1",
                "-p",
                str(self.dns_port),
                "+short",
                "+time=2",
                "+tries=1",
                *query,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line for line in out.splitlines() if line]

    def stop(self, sig: int = signal.SIGINT) -> str:
        """Stops the process (SIGINT: clean; SIGKILL: a crash) and returns its output."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out
