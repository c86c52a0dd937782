"""A small HTTP/1.1 server for the controller's APIs, on asyncio streams.

The control plane's requests are small and infrequent next to the data plane's, so this
favours strictness over speed: requests with ambiguous framing are refused, bodies need a
Content-Length and a size limit, and every handler answers JSON or HTML.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 256 * 1024
HEADER_TIMEOUT_S = 10.0


class HttpError(Exception):
    """Raised by handlers to answer with `status` and a JSON error naming `field`."""

    def __init__(self, status: HTTPStatus, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Request:
    """A parsed request: method, path, query parameters, headers (lower-case), body."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    params: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body as JSON; a 400 when it is not."""
        try:
            return json.loads(self.body or b"null")
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, f"body is not JSON: {exc}", "body") from exc


@dataclass(frozen=True)
class Response:
    """An HTTP response with a body of bytes."""

    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(
        cls,
        value: object,
        status: HTTPStatus = HTTPStatus.OK,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Response:
        body = json.dumps(value, sort_keys=True).encode() + b"\n"
        return cls(status, body, "application/json", headers)

    @classmethod
    def error(cls, status: HTTPStatus, message: str, field: str | None = None) -> Response:
        payload: dict[str, str] = {"error": message}
        if field:
            payload["field"] = field
        return cls.json(payload, status)

    def encode(self, keep_alive: bool) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            f"Connection: {'keep-alive' if keep_alive else 'close'}",
            *(f"{name}: {value}" for name, value in self.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


Handler = Callable[[Request], Awaitable[Response]]


class Router:
    """Routes `METHOD /path/{param}/...` patterns to handlers."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern)
        self._routes.append((method, re.compile(f"^{regex}$"), handler))

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed = False
        for route_method, regex, handler in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            if route_method == method:
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}
            allowed = True
        if allowed:
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such resource: {path}")


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, "request head is not ASCII") from exc
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0") or not parts[1]:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed header line")
        key = name.lower()
        if key in headers and key in ("content-length", "host", "transfer-encoding"):
            raise HttpError(HTTPStatus.BAD_REQUEST, f"duplicate {name} header")
        headers[key] = value.strip()
    return method, target, version, headers


class HttpServer:
    """Serves a Router on one address until closed."""

    def __init__(self, router: Router, host: str, port: int) -> None:
        self.router = router
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

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

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[Request, bool] | None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEADER_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        except asyncio.LimitOverrunError as exc:
            raise HttpError(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large"
            ) from exc
        method, target, version, headers = _parse_head(head)
        if "transfer-encoding" in headers:
            raise HttpError(HTTPStatus.BAD_REQUEST, "chunked request bodies are not accepted")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit():
            raise HttpError(HTTPStatus.BAD_REQUEST, "invalid Content-Length")
        length = int(length_text)
        if length > MAX_BODY_BYTES:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request body too large")
        try:
            body = await asyncio.wait_for(reader.readexactly(length), HEADER_TIMEOUT_S)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        keep_alive = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return Request(method, url.path, query, headers, body), keep_alive

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    parsed = await self._read_request(reader)
                except HttpError as err:
                    writer.write(Response.error(err.status, err.message).encode(False))
                    await writer.drain()
                    return
                if parsed is None:
                    return
                request, keep_alive = parsed
                response = await self._dispatch(request)
                writer.write(response.encode(keep_alive))
                await writer.drain()
                if not keep_alive:
                    return
        except ConnectionError:
            return
        finally:
            writer.close()

    async def _dispatch(self, request: Request) -> Response:
        try:
            handler, params = self.router.resolve(request.method, request.path)
            return await handler(
                Request(
                    request.method,
                    request.path,
                    request.query,
                    request.headers,
                    request.body,
                    params,
                )
            )
        except HttpError as err:
            return Response.error(err.status, err.message, err.field)
