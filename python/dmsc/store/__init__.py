"""Where the controller persists registrations: `open_store(url)`.

- `memory:` (or `memory`) — this process only (`MemoryStore`);
- `sqlite:PATH` — the embedded default, a WAL-mode SQLite file (`SqliteStore`);
  `?synchronous=full` adds an fsync per write (survives power loss, not only crashes);
- `etcd://HOST:PORT[,HOST:PORT...][/PREFIX][?timeout=SECONDS]` — shared by controllers
  through etcd v3 (`EtcdStore`).
"""

from __future__ import annotations

import math
import urllib.parse
from typing import cast

from dmsc.store.base import (
    Registration,
    Store,
    StoreEvent,
    StoreStatus,
    StoreUnavailable,
    registration_id,
)
from dmsc.store.etcd import DEFAULT_PREFIX, EtcdError, EtcdStore
from dmsc.store.memory import MemoryStore
from dmsc.store.sqlite import SqliteStore, Synchronous

__all__ = [
    "EtcdError",
    "EtcdStore",
    "MemoryStore",
    "Registration",
    "SqliteStore",
    "Store",
    "StoreEvent",
    "StoreStatus",
    "StoreUnavailable",
    "open_store",
    "registration_id",
]

_SCHEMES = "memory:, sqlite:PATH or etcd://HOST:PORT[,HOST:PORT...]"


def open_store(url: str) -> Store:
    """The store `url` names (not yet opened: `await store.open()`).

    ValueError, starting with the scheme, when the URL is malformed or its scheme unknown.
    """
    if url.strip().lower() == "memory":  # `store: memory` reads better in YAML than `memory:`
        return MemoryStore()
    scheme, sep, rest = url.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme:
        raise ValueError(f"store: {url!r} has no scheme; expected {_SCHEMES}")
    if scheme == "memory":
        if rest not in ("", "//"):
            raise ValueError(f"memory: takes no path, got {url!r}")
        return MemoryStore()
    if scheme == "sqlite":
        return _sqlite(url, rest)
    if scheme == "etcd":
        return _etcd(url, rest)
    raise ValueError(f"{scheme}: unknown store scheme in {url!r}; expected {_SCHEMES}")


def _query(url: str, scheme: str, query: str, allowed: set[str]) -> dict[str, str]:
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise ValueError(f"{scheme}: malformed query in {url!r}") from None
    options = dict(pairs)
    unknown = sorted(options.keys() - allowed)
    if unknown:
        raise ValueError(f"{scheme}: unknown option {unknown[0]!r} in {url!r}")
    return options


def _sqlite(url: str, rest: str) -> SqliteStore:
    path, _, query = rest.partition("?")
    path = path.removeprefix("//")  # sqlite:///var/lib/x.db reads as /var/lib/x.db
    if not path:
        raise ValueError(f"sqlite: no database path in {url!r}; expected sqlite:PATH")
    options = _query(url, "sqlite", query, {"synchronous"}) if query else {}
    synchronous = options.get("synchronous", "normal").lower()
    if synchronous not in ("off", "normal", "full", "extra"):
        raise ValueError(f"sqlite: synchronous must be off, normal, full or extra in {url!r}")
    return SqliteStore(path, synchronous=cast(Synchronous, synchronous))


def _etcd(url: str, rest: str) -> EtcdStore:
    if not rest.startswith("//"):
        raise ValueError(f"etcd: expected etcd://HOST:PORT[,HOST:PORT...], got {url!r}")
    location, _, query = rest[2:].partition("?")
    hosts, slash, path = location.partition("/")
    endpoints: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, colon, port = item.strip().rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"etcd: {item.strip()!r} is not HOST:PORT in {url!r}")
        endpoints.append((host, int(port)))
    prefix = f"/{path.strip('/')}/" if slash and path.strip("/") else DEFAULT_PREFIX
    options = _query(url, "etcd", query, {"timeout"}) if query else {}
    timeout = 2.0
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = math.nan
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"etcd: timeout must be a positive number of seconds in {url!r}")
    return EtcdStore(endpoints, prefix=prefix, timeout=timeout)
