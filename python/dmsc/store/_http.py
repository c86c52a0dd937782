"""A minimal HTTP/1.1 JSON client on asyncio streams: keep-alive pool and streamed bodies.

Just enough for etcd's JSON gateway: POST with a Content-Length body; responses framed by
Content-Length, chunked transfer coding, or the end of the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

Address = tuple[str, int]

MAX_HEADER_LINES = 100
MAX_BODY = 256 * 1024 * 1024


class HttpUnavailable(ConnectionError):
    """No endpoint could be reached or the connection broke before a full response."""


class HttpStatusError(Exception):
    """The server answered with a non-2xx status; `doc` is its JSON body if it had one."""

    def __init__(self, status: int, doc: dict[str, Any]) -> None:
        message = doc.get("message") or doc.get("error") or f"HTTP {status}"
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.doc = doc


class _Response:
    """Status and framing of a response whose headers have been read."""

    def __init__(self, status: int, length: int | None, chunked: bool, keep_alive: bool) -> None:
        self.status = status
        self.length = length
        self.chunked = chunked
        self.keep_alive = keep_alive


class Connection:
    """One keep-alive HTTP/1.1 connection (one request at a time)."""

    def __init__(
        self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self._reader = reader
        self._writer = writer
        self.reusable = True

    @classmethod
    async def open(cls, address: Address) -> Connection:
        """Connects (the caller bounds the time)."""
        reader, writer = await asyncio.open_connection(*address, limit=1 << 20)
        return cls(address, reader, writer)

    def close(self) -> None:
        """Closes the socket without waiting."""
        self.reusable = False
        self._writer.close()

    async def _send(self, path: str, body: bytes) -> None:
        host, port = self.address
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode("latin-1") + body)
        await self._writer.drain()

    async def _head(self) -> _Response:
        status_line = await self._reader.readline()
        if not status_line:
            raise HttpUnavailable(f"{self.where()}: connection closed")
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpUnavailable(f"{self.where()}: bad status line {status_line[:80]!r}")
        status = int(parts[1])
        keep_alive = parts[0] == b"HTTP/1.1"
        length: int | None = None
        chunked = False
        for _ in range(MAX_HEADER_LINES):
            line = await self._reader.readline()
            if not line.endswith(b"\n"):
                raise HttpUnavailable(f"{self.where()}: connection closed in headers")
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                if not value.isdigit():
                    raise HttpUnavailable(f"{self.where()}: bad Content-Length")
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = value.endswith(b"chunked")
            elif name == b"connection":
                keep_alive = value != b"close" and (keep_alive or value == b"keep-alive")
        else:
            raise HttpUnavailable(f"{self.where()}: too many header lines")
        if length is not None and length > MAX_BODY:
            raise HttpUnavailable(f"{self.where()}: body of {length} bytes is too large")
        return _Response(status, length, chunked, keep_alive)

    async def _chunks(self, response: _Response) -> AsyncIterator[bytes]:
        """The body in pieces as they arrive."""
        reader = self._reader
        if response.chunked:
            while True:
                size_line = await reader.readline()
                size_text = size_line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HttpUnavailable(f"{self.where()}: bad chunk size") from None
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = await reader.readexactly(size + 2)
                yield data[:-2]
        elif response.length is not None:
            if response.length:
                yield await reader.readexactly(response.length)
        else:
            self.reusable = False
            while data := await reader.read(65536):
                yield data

    def where(self) -> str:
        return f"{self.address[0]}:{self.address[1]}"

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """Sends one request and reads the whole response."""
        self.reusable = False  # until the response has been read completely
        await self._send(path, body)
        response = await self._head()
        parts = []
        size = 0
        try:
            async for part in self._chunks(response):
                size += len(part)
                if size > MAX_BODY:
                    raise HttpUnavailable(f"{self.where()}: response too large")
                parts.append(part)
        except asyncio.IncompleteReadError as err:
            raise HttpUnavailable(f"{self.where()}: connection closed in body") from err
        framed = response.length is not None or response.chunked
        self.reusable = response.keep_alive and framed
        return response.status, b"".join(parts)

    async def stream_lines(self, path: str, body: bytes) -> AsyncIterator[bytes]:
        """Sends one request and yields the response body line by line as it streams in.

        Raises HttpStatusError for a non-2xx status; ends when the server ends the body.
        """
        self.reusable = False
        await self._send(path, body)
        response = await self._head()
        if not 200 <= response.status < 300:
            data = b"".join([part async for part in self._chunks(response)])
            raise HttpStatusError(response.status, _json_object(data))
        pending = b""
        try:
            async for part in self._chunks(response):
                pending += part
                while (newline := pending.find(b"\n")) >= 0:
                    line, pending = pending[:newline], pending[newline + 1 :]
                    if line.strip():
                        yield line
        except asyncio.IncompleteReadError as err:
            raise HttpUnavailable(f"{self.where()}: stream closed") from err
        if pending.strip():
            yield pending


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(data) if data else {}
    except ValueError:
        return {"message": data[:200].decode("utf-8", "replace")}
    return doc if isinstance(doc, dict) else {"message": str(doc)[:200]}


class HttpPool:
    """Keep-alive connections to a list of equivalent endpoints, with fail-over.

    Requests go to the endpoint that last answered; when it cannot be reached the next
    ones are tried in order. At most `max_connections` requests run at once.
    """

    def __init__(
        self, endpoints: Sequence[Address], *, timeout: float, max_connections: int = 8
    ) -> None:
        if not endpoints:
            raise ValueError("endpoints: at least one is required")
        self.endpoints = list(endpoints)
        self.timeout = timeout
        self._preferred = 0
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections

    def ordered(self) -> list[Address]:
        """The endpoints, the one that last answered first."""
        n = len(self.endpoints)
        return [self.endpoints[(self._preferred + i) % n] for i in range(n)]

    def prefer(self, address: Address) -> None:
        """Sends the next requests to `address` first."""
        with contextlib.suppress(ValueError):
            self._preferred = self.endpoints.index(address)

    async def connect(self) -> Connection:
        """A new connection to the first endpoint that accepts one."""
        errors = []
        for address in self.ordered():
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await Connection.open(address)
            except (OSError, TimeoutError) as err:
                errors.append(f"{address[0]}:{address[1]}: {err or type(err).__name__}")
                continue
            self.prefer(address)
            return conn
        raise HttpUnavailable("; ".join(errors))

    async def post_json(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        """POSTs `doc` as JSON and returns the JSON object answered.

        Raises HttpUnavailable when no endpoint answers in time, HttpStatusError for a
        non-2xx answer.
        """
        body = json.dumps(doc, separators=(",", ":")).encode()
        async with self._slots:
            status, data = await self._exchange(path, body)
        answer = _json_object(data)
        if not 200 <= status < 300:
            raise HttpStatusError(status, answer)
        return answer

    async def _exchange(self, path: str, body: bytes) -> tuple[int, bytes]:
        # An idle keep-alive connection may have been closed by the server: a failure on
        # one is retried on a fresh connection; a failure on a fresh one is final.
        while self._idle:
            conn = self._idle.pop()
            try:
                return await self._attempt(conn, path, body)
            except TimeoutError as err:  # (an OSError too) not retried: etcd is slow
                raise HttpUnavailable(f"{conn.where()}: no answer in {self.timeout} s") from err
            except (OSError, asyncio.IncompleteReadError):
                continue  # closed while idle
        conn = await self.connect()
        try:
            return await self._attempt(conn, path, body)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as err:
            raise HttpUnavailable(f"{conn.where()}: {type(err).__name__} {err}") from err

    async def _attempt(self, conn: Connection, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self.timeout):
                result = await conn.post(path, body)
        except BaseException:
            conn.close()
            raise
        if conn.reusable and len(self._idle) < self._max_idle:
            self._idle.append(conn)
        else:
            conn.close()
        return result

    def close(self) -> None:
        """Closes the idle connections."""
        for conn in self._idle:
            conn.close()
        self._idle.clear()
