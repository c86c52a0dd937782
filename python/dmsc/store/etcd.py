"""`etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`: registrations shared by controllers in etcd.

Speaks etcd v3's JSON gateway (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`) over plain
HTTP/1.1 keep-alive connections. Each registration is one key, `<prefix><id>`, whose value
is the registration's JSON plus the writing store's `owner` token. A registration with a
TTL is attached to its own lease of that TTL (rounded up to whole seconds; etcd grants at
least about 2 s), which `heartbeat` keeps alive: when the instance (or its controller)
stops heartbeating, etcd deletes the key and every watcher hears of it.

A background task keeps a watch on the prefix and a copy of the registrations. It feeds
`watch()` with the changes other writers make, resumes from the last revision it saw after
a reconnect (or re-reads everything and reports the difference when that revision has been
compacted away), and while etcd cannot be reached the store is `degraded`: `load()` serves
the copy, writes raise `StoreUnavailable`, and the task keeps reconnecting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from dmsc.store._http import Address, Connection, HttpPool, HttpStatusError, HttpUnavailable
from dmsc.store.base import (
    Registration,
    Store,
    StoreEvent,
    StoreStatus,
    StoreUnavailable,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX: Final = "/dmsc/registrations/"
RANGE_PAGE = 1000
MIN_BACKOFF_S = 0.05
BACKLOG_LIMIT = 100_000

# gRPC status codes etcd puts in error bodies.
_NOT_FOUND = 5
_OUT_OF_RANGE = 11
_UNAVAILABLE = 14


class EtcdError(Exception):
    """etcd refused a request (not a connectivity problem)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"etcd: {message} (code {code})")
        self.code = code


class _Resync(Exception):
    """The watch cannot resume (compacted or reset cluster): re-read everything."""


@dataclass(frozen=True)
class _Entry:
    registration: Registration
    owner: str
    lease: int
    revision: int


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text)


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with `prefix`."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"  # the whole keyspace


def _int(doc: dict[str, Any], name: str) -> int:
    value = doc.get(name)  # int64 fields are JSON strings, omitted when zero
    return int(value) if value is not None else 0


class EtcdStore(Store):
    """Registrations under `prefix` in the etcd cluster at `endpoints`.

    `timeout` bounds every request (seconds); `reconnect_interval` is the longest wait
    between reconnection attempts while degraded; every `probe_interval` seconds a cheap
    read checks that etcd still answers while the watch is quiet.
    """

    def __init__(
        self,
        endpoints: Sequence[Address],
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
        reconnect_interval: float = 1.0,
        probe_interval: float = 2.0,
    ) -> None:
        if not endpoints:
            raise ValueError("etcd: at least one HOST:PORT is required")
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError("timeout: must be a positive number of seconds")
        if not (math.isfinite(reconnect_interval) and reconnect_interval > 0):
            raise ValueError("reconnect_interval: must be a positive number of seconds")
        if not (math.isfinite(probe_interval) and probe_interval > 0):
            raise ValueError("probe_interval: must be a positive number of seconds")
        if not prefix:
            raise ValueError("prefix: must not be empty")
        self.endpoints = list(endpoints)
        self.prefix = prefix
        hosts = ",".join(f"{host}:{port}" for host, port in self.endpoints)
        self.url = f"etcd://{hosts}" + ("" if prefix == DEFAULT_PREFIX else prefix.rstrip("/"))
        self.timeout = timeout
        self.reconnect_interval = reconnect_interval
        self.probe_interval = probe_interval
        self._key = prefix.encode()
        self._key_end = _prefix_end(self._key)
        self._owner = uuid.uuid4().hex
        self._pool: HttpPool | None = None
        self._task: asyncio.Task[None] | None = None
        self._status: StoreStatus = "degraded"
        self._watching = False
        self._established = False
        self._probe = {"key": _b64(self._key), "range_end": _b64(self._key_end), "count_only": True}
        # The registrations as of revision `_revision`, kept current by the watch.
        self._cache: dict[str, _Entry] = {}
        self._revision = 0
        self._synced = False
        # Deletes this store made, so the watch does not report them back.
        self._deleting: Counter[str] = Counter()
        self._deleted_at: set[int] = set()
        self._subscribers: set[asyncio.Queue[StoreEvent | None]] = set()
        self._backlog: list[StoreEvent] | None = []
        self._chores: set[asyncio.Task[None]] = set()

    # ---- status ----------------------------------------------------------------------

    @property
    def status(self) -> StoreStatus:
        return self._status

    @property
    def revision(self) -> int:
        """The etcd revision the local copy reflects."""
        return self._revision

    def _degraded(self, why: object) -> None:
        self._watching = False
        if self._status != "degraded":
            log.warning("etcd store %s degraded: %s %s", self.url, type(why).__name__, why)
        self._status = "degraded"

    def _ok(self) -> None:
        if self._status != "ok":
            log.info("etcd store %s connected", self.url)
        self._status = "ok"

    # ---- requests --------------------------------------------------------------------

    def _require_pool(self) -> HttpPool:
        if self._pool is None:
            raise RuntimeError("etcd: the store is not open")
        return self._pool

    async def _call(self, path: str, doc: dict[str, Any]) -> dict[str, Any]:
        """One gateway request. StoreUnavailable when etcd cannot be reached."""
        pool = self._require_pool()
        try:
            answer = await pool.post_json(path, doc)
        except HttpUnavailable as err:
            self._degraded(err)
            raise StoreUnavailable(f"etcd unreachable ({err})") from err
        except HttpStatusError as err:
            code = err.doc.get("code")
            code = code if isinstance(code, int) else 0
            if code == _UNAVAILABLE or err.status in (502, 503, 504):
                self._degraded(err)
                raise StoreUnavailable(f"etcd unavailable ({err})") from err
            raise EtcdError(code, str(err.doc.get("message") or err)) from err
        if self._watching:
            self._ok()
        return answer

    def _key_of(self, registration_id: str) -> bytes:
        return self._key + registration_id.encode()

    def _entry(self, kv: dict[str, Any]) -> tuple[str, _Entry | None]:
        """The registration id of a key-value, and its entry (None if unreadable)."""
        reg_id = _unb64(kv["key"])[len(self._key) :].decode("utf-8", "replace")
        try:
            doc = json.loads(_unb64(kv.get("value", "")))
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            registration = Registration.from_doc(doc)
        except ValueError as err:
            log.warning("etcd: ignoring unreadable value of %r: %s", reg_id, err)
            return reg_id, None
        owner = str(doc.get("owner", ""))
        return reg_id, _Entry(registration, owner, _int(kv, "lease"), _int(kv, "mod_revision"))

    async def _range_all(self) -> tuple[dict[str, _Entry], int]:
        """Every registration under the prefix, read page by page at one revision."""
        for attempt in range(2):
            entries: dict[str, _Entry] = {}
            start, revision = self._key, 0
            try:
                while True:
                    request: dict[str, Any] = {
                        "key": _b64(start),
                        "range_end": _b64(self._key_end),
                        "limit": RANGE_PAGE,
                    }
                    if revision:
                        request["revision"] = revision
                    answer = await self._call("/v3/kv/range", request)
                    revision = revision or _int(answer["header"], "revision")
                    kvs = answer.get("kvs", [])
                    for kv in kvs:
                        reg_id, entry = self._entry(kv)
                        if entry is not None:
                            entries[reg_id] = entry
                    if not answer.get("more") or not kvs:
                        return entries, revision
                    start = _unb64(kvs[-1]["key"]) + b"\x00"
            except EtcdError as err:
                # OUT_OF_RANGE: the revision was compacted between two pages; read again.
                if err.code != _OUT_OF_RANGE or attempt:
                    raise
        raise AssertionError("unreachable")

    async def _range_one(self, registration_id: str) -> _Entry | None:
        answer = await self._call("/v3/kv/range", {"key": _b64(self._key_of(registration_id))})
        kvs = answer.get("kvs", [])
        return self._entry(kvs[0])[1] if kvs else None

    def _revoke_later(self, lease: int) -> None:
        """Revokes a lease nothing uses any more, off the caller's path (best effort: a
        lease nobody revokes expires on its own)."""
        task = asyncio.create_task(self._revoke(lease))
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    async def _revoke(self, lease: int) -> None:
        try:
            await self._call("/v3/lease/revoke", {"ID": lease})
        except (EtcdError, StoreUnavailable) as err:
            log.debug("etcd: revoking lease %x: %s", lease, err)

    # ---- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        self._pool = HttpPool(self.endpoints, timeout=self.timeout)
        self._backlog = []
        try:
            await self._resync(report=False)
        except (StoreUnavailable, EtcdError) as err:
            self._degraded(err)  # start anyway: the background task keeps trying
        else:
            self._ok()
        self._task = asyncio.create_task(self._follow(), name=f"etcd watch {self.url}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._chores:
            await asyncio.wait(self._chores, timeout=self.timeout)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._watching = False
        self._status = "degraded"
        for queue in self._subscribers:
            queue.put_nowait(None)

    # ---- Store -----------------------------------------------------------------------

    async def load(self) -> list[Registration]:
        if self._status == "ok" or not self._synced:
            try:
                entries, _ = await self._range_all()
                return [entry.registration for _, entry in sorted(entries.items())]
            except StoreUnavailable:
                pass  # serve the last known state
        return [entry.registration for _, entry in sorted(self._cache.items())]

    async def put(self, registration: Registration) -> None:
        registration.validate()
        lease = 0
        if registration.ttl is not None:
            granted = await self._call(
                "/v3/lease/grant", {"TTL": max(1, math.ceil(registration.ttl))}
            )
            lease = _int(granted, "ID")
        value = registration.to_json(owner=self._owner).encode()
        request: dict[str, Any] = {
            "key": _b64(self._key_of(registration.id)),
            "value": _b64(value),
            "prev_kv": True,
        }
        if lease:
            request["lease"] = lease
        try:
            answer = await self._call("/v3/kv/put", request)
        except BaseException:
            if lease:
                self._revoke_later(lease)
            raise
        revision = _int(answer["header"], "revision")
        cached = self._cache.get(registration.id)
        if cached is None or cached.revision < revision:
            # Read-your-writes before the watch, as delete does: a store that loses etcd
            # right after this put still answers with it from its last known state.
            stored = Registration.from_doc(json.loads(value))
            self._cache[registration.id] = _Entry(stored, self._owner, lease, revision)
        previous = _int(answer.get("prev_kv", {}), "lease")
        if previous and previous != lease:
            await self._revoke(previous)  # the replaced registration's lease

    async def delete(self, registration_id: str) -> bool:
        # Until the answer names the deletion's revision, the watch recognises it by key.
        self._deleting[registration_id] += 1
        try:
            answer = await self._call(
                "/v3/kv/deleterange",
                {"key": _b64(self._key_of(registration_id)), "prev_kv": True},
            )
            if _int(answer, "deleted"):
                revision = _int(answer["header"], "revision")
                self._deleted_at.add(revision)
                cached = self._cache.get(registration_id)
                if cached is not None and cached.revision < revision:
                    del self._cache[registration_id]  # read-your-writes before the watch
        finally:
            self._deleting[registration_id] -= 1
            if not self._deleting[registration_id]:
                del self._deleting[registration_id]
        for prev in answer.get("prev_kvs", []):
            if lease := _int(prev, "lease"):
                await self._revoke(lease)
        return _int(answer, "deleted") > 0

    async def heartbeat(self, registration_id: str) -> bool:
        entry = self._cache.get(registration_id)
        if entry is None:
            entry = await self._range_one(registration_id)
            if entry is None:
                return False
        if not entry.lease:
            return await self._range_one(registration_id) is not None
        if await self._keepalive(entry.lease):
            return True
        # The copy may be behind a re-registration under a new lease.
        current = await self._range_one(registration_id)
        if current is None or current.lease == entry.lease:
            return False
        return not current.lease or await self._keepalive(current.lease)

    async def _keepalive(self, lease: int) -> bool:
        answer = await self._call("/v3/lease/keepalive", {"ID": lease})
        result = answer.get("result", answer)
        return isinstance(result, dict) and _int(result, "TTL") > 0

    async def expire(self) -> list[str]:
        return []  # etcd expires leases itself; watch() reports the deletions

    async def watch(self) -> AsyncIterator[StoreEvent]:
        """Changes by other writers since `open()` (the first watcher also gets those
        made before it started), in revision order; ends when the store closes."""
        if self._pool is None:
            return
        queue: asyncio.Queue[StoreEvent | None] = asyncio.Queue()
        for buffered in self._backlog or ():
            queue.put_nowait(buffered)
        self._backlog = None
        self._subscribers.add(queue)
        try:
            while (event := await queue.get()) is not None:
                yield event
        finally:
            self._subscribers.discard(queue)

    # ---- the follower ------------------------------------------------------------------

    def _emit(self, event: StoreEvent) -> None:
        if self._backlog is not None:
            if len(self._backlog) >= BACKLOG_LIMIT:
                del self._backlog[: BACKLOG_LIMIT // 10]
                log.warning("etcd: nobody watches; dropped the oldest buffered changes")
            self._backlog.append(event)
        for queue in self._subscribers:
            queue.put_nowait(event)

    async def _resync(self, *, report: bool) -> None:
        """Re-reads everything; with `report`, emits the difference to the copy."""
        entries, revision = await self._range_all()
        if report:
            for reg_id in sorted(self._cache.keys() - entries.keys()):
                self._emit(("delete", reg_id))
            for reg_id, entry in sorted(entries.items()):
                old = self._cache.get(reg_id)
                if (old is None or old.revision != entry.revision) and entry.owner != self._owner:
                    self._emit(("put", entry.registration))
        self._cache = entries
        self._revision = revision
        self._synced = True
        self._deleted_at = {rev for rev in self._deleted_at if rev > revision}

    async def _follow(self) -> None:
        backoff = MIN_BACKOFF_S
        while True:
            self._established = False
            try:
                if not self._synced:
                    await self._resync(report=True)
                await self._watch_once()
                # etcd ended a healthy stream (a restart, a proxy): just open a new one.
                await asyncio.sleep(MIN_BACKOFF_S)
                backoff = MIN_BACKOFF_S
                continue
            except _Resync as why:
                log.info("etcd: re-reading registrations: %s", why)
                self._synced = False
                continue
            except (StoreUnavailable, HttpUnavailable, OSError, TimeoutError) as err:
                self._degraded(err)
            except (EtcdError, HttpStatusError, ValueError, KeyError) as err:
                self._degraded(err)
                self._synced = False  # an unexpected answer: start over from a full read
            if self._established:
                backoff = MIN_BACKOFF_S
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_interval)

    async def _watch_once(self) -> None:
        """Follows the watch stream until it ends; probes etcd meanwhile, so a connection
        that went silent (a partition, an etcd without quorum) is noticed."""
        conn = await self._require_pool().connect()
        stream = asyncio.create_task(self._stream(conn))
        try:
            while True:
                done, _ = await asyncio.wait({stream}, timeout=self.probe_interval)
                if done:
                    return stream.result()
                if self._watching:
                    await self._call("/v3/kv/range", self._probe)
        finally:
            self._watching = False
            stream.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await stream
            conn.close()

    async def _stream(self, conn: Connection) -> None:
        request = {
            "create_request": {
                "key": _b64(self._key),
                "range_end": _b64(self._key_end),
                "start_revision": self._revision + 1,
                "progress_notify": True,
            }
        }
        body = json.dumps(request).encode()
        lines = conn.stream_lines("/v3/watch", body)
        async with asyncio.timeout(self.timeout):
            first = await anext(lines)
        created = json.loads(first).get("result", {})
        if not created.get("created"):
            raise EtcdError(0, f"watch not created: {first[:200]!r}")
        if _int(created.get("header", {}), "revision") < self._revision:
            raise _Resync("etcd's revision went backwards (a new cluster?)")
        self._watching = self._established = True
        self._ok()
        async for line in lines:
            doc = json.loads(line)
            if "error" in doc:
                raise EtcdError(0, str(doc["error"]))
            result = doc.get("result", {})
            if result.get("canceled"):
                if _int(result, "compact_revision"):
                    raise _Resync(f"revision {self._revision + 1} was compacted")
                raise EtcdError(0, f"watch canceled: {result.get('cancel_reason', '')}")
            events = result.get("events")
            if not events:
                # A progress notification: everything up to this revision has been sent,
                # so a later resume need not reach back into (compactable) history.
                self._revision = max(self._revision, _int(result.get("header", {}), "revision"))
                continue
            # One revision's events (a multi-key delete) arrive in one response.
            seen = self._revision
            for event in events:
                self._apply(event, seen)

    def _apply(self, event: dict[str, Any], seen: int) -> None:
        kv = event["kv"]
        revision = _int(kv, "mod_revision")
        if revision <= seen:
            return  # already in the copy
        self._revision = max(self._revision, revision)
        if event.get("type") == "DELETE":
            reg_id = _unb64(kv["key"])[len(self._key) :].decode("utf-8", "replace")
            self._cache.pop(reg_id, None)
            if revision in self._deleted_at:
                self._deleted_at.discard(revision)
            elif reg_id not in self._deleting:
                self._emit(("delete", reg_id))
            return
        reg_id, entry = self._entry(kv)
        if entry is None:
            self._cache.pop(reg_id, None)
            return
        self._cache[reg_id] = entry
        if entry.owner != self._owner:
            self._emit(("put", entry.registration))
