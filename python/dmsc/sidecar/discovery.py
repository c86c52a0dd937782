"""The sidecar's link to the controller: endpoint discovery and its own registration.

Discovery long-polls the controller's watch (`GET /v1/registry/watch?index=N&wait=S`), which
answers the whole registry with its revision whenever the revision passes `index`; each
answer is turned into the endpoints of every cluster that names a `service` and handed to
the engine. While the controller is away the engine keeps the last endpoints it was given;
the watch retries with capped exponential backoff and jitter, logging once per outage.

Registration puts this instance into the registry at start (and again whenever the registry
stops listing it, as after a controller restart on a memory store), heartbeats when it was
registered with a TTL, and is withdrawn on shutdown before the engine drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import socket
import urllib.parse
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from dmsc.aio import cancel_all
from dmsc.client import CommandError, call
from dmsc.config import format_address
from dmsc.sidecar.config import DiscoveredCluster, Registration

Endpoint = tuple[str, int, bool]
"""What the engine takes: (`HOST:PORT`, weight, healthy)."""

WATCH_WAIT_S = 25.0
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 5.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


def backoff(attempt: int) -> float:
    """Delay before retry `attempt` (1-based): capped exponential with jitter in [d/2, d]."""
    delay = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt - 1, 16))
    return random.uniform(delay / 2, delay)


async def get_json(url: str, path: str, timeout: float) -> Any:
    """One GET to the controller, cancellable (the long-poll cannot use a blocking client)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise CommandError(f"controller URL must be http://HOST:PORT, got {url}")
    host, port = parts.hostname, parts.port or 80
    request = (
        f"GET {parts.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        "Accept: application/json\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                data = await reader.read(MAX_RESPONSE_BYTES + 1)
                while chunk := await reader.read(MAX_RESPONSE_BYTES + 1 - len(data)):
                    data += chunk
            finally:
                writer.close()
    except TimeoutError as err:
        raise CommandError(f"no answer from the controller at {url} in {timeout:g} s") from err
    except OSError as err:
        reason = err.strerror or str(err)
        raise CommandError(f"cannot reach the controller at {url}: {reason}") from err
    if not data:
        raise CommandError(f"the controller at {url} closed the connection")
    head, sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split(b" ")
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise CommandError(f"the controller at {url} sent a malformed response")
    if len(data) > MAX_RESPONSE_BYTES:
        raise CommandError(f"the controller at {url} sent more than {MAX_RESPONSE_BYTES} bytes")
    status = int(status_line[1])
    try:
        value = json.loads(body or b"null")
    except ValueError as err:
        raise CommandError(f"the controller at {url} answered {status} without JSON") from err
    if status != 200:
        message = value.get("error") if isinstance(value, dict) else None
        raise CommandError(f"{status}: {message or 'error'}", status)
    return value


def _call(url: str, method: str, path: str, body: object = None) -> Any:
    """`dmsc.client.call` with every transport failure as a CommandError."""
    try:
        return call(url, method, path, body)
    except (OSError, ValueError) as err:
        raise CommandError(f"the controller at {url} failed: {err}") from err


def endpoints_of(
    registry: dict[str, Any], cluster: DiscoveredCluster, resolved: dict[str, str]
) -> list[Endpoint]:
    """The endpoints of `cluster` in a watch answer's `services` (instances of its service,
    of its version if it names one; healthy means the controller's checks pass)."""
    service = registry.get(cluster.service)
    if not isinstance(service, dict):
        return []
    merged: dict[str, tuple[int, bool]] = {}
    for instance in service.get("instances") or []:
        if not isinstance(instance, dict):
            continue
        if cluster.version is not None and instance.get("version") != cluster.version:
            continue
        host, port = instance.get("host"), instance.get("port")
        if not isinstance(host, str) or not isinstance(port, int):
            continue
        address = format_address(resolved.get(host, host), port)
        weight = instance.get("weight")
        weight = weight if isinstance(weight, int) and weight >= 1 else 1
        healthy = instance.get("health") == "healthy"
        # Two registrations may name one address (a host name and its IP): merge them.
        if address in merged:
            seen_weight, seen_healthy = merged[address]
            weight, healthy = max(weight, seen_weight), healthy or seen_healthy
        merged[address] = (weight, healthy)
    return sorted((address, weight, healthy) for address, (weight, healthy) in merged.items())


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ControllerLink:
    """Watches the registry for the engine and keeps this instance registered."""

    def __init__(
        self,
        url: str,
        apply: Callable[[str, list[Endpoint]], None],
        log: Callable[[str], None],
    ) -> None:
        self.url = url.rstrip("/")
        self._apply = apply
        self._log = log
        self._clusters: list[DiscoveredCluster] = []
        self._applied: dict[str, list[Endpoint]] = {}
        self._services: dict[str, Any] | None = None
        self._revision = 0
        self._resolved: dict[str, str] = {}
        self.connected: bool | None = None
        """None until the first attempt; then whether the last watch call succeeded."""
        self.first_answer = asyncio.Event()
        self.updates = 0
        self._registration: Registration | None = None
        self._advertised: tuple[str, int] | None = None
        self._registered_at: int | None = None
        """Revision the controller answered our registration with (None: not registered)."""
        self._unlisted = 0
        self._ever_registered = False
        self._in_flight: asyncio.Future[Any] | None = None
        self._recheck = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    # ---- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Starts the watch and, when registering, the registration keeper."""
        self._tasks.append(asyncio.create_task(self._watch()))
        if self._registration is not None:
            self._tasks.append(asyncio.create_task(self._keep_registered()))

    async def close(self) -> None:
        """Stops watching and heartbeating (a registration stays: see `deregister`)."""
        await cancel_all(self._tasks)
        self._tasks = []

    # ---- discovery -------------------------------------------------------------------

    def set_clusters(self, clusters: list[DiscoveredCluster]) -> None:
        """The discovered clusters of the live config; re-applies every one of them (after a
        reload the engine may have rebuilt them)."""
        self._clusters = list(clusters)
        self._applied = {}
        if self._services is not None:
            self._apply_all()

    def _apply_all(self) -> None:
        assert self._services is not None
        for cluster in self._clusters:
            endpoints = endpoints_of(self._services, cluster, self._resolved)
            if self._applied.get(cluster.name) == endpoints:
                continue
            try:
                self._apply(cluster.name, endpoints)
            except ValueError as err:
                self._log(f"endpoints of cluster {cluster.name} refused: {err}")
                continue
            self._applied[cluster.name] = endpoints
            self.updates += 1

    async def _resolve_names(self, services: dict[str, Any]) -> None:
        """Registrations may name hosts; the engine takes addresses."""
        names = {
            instance.get("host")
            for service in services.values()
            if isinstance(service, dict)
            for instance in service.get("instances") or []
            if isinstance(instance, dict)
        }
        loop = asyncio.get_running_loop()
        for name in names:
            if not isinstance(name, str) or _is_ip(name) or name in self._resolved:
                continue
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_STREAM)
            except OSError as err:
                self._log(f"cannot resolve instance host {name}: {err}")
                continue
            if infos:
                self._resolved[name] = str(infos[0][4][0])

    async def _watch(self) -> None:
        failures = 0
        while True:
            path = f"/v1/registry/watch?index={self._revision}&wait={WATCH_WAIT_S:g}"
            try:
                answer = await get_json(self.url, path, WATCH_WAIT_S + 10)
                if not isinstance(answer, dict) or not isinstance(answer.get("services"), dict):
                    raise CommandError("the controller's watch answer has no services")
                revision = answer.get("revision")
                if not isinstance(revision, int):
                    raise CommandError("the controller's watch answer has no revision")
            except CommandError as err:
                failures += 1
                if self.connected is None:
                    self._log(f"controller unreachable ({self.url}): {err}; retrying")
                elif self.connected:
                    self._log(
                        f"controller lost ({self.url}): {err}; keeping the last endpoints, retrying"
                    )
                self.connected = False
                # The controller may come back restarted, counting revisions from scratch:
                # ask for its whole state rather than for changes after our revision.
                self._revision = 0
                self.first_answer.set()  # do not hold startup for a controller that is away
                await asyncio.sleep(backoff(failures))
                continue
            if self.connected is False:
                self._log(f"controller back ({self.url}, revision {revision})")
            self.connected = True
            failures = 0
            services: dict[str, Any] = answer["services"]
            await self._resolve_names(services)
            self._services = services
            self._revision = revision
            self._apply_all()
            self.first_answer.set()
            self._check_listed(services, revision)

    # ---- registration ----------------------------------------------------------------

    def set_registration(self, registration: Registration, host: str, port: int) -> None:
        """What `start` registers (the address peers should use)."""
        self._registration = registration
        self._advertised = (host, port)

    @property
    def registration_id(self) -> str | None:
        """`service/host:port` of the registration, when there is one."""
        if self._registration is None or self._advertised is None:
            return None
        return f"{self._registration.service}/{self._advertised[0]}:{self._advertised[1]}"

    def _body(self) -> dict[str, Any]:
        assert self._registration is not None and self._advertised is not None
        reg = self._registration
        body: dict[str, Any] = {
            "name": reg.service,
            "host": self._advertised[0],
            "port": self._advertised[1],
            "version": reg.version,
            "health_check_url": reg.health_check_url,
            "zone": reg.zone,
            "cluster": reg.cluster,
            "weight": reg.weight,
            "labels": reg.labels,
        }
        if reg.ttl is not None:
            body["ttl"] = reg.ttl
        return body

    def _check_listed(self, services: dict[str, Any], revision: int) -> None:
        """Re-registers when the registry stops listing this instance.

        One answer may predate the registration (a watch already in flight), so a missing
        entry counts only in a registry newer than the registration, or when it is missing
        twice in a row (a restarted controller counts revisions from scratch).
        """
        if self._registration is None or self._registered_at is None:
            return
        host, port = self._advertised or ("", 0)
        service = services.get(self._registration.service)
        instances = service.get("instances", []) if isinstance(service, dict) else []
        listed = any(
            isinstance(i, dict) and i.get("host") == host and i.get("port") == port
            for i in instances
        )
        if listed:
            self._unlisted = 0
            return
        self._unlisted += 1
        if revision > self._registered_at or self._unlisted >= 2:
            self._unlisted = 0
            self._registered_at = None
            self._recheck.set()

    async def register(self) -> None:
        """Registers now (raises CommandError when the controller refuses or is away)."""
        call_done = asyncio.ensure_future(
            asyncio.to_thread(_call, self.url, "PUT", "/v1/registry/instances", self._body())
        )
        self._in_flight = call_done
        # Shielded: a cancelled caller must not hide a registration that still lands.
        result = await asyncio.shield(call_done)
        revision = result.get("revision") if isinstance(result, dict) else None
        self._registered_at = revision if isinstance(revision, int) else 0
        self._ever_registered = True
        self._log(f"registered {self.registration_id} with {self.url}")

    async def deregister(self) -> bool:
        """Withdraws the registration (peers stop picking this instance); errors are logged.
        True when a registration was withdrawn.

        Stops the watch and the heartbeats first, and waits for a registration call in
        flight, so nothing registers this instance again behind the withdrawal.
        """
        if self._registration is None:
            return False
        await self.close()
        in_flight = self._in_flight
        if in_flight is not None:
            with contextlib.suppress(CommandError, asyncio.CancelledError):
                await in_flight
            if not in_flight.cancelled() and in_flight.exception() is None:
                self._ever_registered = True
        if not self._ever_registered:
            return False
        try:
            await asyncio.to_thread(
                _call, self.url, "DELETE", f"/v1/registry/instances/{self.registration_id}"
            )
        except CommandError as err:
            self._log(f"deregistration of {self.registration_id} failed: {err}")
            return False
        finally:
            self._registered_at = None
        self._log(f"deregistered {self.registration_id}")
        return True

    async def _keep_registered(self) -> None:
        assert self._registration is not None
        failures = 0
        ttl = self._registration.ttl
        while True:
            if self._registered_at is None:
                try:
                    await self.register()
                    failures = 0
                except CommandError as err:
                    failures += 1
                    if failures == 1:
                        self._log(f"registration of {self.registration_id} failed: {err}; retrying")
                    await asyncio.sleep(backoff(failures))
                    continue
            if ttl is None:
                # Woken when the watch finds the registry without this instance.
                await self._recheck.wait()
                self._recheck.clear()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._recheck.wait(), ttl / 3)
            self._recheck.clear()
            if self._registered_at is None:
                continue
            path = f"/v1/registry/instances/{self.registration_id}/heartbeat"
            try:
                await asyncio.to_thread(_call, self.url, "PUT", path)
            except CommandError as err:
                if err.status == HTTPStatus.NOT_FOUND:
                    self._registered_at = None  # expired or forgotten: register again
                elif failures == 0:
                    failures = 1
                    self._log(f"heartbeat of {self.registration_id} failed: {err}")
                continue
            failures = 0
