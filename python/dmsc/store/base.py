"""The store interface shared by every backend, and the record it keeps."""

from __future__ import annotations

import abc
import asyncio
import json
import math
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, TypeAlias

StoreStatus: TypeAlias = Literal["ok", "degraded"]
"""`ok`: the backend answers; `degraded`: it does not, reads serve the last known state."""

StoreEvent: TypeAlias = tuple[Literal["put"], "Registration"] | tuple[Literal["delete"], str]
"""A change written by another controller: `("put", registration)` or `("delete", id)`."""


class StoreUnavailable(ConnectionError):
    """The backend cannot be reached; the write was not applied (or its outcome is unknown)."""


def registration_id(endpoint: Mapping[str, Any]) -> str:
    """The id of an endpoint in the store: `<name>/<host>:<port>`."""
    return f"{endpoint['name']}/{endpoint['host']}:{endpoint['port']}"


@dataclass(frozen=True)
class Registration:
    """One registered instance as the store keeps it.

    `endpoint` is `ServiceEndpoint.to_dict()` (name, host, port, version, health_check_url,
    zone, cluster, labels, weight); `id` is `<name>/<host>:<port>`; `ttl` is the number of
    seconds the registration lives without a heartbeat, or None for no expiry.
    """

    id: str
    endpoint: dict[str, Any]
    ttl: float | None

    @classmethod
    def of(cls, endpoint: Mapping[str, Any], ttl: float | None = None) -> Registration:
        """A registration of `endpoint` under its canonical id."""
        return cls(registration_id(endpoint), dict(endpoint), ttl)

    def validate(self) -> None:
        """Raises ValueError naming the field when the registration cannot be stored."""
        if not self.id or "\x00" in self.id:
            raise ValueError("id: must be a non-empty string without NUL")
        if self.ttl is not None and not (math.isfinite(self.ttl) and self.ttl > 0):
            raise ValueError(f"ttl: must be a positive number of seconds or None, got {self.ttl}")

    def to_json(self, **extra: Any) -> str:
        """The JSON document a backend stores (with `extra` fields beside the three)."""
        return json.dumps(
            {"id": self.id, "endpoint": self.endpoint, "ttl": self.ttl, **extra},
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> Registration:
        """Reads what `to_json` wrote; ValueError when it is not a registration."""
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError("registration: not a JSON object")
        return cls.from_doc(doc)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Registration:
        """Reads the decoded JSON document; ValueError naming the field that is wrong."""
        reg_id, endpoint, ttl = doc.get("id"), doc.get("endpoint"), doc.get("ttl")
        if not isinstance(reg_id, str):
            raise ValueError("id: missing or not a string")
        if not isinstance(endpoint, dict):
            raise ValueError("endpoint: missing or not an object")
        if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float)):
            raise ValueError("ttl: not a number")
        return cls(reg_id, endpoint, None if ttl is None else float(ttl))


class Store(abc.ABC):
    """Where a controller persists registrations (asyncio; one instance per controller).

    Lifecycle: `await open()` ... `await close()` (or `async with`). Writes raise
    `StoreUnavailable` (an OSError) when the backend cannot be reached.
    """

    url: str

    @property
    def status(self) -> StoreStatus:
        """`ok`, or `degraded` while the backend is unreachable."""
        return "ok"

    @abc.abstractmethod
    async def open(self) -> None:
        """Connects (and recovers the persisted state)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Releases everything; registrations stay stored. Ends running `watch()`es."""

    @abc.abstractmethod
    async def load(self) -> list[Registration]:
        """Every live registration (the last known state while degraded)."""

    @abc.abstractmethod
    async def put(self, registration: Registration) -> None:
        """Adds or replaces a registration; its TTL starts now."""

    @abc.abstractmethod
    async def delete(self, registration_id: str) -> bool:
        """Removes a registration; False if there was none."""

    @abc.abstractmethod
    async def heartbeat(self, registration_id: str) -> bool:
        """Restarts a registration's TTL; False if it is unknown or has expired."""

    @abc.abstractmethod
    async def expire(self) -> list[str]:
        """Removes registrations whose TTL ran out and returns their ids.

        The controller calls it periodically. Backends that expire on their own (etcd
        leases) return [] and report the removals through `watch()` instead.
        """

    @abc.abstractmethod
    def watch(self) -> AsyncIterator[StoreEvent]:
        """Changes made by other writers (other controllers, lease expiry), in order.

        Ends when the store is closed. Stores that only this process writes yield nothing.
        """

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url!r} {self.status}>"


class LocalStore(Store):
    """Shared behaviour of the single-writer stores: nothing to watch."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def close(self) -> None:
        self._closed.set()

    async def watch(self) -> AsyncIterator[StoreEvent]:
        """Yields nothing: waits until the store is closed, then ends."""
        await self._closed.wait()
        return
        yield  # pragma: no cover  (makes this an async generator)
