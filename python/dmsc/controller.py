"""The dmsc controller process: for now its admin API and dashboard.

The controller serves plain HTTP/1.1 on the event loop (uvloop); requests are
small and infrequent, so a minimal server on asyncio streams is enough here.
"""

from __future__ import annotations

import asyncio
import html
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus

import dmsc_fast

MAX_HEADER_BYTES = 16 * 1024
HEADER_TIMEOUT_S = 10.0

Handler = Callable[[], Awaitable["Response"]]


@dataclass(frozen=True)
class Response:
    """An HTTP response with a body of bytes."""

    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"

    @classmethod
    def json(cls, value: object, status: HTTPStatus = HTTPStatus.OK) -> Response:
        return cls(status, json.dumps(value).encode() + b"\n", "application/json")

    def encode(self, keep_alive: bool) -> bytes:
        head = (
            f"HTTP/1.1 {self.status.value} {self.status.phrase}\r\n"
            f"Content-Type: {self.content_type}\r\n"
            f"Content-Length: {len(self.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        )
        return head.encode("ascii") + self.body


@dataclass
class Controller:
    """Serves the admin API (`/healthz`, `/v1/build`) and the dashboard (`/`)."""

    host: str = "127.0.0.1"
    port: int = 8500
    _server: asyncio.Server | None = field(default=None, init=False, repr=False)

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, limit=MAX_HEADER_BYTES
        )
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _routes(self) -> dict[str, Handler]:
        return {
            "/": self._dashboard,
            "/healthz": self._healthz,
            "/v1/build": self._build,
        }

    async def _healthz(self) -> Response:
        return Response(HTTPStatus.OK, b"ok\n")

    async def _build(self) -> Response:
        return Response.json(dmsc_fast.build_info())

    async def _dashboard(self) -> Response:
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in dmsc_fast.build_info().items()
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>dmsc</title></head>"
            "<body><h1>dmsc controller</h1><h2>Build</h2>"
            f"<table>{rows}</table></body></html>"
        )
        return Response(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(
                        reader.readuntil(b"\r\n\r\n"), timeout=HEADER_TIMEOUT_S
                    )
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    writer.write(
                        Response(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, b"").encode(False)
                    )
                    return
                response, keep_alive = await self._respond(head)
                writer.write(response.encode(keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        finally:
            writer.close()

    async def _respond(self, head: bytes) -> tuple[Response, bool]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return Response(HTTPStatus.BAD_REQUEST, b"malformed request line\n"), False
        method, target, version = parts
        headers = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                return Response(HTTPStatus.BAD_REQUEST, b"malformed header\n"), False
            headers[name.lower()] = value.strip()
        if "content-length" in headers or "transfer-encoding" in headers:
            # The admin API takes no request bodies yet; refusing keeps framing unambiguous.
            return Response(HTTPStatus.BAD_REQUEST, b"request bodies are not accepted\n"), False
        keep_alive = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
        if method != "GET":
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n"), keep_alive
        handler = self._routes().get(target.split("?", 1)[0])
        if handler is None:
            return Response(HTTPStatus.NOT_FOUND, b"not found\n"), keep_alive
        return await handler(), keep_alive
