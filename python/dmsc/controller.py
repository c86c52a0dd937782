"""The dmsc controller: registry API, store, health checks, DNS, dashboard.

One process owns the registry of a mesh. Its state lives in the compiled core
(`dmsc.Mesh`: instances, health, balancing), is persisted to a store (embedded
SQLite, or etcd when the mesh spans machines), and is served over an HTTP/JSON
API with long-poll watches, over DNS, and on a dashboard.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import dmsc_fast
from dmsc.aio import cancel_all
from dmsc.dns import DnsServer
from dmsc.http import HttpError, HttpServer, Request, Response, Router
from dmsc.mesh import Mesh, MeshConfig, ServiceEndpoint
from dmsc.openapi import OPENAPI
from dmsc.store import Registration, Store, open_store

WATCH_POLL_S = 0.02
EXPIRY_POLL_S = 0.5
MAX_WATCH_WAIT_S = 300.0
MAX_TTL_S = 86400.0


@dataclass
class ControllerConfig:
    """Where the controller listens and what it stores."""

    http: tuple[str, int] = ("127.0.0.1", 8500)
    dns: tuple[str, int] | None = ("127.0.0.1", 8600)
    store: str = "memory:"
    mesh: MeshConfig = field(default_factory=MeshConfig)


def _field_of(error: ValueError) -> str | None:
    """The argument a core ValueError names ("port: must be ..." -> "port")."""
    head, sep, _ = str(error).partition(":")
    return head.strip() if sep and head.strip().replace("_", "").isalnum() else None


def _bad_request(error: ValueError) -> HttpError:
    return HttpError(HTTPStatus.BAD_REQUEST, str(error), _field_of(error))


def registration_id(endpoint: ServiceEndpoint) -> str:
    """The id of an instance in the registry API and the store: `<name>/<host>:<port>`."""
    return f"{endpoint.name}/{endpoint.host}:{endpoint.port}"


def parse_registration_id(registration: str) -> tuple[str, str, int]:
    """`<name>/<host>:<port>` -> (name, host, port); ValueError naming `id` otherwise."""
    name, _, address = registration.partition("/")
    host, _, port = address.rpartition(":")
    if not (name and host and port.isdigit()):
        raise ValueError("id: must be <name>/<host>:<port>")
    return name, host, int(port)


class Controller:
    """Runs the control plane until `close`."""

    def __init__(self, config: ControllerConfig) -> None:
        self.config = config
        self.mesh = Mesh(config.mesh)
        self.store: Store = open_store(config.store)
        self.http = HttpServer(self._router(), *config.http)
        self.dns: DnsServer | None = None
        self._changed = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()

    # ---- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Loads the store, starts health checks, the APIs, DNS and background tasks."""
        await self.store.open()
        registrations = await self.store.load()
        await asyncio.gather(*(self._apply(reg) for reg in registrations))
        self.mesh.start()
        await self.http.start()
        if self.config.dns is not None:
            self.dns = DnsServer(self._resolve_dns, self.config.mesh.domain)
            await self.dns.start(*self.config.dns)
        self._tasks = [
            asyncio.create_task(self._notify_changes()),
            asyncio.create_task(self._expire_ttls()),
            asyncio.create_task(self._follow_store()),
        ]

    async def close(self) -> None:
        """Stops everything; registrations stay in the store."""
        await cancel_all(self._tasks)
        await self.http.close()
        if self.dns is not None:
            await self.dns.close()
        self.mesh.stop()
        await self.store.close()

    @property
    def url(self) -> str:
        return self.http.url

    # ---- registry operations shared by the API and the store --------------------------

    async def _apply(self, registration: Registration) -> None:
        endpoint = ServiceEndpoint.from_dict(registration.endpoint)
        await self.mesh.aregister(endpoint)

    async def register(self, endpoint: ServiceEndpoint, ttl: float | None) -> str:
        """Registers (the core validates), then persists; nothing half-written stays.

        A store failure undoes a new registration and propagates (the API answers 503).
        """
        if ttl is not None and not (0 < ttl <= MAX_TTL_S):
            raise ValueError(f"ttl: must be between 0 and {MAX_TTL_S:.0f} seconds")
        outcome = await self.mesh.aregister(endpoint)
        reg = Registration(registration_id(endpoint), endpoint.to_dict(), ttl)
        try:
            await self.store.put(reg)
        except BaseException:
            if outcome == "added":
                await self.mesh.aderegister(endpoint.name, endpoint.host, endpoint.port)
            raise
        return reg.id

    async def deregister(self, registration: str) -> bool:
        name, host, port = parse_registration_id(registration)
        # The store first: if it is unavailable, the instance stays registered everywhere.
        stored = await self.store.delete(registration)
        removed = await self.mesh.aderegister(name, host, port)
        return removed or stored

    async def _forget(self, registration: str) -> None:
        """Removes an instance the store no longer has (expired, or deleted elsewhere)."""
        with contextlib.suppress(ValueError):
            await self.mesh.aderegister(*parse_registration_id(registration))

    # ---- background tasks ------------------------------------------------------------

    async def _notify_changes(self) -> None:
        """Wakes watchers when the registry's revision moves (API, store, health checks)."""
        seen = self.mesh.revision
        while True:
            await asyncio.sleep(WATCH_POLL_S)
            revision = self.mesh.revision
            if revision != seen:
                seen = revision
                async with self._changed:
                    self._changed.notify_all()

    async def _expire_ttls(self) -> None:
        while True:
            await asyncio.sleep(EXPIRY_POLL_S)
            for expired in await self.store.expire():
                await self._forget(expired)

    async def _follow_store(self) -> None:
        """Applies registrations other controllers write to a shared store."""
        async for event, payload in self.store.watch():
            if event == "put" and isinstance(payload, Registration):
                with contextlib.suppress(ValueError):
                    await self._apply(payload)
            elif event == "delete" and isinstance(payload, str):
                await self._forget(payload)

    # ---- DNS -------------------------------------------------------------------------

    def _resolve_dns(self, qname: str) -> list[tuple[str, int]] | None:
        endpoints = self.mesh.resolve(qname)
        if endpoints is None:
            return None
        return [(e.host, e.port) for e in endpoints]

    # ---- HTTP API ----------------------------------------------------------------------

    def _router(self) -> Router:
        router = Router()
        router.add("GET", "/", self._dashboard)
        router.add("GET", "/healthz", self._healthz)
        router.add("GET", "/openapi.json", self._openapi)
        router.add("GET", "/v1/build", self._build)
        router.add("GET", "/v1/status", self._status)
        router.add("PUT", "/v1/registry/instances", self._put_instance)
        router.add("DELETE", "/v1/registry/instances/{name}/{address}", self._delete_instance)
        router.add("PUT", "/v1/registry/instances/{name}/{address}/heartbeat", self._heartbeat)
        router.add("PUT", "/v1/registry/instances/{name}/{address}/load", self._load_report)
        router.add("GET", "/v1/registry/services", self._list_services)
        router.add("GET", "/v1/registry/services/{name}", self._get_service)
        router.add("GET", "/v1/registry/discover/{name}", self._discover)
        router.add("GET", "/v1/registry/watch", self._watch)
        return router

    async def _healthz(self, _: Request) -> Response:
        return Response(HTTPStatus.OK, b"ok\n")

    async def _openapi(self, _: Request) -> Response:
        return Response.json(OPENAPI)

    async def _build(self, _: Request) -> Response:
        return Response.json(dmsc_fast.build_info())

    async def _status(self, _: Request) -> Response:
        degraded = self.store.status != "ok"
        return Response.json(
            {
                "status": "degraded" if degraded else "ok",
                "store": self.store.status,
                "revision": self.mesh.revision,
                "services": len(self.mesh.services()),
                "uptime_seconds": round(time.monotonic() - self._started, 3),
            }
        )

    async def _put_instance(self, request: Request) -> Response:
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body: must be a JSON object", "body")
        ttl = body.pop("ttl", None)
        if ttl is not None and not isinstance(ttl, int | float):
            raise HttpError(HTTPStatus.BAD_REQUEST, "ttl: must be a number of seconds", "ttl")
        try:
            endpoint = ServiceEndpoint.from_dict(body)
            registration = await self.register(endpoint, None if ttl is None else float(ttl))
        except ValueError as err:
            raise _bad_request(err) from err
        except OSError as err:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"store unavailable: {err}") from err
        return Response.json(
            {"id": registration, "revision": self.mesh.revision}, HTTPStatus.CREATED
        )

    async def _delete_instance(self, request: Request) -> Response:
        registration = f"{request.params['name']}/{request.params['address']}"
        try:
            removed = await self.deregister(registration)
        except ValueError as err:
            raise _bad_request(err) from err
        except OSError as err:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"store unavailable: {err}") from err
        if not removed:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no instance {registration}")
        return Response.json({"id": registration, "revision": self.mesh.revision})

    async def _heartbeat(self, request: Request) -> Response:
        registration = f"{request.params['name']}/{request.params['address']}"
        try:
            alive = await self.store.heartbeat(registration)
        except OSError as err:
            raise HttpError(HTTPStatus.SERVICE_UNAVAILABLE, f"store unavailable: {err}") from err
        if not alive:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no live registration {registration}")
        return Response.json({"id": registration})

    async def _load_report(self, request: Request) -> Response:
        """A sidecar's load report: its requests in flight and latency average (seconds)."""
        registration = f"{request.params['name']}/{request.params['address']}"
        try:
            name, host, port = parse_registration_id(registration)
        except ValueError as err:
            raise _bad_request(err) from err
        body = request.json()
        if not isinstance(body, dict):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body: must be a JSON object", "body")
        active = body.get("active_requests")
        latency = body.get("latency_ewma")
        if not isinstance(active, int) or isinstance(active, bool) or active < 0:
            raise HttpError(
                HTTPStatus.BAD_REQUEST,
                "active_requests: must be a whole number >= 0",
                "active_requests",
            )
        if latency is not None and (not isinstance(latency, int | float) or latency < 0):
            raise HttpError(
                HTTPStatus.BAD_REQUEST, "latency_ewma: must be seconds >= 0", "latency_ewma"
            )
        if not self.mesh.report_load(
            name,
            host,
            port,
            active_requests=active,
            latency_ewma=None if latency is None else float(latency),
        ):
            raise HttpError(HTTPStatus.NOT_FOUND, f"no instance {registration}")
        return Response.json({"id": registration})

    def _service_view(self, name: str) -> dict[str, Any]:
        instances = self.mesh.instances(name)
        return {
            "name": name,
            "instances": [
                {
                    **instance.endpoint.to_dict(),
                    "id": registration_id(instance.endpoint),
                    "health": instance.health,
                    "active_requests": instance.active_requests,
                    "latency_ewma": instance.latency_ewma,
                }
                for instance in instances
            ],
            "healthy": sum(1 for i in instances if i.health == "healthy"),
        }

    def _state(self) -> dict[str, Any]:
        return {name: self._service_view(name) for name in self.mesh.services()}

    async def _list_services(self, _: Request) -> Response:
        return Response.json(
            {"revision": self.mesh.revision, "services": list(self._state().values())},
            headers=(("X-Dmsc-Index", str(self.mesh.revision)),),
        )

    async def _get_service(self, request: Request) -> Response:
        name = request.params["name"]
        if name not in self.mesh.services():
            raise HttpError(HTTPStatus.NOT_FOUND, f"no service {name}")
        return Response.json(self._service_view(name))

    async def _discover(self, request: Request) -> Response:
        name = request.params["name"]
        key = request.query.get("key")
        endpoint = self.mesh.discover(
            name, version=request.query.get("version"), key=key.encode() if key else None
        )
        if endpoint is None:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no healthy instance of {name}")
        return Response.json(endpoint.to_dict())

    async def _watch(self, request: Request) -> Response:
        """Long-poll: answers when the revision passes `index`, or after `wait` seconds.

        The answer is the whole registry with its revision, so a watcher that passes the
        revision it last saw can never miss a change, however many happened meanwhile.
        """
        try:
            index = int(request.query.get("index", "0"))
            wait = min(float(request.query.get("wait", "30")), MAX_WATCH_WAIT_S)
        except ValueError as err:
            raise HttpError(HTTPStatus.BAD_REQUEST, "index and wait must be numbers") from err
        deadline = time.monotonic() + wait
        async with self._changed:
            while self.mesh.revision <= index:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)
        revision = self.mesh.revision
        return Response.json(
            {"revision": revision, "services": self._state()},
            headers=(("X-Dmsc-Index", str(revision)),),
        )

    async def _dashboard(self, _: Request) -> Response:
        rows = "".join(_dashboard_rows(self._state().values()))
        build = dmsc_fast.build_info()
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>dmsc</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            ".healthy{color:#070}.unhealthy{color:#a00}</style></head>"
            "<body><h1>dmsc controller</h1>"
            f"<p>store {html.escape(self.store.status)} &middot; revision "
            f"{self.mesh.revision} &middot; {html.escape(str(build['profile']))} build</p>"
            "<table><tr><th>service</th><th>instance</th><th>version</th><th>zone</th>"
            f"<th>health</th><th>in flight</th></tr>{rows}</table></body></html>"
        )
        return Response(HTTPStatus.OK, page.encode(), "text/html; charset=utf-8")


def _dashboard_rows(services: Iterable[dict[str, Any]]) -> Iterable[str]:
    for service in services:
        for instance in service["instances"]:
            health = html.escape(instance["health"])
            yield (
                f"<tr><td>{html.escape(service['name'])}</td>"
                f"<td>{html.escape(instance['host'])}:{instance['port']}</td>"
                f"<td>{html.escape(instance['version'])}</td>"
                f"<td>{html.escape(instance['zone'])}</td>"
                f"<td class='{health}'>{health}</td>"
                f"<td>{instance['active_requests']}</td></tr>"
            )
