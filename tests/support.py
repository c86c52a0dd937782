"""Helpers shared by the tests: loopback health servers and controller processes."""

from __future__ import annotations

import http.client
import json
import math
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

DMSC = [sys.executable, "-m", "dmsc.cli"]
# valgrind memcheck: definite and indirect leaks fail; "still reachable" statics do not.
MEMCHECK = [
    "valgrind",
    "--error-exitcode=99",
    "--leak-check=full",
    "--errors-for-leak-kinds=definite,indirect",
    "--show-leak-kinds=definite,indirect",
]
Server = TypeVar("Server", bound=socketserver.BaseServer)
T = TypeVar("T")
Reply = tuple[int, bytes]
Headers = dict[str, str] | list[tuple[str, str]] | None
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
def serving(server: Server) -> Iterator[Server]:
    """Runs `server.serve_forever` on a thread; shuts the server down and closes it at the end."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def health_server() -> AbstractContextManager[ThreadingHTTPServer]:
    """A real HTTP server on loopback; flip `server.RequestHandlerClass.healthy` to fail it."""
    handler = type("Health", (HealthHandler,), {"healthy": True})
    return serving(ThreadingHTTPServer(("127.0.0.1", 0), handler))


def http_call(address: tuple[str, int], method: str, path: str, timeout: float = 30.0) -> Reply:
    """One request without a body on a new connection: (status, body)."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


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


# --- the sidecar: processes, raw HTTP clients -------------------------------------------------

SIDECAR_BANNER = re.compile(r"dmsc sidecar: listening (.*)")


def parse_banner(line: str) -> tuple[dict[str, tuple[str, int]], tuple[str, int]] | None:
    """The listener addresses and the admin address of the sidecar's ready line (None when
    `line` is not that line)."""
    match = SIDECAR_BANNER.search(line)
    if match is None:
        return None
    listeners: dict[str, tuple[str, int]] = {}
    admin = ("", 0)
    for item in match.group(1).split():
        name, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        if name == "admin":
            admin = (host.strip("[]"), int(port))
        else:
            listeners[name] = (host.strip("[]"), int(port))
    return listeners, admin


class Response:
    """A response as a client saw it: status, header fields (names lower-case), body."""

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        """Every field of that name joined with ', ' (None when absent)."""
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def reason(self) -> str | None:
        """Why the proxy answered itself (`x-dmsc-reason`), if it did."""
        return self.header("x-dmsc-reason")

    @property
    def upstream(self) -> str | None:
        """Name of the test upstream that answered (from its JSON echo)."""
        if self.header("content-type") != "application/json":
            return None
        name = self.json().get("name")
        return str(name) if name is not None else None

    def sent(self, name: str) -> str | None:
        """A request header as the upstream received it (from its JSON echo)."""
        values = [v for k, v in self.json()["headers"] if k == name.lower()]
        return ", ".join(values) if values else None

    def __repr__(self) -> str:
        return f"Response({self.status}, {self.headers!r}, {self.body[:200]!r})"


class FramingError(AssertionError):
    """Bytes that break HTTP/1.1 framing: a failed check for a client, a hang-up for an upstream."""


class Reader:
    """Buffered reads from a socket, for HTTP/1.1 framing on either end of a connection.

    Raises ConnectionError when the peer closes first, FramingError when a line runs past
    `limit` bytes or a chunk is not followed by CRLF.
    """

    def __init__(self, sock: socket.socket, limit: int = 1 << 20) -> None:
        self.sock = sock
        self.limit = limit
        self.buf = bytearray()

    def fill(self) -> None:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError(f"closed by the peer; unparsed {bytes(self.buf[:200])!r}")
        self.buf += data

    def until(self, end: bytes) -> bytes:
        """The bytes before the next `end`; both are taken from the buffer."""
        while (at := self.buf.find(end)) < 0:
            if len(self.buf) > self.limit:
                raise FramingError(f"no {end!r} within {self.limit} bytes")
            self.fill()
        out = bytes(self.buf[:at])
        del self.buf[: at + len(end)]
        return out

    def line(self) -> bytes:
        return self.until(b"\r\n")

    def read_exactly(self, size: int, sink: Callable[[bytes], None] | None = None) -> bytes:
        """`size` bytes (passed to `sink` piece by piece instead when given)."""
        out = bytearray()
        while size > 0:
            if not self.buf:
                self.fill()
            take = min(size, len(self.buf))
            if sink is None:
                out += self.buf[:take]
            else:
                sink(bytes(self.buf[:take]))
            del self.buf[:take]
            size -= take
        return bytes(out)

    def chunked(self, sink: Callable[[bytes], None]) -> None:
        """A chunked body, decoded into `sink`; its trailers are read and dropped."""
        while size := int(self.line().split(b";", 1)[0], 16):
            self.read_exactly(size, sink)
            if self.line():
                raise FramingError("chunk not followed by CRLF")
        while self.line():
            pass


class RawConn(Reader):
    """A client connection on a plain socket: send any bytes, parse responses strictly."""

    def __init__(self, address: tuple[str, int], timeout: float = 10.0, source: str = "") -> None:
        sock = socket.create_connection(
            address, timeout=timeout, source_address=(source, 0) if source else None
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(sock)

    def __enter__(self) -> RawConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Headers = None,
        body: bytes = b"",
        host: str = "test.local",
    ) -> Response:
        """Sends one request (Content-Length framing) and reads its response."""
        self.send(encode_request(method, path, headers, body, host))
        return self.response(head=method == "HEAD")

    def interim_or_response(
        self, head: bool = False, sink: Callable[[bytes], None] | None = None
    ) -> Response:
        """The next response, 1xx included."""
        status_line = self.line().decode("latin-1")
        version, status, *_ = status_line.split(" ", 2)
        assert version in ("HTTP/1.1", "HTTP/1.0"), status_line
        code = int(status)
        headers = []
        while line := self.line():
            name, sep, value = line.decode("latin-1").partition(":")
            assert sep and name == name.strip(), f"bad response field {line!r}"
            headers.append((name.lower(), value.strip()))
        response = Response(code, headers, b"")
        if head or code < 200 or code in (204, 304):
            return response
        encoding = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if encoding:
            assert length is None, f"both Content-Length and Transfer-Encoding: {headers}"
            assert encoding == "chunked", encoding
            body = bytearray()
            self.chunked(sink or body.extend)
            response.body = bytes(body)
        elif length is not None:
            assert "," not in length, f"Content-Length list {length!r}"
            response.body = self.read_exactly(int(length), sink)
        else:
            while True:
                try:
                    self.fill()
                except ConnectionError:
                    break
            response.body = bytes(self.buf)
            self.buf.clear()
        return response

    def response(self, head: bool = False) -> Response:
        """The next final response (1xx interim responses are skipped)."""
        while True:
            response = self.interim_or_response(head)
            if response.status >= 200 or response.status == 101:
                return response

    def closed(self, wait: float = 5.0) -> bool:
        """True if the peer closes the connection (EOF or RST) within `wait` seconds."""
        self.sock.settimeout(wait)
        try:
            while data := self.sock.recv(65536):
                self.buf += data
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return True


def encode_request(
    method: str = "GET",
    path: str = "/",
    headers: Headers = None,
    body: bytes = b"",
    host: str = "test.local",
) -> bytes:
    """A request with Host and Content-Length (when there is a body) added."""
    fields = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in fields}
    if "host" not in names:
        fields.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        fields.append(("Content-Length", str(len(body))))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields)
    return head.encode("latin-1") + b"\r\n" + body


def vm_rss_kib(pid: int) -> int:
    """Resident memory of process `pid` now (VmRSS, KiB)."""
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return int(match.group(1))


class SidecarProcess:
    """A `dmsc sidecar --config FILE` process; the config is JSON (a subset of YAML)."""

    def __init__(self, config: dict[str, Any], directory: Path, *args: str) -> None:
        self.path = directory / "sidecar.yaml"
        self.log = directory / "sidecar.log"
        self.args = args
        self.write_config(config)
        self.proc: subprocess.Popen[str] | None = None
        self.listeners: dict[str, tuple[str, int]] = {}
        self.admin: tuple[str, int] = ("", 0)
        self.lines: list[str] = []

    def write_config(self, config: dict[str, Any]) -> None:
        # A short drain keeps teardown quick when a test leaves a request stalled.
        config = {"sidecar": {"drain_timeout_s": 2}, **config}
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(config, indent=1))
        temp.replace(self.path)

    def start(self, timeout: float = 60.0) -> SidecarProcess:
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [
                    *DMSC,
                    "sidecar",
                    "--config",
                    str(self.path),
                    "--admin",
                    "127.0.0.1:0",
                    *self.args,
                ],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        banner: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line)
                if not banner and SIDECAR_BANNER.search(line):
                    banner.append(line)
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(timeout)
        if not banner:
            self.stop(signal.SIGKILL)
            raise AssertionError(f"sidecar did not start: {self.lines!r}\n{self.log.read_text()}")
        addresses = parse_banner(banner[0])
        assert addresses is not None
        self.listeners, self.admin = addresses
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def addr(self, listener: str = "main") -> tuple[str, int]:
        return self.listeners[listener]

    def conn(self, listener: str = "main", timeout: float = 10.0, source: str = "") -> RawConn:
        return RawConn(self.addr(listener), timeout, source)

    def get(
        self,
        path: str = "/",
        headers: Headers = None,
        listener: str = "main",
        host: str = "test.local",
    ) -> Response:
        """One GET on a new connection."""
        with self.conn(listener) as conn:
            return conn.request("GET", path, headers, host=host)

    def admin_call(self, method: str, path: str) -> Reply:
        return http_call(self.admin, method, path)

    def generation(self) -> int:
        status, body = self.admin_call("GET", "/")
        assert status == 200, body
        return int(json.loads(body)["generation"])

    def reload(self, config: dict[str, Any], use_signal: bool = True) -> None:
        """Writes `config` and reloads (SIGHUP, or POST /reload); returns once it is live."""
        before = self.generation()
        self.write_config(config)
        if use_signal:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)
        else:
            status, body = self.admin_call("POST", "/reload")
            assert status == 200, body
        deadline = time.monotonic() + 30
        while self.generation() == before:
            assert time.monotonic() < deadline, f"reload not applied: {self.log.read_text()}"
            time.sleep(0.02)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of GET /metrics (0 when absent)."""
        status, body = self.admin_call("GET", "/metrics")
        assert status == 200
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return float(sample.value)
        return 0.0

    def rss_kb(self) -> int:
        """Resident memory of the process now (VmRSS, kB)."""
        return vm_rss_kib(self.pid)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stops the process and returns its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@contextmanager
def sidecar(config: dict[str, Any], directory: Path, *args: str) -> Iterator[SidecarProcess]:
    """A running sidecar, killed at the end."""
    process = SidecarProcess(config, directory, *args).start()
    try:
        yield process
    finally:
        process.stop()


def http_listener(
    name: str = "main", routes: list[dict[str, Any]] | None = None, **limits: int
) -> dict[str, Any]:
    """An HTTP listener on a free loopback port with one `*` virtual host."""
    listener: dict[str, Any] = {
        "name": name,
        "listen": "127.0.0.1:0",
        "virtual_hosts": [{"name": "any", "domains": ["*"], "routes": routes or []}],
    }
    if limits:
        listener["limits"] = limits
    return listener


def cluster(name: str, *endpoints: str | dict[str, Any], **options: Any) -> dict[str, Any]:
    """A cluster with static endpoints."""
    return {"name": name, "endpoints": list(endpoints), **options}


def route(prefix: str, target: str | None = None, **options: Any) -> dict[str, Any]:
    """A route on a path prefix to one cluster."""
    out: dict[str, Any] = {"match": {"path": {"prefix": prefix}}, **options}
    if target is not None:
        out["cluster"] = target
    return out


class Hammer:
    """Client threads looping keep-alive GETs until stopped; failures are kept."""

    def __init__(
        self, address: tuple[str, int], path: str = "/", threads: int = 2, reconnect: int = 50
    ) -> None:
        self.address = address
        self.path = path
        self.reconnect = reconnect
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.by_upstream: dict[str, int] = {}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Hammer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` more requests succeeded (or failures appear)."""
        target = self.ok + count
        deadline = time.monotonic() + timeout
        while self.ok < target and not self.failures:
            assert time.monotonic() < deadline, "client made no progress"
            time.sleep(0.01)

    def wait_upstream(self, name: str, count: int = 5, timeout: float = 30.0) -> None:
        """Until `count` more responses came from upstream `name`."""
        target = self.by_upstream.get(name, 0) + count
        deadline = time.monotonic() + timeout
        while self.by_upstream.get(name, 0) < target and not self.failures:
            assert time.monotonic() < deadline, f"no responses from {name}: {self.by_upstream}"
            time.sleep(0.01)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                with RawConn(self.address) as conn:
                    for _ in range(self.reconnect):
                        if self.stopping.is_set():
                            break
                        response = conn.request("GET", self.path)
                        if response.status != 200:
                            raise AssertionError(repr(response))
                        with self.lock:
                            self.ok += 1
                            name = response.upstream or ""
                            self.by_upstream[name] = self.by_upstream.get(name, 0) + 1
                        if response.header("connection") == "close":
                            break
            except (AssertionError, OSError) as exc:
                with self.lock:
                    self.failures.append(repr(exc))
                time.sleep(0.01)


def binomial_bounds(n: int, p: float, sigmas: float = 6.0) -> tuple[float, float]:
    """Bounds a Binomial(n, p) count falls outside of with negligible probability."""
    mean = n * p
    spread = sigmas * math.sqrt(n * p * (1 - p))
    return mean - spread, mean + spread


def concurrently(count: int, client: Callable[[int], None]) -> list[str]:
    """Runs `client(0)` .. `client(count - 1)` on threads at once; returns their failures."""
    errors: list[str] = []

    def run(n: int) -> None:
        try:
            client(n)
        except (AssertionError, OSError) as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def wait_for(check: Callable[[], T], timeout: float = 10.0) -> T | None:
    """Polls `check` until it answers something truthy and returns that (None once `timeout`
    seconds have passed)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)
    return value


def wait_until(check: Callable[[], object], timeout: float = 10.0, message: str = "") -> None:
    """Polls `check` until true; fails after `timeout` seconds."""
    assert wait_for(check, timeout), message or "condition not met"
