"""Real upstream servers for the sidecar tests, on 127.0.0.1 with ports they pick themselves.

`Upstream` is an HTTP/1.1 server (one thread per connection, plain sockets so it can misbehave
at the byte level). What it does with a request is its *mode*, chosen in this order:

1. a mode queued with `set(mode, arg, times=n)` (the next n requests), else
2. the request's `x-up` header (`x-up: status=503`, `x-up: slow=0.5`, `x-up: large=1000000`), else
3. the default mode given by `set(mode, arg)`.

Modes: `ok` (200 and a JSON echo of what arrived), `status` (that status, same body), `slow`
(sleep `arg` seconds, then ok), `stall` (never answer), `reset` (RST: SO_LINGER 0 then close),
`close` (close without answering), `garbage` (bytes that are not HTTP), `chunked` (the echo in
a chunked body), `eof` (the echo with neither length nor chunking: the body ends when the
connection closes), `large` (`arg` bytes of `pattern()` streamed), `hop` (ok plus hop-by-hop
response headers). Requests with `Expect: 100-continue` get `100 Continue` before their body is
read; upgrade requests get `101` and then every byte is echoed back.

The whole request (head and body) is read before the mode acts, so `requests` counts complete
requests and `heads` counts request heads. `TcpServer` is the L4 peer: `echo` sends back what it
receives; `sink` reads to end of stream, then answers `"<bytes> <sha256>\\n"` and closes.

Run as a program (`python tests/upstreams.py NAME [PORT]`) it serves mode `ok` and prints
`port N`, for tests that kill an upstream process (and start it again on the same port).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import select
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self, TypeVar
from urllib.parse import unquote

from support import FramingError, Reader

MODES = (
    "ok", "status", "slow", "stall", "reset", "close", "garbage", "chunked", "large", "hop", "eof",
)  # fmt: skip
BLOCK = bytes(range(256)) * 256  # 64 KiB of the repeating pattern `pattern()` streams


def pattern(size: int) -> bytes:
    """The first `size` bytes of the pattern `large` mode streams (for small sizes)."""
    return (BLOCK * (size // len(BLOCK) + 1))[:size]


def pattern_sha256(size: int) -> str:
    """SHA-256 of `size` bytes of the pattern, computed block by block."""
    digest = hashlib.sha256()
    full, rest = divmod(size, len(BLOCK))
    for _ in range(full):
        digest.update(BLOCK)
    digest.update(BLOCK[:rest])
    return digest.hexdigest()


def reset_socket(sock: socket.socket) -> None:
    """Closes `sock` with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


@dataclass
class Received:
    """One complete request as the upstream saw it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body_len: int = 0
    body_sha256: str = ""
    chunked: bool = False
    connection: int = 0

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> str:
        return self.target.split("?", 1)[1] if "?" in self.target else ""

    def header(self, name: str) -> str | None:
        """Every field of that name joined with ', ' (None when absent)."""
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    def echo(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "method": self.method,
            "path": self.path,
            "query": unquote(self.query),
            "target": self.target,
            "headers": [[k, v] for k, v in self.headers],
            "body_len": self.body_len,
            "body_sha256": self.body_sha256,
            "chunked": self.chunked,
            "connection": self.connection,
        }


def parse_head(head: bytes) -> tuple[str, str, str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    method, target, version = lines[0].split(" ", 2)
    headers = []
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers.append((name.strip().lower(), value.strip()))
    return method, target, version, headers


def tokens(value: str | None) -> set[str]:
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


class LoopbackServer:
    """A TCP listener on 127.0.0.1 that serves each connection on its own thread (`_serve`).

    `stop` closes the listener and shuts down the connections still open. Also a context
    manager: started on entry, stopped on exit.
    """

    backlog = 128

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self.connections = 0
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", port))
        self.port: int = self.listener.getsockname()[1]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.listener.listen(self.backlog)
        name = f"{type(self).__name__}-{self.port}"
        threading.Thread(target=self._accept, daemon=True, name=name).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        with self._lock:
            socks = list(self._socks)
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                number = self.connections
                self._socks.add(sock)
            threading.Thread(target=self._run, args=(sock, number), daemon=True).start()

    def _run(self, sock: socket.socket, number: int) -> None:
        try:
            self._serve(sock, number)
        finally:
            with self._lock:
                self._socks.discard(sock)
            if sock.fileno() >= 0:
                sock.close()

    def _serve(self, sock: socket.socket, number: int) -> None:
        """Serves one accepted connection (`number` counts from 1); the caller closes it."""
        raise NotImplementedError


S = TypeVar("S", bound=LoopbackServer)


@contextlib.contextmanager
def running(servers: dict[str, S]) -> Iterator[dict[str, S]]:
    """Starts every server; stops them all at the end."""
    with contextlib.ExitStack() as stack:
        for server in servers.values():
            stack.enter_context(server)
        yield servers


class Upstream(LoopbackServer):
    """A switchable HTTP/1.1 upstream (see the module docstring)."""

    backlog = 512

    def __init__(
        self, name: str = "up", mode: str = "ok", arg: float | None = None, port: int = 0
    ) -> None:
        super().__init__(port)
        self.name = name
        self._mode: tuple[str, float | None] = (mode, arg)
        self._queue: deque[tuple[str, float | None]] = deque()
        self.heads = 0
        self.requests = 0
        self.received: list[Received] = []

    def set(self, mode: str, arg: float | None = None, times: int | None = None) -> None:
        """The default mode, or (with `times`) a mode for the next `times` requests only."""
        assert mode in MODES, mode
        with self._lock:
            if times is None:
                self._mode = (mode, arg)
            else:
                self._queue.extend([(mode, arg)] * times)

    def clear(self) -> None:
        """Back to mode ok; forgets queued modes and received requests (counters stay)."""
        with self._lock:
            self._mode = ("ok", None)
            self._queue.clear()
            self.received.clear()

    @property
    def open_connections(self) -> int:
        """Connections accepted and not yet closed."""
        with self._lock:
            return len(self._socks)

    def paths(self) -> list[str]:
        with self._lock:
            return [r.path for r in self.received]

    def last(self) -> Received:
        with self._lock:
            return self.received[-1]

    def _choose(self, headers: list[tuple[str, str]]) -> tuple[str, float | None]:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            wanted = [v for k, v in headers if k == "x-up"]
            if wanted:
                mode, _, arg = wanted[0].partition("=")
                return mode.strip(), float(arg) if arg else None
            return self._mode

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = Reader(sock)
        with contextlib.suppress(OSError, ValueError, FramingError):
            while not self._stop.is_set():
                keep = self._one(sock, reader, number)
                if not keep:
                    break

    def _one(self, sock: socket.socket, reader: Reader, number: int) -> bool:
        method, target, version, headers = parse_head(reader.until(b"\r\n\r\n"))
        with self._lock:
            self.heads += 1
        mode, arg = self._choose(headers)
        request = Received(method, target, version, headers, connection=number)
        if "100-continue" in tokens(request.header("expect")):
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        digest = hashlib.sha256()

        def sink(data: bytes) -> None:
            request.body_len += len(data)
            digest.update(data)

        if "chunked" in tokens(request.header("transfer-encoding")):
            request.chunked = True
            reader.chunked(sink)
        else:
            reader.read_exactly(int(request.header("content-length") or 0), sink)
        request.body_sha256 = digest.hexdigest()
        with self._lock:
            self.requests += 1
            self.received.append(request)
        close = "close" in tokens(request.header("connection")) or (
            version == "HTTP/1.0" and "keep-alive" not in tokens(request.header("connection"))
        )
        upgrade = request.header("upgrade")
        if upgrade and "upgrade" in tokens(request.header("connection")) and mode == "ok":
            sock.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: "
                + upgrade.encode()
                + b"\r\nConnection: Upgrade\r\n\r\n"
            )
            if reader.buf:
                sock.sendall(bytes(reader.buf))
            while data := sock.recv(65536):
                sock.sendall(data)
            return False
        if mode == "stall":
            self._stall(sock)
            return False
        if mode == "reset":
            reset_socket(sock)
            return False
        if mode == "close":
            return False
        if mode == "garbage":
            sock.sendall(b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
            return False
        if mode == "slow":
            time.sleep(arg or 1.0)
        status = int(arg or 500) if mode == "status" else 200
        if mode == "large":
            self._large(sock, int(arg or 0), method == "HEAD", close)
            return not close
        body = json.dumps(request.echo(self.name)).encode()
        extra = b""
        if mode == "hop":
            extra = b"Connection: x-hop-resp\r\nX-Hop-Resp: 1\r\nKeep-Alive: timeout=5\r\n"
        head = (
            f"HTTP/1.1 {status} Whatever\r\nContent-Type: application/json\r\n"
            f"X-Up-Name: {self.name}\r\n"
        ).encode() + extra
        if close:
            head += b"Connection: close\r\n"
        if method == "HEAD":
            sock.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode())
        elif mode == "eof":
            sock.sendall(head + b"\r\n" + body)
            return False
        elif mode == "chunked":
            pieces = [body[i : i + 7] for i in range(0, len(body), 7)]
            chunks = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in pieces)
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n")
        else:
            sock.sendall(head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        return not close

    def _large(self, sock: socket.socket, size: int, head_only: bool, close: bool) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {size}"
        sock.sendall(head.encode() + (b"\r\nConnection: close" if close else b"") + b"\r\n\r\n")
        if head_only:
            return
        full, rest = divmod(size, len(BLOCK))
        view = memoryview(BLOCK)
        for _ in range(full):
            sock.sendall(view)
        sock.sendall(view[:rest])

    def _stall(self, sock: socket.socket) -> None:
        """Never answers; returns once the peer closes or the server stops."""
        while not self._stop.is_set():
            ready, _, _ = select.select([sock], [], [], 0.2)
            if ready and not sock.recv(65536):
                return


class TcpServer(LoopbackServer):
    """An L4 peer: `echo` sends back every byte; `sink` answers `"<n> <sha256>\\n"` at EOF."""

    def __init__(self, mode: str = "echo") -> None:
        assert mode in ("echo", "sink")
        super().__init__()
        self.mode = mode

    def _serve(self, sock: socket.socket, number: int) -> None:
        digest = hashlib.sha256()
        total = 0
        with contextlib.suppress(OSError):
            while data := sock.recv(262144):
                total += len(data)
                if self.mode == "echo":
                    sock.sendall(data)
                else:
                    digest.update(data)
            if self.mode == "sink":
                sock.sendall(f"{total} {digest.hexdigest()}\n".encode())
            sock.shutdown(socket.SHUT_WR)


def dead_address() -> str:
    """A loopback address where nothing listens (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "up"
    upstream = Upstream(name, port=int(sys.argv[2]) if len(sys.argv) > 2 else 0).start()
    print(f"port {upstream.port}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
